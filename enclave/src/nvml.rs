//! The GPUs through NVML, the NVIDIA driver's management library
//! (`libnvidia-ml.so.1`, loaded at run time by `nvml-wrapper`): their
//! confidential-computing settings, attestation reports, certificate
//! chains and ready state ([`crate::gpu::GpuAttester`]); [`start`] starts
//! the enclave's GPUs for its `--device`.
//!
//! `nvml-wrapper`'s safe API covers all of it but the settings' CC
//! environment, which it reads only folded into one yes-or-no answer; the
//! settings are read here through its raw binding of
//! `nvmlSystemGetConfComputeSettings` on the library it loaded: the one
//! `unsafe` call of this module ([`Nvml::cc_settings`]).

#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::Context;
use kokon_attestation::claims::{CcEnvironment, MultiGpuMode};
use kokon_attestation::nvidia::spdm::NONCE_LEN;
use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper_sys::bindings::{
    nvmlSystemConfComputeSettings_v1_t, NVML_CC_SYSTEM_DEVTOOLS_MODE_OFF,
    NVML_CC_SYSTEM_DEVTOOLS_MODE_ON, NVML_CC_SYSTEM_ENVIRONMENT_PROD,
    NVML_CC_SYSTEM_ENVIRONMENT_SIM, NVML_CC_SYSTEM_ENVIRONMENT_UNAVAILABLE,
    NVML_CC_SYSTEM_FEATURE_DISABLED, NVML_CC_SYSTEM_FEATURE_ENABLED, NVML_CC_SYSTEM_MULTIGPU_NONE,
    NVML_CC_SYSTEM_MULTIGPU_NVLE, NVML_CC_SYSTEM_MULTIGPU_PROTECTED_PCIE,
};

use crate::gpu::{CcSettings, GpuAttester, GpuMode, Gpus};
use crate::inference::Device;

/// The enclave's GPUs for `device`: none on the CPU (nothing GPU is
/// touched); with CUDA, the GPUs through NVML, started in `mode` under the
/// embedded NVIDIA root at `now` ([`Gpus::start`]).
pub fn start(device: Device, mode: GpuMode, now: i64) -> anyhow::Result<Option<Gpus>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Cuda => {
            let anchors = kokon_attestation::TrustAnchors {
                roots: vec![kokon_attestation::roots::nvidia_device_root()?],
            };
            Gpus::start(Arc::new(Nvml::load()?), mode, anchors, now).map(Some)
        }
    }
}

/// The library NVML is loaded from.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// NVML, loaded and initialised.
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
}

/// An NVML call's failure, naming the call.
fn failed(call: &'static str) -> impl FnOnce(NvmlError) -> anyhow::Error {
    move |e| anyhow::anyhow!("NVML {call}: {e}")
}

/// Runs `f`, an NVML call through `nvml-wrapper`, turning a panic into an
/// error: the wrapper copies reports and chains by the sizes the driver
/// returns, and slices (which panic when a size exceeds its buffer).
fn guarded<T>(call: &'static str, f: impl FnOnce() -> Result<T, NvmlError>) -> anyhow::Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| anyhow::anyhow!("NVML {call}: the driver returned a size beyond its buffer"))?
        .map_err(failed(call))
}

impl Nvml {
    /// Loads [`NVML_LIBRARY`] and initialises it. Without the NVIDIA
    /// driver the error says so.
    pub fn load() -> anyhow::Result<Self> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
            anyhow::anyhow!(
                "NVML ({NVML_LIBRARY}, the NVIDIA driver's management library) could not be loaded or initialised: {e}; --device cuda needs it to check the GPUs' confidential-computing state"
            )
        })?;
        Ok(Self { nvml })
    }

    fn device(&self, gpu: u32) -> anyhow::Result<nvml_wrapper::Device<'_>> {
        self.nvml
            .device_by_index(gpu)
            .map_err(failed("nvmlDeviceGetHandleByIndex"))
    }

    /// The ready state is system-wide, but `nvml-wrapper` reaches it
    /// through a device: the first.
    fn first_device(&self) -> anyhow::Result<nvml_wrapper::Device<'_>> {
        self.device(0).context("the GPUs-ready state")
    }
}

impl GpuAttester for Nvml {
    fn gpu_count(&self) -> anyhow::Result<u32> {
        self.nvml
            .device_count()
            .map_err(failed("nvmlDeviceGetCount"))
    }

