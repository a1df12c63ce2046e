//! The `core.v1.SessionsService` handlers: thin wrappers over the store and
//! the listing logic.

use std::sync::Arc;

use connectrpc::{ConnectError, ErrorCode, RequestContext, Response, ServiceRequest, ServiceResult};
use gatehouse_core::Caller;
use gatehouse_core::time::format_rfc3339_micros;
use gatehouse_core::time::now_micros;
use gatehouse_proto::core::v1::*;
use gatehouse_store::{IngestEvent, StatementRecord, StatementsPage, Store, TerminationRecord};

use crate::aggregations::{AggregationRequest, aggregate};
use crate::clock::StoreClock;
use crate::convert::{session_object, timestamp};
use crate::cursor::CursorCodec;
use crate::error::{invalid, store_error};
use crate::listing::{ListRequest, list_page};
use crate::metrics::Metrics;
use crate::terminations::TerminationBus;

pub struct SessionsApi {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
    terminations: Arc<TerminationBus>,
    /// When terminations are asked for, by the clock connectors' pending ones are read by.
    clock: Arc<StoreClock>,
    metrics: Arc<Metrics>,
}

impl SessionsApi {
    pub fn new(
        store: Arc<dyn Store>,
        cursors: CursorCodec,
        terminations: Arc<TerminationBus>,
        clock: Arc<StoreClock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, cursors, terminations, clock, metrics }
    }

    pub(crate) fn cursors(&self) -> &CursorCodec {
        &self.cursors
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The caller's session with this id: as written, or a UUID in the lowercase connectors
    /// write, as `id:` queries find it. An id that no session can have (one with a NUL, which
    /// PostgreSQL cannot even compare) is simply not found.
    pub(crate) async fn session(&self, caller: &Caller, id: &str) -> Result<gatehouse_core::Session, ConnectError> {
        if id.contains('\0') {
            return Err(not_found(id));
        }
        let mut session = self.store.get_session(caller.org, id).await.map_err(store_error)?;
        let stored = gatehouse_query::Field::Id.stored_spelling(id.to_owned());
        if session.is_none() && stored != id {
            session = self.store.get_session(caller.org, &stored).await.map_err(store_error)?;
        }
        session.ok_or_else(|| not_found(id))
    }

    /// Requests the end of a live session; the connector carrying it is told
    /// at once through its termination stream. A connector id given must be the session's;
    /// `None` takes the session's own.
    async fn terminate(
        &self,
        caller: &Caller,
        session_id: &str,
        given_connector_id: Option<&str>,
    ) -> Result<SessionShutdown, ConnectError> {
        let session = self.session(caller, session_id).await?;
        let session_id = session.id.as_str();
        let connector_id = session.connector.id.as_str();
        if let Some(given) = given_connector_id.filter(|given| *given != connector_id) {
            return Err(invalid(format!(
                "session {session_id:?} runs through connector {connector_id:?}, not {given:?}"
            )));
        }
        // Completed by the lease while its connector could not be heard, a session may be live
        // still behind a partition: the termination waits for the connector to be heard again.
        if session.end.is_some() && !self.store.session_may_resume(caller.org, session_id).await.map_err(store_error)? {
            return Err(ConnectError::new(
                ErrorCode::FailedPrecondition,
                format!("session {session_id:?} has already completed"),
            ));
        }
        let requested = TerminationRecord {
            id: crate::registry::new_id("term"),
            session_id: session_id.to_owned(),
            connector_id: connector_id.to_owned(),
            reason: format!("by API key {}", caller.key_prefix),
            created: self.clock.now(),
        };
        // Asked again while the first is on its way: the same termination, not another.
        let pending_since = requested.created - crate::connectors::PENDING_WINDOW_US;
        let termination =
            self.store.create_termination(caller.org, &requested, pending_since).await.map_err(store_error)?;
        if termination.id != requested.id {
            return Ok(shutdown(termination));
        }
        tracing::info!(session = session_id, termination = %termination.id, key = %caller.key_prefix, "session termination requested");
        Metrics::add(&self.metrics.terminations_requested_total, 1);
        self.terminations.publish(caller.org, termination.clone());
        // Demo and imported sessions name connectors that were never registered: none of
        // them will ever end the session, so it ends here.
        let connectors = self.store.list_connectors(caller.org).await.map_err(store_error)?;
        if !connectors.iter().any(|c| c.id == session.connector.id) {
            let end = IngestEvent::End {
                session_id: session_id.to_owned(),
                end: termination.created,
                reason: "terminated".to_owned(),
            };
            self.store.ingest(caller.org, &session.connector.id, &[end]).await.map_err(store_error)?;
        }
        Ok(shutdown(termination))
    }
}

