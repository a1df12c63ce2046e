-- When a session's end counts as recorded, for walks sorted by end time or duration (same
-- column in migrations/sqlite/0011_end_recorded.sql). A walk takes each session's key as it
-- stood at its `now`: ended only if its end was recorded by then. `end_us` cannot tell: it is
-- the connector's time, and an end reaches the store late (report batching, a spool replayed
-- hours later, the lease sweep ending a session when its run was last heard).
--
-- The clock of the replica that wrote the end, or the end itself when that is later (a
-- connector's clock ahead): never before `end_us`. A session stored already ended counts as
-- recorded at its end, as no walk saw it open. NULL while the session is open,
-- and for ends stored before this column.
ALTER TABLE sessions ADD COLUMN end_recorded_us bigint;
-- The ends stored before it have none: listings take them as recorded at their end
-- (`COALESCE(end_recorded_us, end_us)`), rather than a backfill rewriting every session.
-- The sessions a walk sees still active though they have ended since its `now`.
CREATE INDEX sessions_end_recorded ON sessions (org_id, end_recorded_us) WHERE end_recorded_us IS NOT NULL;
