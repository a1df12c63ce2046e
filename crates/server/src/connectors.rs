//! `gatehouse.connector.v1.ConnectorService`: what connectors report, and
//! the terminations they watch for.

use std::sync::Arc;
use std::time::Duration;

use buffa_types::google::protobuf::Timestamp;
use connectrpc::{ConnectError, ErrorCode, RequestContext, Response, ServiceRequest, ServiceResult, ServiceStream};
use futures::StreamExt;
use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::{Identity, Micros, Session};
use gatehouse_proto::gatehouse::connector::v1 as wire;
use gatehouse_proto::gatehouse::connector::v1::event::Kind;
use gatehouse_store::{
    IngestEvent, PreviousRun, StatementRecord, StatementStatus, Store, StoreError, TerminationRecord,
};

use crate::auth::ConnectorCaller;
use crate::clock::StoreClock;
use crate::convert::timestamp;
use crate::error::{invalid, store_error};
use crate::identity::{Verifier, identity_from_wire};
use crate::lease::StoreFailures;
use crate::metrics::Metrics;
use crate::terminations::TerminationBus;

/// How often connectors heartbeat, and how long the control plane waits
/// before completing the sessions of one it no longer hears.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub heartbeat: Duration,
    pub lease: Duration,
}

impl Default for Lease {
    fn default() -> Self {
        Self { heartbeat: Duration::from_secs(10), lease: Duration::from_secs(60) }
    }
}

/// Terminations this recent are re-sent to a connector that (re)connects.
pub(crate) const PENDING_WINDOW_US: Micros = 3_600_000_000;

/// Runs a Hello may take over from: each is work in the Hello's transaction. The connector
/// names at most 16.
const MAX_PREVIOUS_RUNS: usize = 64;

pub struct ConnectorApi {
    store: Arc<dyn Store>,
    bus: Arc<TerminationBus>,
    lease: Lease,
    /// When runs are heard, by the clock the lease sweep reads.
    clock: Arc<StoreClock>,
    metrics: Arc<Metrics>,
    identities: Verifier,
    /// Where failures that may have lost a heartbeat go, for the lease sweep to hold off.
    store_failures: Arc<StoreFailures>,
}

impl ConnectorApi {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<TerminationBus>,
        lease: Lease,
        clock: Arc<StoreClock>,
        metrics: Arc<Metrics>,
        store_failures: Arc<StoreFailures>,
    ) -> Self {
        Self { store, bus, lease, clock, metrics, identities: Verifier::new(), store_failures }
    }

    /// A store failure of a call that records hearing from a run (Hello, Heartbeat, Report):
    /// one that may have lost it holds the lease sweep off.
    fn hearing_failed(&self, error: StoreError) -> ConnectError {
        self.store_failures.note(&error);
        store_error(error)
    }
}

fn connector(ctx: &RequestContext) -> Result<ConnectorCaller, ConnectError> {
    crate::auth::authenticated(ctx)
}

type TimestampField = buffa::MessageField<Timestamp, buffa::Inline<Timestamp>>;

/// A reported time in microseconds, `None` when absent. A connector reports what its clock
/// read: a time before 2000 or over a day past the control plane's `now` is no reading of a
/// clock, and would stretch every histogram and duration of the organization.
fn micros(t: &TimestampField, now: Micros, ahead: Micros) -> Result<Option<Micros>, ConnectError> {
    /// 2000-01-01T00:00:00Z.
    const EARLIEST_SECONDS: i64 = 946_684_800;
    const DAY_SECONDS: i64 = 86_400;
    let latest = now / 1_000_000 + DAY_SECONDS;
    t.as_option()
        .map(|t| {
            in_micros(t.seconds, t.nanos, EARLIEST_SECONDS..=latest)
                // What a connector reports has happened by the time the report arrives: its
                // clock runs `ahead` of ours. Taken as is, a session that has ended would end
                // in the future, and listings by end time or duration (which take a session as
                // ended once its end is past) would hold it active.
                .map(|at| (at - ahead).min(now))
                .ok_or_else(|| {
                    invalid("a reported time must be after 2000 and at most a day ahead of the control plane's clock")
                })
        })
        .transpose()
}

