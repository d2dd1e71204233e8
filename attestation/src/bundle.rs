//! The attestation bundle: evidence plus claims, as the enclave hands it out,
//! and its verification.
//!
//! [`verify_bundle`] is the whole of the evidence check that is not policy:
//! the hardware evidence verifies under the trust anchors at `now` (a TDX
//! quote with its Intel collateral when the bundle carries it, giving a TCB
//! status; an SNP report with its VCEK chain), its report data equals
//! SHA-512 of the claims, and for TDX RTMR3 equals the replay of the claimed
//! configuration and model events (SNP has no runtime register: there the
//! claims' config and model digests are bound by the report data alone), and
//! the bundle's GPU evidence is, one to one and in order, the evidence whose
//! digests the claims list. What is *acceptable* (which measurements, which
//! models, debug or not, how old, which GPUs) is the policy's call: the GPU
//! evidence itself is verified under the policy's GPU roots and pins
//! (`kokon_policies`), not here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::claims::{Claims, GpuClaim, ServingConfig};
use crate::pki::{CertifiedChain, TrustAnchor, TrustAnchors};
use crate::roots::AmdProduct;
use crate::snp::{self, TcbVersion};
use crate::tdx::{self, Collateral, TcbVerdict, TdReportBody};
use crate::Error;

/// What a TDX quote's PCK chain certifies, in reports.
const PCK_CHAIN: &str =
    "The quote's PCK chain (the platform's key, which signs the Quoting Enclave's report)";
/// What an SNP report's VCEK chain certifies, in reports.
const VCEK_CHAIN: &str = "The report's VCEK chain (the chip's key at its reported TCB)";
/// What an SNP report's VLEK chain certifies, in reports.
const VLEK_CHAIN: &str = "The report's VLEK chain (the cloud provider's key at its reported TCB)";

/// Current bundle format version.
pub const BUNDLE_VERSION: u32 = 1;

/// The format of the hardware evidence in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceFormat {
    /// An Intel TDX quote (version 4 or 5), real or simulated.
    TdxQuote,
    /// An AMD SEV-SNP attestation report (1184 bytes).
    SnpReport,
}

/// Hardware evidence, opaque to everything but its verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// What kind of evidence this is.
    pub format: EvidenceFormat,
    /// The evidence bytes.
    #[serde(with = "crate::serde_b64")]
    pub data: Vec<u8>,
    /// SNP: the VCEK or VLEK certificate, then its CA and the ARK (DER).
    /// Fetched by the untrusted host; the verifier checks them itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64_list")]
    pub certificates: Vec<Vec<u8>>,
    /// TDX: Intel's collateral (TCB info, QE identity, CRLs), fetched by the
    /// untrusted host from Intel PCS or a PCCS; the verifier checks it itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<Collateral>,
    /// SNP: AMD's CRL for the product line (DER, signed by the ARK), fetched
    /// by the untrusted host from AMD KDS; empty when it fetched none.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "crate::serde_b64"
    )]
    pub crl: Vec<u8>,
}

mod b64_list {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|b| STANDARD.encode(b)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// What the enclave returns from `GET /v1/attestation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationBundle {
    /// Bundle format version.
    pub version: u32,
    /// The name of the evidence backend that produced it ("sim", "tdx").
    pub backend: String,
    /// The hardware evidence.
    pub evidence: Evidence,
    /// The claims the evidence's report data commits to.
    pub claims: Claims,
    /// The serving configuration whose SHA-256 is the claims'
    /// `config_digest` (models, device, batch limits, prices): what the
    /// digest commits to, in the clear. Checked against the digest when
    /// present; bundles of older enclaves lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_config: Option<ServingConfig>,
    /// The GPUs' attestation evidence, in the order of the claims' `gpus`,
    /// whose digests it must equal. Fetched inside the enclave, but carried
    /// by the untrusted host: the verifier checks it itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_evidence: Vec<GpuEvidence>,
    /// NVIDIA's reference integrity manifests for the GPUs' drivers and
    /// VBIOSes, by the RIM service's id ([`crate::nvidia::rim::driver_rim_id`],
    /// [`crate::nvidia::rim::vbios_rim_id`]). Fetched and cached by the
    /// untrusted host, covered by no claim, verified by the client.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_rims: BTreeMap<String, GpuRim>,
}

/// One of NVIDIA's reference integrity manifests, as the host fetched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRim {
    /// The signed SWID tag (XML, see [`crate::nvidia::rim`]).
    pub rim: String,
    /// NVIDIA's OCSP responses (DER) for its signing chain's certificates
    /// of [`crate::nvidia::rim::OCSP_POSITIONS`], in chain order; empty
    /// when the host fetched none.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64_list")]
    pub ocsp: Vec<Vec<u8>>,
}

