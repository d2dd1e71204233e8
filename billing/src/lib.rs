//! Usage receipts: what the enclave attests it served, signed with its
//! attested Ed25519 receipt key.
//!
//! A receipt names the request and response (by SHA-256 of their plaintext,
//! so the client can recompute both and the host learns nothing), the model,
//! the units consumed in two classes (a classifier's inferences, or a text
//! model's prompt tokens; and a text model's completion tokens), the price of
//! each and the amount charged in nanotons, the payment
//! channel and its cumulative amount under this key, and a per-key sequence
//! number. It is a TON cell (so that TON contracts and tools can read it) and
//! the Ed25519 signature covers the cell's hash. The client checks every field
//! against what it sent and received before it pays for anything.
//!
//! Pricing is integer arithmetic in nanotons: the amount is units × price per
//! unit plus output units × price per output unit, exactly (no rounding: a
//! price is per whole unit; an overflow is an error).
//!
//! This crate must never hold a secret key longer than its signer lives
//! (keys are zeroized on drop) nor accept a receipt it cannot fully check.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod payer;

use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use num_bigint::BigUint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tonlib_core::cell::{Cell, CellBuilder};

/// The first 32 bits of a receipt cell ("krc3": kokon receipt, version 3).
pub const RECEIPT_MAGIC: u32 = 0x6b72_6333;
/// The header of a sealed request that names the client's payment channel
/// (decimal channel ID); absent means none (channel 0).
pub const CHANNEL_HEADER: &str = "kokon-channel";
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
    /// Units consumed (a classifier's inferences, one per input row; a text
    /// model's prompt tokens).
    pub units: u64,
    /// The enclave's price per unit, nanotons (part of its measured configuration).
    pub price_per_unit: u128,
    /// Output units produced (a text model's completion tokens; 0 for a classifier).
    pub output_units: u64,
    /// The enclave's price per output unit, nanotons (part of its measured configuration).
    pub price_per_output_unit: u128,
    /// What this request costs: units × price per unit + output units ×
    /// price per output unit, nanotons.
    pub amount: u128,
    /// The payment channel the client named (0: none).
    pub channel_id: u128,
    /// Total charged to this channel under this receipt key, this one included.
    pub cumulative: u128,
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
    /// Ed25519 signature over the hash of [`Receipt::cell`].
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
    /// The receipt as a TON cell: a root with the magic, channel, amount,
    /// cumulative amount, sequence and time, a reference to a cell with the
    /// three digests and one to a cell with the units and prices (units,
    /// price per unit, output units, price per output unit).
    pub fn cell(&self) -> Result<Cell, ReceiptError> {
        let bad = |e: tonlib_core::cell::TonCellError| ReceiptError::Malformed(e.to_string());
        let digests = CellBuilder::new()
            .store_slice(&self.request_digest)
            .and_then(|b| b.store_slice(&self.response_digest))
            .and_then(|b| b.store_slice(&self.model_digest))
            .and_then(|b| b.build())
            .map_err(bad)?;
        let usage = CellBuilder::new()
            .store_u64(64, self.units)
            .and_then(|b| b.store_coins(&BigUint::from(self.price_per_unit)))
            .and_then(|b| b.store_u64(64, self.output_units))
            .and_then(|b| b.store_coins(&BigUint::from(self.price_per_output_unit)))
            .and_then(|b| b.build())
            .map_err(bad)?;
        CellBuilder::new()
            .store_u32(32, RECEIPT_MAGIC)
            .and_then(|b| b.store_uint(128, &BigUint::from(self.channel_id)))
            .and_then(|b| b.store_coins(&BigUint::from(self.amount)))
            .and_then(|b| b.store_coins(&BigUint::from(self.cumulative)))
            .and_then(|b| b.store_u64(64, self.sequence))
            .and_then(|b| b.store_i64(64, self.issued_at))
            .and_then(|b| b.store_child(digests))
            .and_then(|b| b.store_child(usage))
            .and_then(|b| b.build())
            .map_err(bad)
    }

    /// The 32 bytes the signature covers: the cell's hash.
    pub fn signed_hash(&self) -> Result<[u8; 32], ReceiptError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.cell()?.cell_hash().as_slice());
        Ok(out)
    }
}

/// The prices of a served model in nanotons: per unit (inference or prompt
/// token) and per output unit (completion token); `charge` computes exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    /// Nanotons per unit.
    pub per_unit: u128,
    /// Nanotons per output unit.
    pub per_output_unit: u128,
}