/// How far the latest time of a report's `events` (a session's start or end, a statement's
/// start) is ahead of `now`, up to a day: what the reporting connector's clock runs ahead of
/// ours at least. The report's times are moved back by that much, together, so that none is
/// after its arrival and the intervals between them stay as they were.
fn ahead_of(events: &[wire::Event], now: Micros) -> Micros {
    let at = |t: &TimestampField| {
        t.as_option()
            .map_or(i64::MIN, |t| t.seconds.saturating_mul(1_000_000).saturating_add(i64::from(t.nanos) / 1_000))
    };
    let latest = events.iter().filter_map(|event| match &event.kind {
        Some(Kind::Start(start)) => Some(at(&start.start_time)),
        Some(Kind::Statement(statement)) => Some(at(&statement.start_time)),
        Some(Kind::Running(running)) => Some(at(&running.start_time)),
        Some(Kind::End(end)) => Some(at(&end.end_time)),
        None => None,
    });
    latest.max().map_or(0, |latest| latest.saturating_sub(now).clamp(0, 86_400_000_000))
}

/// What a session start must hold to be a connection a connector saw: a resource of its
/// organization, addresses, and a user type the API knows.
fn check_start(start: &wire::SessionStart, resource_known: bool) -> Result<(), ConnectError> {
    if !start.resource_id.is_empty() && !resource_known {
        return Err(invalid("a session start names a resource that is not one of this organization's"));
    }
    for (field, address) in
        [("client_ip_address", &start.client_ip_address), ("server_ip_address", &start.server_ip_address)]
    {
        if !address.is_empty() && address.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(format!("a session start's {field} is not an IP address")));
        }
    }
    if !matches!(start.user_type.as_str(), "" | "native" | "human" | "machine") {
        return Err(invalid("a session start's user_type is native, human or machine"));
    }
    Ok(())
}

/// A statement's reported duration in microseconds (0 when absent): at most a century.
fn duration_micros(d: Option<&buffa_types::google::protobuf::Duration>) -> Result<i64, ConnectError> {
    const SECONDS: std::ops::RangeInclusive<i64> = 0..=100 * 366 * 86_400;
    d.map_or(Ok(0), |d| {
        in_micros(d.seconds, d.nanos, SECONDS)
            .ok_or_else(|| invalid("a statement's duration must be between 0 and a century"))
    })
}

/// Seconds and nanoseconds in microseconds, when the seconds are in `range` and the
/// nanoseconds within a second.
fn in_micros(seconds: i64, nanos: i32, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    (range.contains(&seconds) && (0..1_000_000_000).contains(&nanos))
        .then(|| seconds * 1_000_000 + i64::from(nanos) / 1_000)
}

fn termination_message(t: &TerminationRecord) -> wire::Termination {
    wire::Termination {
        session_id: t.session_id.clone(),
        created_at: timestamp(t.created).into(),
        reason: t.reason.clone(),
        termination_id: t.id.clone(),
        ..Default::default()
    }
}

