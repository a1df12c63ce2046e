//! `gatehouse users`: people and machines, their groups and access tokens,
//! directly in the store; and the role grants of `gatehouse resources`.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use gatehouse_core::OrgId;
use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_server::identity::{self, NewUser};
use gatehouse_store::identity::{Principal, RoleGrant, User, UserKind};
use gatehouse_store::{Resource, Store};

use super::{UsageError, existing_org, open_existing_store, open_store, public_prefix, usage_if_invalid};
use crate::cli::{GrantTarget, ListFormat, TokenCommand, UsersCommand};
use crate::output::Fit::{Cut, List, Whole};
use crate::output::{self, Table};

pub async fn run(command: UsersCommand) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Create { org, email, name, machine, groups, external_ids, store } => {
            let store = open_store(&store).await?;
            let org = super::ensure_org(store.as_ref(), &org).await?;
            let new = match (email, machine) {
                (Some(email), None) => NewUser {
                    kind: UserKind::Human,
                    email,
                    name: name.unwrap_or_default(),
                    groups,
                    external_ids,
                    disabled: false,
                },
                (None, Some(_)) if name.is_some() => {
                    return Err(UsageError(
                        "--name is a person's display name; a machine is named by --machine alone".to_owned(),
                    )
                    .into());
                }
                (None, Some(machine)) => NewUser {
                    kind: UserKind::Machine,
                    email: String::new(),
                    name: machine,
                    groups,
                    external_ids,
                    disabled: false,
                },
                // clap requires exactly one of them.
                _ => bail!("give either --email or --machine"),
            };
            let user = identity::create_user(store.as_ref(), org.id, new).await.map_err(usage_if_invalid)?;
            note!("Created {} user {} in organization {:?}.", user.kind, user.handle(), org.name);
            say!("{}", user.id);
        }
        UsersCommand::List { org, output, store } => {
            let store = open_existing_store(&store).await?;
            let org = existing_org(store.as_ref(), &org).await?;
            let mut table = Table::new(&[
                ("ID", Whole),
                ("TYPE", Whole),
                // Whole: the other `users` commands take it.
                ("USER", Whole),
                ("NAME", Cut),
                ("GROUPS", List),
                ("EXTERNAL IDS", List),
                ("STATUS", Whole),
                ("CREATED", Whole),
                ("UPDATED", Whole),
            ])
            .in_format(output);
            for u in store.list_users(org).await? {
                let name = if u.kind == UserKind::Human { dash(&u.name) } else { "-".into() };
                table.row(vec![
                    u.id.clone(),
                    u.kind.to_string(),
                    u.handle().to_owned(),
                    name,
                    output::list(&u.groups),
                    output::list(&u.external_ids),
                    if u.disabled { "disabled" } else { "enabled" }.into(),
                    format_rfc3339(u.created),
                    format_rfc3339(u.updated),
                ]);
            }
            table.print()?;
        }
        UsersCommand::Update {
            user,
            org,
            name,
            add_groups,
            remove_groups,
            add_external_ids,
            remove_external_ids,
            enable,
            disable,
            store,
        } => {
            let both = |add: &[String], remove: &[String]| add.iter().find(|a| remove.contains(a)).cloned();
            if let Some(x) = both(&add_groups, &remove_groups).or_else(|| both(&add_external_ids, &remove_external_ids))
            {
                return Err(UsageError(format!("{x:?} is both added and removed: name it once")).into());
            }
            let store = open_existing_store(&store).await?;
            let org = existing_org(store.as_ref(), &org).await?;
            let mut u = existing_user(store.as_ref(), org, &user).await?;
            if let Some(name) = name {
                if u.kind == UserKind::Machine {
                    return Err(UsageError(
                        "a machine's name is how it connects and cannot change; create another machine".to_owned(),
                    )
                    .into());
                }
                u.name = name;
            }
            // A mistyped name to remove would otherwise leave the user as they were, unremarked.
            let absent = |removed: &[String], held: &[String]| removed.iter().find(|r| !held.contains(r)).cloned();
            if let Some(group) = absent(&remove_groups, &u.groups) {
                note!("{} is not in group {group:?}: nothing to remove.", u.handle());
            }
            if let Some(id) = absent(&remove_external_ids, &u.external_ids) {
                note!("{} has no external id {id:?}: nothing to remove.", u.handle());
            }
            u.groups.retain(|g| !remove_groups.contains(g));
            u.groups.extend(add_groups);
            u.external_ids.retain(|id| !remove_external_ids.contains(id));
            u.external_ids.extend(add_external_ids);
            if enable || disable {
                u.disabled = disable;
            }
            let u = identity::update_user(store.as_ref(), org, u).await.map_err(usage_if_invalid)?;
            note!(
                "Updated {}: name {:?}, groups [{}], {}.",
                u.handle(),
                u.name,
                u.groups.join(", "),
                if u.disabled { "disabled" } else { "enabled" }
            );
        }
        UsersCommand::Disable { user, org, store } => {
            let store = open_existing_store(&store).await?;
            let org = existing_org(store.as_ref(), &org).await?;
            let u = existing_user(store.as_ref(), org, &user).await?;
            if u.disabled {
                note!("{} is disabled already.", u.handle());
            } else {
                let u = identity::update_user(store.as_ref(), org, User { disabled: true, ..u }).await?;
                note!("Disabled {}: connectors refuse it within {} s.", u.handle(), identity::CACHE_SECONDS);
            }
        }
        UsersCommand::Token(command) => token(command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { user, org, ttl, name, store } => {
            output::ensure_stdout_open("token")?;
            let store = open_existing_store(&store).await?;
            let org_name = org;
            let org = existing_org(store.as_ref(), &org_name).await?;
            let u = existing_user(store.as_ref(), org, &user).await?;
            if u.disabled {
                note!("warning: {} is disabled: the token works only once the user is enabled", u.handle());
            }
            let created =
                identity::create_access_token(store.as_ref(), org, &u, ttl, &name).await.map_err(usage_if_invalid)?;
            note!(
                "Created token {} for {}, valid until {}. It is shown only this once:",
                created.prefix,
                u.handle(),
                format_rfc3339(created.expires)
            );
            let undo = format!("revoke it with `gatehouse users token revoke {} --org {org_name}`", created.prefix);
            output::print_secret("token", &created.token, &undo)?;
            note!("expires: {}", format_rfc3339(created.expires));
        }
        TokenCommand::List { user, org, output, store } => {
            let store = open_existing_store(&store).await?;
            let org = existing_org(store.as_ref(), &org).await?;
            let u = existing_user(store.as_ref(), org, &user).await?;
            let now = now_micros();
            let mut table = Table::new(&[
                ("PREFIX", Whole),
                ("NAME", Cut),
                ("CREATED", Whole),
                ("EXPIRES", Whole),
                ("LAST USED", Whole),
                ("STATUS", Whole),
            ])
            .in_format(output);
            for t in store.list_access_tokens(org, &u.id).await? {
                let status = match t.revoked {
                    Some(at) => format!("revoked {}", format_rfc3339(at)),
                    None if t.expires <= now => "expired".into(),
                    // Kept for when the user is enabled again, but no login takes it now.
                    None if u.disabled => "unusable: user disabled".into(),
                    None => "active".into(),
                };
                table.row(vec![
                    t.prefix,
                    dash(&t.name),
                    format_rfc3339(t.created),
                    format_rfc3339(t.expires),
                    t.last_used.map(format_rfc3339).unwrap_or_else(|| "-".into()),
                    status,
                ]);
            }
            table.print()?;
        }
        TokenCommand::Revoke { prefix, org, store } => {
            let prefix = public_prefix(&prefix);
            let store = open_existing_store(&store).await?;
            let org_id = existing_org(store.as_ref(), &org).await?;
            if !store.revoke_access_token(org_id, prefix, now_micros()).await? {
                // One that works no more is no mistake to revoke again: said, as `connectors revoke`.
                match store.find_access_token(prefix).await?.filter(|t| t.org == org_id) {
                    Some(t) if t.revoked.is_some() => {
                        let at = t.revoked.map(format_rfc3339).unwrap_or_default();
                        note!("Token {prefix} was revoked already, at {at}.");
                    }
                    Some(t) => note!("Token {prefix} expired at {}: it works no more.", format_rfc3339(t.expires)),
                    None => bail!("no token with prefix {prefix:?} in organization {org:?}"),
                }
                return Ok(());
            }
            note!("Revoked token {prefix}: connectors refuse it within {} s.", identity::CACHE_SECONDS);
        }
    }
    Ok(())
}

