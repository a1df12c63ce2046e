//! Organizations, API keys and installation secrets.

use gatehouse_core::{OrgId, Role};
use gatehouse_store::{ApiKeyInfo, NewApiKey, Store};

use super::fixture::NOW;

fn key(org: OrgId, prefix: &str, name: &str, role: Role, created: i64) -> NewApiKey {
    NewApiKey {
        org,
        prefix: prefix.into(),
        secret_hash: format!("hash-of-{prefix}").into_bytes(),
        name: name.into(),
        role,
        created,
    }
}

fn info(key: &NewApiKey) -> ApiKeyInfo {
    ApiKeyInfo {
        prefix: key.prefix.clone(),
        name: key.name.clone(),
        role: key.role,
        created: key.created,
        last_used: None,
        revoked: None,
    }
}

/// Two orgs with keys: acme has a reader and an admin key, globex one key.
async fn two_orgs_with_keys(store: &dyn Store) -> (OrgId, OrgId, [NewApiKey; 3]) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    // Inserted out of creation order, to see that listing sorts by creation.
    let keys = [
        key(acme, "gh_acme_ci", "ci", Role::Reader, NOW - 2_000),
        key(acme, "gh_acme_ops", "ops", Role::Admin, NOW - 1_000),
        key(globex, "gh_globex_1", "ci", Role::Reader, NOW - 3_000),
    ];
    for k in [&keys[1], &keys[0], &keys[2]] {
        store.insert_api_key(k).await.unwrap();
    }
    (acme, globex, keys)
}

pub async fn ensure_org_is_idempotent_and_find_org_and_get_org_find_it(store: &dyn Store) {
    assert_eq!(store.find_org("acme").await.unwrap(), None, "no org before ensure_org");
    let acme = store.ensure_org("acme").await.unwrap();
    assert_eq!(acme.name, "acme");
    // A second call, as every replica makes at startup, returns the same org.
    assert_eq!(store.ensure_org("acme").await.unwrap(), acme);
    let globex = store.ensure_org("globex").await.unwrap();
    assert_ne!(globex.id, acme.id);
    assert_eq!(store.find_org("acme").await.unwrap(), Some(acme.clone()));
    assert_eq!(store.find_org("globex").await.unwrap(), Some(globex.clone()));
    assert_eq!(store.list_orgs().await.unwrap(), [acme.clone(), globex.clone()], "every one, by name");
    assert_eq!(store.get_org(acme.id).await.unwrap(), Some(acme.clone()), "and by id");
    assert_eq!(store.get_org(globex.id).await.unwrap(), Some(globex.clone()));
    assert_eq!(store.get_org(OrgId(acme.id.0.max(globex.id.0) + 1)).await.unwrap(), None, "no such org");
    // Names are exact.
    assert_eq!(store.find_org("ACME").await.unwrap(), None);
    assert_eq!(store.find_org("acme ").await.unwrap(), None);
    assert_eq!(store.find_org("").await.unwrap(), None);
}

pub async fn of_racing_calls_creating_an_org_exactly_one_says_it_created_it(store: &dyn Store) {
    let ensure = || store.ensure_org_noting_creation("raceb");
    let raced = tokio::join!(ensure(), ensure(), ensure(), ensure(), ensure(), ensure());
    let raced = [raced.0, raced.1, raced.2, raced.3, raced.4, raced.5].map(Result::unwrap);
    assert_eq!(raced.iter().filter(|(_, created)| *created).count(), 1, "{raced:?}");
    let org = store.find_org("raceb").await.unwrap().unwrap();
    assert!(raced.iter().all(|(raced, _)| *raced == org), "{raced:?}");
    assert_eq!(store.ensure_org_noting_creation("raceb").await.unwrap(), (org, false));
}

pub async fn api_keys_are_found_by_prefix_whatever_their_org(store: &dyn Store) {
    let (acme, globex, keys) = two_orgs_with_keys(store).await;
    for (k, org) in keys.iter().zip([acme, acme, globex]) {
        let found = store.find_api_key(&k.prefix).await.unwrap().unwrap_or_else(|| panic!("{} not found", k.prefix));
        assert_eq!(found.org, org);
        assert_eq!(found.prefix, k.prefix);
        assert_eq!(found.secret_hash, k.secret_hash);
        assert_eq!(found.role, k.role);
        assert!(!found.revoked);
    }
    assert!(store.find_api_key("gh_nope").await.unwrap().is_none());
    // A prefix is matched whole, not as a prefix of a longer one.
    assert!(store.find_api_key("gh_acme").await.unwrap().is_none());
    assert!(store.find_api_key("gh_acme_%").await.unwrap().is_none());
}

