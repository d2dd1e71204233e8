//! What a client finds on this machine: kokon's data directory, the
//! enclave binary built here, the paths `just setup` wrote, and the local
//! references a development policy names (`sim-local`: this installation's
//! simulated-TEE root; `local-enclave-build`: the measurement of the enclave
//! binary built here). Production policies name neither.
//!
//! ```no_run
//! # async fn run() -> Result<(), kokon_client::ClientError> {
//! let policy = kokon_client::local::load_policy("policies/dev-sim.toml".as_ref())?;
//! let enclave = kokon_client::Client::new("http://127.0.0.1:8443").attest(&policy).await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use kokon_attestation::sim;
use kokon_attestation::tdx::Measurement;
use kokon_attestation::TrustAnchor;
use kokon_policies::{LocalReferences, Policy};

use crate::ClientError;

/// The development policy of the kokon checkout (`policies/dev-sim.toml`):
/// a local simulated enclave, never hardware.
pub const DEV_POLICY_FILE: &str = "policies/dev-sim.toml";

fn local(message: String) -> ClientError {
    ClientError::Local(message)
}

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

/// The enclave binary: `$KOKON_ENCLAVE_BIN`, else `kokon-enclave` next to
/// this executable.
pub fn enclave_binary() -> Result<PathBuf, ClientError> {
    if let Some(p) = std::env::var_os("KOKON_ENCLAVE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe =
        std::env::current_exe().map_err(|e| local(format!("locating this executable: {e}")))?;
    Ok(exe.with_file_name("kokon-enclave"))
}

/// The file `just setup` writes, with the paths of ONNX Runtime, the models
/// and the TON bridge.
pub const SETUP_FILE: &str = ".cache/kokon.env";

/// The checkout this executable was built in (found from its directory
/// upward), else the current directory's: the first with a set-up file.
fn checkout() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    exe.iter()
        .flat_map(|e| e.ancestors())
        .chain(cwd.iter().flat_map(|c| c.ancestors()))
        .find(|dir| dir.join(SETUP_FILE).is_file())
        .map(Path::to_path_buf)
}

/// A path the set-up provides: `$VAR` when set (an override), else the
/// set-up file's value, else an error saying what to run.
pub fn setup_path(var: &str) -> Result<PathBuf, ClientError> {
    if let Some(p) = std::env::var_os(var) {
        return Ok(PathBuf::from(p));
    }
    let Some(root) = checkout() else {
        return Err(local(format!("${var} is not set and no {SETUP_FILE} was found above this executable or the current directory: run `just setup` in the kokon checkout (or set ${var})")));
    };
    let file = root.join(SETUP_FILE);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| local(format!("reading {}: {e}", file.display())))?;
    text.lines()
        .find_map(|line| line.strip_prefix(var)?.strip_prefix('='))
        .map(|value| PathBuf::from(value.trim()))
        .ok_or_else(|| {
            local(format!(
                "{} has no {var}: run `just setup` again (or set ${var})",
                file.display()
            ))
        })
}

/// Where this installation keeps its sim root's certificate.
pub fn sim_root_file(data_dir: &Path) -> PathBuf {
    data_dir
        .join(sim::SIM_ROOT_DIR)
        .join(sim::SIM_ROOT_CERT_FILE)
}

/// The sim root of this installation, if the sim TEE has run here.
pub fn sim_root_anchor(data_dir: &Path) -> Result<Option<TrustAnchor>, ClientError> {
    let path = sim_root_file(data_dir);
    match std::fs::read(&path) {
        Ok(der) => Ok(Some(sim::anchor(der))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(local(format!("reading {}: {e}", path.display()))),
    }
}

/// SHA-384 of a file: the sim MRTD of an enclave binary.
pub fn measure(path: &Path) -> Result<Measurement, ClientError> {
    let bytes = std::fs::read(path)
        .map_err(|e| local(format!("reading {} to measure it: {e}", path.display())))?;
    Ok(sim::mr_td_of(&bytes))
}

/// Loads a policy file, resolving `sim-local` and `local-enclave-build`
/// from this machine.
pub fn load_policy(path: &Path) -> Result<Policy, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| local(format!("reading policy {}: {e}", path.display())))?;
    let enclave = enclave_binary()?;
    let locals = LocalReferences {
        sim_root: sim_root_anchor(&data_dir())?,
        enclave_build_mrtd: if enclave.is_file() {
            Some(measure(&enclave)?)
        } else {
            None
        },
    };
    Policy::from_toml(&text, &locals).map_err(|e| local(format!("policy {}: {e}", path.display())))
}

/// The development policy ([`DEV_POLICY_FILE`]) of the kokon checkout this
/// program runs from (or was built in), resolved for this machine.
pub fn dev_policy() -> Result<Policy, ClientError> {
    let root = checkout()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    load_policy(&root.join(DEV_POLICY_FILE))
}
