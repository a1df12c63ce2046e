//! One client connection, from accept to close: the startup phase, then a cancel, a refusal,
//! or a relay to the database (after an identity login, for `idp:formal:...` user names).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use gatehouse_pgwire::backend::ErrorResponse;
use gatehouse_pgwire::{MessageReader, StartupMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::client::{self, Negotiated};
use super::login::{self, Identified};
use super::relay::{self, Conn};
use super::shutdown::ConnectionStop;
use super::upstream::ServerStream;
use super::{ProxyContext, cancel, upstream};
use crate::event::now_us;
use crate::identity;
use crate::metrics::Metrics;
use crate::timer;

/// How long a client may take to say what it wants (TLS handshake included): PostgreSQL's
/// default `authentication_timeout`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest message accepted before authentication succeeded. PostgreSQL's own limit on
/// authentication tokens is 65535 bytes.
const AUTH_MAX_MESSAGE_LEN: usize = 128 * 1024;
/// The length of an SSLRequest, which a client on TLS sent before its startup packet.
const SSL_REQUEST_LEN: u64 = 8;

/// Counts the connection as active while it lives.
struct Active<'a>(&'a AtomicU64);

impl<'a> Active<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        Metrics::add(gauge, 1);
        Self(gauge)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        Metrics::sub(self.0, 1);
    }
}

/// Serves one accepted client.
pub(crate) async fn run(stream: TcpStream, peer: SocketAddr, ctx: Arc<ProxyContext>, mut stop: ConnectionStop) {
    let accepted_us = now_us();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    // A client whose network went away without a word is found out, as PostgreSQL finds out
    // its own clients: its session, and the backend it holds (locks too), do not last forever.
    if let Err(error) = rustix::net::sockopt::set_socket_keepalive(&stream, true) {
        tracing::debug!(%peer, %error, "cannot set SO_KEEPALIVE");
    }
    let metrics = Arc::clone(&ctx.metrics);
    Metrics::add(&metrics.connections_total, 1);
    let _active = Active::new(&metrics.connections_active);

    let prepared = tokio::select! {
        biased;
        _ = &mut stop => return,
        prepared = prepare(stream, peer, &ctx) => prepared,
    };
    if let Some(Prepared { client, client_reader, startup, server, server_reader, identified }) = prepared {
        let conn = Conn { client, client_reader, startup, server, server_reader, identified, peer, accepted_us };
        relay::run(conn, ctx, stop).await;
    }
}

/// Answers a client, once it has said what it wants (after TLS if it asked for it), with
/// `error` alone: a connector that cannot serve it yet, or any more.
pub(crate) async fn refuse(stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, error: ErrorResponse) {
    let mut reader = MessageReader::with_max_message_len(AUTH_MAX_MESSAGE_LEN).frontend();
    let negotiated = timer::timeout(STARTUP_TIMEOUT, client::negotiate(stream, &mut reader, tls.as_ref()));
    if let Ok(Ok(Negotiated::Session(mut client, _))) = negotiated.await {
        client.send_error(&error).await;
    }
}

/// A client and its database connection, ready for the relay.
struct Prepared {
    client: client::ClientStream,
    client_reader: MessageReader,
    startup: StartupMessage,
    server: ServerStream,
    server_reader: MessageReader,
    /// Set after an identity login; `None` when the relay passes authentication through.
    identified: Option<Box<Identified>>,
}

/// The startup phase: negotiation, then a cancel is forwarded, a full spool refuses, or the
/// database is connected.
async fn prepare(stream: TcpStream, peer: SocketAddr, ctx: &ProxyContext) -> Option<Prepared> {
    let mut reader = MessageReader::with_max_message_len(AUTH_MAX_MESSAGE_LEN)
        .frontend()
        .with_budget(Arc::clone(&ctx.large_messages));
    let negotiated = timer::timeout(STARTUP_TIMEOUT, client::negotiate(stream, &mut reader, ctx.tls.as_ref()));
    let (mut client, startup) = match negotiated.await {
        Ok(Ok(Negotiated::Session(client, startup))) => {
            count_startup(&ctx.metrics, &client, &startup);
            (client, startup)
        }
        Ok(Ok(Negotiated::Cancel(mut client, request, sender))) => {
            cancel::forward(&ctx.cancels, &request, sender).await;
            // Over TLS, a close without close_notify reads as a failed cancel to libpq.
            let _ = client.shutdown().await;
            return None;
        }
        Ok(Ok(Negotiated::Closed)) => return None,
        Ok(Err(error)) => {
            Metrics::add(&ctx.metrics.startup_failures_total, 1);
            tracing::debug!(%peer, %error, "startup failed");
            return None;
        }
        Err(_) => {
            Metrics::add(&ctx.metrics.startup_failures_total, 1);
            tracing::debug!(%peer, "startup timed out");
            return None;
        }
    };
    if let Some(refusal) = ctx.reporter.refusal() {
        Metrics::add(&ctx.metrics.connections_refused_total, 1);
        tracing::warn!(%peer, ?refusal, "connection refused");
        client.send_error(&ErrorResponse::cannot_connect_now(refusal.client_message())).await;
        return None;
    }
    match startup.user().and_then(identity::parse) {
        Some(Ok(name)) => {
            let (client, server, server_reader, identified) =
                login::identity(client, &mut reader, &startup, name, peer, ctx).await?;
            return Some(Prepared {
                client,
                client_reader: reader,
                startup,
                server,
                server_reader,
                identified: Some(identified),
            });
        }
        Some(Err(error)) => {
            ctx.metrics.auth_failures.count("bad_user_name");
            tracing::warn!(%peer, %error, "identity login refused: malformed user name");
            let message = format!("invalid identity user name: {error}");
            client.send_error(&ErrorResponse::fatal("28000", message)).await;
            return None;
        }
        None if ctx.identity.require_identity => {
            ctx.metrics.auth_failures.count("identity_required");
            tracing::warn!(%peer, user = startup.user().unwrap_or_default(), "login refused: this resource requires an identity");
            let user = startup.user().unwrap_or_default();
            // A rule refused it, as PostgreSQL's pg_hba.conf `reject` does: no password was checked.
            let error = ErrorResponse::fatal("28000", format!("Gatehouse accepts only identity logins here, not user \"{user}\""))
                .with_hint(
                    "connect as idp:formal:human:<email> (or idp:formal:machine:<name>) with your access token as the password",
                );
            client.send_error(&error).await;
            return None;
        }
        None => {}
    }
    let server = upstream::connect_for_client(ctx, &mut client).await?;
    Some(Prepared {
        client,
        client_reader: reader,
        startup,
        server,
        server_reader: MessageReader::new().with_budget(Arc::clone(&ctx.large_messages)),
        identified: None,
    })
}

/// Counts the bytes of the startup phase, which the relay, counting the rest, never sees:
/// the startup packet, and on TLS the SSLRequest and the `S` that accepted it. (A request
/// answered `N`, SSL or GSSENC, leaves no trace in what [`client::negotiate`] returns.)
fn count_startup(metrics: &Metrics, client: &client::ClientStream, startup: &StartupMessage) {
    let mut from_client = startup.frame().len() as u64;
    if client.is_tls() {
        from_client += SSL_REQUEST_LEN;
        Metrics::add(&metrics.bytes_to_clients_total, 1);
    }
    Metrics::add(&metrics.bytes_from_clients_total, from_client);
}
