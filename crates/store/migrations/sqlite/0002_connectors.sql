-- The registry (resources and connectors), connector runs and leases,
-- statements, and termination requests.

CREATE TABLE resources (
    pk         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES organizations (id),
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    type       TEXT NOT NULL,
    technology TEXT NOT NULL,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

-- A connector key lets that connector report its own sessions and nothing
-- else; only the hash of the key is kept.
CREATE TABLE connectors (
    pk            INTEGER PRIMARY KEY,
    org_id        INTEGER NOT NULL REFERENCES organizations (id),
    id            TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    key_prefix    TEXT NOT NULL UNIQUE,
    key_hash      BLOB NOT NULL,
    created_us    INTEGER NOT NULL,
    run_id        TEXT NOT NULL DEFAULT '',
    last_heard_us INTEGER,
    UNIQUE (org_id, name)
);

-- Why a session ended: `client`, `server`, `terminated`, `shutdown`, `error`,
-- or `lease` when the control plane completed it for a connector unheard.
ALTER TABLE sessions ADD COLUMN end_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_connector_open ON sessions (org_id, connector_id) WHERE end_us IS NULL;

-- Statements live apart from sessions so that listing never reads them.
CREATE TABLE statements (
    org_id      INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    start_us    INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    text        TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    bytes_sent  INTEGER NOT NULL,
    sqlstate    TEXT NOT NULL,
    PRIMARY KEY (org_id, session_id, seq)
) WITHOUT ROWID;

CREATE TABLE terminations (
    id           TEXT PRIMARY KEY,
    org_id       INTEGER NOT NULL,
    session_id   TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_us   INTEGER NOT NULL
);
CREATE INDEX terminations_connector ON terminations (org_id, connector_id, created_us);
