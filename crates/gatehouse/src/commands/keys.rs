//! `gatehouse keys`: create, list and revoke API keys, directly in the store.

use std::process::ExitCode;

use anyhow::bail;
use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_server::auth::create_api_key;

use super::{open_existing_store, open_store, public_prefix};
use crate::cli::KeysCommand;
use crate::output::Fit::{Cut, Whole};
use crate::output::{self, Table};

pub async fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create { org, role, name, store } => {
            output::ensure_stdout_open("key")?;
            let store = open_store(&store).await?;
            let org = super::ensure_org(store.as_ref(), &org).await?;
            let created = create_api_key(store.as_ref(), org.id, &name, role.into()).await?;
            note!(
                "Created a key with role {} for organization {:?}. It is shown only this once:",
                gatehouse_core::Role::from(role),
                org.name
            );
            let undo = format!("revoke it with `gatehouse keys revoke {} --org {}`", created.prefix, org.name);
            output::print_secret("key", &created.key, &undo)?;
        }
        KeysCommand::List { org, output, store } => {
            let store = open_existing_store(&store).await?;
            let org = super::existing_org_named(store.as_ref(), &org).await?;
            let mut table = Table::new(&[
                ("PREFIX", Whole),
                ("NAME", Cut),
                ("ROLE", Whole),
                ("CREATED", Whole),
                ("LAST USED", Whole),
                ("REVOKED", Whole),
            ])
            .in_format(output);
            let time = |t: Option<i64>| t.map(format_rfc3339).unwrap_or_else(|| "-".into());
            for key in store.list_api_keys(org.id).await? {
                table.row(vec![
                    key.prefix,
                    key.name,
                    key.role.to_string(),
                    format_rfc3339(key.created),
                    time(key.last_used),
                    time(key.revoked),
                ]);
            }
            table.print()?;
        }
        KeysCommand::Revoke { prefix, org, store } => {
            let prefix = public_prefix(&prefix);
            let store = open_existing_store(&store).await?;
            let org = super::existing_org_named(store.as_ref(), &org).await?;
            if !store.revoke_api_key(org.id, prefix, now_micros()).await? {
                bail!("no live key with prefix {prefix:?} in organization {:?}", org.name);
            }
            note!("Revoked key {prefix}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