impl wire::ConnectorService for ConnectorApi {
    async fn hello(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, wire::HelloRequest>,
    ) -> ServiceResult<wire::HelloResponse> {
        let caller = connector(&ctx)?;
        let request = req.to_owned_message();
        if request.run_id.trim().is_empty() {
            return Err(invalid("run_id is required"));
        }
        if request.previous_run_ids.len() > MAX_PREVIOUS_RUNS || request.previous_runs.len() > MAX_PREVIOUS_RUNS {
            return Err(invalid(format!("too many previous_run_ids or previous_runs (at most {MAX_PREVIOUS_RUNS})")));
        }
        let now = self.clock.now();
        let previous: Vec<PreviousRun> = request
            .previous_run_ids
            .iter()
            .filter(|run| !run.is_empty())
            .map(|run| PreviousRun {
                run_id: run.clone(),
                // The latest said; a time no clock would read is no sign of life, and refusing
                // it would keep the connector from registering.
                alive: request
                    .previous_runs
                    .iter()
                    .filter(|said| said.run_id == *run)
                    .filter_map(|said| micros(&said.alive_at, now, 0).ok().flatten())
                    .max(),
            })
            .collect();
        let completed = self
            .store
            .connector_hello(caller.org, &caller.connector_id, &request.run_id, &previous, now)
            .await
            .map_err(|e| self.hearing_failed(e))?;
        if completed > 0 {
            tracing::info!(connector = %caller.connector_name, completed, "completed sessions a previous run left open");
        }
        let resources = self.store.list_resources(caller.org).await.map_err(store_error)?;
        Response::ok(wire::HelloResponse {
            connector_id: caller.connector_id,
            connector_name: caller.connector_name,
            // Rounded up: a connector that reads only the seconds must not take 0 for "unsaid".
            heartbeat_seconds: self.lease.heartbeat.as_secs_f64().ceil() as u32,
            heartbeat_millis: self.lease.heartbeat.as_millis().try_into().unwrap_or(u32::MAX),
            lease_seconds: self.lease.lease.as_secs() as u32,
            resources: resources
                .into_iter()
                .map(|r| wire::Resource {
                    id: r.id,
                    name: r.name,
                    r#type: r.kind,
                    technology: r.technology,
                    host: r.host,
                    port: u32::from(r.port),
                    ..Default::default()
                })
                .collect(),
            completed_stale_sessions: completed as u32,
            ..Default::default()
        })
    }

    async fn heartbeat(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, wire::HeartbeatRequest>,
    ) -> ServiceResult<wire::HeartbeatResponse> {
        let caller = connector(&ctx)?;
        if req.run_id.trim().is_empty() {
            return Err(invalid("run_id is required"));
        }
        self.store
            .connector_heartbeat(caller.org, &caller.connector_id, req.run_id, self.clock.now())
            .await
            .map_err(|e| self.hearing_failed(e))?;
        Response::ok(wire::HeartbeatResponse::default())
    }

    async fn goodbye(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, wire::GoodbyeRequest>,
    ) -> ServiceResult<wire::GoodbyeResponse> {
        let caller = connector(&ctx)?;
        if req.run_id.trim().is_empty() {
            return Err(invalid("run_id is required"));
        }
        let completed = self
            .store
            .connector_goodbye(caller.org, &caller.connector_id, req.run_id, self.clock.now())
            .await
            .map_err(store_error)?;
        tracing::info!(connector = %caller.connector_name, run = req.run_id, completed, "a connector process stopped cleanly");
        Response::ok(wire::GoodbyeResponse { completed_sessions: completed as u32, ..Default::default() })
    }

