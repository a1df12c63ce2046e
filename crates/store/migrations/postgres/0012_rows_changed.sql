-- Rows a statement inserted, updated, deleted, merged or copied in, by its commands' tags
-- (the same in migrations/sqlite: the last item of a statement_chunks entry). A constant
-- default: no rewrite of the table.
ALTER TABLE statements ADD COLUMN rows_changed BIGINT NOT NULL DEFAULT 0;
