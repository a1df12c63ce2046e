-- A termination is looked up by its session: the one still pending when it
-- is asked again, and those retention deletes with their sessions.
CREATE INDEX terminations_session ON terminations (org_id, session_id, created_us);
