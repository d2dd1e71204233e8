//! Evidence backends: where the enclave's attestation evidence comes from.
//!
//! - `sim`: the simulated TDX platform of the `attestation` crate under a
//!   root CA kept in kokon's data directory (created on first use, key file
//!   mode 0600).
//! - `tdx`, `snp`: the hardware, through configfs-tsm ([`crate::tsm`]); on
//!   kernels without it, through `/dev/sev-guest` ([`crate::sev_guest`]) or
//!   `/dev/tdx_guest` and the host's quoting service ([`crate::tdx_guest`]).
//! - `auto`: whichever of these the guest has.
//!
//! There is never a silent fallback to `sim`: the backend is chosen
//! explicitly (or detected as hardware) and reported in every bundle.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attestation::sim::{SimRoot, SimTcb, SimTd, SimTdx};
use kokon_attestation::snp::cert_table;
use kokon_attestation::tdx::Collateral;
use kokon_attestation::tdx::Measurement;
use kokon_attestation::{Evidence, EvidenceFormat};

use crate::tdx_guest::{self, QgsAddress};
use crate::tsm::{self, Tsm};

/// The TEE backend chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeKind {
    /// The simulated TDX platform.
    Sim,
    /// Intel TDX through configfs-tsm.
    Tdx,
    /// AMD SEV-SNP through configfs-tsm.
    Snp,
    /// Whichever hardware configfs-tsm reports; never sim.
    Auto,
}

impl std::str::FromStr for TeeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sim" => Ok(Self::Sim),
            "tdx" => Ok(Self::Tdx),
            "snp" => Ok(Self::Snp),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown TEE {other:?}: expected sim, tdx, snp or auto"
            )),
        }
    }
}

/// Where the hardware interfaces live (overridable for tests on fake trees).
#[derive(Debug, Clone)]
pub struct HardwarePaths {
    /// The configfs-tsm report directory.
    pub tsm_root: PathBuf,
    /// The TDX guest's sysfs directory.
    pub tdx_sysfs: PathBuf,
    /// The SEV guest device (used when configfs-tsm is absent).
    pub sev_guest: PathBuf,
    /// The TDX guest device (TDREPORTs when configfs-tsm is absent; legacy
    /// RTMR extension when the measurement sysfs is).
    pub tdx_guest: PathBuf,
    /// The host's TDX Quote Generation Service (used with `tdx_guest`).
    pub qgs: Option<QgsAddress>,
}

/// A running evidence backend.
pub enum Backend {
    /// Simulated TDX, with the sim PCS's collateral.
    Sim {
        /// The platform.
        tdx: Box<SimTdx>,
        /// Its collateral, issued at start.
        collateral: Box<Collateral>,
    },
    /// TDX hardware.
    Tdx {
        /// Its configfs-tsm interface.
        tsm: Tsm,
        /// Its sysfs directory (RTMR extension).
        sysfs: PathBuf,
        /// Its device (legacy RTMR extension).
        device: PathBuf,
    },
    /// TDX hardware through `/dev/tdx_guest` and the host's QGS (kernels
    /// without configfs-tsm).
    TdxDevice {
        /// The device node.
        device: PathBuf,
        /// The quoting service.
        qgs: QgsAddress,
        /// The sysfs directory (RTMR extension).
        sysfs: PathBuf,
    },
    /// SEV-SNP hardware.
    Snp {
        /// Its configfs-tsm interface.
        tsm: Tsm,
    },
    /// SEV-SNP hardware through `/dev/sev-guest` (kernels without configfs-tsm).
    SnpDevice {
        /// The device node.
        device: PathBuf,
    },
}

