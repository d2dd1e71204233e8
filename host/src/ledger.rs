//! The host as payee: which payment channels it serves, what each has been
//! charged (from the enclave's receipts) and paid (by the client's
//! vouchers), and whether it may serve more.
//!
//! Channels are configured in a TOML file (`kokon host --channels FILE`):
//!
//! ```toml
//! host_key_file = "/path/to/key"   # optional: the host's channel key (hex
//!                                  # Ed25519 seed) to co-sign cooperative closes
//! [[channel]]
//! id = "123456789"                 # the channel ID (decimal)
//! client_key = "hex"               # the client's Ed25519 channel key
//! deposit = "1000000000"           # nanotons the client locked
//! credit_limit = "5000000"         # nanotons the host serves unpaid
//! ```
//!
//! Vouchers are stored per channel under the ledger's directory, durably,
//! before they count (see [`crate::vouchers`]).
//!
//! A request is admitted only with a payer proof (`kokon_billing::payer`):
//! a signature by the channel's client key over the encapsulated request and
//! a time, never seen before. Each admitted request reserves what the
//! channel's last request cost until its receipt is counted, so concurrent
//! requests cannot together run past the credit limit. A streamed answer
//! reserves the most it can cost (every token `max_tokens` allows, as the
//! enclave announces it) before it starts, and settles what its receipt
//! says when it ends or is cut off ([`Admission::reserve`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use kokon_billing::payer::{PayerProof, ProofError, PAYER_HEADER, PROOF_WINDOW_SECS};
use kokon_billing::SignedReceipt;
use kokon_ton::voucher::{Payee, VoucherError};
use kokon_wire::billing::{CloseOffer, VoucherJson};
use kokon_wire::replay::ReplayCache;

use crate::vouchers::VoucherStore;
use serde::Deserialize;

/// One channel the host serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The channel ID (decimal).
    pub id: String,
    /// The client's Ed25519 channel key (hex).
    pub client_key: String,
    /// The client's deposit, nanotons (decimal).
    pub deposit: String,
    /// What the host serves unpaid, nanotons (decimal).
    pub credit_limit: String,
    /// The channel contract's address (for `kokon host settle`).
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsFile {
    #[serde(default)]
    host_key_file: Option<PathBuf>,
    channel: Vec<ChannelConfig>,
}

/// The ledger's configuration.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The channels served.
    pub channels: Vec<ChannelConfig>,
    /// Where vouchers are kept.
    pub store: PathBuf,
    /// The host's channel key (hex Ed25519 seed in a file), to co-sign closes.
    pub host_key_file: Option<PathBuf>,
}

impl LedgerConfig {
    /// Reads a channels file.
    pub fn from_file(path: &Path, store: PathBuf) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ChannelsFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Self {
            channels: file.channel,
            store,
            host_key_file: file.host_key_file,
        })
    }
}

/// Why a request or voucher was refused, with the HTTP status to answer.
#[derive(Debug)]
pub struct Refusal {
    /// 400, 401, 402, 403, 409 or 503.
    pub status: u16,
    /// What to do about it.
    pub message: String,
}

fn refusal(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Most payer proofs remembered for replay detection; beyond it admission fails closed.
const PROOF_CACHE_CAPACITY: usize = 1 << 20;

/// One channel's books.
struct Account {
    payee: Payee,
    store: VoucherStore,
    client_key: VerifyingKey,
    /// What admitted, not yet answered requests are expected to cost.
    reserved: u128,
}

/// Charged and paid amounts per channel.
pub struct Ledger {
    accounts: Mutex<HashMap<u128, Account>>,
    deposits: HashMap<u128, u128>,
    host_key: Option<ed25519_dalek::SigningKey>,
    proofs: Mutex<ReplayCache>,
}

/// A request admitted for a channel: what it reserved of the channel's
/// credit. Dropping it without [`Ledger::charge`] releases the reservation.
pub struct Admission {
    ledger: Arc<Ledger>,
    /// The channel billed.
    pub channel: u128,
    reserved: u128,
}

impl Admission {
    /// Raises (or lowers) what this request holds of its channel's credit
    /// to `amount`: for a stream, the most it can cost. Refused (402), with
    /// the reservation unchanged, when the channel's unpaid charges and
    /// other reservations leave less credit than that.
    pub fn reserve(&mut self, amount: u128) -> Result<(), Refusal> {
        let held = self.reserved;
        self.ledger.with_account(self.channel, |a| {
            let others = a.reserved.saturating_sub(held);
            a.payee.admit(others.saturating_add(amount)).map_err(|e| {
                refusal(
                    402,
                    format!("this answer may cost up to {amount} nanotons (its prompt and every token max_tokens allows, at the enclave's prices), which must be reserved before it streams: {e}; pay a voucher, or ask for fewer max_tokens"),
                )
            })?;
            a.reserved = others.saturating_add(amount);
            Ok(())
        })?;
        self.reserved = amount;
        Ok(())
    }

    /// What this request holds of its channel's credit.
    pub fn reserved(&self) -> u128 {
        self.reserved
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut accounts) = self.ledger.accounts.lock() {
            if let Some(a) = accounts.get_mut(&self.channel) {
                a.reserved = a.reserved.saturating_sub(self.reserved);
            }
        }
    }
}

