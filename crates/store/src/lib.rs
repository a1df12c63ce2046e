//! Storage for the control plane: organizations, API keys and sessions.
//!
//! [`Store`] is the one interface the server uses; [`sqlite::SqliteStore`] is
//! the embedded default, [`postgres::PgStore`] the one many replicas share. Filters arrive as the typed AST of `gatehouse-query`
//! and are compiled to SQL by [`sql`], with every value bound as a parameter.
//!
//! # Layout
//! - [`model`]: the records the trait takes and returns.
//! - [`sql`]: dialect-neutral SQL text building (filters, paging).
//! - [`sqlite`]: the SQLite implementation and its migrations.
//! - [`postgres`]: the PostgreSQL implementation and its migrations.

mod error;
mod feed;
pub mod fingerprint;
pub mod identity;
pub mod ip;
pub mod model;
pub mod postgres;
mod row;
pub mod sql;
pub mod sqlite;

use async_trait::async_trait;
use gatehouse_core::{Micros, OrgId, Session};

pub use error::StoreError;
pub use feed::{TerminationFeed, TerminationNotice};
pub use model::*;

/// The migrations of `migrator` not among the `applied` versions, as
/// `(version, description)`, in order; an error when the store applied one `migrator` does
/// not know (see [`unknown_migration`]), which no migration this binary applies would mend.
fn pending_migrations(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
    let known = |version: &i64| migrator.iter().any(|m| m.version == *version);
    if let Some(&version) = applied.iter().filter(|v| !known(v)).max() {
        return Err(unknown_migration(migrator, version));
    }
    Ok(migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| (m.version, m.description.to_string()))
        .collect())
}

/// A migration `migrator` failed with, in the store's words: one that found the store applied
/// a migration it does not know is [`unknown_migration`]'s, not sqlx's ("migration 99 was
/// previously applied but is missing in the resolved migrations").
fn migrate_error(migrator: &sqlx::migrate::Migrator, error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::VersionMissing(version) => unknown_migration(migrator, version),
        error => StoreError::Migrate(error),
    }
}

/// A store that applied `version`, which `migrator` does not know: one a newer Gatehouse
/// wrote, when it is past every migration this one knows.
fn unknown_migration(migrator: &sqlx::migrate::Migrator, version: i64) -> StoreError {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match version > known {
        true => StoreError::NewerSchema { version, known },
        false => StoreError::Migrate(sqlx::migrate::MigrateError::VersionMissing(version)),
    }
}

