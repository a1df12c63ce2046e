-- The statement a session is running, as its connector announces one that runs long: the
-- transcript of an open session ends with it until a statement with a later seq is stored.
-- Cleared once a later statement is stored, or the connector ends the session; shown only
-- while the session is open.
ALTER TABLE sessions
    ADD COLUMN running_seq bigint,
    ADD COLUMN running_start_us bigint,
    ADD COLUMN running_text text;
