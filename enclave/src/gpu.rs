//! The GPUs' confidential computing (NVIDIA Hopper and later): their CC
//! state, their attestation evidence and their ready state.
//!
//! With `--device cuda` the enclave, before it loads a model:
//!
//! 1. reads the system's CC state ([`GpuAttester::cc_settings`]) and
//!    the GPU count; with no GPU it refuses to start; in `--gpu-mode
//!    confidential` (the default) it refuses to start when the CC feature is
//!    off, developer-tools mode is on, or several GPUs are not in protected
//!    PCIe mode ([`GpuCcState::shortfalls`]), saying what it expected and
//!    found; `--gpu-mode development` (measured in the serving
//!    configuration) lets such GPUs serve;
//! 2. when the CC feature is on, fetches each GPU's attestation report
//!    (for a fresh random nonce) and certificate chain and verifies them
//!    with [`kokon_attestation::nvidia::verify`] under the embedded NVIDIA
//!    root at its own clock; then sets the GPUs-ready state (a GPU in CC
//!    mode accepts no work before) and reads it back.
//!
//! Then, for each attestation request ([`Gpus::attest`]), when the CC
//! feature is on, each GPU's report answers [`gpu_nonce`] of the client's
//! nonce; the evidence goes into the bundle and its digests, with the CC
//! state as read at that moment, into the claims the TEE signs.
//!
//! The GPU side is a [`GpuAttester`]: NVML ([`crate::nvml::Nvml`], and
//! [`crate::nvml::start`] for the enclave's device) on a real machine,
//! [`SimGpus`] (simulated GPUs under a test root) in tests.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use kokon_attestation::claims::{CcEnvironment, GpuCcState, MultiGpuMode};
use kokon_attestation::nvidia::{self, gpu_nonce, spdm::NONCE_LEN, Expectations};
use kokon_attestation::sim::SimGpu;
use kokon_attestation::{GpuEvidence, TrustAnchors};

/// The system-wide confidential-computing settings NVML reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcSettings {
    /// Whether the CC feature is on.
    pub cc_feature: bool,
    /// Whether developer-tools mode is on.
    pub devtools_mode: bool,
    /// The CC environment.
    pub environment: CcEnvironment,
    /// The multi-GPU mode.
    pub multi_gpu_mode: MultiGpuMode,
}

/// The GPU side of the enclave: what NVML offers for confidential computing.
pub trait GpuAttester: Send + Sync {
    /// How many GPUs there are (indexed from 0).
    fn gpu_count(&self) -> anyhow::Result<u32>;
    /// The system's confidential-computing settings.
    fn cc_settings(&self) -> anyhow::Result<CcSettings>;
    /// Whether the GPUs accept work (the GPUs-ready state).
    fn ready(&self) -> anyhow::Result<bool>;
    /// Sets the GPUs-ready state: they accept work.
    fn set_ready(&self) -> anyhow::Result<()>;
    /// GPU `gpu`'s attestation report (SPDM GET_MEASUREMENTS request and
    /// MEASUREMENTS response) for `nonce`.
    fn report(&self, gpu: u32, nonce: &[u8; NONCE_LEN]) -> anyhow::Result<Vec<u8>>;
    /// GPU `gpu`'s attestation certificate chain (PEM, leaf first).
    fn certificate_chain(&self, gpu: u32) -> anyhow::Result<String>;
}

/// Reads the CC state: settings, GPU count and ready state (which means
/// something only with the CC feature on: off, it reads as not ready).
pub fn read_state(attester: &dyn GpuAttester) -> anyhow::Result<GpuCcState> {
    let settings = attester.cc_settings()?;
    Ok(GpuCcState {
        cc_feature: settings.cc_feature,
        devtools_mode: settings.devtools_mode,
        environment: settings.environment,
        multi_gpu_mode: settings.multi_gpu_mode,
        gpu_count: attester.gpu_count()?,
        ready: settings.cc_feature && attester.ready()?,
    })
}

