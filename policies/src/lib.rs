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

use kokon_attestation::sim::SIM_ROOT;
use kokon_attestation::tdx::{Measurement, TdReportBody};
use kokon_attestation::{roots, TrustAnchor, TrustAnchors, VerifiedEvidence};
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
    models: ModelsSection,
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
}

const REGISTER_NAMES: &str =
    "mrtd, rtmr0, rtmr1, rtmr2, rtmr3, mrseam, mrsignerseam, mrconfigid, mrowner, mrownerconfig";

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
            _ => return None,
        })
    }

    /// The register's value in a TD report.
    pub fn value(self, td: &TdReportBody) -> &Measurement {
        match self {
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
    pub measurements: BTreeMap<Register, Vec<Measurement>>,
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
                        format!("unknown root {other:?}; known: intel-sgx-root, sim-local"),
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
                    LOCAL_ENCLAVE_BUILD => locals.enclave_build_mrtd.ok_or_else(|| {
                        invalid(
                            &field,
                            "\"local-enclave-build\": no local enclave binary was found to measure",
                        )
                    }),
                    hex => hex_array::<48>(&field, hex),
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
        Ok(Self {
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

    /// Appraises verified evidence at `now` (Unix seconds).
    pub fn appraise(&self, evidence: &VerifiedEvidence, now: i64) -> Result<(), Rejection> {
        let mut failures = Vec::new();
        let mut fail = |check: &str, expected: String, found: String| {
            failures.push(Failure {
                check: check.into(),
                expected,
                found,
            })
        };

        if evidence.anchor.simulated && !self.allow_simulated {
            fail(
                "simulated TEE",
                "evidence from hardware (allow_simulated = false)".into(),
                format!("simulated evidence under root {:?}", evidence.anchor.name),
            );
        }
        if !self
            .anchors
            .roots
            .iter()
            .any(|a| a.der == evidence.anchor.der)
        {
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
                evidence.anchor.name.clone(),
            );
        }
        if evidence.td.is_debug() && !self.allow_debug {
            fail(
                "debug",
                "TD attributes DEBUG off (allow_debug = false)".into(),
                format!(
                    "DEBUG on (TD attributes {})",
                    hex::encode(evidence.td.td_attributes)
                ),
            );
        }
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
        for (register, allowed) in &self.measurements {
            let found = register.value(&evidence.td);
            if !allowed.contains(found) {
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
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Rejection {
                policy: self.name.clone(),
                failures,
            })
        }
    }

    /// Whether the policy accepts the given model name and digest.
    pub fn allows_model(&self, name: &str, digest: &[u8; 32]) -> bool {
        self.models
            .iter()
            .any(|m| m.name == name && &m.digest == digest)
    }
}