/// `resources grant` and `resources revoke-grant`.
pub async fn grant(
    store: &dyn Store,
    org: &str,
    resource: &str,
    role: &str,
    to: GrantTarget,
    revoke: bool,
) -> anyhow::Result<()> {
    let org = existing_org(store, org).await?;
    let resource = existing_resource(store, org, resource).await?;
    identity::check_role(role).map_err(usage_if_invalid)?;
    let (principal, label) = match (to.user, to.group) {
        (Some(handle), None) => {
            let u = existing_user(store, org, &handle).await?;
            (Principal::User(u.id.clone()), format!("user {}", u.handle()))
        }
        (None, Some(group)) => {
            identity::check_group(&group).map_err(usage_if_invalid)?;
            (Principal::Group(group.clone()), format!("group {group}"))
        }
        // clap requires exactly one of them.
        _ => bail!("give either --user or --group"),
    };
    let grant = RoleGrant { resource_id: resource.id.clone(), principal, role: role.to_owned() };
    if revoke {
        if !store.revoke_role_grant(org, &grant).await? {
            bail!("{label} has no grant of role {role:?} on {}", resource.name);
        }
        note!("Revoked role {role} on {} from {label}.", resource.name);
    } else if store.grant_role(org, &grant, now_micros()).await? {
        note!("Granted role {role} on {} to {label}.", resource.name);
    } else {
        note!("{label} has role {role} on {} already.", resource.name);
    }
    Ok(())
}

