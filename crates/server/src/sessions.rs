//! The `core.v1.SessionsService` handlers: thin wrappers over the store and
//! the listing logic.

use std::sync::Arc;

use connectrpc::{ConnectError, ErrorCode, RequestContext, Response, ServiceRequest, ServiceResult};
use gatehouse_core::Caller;
use gatehouse_core::time::now_micros;
use gatehouse_proto::core::v1::*;
use gatehouse_store::Store;

use crate::convert::session_object;
use crate::cursor::CursorCodec;
use crate::error::{invalid, store_error};
use crate::listing::{ListRequest, list_page};

pub struct SessionsApi {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
}

impl SessionsApi {
    pub fn new(store: Arc<dyn Store>, cursors: CursorCodec) -> Self {
        Self { store, cursors }
    }
}

/// The caller the authentication interceptor resolved.
fn caller(ctx: &RequestContext) -> Result<Caller, ConnectError> {
    ctx.extensions().get::<Caller>().cloned().ok_or_else(|| {
        ConnectError::new(ErrorCode::Internal, "request reached a handler unauthenticated (this is a bug)")
    })
}

fn not_yet(method: &str) -> ConnectError {
    ConnectError::new(ErrorCode::Unimplemented, format!("{method} is not implemented yet"))
}

impl SessionsService for SessionsApi {
    async fn get_session(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, GetSessionRequest>,
    ) -> ServiceResult<GetSessionResponse> {
        let caller = caller(&ctx)?;
        let id = req.session_id.trim();
        if id.is_empty() {
            return Err(invalid("session_id is required"));
        }
        let session = self.store.get_session(caller.org, id).await.map_err(store_error)?;
        let session =
            session.ok_or_else(|| ConnectError::new(ErrorCode::NotFound, format!("no session with id {id:?}")))?;
        Response::ok(GetSessionResponse {
            session: session_object(&session, now_micros()).into(),
            ..Default::default()
        })
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
        let now = now_micros();
        Response::ok(ListSessionsV2Response {
            list_metadata: ListMetadata {
                count: page.sessions.len() as i32,
                next_cursor: page.after.clone(),
                after: page.after,
                before: page.before,
                ..Default::default()
            }
            .into(),
            sessions: page.sessions.iter().map(|s| session_object(s, now)).collect(),
            ..Default::default()
        })
    }

    async fn list_session_aggregations(
        &self,
        ctx: RequestContext,
        _req: ServiceRequest<'_, ListSessionAggregationsRequest>,
    ) -> ServiceResult<ListSessionAggregationsResponse> {
        caller(&ctx)?;
        Err(not_yet("ListSessionAggregations"))
    }

    async fn create_session_termination(
        &self,
        ctx: RequestContext,
        _req: ServiceRequest<'_, CreateSessionTerminationRequest>,
    ) -> ServiceResult<CreateSessionTerminationResponse> {
        caller(&ctx)?;
        Err(not_yet("CreateSessionTermination"))
    }

    async fn cancel_session(
        &self,
        ctx: RequestContext,
        _req: ServiceRequest<'_, CancelSessionRequest>,
    ) -> ServiceResult<CancelSessionResponse> {
        caller(&ctx)?;
        Err(not_yet("CancelSession"))
    }

    async fn get_session_transcript(
        &self,
        ctx: RequestContext,
        _req: ServiceRequest<'_, GetSessionTranscriptRequest>,
    ) -> ServiceResult<GetSessionTranscriptResponse> {
        caller(&ctx)?;
        Err(not_yet("GetSessionTranscript"))
    }
}