pub(crate) fn required_id(session_id: &str) -> Result<&str, ConnectError> {
    let id = session_id.trim();
    if id.is_empty() {
        return Err(invalid("session_id is required"));
    }
    Ok(id)
}

/// Names the id, cut short: it comes from the caller and may be of any length.
fn not_found(session_id: &str) -> ConnectError {
    const SHOWN: usize = 64;
    let message = match session_id.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("no session with id {:?}…", &session_id[..cut]),
        None => format!("no session with id {session_id:?}"),
    };
    ConnectError::new(ErrorCode::NotFound, message)
}

/// The most a transcript holds, by [`StatementsPage::size`] (its text, mostly), which a reply
/// holds whole in memory: past it, the transcript ends with [`TRANSCRIPT_CUT`].
const TRANSCRIPT_BYTES: usize = 64 << 20;

/// The last line of a transcript cut at [`TRANSCRIPT_BYTES`], after its time.
const TRANSCRIPT_CUT: &str = "\t-- [Gatehouse: the transcript stops here, at 64 MiB of statement text; \
    gatehouse.sessions.v1.StatementsService/ListSessionStatements (gatehouse sessions statements) \
    pages through every statement]\n";

/// Statements a transcript reads at a time.
const TRANSCRIPT_PAGE: usize = 10_000;

/// A transcript's line for `statement`: its start time, a tab, its text, escaped as
/// [`gatehouse_core::display::push_escaped`] does: lines stay statements, every text can be read
/// back exactly, and a transcript read in a terminal shows an audited user's escape sequences
/// rather than acting on them.
fn push_line(out: &mut String, statement: &StatementRecord) {
    // One width, so that lines sort as text in time order.
    out.push_str(&format_rfc3339_micros(statement.start));
    out.push('\t');
    gatehouse_core::display::push_escaped(out, &statement.text);
    out.push('\n');
}

fn shutdown(termination: TerminationRecord) -> SessionShutdown {
    SessionShutdown {
        session_id: termination.session_id,
        connector_id: termination.connector_id,
        created_at: timestamp(termination.created).into(),
        ..Default::default()
    }
}

/// The caller the admission middleware authenticated ([`crate::admission::admit`]).
pub(crate) fn caller(ctx: &RequestContext) -> Result<Caller, ConnectError> {
    crate::auth::authenticated(ctx)
}

impl SessionsService for SessionsApi {
    async fn get_session(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, GetSessionRequest>,
    ) -> ServiceResult<GetSessionResponse> {
        let caller = caller(&ctx)?;
        let session = self.session(&caller, required_id(req.session_id)?).await?;
        Response::ok(GetSessionResponse { session: session_object(session, now_micros()).into(), ..Default::default() })
    }

    async fn list_sessions_v2(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, ListSessionsV2Request>,
    ) -> ServiceResult<ListSessionsV2Response> {
        let caller = caller(&ctx)?;
        let request = ListRequest {
            limit: req.limit,
            query: req.query,
            sort_by: req.sort_by,
            start_timestamp: req.start_timestamp,
            end_timestamp: req.end_timestamp,
            cursor: req.cursor,
        };
        let page = list_page(self.store.as_ref(), &self.cursors, caller.org, request).await?;
        let now = page.now;
        Response::ok(ListSessionsV2Response {
            list_metadata: ListMetadata {
                count: page.sessions.len() as i32,
                next_cursor: page.after.clone(),
                after: page.after,
                before: page.before,
                ..Default::default()
            }
            .into(),
            sessions: page.sessions.into_iter().map(|s| session_object(s, now)).collect(),
            ..Default::default()
        })
    }

