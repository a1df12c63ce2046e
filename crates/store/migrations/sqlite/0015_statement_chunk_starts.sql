-- The earliest and latest start of each chunk's statements, so that a page of a long
-- session's statements (in the order they started) reads the chunks that may hold it,
-- not every chunk of the session. NULL (never written since) reads as unknown.
ALTER TABLE statement_chunks ADD COLUMN min_start_us INTEGER;
ALTER TABLE statement_chunks ADD COLUMN max_start_us INTEGER;

UPDATE statement_chunks SET
    min_start_us = (SELECT MIN(json_extract(value, '$[1]')) FROM json_each(statement_chunks.body)),
    max_start_us = (SELECT MAX(json_extract(value, '$[1]')) FROM json_each(statement_chunks.body));
