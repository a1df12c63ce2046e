//! `gatehouse.sessions.v1.StatementsService`: a session's statements with their outcomes,
//! which the public `core.v1` schema has no field for. Keys and scoping are the sessions API's.

use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};
use gatehouse_core::time::{Micros, now_micros};
use gatehouse_proto::gatehouse::sessions::v1::*;
use gatehouse_store::{StatementRecord, StatementStatus};

use crate::convert::{duration, timestamp};
use crate::error::{invalid, store_error};
use crate::sessions::{SessionsApi, caller, required_id};

impl StatementsService for SessionsApi {
    async fn list_session_statements(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, ListSessionStatementsRequest>,
    ) -> ServiceResult<ListSessionStatementsResponse> {
        let caller = caller(&ctx)?;
        let page_size = match usize::try_from(req.page_size) {
            Ok(0) => usize::MAX,
            Ok(size) if size <= MAX_PAGE_SIZE => size,
            _ => return Err(invalid(format!("page_size must be 0 (every statement) to {MAX_PAGE_SIZE}"))),
        };
        let session = self.session(&caller, required_id(req.session_id)?).await?;
        let after = match req.page_token {
            "" => None,
            token => Some(self.cursors().decode_statements_page(&session.id, token).ok_or_else(|| {
                invalid(
                    "page_token is not a token this method gave for this session: pass a next_page_token as it \
                     came, or none",
                )
            })?),
        };
        let statements = self.store().statements(caller.org, &session.id).await.map_err(store_error)?;
        // In (start, seq) order, the store's: a page starts after the last key of the one before.
        let start = after.map_or(0, |after| statements.partition_point(|s| (s.start, s.seq) <= after));
        let page = &statements[start..];
        let page = &page[..page.len().min(page_size)];
        let next_page_token = match (page.last(), start + page.len() < statements.len()) {
            (Some(last), true) => self.cursors().encode_statements_page(&session.id, (last.start, last.seq)),
            _ => String::new(),
        };
        let now = now_micros();
        // Numbered by place: 1 for the session's first statement.
        let numbers = (start as u64 + 1)..;
        Response::ok(ListSessionStatementsResponse {
            statements: page.iter().zip(numbers).map(|(s, number)| statement(s, number, now)).collect(),
            next_page_token,
            ..Default::default()
        })
    }
}

/// The most statements a page holds.
const MAX_PAGE_SIZE: usize = 100_000;

fn statement(s: &StatementRecord, number: u64, now: Micros) -> SessionStatement {
    let lasted = match s.status {
        StatementStatus::Running => (now - s.start).max(0),
        StatementStatus::Completed | StatementStatus::Unreported => s.duration,
    };
    SessionStatement {
        seq: number,
        start_time: timestamp(s.start).into(),
        duration: duration(lasted).into(),
        text: s.text.clone(),
        rows: s.rows,
        bytes_sent: s.bytes_sent,
        sqlstate: s.sqlstate.clone(),
        status: s.status.as_str().to_owned(),
        rows_changed: s.rows_changed,
        ..Default::default()
    }
}
