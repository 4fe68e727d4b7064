//! A test certificate authority made with rcgen: a certificate per host name, issued on first
//! use (by SNI) and cached, so a fake server can answer https for any site it is asked for.
//!
//! Shared by the tests' fake internet (tests/common/fake.rs) and the benchmark harness
//! (benches/harness.rs), which include this file by path. Nothing but loopback clients that
//! were handed `pem()` trust it.

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A CA and the leaf certificates it has issued, by host name.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust (`FETCH_EXTRA_ROOT_CERTS`).
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// One key for every leaf: generating a key per host would dominate large benches, and
    /// the tests never depend on keys differing.
    leaf_key: rcgen::KeyPair,
    signing: Arc<dyn rustls::sign::SigningKey>,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

impl TestCa {
    /// A fresh CA whose certificate carries `common_name`.
    pub fn new(common_name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).expect("signing key");
        Self {
            pem,
            issuer: rcgen::Issuer::new(ca, ca_key),
            leaf_key,
            signing,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificate (and key) for `host`, issued now if it was not yet.
    pub fn cert_for(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(c) = self.cache.lock().unwrap().get(host) {
            return Some(c.clone());
        }
        let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).ok()?;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host);
        let cert = params.signed_by(&self.leaf_key, &self.issuer).ok()?;
        let key = Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            self.signing.clone(),
        ));
        self.cache
            .lock()
            .unwrap()
            .insert(host.to_owned(), key.clone());
        Some(key)
    }

    /// A TLS server configuration (HTTP/1.1 only) whose certificates come from `resolver`.
    pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// Presents the certificate of the name the client asked for (SNI).
impl ResolvesServerCert for TestCa {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.cert_for(hello.server_name()?)
    }
}
