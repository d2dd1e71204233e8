//! The policy file's TOML types and their resolution into a [`Policy`].

use std::collections::BTreeMap;

use kokon_attestation::roots::AmdProduct;
use kokon_attestation::sim::SIM_ROOT;
use kokon_attestation::snp::TcbVersion;
use kokon_attestation::tdx::{Measurement, TcbStatus};
use kokon_attestation::{roots, TrustAnchor, TrustAnchors};
use serde::Deserialize;
use thiserror::Error;

use crate::registers::{Register, REGISTER_NAMES};
use crate::{Policy, LOCAL_ENCLAVE_BUILD};

/// The policy as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: String,
    #[serde(default)]
    description: String,
    evidence: EvidenceSection,
    #[serde(default)]
    measurements: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    tcb: Option<TcbSection>,
    #[serde(default)]
    snp: Option<SnpSection>,
    #[serde(default)]
    billing: Option<BillingSection>,
    #[serde(default)]
    gpu: Option<GpuSection>,
    models: ModelsSection,
}

/// What the policy requires of the GPUs' attestation evidence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuSection {
    #[serde(default)]
    required: bool,
    /// Defaults to `required`.
    #[serde(default)]
    require_cc: Option<bool>,
    /// Defaults to `required`.
    #[serde(default)]
    require_ocsp: Option<bool>,
    /// Defaults to `required`.
    #[serde(default)]
    require_rims: Option<bool>,
    #[serde(default)]
    rim_anchors: Option<Vec<String>>,
    #[serde(default)]
    anchors: Option<Vec<String>>,
    #[serde(default)]
    measurements: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    driver_versions: Vec<String>,
    #[serde(default)]
    min_driver_version: Option<String>,
    #[serde(default)]
    vbios_versions: Vec<String>,
}

/// What a policy requires of the GPU evidence a bundle carries. A policy
/// without a `[gpu]` section has the default: GPU evidence is optional
/// and, when a bundle carries some, must be genuine (chained to NVIDIA's
/// Device Identity CA) and fresh, with nothing pinned.
#[derive(Debug, Clone)]
pub struct GpuRequirements {
    /// Whether a bundle must carry at least one GPU report.
    pub required: bool,
    /// Whether the claims must state GPUs in confidential-computing mode:
    /// the CC feature on, developer-tools mode off, the production
    /// environment (or NVIDIA's simulation one, under `allow_simulated`),
    /// the GPUs ready, protected PCIe with more than one GPU, and one
    /// report per GPU. Defaults to `required`.
    pub require_cc: bool,
    /// Whether each GPU's evidence must come with NVIDIA's OCSP responses
    /// for its chain (fetched by the host), all verified and good. When
    /// false, responses that come are still verified. Defaults to
    /// `required`.
    pub require_ocsp: bool,
    /// Whether each GPU's report must be appraised against NVIDIA's
    /// reference integrity manifests for its driver and its VBIOS
    /// (fetched by the host): both verified under `rim_anchors` and every
    /// active index matching. When false, RIMs that come are still
    /// checked. Defaults to `required`.
    pub require_rims: bool,
    /// The roots RIM signing chains must end in.
    pub rim_anchors: TrustAnchors,
    /// The roots GPU certificate chains must end in (apart from the CPU
    /// evidence's roots).
    pub anchors: TrustAnchors,
    /// Allowed SHA-384 digests per pinned measurement index (1 to 254).
    pub measurements: BTreeMap<u8, Vec<Vec<u8>>>,
    /// Driver versions accepted; empty accepts any.
    pub driver_versions: Vec<String>,
    /// The lowest driver version accepted (numbers separated by dots).
    pub min_driver_version: Option<String>,
    /// VBIOS versions accepted (any case); empty accepts any.
    pub vbios_versions: Vec<String>,
}

impl GpuRequirements {
    /// The requirements of a policy without a `[gpu]` section.
    pub fn default_nvidia() -> Result<Self, LoadError> {
        GpuSection {
            required: false,
            require_cc: None,
            require_ocsp: None,
            require_rims: None,
            rim_anchors: None,
            anchors: None,
            measurements: BTreeMap::new(),
            driver_versions: Vec::new(),
            min_driver_version: None,
            vbios_versions: Vec::new(),
        }
        .resolve()
    }
}

