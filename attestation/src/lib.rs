//! Evidence formats and their verification.
//!
//! This crate turns untrusted bytes into verified facts: it parses hardware
//! evidence (Intel TDX quotes and AMD SEV-SNP reports), checks its signatures and its
//! certificate chain against trust roots that the caller passes in, at a time
//! that the caller passes in, and checks that the evidence binds the
//! enclave's claims. It also holds the simulated TEE, which produces evidence
//! in the real format under a per-installation root so that development runs
//! the same verifier as production.
//!
//! It must never do I/O, read the clock, trust a root found in the evidence,
//! or panic on any input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod claims;
pub mod der;
mod error;
pub mod eventlog;
pub mod explain;
pub mod pki;
pub mod reader;
pub mod roots;
pub mod sim;
pub mod snp;
pub mod tdx;

pub use bundle::{
    detect_format, verify_bundle, verify_evidence, AttestationBundle, Evidence, EvidenceFormat,
    PlatformTcb, TeeReport, VerifiedEvidence, VerifiedPlatform,
};
pub use claims::Claims;
pub use error::Error;
pub use pki::{TrustAnchor, TrustAnchors};

/// Serde helpers for base64 (standard alphabet, padded) byte fields.
pub mod serde_b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Deserializes base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
