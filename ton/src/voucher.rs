//! Vouchers: the client's signed cumulative payment states, and the two
//! sides that keep them.
//!
//! The [`Payer`] (client) signs a new state after each verified receipt:
//! seqno + 1, sent + the receipt's amount. The [`Payee`] (host) accepts a
//! voucher only if it is signed by the client's channel key for this channel,
//! newer than the last one, pays no less, and stays within the deposit; it
//! stores it durably (written, fsync'd, renamed into place, directory
//! fsync'd) *before* counting it, so a crash never loses a payment it has
//! acknowledged. It refuses work once the unpaid amount would pass the
//! credit limit.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{ChannelError, SemiChannelBody, SignedState};

/// Why a voucher or a request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoucherError {
    /// The channel machinery refused it (signature, channel ID, cells).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// It is not newer than, or pays less than, the last voucher.
    #[error("voucher {what}: expected {expected}, found {found}")]
    Stale {
        /// Which field.
        what: &'static str,
        /// What was needed.
        expected: String,
        /// What it says.
        found: String,
    },
    /// Paying it would exceed the deposit: the client must top up.
    #[error("the channel's deposit of {deposit} nanotons cannot cover {needed} nanotons sent: top up the channel")]
    InsufficientDeposit {
        /// The deposit.
        deposit: u128,
        /// What the voucher would have sent in total.
        needed: u128,
    },
    /// Serving more would leave more unpaid than the credit limit allows.
    #[error("{unpaid} nanotons are unpaid and the credit limit is {limit}: send a voucher (or top up) before more requests")]
    CreditExceeded {
        /// Charged but not yet paid.
        unpaid: u128,
        /// The host's credit limit.
        limit: u128,
    },
    /// The voucher store could not be read or written.
    #[error("voucher store {path}: {reason}")]
    Store {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// The client's side: signs cumulative states.
pub struct Payer {
    key: SigningKey,
    channel_id: u128,
    deposit: u128,
    body: SemiChannelBody,
}

impl Payer {
    /// A payer for `channel_id` whose deposit is `deposit`, starting from
    /// `last` (its newest signed state, if it already paid on this channel).
    pub fn new(
        key: SigningKey,
        channel_id: u128,
        deposit: u128,
        last: Option<SemiChannelBody>,
    ) -> Self {
        Self {
            key,
            channel_id,
            deposit,
            body: last.unwrap_or(SemiChannelBody { seqno: 0, sent: 0 }),
        }
    }

    /// Signs the state that adds `amount` to what was sent.
    pub fn pay(&mut self, amount: u128) -> Result<SignedState, VoucherError> {
        let sent = self.body.sent.saturating_add(amount);
        if sent > self.deposit {
            return Err(VoucherError::InsufficientDeposit {
                deposit: self.deposit,
                needed: sent,
            });
        }
        let body = SemiChannelBody {
            seqno: self.body.seqno + 1,
            sent,
        };
        let state = SignedState::sign(&self.key, self.channel_id, body, None)?;
        self.body = body;
        Ok(state)
    }

    /// Records a top-up of the channel (after it is confirmed on chain).
    pub fn top_up(&mut self, amount: u128) {
        self.deposit = self.deposit.saturating_add(amount);
    }

    /// Signs the current state again (Ed25519 is deterministic: the same
    /// voucher), to hand it over once more after a payee lost the connection.
    pub fn resign(&self) -> Result<SignedState, VoucherError> {
        Ok(SignedState::sign(
            &self.key,
            self.channel_id,
            self.body,
            None,
        )?)
    }

    /// The cumulative state signed last.
    pub fn state(&self) -> SemiChannelBody {
        self.body
    }
}

/// A voucher as JSON: what the client sends the host and the host keeps on
/// disk (amounts as decimal strings, the signature as hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherJson {
    /// The channel ID (decimal).
    pub channel_id: String,
    /// The state's seqno.
    pub seqno: u64,
    /// Nanotons sent in total (decimal).
    pub sent: String,
    /// Ed25519 signature (hex).
    pub signature: String,
}

impl From<&SignedState> for VoucherJson {
    fn from(v: &SignedState) -> Self {
        Self {
            channel_id: v.channel_id.to_string(),
            seqno: v.body.seqno,
            sent: v.body.sent.to_string(),
            signature: hex::encode(v.signature),
        }
    }
}