    async fn list_session_aggregations(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, ListSessionAggregationsRequest>,
    ) -> ServiceResult<ListSessionAggregationsResponse> {
        let caller = caller(&ctx)?;
        let request = AggregationRequest {
            query: req.query,
            start_timestamp: req.start_timestamp,
            end_timestamp: req.end_timestamp,
            histogram_interval: req.histogram_interval,
            histogram_group_by_fields: req.histogram_group_by_fields.iter().copied().collect(),
            mode: req.mode,
        };
        Response::ok(aggregate(self.store.as_ref(), caller.org, request).await?)
    }

    async fn create_session_termination(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, CreateSessionTerminationRequest>,
    ) -> ServiceResult<CreateSessionTerminationResponse> {
        let caller = caller(&ctx)?;
        let (session_id, connector_id) = (req.session_id.trim(), req.connector_id.trim());
        if session_id.is_empty() || connector_id.is_empty() {
            return Err(invalid("session_id and connector_id are both required"));
        }
        let shutdown = self.terminate(&caller, session_id, Some(connector_id)).await?;
        Response::ok(CreateSessionTerminationResponse { session_shutdown: shutdown.into(), ..Default::default() })
    }

    async fn cancel_session(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, CancelSessionRequest>,
    ) -> ServiceResult<CancelSessionResponse> {
        let caller = caller(&ctx)?;
        // The older name's clients may send the session alone (the spec requires the connector
        // only of CreateSessionTermination): the store knows which connector carries it.
        let connector_id = Some(req.connector_id.trim()).filter(|id| !id.is_empty());
        let shutdown = self.terminate(&caller, required_id(req.session_id)?, connector_id).await?;
        Response::ok(CancelSessionResponse { session_shutdown: shutdown.into(), ..Default::default() })
    }

    async fn get_session_transcript(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, GetSessionTranscriptRequest>,
    ) -> ServiceResult<GetSessionTranscriptResponse> {
        let caller = caller(&ctx)?;
        // Scoped like every read: another organization's session is not found.
        let session = self.session(&caller, required_id(req.session_id)?).await?;
        // Read a page at a time, each costing what it holds, until the statements end or one
        // does not fit.
        let (mut text, mut held, mut after) = (String::new(), 0usize, None);
        'pages: loop {
            let page = StatementsPage { after, limit: TRANSCRIPT_PAGE, bytes: TRANSCRIPT_BYTES.saturating_sub(held) };
            let statements = self.store.statements_page(caller.org, &session.id, page).await.map_err(store_error)?;
            let Some(last) = statements.last() else { break };
            after = Some(last.key());
            for statement in &statements {
                held += StatementsPage::size(statement);
                if held > TRANSCRIPT_BYTES && !text.is_empty() {
                    text.push_str(&format_rfc3339_micros(statement.start));
                    text.push_str(TRANSCRIPT_CUT);
                    break 'pages;
                }
                push_line(&mut text, statement);
            }
        }
        Response::ok(GetSessionTranscriptResponse { transcript: text, ..Default::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_escape_what_a_terminal_would_act_on() {
        let statement = |text: &str| StatementRecord { start: 0, text: text.to_owned(), ..StatementRecord::default() };
        let text = "select 'a\u{1b}[2J\u{1b}]0;owned\u{7}b\u{8}\tz\u{7f}\u{85}\u{202e}é', '\\x1b'\r\n";
        let mut out = String::new();
        push_line(&mut out, &statement(text));
        assert_eq!(
            out,
            "1970-01-01T00:00:00.000000Z\tselect 'a\\x1b[2J\\x1b]0;owned\\x07b\\x08\tz\\x7f\\u{85}\\u{202e}é', '\\\\x1b'\\r\\n\n"
        );
        assert!(!out.trim_end_matches('\n').chars().any(|c| c.is_control() && c != '\t'), "{out:?}");
    }
}