impl Backend {
    /// Starts the backend for `kind`. `Auto` picks the hardware that
    /// configfs-tsm reports and fails when there is none.
    pub fn start(
        kind: TeeKind,
        paths: &HardwarePaths,
        data_dir: &Path,
        sim: SimTd,
        now: i64,
    ) -> anyhow::Result<Backend> {
        let hardware = |expected: Option<&str>| -> anyhow::Result<Backend> {
            let tsm = match Tsm::open(&paths.tsm_root) {
                Ok(tsm) => tsm,
                Err(e) => return without_tsm(expected, paths, e),
            };
            let provider = tsm.provider()?;
            if let Some(expected) = expected {
                if provider != expected {
                    anyhow::bail!(
                        "--tee {kind:?}: configfs-tsm provider is {provider:?}, expected {expected:?}"
                    );
                }
            }
            match provider.as_str() {
                tsm::PROVIDER_TDX => Ok(Backend::Tdx {
                    tsm,
                    sysfs: paths.tdx_sysfs.clone(),
                    device: paths.tdx_guest.clone(),
                }),
                tsm::PROVIDER_SNP => Ok(Backend::Snp { tsm }),
                other => anyhow::bail!("unknown configfs-tsm provider {other:?}"),
            }
        };
        match kind {
            TeeKind::Sim => start_sim(data_dir, sim, now),
            TeeKind::Tdx => hardware(Some(tsm::PROVIDER_TDX)),
            TeeKind::Snp => hardware(Some(tsm::PROVIDER_SNP)),
            TeeKind::Auto => hardware(None).context(
                "--tee auto found no TEE hardware (use --tee sim for development; there is no silent fallback)",
            ),
        }
    }

    /// The backend's name as reported in bundles.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sim { .. } => "sim",
            Backend::Tdx { .. } | Backend::TdxDevice { .. } => "tdx",
            Backend::Snp { .. } | Backend::SnpDevice { .. } => "snp",
        }
    }

    /// Extends the runtime register (RTMR3) with an event digest. SEV-SNP
    /// has no runtime register: there the claims' digests are bound by the
    /// report data alone.
    pub fn extend_runtime_measurement(&mut self, digest: &Measurement) -> anyhow::Result<()> {
        match self {
            Backend::Sim { tdx, .. } => {
                tdx.extend_rtmr3(digest);
                Ok(())
            }
            Backend::Tdx { sysfs, device, .. } | Backend::TdxDevice { sysfs, device, .. } => {
                tdx_guest::extend_rtmr3(sysfs, device, digest)
            }
            Backend::Snp { .. } | Backend::SnpDevice { .. } => Ok(()),
        }
    }

    /// Produces evidence binding `report_data`.
    pub fn evidence(&self, report_data: [u8; 64]) -> anyhow::Result<Evidence> {
        let mut collateral = None;
        let (format, data, certificates) = match self {
            Backend::Sim { tdx, collateral: c } => {
                collateral = Some(c.as_ref().clone());
                (
                    EvidenceFormat::TdxQuote,
                    tdx.quote(report_data)?,
                    Vec::new(),
                )
            }
            Backend::Tdx { tsm, .. } => {
                let report = tsm.report(&report_data, tsm::PROVIDER_TDX)?;
                (EvidenceFormat::TdxQuote, report.outblob, Vec::new())
            }
            Backend::TdxDevice { device, qgs, .. } => {
                let td_report = tdx_guest::td_report(device, &report_data)?;
                let quote = tdx_guest::quote(qgs, &td_report, &report_data)?;
                (EvidenceFormat::TdxQuote, quote, Vec::new())
            }
            Backend::Snp { tsm } => {
                let report = tsm.report(&report_data, tsm::PROVIDER_SNP)?;
                // The host's certificate table, if any; the host may also add
                // the VCEK from AMD KDS later. Either way the client verifies.
                let certificates = match &report.auxblob {
                    Some(table) => cert_table::chain(&cert_table::parse(table)?)?,
                    None => Vec::new(),
                };
                (EvidenceFormat::SnpReport, report.outblob, certificates)
            }
            Backend::SnpDevice { device } => {
                let ext = crate::sev_guest::ext_report(device, &report_data)?;
                let certificates = match ext.certs.iter().any(|b| *b != 0) {
                    true => cert_table::chain(&cert_table::parse(&ext.certs)?)?,
                    false => Vec::new(),
                };
                (EvidenceFormat::SnpReport, ext.report, certificates)
            }
        };
        Ok(Evidence {
            format,
            data,
            certificates,
            collateral,
            crl: Vec::new(),
        })
    }
}

