//! The hourly rollup: aggregations read it for a window's whole hours, and
//! must answer exactly what counting the sessions answers
//! (`Store::aggregate_raw`), whatever was inserted, retried or deleted.
//!
//! The sessions are spread over five days, with window edges off the hour,
//! sessions that started before a window and still overlap it (active or
//! long), sessions after a window's end or after `now`, and sessions that
//! ended before they started (which the rollup counts where a window does
//! not match them).

use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::{Identity, Micros, OrgId, Session};
use gatehouse_query::Field;
use gatehouse_store::{AggregateQuery, Facet, HistogramSpec, IngestEvent, ListQuery, StatementRecord, Store};

use super::fixture::{MINUTE, NOW};

pub const HOUR: Micros = 60 * MINUTE;
pub const DAY: Micros = 24 * HOUR;

/// Windows as `(start, end)`: ragged edges, open ends, whole hours, no whole
/// hour at all, before all data, and reaching past `now`.
pub const WINDOWS: [(Micros, Option<Micros>); 6] = [
    (NOW - 3 * DAY + 17 * MINUTE + 13_000_000, Some(NOW - 20 * HOUR - 7 * MINUTE)),
    (NOW - 4 * DAY - 55 * MINUTE, None),
    (NOW - 2 * DAY, Some(NOW - DAY)),
    (NOW - 90 * MINUTE + 1, Some(NOW - 70 * MINUTE)),
    (NOW - 6 * DAY, None),
    (NOW - 5 * HOUR - 1, Some(NOW + 3 * HOUR + 1)),
];

/// Windows without a start, where every session before the end matches: the rollup counts
/// all of them, and the sessions before 1970 or after `now` are counted from the sessions.
pub const OPEN_STARTS: [(Option<Micros>, Option<Micros>); 2] =
    [(None, None), (None, Some(NOW - 20 * HOUR - 7 * MINUTE))];

/// Every window of [`WINDOWS`] and [`OPEN_STARTS`].
fn every_window() -> impl Iterator<Item = (Option<Micros>, Option<Micros>)> {
    WINDOWS.into_iter().map(|(start, end)| (Some(start), end)).chain(OPEN_STARTS)
}

/// Fields a histogram is split by: each rolled-up one, then others.
const GROUP_BY: &[&[Field]] = &[
    &[Field::ResourceTechnology],
    &[Field::ResourceId],
    &[Field::ResourceName],
    &[Field::ResourceType],
    &[Field::ConnectorId],
    &[Field::ConnectorName],
    &[Field::UserType],
    &[Field::UserFormalType],
    &[Field::UserEmail],
    &[Field::UserUsername],
    &[Field::NativeUsername],
    &[Field::ClientIp],
    &[Field::UserGroups],
    &[Field::SessionStatus],
    &[Field::ResourceTechnology, Field::UserEmail],
];

/// A small deterministic generator (xorshift).
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as i64) as usize]
    }
}

fn session(id: String, start: Micros, end: Option<Micros>, draw: &mut Draw) -> Session {
    let technology = draw.pick(&["postgres", "mysql", "redis", ""]);
    let resource = draw.below(5);
    let connector = draw.below(3);
    let email = draw.pick(&["alice@example.com", "Alice@Example.com", "bob@example.com", "carol@example.org", ""]);
    let formal = (!email.is_empty() || draw.below(2) == 0).then(|| Identity {
        id: format!("u-{}", draw.below(4)),
        name: draw.pick(&["Alice", "Bob", "Carol"]).into(),
        email: email.into(),
        kind: draw.pick(&["human", "machine"]).into(),
        groups: match draw.below(3) {
            0 => vec!["dba".into(), "sre".into()],
            1 => vec!["dev".into()],
            _ => vec![],
        },
        external_ids: vec![],
    });
    Session {
        id,
        start,
        end,
        client_ip: format!("10.0.{}.{}", draw.below(2), draw.below(4)),
        server_ip: "10.9.0.1".into(),
        sidecar: Sidecar { id: "sc".into(), name: "proxy".into(), technology: technology.into() },
        user: SessionUser {
            kind: draw.pick(&["human", "machine", "native"]).into(),
            username: draw.pick(&["alice", "bob", "ALICE", "svc-etl", ""]).into(),
            formal,
            end_user: None,
            native_username: draw.pick(&["app", "readonly", "postgres", ""]).into(),
        },
        resource: ResourceRef {
            kind: if resource == 4 { "ssh".into() } else { "datastore".into() },
            id: format!("r-{resource}"),
            name: format!("db {resource}"),
            technology: technology.into(),
        },
        connector: ConnectorRef {
            id: format!("c-{connector}"),
            name: format!("Connector {connector}"),
            ..Default::default()
        },
        parent_session_id: String::new(),
    }
}

