//! Appraisal policies: which verified evidence a client accepts.
//!
//! Evidence verification (the `attestation` crate) answers "is this genuine
//! TEE evidence binding these claims?". A [`Policy`] answers "is it the
//! enclave I am willing to send my data to?": trusted roots, whether
//! simulated TEEs or debug TDs are acceptable, how old evidence may be, the
//! allowed value of each measurement register, and the allowed models. In
//! RFC 9334 terms a policy holds the verifier's reference values.
//!
//! Policies are TOML files (see `policies/*.toml`). A rejection lists every
//! failed check with the expected and the found value.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use kokon_attestation::roots::AmdProduct;
use kokon_attestation::sim::SIM_ROOT;
use kokon_attestation::snp::TcbVersion;
use kokon_attestation::tdx::{Measurement, TcbStatus};
use kokon_attestation::{
    roots, PlatformTcb, TeeReport, TrustAnchor, TrustAnchors, VerifiedEvidence, VerifiedPlatform,
};
use serde::Deserialize;
use thiserror::Error;

/// The policy value that stands for "SHA-384 of the locally built enclave binary".
pub const LOCAL_ENCLAVE_BUILD: &str = "local-enclave-build";
/// Allowed clock skew for evidence issued "in the future" (seconds).
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

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
    models: ModelsSection,
}

/// What the client agrees to pay.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillingSection {
    /// The highest price per unit, nanotons, receipts may charge.
    max_nanoton_per_unit: u64,
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

/// A TDX measurement register a policy can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Register {
    /// MRTD: build-time TD measurement.
    MrTd,
    /// RTMR0-3.
    Rtmr(u8),
    /// MRSEAM: the TDX module.
    MrSeam,
    /// MRSIGNERSEAM: the TDX module's signer.
    MrSignerSeam,
    /// MRCONFIGID.
    MrConfigId,
    /// MROWNER.
    MrOwner,
    /// MROWNERCONFIG.
    MrOwnerConfig,
    /// TDATTRIBUTES (8 bytes): pins DEBUG, SEPT_VE_DISABLE, MIGRATABLE, PKS, ...
    TdAttributes,
    /// XFAM (8 bytes): the CPU extended features enabled for the TD.
    Xfam,
    /// SNP launch MEASUREMENT.
    SnpMeasurement,
    /// SNP HOST_DATA (32 bytes).
    SnpHostData,
    /// SNP ID_KEY_DIGEST.
    SnpIdKeyDigest,
}

const REGISTER_NAMES: &str = "mrtd, rtmr0, rtmr1, rtmr2, rtmr3, mrseam, mrsignerseam, mrconfigid, mrowner, mrownerconfig, tdattributes, xfam (TDX); snp_measurement, snp_host_data, snp_id_key_digest (SEV-SNP)";