    async fn report(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, wire::ReportRequest>,
    ) -> ServiceResult<wire::ReportResponse> {
        let caller = connector(&ctx)?;
        let request = req.to_owned_message();
        // Only a session's start names its resource; most reports hold none.
        let resources = if request.events.iter().any(|e| matches!(e.kind, Some(Kind::Start(_)))) {
            self.store.list_resources(caller.org).await.map_err(|e| self.hearing_failed(e))?
        } else {
            Vec::new()
        };
        let now = self.clock.now();
        let ahead = ahead_of(&request.events, now);
        let mut events = Vec::with_capacity(request.events.len());
        for event in request.events {
            if event.session_id.is_empty() {
                return Err(invalid("every event needs a session_id"));
            }
            let converted = match event.kind {
                Some(Kind::Start(start)) => {
                    // The run holds the session's lease: a session without one would never end.
                    if start.run_id.is_empty() && request.run_id.is_empty() {
                        return Err(invalid("a session start needs a run_id (its own or the report's)"));
                    }
                    let resource = resources.iter().find(|r| r.id == start.resource_id);
                    check_start(&start, resource.is_some())?;
                    let technology = resource.map_or("postgres", |r| r.technology.as_str()).to_owned();
                    IngestEvent::Start(Box::new(Session {
                        id: event.session_id,
                        start: micros(&start.start_time, now, ahead)?
                            .ok_or_else(|| invalid("a session start needs start_time"))?,
                        end: None,
                        client_ip: start.client_ip_address,
                        server_ip: start.server_ip_address,
                        sidecar: Sidecar {
                            id: caller.connector_id.clone(),
                            name: caller.connector_name.clone(),
                            technology: technology.clone(),
                        },
                        user: SessionUser {
                            // Connectors that predate identities send no type.
                            kind: if start.user_type.is_empty() { "native".into() } else { start.user_type },
                            username: start.username,
                            formal: start.formal_user.as_option().and_then(identity_from_wire),
                            end_user: start.end_user.as_option().and_then(identity_from_wire),
                            native_username: start.native_username,
                        },
                        resource: ResourceRef {
                            kind: resource.map_or("datastore", |r| r.kind.as_str()).to_owned(),
                            id: start.resource_id,
                            name: resource.map(|r| r.name.clone()).unwrap_or_default(),
                            technology,
                        },
                        connector: ConnectorRef {
                            id: caller.connector_id.clone(),
                            name: caller.connector_name.clone(),
                            run_id: if start.run_id.is_empty() { request.run_id.clone() } else { start.run_id },
                        },
                        parent_session_id: String::new(),
                    }))
                }
                Some(Kind::Statement(s)) => IngestEvent::Statement {
                    session_id: event.session_id,
                    statement: StatementRecord {
                        seq: event.seq,
                        start: micros(&s.start_time, now, ahead)?.unwrap_or_default(),
                        duration: duration_micros(s.duration.as_option())?,
                        text: s.text,
                        rows: s.rows,
                        bytes_sent: s.bytes_sent,
                        sqlstate: s.sqlstate,
                        status: StatementStatus::Completed,
                        rows_changed: s.rows_changed,
                    },
                },
                Some(Kind::Running(r)) => IngestEvent::Running {
                    session_id: event.session_id,
                    statement: StatementRecord {
                        seq: event.seq,
                        start: micros(&r.start_time, now, ahead)?.unwrap_or_default(),
                        text: r.text,
                        status: StatementStatus::Running,
                        ..StatementRecord::default()
                    },
                },
                Some(Kind::End(end)) => IngestEvent::End {
                    session_id: event.session_id,
                    end: micros(&end.end_time, now, ahead)?.ok_or_else(|| invalid("a session end needs end_time"))?,
                    reason: end.reason,
                },
                None => return Err(invalid("an event has no kind (start, statement, running or end)")),
            };
            events.push(storable(converted)?);
        }
        // Reporting is a sign of life of the reporting run, heard before its events are stored:
        // heard after, its new sessions could meet a lease sweep in between that took the run
        // for gone, and end until the heartbeat reopened them.
        if !request.run_id.is_empty() {
            self.store
                .connector_heartbeat(caller.org, &caller.connector_id, &request.run_id, self.clock.now())
                .await
                .map_err(|e| self.hearing_failed(e))?;
        }
        let stored =
            self.store.ingest(caller.org, &caller.connector_id, &events).await.map_err(|e| self.hearing_failed(e))?;
        Metrics::add(&self.metrics.events_stored_total, stored);
        Response::ok(wire::ReportResponse { stored: stored as u32, ..Default::default() })
    }

    async fn watch_terminations(
        &self,
        ctx: RequestContext,
        _req: ServiceRequest<'_, wire::WatchTerminationsRequest>,
    ) -> ServiceResult<ServiceStream<wire::Termination>> {
        let caller = connector(&ctx)?;
        // Subscribe before reading what is pending, so nothing falls between.
        let live = self.bus.subscribe(caller.org, &caller.connector_id);
        let pending = Pending { store: self.store.clone(), clock: self.clock.clone(), caller: caller.clone() };
        let first = pending.read().await.map_err(store_error)?;
        let first = futures::stream::iter(first.into_iter().map(|t| Ok(termination_message(&t))));
        let live = live_terminations(live, pending).map(|t| t.map(|t| termination_message(&t)));
        // The key was checked when the stream opened; a stream lasts as long as its connector,
        // so a key revoked (or past its overlap) meanwhile ends it, as it refuses any other call.
        let terminations = first.chain(live).map(Some).chain(futures::stream::once(async { None }));
        let refused =
            futures::stream::once(key_refused(self.store.clone(), ctx.headers().clone())).map(|e| Some(Err(e)));
        // At once, then every second: a connector knows from the start that this one says so.
        let keepalive = futures::stream::unfold(Duration::ZERO, |wait| async move {
            tokio::time::sleep(wait).await;
            Some((Some(Ok(wire::Termination::default())), KEEPALIVE))
        });
        // Ends with the terminations (the server shutting down), or after the refusal.
        let others = futures::stream::select(refused, keepalive);
        let stream = futures::stream::select(terminations, others).scan(false, |refused, item| {
            if *refused {
                return std::future::ready(None);
            }
            *refused = matches!(item, Some(Err(_)));
            std::future::ready(item)
        });
        Response::stream_ok(stream)
    }

