-- When a connector's key was revoked (`connectors revoke`): its key is then one nobody holds,
-- and `connectors list` says so. NULL: not revoked, or given a key since. Same column in
-- migrations/sqlite/0013_connector_revoked.sql.
ALTER TABLE connectors ADD COLUMN revoked_us BIGINT;
