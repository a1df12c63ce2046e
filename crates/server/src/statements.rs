//! `gatehouse.sessions.v1.StatementsService`: a session's statements with their outcomes,
//! which the public `core.v1` schema has no field for. Keys and scoping are the sessions API's.

use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};
use gatehouse_core::time::{Micros, now_micros};
use gatehouse_proto::gatehouse::sessions::v1::*;
use gatehouse_store::{StatementRecord, StatementStatus, StatementsPage};

use crate::convert::{duration, timestamp};
use crate::cursor::StatementsPosition;
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
            Ok(0) => MAX_PAGE_SIZE,
            Ok(size) if size <= MAX_PAGE_SIZE => size,
            _ => {
                return Err(invalid(format!(
                    "page_size must be 0 (as many as a page's {} MiB holds) to {MAX_PAGE_SIZE}",
                    PAGE_BYTES >> 20
                )));
            }
        };
        let session = self.session(&caller, required_id(req.session_id)?).await?;
        let from = match req.page_token {
            "" => None,
            token => Some(self.cursors().decode_statements_page(&session.id, token).ok_or_else(|| {
                invalid(
                    "page_token is not a token this method gave for this session, or one from before an upgrade: \
                     pass a next_page_token as it came, or none to start again",
                )
            })?),
        };
        // One more than the page, to tell whether another follows.
        let page = StatementsPage { after: from.map(|from| from.after), limit: page_size + 1, bytes: PAGE_BYTES };
        let mut page = self.store().statements_page(caller.org, &session.id, page).await.map_err(store_error)?;
        let more = match page.last() {
            _ if page.len() > page_size => true,
            // Cut short by its text, or the last: whether a statement follows tells.
            Some(last) => {
                let next = StatementsPage { after: Some(last.key()), limit: 1, bytes: 0 };
                !self.store().statements_page(caller.org, &session.id, next).await.map_err(store_error)?.is_empty()
            }
            None => false,
        };
        page.truncate(page_size);
        let listed = from.map_or(0, |from| from.listed);
        let next_page_token = match page.last() {
            Some(last) if more => self.cursors().encode_statements_page(
                &session.id,
                StatementsPosition { after: last.key(), listed: listed + page.len() as u64 },
            ),
            _ => String::new(),
        };
        let now = now_micros();
        // Numbered by place: 1 for the session's first statement.
        let numbers = (listed + 1)..;
        Response::ok(ListSessionStatementsResponse {
            statements: page.iter().zip(numbers).map(|(s, number)| statement(s, number, now)).collect(),
            next_page_token,
            ..Default::default()
        })
    }
}

/// The most statements a page holds.
const MAX_PAGE_SIZE: usize = 100_000;

/// The most a page holds, by [`StatementsPage::size`] (but always its first statement, up to
/// 1 MiB as recorded): a page fits in the 4 MiB a gRPC client takes by default, and in memory.
const PAGE_BYTES: usize = 3 << 20;

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