    fn cc_settings(&self) -> anyhow::Result<CcSettings> {
        const CALL: &str = "nvmlSystemGetConfComputeSettings";
        // A driver without the call, or GPUs without confidential
        // computing: the feature is off.
        let off = CcSettings {
            cc_feature: false,
            devtools_mode: false,
            environment: CcEnvironment::Unavailable,
            multi_gpu_mode: MultiGpuMode::None,
        };
        let sym = match nvml_sym(self.nvml.lib().nvmlSystemGetConfComputeSettings.as_ref()) {
            Ok(sym) => sym,
            Err(e) => {
                tracing::warn!(error = %e, "NVML has no {CALL}: no confidential computing");
                return Ok(off);
            }
        };
        let mut settings = nvmlSystemConfComputeSettings_v1_t {
            // NVML_STRUCT_VERSION(SystemConfComputeSettings, 1) of nvml.h.
            version: u32::try_from(std::mem::size_of::<nvmlSystemConfComputeSettings_v1_t>())
                .unwrap_or(0)
                | (1 << 24),
            environment: 0,
            ccFeature: 0,
            devToolsMode: 0,
            multiGpuMode: 0,
        };
        // SAFETY: `sym` is nvmlSystemGetConfComputeSettings, resolved from
        // the library `self.nvml` loaded and initialised (and keeps loaded
        // while it lives); it writes only the version-1 structure behind
        // the pointer, which is a valid, exclusive, initialised local of
        // that type whose version field says so.
        let code = unsafe { sym(&mut settings) };
        match nvml_try(code) {
            Ok(()) => {}
            Err(NvmlError::NotSupported) => {
                tracing::warn!("NVML {CALL}: not supported; no confidential computing");
                return Ok(off);
            }
            Err(e) => return Err(failed(CALL)(e)),
        }
        let unknown = |field: &str, value: u32| {
            anyhow::anyhow!("NVML {CALL}: {field} {value} is unknown to this kokon")
        };
        Ok(CcSettings {
            cc_feature: match settings.ccFeature {
                NVML_CC_SYSTEM_FEATURE_DISABLED => false,
                NVML_CC_SYSTEM_FEATURE_ENABLED => true,
                v => return Err(unknown("ccFeature", v)),
            },
            devtools_mode: match settings.devToolsMode {
                NVML_CC_SYSTEM_DEVTOOLS_MODE_OFF => false,
                NVML_CC_SYSTEM_DEVTOOLS_MODE_ON => true,
                v => return Err(unknown("devToolsMode", v)),
            },
            environment: match settings.environment {
                NVML_CC_SYSTEM_ENVIRONMENT_UNAVAILABLE => CcEnvironment::Unavailable,
                NVML_CC_SYSTEM_ENVIRONMENT_SIM => CcEnvironment::Simulation,
                NVML_CC_SYSTEM_ENVIRONMENT_PROD => CcEnvironment::Production,
                v => return Err(unknown("environment", v)),
            },
            multi_gpu_mode: match settings.multiGpuMode {
                NVML_CC_SYSTEM_MULTIGPU_NONE => MultiGpuMode::None,
                NVML_CC_SYSTEM_MULTIGPU_PROTECTED_PCIE => MultiGpuMode::ProtectedPcie,
                NVML_CC_SYSTEM_MULTIGPU_NVLE => MultiGpuMode::Nvle,
                v => return Err(unknown("multiGpuMode", v)),
            },
        })
    }

    fn ready(&self) -> anyhow::Result<bool> {
        let device = self.first_device()?;
        guarded("nvmlSystemGetConfComputeGpusReadyState", || {
            device.get_confidential_compute_state()
        })
    }

    fn set_ready(&self) -> anyhow::Result<()> {
        let device = self.first_device()?;
        guarded("nvmlSystemSetConfComputeGpusReadyState", || {
            device.set_confidential_compute_state(true)
        })
    }

    fn report(&self, gpu: u32, nonce: &[u8; NONCE_LEN]) -> anyhow::Result<Vec<u8>> {
        let device = self.device(gpu)?;
        let report = guarded("nvmlDeviceGetConfComputeGpuAttestationReport", || {
            device.confidential_compute_gpu_attestation_report(*nonce)
        })?;
        Ok(report.attestation_report)
    }

    fn certificate_chain(&self, gpu: u32) -> anyhow::Result<String> {
        let device = self.device(gpu)?;
        let chain = guarded("nvmlDeviceGetConfComputeGpuCertificate", || {
            device.confidential_compute_gpu_certificate()
        })?;
        // PEM text; trailing NULs of a C buffer are not part of it.
        let mut text = chain.attestation_cert_chain;
        while text.last() == Some(&0) {
            text.pop();
        }
        String::from_utf8(text).map_err(|e| {
            anyhow::anyhow!(
                "NVML nvmlDeviceGetConfComputeGpuCertificate: the attestation chain is not text (PEM): {e}"
            )
        })
    }
}