impl VoucherJson {
    /// The voucher (its signature is not checked here).
    pub fn state(&self) -> Result<SignedState, String> {
        let number = |t: &str| t.parse::<u128>().map_err(|e| format!("{t:?}: {e}"));
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut signature)
            .map_err(|e| format!("signature: {e}"))?;
        Ok(SignedState {
            channel_id: number(&self.channel_id)?,
            body: SemiChannelBody {
                seqno: self.seqno,
                sent: number(&self.sent)?,
            },
            counterparty: None,
            signature,
        })
    }
}

/// Amounts in nanotons travel in JSON as decimal strings: JSON numbers lose
/// precision past 2^53.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The host's answer to `POST /v1/voucher`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherAccepted {
    /// What the host now counts as paid on the channel.
    #[serde(with = "decimal")]
    pub paid: u128,
}

/// The host's answer to `GET /v1/channel?id=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The channel.
    #[serde(with = "decimal")]
    pub channel_id: u128,
    /// What the host has charged on it (from the enclave's receipts).
    #[serde(with = "decimal")]
    pub charged: u128,
    /// What the client's newest voucher pays.
    #[serde(with = "decimal")]
    pub paid: u128,
    /// That voucher's seqno.
    pub seqno: u64,
}

/// The host's half of a cooperative close (`POST /v1/channel/close?id=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseOffer {
    /// The channel.
    #[serde(with = "decimal")]
    pub channel_id: u128,
    /// What the host is paid (the newest voucher's amount).
    #[serde(with = "decimal")]
    pub to_host: u128,
    /// What the client gets back.
    #[serde(with = "decimal")]
    pub to_client: u128,
    /// The client's seqno in the close (its newest voucher's).
    pub seqno_a: u64,
    /// The host's seqno in the close (it sends nothing).
    pub seqno_b: u64,
    /// The host's signature over the close terms (hex).
    pub signature: String,
}

