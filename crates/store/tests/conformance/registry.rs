//! The registry (resources, connectors), connector runs and leases,
//! ingestion, statements and terminations.

use gatehouse_core::session::ConnectorRef;
use gatehouse_core::{Micros, OrgId, Session};
use gatehouse_store::{
    AggregateQuery, ConnectorInfo, Facet, IngestEvent, KeyReplacement, ListQuery, NewConnector, PreviousRun,
    RUN_MEMORY, Resource, StatementRecord, StatementStatus, StatementsPage, Store, StoreError, TerminationRecord,
};

use super::fixture::{MINUTE, NOW, active, ago, completed, listing};

fn resource(id: &str, name: &str) -> Resource {
    Resource {
        id: id.into(),
        name: name.into(),
        kind: "datastore".into(),
        technology: "postgres".into(),
        host: format!("{id}.db.internal"),
        port: 5432,
        created: NOW,
    }
}

fn connector(org: OrgId, id: &str, name: &str) -> NewConnector {
    NewConnector {
        org,
        id: id.into(),
        name: name.into(),
        key_prefix: format!("gk_{id}"),
        key_hash: format!("hash-of-{id}").into_bytes(),
        created: NOW - 1000,
    }
}

/// A session reported by connector `via`.
fn via(session: Session, connector: &str) -> Session {
    on(session, connector, "")
}

/// A session reported by run `run` of connector `connector`.
fn on(mut session: Session, connector: &str, run: &str) -> Session {
    session.connector = ConnectorRef { id: connector.into(), name: format!("{connector} name"), run_id: run.into() };
    session
}

/// Runs named in a Hello as taken over, with nothing said of when they were last alive.
fn runs(names: &[&str]) -> Vec<PreviousRun> {
    names.iter().map(|name| PreviousRun::named(*name)).collect()
}

fn start(session: &Session) -> IngestEvent {
    IngestEvent::Start(Box::new(session.clone()))
}

fn statement(session_id: &str, seq: u64, text: &str) -> IngestEvent {
    IngestEvent::Statement {
        session_id: session_id.into(),
        statement: StatementRecord {
            seq,
            start: NOW + seq as i64,
            duration: 10 * seq as i64,
            text: text.into(),
            rows: seq as i64,
            bytes_sent: 100 * seq as i64,
            sqlstate: "00000".into(),
            rows_changed: 1000 * seq as i64,
            ..Default::default()
        },
    }
}

/// A statement of `session_id` that ran from `start` for `duration`.
fn ran(session_id: &str, seq: u64, start: Micros, duration: Micros) -> IngestEvent {
    IngestEvent::Statement {
        session_id: session_id.into(),
        statement: StatementRecord {
            seq,
            start,
            duration,
            text: "select pg_sleep(30)".into(),
            rows: 1,
            bytes_sent: 100,
            sqlstate: String::new(),
            ..Default::default()
        },
    }
}

/// Statement `seq` of `session_id` announced while it runs.
fn running(session_id: &str, seq: u64, text: &str) -> IngestEvent {
    IngestEvent::Running {
        session_id: session_id.into(),
        statement: StatementRecord { seq, start: NOW + seq as i64, text: text.into(), ..StatementRecord::default() },
    }
}

fn end(session_id: &str, at: Micros, reason: &str) -> IngestEvent {
    IngestEvent::End { session_id: session_id.into(), end: at, reason: reason.into() }
}

async fn ids(store: &dyn Store, org: OrgId, text: &str) -> Vec<String> {
    let rows = store.list_sessions(org, &listing(text, NOW)).await.unwrap();
    rows.into_iter().map(|s| s.id).collect()
}

async fn end_of(store: &dyn Store, org: OrgId, id: &str) -> Option<Micros> {
    store.get_session(org, id).await.unwrap().unwrap_or_else(|| panic!("no session {id}")).end
}

pub async fn resources_are_unique_per_org_by_name_and_listed_by_name(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let orders = resource("r-orders", "orders");
    let analytics = resource("r-analytics", "analytics");
    // Names order byte-wise, as ids do: upper case before lower case.
    let zeta = resource("r-zeta", "Zeta");
    for r in [&orders, &analytics, &zeta] {
        store.create_resource(acme, r).await.unwrap();
    }
    assert_eq!(store.list_resources(acme).await.unwrap(), vec![zeta.clone(), analytics.clone(), orders.clone()]);
    let again = resource("r-orders-2", "orders");
    assert!(matches!(store.create_resource(acme, &again).await, Err(StoreError::Conflict(_))), "name taken in acme");
    // Another org may use the name, not the id.
    store.create_resource(globex, &again).await.unwrap();
    let taken_id = resource("r-orders", "other name");
    assert!(matches!(store.create_resource(globex, &taken_id).await, Err(StoreError::Conflict(_))), "id taken");
    assert_eq!(store.list_resources(globex).await.unwrap(), vec![again]);
    assert_eq!(store.list_resources(acme).await.unwrap().len(), 3);
}

