-- The hourly rollup: same table and meaning as migrations/sqlite/0005_rollup.sql.
-- Sessions counted per organization, start hour (the start time floored to
-- the hour, in microseconds) and value of a few single-valued columns, so
-- that aggregations over long windows read one row per hour and value
-- instead of one per session. `dim` says which column `key` is a value of:
-- 0 counts every session (key ''), the others are fixed codes, listed with
-- their columns in `sql/rollup.rs` (`DIMS`), never reused. Every write that
-- inserts or deletes sessions keeps it exact in its own transaction; rows
-- that come to 0 are deleted.
CREATE TABLE session_rollup (
    org_id  bigint NOT NULL,
    hour_us bigint NOT NULL,
    dim     integer NOT NULL,
    key     text COLLATE "C" NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (org_id, dim, hour_us, key)
);

-- The sessions stored so far, one statement per dim.
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 0, '', COUNT(*)
FROM sessions GROUP BY org_id, hour_start;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 1, resource_technology, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, resource_technology;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 2, resource_id, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, resource_id;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 3, resource_name, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, resource_name;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 4, resource_type, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, resource_type;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 5, connector_id, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, connector_id;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 6, connector_name, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, connector_name;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 7, user_type, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, user_type;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 8, user_formal_type, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, user_formal_type;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 9, user_email, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, user_email;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 10, user_username, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, user_username;
INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
SELECT org_id, start_us - ((start_us % 3600000000) + 3600000000) % 3600000000 AS hour_start, 11, native_username, COUNT(*)
FROM sessions GROUP BY org_id, hour_start, native_username;

-- A session reported to end before it started may end before a window it
-- started in, so the rollup counts it where the window does not: aggregations
-- find those few here, to take them away.
CREATE INDEX sessions_backwards ON sessions (org_id, start_us) WHERE end_us < start_us;

ANALYZE session_rollup;
