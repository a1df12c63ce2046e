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
-- Text fields that search case-insensitively have a `_fold` twin holding the
-- value case-folded by the application (Unicode, not just ASCII): filters and
-- indexes use the twin, responses the original.
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
    user_username       TEXT NOT NULL DEFAULT '',
    user_username_fold TEXT NOT NULL DEFAULT '',
    user_id             TEXT NOT NULL DEFAULT '',
    user_name           TEXT NOT NULL DEFAULT '',
    user_name_fold TEXT NOT NULL DEFAULT '',
    user_email          TEXT NOT NULL DEFAULT '',
    user_email_fold TEXT NOT NULL DEFAULT '',
    user_formal_type    TEXT NOT NULL DEFAULT '',
    user_groups         TEXT NOT NULL DEFAULT '[]',
    user_external_ids   TEXT NOT NULL DEFAULT '[]',
    end_user_id         TEXT NOT NULL DEFAULT '',
    end_user_name       TEXT NOT NULL DEFAULT '',
    end_user_name_fold TEXT NOT NULL DEFAULT '',
    end_user_email      TEXT NOT NULL DEFAULT '',
    end_user_email_fold TEXT NOT NULL DEFAULT '',
    end_user_type       TEXT NOT NULL DEFAULT '',
    end_user_groups     TEXT NOT NULL DEFAULT '[]',
    end_user_external_ids TEXT NOT NULL DEFAULT '[]',
    native_username     TEXT NOT NULL DEFAULT '',
    native_username_fold TEXT NOT NULL DEFAULT '',
    resource_type       TEXT NOT NULL DEFAULT '',
    resource_id         TEXT NOT NULL DEFAULT '',
    resource_name       TEXT NOT NULL DEFAULT '',
    resource_name_fold TEXT NOT NULL DEFAULT '',
    resource_technology TEXT NOT NULL DEFAULT '',
    connector_id        TEXT NOT NULL DEFAULT '',
    connector_name      TEXT NOT NULL DEFAULT '',
    connector_name_fold TEXT NOT NULL DEFAULT '',
    parent_session_id   TEXT NOT NULL DEFAULT ''
);

CREATE UNIQUE INDEX sessions_id ON sessions (org_id, id);
-- Every sort order, each ending in id for the tie-break.
CREATE INDEX sessions_start ON sessions (org_id, start_us, id);
CREATE INDEX sessions_end ON sessions (org_id, end_us, id);
CREATE INDEX sessions_duration ON sessions (org_id, duration_us, id);
CREATE INDEX sessions_active ON sessions (org_id, start_us, id) WHERE end_us IS NULL;
-- The common filters, each ordered by start time within a value.
CREATE INDEX sessions_user_email ON sessions (org_id, user_email_fold, start_us, id);
CREATE INDEX sessions_user_username ON sessions (org_id, user_username_fold, start_us, id);
CREATE INDEX sessions_resource_name ON sessions (org_id, resource_name_fold, start_us, id);
CREATE INDEX sessions_technology ON sessions (org_id, resource_technology, start_us, id);
CREATE INDEX sessions_client_ip ON sessions (org_id, client_ip_bin, start_us);

-- Many-valued fields (groups, external ids), one row per value.
CREATE TABLE session_values (
    session_pk INTEGER NOT NULL REFERENCES sessions (pk) ON DELETE CASCADE,
    field      INTEGER NOT NULL,
    value      TEXT NOT NULL
);
-- Filters probe a session's own values (correlated EXISTS) while the listing
-- walks an ordered index, rather than materializing every match first.
CREATE INDEX session_values_by_session ON session_values (session_pk, field, value);
