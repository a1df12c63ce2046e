//! Sort orders and keyset paging.
//!
//! Every listing is a total order on `(key, id)`, where the key is the one
//! `ListQuery::key_of` gives: the start, the end (`ACTIVE_END_KEY`, after
//! every real end, for active sessions) or the duration (`now - start` for
//! active sessions). Paging continues strictly after a `Position` in the
//! walking direction; `reverse` walks the other way, returning rows in the
//! order walked.

use gatehouse_core::Session;
use gatehouse_core::session::ConnectorRef;
use gatehouse_store::{ACTIVE_END_KEY, Direction, IngestEvent, ListQuery, NewConnector, Position, SortKey, Store};

use super::fixture::{Fixture, MINUTE, NOW, ago, completed, every_sort, listing};

fn label(query: &ListQuery) -> String {
    format!("{:?} {:?} at NOW{:+}m", query.sort, query.direction, (query.now - NOW) / MINUTE)
}

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// Records a failure when `got` differs from `want`.
fn expect(fx: &Fixture<'_>, label: &str, got: Vec<String>, want: Vec<String>) {
    if got != want {
        fx.fail(format!("{label}:\n      expected {want:?}\n      got      {got:?}"));
    }
}

async fn ids(fx: &Fixture<'_>, query: &ListQuery) -> Vec<String> {
    fx.list(fx.acme, query).await.into_iter().map(|s| s.id).collect()
}

/// Walks pages of `page` rows from `from` until an empty page, each page
/// continuing after the last row of the one before; returns the ids in the
/// order seen.
async fn walk(fx: &Fixture<'_>, base: &ListQuery, page: usize, reverse: bool, from: Option<Position>) -> Vec<String> {
    let mut query = ListQuery { limit: page, reverse, after: from, ..base.clone() };
    let mut seen = Vec::new();
    loop {
        let rows = fx.list(fx.acme, &query).await;
        assert!(rows.len() <= page, "{}: page of {} rows for limit {page}", label(&query), rows.len());
        let Some(last) = rows.last() else { break };
        query.after = Some(Position { key: query.key_of(last), id: last.id.clone() });
        seen.extend(rows.into_iter().map(|s| s.id));
        assert!(seen.len() <= 2 * fx.sessions.len(), "{}: paging does not end: {seen:?}", label(&query));
    }
    seen
}

fn position(fx: &Fixture<'_>, query: &ListQuery, id: &str) -> Position {
    Position { key: query.key_of(fx.session(id)), id: id.to_owned() }
}

pub async fn default_listing_is_newest_first_with_ties_on_id(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // s10 and s09 start together, as do s04 and s03: the larger id comes first.
    let newest = [
        "s19", "s18", "s17", "s16", "s15", "s14", "s13", "s12", "s11", "s10", "s09", "s08", "s22", "s07", "s06", "s05",
        "s04", "s03", "s02", "s01", "s21", "s20",
    ];
    expect(&fx, "newest", ids(&fx, &ListQuery::newest(100, NOW)).await, owned(&newest));
    expect(&fx, "newest 4", ids(&fx, &ListQuery::newest(4, NOW)).await, owned(&newest[..4]));
}

pub async fn end_time_sort_puts_active_sessions_after_every_end(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let ascending = [
        "s01", "s02", "s03", "s04", "s06", "s22", "s07", "s09", "s21", "s10", "s11", "s13", "s14", "s15", "s16", "s18",
        // Active: all at ACTIVE_END_KEY, so by id.
        "s05", "s08", "s12", "s17", "s19", "s20",
    ];
    let asc = ListQuery { sort: SortKey::EndTime, direction: Direction::Asc, ..ListQuery::newest(100, NOW) };
    expect(&fx, "end_time asc", ids(&fx, &asc).await, owned(&ascending));
    let desc = ListQuery { direction: Direction::Desc, ..asc.clone() };
    let descending: Vec<&str> = ascending.iter().rev().copied().collect();
    expect(&fx, "end_time desc", ids(&fx, &desc).await, owned(&descending));
    assert_eq!(asc.key_of(fx.session("s20")), ACTIVE_END_KEY);
}

