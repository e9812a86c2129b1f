//! TLS client settings for SMTP: the public roots plus an optional extra CA,
//! verification on unless an operator switches it off for one connection.
//! One crypto provider (ring) everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The public roots plus the certificates of a PEM text (at least one, each a usable trust anchor).
pub fn roots_with(extra_ca_pem: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_ca_pem {
        let certs: Vec<_> =
            CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        if certs.is_empty() {
            return Err("no certificate found".to_owned());
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("not a usable CA certificate: {e}"))?;
        }
    }
    Ok(roots)
}

/// Client configurations, built once per (verify, extra CA) pair: loading the
/// root store is too slow to repeat for every message.
#[derive(Default)]
pub struct TlsConfigs {
    cache: Mutex<HashMap<(bool, Option<String>), Arc<ClientConfig>>>,
}

impl TlsConfigs {
    pub fn connector(&self, verify: bool, extra_ca_pem: Option<&str>) -> Result<TlsConnector, String> {
        let key = (verify, extra_ca_pem.map(str::to_owned));
        let mut cache = self.cache.lock().expect("TLS cache lock");
        if let Some(config) = cache.get(&key) {
            return Ok(TlsConnector::from(config.clone()));
        }
        let config = Arc::new(client_config(verify, extra_ca_pem)?);
        cache.insert(key, config.clone());
        Ok(TlsConnector::from(config))
    }
}

/// A client configuration verifying servers against the public roots (and `extra_ca_pem`), unless `verify` is off.
pub fn client_config(verify: bool, extra_ca_pem: Option<&str>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if verify {
        builder.with_root_certificates(roots_with(extra_ca_pem)?).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(config)
}

/// Used only when an operator turns `tls_verify` off for a connection: the
/// channel is still encrypted, but the server is not authenticated.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
