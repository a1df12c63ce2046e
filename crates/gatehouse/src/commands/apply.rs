//! `gatehouse apply -f FILE`: users, default roles and grants from a
//! declarative YAML file, applied idempotently.
//!
//! ```yaml
//! users:
//!   - email: alice@example.com
//!     name: Alice
//!     groups: [dba, sre]
//!     external_ids: ["okta|00u1"]
//!   - machine: etl-nightly
//!     groups: [etl]
//!     disabled: false
//! resources:
//!   - name: orders-db
//!     default_role: app_ro
//!     grants:
//!       - { role: app_rw, group: dba }
//!       - { role: admin, user: alice@example.com }
//! ```
//!
//! A field left out is left alone; a list given (groups, external ids,
//! grants) is made exactly so. Users and resources the file does not name are
//! kept: removing a line never deletes anyone. Resources must exist already
//! (`gatehouse resources create`), since they need an address.
//!
//! The whole file is checked and planned before anything is written, so a
//! mistake anywhere changes nothing; the plan is printed one change a line
//! (`+` created, `~` changed, `-` removed), and nothing when all is applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;

use anyhow::{Context, bail};
use gatehouse_core::OrgId;
use gatehouse_core::time::now_micros;
use gatehouse_server::identity::{self, NewUser};
use gatehouse_store::Store;
use gatehouse_store::identity::{Principal, RoleGrant, User, UserKind, user_lookup};
use serde::Deserialize;

use super::{UsageError, ensure_org, open_store, open_store_as_is, refuse_mistyped_org, usage_if_invalid};
use crate::cli::ApplyArgs;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of `users:` and `resources:` lists at the top level")]
struct Spec {
    #[serde(default)]
    users: Vec<UserSpec>,
    #[serde(default)]
    resources: Vec<ResourceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    email: Option<String>,
    machine: Option<String>,
    /// Humans only: a machine's name is its `machine`.
    name: Option<String>,
    groups: Option<Vec<String>>,
    external_ids: Option<Vec<String>>,
    disabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSpec {
    /// A resource's name (or id).
    name: String,
    /// Empty removes the default.
    default_role: Option<String>,
    grants: Option<Vec<GrantSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantSpec {
    role: String,
    user: Option<String>,
    group: Option<String>,
}

/// Who a grant is for, as the file names them: users by handle, so that a
/// grant may name a user the same file creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    User(UserKind, String),
    Group(String),
    /// A stored grant to a user id that no listed user has.
    UserId(String),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::User(_, handle) => write!(f, "user {handle}"),
            Who::Group(group) => write!(f, "group {group}"),
            Who::UserId(id) => write!(f, "user {id}"),
        }
    }
}

/// One change, in the order it is applied.
#[derive(Debug)]
enum Change {
    CreateUser(NewUser),
    UpdateUser(User),
    DefaultRole { resource_id: String, role: String },
    Grant { resource_id: String, who: Who, role: String },
    Revoke { resource_id: String, who: Who, role: String },
}

/// Larger than any organization's users and grants; a bound so that a wrong file (a device, a
/// dump) is refused rather than read whole.
const MAX_SPEC_BYTES: u64 = 64 * 1024 * 1024;

/// How messages name the file: `-` is standard input.
fn source_name(path: &std::path::Path) -> String {
    match path.to_str() {
        Some("-") => "standard input".to_owned(),
        _ => path.display().to_string(),
    }
}

