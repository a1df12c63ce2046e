-- Identities: the people and machines behind connections, their access
-- tokens, and which native database roles they may use on each resource.
-- Same tables and meaning as migrations/sqlite/0004_identity.sql.

-- A human (email, name) or a machine (name). Connections name a user by
-- `lookup`: the email or machine name, case-folded by the application, so
-- `Alice@Example.com` and `alice@example.com` are one user.
CREATE TABLE users (
    pk           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       bigint NOT NULL REFERENCES organizations (id),
    id           text COLLATE "C" NOT NULL UNIQUE,
    type         text COLLATE "C" NOT NULL,
    lookup       text COLLATE "C" NOT NULL,
    email        text COLLATE "C" NOT NULL DEFAULT '',
    name         text COLLATE "C" NOT NULL DEFAULT '',
    -- JSON arrays of text.
    groups       text COLLATE "C" NOT NULL DEFAULT '[]',
    external_ids text COLLATE "C" NOT NULL DEFAULT '[]',
    disabled     boolean NOT NULL DEFAULT false,
    created_us   bigint NOT NULL,
    updated_us   bigint NOT NULL,
    UNIQUE (org_id, type, lookup)
);

-- Access tokens `ght_<prefix>_<secret>`: a connection's password. Only the
-- SHA-256 of the whole token is kept.
CREATE TABLE access_tokens (
    pk           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       bigint NOT NULL REFERENCES organizations (id),
    user_id      text COLLATE "C" NOT NULL REFERENCES users (id),
    prefix       text COLLATE "C" NOT NULL UNIQUE,
    secret_hash  bytea NOT NULL,
    name         text COLLATE "C" NOT NULL DEFAULT '',
    created_us   bigint NOT NULL,
    expires_us   bigint NOT NULL,
    last_used_us bigint,
    revoked_us   bigint
);
CREATE INDEX access_tokens_user ON access_tokens (org_id, user_id, created_us);

-- The native role a connection gets when it asks for none.
ALTER TABLE resources ADD COLUMN default_role text COLLATE "C" NOT NULL DEFAULT '';

-- Native roles a user, or the members of a group, may use on a resource.
-- `principal` is a user id (`principal_type` = 'user': an email change keeps
-- the grant) or a group name ('group').
CREATE TABLE role_grants (
    org_id         bigint NOT NULL REFERENCES organizations (id),
    resource_id    text COLLATE "C" NOT NULL REFERENCES resources (id),
    principal_type text COLLATE "C" NOT NULL,
    principal      text COLLATE "C" NOT NULL,
    role           text COLLATE "C" NOT NULL,
    created_us     bigint NOT NULL,
    PRIMARY KEY (org_id, resource_id, principal_type, principal, role)
);
