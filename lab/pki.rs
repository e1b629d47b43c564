//! Dev-only: test certificates made at run time (rcgen): a cluster CA, node certificates signed
//! by it (valid, expired), another CA for "the wrong CA", and the PEM files a sidecar's
//! `node.tls` names. Used by the lab harness ([`super::Spec::tls`]) and `tests/tls.rs`.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// How long a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday for ten years.
    Current,
    /// From yesterday until this many days from now.
    ExpiresInDays(i64),
    /// The whole of 2020: expired.
    Expired,
}

/// A certificate authority that can sign node certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The three files of a sidecar's `node.tls`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn validity(params: &mut CertificateParams, validity: Validity) {
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    match validity {
        Validity::Current => {
            params.not_before = now - day;
            params.not_after = now + day * 3650;
        }
        Validity::ExpiresInDays(days) => {
            params.not_before = now - day;
            params.not_after = now + day * days as i32;
        }
        Validity::Expired => {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
    }
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, Validity::Current);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A node certificate (server and client authentication) for `name`, valid for every name
    /// and IP address in `sans`.
    pub fn issue(&self, name: &str, sans: &[&str], valid: Validity) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("node params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params, valid);
        let key = KeyPair::generate().expect("a node key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes `issued` and the CA `ca_pem` as `<dir>/<stem>.crt`, `<stem>.key` (mode 600) and
/// `<stem>-ca.crt`, replacing what is there (the same paths, new contents: a rotation).
pub fn write_files(dir: &Path, stem: &str, issued: &Issued, ca_pem: &str) -> TlsFiles {
    fs::create_dir_all(dir).expect("tls dir");
    let files = TlsFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
        ca: dir.join(format!("{stem}-ca.crt")),
    };
    fs::write(&files.cert, &issued.cert_pem).expect("write cert");
    fs::write(&files.key, &issued.key_pem).expect("write key");
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600)).expect("chmod key");
    fs::write(&files.ca, ca_pem).expect("write ca");
    files
}

/// The product's own TLS configuration built from `files` (as a sidecar with these `node.tls`
/// files would have it): its `client` is how a node calls other sidecars.
pub fn node_tls(files: &TlsFiles, require_client_cert: bool) -> jenkins_ha::io::tls::NodeTls {
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let key = jenkins_ha::secret::Secret::new(read(&files.key));
    jenkins_ha::io::tls::NodeTls::build(jenkins_ha::io::tls::TlsFiles {
        cert_file: files.cert.clone(),
        cert_pem: &read(&files.cert),
        key_file: files.key.clone(),
        key_pem: &key,
        ca_file: files.ca.clone(),
        ca_pem: &read(&files.ca),
        require_client_cert,
    })
    .unwrap_or_else(|e| panic!("{}: {}", e.file.field(), e.message))
}

/// A client configuration that trusts `ca_pem` and has no client certificate (HAProxy's check,
/// a liveness probe, a curl without --cert).
pub fn client_without_certificate(ca_pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add root");
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(jenkins_ha::io::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A client configuration that trusts `ca_pem` and presents `identity` as its client
/// certificate, whoever signed it (a peer with a certificate from another CA).
pub fn client_with_certificate(
    ca_pem: &str,
    identity: &Issued,
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add root");
    }
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the certificate");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .expect("the key");
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(jenkins_ha::io::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client certificate"),
    )
}
