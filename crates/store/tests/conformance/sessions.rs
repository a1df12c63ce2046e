//! Inserting and fetching single sessions.

use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::{Identity, Session};
use gatehouse_store::{ListQuery, Store};

use super::fixture::{MINUTE, NOW, active, completed, listing, sessions};

async fn ids(store: &dyn Store, org: gatehouse_core::OrgId, text: &str) -> Vec<String> {
    let query = ListQuery { limit: 100_000, ..listing(text, NOW) };
    let rows = store.list_sessions(org, &query).await.unwrap();
    rows.into_iter().map(|s| s.id).collect()
}

pub async fn inserting_an_existing_id_counts_zero_and_leaves_the_row_unchanged(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let fixture = sessions();
    assert_eq!(store.insert_sessions(acme, &fixture).await.unwrap(), fixture.len() as u64);
    // Connectors retry uploads: a replay must count nothing and change nothing.
    assert_eq!(store.insert_sessions(acme, &fixture).await.unwrap(), 0);

    // A later report for the same id, say with an end time and other groups,
    // does not overwrite the stored row or its searchable values.
    let original = fixture[4].clone();
    let mut changed = original.clone();
    changed.end = Some(NOW);
    changed.user.username = "mallory".into();
    changed.user.formal.as_mut().unwrap().groups = vec!["intruders".into()];
    let new = completed("s99", 10, 1).person("zoe", "Zoe", "zoe@example.com", &[]).build();
    assert_eq!(store.insert_sessions(acme, &[changed, new.clone()]).await.unwrap(), 1, "only s99 is new");

    assert_eq!(store.get_session(acme, &original.id).await.unwrap(), Some(original.clone()));
    assert_eq!(store.get_session(acme, "s99").await.unwrap(), Some(new));
    assert_eq!(ids(store, acme, "group:intruders").await, Vec::<String>::new());
    assert_eq!(ids(store, acme, "user:mallory").await, vec!["s20"]);
    assert_eq!(ids(store, acme, &format!("id:{} AND status:active", original.id)).await, vec![original.id]);
    let all = store.list_sessions(acme, &ListQuery::newest(1000, NOW)).await.unwrap();
    assert_eq!(all.len(), fixture.len() + 1, "no duplicate rows");
}

pub async fn a_batch_repeating_an_id_stores_the_first_and_indexes_only_it(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    // Within one batch the first occurrence wins, as across batches; the
    // row and its many-valued fields (groups) must come from the same one.
    let first = completed("dup", 30, 5).person("ann", "Ann", "ann@example.com", &["first-group"]).build();
    let second = completed("dup", 20, 5).person("ann", "Ann", "ann@example.com", &["second-group"]).build();
    assert_eq!(store.insert_sessions(acme, &[first.clone(), second]).await.unwrap(), 1);
    assert_eq!(store.get_session(acme, "dup").await.unwrap(), Some(first));
    let by_group = [ids(store, acme, "group:first-group").await, ids(store, acme, "group:second-group").await];
    assert_eq!(by_group, [vec!["dup".to_owned()], vec![]], "[stored session's group, discarded session's group]");
}

pub async fn empty_and_large_batches_are_inserted_whole(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    assert_eq!(store.insert_sessions(acme, &[]).await.unwrap(), 0);
    // More rows (and group values) than any sensible statement holds, so an
    // implementation that chunks must get every chunk boundary right.
    let batch: Vec<Session> = (0..1234)
        .map(|i| {
            let groups: &[&str] = if i % 2 == 0 { &["even", "all"] } else { &["odd", "all"] };
            active(&format!("bulk-{i:04}"), 1 + i).person(&format!("user{i}"), "Bulk", "b@example.com", groups).build()
        })
        .collect();
    assert_eq!(store.insert_sessions(acme, &batch).await.unwrap(), 1234);
    assert_eq!(store.insert_sessions(acme, &batch).await.unwrap(), 0);
    assert_eq!(ids(store, acme, "").await.len(), 1234);
    assert_eq!(ids(store, acme, "group:all").await.len(), 1234);
    assert_eq!(ids(store, acme, "group:odd").await.len(), 617);
    assert_eq!(ids(store, acme, "group:even AND group:odd").await.len(), 0);
    assert_eq!(ids(store, acme, "group:even AND user:user1233").await.len(), 0);
    assert_eq!(ids(store, acme, "group:odd AND user:user1233").await, vec!["bulk-1233"]);
    for i in [0, 199, 200, 201, 999, 1233] {
        let id = format!("bulk-{i:04}");
        assert_eq!(store.get_session(acme, &id).await.unwrap().as_ref(), Some(&batch[i as usize]), "{id}");
    }
}

