-- Organizations, API keys, installation secrets and sessions.

CREATE TABLE organizations (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_us INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES organizations (id),
    prefix       TEXT NOT NULL UNIQUE,
    secret_hash  BLOB NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_us   INTEGER NOT NULL,
    last_used_us INTEGER,
    revoked_us   INTEGER
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_us);

CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- One row per session. Identity, resource and connector are copied in as they
-- were when the session ran, so a later rename never rewrites history.
-- Text fields searched case-insensitively are COLLATE NOCASE, so that both
-- comparisons and their indexes fold case.
CREATE TABLE sessions (
    pk                  INTEGER PRIMARY KEY,
    org_id              INTEGER NOT NULL REFERENCES organizations (id),
    id                  TEXT NOT NULL,
    start_us            INTEGER NOT NULL,
    end_us              INTEGER,
    duration_us         INTEGER,
    client_ip           TEXT NOT NULL DEFAULT '',
    client_ip_bin       BLOB,
    server_ip           TEXT NOT NULL DEFAULT '',
    server_ip_bin       BLOB,
    sidecar_id          TEXT NOT NULL DEFAULT '',
    sidecar_name        TEXT NOT NULL DEFAULT '',
    sidecar_technology  TEXT NOT NULL DEFAULT '',
    user_type           TEXT NOT NULL DEFAULT '',
    user_username       TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    user_id             TEXT NOT NULL DEFAULT '',
    user_name           TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    user_email          TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    user_formal_type    TEXT NOT NULL DEFAULT '',
    user_groups         TEXT NOT NULL DEFAULT '[]',
    user_external_ids   TEXT NOT NULL DEFAULT '[]',
    end_user_id         TEXT NOT NULL DEFAULT '',
    end_user_name       TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    end_user_email      TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    end_user_type       TEXT NOT NULL DEFAULT '',
    end_user_groups     TEXT NOT NULL DEFAULT '[]',
    native_username     TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    resource_type       TEXT NOT NULL DEFAULT '',
    resource_id         TEXT NOT NULL DEFAULT '',
    resource_name       TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    resource_technology TEXT NOT NULL DEFAULT '',
    connector_id        TEXT NOT NULL DEFAULT '',
    connector_name      TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    parent_session_id   TEXT NOT NULL DEFAULT ''
);

CREATE UNIQUE INDEX sessions_id ON sessions (org_id, id);
-- Every sort order, each ending in id for the tie-break.
CREATE INDEX sessions_start ON sessions (org_id, start_us, id);
CREATE INDEX sessions_end ON sessions (org_id, end_us, id);
CREATE INDEX sessions_duration ON sessions (org_id, duration_us, id);
CREATE INDEX sessions_active ON sessions (org_id, start_us, id) WHERE end_us IS NULL;
-- The common filters, each ordered by start time within a value.
CREATE INDEX sessions_user_email ON sessions (org_id, user_email, start_us, id);
CREATE INDEX sessions_user_username ON sessions (org_id, user_username, start_us, id);
CREATE INDEX sessions_resource_name ON sessions (org_id, resource_name, start_us, id);
CREATE INDEX sessions_technology ON sessions (org_id, resource_technology, start_us, id);
CREATE INDEX sessions_client_ip ON sessions (org_id, client_ip_bin, start_us);

-- Many-valued fields (groups, external ids), one row per value.
CREATE TABLE session_values (
    session_pk INTEGER NOT NULL REFERENCES sessions (pk) ON DELETE CASCADE,
    field      INTEGER NOT NULL,
    value      TEXT NOT NULL
);
CREATE INDEX session_values_lookup ON session_values (field, value, session_pk);
CREATE INDEX session_values_session ON session_values (session_pk);
