//! Evidence formats and their verification.
//!
//! This crate turns untrusted bytes into verified facts: it parses hardware
//! evidence (Intel TDX quotes, AMD SEV-SNP reports, NVIDIA GPU attestation
//! reports), checks its signatures and its certificate chain against trust
//! roots that the caller passes in, at a time that the caller passes in, and
//! checks that the evidence binds the enclave's claims. It also holds the
//! simulated TEE, which produces evidence in the real format under a
//! per-installation root so that development runs the same verifier as
//! production.
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
pub mod nvidia;
pub mod ocsp;
pub mod pem;
pub mod pki;
pub mod roots;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod xmldsig;

pub use bundle::{
    detect_format, verify_bundle, verify_evidence, AttestationBundle, Evidence, EvidenceFormat,
    GpuEvidence, GpuRim, PlatformTcb, TeeReport, VerifiedEvidence, VerifiedPlatform,
};
pub use claims::Claims;
pub use error::Error;
pub use pki::{TrustAnchor, TrustAnchors};

/// Serde helpers for hex byte fields in bundles: lowercase only, as
/// `hex::encode` writes them, so that one value has one text (the `hex`
/// crate's own serde helpers also accept uppercase).
pub mod serde_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Decodes lowercase hex, naming the first character that is not.
    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        if let Some((i, c)) = text
            .char_indices()
            .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(format!(
                "expected lowercase hex, found {c:?} at character {i}"
            ));
        }
        hex::decode(text).map_err(|e| format!("bad hex: {e}"))
    }

    /// Serializes bytes as lowercase hex.
    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    /// Deserializes lowercase hex into bytes of the field's length.
    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = decode(&text).map_err(serde::de::Error::custom)?;
        let len = bytes.len();
        T::try_from(bytes).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected {} bytes of hex, found {len}",
                std::mem::size_of::<T>()
            ))
        })
    }
}

/// Serde helpers for base64 (standard alphabet, padded) byte fields. The
/// `STANDARD` engine decodes only the canonical text: no whitespace, padding
/// exactly as the encoder writes it, zero trailing bits.
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
