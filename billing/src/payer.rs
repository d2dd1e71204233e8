//! Payer proofs: how a billed request shows that the payment channel it
//! names is the sender's own.
//!
//! The host bills a request to a channel only if the request carries, in the
//! outer [`PAYER_HEADER`], an Ed25519 signature by that channel's client key
//! (the key that also signs the channel's vouchers) over
//!
//! ```text
//! "kokon-payer-v1" || channel_id (16 bytes, big-endian)
//!                  || signed_at (8 bytes, big-endian, Unix seconds)
//!                  || SHA-256(encapsulated request)
//! ```
//!
//! Binding the digest of the exact ciphertext makes a proof useless for any
//! other request; the time bounds how long the host must remember proofs to
//! refuse replays (see [`PROOF_WINDOW_SECS`]). The header value is
//! `<channel>:<signed_at>:<signature hex>`.
//!
//! The proof is for the host (the payee): it stops anyone who merely knows a
//! channel ID from spending that channel's credit. The enclave then bills
//! exactly the channel the host admitted, so no receipt names another.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::digest;

/// The outer request header carrying the payer proof.
pub const PAYER_HEADER: &str = "kokon-payer";
/// Proofs older or newer than this many seconds are refused.
pub const PROOF_WINDOW_SECS: i64 = 120;
/// Domain separation of the signed message.
const CONTEXT: &[u8] = b"kokon-payer-v1";
/// Longest header value accepted (a u128, an i64, 128 hex digits and two colons).
const MAX_HEADER_LEN: usize = 39 + 1 + 20 + 1 + 128;

/// Why a payer proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The header is not `<channel>:<signed_at>:<signature hex>`.
    #[error("malformed {PAYER_HEADER} header: {0}; expected <channel>:<unix seconds>:<128 hex digits of Ed25519 signature>")]
    Malformed(String),
    /// The signature does not verify under the channel's client key.
    #[error("the {PAYER_HEADER} signature does not verify under channel {channel}'s client key: sign with that channel's key")]
    BadSignature {
        /// The channel named.
        channel: u128,
    },
    /// The proof was made too long ago, or in the future.
    #[error("the {PAYER_HEADER} proof was signed at {signed_at}, outside the {PROOF_WINDOW_SECS} s window around now ({now}): check the client's clock")]
    Stale {
        /// When it says it was signed.
        signed_at: i64,
        /// The verifier's clock.
        now: i64,
    },
}

/// A payer proof: who pays for one encapsulated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerProof {
    /// The channel billed.
    pub channel_id: u128,
    /// When it was signed (Unix seconds).
    pub signed_at: i64,
    /// The channel key's signature.
    pub signature: [u8; 64],
}

fn message(channel_id: u128, signed_at: i64, encapsulated: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 16 + 8 + 32);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(&channel_id.to_be_bytes());
    m.extend_from_slice(&signed_at.to_be_bytes());
    m.extend_from_slice(&digest(encapsulated));
    m
}

impl PayerProof {
    /// Signs `encapsulated` for `channel_id` with the channel's client key at `now`.
    pub fn sign(key: &SigningKey, channel_id: u128, encapsulated: &[u8], now: i64) -> Self {
        Self {
            channel_id,
            signed_at: now,
            signature: key.sign(&message(channel_id, now, encapsulated)).to_bytes(),
        }
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        format!(
            "{}:{}:{}",
            self.channel_id,
            self.signed_at,
            hex::encode(self.signature)
        )
    }

    /// Parses a header value strictly (canonical decimal, lowercase hex).
    pub fn from_header(value: &[u8]) -> Result<Self, ProofError> {
        let bad = |why: &str| ProofError::Malformed(why.into());
        if value.len() > MAX_HEADER_LEN {
            return Err(bad("too long"));
        }
        let text = std::str::from_utf8(value).map_err(|_| bad("not ASCII"))?;
        let mut parts = text.split(':');
        let (Some(channel), Some(signed_at), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected three fields separated by ':'"));
        };
        let decimal = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        };
        if !decimal(channel) || !decimal(signed_at) {
            return Err(bad("channel and time must be canonical decimal numbers"));
        }
        let channel_id = channel
            .parse::<u128>()
            .map_err(|_| bad("channel out of range"))?;
        let signed_at = signed_at
            .parse::<i64>()
            .map_err(|_| bad("time out of range"))?;
        if sig.len() != 128 || sig.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("signature must be 128 lowercase hex digits"));
        }
        let mut signature = [0u8; 64];
        hex::decode_to_slice(sig, &mut signature).map_err(|_| bad("signature is not hex"))?;
        Ok(Self {
            channel_id,
            signed_at,
            signature,
        })
    }

    /// Checks the proof for `encapsulated` under the channel's client key at `now`.
    pub fn verify(
        &self,
        client_key: &VerifyingKey,
        encapsulated: &[u8],
        now: i64,
    ) -> Result<(), ProofError> {
        if (now - self.signed_at).abs() > PROOF_WINDOW_SECS {
            return Err(ProofError::Stale {
                signed_at: self.signed_at,
                now,
            });
        }
        // Strict: no small-order keys, no malleable signatures.
        client_key
            .verify_strict(
                &message(self.channel_id, self.signed_at, encapsulated),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| ProofError::BadSignature {
                channel: self.channel_id,
            })?;
        Ok(())
    }

    /// What identifies this proof for replay detection: the signature
    /// (unique per channel, time and request).
    pub fn replay_id(&self) -> [u8; 32] {
        digest(&self.signature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn a_proof_round_trips_and_verifies_only_for_its_request_channel_and_key() {
        let p = PayerProof::sign(&key(), 222, b"sealed", 1_000);
        let parsed = PayerProof::from_header(p.to_header().as_bytes()).unwrap();
        assert_eq!(parsed, p);
        let public = key().verifying_key();
        assert_eq!(parsed.verify(&public, b"sealed", 1_050), Ok(()));
        assert_eq!(
            parsed.verify(&public, b"other", 1_050),
            Err(ProofError::BadSignature { channel: 222 })
        );
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(
            parsed.verify(&other, b"sealed", 1_050),
            Err(ProofError::BadSignature { channel: 222 })
        );
        let moved = PayerProof {
            channel_id: 111,
            ..parsed.clone()
        };
        assert_eq!(
            moved.verify(&public, b"sealed", 1_050),
            Err(ProofError::BadSignature { channel: 111 })
        );
        assert_eq!(
            parsed.verify(&public, b"sealed", 1_000 + PROOF_WINDOW_SECS + 1),
            Err(ProofError::Stale {
                signed_at: 1_000,
                now: 1_000 + PROOF_WINDOW_SECS + 1
            })
        );
    }

    #[test]
    fn malformed_headers_are_refused_with_the_reason() {
        let good = PayerProof::sign(&key(), 5, b"x", 7).to_header();
        let sig = good.rsplit(':').next().unwrap().to_string();
        for bad in [
            String::new(),
            "5:7".into(),
            format!("5:7:{sig}:1"),
            format!("05:7:{sig}"),
            format!("+5:7:{sig}"),
            format!("5:-7:{sig}"),
            format!("5:7:{}", sig.to_uppercase()),
            format!("5:7:{}", &sig[..126]),
            format!("5:7:{sig}00"),
            format!("340282366920938463463374607431768211456:7:{sig}"),
        ] {
            assert!(
                matches!(
                    PayerProof::from_header(bad.as_bytes()),
                    Err(ProofError::Malformed(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
