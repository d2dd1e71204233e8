//! TLS for the host's front, from certificate and key files (PEM) that are
//! read again when they change, so that a renewed certificate (ACME, say)
//! takes effect on the next connection without a restart. A renewal that
//! does not load (half-written, or a key that does not match) is logged and
//! the previous certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Where the host serves TLS, and from which files.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Address to listen on for TLS.
    pub listen: std::net::SocketAddr,
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The current server configuration, reloaded when its files change.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Loaded>,
}

struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    config: Arc<ServerConfig>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{}: no certificate in it",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: no PEM private key in it", key.display()))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .with_context(|| {
                format!(
                    "{} and {} do not make a certificate and its key",
                    cert.display(),
                    key.display()
                )
            })?;
    Ok(Arc::new(config))
}

impl TlsFiles {
    /// Loads the files now (an error names the file and what is wrong).
    pub fn open(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let stamp = (modified(cert), modified(key));
        let config = load(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: Mutex::new(Loaded { stamp, config }),
        })
    }

    /// The configuration for a new connection: reloaded first if either
    /// file changed since it was loaded.
    pub fn config(&self) -> Option<Arc<ServerConfig>> {
        let mut current = self.current.lock().ok()?;
        let stamp = (modified(&self.cert), modified(&self.key));
        if stamp != current.stamp {
            match load(&self.cert, &self.key) {
                Ok(config) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    *current = Loaded { stamp, config };
                }
                Err(e) => {
                    // Retried on the next connection (the stamp is kept).
                    tracing::warn!(error = %format!("{e:#}"), "the changed TLS certificate does not load; serving the previous one");
                }
            }
        }
        Some(current.config.clone())
    }
}