/// One GPU's attestation evidence (NVIDIA Hopper, see [`crate::nvidia`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEvidence {
    /// The SPDM GET_MEASUREMENTS request and MEASUREMENTS response.
    #[serde(with = "crate::serde_b64")]
    pub report: Vec<u8>,
    /// The GPU's certificate chain (PEM, leaf first, ending in the root).
    pub chain_pem: String,
    /// NVIDIA's OCSP responses (DER) for the chain's certificates of
    /// [`crate::nvidia::OCSP_POSITIONS`], in chain order. Fetched and
    /// cached by the untrusted host, not covered by [`GpuEvidence::digest`]
    /// and verified by the client; empty when the host fetched none.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64_list")]
    pub ocsp: Vec<Vec<u8>>,
}

impl GpuEvidence {
    /// SHA-384 of the report followed by the chain: what the claims name
    /// it by ([`crate::nvidia::evidence_digest`]).
    pub fn digest(&self) -> [u8; 48] {
        crate::nvidia::evidence_digest(&self.report, self.chain_pem.as_bytes())
    }

    /// The claim that names it: what the enclave puts in its claims' `gpus`.
    pub fn claim(&self) -> GpuClaim {
        GpuClaim {
            evidence_sha384: self.digest(),
        }
    }
}

impl AttestationBundle {
    /// Parses a bundle from JSON, naming what is wrong on failure.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let bundle: Self =
            serde_json::from_slice(bytes).map_err(|e| Error::Bundle(e.to_string()))?;
        if bundle.version != BUNDLE_VERSION {
            return Err(Error::Unsupported {
                field: "bundle version",
                expected: BUNDLE_VERSION.to_string(),
                found: bundle.version.to_string(),
            });
        }
        Ok(bundle)
    }

    /// Serializes the bundle as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// The TEE's own report inside verified evidence.
#[derive(Debug, Clone)]
pub enum TeeReport {
    /// A TDX TD report body: measurements, attributes, report data.
    Tdx(Box<TdReportBody>),
    /// An SNP attestation report.
    Snp(Box<snp::Report>),
}

/// The vendor's appraisal of the platform's TCB. As JSON (verification
/// reports), an object whose `kind` is `unappraised`, `tdx` (with the
/// [`TcbVerdict`]'s fields) or `snp`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlatformTcb {
    /// No collateral came with the evidence (simulated, or the host fetched none).
    Unappraised,
    /// Intel's TCB status from the collateral.
    Tdx(TcbVerdict),
    /// The SNP reported TCB, certified by the VCEK, and the product line.
    Snp {
        /// The product line.
        product: AmdProduct,
        /// REPORTED_TCB, decoded.
        reported: TcbVersion,
        /// Whether AMD's CRL came with the evidence and revokes nothing in
        /// its chain.
        crl_checked: bool,
    },
}

/// Evidence that verified, with the claims it binds.
#[derive(Debug, Clone)]
pub struct VerifiedEvidence {
    /// The evidence format.
    pub format: EvidenceFormat,
    /// The TEE's report: measurements, attributes, report data.
    pub tee: TeeReport,
    /// The platform's TCB appraisal.
    pub tcb: PlatformTcb,
    /// The root the evidence chains to.
    pub anchor: TrustAnchor,
    /// The subject of the platform certificate (PCK, VCEK or VLEK).
    pub platform: String,
    /// The certificate chains that verified, the evidence's first.
    pub chains: Vec<CertifiedChain>,
    /// The claims, now known to be signed by the TEE.
    pub claims: Claims,
    /// The serving configuration, now known to be the one the claims'
    /// `config_digest` commits to (when the bundle carried it).
    pub serving_config: Option<ServingConfig>,
    /// The GPU evidence, now known to be the one the claims name (bound,
    /// not yet verified: that takes the policy's GPU roots and pins).
    pub gpu_evidence: Vec<GpuEvidence>,
    /// The RIMs the host added, as it added them (not yet verified).
    pub gpu_rims: BTreeMap<String, GpuRim>,
}

impl TeeReport {
    /// Every field of the report with its meaning.
    pub fn fields(&self) -> Vec<crate::explain::Field> {
        match self {
            TeeReport::Tdx(td) => crate::explain::td_report(td),
            TeeReport::Snp(r) => crate::explain::snp_report(r),
        }
    }

    /// Whether the TEE allows the host to debug (read) the guest.
    pub fn debug(&self) -> bool {
        match self {
            TeeReport::Tdx(td) => td.is_debug(),
            TeeReport::Snp(r) => r.debug_allowed(),
        }
    }
}

/// The caveat of an SNP verdict reached without AMD's CRL.
pub const CAVEAT_NO_AMD_CRL: &str = "revocation not checked: no AMD CRL";
/// The caveat of a verdict reached without the vendor's collateral.
pub const CAVEAT_NO_COLLATERAL: &str = "TCB not appraised: no collateral";

