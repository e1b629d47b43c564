//! TLS for the sidecar's API and for the calls it makes to other sidecars (`node.tls`).
//!
//! One certificate per node serves both ways: the API presents `cert_file`/`key_file`, and so do
//! the calls this node makes (heartbeats, a forwarded failover, the CLI to its own sidecar) when
//! the other side asks for a client certificate. `ca_file` is the cluster's CA: the only root
//! that server certificates are verified against, and, with `require_client_cert`, the CA a
//! client certificate must chain to.
//!
//! [`NodeTls::build`] turns the PEM files into the rustls configurations (a key that does not
//! match its certificate, or a certificate its own CA did not sign, is refused there);
//! [`NodeTls::check_own_certificate`] finds what makes the node's certificate unusable without
//! being a config error (expired, expiring soon, missing the address the CLI uses); [`describe`]
//! turns a rustls failure into one line an operator can act on.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, Error, RootCertStore, ServerConfig,
};

use crate::secret::Secret;

/// A certificate that expires within this long is warned about (check-config, the start-up log,
/// SIGHUP).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The crypto provider: ring, the only one built in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which `node.tls` file a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
    Ca,
}

impl TlsFile {
    /// The config key naming that file.
    pub fn field(self) -> &'static str {
        match self {
            TlsFile::Cert => "node.tls.cert_file",
            TlsFile::Key => "node.tls.key_file",
            TlsFile::Ca => "node.tls.ca_file",
        }
    }
}

/// A `node.tls` problem that makes the config invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsBuildError {
    pub file: TlsFile,
    pub message: String,
}

fn fail(file: TlsFile, message: impl Into<String>) -> TlsBuildError {
    TlsBuildError {
        file,
        message: message.into(),
    }
}

/// The PEM contents of the three files, as read (the key kept secret).
#[derive(Clone, PartialEq, Eq)]
struct Material {
    cert_pem: String,
    key_pem: Secret,
    ca_pem: String,
    require_client_cert: bool,
}

/// This node's TLS: the files it came from and the rustls configurations built from them.
/// Cheap to clone. Two values are equal when they were built from the same contents.
#[derive(Clone)]
pub struct NodeTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
    /// Every API call except `GET /active` and `GET /health` needs a client certificate.
    pub require_client_cert: bool,
    /// The API's configuration.
    pub server: Arc<ServerConfig>,
    /// The configuration of the calls this node makes: the cluster CA as the only root, and
    /// this node's certificate as its client certificate.
    pub client: Arc<ClientConfig>,
    chain: Arc<Vec<CertificateDer<'static>>>,
    roots: Arc<RootCertStore>,
    material: Arc<Material>,
}

impl PartialEq for NodeTls {
    fn eq(&self, other: &Self) -> bool {
        self.cert_file == other.cert_file
            && self.key_file == other.key_file
            && self.ca_file == other.ca_file
            && self.material == other.material
    }
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_file", &self.ca_file)
            .field("require_client_cert", &self.require_client_cert)
            .finish_non_exhaustive()
    }
}

/// The files of `node.tls`, with their contents.
pub struct TlsFiles<'a> {
    pub cert_file: PathBuf,
    pub cert_pem: &'a str,
    pub key_file: PathBuf,
    pub key_pem: &'a Secret,
    pub ca_file: PathBuf,
    pub ca_pem: &'a str,
    pub require_client_cert: bool,
}

/// The certificates of a PEM text, in order.
fn certificates(file: TlsFile, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsBuildError> {
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        out.push(cert.map_err(|e| fail(file, format!("holds a broken PEM block: {e}")))?);
    }
    if out.is_empty() {
        return Err(fail(
            file,
            "holds no certificate (no BEGIN CERTIFICATE block)",
        ));
    }
    Ok(out)
}

