//! The listing window: a session is in `[start, end)` when it started before
//! the end and had not ended before the start; an active session has not ended.

use gatehouse_core::{Micros, OrgId};
use gatehouse_store::{ListQuery, Store};

use super::fixture::{ACTIVE, ALL, Fixture, MINUTE, NOW, active, ago, completed};

/// The window of the examples below: 10:00 to 11:00.
const FROM: i64 = 120;
const TO: i64 = 60;

pub async fn window_returns_sessions_overlapping_it(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // s22 ends exactly at the window start (it had not ended before it);
    // s13 starts exactly at the window end (it did not start before it).
    fx.check_window(
        "",
        Some(ago(FROM)),
        Some(ago(TO)),
        &["s05", "s07", "s08", "s09", "s10", "s11", "s12", "s20", "s21", "s22"],
    )
    .await;
    // Five minutes around s13's end at 11:05, which counts.
    fx.check_window("", Some(ago(55)), Some(ago(50)), &["s05", "s08", "s12", "s13", "s20"]).await;
    fx.check_window("", Some(ago(121)), Some(ago(120)), &["s05", "s07", "s08", "s09", "s10", "s20", "s21", "s22"])
        .await;
}

pub async fn window_bounds_are_optional(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // From 11:30 on: every active session, and those ending at 11:30 or later.
    fx.check_window("", Some(ago(30)), None, &["s05", "s08", "s12", "s15", "s16", "s17", "s18", "s19", "s20"]).await;
    // Up to 04:00: those started before it, however they ended.
    fx.check_window("", None, Some(ago(480)), &["s01", "s02", "s20", "s21"]).await;
    fx.check_window("", None, None, ALL).await;
    // A window in the future holds the sessions that have not ended yet.
    fx.check_window("", Some(NOW + 60 * MINUTE), Some(NOW + 120 * MINUTE), ACTIVE).await;
    fx.check_window("", Some(NOW + 60 * MINUTE), None, ACTIVE).await;
}

pub async fn window_keeps_active_sessions_that_started_long_before(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // s20 started 2000 minutes ago and is still active; s21 ran from 1500
    // to 100 minutes ago.
    fx.check_window("", Some(ago(2040)), Some(ago(1980)), &["s20"]).await;
    fx.check_window("", Some(ago(2400)), Some(ago(2040)), &[]).await;
    fx.check_window("", Some(ago(26 * 60)), Some(ago(24 * 60)), &["s20", "s21"]).await;
    fx.check_window("", Some(ago(1000)), Some(ago(900)), &["s20", "s21"]).await;
    // s21 ends inside this minute; s10 ends later; s07 and s09 ended before.
    fx.check_window("", Some(ago(101)), Some(ago(100)), &["s05", "s08", "s10", "s20", "s21"]).await;
}

pub async fn window_combines_with_the_filter(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let (from, to) = (Some(ago(FROM)), Some(ago(TO)));
    fx.check_window("status:active", from, to, &["s05", "s08", "s12", "s20"]).await;
    fx.check_window("technology:postgres", from, to, &["s05", "s07", "s09", "s11", "s12", "s20"]).await;
    fx.check_window("duration:>1h", from, to, &["s05", "s07", "s08", "s12", "s20", "s21"]).await;
    fx.check_window("-end_time:*", Some(ago(30)), None, ACTIVE).await;
    fx.check_window("user:alice", from, to, &["s07"]).await;
    fx.check_window("group:nobody", from, to, &[]).await;
}

async fn in_window(store: &dyn Store, org: OrgId, start: Micros, end: Option<Micros>) -> Vec<String> {
    let query = ListQuery { window_start: Some(start), window_end: end, ..ListQuery::newest(1000, NOW) };
    let mut ids: Vec<String> = store.list_sessions(org, &query).await.unwrap().into_iter().map(|s| s.id).collect();
    ids.sort();
    ids
}

pub async fn window_sees_the_longest_session_of_its_own_org(store: &dyn Store) {
    // A store may bound the scan by the longest duration it holds; that
    // bound must be exact at its edge and computed per organization.
    let longhaul = store.ensure_org("longhaul").await.unwrap().id;
    let shorty = store.ensure_org("shorty").await.unwrap().id;
    let long = completed("long", 1000, 980).build(); // 1000 to 20 minutes ago
    let short = completed("short", 30, 5).build(); // 30 to 25 minutes ago
    store.insert_sessions(longhaul, &[long, short]).await.unwrap();
    let blips: Vec<_> = (0..5).map(|i| completed(&format!("blip{i}"), 40 + i, 1).build()).collect();
    store.insert_sessions(shorty, &blips).await.unwrap();

    assert_eq!(in_window(store, longhaul, ago(20), None).await, ["long"], "ends exactly at the window start");
    assert_eq!(in_window(store, longhaul, ago(19), None).await, Vec::<String>::new());
    assert_eq!(in_window(store, longhaul, ago(30), Some(ago(29))).await, ["long", "short"]);
    assert_eq!(in_window(store, shorty, ago(41), None).await, ["blip0", "blip1", "blip2"]);
    assert_eq!(in_window(store, shorty, ago(20), None).await, Vec::<String>::new());

    // An active session older than every completed one.
    store.insert_sessions(longhaul, &[active("ancient", 3000).build()]).await.unwrap();
    assert_eq!(in_window(store, longhaul, ago(20), None).await, ["ancient", "long"]);
    assert_eq!(in_window(store, longhaul, ago(19), Some(ago(18))).await, ["ancient"]);
}
