//! Evidence backends: where the enclave's attestation evidence comes from.
//!
//! Today: `sim`, the simulated TDX platform of the `attestation` crate under
//! a root CA kept in kokon's data directory (created on first use, key file
//! mode 0600). Hardware backends (configfs-tsm, /dev/tdx_guest,
//! /dev/sev-guest) plug in here; there is never a silent fallback to `sim`:
//! the backend is chosen explicitly and reported in every bundle.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use kokon_attestation::sim::{
    SimRoot, SimTd, SimTdx, SIM_ROOT_CERT_FILE, SIM_ROOT_DIR, SIM_ROOT_KEY_FILE,
};
use kokon_attestation::tdx::Measurement;
use zeroize::Zeroizing;

/// The TEE backend chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeKind {
    /// The simulated TDX platform.
    Sim,
}

impl std::str::FromStr for TeeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sim" => Ok(Self::Sim),
            "tdx" | "snp" | "auto" => Err(format!("--tee {s}: hardware evidence acquisition is not part of this build yet; only --tee sim is available")),
            other => Err(format!("unknown TEE {other:?}: expected sim")),
        }
    }
}

/// A running evidence backend.
pub enum Backend {
    /// Simulated TDX.
    Sim(Box<SimTdx>),
}

impl Backend {
    /// The backend's name as reported in bundles.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sim(_) => "sim",
        }
    }

    /// Extends the runtime register (RTMR3) with an event digest.
    pub fn extend_runtime_measurement(&mut self, digest: &Measurement) {
        match self {
            Backend::Sim(tdx) => tdx.extend_rtmr3(digest),
        }
    }

    /// Produces evidence binding `report_data`.
    pub fn evidence(&self, report_data: [u8; 64]) -> anyhow::Result<Vec<u8>> {
        match self {
            Backend::Sim(tdx) => Ok(tdx.quote(report_data)?),
        }
    }
}

/// SHA-384 of a file: the sim's MRTD of the enclave binary.
pub fn measure_file(path: &Path) -> anyhow::Result<Measurement> {
    let bytes =
        fs::read(path).with_context(|| format!("reading {} to measure it", path.display()))?;
    Ok(kokon_attestation::sim::mr_td_of(&bytes))
}

/// Starts the sim backend: loads or creates the sim root, then provisions a platform.
pub fn start_sim(data_dir: &Path, mr_td: Measurement, now: i64) -> anyhow::Result<Backend> {
    let root = load_or_create_sim_root(data_dir, now)?;
    let td = SimTd {
        mr_td,
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    Ok(Backend::Sim(Box::new(SimTdx::new(&root, td, now)?)))
}

/// Loads the sim root from `<data_dir>/sim-root/`, creating it on first use.
///
/// Creation writes certificate and key into a private temporary directory
/// and renames that directory into place, so concurrent first starts agree
/// on one root and never pair one's certificate with another's key.
pub fn load_or_create_sim_root(data_dir: &Path, now: i64) -> anyhow::Result<SimRoot> {
    let dir = data_dir.join(SIM_ROOT_DIR);
    if !dir.exists() {
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let tmp = data_dir.join(format!(".sim-root.{}", std::process::id()));
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let root = SimRoot::generate(now)?;
        write_file(&tmp.join(SIM_ROOT_KEY_FILE), root.key_pkcs8(), 0o600)?;
        write_file(&tmp.join(SIM_ROOT_CERT_FILE), root.cert_der(), 0o644)?;
        if fs::rename(&tmp, &dir).is_err() {
            // Another process installed its root first: use that one.
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    let cert_path = dir.join(SIM_ROOT_CERT_FILE);
    let key_path = dir.join(SIM_ROOT_KEY_FILE);
    let cert = fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key = Zeroizing::new(
        fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?,
    );
    SimRoot::from_parts(cert, key)
        .with_context(|| format!("sim root in {} is unusable", dir.display()))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
