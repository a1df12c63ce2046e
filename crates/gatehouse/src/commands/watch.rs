//! `gatehouse sessions watch`: sessions as they start and end, from the public API.
//!
//! The API has no stream of changes, so each poll lists the sessions that overlap the time
//! since the one before (an active session overlaps any window): an id not seen before has
//! started, a known one now completed has ended. A known active session the listing no longer
//! holds (its connector reported an end from before the window) is looked up by id.

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
/// clock, not this machine's, and a connector reports a session's end a moment after it.
const MARGIN: Micros = 10_000_000;

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
        match watch.poll(&client, &args, &mut out).await {
            Ok(()) if outage => {
                outage = false;
                note!("The control plane answers again; caught up.");
            }
            Ok(()) => {}
            // Once watching, an outage is waited out: what changed meanwhile is listed when it
            // ends, since the window starts at the last poll that went through.
            Err(error) if watch.polled && is_transient(&error) => {
                if !outage {
                    outage = true;
                    note!("{}; retrying every {:?}…", crate::message(&error), args.interval);
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// What a watch has shown.
#[derive(Default)]
struct Watch {
    /// Whether a poll has gone through: the first one shows what is active, not what started.
    polled: bool,
    /// Where the next poll's window starts.
    window_start: Option<Micros>,
    /// Active sessions shown, not yet shown ended.
    active: HashSet<String>,
    /// Sessions shown ended (or that had ended before the watch), with their end, until it
    /// falls out of the window: the listing still holds them until then.
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
    /// Lists what changed since the last poll and writes it to `out`. On an error, the next
    /// poll covers this one's window again; what this one wrote is not written twice.
    async fn poll(&mut self, client: &Client, args: &WatchArgs, out: &mut impl Write) -> anyhow::Result<()> {
        let polled_at = now_micros();
        let window_start = self.window_start.unwrap_or(polled_at - MARGIN);
        let mut request = ListSessionsV2Request {
            limit: PAGE,
            query: args.query.clone(),
            sort_by: "start_time:asc".to_owned(),
            start_timestamp: format_rfc3339(window_start),
            ..Default::default()
        };
        let mut listed = HashSet::new();
        loop {
            let page = call(&args.api, client.list_sessions_v2(request.clone())).await?.into_owned();
            for session in &page.sessions {
                listed.insert(session.id.clone());
                for &event in self.changes(session) {
                    write_event(out, args.output, event, session)?;
                }
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
                Ok(response) => {
                    if let Some(session) = response.into_owned().session.into_option() {
                        for &event in self.changes(&session) {
                            write_event(out, args.output, event, &session)?;
                        }
                    }
                }
                // Gone from the store (retention): nothing more to show of it.
                Err(error) if code(&error) == Some(ErrorCode::NotFound) => {
                    self.active.remove(&id);
                }
                Err(error) => return Err(error),
            }
        }
        self.polled = true;
        let next_start = polled_at - MARGIN;
        self.ended.retain(|_, end| *end >= next_start);
        self.window_start = Some(next_start);
        Ok(())
    }

    /// What `session`'s state says happened since it was last seen, in order.
    fn changes(&mut self, session: &SessionObject) -> &'static [Event] {
        if self.ended.contains_key(&session.id) {
            return &[];
        }
        if session.session_status != "completed" {
            if !self.active.insert(session.id.clone()) {
                return &[];
            }
            return if self.polled { &[Event::Started] } else { &[Event::Active] };
        }
        let end = session.end_time.as_option().map_or(0, |t| micros_of(t.seconds, t.nanos));
        self.ended.insert(session.id.clone(), end);
        if self.active.remove(&session.id) {
            &[Event::Ended]
        } else if self.polled {
            // Started and ended between two polls.
            &[Event::Started, Event::Ended]
        } else {
            // Ended before the watch began.
            &[]
        }
    }
}

fn write_event(out: &mut impl Write, format: WatchFormat, event: Event, session: &SessionObject) -> anyhow::Result<()> {
    let name = match event {
        Event::Active => "active",
        Event::Started => "started",
        Event::Ended => "ended",
    };
    match format {
        WatchFormat::Jsonl => {
            let line = serde_json::json!({ "event": name, "session": session });
            writeln!(out, "{line}")?;
        }
        WatchFormat::Lines => {
            let [id, _status, start, _duration, who, role, resource, technology, client_ip, connector] =
                <[String; 10]>::try_from(table_row(session)).expect("a session row has ten cells");
            let time = match event {
                Event::Ended => session.end_time.as_option().map(|t| format_rfc3339(micros_of(t.seconds, 0))),
                Event::Active | Event::Started => Some(start),
            };
            let mut line = format!("{}  {name:<7}  {id}  {who}", time.unwrap_or_default());
            if !role.is_empty() && role != who {
                line.push_str(&format!(" as {role}"));
            }
            line.push_str(&format!(" on {resource} ({technology}) from {client_ip} via {connector}"));
            if event == Event::Ended {
                let lasted = session.duration.as_option().map_or(0, |d| micros_of(d.seconds, d.nanos));
                line.push_str(&format!(", after {}", precise_duration(lasted)));
            }
            writeln!(out, "{}", printable(&line))?;
        }
    }
    out.flush()?;
    Ok(())
}

fn code(error: &anyhow::Error) -> Option<ErrorCode> {
    error.downcast_ref::<ConnectError>().map(|error| error.code)
}

/// Whether `error` may pass by itself: the control plane unreachable or overloaded, not a key
/// or a query it refuses.
fn is_transient(error: &anyhow::Error) -> bool {
    !matches!(
        code(error),
        Some(
            ErrorCode::Unauthenticated
                | ErrorCode::PermissionDenied
                | ErrorCode::InvalidArgument
                | ErrorCode::Unimplemented
        )
    )
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
        assert_eq!(watch.changes(&session("a", "active", None)), [Event::Active]);
        assert_eq!(watch.changes(&session("old", "completed", Some(1))), [], "ended before the watch");
        watch.polled = true;
        assert_eq!(watch.changes(&session("a", "active", None)), []);
        assert_eq!(watch.changes(&session("b", "active", None)), [Event::Started]);
        assert_eq!(watch.changes(&session("a", "completed", Some(2))), [Event::Ended]);
        assert_eq!(watch.changes(&session("a", "completed", Some(2))), [], "listed again within the margin");
        assert_eq!(watch.changes(&session("c", "completed", Some(3))), [Event::Started, Event::Ended]);
        assert_eq!(watch.changes(&session("old", "completed", Some(1))), []);
    }

    #[test]
    fn a_refused_key_or_query_ends_the_watch_and_an_outage_does_not() {
        let refused = anyhow::Error::new(ConnectError::new(ErrorCode::Unauthenticated, "no"));
        let bad_query = anyhow::Error::new(ConnectError::new(ErrorCode::InvalidArgument, "no"));
        let down = anyhow::Error::new(ConnectError::new(ErrorCode::Unavailable, "down")).context("cannot reach");
        assert!(!is_transient(&refused) && !is_transient(&bad_query));
        assert!(is_transient(&down) && is_transient(&anyhow::anyhow!("no answer within 60s")));
    }
}