pub async fn connectors_are_found_by_key_prefix_whatever_their_org(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let eu = connector(acme, "c-eu", "eu west");
    let us = connector(acme, "c-us", "US east");
    let theirs = connector(globex, "c-g", "eu west");
    for c in [&eu, &us, &theirs] {
        store.create_connector(c).await.unwrap();
    }
    let info = |c: &NewConnector| ConnectorInfo {
        id: c.id.clone(),
        name: c.name.clone(),
        key_prefix: c.key_prefix.clone(),
        created: c.created,
        last_heard: None,
        running: 0,
        old_key_prefix: None,
        old_key_until: None,
        revoked: None,
    };
    assert_eq!(store.list_connectors(acme).await.unwrap(), vec![info(&us), info(&eu)]);
    assert_eq!(store.list_connectors(globex).await.unwrap(), vec![info(&theirs)]);
    let found = store.find_connector(&us.key_prefix).await.unwrap().expect("found by prefix");
    assert_eq!((found.org, found.id, found.name, found.key_hash), (acme, us.id.clone(), us.name.clone(), us.key_hash));
    assert!(store.find_connector("gk_nope").await.unwrap().is_none());
    assert!(store.find_connector("gk_c").await.unwrap().is_none(), "a prefix matches whole");
    // A taken name (in the org), id or key prefix is a conflict.
    let same_name = NewConnector { id: "c-2".into(), key_prefix: "gk_2".into(), ..eu.clone() };
    let same_prefix = NewConnector { id: "c-3".into(), name: "three".into(), ..connector(globex, "c-x", "x") };
    let same_prefix = NewConnector { key_prefix: eu.key_prefix.clone(), ..same_prefix };
    for c in [&same_name, &same_prefix] {
        assert!(matches!(store.create_connector(c).await, Err(StoreError::Conflict(_))), "{c:?} accepted");
    }
    assert_eq!(store.list_connectors(acme).await.unwrap().len(), 2);

    // A new key, by name within the org: the old prefix finds nothing.
    let replace = async |org, prefix: &str, until: Option<Micros>| {
        let change = until.map_or(KeyReplacement::Rotate, |until| KeyReplacement::Overlap { until });
        store.replace_connector_key(org, "US east", prefix, prefix.as_bytes(), change).await.unwrap()
    };
    assert_eq!(replace(acme, "gk_new", None).await, Some(us.id.clone()));
    assert!(store.find_connector(&us.key_prefix).await.unwrap().is_none());
    let found = store.find_connector("gk_new").await.unwrap().expect("the new prefix");
    assert_eq!((found.id, found.key_hash, found.key_until), (us.id.clone(), b"gk_new".to_vec(), None));
    assert_eq!(replace(globex, "gk_x", None).await, None, "another org's");

    // With an overlap, the old key is found too, with its end, until the next rotation.
    assert_eq!(replace(acme, "gk_newer", Some(NOW)).await, Some(us.id.clone()));
    let old = store.find_connector("gk_new").await.unwrap().expect("the old key, while it overlaps");
    assert_eq!((old.id, old.key_hash, old.key_until), (us.id.clone(), b"gk_new".to_vec(), Some(NOW)));
    let new = store.find_connector("gk_newer").await.unwrap().expect("the new key");
    assert_eq!((new.key_hash, new.key_until), (b"gk_newer".to_vec(), None));
    let listed = store.list_connectors(acme).await.unwrap().into_iter().find(|c| c.id == us.id).unwrap();
    assert_eq!((listed.old_key_prefix, listed.old_key_until), (Some("gk_new".into()), Some(NOW)), "listed too");
    assert_eq!(replace(acme, "gk_newest", Some(NOW + 1)).await, Some(us.id.clone()));
    assert!(store.find_connector("gk_new").await.unwrap().is_none(), "one old key at a time");
    assert_eq!(store.find_connector("gk_newer").await.unwrap().unwrap().key_until, Some(NOW + 1));
    assert_eq!(replace(acme, "gk_last", None).await, Some(us.id.clone()));
    assert!(store.find_connector("gk_newer").await.unwrap().is_none(), "a rotation without overlap ends it");
    assert_eq!(store.list_connectors(acme).await.unwrap().len(), 2);

    // A revoked key is listed as revoked, until the next rotation.
    let listed = async || store.list_connectors(acme).await.unwrap().into_iter().find(|c| c.id == us.id).unwrap();
    assert_eq!(listed().await.revoked, None);
    let revoke = KeyReplacement::Revoke { at: NOW };
    let revoked = store.replace_connector_key(acme, "US east", "gk_none", b"x", revoke).await.unwrap();
    assert_eq!(revoked, Some(us.id.clone()));
    // Found still, as revoked (so that its holder can be told), and listed with no old key.
    let found = store.find_connector("gk_last").await.unwrap().expect("the revoked key");
    assert_eq!((found.key_hash, found.key_until, found.revoked), (b"gk_last".to_vec(), Some(NOW), Some(NOW)));
    assert_eq!(store.find_connector("gk_none").await.unwrap().unwrap().revoked, None, "the key nobody holds");
    assert_eq!(listed().await.revoked, Some(NOW));
    assert_eq!((listed().await.old_key_prefix, listed().await.old_key_until), (None, None));
    // Revoked again, it keeps the key first revoked (not the one nobody holds).
    let again = KeyReplacement::Revoke { at: NOW + 5 };
    store.replace_connector_key(acme, "US east", "gk_none2", b"y", again).await.unwrap();
    let found = store.find_connector("gk_last").await.unwrap().expect("the key first revoked");
    assert_eq!((found.key_until, found.revoked), (Some(NOW), Some(NOW + 5)));
    assert!(store.find_connector("gk_none").await.unwrap().is_none());
    // A new key with an overlap: there is no old key to overlap.
    let overlap = KeyReplacement::Overlap { until: NOW + 10 };
    store.replace_connector_key(acme, "US east", "gk_again", b"z", overlap).await.unwrap();
    assert_eq!(listed().await.revoked, None, "a new key is no longer revoked");
    assert_eq!((listed().await.old_key_prefix, listed().await.old_key_until), (None, None));
    assert!(store.find_connector("gk_last").await.unwrap().is_none(), "nor is the revoked key found");
    assert!(store.find_connector("gk_none2").await.unwrap().is_none(), "nor the one nobody holds");
}

pub async fn ingest_stores_each_event_once(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let s1 = via(active("i1", 30).person("ann", "Ann", "ann@example.com", &["ingested"]).build(), "c-1");
    let s2 = via(active("i2", 20).person("bob", "Bob", "bob@example.com", &["ingested", "dev"]).build(), "c-1");
    let events = vec![
        start(&s1),
        statement("i1", 2, "SELECT 2"),
        statement("i1", 1, "SELECT 1"),
        start(&s2),
        statement("i2", 1, "BEGIN"),
        end("i1", ago(10), "client"),
    ];
    assert_eq!(store.ingest(acme, "c-1", &events).await.unwrap(), 6);
    // Connectors retry: a replay stores nothing and changes nothing.
    assert_eq!(store.ingest(acme, "c-1", &events).await.unwrap(), 0);
    assert_eq!(end_of(store, acme, "i1").await, Some(ago(10)));
    assert_eq!(end_of(store, acme, "i2").await, None);
    // Ingested sessions are listed and searchable like inserted ones, groups included.
    assert_eq!(ids(store, acme, "group:ingested").await, vec!["i2", "i1"]);
    assert_eq!(ids(store, acme, "group:dev status:active").await, vec!["i2"]);

    let texts = |rows: Vec<StatementRecord>| rows.into_iter().map(|s| (s.seq, s.text)).collect::<Vec<_>>();
    assert_eq!(
        texts(store.statements(acme, "i1").await.unwrap()),
        vec![(1, "SELECT 1".to_owned()), (2, "SELECT 2".to_owned())],
        "in sequence order"
    );
    let first = &store.statements(acme, "i2").await.unwrap()[0];
    assert_eq!(
        first,
        &StatementRecord {
            seq: 1,
            start: NOW + 1,
            duration: 10,
            text: "BEGIN".into(),
            rows: 1,
            bytes_sent: 100,
            sqlstate: "00000".into(),
            rows_changed: 1000,
            ..Default::default()
        }
    );
    assert_eq!(store.statements(globex, "i1").await.unwrap(), vec![], "statements are per org");
    assert_eq!(store.statements(acme, "nope").await.unwrap(), vec![]);

    // A statement number already stored keeps its first text, within a batch too.
    let again = [statement("i2", 1, "ROLLBACK"), statement("i2", 2, "first"), statement("i2", 2, "second")];
    assert_eq!(store.ingest(acme, "c-1", &again).await.unwrap(), 1);
    assert_eq!(
        texts(store.statements(acme, "i2").await.unwrap()),
        vec![(1, "BEGIN".to_owned()), (2, "first".to_owned())]
    );
    // Another connector cannot write into this one's transcripts, not even at a number it has
    // yet to use.
    let forged = [statement("i2", 3, "select 'harmless'"), statement("i1", 9, "forged")];
    assert_eq!(store.ingest(acme, "c-2", &forged).await.unwrap(), 0);
    assert_eq!(store.statements(acme, "i1").await.unwrap().len(), 2);
    assert_eq!(store.ingest(acme, "c-1", &[statement("i2", 3, "COMMIT")]).await.unwrap(), 1);
    assert_eq!(texts(store.statements(acme, "i2").await.unwrap())[2], (3, "COMMIT".to_owned()));
    // An end is stored once; another connector cannot end this one's session.
    assert_eq!(store.ingest(acme, "c-1", &[end("i1", ago(5), "server")]).await.unwrap(), 0);
    assert_eq!(end_of(store, acme, "i1").await, Some(ago(10)));
    assert_eq!(store.ingest(acme, "c-2", &[end("i2", ago(5), "client")]).await.unwrap(), 0);
    assert_eq!(end_of(store, acme, "i2").await, None);
    // Nor can another org.
    assert_eq!(store.ingest(globex, "c-1", &[end("i2", ago(5), "client")]).await.unwrap(), 0);
    assert_eq!(end_of(store, acme, "i2").await, None);
    assert_eq!(store.ingest(acme, "c-1", &[end("i2", ago(5), "client")]).await.unwrap(), 1);
    assert_eq!(ids(store, acme, "status:completed").await, vec!["i2", "i1"]);
    assert_eq!(ids(store, acme, "duration:15m").await, vec!["i2"], "the duration follows the end");
    assert_eq!(store.ingest(acme, "c-1", &[]).await.unwrap(), 0);
}

