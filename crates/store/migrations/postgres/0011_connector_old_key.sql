-- A connector's previous key, which `connectors rotate-key --overlap` lets work until
-- `old_key_until_us` (same columns in migrations/sqlite/0012_connector_old_key.sql), so a
-- connector keeps reporting while it is restarted with its new key. NULL: none.
ALTER TABLE connectors ADD COLUMN old_key_prefix TEXT;
ALTER TABLE connectors ADD COLUMN old_key_hash BYTEA;
ALTER TABLE connectors ADD COLUMN old_key_until_us BIGINT;
CREATE UNIQUE INDEX connectors_old_key_prefix ON connectors (old_key_prefix);