impl NodeTls {
    /// Builds the server and client configurations from the files' contents. Refuses a key that
    /// is not a private key or does not match the certificate, a CA file without a usable CA
    /// certificate, and a certificate that the CA file's CAs did not sign.
    pub fn build(files: TlsFiles<'_>) -> Result<NodeTls, TlsBuildError> {
        let chain = certificates(TlsFile::Cert, files.cert_pem)?;
        let key =
            PrivateKeyDer::from_pem_slice(files.key_pem.expose().as_bytes()).map_err(|e| {
                fail(
                    TlsFile::Key,
                    format!("holds no private key (PKCS#8, RSA or EC PEM): {e}"),
                )
            })?;
        let mut roots = RootCertStore::empty();
        let (added, ignored) =
            roots.add_parsable_certificates(certificates(TlsFile::Ca, files.ca_pem)?);
        if added == 0 {
            return Err(fail(
                TlsFile::Ca,
                format!("holds no usable CA certificate ({ignored} could not be parsed)"),
            ));
        }
        let roots = Arc::new(roots);
        let provider = provider();

        // The node's own certificate must chain to the cluster CA: otherwise neither the peers
        // nor this node's own CLI can verify it. (Expiry and names are warnings: see
        // `check_own_certificate`.)
        let parsed = ParsedCertificate::try_from(&chain[0])
            .map_err(|e| fail(TlsFile::Cert, format!("cannot be parsed: {}", describe(&e))))?;
        if let Err(Error::InvalidCertificate(
            e @ (CertificateError::UnknownIssuer | CertificateError::BadSignature),
        )) = verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &chain[1..],
            UnixTime::now(),
            provider.signature_verification_algorithms.all,
        ) {
            let why = if e == CertificateError::UnknownIssuer {
                "unknown issuer"
            } else {
                "bad signature"
            };
            return Err(fail(
                TlsFile::Cert,
                format!(
                    "is not signed by a CA in node.tls.ca_file ({why}): the peers and this node's own CLI could not verify it"
                ),
            ));
        }

        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(TlsFile::Cert, e.to_string()))?;
        let server = if files.require_client_cert {
            // Clients without a certificate still get through the handshake: `GET /active` and
            // `GET /health` answer them (HAProxy's check, liveness probes); the API refuses the
            // rest. A certificate that is presented must verify, or the handshake fails.
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| {
                        fail(
                            TlsFile::Ca,
                            format!("cannot verify client certificates: {e}"),
                        )
                    })?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        };
        let mut server = server
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| key_error(&e))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(TlsFile::Cert, e.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key)
            .map_err(|e| key_error(&e))?;

        Ok(NodeTls {
            cert_file: files.cert_file,
            key_file: files.key_file,
            ca_file: files.ca_file,
            require_client_cert: files.require_client_cert,
            server: Arc::new(server),
            client: Arc::new(client),
            chain: Arc::new(chain),
            roots,
            material: Arc::new(Material {
                cert_pem: files.cert_pem.to_string(),
                key_pem: files.key_pem.clone(),
                ca_pem: files.ca_pem.to_string(),
                require_client_cert: files.require_client_cert,
            }),
        })
    }

    /// What makes this node's certificate unusable (or soon unusable) without making the config
    /// invalid, as of `now`: expired or not yet valid, expiring within [`EXPIRY_WARNING`], not
    /// valid for `local` (the address `jenkins-ha status` reaches this node's API at), not
    /// allowed as a server or client certificate. One line each, naming the file and the fix.
    pub fn check_own_certificate(&self, local: IpAddr, now: UnixTime) -> Vec<String> {
        let mut warnings = Vec::new();
        let file = self.cert_file.display();
        let Ok(parsed) = ParsedCertificate::try_from(&self.chain[0]) else {
            return warnings;
        };
        let algs = provider().signature_verification_algorithms.all;
        let chain_at = |at: UnixTime| {
            verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                &self.chain[1..],
                at,
                algs,
            )
        };
        match chain_at(now) {
            Ok(()) => {
                let later = UnixTime::since_unix_epoch(Duration::from_secs(
                    now.as_secs() + EXPIRY_WARNING.as_secs(),
                ));
                if let Err(Error::InvalidCertificate(CertificateError::ExpiredContext {
                    not_after,
                    ..
                })) = chain_at(later)
                {
                    let left = not_after.as_secs().saturating_sub(now.as_secs());
                    warnings.push(format!(
                        "node.tls.cert_file: {file} expires at {} (in {}): renew it, then `systemctl reload jenkins-ha`",
                        time_of(not_after),
                        roughly(left)
                    ));
                }
            }
            Err(Error::InvalidCertificate(e)) => warnings.push(format!(
                "node.tls.cert_file: {file}: {}: peers and HAProxy refuse it until it is replaced",
                describe_certificate(&e)
            )),
            Err(e) => warnings.push(format!("node.tls.cert_file: {file}: {}", describe(&e))),
        }
        if let Err(Error::InvalidCertificate(e)) =
            verify_server_name(&parsed, &ServerName::IpAddress(local.into()))
        {
            warnings.push(format!(
                "node.tls.cert_file: {file} is not valid for {local}, where `jenkins-ha status` reaches this node's API ({}): add IP:{local} to its subjectAltName",
                describe_certificate(&e)
            ));
        }
        // The same certificate is this node's client certificate (heartbeats, the CLI): peers
        // that require one verify it for client authentication.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider()).build();
        if let Ok(verifier) = verifier {
            if let Err(Error::InvalidCertificate(
                e @ (CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. }),
            )) = verifier.verify_client_cert(&self.chain[0], &self.chain[1..], now)
            {
                warnings.push(format!(
                    "node.tls.cert_file: {file} cannot serve as a client certificate ({}): peers with node.tls.require_client_cert refuse its calls; give it extendedKeyUsage serverAuth,clientAuth",
                    describe_certificate(&e)
                ));
            }
        }
        warnings
    }
}

/// A key that rustls refuses, as a config error.
fn key_error(e: &Error) -> TlsBuildError {
    match e {
        Error::InconsistentKeys(_) => fail(
            TlsFile::Key,
            "does not match the certificate in node.tls.cert_file (a key of another certificate?)",
        ),
        other => fail(TlsFile::Key, format!("cannot be used: {}", describe(other))),
    }
}