/// The host's side: verifies, stores and counts vouchers; enforces credit.
pub struct Payee {
    client_key: [u8; 32],
    channel_id: u128,
    deposit: u128,
    credit_limit: u128,
    path: PathBuf,
    latest: Option<SignedState>,
    charged: u128,
    last_charge: u128,
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> VoucherError {
    VoucherError::Store {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Payee {
    /// Opens the voucher store at `path` (created on the first voucher); a
    /// stored voucher is verified again before it counts.
    pub fn open(
        path: &Path,
        client_key: [u8; 32],
        channel_id: u128,
        deposit: u128,
        credit_limit: u128,
    ) -> Result<Self, VoucherError> {
        let latest = match fs::read(path) {
            Ok(bytes) => {
                let stored: VoucherJson =
                    serde_json::from_slice(&bytes).map_err(|e| store_err(path, e))?;
                let state = stored.state().map_err(|e| store_err(path, e))?;
                state.verify(&client_key, channel_id)?;
                Some(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(store_err(path, e)),
        };
        let charged = latest.as_ref().map(|v| v.body.sent).unwrap_or(0);
        Ok(Self {
            client_key,
            channel_id,
            deposit,
            credit_limit,
            path: path.to_path_buf(),
            latest,
            charged,
            last_charge: 0,
        })
    }

    /// Records a top-up of the channel (after it is confirmed on chain).
    pub fn top_up(&mut self, amount: u128) {
        self.deposit = self.deposit.saturating_add(amount);
    }

    /// The newest voucher accepted.
    pub fn latest(&self) -> Option<&SignedState> {
        self.latest.as_ref()
    }

    /// Nanotons the client has paid by voucher.
    pub fn paid(&self) -> u128 {
        self.latest.as_ref().map(|v| v.body.sent).unwrap_or(0)
    }

    /// Nanotons charged by receipts so far.
    pub fn charged(&self) -> u128 {
        self.charged
    }

    /// Whether a request costing up to `amount` may be served now.
    pub fn admit(&self, amount: u128) -> Result<(), VoucherError> {
        let unpaid = self.charged.saturating_sub(self.paid());
        if unpaid.saturating_add(amount) > self.credit_limit {
            return Err(VoucherError::CreditExceeded {
                unpaid,
                limit: self.credit_limit,
            });
        }
        Ok(())
    }

    /// Records what a served request was charged (from its receipt).
    pub fn charge(&mut self, amount: u128) {
        self.charged = self.charged.saturating_add(amount);
        self.last_charge = amount;
    }

    /// The amount of the last request charged: what the next will likely cost.
    pub fn last_charge(&self) -> u128 {
        self.last_charge
    }

    /// Verifies `voucher`, stores it durably, then counts it. Returns the
    /// newly paid amount.
    pub fn accept(&mut self, voucher: &SignedState) -> Result<u128, VoucherError> {
        voucher.verify(&self.client_key, self.channel_id)?;
        if voucher.body.sent > self.deposit {
            return Err(VoucherError::InsufficientDeposit {
                deposit: self.deposit,
                needed: voucher.body.sent,
            });
        }
        if let Some(last) = &self.latest {
            if voucher.body.seqno <= last.body.seqno {
                return Err(VoucherError::Stale {
                    what: "seqno",
                    expected: format!("above {}", last.body.seqno),
                    found: voucher.body.seqno.to_string(),
                });
            }
            if voucher.body.sent < last.body.sent {
                return Err(VoucherError::Stale {
                    what: "amount sent",
                    expected: format!("at least {}", last.body.sent),
                    found: voucher.body.sent.to_string(),
                });
            }
        }
        self.persist(voucher)?;
        let newly = voucher.body.sent - self.paid();
        self.latest = Some(voucher.clone());
        Ok(newly)
    }

    fn persist(&self, voucher: &SignedState) -> Result<(), VoucherError> {
        let path = &self.path;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| store_err(path, e))?;
        let stored = VoucherJson::from(voucher);
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp).map_err(|e| store_err(path, e))?;
        f.write_all(&serde_json::to_vec(&stored).map_err(|e| store_err(path, e))?)
            .and_then(|_| f.sync_all())
            .map_err(|e| store_err(path, e))?;
        fs::rename(&tmp, path).map_err(|e| store_err(path, e))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| store_err(path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CHANNEL: u128 = 77;

    fn parties(dir: &Path) -> (Payer, Payee) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        (
            Payer::new(key, CHANNEL, 1_000, None),
            Payee::open(&dir.join("voucher.json"), public, CHANNEL, 1_000, 100).unwrap(),
        )
    }

    #[test]
    fn vouchers_are_stored_durably_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut payer, mut payee) = parties(dir.path());
        for _ in 0..5 {
            payee.charge(30);
            let v = payer.pay(30).unwrap();
            assert_eq!(payee.accept(&v).unwrap(), 30);
        }
        let reopened = Payee::open(
            &dir.path().join("voucher.json"),
            SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes(),
            CHANNEL,
            1_000,
            100,
        )
        .unwrap();
        assert_eq!(reopened.paid(), 150);
        assert_eq!(reopened.latest().unwrap().body.seqno, 5);
    }

    #[test]
    fn older_replayed_forged_and_foreign_vouchers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut payer, mut payee) = parties(dir.path());
        let first = payer.pay(10).unwrap();
        let second = payer.pay(10).unwrap();
        payee.accept(&second).unwrap();
        assert!(matches!(
            payee.accept(&first),
            Err(VoucherError::Stale { what: "seqno", .. })
        ));
        assert!(matches!(
            payee.accept(&second),
            Err(VoucherError::Stale { .. })
        ));
        let mut forged = payer.pay(10).unwrap();
        forged.body.sent = 999;
        assert!(matches!(
            payee.accept(&forged),
            Err(VoucherError::Channel(_))
        ));
        let mut stranger = Payer::new(SigningKey::from_bytes(&[4; 32]), CHANNEL, 1_000, None);
        assert!(payee.accept(&stranger.pay(50).unwrap()).is_err());
        let mut other_channel =
            Payer::new(SigningKey::from_bytes(&[3; 32]), CHANNEL + 1, 1_000, None);
        assert!(payee.accept(&other_channel.pay(50).unwrap()).is_err());
        assert_eq!(payee.paid(), 20, "nothing refused was counted");
    }

    #[test]
    fn the_credit_limit_and_the_deposit_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let (mut payer, mut payee) = parties(dir.path());
        payee.admit(100).unwrap();
        payee.charge(100);
        let err = payee.admit(1).unwrap_err();
        assert!(err.to_string().contains("send a voucher"), "{err}");
        payee.accept(&payer.pay(100).unwrap()).unwrap();
        payee.admit(100).unwrap();
        assert!(matches!(
            payer.pay(901),
            Err(VoucherError::InsufficientDeposit { .. })
        ));
    }
}
