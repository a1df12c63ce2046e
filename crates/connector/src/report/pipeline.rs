//! The report loop: takes events off the [`Queue`], sends them to the control
//! plane in batches, and spools them while it cannot. It also sends `Hello`,
//! at the point in the stream where the previous run's events end.
//!
//! # Order
//! Events leave in the order they were queued. While the spool holds
//! anything, new events are appended behind it, and only an empty spool lets
//! events go out directly again. One call is in flight at a time.
//!
//! # Startup
//! Records an earlier run left in the spool are replayed first, then `Hello`
//! is sent, then everything of this run: the control plane learns every
//! session of the previous run before `Hello` completes the ones left open.
//!
//! # Shutdown
//! On `stop` (or when every [`Reporter`](super::Reporter) is gone), the loop
//! takes what is queued, sends it or spools it, keeps replaying while the
//! control plane answers, and returns once nothing is left in memory, or
//! after [`ReportOptions::flush_timeout`] with everything left in the spool.
//! With nothing left anywhere, it says `Goodbye`: the run is over.

use std::collections::HashSet;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffa::Message;
use bytes::Bytes;
use connectrpc::{ConnectError, ErrorCode};
use gatehouse_proto::gatehouse::connector::v1 as pb;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::client::{self, ControlPlane};
use super::gaps;
use super::resources::HelloInfo;
use super::runs::RunLog;
use super::spool::{Limit, Spool, Ticket};
use super::{Queue, Record, Refusal, lock};
use crate::live::LiveSessions;
use crate::metrics::Metrics;
use crate::timer;

/// How often a key the control plane goes on refusing is logged again at error level.
const KEY_REFUSAL_REPEAT: Duration = Duration::from_secs(60);

/// Events taken off the queue at once while spooling: one `fdatasync` each.
const SPOOL_DRAIN: usize = 4096;

/// How the report loop batches, retries and shuts down.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// At most this many events per `Report` call. Default 5,000.
    pub batch_events: usize,
    /// A batch waits this long for more events after its first. Default
    /// 200 ms: each `Report` costs the control plane a transaction whatever
    /// its size (about a millisecond of CPU on SQLite), so fewer, fuller ones
    /// record more statements for the same CPU (against 50 ms: a third less
    /// per statement, and per session under connect-per-query load). A
    /// session still shows up well within a second.
    pub batch_wait: Duration,
    /// A batch stops growing past about this many bytes. Default 1 MiB.
    pub batch_bytes: usize,
    /// First retry after a failure; doubles each time. Default 100 ms.
    pub backoff_min: Duration,
    /// Longest wait between retries. Default 5 s.
    pub backoff_max: Duration,
    /// Time allowed at shutdown for delivering what is left. Default 10 s.
    pub flush_timeout: Duration,
    /// With a full spool, drop (and count) events that do not fit instead of
    /// refusing new sessions. Default false.
    pub fail_open: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            batch_events: 5000,
            batch_wait: Duration::from_millis(200),
            batch_bytes: 1024 * 1024,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(10),
            fail_open: false,
        }
    }
}

/// The report loop, ready to [`run`](ReportLoop::run).
pub struct ReportLoop {
    control: ControlPlane,
    run_id: String,
    /// The state directory's runs, handed over once `Hello` went through.
    runs: Option<Arc<RunLog>>,
    queue: Queue,
    spool: Arc<Mutex<Spool>>,
    options: ReportOptions,
    hello: watch::Sender<Option<Arc<HelloInfo>>>,
    /// Set when the control plane refused this connector's key before `Hello` went through.
    key_refused: watch::Sender<bool>,
    /// Whether the control plane refuses the key now: see [`ReportLoop::refusing_key`].
    refusing_key: watch::Sender<bool>,
    /// What the heartbeats learn of the key between reports: see [`ReportLoop::key_checks`].
    key_checks: (mpsc::UnboundedSender<KeyCheck>, mpsc::UnboundedReceiver<KeyCheck>),
    /// The sessions a full spool ends when the connector does not fail open.
    live: Option<Arc<LiveSessions>>,
    /// The statements a full spool dropped, by session, not yet in the spool as markers.
    gaps: gaps::Pending,
    /// The spool's reserve past its limit: see [`SpoolOptions::reserve`](super::SpoolOptions::reserve).
    reserve: u64,
    state: State,
}

