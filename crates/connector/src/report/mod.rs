//! Getting events to the control plane without losing any: batching, the
//! spool, replay, heartbeats, and the termination watch.
//!
//! The proxy only ever touches [`Reporter`]: a cheap handle that encodes an
//! event and queues it without blocking the relay, and says whether new
//! sessions may start. From there on an event is a [`Record`], its bytes
//! encoded once: sent, retried, spooled and replayed as they are.
//! Every event is also written ahead to the [`journal`], so that a crash
//! of the process before it is delivered does not lose it.
//! The design of the spool, its recovery and its trade-offs are in
//! `README.md` beside this file.
//!
//! # Layout
//! - [`pipeline`]: the report loop: batches, `Report` calls, spooling and replay, `Hello`.
//! - [`spool`]: the append-only segment files; [`record`]: their framing.
//! - [`journal`]: events written ahead, moved into the spool at the next start.
//! - [`client`]: the `ConnectorService` client; [`convert`]: events to wire messages.
//! - [`gaps`]: what stands in a transcript for the statements a full spool dropped.
//! - [`heartbeat`], [`terminations`]: the lease and the termination stream.
//! - [`resources`]: what `Hello` returns, and its cache in the state directory.
//! - [`runs`]: the state directory's lock, and the earlier runs `Hello` takes over from.

pub mod backoff;
pub mod client;
pub mod convert;
mod gaps;
pub mod heartbeat;
pub mod journal;
pub mod pipeline;
pub mod record;
pub mod resources;
pub mod runs;
pub mod spool;
pub mod terminations;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, mpsc};

pub use client::ControlPlane;
pub use journal::Journal;
pub use pipeline::{ReportLoop, ReportOptions};
pub use runs::{RunLog, RunLogError};
pub use spool::{Limit, Spool, SpoolOptions};

use crate::event::{EventKind, SessionEvent};
use crate::lock;
use crate::metrics::Metrics;

/// An event as it is queued, sent and spooled: encoded once, as a `pb::Event`.
#[derive(Debug)]
pub struct Record {
    bytes: Bytes,
    /// A statement or its announcement, which a full spool in fail-open mode may drop; false for
    /// records replayed from the spool.
    statement: bool,
    /// The journal segment the event was written ahead to; 0 if none.
    journal_segment: u64,
}

impl Record {
    /// What it costs the queue to hold.
    fn cost(&self) -> usize {
        self.bytes.len() + RECORD_OVERHEAD
    }

    /// Bytes read back from the spool.
    fn replayed(bytes: Bytes) -> Self {
        Self { bytes, statement: false, journal_segment: 0 }
    }

    /// The event, read back (tests, tools).
    pub fn decode(&self) -> Result<SessionEvent, buffa::DecodeError> {
        convert::decode(&self.bytes)
    }
}

impl AsRef<[u8]> for Record {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why the connector refuses new sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The spool is full, and the connector does not fail open: a session now could not be
    /// recorded.
    SpoolFull,
    /// The control plane refuses the connector's key (revoked, or rotated): its sessions could
    /// not be reported, and whoever revoked it meant it to stop.
    KeyRefused,
}

impl Refusal {
    fn code(refusal: Option<Self>) -> u8 {
        match refusal {
            None => 0,
            Some(Self::SpoolFull) => 1,
            Some(Self::KeyRefused) => 2,
        }
    }

    /// What a client refused for this reason is told.
    pub fn client_message(self) -> &'static str {
        match self {
            Self::SpoolFull => "Gatehouse cannot record this session: its report spool is full",
            Self::KeyRefused => "Gatehouse cannot record this session: the control plane refuses this connector's key",
        }
    }

    /// What `/health` says, true to the state: whether the control plane is `reachable` (a
    /// full spool drains while it is), and for a refused key, `refused_by` (which replica
    /// refused it, and what it said) when known.
    pub fn health_message(self, reachable: bool, refused_by: Option<&str>) -> String {
        match (self, reachable, refused_by) {
            (Self::SpoolFull, false, _) => {
                "refusing new sessions: report spool full, control plane unreachable\n".to_owned()
            }
            (Self::SpoolFull, true, _) => "refusing new sessions: report spool full; the control plane is \
                 reachable and takes the backlog, sessions are admitted again once it is below its limit\n"
                .to_owned(),
            (Self::KeyRefused, _, Some(refused_by)) => format!("refusing new sessions: {refused_by}\n"),
            (Self::KeyRefused, _, None) => "refusing new sessions: the control plane refuses this connector's key \
                 (revoked, rotated, or a control plane on a different store)\n"
                .to_owned(),
        }
    }
}

/// The proxy's handle to the report pipeline. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Reporter {
    events: mpsc::UnboundedSender<Record>,
    shared: Arc<Shared>,
}

/// How much the queue holds (with the batch the report loop has taken from it and not yet
/// delivered or spooled) before the relays stop reading their clients' statements: a
/// control plane slower than the traffic (or hung, until its call times out and the events
/// go to the spool) must slow the clients down, not grow the connector's memory until the
/// kernel kills it with every session in it. About 150,000 short statements.
pub const QUEUE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// What a queued record costs besides its bytes: the record, its allocation, the channel slot.
const RECORD_OVERHEAD: usize = 96;