pub async fn the_same_id_may_exist_in_two_orgs(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let ours = completed("shared-id", 30, 5).person("ann", "Ann", "ann@acme.example", &["a"]).build();
    let theirs = active("shared-id", 20).person("bea", "Bea", "bea@globex.example", &["b"]).build();
    assert_eq!(store.insert_sessions(acme, std::slice::from_ref(&ours)).await.unwrap(), 1);
    // Ids are unique per organization, not globally: this is not a replay.
    assert_eq!(store.insert_sessions(globex, std::slice::from_ref(&theirs)).await.unwrap(), 1);
    assert_eq!(store.get_session(acme, "shared-id").await.unwrap(), Some(ours));
    assert_eq!(store.get_session(globex, "shared-id").await.unwrap(), Some(theirs));
    assert_eq!(ids(store, acme, "group:b").await, Vec::<String>::new());
    assert_eq!(ids(store, globex, "group:b").await, vec!["shared-id"]);
}

pub async fn get_session_is_scoped_to_its_org(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let fixture = sessions();
    store.insert_sessions(acme, &fixture).await.unwrap();
    for session in &fixture {
        assert_eq!(store.get_session(acme, &session.id).await.unwrap().as_ref(), Some(session));
        assert_eq!(store.get_session(globex, &session.id).await.unwrap(), None, "{} leaked to globex", session.id);
    }
    assert_eq!(store.get_session(acme, "nope").await.unwrap(), None);
    assert_eq!(store.get_session(acme, "").await.unwrap(), None);
    // Ids are keywords: exact, case-sensitive, no patterns.
    assert_eq!(store.get_session(acme, "S01").await.unwrap(), None);
    assert_eq!(store.get_session(acme, "s0%").await.unwrap(), None);
    assert_eq!(store.get_session(acme, "s0_").await.unwrap(), None);
}

/// A session with every field set, all distinct.
fn full_session() -> Session {
    Session {
        id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        start: NOW - 90 * MINUTE + 123,
        end: Some(NOW - 7),
        client_ip: "2001:db8::42".into(),
        server_ip: "10.1.2.3".into(),
        sidecar: Sidecar { id: "sc-1".into(), name: "sidecar one".into(), technology: "postgres".into() },
        user: SessionUser {
            kind: "human".into(),
            username: "Ann.O'Neil".into(),
            formal: Some(Identity {
                id: "u-ann".into(),
                name: "Ann O'Neil".into(),
                email: "Ann@Example.com".into(),
                kind: "human".into(),
                groups: vec!["dba".into(), "sre".into(), "dba-eu".into()],
                external_ids: vec!["okta|123".into(), "ldap:ann".into()],
            }),
            end_user: Some(Identity {
                id: "eu-9".into(),
                name: "Zed".into(),
                email: "zed@customer.example".into(),
                kind: "customer".into(),
                groups: vec!["vip".into()],
                external_ids: vec![],
            }),
            native_username: "app_rw".into(),
        },
        resource: ResourceRef {
            kind: "datastore".into(),
            id: "r-42".into(),
            name: "Prod DB (EU) — 日本".into(),
            technology: "postgres".into(),
        },
        connector: ConnectorRef { id: "c-7".into(), name: "Connector \"seven\"".into(), run_id: "run-7".into() },
        parent_session_id: "0190a1b2-0000-7000-8000-000000000000".into(),
    }
}

pub async fn get_session_returns_every_field_as_inserted(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let full = full_session();
    // And a minimal one: no identities, no addresses, still active.
    let bare = Session { id: "bare".into(), start: NOW - 5, ..Default::default() };
    store.insert_sessions(acme, &[full.clone(), bare.clone()]).await.unwrap();
    assert_eq!(store.get_session(acme, &full.id).await.unwrap(), Some(full.clone()));
    assert_eq!(store.get_session(acme, "bare").await.unwrap(), Some(bare.clone()));
    // Listing returns the same rows as get_session.
    assert_eq!(store.list_sessions(acme, &ListQuery::newest(10, NOW)).await.unwrap(), vec![bare, full]);
}

pub async fn end_user_external_ids_survive_a_round_trip(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    // The wire's `User.Formal.UserInfo` carries external_ids for the end
    // user as for the user; a store must not drop them.
    let mut session = full_session();
    session.user.end_user.as_mut().unwrap().external_ids = vec!["crm:991".into()];
    store.insert_sessions(acme, std::slice::from_ref(&session)).await.unwrap();
    assert_eq!(store.get_session(acme, &session.id).await.unwrap(), Some(session));
}