/// 400 sessions starting from five days before `NOW` to six hours after it,
/// plus some on the edges of the first window and one before 1970.
pub fn spread() -> Vec<Session> {
    let mut draw = Draw(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    for i in 0..400 {
        let start = NOW - 5 * DAY + draw.below(5 * DAY + 6 * HOUR);
        let end = match i % 10 {
            0 => None,
            // Reported to end before it started.
            1 => Some(start - draw.below(10 * HOUR)),
            2 => Some(start + 2 * DAY + draw.below(DAY)),
            _ => Some(start + draw.below(3 * HOUR)),
        };
        out.push(session(format!("r{i:03}"), start, end, &mut draw));
    }
    // On the edges of the first window: its start, its first and last whole
    // hours, its end; ending on its start, or just before.
    let (start, end) = (WINDOWS[0].0, WINDOWS[0].1.unwrap_or(NOW));
    let first_hour = start - start.rem_euclid(HOUR) + HOUR;
    let last_hour = end - end.rem_euclid(HOUR);
    let edges = [
        (start, Some(start + MINUTE)),
        (start - HOUR, Some(start)),
        (start - HOUR, Some(start - 1)),
        (first_hour, Some(first_hour + 1)),
        (first_hour - 1, None),
        (last_hour, Some(last_hour)),
        (last_hour - 1, Some(end + DAY)),
        (end - 1, None),
        (end, None),
        // Backwards, in its whole hours: ending before the window, and within it.
        (first_hour + 5 * MINUTE, Some(start - 1)),
        (first_hour + 5 * MINUTE, Some(start)),
        (last_hour - 5 * MINUTE, Some(start + MINUTE)),
        (-30 * MINUTE, Some(-MINUTE)),
    ];
    for (i, (start, end)) in edges.into_iter().enumerate() {
        out.push(session(format!("e{i:02}"), start, end, &mut draw));
    }
    out
}

/// Inserts [`spread`] into a new organization `name`, in batches of varied
/// sizes, and a decoy copy into another; returns the first.
pub async fn load(store: &dyn Store, name: &str) -> OrgId {
    let org = store.ensure_org(name).await.unwrap().id;
    let other = store.ensure_org(&format!("{name}-other")).await.unwrap().id;
    let sessions = spread();
    let mut rest = &sessions[..];
    for size in [1, 7, 50, 3, 200].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        assert_eq!(store.insert_sessions(org, batch).await.unwrap(), batch.len() as u64);
        rest = tail;
    }
    store.insert_sessions(other, &sessions[..100]).await.unwrap();
    org
}

fn query(
    window: (Option<Micros>, Option<Micros>),
    histogram: Option<HistogramSpec>,
    facets: Vec<Facet>,
) -> AggregateQuery {
    AggregateQuery {
        filter: gatehouse_query::Expr::All,
        window_start: window.0,
        window_end: window.1,
        now: NOW,
        histogram,
        facets,
        facet_limit: 3,
    }
}

