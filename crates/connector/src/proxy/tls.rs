//! The TLS configuration offered to clients that send SSLRequest, and the
//! stream type both sides of a connection use before or after TLS.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use gatehouse_tls::ServerTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ProxyError;

/// ALPN name of the PostgreSQL protocol (PostgreSQL 17), accepted when a client offers it.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Builds the server configuration from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// [`ProxyError::Tls`] for a file that cannot be read or holds no certificate or key, or
/// for what rustls rejects (for example, a key that does not match the certificate).
pub fn load_tls(cert_pem: &Path, key_pem: &Path) -> Result<ServerTls, ProxyError> {
    Ok(gatehouse_tls::server_config(cert_pem, key_pem, &[ALPN_POSTGRESQL])?)
}

/// A connection before or after its TLS handshake: `S` is the TLS stream
/// (server side towards clients, client side towards the database). Both
/// are read and written alike.
pub(crate) enum MaybeTls<S> {
    Plain(TcpStream),
    Tls(Box<S>),
}

impl<S: AsyncRead + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_tls::TlsError;

    use super::*;

    #[test]
    fn loads_a_self_signed_pair_and_reports_missing_parts() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path, empty) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("e"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        std::fs::write(&empty, "").unwrap();

        let config = load_tls(&cert_path, &key_path).unwrap().config();
        assert_eq!(config.alpn_protocols, [b"postgresql".to_vec()]);
        assert!(matches!(load_tls(&empty, &key_path), Err(ProxyError::Tls(TlsError::NoCertificate(_)))));
        assert!(matches!(load_tls(&cert_path, &empty), Err(ProxyError::Tls(TlsError::NoPrivateKey(_)))));
        assert!(matches!(
            load_tls(&dir.path().join("missing"), &key_path),
            Err(ProxyError::Tls(TlsError::Read { .. }))
        ));
    }
}
