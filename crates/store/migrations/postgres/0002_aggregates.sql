-- Per-session statement totals, kept by ingestion, so that aggregations
-- read one row per session rather than its statements.
ALTER TABLE sessions
    ADD COLUMN statement_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN bytes_sent bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_sent bigint NOT NULL DEFAULT 0;

UPDATE sessions s SET statement_count = t.n, bytes_sent = t.bytes, rows_sent = t.r
FROM (SELECT org_id, session_id, COUNT(*) AS n, SUM(bytes_sent)::bigint AS bytes, SUM(rows)::bigint AS r
      FROM statements GROUP BY org_id, session_id) t
WHERE s.org_id = t.org_id AND s.id = t.session_id;

-- The statement with its literals replaced by `?` (computed by the
-- application at ingestion), for counting sessions by what they ran.
-- Statements stored before this migration have none.
ALTER TABLE statements ADD COLUMN fingerprint text NOT NULL DEFAULT '';

-- The histogram (and the hit count) of a window reads this index alone: the
-- console's view, stacked by technology, never touches the table.
CREATE INDEX sessions_histogram ON sessions (org_id, start_us) INCLUDE (end_us, resource_technology);