pub async fn duration_sort_measures_active_sessions_to_now(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // Active sessions (marked *) interleave with completed ones by their
    // age at NOW; equal durations go by id across both.
    let ascending = [
        "s16", "s18", "s13", "s19", /* 5m* */ "s14", "s15", "s09", "s17", /* 20m* */ "s01", "s03", "s11",
        "s02", "s06", "s10", "s22", "s04", "s07", "s12", /* 90m* */ "s08", /* 150m* */ "s05",
        /* 300m* */ "s21", "s20", /* 2000m* */
    ];
    let asc = ListQuery { sort: SortKey::Duration, direction: Direction::Asc, ..ListQuery::newest(100, NOW) };
    expect(&fx, "duration asc", ids(&fx, &asc).await, owned(&ascending));
    // Ten hours later the active sessions have all outlasted the completed
    // ones but s21 (1400m).
    let later = ListQuery { now: NOW + 600 * MINUTE, ..asc.clone() };
    let later_order = [
        "s16", "s18", "s13", "s14", "s15", "s09", "s01", "s03", "s11", "s02", "s06", "s10", "s22", "s04", "s07", "s19",
        "s17", "s12", "s08", "s05", "s21", "s20",
    ];
    expect(&fx, "duration asc, 10h later", ids(&fx, &later).await, owned(&later_order));
    assert_eq!(fx.reference_order(&later), owned(&later_order), "test bug: key_of disagrees");
}

pub async fn every_sort_is_a_total_order_ties_broken_on_id(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    for query in every_sort() {
        // The fixture must have ties under every key, or the tie-break goes untested.
        let mut keys: Vec<i64> = fx.sessions.iter().map(|s| query.key_of(s)).collect();
        keys.sort();
        assert!(keys.windows(2).any(|w| w[0] == w[1]), "test bug: no ties for {}", label(&query));
        expect(&fx, &label(&query), ids(&fx, &query).await, fx.reference_order(&query));
    }
}

pub async fn keyset_paging_walks_every_session_exactly_once(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    for query in every_sort() {
        let want = fx.reference_order(&query);
        for page in [1, 2, 3, 7, 22] {
            let got = walk(&fx, &query, page, false, None).await;
            expect(&fx, &format!("{} walked {page} at a time", label(&query)), got, want.clone());
        }
        // Starting from any position continues right after it.
        for i in [0, 5, 15, 21] {
            let from = position(&fx, &query, &want[i]);
            let got = walk(&fx, &query, 3, false, Some(from)).await;
            expect(&fx, &format!("{} after {}", label(&query), want[i]), got, want[i + 1..].to_vec());
        }
    }
}

pub async fn reverse_paging_walks_back_in_walking_order(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    for query in every_sort() {
        let want = fx.reference_order(&query);
        let n = want.len();
        for page in [1, 2, 3] {
            // From the far end back to the start, nearest row first.
            let backwards: Vec<String> = want.iter().rev().cloned().collect();
            let got = walk(&fx, &query, page, true, None).await;
            expect(&fx, &format!("{} reversed from the end, {page} at a time", label(&query)), got, backwards);
            for i in [n - 1, n / 2, 4, 1, 0] {
                let from = position(&fx, &query, &want[i]);
                let before: Vec<String> = want[..i].iter().rev().cloned().collect();
                let got = walk(&fx, &query, page, true, Some(from.clone())).await;
                expect(&fx, &format!("{} reversed from {}, {page} at a time", label(&query), want[i]), got, before);
            }
        }
        // The page before a page: walk forward 3, then back 3 from its first row.
        let second_page = ListQuery { limit: 3, after: Some(position(&fx, &query, &want[2])), ..query.clone() };
        let page = ids(&fx, &second_page).await;
        expect(&fx, &format!("{} second page", label(&query)), page.clone(), want[3..6].to_vec());
        let back = ListQuery { limit: 3, reverse: true, after: Some(position(&fx, &query, &want[3])), ..query.clone() };
        let first_reversed: Vec<String> = want[..3].iter().rev().cloned().collect();
        expect(&fx, &format!("{} page before the second", label(&query)), ids(&fx, &back).await, first_reversed);
    }
}

