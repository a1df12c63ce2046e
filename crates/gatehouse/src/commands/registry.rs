//! `gatehouse resources` and `gatehouse connectors`: the registry.

use std::process::ExitCode;

use anyhow::Context;
use gatehouse_core::time::format_rfc3339;
use gatehouse_server::registry::{create_connector, create_resource};

use super::open_store;
use crate::cli::{ConnectorsCommand, ResourcesCommand};
use crate::output::Table;

pub async fn resources(command: ResourcesCommand) -> anyhow::Result<ExitCode> {
    match command {
        ResourcesCommand::Create { org, name, host, port, technology, store } => {
            let store = open_store(&store).await?;
            let org = store.ensure_org(&org).await?;
            let resource = create_resource(store.as_ref(), org.id, &name, &technology, &host, port).await?;
            eprintln!("Registered {technology} resource {name:?} at {host}:{port}.");
            println!("{}", resource.id);
        }
        ResourcesCommand::List { org, store } => {
            let store = open_store(&store).await?;
            let org = store.find_org(&org).await?.with_context(|| format!("no organization named {org:?}"))?;
            let mut table = Table::new(&["ID", "NAME", "TECHNOLOGY", "ADDRESS", "CREATED"]);
            for r in store.list_resources(org.id).await? {
                table.row(vec![
                    r.id,
                    r.name,
                    r.technology,
                    format!("{}:{}", r.host, r.port),
                    format_rfc3339(r.created),
                ]);
            }
            table.print();
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn connectors(command: ConnectorsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectorsCommand::Create { org, name, store } => {
            let store = open_store(&store).await?;
            let org = store.ensure_org(&org).await?;
            let created = create_connector(store.as_ref(), org.id, &name).await?;
            eprintln!("Registered connector {name:?} ({}). Its key, shown only this once:", created.id);
            println!("{}", created.key);
        }
        ConnectorsCommand::List { org, store } => {
            let store = open_store(&store).await?;
            let org = store.find_org(&org).await?.with_context(|| format!("no organization named {org:?}"))?;
            let mut table = Table::new(&["ID", "NAME", "KEY PREFIX", "CREATED", "LAST HEARD"]);
            for c in store.list_connectors(org.id).await? {
                let heard = c.last_heard.map(format_rfc3339).unwrap_or_else(|| "never".into());
                table.row(vec![c.id, c.name, c.key_prefix, format_rfc3339(c.created), heard]);
            }
            table.print();
        }
    }
    Ok(ExitCode::SUCCESS)
}
