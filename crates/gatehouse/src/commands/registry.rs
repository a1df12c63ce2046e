//! `gatehouse resources` and `gatehouse connectors`: the registry.

use std::process::ExitCode;

use anyhow::Context;
use gatehouse_core::OrgId;
use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_server::registry::{CreatedConnector, create_connector, create_resource, replace_connector_key};
use gatehouse_store::{ConnectorInfo, KeyReplacement, Store};

use super::{existing_org, open_existing_store, open_store};
use crate::address::HostPort;
use crate::cli::{ConnectorsCommand, ResourcesCommand};
use crate::output::Fit::{Count, Cut, Whole};
use crate::output::{self, Table};

pub async fn resources(command: ResourcesCommand) -> anyhow::Result<ExitCode> {
    match command {
        ResourcesCommand::Create { org, name, host, port, technology, default_role, store } => {
            if let Some(role) = &default_role {
                gatehouse_server::identity::check_role(role).map_err(super::usage_if_invalid)?;
            }
            let store = open_store(&store).await?;
            let org = super::ensure_org(store.as_ref(), &org).await?;
            let resource = create_resource(store.as_ref(), org.id, &name, &technology, &host, port).await?;
            if let Some(role) = &default_role {
                store.set_resource_default_role(org.id, &resource.id, role).await?;
            }
            note!("Registered {technology} resource {name:?} at {}.", HostPort { host, port });
            say!("{}", resource.id);
        }
        ResourcesCommand::List { org, output, store } => {
            let store = open_existing_store(&store).await?;
            let org = super::existing_org_named(store.as_ref(), &org).await?;
            let mut table = Table::new(&[
                ("ID", Whole),
                ("NAME", Cut),
                ("TECHNOLOGY", Whole),
                ("ADDRESS", Cut),
                ("DEFAULT ROLE", Cut),
                ("GRANTS", Count),
                ("CREATED", Whole),
            ])
            .in_format(output);
            for r in store.list_resources(org.id).await? {
                let access = store.resource_access(org.id, &r.id).await?;
                let default_role = access.as_ref().map(|a| a.default_role.clone()).filter(|d| !d.is_empty());
                table.row(vec![
                    r.id,
                    r.name,
                    r.technology,
                    HostPort { host: r.host, port: r.port }.to_string(),
                    default_role.unwrap_or_else(|| "-".into()),
                    access.map_or(0, |a| a.grants.len()).to_string(),
                    format_rfc3339(r.created),
                ]);
            }
            table.print()?;
        }
        ResourcesCommand::Grants { resource, org, output, store } => {
            let store = open_existing_store(&store).await?;
            super::users::print_grants(store.as_ref(), &org, resource.as_deref(), output).await?;
        }
        ResourcesCommand::Grant { resource, org, role, to, store } => {
            let store = open_existing_store(&store).await?;
            super::users::grant(store.as_ref(), &org, &resource, &role, to, false).await?;
        }
        ResourcesCommand::RevokeGrant { resource, org, role, to, store } => {
            let store = open_existing_store(&store).await?;
            super::users::grant(store.as_ref(), &org, &resource, &role, to, true).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn connectors(command: ConnectorsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectorsCommand::Create { org, name, store } => {
            output::ensure_stdout_open("connector key")?;
            let store = open_store(&store).await?;
            let org = super::ensure_org(store.as_ref(), &org).await?;
            let created = create_connector(store.as_ref(), org.id, &name).await?;
            note!("Registered connector {name:?} ({}). Its key, shown only this once:", created.id);
            let undo = format!("give it another with `gatehouse connectors rotate-key {name} --org {}`", org.name);
            output::print_secret("connector key", &created.key, &undo)?;
        }
        ConnectorsCommand::List { org, output, store } => {
            let store = open_existing_store(&store).await?;
            let org = super::existing_org_named(store.as_ref(), &org).await?;
            let mut table = Table::new(&[
                ("ID", Whole),
                // Whole: `rotate-key` and `revoke` take the name.
                ("NAME", Whole),
                ("KEY PREFIX", Whole),
                ("OLD KEY PREFIX", Whole),
                ("OLD KEY UNTIL", Whole),
                ("REVOKED", Whole),
                ("CREATED", Whole),
                ("LAST HEARD", Whole),
                ("PROCESSES", Count),
            ])
            .in_format(output);
            let now = now_micros();
            for c in store.list_connectors(org.id).await? {
                let heard = c.last_heard.map(format_rfc3339).unwrap_or_else(|| "-".into());
                // A rotation's old key while it works on (`--overlap`).
                let (old_prefix, old_until) = match (c.old_key_prefix, c.old_key_until) {
                    (Some(prefix), Some(until)) if until > now => (prefix, format_rfc3339(until)),
                    _ => ("-".into(), "-".into()),
                };
                // A revoked connector's key is one nobody holds: no prefix to look for.
                let key_prefix = if c.revoked.is_some() { "-".to_owned() } else { c.key_prefix };
                table.row(vec![
                    c.id,
                    c.name,
                    key_prefix,
                    old_prefix,
                    old_until,
                    c.revoked.map(format_rfc3339).unwrap_or_else(|| "-".into()),
                    format_rfc3339(c.created),
                    heard,
                    c.running.to_string(),
                ]);
            }
            table.print()?;
        }
        ConnectorsCommand::RotateKey { name: given, org, overlap, store } => {
            output::ensure_stdout_open("connector key")?;
            let until = overlap.map(|overlap| now_micros().saturating_add(overlap.as_micros() as i64));
            let change = until.map_or(KeyReplacement::Rotate, |until| KeyReplacement::Overlap { until });
            let store = open_existing_store(&store).await?;
            let org_id = existing_org(store.as_ref(), &org).await?;
            let ConnectorInfo { name, revoked, .. } = given_connector(store.as_ref(), org_id, &given).await?;
            let replaced = replace_key(store.as_ref(), org_id, &name, change).await?;
            let old = match (revoked, until) {
                (Some(at), _) => format!(
                    "its old key was revoked at {}, so it has none to work on{}",
                    format_rfc3339(at),
                    if until.is_some() { " (--overlap changed nothing)" } else { "" }
                ),
                (None, Some(until)) => format!(
                    "the old one works until {}: restart the connector with the new one before then",
                    format_rfc3339(until)
                ),
                (None, None) => "the old one no longer works".to_owned(),
            };
            note!("Connector {name:?} ({}) has a new key; {old}. The new key, shown only this once:", replaced.id);
            output::print_secret("connector key", &replaced.key, "rotate the key again")?;
        }
        ConnectorsCommand::Revoke { name: given, org, store } => {
            // A new key nobody is shown: nothing can report as this connector until `rotate-key`.
            // An old key a rotation let overlap stops too.
            let store = open_existing_store(&store).await?;
            let org_id = existing_org(store.as_ref(), &org).await?;
            let ConnectorInfo { name, revoked, .. } = given_connector(store.as_ref(), org_id, &given).await?;
            if let Some(at) = revoked {
                note!(
                    "The key of connector {name:?} was revoked already, at {}: nothing changed. \
                     `gatehouse connectors rotate-key {name:?} --org {org:?}` issues a new one.",
                    format_rfc3339(at)
                );
                return Ok(ExitCode::SUCCESS);
            }
            let replaced =
                replace_key(store.as_ref(), org_id, &name, KeyReplacement::Revoke { at: now_micros() }).await?;
            note!(
                "Revoked the key of connector {name:?} ({}): it no longer works. \
                 `gatehouse connectors rotate-key {name:?} --org {org:?}` issues a new one.",
                replaced.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The connector `given` names: by its name or its id, or by a key of its own, its current one
/// or one a rotation lets work on (a leaked key an operator has to hand). A key is never
/// repeated whole: only its public prefix.
async fn given_connector(store: &dyn Store, org: OrgId, given: &str) -> anyhow::Result<ConnectorInfo> {
    let mut connectors = store.list_connectors(org).await?;
    let key_prefix = given.starts_with("ghc_").then(|| super::public_prefix(given));
    let now = now_micros();
    // An old key once its overlap has ended is no key of the connector's any more.
    let holds = |c: &ConnectorInfo, prefix: &str| {
        c.key_prefix == prefix
            || c.old_key_prefix.as_deref() == Some(prefix) && c.old_key_until.is_some_and(|t| t > now)
    };
    let by_name = connectors.iter().position(|c| c.name == given || c.id == given);
    let by_key = || key_prefix.and_then(|prefix| connectors.iter().position(|c| holds(c, prefix)));
    match (by_name.or_else(by_key), key_prefix) {
        (Some(at), _) => Ok(connectors.swap_remove(at)),
        (None, Some(prefix)) => anyhow::bail!(
            "no connector of this organization holds a key with prefix {prefix:?} \
             (`gatehouse connectors list` shows them, with their keys' prefixes)"
        ),
        (None, None) => anyhow::bail!("no connector named {given:?} (`gatehouse connectors list` shows them)"),
    }
}

async fn replace_key(
    store: &dyn Store,
    org: OrgId,
    name: &str,
    change: KeyReplacement,
) -> anyhow::Result<CreatedConnector> {
    replace_connector_key(store, org, name, change)
        .await?
        .with_context(|| format!("no connector named {name:?} (`gatehouse connectors list` shows them)"))
}