impl Register {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "mrtd" => Self::MrTd,
            "rtmr0" => Self::Rtmr(0),
            "rtmr1" => Self::Rtmr(1),
            "rtmr2" => Self::Rtmr(2),
            "rtmr3" => Self::Rtmr(3),
            "mrseam" => Self::MrSeam,
            "mrsignerseam" => Self::MrSignerSeam,
            "mrconfigid" => Self::MrConfigId,
            "mrowner" => Self::MrOwner,
            "mrownerconfig" => Self::MrOwnerConfig,
            "tdattributes" => Self::TdAttributes,
            "xfam" => Self::Xfam,
            "snp_measurement" => Self::SnpMeasurement,
            "snp_host_data" => Self::SnpHostData,
            "snp_id_key_digest" => Self::SnpIdKeyDigest,
            _ => return None,
        })
    }

    /// Its size in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::SnpHostData => 32,
            Self::TdAttributes | Self::Xfam => 8,
            _ => 48,
        }
    }

    /// The register's value in a TEE report, or `None` when this kind of
    /// evidence has no such register.
    pub fn value(self, tee: &TeeReport) -> Option<&[u8]> {
        match tee {
            TeeReport::Tdx(td) => Some(match self {
                Self::MrTd => &td.mr_td,
                Self::Rtmr(i) => {
                    // `parse` only builds RTMR0-3.
                    let [r0, r1, r2, r3] = &td.rtmr;
                    match i {
                        0 => r0,
                        1 => r1,
                        2 => r2,
                        _ => r3,
                    }
                }
                Self::MrSeam => &td.mr_seam,
                Self::MrSignerSeam => &td.mr_signer_seam,
                Self::MrConfigId => &td.mr_config_id,
                Self::MrOwner => &td.mr_owner,
                Self::MrOwnerConfig => &td.mr_owner_config,
                Self::TdAttributes => &td.td_attributes,
                Self::Xfam => &td.xfam,
                Self::SnpMeasurement | Self::SnpHostData | Self::SnpIdKeyDigest => return None,
            }),
            TeeReport::Snp(r) => match self {
                Self::SnpMeasurement => Some(&r.measurement),
                Self::SnpHostData => Some(&r.host_data),
                Self::SnpIdKeyDigest => Some(&r.id_key_digest),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MrTd => f.write_str("MRTD"),
            Self::Rtmr(i) => write!(f, "RTMR{i}"),
            Self::MrSeam => f.write_str("MRSEAM"),
            Self::MrSignerSeam => f.write_str("MRSIGNERSEAM"),
            Self::MrConfigId => f.write_str("MRCONFIGID"),
            Self::MrOwner => f.write_str("MROWNER"),
            Self::MrOwnerConfig => f.write_str("MROWNERCONFIG"),
            Self::TdAttributes => f.write_str("TDATTRIBUTES"),
            Self::Xfam => f.write_str("XFAM"),
            Self::SnpMeasurement => f.write_str("SNP MEASUREMENT"),
            Self::SnpHostData => f.write_str("SNP HOST_DATA"),
            Self::SnpIdKeyDigest => f.write_str("SNP ID_KEY_DIGEST"),
        }
    }
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

/// A loaded, fully resolved policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The roots evidence must chain to.
    pub anchors: TrustAnchors,
    /// Whether evidence under a simulated root is acceptable.
    pub allow_simulated: bool,
    /// Whether a debug TD is acceptable.
    pub allow_debug: bool,
    /// Largest accepted age of evidence, in seconds.
    pub max_age_seconds: u64,
    /// Allowed values per pinned register (an empty list allows nothing).
    pub measurements: BTreeMap<Register, Vec<Vec<u8>>>,
    /// TCB requirements; `None` accepts evidence without a vendor appraisal.
    pub tcb: Option<TcbRequirements>,
    /// SNP guest-policy requirements; `None` puts none beyond debug.
    pub snp: Option<SnpSection>,
    /// The highest price per unit (nanotons) receipts may charge; 0 without a
    /// `[billing]` section (free enclaves only).
    pub max_price_per_unit: u128,
    /// Allowed models.
    pub models: Vec<AllowedModel>,
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

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check.
    pub check: String,
    /// What the policy expects.
    pub expected: String,
    /// What the evidence shows.
    pub found: String,
}

