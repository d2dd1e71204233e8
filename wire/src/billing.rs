//! The messages of the host's billing endpoints, as JSON: a voucher the
//! client sends (`POST /v1/voucher`), the host's answer, a channel's status
//! (`GET /v1/channel?id=`) and the host's half of a cooperative close
//! (`POST /v1/channel/close?id=`).
//!
//! Amounts are nanotons as decimal strings: JSON numbers lose precision past
//! 2^53.

use kokon_ton::{SemiChannelBody, SignedState};
use serde::{Deserialize, Serialize};

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