/// What a call made outside the report loop (a heartbeat) learned of the connector's key.
#[derive(Debug)]
pub enum KeyCheck {
    Accepted,
    Refused(ConnectError),
}

/// What one call to the control plane produced.
enum Done {
    Hello(Result<HelloInfo, ConnectError>),
    Direct(Arc<[Record]>, Result<u64, ConnectError>),
    Replay(Ticket, Result<u64, ConnectError>),
}

struct InFlight {
    /// A direct batch, kept here too so it can be spooled if time runs out.
    direct: Option<Arc<[Record]>>,
    call: Pin<Box<dyn Future<Output = Done> + Send>>,
}

struct State {
    hello_done: bool,
    /// Records of earlier runs still to deliver before `Hello`.
    barrier: u64,
    /// The last call failed.
    down: bool,
    full: bool,
    /// The last call failed because the control plane refused the key.
    key_refused: bool,
    /// When that was last logged at error level.
    key_refusal_logged: Option<Instant>,
    backoff: Backoff,
    next_try: Instant,
    /// How many of `batch_events` a batch holds now: fewer after a call the control plane did
    /// not answer in time (a slow store under load, a long backlog's full batches), which
    /// would otherwise be sent again, whole, and time out again, without end.
    batch_share: BatchShare,
}

/// The share of the configured batch a batch takes: halved when a call times out, grown by an
/// eighth (back to whole) with each that goes through.
#[derive(Debug, Clone, Copy)]
struct BatchShare {
    events: usize,
    max: usize,
}

impl BatchShare {
    /// The fewest events a batch is cut to.
    const MIN: usize = 16;

    fn new(max: usize) -> Self {
        Self { events: max, max }
    }

    fn timed_out(&mut self) {
        self.events = (self.events / 2).max(Self::MIN.min(self.max));
    }

    fn delivered(&mut self) {
        self.events = (self.events + self.events / 8 + 1).min(self.max);
    }

    /// Events and bytes a batch stops at: `bytes` for a whole batch, cut in the same share.
    fn limits(&self, bytes: usize) -> (usize, usize) {
        let share_of_bytes = (bytes as u128 * self.events as u128 / self.max.max(1) as u128) as usize;
        (self.events, share_of_bytes.max(1))
    }
}

impl ReportLoop {
    /// Takes over `spool` as [`Spool::open`] returned it: what it holds counts
    /// as backlog and is delivered before `Hello`.
    pub fn new(control: ControlPlane, run_id: String, queue: Queue, spool: Spool, options: ReportOptions) -> Self {
        let recovered = spool.pending();
        Metrics::add(&queue.metrics.report_backlog, recovered);
        queue.metrics.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        let full = spool.is_full();
        let reserve = spool.options().reserve();
        queue.shared.set_spool_room(spool_room(&spool, options.fail_open));
        let mut this = Self {
            control,
            run_id,
            runs: None,
            queue,
            spool: Arc::new(Mutex::new(spool)),
            hello: watch::Sender::new(None),
            key_refused: watch::Sender::new(false),
            refusing_key: watch::Sender::new(false),
            key_checks: mpsc::unbounded_channel(),
            live: None,
            gaps: gaps::Pending::default(),
            reserve,
            state: State {
                hello_done: false,
                barrier: recovered,
                down: false,
                full: false,
                key_refused: false,
                key_refusal_logged: None,
                backoff: Backoff::new(options.backoff_min, options.backoff_max),
                next_try: Instant::now(),
                batch_share: BatchShare::new(options.batch_events),
            },
            options,
        };
        this.set_full(full);
        this
    }

    /// `Hello` takes over from the earlier runs `runs` names, and hands them over once it
    /// went through.
    pub fn taking_over(mut self, runs: Arc<RunLog>) -> Self {
        self.runs = Some(runs);
        self
    }

    /// With a full spool, and unless the connector fails open, the sessions in `live` are
    /// ended: they could not be recorded any more.
    pub fn ending_sessions(mut self, live: Arc<LiveSessions>) -> Self {
        self.live = Some(live);
        self
    }

    /// The answer to `Hello`, once the control plane gave it.
    pub fn hello(&self) -> watch::Receiver<Option<Arc<HelloInfo>>> {
        self.hello.subscribe()
    }