/// Why evidence was rejected by a policy: every failed check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct Rejection {
    /// The policy's name.
    pub policy: String,
    /// The failed checks.
    pub failures: Vec<Failure>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected by policy {:?}:", self.policy)?;
        for x in &self.failures {
            write!(
                f,
                "\n  - {}: expected {}, found {}",
                x.check, x.expected, x.found
            )?;
        }
        Ok(())
    }
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
        Ok(Self {
            tcb,
            snp: file.snp,
            max_price_per_unit: file
                .billing
                .map(|b| u128::from(b.max_nanoton_per_unit))
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

    /// Appraises verified evidence at `now` (Unix seconds): the platform
    /// checks of [`Policy::appraise_platform`], then evidence age and model.
    pub fn appraise(&self, evidence: &VerifiedEvidence, now: i64) -> Result<(), Rejection> {
        let mut failures = Vec::new();
        let mut fail = |check: &str, expected: String, found: String| {
            failures.push(Failure {
                check: check.into(),
                expected,
                found,
            })
        };
        self.platform_checks(&evidence.tee, &evidence.tcb, &evidence.anchor, &mut fail);
        let issued = evidence.claims.issued_at;
        let age = now.saturating_sub(issued);
        if age > i64::try_from(self.max_age_seconds).unwrap_or(i64::MAX) {
            fail(
                "evidence age",
                format!("at most {} s", self.max_age_seconds),
                format!("{age} s (issued at {issued}, checked at {now})"),
            );
        }
        if issued > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            fail(
                "evidence time",
                format!("issued no later than {now} + {MAX_CLOCK_SKEW_SECS} s"),
                format!("issued at {issued}"),
            );
        }
        let claims = &evidence.claims;
        if !self
            .models
            .iter()
            .any(|m| m.digest == claims.model_digest && m.name == claims.model_name)
        {
            fail(
                "model",
                format!(
                    "one of [{}]",
                    self.models
                        .iter()
                        .map(|m| format!("{} sha256:{}", m.name, hex::encode(m.digest)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "{} sha256:{}",
                    claims.model_name,
                    hex::encode(claims.model_digest)
                ),
            );
        }
        self.verdict(failures)
    }

    /// Appraises raw evidence without claims (`kokon verify --evidence`): roots,
    /// simulation, debug, TCB, SNP guest policy and measurements.
    pub fn appraise_platform(&self, evidence: &VerifiedPlatform) -> Result<(), Rejection> {
        let mut failures = Vec::new();
        self.platform_checks(
            &evidence.tee,
            &evidence.tcb,
            &evidence.anchor,
            &mut |check: &str, expected, found| {
                failures.push(Failure {
                    check: check.into(),
                    expected,
                    found,
                })
            },
        );
        self.verdict(failures)
    }

    fn verdict(&self, failures: Vec<Failure>) -> Result<(), Rejection> {
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Rejection {
                policy: self.name.clone(),
                failures,
            })
        }
    }

    fn platform_checks(
        &self,
        tee: &TeeReport,
        tcb: &PlatformTcb,
        anchor: &TrustAnchor,
        fail: &mut impl FnMut(&str, String, String),
    ) {
        if anchor.simulated && !self.allow_simulated {
            fail(
                "simulated TEE",
                "evidence from hardware (allow_simulated = false)".into(),
                format!("simulated evidence under root {:?}", anchor.name),
            );
        }
        if !self.anchors.roots.iter().any(|a| a.der == anchor.der) {
            fail(
                "trust root",
                format!(
                    "one of {:?}",
                    self.anchors
                        .roots
                        .iter()
                        .map(|a| &a.name)
                        .collect::<Vec<_>>()
                ),
                anchor.name.clone(),
            );
        }
        if tee.debug() && !self.allow_debug {
            let found = match tee {
                TeeReport::Tdx(td) => {
                    format!("DEBUG on (TD attributes {})", hex::encode(td.td_attributes))
                }
                TeeReport::Snp(r) => format!("DEBUG allowed (guest policy {:#x})", r.policy),
            };
            fail("debug", "debugging off (allow_debug = false)".into(), found);
        }
        if let Some(tcb_req) = &self.tcb {
            self.appraise_tcb(tcb_req, tcb, fail);
        }
        if let (Some(req), Some(report)) = (&self.snp, tee_snp(tee)) {
            use kokon_attestation::snp::report::{POLICY_MIGRATE_MA, POLICY_SMT};
            if report.policy & POLICY_MIGRATE_MA != 0 && !req.allow_migration_agent {
                fail(
                    "SNP migration agent",
                    "MIGRATE_MA off (allow_migration_agent = false)".into(),
                    format!("allowed (guest policy {:#x})", report.policy),
                );
            }
            if report.policy & POLICY_SMT != 0 && !req.allow_smt {
                fail(
                    "SNP SMT",
                    "SMT off (allow_smt = false)".into(),
                    format!("allowed (guest policy {:#x})", report.policy),
                );
            }
            if req.require_crl
                && !matches!(
                    tcb,
                    PlatformTcb::Snp {
                        crl_checked: true,
                        ..
                    }
                )
            {
                fail(
                    "SNP revocation",
                    "AMD's CRL from KDS, checked against the chain (require_crl = true)".into(),
                    "evidence without AMD's CRL".into(),
                );
            }
            if report.vmpl > req.max_vmpl {
                fail(
                    "SNP VMPL",
                    format!("at most {}", req.max_vmpl),
                    report.vmpl.to_string(),
                );
            }
        }
        for (register, allowed) in &self.measurements {
            let Some(found) = register.value(tee) else {
                fail(
                    &register.to_string(),
                    format!("evidence with a {register} register"),
                    format!("{:?} evidence, which has none", tee_format(tee)),
                );
                continue;
            };
            if !allowed.iter().any(|a| a.as_slice() == found) {
                let expected = if allowed.is_empty() {
                    "a configured value (the policy lists none, so nothing is accepted)".to_string()
                } else {
                    format!(
                        "one of [{}]",
                        allowed
                            .iter()
                            .map(hex::encode)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                fail(&register.to_string(), expected, hex::encode(found));
            }
        }
    }

    fn appraise_tcb(
        &self,
        req: &TcbRequirements,
        tcb: &PlatformTcb,
        fail: &mut impl FnMut(&str, String, String),
    ) {
        match tcb {
            PlatformTcb::Unappraised => fail(
                "TCB",
                "evidence with the vendor's TCB appraisal (TDX collateral or SNP VCEK)".into(),
                "evidence without collateral".into(),
            ),
            PlatformTcb::Tdx(v) => {
                if !req.allowed_statuses.contains(&v.status) {
                    fail(
                        "TCB status",
                        format!("one of {:?}", req.allowed_statuses),
                        format!("{} (FMSPC {}, TCB date {})", v.status, v.fmspc, v.tcb_date),
                    );
                }
                if v.tcb_evaluation_data_number < req.min_tcb_evaluation_data_number {
                    fail(
                        "TCB evaluation data number",
                        format!("at least {}", req.min_tcb_evaluation_data_number),
                        v.tcb_evaluation_data_number.to_string(),
                    );
                }
                let extra: Vec<&String> = v
                    .advisory_ids
                    .iter()
                    .filter(|a| !req.allowed_advisories.contains(a))
                    .collect();
                if !extra.is_empty() {
                    fail(
                        "TCB advisories",
                        format!("only {:?}", req.allowed_advisories),
                        format!("{extra:?}"),
                    );
                }
            }
            PlatformTcb::Snp {
                product, reported, ..
            } => match req.snp_minimum.get(product) {
                Some(floor) if reported.at_least(floor) => {}
                Some(floor) => fail(
                    "SNP TCB",
                    format!("at least {floor} ({product:?})"),
                    format!("{reported}"),
                ),
                None => fail(
                    "SNP TCB",
                    format!(
                        "a product with a floor in the policy ({:?})",
                        req.snp_minimum.keys().collect::<Vec<_>>()
                    ),
                    format!("{product:?}, which has none"),
                ),
            },
        }
    }

    /// Whether the policy accepts the given model name and digest.
    pub fn allows_model(&self, name: &str, digest: &[u8; 32]) -> bool {
        self.models
            .iter()
            .any(|m| m.name == name && &m.digest == digest)
    }
}

fn tee_snp(tee: &TeeReport) -> Option<&kokon_attestation::snp::Report> {
    match tee {
        TeeReport::Snp(r) => Some(r),
        TeeReport::Tdx(_) => None,
    }
}

fn tee_format(tee: &TeeReport) -> &'static str {
    match tee {
        TeeReport::Tdx(_) => "TDX",
        TeeReport::Snp(_) => "SEV-SNP",
    }
}