/// What the report loop tells every [`Reporter`].
#[derive(Debug, Default)]
struct Shared {
    /// Why new sessions are refused (a [`Refusal`] as a number), 0 while they are admitted.
    refusing: AtomicU8,
    /// The last refusal of the key: which replica, and what it said.
    refused_by: Mutex<Option<String>>,
    /// What the queue and the report loop hold, in [`Record::cost`]s: events not yet safe
    /// (delivered or spooled).
    queued: AtomicUsize,
    /// What they may hold before [`Reporter::has_room`] says no.
    bound: usize,
    /// What the spool could still take of them: see [`SpoolRoom`].
    spool_room: SpoolRoom,
    /// Wakes the relays waiting for [`Reporter::room`] when there is room again.
    room: Notify,
    /// Counts queued events into the backlog; `None` for a bare channel.
    metrics: Option<Arc<Metrics>>,
    /// This run of the connector, which session starts carry.
    run_id: String,
    /// Where events are written ahead; `None` for a bare channel.
    journal: Option<Mutex<Journal>>,
}

/// What the spool could still take, in [`Record::cost`]s (which count more than a record takes
/// there), if the events not yet safe had to go there: a call in flight may fail. While the
/// connector does not fail open, the relays run no more statements than that
/// ([`Reporter::has_room`]): a statement that ran must be recorded, and one the spool could not
/// take would not be. Without it, a batch gathered for `batch_wait` and then held by a call
/// that fails went to the spool at once, and what did not fit in half its reserve was dropped
/// before the full spool ended the sessions that ran them. Unlimited (the default) where
/// statements that do not fit are dropped by design.
#[derive(Debug)]
struct SpoolRoom(AtomicUsize);

impl Default for SpoolRoom {
    fn default() -> Self {
        Self(AtomicUsize::new(usize::MAX))
    }
}

/// The receiving end of a [`Reporter`]'s queue, for a [`ReportLoop`].
#[derive(Debug)]
pub struct Queue {
    events: mpsc::UnboundedReceiver<Record>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// An event journaled but not queued ([`Journal::append_pinned`]): its segment stays until this
/// is dropped. A statement journaled as running: the relay drops it once the statement's own
/// event (its completion or its announcement) is journaled. A gap's marker ([`gaps`]): the
/// report loop drops it once the marker is in the spool, or journaled again with a larger count.
#[derive(Debug)]
pub struct JournalPin {
    shared: Arc<Shared>,
    segment: u64,
}

impl Drop for JournalPin {
    fn drop(&mut self) {
        if let Some(journal) = &self.shared.journal {
            lock(journal).unpin(self.segment);
        }
    }
}

impl Reporter {
    /// A reporter and the receiving end of its queue, with no report loop:
    /// it always admits new sessions and counts nothing. Tests read records
    /// from the receiver directly.
    pub fn channel() -> (Reporter, mpsc::UnboundedReceiver<Record>) {
        // Nothing counts what the receiver takes: never full.
        Self::channel_bounded(usize::MAX)
    }

    /// A bare channel whose reporter has room until `bound` bytes were sent through it (what
    /// the receiver takes is not counted): 0 for a queue that is always full.
    pub fn channel_bounded(bound: usize) -> (Reporter, mpsc::UnboundedReceiver<Record>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared { bound, ..Shared::default() });
        (Reporter { events, shared }, receiver)
    }