pub async fn paging_respects_filter_and_window(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // Postgres or MySQL sessions overlapping the last 26 hours but one.
    let matching = ["s01", "s02", "s03", "s04", "s05", "s07", "s08", "s09", "s10", "s11", "s12", "s20", "s22"];
    for sorted in every_sort() {
        let query = ListQuery {
            window_start: Some(ago(26 * 60)),
            window_end: Some(ago(60)),
            ..ListQuery { filter: listing("technology:IN [postgres mysql]", NOW).filter, ..sorted }
        };
        let want = owned(&fx.in_order(&query, &matching));
        for page in [1, 2, 3] {
            let got = walk(&fx, &query, page, false, None).await;
            expect(&fx, &format!("filtered {} walked {page} at a time", label(&query)), got, want.clone());
            let got = walk(&fx, &query, page, true, None).await;
            let backwards: Vec<String> = want.iter().rev().cloned().collect();
            expect(&fx, &format!("filtered {} reversed {page} at a time", label(&query)), got, backwards);
        }
        // A position taken from a row the filter excludes (s06) still splits the order.
        let s06 = position(&fx, &query, "s06");
        let key = (query.key_of(fx.session("s06")), "s06");
        let after: Vec<String> = want
            .iter()
            .filter(|id| {
                let here = (query.key_of(fx.session(id)), id.as_str());
                if query.direction == Direction::Asc { here > key } else { here < key }
            })
            .cloned()
            .collect();
        let got = walk(&fx, &query, 2, false, Some(s06)).await;
        expect(&fx, &format!("filtered {} after excluded s06", label(&query)), got, after);
    }
}

pub async fn paging_is_stable_while_sessions_arrive(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let mut next = ListQuery::newest(3, NOW);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let rows = fx.list(fx.acme, &next).await;
        let last = rows.last().expect("a full page");
        next.after = Some(Position { key: next.key_of(last), id: last.id.clone() });
        seen.extend(rows.into_iter().map(|s| s.id));
    }
    // New sessions arrive mid-walk: one newer than the walk's position (it
    // belongs to pages already served), one tying with s11 on start, one
    // older than all.
    let arrivals =
        [completed("n-new", 1, 1).build(), completed("n-mid", 100, 1).build(), completed("n-old", 3000, 1).build()];
    assert_eq!(store.insert_sessions(fx.acme, &arrivals).await.unwrap(), 3);
    loop {
        let rows = fx.list(fx.acme, &next).await;
        let Some(last) = rows.last() else { break };
        next.after = Some(Position { key: next.key_of(last), id: last.id.clone() });
        seen.extend(rows.into_iter().map(|s| s.id));
        assert!(seen.len() < 100, "paging does not end");
    }
    let mut all: Vec<(i64, String)> = fx.sessions.iter().chain(&arrivals).map(|s| (s.start, s.id.clone())).collect();
    all.sort();
    all.reverse();
    let want: Vec<String> = all.into_iter().map(|(_, id)| id).filter(|id| id != "n-new").collect();
    expect(&fx, "walk with arrivals", seen, want);
}