/// A query whose rows a client fetched a few at a time is recorded when its portal closed,
/// after the statements run meanwhile: the transcript lists each where it started.
pub async fn statements_are_listed_in_the_order_they_started(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let ingest = async |events: &[IngestEvent]| store.ingest(acme, "c-1", events).await.unwrap();
    ingest(&[start(&via(active("o1", 30).build(), "c-1"))]).await;
    // Recorded in this order: BEGIN, then `select 1/0` and ROLLBACK, then the cursor's query.
    ingest(&[ran("o1", 1, NOW, 5), ran("o1", 2, NOW + 100, 5), ran("o1", 3, NOW + 200, 5)]).await;
    ingest(&[ran("o1", 4, NOW + 50, 400), ran("o1", 5, NOW + 500, 5)]).await;
    let order: Vec<(u64, Micros)> =
        store.statements(acme, "o1").await.unwrap().iter().map(|s| (s.seq, s.start - NOW)).collect();
    assert_eq!(order, [(1, 0), (4, 50), (2, 100), (3, 200), (5, 500)]);
    // Statements pipelined together may share a start: then in the order recorded.
    ingest(&[ran("o1", 7, NOW + 600, 5), ran("o1", 6, NOW + 600, 5)]).await;
    let last: Vec<u64> = store.statements(acme, "o1").await.unwrap().iter().rev().take(2).map(|s| s.seq).collect();
    assert_eq!(last, [7, 6]);
}

/// A page of a long session's statements is read on from the one before, in the order they
/// started, within its limit and its bytes of text: a statement recorded late (a cursor read a
/// few rows at a time) in a later report, and the statement running, each where it started.
pub async fn a_long_session_is_read_a_page_at_a_time(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let ingest = async |events: &[IngestEvent]| store.ingest(acme, "c-1", events).await.unwrap();
    ingest(&[start(&via(active("p1", 30).build(), "c-1"))]).await;
    // Reports of 700 statements (more than a chunk of SQLite's), every 7th text long.
    let text = |seq: u64| {
        if seq.is_multiple_of(7) { format!("select '{}'", "x".repeat(1000)) } else { format!("select {seq}") }
    };
    let ran_at = |seq: u64, start: Micros| IngestEvent::Statement {
        session_id: "p1".into(),
        statement: StatementRecord { seq, start, text: text(seq), ..StatementRecord::default() },
    };
    for report in 0..3u64 {
        let events: Vec<_> =
            (1..=700).map(|i| report * 700 + i).map(|seq| ran_at(seq, NOW + 10 * seq as i64)).collect();
        ingest(&events).await;
    }
    // Recorded last, started among the first report's; then one running, started last.
    let running = StatementRecord { seq: 2102, start: NOW + 30_000, text: "select 1".into(), ..Default::default() };
    ingest(&[ran_at(2101, NOW + 55), IngestEvent::Running { session_id: "p1".into(), statement: running }]).await;
    ingest(&[ran_at(2101, NOW + 55)]).await;
    let all = store.statements(acme, "p1").await.unwrap();
    assert_eq!(all.len(), 2102);
    assert_eq!(all[5].seq, 2101, "where it started: {:?}", &all[..7]);
    assert!(all.windows(2).all(|pair| pair[0].key() < pair[1].key()));
    assert_eq!(all.last().unwrap().status, StatementStatus::Running);

    for (limit, bytes) in [(1, usize::MAX), (150, usize::MAX), (699, 5000), (10_000, 20_000), (3, 0)] {
        let (mut walked, mut after) = (Vec::new(), None);
        loop {
            let page = StatementsPage { after, limit, bytes };
            let statements = store.statements_page(acme, "p1", page).await.unwrap();
            let Some(last) = statements.last() else { break };
            assert!(statements.len() <= limit, "{limit}");
            let size: usize = statements.iter().map(StatementsPage::size).sum();
            assert!(statements.len() == 1 || size <= bytes, "{bytes}: {size}");
            if statements.len() < limit && walked.len() + statements.len() < all.len() {
                let next = &all[walked.len() + statements.len()];
                assert!(
                    size + StatementsPage::size(next) > bytes,
                    "pages of {limit}, {bytes} bytes: cut short with room for {}",
                    next.seq
                );
            }
            after = Some(last.key());
            walked.extend(statements);
        }
        assert_eq!(walked, all, "pages of {limit}, {bytes} bytes");
    }
    let none = StatementsPage { limit: 0, ..StatementsPage::ALL };
    assert_eq!(store.statements_page(acme, "p1", none).await.unwrap(), vec![]);
    let past = StatementsPage { after: Some(all.last().unwrap().key()), ..StatementsPage::ALL };
    assert_eq!(store.statements_page(acme, "p1", past).await.unwrap(), vec![]);
    let globex = store.ensure_org("globex").await.unwrap().id;
    assert_eq!(store.statements_page(globex, "p1", StatementsPage::ALL).await.unwrap(), vec![], "per org");
}