impl PlatformTcb {
    /// What the verification could not check, for a verdict's headline:
    /// revocation without AMD's CRL (SNP), the TCB status without Intel's
    /// collateral (TDX). Empty when nothing was left out.
    pub fn caveats(&self) -> Vec<&'static str> {
        match self {
            PlatformTcb::Unappraised => vec![CAVEAT_NO_COLLATERAL],
            PlatformTcb::Snp {
                crl_checked: false, ..
            } => vec![CAVEAT_NO_AMD_CRL],
            PlatformTcb::Tdx(_) | PlatformTcb::Snp { .. } => Vec::new(),
        }
    }

    /// The appraisal in one line.
    pub fn summary(&self) -> String {
        match self {
            PlatformTcb::Unappraised => "not appraised (no collateral)".into(),
            PlatformTcb::Tdx(v) => format!(
                "{} (platform {}, QE {}, FMSPC {}, TCB date {}, advisories {:?})",
                v.status, v.platform_status, v.qe_status, v.fmspc, v.tcb_date, v.advisory_ids
            ),
            PlatformTcb::Snp {
                product,
                reported,
                crl_checked,
            } => format!(
                "{product:?}, reported TCB {reported} (certified by the VCEK; {})",
                match crl_checked {
                    true => "AMD CRL checked",
                    false => "no AMD CRL",
                }
            ),
        }
    }
}

impl VerifiedEvidence {
    /// The TD report body, for TDX evidence.
    pub fn td(&self) -> Option<&TdReportBody> {
        match &self.tee {
            TeeReport::Tdx(td) => Some(td),
            TeeReport::Snp(_) => None,
        }
    }

    /// The SNP report, for SNP evidence.
    pub fn snp(&self) -> Option<&snp::Report> {
        match &self.tee {
            TeeReport::Snp(r) => Some(r),
            TeeReport::Tdx(_) => None,
        }
    }

    /// The TEE report's fields with their meanings.
    pub fn fields(&self) -> Vec<crate::explain::Field> {
        self.tee.fields()
    }

    /// The platform's TCB in one line.
    pub fn tcb_summary(&self) -> String {
        self.tcb.summary()
    }

    /// Whether the TEE allows the host to debug (read) the guest.
    pub fn debug(&self) -> bool {
        self.tee.debug()
    }
}

fn check_report_data(found: &[u8; 64], claims: &Claims) -> Result<(), Error> {
    let expected = claims.report_data();
    if *found != expected {
        return Err(Error::Mismatch {
            what: "report data (SHA-512 of the claims)",
            expected: hex::encode(expected),
            found: hex::encode(found),
        });
    }
    Ok(())
}

/// Evidence whose signatures and chains verified, without claims: what
/// `kokon verify --evidence` checks on raw evidence.
#[derive(Debug, Clone)]
pub struct VerifiedPlatform {
    /// The evidence format.
    pub format: EvidenceFormat,
    /// The TEE's report.
    pub tee: TeeReport,
    /// The platform's TCB appraisal.
    pub tcb: PlatformTcb,
    /// The root the evidence chains to.
    pub anchor: TrustAnchor,
    /// The subject of the platform certificate (PCK, VCEK or VLEK).
    pub platform: String,
    /// The certificate chains that verified, the evidence's first.
    pub chains: Vec<CertifiedChain>,
}

/// Recognises raw evidence: a TDX quote (version 4 or 5, TEE type 0x81) or
/// an SNP report (1184 bytes, version 2, 3 or 5, signature algorithm 1).
pub fn detect_format(bytes: &[u8]) -> Option<EvidenceFormat> {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    if bytes.len() == snp::report::REPORT_LEN
        && matches!(u32_at(0), Some(2 | 3 | 5))
        && u32_at(0x34) == Some(snp::report::SIG_ALGO_ECDSA_P384_SHA384)
    {
        return Some(EvidenceFormat::SnpReport);
    }
    if matches!(u16_at(0), Some(4 | 5)) && u32_at(4) == Some(tdx::quote::TEE_TYPE_TDX) {
        return Some(EvidenceFormat::TdxQuote);
    }
    None
}

