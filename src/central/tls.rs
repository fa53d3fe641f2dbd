//! TLS to the central log, set up only when the server takes it: the rustls settings (the
//! `sslrootcert` file or the system's trust store, read once per phone) are built at the
//! first handshake, not before the server has answered `SSLRequest`. With `sslmode=prefer`
//! (the default) against a server without TLS, the trust store is never read: a phone of a
//! fleet keeps its memory for calls.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS of one central-log target; clones share the settings once built.
#[derive(Clone, Debug, Default)]
pub struct LazyTls {
    rootcert: Option<PathBuf>,
    built: Arc<OnceLock<rustls::ClientConfig>>,
}

/// One connection's TLS, for the server's `host`.
pub struct LazyConnect {
    tls: LazyTls,
    host: String,
}

/// The stream of a TLS connection (tokio-postgres-rustls's).
type Stream<S> = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;

impl LazyTls {
    pub fn new(rootcert: Option<PathBuf>) -> LazyTls {
        LazyTls {
            rootcert,
            built: Arc::default(),
        }
    }

    /// Whether the settings were built (a handshake was asked for).
    pub fn is_built(&self) -> bool {
        self.built.get().is_some()
    }

    /// The rustls settings, built at the first call.
    pub fn config(&self) -> Result<rustls::ClientConfig, String> {
        if let Some(c) = self.built.get() {
            return Ok(c.clone());
        }
        let c = self.build()?;
        Ok(self.built.get_or_init(|| c).clone())
    }

    fn build(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match &self.rootcert {
            Some(path) => {
                let what = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", path.display());
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
                    roots.add(cert.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
    }
}

impl<S> MakeTlsConnect<S> for LazyTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = LazyConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<LazyConnect, io::Error> {
        Ok(LazyConnect {
            tls: self.clone(),
            host: host.to_owned(),
        })
    }
}

impl<S> TlsConnect<S> for LazyConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let config = self.tls.config().map_err(io::Error::other)?;
            let mut make = MakeRustlsConnect::new(config);
            let Ok(connect) = MakeTlsConnect::<S>::make_tls_connect(&mut make, &self.host);
            connect.connect(stream).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_root_file_is_named_and_nothing_is_built() {
        let dir = std::env::temp_dir().join(format!("ctiphone-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("root.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let tls = LazyTls::new(Some(bad.clone()));
        let e = tls.config().expect_err("a broken PEM file");
        assert!(e.contains("sslrootcert") && e.contains("root.pem"), "{e}");
        assert!(!tls.is_built());
        let missing = LazyTls::new(Some(dir.join("missing.pem")));
        assert!(missing.config().unwrap_err().contains("missing.pem"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
