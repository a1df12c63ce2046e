//! `gatehouse sessions watch`: sessions as they start and end, from the public API.
//!
//! The API has no stream of changes, so each poll lists the sessions that overlap the time
//! since the one before (an active session overlaps any window): an id not seen before has
//! started, a known one now completed has ended. A known active session the listing no longer
//! holds (its connector reported an end from before the window) is looked up by id. Windows
//! are timed by the control plane's clock (its answers' `Date`), not this machine's, and every
//! [`SWEEP_EVERY`]th one reaches back [`LATE`]: a connector that spooled through an outage
//! reports its sessions when it replays, with the times they had.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use connectrpc::{ConnectError, ErrorCode};
use gatehouse_core::display::printable;
use gatehouse_core::time::{Micros, format_rfc3339, micros_of, now_micros};
use gatehouse_proto::core::v1::{GetSessionRequest, ListSessionsV2Request, SessionObject};
use tokio::time::MissedTickBehavior;

use super::sessions::{Client, call, client, precise_duration, table_row};
use crate::cli::{WatchArgs, WatchFormat};

/// Sessions asked for at once.
const PAGE: i32 = 1000;

/// How far before the last poll each window starts: a session's times are its connector's
/// clock, and a connector reports a session's end a moment after it.
const MARGIN: Micros = 10_000_000;

/// How late a session may be reported and still be shown.
const LATE: Micros = 300_000_000;

/// Every this many polls (30 s at the default interval), a window reaches back [`LATE`].
const SWEEP_EVERY: u32 = 15;

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let mut watch = Watch::default();
    let mut out = std::io::stdout().lock();
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut outage = false;
    if std::io::stderr().is_terminal() {
        let matching = if args.query.is_empty() { String::new() } else { format!(" matching {:?}", args.query) };
        note!("Watching sessions{matching}: those active now, then each that starts or ends. Ctrl-C stops.");
    }
    loop {
        ticks.tick().await;
        match watch.poll(&client, &args).await {
            Ok(events) => {
                if std::mem::take(&mut outage) {
                    note!("The control plane answers again.");
                }
                for (event, session) in &events {
                    write_event(&mut out, args.output, *event, session)?;
                }
                out.flush()?;
            }
            // Once watching, an outage is waited out: what changed meanwhile is listed when it
            // ends, since the window starts at the last poll that went through.
            Err(error) if watch.began.is_some() && is_transient(&error) => {
                if !outage {
                    outage = true;
                    note!("{}; retrying every {:?}…", crate::message(&error), args.interval);
                }
            }
            Err(error) => return Err(super::sessions::query_refused_as_usage(error)),
        }
    }
}

/// What a watch has shown.
#[derive(Default)]
struct Watch {
    /// When the watch began, by the control plane's clock: a session that ended before is
    /// none of its business. `None` until a poll went through.
    began: Option<Micros>,
    /// The control plane's time at the last poll that went through.
    last_poll: Micros,
    /// Polls since the last that reached back [`LATE`].
    since_sweep: u32,
    /// The control plane's time at the last poll that reached back [`LATE`] (or at the first):
    /// the next reaches back [`LATE`] from there, however long the polls between took (a poll
    /// pages through every session of its window, thousands under load), so that a session
    /// reported up to [`LATE`] after it ended always falls in one.
    swept: Micros,
    /// Active sessions shown, not yet shown ended.
    active: HashSet<String>,
    /// Sessions shown ended (or that ended before the watch), with their end, until it falls
    /// out of every window: listings hold them until then.
    ended: HashMap<String, Micros>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Running when the watch began.
    Active,
    Started,
    Ended,
}