    async fn verify_identity(
        &self,
        ctx: RequestContext,
        req: ServiceRequest<'_, wire::VerifyIdentityRequest>,
    ) -> ServiceResult<wire::VerifyIdentityResponse> {
        let caller = connector(&ctx)?;
        let request = req.to_owned_message();
        Response::ok(self.identities.verify(&self.store, &caller, &request).await?)
    }
}

/// How often an open termination stream's key is checked again.
const KEY_RECHECK: Duration = Duration::from_secs(5);

/// How often a termination stream says it is alive (and once as it opens), with a termination
/// that names no session: a replica that hangs (stopped, overloaded) keeps its streams open and silent, and
/// its connectors, hearing nothing for a few of these, move to the next replica, so that a
/// termination asked of any other replica still reaches them.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Resolves once the connector key in `headers` is refused (revoked, or its overlap over); a
/// store that cannot be reached refuses nothing.
async fn key_refused(store: Arc<dyn Store>, headers: http::HeaderMap) -> ConnectError {
    let auth = crate::auth::Authenticator::new(store);
    loop {
        tokio::time::sleep(KEY_RECHECK).await;
        match auth.authenticate_connector(&headers).await {
            Err(error) if error.code == ErrorCode::Unauthenticated => return error,
            _ => {}
        }
    }
}

/// Session ids are UUIDs their connectors make: one much longer is no session id.
const MAX_SESSION_ID: usize = 128;
/// The bytes kept of a name, an address or another short value sessions are searched by: an
/// index entry of over about 2.7 kB fails a PostgreSQL insert, and with it the whole report,
/// which its connector would send again and again.
const MAX_VALUE: usize = 1024;
/// Rows or bytes one statement counts at most: far above any real one, and far from
/// overflowing a session's totals.
const MAX_COUNT: i64 = 1 << 40;

/// `event` as every store can keep it, the same on each: values clipped to [`MAX_VALUE`]
/// bytes, NULs (which PostgreSQL's text cannot hold) replaced, counts bounded. A session id
/// that cannot be one refuses the report.
fn storable(mut event: IngestEvent) -> Result<IngestEvent, ConnectError> {
    let session_id = match &mut event {
        IngestEvent::Start(session) => {
            let session = &mut **session;
            for value in [
                &mut session.client_ip,
                &mut session.server_ip,
                &mut session.user.kind,
                &mut session.user.username,
                &mut session.user.native_username,
                &mut session.resource.id,
                &mut session.connector.run_id,
            ] {
                clip(value, MAX_VALUE);
            }
            for identity in [&mut session.user.formal, &mut session.user.end_user].into_iter().flatten() {
                let Identity { id, name, email, kind, groups, external_ids } = identity;
                [id, name, email, kind].into_iter().chain(groups).chain(external_ids).for_each(|v| clip(v, MAX_VALUE));
            }
            &session.id
        }
        IngestEvent::Statement { session_id, statement } | IngestEvent::Running { session_id, statement } => {
            clip(&mut statement.text, usize::MAX);
            clip(&mut statement.sqlstate, MAX_VALUE);
            statement.rows = statement.rows.clamp(0, MAX_COUNT);
            statement.bytes_sent = statement.bytes_sent.clamp(0, MAX_COUNT);
            statement.rows_changed = statement.rows_changed.clamp(0, MAX_COUNT);
            session_id
        }
        IngestEvent::End { session_id, reason, .. } => {
            clip(reason, MAX_VALUE);
            session_id
        }
    };
    if session_id.len() > MAX_SESSION_ID || session_id.contains(|c: char| c.is_control()) {
        return Err(invalid(format!("a session_id is at most {MAX_SESSION_ID} bytes, with no control characters")));
    }
    Ok(event)
}