/// A statement announced while it runs ends an open session's transcript until a later
/// statement is stored, or its connector ends the session; a replay never brings back an older
/// one.
pub async fn a_running_statement_shows_until_it_completes(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let ingest = async |connector: &str, events: &[IngestEvent]| store.ingest(acme, connector, events).await.unwrap();
    let texts = async |id: &str| {
        let rows = store.statements(acme, id).await.unwrap();
        rows.into_iter().map(|s| (s.seq, s.text)).collect::<Vec<_>>()
    };
    let pair = |seq: u64, text: &str| (seq, text.to_owned());
    let first = [start(&via(active("run1", 30).build(), "c-1")), statement("run1", 1, "select 1")];
    assert_eq!(ingest("c-1", &first).await, 2);
    assert_eq!(ingest("c-1", &[running("run1", 2, "select pg_sleep(60)")]).await, 1);
    assert_eq!(texts("run1").await, [pair(1, "select 1"), pair(2, "select pg_sleep(60)")]);
    let shown = store.statements(acme, "run1").await.unwrap().pop().unwrap();
    assert_eq!((shown.start, shown.duration, shown.rows), (NOW + 2, 0, 0));
    assert_eq!(store.statements(globex, "run1").await.unwrap(), vec![], "per org");
    // Only the session's own connector announces its statements.
    assert_eq!(ingest("c-2", &[running("run1", 9, "forged")]).await, 0);

    // Completed: the statement replaces its announcement; a replay of that changes nothing.
    assert_eq!(ingest("c-1", &[statement("run1", 3, "select pg_sleep(60)")]).await, 1);
    assert_eq!(texts("run1").await, [pair(1, "select 1"), pair(3, "select pg_sleep(60)")]);
    assert_eq!(ingest("c-1", &[running("run1", 2, "select pg_sleep(60)")]).await, 0);
    assert_eq!(texts("run1").await.len(), 2);

    // Announced and completed in one report, then the next announced: the first announcement
    // is stale as it is stored, and the later shows.
    let both = [running("run1", 4, "select 4"), statement("run1", 5, "select 4"), running("run1", 6, "select 6")];
    assert_eq!(ingest("c-1", &both).await, 2);
    assert_eq!(texts("run1").await.last(), Some(&pair(6, "select 6")));
    assert_eq!(ingest("c-1", &[running("run1", 4, "select 4")]).await, 0, "an older one comes back");
    assert_eq!(texts("run1").await.last(), Some(&pair(6, "select 6")));

    // An ended session runs nothing, whatever its connector announced.
    assert_eq!(ingest("c-1", &[end("run1", ago(1), "terminated")]).await, 1);
    assert_eq!(texts("run1").await.last(), Some(&pair(5, "select 4")));
    assert_eq!(ingest("c-1", &[running("run1", 7, "select 7")]).await, 0);
    assert_eq!(texts("run1").await.len(), 3);

    // A run the lease sweep took for gone runs nothing: what it was running stays, as lost
    // with it (see a_statement_running_when_its_connector_was_lost_stays_in_the_transcript),
    // and it takes no announcement; heard again (as a report's run is, before its events), it
    // is running that again.
    store.connector_heartbeat(acme, "c-1", "run-9", ago(60)).await.unwrap();
    let lapsing = [start(&on(active("lapsing", 30).build(), "c-1", "run-9")), running("lapsing", 1, "select 1")];
    assert_eq!(ingest("c-1", &lapsing).await, 2);
    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 1);
    assert_eq!(texts("lapsing").await, [pair(1, "select 1")]);
    assert_eq!(ingest("c-1", &[running("lapsing", 2, "select 2")]).await, 0);
    store.connector_heartbeat(acme, "c-1", "run-9", ago(5)).await.unwrap();
    assert_eq!(texts("lapsing").await, [pair(1, "select 1")]);
    assert_eq!(ingest("c-1", &[running("lapsing", 2, "select 2")]).await, 1);
    assert_eq!(texts("lapsing").await, [pair(2, "select 2")]);
}

