//! Organization isolation: a listing of one org never holds another's rows,
//! whatever the query. (Every `Fixture::check` also verifies this for acme,
//! whose ids globex reuses with other content.)

use gatehouse_store::{ListQuery, Store};

use super::fixture::{Fixture, NOW, ago, every_sort, listing};
use super::queries::CATALOGUE;

pub async fn no_query_returns_another_orgs_sessions(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    // Seen from globex, every query of the suite returns only globex's rows,
    // and globex's versions of the ids acme shares.
    for (text, _) in CATALOGUE.iter().flat_map(|cases| cases.iter()) {
        for window in [(None, None), (Some(ago(120)), Some(ago(60)))] {
            let query = ListQuery { window_start: window.0, window_end: window.1, ..listing(text, NOW) };
            for row in fx.list(fx.globex, &query).await {
                if fx.stored(fx.globex).get(&row.id) != Some(&row) {
                    fx.fail(format!("{text:?} in globex returned a row not globex's: {row:?}"));
                }
            }
        }
    }
    // Every sort, paged from a position that exists only in the other org.
    for query in every_sort() {
        let from = gatehouse_store::Position { key: query.key_of(fx.session("s01")), id: "s01".into() };
        for org in [fx.acme, fx.globex] {
            let rows = fx.list(org, &ListQuery { after: Some(from.clone()), ..query.clone() }).await;
            if let Some(row) = rows.iter().find(|row| fx.stored(org).get(&row.id) != Some(row)) {
                fx.fail(format!("{:?} {:?} paged listing crossed orgs: {row:?}", query.sort, query.direction));
            }
        }
    }
}

pub async fn an_org_without_sessions_lists_nothing(store: &dyn Store) {
    let fx = Fixture::load(store).await;
    let empty = store.ensure_org("initech").await.unwrap().id;
    for (text, _) in CATALOGUE.iter().flat_map(|cases| cases.iter()) {
        let rows = fx.list(empty, &listing(text, NOW)).await;
        if !rows.is_empty() {
            fx.fail(format!("{text:?} in an empty org returned {:?}", rows.iter().map(|s| &s.id).collect::<Vec<_>>()));
        }
    }
    for query in every_sort() {
        let windowed = ListQuery { window_start: Some(ago(3000)), window_end: Some(NOW), ..query.clone() };
        for query in [query, windowed] {
            assert!(fx.list(empty, &query).await.is_empty(), "{:?} {:?}", query.sort, query.direction);
        }
    }
    for id in ["s01", "gs01"] {
        assert_eq!(store.get_session(empty, id).await.unwrap(), None);
    }
}
