//! Aggregations: counts over exactly what a listing with the same filter and
//! window returns, a histogram by start time, and facets.

use gatehouse_core::session::ConnectorRef;
use gatehouse_query::Field;
use gatehouse_store::{
    AggregateQuery, Facet, HistogramSpec, IngestEvent, KeyCount, NewConnector, StatementRecord, Store,
};

use super::fixture::{Fixture, MINUTE, NOW, active, ago};

fn counting(text: &str, window: (Option<i64>, Option<i64>)) -> AggregateQuery {
    AggregateQuery {
        filter: gatehouse_query::parse(text, NOW).expect("query parses"),
        window_start: window.0,
        window_end: window.1,
        now: NOW,
        histogram: Some(HistogramSpec { interval: Some(60 * MINUTE), group_by: vec![] }),
        facets: vec![Facet::ResourceTechnology, Facet::UserEmail, Facet::ClientIp],
        facet_limit: 10,
    }
}

fn pairs(keys: &[KeyCount]) -> Vec<(&str, u64)> {
    keys.iter().map(|k| (k.key.as_str(), k.count)).collect()
}

pub async fn aggregate_hits_equal_the_listing_and_buckets_add_up(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let windows = [(None, None), (Some(ago(120)), Some(ago(60))), (Some(ago(30)), None), (None, Some(ago(480)))];
    for text in ["", "technology:postgres", "group:dba OR session_status:active", "NOT client_ip:\"10.0.0.0/8\""] {
        for window in windows {
            let listed = fx
                .list(
                    fx.acme,
                    &gatehouse_store::ListQuery {
                        window_start: window.0,
                        window_end: window.1,
                        filter: gatehouse_query::parse(text, NOW).unwrap(),
                        ..gatehouse_store::ListQuery::newest(1_000, NOW)
                    },
                )
                .await;
            let counted = store.aggregate(fx.acme, &counting(text, window)).await.expect("aggregate");
            let label = format!("{text:?} in {window:?}");
            assert_eq!(counted.num_hits, listed.len() as u64, "{label}");
            assert_eq!(counted.histogram.iter().map(|d| d.count).sum::<u64>(), listed.len() as u64, "{label}");
            assert!(counted.histogram.windows(2).all(|w| w[1].start - w[0].start == 60 * MINUTE), "{label}");
            let mut technologies = std::collections::BTreeMap::<&str, u64>::new();
            for s in &listed {
                *technologies.entry(s.resource.technology.as_str()).or_default() += 1;
            }
            let mut want: Vec<_> = technologies.into_iter().filter(|(k, _)| !k.is_empty()).collect();
            want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            assert_eq!(pairs(&counted.facets[0].1), want, "{label}");
        }
    }
}

pub async fn a_costly_filter_counts_the_same_as_a_cheap_one(store: &dyn Store) {
    // Three bare terms that match nothing make the filter costly (24 predicates), and the
    // store evaluates it once for all statements; the counts must not change.
    let fx = Fixture::load(store).await;
    let cheap = "group:dba OR session_status:active";
    let costly = format!("({cheap}) AND NOT (nobody1 OR nobody2 OR nobody3)");
    let windows = [(None, None), (Some(ago(120)), Some(ago(60))), (Some(ago(30)), None)];
    for window in windows {
        let mut queries = [counting(cheap, window), counting(&costly, window)];
        for q in &mut queries {
            q.histogram = Some(HistogramSpec { interval: Some(60 * MINUTE), group_by: vec![Field::UserGroups] });
            q.facets = Facet::ALL.to_vec();
        }
        let [cheap, costly] = queries;
        let want = store.aggregate(fx.acme, &cheap).await.expect("aggregate");
        assert!(want.num_hits > 0);
        assert_eq!(store.aggregate(fx.acme, &costly).await.expect("aggregate"), want, "{window:?}");
        assert_eq!(store.aggregate_raw(fx.acme, &costly).await.expect("aggregate"), want, "{window:?}");
    }
}

pub async fn the_session_ids_facet_lists_the_first_ids_once_each(store: &dyn Store) {
    // Each session has its own id: the most frequent ids, ties by id, are the first ids.
    let fx = Fixture::load(store).await;
    let cheap = "group:dba OR session_status:active";
    let costly = format!("({cheap}) AND NOT (nobody1 OR nobody2 OR nobody3)");
    for text in ["", "technology:postgres", cheap, &costly] {
        for window in [(None, None), (Some(ago(120)), Some(ago(60))), (Some(ago(30)), None)] {
            let listing = gatehouse_store::ListQuery {
                window_start: window.0,
                window_end: window.1,
                filter: gatehouse_query::parse(text, NOW).unwrap(),
                ..gatehouse_store::ListQuery::newest(1_000, NOW)
            };
            let mut ids: Vec<String> = fx.list(fx.acme, &listing).await.into_iter().map(|s| s.id).collect();
            ids.sort();
            ids.truncate(3);
            let query = AggregateQuery {
                histogram: None,
                facets: vec![Facet::SessionId],
                facet_limit: 3,
                ..counting(text, window)
            };
            let counted = store.aggregate(fx.acme, &query).await.expect("aggregate");
            let want: Vec<(&str, u64)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
            assert_eq!(pairs(&counted.facets[0].1), want, "{text:?} in {window:?}");
        }
    }
}