/// The file's text, or standard input's for `-`.
fn read_spec(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let source: Box<dyn std::io::Read> = match path.to_str() {
        Some("-") => Box::new(std::io::stdin().lock()),
        _ => Box::new(std::fs::File::open(path)?),
    };
    let mut text = String::new();
    source.take(MAX_SPEC_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SPEC_BYTES {
        anyhow::bail!("it is larger than {} MiB", MAX_SPEC_BYTES >> 20);
    }
    Ok(text)
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let source = source_name(&args.file);
    let text = read_spec(&args.file).with_context(|| format!("cannot read {source}"))?;
    let spec = parse_spec(&text).map_err(|e| mistake(format!("the YAML from {source} is not valid: {e}")))?;
    let store = match args.dry_run {
        true => open_store_as_is(&args.store).await?,
        false => open_store(&args.store).await?,
    };
    // A new organization has nothing yet. Applying creates it, as `users create` does, but
    // only once the whole file is planned: a file that cannot be applied (a resource it does
    // not have, an invalid email) leaves no empty organization behind, nor does a dry run.
    let org = store.find_org(&args.org).await?.map(|org| org.id);
    if org.is_none() {
        refuse_mistyped_org(store.as_ref(), &args.org).await?;
        if args.dry_run {
            note!("Organization {:?} does not exist yet: applying creates it.", args.org);
        }
    }
    let Plan { changes: plan, kept } = plan(store.as_ref(), org, &spec).await?;
    for (line, _) in &plan {
        say!("{line}");
    }
    if !kept.is_empty() {
        note!(
            "Not in {source}, so kept as they are, enabled: {} (to stop one, set `disabled: true` for it \
             or run `gatehouse users disable`).",
            kept.join(", ")
        );
    }
    if args.dry_run {
        note!("Dry run: {} change(s) planned, nothing applied.", plan.len());
        return Ok(ExitCode::SUCCESS);
    }
    let count = plan.len();
    let org = match org {
        Some(org) => org,
        None if count == 0 => {
            note!(
                "Nothing to change: {source} names nothing to create, so organization {:?} was not created.",
                args.org
            );
            return Ok(ExitCode::SUCCESS);
        }
        None => ensure_org(store.as_ref(), &args.org).await?.id,
    };
    // Change by change: one the store refuses midway (a user created meanwhile by another
    // command) leaves those before it applied, which the file applied again keeps.
    for (done, (line, change)) in plan.into_iter().enumerate() {
        apply(store.as_ref(), org, change).await.with_context(|| {
            format!(
                "while applying `{line}` ({done} of the {count} changes were applied before it: fix what \
                 stopped it and apply {source} again, which applies the rest)"
            )
        })?;
    }
    if count == 0 {
        note!("Nothing to change: {source} is applied.");
    } else {
        note!("Applied {count} change(s).");
    }
    Ok(ExitCode::SUCCESS)
}

/// The file's `Spec`. Its syntax is checked first, as a whole: serde reads the document while
/// it parses it, so a shape it does not expect (`[unclosed` opens a list) would be reported
/// before the syntax error after it, with neither its line nor what is wrong there.
fn parse_spec(text: &str) -> Result<Spec, serde_yaml_ng::Error> {
    serde_yaml_ng::from_str::<serde::de::IgnoredAny>(text)?;
    serde_yaml_ng::from_str(text)
}

/// What applying a file does.
struct Plan {
    /// Each change with its line of output, in the order they are applied.
    changes: Vec<(String, Change)>,
    /// Enabled users the file does not name, when it names any: left as they are.
    kept: Vec<String>,
}

/// Checks the file against the store and lists the changes it needs.
async fn plan(store: &dyn Store, org: Option<OrgId>, spec: &Spec) -> anyhow::Result<Plan> {
    let users = match org {
        Some(org) => store.list_users(org).await?,
        None => Vec::new(),
    };
    let by_handle: HashMap<(UserKind, String), &User> =
        users.iter().map(|u| ((u.kind, user_lookup(u.handle())), u)).collect();
    let by_id: HashMap<&str, &User> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut changes = Vec::new();
    // Users the file names, existing or to be created.
    let mut named: BTreeSet<(UserKind, String)> = BTreeSet::new();

    for (i, spec) in spec.users.iter().enumerate() {
        let (kind, handle) = match (&spec.email, &spec.machine) {
            (Some(email), None) => (UserKind::Human, email.trim().to_owned()),
            (None, Some(machine)) => {
                if spec.name.is_some() {
                    return Err(mistake(format!("users[{i}]: a machine has no `name` besides `machine`")));
                }
                (UserKind::Machine, machine.trim().to_owned())
            }
            _ => return Err(mistake(format!("users[{i}]: give exactly one of `email` (a person) or `machine`"))),
        };
        let key = (kind, user_lookup(&handle));
        if !named.insert(key.clone()) {
            return Err(mistake(format!("users[{i}]: {kind} user {handle} appears twice")));
        }
        let groups = spec.groups.clone().map(identity::normalized);
        let external_ids = spec.external_ids.clone().map(identity::normalized);
        match by_handle.get(&key) {
            None => {
                let new = NewUser {
                    kind,
                    email: if kind == UserKind::Human { handle.clone() } else { String::new() },
                    name: if kind == UserKind::Human { spec.name.clone().unwrap_or_default() } else { handle.clone() },
                    groups: groups.unwrap_or_default(),
                    external_ids: external_ids.unwrap_or_default(),
                    disabled: spec.disabled.unwrap_or(false),
                };
                check_new_user(&new).map_err(usage_if_invalid).with_context(|| format!("users[{i}]"))?;
                let mut details = Vec::new();
                if kind == UserKind::Human && !new.name.is_empty() {
                    details.push(format!("name {:?}", new.name));
                }
                if !new.groups.is_empty() {
                    details.push(format!("groups {}", new.groups.join(", ")));
                }
                if !new.external_ids.is_empty() {
                    details.push(format!("external ids {}", new.external_ids.join(", ")));
                }
                if new.disabled {
                    details.push("disabled".to_owned());
                }
                let line = match details.is_empty() {
                    true => format!("+ user {handle}"),
                    false => format!("+ user {handle} ({})", details.join("; ")),
                };
                changes.push((line, Change::CreateUser(new)));
            }
            Some(current) => {
                let mut wanted = (*current).clone();
                let mut diffs = Vec::new();
                if let Some(name) = &spec.name
                    && name.trim() != current.name
                {
                    diffs.push(format!("name {:?} -> {:?}", current.name, name.trim()));
                    wanted.name = name.trim().to_owned();
                }
                if let Some(groups) = groups {
                    if let Some(diff) = list_diff("groups", &current.groups, &groups) {
                        diffs.push(diff);
                    }
                    wanted.groups = groups;
                }
                if let Some(ids) = external_ids {
                    if let Some(diff) = list_diff("external ids", &current.external_ids, &ids) {
                        diffs.push(diff);
                    }
                    wanted.external_ids = ids;
                }
                if let Some(disabled) = spec.disabled
                    && disabled != current.disabled
                {
                    diffs.push(if disabled { "disabled".into() } else { "enabled".into() });
                    wanted.disabled = disabled;
                }
                if !diffs.is_empty() {
                    identity::check_user(&wanted).map_err(usage_if_invalid).with_context(|| format!("users[{i}]"))?;
                    changes.push((
                        format!("~ user {}: {}", current.handle(), diffs.join(", ")),
                        Change::UpdateUser(wanted),
                    ));
                }
            }
        }
    }

    // A file that lists users is easily taken for the whole list: those it leaves out keep
    // their access, which whoever deleted their line should hear.
    let kept = match spec.users.is_empty() {
        true => Vec::new(),
        false => users
            .iter()
            .filter(|u| !u.disabled && !named.contains(&(u.kind, user_lookup(u.handle()))))
            .map(|u| u.handle().to_owned())
            .collect(),
    };

    let resources = match org {
        Some(org) => store.list_resources(org).await?,
        None => Vec::new(),
    };
    let mut seen = BTreeSet::new();
    for (i, spec) in spec.resources.iter().enumerate() {
        let resource = resources.iter().find(|r| r.name == spec.name || r.id == spec.name).ok_or_else(|| {
            mistake(format!(
                "resources[{i}]: no resource {:?}: create it first with `gatehouse resources create`",
                spec.name
            ))
        })?;
        if !seen.insert(resource.id.clone()) {
            return Err(mistake(format!("resources[{i}]: {} appears twice", resource.name)));
        }
        let org = org.context("no organization")?;
        let access = store
            .resource_access(org, &resource.id)
            .await?
            .with_context(|| format!("resource {} vanished", resource.name))?;
        if let Some(role) = &spec.default_role
            && *role != access.default_role
        {
            if !role.is_empty() {
                identity::check_role(role)
                    .map_err(usage_if_invalid)
                    .with_context(|| format!("resources[{i}].default_role"))?;
            }
            let line = match (access.default_role.as_str(), role.as_str()) {
                ("", new) => format!("~ resource {}: default role {new}", resource.name),
                (old, "") => format!("~ resource {}: no default role (was {old})", resource.name),
                (old, new) => format!("~ resource {}: default role {old} -> {new}", resource.name),
            };
            changes.push((line, Change::DefaultRole { resource_id: resource.id.clone(), role: role.clone() }));
        }
        let Some(grants) = &spec.grants else { continue };
        let mut wanted: BTreeMap<(Who, String), ()> = BTreeMap::new();
        for (j, g) in grants.iter().enumerate() {
            identity::check_role(&g.role)
                .map_err(usage_if_invalid)
                .with_context(|| format!("resources[{i}].grants[{j}]"))?;
            let who = match (&g.user, &g.group) {
                (Some(handle), None) => {
                    let kind = identity::kind_of_handle(handle);
                    let key = (kind, user_lookup(handle));
                    let Some(handle) = by_handle
                        .get(&key)
                        .map(|u| u.handle().to_owned())
                        .or_else(|| named.contains(&key).then(|| handle.trim().to_owned()))
                    else {
                        return Err(mistake(format!(
                            "resources[{i}].grants[{j}]: no user {handle:?} in the store or the file"
                        )));
                    };
                    Who::User(kind, handle)
                }
                (None, Some(group)) => {
                    identity::check_group(group)
                        .map_err(usage_if_invalid)
                        .with_context(|| format!("resources[{i}].grants[{j}]"))?;
                    Who::Group(group.clone())
                }
                _ => return Err(mistake(format!("resources[{i}].grants[{j}]: give exactly one of `user` or `group`"))),
            };
            wanted.insert((who, g.role.clone()), ());
        }
        let current: BTreeMap<(Who, String), ()> = access
            .grants
            .iter()
            .map(|g| {
                let who = match &g.principal {
                    Principal::User(id) => match by_id.get(id.as_str()) {
                        Some(u) => Who::User(u.kind, u.handle().to_owned()),
                        // Never equal to a wanted grant, so removed.
                        None => Who::UserId(id.clone()),
                    },
                    Principal::Group(group) => Who::Group(group.clone()),
                };
                ((who, g.role.clone()), ())
            })
            .collect();
        let fold = |(who, role): &(Who, String)| match who {
            Who::User(kind, handle) => (Who::User(*kind, user_lookup(handle)), role.clone()),
            Who::Group(_) | Who::UserId(_) => (who.clone(), role.clone()),
        };
        let current_keys: BTreeSet<_> = current.keys().map(fold).collect();
        let wanted_keys: BTreeSet<_> = wanted.keys().map(fold).collect();
        for key in current.keys().filter(|k| !wanted_keys.contains(&fold(k))) {
            let (who, role) = key.clone();
            let line = format!("- grant {}: {role} to {who}", resource.name);
            changes.push((line, Change::Revoke { resource_id: resource.id.clone(), who, role }));
        }
        for key in wanted.keys().filter(|k| !current_keys.contains(&fold(k))) {
            let (who, role) = key.clone();
            let line = format!("+ grant {}: {role} to {who}", resource.name);
            changes.push((line, Change::Grant { resource_id: resource.id.clone(), who, role }));
        }
    }
    Ok(Plan { changes, kept })
}

/// A mistake in the file (a user named twice, a resource it does not have): exits 2, as an
/// invalid value on the command line does, and as the identity checks' refusals do
/// ([`usage_if_invalid`]).
fn mistake(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// The checks `create_user` makes, before anything is written.
fn check_new_user(new: &NewUser) -> Result<(), identity::IdentityError> {
    let user = User {
        id: String::new(),
        kind: new.kind,
        email: new.email.clone(),
        name: new.name.clone(),
        groups: new.groups.clone(),
        external_ids: new.external_ids.clone(),
        disabled: new.disabled,
        created: 0,
        updated: 0,
    };
    identity::check_user(&user)
}

/// `groups +dba -eng`, or `None` when the lists hold the same values.
fn list_diff(what: &str, current: &[String], wanted: &[String]) -> Option<String> {
    let current: BTreeSet<&String> = current.iter().collect();
    let wanted: BTreeSet<&String> = wanted.iter().collect();
    let mut parts: Vec<String> = wanted.difference(&current).map(|v| format!("+{v}")).collect();
    parts.extend(current.difference(&wanted).map(|v| format!("-{v}")));
    (!parts.is_empty()).then(|| format!("{what} {}", parts.join(" ")))
}

async fn apply(store: &dyn Store, org: OrgId, change: Change) -> anyhow::Result<()> {
    match change {
        Change::CreateUser(new) => {
            identity::create_user(store, org, new).await?;
        }
        Change::UpdateUser(user) => {
            identity::update_user(store, org, user).await?;
        }
        Change::DefaultRole { resource_id, role } => {
            if !store.set_resource_default_role(org, &resource_id, &role).await? {
                bail!("resource {resource_id} vanished");
            }
        }
        Change::Grant { resource_id, who, role } => {
            let principal = principal(store, org, who).await?;
            store.grant_role(org, &RoleGrant { resource_id, principal, role }, now_micros()).await?;
        }
        Change::Revoke { resource_id, who, role } => {
            let principal = principal(store, org, who).await?;
            store.revoke_role_grant(org, &RoleGrant { resource_id, principal, role }).await?;
        }
    }
    Ok(())
}

async fn principal(store: &dyn Store, org: OrgId, who: Who) -> anyhow::Result<Principal> {
    Ok(match who {
        Who::User(kind, handle) => {
            let user = store.find_user(org, kind, &handle).await?.with_context(|| format!("no user {handle:?}"))?;
            Principal::User(user.id)
        }
        Who::Group(group) => Principal::Group(group),
        Who::UserId(id) => Principal::User(id),
    })
}
