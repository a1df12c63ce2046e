-- Each run of a connector (one process, from start to stop) holds its own
-- lease. Two processes sharing a connector key (replicas behind one service)
-- are two runs: one starting, stopping or falling silent completes its own
-- sessions, never the other's. (Same tables in
-- migrations/sqlite/0009_connector_runs.sql.)
--
-- A run is recorded when first heard (its Hello, a heartbeat, a report) or
-- when its sessions are reported (replayed by its successor). Heard again
-- after the lease sweep took it for gone (`lapsed_us`, the time its sessions
-- were completed at), it gets those sessions back; a run that takes over from
-- it (the next process on the same state directory) completes them for good.
CREATE TABLE connector_runs (
    org_id        bigint NOT NULL,
    connector_id  text COLLATE "C" NOT NULL,
    run_id        text COLLATE "C" NOT NULL,
    started_us    bigint NOT NULL,
    last_heard_us bigint NOT NULL,
    lapsed_us     bigint,
    -- When a run that took over from it said Hello: it is over, whatever it
    -- reports late.
    taken_over_us bigint,
    PRIMARY KEY (org_id, connector_id, run_id)
);
CREATE INDEX connector_runs_heard ON connector_runs (last_heard_us);

-- The run that reported the session; empty for sessions no connector reported.
ALTER TABLE sessions ADD COLUMN run_id text COLLATE "C" NOT NULL DEFAULT '';

-- Until now a connector had one run, its latest: its open sessions, and those
-- the sweep ended when it lapsed, are that run's.
INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us, lapsed_us)
SELECT org_id, id, run_id, COALESCE(last_heard_us, created_us), COALESCE(last_heard_us, created_us), lapsed_us
FROM connectors WHERE run_id <> '';
UPDATE sessions s SET run_id = c.run_id FROM connectors c
WHERE s.org_id = c.org_id AND s.connector_id = c.id AND c.run_id <> ''
    AND (s.end_us IS NULL OR (s.end_reason = 'lease' AND s.end_us >= c.lapsed_us));

DROP INDEX sessions_connector_open;
CREATE INDEX sessions_run_open ON sessions (org_id, connector_id, run_id) WHERE end_us IS NULL;
-- Leases are the runs' now: the connector keeps only its last-heard time, for listings.
ALTER TABLE connectors DROP COLUMN lapsed_us;
ALTER TABLE connectors DROP COLUMN run_id;
