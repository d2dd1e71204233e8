//! The enclave's claims and their canonical encoding.
//!
//! The hardware signs 64 bytes of report data; kokon puts SHA-512 of the
//! canonical encoding of [`Claims`] there, so everything the client relies on
//! (keys, model, nonce) is signed by the TEE. The encoding is a fixed field
//! order of length-prefixed values behind a domain separator: no map order,
//! whitespace or number format can make two encodings of the same claims.
//!
//! Before it serves, the enclave extends RTMR3 with an event for its
//! configuration digest, one for its model digest and, when it serves one, one
//! for its text model's digest ([`Claims::rtmr3_events`]). The verifier
//! replays them and requires the result to equal RTMR3, so the claimed models
//! are also the measured ones.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384, Sha512};

use crate::tdx::Measurement;

/// Domain separator of the claims encoding, version 2 (v1 had no text model).
pub const CLAIMS_DOMAIN: &[u8] = b"kokon.claims.v2\0";

/// What the enclave asserts about itself, bound into the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// kokon version of the enclave.
    pub kokon_version: String,
    /// The OHTTP key configuration (RFC 9458 section 3) clients seal requests to.
    #[serde(with = "crate::serde_b64")]
    pub ohttp_key_config: Vec<u8>,
    /// Ed25519 public key that signs usage receipts.
    #[serde(with = "crate::serde_hex")]
    pub receipt_key: [u8; 32],
    /// Name the model is served under.
    pub model_name: String,
    /// SHA-256 of the ONNX model file.
    #[serde(with = "crate::serde_hex")]
    pub model_digest: [u8; 32],
    /// The text model served behind the OpenAI API, when there is one.
    #[serde(default)]
    pub text_model: Option<ModelClaim>,
    /// SHA-256 of the enclave's canonical serving configuration.
    #[serde(with = "crate::serde_hex")]
    pub config_digest: [u8; 32],
    /// Inference runtime and device, e.g. "onnxruntime 1.31.1 cpu".
    pub runtime: String,
    /// The client's nonce, echoed.
    #[serde(with = "crate::serde_hex")]
    pub nonce: Vec<u8>,
    /// When the evidence was produced (Unix seconds, enclave clock).
    pub issued_at: i64,
}

/// A served model: its name and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelClaim {
    /// The name it is served under.
    pub name: String,
    /// Its digest (for a text model, `kokon_llm::TextModel::digest`).
    #[serde(with = "crate::serde_hex")]
    pub digest: [u8; 32],
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    // Fields are at most a few KiB: the length always fits in u32.
    out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(field);
}

impl Claims {
    /// The canonical encoding that the report data commits to.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.ohttp_key_config.len());
        out.extend_from_slice(CLAIMS_DOMAIN);
        put(&mut out, self.kokon_version.as_bytes());
        put(&mut out, &self.ohttp_key_config);
        put(&mut out, &self.receipt_key);
        put(&mut out, self.model_name.as_bytes());
        put(&mut out, &self.model_digest);
        // Absent and present text models encode differently (a flag byte).
        match &self.text_model {
            None => put(&mut out, &[0]),
            Some(m) => {
                put(&mut out, &[1]);
                put(&mut out, m.name.as_bytes());
                put(&mut out, &m.digest);
            }
        }
        put(&mut out, &self.config_digest);
        put(&mut out, self.runtime.as_bytes());
        put(&mut out, &self.nonce);
        put(&mut out, &self.issued_at.to_be_bytes());
        out
    }

    /// The 64 bytes of report data: SHA-512 of the canonical encoding.
    pub fn report_data(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(&Sha512::digest(self.canonical_bytes()));
        out
    }

    /// The RTMR3 event digests for this enclave's configuration and models.
    pub fn rtmr3_events(&self) -> Vec<Measurement> {
        rtmr3_events(
            &self.config_digest,
            &self.model_digest,
            self.text_model.as_ref().map(|m| &m.digest),
        )
    }
}

/// The RTMR3 events for a configuration digest, a model digest and a text
/// model's digest when there is one.
pub fn rtmr3_events(
    config_digest: &[u8; 32],
    model_digest: &[u8; 32],
    text_model_digest: Option<&[u8; 32]>,
) -> Vec<Measurement> {
    let event = |label: &[u8], digest: &[u8; 32]| {
        let mut out = [0u8; 48];
        out.copy_from_slice(
            &Sha384::new()
                .chain_update(label)
                .chain_update(digest)
                .finalize(),
        );
        out
    };
    let mut events = vec![
        event(b"kokon.rtmr3.config.v1\0", config_digest),
        event(b"kokon.rtmr3.model.v1\0", model_digest),
    ];
    events.extend(text_model_digest.map(|d| event(b"kokon.rtmr3.text-model.v1\0", d)));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Claims {
        Claims {
            kokon_version: "0.1.0".into(),
            ohttp_key_config: vec![1, 2, 3],
            receipt_key: [7; 32],
            model_name: "magika".into(),
            model_digest: [9; 32],
            text_model: None,
            config_digest: [3; 32],
            runtime: "onnxruntime cpu".into(),
            nonce: vec![5; 32],
            issued_at: 1_700_000_000,
        }
    }

    #[test]
    fn every_field_changes_the_report_data() {
        let base = sample().report_data();
        let mutations: Vec<fn(&mut Claims)> = vec![
            |c| c.kokon_version.push('x'),
            |c| c.ohttp_key_config.push(0),
            |c| c.receipt_key[0] ^= 1,
            |c| c.model_name.push('x'),
            |c| c.model_digest[0] ^= 1,
            |c| {
                c.text_model = Some(ModelClaim {
                    name: "t".into(),
                    digest: [0; 32],
                })
            },
            |c| c.config_digest[0] ^= 1,
            |c| c.runtime.push('x'),
            |c| c.nonce.push(0),
            |c| c.issued_at += 1,
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut c = sample();
            mutate(&mut c);
            assert_ne!(
                c.report_data(),
                base,
                "mutation {i} did not change the report data"
            );
        }
    }

    #[test]
    fn length_prefixes_prevent_field_shifting() {
        let mut a = sample();
        let mut b = sample();
        a.model_name = "ab".into();
        a.runtime = "c".into();
        b.model_name = "a".into();
        b.runtime = "bc".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn json_round_trip_keeps_the_binding() {
        let c = sample();
        let json = serde_json::to_string(&c).unwrap_or_default();
        let back: Claims = serde_json::from_str(&json).unwrap_or_else(|_| Claims {
            issued_at: 0,
            ..sample()
        });
        assert_eq!(back.report_data(), c.report_data());
    }
}