/// Every query the comparisons run over one window.
pub fn queries(window: (Option<Micros>, Option<Micros>)) -> Vec<AggregateQuery> {
    let histogram = |interval, group_by: &[Field]| Some(HistogramSpec { interval, group_by: group_by.to_vec() });
    let mut out = Vec::new();
    // Without a window start, the histogram spans from 1970 (a session started before it), in
    // too many buckets of a given interval.
    let (intervals, group_intervals): (&[_], &[_]) = match window.0 {
        Some(_) => (&[Some(HOUR), Some(3 * HOUR), Some(DAY), None, Some(30 * MINUTE)], &[Some(HOUR), None]),
        None => (&[None], &[None]),
    };
    for &interval in intervals {
        out.push(query(window, histogram(interval, &[]), vec![]));
    }
    for group_by in GROUP_BY {
        for &interval in group_intervals {
            out.push(query(window, histogram(interval, group_by), vec![]));
        }
    }
    out.push(query(window, None, Facet::ALL.to_vec()));
    out.push(query(window, histogram(None, &[Field::ResourceTechnology]), Facet::ALL.to_vec()));
    out
}

/// Asserts that every query over every window answers the same from the
/// rollup as from the sessions.
pub async fn assert_rollup_equals_raw(store: &dyn Store, org: OrgId, label: &str) {
    for window in every_window() {
        for q in queries(window) {
            let rolled = store.aggregate(org, &q).await.expect("aggregate");
            let raw = store.aggregate_raw(org, &q).await.expect("aggregate from the sessions");
            let spec = q.histogram.as_ref().map(|h| (h.interval, &h.group_by));
            assert_eq!(rolled, raw, "{label}: window {window:?}, histogram {spec:?}, {} facets", q.facets.len());
        }
    }
}

pub async fn rollup_answers_equal_counting_the_sessions(store: &dyn Store) {
    let org = load(store, "rolled").await;
    assert_rollup_equals_raw(store, org, "loaded").await;
    // And both equal a listing's walk.
    for window in every_window() {
        let listed = store
            .list_sessions(
                org,
                &ListQuery { window_start: window.0, window_end: window.1, ..ListQuery::newest(10_000, NOW) },
            )
            .await
            .unwrap();
        let counted = store.aggregate(org, &query(window, None, vec![])).await.unwrap();
        assert_eq!(counted.num_hits, listed.len() as u64, "{window:?}");
        // Without a window start, from 1970 on: too many hours.
        let interval = window.0.map(|_| HOUR);
        let histogram = Some(HistogramSpec { interval, group_by: vec![] });
        let counted = store.aggregate(org, &query(window, histogram, vec![])).await.unwrap();
        assert_eq!(counted.num_hits, listed.len() as u64, "{window:?}");
    }
    // The other organization's rollup holds only its own sessions.
    let other = store.find_org("rolled-other").await.unwrap().unwrap().id;
    assert_rollup_equals_raw(store, other, "other org").await;
}

/// Reports the sessions of [`spread`] through ingestion, with statements and
/// ends, twice over (a connector retrying), partly a third time, and once
/// more through `insert_sessions`.
pub async fn ingest_retried(store: &dyn Store, org: OrgId) {
    let sessions = spread();
    let events: Vec<IngestEvent> = sessions
        .iter()
        .flat_map(|s| {
            let statement = IngestEvent::Statement {
                session_id: s.id.clone(),
                statement: StatementRecord { seq: 1, text: "SELECT 1".into(), ..Default::default() },
            };
            let start = IngestEvent::Start(Box::new(Session { end: None, ..s.clone() }));
            let end = s.end.map(|end| IngestEvent::End { session_id: s.id.clone(), end, reason: "client".into() });
            [Some(start), Some(statement), end].into_iter().flatten()
        })
        .collect();
    for chunk in events.chunks(97) {
        let connector = "c-0";
        let stored = store.ingest(org, connector, chunk).await.unwrap();
        assert!(stored > 0);
        store.ingest(org, connector, chunk).await.unwrap();
    }
    store.ingest(org, "c-0", &events[..events.len() / 3]).await.unwrap();
    assert_eq!(store.insert_sessions(org, &sessions).await.unwrap(), 0, "all stored already");
}

