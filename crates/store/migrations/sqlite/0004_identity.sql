-- Identities: the people and machines behind connections, their access
-- tokens, and which native database roles they may use on each resource.

-- A human (email, name) or a machine (name). Connections name a user by
-- `lookup`: the email or machine name, case-folded by the application, so
-- `Alice@Example.com` and `alice@example.com` are one user.
CREATE TABLE users (
    pk           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES organizations (id),
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    lookup       TEXT NOT NULL,
    email        TEXT NOT NULL DEFAULT '',
    name         TEXT NOT NULL DEFAULT '',
    -- JSON arrays of text.
    groups       TEXT NOT NULL DEFAULT '[]',
    external_ids TEXT NOT NULL DEFAULT '[]',
    disabled     INTEGER NOT NULL DEFAULT 0,
    created_us   INTEGER NOT NULL,
    updated_us   INTEGER NOT NULL,
    UNIQUE (org_id, type, lookup)
);

-- Access tokens `ght_<prefix>_<secret>`: a connection's password. Only the
-- SHA-256 of the whole token is kept.
CREATE TABLE access_tokens (
    pk           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES organizations (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    prefix       TEXT NOT NULL UNIQUE,
    secret_hash  BLOB NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    created_us   INTEGER NOT NULL,
    expires_us   INTEGER NOT NULL,
    last_used_us INTEGER,
    revoked_us   INTEGER
);
CREATE INDEX access_tokens_user ON access_tokens (org_id, user_id, created_us);

-- The native role a connection gets when it asks for none.
ALTER TABLE resources ADD COLUMN default_role TEXT NOT NULL DEFAULT '';

-- Native roles a user, or the members of a group, may use on a resource.
-- `principal` is a user id (`principal_type` = 'user': an email change keeps
-- the grant) or a group name ('group').
CREATE TABLE role_grants (
    org_id         INTEGER NOT NULL REFERENCES organizations (id),
    resource_id    TEXT NOT NULL REFERENCES resources (id),
    principal_type TEXT NOT NULL,
    principal      TEXT NOT NULL,
    role           TEXT NOT NULL,
    created_us     INTEGER NOT NULL,
    PRIMARY KEY (org_id, resource_id, principal_type, principal, role)
) WITHOUT ROWID;