pub async fn a_session_ending_mid_walk_keeps_its_place(store: &dyn Store) {
    // Sorted by end time or duration, a session's key changes when it ends. A walk takes
    // keys as they stood at its `now`, so each session is listed once: here one session
    // ends after its page was served (it would come again), one before its page is (it
    // would be passed over).
    let fx = Fixture::load(store).await;
    for (sort, served, to_come) in [(SortKey::EndTime, "s17", "s08"), (SortKey::Duration, "s05", "s12")] {
        let base = ListQuery { sort, direction: Direction::Desc, ..ListQuery::newest(4, NOW) };
        let want = fx.reference_order(&base);
        let mut next = base.clone();
        let mut seen = Vec::new();
        let mut ended = false;
        loop {
            let rows = fx.list(fx.acme, &next).await;
            let Some(last) = rows.last() else { break };
            next.after = Some(Position { key: next.key_of(last), id: last.id.clone() });
            seen.extend(rows.into_iter().map(|s| s.id));
            if !ended && seen.iter().any(|id| id == served) {
                assert!(!seen.iter().any(|id| id == to_come), "test bug: {to_come} is on the first page");
                for id in [served, to_come] {
                    let end = NOW + 100 * MINUTE;
                    let event = IngestEvent::End { session_id: id.into(), end, reason: "client".into() };
                    store.ingest(fx.acme, &fx.session(id).connector.id, &[event]).await.unwrap();
                    let stored = store.get_session(fx.acme, id).await.unwrap().expect("stored");
                    assert_eq!(stored.end, Some(end), "test bug: {id} did not end");
                }
                ended = true;
            }
            assert!(seen.len() < 100, "paging does not end");
        }
        assert!(ended, "test bug: {served} never served");
        expect(&fx, &format!("{} with sessions ending mid-walk", label(&base)), seen, want);
    }
}

pub async fn an_end_before_its_start_is_stored_as_its_start(store: &dyn Store) {
    // A connector whose clock stepped back reports an end before the start: stored, the
    // session lasted no time, whether it came whole or ended later, and a walk by duration
    // places it by that zero (its stored duration and its cursor key agree).
    let fx = Fixture::load(store).await;
    let mut whole = completed("x-whole", 30, 1).build();
    whole.end = Some(whole.start - 2 * MINUTE);
    assert_eq!(store.insert_sessions(fx.acme, &[whole.clone()]).await.unwrap(), 1);
    let late = fx.session("s05");
    let event = IngestEvent::End { session_id: late.id.clone(), end: late.start - 5 * MINUTE, reason: "client".into() };
    store.ingest(fx.acme, &late.connector.id, &[event]).await.unwrap();
    for (id, start) in [("x-whole", whole.start), ("s05", late.start)] {
        let stored = store.get_session(fx.acme, id).await.unwrap().expect("stored");
        assert_eq!(stored.end, Some(start), "{id}: end");
    }
    let mut all: Vec<String> = fx.sessions.iter().map(|s| s.id.clone()).chain(["x-whole".to_owned()]).collect();
    all.sort();
    // Walks that begin once s05's end is recorded (on the store's clock, the real one).
    let now = gatehouse_core::time::now_micros();
    for direction in [Direction::Asc, Direction::Desc] {
        let base = ListQuery { sort: SortKey::Duration, direction, ..ListQuery::newest(1, now) };
        for reverse in [false, true] {
            let mut seen = walk(&fx, &base, 1, reverse, None).await;
            seen.sort();
            expect(&fx, &format!("{} by ones, reverse {reverse}", label(&base)), seen, all.clone());
        }
    }
}

