//! The attestation bundle: evidence plus claims, as the enclave hands it out,
//! and its verification.
//!
//! [`verify_bundle`] is the whole of the evidence check that is not policy:
//! the hardware evidence verifies under the trust anchors at `now`, its
//! report data equals SHA-512 of the claims, and RTMR3 equals the replay of
//! the claimed configuration and model events. What is *acceptable* (which
//! measurements, which models, debug or not, how old) is the policy's call.

use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::pki::{TrustAnchor, TrustAnchors};
use crate::tdx::{self, TdReportBody};
use crate::Error;

/// Current bundle format version.
pub const BUNDLE_VERSION: u32 = 1;

/// The format of the hardware evidence in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceFormat {
    /// An Intel TDX quote (version 4), real or simulated.
    TdxQuote,
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

/// Evidence that verified, with the claims it binds.
#[derive(Debug, Clone)]
pub struct VerifiedEvidence {
    /// The evidence format.
    pub format: EvidenceFormat,
    /// The TD report body: measurements, attributes, report data.
    pub td: TdReportBody,
    /// The root the evidence chains to.
    pub anchor: TrustAnchor,
    /// The subject of the PCK (platform) certificate.
    pub platform: String,
    /// The claims, now known to be signed by the TEE.
    pub claims: Claims,
}

/// Verifies a bundle's evidence and binding under `anchors` at `now` (Unix seconds).
pub fn verify_bundle(
    bundle: &AttestationBundle,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<VerifiedEvidence, Error> {
    match bundle.evidence.format {
        EvidenceFormat::TdxQuote => {
            let verified = tdx::verify_quote(&bundle.evidence.data, anchors, now)?;
            let td = verified.quote.body;
            let expected = bundle.claims.report_data();
            if td.report_data != expected {
                return Err(Error::Mismatch {
                    what: "report data (SHA-512 of the claims)",
                    expected: hex::encode(expected),
                    found: hex::encode(td.report_data),
                });
            }
            let rtmr3 = tdx::rtmr_replay(&bundle.claims.rtmr3_events());
            let [_, _, _, found_rtmr3] = &td.rtmr;
            if *found_rtmr3 != rtmr3 {
                return Err(Error::Mismatch {
                    what: "RTMR3 (replay of the claimed config and model events)",
                    expected: hex::encode(rtmr3),
                    found: hex::encode(found_rtmr3),
                });
            }
            Ok(VerifiedEvidence {
                format: EvidenceFormat::TdxQuote,
                td,
                anchor: verified.chain.anchor,
                platform: verified.chain.leaf_subject,
                claims: bundle.claims.clone(),
            })
        }
    }
}
