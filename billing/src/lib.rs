//! Usage receipts: what the enclave attests it served, signed with its
//! attested Ed25519 receipt key.
//!
//! A receipt names the request and response (by SHA-256 of their plaintext,
//! so the client can recompute both and the host learns nothing), the model,
//! the units consumed and a per-key sequence number. The signature covers a
//! canonical encoding behind a domain separator. The client checks every field
//! against what it sent and received before it pays for anything.
//!
//! This crate must never hold a secret key longer than its signer lives
//! (keys are zeroized on drop) nor accept a receipt it cannot fully check.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Domain separator of the receipt encoding, version 1.
pub const RECEIPT_DOMAIN: &[u8] = b"kokon.receipt.v1\0";
/// The header that carries a receipt inside the sealed response.
pub const RECEIPT_HEADER: &str = "kokon-receipt";

/// What the enclave served for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// SHA-256 of the request as the enclave decrypted it (Binary HTTP message).
    #[serde(with = "hex::serde")]
    pub request_digest: [u8; 32],
    /// SHA-256 of the response body the enclave sealed.
    #[serde(with = "hex::serde")]
    pub response_digest: [u8; 32],
    /// SHA-256 of the model that served it.
    #[serde(with = "hex::serde")]
    pub model_digest: [u8; 32],
    /// Units consumed (for a classifier: inferences, one per input row).
    pub units: u64,
    /// Sequence number, strictly increasing per receipt key.
    pub sequence: u64,
    /// When it was served (Unix seconds, enclave clock).
    pub issued_at: i64,
}

/// A receipt with its Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Ed25519 signature over [`Receipt::canonical_bytes`].
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

/// Why a receipt was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The receipt could not be decoded.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The signature does not verify under the attested receipt key.
    #[error("receipt signature does not verify under the attested receipt key {key}")]
    BadSignature {
        /// The attested key, hex.
        key: String,
    },
    /// A field does not match what the client sent, received or attested.
    #[error("receipt {field} mismatch: expected {expected}, found {found}")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// What the client computed.
        expected: String,
        /// What the receipt says.
        found: String,
    },
}

impl Receipt {
    /// The bytes the signature covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECEIPT_DOMAIN.len() + 3 * 32 + 3 * 8);
        out.extend_from_slice(RECEIPT_DOMAIN);
        out.extend_from_slice(&self.request_digest);
        out.extend_from_slice(&self.response_digest);
        out.extend_from_slice(&self.model_digest);
        out.extend_from_slice(&self.units.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out
    }
}

/// SHA-256, the digest receipts use.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What the client expects a receipt to say.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The attested receipt key.
    pub key: [u8; 32],
    /// SHA-256 of the request the client sealed.
    pub request_digest: [u8; 32],
    /// SHA-256 of the response body the client opened.
    pub response_digest: [u8; 32],
    /// The attested model digest.
    pub model_digest: [u8; 32],
    /// The units the client asked for.
    pub units: u64,
}

impl SignedReceipt {
    /// Decodes a receipt from its header value (JSON).
    pub fn from_header(value: &[u8]) -> Result<Self, ReceiptError> {
        serde_json::from_slice(value).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }

    /// Encodes the receipt as a header value (JSON).
    pub fn to_header(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the signature under `key`, then every field against `expected`.
    pub fn verify(&self, expected: &Expected) -> Result<&Receipt, ReceiptError> {
        let bad_sig = || ReceiptError::BadSignature {
            key: hex::encode(expected.key),
        };
        let key = VerifyingKey::from_bytes(&expected.key).map_err(|_| bad_sig())?;
        key.verify_strict(
            &self.receipt.canonical_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| bad_sig())?;
        let r = &self.receipt;
        let check = |field, want: &[u8; 32], got: &[u8; 32]| {
            if want == got {
                Ok(())
            } else {
                Err(ReceiptError::Mismatch {
                    field,
                    expected: hex::encode(want),
                    found: hex::encode(got),
                })
            }
        };
        check(
            "request digest",
            &expected.request_digest,
            &r.request_digest,
        )?;
        check(
            "response digest",
            &expected.response_digest,
            &r.response_digest,
        )?;
        check("model digest", &expected.model_digest, &r.model_digest)?;
        if r.units != expected.units {
            return Err(ReceiptError::Mismatch {
                field: "units",
                expected: expected.units.to_string(),
                found: r.units.to_string(),
            });
        }
        Ok(r)
    }
}

/// How far below the highest sequence number seen a receipt may still arrive
/// (responses to concurrent requests come back in any order).
pub const SEQUENCE_WINDOW: u64 = 4096;

/// Accepts each receipt sequence number of one enclave key at most once.
///
/// Receipts are bound to their request by digest, so a receipt cannot be
/// moved to another request; this window also refuses a sequence number the
/// enclave already used (a misbehaving or cloned signer) and numbers too far
/// behind to be told apart from one, as IPsec's anti-replay window does.
#[derive(Debug, Default)]
pub struct SequenceWindow {
    highest: Option<u64>,
    seen: std::collections::BTreeSet<u64>,
}

impl SequenceWindow {
    /// Records `sequence`, or says why it is refused.
    pub fn record(&mut self, sequence: u64) -> Result<(), ReceiptError> {
        let floor = self.highest.map(|h| h.saturating_sub(SEQUENCE_WINDOW));
        let refuse = |why: &str| ReceiptError::Mismatch {
            field: "sequence",
            expected: format!(
                "a number not seen before{}",
                floor.map(|f| format!(", above {f}")).unwrap_or_default()
            ),
            found: format!("{sequence} ({why})"),
        };
        if floor.is_some_and(|f| sequence <= f && f > 0) {
            return Err(refuse("too old"));
        }
        if !self.seen.insert(sequence) {
            return Err(refuse("already used"));
        }
        let highest = self.highest.map_or(sequence, |h| h.max(sequence));
        self.highest = Some(highest);
        let keep_from = highest.saturating_sub(SEQUENCE_WINDOW);
        while self.seen.first().is_some_and(|first| *first < keep_from) {
            self.seen.pop_first();
        }
        Ok(())
    }
}

/// The enclave's receipt signer: the attested key and its sequence counter.
pub struct ReceiptSigner {
    key: SigningKey,
    next_sequence: AtomicU64,
}

impl ReceiptSigner {
    /// A signer from 32 secret bytes (the caller draws them from the OS RNG).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
            next_sequence: AtomicU64::new(1),
        }
    }

    /// The public key that goes into the claims.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs a receipt, assigning it the next sequence number.
    pub fn sign(
        &self,
        request_digest: [u8; 32],
        response_digest: [u8; 32],
        model_digest: [u8; 32],
        units: u64,
        issued_at: i64,
    ) -> SignedReceipt {
        let sequence = self.next_sequence.fetch_add(1, Ordering::SeqCst);
        let receipt = Receipt {
            request_digest,
            response_digest,
            model_digest,
            units,
            sequence,
            issued_at,
        };
        let signature = self.key.sign(&receipt.canonical_bytes()).to_bytes();
        SignedReceipt { receipt, signature }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn signed() -> (ReceiptSigner, SignedReceipt, Expected) {
        let signer = ReceiptSigner::from_secret(&[42; 32]);
        let r = signer.sign(digest(b"req"), digest(b"resp"), [9; 32], 1, 1_700_000_000);
        let e = Expected {
            key: signer.public_key(),
            request_digest: digest(b"req"),
            response_digest: digest(b"resp"),
            model_digest: [9; 32],
            units: 1,
        };
        (signer, r, e)
    }

    #[test]
    fn a_genuine_receipt_verifies_and_survives_its_header_encoding() {
        let (_, r, e) = signed();
        let back = SignedReceipt::from_header(&r.to_header()).unwrap();
        assert_eq!(back.verify(&e).unwrap().sequence, 1);
    }

    #[test]
    fn sequence_numbers_increase() {
        let (signer, r1, _) = signed();
        let r2 = signer.sign([0; 32], [0; 32], [0; 32], 1, 0);
        assert_eq!((r1.receipt.sequence, r2.receipt.sequence), (1, 2));
    }

    #[test]
    fn a_forged_receipt_is_rejected() {
        let (_, mut r, e) = signed();
        r.receipt.units = 1000;
        assert!(matches!(
            r.verify(&e),
            Err(ReceiptError::BadSignature { .. })
        ));
        let forger = ReceiptSigner::from_secret(&[1; 32]);
        let forged = forger.sign(e.request_digest, e.response_digest, e.model_digest, 1, 0);
        assert!(matches!(
            forged.verify(&e),
            Err(ReceiptError::BadSignature { .. })
        ));
    }

    #[test]
    fn each_field_is_checked_against_the_client_view() {
        let (_, r, e) = signed();
        type Case = (fn(&mut Expected), &'static str);
        let cases: Vec<Case> = vec![
            (|e| e.request_digest[0] ^= 1, "request digest"),
            (|e| e.response_digest[0] ^= 1, "response digest"),
            (|e| e.model_digest[0] ^= 1, "model digest"),
            (|e| e.units = 2, "units"),
        ];
        for (mutate, field) in cases {
            let mut e = e.clone();
            mutate(&mut e);
            match r.verify(&e) {
                Err(ReceiptError::Mismatch { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_sequence_window_accepts_any_order_once() {
        let mut w = SequenceWindow::default();
        for seq in [3, 1, 2, 5, 4] {
            assert!(w.record(seq).is_ok(), "{seq}");
        }
        assert!(
            matches!(
                w.record(2),
                Err(ReceiptError::Mismatch {
                    field: "sequence",
                    ..
                })
            ),
            "reuse"
        );
        w.record(10_000).unwrap();
        let err = w.record(6).unwrap_err();
        assert!(err.to_string().contains("too old"), "{err}");
        w.record(9_000).unwrap();
        assert!(w.record(9_000).is_err());
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(matches!(
            SignedReceipt::from_header(b"{not json"),
            Err(ReceiptError::Malformed(_))
        ));
    }
}