impl GpuSection {
    fn resolve(self) -> Result<GpuRequirements, LoadError> {
        let anchors = embedded_roots(
            "gpu.anchors",
            self.anchors,
            roots::NVIDIA_DEVICE_ROOT,
            roots::nvidia_device_root,
        )?;
        let rim_anchors = embedded_roots(
            "gpu.rim_anchors",
            self.rim_anchors,
            roots::NVIDIA_RIM_ROOT,
            roots::nvidia_rim_root,
        )?;
        let mut measurements = BTreeMap::new();
        for (index, values) in &self.measurements {
            let field = format!("gpu.measurements.{index}");
            let i = index
                .parse::<u8>()
                .ok()
                .filter(|i| (1..=254).contains(i))
                .ok_or_else(|| invalid(&field, "the index must be a number from 1 to 254"))?;
            let digests = values
                .iter()
                .map(|v| hex_bytes(&field, v, 48))
                .collect::<Result<Vec<_>, _>>()?;
            measurements.insert(i, digests);
        }
        if let Some(min) = &self.min_driver_version {
            let numbers = min
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !numbers {
                return Err(invalid(
                    "gpu.min_driver_version",
                    format!("{min:?} is not numbers separated by dots (e.g. \"550.90.07\")"),
                ));
            }
        }
        Ok(GpuRequirements {
            required: self.required,
            require_cc: self.require_cc.unwrap_or(self.required),
            require_ocsp: self.require_ocsp.unwrap_or(self.required),
            require_rims: self.require_rims.unwrap_or(self.required),
            rim_anchors,
            anchors,
            measurements,
            driver_versions: self.driver_versions,
            min_driver_version: self.min_driver_version,
            vbios_versions: self.vbios_versions,
        })
    }
}

/// The roots a `[gpu]` field names (`known` when it names none), each of
/// which must be the one embedded root `known`, loaded by `load`.
fn embedded_roots(
    field: &str,
    names: Option<Vec<String>>,
    known: &str,
    load: fn() -> Result<kokon_attestation::TrustAnchor, kokon_attestation::Error>,
) -> Result<TrustAnchors, LoadError> {
    let names = names.unwrap_or_else(|| vec![known.to_string()]);
    let mut anchors = TrustAnchors::default();
    for name in &names {
        if name != known {
            return Err(invalid(
                field,
                format!("unknown root {name:?}; known: {known}"),
            ));
        }
        anchors
            .roots
            .push(load().map_err(|e| invalid(field, e.to_string()))?);
    }
    if anchors.roots.is_empty() {
        return Err(invalid(field, "at least one root is required"));
    }
    Ok(anchors)
}

/// What the client agrees to pay.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillingSection {
    /// The highest price per unit (a classifier's inference), nanotons,
    /// receipts may charge.
    #[serde(default)]
    max_nanoton_per_unit: u64,
    /// The highest price per prompt token of a text model, nanotons.
    #[serde(default)]
    max_nanoton_per_prompt_token: u64,
    /// The highest price per completion token of a text model, nanotons.
    #[serde(default)]
    max_nanoton_per_completion_token: u64,
}

/// Requirements on the vendor's TCB appraisal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcbSection {
    /// TDX: accepted Intel TCB statuses (e.g. ["UpToDate"]); evidence
    /// without collateral is rejected when this section is present.
    #[serde(default)]
    allowed_statuses: Vec<TcbStatus>,
    /// TDX: advisory IDs tolerated; any other advisory rejects.
    #[serde(default)]
    allowed_advisories: Vec<String>,
    /// TDX: the lowest TCB evaluation data number accepted (Intel raises it
    /// at each TCB recovery; collateral older than the floor is refused).
    #[serde(default)]
    min_tcb_evaluation_data_number: u32,
    /// SNP: the minimum reported TCB per product line (TCB numbering
    /// differs between Milan, Genoa and Turin); a product without a floor
    /// is rejected.
    #[serde(default)]
    snp_minimum: BTreeMap<AmdProduct, SnpFloor>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnpFloor {
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
    #[serde(default)]
    fmc: Option<u8>,
}

/// SNP guest-policy and VMPL requirements.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpSection {
    /// Whether a migration agent may be associated with the guest.
    pub allow_migration_agent: bool,
    /// Whether the host may run with SMT enabled.
    pub allow_smt: bool,
    /// The least privileged VMPL a report may come from (0 = most privileged).
    pub max_vmpl: u32,
    /// Whether AMD's CRL must come with the evidence (and revoke nothing in
    /// its chain).
    #[serde(default)]
    pub require_crl: bool,
}

/// What a policy requires of the vendor's TCB appraisal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbRequirements {
    /// Accepted TDX TCB statuses.
    pub allowed_statuses: Vec<TcbStatus>,
    /// Tolerated advisory IDs.
    pub allowed_advisories: Vec<String>,
    /// Lowest TCB evaluation data number accepted.
    pub min_tcb_evaluation_data_number: u32,
    /// SNP minimum reported TCB per product line.
    pub snp_minimum: BTreeMap<AmdProduct, TcbVersion>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceSection {
    trusted_roots: Vec<String>,
    allow_simulated: bool,
    allow_debug: bool,
    max_age_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsSection {
    allowed: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: String,
    digest: String,
}

/// An allowed model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedModel {
    /// The name it is served under.
    pub name: String,
    /// SHA-256 of the ONNX file.
    pub digest: [u8; 32],
}

/// Values that only this machine knows, for policies that refer to them.
#[derive(Debug, Clone, Default)]
pub struct LocalReferences {
    /// This installation's sim root, for `trusted_roots = ["sim-local"]`.
    pub sim_root: Option<TrustAnchor>,
    /// MRTD of the locally built enclave, for `"local-enclave-build"`.
    pub enclave_build_mrtd: Option<Measurement>,
}

