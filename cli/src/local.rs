//! What the CLI finds on this machine (data directory, enclave binary,
//! `just setup`'s paths, policies: the client library's [`kokon_client::local`]),
//! and the clients it makes (`--ca`).

use std::path::{Path, PathBuf};

use kokon_policies::Policy;

pub use kokon_client::local::{data_dir, sim_root_file};

/// The enclave binary (see [`kokon_client::local::enclave_binary`]).
pub fn enclave_binary() -> anyhow::Result<PathBuf> {
    Ok(kokon_client::local::enclave_binary()?)
}

/// A path the set-up provides (see [`kokon_client::local::setup_path`]).
pub fn env_path(var: &str) -> anyhow::Result<PathBuf> {
    Ok(kokon_client::local::setup_path(var)?)
}

/// Loads a policy file for this machine (see [`kokon_client::local::load_policy`]).
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    Ok(kokon_client::local::load_policy(path)?)
}

/// The certificate authorities `--ca` names, beside the Mozilla roots.
static EXTRA_CA: std::sync::OnceLock<Vec<kokon_client::CertificateDer<'static>>> =
    std::sync::OnceLock::new();

/// Reads `--ca` once, before any client is made.
pub fn trust_ca(path: &Path) -> anyhow::Result<()> {
    let certs = kokon_fetch::read_certificates(path)?;
    let _ = EXTRA_CA.set(certs);
    Ok(())
}

/// A client for the host at `base` (`https://` verified against the
/// Mozilla roots and `--ca`, or plain `http://`).
pub fn client(base: &str) -> anyhow::Result<kokon_client::Client> {
    if !base.starts_with("http://") && !base.starts_with("https://") {
        anyhow::bail!(
            "--host {base}: a host URL needs its scheme: https://{base}, or http://{base} on loopback"
        );
    }
    let ca = EXTRA_CA.get().map(Vec::as_slice).unwrap_or_default();
    Ok(kokon_client::Client::trusting(base, ca)?)
}
