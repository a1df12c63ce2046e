-- A session's statements, stored a report at a time: one row per session and
-- report holding up to 500 statements as a JSON array of
-- [seq, start_us, duration_us, rows, bytes_sent, sqlstate, text]. SQLite's
-- cost per row (a B-tree insert and the pages it writes to the WAL) was most
-- of what recording a statement cost the control plane.
--
-- Each statement is still stored at most once per (session, seq): ingestion
-- trusts `sessions.statement_max_seq` (the highest seq stored, NULL while
-- unknown) to take statements above it as new, and reads the chunks to
-- leave out the seqs it holds already otherwise (a replay).
CREATE TABLE statement_chunks (
    org_id     INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (org_id, session_id, first_seq)
) WITHOUT ROWID;

-- What each session ran, by fingerprint: the `query.fingerprint` facet counts
-- sessions from here, without reading statements.
CREATE TABLE session_fingerprints (
    org_id      INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (org_id, session_id, fingerprint)
) WITHOUT ROWID;

ALTER TABLE sessions ADD COLUMN statement_max_seq INTEGER;

INSERT INTO statement_chunks (org_id, session_id, first_seq, last_seq, body)
SELECT org_id, session_id, MIN(seq), MAX(seq),
       json_group_array(json_array(seq, start_us, duration_us, rows, bytes_sent, sqlstate, text))
FROM (SELECT * FROM statements ORDER BY org_id, session_id, seq)
GROUP BY org_id, session_id, seq / 500;

INSERT INTO session_fingerprints (org_id, session_id, fingerprint)
SELECT DISTINCT org_id, session_id, fingerprint FROM statements WHERE fingerprint <> '';

UPDATE sessions SET statement_max_seq = m.max_seq
FROM (SELECT org_id, session_id, MAX(seq) AS max_seq FROM statements GROUP BY org_id, session_id) AS m
WHERE sessions.org_id = m.org_id AND sessions.id = m.session_id;

DROP TABLE statements;
