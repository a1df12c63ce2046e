//! The connection to the database: TCP with no delay and keepalive, and TLS when the listener
//! asks for it (`upstream_tls`): SSLRequest, then a handshake that checks the certificate
//! against the configured CAs and the host name (`verify-full`) or accepts any (`require`,
//! as libpq's `sslmode=require`).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_pgwire::backend::ErrorResponse;
use gatehouse_pgwire::{SslResponse, Startup};
use gatehouse_tls::TlsError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, lookup_host};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::client::ClientStream;
use super::tls::MaybeTls;
use super::{ProxyContext, ProxyError};
use crate::config::UpstreamTls;
use crate::metrics::Metrics;
use crate::timer;

/// How long resolving and connecting to the database may take, TLS handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the database may take to answer a startup, once connected. A database that
/// accepts connections but does not answer (hung, or something else on its port) would
/// otherwise hold the client, which has no timeout of its own for this, until it gives up
/// (psql never does). Long enough for a database under load: pgbouncer's
/// `server_connect_timeout` is the same 15 s.
pub(crate) const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the database may take for each later step of a login, once it has answered:
/// checking a password can be slow (LDAP, PAM with a push to a phone, a pooler queueing
/// logins for a slot, a login trigger), and PostgreSQL allows a login 60 s
/// (`authentication_timeout`).
pub(crate) const LOGIN_STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// TLS to one database: the client configuration and the name its certificate must carry.
#[derive(Clone)]
pub struct UpstreamTlsConfig {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsConfig").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// Builds the TLS settings for `upstream` (`host:port`); `None` for [`UpstreamTls::Disable`].
///
/// # Errors
///
/// [`ProxyError::Tls`] for the CA file or certificates rustls refuses,
/// [`ProxyError::ServerName`] for a host that cannot be checked against a certificate.
pub fn upstream_tls(
    mode: UpstreamTls,
    ca_file: Option<&Path>,
    upstream: &str,
) -> Result<Option<UpstreamTlsConfig>, ProxyError> {
    let provider = gatehouse_tls::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let config = match mode {
        UpstreamTls::Disable => return Ok(None),
        UpstreamTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
            .with_no_client_auth(),
        UpstreamTls::VerifyFull => {
            let path = ca_file.ok_or_else(|| TlsError::NoCertificate(Default::default()))?;
            builder.with_root_certificates(gatehouse_tls::roots(path)?).with_no_client_auth()
        }
    };
    let host = upstream.rsplit_once(':').map_or(upstream, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(host.to_owned()).map_err(|_| ProxyError::ServerName(host.to_owned()))?;
    Ok(Some(UpstreamTlsConfig { connector: TlsConnector::from(Arc::new(config)), server_name }))
}

/// `sslmode=require`: encryption without authentication of the server. The handshake's
/// signatures are still checked, so the session key belongs to whoever holds the certificate.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The connection to the database, encrypted or not.
pub(crate) type ServerStream = MaybeTls<TlsStream<TcpStream>>;

impl ServerStream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Plain(tcp) => tcp.peer_addr(),
            Self::Tls(tls) => tls.get_ref().0.peer_addr(),
        }
    }
}

/// Connects to `host:port`, trying each resolved address in turn, then starts TLS if `tls`
/// is set.
///
/// # Errors
///
/// The last address's error, a resolution error, [`io::ErrorKind::TimedOut`], or for TLS:
/// [`io::ErrorKind::Unsupported`] if the database refuses SSLRequest, and the handshake's
/// error (a certificate that does not verify, say).
pub(crate) async fn connect(upstream: &str, tls: Option<&UpstreamTlsConfig>) -> io::Result<ServerStream> {
    timer::timeout(CONNECT_TIMEOUT, async {
        let tcp = connect_tcp(upstream).await?;
        match tls {
            None => Ok(ServerStream::Plain(tcp)),
            Some(tls) => start_tls(tcp, tls).await,
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {upstream} timed out")))?
}

/// Connects to the listener's database for `client`, or tells the client (FATAL 08006) and
/// the metrics that it cannot.
pub(crate) async fn connect_for_client(ctx: &ProxyContext, client: &mut ClientStream) -> Option<ServerStream> {
    match connect(&ctx.upstream, ctx.upstream_tls.as_ref()).await {
        Ok(server) => Some(server),
        Err(error) => {
            Metrics::add(&ctx.metrics.upstream_connect_failures_total, 1);
            tracing::warn!(upstream = %ctx.upstream, %error, "cannot connect to the database");
            // Out of file descriptors (EMFILE, ENFILE): the database is fine, the connector full.
            let refusal = if matches!(error.raw_os_error(), Some(23 | 24)) {
                ErrorResponse::too_many_connections(
                    "the Gatehouse connector has too many open connections to open one to the database; try again later",
                )
            } else {
                // Where the database is stays in the log: the client has not logged in yet.
                ErrorResponse::fatal("08006", "Gatehouse cannot reach the database; the connector's log says why")
            };
            client.send_error(&refusal).await;
            None
        }
    }
}

/// Counts and logs a database that did not answer a login within `waited`
/// ([`FIRST_ANSWER_TIMEOUT`] or [`LOGIN_STEP_TIMEOUT`]), and returns what the client is told
/// (FATAL 08006, as for a database it cannot reach).
pub(crate) fn login_unanswered(ctx: &ProxyContext, waited: Duration) -> ErrorResponse {
    Metrics::add(&ctx.metrics.upstream_connect_failures_total, 1);
    let secs = waited.as_secs();
    tracing::warn!(upstream = %ctx.upstream, "the database did not answer the login within {secs} s");
    ErrorResponse::fatal("08006", format!("Gatehouse got no answer from the database within {secs} s during the login"))
}

async fn connect_tcp(upstream: &str) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in lookup_host(upstream).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_keepalive(true)?;
        match socket.connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{upstream} resolves to nothing"))))
}

async fn start_tls(mut tcp: TcpStream, tls: &UpstreamTlsConfig) -> io::Result<ServerStream> {
    let mut request = BytesMut::with_capacity(8);
    Startup::Ssl.encode(&mut request);
    tcp.write_all(&request).await?;
    match SslResponse::from_u8(tcp.read_u8().await?) {
        Some(SslResponse::Accept) => {}
        _ => return Err(io::Error::new(io::ErrorKind::Unsupported, "the database does not accept TLS")),
    }
    let stream = tls.connector.connect(tls.server_name.clone(), tcp).await?;
    Ok(ServerStream::Tls(Box::new(stream)))
}
