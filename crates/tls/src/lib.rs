//! TLS for Gatehouse, on rustls with the ring provider throughout: certificates and keys read
//! from PEM files, server configurations built from them, and the transport with which the
//! control plane's clients (the CLI and the connector) reach it over `https://` or `http://`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use connectrpc::client::{ClientBody, ServiceTransport};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What went wrong reading certificates and keys, or building a configuration from them.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no certificate found in {0}")]
    NoCertificate(PathBuf),
    #[error("no private key found in {0}")]
    NoPrivateKey(PathBuf),
    #[error("{0} holds an encrypted private key, which cannot be used: decrypt it (openssl pkey -in KEY -out PLAIN)")]
    EncryptedKey(PathBuf),
    #[error(
        "the private key in {key} is not the key of the first certificate in {cert} \
         (the certificate file must start with the server's own certificate, then its chain)"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: a certificate that cannot be used: {source}")]
    BadCertificate { path: PathBuf, source: rustls::Error },
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The one crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// The certificates of a PEM file, at least one.
///
/// # Errors
///
/// [`TlsError::Read`] for a file that cannot be read or parsed, [`TlsError::NoCertificate`]
/// for one that holds none.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(&read(path)?[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// [`TlsError::Read`], or [`TlsError::NoPrivateKey`] for a file that holds none.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    match rustls_pemfile::private_key(&mut BufReader::new(&pem[..])) {
        Ok(Some(key)) => Ok(key),
        Ok(None) if pem.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") => {
            Err(TlsError::EncryptedKey(path.to_owned()))
        }
        Ok(None) => Err(TlsError::NoPrivateKey(path.to_owned())),
        Err(source) => Err(TlsError::Read { path: path.to_owned(), source }),
    }
}

/// A server's TLS configuration whose certificate and key can be read again from their files
/// ([`ServerTls::reload`], at SIGHUP): how a certificate is renewed without a restart.
/// Connections accepted after a reload are offered the new pair; those open keep theirs.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    files: Arc<CertificateFiles>,
}