/// Statements come again, out of order, in reports cut differently, and
/// before their session's start: each is stored once and counted once in its
/// session's totals and fingerprints.
pub async fn statements_replayed_in_any_order_are_stored_once(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let report = |seqs: &[u64]| seqs.iter().map(|&n| statement("r1", n, &format!("SELECT {n}"))).collect::<Vec<_>>();
    let ingest = async |events: &[IngestEvent]| store.ingest(acme, "c-1", events).await.unwrap();
    // A replay cut across the start: statements first.
    assert_eq!(ingest(&report(&[5, 6])).await, 2);
    assert_eq!(ingest(&[start(&via(active("r1", 30).build(), "c-1"))]).await, 1);
    assert_eq!(ingest(&report(&[3, 4])).await, 2);
    // 5 and 6 are above every seq stored since the start, yet not new.
    assert_eq!(ingest(&report(&[5, 6, 7])).await, 1);
    assert_eq!(ingest(&report(&[9, 8, 2, 1, 8])).await, 4);
    assert_eq!(ingest(&report(&(1..=9).collect::<Vec<_>>())).await, 0);

    let seqs: Vec<u64> = store.statements(acme, "r1").await.unwrap().iter().map(|s| s.seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    let first = &store.statements(acme, "r1").await.unwrap()[0];
    assert_eq!((first.text.as_str(), first.rows, first.duration), ("SELECT 1", 1, 10));
    // 9 statements fall in "1-9"; one counted twice would make it "10-99".
    let query = AggregateQuery {
        filter: gatehouse_query::parse("id:r1", NOW).unwrap(),
        window_start: None,
        window_end: None,
        now: NOW,
        histogram: None,
        facets: vec![Facet::Statements, Facet::QueryFingerprint],
        facet_limit: 10,
    };
    let counted = store.aggregate(acme, &query).await.unwrap();
    let facets: Vec<Vec<(String, u64)>> =
        counted.facets.iter().map(|(_, keys)| keys.iter().map(|k| (k.key.clone(), k.count)).collect()).collect();
    assert_eq!(facets, [vec![("1-9".to_owned(), 1)], vec![("select ?".to_owned(), 1)]]);

    // Two ends in one report (a replay): the first is the end.
    assert_eq!(ingest(&[end("r1", ago(4), "client"), end("r1", ago(3), "server")]).await, 1);
    assert_eq!(end_of(store, acme, "r1").await, Some(ago(4)));
}

pub async fn a_new_run_completes_what_the_runs_it_takes_over_from_left_open(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.create_connector(&connector(acme, "c-1", "one")).await.unwrap();
    store.create_connector(&connector(acme, "c-2", "two")).await.unwrap();
    let t0 = ago(60);
    assert_eq!(store.connector_hello(acme, "c-1", "run-1", &[], t0).await.unwrap(), 0);
    let early = on(active("early", 59).build(), "c-1", "run-1");
    let late = on(active("late", 40).build(), "c-1", "run-1");
    let done = on(completed("done", 58, 1).build(), "c-1", "run-1");
    let busy = on(active("busy", 59).build(), "c-1", "run-1");
    let other = on(active("other", 59).build(), "c-2", "run-1");
    // A run that never reached the control plane (its sessions replayed by its successor).
    let orphan = on(active("orphan", 55).build(), "c-1", "run-0");
    // Another process with the same key, on a state directory of its own.
    store.connector_hello(acme, "c-1", "replica", &[], t0).await.unwrap();
    let theirs = on(active("theirs", 59).build(), "c-1", "replica");
    let starts = [start(&early), start(&late), start(&done), start(&busy), start(&orphan), start(&theirs)];
    store.ingest(acme, "c-1", &starts).await.unwrap();
    store.ingest(acme, "c-1", &[ran("orphan", 1, ago(50), MINUTE)]).await.unwrap();
    store.ingest(acme, "c-2", &[start(&other)]).await.unwrap();
    store.connector_heartbeat(acme, "c-1", "run-1", t0 + 10 * MINUTE).await.unwrap();
    // Heartbeats never move the last-heard time back.
    store.connector_heartbeat(acme, "c-1", "run-1", t0 + 5 * MINUTE).await.unwrap();
    store.connector_heartbeat(acme, "c-1", "run-1", t0 + 9 * MINUTE).await.unwrap();
    let heard = |list: Vec<ConnectorInfo>| list.into_iter().map(|c| (c.id, c.last_heard)).collect::<Vec<_>>();
    assert_eq!(
        heard(store.list_connectors(acme).await.unwrap()),
        vec![("c-1".to_owned(), Some(t0 + 10 * MINUTE)), ("c-2".to_owned(), None)]
    );
    // The next run is heard before its Hello, while it replays its predecessor's spool: that
    // is its own time, not its predecessor's.
    store.connector_heartbeat(acme, "c-1", "run-2", t0 + 20 * MINUTE).await.unwrap();
    let running = |list: Vec<ConnectorInfo>| list.into_iter().map(|c| c.running).collect::<Vec<_>>();
    let listed = running(store.list_connectors(acme).await.unwrap());
    assert_eq!(listed, [4, 1], "run-0 (recorded with its sessions), run-1, run-2 and the replica; c-2's run-1");

    // Statements the next run replays from its predecessor's spool, which ran after the
    // control plane last heard from it.
    let replayed = [ran("busy", 1, t0 + 11 * MINUTE, 30_000_000), ran("busy", 2, t0 + 12 * MINUTE, 30_000_000)];
    store.ingest(acme, "c-1", &replayed).await.unwrap();

    // The next run: the open sessions of the runs it names end when each was last heard, when
    // they started if that is later, or when their last statement ended.
    let previous = runs(&["run-0", "run-1"]);
    assert_eq!(store.connector_hello(acme, "c-1", "run-2", &previous, t0 + 30 * MINUTE).await.unwrap(), 4);
    // The same Hello again (its answer lost): nothing more to do.
    assert_eq!(store.connector_hello(acme, "c-1", "run-2", &previous, t0 + 30 * MINUTE).await.unwrap(), 0);
    assert_eq!(end_of(store, acme, "busy").await, Some(t0 + 12 * MINUTE + 30_000_000));
    assert_eq!(end_of(store, acme, "early").await, Some(t0 + 10 * MINUTE));
    assert_eq!(end_of(store, acme, "late").await, Some(late.start));
    assert_eq!(end_of(store, acme, "orphan").await, Some(ago(49)), "a run never heard: its last statement");
    assert_eq!(running(store.list_connectors(acme).await.unwrap()), [2, 1], "run-2 and the replica");
    assert_eq!(end_of(store, acme, "done").await, done.end, "completed sessions are left alone");
    assert_eq!(end_of(store, acme, "other").await, None, "another connector's sessions are left alone");
    assert_eq!(end_of(store, acme, "theirs").await, None, "another run's sessions are left alone");
    assert_eq!(ids(store, acme, "duration:0s").await, vec!["late"]);
    let again = runs(&["run-1", "run-2"]);
    assert_eq!(store.connector_hello(acme, "c-1", "run-3", &again, t0 + 31 * MINUTE).await.unwrap(), 0);
    assert_eq!(heard(store.list_connectors(acme).await.unwrap())[0].1, Some(t0 + 31 * MINUTE));
    assert_eq!(end_of(store, acme, "theirs").await, None);

    // A real end, reported late, replaces the guessed one, once.
    assert_eq!(store.ingest(acme, "c-1", &[end("early", t0 + 20 * MINUTE, "client")]).await.unwrap(), 1);
    assert_eq!(end_of(store, acme, "early").await, Some(t0 + 20 * MINUTE));
    assert_eq!(store.ingest(acme, "c-1", &[end("early", t0 + 25 * MINUTE, "client")]).await.unwrap(), 0);
    assert_eq!(end_of(store, acme, "early").await, Some(t0 + 20 * MINUTE));

    let unknown = store.connector_hello(acme, "c-nope", "run-1", &[], t0).await;
    assert!(matches!(unknown, Err(StoreError::Conflict(_))), "{unknown:?}");
    let globex = store.ensure_org("globex").await.unwrap().id;
    let elsewhere = store.connector_hello(globex, "c-1", "run-1", &[], t0).await;
    assert!(matches!(elsewhere, Err(StoreError::Conflict(_))), "another org's connector: {elsewhere:?}");
}

/// A process that stopped cleanly ends its run: it is no longer counted, leaves nothing for
/// its successor or the sweep, and heard again it is not revived.
pub async fn a_run_that_says_goodbye_is_over(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.create_connector(&connector(acme, "c-1", "one")).await.unwrap();
    store.connector_hello(acme, "c-1", "run-1", &[], ago(60)).await.unwrap();
    store.connector_hello(acme, "c-1", "replica", &[], ago(60)).await.unwrap();
    let ended = on(active("ended", 59).build(), "c-1", "run-1");
    let left = on(active("left", 58).build(), "c-1", "run-1");
    let theirs = on(active("theirs", 58).build(), "c-1", "replica");
    store.ingest(acme, "c-1", &[start(&ended), start(&left), start(&theirs)]).await.unwrap();
    store.ingest(acme, "c-1", &[end("ended", ago(30), "shutdown")]).await.unwrap();
    let running = |list: Vec<ConnectorInfo>| list.into_iter().map(|c| c.running).collect::<Vec<_>>();
    assert_eq!(running(store.list_connectors(acme).await.unwrap()), [2]);

    // A session whose end never came (none, from a clean stop) ends with the goodbye.
    assert_eq!(store.connector_goodbye(acme, "c-1", "run-1", ago(20)).await.unwrap(), 1);
    assert_eq!(end_of(store, acme, "left").await, Some(ago(20)));
    assert_eq!(end_of(store, acme, "ended").await, Some(ago(30)));
    assert_eq!(end_of(store, acme, "theirs").await, None, "another process's sessions are left alone");
    assert_eq!(running(store.list_connectors(acme).await.unwrap()), [1], "only the replica");
    let heard = store.list_connectors(acme).await.unwrap()[0].last_heard;
    assert_eq!(heard, Some(ago(20)));

    // Said again, heard again, taken over, swept: nothing changes.
    assert_eq!(store.connector_goodbye(acme, "c-1", "run-1", ago(10)).await.unwrap(), 0);
    store.connector_heartbeat(acme, "c-1", "run-1", ago(9)).await.unwrap();
    assert_eq!(running(store.list_connectors(acme).await.unwrap()), [1]);
    assert_eq!(store.connector_hello(acme, "c-1", "run-2", &runs(&["run-1"]), ago(5)).await.unwrap(), 0);
    assert_eq!(store.expire_connectors(NOW).await.unwrap(), 1, "the replica's session, at its lease");
    assert_eq!(end_of(store, acme, "left").await, Some(ago(20)));

    let unknown = store.connector_goodbye(acme, "c-nope", "run-1", NOW).await;
    assert!(matches!(unknown, Err(StoreError::Conflict(_))), "{unknown:?}");
    let globex = store.ensure_org("globex").await.unwrap().id;
    let elsewhere = store.connector_goodbye(globex, "c-1", "run-1", NOW).await;
    assert!(matches!(elsewhere, Err(StoreError::Conflict(_))), "another org's connector: {elsewhere:?}");
}

pub async fn expiring_silent_runs_completes_their_open_sessions_once(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    store.create_connector(&connector(acme, "c-quiet", "quiet")).await.unwrap();
    store.create_connector(&connector(acme, "c-live", "live")).await.unwrap();
    store.create_connector(&connector(acme, "c-pair", "two processes")).await.unwrap();
    store.create_connector(&connector(globex, "c-gq", "quiet")).await.unwrap();
    store.create_connector(&connector(globex, "c-never", "never heard")).await.unwrap();
    store.connector_hello(acme, "c-quiet", "r", &[], ago(100)).await.unwrap();
    store.connector_hello(acme, "c-live", "r", &[], ago(1)).await.unwrap();
    store.connector_hello(globex, "c-gq", "r", &[], ago(50)).await.unwrap();
    // Two processes sharing a key: one fell silent, the other is alive.
    store.connector_hello(acme, "c-pair", "gone", &[], ago(100)).await.unwrap();
    store.connector_hello(acme, "c-pair", "alive", &[], ago(100)).await.unwrap();
    store.connector_heartbeat(acme, "c-pair", "alive", ago(1)).await.unwrap();
    let quiet = [on(active("q1", 120).build(), "c-quiet", "r"), on(active("q2", 90).build(), "c-quiet", "r")];
    let live = on(active("l1", 120).build(), "c-live", "r");
    let pair = [on(active("p1", 120).build(), "c-pair", "gone"), on(active("p2", 120).build(), "c-pair", "alive")];
    let theirs = on(active("g1", 70).build(), "c-gq", "r");
    let never = on(active("n1", 70).build(), "c-never", "r");
    let ours = [quiet[0].clone(), quiet[1].clone(), live, pair[0].clone(), pair[1].clone()];
    store.insert_sessions(acme, &ours).await.unwrap();
    store.insert_sessions(globex, &[theirs, never]).await.unwrap();

    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 4, "q1, q2, p1 and g1");
    let pair = store.list_connectors(acme).await.unwrap().into_iter().find(|c| c.id == "c-pair").unwrap();
    assert_eq!(pair.running, 1, "the silent run is taken for gone");
    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 0, "each is completed once");
    assert_eq!(end_of(store, acme, "q1").await, Some(ago(100)));
    assert_eq!(end_of(store, acme, "q2").await, Some(ago(90)), "never before it started");
    assert_eq!(end_of(store, acme, "p1").await, Some(ago(100)), "a silent run, whoever else shares its key");
    assert_eq!(end_of(store, acme, "p2").await, None, "a run heard since is alive");
    assert_eq!(end_of(store, globex, "g1").await, Some(ago(50)));
    assert_eq!(end_of(store, acme, "l1").await, None, "a connector heard since is alive");
    assert_eq!(end_of(store, globex, "n1").await, None, "sessions no connector reported have no lease");
    let rows = store.list_sessions(acme, &ListQuery::newest(10, NOW)).await.unwrap();
    assert_eq!(rows.len(), 5);
}

