//! The HTTP client settings of the CTI engine and the shared phonebook: reqwest over rustls,
//! whose server certificates are checked against the system's trust store by
//! rustls-platform-verifier, as reqwest itself would, except that the trust store is read at
//! the first HTTPS handshake instead of when the client is built. A contact center whose CRM
//! is on plain `http://` (a loopback or intranet service) never reads it, which keeps
//! ~0.3 MiB per phone (a fleet runs hundreds), and a host without CA certificates gets a
//! clear error on its first HTTPS access instead of a client that cannot be built.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A client builder with those TLS settings (HTTP/1.1, TLS 1.2 and 1.3).
pub fn builder() -> reqwest::ClientBuilder {
    match tls_config() {
        Ok(config) => reqwest::Client::builder().tls_backend_preconfigured(config),
        // Not reached with aws-lc-rs (it has both versions); reqwest's own settings then.
        Err(_) => reqwest::Client::builder(),
    }
}

fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(SystemRoots {
        provider: provider.clone(),
        built: OnceLock::new(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        // Not a weaker check: the verifier is rustls-platform-verifier's, built on first use.
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// rustls-platform-verifier's verifier, made at the first certificate to check.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<CryptoProvider>,
    built: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl SystemRoots {
    fn verifier(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.built
            .get_or_init(|| rustls_platform_verifier::Verifier::new(self.provider.clone()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
