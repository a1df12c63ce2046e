-- Per-session statement totals, kept by ingestion, so that aggregations
-- read one row per session rather than its statements.
ALTER TABLE sessions ADD COLUMN statement_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN bytes_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN rows_sent INTEGER NOT NULL DEFAULT 0;

UPDATE sessions SET
    statement_count = (SELECT COUNT(*) FROM statements st WHERE st.org_id = sessions.org_id AND st.session_id = sessions.id),
    bytes_sent = (SELECT COALESCE(SUM(st.bytes_sent), 0) FROM statements st WHERE st.org_id = sessions.org_id AND st.session_id = sessions.id),
    rows_sent = (SELECT COALESCE(SUM(st.rows), 0) FROM statements st WHERE st.org_id = sessions.org_id AND st.session_id = sessions.id)
WHERE EXISTS (SELECT 1 FROM statements st WHERE st.org_id = sessions.org_id AND st.session_id = sessions.id);

-- The statement with its literals replaced by `?` (computed by the
-- application at ingestion), for counting sessions by what they ran.
-- Statements stored before this migration have none.
ALTER TABLE statements ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';

-- The histogram (and the hit count) of a window reads this index alone: the
-- console's view, stacked by technology, never touches the table.
CREATE INDEX sessions_histogram ON sessions (org_id, start_us, end_us, resource_technology);