/// `--gpu-mode`: whether the GPUs must be in confidential-computing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// They must: the CC feature on, developer-tools mode off, protected
    /// PCIe with more than one GPU.
    #[default]
    Confidential,
    /// They need not (development machines): the serving configuration
    /// says so, and the claims show the GPUs' state.
    Development,
}

impl GpuMode {
    /// Its name, as the command line and the serving configuration write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Development => "development",
        }
    }
}

impl fmt::Display for GpuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GpuMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "confidential" => Ok(Self::Confidential),
            "development" => Ok(Self::Development),
            other => Err(format!(
                "unknown GPU mode {other:?}: expected confidential or development"
            )),
        }
    }
}

/// The enclave's GPUs, checked: what answers attestation requests.
pub struct Gpus {
    attester: Arc<dyn GpuAttester>,
    mode: GpuMode,
    anchors: TrustAnchors,
    /// Whether the CC feature was on at start: only then do the GPUs
    /// produce evidence.
    evidence: bool,
}

impl Gpus {
    /// Checks the GPUs for `mode` (see the module documentation), verifies
    /// their evidence once under `anchors` at `now` (Unix seconds) when the
    /// CC feature is on, then sets the GPUs-ready state. Every refusal says
    /// what was expected and what was found; the ready state is left alone.
    pub fn start(
        attester: Arc<dyn GpuAttester>,
        mode: GpuMode,
        anchors: TrustAnchors,
        now: i64,
    ) -> anyhow::Result<Self> {
        let state = read_state(attester.as_ref())
            .context("reading the GPUs' confidential-computing state")?;
        tracing::info!(state = %state.describe(), %mode, "GPU confidential-computing state");
        if state.gpu_count == 0 {
            anyhow::bail!("--device cuda: expected at least one GPU, found none (NVML lists 0)");
        }
        let shortfalls = state.shortfalls();
        if mode == GpuMode::Confidential && !shortfalls.is_empty() {
            anyhow::bail!(
                "--gpu-mode confidential: expected GPUs in confidential-computing mode (CC feature on, developer-tools mode off, protected PCIe with more than one GPU), found {}: {}; to serve on them anyway, start with --gpu-mode development (measured in the serving configuration; the claims show the GPUs' state)",
                state.describe(),
                shortfalls.join(", ")
            );
        }
        let gpus = Self {
            attester,
            mode,
            anchors,
            evidence: state.cc_feature,
        };
        if !state.cc_feature {
            tracing::warn!(
                "--gpu-mode development: the GPUs' CC feature is off; serving without GPU evidence"
            );
            return Ok(gpus);
        }
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
        gpus.evidence(&nonce, now)
            .context("checking the GPUs' attestation evidence before setting them ready")?;
        gpus.attester
            .set_ready()
            .context("setting the GPUs-ready state")?;
        if !gpus.attester.ready()? {
            anyhow::bail!("the GPUs-ready state: expected ready after setting it, found not ready");
        }
        tracing::info!(
            gpus = state.gpu_count,
            "GPU evidence verified; GPUs set ready"
        );
        Ok(gpus)
    }

    /// The mode it was started in.
    pub fn mode(&self) -> GpuMode {
        self.mode
    }

    /// Each GPU's evidence for `client_nonce` (its reports answer
    /// [`gpu_nonce`] of it; none when the CC feature is off), each verified
    /// at `now` as at start, and the CC state as read now: what the
    /// bundle carries and the claims name.
    pub fn attest(
        &self,
        client_nonce: &[u8],
        now: i64,
    ) -> anyhow::Result<(Vec<GpuEvidence>, GpuCcState)> {
        let state = read_state(self.attester.as_ref())
            .context("reading the GPUs' confidential-computing state")?;
        let evidence = match self.evidence {
            true => self.evidence(client_nonce, now)?,
            false => Vec::new(),
        };
        Ok((evidence, state))
    }