/// Without configfs-tsm: SEV-SNP through `/dev/sev-guest`, TDX through
/// `/dev/tdx_guest` and the host's quoting service (which must be configured:
/// a TDREPORT alone is verifiable only on the machine that made it).
fn without_tsm(
    expected: Option<&str>,
    paths: &HardwarePaths,
    tsm_error: anyhow::Error,
) -> anyhow::Result<Backend> {
    let snp_wanted = matches!(expected, None | Some(tsm::PROVIDER_SNP));
    if snp_wanted && paths.sev_guest.exists() {
        return Ok(Backend::SnpDevice {
            device: paths.sev_guest.clone(),
        });
    }
    let tdx_wanted = matches!(expected, None | Some(tsm::PROVIDER_TDX));
    if tdx_wanted && paths.tdx_guest.exists() {
        let Some(qgs) = paths.qgs.clone() else {
            anyhow::bail!(
                "{tsm_error:#}; {} exists, but turning its TDREPORT into a quote needs the host's Quote Generation Service: pass --qgs vsock:PORT or set port= in {}",
                paths.tdx_guest.display(),
                tdx_guest::TDX_ATTEST_CONF
            );
        };
        return Ok(Backend::TdxDevice {
            device: paths.tdx_guest.clone(),
            qgs,
            sysfs: paths.tdx_sysfs.clone(),
        });
    }
    Err(tsm_error)
}

/// SHA-384 of a file: the sim's MRTD of the enclave binary.
pub fn measure_file(path: &Path) -> anyhow::Result<Measurement> {
    let bytes =
        fs::read(path).with_context(|| format!("reading {} to measure it", path.display()))?;
    Ok(kokon_attestation::sim::mr_td_of(&bytes))
}

/// Reads a development VM's launch measurements (see [`kokon_attestation::sim::SimLaunch`]).
pub fn read_sim_launch(path: &Path) -> anyhow::Result<kokon_attestation::sim::SimLaunch> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a sim launch measurement (JSON with mrtd, rtmr0, rtmr1, rtmr2 in hex)",
            path.display()
        )
    })
}

/// Starts the sim backend: loads or creates the sim root, then provisions a platform.
pub fn start_sim(data_dir: &Path, td: SimTd, now: i64) -> anyhow::Result<Backend> {
    let root = load_or_create_sim_root(data_dir, now)?;
    let tdx = SimTdx::new(&root, td, now)?;
    let collateral = tdx.collateral(&sim_tcb()?, now)?;
    Ok(Backend::Sim {
        tdx: Box::new(tdx),
        collateral: Box::new(collateral),
    })
}

/// Environment variable (sim only) naming the TCB status the sim PCS
/// reports, e.g. `OutOfDate`: for tests of TCB policies end to end.
pub const SIM_TCB_STATUS_ENV: &str = "KOKON_SIM_TCB_STATUS";

fn sim_tcb() -> anyhow::Result<SimTcb> {
    let mut tcb = SimTcb::default();
    if let Ok(status) = std::env::var(SIM_TCB_STATUS_ENV) {
        tcb.status = serde_json::from_value(serde_json::Value::String(status.clone()))
            .with_context(|| format!("{SIM_TCB_STATUS_ENV}={status:?} is not a TCB status"))?;
    }
    Ok(tcb)
}

/// Loads the sim root from `<data_dir>/sim-root/`, creating it on first use
/// (see [`SimRoot::load_or_create`]).
pub fn load_or_create_sim_root(data_dir: &Path, now: i64) -> anyhow::Result<SimRoot> {
    Ok(SimRoot::load_or_create(data_dir, now)?)
}