/// Verifies hardware evidence (signatures, chains, collateral, TCB) under
/// `anchors` at `now`, without looking at any claims.
pub fn verify_evidence(
    evidence: &Evidence,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<VerifiedPlatform, Error> {
    match evidence.format {
        EvidenceFormat::TdxQuote => {
            let (verified, tcb) = match &evidence.collateral {
                Some(c) => {
                    let (q, v) =
                        tdx::verify_quote_with_collateral(&evidence.data, c, anchors, now)?;
                    (q, PlatformTcb::Tdx(v))
                }
                None => (
                    tdx::verify_quote(&evidence.data, anchors, now)?,
                    PlatformTcb::Unappraised,
                ),
            };
            let chains = std::iter::once(verified.chain.certified(PCK_CHAIN))
                .chain(verified.collateral_signers)
                .collect();
            Ok(VerifiedPlatform {
                format: EvidenceFormat::TdxQuote,
                tee: TeeReport::Tdx(Box::new(verified.quote.body)),
                tcb,
                anchor: verified.chain.anchor,
                platform: verified.chain.leaf_subject,
                chains,
            })
        }
        EvidenceFormat::SnpReport => {
            let (vek, chain) = evidence.certificates.split_first().ok_or_else(|| {
                Error::Bundle("an SNP report needs its VCEK or VLEK certificate".into())
            })?;
            let verified = snp::verify_report(&evidence.data, vek, chain, anchors, now)?;
            let crl_checked = !evidence.crl.is_empty();
            if crl_checked {
                snp::check_crl(&verified.chain, &evidence.crl, now)?;
            }
            let chains = vec![verified.chain.certified(match verified.signing_key {
                snp::SigningKey::Vcek => VCEK_CHAIN,
                snp::SigningKey::Vlek => VLEK_CHAIN,
            })];
            Ok(VerifiedPlatform {
                format: EvidenceFormat::SnpReport,
                tcb: PlatformTcb::Snp {
                    product: verified.product,
                    reported: verified.reported_tcb,
                    crl_checked,
                },
                tee: TeeReport::Snp(Box::new(verified.report)),
                anchor: verified.chain.anchor,
                platform: verified.chain.leaf_subject,
                chains,
            })
        }
    }
}

/// Verifies a bundle's evidence and binding under `anchors` at `now` (Unix seconds).
pub fn verify_bundle(
    bundle: &AttestationBundle,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<VerifiedEvidence, Error> {
    let v = verify_evidence(&bundle.evidence, anchors, now)?;
    // The backend name is unsigned: it must be the one the evidence implies.
    let backend = match (&v.tee, v.anchor.simulated) {
        (TeeReport::Tdx(_), true) => "sim",
        (TeeReport::Tdx(_), false) => "tdx",
        (TeeReport::Snp(_), _) => "snp",
    };
    if bundle.backend != backend {
        return Err(Error::Mismatch {
            what: "bundle backend (its name vs the evidence's format and root)",
            expected: backend.into(),
            found: bundle.backend.clone(),
        });
    }
    match &v.tee {
        TeeReport::Tdx(td) => {
            check_report_data(&td.report_data, &bundle.claims)?;
            let rtmr3 = tdx::rtmr_replay(&bundle.claims.rtmr3_events());
            let [_, _, _, found_rtmr3] = &td.rtmr;
            if *found_rtmr3 != rtmr3 {
                return Err(Error::Mismatch {
                    what: "RTMR3 (replay of the claimed config and model events)",
                    expected: hex::encode(rtmr3),
                    found: hex::encode(found_rtmr3),
                });
            }
        }
        TeeReport::Snp(report) => check_report_data(&report.report_data, &bundle.claims)?,
    }
    if let Some(config) = &bundle.serving_config {
        let digest = config.digest();
        if digest != bundle.claims.config_digest {
            return Err(Error::Mismatch {
                what: "serving configuration (the claims' config_digest vs SHA-256 of the bundle's serving_config)",
                expected: hex::encode(bundle.claims.config_digest),
                found: hex::encode(digest),
            });
        }
    }
    check_gpu_binding(&bundle.gpu_evidence, &bundle.claims)?;
    Ok(VerifiedEvidence {
        format: v.format,
        tee: v.tee,
        tcb: v.tcb,
        anchor: v.anchor,
        platform: v.platform,
        chains: v.chains,
        claims: bundle.claims.clone(),
        serving_config: bundle.serving_config.clone(),
        gpu_evidence: bundle.gpu_evidence.clone(),
        gpu_rims: bundle.gpu_rims.clone(),
    })
}

/// Requires the GPU evidence to be, one to one and in order, the evidence
/// whose digests the claims list.
fn check_gpu_binding(evidence: &[GpuEvidence], claims: &Claims) -> Result<(), Error> {
    const WHAT: &str = "GPU evidence (the claims' gpus vs SHA-384 of the bundle's gpu_evidence)";
    let digest = |d: Option<[u8; 48]>| d.map_or_else(|| "none".to_string(), hex::encode);
    let count = evidence.len().max(claims.gpus.len());
    for i in 0..count {
        let claimed = claims.gpus.get(i).map(|g| g.evidence_sha384);
        let carried = evidence.get(i).map(GpuEvidence::digest);
        if claimed != carried {
            return Err(Error::Mismatch {
                what: WHAT,
                expected: format!("GPU {i}: {}", digest(claimed)),
                found: format!("GPU {i}: {}", digest(carried)),
            });
        }
    }
    Ok(())
}
