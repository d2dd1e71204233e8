//! What a client finds on this machine: kokon's data directory, the
//! enclave binary built here, the paths `just setup` wrote, and the local
//! references a development policy names (`sim-local`: this installation's
//! simulated-TEE root; `local-enclave-build`: the measurement of the enclave
//! binary built here). Production policies name neither.
//!
//! Errors are [`ClientError::Local`]: they name the file or variable at
//! fault and say what to run or set.
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
///
/// ```
/// use kokon_client::local::DEV_POLICY_FILE;
///
/// assert_eq!(DEV_POLICY_FILE, "policies/dev-sim.toml");
/// ```
pub const DEV_POLICY_FILE: &str = "policies/dev-sim.toml";

fn local(message: String) -> ClientError {
    ClientError::Local(message)
}

/// kokon's data directory: `$KOKON_DATA_DIR`, else the platform's data dir + `kokon`
/// (on Linux `$XDG_DATA_HOME/kokon` or `~/.local/share/kokon`; the
/// temporary directory's when there is none).
///
/// ```
/// use std::path::PathBuf;
///
/// let dir = kokon_client::local::data_dir();
/// match std::env::var_os("KOKON_DATA_DIR") {
///     Some(set) => assert_eq!(dir, PathBuf::from(set)),
///     None => assert!(dir.ends_with("kokon")),
/// }
/// ```
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
/// this executable (which need not exist: check before measuring it).
///
/// # Errors
///
/// [`ClientError::Local`] when this executable's path cannot be found.
///
/// ```
/// # fn main() -> Result<(), kokon_client::ClientError> {
/// let enclave = kokon_client::local::enclave_binary()?;
/// if std::env::var_os("KOKON_ENCLAVE_BIN").is_none() {
///     assert_eq!(enclave, std::env::current_exe().unwrap().with_file_name("kokon-enclave"));
/// }
/// # Ok(()) }
/// ```
pub fn enclave_binary() -> Result<PathBuf, ClientError> {
    if let Some(p) = std::env::var_os("KOKON_ENCLAVE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe =
        std::env::current_exe().map_err(|e| local(format!("locating this executable: {e}")))?;
    Ok(exe.with_file_name("kokon-enclave"))
}

/// The file `just setup` writes, with the paths of ONNX Runtime, the models
/// and the TON bridge (lines `NAME=path`), relative to the kokon checkout.
///
/// ```
/// assert_eq!(kokon_client::local::SETUP_FILE, ".cache/kokon.env");
/// ```
pub const SETUP_FILE: &str = ".cache/kokon.env";

/// The checkout this executable was built in (found from its directory
/// upward), else the current directory's: the first with a set-up file.
fn checkout() -> Option<PathBuf> {
    checkout_dir(SETUP_FILE)
}

/// The first directory, from this executable's upward and then from the
/// current directory's upward, that holds `rel`.
fn checkout_dir(rel: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    exe.iter()
        .flat_map(|e| e.ancestors())
        .chain(cwd.iter().flat_map(|c| c.ancestors()))
        .find(|dir| dir.join(rel).exists())
        .map(Path::to_path_buf)
}

/// A file or directory of the kokon checkout this program runs from: `rel`
/// in the first directory that holds it, from this executable's directory
/// upward, then from the current directory's; `None` when none does (an
/// installed `kokon`, far from any checkout).
///
/// ```
/// let lock = kokon_client::local::checkout_path("image/debian.lock");
/// assert!(lock.is_none_or(|p| p.ends_with("image/debian.lock")));
/// assert!(kokon_client::local::checkout_path("no/such/file.kokon").is_none());
/// ```
pub fn checkout_path(rel: &str) -> Option<PathBuf> {
    checkout_dir(rel).map(|dir| dir.join(rel))
}

/// A path the set-up provides: `$VAR` when set (an override), else the
/// set-up file's value, else an error saying what to run.
///
/// The set-up file is [`SETUP_FILE`] in the kokon checkout this executable
/// was built in (found from its directory upward), else in the current
/// directory or one above it.
///
/// # Errors
///
/// [`ClientError::Local`] when `$VAR` is not set and no set-up file is
/// found, the file cannot be read, or it has no `VAR` line; the message
/// names `VAR` and says to run `just setup` (or set `$VAR`).
///
/// ```
/// use kokon_client::{local, ClientError};
///
/// // The ONNX Runtime library `just setup` installed:
/// // let ort = local::setup_path("KOKON_ORT_LIB")?;
/// let Err(ClientError::Local(why)) = local::setup_path("KOKON_NO_SUCH_PATH") else {
///     panic!("found a path nobody set up");
/// };
/// assert!(why.contains("KOKON_NO_SUCH_PATH") && why.contains("just setup"), "{why}");
/// ```
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

/// Where this installation keeps its sim root's certificate, under its
/// data directory `data_dir` ([`data_dir`]).
///
/// ```
/// use std::path::Path;
///
/// let file = kokon_client::local::sim_root_file(Path::new("/var/lib/kokon"));
/// assert_eq!(file, Path::new("/var/lib/kokon/sim-root/root.der"));
/// ```
pub fn sim_root_file(data_dir: &Path) -> PathBuf {
    data_dir
        .join(sim::SIM_ROOT_DIR)
        .join(sim::SIM_ROOT_CERT_FILE)
}

/// The sim root of this installation, if the sim TEE has run here (its
/// certificate is in [`sim_root_file`]): the root that the development
/// policy's `sim-local` names.
///
/// # Errors
///
/// [`ClientError::Local`] when the certificate file exists but cannot be
/// read.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kokon_client::local;
///
/// let data_dir = std::env::temp_dir().join(format!("kokon-doc-{}", std::process::id()));
/// assert!(local::sim_root_anchor(&data_dir)?.is_none(), "the sim TEE never ran here");
///
/// // `kokon host --tee sim` creates the root once.
/// # let root = kokon_attestation::sim::SimRoot::generate(kokon_client::unix_now())?;
/// # let file = local::sim_root_file(&data_dir);
/// # std::fs::create_dir_all(file.parent().unwrap())?;
/// # std::fs::write(&file, root.cert_der())?;
/// assert!(local::sim_root_anchor(&data_dir)?.is_some());
/// # std::fs::remove_dir_all(&data_dir)?;
/// # Ok(()) }
/// ```
pub fn sim_root_anchor(data_dir: &Path) -> Result<Option<TrustAnchor>, ClientError> {
    let path = sim_root_file(data_dir);
    match std::fs::read(&path) {
        Ok(der) => Ok(Some(sim::anchor(der))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(local(format!("reading {}: {e}", path.display()))),
    }
}

/// SHA-384 of a file: the sim MRTD of an enclave binary (what the
/// development policy's `local-enclave-build` names).
///
/// # Errors
///
/// [`ClientError::Local`] when the file cannot be read.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sha2::{Digest, Sha384};
///
/// let file = std::env::temp_dir().join(format!("kokon-doc-measure-{}", std::process::id()));
/// std::fs::write(&file, b"an enclave binary")?;
/// let mrtd = kokon_client::local::measure(&file)?;
/// assert_eq!(mrtd[..], Sha384::digest(b"an enclave binary")[..]);
/// # std::fs::remove_file(&file)?;
/// # Ok(()) }
/// ```
pub fn measure(path: &Path) -> Result<Measurement, ClientError> {
    let bytes = std::fs::read(path)
        .map_err(|e| local(format!("reading {} to measure it: {e}", path.display())))?;
    Ok(sim::mr_td_of(&bytes))
}

/// Loads a policy file, resolving `sim-local` and `local-enclave-build`
/// from this machine ([`sim_root_anchor`] of [`data_dir`], [`measure`] of
/// [`enclave_binary`]). A policy that names neither (a production one)
/// loads the same anywhere.
///
/// # Errors
///
/// [`ClientError::Local`] when the file cannot be read, or the policy is
/// invalid or names a local value this machine lacks (the message says
/// which and what to run).
///
/// ```
/// # fn main() -> Result<(), kokon_client::ClientError> {
/// use std::path::Path;
/// use kokon_client::{local, ClientError};
///
/// # let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
/// let policy = local::load_policy(&checkout.join("policies/production-tdx.toml"))?;
/// assert_eq!(policy.name, "production-tdx");
/// assert!(!policy.allow_simulated);
///
/// let missing = local::load_policy(Path::new("no-such-policy.toml"));
/// assert!(matches!(missing, Err(ClientError::Local(why)) if why.contains("no-such-policy.toml")));
/// # Ok(()) }
/// ```
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
/// program runs from (or was built in), resolved for this machine: it
/// accepts only this machine's simulated TEE running the enclave built
/// here. Never use it for data that matters.
///
/// # Errors
///
/// Those of [`load_policy`]: no checkout found, or no sim root or enclave
/// build on this machine yet (start `kokon host --tee sim` once).
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{local, Client};
///
/// let policy = local::dev_policy()?;
/// assert!(policy.allow_simulated);
/// let enclave = Client::new("http://127.0.0.1:8443").attest(&policy).await?;
/// # Ok(()) }
/// ```
pub fn dev_policy() -> Result<Policy, ClientError> {
    let root = checkout()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    load_policy(&root.join(DEV_POLICY_FILE))
}
