//! `gatehouse serve`: the control plane.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gatehouse_store::Store;
use tokio::net::TcpListener;

use super::{open_store, shutdown_signal};
use crate::cli::ServeArgs;

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&args.store).await?;
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, data_dir = %args.store.data_dir.display(), "control plane listening");
    serve_on(listener, store).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn serve_on(listener: TcpListener, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let app = gatehouse_server::app(store).await.context("cannot start the API")?;
    gatehouse_server::serve(listener, app, shutdown_signal()).await.context("the API server failed")
}