    /// Becomes true if the control plane refuses this connector's key before `Hello` went through.
    pub fn key_refused(&self) -> watch::Receiver<bool> {
        self.key_refused.subscribe()
    }

    /// Whether the control plane refuses this connector's key now, as reports and heartbeats
    /// find it: the termination stream, which waits long between attempts while it is refused,
    /// tries again as soon as it is taken.
    pub fn refusing_key(&self) -> watch::Receiver<bool> {
        self.refusing_key.subscribe()
    }

    /// Where heartbeats tell the loop whether the control plane took the key: a key revoked
    /// while no session reports anything is noticed at the next heartbeat, not the next report.
    pub fn key_checks(&self) -> mpsc::UnboundedSender<KeyCheck> {
        self.key_checks.0.clone()
    }

    /// Runs until shut down (see the module docs); returns how many events
    /// were left in the spool.
    pub async fn run(mut self, stop: CancellationToken) -> u64 {
        let mut inflight: Option<InFlight> = None;
        let mut closing: Option<Instant> = None;
        let mut queue_open = true;
        loop {
            let pending = self.pending();
            self.state.barrier = self.state.barrier.min(pending);
            let channel_empty = !queue_open || self.queue.events.is_empty();
            if closing.is_some() && inflight.is_none() && channel_empty && (pending == 0 || self.state.down) {
                break;
            }
            let direct = self.state.hello_done && pending == 0;
            let can_take = queue_open && !(pending == 0 && inflight.is_some());
            let retry_due = inflight.is_none() && (!self.state.hello_done || pending > 0);
            let deadline = closing.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            let flush = self.options.flush_timeout;
            let flush_deadline = move || Instant::now() + flush;
            tokio::select! {
                biased;
                done = poll(&mut inflight), if inflight.is_some() => {
                    inflight = None;
                    self.finish(done).await;
                }
                () = stop.cancelled(), if closing.is_none() => closing = Some(flush_deadline()),
                () = timer::sleep_until(deadline), if closing.is_some() => {
                    self.give_up(inflight.take()).await;
                    break;
                }
                () = timer::sleep_until(self.state.next_try), if retry_due => inflight = self.retry().await,
                Some(check) = self.key_checks.1.recv() => match check {
                    KeyCheck::Accepted => self.key_accepted(),
                    KeyCheck::Refused(error) => self.refused_key(&error, "heartbeat"),
                },
                event = self.queue.recv(), if can_take => match event {
                    None => {
                        queue_open = false;
                        closing.get_or_insert_with(flush_deadline);
                    }
                    Some(first) if direct && inflight.is_none() => {
                        let (batch, closed) = self.collect(first).await;
                        if closed {
                            queue_open = false;
                            closing.get_or_insert_with(flush_deadline);
                        }
                        inflight = Some(self.send_direct(batch));
                    }
                    Some(first) => {
                        let mut batch = vec![first];
                        while batch.len() < SPOOL_DRAIN {
                            match self.queue.try_recv() {
                                Ok(record) => batch.push(record),
                                Err(_) => break,
                            }
                        }
                        self.spool_records(batch.into()).await;
                    }
                },
            }
        }
        // All that was taken off the queue is delivered or spooled; what was dropped is said.
        self.queue.settled(&[]);
        let limit = self.event_limit();
        self.write_gaps(|_| true, limit).await;
        if !self.gaps.is_empty() {
            // Fail-open with a spool still full: their statements are counted as dropped; their
            // markers, journaled, go to the spool at the next start.
            tracing::warn!(
                sessions = self.gaps.len(),
                "spool full at shutdown: the markers of some sessions' dropped statements do not fit; \
                 they stay in the journal for the next start"
            );
        }
        let pending = self.pending();
        if pending == 0 {
            tracing::info!("report queue flushed");
            let left = closing.map_or(Duration::ZERO, |deadline| deadline.saturating_duration_since(Instant::now()));
            if self.state.hello_done && !self.state.down && !left.is_zero() {
                self.goodbye(left).await;
            }
        } else if self.state.key_refused {
            tracing::warn!(
                pending,
                "the control plane refuses this connector's key: events stay in the spool for the next \
                 start with a valid key"
            );
        } else if self.state.down {
            tracing::warn!(
                pending,
                "control plane unreachable at shutdown: events stay in the spool for the next start"
            );
        } else {
            // Reached, but slower than the flush allows (a backlog, a slow store).
            tracing::warn!(
                pending,
                "the control plane did not take every event within the shutdown's flush time: the rest                  stay in the spool for the next start"
            );
        }
        pending
    }