/// Every session a connector reports has a lease: a session of a run the control plane never
/// heard from, or of a run taken over already (its last report reached another replica after
/// its successor's Hello), ends when that run's lease runs out from the session's start.
pub async fn sessions_of_runs_never_heard_have_a_lease(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.create_connector(&connector(acme, "c-1", "one")).await.unwrap();
    store.connector_hello(acme, "c-1", "run-1", &[], ago(100)).await.unwrap();
    store.connector_hello(acme, "c-1", "run-2", &runs(&["run-1"]), ago(90)).await.unwrap();
    let late = on(active("late", 95).build(), "c-1", "run-1");
    let unheard = on(active("unheard", 80).build(), "c-1", "run-0");
    let live = on(active("live", 20).build(), "c-1", "run-2");
    store.ingest(acme, "c-1", &[start(&late), start(&unheard), start(&live)]).await.unwrap();
    store.ingest(acme, "c-1", &[ran("unheard", 1, ago(70), MINUTE)]).await.unwrap();
    store.connector_heartbeat(acme, "c-1", "run-2", ago(1)).await.unwrap();
    // A run taken over is over: a late report of it is no sign of life.
    store.connector_heartbeat(acme, "c-1", "run-1", ago(1)).await.unwrap();
    let listed = store.list_connectors(acme).await.unwrap();
    assert_eq!(listed[0].running, 2, "run-2 and run-0 (recorded with its session), not run-1");

    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 2);
    assert_eq!(end_of(store, acme, "late").await, Some(ago(95)));
    assert_eq!(end_of(store, acme, "unheard").await, Some(ago(69)));
    assert_eq!(end_of(store, acme, "live").await, None);
}

/// Statements the control plane gets after it last heard from their connector (reported late,
/// or replayed from a spool) show the session was alive then: neither the lease sweep nor the
/// next run's Hello ends it before its last statement.
pub async fn sessions_end_no_earlier_than_their_last_statement(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.create_connector(&connector(acme, "c-1", "one")).await.unwrap();
    store.connector_hello(acme, "c-1", "run-1", &[], ago(100)).await.unwrap();
    let [swept, replayed, quiet] = ["swept", "replayed", "quiet"].map(|id| on(active(id, 120).build(), "c-1", "run-1"));
    store.ingest(acme, "c-1", &[start(&swept), start(&replayed), start(&quiet)]).await.unwrap();
    store.ingest(acme, "c-1", &[ran("swept", 1, ago(90), MINUTE)]).await.unwrap();

    // The sweep: at the last statement's end, or when the run was last heard.
    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 3);
    assert_eq!(end_of(store, acme, "swept").await, Some(ago(89)));
    assert_eq!(end_of(store, acme, "replayed").await, Some(ago(100)));
    assert_eq!(end_of(store, acme, "quiet").await, Some(ago(100)));

    // The next run replays statements of the previous one, then says Hello: what the sweep
    // ended is ended again, after them; only that one is written again.
    store
        .ingest(acme, "c-1", &[ran("replayed", 1, ago(50), MINUTE), ran("replayed", 2, ago(40), MINUTE)])
        .await
        .unwrap();
    assert_eq!(store.connector_hello(acme, "c-1", "run-2", &runs(&["run-1"]), ago(5)).await.unwrap(), 1);
    assert_eq!(end_of(store, acme, "replayed").await, Some(ago(39)));
    assert_eq!(end_of(store, acme, "swept").await, Some(ago(89)));
    assert_eq!(end_of(store, acme, "quiet").await, Some(ago(100)));
    assert_eq!(ids(store, acme, "session_status:active").await, Vec::<String>::new());
}

/// A run the control plane did not hear from while it lived (the control plane down) ends no
/// earlier than its successor says it last knew itself alive, by its connector's clock, with the
/// statement it was running; never after the Hello that takes it over, however far ahead that
/// clock, and never before it was last heard.
pub async fn a_run_taken_over_ends_no_earlier_than_it_knew_itself_alive(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.create_connector(&connector(acme, "c-1", "one")).await.unwrap();
    let alive = |run: &str, at: Micros| PreviousRun { run_id: run.into(), alive: Some(at) };
    store.connector_hello(acme, "c-1", "run-1", &[], ago(100)).await.unwrap();
    let [cut, talked] = ["cut", "talked"].map(|id| on(active(id, 99).build(), "c-1", "run-1"));
    // Of a run never heard, replayed by its successor.
    let orphan = on(active("orphan", 60).build(), "c-1", "run-0");
    let running = IngestEvent::Running {
        session_id: "cut".into(),
        statement: StatementRecord {
            seq: 1,
            start: ago(50),
            text: "select pg_sleep(600)".into(),
            ..Default::default()
        },
    };
    let events = [start(&cut), start(&talked), start(&orphan), running, ran("talked", 1, ago(31), MINUTE)];
    store.ingest(acme, "c-1", &events).await.unwrap();

    // Named twice (by a connector of the future, say): the later time counts.
    let previous = [alive("run-1", ago(42)), alive("run-0", ago(45)), alive("run-1", ago(40))];
    assert_eq!(store.connector_hello(acme, "c-1", "run-2", &previous, ago(5)).await.unwrap(), 3);
    assert_eq!(end_of(store, acme, "cut").await, Some(ago(40)));
    assert_eq!(end_of(store, acme, "talked").await, Some(ago(30)), "never before its last statement ended");
    assert_eq!(end_of(store, acme, "orphan").await, Some(ago(45)));
    let lost = store.statements(acme, "cut").await.unwrap().pop().unwrap();
    assert_eq!((lost.status, lost.duration), (StatementStatus::Unreported, 10 * MINUTE), "it ran until then");
    assert_eq!(store.connector_hello(acme, "c-1", "run-2", &previous, ago(5)).await.unwrap(), 0, "once");

    // A clock ahead of the control plane's: the run ends with the Hello. One behind: the run
    // ends when it was last heard.
    store.insert_sessions(acme, &[on(active("ahead", 4).build(), "c-1", "run-2")]).await.unwrap();
    let ahead = [alive("run-2", NOW + 60 * MINUTE)];
    assert_eq!(store.connector_hello(acme, "c-1", "run-3", &ahead, ago(1)).await.unwrap(), 1);
    assert_eq!(end_of(store, acme, "ahead").await, Some(ago(1)));
    store.insert_sessions(acme, &[on(active("behind", 1).build(), "c-1", "run-3")]).await.unwrap();
    store.connector_heartbeat(acme, "c-1", "run-3", NOW).await.unwrap();
    let behind = [alive("run-3", ago(3))];
    assert_eq!(store.connector_hello(acme, "c-1", "run-4", &behind, NOW + MINUTE).await.unwrap(), 1);
    assert_eq!(end_of(store, acme, "behind").await, Some(NOW));
}