/// The pair a [`ServerTls`] offers, and where it was read from.
#[derive(Debug)]
struct CertificateFiles {
    cert_pem: PathBuf,
    key_pem: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertificateFiles {
    /// The pair in the files, checked to belong together.
    fn read(cert_pem: &Path, key_pem: &Path) -> Result<CertifiedKey, TlsError> {
        CertifiedKey::from_der(certificates(cert_pem)?, private_key(key_pem)?, &provider()).map_err(|error| match error
        {
            rustls::Error::InconsistentKeys(_) => {
                TlsError::KeyMismatch { cert: cert_pem.to_owned(), key: key_pem.to_owned() }
            }
            error => TlsError::BadCertificate { path: cert_pem.to_owned(), source: error },
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ServerTls {
    /// The configuration to accept connections with.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// The certificate file, as given.
    pub fn cert_path(&self) -> &Path {
        &self.files.cert_pem
    }

    /// Reads the certificate and key again. On an error the pair in use stays in use.
    ///
    /// # Errors
    ///
    /// Those of [`server_config`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = CertificateFiles::read(&self.files.cert_pem, &self.files.key_pem)?;
        *self.files.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }
}

/// `url` as a log line or an error may show it: without the user and password (`user:pw@`)
/// or the query string it may carry.
pub fn shown_url(url: &str) -> String {
    let url = url.trim();
    let url = url.split(['?', '#']).next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Runs `reload` at each SIGHUP, as long as the runtime runs (`serve` and the connector read
/// their certificate again with [`reload_logged`]). A SIGHUP no longer ends the process, which
/// is its default.
///
/// # Errors
///
/// When the signal cannot be listened for.
#[cfg(unix)]
pub fn on_hangup(mut reload: impl FnMut() + Send + 'static) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reload();
        }
    });
    Ok(())
}

/// Reads `tls`'s certificate and key again, keeping the pair in use when the new one cannot be
/// served, and logs what came of it; without `tls`, logs that there is nothing to read.
pub fn reload_logged(tls: Option<&ServerTls>) {
    match tls {
        None => tracing::info!("SIGHUP: no TLS certificate to read again"),
        Some(tls) => match tls.reload() {
            Ok(()) => {
                tracing::info!(cert = %tls.cert_path().display(), "SIGHUP: TLS certificate read again; new connections get it")
            }
            Err(error) => tracing::error!(%error, "SIGHUP: kept the TLS certificate in use"),
        },
    }
}

/// A server configuration from a PEM certificate chain and a PEM private key, offering the
/// application protocols `alpn` in order of preference.
///
/// # Errors
///
/// Those of [`certificates`] and [`private_key`], [`TlsError::KeyMismatch`] for a key that
/// does not match the certificate, and [`TlsError::BadCertificate`] for one rustls refuses.
pub fn server_config(cert_pem: &Path, key_pem: &Path, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
    let pair = CertificateFiles::read(cert_pem, key_pem)?;
    let files = Arc::new(CertificateFiles {
        cert_pem: cert_pem.to_owned(),
        key_pem: key_pem.to_owned(),
        current: RwLock::new(Arc::new(pair)),
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&files) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
    Ok(ServerTls { config: Arc::new(config), files })
}

/// Why clients that check certificates (ours: the CLI and connectors) would refuse the first
/// certificate in `cert_pem` as a server's whatever authority they trust, when its own content
/// says so: a CA's certificate (basicConstraints CA:TRUE, which `openssl req -x509` sets by
/// default). `None` when it is fit, or cannot be read (serving it says why).
pub fn unfit_server_certificate(cert_pem: &Path) -> Option<String> {
    let chain = certificates(cert_pem).ok()?;
    let leaf = chain.first()?;
    // Trusted as its own anchor: what is left to refuse is the certificate itself.
    let mut roots = RootCertStore::empty();
    roots.add(leaf.clone()).ok()?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let now = rustls::pki_types::UnixTime::now();
    let refused =
        rustls::client::danger::ServerCertVerifier::verify_server_cert(&*verifier, leaf, &chain[1..], &name, &[], now)
            .err()?
            .to_string();
    refused.contains("CaUsedAsEndEntity").then(|| {
        format!(
            "{} is a CA certificate (CA:TRUE, which `openssl req -x509` sets by default): the CLI and \
             connectors refuse it as a server's; serve a certificate that CA signed, or a self-signed one made \
             with -addext basicConstraints=critical,CA:FALSE",
            cert_pem.display()
        )
    })
}

/// The certificate authorities of a PEM file.
///
/// # Errors
///
/// Those of [`certificates`], and [`TlsError::BadCertificate`] for a certificate rustls refuses.
pub fn roots(ca_pem: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert).map_err(|source| TlsError::BadCertificate { path: ca_pem.to_owned(), source })?;
    }
    Ok(roots)
}

/// The transport of the control plane's clients.
pub type Transport = ServiceTransport<Client<HttpsConnector<HttpConnector>, ClientBody>>;

/// How long connecting (TCP) to the control plane may take; each call has its own deadline too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport to the control plane: `http://` URLs are plain, `https://` ones checked
/// against the Mozilla roots, and against the authorities in `ca_pem` when given (a private CA).
/// HTTP/2 is used over TLS when the server offers it, HTTP/1.1 otherwise.
///
/// # Errors
///
/// Those of [`roots`] for `ca_pem`.
pub fn transport(ca_pem: Option<&Path>) -> Result<Transport, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_pem {
        roots.roots.extend(self::roots(path)?.roots);
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(ServiceTransport::new(Client::builder(TokioExecutor::new()).build(https)))
}

/// `error` and its sources, each once, joined with `: ` (transport errors repeat their
/// source's text in their own).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    for cause in std::iter::successors(Some(error), |e| e.source()) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// What a server at `url` that is not the control plane answered `error` with, said so (a web
/// server's or a proxy's error page, another connector's admin port): `the server at URL
/// answered HTTP 404 with an HTML page, not the Gatehouse API: is URL the control plane's
/// address?`. `None` for the control plane's own answers. Said alike by the CLI and connectors.
pub fn not_the_api(url: &str, error: &connectrpc::ConnectError) -> Option<String> {
    let answer = foreign_answer(error)?;
    Some(format!("the server at {url} answered {answer}, not the Gatehouse API: is {url} the control plane's address?"))
}

/// What a server that is not the control plane answered, in a few words: `HTTP 502 with an HTML
/// page`. The page itself, which the client puts in the error's message, says nothing about
/// Gatehouse and is often a screenful.
fn foreign_answer(error: &connectrpc::ConnectError) -> Option<String> {
    let message = error.message.as_deref()?;
    // An error status, or a success in a content type no Connect server answers in (a web
    // application's page).
    let (status, stated_type) = match message.strip_prefix("HTTP error ") {
        Some(rest) => (format!("HTTP {} with ", rest.split(|c: char| !c.is_ascii_digit()).next()?), None),
        None => (String::new(), Some(message.strip_prefix("unexpected content-type: ")?)),
    };
    let content_type = error
        .response_headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .or(stated_type)
        .map(|value| value.split(';').next().unwrap_or(value).trim().to_ascii_lowercase())
        .unwrap_or_default();
    let body = match content_type.as_str() {
        "text/html" | "application/xhtml+xml" => "an HTML page".to_owned(),
        "" => "a response of no stated type".to_owned(),
        other => format!("a {other} response"),
    };
    Some(format!("{status}{body}"))
}

/// What to do about a call to the control plane that failed over TLS, when `error` (with its
/// sources) shows why; `ca_setting` names where the CA file is set.
pub fn advice(error: &(dyn std::error::Error + 'static), ca_setting: &str) -> Option<String> {
    let text = chain(error);
    let advice = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!(
            "the control plane's certificate is not signed by an authority this client trusts: give the \
             authority's certificate (or the self-signed certificate itself) with {ca_setting}"
        )
    } else if text.contains("CaUsedAsEndEntity") {
        "the control plane's certificate is a CA certificate (CA:TRUE, which `openssl req -x509` sets by default): \
         serve a certificate that CA signed, or a self-signed one made with -addext basicConstraints=critical,CA:FALSE"
            .to_owned()
    } else if text.contains("not valid for name") || text.contains("NotValidForName") {
        "the control plane's certificate does not name the host in the URL: use a name in its subjectAltName, \
         or reissue it with -addext subjectAltName=DNS:<host> (a common name alone is not checked)"
            .to_owned()
    } else if text.contains("expired") || text.contains("Expired") {
        "the control plane's certificate has expired (or this machine's clock is wrong): renew it".to_owned()
    } else if text.contains("NotValidYet") || text.contains("not valid before") {
        "the control plane's certificate is not valid yet: check the clocks of both machines".to_owned()
    } else if text.contains("InvalidPurpose") || text.contains("purpose") {
        "the control plane's certificate is not for TLS servers: its extended key usage must include serverAuth"
            .to_owned()
    } else if text.contains("InvalidContentType") {
        "the control plane does not speak TLS on that port: use an http:// URL".to_owned()
    } else if text.contains("invalid HTTP version parsed") {
        "the control plane may serve HTTPS on that port: use an https:// URL".to_owned()
    } else {
        return None;
    };
    Some(advice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_takes_the_pair_in_the_files_or_keeps_the_one_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let write_pair = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.into()]).unwrap().self_signed(&key).unwrap();
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            cert.der().clone()
        };
        let first = write_pair("one.example");
        let tls = server_config(&cert_path, &key_path, &[]).unwrap();
        let served = || tls.files.current().cert[0].clone();
        assert_eq!(served(), first);
        let second = write_pair("two.example");
        tls.reload().unwrap();
        assert_eq!(served(), second, "the new pair");
        std::fs::write(&key_path, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(served(), second, "a pair that does not belong together is not taken");
        std::fs::remove_file(&cert_path).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::Read { .. })));
        assert_eq!(served(), second);
    }

    #[test]
    fn a_ca_certificate_served_as_a_servers_is_named_unfit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["cp.internal".into()]).unwrap();
        std::fs::write(&path, params.clone().self_signed(&key).unwrap().pem()).unwrap();
        assert_eq!(unfit_server_certificate(&path), None, "a self-signed server certificate");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        assert!(unfit_server_certificate(&path).is_some_and(|why| why.contains("CA:TRUE")));
        assert_eq!(unfit_server_certificate(&dir.path().join("missing.pem")), None);
    }

    #[test]
    fn reads_what_rcgen_writes_and_names_the_file_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();

        let tls = server_config(&cert_path, &key_path, &[b"h2"]).unwrap();
        assert_eq!(tls.config().alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(roots(&cert_path).unwrap().len(), 1);
        assert!(transport(Some(&cert_path)).is_ok());

        let missing = dir.path().join("missing.pem");
        assert!(
            certificates(&missing).unwrap_err().to_string().starts_with(&format!("cannot read {}", missing.display()))
        );
        assert_eq!(
            certificates(&key_path).unwrap_err().to_string(),
            format!("no certificate found in {}", key_path.display())
        );
        assert_eq!(
            private_key(&cert_path).unwrap_err().to_string(),
            format!("no private key found in {}", cert_path.display())
        );
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key_path, other.serialize_pem()).unwrap();
        assert!(matches!(server_config(&cert_path, &key_path, &[]), Err(TlsError::KeyMismatch { .. })));
        std::fs::write(&key_path, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
            .unwrap();
        assert!(matches!(private_key(&key_path), Err(TlsError::EncryptedKey(_))));
    }

    #[test]
    fn advice_reads_the_whole_chain() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = std::io::Error::other(inner);
        assert!(advice(&outer, "--ca-file").unwrap().ends_with("with --ca-file"));
        assert_eq!(advice(&std::io::Error::other("Connection refused"), "--ca-file"), None);
    }
}
