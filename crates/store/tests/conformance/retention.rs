//! Retention: deleting completed sessions that ended before a cutoff, with
//! their statements and searchable values, in small batches.

use std::collections::BTreeSet;

use gatehouse_core::{Micros, OrgId};
use gatehouse_store::{IngestEvent, ListQuery, StatementRecord, Store};

use super::fixture::{Fixture, NOW, active, ago, completed, decoys, listing, sessions};

async fn all_ids(store: &dyn Store, org: OrgId) -> BTreeSet<String> {
    let rows = store.list_sessions(org, &ListQuery::newest(10_000, NOW)).await.unwrap();
    rows.into_iter().map(|s| s.id).collect()
}

fn statement(session_id: &str, seq: u64) -> IngestEvent {
    IngestEvent::Statement {
        session_id: session_id.into(),
        statement: StatementRecord { seq, text: format!("SELECT {seq}"), ..Default::default() },
    }
}

/// The fixture ids of `org`'s sessions that retention at `cutoff` keeps.
fn kept(fx: &Fixture<'_>, org: OrgId, cutoff: Micros) -> BTreeSet<String> {
    fx.stored(org).values().filter(|s| s.end.is_none_or(|end| end >= cutoff)).map(|s| s.id.clone()).collect()
}

pub async fn retention_deletes_completed_sessions_that_ended_before_the_cutoff(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // 10:20: s21 ends exactly then and stays; s07 and s09 (10:10) go.
    let cutoff = ago(100);
    let eu = [statement("s01", 1), statement("s01", 2), statement("s20", 1)];
    for org in [fx.acme, fx.globex] {
        assert_eq!(store.ingest(org, "c-eu", &eu).await.unwrap(), 3);
        assert_eq!(store.ingest(org, "c-us", &[statement("s11", 1)]).await.unwrap(), 1);
    }
    let doomed = fx.stored(fx.acme).len() - kept(&fx, fx.acme, cutoff).len() + fx.stored(fx.globex).len()
        - kept(&fx, fx.globex, cutoff).len();
    assert!(doomed > 10, "test bug: too little to delete");

    assert_eq!(store.delete_completed_before(cutoff, 2).await.unwrap(), doomed as u64, "deleted, every org");
    for org in [fx.acme, fx.globex] {
        assert_eq!(all_ids(store, org).await, kept(&fx, org, cutoff));
        // Their statements went with them; the others' stayed.
        assert_eq!(store.statements(org, "s01").await.unwrap(), vec![]);
        assert_eq!(store.statements(org, "s11").await.unwrap().len(), 1);
        assert_eq!(store.statements(org, "s20").await.unwrap().len(), 1);
    }
    for id in ["s01", "s07", "s09"] {
        assert_eq!(store.get_session(fx.acme, id).await.unwrap(), None, "{id} survived");
    }
    for id in ["s21", "s20", "s11"] {
        assert_eq!(store.get_session(fx.acme, id).await.unwrap().as_ref(), Some(fx.session(id)), "{id}");
    }
    // Searches over many-valued fields see only what is left.
    let dba: Vec<String> = fx.list(fx.acme, &listing("group:dba", NOW)).await.into_iter().map(|s| s.id).collect();
    assert_eq!(dba, vec!["s08"]);
    // Nothing more to do at the same cutoff.
    assert_eq!(store.delete_completed_before(cutoff, 2).await.unwrap(), 0);
    // Windows still see the longest remaining session (s21).
    let window =
        ListQuery { window_start: Some(ago(1400)), window_end: Some(ago(1390)), ..ListQuery::newest(100, NOW) };
    let ids: Vec<String> = fx.list(fx.acme, &window).await.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec!["s21", "s20"]);
}

pub async fn retention_never_deletes_active_sessions_and_batch_size_does_not_matter(store: &dyn Store) {
    // The same data in three orgs, each emptied with another batch size.
    let mut totals = Vec::new();
    for (name, batch) in [("one", 1), ("three", 3), ("many", 10_000)] {
        let org = store.ensure_org(name).await.unwrap().id;
        store.insert_sessions(org, &sessions()).await.unwrap();
        store.insert_sessions(org, &decoys()[22..]).await.unwrap();
        let ancient = active("ancient", 100_000).build();
        store.insert_sessions(org, &[ancient, completed("recent", 1, 1).build()]).await.unwrap();
        totals.push((org, batch));
    }
    let mut deleted = 0;
    for (_, batch) in &totals {
        // Each call deletes in every org; later calls find nothing left.
        deleted += store.delete_completed_before(NOW + 1, *batch).await.unwrap();
    }
    let completed_per_org = 2 * 16 + 1;
    assert_eq!(deleted, 3 * completed_per_org, "every completed session, each counted once");
    for (org, _) in totals {
        let left = all_ids(store, org).await;
        let want: BTreeSet<String> = ["s05", "s08", "s12", "s17", "s19", "s20"]
            .iter()
            .flat_map(|id| [id.to_string(), format!("g{id}")])
            .chain(["ancient".to_owned()])
            .collect();
        assert_eq!(left, want, "only active sessions are left");
    }
    assert_eq!(store.delete_completed_before(NOW + 1, 0).await.unwrap(), 0, "a zero batch is one row at a time");
}
