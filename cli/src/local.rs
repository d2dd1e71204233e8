//! What the CLI finds on this machine: data directory, enclave binary,
//! ONNX Runtime, model, and the local references policies may name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attestation::sim;
use kokon_attestation::tdx::Measurement;
use kokon_attestation::TrustAnchor;
use kokon_policies::{LocalReferences, Policy};

/// kokon's data directory: `$KOKON_DATA_DIR`, else the platform's data dir + `kokon`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("KOKON_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("kokon")
        })
}

/// The enclave binary: `$KOKON_ENCLAVE_BIN`, else `kokon-enclave` next to this executable.
pub fn enclave_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("KOKON_ENCLAVE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the kokon executable")?;
    Ok(exe.with_file_name("kokon-enclave"))
}

/// The file `just setup` writes, with the paths of ONNX Runtime, the
/// models and the TON bridge.
const SETUP_FILE: &str = ".cache/kokon.env";

/// The set-up file of the checkout this executable was built in (found
/// from the executable's directory upward), else of the current
/// directory's: `None` when neither has one.
fn setup_file() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    exe.iter()
        .flat_map(|e| e.ancestors())
        .chain(cwd.iter().flat_map(|c| c.ancestors()))
        .map(|dir| dir.join(SETUP_FILE))
        .find(|f| f.is_file())
}

/// A path the set-up provides: `$VAR` when set (an override), else the
/// set-up file's value, else an error saying what to run.
pub fn env_path(var: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Ok(PathBuf::from(p));
    }
    let Some(file) = setup_file() else {
        anyhow::bail!("${var} is not set and no {SETUP_FILE} was found above this executable or the current directory: run `just setup` in the kokon checkout (or set ${var})");
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix(var)?.strip_prefix('='))
        .map(|value| PathBuf::from(value.trim()))
        .with_context(|| {
            format!(
                "{} has no {var}: run `just setup` again (or set ${var})",
                file.display()
            )
        })
}

/// Where this installation keeps its sim root's certificate.
pub fn sim_root_file(data_dir: &Path) -> PathBuf {
    data_dir
        .join(sim::SIM_ROOT_DIR)
        .join(sim::SIM_ROOT_CERT_FILE)
}

/// The sim root of this installation, if the sim TEE has run here.
pub fn sim_root_anchor(data_dir: &Path) -> anyhow::Result<Option<TrustAnchor>> {
    let path = sim_root_file(data_dir);
    match std::fs::read(&path) {
        Ok(der) => Ok(Some(sim::anchor(der))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// SHA-384 of a file, the sim MRTD of an enclave binary.
pub fn measure(path: &Path) -> anyhow::Result<Measurement> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {} to measure it", path.display()))?;
    Ok(sim::mr_td_of(&bytes))
}

/// Loads a policy file, resolving `sim-local` and `local-enclave-build`.
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    let enclave = enclave_binary()?;
    let locals = LocalReferences {
        sim_root: sim_root_anchor(&data_dir())?,
        enclave_build_mrtd: if enclave.is_file() {
            Some(measure(&enclave)?)
        } else {
            None
        },
    };
    Policy::from_toml(&text, &locals).with_context(|| format!("policy {}", path.display()))
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
