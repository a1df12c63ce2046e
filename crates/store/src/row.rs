//! Reading and writing session rows (and reading organizations'), shared by both databases.

use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::{Identity, Session};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::StoreError;

/// Decodes a row selected with [`crate::sql::SESSION_COLUMNS`].
pub(crate) fn session_from_row<'r, R>(row: &'r R) -> Result<Session, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |col: &'static str| -> Result<String, StoreError> { Ok(row.try_get::<String, _>(col)?) };
    let list = |col: &'static str| -> Result<Vec<String>, StoreError> {
        let json = text(col)?;
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    };
    let formal = Identity {
        id: text("user_id")?,
        name: text("user_name")?,
        email: text("user_email")?,
        kind: text("user_formal_type")?,
        groups: list("user_groups")?,
        external_ids: list("user_external_ids")?,
    };
    let end_user = Identity {
        id: text("end_user_id")?,
        name: text("end_user_name")?,
        email: text("end_user_email")?,
        kind: text("end_user_type")?,
        groups: list("end_user_groups")?,
        external_ids: list("end_user_external_ids")?,
    };
    Ok(Session {
        id: text("id")?,
        start: row.try_get("start_us")?,
        end: row.try_get("end_us")?,
        client_ip: text("client_ip")?,
        server_ip: text("server_ip")?,
        sidecar: Sidecar {
            id: text("sidecar_id")?,
            name: text("sidecar_name")?,
            technology: text("sidecar_technology")?,
        },
        user: SessionUser {
            kind: text("user_type")?,
            username: text("user_username")?,
            formal: (formal != Identity::default()).then_some(formal),
            end_user: (end_user != Identity::default()).then_some(end_user),
            native_username: text("native_username")?,
        },
        resource: ResourceRef {
            kind: text("resource_type")?,
            id: text("resource_id")?,
            name: text("resource_name")?,
            technology: text("resource_technology")?,
        },
        connector: ConnectorRef { id: text("connector_id")?, name: text("connector_name")?, run_id: text("run_id")? },
        parent_session_id: text("parent_session_id")?,
    })
}

/// The many-valued fields of a session, as `(field code, value)` pairs.
pub(crate) fn many_values(session: &Session) -> Vec<(i64, &str)> {
    use crate::sql::{END_USER_GROUPS, USER_EXTERNAL_IDS, USER_GROUPS};
    let mut out = Vec::new();
    if let Some(formal) = &session.user.formal {
        out.extend(formal.groups.iter().map(|g| (USER_GROUPS, g.as_str())));
        out.extend(formal.external_ids.iter().map(|g| (USER_EXTERNAL_IDS, g.as_str())));
    }
    if let Some(end_user) = &session.user.end_user {
        out.extend(end_user.groups.iter().map(|g| (END_USER_GROUPS, g.as_str())));
    }
    out
}

pub(crate) fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// The columns of the statement an open session is running, as its connector last announced
/// it ([`crate::IngestEvent::Running`]); cleared once a statement at or after its seq is stored
/// ([`running_completed_by`]) or the connector ends the session. A session the lease sweep or
/// its connector's next run completes keeps it: the statement it was running when its connector
/// was lost, whose own report may never come.
pub(crate) const RUNNING_COLUMNS: &str = "running_seq, running_start_us, running_text";

/// Clears [`RUNNING_COLUMNS`], in an `UPDATE sessions SET`.
pub(crate) const RUNNING_CLEARED: &str = "running_seq = NULL, running_start_us = NULL, running_text = NULL";

/// Clears [`RUNNING_COLUMNS`] of a statement since completed: when the SQL expression `$max`
/// (the highest seq stored once a report's statements are in) is at or above it. (Its
/// connector reports the completed statement under a later seq; a statement with the
/// announcement's own seq is the real one all the same.) In an `UPDATE sessions SET`, whose
/// expressions all read the row as it was.
macro_rules! running_completed_by {
    ($max:literal) => {
        concat!(
            "running_seq = CASE WHEN running_seq <= ",
            $max,
            " THEN NULL ELSE running_seq END, running_start_us = CASE WHEN running_seq <= ",
            $max,
            " THEN NULL ELSE running_start_us END, running_text = CASE WHEN running_seq <= ",
            $max,
            " THEN NULL ELSE running_text END"
        )
    };
}
pub(crate) use running_completed_by;

/// A session's [`RUNNING_COLUMNS`], as read with its end (`end_us`): `(seq, start, text, end)`.
pub(crate) type Announced = (i64, i64, String, Option<i64>);

/// The statement a session announced ([`RUNNING_COLUMNS`], as read with `end_us`), which a page
/// of its statements holds where it started. Ingestion clears it once a statement at or after it
/// is stored, in the same transaction: no stored statement completed it. An open session is
/// still running it: no duration, rows or outcome yet. An ended session (the lease or its
/// connector's next run completed it) ran it until its end, when its connector was lost with
/// the outcome.
///
/// (Seq is the order the connector recorded statements, at their end: a query whose rows a
/// client fetches a few at a time, a JDBC fetch size or a cursor, is recorded when its portal
/// closes, after the statements run meanwhile, and is listed where it started.)
pub(crate) fn announced_statement((seq, start, text, session_end): Announced) -> Option<crate::StatementRecord> {
    let (duration, status) = match session_end {
        None => (0, crate::StatementStatus::Running),
        Some(end) => ((end - start).max(0), crate::StatementStatus::Unreported),
    };
    let seq = u64::try_from(seq).ok()?;
    Some(crate::StatementRecord { seq, start, duration, text, status, ..Default::default() })
}
