//! Which terminations a connector still has to carry out, and whether a completed session may
//! yet resume: the same statements in both stores.

use gatehouse_core::{Micros, OrgId};

use super::builder::Arg;
use super::exec::{Columns, Exec};
use crate::StoreError;
use crate::model::{LEASE_END_REASON, TerminationRecord};

/// Of a completed session `s`: the lease sweep ended it when its connector's run fell silent,
/// and no later run took that one over, so the run may yet be heard again, with the session
/// live behind a partition. Binds one value, [`LEASE_END_REASON`].
const RESUMABLE: &str = "s.end_reason = ? AND EXISTS ( \
     SELECT 1 FROM connector_runs r WHERE r.org_id = s.org_id AND r.connector_id = s.connector_id \
       AND r.run_id = s.run_id AND r.lapsed_us IS NOT NULL AND r.taken_over_us IS NULL)";

/// Whether the completed session `session_id` may yet resume (see [`RESUMABLE`]): a
/// termination asked of it is carried out if it does.
pub(crate) async fn session_may_resume(db: &impl Exec, org: OrgId, session_id: &str) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT 1 AS found FROM sessions s WHERE s.org_id = ? AND s.id = ? AND s.end_us IS NOT NULL AND {RESUMABLE}"
    );
    let args = vec![Arg::Int(org.0), Arg::Text(session_id.into()), Arg::Text(LEASE_END_REASON.into())];
    Ok(db.read_optional(&sql, args).await?.is_some())
}

/// Terminations since `since` of `connector_id` whose sessions are open, or may resume.
pub(crate) async fn pending_terminations(
    db: &impl Exec,
    org: OrgId,
    connector_id: &str,
    since: Micros,
) -> Result<Vec<TerminationRecord>, StoreError> {
    let sql = format!(
        "SELECT t.id, t.session_id, t.connector_id, t.reason, t.created_us FROM terminations t \
         JOIN sessions s ON s.org_id = t.org_id AND s.id = t.session_id \
         WHERE t.org_id = ? AND t.connector_id = ? AND t.created_us >= ? AND (s.end_us IS NULL OR ({RESUMABLE})) \
         ORDER BY t.created_us"
    );
    let args =
        vec![Arg::Int(org.0), Arg::Text(connector_id.into()), Arg::Int(since), Arg::Text(LEASE_END_REASON.into())];
    let rows = db.read_all(&sql, args).await?;
    rows.iter()
        .map(|row| {
            Ok(TerminationRecord {
                id: row.text("id")?,
                session_id: row.text("session_id")?,
                connector_id: row.text("connector_id")?,
                reason: row.text("reason")?,
                created: row.int("created_us")?,
            })
        })
        .collect()
}