    /// Tells the control plane this run is over, everything it had delivered, so that it no
    /// longer counts as running and the next run on this state directory has nothing to take
    /// over. Without an answer, the next run takes over from it, as from a crashed one.
    async fn goodbye(&self, within: Duration) {
        match self.control.goodbye(&self.run_id, within.min(client::CALL_TIMEOUT)).await {
            Ok(()) => {
                if let Some(runs) = self.runs.clone() {
                    let ended = tokio::task::spawn_blocking(move || runs.ended()).await;
                    if let Ok(Err(error)) = ended {
                        tracing::warn!(%error, "cannot record that this run ended: the next one takes over from it");
                    }
                }
            }
            // A control plane older than the call.
            Err(error) if error.code == connectrpc::ErrorCode::Unimplemented => {
                tracing::debug!("the control plane does not take Goodbye: the next run takes over from this one");
            }
            Err(error) => {
                tracing::warn!(%error, "the control plane did not hear this run end: the next one takes over from it");
            }
        }
    }

    fn pending(&self) -> u64 {
        lock(&self.spool).pending()
    }

    /// A direct batch: `first` and what follows within `batch_wait`.
    ///
    /// The loop sleeps through the window and then takes what arrived,
    /// rather than waking for each event: one wake-up per batch instead of
    /// one per statement on the relay's threads. A backlog that fills a
    /// batch at once is sent without waiting.
    async fn collect(&mut self, first: Record) -> (Vec<Record>, bool) {
        let until = Instant::now() + self.options.batch_wait;
        let mut bytes = first.bytes.len();
        let mut batch = vec![first];
        let mut slept = false;
        let (max_events, max_bytes) = self.state.batch_share.limits(self.options.batch_bytes);
        loop {
            // Room for what is queued at once: growing by doubling copies a full batch's
            // events over and over.
            batch.reserve(self.queue.events.len().min(max_events.saturating_sub(batch.len())));
            while batch.len() < max_events && bytes < max_bytes {
                match self.queue.try_recv() {
                    Ok(record) => {
                        bytes += record.bytes.len();
                        batch.push(record);
                    }
                    Err(TryRecvError::Disconnected) => return (batch, true),
                    Err(TryRecvError::Empty) => break,
                }
            }
            // Relays waiting for room send nothing more until this batch is through.
            let full = batch.len() >= max_events || bytes >= max_bytes || !self.queue.shared.has_room();
            if full || slept {
                return (batch, false);
            }
            timer::sleep_until(until).await;
            slept = true;
        }
    }

    fn send_direct(&self, batch: Vec<Record>) -> InFlight {
        let records: Arc<[Record]> = batch.into();
        let (control, run_id) = (self.control.clone(), self.run_id.clone());
        let sent = Arc::clone(&records);
        InFlight {
            direct: Some(records),
            call: Box::pin(async move {
                let result = deliver(&control, &run_id, &sent).await;
                Done::Direct(sent, result)
            }),
        }
    }

