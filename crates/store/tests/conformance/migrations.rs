//! What the migration tests of both stores share (not part of the suite: taking a store back to
//! before a migration is SQL of its own).

use gatehouse_core::OrgId;
use gatehouse_store::{AggregateQuery, Facet, IngestEvent, StatementRecord, Store};

use super::fixture::{Fixture, NOW};

/// Statements psql and a driver sent, with and without their closing `;`, and the
/// `query.fingerprint` facet over them, counted once per query.
pub async fn semicolons(store: &dyn Store) -> (OrgId, AggregateQuery) {
    let fx = Fixture::load(store).await;
    let statement = |id: &str, seq: u64, text: &str| IngestEvent::Statement {
        session_id: id.into(),
        statement: StatementRecord { seq, text: text.into(), ..Default::default() },
    };
    let eu = [statement("s05", 1, "select 1;"), statement("s05", 2, "SELECT 2"), statement("s05", 3, "begin;")];
    assert_eq!(store.ingest(fx.acme, "c-eu", &eu).await.unwrap(), 3);
    assert_eq!(store.ingest(fx.acme, "c-us", &[statement("s08", 1, "select 3 ;")]).await.unwrap(), 1);
    let query = AggregateQuery {
        filter: gatehouse_query::parse("", NOW).unwrap(),
        window_start: None,
        window_end: None,
        now: NOW,
        histogram: None,
        facets: vec![Facet::QueryFingerprint],
        facet_limit: 10,
    };
    assert_one_per_query(store, fx.acme, &query).await;
    (fx.acme, query)
}

/// Takes the store back to before migration 14: the fingerprints stored then kept their `;`,
/// and a session that sent both spellings had both.
pub const BEFORE_FINGERPRINTS_LOST_THEIR_SEMICOLON: [&str; 4] = [
    "INSERT INTO session_fingerprints (org_id, session_id, fingerprint) \
     SELECT org_id, session_id, fingerprint || ';' FROM session_fingerprints WHERE session_id = 's05'",
    "UPDATE session_fingerprints SET fingerprint = fingerprint || ' ;' WHERE session_id = 's08'",
    "INSERT INTO session_fingerprints (org_id, session_id, fingerprint) \
     SELECT org_id, session_id, ';' FROM session_fingerprints WHERE session_id = 's08'",
    "DELETE FROM _sqlx_migrations WHERE version = 14",
];

pub async fn assert_one_per_query(store: &dyn Store, org: OrgId, query: &AggregateQuery) {
    let facets = store.aggregate(org, query).await.unwrap().facets;
    let counted: Vec<_> = facets[0].1.iter().map(|k| (k.key.as_str(), k.count)).collect();
    assert_eq!(counted, [("select ?", 2), ("begin", 1)]);
}