    /// A reporter for a [`ReportLoop`] of run `run_id`, which takes the
    /// [`Queue`]: queued events count in `metrics.report_backlog` until the
    /// control plane has them, and the loop decides
    /// [`Reporter::admits_new_sessions`]. Events are written ahead to
    /// `journal`, which the loop empties as they are delivered or spooled.
    pub fn new(metrics: Arc<Metrics>, run_id: &str, journal: Journal) -> (Reporter, Queue) {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            metrics: Some(Arc::clone(&metrics)),
            run_id: run_id.to_owned(),
            journal: Some(Mutex::new(journal)),
            bound: QUEUE_MAX_BYTES,
            ..Shared::default()
        });
        (Reporter { events, shared: Arc::clone(&shared) }, Queue { events: receiver, shared, metrics })
    }

    /// Whether a new session may start: see [`Reporter::refusal`].
    pub fn admits_new_sessions(&self) -> bool {
        self.refusal().is_none()
    }

    /// Why new sessions are refused, if they are: the spool is full and the connector does not
    /// fail open, or the control plane refuses the connector's key.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.shared.refusing.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(Refusal::SpoolFull),
            _ => Some(Refusal::KeyRefused),
        }
    }

    /// What `/health` says while new sessions are refused for `refusal`; `reachable`: whether
    /// the last call reached the control plane.
    pub fn health_message(&self, refusal: Refusal, reachable: bool) -> String {
        let refused_by = lock(&self.shared.refused_by).clone();
        refusal.health_message(reachable, refused_by.as_deref())
    }

    /// Whether the queue has room for more statements: within its bound, and within what the
    /// spool could take ([`SpoolRoom`]). A relay reads its client only while it has: events
    /// already under way (a statement's completion, a session's end) are always queued, so the
    /// bound is soft by what the clients' last reads bring (the spool's reserve takes those).
    pub fn has_room(&self) -> bool {
        // A queue no loop takes from any more (it stopped, or failed) drops what is sent:
        // waiting for room there would stop every client for good.
        self.shared.has_room() || self.events.is_closed()
    }

    /// Waits until [`has_room`](Self::has_room). Cancel-safe.
    pub async fn room(&self) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up between the two is not missed.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Writes event `seq` of session `session_id`, the statement `text` running since
    /// `start_us`, to the journal only: what a crash of the connector would leave behind, never
    /// sent otherwise. `None` without a journal.
    pub fn journal_running(&self, session_id: &str, seq: u64, start_us: i64, text: &str) -> Option<JournalPin> {
        self.shared.journal.as_ref()?;
        self.shared.journal_only(&convert::encode_running(session_id, seq, start_us, text))
    }

    /// Encodes event `seq` of session `session_id`, writes it to the journal
    /// and queues it. Never waits on the network or a disk flush.
    pub fn send(&self, session_id: &str, seq: u64, kind: &EventKind) {
        let bytes = convert::encode(session_id, seq, kind, &self.shared.run_id);
        let statement = matches!(kind, EventKind::Statement(_) | EventKind::Running(_));
        let mut record = Record { bytes, statement, journal_segment: 0 };
        let metrics = self.shared.metrics.as_deref();
        if let Some(m) = metrics {
            Metrics::add(&m.report_backlog, 1);
        }
        let cost = record.cost();
        self.shared.queued.fetch_add(cost, Ordering::Relaxed);
        let sent = match &self.shared.journal {
            // Written and queued under one lock, so the journal's order is the queue's, which
            // the report loop's release of the journal relies on.
            Some(journal) => {
                let mut journal = lock(journal);
                record.journal_segment = journal.append(&record.bytes).unwrap_or(0);
                self.events.send(record)
            }
            None => self.events.send(record),
        };
        if sent.is_err() {
            self.shared.queued.fetch_sub(cost, Ordering::Relaxed);
            if let Some(m) = metrics {
                Metrics::sub(&m.report_backlog, 1);
            }
        }
    }
}

impl Shared {
    /// Writes an encoded event to the journal only, its segment pinned until the pin is
    /// dropped: see [`Reporter::journal_running`].
    fn journal_only(self: &Arc<Self>, bytes: &[u8]) -> Option<JournalPin> {
        let segment = lock(self.journal.as_ref()?).append_pinned(bytes)?;
        Some(JournalPin { shared: Arc::clone(self), segment })
    }

    fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < self.bound.min(self.spool_room.0.load(Ordering::Relaxed))
    }

    /// The spool could take `room` more: the relays waiting go on if that is room enough.
    fn set_spool_room(&self, room: usize) {
        let before = self.spool_room.0.swap(room, Ordering::Relaxed);
        if room > before && self.has_room() {
            self.room.notify_waiters();
        }
    }
}

impl Queue {
    /// The next record; `None` once every [`Reporter`] is gone. Cancel-safe. It counts in
    /// the queue's bound until [`settled`](Self::settled): a batch in flight is still in
    /// memory, and may still have to go to the spool.
    async fn recv(&mut self) -> Option<Record> {
        self.events.recv().await
    }

    fn try_recv(&mut self) -> Result<Record, TryRecvError> {
        self.events.try_recv()
    }

    /// `records` are safe (delivered or spooled, or lost to a failed spool write: the journal
    /// guards against a crash of the process, not of the disk), and so is everything the
    /// report loop took off the queue before them: it makes events safe in the order it takes
    /// them. So they leave the queue's bound (the relays waiting for room go on once there is
    /// enough), the journal segments before the newest one any of them was written to are no
    /// longer needed, and none is once the queue is empty.
    fn settled(&self, records: &[Record]) {
        let cost = records.iter().map(Record::cost).sum();
        if cost > 0 {
            self.shared.queued.fetch_sub(cost, Ordering::Relaxed);
            if self.shared.has_room() {
                self.shared.room.notify_waiters();
            }
        }
        let Some(journal) = &self.shared.journal else {
            return;
        };
        let newest = records.iter().map(|r| r.journal_segment).max().unwrap_or(0);
        let released = {
            // Under the journal's lock, which every event is queued under: an empty queue
            // means no journaled event is in it.
            let mut journal = lock(journal);
            journal.release_before(if self.events.is_empty() { u64::MAX } else { newest })
        };
        journal::remove_released(released);
    }
}

impl Drop for Queue {
    /// The relays waiting for room see the queue closed, and go on.
    fn drop(&mut self) {
        self.events.close();
        self.shared.room.notify_waiters();
    }
}
