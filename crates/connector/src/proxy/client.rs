//! The client's side before the relay: encryption requests, TLS, and the packet that says what
//! the connection is for (a session or a cancel).

use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use gatehouse_pgwire::backend::ErrorResponse;
use gatehouse_pgwire::{CancelRequest, Encode, MessageReader, SslResponse, Startup, StartupMessage, WireError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::cancel::Sender;
use super::tls::{ALPN_POSTGRESQL, MaybeTls};

/// The client's connection, encrypted or not.
pub(crate) type ClientStream = MaybeTls<TlsStream<TcpStream>>;

/// What the client asked for.
pub(crate) enum Negotiated {
    /// A session, over this stream.
    Session(ClientStream, StartupMessage),
    /// Cancel another connection's query; the connection then closes.
    Cancel(ClientStream, CancelRequest, Sender),
    /// The client left before saying (a health check, a port scan).
    Closed,
}

/// Reads the startup phase: answers SSLRequest with `S` and a TLS handshake when `tls` is
/// configured, `N` otherwise; GSSENCRequest with `N`; and returns at the StartupMessage or
/// CancelRequest, which may come over TLS (libpq 17 sends its cancels that way). A client may
/// also start TLS at once, without SSLRequest (PostgreSQL 17's `sslnegotiation=direct`), when
/// it names the protocol `postgresql` in ALPN, as PostgreSQL requires.
///
/// Bytes following the packet stay in `reader` for the relay.
///
/// # Errors
///
/// The framing errors of [`MessageReader::read_startup`], a second encryption request, and IO
/// errors (the TLS handshake's included). Protocol errors are answered with FATAL 08P01
/// before returning.
pub(crate) async fn negotiate(
    tcp: TcpStream,
    reader: &mut MessageReader,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<Negotiated, WireError> {
    // Looked at only where TLS is configured: a peek is one more system call per connection.
    let direct = match tls {
        Some(config) if starts_tls(&tcp).await => Some(config),
        _ => None,
    };
    let mut stream = ClientStream::Plain(tcp);
    let (mut ssl_answered, mut gss_answered) = (direct.is_some(), false);
    if let Some(config) = direct {
        stream = stream.into_tls(config).await?;
        if !stream.negotiated_postgresql() {
            let refusal = "received direct SSL connection request without ALPN protocol negotiation extension";
            stream.send_error(&ErrorResponse::protocol_violation(refusal)).await;
            return Err(WireError::Malformed("direct TLS without ALPN"));
        }
    }
    loop {
        let startup = match reader.read_startup(&mut stream).await {
            Ok(Some(startup)) => startup,
            Ok(None) => return Ok(Negotiated::Closed),
            Err(error) => {
                let mut refusal = BytesMut::new();
                match error {
                    WireError::Io(_) | WireError::UnexpectedEof => {}
                    // A TLS record's first bytes read as a length: a client that starts TLS at
                    // once cannot read a refusal in plain text, so it is said here.
                    WireError::TooLarge { len, .. } if len >> 16 == TLS_RECORD_START => {
                        tracing::info!(
                            peer = ?stream.peer_addr(),
                            "a client started TLS at once (sslnegotiation=direct), and this connector has no [tls] certificate",
                        );
                    }
                    // PostgreSQL's feature_not_supported, in its words, and to a client of an
                    // older protocol (1.0, 2.0) in that protocol's format, which it can read.
                    WireError::UnsupportedProtocol { major, .. } => {
                        let unsupported = ErrorResponse::fatal("0A000", error.to_string());
                        match major < 3 {
                            true => unsupported.encode_protocol_2(&mut refusal),
                            false => unsupported.encode(&mut refusal),
                        }
                    }
                    // PostgreSQL answers the request first, then refuses what came before the
                    // answer. (With a certificate its answer starts TLS, which those bytes rule
                    // out: the refusal is all.)
                    WireError::DataAfterEncryptionRequest { gss } => {
                        if gss || tls.is_none() {
                            refusal.extend_from_slice(&[SslResponse::Reject.as_u8()]);
                        }
                        ErrorResponse::protocol_violation(error.to_string()).encode(&mut refusal);
                    }
                    _ => ErrorResponse::protocol_violation(format!("invalid startup packet: {error}"))
                        .encode(&mut refusal),
                }
                if !refusal.is_empty() {
                    stream.send_and_close(&refusal).await;
                }
                return Err(error);
            }
        };
        match startup {
            Startup::Ssl if !ssl_answered && !stream.is_tls() => {
                ssl_answered = true;
                match tls {
                    Some(config) => {
                        stream.write_all(&[SslResponse::Accept.as_u8()]).await?;
                        stream = stream.into_tls(config).await?;
                    }
                    None => stream.write_all(&[SslResponse::Reject.as_u8()]).await?,
                }
            }
            Startup::GssEnc if !gss_answered && !stream.is_tls() => {
                gss_answered = true;
                stream.write_all(&[SslResponse::Reject.as_u8()]).await?;
            }
            Startup::Ssl | Startup::GssEnc => {
                let error = WireError::Malformed("repeated encryption request");
                stream.send_error(&ErrorResponse::protocol_violation(error.to_string())).await;
                return Err(error);
            }
            Startup::Cancel(request) => return Ok(Negotiated::Cancel(stream, request, Sender::Client)),
            Startup::PeerCancel(request) => return Ok(Negotiated::Cancel(stream, request, Sender::Peer)),
            Startup::Startup(message) => return Ok(Negotiated::Session(stream, message)),
        }
    }
}

/// A TLS handshake record's first two bytes: its type (22) and its version's major (3).
const TLS_RECORD_START: usize = 0x1603;

/// Whether the client's first byte opens a TLS handshake record, where a startup packet opens
/// with its length (at most 10,004: a first byte of 0).
async fn starts_tls(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == (TLS_RECORD_START >> 8) as u8)
}

impl ClientStream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Whether TLS is on with ALPN's `postgresql`.
    fn negotiated_postgresql(&self) -> bool {
        match self {
            Self::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(ALPN_POSTGRESQL),
            Self::Plain(_) => false,
        }
    }

    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Plain(tcp) => tcp.peer_addr().ok(),
            Self::Tls(tls) => tls.get_ref().0.peer_addr().ok(),
        }
    }

    async fn into_tls(self, config: &Arc<rustls::ServerConfig>) -> io::Result<Self> {
        match self {
            Self::Plain(tcp) => Ok(Self::Tls(Box::new(TlsAcceptor::from(Arc::clone(config)).accept(tcp).await?))),
            Self::Tls(_) => Err(io::Error::other("TLS is already on")),
        }
    }

    /// Sends an error and closes the write side, ignoring failures: the connection is ending.
    pub(crate) async fn send_error(&mut self, error: &ErrorResponse) {
        let mut buf = BytesMut::new();
        error.encode(&mut buf);
        self.send_and_close(&buf).await;
    }

    /// Sends `bytes` and closes the write side, ignoring failures: the connection is ending.
    async fn send_and_close(&mut self, bytes: &[u8]) {
        let _ = self.write_all(bytes).await;
        let _ = self.shutdown().await;
    }
}