/// A run cut off from the control plane for longer than its lease (a partition, the only
/// replica it knows down) is taken for gone; when the same run is heard again, its sessions
/// were never over.
pub async fn a_lapsed_run_heard_again_gets_its_sessions_back(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.create_connector(&connector(acme, "c-1", "one")).await.unwrap();
    store.connector_hello(acme, "c-1", "run-1", &[], ago(200)).await.unwrap();
    let earlier = on(active("earlier", 300).build(), "c-1", "run-1");
    store.insert_sessions(acme, &[earlier]).await.unwrap();
    // run-2 took over from run-1, which left `earlier` open: over for good.
    store.connector_hello(acme, "c-1", "run-2", &runs(&["run-1"]), ago(100)).await.unwrap();
    assert_eq!(end_of(store, acme, "earlier").await, Some(ago(200)));
    let live = [on(active("live", 90).build(), "c-1", "run-2"), on(active("late", 30).build(), "c-1", "run-2")];
    let ended = on(completed("ended", 80, 70).build(), "c-1", "run-2");
    store.insert_sessions(acme, &[live[0].clone(), live[1].clone(), ended.clone()]).await.unwrap();
    store.connector_heartbeat(acme, "c-1", "run-2", ago(60)).await.unwrap();

    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 2);
    assert_eq!(end_of(store, acme, "live").await, Some(ago(60)));
    assert_eq!(end_of(store, acme, "late").await, Some(ago(30)), "never before it started");
    // Another run (one replaying the spool before its Hello, or another process) brings
    // nothing back.
    store.connector_heartbeat(acme, "c-1", "run-3", ago(5)).await.unwrap();
    store.connector_hello(acme, "c-1", "replica", &[], ago(5)).await.unwrap();
    assert_eq!(end_of(store, acme, "live").await, Some(ago(60)));

    store.connector_heartbeat(acme, "c-1", "run-2", ago(5)).await.unwrap();
    assert_eq!(end_of(store, acme, "live").await, None, "open again");
    assert_eq!(end_of(store, acme, "late").await, None, "open again");
    assert_eq!(end_of(store, acme, "ended").await, ended.end, "a real end stays");
    assert_eq!(end_of(store, acme, "earlier").await, Some(ago(200)), "an earlier run's stay over");
    assert_eq!(ids(store, acme, "status:active").await, vec!["late", "live"]);

    // Lapsed again, then its successor, which replays a statement `live` ran after the control
    // plane last heard from run-2: over for good, and its heartbeats change nothing. Only the
    // end the replay moved is written again: the others stay as they were, so that a walk
    // that placed them by their end finds them where it did.
    assert_eq!(store.expire_connectors(NOW).await.unwrap(), 2);
    store.ingest(acme, "c-1", &[ran("live", 1, ago(4), MINUTE)]).await.unwrap();
    assert_eq!(store.connector_hello(acme, "c-1", "run-3", &runs(&["run-2"]), NOW).await.unwrap(), 1);
    store.connector_heartbeat(acme, "c-1", "run-2", NOW + 1).await.unwrap();
    store.connector_heartbeat(acme, "c-1", "run-3", NOW + 1).await.unwrap();
    assert_eq!(end_of(store, acme, "live").await, Some(ago(3)), "its replayed statement's end");
    assert_eq!(end_of(store, acme, "late").await, Some(ago(5)));
    assert!(ids(store, acme, "status:active").await.is_empty());

    // A run silent for longer than the sweep remembers is forgotten: heard again, it gets
    // nothing back.
    let stray = on(active("stray", 1).build(), "c-1", "run-3");
    store.insert_sessions(acme, &[stray]).await.unwrap();
    assert_eq!(store.expire_connectors(NOW + 2).await.unwrap(), 1);
    assert_eq!(store.expire_connectors(NOW + 2 + RUN_MEMORY + 1).await.unwrap(), 0);
    store.connector_heartbeat(acme, "c-1", "run-3", NOW + 2 + RUN_MEMORY + 2).await.unwrap();
    assert_eq!(end_of(store, acme, "stray").await, Some(NOW + 1));
}