pub async fn a_walk_filters_sessions_as_they_stood_at_its_now(store: &dyn Store) {
    // A session whose end was recorded after a walk's `now` is listed as it stood then,
    // active; its status, end time and duration are filtered so too, or a walk for completed
    // sessions would list one shown active, and one for active sessions would pass it over.
    let fx = Fixture::load(store).await;
    let s05 = fx.session("s05");
    assert_eq!(s05.end, None, "test bug: s05 is active in the fixture");
    let event = IngestEvent::End { session_id: "s05".into(), end: NOW - MINUTE, reason: "client".into() };
    store.ingest(fx.acme, &s05.connector.id, &[event]).await.unwrap();
    // Each filter, and what it keeps of the fixture (where s05 is active).
    type Keeps = dyn Fn(&gatehouse_core::Session) -> bool;
    let filters: [(&str, &Keeps); 4] = [
        ("session_status:active", &|s| s.end.is_none()),
        ("session_status:completed", &|s| s.end.is_some()),
        ("duration:>30m", &|s| s.end.unwrap_or(NOW) - s.start > 30 * MINUTE),
        ("NOT end_time:<now", &|s| s.end.is_none_or(|end| end >= NOW)),
    ];
    for sort in [SortKey::EndTime, SortKey::Duration] {
        for (text, keeps) in filters {
            let query = ListQuery { sort, ..listing(text, NOW) };
            let want: Vec<String> = fx.reference_order(&query).into_iter().filter(|id| keeps(fx.session(id))).collect();
            assert_eq!(want.contains(&"s05".to_owned()), keeps(s05), "test bug: {text}");
            let got = walk(&fx, &query, 3, false, None).await;
            expect(&fx, &format!("{} {text}", label(&query)), got, want);
        }
    }
}

pub async fn limit_caps_every_page(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // Merging active and completed sessions must still cut at the limit.
    for query in every_sort() {
        let want = fx.reference_order(&query);
        for limit in [1, 2, 5, 6, 16, 17, 21, 22, 23, 1000] {
            let got = ids(&fx, &ListQuery { limit, ..query.clone() }).await;
            let cut = want[..limit.min(want.len())].to_vec();
            expect(&fx, &format!("{} limit {limit}", label(&query)), got, cut);
            let got = ids(&fx, &ListQuery { limit, reverse: true, ..query.clone() }).await;
            let cut: Vec<String> = want.iter().rev().take(limit).cloned().collect();
            expect(&fx, &format!("{} reversed, limit {limit}", label(&query)), got, cut);
        }
    }
}