/// A length of time for people: to the second under a day, to the hour beyond.
fn roughly(secs: u64) -> String {
    let secs = if secs >= 86_400 {
        secs / 3600 * 3600
    } else {
        secs
    };
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// A point in time for people: `2026-01-31T12:00:00Z`.
fn time_of(t: UnixTime) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.as_secs())).to_string()
}

/// One line saying what went wrong with a certificate, in the words of `openssl verify` where it
/// has some ("unknown issuer", "certificate expired").
pub fn describe_certificate(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => {
            "unknown issuer: it is not signed by a CA in node.tls.ca_file".into()
        }
        CertificateError::Expired => "certificate expired".into(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "certificate expired at {} ({} ago)",
            time_of(*not_after),
            roughly(time.as_secs().saturating_sub(not_after.as_secs()))
        ),
        CertificateError::NotValidYet => "certificate not yet valid (is a clock wrong?)".into(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "certificate not valid before {} (is a clock wrong?)",
            time_of(*not_before)
        ),
        CertificateError::NotValidForName => {
            "certificate not valid for the host in the URL (its subjectAltName does not name it)"
                .into()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names = if presented.is_empty() {
                "no subjectAltName at all".to_string()
            } else {
                presented
                    .iter()
                    .map(|n| san(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "certificate not valid for {} (it names {names})",
                expected.to_str()
            )
        }
        CertificateError::BadSignature => "bad certificate signature".into(),
        CertificateError::Revoked => "certificate revoked".into(),
        CertificateError::InvalidPurpose => {
            "the certificate's extendedKeyUsage does not allow this use".into()
        }
        CertificateError::InvalidPurposeContext { required, .. } => {
            format!("the certificate's extendedKeyUsage does not allow {required}")
        }
        CertificateError::BadEncoding => "the certificate is not valid DER".into(),
        other => other.to_string(),
    }
}

/// A subject alternative name as openssl prints it (`DNS:host`, `IP:10.0.0.2`), from webpki's
/// `DnsName("host")` / `IpAddress(10.0.0.2)`.
fn san(presented: &str) -> String {
    if let Some(name) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
    {
        format!("DNS:{name}")
    } else if let Some(ip) = presented
        .strip_prefix("IpAddress(")
        .and_then(|n| n.strip_suffix(')'))
    {
        format!("IP:{ip}")
    } else {
        presented.to_string()
    }
}

/// One line saying why a TLS connection failed, for errors and the log.
pub fn describe(e: &Error) -> String {
    match e {
        Error::InvalidCertificate(c) => {
            format!("certificate verify failed: {}", describe_certificate(c))
        }
        Error::AlertReceived(alert) => match alert {
            AlertDescription::UnknownCA => "the other side refused our certificate: unknown CA \
                 (it does not trust the CA that signed our node.tls.cert_file)"
                .into(),
            AlertDescription::CertificateExpired => {
                "the other side refused our certificate: certificate expired or not yet valid"
                    .into()
            }
            AlertDescription::CertificateRequired => {
                "the other side requires a client certificate: node.tls.require_client_cert is set there"
                    .into()
            }
            AlertDescription::BadCertificate | AlertDescription::UnsupportedCertificate => {
                "the other side refused our certificate (bad certificate)".into()
            }
            AlertDescription::HandshakeFailure | AlertDescription::ProtocolVersion => {
                "handshake failure: no TLS version or cipher suite in common".into()
            }
            other => format!("the other side sent the TLS alert {other:?}"),
        },
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "the other side does not speak TLS (does it serve plain http://?)".into()
        }
        Error::NoCertificatesPresented => "no certificate was presented".into(),
        Error::InconsistentKeys(_) => "the key does not match the certificate".into(),
        other => other.to_string(),
    }
}

/// The TLS failure somewhere in an error's chain, described. An `io::Error` is looked into
/// (tokio-rustls wraps the rustls error in one, and the https connector wraps that in another,
/// whose `source()` skips both).
pub fn find_in_chain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut depth = 0;
    while let Some(e) = current {
        depth += 1;
        if depth > 32 {
            return None;
        }
        if let Some(tls) = e.downcast_ref::<Error>() {
            return Some(describe(tls));
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_is_found_inside_nested_io_errors() {
        let inner = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let outer = std::io::Error::other(inner);
        let found = find_in_chain(&outer).unwrap();
        assert_eq!(
            found,
            "certificate verify failed: unknown issuer: it is not signed by a CA in node.tls.ca_file"
        );
        assert_eq!(find_in_chain(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn names_read_like_openssl() {
        assert_eq!(
            san("DnsName(\"jenkins01.example.com\")"),
            "DNS:jenkins01.example.com"
        );
        assert_eq!(san("IpAddress(10.0.0.2)"), "IP:10.0.0.2");
        let e = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap().to_owned(),
            presented: vec![
                "DnsName(\"a.example\")".into(),
                "IpAddress(10.0.0.2)".into(),
            ],
        };
        assert_eq!(
            describe_certificate(&e),
            "certificate not valid for 127.0.0.1 (it names DNS:a.example, IP:10.0.0.2)"
        );
    }
}