pub async fn retried_reports_count_each_session_once(store: &dyn Store) {
    let org = store.ensure_org("ingested").await.unwrap().id;
    ingest_retried(store, org).await;
    // Only c-0 reported, so only its sessions ended; the rest stay active.
    let (start, _) = WINDOWS[4];
    let overlapping =
        spread().iter().filter(|s| s.connector.id != "c-0" || s.end.is_none_or(|end| end >= start)).count();
    let hits = store.aggregate(org, &query((Some(start), None), None, vec![])).await.unwrap().num_hits;
    assert_eq!(hits, overlapping as u64);
    assert_rollup_equals_raw(store, org, "ingested, retried").await;
}

pub async fn retention_takes_deleted_sessions_out_of_the_rollup(store: &dyn Store) {
    let org = load(store, "retained").await;
    assert!(store.delete_completed_before(NOW - 2 * DAY, 7).await.unwrap() > 20, "test bug: too little deleted");
    assert_rollup_equals_raw(store, org, "after deleting what ended 2 days ago").await;
    assert!(store.delete_completed_before(NOW + 10 * DAY, 3).await.unwrap() > 100);
    assert_rollup_equals_raw(store, org, "after deleting every completed session").await;
}

/// Every kind of write that changes the rollup, for the stores' own checks
/// of its table: inserts, retried ingestion, retention.
pub async fn write_everything(store: &dyn Store) -> OrgId {
    let org = load(store, "rolled").await;
    ingest_retried(store, store.ensure_org("ingested").await.unwrap().id).await;
    assert!(store.delete_completed_before(NOW - 2 * DAY, 7).await.unwrap() > 20);
    org
}

/// After every rolled-up count of `org` was made larger: match-all answers
/// over whole hours changed (so they read the rollup), and no other did.
pub async fn assert_answers_read_the_rollup(store: &dyn Store, org: OrgId) {
    let grouped = Some(HistogramSpec { interval: None, group_by: vec![Field::ResourceTechnology] });
    let facets = vec![Facet::ResourceTechnology, Facet::UserEmail, Facet::ClientIp];
    let window = (Some(WINDOWS[1].0), WINDOWS[1].1);
    // With a window start, and without one (every session matching).
    for window in [window, OPEN_STARTS[0], OPEN_STARTS[1]] {
        let rolled = query(window, grouped.clone(), facets.clone());
        let (changed, raw) =
            (store.aggregate(org, &rolled).await.unwrap(), store.aggregate_raw(org, &rolled).await.unwrap());
        assert!(changed.num_hits > raw.num_hits, "{window:?}: {} vs {}", changed.num_hits, raw.num_hits);
        assert_ne!(changed.histogram, raw.histogram, "{window:?}");
        assert_ne!(changed.facets[0], raw.facets[0], "{window:?}");
        assert_ne!(changed.facets[1], raw.facets[1], "{window:?}");
        assert_eq!(changed.facets[2], raw.facets[2], "{window:?}: client addresses are not rolled up");
        let count = query(window, None, vec![]);
        let (changed, raw) =
            (store.aggregate(org, &count).await.unwrap(), store.aggregate_raw(org, &count).await.unwrap());
        assert!(changed.num_hits > raw.num_hits, "{window:?}");
    }

    let rolled = query(window, grouped.clone(), facets.clone());
    let filtered = AggregateQuery { filter: gatehouse_query::parse("technology:postgres", NOW).unwrap(), ..rolled };
    let no_whole_hour = query((Some(WINDOWS[3].0), WINDOWS[3].1), grouped, facets);
    let by_group = query(window, Some(HistogramSpec { interval: None, group_by: vec![Field::UserGroups] }), vec![]);
    for q in [filtered, no_whole_hour, by_group] {
        assert_eq!(store.aggregate(org, &q).await.unwrap(), store.aggregate_raw(org, &q).await.unwrap());
    }
}