    /// The due retry: `Hello` once the earlier run's records are through,
    /// else the next batch from the spool.
    async fn retry(&mut self) -> Option<InFlight> {
        if !self.state.hello_done && self.state.barrier == 0 {
            let (control, run_id) = (self.control.clone(), self.run_id.clone());
            let previous = self.runs.as_ref().map(|runs| runs.previous.clone()).unwrap_or_default();
            return Some(InFlight {
                direct: None,
                call: Box::pin(async move { Done::Hello(control.hello(&run_id, &previous).await) }),
            });
        }
        let (max_events, max_bytes) = self.state.batch_share.limits(self.options.batch_bytes);
        let max = match self.state.hello_done {
            true => max_events,
            false => max_events.min(usize::try_from(self.state.barrier).unwrap_or(usize::MAX)),
        };
        let batch = match self.blocking(move |spool| spool.read(max, max_bytes)).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(%error, "cannot read the spool; retrying");
                self.state.next_try = Instant::now() + self.state.backoff.next_wait();
                return None;
            }
        };
        if batch.lost > 0 {
            self.dropped(batch.lost);
            Metrics::sub(&self.queue.metrics.report_backlog, batch.lost);
        }
        if batch.records.is_empty() {
            self.ack(batch.ticket).await;
            return None;
        }
        let records: Vec<Record> =
            batch.records.into_iter().map(|bytes| Record::replayed(Bytes::from(bytes))).collect();
        let (control, run_id, ticket) = (self.control.clone(), self.run_id.clone(), batch.ticket);
        Some(InFlight {
            direct: None,
            call: Box::pin(async move { Done::Replay(ticket, deliver(&control, &run_id, &records).await) }),
        })
    }

    async fn finish(&mut self, done: Done) {
        let now = Instant::now();
        match done {
            Done::Hello(Ok(info)) => {
                self.up();
                tracing::info!(
                    connector_id = %info.connector_id,
                    connector_name = %info.connector_name,
                    resources = info.resources.len(),
                    completed_stale_sessions = info.completed_stale_sessions,
                    "registered with the control plane",
                );
                self.state.hello_done = true;
                if let Some(runs) = self.runs.clone() {
                    let run_id = self.run_id.clone();
                    let handed = tokio::task::spawn_blocking(move || runs.handed_over(&run_id)).await;
                    if let Ok(Err(error)) = handed {
                        // The next run names these runs again; their sessions are over already.
                        tracing::warn!(%error, "cannot record that the earlier runs were taken over");
                    }
                }
                self.state.backoff.reset();
                self.state.next_try = now;
                self.hello.send_replace(Some(Arc::new(info)));
            }
            Done::Hello(Err(error)) => {
                self.down(&error, "hello");
                self.state.next_try = now + self.state.backoff.next_wait();
            }
            Done::Direct(records, Ok(rejected)) => {
                self.up();
                self.state.batch_share.delivered();
                self.queue.settled(&records);
                self.dropped(rejected);
                Metrics::sub(&self.queue.metrics.report_backlog, records.len() as u64);
            }
            Done::Direct(records, Err(error)) => {
                self.timed_out(&error);
                self.down(&error, "report");
                self.spool_records(records).await;
                self.state.backoff.reset();
                self.state.next_try = now + self.state.backoff.next_wait();
            }
            Done::Replay(ticket, Ok(rejected)) => {
                self.up();
                self.state.batch_share.delivered();
                self.dropped(rejected);
                self.ack(ticket).await;
                self.state.backoff.reset();
                self.state.next_try = now;
            }
            Done::Replay(_, Err(error)) => {
                self.timed_out(&error);
                self.down(&error, "report");
                self.state.next_try = now + self.state.backoff.next_wait();
            }
        }
    }

    /// Time is up: the batch in flight and everything queued go to the spool.
    async fn give_up(&mut self, inflight: Option<InFlight>) {
        if let Some(InFlight { direct: Some(records), .. }) = inflight {
            self.spool_records(records).await;
        }
        let mut rest = Vec::new();
        while let Ok(record) = self.queue.try_recv() {
            rest.push(record);
        }
        self.spool_records(rest.into()).await;
        tracing::warn!("flush time is up");
    }

    async fn ack(&mut self, ticket: Ticket) {
        let records = ticket.records();
        let (result, full, empty) =
            self.blocking(move |spool| (spool.ack(ticket), spool.is_full(), spool.is_empty())).await;
        if let Err(error) = result {
            tracing::warn!(%error, "cannot save the spool position: some events may be sent twice after a restart");
        }
        Metrics::sub(&self.queue.metrics.report_backlog, records);
        if !self.state.hello_done {
            self.state.barrier = self.state.barrier.saturating_sub(records);
        }
        self.set_full(full);
        if empty && !self.gaps.is_empty() {
            // The outage is over, and with it the gaps of the sessions still open.
            let limit = self.event_limit();
            self.write_gaps(|_| true, limit).await;
        }
        if empty && self.pending() == 0 {
            tracing::info!("spool replayed: reporting directly again");
        }
    }

    /// Appends events to the spool, within its limit and reserve ([`SpoolOptions::reserve`]):
    /// statements stop at the limit in fail-open mode, at half the reserve past it otherwise
    /// (the last statements of the sessions a full spool ends); sessions' starts and ends and
    /// the gap markers use the rest of the reserve in fail-open mode, and are kept whatever
    /// the limit otherwise (a session's end is never lost; new sessions are refused). Each
    /// session that lost statements gets one marker in their place per outage that says so
    /// (see [`gaps`]), written when it ends, once the spool is replayed, or at shutdown.
    /// Counts what is lost.
    ///
    /// [`SpoolOptions::reserve`]: super::SpoolOptions::reserve
    async fn spool_records(&mut self, records: Arc<[Record]>) {
        if records.is_empty() {
            return;
        }
        let (fail_open, reserve) = (self.options.fail_open, self.reserve);
        let limit = move |record: &Record| match (record.statement, fail_open) {
            (true, true) => Limit::Hard,
            (true, false) => Limit::Over(reserve / 2),
            (false, true) => Limit::Over(reserve),
            (false, false) => Limit::Soft,
        };
        let spooled = Arc::clone(&records);
        let (skipped, lost, full) = self
            .blocking(move |spool| {
                let (skipped, lost) = match spool.append_each(&spooled, |i| limit(&spooled[i])) {
                    Ok(skipped) => (skipped, 0),
                    Err(error) => {
                        let lost = spooled.len() - error.written;
                        tracing::error!(%error, lost, "cannot write to the spool: events are lost");
                        (Vec::new(), lost)
                    }
                };
                (skipped, lost as u64, spool.is_full())
            })
            .await;
        self.gaps.add(skipped.iter().map(|&i| &records[i]));
        if !self.gaps.is_empty() {
            // Before the journal lets go of the statements just dropped: until their marker
            // counts them, a crash leaves them there.
            let shared = Arc::clone(&self.queue.shared);
            self.gaps.journal(|marker| shared.journal_only(marker));
        }
        self.queue.settled(&records);
        let dropped = skipped.len() as u64 + lost;
        if dropped > 0 {
            self.dropped(dropped);
            Metrics::sub(&self.queue.metrics.report_backlog, dropped);
        }
        self.set_full(full);
        if full && !fail_open {
            // At once: the markers below take another sync.
            self.end_open_sessions();
        }
        // The sessions that ended in this batch: their gaps are complete. The others grow until
        // the spool is replayed (see `ack`), whether or not it is below its limit now: statements
        // are dropped when they would take it past the limit, so the append that dropped some
        // often leaves it below, and a marker written then was followed by another for the
        // same session and outage.
        let ended = self.ended_with_gaps(&records, &skipped);
        if !ended.is_empty() {
            let limit = self.event_limit();
            self.write_gaps(|session| ended.contains(session), limit).await;
        }
    }

    /// The sessions whose ends are among `records` (but for those `skipped`) and that have a gap.
    fn ended_with_gaps(&self, records: &[Record], skipped: &[usize]) -> HashSet<String> {
        let mut ended = HashSet::new();
        if self.gaps.is_empty() {
            return ended;
        }
        let mut skipped = skipped.iter().peekable();
        for (i, record) in records.iter().enumerate() {
            if skipped.next_if_eq(&&i).is_some() {
                continue;
            }
            if let Ok(event) = record.decode()
                && matches!(event.kind, crate::event::EventKind::End(_))
                && self.gaps.has(&event.session_id)
            {
                ended.insert(event.session_id);
            }
        }
        ended
    }

    /// The limit for sessions' starts and ends and the gap markers.
    fn event_limit(&self) -> Limit {
        match self.options.fail_open {
            true => Limit::Over(self.reserve),
            false => Limit::Soft,
        }
    }

    /// Writes the markers of the gaps of the sessions `which` picks; those that do not fit
    /// stay pending.
    async fn write_gaps(&mut self, which: impl Fn(&str) -> bool, limit: Limit) {
        let gaps = self.gaps.take(which);
        if gaps.is_empty() {
            return;
        }
        let markers: Vec<_> = gaps.iter().map(gaps::SessionGap::marker).collect();
        let (result, full) =
            self.blocking(move |spool| (spool.append_each(&markers, |_| limit), spool.is_full())).await;
        let skipped = match result {
            Ok(skipped) => skipped,
            Err(error) => {
                // Those written are in the spool; the rest are said again later.
                tracing::error!(%error, "cannot write the markers of dropped statements to the spool");
                (error.written..gaps.len()).collect()
            }
        };
        let written = (gaps.len() - skipped.len()) as u64;
        let mut skipped = skipped.into_iter().peekable();
        let back: Vec<_> =
            gaps.into_iter().enumerate().filter(|(i, _)| skipped.next_if_eq(i).is_some()).map(|(_, g)| g).collect();
        self.gaps.put_back(back);
        // The markers are delivered from the spool as the events were: counted the same way.
        Metrics::add(&self.queue.metrics.report_backlog, written);
        self.set_full(full);
    }

    /// A full spool without fail-open: the open sessions cannot be recorded any more, and are
    /// ended (their ends fit in the spool's reserve).
    fn end_open_sessions(&self) {
        let Some(live) = &self.live else { return };
        let ended = live.terminate_all(&crate::live::Termination::SpoolFull);
        if ended > 0 {
            tracing::error!(
                sessions = ended,
                "spool full and the control plane does not take the backlog: ending the open sessions, which \
                 could not be recorded any more (set fail_open = true to keep them, unrecorded)"
            );
        }
    }

    fn dropped(&self, n: u64) {
        if n > 0 {
            Metrics::add(&self.queue.metrics.events_dropped_total, n);
        }
    }

    /// Why new sessions are refused now, for every [`Reporter`].
    fn update_refusal(&self) {
        let refusal = match (self.state.key_refused, self.state.full && !self.options.fail_open) {
            (true, _) => Some(Refusal::KeyRefused),
            (false, true) => Some(Refusal::SpoolFull),
            (false, false) => None,
        };
        self.queue.shared.refusing.store(Refusal::code(refusal), std::sync::atomic::Ordering::Relaxed);
    }

    fn set_full(&mut self, full: bool) {
        let changed = full != self.state.full;
        self.state.full = full;
        self.update_refusal();
        if !changed {
            return;
        }
        match (full, self.options.fail_open) {
            (true, false) => {
                tracing::error!("spool full: refusing new sessions until the control plane takes the backlog")
            }
            (true, true) => tracing::warn!("spool full: fail-open, events that do not fit are dropped"),
            (false, false) => tracing::info!("spool below its limit: admitting new sessions again"),
            (false, true) => tracing::info!("spool below its limit: no more events dropped"),
        }
    }

    fn up(&mut self) {
        if std::mem::take(&mut self.state.down) {
            tracing::info!("control plane reachable again");
        }
        self.key_accepted();
    }

    fn key_accepted(&mut self) {
        if std::mem::take(&mut self.state.key_refused) {
            tracing::info!("the control plane takes this connector's key again: admitting new sessions");
            self.state.key_refusal_logged = None;
            self.refusing_key.send_replace(false);
            self.update_refusal();
        }
    }

    fn refused_key(&mut self, error: &ConnectError, call: &str) {
        if !refuses_key(error) {
            return;
        }
        if !self.state.hello_done {
            self.key_refused.send_replace(true);
        }
        // Revoked or rotated while running (every replica that answered refused it): its
        // sessions cannot be reported, and whoever revoked it meant it to stop. The sessions open go on, spooled.
        self.state.key_refused = true;
        self.refusing_key.send_if_modified(|refused| !std::mem::replace(refused, true));
        *lock(&self.queue.shared.refused_by) = error.message.clone();
        self.update_refusal();
        // Retrying cannot help until someone fixes the key: said again every so often, not at
        // every heartbeat and report.
        let logged = self.state.key_refusal_logged;
        if logged.is_some_and(|at| at.elapsed() < KEY_REFUSAL_REPEAT) {
            tracing::debug!(call, "the control plane still refuses this connector's key");
            return;
        }
        self.state.key_refusal_logged = Some(Instant::now());
        // The error names the replica; every other one that answered refused it too.
        tracing::error!(
            call,
            %error,
            "no control plane replica takes this connector's key (revoked, rotated, or a control plane \
             on a different store): refusing new sessions; set control_plane.key (or \
             GATEHOUSE_CONNECTOR_KEY) to the connector key (ghc_...) `gatehouse connectors create` or \
             `rotate-key` printed, or control_plane.url to the control plane that issued it"
        );
    }

    /// A call that `error` ended: when it was not answered in time, the next batches are
    /// smaller.
    fn timed_out(&mut self, error: &ConnectError) {
        if error.code == ErrorCode::DeadlineExceeded {
            self.state.batch_share.timed_out();
            tracing::info!(events = self.state.batch_share.events, "a report timed out: sending smaller batches");
        }
    }

    fn down(&mut self, error: &ConnectError, call: &str) {
        if refuses_key(error) {
            self.refused_key(error, call);
        } else if !self.state.down
            && let Some(message) = self.not_the_api(error)
        {
            // Another kind of server (a web server, another connector's admin port): said as the
            // CLI says it, once; retried all the same, since it may be a proxy still starting.
            tracing::error!(
                call,
                "{message} (control_plane.url, or GATEHOUSE_URL): spooling events, retrying with backoff"
            );
        } else if !self.state.down {
            // The whole chain: the cause of a transport error (a refused certificate, a
            // refused connection) is in its sources.
            let advice = gatehouse_tls::advice(error, "control_plane.ca_file (or GATEHOUSE_CA_FILE)");
            let error = gatehouse_tls::chain(error);
            match advice {
                Some(advice) => tracing::error!(call, %error, "{advice}; spooling events, retrying with backoff"),
                None => {
                    tracing::warn!(call, %error, "the control plane did not take the call: spooling events, retrying with backoff")
                }
            }
        } else {
            tracing::debug!(call, code = error.code.as_str(), %error, "the control plane still does not take calls");
        }
        self.state.down = true;
    }

    /// What to say of `error` when a server that is not the control plane answered it, at the
    /// address calls go to.
    fn not_the_api(&self, error: &ConnectError) -> Option<String> {
        let urls = self.control.urls();
        let url = urls.get(self.control.current_replica())?;
        gatehouse_tls::not_the_api(url.trim_end_matches('/'), error)
    }

    /// Runs a spool operation on a blocking thread.
    async fn blocking<R: Send + 'static>(&self, f: impl FnOnce(&mut Spool) -> R + Send + 'static) -> R {
        let (spool, metrics) = (Arc::clone(&self.spool), Arc::clone(&self.queue.metrics));
        let (shared, fail_open) = (Arc::clone(&self.queue.shared), self.options.fail_open);
        let run = move || {
            let mut spool = lock(&spool);
            let result = f(&mut spool);
            metrics.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
            shared.set_spool_room(spool_room(&spool, fail_open));
            result
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("spool task cancelled: the runtime is shutting down ({error})"),
        }
    }
}

