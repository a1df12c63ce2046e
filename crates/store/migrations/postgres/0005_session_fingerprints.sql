-- What each session ran, by fingerprint: the `query.fingerprint` facet counts
-- sessions from here, without reading statements (same table as
-- migrations/sqlite/0006_statement_chunks.sql).
CREATE TABLE session_fingerprints (
    org_id      bigint NOT NULL,
    session_id  text COLLATE "C" NOT NULL,
    fingerprint text COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, session_id, fingerprint)
);

INSERT INTO session_fingerprints (org_id, session_id, fingerprint)
SELECT DISTINCT org_id, session_id, fingerprint FROM statements WHERE fingerprint <> '';

ALTER TABLE statements DROP COLUMN fingerprint;
