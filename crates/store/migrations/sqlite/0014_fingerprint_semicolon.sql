-- Fingerprints no longer end with the statement's closing `;` (psql and pgbench send it,
-- drivers do not): the ones stored before lose it as `fingerprint()` now takes it off, and a
-- session that ran both spellings keeps one. Same in
-- migrations/postgres/0014_fingerprint_semicolon.sql.
INSERT OR IGNORE INTO session_fingerprints (org_id, session_id, fingerprint)
SELECT org_id, session_id, rtrim(fingerprint, '; ')
FROM session_fingerprints
WHERE fingerprint LIKE '%;' AND rtrim(fingerprint, '; ') <> '';

DELETE FROM session_fingerprints WHERE fingerprint LIKE '%;';