impl Ledger {
    /// Opens every channel's voucher store.
    pub fn open(config: &LedgerConfig) -> anyhow::Result<Self> {
        let mut accounts = HashMap::new();
        let mut deposits = HashMap::new();
        let host_key = match &config.host_key_file {
            Some(path) => {
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                );
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), seed.as_mut())
                    .with_context(|| format!("{}: expected 32 bytes of hex", path.display()))?;
                Some(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            None => None,
        };
        for c in &config.channels {
            let id: u128 =
                c.id.parse()
                    .with_context(|| format!("channel id {:?}", c.id))?;
            let mut key = [0u8; 32];
            hex::decode_to_slice(&c.client_key, &mut key)
                .with_context(|| format!("channel {id}: client_key"))?;
            let client_key = VerifyingKey::from_bytes(&key)
                .with_context(|| format!("channel {id}: client_key is not an Ed25519 key"))?;
            let deposit: u128 = c.deposit.parse().context("deposit")?;
            let limit: u128 = c.credit_limit.parse().context("credit_limit")?;
            let store = VoucherStore::new(config.store.join(format!("{id}.json")));
            let payee = Payee::new(key, id, deposit, limit, store.load()?)
                .with_context(|| format!("channel {id}: the stored voucher"))?;
            accounts.insert(
                id,
                Account {
                    payee,
                    store,
                    client_key,
                    reserved: 0,
                },
            );
            deposits.insert(id, deposit);
        }
        Ok(Self {
            accounts: Mutex::new(accounts),
            deposits,
            host_key,
            proofs: Mutex::new(ReplayCache::new(PROOF_CACHE_CAPACITY)),
        })
    }

    fn with<T>(
        &self,
        channel: u128,
        f: impl FnOnce(&mut Payee) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        self.with_account(channel, |a| f(&mut a.payee))
    }

    fn with_account<T>(
        &self,
        channel: u128,
        f: impl FnOnce(&mut Account) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let mut accounts = self
            .accounts
            .lock()
            .map_err(|_| refusal(500, "ledger unavailable"))?;
        let account = accounts.get_mut(&channel).ok_or_else(|| {
            refusal(
                402,
                format!(
                    "channel {channel} is not served by this host: open a channel with it first"
                ),
            )
        })?;
        f(account)
    }

    /// Admits the encapsulated request `body` at `now` if `proof` (the
    /// [`PAYER_HEADER`] value) is a fresh, never-seen signature over it by a
    /// served channel's client key and the channel has credit left.
    pub fn admit(
        self: &Arc<Self>,
        proof: Option<&[u8]>,
        body: &[u8],
        now: i64,
    ) -> Result<Admission, Refusal> {
        let proof = proof.ok_or_else(|| {
            refusal(
                401,
                format!("this host bills every request: sign it with your payment channel's client key in the {PAYER_HEADER} header"),
            )
        })?;
        let proof = PayerProof::from_header(proof).map_err(|e| refusal(401, e.to_string()))?;
        let channel = proof.channel_id;
        let reserved = self.with_account(channel, |a| {
            proof
                .verify(&a.client_key, body, now)
                .map_err(|e| match e {
                    ProofError::Malformed(_) => refusal(401, e.to_string()),
                    _ => refusal(403, e.to_string()),
                })?;
            let estimate = a.payee.last_charge();
            a.payee
                .admit(a.reserved.saturating_add(estimate))
                .map_err(|e| refusal(402, e.to_string()))?;
            // Only a proof that verified is remembered, so forgeries cannot
            // fill the cache.
            let fresh = self
                .proofs
                .lock()
                .map_err(|_| refusal(500, "ledger unavailable"))?
                .insert(
                    proof.replay_id(),
                    now,
                    proof.signed_at.saturating_add(PROOF_WINDOW_SECS + 1),
                );
            match fresh {
                Ok(true) => {}
                Ok(false) => {
                    return Err(refusal(
                        403,
                        format!("replayed {PAYER_HEADER} proof: this request was already admitted"),
                    ))
                }
                Err(_) => return Err(refusal(503, "too many requests in flight: retry shortly")),
            }
            a.reserved = a.reserved.saturating_add(estimate);
            Ok(estimate)
        })?;
        Ok(Admission {
            ledger: self.clone(),
            channel,
            reserved,
        })
    }

    /// Counts what a request admitted as `admission` was charged, from the
    /// enclave's receipt, and releases its reservation. The charge goes to
    /// the admitted channel whatever the receipt names (the enclave refuses
    /// requests whose sealed channel differs, so the two agree).
    pub fn charge(&self, admission: Admission, receipt: &[u8]) -> Result<u128, Refusal> {
        let r = SignedReceipt::from_header(receipt).map_err(|e| refusal(500, e.to_string()))?;
        let amount = r.receipt.amount;
        if r.receipt.channel_id != admission.channel {
            tracing::error!(
                admitted = %admission.channel,
                receipt = %r.receipt.channel_id,
                "the enclave's receipt names another channel than the one admitted; charging the admitted channel"
            );
        }
        self.with(admission.channel, |p| {
            p.charge(amount);
            Ok(amount)
        })
    }

    /// Verifies, stores and counts a voucher (JSON); returns the total paid.
    pub fn accept(&self, voucher: &[u8]) -> Result<u128, Refusal> {
        let v: VoucherJson = serde_json::from_slice(voucher)
            .map_err(|e| refusal(400, format!("voucher JSON: {e}")))?;
        let state = v
            .state()
            .map_err(|e| refusal(400, format!("voucher: {e}")))?;
        self.with_account(state.channel_id, |a| {
            a.payee.check(&state).map_err(|e| match e {
                VoucherError::Stale { .. } => refusal(409, e.to_string()),
                _ => refusal(400, e.to_string()),
            })?;
            a.store.save(&state).map_err(|e| {
                // The path and the OS error are for the operator, not the client.
                tracing::error!(error = %e, channel = %state.channel_id, "cannot store a voucher");
                refusal(
                    503,
                    "the host could not store your voucher (its storage failed): nothing was counted; send it again later",
                )
            })?;
            a.payee.record(state);
            Ok(a.payee.paid())
        })
    }

    /// Signs the host's half of a cooperative close on the newest voucher.
    pub fn close_offer(&self, channel: u128) -> Result<CloseOffer, Refusal> {
        let key = self.host_key.as_ref().ok_or_else(|| {
            refusal(
                404,
                "this host has no channel key configured (host_key_file)",
            )
        })?;
        let deposit = self.deposits.get(&channel).copied().unwrap_or(0);
        self.with(channel, |p| {
            let to_host = p.paid();
            let seqno_a = p.latest().map(|v| v.body.seqno).unwrap_or(0).max(1);
            let terms =
                kokon_ton::cooperative_close_terms(channel, deposit - to_host, to_host, seqno_a, 1)
                    .map_err(|e| refusal(500, e.to_string()))?;
            Ok(CloseOffer {
                channel_id: channel,
                to_host,
                to_client: deposit - to_host,
                seqno_a,
                seqno_b: 1,
                signature: hex::encode(kokon_ton::sign_cell(key, &terms)),
            })
        })
    }

    /// The newest voucher of `channel`.
    pub fn latest(&self, channel: u128) -> Option<kokon_ton::SignedState> {
        self.with(channel, |p| Ok(p.latest().cloned()))
            .ok()
            .flatten()
    }

    /// The host's channel key, if configured.
    pub fn host_key(&self) -> Option<&ed25519_dalek::SigningKey> {
        self.host_key.as_ref()
    }

    /// Charged, paid and the newest voucher's seqno of `channel`.
    pub fn status(&self, channel: u128) -> Result<(u128, u128, u64), Refusal> {
        self.with(channel, |p| {
            Ok((
                p.charged(),
                p.paid(),
                p.latest().map(|v| v.body.seqno).unwrap_or(0),
            ))
        })
    }
}
