//! `gatehouse.sessions.v1.StatementsService`: a session's statements with their outcomes,
//! which the public `core.v1` schema has no field for. Keys and scoping are the sessions API's.

use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};
use gatehouse_core::time::{Micros, now_micros};
use gatehouse_proto::gatehouse::sessions::v1::*;
use gatehouse_store::{StatementRecord, StatementStatus};

use crate::convert::{duration, timestamp};
use crate::error::store_error;
use crate::sessions::{SessionsApi, caller, required_id};

impl StatementsService for SessionsApi {
    async fn list_session_statements(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, ListSessionStatementsRequest>,
    ) -> ServiceResult<ListSessionStatementsResponse> {
        let caller = caller(&ctx)?;
        let session = self.session(&caller, required_id(req.session_id)?).await?;
        let statements = self.store().statements(caller.org, &session.id).await.map_err(store_error)?;
        let now = now_micros();
        Response::ok(ListSessionStatementsResponse {
            statements: statements.iter().map(|s| statement(s, now)).collect(),
            ..Default::default()
        })
    }
}

fn statement(s: &StatementRecord, now: Micros) -> SessionStatement {
    let lasted = match s.status {
        StatementStatus::Running => (now - s.start).max(0),
        StatementStatus::Completed | StatementStatus::Unreported => s.duration,
    };
    SessionStatement {
        seq: s.seq,
        start_time: timestamp(s.start).into(),
        duration: duration(lasted).into(),
        text: s.text.clone(),
        rows: s.rows,
        bytes_sent: s.bytes_sent,
        sqlstate: s.sqlstate.clone(),
        status: s.status.as_str().to_owned(),
        ..Default::default()
    }
}