/// Everything the control plane stores. Every method that reads sessions or
/// keys takes the caller's organization: there is no unscoped read.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Returns the organization with this name, creating it if needed.
    async fn ensure_org(&self, name: &str) -> Result<Org, StoreError> {
        Ok(self.ensure_org_noting_creation(name).await?.0)
    }
    /// As [`Store::ensure_org`], and whether this call created it: of calls racing to create
    /// one organization, exactly one did.
    async fn ensure_org_noting_creation(&self, name: &str) -> Result<(Org, bool), StoreError>;
    async fn find_org(&self, name: &str) -> Result<Option<Org>, StoreError>;
    /// The organization with this id: a caller's, whose key names only its id.
    async fn get_org(&self, id: OrgId) -> Result<Option<Org>, StoreError>;
    /// Every organization, by name.
    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError>;

    async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError>;
    /// Looks a key up by its public prefix, whatever its organization: this is
    /// how a request is authenticated, before the organization is known.
    async fn find_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, StoreError>;
    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKeyInfo>, StoreError>;
    /// Revokes a key of `org`; false when there is no such live key.
    async fn revoke_api_key(&self, org: OrgId, prefix: &str, at: Micros) -> Result<bool, StoreError>;
    async fn touch_api_key(&self, prefix: &str, at: Micros) -> Result<(), StoreError>;

    /// Returns the named installation-wide secret, storing `init` first if it
    /// is not set yet. Replicas sharing a database thereby share secrets.
    async fn secret_or_init(&self, name: &str, init: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Inserts sessions; a session whose id already exists is left unchanged.
    /// Returns how many were new.
    async fn insert_sessions(&self, org: OrgId, sessions: &[Session]) -> Result<u64, StoreError>;
    async fn get_session(&self, org: OrgId, id: &str) -> Result<Option<Session>, StoreError>;
    /// One page of sessions in the query's order, up to `query.limit` rows.
    async fn list_sessions(&self, org: OrgId, query: &ListQuery) -> Result<Vec<Session>, StoreError>;
    /// The `now` of a new walk ([`ListQuery::now`]): the store's recording clock, read once
    /// every end recorded before it is visible. A walk whose `now` came before an end was
    /// committed, but after its recording time was read, would list that session as active on
    /// one page and as ended on a later one.
    async fn listing_clock(&self) -> Result<Micros, StoreError>;
    /// The clock of this store, which every process sharing it reads alike: PostgreSQL's for
    /// a database several replicas share, this process's own for SQLite, which only it opens.
    async fn clock(&self) -> Result<Micros, StoreError> {
        Ok(gatehouse_core::time::now_micros())
    }
    /// Counts what a listing with the same filter and window walks: the
    /// number of hits, a histogram by start time and the top keys of facets.
    async fn aggregate(&self, org: OrgId, query: &AggregateQuery) -> Result<Aggregates, StoreError>;
    /// [`Store::aggregate`] counted from the sessions alone, never from the
    /// hourly rollup: what `aggregate` must always equal. For tests.
    #[doc(hidden)]
    async fn aggregate_raw(&self, org: OrgId, query: &AggregateQuery) -> Result<Aggregates, StoreError>;

    async fn create_resource(&self, org: OrgId, resource: &Resource) -> Result<(), StoreError>;
    async fn list_resources(&self, org: OrgId) -> Result<Vec<Resource>, StoreError>;
    async fn create_connector(&self, connector: &NewConnector) -> Result<(), StoreError>;
    async fn list_connectors(&self, org: OrgId) -> Result<Vec<ConnectorInfo>, StoreError>;
    /// Looks a connector up by its key's prefix, whatever its organization.
    async fn find_connector(&self, key_prefix: &str) -> Result<Option<StoredConnector>, StoreError>;
    /// Gives the connector named `name` another key, as `change` says what becomes of the old
    /// one (a key replaced before it is forgotten). Returns its id, or `None` when the
    /// organization has no such connector.
    async fn replace_connector_key(
        &self,
        org: OrgId,
        name: &str,
        key_prefix: &str,
        key_hash: &[u8],
        change: KeyReplacement,
    ) -> Result<Option<String>, StoreError>;

    // Identities (issue 6): users, access tokens, native roles.

    /// Stores a new user; a conflict when the organization has a user of
    /// that type with the same email or machine name (whatever its case).
    async fn create_user(&self, org: OrgId, user: &crate::identity::User) -> Result<(), StoreError>;
    /// The user of `org` with this email (human) or name (machine), in any case.
    async fn find_user(
        &self,
        org: OrgId,
        kind: crate::identity::UserKind,
        handle: &str,
    ) -> Result<Option<crate::identity::User>, StoreError>;
    /// The users of `org`, humans then machines, by email or name.
    async fn list_users(&self, org: OrgId) -> Result<Vec<crate::identity::User>, StoreError>;
    /// Rewrites a user's email, name, groups, external ids, disabled flag
    /// and update time, by id (its type never changes); false when `org`
    /// has no such user.
    async fn update_user(&self, org: OrgId, user: &crate::identity::User) -> Result<bool, StoreError>;
    /// Stores a token for a user of the token's organization (a conflict
    /// otherwise). Only the hash of its secret is kept.
    async fn insert_access_token(&self, token: &crate::identity::NewAccessToken) -> Result<(), StoreError>;
    /// Looks a token up by its public prefix, whatever its organization:
    /// this is how a connection is verified.
    async fn find_access_token(&self, prefix: &str) -> Result<Option<crate::identity::StoredAccessToken>, StoreError>;
    /// A user's tokens in creation order, without secrets.
    async fn list_access_tokens(
        &self,
        org: OrgId,
        user_id: &str,
    ) -> Result<Vec<crate::identity::AccessTokenInfo>, StoreError>;
    /// Revokes a token of `org`; false when there is no such live token.
    async fn revoke_access_token(&self, org: OrgId, prefix: &str, at: Micros) -> Result<bool, StoreError>;
    /// Records a token's last use (never moving it back).
    async fn touch_access_token(&self, prefix: &str, at: Micros) -> Result<(), StoreError>;
    /// Sets the native role of connections to the resource that ask for
    /// none (empty for none); false when `org` has no such resource.
    async fn set_resource_default_role(&self, org: OrgId, resource_id: &str, role: &str) -> Result<bool, StoreError>;
    /// A resource's default role and role grants.
    async fn resource_access(
        &self,
        org: OrgId,
        resource_id: &str,
    ) -> Result<Option<crate::identity::ResourceAccess>, StoreError>;
    /// Lets a user or a group use a native role on a resource; false when
    /// the grant existed. A conflict when the resource or user is not `org`'s.
    async fn grant_role(&self, org: OrgId, grant: &crate::identity::RoleGrant, at: Micros) -> Result<bool, StoreError>;
    /// Removes a grant; false when there was none.
    async fn revoke_role_grant(&self, org: OrgId, grant: &crate::identity::RoleGrant) -> Result<bool, StoreError>;

    /// Records run `run_id` of a connector (one process, start to stop), which takes over from
    /// the runs in `previous` (the earlier processes on its state directory). Their open
    /// sessions are completed at the time each run was last heard, or when it last knew itself
    /// alive if later and no later than `at` ([`PreviousRun::alive`]), never before a session's
    /// last statement ended, nor before the statement it was running started, which stays in
    /// its transcript (see [`Store::statements`]); and they stay over: heard of again (a late
    /// report through another replica), they change nothing; returns how many. Other runs of the connector (other
    /// processes sharing its key) are left alone: each holds its own lease.
    async fn connector_hello(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        previous: &[PreviousRun],
        at: Micros,
    ) -> Result<u64, StoreError>;
    /// Run `run_id` of a connector was heard at `at` (never moving the time back); a run not
    /// recorded yet is recorded (a new run is heard while it replays its predecessor's spool,
    /// before its `Hello`: that moves its own time, not its predecessor's). A run the lease
    /// sweep took for gone gets its sessions back.
    async fn connector_heartbeat(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<(), StoreError>;
    /// Run `run_id` of a connector stopped cleanly at `at`, every event it had stored: it is
    /// over, as if a successor had taken over from it (no lease, not counted as running, not
    /// revived when heard again). Sessions it left open are completed at `at`; returns how
    /// many. Said again, it changes nothing.
    async fn connector_goodbye(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<u64, StoreError>;
    /// Completes the open sessions of every connector run last heard before `heard_before`,
    /// at the time each was last heard (never before a session's last statement ended, nor
    /// before the statement it was running started, as [`Store::connector_hello`]); returns how
    /// many.
    async fn expire_connectors(&self, heard_before: Micros) -> Result<u64, StoreError>;

    /// Stores a connector's events; retried events change nothing. Returns
    /// how many were new. The runs of the sessions starting are recorded if they were not, at
    /// their latest start, so that every session reported has a lease.
    async fn ingest(&self, org: OrgId, connector_id: &str, events: &[IngestEvent]) -> Result<u64, StoreError>;
    /// A session's statements in the order they started; an open session's last may be the one it is running, as
    /// its connector announced it (with no duration, rows or outcome yet). So may the last of a
    /// session the lease sweep or its connector's next run completed: the statement it was
    /// running when its connector was lost, lasting until the session's end, its rows and
    /// outcome lost too. Its report, replayed late, replaces it.
    async fn statements(&self, org: OrgId, session_id: &str) -> Result<Vec<StatementRecord>, StoreError> {
        self.statements_page(org, session_id, StatementsPage::ALL).await
    }
    /// The `page` of [`Store::statements`], read without those before it: a page of a long
    /// session costs what the page holds.
    async fn statements_page(
        &self,
        org: OrgId,
        session_id: &str,
        page: StatementsPage,
    ) -> Result<Vec<StatementRecord>, StoreError>;
    /// Stores `termination` unless its session already has one created at or
    /// after `pending_since`: that one is returned instead, and nothing is
    /// stored. Returns the termination that stands. Callers asking at once,
    /// through different replicas too, all get the same one.
    async fn create_termination(
        &self,
        org: OrgId,
        termination: &TerminationRecord,
        pending_since: Micros,
    ) -> Result<TerminationRecord, StoreError>;
    /// Terminations since `since` of `connector_id` whose sessions are still open, or were
    /// ended by the lease of a run that lapsed (and no later run took over): one may be live
    /// still behind a partition, and gets its termination when the run is heard again.
    async fn pending_terminations(
        &self,
        org: OrgId,
        connector_id: &str,
        since: Micros,
    ) -> Result<Vec<TerminationRecord>, StoreError>;
    /// Whether the completed session `session_id` may yet resume: the lease ended it when its
    /// connector's run fell silent, and that run may be heard again. A termination asked of
    /// it is recorded, and carried out if it does.
    async fn session_may_resume(&self, org: OrgId, session_id: &str) -> Result<bool, StoreError>;

    /// Retention: deletes the completed sessions of every organization that
    /// ended before `before`, with their statements and many-valued fields,
    /// `batch` sessions per transaction (oldest end first), so that each
    /// transaction stays short. Active sessions are never deleted, however
    /// old. Returns how many sessions were deleted.
    async fn delete_completed_before(&self, before: Micros, batch: usize) -> Result<u64, StoreError>;

    // Replicas and readiness (issue 4).

    /// Terminations stored through any replica sharing this store, for a
    /// store that several processes share; `None` when this process is the
    /// only one that can store terminations (SQLite). Call it once: each call
    /// starts its own feed.
    fn termination_feed(&self) -> Option<TerminationFeed> {
        None
    }

    /// Succeeds when the store answers a trivial query; the caller bounds it
    /// with a timeout. For readiness checks, so it must stay cheap.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Gathers the query planner's statistics on the tables that changed
    /// much since they were last gathered, as PostgreSQL's autovacuum would:
    /// where it is off, a planner that thinks the sessions table empty picks
    /// plans that take seconds instead of milliseconds. Returns how many
    /// tables were analyzed (0 where the store needs none, or while another
    /// replica is at it).
    async fn refresh_statistics(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}