/// What the spool could still take of the events not yet safe, before it is full: see
/// [`SpoolRoom`](super::SpoolRoom). Statements that come after (those under way when the relays
/// stopped reading, and until the sessions are ended) go into half its reserve.
fn spool_room(spool: &Spool, fail_open: bool) -> usize {
    match fail_open {
        // Statements that do not fit are dropped, and counted: nothing to wait for.
        true => usize::MAX,
        false => usize::try_from(spool.options().max_bytes.saturating_sub(spool.bytes())).unwrap_or(usize::MAX),
    }
}

async fn poll(inflight: &mut Option<InFlight>) -> Done {
    match inflight {
        Some(inflight) => inflight.call.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Sends `events` in order. A batch the control plane refuses for its content
/// is split in halves until the refused events are alone; those are dropped
/// (and logged) so one bad event cannot block the rest forever. Returns how
/// many were dropped.
async fn deliver(control: &ControlPlane, run_id: &str, records: &[Record]) -> Result<u64, ConnectError> {
    let mut rejected = 0;
    let mut todo: Vec<Range<usize>> = Vec::with_capacity(8);
    todo.push(0..records.len());
    while let Some(range) = todo.pop() {
        let batch = records[range.clone()].iter().map(|r| r.bytes.clone()).collect();
        match control.report(run_id, batch).await {
            Ok(_) => {}
            Err(error) if client::rejects_content(&error) => {
                if range.len() == 1 {
                    // Its session and number for the log; none for bytes that are not an event.
                    let event = pb::Event::decode_from_slice(&records[range.start].bytes).unwrap_or_default();
                    tracing::error!(
                        session_id = %event.session_id,
                        seq = event.seq,
                        code = error.code.as_str(),
                        %error,
                        "the control plane refused an event; dropping it",
                    );
                    rejected += 1;
                } else {
                    let middle = range.start + range.len() / 2;
                    todo.push(middle..range.end);
                    todo.push(range.start..middle);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(rejected)
}

pub(super) use client::refuses_key;
