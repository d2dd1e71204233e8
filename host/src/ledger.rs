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
//! before they count (see `kokon_ton::voucher::Payee`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use kokon_billing::SignedReceipt;
use kokon_ton::voucher::{CloseOffer, Payee, VoucherError, VoucherJson};
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
    /// 400, 402 or 409.
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

/// Charged and paid amounts per channel.
pub struct Ledger {
    payees: Mutex<HashMap<u128, Payee>>,
    deposits: HashMap<u128, u128>,
    host_key: Option<ed25519_dalek::SigningKey>,
}

impl Ledger {
    /// Opens every channel's voucher store.
    pub fn open(config: &LedgerConfig) -> anyhow::Result<Self> {
        let mut payees = HashMap::new();
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
            let deposit: u128 = c.deposit.parse().context("deposit")?;
            let limit: u128 = c.credit_limit.parse().context("credit_limit")?;
            let payee = Payee::open(
                &config.store.join(format!("{id}.json")),
                key,
                id,
                deposit,
                limit,
            )?;
            payees.insert(id, payee);
            deposits.insert(id, deposit);
        }
        Ok(Self {
            payees: Mutex::new(payees),
            deposits,
            host_key,
        })
    }

    fn with<T>(
        &self,
        channel: u128,
        f: impl FnOnce(&mut Payee) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let mut payees = self
            .payees
            .lock()
            .map_err(|_| refusal(500, "ledger unavailable"))?;
        let payee = payees.get_mut(&channel).ok_or_else(|| {
            refusal(
                402,
                format!(
                    "channel {channel} is not served by this host: open a channel with it first"
                ),
            )
        })?;
        f(payee)
    }

    /// Whether `channel` may have another request served.
    pub fn admit(&self, channel: u128) -> Result<(), Refusal> {
        self.with(channel, |p| {
            p.admit(p.last_charge())
                .map_err(|e| refusal(402, e.to_string()))
        })
    }

    /// Counts what a served request was charged, from the enclave's receipt.
    pub fn charge(&self, receipt: &[u8]) -> Result<u128, Refusal> {
        let r = SignedReceipt::from_header(receipt).map_err(|e| refusal(500, e.to_string()))?;
        let amount = r.receipt.amount;
        self.with(r.receipt.channel_id, |p| {
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
        self.with(state.channel_id, |p| {
            p.accept(&state).map_err(|e| match e {
                VoucherError::Stale { .. } => refusal(409, e.to_string()),
                VoucherError::Store { .. } => refusal(500, e.to_string()),
                _ => refusal(400, e.to_string()),
            })?;
            Ok(p.paid())
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