    /// Each GPU's report for [`gpu_nonce`] of `client_nonce` with its
    /// chain, verified under the anchors at `now`.
    fn evidence(&self, client_nonce: &[u8], now: i64) -> anyhow::Result<Vec<GpuEvidence>> {
        let expect = Expectations {
            nonce: gpu_nonce(client_nonce),
            ..Expectations::default()
        };
        (0..self.attester.gpu_count()?)
            .map(|gpu| {
                let evidence = GpuEvidence {
                    report: self
                        .attester
                        .report(gpu, &expect.nonce)
                        .with_context(|| format!("GPU {gpu}'s attestation report"))?,
                    chain_pem: self
                        .attester
                        .certificate_chain(gpu)
                        .with_context(|| format!("GPU {gpu}'s certificate chain"))?,
                    // The host adds NVIDIA's OCSP responses: the enclave has no network.
                    ocsp: Vec::new(),
                };
                nvidia::verify(
                    &evidence.report,
                    evidence.chain_pem.as_bytes(),
                    &self.anchors,
                    now,
                    &expect,
                )
                .with_context(|| format!("GPU {gpu}'s evidence does not verify"))?;
                Ok(evidence)
            })
            .collect()
    }
}

/// Simulated GPUs for tests: each a [`SimGpu`] (its own chain under its
/// own simulated root) re-signing a real report template with the nonce
/// asked for, and settings as given.
pub struct SimGpus {
    gpus: Vec<SimGpu>,
    template: Vec<u8>,
    settings: CcSettings,
    ready: AtomicBool,
    wrong_nonce: Mutex<Option<[u8; NONCE_LEN]>>,
}

impl SimGpus {
    /// `count` simulated GPUs with `settings`, not ready, whose reports are
    /// `template` (a real report, which must parse) with the nonce asked for.
    pub fn new(template: &[u8], count: u32, settings: CcSettings) -> anyhow::Result<Self> {
        let gpus = (0..count)
            .map(|_| SimGpu::for_template(template))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            gpus,
            template: template.to_vec(),
            settings,
            ready: AtomicBool::new(false),
            wrong_nonce: Mutex::new(None),
        })
    }

    /// From now on every report carries `nonce` instead of the one asked
    /// for (a GPU that replays an old report); `None` undoes it.
    pub fn set_wrong_nonce(&self, nonce: Option<[u8; NONCE_LEN]>) {
        if let Ok(mut n) = self.wrong_nonce.lock() {
            *n = nonce;
        }
    }

    /// The roots of their chains, as trust anchors (marked simulated).
    pub fn anchors(&self) -> TrustAnchors {
        TrustAnchors {
            roots: self.gpus.iter().map(SimGpu::anchor).collect(),
        }
    }

    fn gpu(&self, gpu: u32) -> anyhow::Result<&SimGpu> {
        usize::try_from(gpu)
            .ok()
            .and_then(|i| self.gpus.get(i))
            .ok_or_else(|| anyhow::anyhow!("no GPU {gpu}: {} simulated", self.gpus.len()))
    }
}

impl GpuAttester for SimGpus {
    fn gpu_count(&self) -> anyhow::Result<u32> {
        Ok(u32::try_from(self.gpus.len())?)
    }

    fn cc_settings(&self) -> anyhow::Result<CcSettings> {
        Ok(self.settings)
    }

    fn ready(&self) -> anyhow::Result<bool> {
        Ok(self.ready.load(Ordering::SeqCst))
    }

    fn set_ready(&self) -> anyhow::Result<()> {
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn report(&self, gpu: u32, nonce: &[u8; NONCE_LEN]) -> anyhow::Result<Vec<u8>> {
        let wrong = self.wrong_nonce.lock().ok().and_then(|n| *n);
        let nonce = wrong.as_ref().unwrap_or(nonce);
        Ok(self.gpu(gpu)?.report(&self.template, nonce)?)
    }

    fn certificate_chain(&self, gpu: u32) -> anyhow::Result<String> {
        Ok(self.gpu(gpu)?.chain_pem().to_string())
    }
}
