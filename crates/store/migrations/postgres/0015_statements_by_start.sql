-- A session's statements in the order they started, the order a page of them is read in: a
-- page is read from its first key on, however long the session (without it, every page read
-- and sorted the whole session: seconds at a million statements).
CREATE INDEX IF NOT EXISTS statements_by_start ON statements (org_id, session_id, start_us, seq);