pub async fn every_facet_counts_the_same_alone_as_with_the_others(store: &dyn Store) {
    // PostgreSQL counts facets together, from one scan: each must be what it is alone, its top
    // keys cut at the same place (3 keys, below most facets' count of keys), ties by key.
    let fx = Fixture::load(store).await;
    let statement = |text: &str| StatementRecord { start: NOW, text: text.into(), rows: 3, ..Default::default() };
    let events: Vec<_> = ["s05", "s07", "s12"]
        .into_iter()
        .enumerate()
        .flat_map(|(i, session)| {
            (1..=3 * i as u64 + 1).map(move |seq| IngestEvent::Statement {
                session_id: session.into(),
                statement: StatementRecord { seq, ..statement(&format!("SELECT {seq}")) },
            })
        })
        .collect();
    store.ingest(fx.acme, "c-eu", &events).await.expect("ingest");
    let cheap = "group:dba OR session_status:active";
    let costly = format!("({cheap}) AND NOT (nobody1 OR nobody2 OR nobody3)");
    for text in ["", "technology:postgres", cheap, &costly] {
        for window in [(None, None), (Some(ago(120)), Some(ago(60))), (Some(ago(30)), None)] {
            let all = AggregateQuery {
                histogram: None,
                facets: Facet::ALL.to_vec(),
                facet_limit: 3,
                ..counting(text, window)
            };
            let together = store.aggregate(fx.acme, &all).await.expect("aggregate");
            for (facet, keys) in &together.facets {
                let one = AggregateQuery { facets: vec![*facet], ..all.clone() };
                let alone = store.aggregate(fx.acme, &one).await.expect("aggregate");
                assert_eq!(pairs(&alone.facets[0].1), pairs(keys), "{facet:?} for {text:?} in {window:?}");
            }
        }
    }
}

