-- Each run of a connector (one process, from start to stop) holds its own
-- lease: see migrations/postgres/0008_connector_runs.sql.
CREATE TABLE connector_runs (
    org_id        INTEGER NOT NULL,
    connector_id  TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    started_us    INTEGER NOT NULL,
    last_heard_us INTEGER NOT NULL,
    lapsed_us     INTEGER,
    -- When a run that took over from it said Hello: it is over, whatever it
    -- reports late.
    taken_over_us INTEGER,
    PRIMARY KEY (org_id, connector_id, run_id)
);
CREATE INDEX connector_runs_heard ON connector_runs (last_heard_us);

-- The run that reported the session; empty for sessions no connector reported.
ALTER TABLE sessions ADD COLUMN run_id TEXT NOT NULL DEFAULT '';

-- Until now a connector had one run, its latest: its open sessions, and those
-- the sweep ended when it lapsed, are that run's.
INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us, lapsed_us)
SELECT org_id, id, run_id, COALESCE(last_heard_us, created_us), COALESCE(last_heard_us, created_us), lapsed_us
FROM connectors WHERE run_id <> '';
UPDATE sessions SET run_id = c.run_id FROM connectors c
WHERE sessions.org_id = c.org_id AND sessions.connector_id = c.id AND c.run_id <> ''
    AND (sessions.end_us IS NULL OR (sessions.end_reason = 'lease' AND sessions.end_us >= c.lapsed_us));

DROP INDEX sessions_connector_open;
CREATE INDEX sessions_run_open ON sessions (org_id, connector_id, run_id) WHERE end_us IS NULL;
-- Leases are the runs' now: the connector keeps only its last-heard time, for listings.
ALTER TABLE connectors DROP COLUMN lapsed_us;
ALTER TABLE connectors DROP COLUMN run_id;