/// Prints who may log in as which role: the default role of each resource (or of
/// `resource`), then its grants, to users by their email or name and to groups.
pub async fn print_grants(
    store: &dyn Store,
    org: &str,
    resource: Option<&str>,
    output: ListFormat,
) -> anyhow::Result<()> {
    let org = existing_org(store, org).await?;
    let resources = match resource {
        Some(resource) => vec![existing_resource(store, org, resource).await?],
        None => store.list_resources(org).await?,
    };
    let users: HashMap<String, User> = store.list_users(org).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
    // KIND and WHO apart, so that `--output jsonl` can be filtered on either.
    let mut table =
        Table::new(&[("RESOURCE", Cut), ("ROLE", Cut), ("KIND", Whole), ("WHO", Cut), ("NOTE", Cut)]).in_format(output);
    for r in resources {
        let Some(access) = store.resource_access(org, &r.id).await? else { continue };
        let mut row = |role: &str, kind: &str, who: &str, note: &str| {
            table.row(vec![r.name.clone(), role.to_owned(), kind.to_owned(), who.to_owned(), note.to_owned()]);
        };
        if access.default_role.is_empty() && access.grants.is_empty() {
            row("", "none", "nobody", "no default role, no grants");
        }
        if !access.default_role.is_empty() {
            row(&access.default_role, "default", "everyone", "");
        }
        for grant in &access.grants {
            match &grant.principal {
                Principal::User(id) => match users.get(id) {
                    Some(u) => row(&grant.role, u.kind.as_str(), u.handle(), if u.disabled { "disabled" } else { "" }),
                    None => row(&grant.role, "user", id, "no such user"),
                },
                Principal::Group(group) => {
                    // A group is only a name users carry: a misspelt one gives nobody anything.
                    let members = users.values().filter(|u| u.groups.contains(group)).count();
                    let note = match members {
                        0 => "no members".to_owned(),
                        1 => "1 member".to_owned(),
                        n => format!("{n} members"),
                    };
                    row(&grant.role, "group", group, &note)
                }
            }
        }
    }
    table.print()?;
    Ok(())
}

pub(super) async fn existing_user(store: &dyn Store, org: OrgId, handle: &str) -> anyhow::Result<User> {
    identity::find_user(store, org, handle).await?.with_context(|| {
        format!("no user {handle:?}: name a human by email or a machine by name (see `gatehouse users list`)")
    })
}

/// A resource by name or id.
pub(super) async fn existing_resource(store: &dyn Store, org: OrgId, name_or_id: &str) -> anyhow::Result<Resource> {
    store
        .list_resources(org)
        .await?
        .into_iter()
        .find(|r| r.name == name_or_id || r.id == name_or_id)
        .with_context(|| format!("no resource {name_or_id:?} (see `gatehouse resources list`)"))
}

fn dash(text: &str) -> String {
    if text.is_empty() { "-".into() } else { text.to_owned() }
}