pub async fn grouping_by_session_id_is_refused(store: &dyn Store) {
    // Every session would be a group of its own: refused before anything is counted.
    let fx = Fixture::load(store).await;
    let mut query = counting("", (None, None));
    query.histogram =
        Some(HistogramSpec { interval: Some(60 * MINUTE), group_by: vec![Field::ResourceTechnology, Field::Id] });
    match store.aggregate(fx.acme, &query).await {
        Err(gatehouse_store::StoreError::Invalid(message)) => assert!(message.contains("id"), "{message}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

pub async fn aggregate_groups_count_many_valued_fields_per_value(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let mut query = counting("", (Some(ago(700)), Some(NOW)));
    query.histogram = Some(HistogramSpec { interval: Some(700 * MINUTE), group_by: vec![Field::UserGroups] });
    let counted = store.aggregate(fx.acme, &query).await.expect("aggregate");
    // One bucket holds everything from 00:20 on; s20 and s21 started the day before and count in it.
    let total: u64 = counted.histogram.iter().map(|d| d.count).sum();
    assert_eq!(total, 22);
    let mut by_group = std::collections::BTreeMap::<String, u64>::new();
    for date in &counted.histogram {
        for g in &date.groups {
            *by_group.entry(g.key.clone()).or_default() += g.count;
        }
    }
    // From the fixture table: dba is alice, carol, Alice (s07) and grace; heidi's is "DBA".
    assert_eq!(by_group.get("dba"), Some(&4), "{by_group:?}");
    assert_eq!(by_group.get("DBA"), Some(&1), "{by_group:?}");
    assert_eq!(by_group.get("sre"), Some(&4), "{by_group:?}");
}

pub async fn aggregate_counts_statements_once_per_session(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let statement = |seq: u64, text: &str| StatementRecord {
        seq,
        start: NOW,
        duration: 1,
        text: text.into(),
        rows: 3,
        bytes_sent: 100,
        sqlstate: String::new(),
        ..Default::default()
    };
    let events: Vec<_> = (1..=4)
        .map(|seq| IngestEvent::Statement {
            session_id: "s05".into(),
            statement: statement(seq, &format!("SELECT * FROM t WHERE id = {seq}")),
        })
        .chain([IngestEvent::Statement { session_id: "s12".into(), statement: statement(1, "select 'x'") }])
        .collect();
    store.ingest(fx.acme, "c-eu", &events).await.expect("ingest");
    store.ingest(fx.acme, "c-eu", &events).await.expect("ingest again");
    let mut query = counting("", (None, None));
    query.histogram = None;
    query.facets = vec![Facet::QueryFingerprint, Facet::Statements, Facet::BytesSent, Facet::RowsSent];
    let counted = store.aggregate(fx.acme, &query).await.expect("aggregate");
    assert_eq!(counted.num_hits, 22);
    assert_eq!(pairs(&counted.facets[0].1), [("select * from t where id = ?", 1), ("select ?", 1)]);
    assert_eq!(pairs(&counted.facets[1].1), [("0", 20), ("1-9", 2)]);
    assert_eq!(pairs(&counted.facets[2].1), [("0", 20), ("100-999", 2)]);
    assert_eq!(pairs(&counted.facets[3].1), [("0", 20), ("1-9", 1), ("10-99", 1)]);
    // The other organization sees none of it.
    assert!(store.aggregate(fx.globex, &query).await.unwrap().facets[0].1.is_empty());
}

pub async fn a_statement_running_when_its_session_was_swept_counts_in_its_statements(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let connector = NewConnector {
        org: acme,
        id: "c-1".into(),
        name: "one".into(),
        key_prefix: "gk_c-1".into(),
        key_hash: b"hash-of-c-1".to_vec(),
        created: NOW - 1000,
    };
    store.create_connector(&connector).await.unwrap();
    store.connector_hello(acme, "c-1", "run-1", &[], ago(100)).await.unwrap();
    let session = |id: &str| {
        let mut session = active(id, 120).build();
        session.connector = ConnectorRef { id: "c-1".into(), name: "one".into(), run_id: "run-1".into() };
        IngestEvent::Start(Box::new(session))
    };
    let record = |seq: u64| StatementRecord {
        seq,
        start: ago(110) + seq as i64,
        text: format!("select {seq}"),
        ..Default::default()
    };
    let statement = |id: &str, seq: u64| IngestEvent::Statement { session_id: id.into(), statement: record(seq) };
    let running = |id: &str, seq: u64| IngestEvent::Running { session_id: id.into(), statement: record(seq) };
    // `idle` ran nothing before the statement it was running when its run fell silent; `busy` 8.
    let mut events = vec![session("idle"), session("busy"), running("idle", 1)];
    events.extend((1..=8).map(|seq| statement("busy", seq)));
    events.push(running("busy", 9));
    store.ingest(acme, "c-1", &events).await.unwrap();
    assert_eq!(store.expire_connectors(ago(10)).await.unwrap(), 2, "both sessions completed by the lease");
    let counted = async |text: &str| {
        let query = AggregateQuery { histogram: None, facets: vec![Facet::Statements], ..counting(text, (None, None)) };
        let counted = store.aggregate(acme, &query).await.expect("aggregate");
        counted.facets[0].1.iter().map(|k| (k.key.clone(), k.count)).collect::<Vec<_>>()
    };
    let costly = "NOT (nobody1 OR nobody2 OR nobody3)";
    for text in ["", costly] {
        assert_eq!(counted(text).await, [("1-9".to_owned(), 2)], "{text:?}: the running statements count");
    }
    // The statements are reported at last (the next run replays the spool): counted once,
    // `busy`'s 9 would be 10 counted twice.
    store.ingest(acme, "c-1", &[statement("idle", 1), statement("busy", 9)]).await.unwrap();
    for text in ["", costly] {
        assert_eq!(counted(text).await, [("1-9".to_owned(), 2)], "{text:?}: each statement once");
    }
}

/// A replay may cut batches differently from the first delivery: a report can
/// hold statements already stored and new ones. The session's totals count
/// each statement once. The buckets are picked so that counting a replayed
/// statement twice, or missing a new one, lands in another bucket.
pub async fn replays_with_new_statements_count_each_statement_once(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let report = |seqs: std::ops::RangeInclusive<u64>| -> Vec<IngestEvent> {
        seqs.map(|seq| IngestEvent::Statement {
            session_id: "s05".into(),
            statement: StatementRecord {
                seq,
                start: NOW,
                duration: 1,
                text: format!("SELECT {seq}"),
                rows: 1,
                bytes_sent: 100,
                sqlstate: String::new(),
                ..Default::default()
            },
        })
        .collect()
    };
    let mut query = counting("id:s05", (None, None));
    query.histogram = None;
    query.facets = vec![Facet::Statements, Facet::BytesSent, Facet::RowsSent];
    let totals = async |query: &AggregateQuery| {
        let counted = store.aggregate(fx.acme, query).await.expect("aggregate");
        counted
            .facets
            .iter()
            .map(|(_, keys)| pairs(keys).iter().map(|(k, _)| k.to_string()).collect())
            .collect::<Vec<Vec<_>>>()
    };
    assert_eq!(store.ingest(fx.acme, "c-eu", &report(1..=5)).await.unwrap(), 5);
    assert_eq!(totals(&query).await, [["1-9"], ["100-999"], ["1-9"]]);
    // 1..=5 again with 6..=9: 9 statements, 900 bytes (14 and 1,400 if counted twice).
    assert_eq!(store.ingest(fx.acme, "c-eu", &report(1..=9)).await.unwrap(), 4);
    assert_eq!(totals(&query).await, [["1-9"], ["100-999"], ["1-9"]]);
    // And with one more: 10 statements, 1,000 bytes, 10 rows (9 if the new one were missed).
    assert_eq!(store.ingest(fx.acme, "c-eu", &report(1..=10)).await.unwrap(), 1);
    assert_eq!(totals(&query).await, [["10-99"], ["1000-9999"], ["10-99"]]);
    assert_eq!(store.statements(fx.acme, "s05").await.unwrap().len(), 10);
}
