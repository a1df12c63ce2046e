//! `gatehouse serve`: the control plane.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gatehouse_server::Lease;
use gatehouse_store::Store;
use tokio::net::TcpListener;

use super::{open_store, shutdown_signal, sqlite_exists, sqlite_path};
use crate::cli::{LeaseArgs, ServeArgs};

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls =
                gatehouse_tls::server_config(cert, key, gatehouse_server::https::ALPN).context("cannot serve HTTPS")?;
            if let Some(unfit) = gatehouse_tls::unfit_server_certificate(cert) {
                tracing::warn!("{unfit}");
            }
            Some(tls)
        }
        _ => None,
    };
    // Bound before the store is opened: a port in use leaves no new store behind.
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let new_sqlite = args.store.database_url.is_none() && !sqlite_exists(&sqlite_path(&args.store))?;
    let store = open_store(&args.store).await?;
    if new_sqlite {
        // A mistyped --data-dir, or none, starts a store nobody's keys are in: say so.
        let dir = args.store.data_dir.display();
        tracing::warn!(
            "created a new, empty store in {dir}: it has no organization or key yet (gatehouse keys create \
             --org NAME --data-dir {dir}); was another --data-dir meant?"
        );
    }
    // Never the URL: it may hold a password.
    let store_name = match &args.store.database_url {
        Some(_) => "PostgreSQL".to_owned(),
        None => format!("SQLite in {}", args.store.data_dir.display()),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let address = listener.local_addr()?;
    tracing::info!(url = %format!("{scheme}://{address}"), store = %store_name, "control plane listening");
    // Every call carries an API key or a connector key, and connectors' reports carry what
    // sessions ran: off this machine, in clear, unless behind a TLS-terminating proxy.
    if tls.is_none() && !address.ip().to_canonical().is_loopback() {
        tracing::warn!(
            listen = %address,
            "serving plain http on an address other hosts reach: API keys, connector keys and the sessions \
             reported cross the network in cleartext (--tls-cert and --tls-key serve https, or put a TLS \
             proxy in front)"
        );
    }
    if let Some(retention) = args.retention {
        tokio::spawn(retain(store.clone(), retention));
    }
    #[cfg(unix)]
    {
        let tls = tls.clone();
        gatehouse_tls::on_hangup(move || gatehouse_tls::reload_logged(tls.as_ref()))
            .context("cannot listen for SIGHUP")?;
    }
    let config = tls.map(|tls| tls.config());
    serve_on(listener, config, store, &args.lease, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves the API on `listener` (over TLS with `tls`) until `shutdown` completes.
pub async fn serve_on(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    store: Arc<dyn Store>,
    lease: &LeaseArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let lease = Lease { heartbeat: lease.connector_lease / 6, lease: lease.connector_lease };
    let app = gatehouse_server::app_with_lease(store, lease).await.context("cannot start the API")?;
    gatehouse_server::serve(listener, tls, app, shutdown).await;
    Ok(())
}

/// Deletes completed sessions older than `retention`, in small batches so
/// that ingestion and listing never wait long behind it. Every replica runs
/// this; on a shared store one works at a time (the store's retention lock)
/// and the others' passes end at once.
async fn retain(store: Arc<dyn Store>, retention: Duration) {
    const BATCH: usize = 500;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let before = gatehouse_core::time::now_micros() - retention.as_micros() as i64;
        match store.delete_completed_before(before, BATCH).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention: deleted completed sessions past the retention period"),
            Err(err) => tracing::warn!(%err, "retention pass failed; retrying in a minute"),
        }
    }
}
