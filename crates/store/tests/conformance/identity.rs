//! Identities: users (humans and machines), access tokens, default roles
//! and role grants. Every read and write is scoped to its organization.

use gatehouse_core::OrgId;
use gatehouse_store::identity::{
    AccessTokenInfo, NewAccessToken, Principal, ResourceAccess, RoleGrant, User, UserKind,
};
use gatehouse_store::{Resource, Store, StoreError};

use super::fixture::NOW;

fn human(id: &str, email: &str, groups: &[&str]) -> User {
    User {
        id: id.into(),
        kind: UserKind::Human,
        email: email.into(),
        name: format!("Name of {id}"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        external_ids: vec![format!("okta|{id}")],
        disabled: false,
        created: NOW,
        updated: NOW,
    }
}

fn machine(id: &str, name: &str) -> User {
    User {
        id: id.into(),
        kind: UserKind::Machine,
        email: String::new(),
        name: name.into(),
        groups: vec!["etl".into()],
        external_ids: vec![],
        disabled: false,
        created: NOW,
        updated: NOW,
    }
}

fn token(org: OrgId, user_id: &str, prefix: &str) -> NewAccessToken {
    NewAccessToken {
        org,
        user_id: user_id.into(),
        prefix: prefix.into(),
        secret_hash: format!("hash-of-{prefix}").into_bytes(),
        name: format!("token {prefix}"),
        created: NOW,
        expires: NOW + 3_600_000_000,
    }
}

fn resource(id: &str, name: &str) -> Resource {
    Resource {
        id: id.into(),
        name: name.into(),
        kind: "datastore".into(),
        technology: "postgres".into(),
        host: "db.internal".into(),
        port: 5432,
        created: NOW,
    }
}

pub async fn identity_users_are_unique_per_org_and_type_whatever_their_case(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let alice = human("u-alice", "Alice@Example.com", &["dba", "sre"]);
    let bob = human("u-bob", "bob@example.com", &[]);
    let etl = machine("u-etl", "etl-nightly");
    for u in [&bob, &etl, &alice] {
        store.create_user(acme, u).await.unwrap();
    }
    // Humans then machines, by folded email or name.
    assert_eq!(store.list_users(acme).await.unwrap(), vec![alice.clone(), bob.clone(), etl.clone()]);
    assert_eq!(store.list_users(globex).await.unwrap(), vec![]);

    let found = store.find_user(acme, UserKind::Human, "alice@EXAMPLE.com").await.unwrap();
    assert_eq!(found.as_ref(), Some(&alice), "emails match whatever their case");
    assert_eq!(store.find_user(acme, UserKind::Machine, "ETL-Nightly").await.unwrap(), Some(etl.clone()));
    assert_eq!(store.find_user(acme, UserKind::Machine, "alice@example.com").await.unwrap(), None, "type matters");
    assert_eq!(store.find_user(globex, UserKind::Human, "alice@example.com").await.unwrap(), None, "org matters");
    assert_eq!(store.find_user(acme, UserKind::Human, "alice@example").await.unwrap(), None, "whole values only");

    let same_email = human("u-alice-2", "ALICE@example.com", &[]);
    assert!(matches!(store.create_user(acme, &same_email).await, Err(StoreError::Conflict(_))));
    // Another organization, or the other type, may use the same handle.
    store.create_user(globex, &same_email).await.unwrap();
    store.create_user(acme, &machine("u-etl-h", "bob@example.com")).await.unwrap();
    assert_eq!(store.list_users(acme).await.unwrap().len(), 4);
    assert_eq!(store.list_users(globex).await.unwrap(), vec![same_email]);
}

pub async fn identity_updating_a_user_rewrites_its_fields_within_its_org(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    let alice = human("u-alice", "alice@example.com", &["dba"]);
    let bob = human("u-bob", "bob@example.com", &[]);
    store.create_user(acme, &alice).await.unwrap();
    store.create_user(acme, &bob).await.unwrap();

    let changed = User {
        email: "alice@corp.example".into(),
        name: "Alice A.".into(),
        groups: vec!["dba".into(), "oncall".into()],
        external_ids: vec![],
        disabled: true,
        updated: NOW + 5,
        ..alice.clone()
    };
    assert!(store.update_user(acme, &changed).await.unwrap());
    assert_eq!(store.find_user(acme, UserKind::Human, "alice@corp.example").await.unwrap(), Some(changed.clone()));
    assert_eq!(store.find_user(acme, UserKind::Human, "alice@example.com").await.unwrap(), None, "old email");

    assert!(!store.update_user(globex, &changed).await.unwrap(), "another org's user is not found");
    let taken = User { email: "BOB@example.com".into(), ..changed.clone() };
    assert!(matches!(store.update_user(acme, &taken).await, Err(StoreError::Conflict(_))), "email taken");
    assert_eq!(store.find_user(acme, UserKind::Human, "bob@example.com").await.unwrap(), Some(bob));
    assert_eq!(store.find_user(acme, UserKind::Human, "alice@corp.example").await.unwrap(), Some(changed));
}

pub async fn identity_access_tokens_are_hashes_of_their_users_found_by_prefix(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    store.create_user(acme, &human("u-alice", "alice@example.com", &[])).await.unwrap();
    store.create_user(acme, &machine("u-etl", "etl")).await.unwrap();
    store.create_user(globex, &human("u-gus", "gus@globex.example", &[])).await.unwrap();

    let first = token(acme, "u-alice", "ght_aaaa");
    let second = NewAccessToken { created: NOW + 1, ..token(acme, "u-alice", "ght_bbbb") };
    for t in [&second, &first, &token(acme, "u-etl", "ght_cccc")] {
        store.insert_access_token(t).await.unwrap();
    }
    // A token only for a user of its own organization.
    let foreign = token(acme, "u-gus", "ght_dddd");
    assert!(matches!(store.insert_access_token(&foreign).await, Err(StoreError::Conflict(_))));
    assert!(store.find_access_token("ght_dddd").await.unwrap().is_none());

    let found = store.find_access_token("ght_aaaa").await.unwrap().expect("found by prefix");
    assert_eq!((found.org, found.user_id.as_str(), found.secret_hash), (acme, "u-alice", first.secret_hash.clone()));
    assert_eq!((found.expires, found.revoked), (first.expires, None));
    assert!(store.find_access_token("ght_aaa").await.unwrap().is_none(), "a prefix matches whole");

    let info = |t: &NewAccessToken| AccessTokenInfo {
        prefix: t.prefix.clone(),
        user_id: t.user_id.clone(),
        name: t.name.clone(),
        created: t.created,
        expires: t.expires,
        last_used: None,
        revoked: None,
    };
    assert_eq!(store.list_access_tokens(acme, "u-alice").await.unwrap(), vec![info(&first), info(&second)]);
    assert_eq!(store.list_access_tokens(globex, "u-alice").await.unwrap(), vec![], "scoped to the org");

    assert!(!store.revoke_access_token(globex, "ght_aaaa", NOW + 10).await.unwrap(), "not globex's token");
    assert!(store.revoke_access_token(acme, "ght_aaaa", NOW + 10).await.unwrap());
    assert!(!store.revoke_access_token(acme, "ght_aaaa", NOW + 20).await.unwrap(), "revoked once");
    assert_eq!(store.find_access_token("ght_aaaa").await.unwrap().unwrap().revoked, Some(NOW + 10));

    store.touch_access_token("ght_bbbb", NOW + 30).await.unwrap();
    store.touch_access_token("ght_bbbb", NOW + 25).await.unwrap();
    let listed = store.list_access_tokens(acme, "u-alice").await.unwrap();
    assert_eq!(listed[0].revoked, Some(NOW + 10));
    assert_eq!(listed[1].last_used, Some(NOW + 30), "a late touch never moves last use back");
}

pub async fn identity_default_roles_and_grants_are_per_resource_of_the_org(store: &dyn Store) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let globex = store.ensure_org("globex").await.unwrap().id;
    store.create_resource(acme, &resource("r-orders", "orders")).await.unwrap();
    store.create_resource(globex, &resource("r-globex", "orders")).await.unwrap();
    store.create_user(acme, &human("u-alice", "alice@example.com", &["dba"])).await.unwrap();
    store.create_user(globex, &human("u-gus", "gus@globex.example", &[])).await.unwrap();

    let access = store.resource_access(acme, "r-orders").await.unwrap().expect("the resource");
    let empty = ResourceAccess {
        resource_id: "r-orders".into(),
        resource_name: "orders".into(),
        default_role: String::new(),
        grants: vec![],
    };
    assert_eq!(access, empty);
    assert!(store.resource_access(globex, "r-orders").await.unwrap().is_none(), "another org's resource");

    assert!(store.set_resource_default_role(acme, "r-orders", "app_ro").await.unwrap());
    assert!(!store.set_resource_default_role(globex, "r-orders", "owned").await.unwrap());
    // The default role is not part of the registry's record.
    assert_eq!(store.list_resources(acme).await.unwrap(), vec![resource("r-orders", "orders")]);

    let grant =
        |principal: Principal, role: &str| RoleGrant { resource_id: "r-orders".into(), principal, role: role.into() };
    let to_dba = grant(Principal::Group("dba".into()), "app_rw");
    let to_alice = grant(Principal::User("u-alice".into()), "admin");
    let to_alice_ro = grant(Principal::User("u-alice".into()), "app_ro");
    for g in [&to_alice, &to_dba, &to_alice_ro] {
        assert!(store.grant_role(acme, g, NOW).await.unwrap(), "{g:?} is new");
    }
    assert!(!store.grant_role(acme, &to_dba, NOW + 1).await.unwrap(), "granted once");
    // Only for the org's own resources and users.
    let foreign_user = grant(Principal::User("u-gus".into()), "admin");
    assert!(matches!(store.grant_role(acme, &foreign_user, NOW).await, Err(StoreError::Conflict(_))));
    let foreign_resource = RoleGrant { resource_id: "r-globex".into(), ..to_dba.clone() };
    assert!(matches!(store.grant_role(acme, &foreign_resource, NOW).await, Err(StoreError::Conflict(_))));

    let access = store.resource_access(acme, "r-orders").await.unwrap().unwrap();
    assert_eq!(access.default_role, "app_ro");
    // Groups before users, then by principal and role.
    assert_eq!(access.grants, vec![to_dba.clone(), to_alice.clone(), to_alice_ro.clone()]);
    assert_eq!(store.resource_access(globex, "r-globex").await.unwrap().unwrap().grants, vec![]);

    assert!(!store.revoke_role_grant(globex, &to_alice).await.unwrap(), "not globex's grant");
    assert!(store.revoke_role_grant(acme, &to_alice).await.unwrap());
    assert!(!store.revoke_role_grant(acme, &to_alice).await.unwrap(), "revoked once");
    let access = store.resource_access(acme, "r-orders").await.unwrap().unwrap();
    assert_eq!(access.grants, vec![to_dba, to_alice_ro]);
}