pub async fn pending_terminations_are_recent_ones_of_open_sessions(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let open = via(active("open", 30).build(), "c-1");
    let closed = via(completed("closed", 30, 5).build(), "c-1");
    let elsewhere = via(active("elsewhere", 30).build(), "c-2");
    store.insert_sessions(acme, &[open.clone(), closed, elsewhere]).await.unwrap();
    store.insert_sessions(globex, &[open]).await.unwrap();
    let termination = |id: &str, session: &str, connector: &str, created: Micros| TerminationRecord {
        id: id.into(),
        session_id: session.into(),
        connector_id: connector.into(),
        reason: format!("reason {id}"),
        created,
    };
    let wanted = [termination("t2", "open", "c-1", ago(2)), termination("t3", "open", "c-1", ago(1))];
    for t in [
        &termination("t0", "open", "c-1", ago(20)),
        &termination("t1", "closed", "c-1", ago(2)),
        &wanted[0],
        &wanted[1],
        &termination("t4", "elsewhere", "c-2", ago(2)),
    ] {
        // Pending since its own time: each is stored, none stands in for another.
        assert_eq!(store.create_termination(acme, t, t.created).await.unwrap(), *t);
    }
    let tg = termination("tg", "open", "c-1", ago(2));
    assert_eq!(store.create_termination(globex, &tg, ago(10)).await.unwrap(), tg, "another org's are apart");
    assert_eq!(store.pending_terminations(acme, "c-1", ago(10)).await.unwrap(), wanted.to_vec());
    assert_eq!(store.pending_terminations(acme, "c-2", ago(10)).await.unwrap().len(), 1);
    assert_eq!(store.pending_terminations(globex, "c-1", ago(10)).await.unwrap().len(), 1);
    // Once the session ends, nothing is pending for it.
    store.ingest(acme, "c-1", &[end("open", NOW, "terminated")]).await.unwrap();
    assert_eq!(store.pending_terminations(acme, "c-1", ago(10)).await.unwrap(), vec![]);
    assert_eq!(store.pending_terminations(globex, "c-1", ago(10)).await.unwrap().len(), 1);

    // But a session its connector's lease ended may still be live there (a partition): what
    // was asked for it stays pending, to reach it when the connector is heard again.
    store.create_connector(&connector(acme, "c-3", "three")).await.unwrap();
    store.connector_hello(acme, "c-3", "run-1", &[], ago(100)).await.unwrap();
    store.insert_sessions(acme, &[on(active("lapsed", 90).build(), "c-3", "run-1")]).await.unwrap();
    let asked = termination("t5", "lapsed", "c-3", ago(50));
    store.create_termination(acme, &asked, asked.created).await.unwrap();
    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 1);
    assert!(end_of(store, acme, "lapsed").await.is_some());
    assert_eq!(store.pending_terminations(acme, "c-3", ago(60)).await.unwrap(), vec![asked.clone()]);
    assert!(store.session_may_resume(acme, "lapsed").await.unwrap());
    assert!(!store.session_may_resume(acme, "open").await.unwrap(), "ended by its connector");
    assert!(!store.session_may_resume(globex, "lapsed").await.unwrap(), "another org's");
    // Once a later run has taken over from that one, its sessions are over for good.
    store.connector_hello(acme, "c-3", "run-2", &runs(&["run-1"]), ago(5)).await.unwrap();
    assert_eq!(store.pending_terminations(acme, "c-3", ago(60)).await.unwrap(), vec![]);
    assert!(!store.session_may_resume(acme, "lapsed").await.unwrap());
}

/// Asked again while one is pending, through any number of replicas at once:
/// one termination stands, and every caller gets it.
pub async fn a_termination_asked_again_while_pending_is_the_first(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.insert_sessions(acme, &[via(active("open", 30).build(), "c-1")]).await.unwrap();
    let termination = |id: &str, created: Micros| TerminationRecord {
        id: id.into(),
        session_id: "open".into(),
        connector_id: "c-1".into(),
        reason: format!("reason {id}"),
        created,
    };
    let asked = ["ta", "tb", "tc", "td"].map(|id| termination(id, ago(3)));
    let (a, b, c, d) = tokio::join!(
        store.create_termination(acme, &asked[0], ago(60)),
        store.create_termination(acme, &asked[1], ago(60)),
        store.create_termination(acme, &asked[2], ago(60)),
        store.create_termination(acme, &asked[3], ago(60)),
    );
    let standing = a.unwrap();
    assert_eq!([b.unwrap(), c.unwrap(), d.unwrap()], [standing.clone(), standing.clone(), standing.clone()]);
    assert_eq!(store.pending_terminations(acme, "c-1", ago(60)).await.unwrap(), vec![standing.clone()]);
    // Past the pending window, a new one is stored.
    let later = termination("te", NOW);
    assert_eq!(store.create_termination(acme, &later, ago(2)).await.unwrap(), later);
    assert_eq!(store.pending_terminations(acme, "c-1", ago(60)).await.unwrap(), vec![standing, later]);
}

/// A statement running when its connector was lost stays in the transcript of the session the
/// lease sweep or the next run completes: as a statement lost with the connector, lasting until
/// the session's end, which is never before it started. The real statement, replayed late with
/// the real end, replaces it.
pub async fn a_statement_running_when_its_connector_was_lost_stays_in_the_transcript(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    store.create_connector(&connector(acme, "c-1", "one")).await.unwrap();
    let ingest = async |events: &[IngestEvent]| store.ingest(acme, "c-1", events).await.unwrap();
    let transcript = async |id: &str| store.statements(acme, id).await.unwrap();
    let announced = |id: &str, seq: u64, start: Micros| IngestEvent::Running {
        session_id: id.into(),
        statement: StatementRecord { seq, start, text: "select pg_sleep(600)".into(), ..StatementRecord::default() },
    };
    // `swept`: its run falls silent before the statement even started, and the sweep takes it
    // for gone. `taken`: its run is heard while the statement runs, then taken over.
    store.connector_hello(acme, "c-1", "run-1", &[], ago(100)).await.unwrap();
    store.connector_hello(acme, "c-1", "run-2", &[], ago(100)).await.unwrap();
    let swept = on(active("swept", 120).build(), "c-1", "run-1");
    let taken = on(active("taken", 120).build(), "c-1", "run-2");
    for (session, running_since) in [(&swept, ago(90)), (&taken, ago(30))] {
        let id = session.id.as_str();
        let events = [start(session), ran(id, 1, ago(110), MINUTE), announced(id, 2, running_since)];
        assert_eq!(ingest(&events).await, 3);
    }
    store.connector_heartbeat(acme, "c-1", "run-2", ago(5)).await.unwrap();
    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 1, "swept");
    assert_eq!(store.connector_hello(acme, "c-1", "run-3", &runs(&["run-2"]), ago(1)).await.unwrap(), 1, "taken");

    for (id, running_since, end) in [("swept", ago(90), ago(90)), ("taken", ago(30), ago(5))] {
        assert_eq!(end_of(store, acme, id).await, Some(end), "{id}: never before its running statement started");
        let statements = transcript(id).await;
        let seqs: Vec<u64> = statements.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [1, 2], "{id}: the running statement once");
        let lost = &statements[1];
        let want = StatementRecord {
            seq: 2,
            start: running_since,
            duration: end - running_since,
            text: "select pg_sleep(600)".into(),
            status: StatementStatus::Unreported,
            ..StatementRecord::default()
        };
        assert_eq!(lost, &want, "{id}: lost with its connector, it lasted until the session's end");
        // Ended, the session runs nothing new.
        assert_eq!(ingest(&[announced(id, 3, ago(2))]).await, 0, "{id}");
    }

    // The real statement and end come late (the next run replays its predecessor's spool):
    // they replace what was guessed, the statement whether it has the announcement's seq or
    // a later one, as the connector numbers it.
    let real = |id: &str, seq: u64, start: Micros| IngestEvent::Statement {
        session_id: id.into(),
        statement: StatementRecord {
            seq,
            start,
            duration: 2 * MINUTE,
            text: "select pg_sleep(600)".into(),
            rows: 1,
            bytes_sent: 42,
            sqlstate: "57014".into(),
            ..Default::default()
        },
    };
    for (id, seq, running_since) in [("swept", 3, ago(90)), ("taken", 2, ago(30))] {
        let replay = [real(id, seq, running_since), end(id, running_since + 3 * MINUTE, "client")];
        assert_eq!(ingest(&replay).await, 2, "{id}");
        assert_eq!(end_of(store, acme, id).await, Some(running_since + 3 * MINUTE), "{id}");
        let statements = transcript(id).await;
        assert_eq!(statements.len(), 2, "{id}: the statement once: {statements:?}");
        let IngestEvent::Statement { statement, .. } = real(id, seq, running_since) else { unreachable!() };
        assert_eq!(statements[1], statement, "{id}: the real statement");
        // Replayed again: nothing changes.
        assert_eq!(ingest(&replay).await, 0, "{id}");
        assert_eq!(transcript(id).await.len(), 2, "{id}");
    }
}
