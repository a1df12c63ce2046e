//! The TLS configuration offered to clients that send SSLRequest, and the
//! stream type both sides of a connection use before or after TLS.

use std::io::{self, BufReader};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ProxyError;

/// ALPN name of the PostgreSQL protocol (PostgreSQL 17), accepted when a client offers it.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Builds the server configuration from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// [`ProxyError::Read`] if a file cannot be read, [`ProxyError::NoCertificate`] or
/// [`ProxyError::NoPrivateKey`] if it holds none, [`ProxyError::Tls`] if rustls rejects them
/// (for example, a key that does not match the certificate).
pub fn load_tls(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, ProxyError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| ProxyError::Read { path: path.to_owned(), source });
    let certs = rustls_pemfile::certs(&mut BufReader::new(&read(cert_pem)?[..]))
        .collect::<Result<Vec<CertificateDer<'static>>, _>>()
        .map_err(|source| ProxyError::Read { path: cert_pem.to_owned(), source })?;
    if certs.is_empty() {
        return Err(ProxyError::NoCertificate(cert_pem.to_owned()));
    }
    let key = rustls_pemfile::private_key(&mut BufReader::new(&read(key_pem)?[..]))
        .map_err(|source| ProxyError::Read { path: key_pem.to_owned(), source })?
        .ok_or_else(|| ProxyError::NoPrivateKey(key_pem.to_owned()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
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
    use super::*;

    #[test]
    fn loads_a_self_signed_pair_and_reports_missing_parts() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path, empty) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("e"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        std::fs::write(&empty, "").unwrap();

        let config = load_tls(&cert_path, &key_path).unwrap();
        assert_eq!(config.alpn_protocols, [b"postgresql".to_vec()]);
        assert!(matches!(load_tls(&empty, &key_path), Err(ProxyError::NoCertificate(_))));
        assert!(matches!(load_tls(&cert_path, &empty), Err(ProxyError::NoPrivateKey(_))));
        assert!(matches!(load_tls(&dir.path().join("missing"), &key_path), Err(ProxyError::Read { .. })));
    }
}