/// Why a policy could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The TOML does not parse or has unknown fields.
    #[error("policy syntax: {0}")]
    Syntax(String),
    /// A value is invalid.
    #[error("policy {field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn hex_bytes(field: &str, text: &str, len: usize) -> Result<Vec<u8>, LoadError> {
    let bytes =
        hex::decode(text).map_err(|e| invalid(field, format!("{text:?} is not hex: {e}")))?;
    if bytes.len() != len {
        return Err(invalid(
            field,
            format!("expected {len} bytes, found {}", bytes.len()),
        ));
    }
    Ok(bytes)
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], LoadError> {
    let bytes =
        hex::decode(text).map_err(|e| invalid(field, format!("{text:?} is not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| invalid(field, format!("expected {N} bytes, found {}", b.len())))
}

impl Policy {
    /// Parses and resolves a policy.
    pub fn from_toml(text: &str, locals: &LocalReferences) -> Result<Self, LoadError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| LoadError::Syntax(e.to_string()))?;
        let mut anchors = TrustAnchors::default();
        for name in &file.evidence.trusted_roots {
            let anchor = match name.as_str() {
                roots::INTEL_SGX_ROOT => roots::intel_sgx_root()
                    .map_err(|e| invalid("evidence.trusted_roots", e.to_string()))?,
                amd if AmdProduct::from_root_name(amd).is_some() => AmdProduct::from_root_name(amd)
                    .map(roots::amd_ark)
                    .unwrap_or(Err(kokon_attestation::Error::TooLarge { what: "root" }))
                    .map_err(|e| invalid("evidence.trusted_roots", e.to_string()))?,
                SIM_ROOT => {
                    if !file.evidence.allow_simulated {
                        return Err(invalid(
                            "evidence.trusted_roots",
                            "\"sim-local\" is listed but allow_simulated = false",
                        ));
                    }
                    locals.sim_root.clone().ok_or_else(|| {
                        invalid("evidence.trusted_roots", "\"sim-local\": this machine has no sim root yet (start `kokon host --tee sim` once)")
                    })?
                }
                other => {
                    return Err(invalid(
                        "evidence.trusted_roots",
                        format!("unknown root {other:?}; known: intel-sgx-root, amd-ark-milan, amd-ark-genoa, amd-ark-turin, sim-local"),
                    ))
                }
            };
            anchors.roots.push(anchor);
        }
        if anchors.roots.is_empty() {
            return Err(invalid(
                "evidence.trusted_roots",
                "at least one root is required",
            ));
        }
        let mut measurements = BTreeMap::new();
        for (name, values) in &file.measurements {
            let register = Register::parse(name).ok_or_else(|| {
                invalid(
                    format!("measurements.{name}"),
                    format!("unknown register; known: {REGISTER_NAMES}"),
                )
            })?;
            let field = format!("measurements.{name}");
            let resolved = values
                .iter()
                .map(|v| match v.as_str() {
                    LOCAL_ENCLAVE_BUILD if register == Register::MrTd => {
                        locals.enclave_build_mrtd.map(|m| m.to_vec()).ok_or_else(|| {
                            invalid(
                                &field,
                                "\"local-enclave-build\": no local enclave binary was found to measure",
                            )
                        })
                    }
                    hex => hex_bytes(&field, hex, register.size()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            measurements.insert(register, resolved);
        }
        let models = file
            .models
            .allowed
            .iter()
            .map(|m| {
                Ok(AllowedModel {
                    name: m.name.clone(),
                    digest: hex_array::<32>("models.allowed.digest", &m.digest)?,
                })
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        let tcb = file.tcb.map(|t| TcbRequirements {
            allowed_statuses: t.allowed_statuses,
            allowed_advisories: t.allowed_advisories,
            min_tcb_evaluation_data_number: t.min_tcb_evaluation_data_number,
            snp_minimum: t
                .snp_minimum
                .into_iter()
                .map(|(product, f)| {
                    (
                        product,
                        TcbVersion {
                            fmc: f.fmc,
                            bootloader: f.bootloader,
                            tee: f.tee,
                            snp: f.snp,
                            microcode: f.microcode,
                        },
                    )
                })
                .collect(),
        });
        let gpu = match file.gpu {
            Some(section) => section.resolve()?,
            None => GpuRequirements::default_nvidia()?,
        };
        Ok(Self {
            tcb,
            snp: file.snp,
            gpu,
            max_price_per_unit: file
                .billing
                .map(|b| u128::from(b.max_nanoton_per_unit))
                .unwrap_or(0),
            max_price_per_prompt_token: file
                .billing
                .map(|b| u128::from(b.max_nanoton_per_prompt_token))
                .unwrap_or(0),
            max_price_per_completion_token: file
                .billing
                .map(|b| u128::from(b.max_nanoton_per_completion_token))
                .unwrap_or(0),
            name: file.name,
            description: file.description,
            anchors,
            allow_simulated: file.evidence.allow_simulated,
            allow_debug: file.evidence.allow_debug,
            max_age_seconds: file.evidence.max_age_seconds,
            measurements,
            models,
        })
    }
}