impl Price {
    /// A price per unit only (a classifier's).
    pub const fn per_unit(per_unit: u128) -> Self {
        Self {
            per_unit,
            per_output_unit: 0,
        }
    }

    /// units × price per unit + output units × price per output unit, or
    /// `None` on overflow.
    pub fn charge(&self, units: u64, output_units: u64) -> Option<u128> {
        self.per_unit
            .checked_mul(u128::from(units))?
            .checked_add(self.per_output_unit.checked_mul(u128::from(output_units))?)
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
    /// The units the client asked for (or the prompt tokens the answer reports).
    pub units: u64,
    /// The output units the answer reports (0 for a classifier).
    pub output_units: u64,
    /// The channel the client named (0: none).
    pub channel_id: u128,
    /// The highest prices the client accepts.
    pub max_price: Price,
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
            &self.receipt.signed_hash()?,
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
        let mismatch = |field, expected: String, found: String| {
            Err(ReceiptError::Mismatch {
                field,
                expected,
                found,
            })
        };
        if r.units != expected.units {
            return mismatch("units", expected.units.to_string(), r.units.to_string());
        }
        if r.output_units != expected.output_units {
            return mismatch(
                "output units",
                expected.output_units.to_string(),
                r.output_units.to_string(),
            );
        }
        if r.channel_id != expected.channel_id {
            return mismatch(
                "channel",
                format!("{:#x}", expected.channel_id),
                format!("{:#x}", r.channel_id),
            );
        }
        if r.price_per_unit > expected.max_price.per_unit {
            return mismatch(
                "price per unit",
                format!("at most {} nanotons", expected.max_price.per_unit),
                r.price_per_unit.to_string(),
            );
        }
        if r.price_per_output_unit > expected.max_price.per_output_unit {
            return mismatch(
                "price per output unit",
                format!("at most {} nanotons", expected.max_price.per_output_unit),
                r.price_per_output_unit.to_string(),
            );
        }
        let charge = Price {
            per_unit: r.price_per_unit,
            per_output_unit: r.price_per_output_unit,
        }
        .charge(r.units, r.output_units);
        if charge != Some(r.amount) {
            return mismatch(
                "amount",
                format!(
                    "{} units × {} + {} output units × {} nanotons",
                    r.units, r.price_per_unit, r.output_units, r.price_per_output_unit
                ),
                r.amount.to_string(),
            );
        }
        if r.cumulative < r.amount {
            return mismatch(
                "cumulative amount",
                format!("at least this receipt's {}", r.amount),
                r.cumulative.to_string(),
            );
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

/// The enclave's receipt signer: the attested key, its sequence counter and
/// the cumulative amount per channel.
pub struct ReceiptSigner {
    key: SigningKey,
    next_sequence: AtomicU64,
    cumulative: std::sync::Mutex<std::collections::HashMap<u128, u128>>,
}

/// What one served request is billed.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// SHA-256 of the request plaintext.
    pub request_digest: [u8; 32],
    /// SHA-256 of the response body.
    pub response_digest: [u8; 32],
    /// SHA-256 of the model.
    pub model_digest: [u8; 32],
    /// Units consumed.
    pub units: u64,
    /// Output units produced.
    pub output_units: u64,
    /// The served model's prices (part of the measured configuration).
    pub price: Price,
    /// The channel the client named (0: none).
    pub channel_id: u128,
    /// When (Unix seconds).
    pub issued_at: i64,
}

impl ReceiptSigner {
    /// A signer from 32 secret bytes (the caller draws them from the OS RNG).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
            next_sequence: AtomicU64::new(1),
            cumulative: Default::default(),
        }
    }