pub async fn api_key_prefixes_are_unique(store: &dyn Store) {
    let (acme, globex, keys) = two_orgs_with_keys(store).await;
    // Lookup is by prefix alone, so a second key with a taken prefix, even in
    // another org, must be refused rather than shadow or be shadowed.
    let again = key(globex, &keys[0].prefix, "impostor", Role::Admin, NOW);
    assert!(store.insert_api_key(&again).await.is_err(), "a duplicate prefix was accepted");
    let found = store.find_api_key(&keys[0].prefix).await.unwrap().unwrap();
    assert_eq!((found.org, found.role, found.secret_hash), (acme, Role::Reader, keys[0].secret_hash.clone()));
}

pub async fn listing_api_keys_is_per_org_in_creation_order_without_secrets(store: &dyn Store) {
    let (acme, globex, keys) = two_orgs_with_keys(store).await;
    // `ApiKeyInfo` has no secret or hash field, so equality with these
    // expected values also shows that nothing else is returned.
    assert_eq!(store.list_api_keys(acme).await.unwrap(), vec![info(&keys[0]), info(&keys[1])]);
    assert_eq!(store.list_api_keys(globex).await.unwrap(), vec![info(&keys[2])]);
    let empty = store.ensure_org("initech").await.unwrap().id;
    assert_eq!(store.list_api_keys(empty).await.unwrap(), vec![]);
}

pub async fn revoking_a_key_works_only_within_its_org_and_only_once(store: &dyn Store) {
    let (acme, globex, keys) = two_orgs_with_keys(store).await;
    let prefix = &keys[0].prefix;
    // An admin of globex cannot revoke acme's key, nor learn that it exists.
    assert!(!store.revoke_api_key(globex, prefix, NOW).await.unwrap());
    assert!(!store.find_api_key(prefix).await.unwrap().unwrap().revoked);
    assert!(!store.revoke_api_key(acme, "gh_nope", NOW).await.unwrap());

    assert!(store.revoke_api_key(acme, prefix, NOW).await.unwrap());
    assert!(store.find_api_key(prefix).await.unwrap().unwrap().revoked);
    // Revoking again is a no-op that keeps the first revocation time.
    assert!(!store.revoke_api_key(acme, prefix, NOW + 5).await.unwrap());
    let listed = store.list_api_keys(acme).await.unwrap();
    assert_eq!(listed[0], ApiKeyInfo { revoked: Some(NOW), ..info(&keys[0]) });
    assert_eq!(listed[1], info(&keys[1]), "the other key is untouched");
    assert!(!store.find_api_key(&keys[2].prefix).await.unwrap().unwrap().revoked);
}

pub async fn touching_a_key_records_its_last_use(store: &dyn Store) {
    let (acme, globex, keys) = two_orgs_with_keys(store).await;
    store.touch_api_key(&keys[1].prefix, NOW).await.unwrap();
    let listed = store.list_api_keys(acme).await.unwrap();
    assert_eq!(listed, vec![info(&keys[0]), ApiKeyInfo { last_used: Some(NOW), ..info(&keys[1]) }]);
    store.touch_api_key(&keys[1].prefix, NOW + 60).await.unwrap();
    assert_eq!(store.list_api_keys(acme).await.unwrap()[1].last_used, Some(NOW + 60));
    // A use recorded late (replicas record theirs apart) does not move the last use back.
    store.touch_api_key(&keys[1].prefix, NOW + 30).await.unwrap();
    assert_eq!(store.list_api_keys(acme).await.unwrap()[1].last_used, Some(NOW + 60));
    // Touching an unknown key is harmless.
    store.touch_api_key("gh_nope", NOW).await.unwrap();
    assert_eq!(store.list_api_keys(globex).await.unwrap(), vec![info(&keys[2])]);
}

pub async fn secret_or_init_keeps_the_first_value(store: &dyn Store) {
    // Replicas race to initialize a shared secret: the first value wins and
    // every later caller gets it back.
    assert_eq!(store.secret_or_init("cursor-key", b"first").await.unwrap(), b"first");
    assert_eq!(store.secret_or_init("cursor-key", b"second").await.unwrap(), b"first");
    assert_eq!(store.secret_or_init("other", &[0, 255, 1]).await.unwrap(), vec![0, 255, 1]);
    assert_eq!(store.secret_or_init("cursor-key", b"").await.unwrap(), b"first");
}
