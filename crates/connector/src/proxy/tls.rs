//! The TLS configuration offered to clients that send SSLRequest.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;

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