/// `value` with its NULs replaced by U+FFFD, and cut to at most `max` bytes.
fn clip(value: &mut String, max: usize) {
    if value.contains('\0') {
        *value = value.replace('\0', "\u{FFFD}");
    }
    if value.len() > max {
        value.truncate(value.floor_char_boundary(max));
    }
}

/// Reads the terminations pending for one connector: what a stream sends as it opens, and
/// again when it fell behind.
struct Pending {
    store: Arc<dyn Store>,
    clock: Arc<StoreClock>,
    caller: ConnectorCaller,
}

impl Pending {
    async fn read(&self) -> Result<Vec<TerminationRecord>, StoreError> {
        let since = self.clock.now() - PENDING_WINDOW_US;
        self.store.pending_terminations(self.caller.org, &self.caller.connector_id, since).await
    }
}

/// The terminations published for a connector as they come. A watcher that fell behind the
/// bus (many asked at once) lost some of them: the pending ones are read again from the store,
/// which has them all, and sent (those sent already again too: a connector ends a session
/// once). A store that cannot be read ends the stream with the error: the connector reopens it.
fn live_terminations(
    receiver: tokio::sync::broadcast::Receiver<TerminationRecord>,
    pending: Pending,
) -> impl futures::Stream<Item = Result<TerminationRecord, ConnectError>> + Send {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold(Some((receiver, pending)), |state| async move {
        let (mut receiver, pending) = state?;
        let next = match receiver.recv().await {
            Ok(t) => vec![Ok(t)],
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    connector = pending.caller.connector_id,
                    "termination stream fell behind; re-reading the pending ones"
                );
                match pending.read().await {
                    Ok(all) => all.into_iter().map(Ok).collect(),
                    Err(error) => return Some((vec![Err(store_error(error))], None)),
                }
            }
            Err(RecvError::Closed) => return None,
        };
        Some((next, Some((receiver, pending))))
    })
    .flat_map(futures::stream::iter)
}

#[cfg(test)]
mod tests {
    use gatehouse_core::time::now_micros;
    use gatehouse_store::sqlite::SqliteStore;

    use super::*;

    /// A watcher that fell behind the bus (more terminations published at once than it holds)
    /// still gets every one: those it lost are read again from the store.
    #[tokio::test]
    async fn a_watcher_that_falls_behind_still_gets_every_termination() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("g.db")).await.unwrap());
        let org = store.ensure_org("acme").await.unwrap().id;
        let now = now_micros();
        let connector = ConnectorRef { id: "con_1".into(), ..Default::default() };
        let starts: Vec<IngestEvent> = (0..300)
            .map(|i| {
                let session =
                    Session { id: format!("s{i:03}"), start: now, connector: connector.clone(), ..Default::default() };
                IngestEvent::Start(Box::new(session))
            })
            .collect();
        store.ingest(org, "con_1", &starts).await.unwrap();
        let bus = TerminationBus::default();
        let receiver = bus.subscribe(org, "con_1");
        for i in 0..300 {
            let termination = TerminationRecord {
                id: format!("term_{i:03}"),
                session_id: format!("s{i:03}"),
                connector_id: "con_1".into(),
                reason: "incident".into(),
                created: now,
            };
            store.create_termination(org, &termination, now - 1).await.unwrap();
            bus.publish(org, termination);
        }

        let caller = ConnectorCaller { org, connector_id: "con_1".into(), connector_name: "edge".into() };
        let pending = Pending { store, clock: Arc::new(StoreClock::default()), caller };
        let received = live_terminations(receiver, pending).take(300).map(|t| t.unwrap().session_id);
        let mut received: Vec<String> =
            tokio::time::timeout(Duration::from_secs(10), received.collect()).await.expect("every one arrives");
        received.sort();
        received.dedup();
        assert_eq!(received.len(), 300, "each session's termination");
    }
}