pub async fn a_session_whose_end_is_recorded_late_keeps_its_place(store: &dyn Store) {
    // An end reaches the store after the time it reports: report batching delays it a little,
    // a spool replay by hours, and the lease sweep ends sessions when their run was last heard.
    // A walk that began in between saw the session active and keeps it there, though its end
    // is before the walk's `now`: listed once, shown as it stood. The store records ends on
    // the clock the server takes a walk's `now` from, so these walks are at the real time.
    let base = gatehouse_core::time::now_micros();
    let at = |minutes: i64| base - minutes * MINUTE;
    let cases = [
        (SortKey::EndTime, Direction::Desc),
        (SortKey::EndTime, Direction::Asc),
        (SortKey::Duration, Direction::Desc),
        (SortKey::Duration, Direction::Asc),
    ];
    for (case, (sort, direction)) in cases.into_iter().enumerate() {
        let org = store.ensure_org(&format!("late-ends-{case}")).await.unwrap().id;
        let connector_id = format!("c-late-ends-{case}");
        let connector = NewConnector {
            org,
            id: connector_id.clone(),
            name: "one".into(),
            key_prefix: format!("gk_late_ends_{case}"),
            key_hash: vec![0; 32],
            created: at(200),
        };
        store.create_connector(&connector).await.unwrap();
        // Each active session on a run of its own, so that the sweep can take one alone.
        let session = |id: &str, start: i64, end: Option<i64>| Session {
            id: id.into(),
            start: at(start),
            end: end.map(at),
            connector: ConnectorRef { id: connector_id.clone(), name: "one".into(), run_id: id.into() },
            ..Default::default()
        };
        let sessions = [
            session("c1", 120, Some(110)),
            session("c2", 100, Some(95)),
            session("c3", 90, Some(60)),
            session("a1", 50, None),
            session("a2", 40, None),
            session("a3", 30, None),
            session("a4", 20, None),
            session("a5", 10, None),
        ];
        let active: Vec<&str> = sessions.iter().filter(|s| s.end.is_none()).map(|s| s.id.as_str()).collect();
        for run in &active {
            store.connector_hello(org, &connector_id, run, &[], at(60)).await.unwrap();
        }
        store.insert_sessions(org, &sessions).await.unwrap();

        let walk = ListQuery { sort, direction, ..ListQuery::newest(2, gatehouse_core::time::now_micros()) };
        let label = format!("{sort:?} {direction:?}");
        let mut want: Vec<(i64, &str)> = sessions.iter().map(|s| (walk.key_of(s), s.id.as_str())).collect();
        want.sort();
        if direction == Direction::Desc {
            want.reverse();
        }
        let want: Vec<String> = want.into_iter().map(|(_, id)| id.to_owned()).collect();

        let mut next = walk.clone();
        let mut seen: Vec<String> = Vec::new();
        let mut ended: Vec<String> = Vec::new();
        loop {
            let rows = store.list_sessions(org, &next).await.unwrap();
            let Some(last) = rows.last() else { break };
            next.after = Some(Position { key: next.key_of(last), id: last.id.clone() });
            for row in &rows {
                if ended.contains(&row.id) {
                    assert_eq!(row.end, None, "{label}: {} is listed as it stood at the walk's now", row.id);
                }
            }
            seen.extend(rows.into_iter().map(|s| s.id));
            let served = seen.iter().rev().find(|id| active.contains(&id.as_str()));
            if let (true, Some(served)) = (ended.is_empty(), served) {
                let to_come: Vec<&String> =
                    want.iter().filter(|id| active.contains(&id.as_str()) && !seen.contains(id)).collect();
                assert!(to_come.len() >= 2, "test bug: {label}: {to_come:?} left to come");
                let start_of = |id: &str| sessions.iter().find(|s| s.id == id).unwrap().start;
                // A spool replayed hours late: long over, a minute after it began.
                let replayed = IngestEvent::End {
                    session_id: served.clone(),
                    end: start_of(served) + MINUTE,
                    reason: "client".into(),
                };
                // Report batching: over just before the walk began.
                let batched = IngestEvent::End {
                    session_id: to_come[1].clone(),
                    end: walk.now - 100_000,
                    reason: "client".into(),
                };
                assert_eq!(store.ingest(org, &connector_id, &[replayed, batched]).await.unwrap(), 2, "{label}");
                // The sweep: every run but one heard now, that one taken for gone, its session
                // ended when it was last heard, or at its start if later.
                for run in active.iter().filter(|run| **run != to_come[0].as_str()) {
                    store.connector_heartbeat(org, &connector_id, run, base).await.unwrap();
                }
                assert_eq!(store.expire_connectors(base - 1).await.unwrap(), 1, "{label}");
                ended = vec![served.clone(), to_come[0].clone(), to_come[1].clone()];
                for id in &ended {
                    let stored = store.get_session(org, id).await.unwrap().expect("stored");
                    assert!(stored.end.is_some_and(|end| end < walk.now), "test bug: {label}: {id} ended {stored:?}");
                }
            }
            assert!(seen.len() < 100, "{label}: paging does not end: {seen:?}");
        }
        assert!(!ended.is_empty(), "test bug: {label}: no active session served");
        assert_eq!(seen, want, "{label}: each session once, where it stood at the walk's now");

        // A walk that begins now sees those ends.
        let fresh = ListQuery { limit: 100, now: gatehouse_core::time::now_micros(), ..walk.clone() };
        let listed = store.list_sessions(org, &fresh).await.unwrap();
        assert_eq!(listed.len(), sessions.len(), "{label}");
        for row in listed.iter().filter(|row| ended.contains(&row.id)) {
            assert!(row.end.is_some(), "{label}: a walk begun since sees {} ended", row.id);
        }
    }
}
