//! `gatehouse dev`: the whole product on one laptop, with a ready API key.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use gatehouse_core::time::now_micros;
use gatehouse_core::{OrgId, Role};
use gatehouse_server::auth::create_api_key;
use gatehouse_store::{ListQuery, Store};
use tokio::net::TcpListener;

use super::open_store;
use super::seed::seed;
use super::serve::serve_on;
use crate::cli::DevArgs;

pub const DEV_ORG: &str = "default";
/// The dev admin key is kept in the data directory (mode 0600) so that every
/// `gatehouse dev` run can print it; the store itself holds only its hash.
const DEV_KEY_FILE: &str = "dev-admin.key";
const DEMO_ACTIVE: usize = 36;
const DEMO_DAYS: i64 = 30;

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&args.store).await?;
    let org = store.ensure_org(DEV_ORG).await?;
    let key = dev_key(store.as_ref(), org.id, &args.store.data_dir).await?;
    if args.demo && !has_sessions(store.as_ref(), org.id).await? {
        seed(store.as_ref(), org.id, args.demo_sessions, DEMO_ACTIVE, DEMO_DAYS * 86_400_000_000, 1).await?;
    }
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    println!(
        "\nGatehouse is running at {url}\n\
         \n  organization:  {DEV_ORG}\
         \n  admin API key: {key}\
         \n  data:          {}\n\
         \nTry it:\n\
         \n  curl -s {url}/core.v1.SessionsService/ListSessionsV2 \\\
         \n    -H 'Content-Type: application/json' -H 'X-API-KEY: {key}' \\\
         \n    -d '{{\"limit\": 3, \"query\": \"session_status:active\"}}'\n\
         \n  export GATEHOUSE_URL={url} GATEHOUSE_API_KEY={key}\
         \n  gatehouse sessions list --since 24h\n",
        args.store.data_dir.display()
    );
    if !args.demo && !has_sessions(store.as_ref(), org.id).await? {
        println!("The store is empty: run `gatehouse dev --demo` to fill it with demo sessions.\n");
    }
    serve_on(listener, store).await?;
    Ok(ExitCode::SUCCESS)
}

/// Reuses the saved dev key while it is still valid, else creates one.
async fn dev_key(store: &dyn Store, org: OrgId, data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEV_KEY_FILE);
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_owned();
        let prefix = saved.split('_').nth(1).unwrap_or_default();
        if let Some(stored) = store.find_api_key(prefix).await?
            && !stored.revoked
            && stored.org == org
        {
            return Ok(saved);
        }
    }
    let created = create_api_key(store, org, "dev admin", Role::Admin).await?;
    write_private(&path, &created.key).with_context(|| format!("cannot save the dev key to {}", path.display()))?;
    Ok(created.key)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

async fn has_sessions(store: &dyn Store, org: OrgId) -> anyhow::Result<bool> {
    Ok(!store.list_sessions(org, &ListQuery::newest(1, now_micros())).await?.is_empty())
}