    /// The public key that goes into the claims.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs a receipt for `usage`, assigning it the next sequence number and
    /// adding its amount to the channel's cumulative total.
    pub fn sign(&self, usage: &Usage) -> Result<SignedReceipt, ReceiptError> {
        let amount = usage
            .price
            .charge(usage.units, usage.output_units)
            .ok_or_else(|| {
                ReceiptError::Malformed(format!(
                    "{} units and {} output units overflow the price",
                    usage.units, usage.output_units
                ))
            })?;
        let cumulative = {
            let mut totals = self
                .cumulative
                .lock()
                .map_err(|_| ReceiptError::Malformed("poisoned".into()))?;
            let total = totals.entry(usage.channel_id).or_insert(0);
            *total = total.saturating_add(amount);
            *total
        };
        let sequence = self.next_sequence.fetch_add(1, Ordering::SeqCst);
        let receipt = Receipt {
            request_digest: usage.request_digest,
            response_digest: usage.response_digest,
            model_digest: usage.model_digest,
            units: usage.units,
            price_per_unit: usage.price.per_unit,
            output_units: usage.output_units,
            price_per_output_unit: usage.price.per_output_unit,
            amount,
            channel_id: usage.channel_id,
            cumulative,
            sequence,
            issued_at: usage.issued_at,
        };
        let signature = self.key.sign(&receipt.signed_hash()?).to_bytes();
        Ok(SignedReceipt { receipt, signature })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PRICE: Price = Price::per_unit(1_000_000);
    const TOKENS: Price = Price {
        per_unit: 10,
        per_output_unit: 30,
    };

    fn usage(units: u64) -> Usage {
        Usage {
            request_digest: digest(b"req"),
            response_digest: digest(b"resp"),
            model_digest: [9; 32],
            units,
            output_units: 0,
            price: PRICE,
            channel_id: 7,
            issued_at: 1_700_000_000,
        }
    }

    fn signed() -> (ReceiptSigner, SignedReceipt, Expected) {
        let signer = ReceiptSigner::from_secret(&[42; 32]);
        let r = signer.sign(&usage(3)).unwrap();
        let e = Expected {
            key: signer.public_key(),
            request_digest: digest(b"req"),
            response_digest: digest(b"resp"),
            model_digest: [9; 32],
            units: 3,
            output_units: 0,
            channel_id: 7,
            max_price: PRICE,
        };
        (signer, r, e)
    }

    #[test]
    fn tokens_are_charged_per_class() {
        let signer = ReceiptSigner::from_secret(&[42; 32]);
        let r = signer
            .sign(&Usage {
                units: 40,
                output_units: 7,
                price: TOKENS,
                ..usage(0)
            })
            .unwrap();
        assert_eq!(r.receipt.amount, 40 * 10 + 7 * 30);
        let e = Expected {
            key: signer.public_key(),
            request_digest: digest(b"req"),
            response_digest: digest(b"resp"),
            model_digest: [9; 32],
            units: 40,
            output_units: 7,
            channel_id: 7,
            max_price: TOKENS,
        };
        r.verify(&e).unwrap();
        for (mutate, field) in [
            (
                (|e| e.output_units = 8) as fn(&mut Expected),
                "output units",
            ),
            (
                |e| e.max_price.per_output_unit = 29,
                "price per output unit",
            ),
        ] {
            let mut e = e.clone();
            mutate(&mut e);
            match r.verify(&e) {
                Err(ReceiptError::Mismatch { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        // The output price times the output units may not overflow either.
        let huge = Usage {
            output_units: 2,
            price: Price {
                per_unit: 0,
                per_output_unit: u128::MAX,
            },
            ..usage(1)
        };
        assert!(signer.sign(&huge).is_err());
    }

    #[test]
    fn a_genuine_receipt_verifies_and_survives_its_header_encoding() {
        let (_, r, e) = signed();
        let back = SignedReceipt::from_header(&r.to_header()).unwrap();
        assert_eq!(back.verify(&e).unwrap().sequence, 1);
    }

    #[test]
    fn sequence_numbers_and_the_cumulative_amount_increase() {
        let (signer, r1, _) = signed();
        let r2 = signer.sign(&usage(2)).unwrap();
        assert_eq!((r1.receipt.sequence, r2.receipt.sequence), (1, 2));
        assert_eq!(r1.receipt.amount, 3_000_000);
        assert_eq!(r2.receipt.cumulative, 5_000_000);
        // Another channel has its own total.
        let other = signer
            .sign(&Usage {
                channel_id: 8,
                ..usage(1)
            })
            .unwrap();
        assert_eq!(other.receipt.cumulative, 1_000_000);
        // The price times the units may not overflow.
        let huge = Usage {
            price: Price::per_unit(u128::MAX),
            ..usage(2)
        };
        assert!(signer.sign(&huge).is_err());
    }

    #[test]
    fn the_receipt_is_a_ton_cell_and_the_signature_covers_its_hash() {
        let (_, r, e) = signed();
        let cell = r.receipt.cell().unwrap();
        assert_eq!(cell.references().len(), 2);
        let key = VerifyingKey::from_bytes(&e.key).unwrap();
        key.verify_strict(
            cell.cell_hash().as_slice(),
            &Signature::from_bytes(&r.signature),
        )
        .unwrap();
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
        let forged = forger.sign(&usage(3)).unwrap();
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
            (|e| e.channel_id = 8, "channel"),
            (|e| e.max_price.per_unit = 999_999, "price per unit"),
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