impl Watch {
    /// Lists what changed since the last poll, in the order it happened. On an error, the next
    /// poll covers this one's window again; nothing is shown twice.
    async fn poll(&mut self, client: &Client, args: &WatchArgs) -> anyhow::Result<Vec<(Event, SessionObject)>> {
        let sweep = self.since_sweep + 1 >= SWEEP_EVERY;
        let window_start = self.window_start(sweep);
        let mut request = ListSessionsV2Request {
            limit: PAGE,
            query: args.query.clone(),
            sort_by: "start_time:asc".to_owned(),
            start_timestamp: format_rfc3339(window_start),
            ..Default::default()
        };
        let mut polled_at = None;
        let mut listed = HashSet::new();
        let mut events = Vec::new();
        loop {
            let (headers, page, _) =
                call(&args.api, client.list_sessions_v2(request.clone())).await?.into_owned_parts();
            polled_at = polled_at.or_else(|| server_time(&headers));
            for session in page.sessions {
                listed.insert(session.id.clone());
                events.push(session);
            }
            request.cursor = page.list_metadata.into_option().map(|m| m.next_cursor).unwrap_or_default();
            if request.cursor.is_empty() {
                break;
            }
        }
        let unaccounted: Vec<String> = self.active.iter().filter(|id| !listed.contains(*id)).cloned().collect();
        for id in unaccounted {
            let request = GetSessionRequest { session_id: id.clone(), ..Default::default() };
            match call(&args.api, client.get_session(request)).await {
                Ok(response) => events.extend(response.into_owned().session.into_option()),
                // Gone from the store (retention): nothing more to show of it.
                Err(error) if code(&error) == Some(ErrorCode::NotFound) => _ = self.active.remove(&id),
                Err(error) => return Err(error),
            }
        }
        let now = polled_at.unwrap_or_else(now_micros);
        if sweep || self.began.is_none() {
            self.swept = now;
        }
        let began = *self.began.get_or_insert(now);
        let mut changes: Vec<(Micros, Event, SessionObject)> = Vec::new();
        for session in events {
            for &event in self.changes(&session, began) {
                changes.push((event_time(event, &session), event, session.clone()));
            }
        }
        changes.sort_by_key(|(at, ..)| *at);
        self.last_poll = now;
        self.since_sweep = if sweep { 0 } else { self.since_sweep + 1 };
        // Until it falls out of every window to come: the next sweep's reaches furthest back.
        let earliest = self.window_start(true) - MARGIN;
        self.ended.retain(|_, end| *end >= earliest);
        Ok(changes.into_iter().map(|(_, event, session)| (event, session)).collect())
    }

    /// Where the next poll's window starts: a moment before the last poll, or for a `sweep`,
    /// [`LATE`] before the last sweep.
    fn window_start(&self, sweep: bool) -> Micros {
        match self.began {
            None => now_micros() - MARGIN,
            Some(_) if sweep => self.swept - LATE,
            Some(_) => self.last_poll - MARGIN,
        }
    }

    /// What `session`'s state says happened since it was last seen, in order. `began` is
    /// when the watch began.
    fn changes(&mut self, session: &SessionObject, began: Micros) -> &'static [Event] {
        if self.ended.contains_key(&session.id) {
            return &[];
        }
        let first_poll = self.last_poll == 0;
        if session.session_status != "completed" {
            if !self.active.insert(session.id.clone()) {
                return &[];
            }
            return if first_poll { &[Event::Active] } else { &[Event::Started] };
        }
        let end = session.end_time.as_option().map_or(0, |t| micros_of(t.seconds, t.nanos));
        self.ended.insert(session.id.clone(), end);
        if self.active.remove(&session.id) {
            &[Event::Ended]
        } else if end >= began && !first_poll {
            // Started and ended between two polls, or reported late.
            &[Event::Started, Event::Ended]
        } else {
            // Ended before the watch began.
            &[]
        }
    }
}

/// The control plane's clock, from an answer's `Date` (to the second).
fn server_time(headers: &http::HeaderMap) -> Option<Micros> {
    let date = headers.get(http::header::DATE)?.to_str().ok()?;
    let at = httpdate::parse_http_date(date).ok()?;
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    Micros::try_from(since_epoch.as_micros()).ok()
}

/// When `event` happened to `session`.
fn event_time(event: Event, session: &SessionObject) -> Micros {
    let time = match event {
        Event::Ended => session.end_time.as_option(),
        Event::Active | Event::Started => session.start_time.as_option(),
    };
    time.map_or(0, |t| micros_of(t.seconds, t.nanos))
}

fn write_event(
    out: &mut impl Write,
    format: WatchFormat,
    event: Event,
    session: &SessionObject,
) -> std::io::Result<()> {
    let name = match event {
        Event::Active => "active",
        Event::Started => "started",
        Event::Ended => "ended",
    };
    match format {
        WatchFormat::Jsonl => {
            writeln!(out, "{}", crate::output::json_line(&serde_json::json!({ "event": name, "session": session })))
        }
        WatchFormat::Lines => {
            let [id, _status, _start, _duration, who, role, resource, technology, client_ip, connector] =
                <[String; 10]>::try_from(table_row(session)).expect("a session row has ten cells");
            let mut line = format!("{}  {name:<7}  {id}  {who}", format_rfc3339(event_time(event, session)));
            if !role.is_empty() && role != who {
                line.push_str(&format!(" as {role}"));
            }
            line.push_str(&format!(" on {resource} ({technology}) from {client_ip} via {connector}"));
            if event == Event::Ended {
                let lasted = session.duration.as_option().map_or(0, |d| micros_of(d.seconds, d.nanos));
                line.push_str(&format!(", after {}", precise_duration(lasted)));
            }
            writeln!(out, "{}", printable(&line))
        }
    }
}

