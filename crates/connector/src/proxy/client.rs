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

use super::tls::MaybeTls;

/// The client's connection, encrypted or not.
pub(crate) type ClientStream = MaybeTls<TlsStream<TcpStream>>;

/// What the client asked for.
pub(crate) enum Negotiated {
    /// A session, over this stream.
    Session(ClientStream, StartupMessage),
    /// Cancel another connection's query; the connection then closes.
    Cancel(ClientStream, CancelRequest),
    /// The client left before saying (a health check, a port scan).
    Closed,
}

/// Reads the startup phase: answers SSLRequest with `S` and a TLS handshake when `tls` is
/// configured, `N` otherwise; GSSENCRequest with `N`; and returns at the StartupMessage or
/// CancelRequest, which may come over TLS (libpq 17 sends its cancels that way).
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
    let mut stream = ClientStream::Plain(tcp);
    let (mut ssl_answered, mut gss_answered) = (false, false);
    loop {
        let startup = match reader.read_startup(&mut stream).await {
            Ok(Some(startup)) => startup,
            Ok(None) => return Ok(Negotiated::Closed),
            Err(error) => {
                let refusal = match error {
                    WireError::Io(_) | WireError::UnexpectedEof => None,
                    // An older protocol (2.0): PostgreSQL's feature_not_supported, in its words.
                    WireError::UnsupportedProtocol { .. } => Some(ErrorResponse::fatal("0A000", error.to_string())),
                    _ => Some(ErrorResponse::protocol_violation(format!("invalid startup packet: {error}"))),
                };
                if let Some(refusal) = refusal {
                    stream.send_error(&refusal).await;
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
            Startup::Cancel(request) => return Ok(Negotiated::Cancel(stream, request)),
            Startup::Startup(message) => return Ok(Negotiated::Session(stream, message)),
        }
    }
}

impl ClientStream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
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
        let _ = self.write_all(&buf).await;
        let _ = self.shutdown().await;
    }
}