fn code(error: &anyhow::Error) -> Option<ErrorCode> {
    error.downcast_ref::<ConnectError>().map(|error| error.code)
}

/// Whether `error` may pass by itself: the control plane unreachable or overloaded, not a key
/// or a query it refuses, nor output nobody reads any more (`| head`).
fn is_transient(error: &anyhow::Error) -> bool {
    let refused = matches!(
        code(error),
        Some(
            ErrorCode::Unauthenticated
                | ErrorCode::PermissionDenied
                | ErrorCode::InvalidArgument
                | ErrorCode::Unimplemented
        )
    );
    !refused && error.downcast_ref::<std::io::Error>().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_proto::core::v1::SessionObject;

    fn session(id: &str, status: &str, end_seconds: Option<i64>) -> SessionObject {
        let mut session = SessionObject { id: id.into(), session_status: status.into(), ..Default::default() };
        if let Some(seconds) = end_seconds {
            session.end_time = gatehouse_server::convert::timestamp(seconds * 1_000_000).into();
        }
        session
    }

    #[test]
    fn each_session_is_shown_starting_and_ending_once() {
        let mut watch = Watch::default();
        let began = 10_000_000;
        assert_eq!(watch.changes(&session("a", "active", None), began), [Event::Active]);
        assert_eq!(watch.changes(&session("old", "completed", Some(1)), began), [], "ended before the watch");
        watch.last_poll = began;
        assert_eq!(watch.changes(&session("a", "active", None), began), []);
        assert_eq!(watch.changes(&session("b", "active", None), began), [Event::Started]);
        assert_eq!(watch.changes(&session("a", "completed", Some(12)), began), [Event::Ended]);
        assert_eq!(watch.changes(&session("a", "completed", Some(12)), began), [], "listed again within the margin");
        assert_eq!(watch.changes(&session("c", "completed", Some(13)), began), [Event::Started, Event::Ended]);
        assert_eq!(watch.changes(&session("old", "completed", Some(1)), began), []);
        let late = session("late", "completed", Some(9));
        assert_eq!(watch.changes(&late, began), [], "reported late, but ended before the watch began");
    }

    /// Found by a review: under load each poll paged through thousands of sessions, 15 polls
    /// took minutes, and a sweep reaching back 5 minutes from its own poll missed sessions
    /// reported 4 minutes late, which had ended before the sweep before it had looked.
    #[test]
    fn each_sweep_reaches_back_from_the_sweep_before_however_slow_the_polls() {
        let mut watch = Watch { began: Some(0), swept: 1_000_000_000, last_poll: 1_000_000_000, ..Default::default() };
        // Minutes of slow polls later, the next sweep still starts LATE before the last one.
        watch.last_poll = 1_400_000_000;
        assert_eq!(watch.window_start(true), 1_000_000_000 - LATE);
        assert_eq!(watch.window_start(false), 1_400_000_000 - MARGIN);
    }

    #[test]
    fn the_control_planes_clock_is_read_from_its_answers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(server_time(&headers), None);
        headers.insert(http::header::DATE, "Sun, 06 Dec 2026 04:15:46 GMT".parse().unwrap());
        assert_eq!(server_time(&headers).map(format_rfc3339).as_deref(), Some("2026-12-06T04:15:46Z"));
    }

    #[test]
    fn a_refused_key_or_query_or_a_closed_output_ends_the_watch_and_an_outage_does_not() {
        let refused = anyhow::Error::new(ConnectError::new(ErrorCode::Unauthenticated, "no"));
        let bad_query = anyhow::Error::new(ConnectError::new(ErrorCode::InvalidArgument, "no"));
        let closed = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let down = anyhow::Error::new(ConnectError::new(ErrorCode::Unavailable, "down")).context("cannot reach");
        assert!(!is_transient(&refused) && !is_transient(&bad_query) && !is_transient(&closed));
        assert!(is_transient(&down) && is_transient(&anyhow::anyhow!("no answer within 60s")));
    }
}
