//! TON payment-channel messages for kokon's billing.
//!
//! kokon settles what clients owe hosts through the standard TON payment
//! channel contract (ton-blockchain/payment-channels; the compiled code is
//! `PaymentChannel.codeHex` of the npm package `tonweb`, loaded from the
//! installed package, never copied here). This crate builds, as TON cells
//! with `tonlib-core`, everything the two parties sign and send: the
//! contract's initial data, top-ups, channel initialisation, cooperative
//! close, and the off-chain semi-channel states ("vouchers") and the
//! uncooperative close that enforces them. Signatures are Ed25519 over the
//! hash of the cell holding everything after the signature, as the contract
//! checks them. Layouts follow the contract's `scheme.tlb`.
//!
//! Party A is the client (payer), party B the host (payee).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod voucher;
pub mod wallet;

use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use num_bigint::BigUint;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell, CellBuilder, TonCellError};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::TonAddress;

/// `top_up_balance add_A:Coins add_B:Coins`.
pub const OP_TOP_UP_BALANCE: u32 = 0x67c7_d281;
/// `init_channel is_A:Bool signature:bits512 ...`.
pub const OP_INIT_CHANNEL: u32 = 0x0e06_20c2;
/// `cooperative_close sig_A:^bits512 sig_B:^bits512 ...`.
pub const OP_COOPERATIVE_CLOSE: u32 = 0x5577_587e;
/// `start_uncooperative_close signed_by_A:Bool signature:bits512 ...`.
pub const OP_START_UNCOOPERATIVE_CLOSE: u32 = 0x1f15_1acf;
/// `challenge_quarantined_state challenged_by_A:Bool signature:bits512 ...`.
pub const OP_CHALLENGE_QUARANTINED_STATE: u32 = 0x088e_aa32;
/// `finish_uncooperative_close`.
pub const OP_FINISH_UNCOOPERATIVE_CLOSE: u32 = 0x2543_2a91;

const TAG_INIT: u32 = 0x696e_6974;
const TAG_COOPERATIVE_CLOSE: u32 = 0x436c_6f73;
const TAG_START_UNCOOPERATIVE_CLOSE: u32 = 0x556e_436c;
const TAG_CHALLENGE_STATE: u32 = 0x4368_6751;
const TAG_STATE: u32 = 0x4368_5374;

/// Why a message could not be built or a state was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A cell could not be built or parsed.
    #[error("cell: {0}")]
    Cell(#[from] TonCellError),
    /// A signature did not verify.
    #[error("invalid signature: {0}")]
    BadSignature(&'static str),
    /// A state does not fit the channel.
    #[error("{what}: expected {expected}, found {found}")]
    Mismatch {
        /// What was compared.
        what: &'static str,
        /// The expected value.
        expected: String,
        /// The value found.
        found: String,
    },
}

/// The fixed parameters of a channel, agreed before deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelParams {
    /// The channel's 128-bit identifier (part of every signed message).
    pub channel_id: u128,
    /// Party A's (the client's) Ed25519 public key.
    pub key_a: [u8; 32],
    /// Party B's (the host's) Ed25519 public key.
    pub key_b: [u8; 32],
    /// Where A's funds go at close.
    pub address_a: TonAddress,
    /// Where B's funds go at close.
    pub address_b: TonAddress,
    /// Seconds the counterparty has to challenge an uncooperative close.
    pub quarantine_duration: u32,
    /// What a party that submits an outdated state is fined (nanotons).
    pub misbehavior_fine: u128,
    /// Seconds to settle conditional payments after the quarantine.
    pub conditional_close_duration: u32,
    /// Fee kept by the contract for excess processing (nanotons).
    pub excess_fee: u128,
}

fn coins(v: u128) -> BigUint {
    BigUint::from(v)
}

fn arc(cell: Cell) -> ArcCell {
    Arc::new(cell)
}

fn signature_cell(signature: &[u8; 64]) -> Result<Cell, ChannelError> {
    Ok(CellBuilder::new().store_slice(signature)?.build()?)
}

/// Signs the hash of `cell` with `key`.
pub fn sign_cell(key: &SigningKey, cell: &Cell) -> [u8; 64] {
    key.sign(cell.cell_hash().as_slice()).to_bytes()
}

/// Checks an Ed25519 signature over the hash of `cell`.
pub fn verify_cell(
    key: &[u8; 32],
    cell: &Cell,
    signature: &[u8; 64],
    what: &'static str,
) -> Result<(), ChannelError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| ChannelError::BadSignature(what))?;
    key.verify(
        cell.cell_hash().as_slice(),
        &ed25519_dalek::Signature::from_bytes(signature),
    )
    .map_err(|_| ChannelError::BadSignature(what))
}

impl ChannelParams {
    /// The contract's initial data (`Storage`, with the `inited` flag off).
    pub fn data_cell(&self) -> Result<Cell, ChannelError> {
        let closing = CellBuilder::new()
            .store_u32(32, self.quarantine_duration)?
            .store_coins(&coins(self.misbehavior_fine))?
            .store_u32(32, self.conditional_close_duration)?
            .build()?;
        let payments = CellBuilder::new()
            .store_coins(&coins(self.excess_fee))?
            .store_address(&self.address_a)?
            .store_address(&self.address_b)?
            .build()?;
        Ok(CellBuilder::new()
            .store_bit(false)? // inited
            .store_coins(&coins(0))? // balance_A
            .store_coins(&coins(0))? // balance_B
            .store_slice(&self.key_a)?
            .store_slice(&self.key_b)?
            .store_uint(128, &BigUint::from(self.channel_id))?
            .store_child(closing)?
            .store_u32(32, 0)? // commited_seqno_A
            .store_u32(32, 0)? // commited_seqno_B
            .store_bit(false)? // no quarantine
            .store_child(payments)?
            .build()?)
    }

    /// The contract's address (workchain 0) for `code`.
    pub fn address(&self, code: &Cell) -> Result<TonAddress, ChannelError> {
        let init = StateInit::new(arc(code.clone()), arc(self.data_cell()?)).to_cell()?;
        Ok(TonAddress::new(0, init.cell_hash()))
    }
}

/// `top_up_balance`: adds to A's and B's balances (sent with the coins).
pub fn top_up(add_a: u128, add_b: u128) -> Result<Cell, ChannelError> {
    Ok(CellBuilder::new()
        .store_u32(32, OP_TOP_UP_BALANCE)?
        .store_coins(&coins(add_a))?
        .store_coins(&coins(add_b))?
        .build()?)
}

/// `init_channel`, signed by one party: fixes the initial balances.
pub fn init_channel(
    params: &ChannelParams,
    key: &SigningKey,
    is_a: bool,
    balance_a: u128,
    balance_b: u128,
) -> Result<Cell, ChannelError> {
    let signed = CellBuilder::new()
        .store_u32(32, TAG_INIT)?
        .store_uint(128, &BigUint::from(params.channel_id))?
        .store_coins(&coins(balance_a))?
        .store_coins(&coins(balance_b))?
        .build()?;
    signed_by_party(OP_INIT_CHANNEL, is_a, key, &signed)
}

/// A message `op` from party A (`by_a`) or B: the flag, the party's
/// signature over the hash of `signed`, and `signed` itself.
fn signed_by_party(
    op: u32,
    by_a: bool,
    key: &SigningKey,
    signed: &Cell,
) -> Result<Cell, ChannelError> {
    Ok(CellBuilder::new()
        .store_u32(32, op)?
        .store_bit(by_a)?
        .store_slice(&sign_cell(key, signed))?
        .store_cell(signed)?
        .build()?)
}

/// The part of a cooperative close both parties sign.
pub fn cooperative_close_terms(
    channel_id: u128,
    balance_a: u128,
    balance_b: u128,
    seqno_a: u64,
    seqno_b: u64,
) -> Result<Cell, ChannelError> {
    Ok(CellBuilder::new()
        .store_u32(32, TAG_COOPERATIVE_CLOSE)?
        .store_uint(128, &BigUint::from(channel_id))?
        .store_coins(&coins(balance_a))?
        .store_coins(&coins(balance_b))?
        .store_u64(64, seqno_a)?
        .store_u64(64, seqno_b)?
        .build()?)
}

/// `cooperative_close` with both signatures over `terms`.
pub fn cooperative_close(
    terms: &Cell,
    signature_a: &[u8; 64],
    signature_b: &[u8; 64],
) -> Result<Cell, ChannelError> {
    Ok(CellBuilder::new()
        .store_u32(32, OP_COOPERATIVE_CLOSE)?
        .store_child(signature_cell(signature_a)?)?
        .store_child(signature_cell(signature_b)?)?
        .store_cell(terms)?
        .build()?)
}

/// A semi-channel body: what one party has sent so far, cumulatively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SemiChannelBody {
    /// Increases with every new state.
    pub seqno: u64,
    /// Nanotons sent to the counterparty in total.
    pub sent: u128,
}

impl SemiChannelBody {
    fn store(&self, b: &mut CellBuilder) -> Result<(), ChannelError> {
        b.store_u64(64, self.seqno)?
            .store_coins(&coins(self.sent))?
            .store_bit(false)?; // no conditional payments
        Ok(())
    }

    fn cell(&self) -> Result<Cell, ChannelError> {
        let mut b = CellBuilder::new();
        self.store(&mut b)?;
        Ok(b.build()?)
    }
}

/// A party's signed semi-channel state: the off-chain voucher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedState {
    /// The channel it belongs to.
    pub channel_id: u128,
    /// The signer's cumulative payment.
    pub body: SemiChannelBody,
    /// The latest counterparty body it acknowledges, if any.
    pub counterparty: Option<SemiChannelBody>,
    /// Ed25519 over the hash of [`SignedState::state_cell`].
    pub signature: [u8; 64],
}

impl SignedState {
    /// `semichannel_state#43685374 channel_id data counterparty_data`.
    pub fn state_cell(
        channel_id: u128,
        body: &SemiChannelBody,
        counterparty: Option<&SemiChannelBody>,
    ) -> Result<Cell, ChannelError> {
        let mut b = CellBuilder::new();
        b.store_u32(32, TAG_STATE)?
            .store_uint(128, &BigUint::from(channel_id))?;
        body.store(&mut b)?;
        match counterparty {
            Some(c) => {
                b.store_bit(true)?.store_child(c.cell()?)?;
            }
            None => {
                b.store_bit(false)?;
            }
        }
        Ok(b.build()?)
    }

    /// Signs a new state.
    pub fn sign(
        key: &SigningKey,
        channel_id: u128,
        body: SemiChannelBody,
        counterparty: Option<SemiChannelBody>,
    ) -> Result<Self, ChannelError> {
        let cell = Self::state_cell(channel_id, &body, counterparty.as_ref())?;
        Ok(Self {
            channel_id,
            body,
            counterparty,
            signature: sign_cell(key, &cell),
        })
    }

    /// Checks the signature by `key` and that the state is for `channel_id`.
    pub fn verify(&self, key: &[u8; 32], channel_id: u128) -> Result<(), ChannelError> {
        if self.channel_id != channel_id {
            return Err(ChannelError::Mismatch {
                what: "channel ID",
                expected: format!("{channel_id:#x}"),
                found: format!("{:#x}", self.channel_id),
            });
        }
        let cell = Self::state_cell(self.channel_id, &self.body, self.counterparty.as_ref())?;
        verify_cell(key, &cell, &self.signature, "semi-channel state")
    }

    /// `signed_schs#_ signature:bits512 state:SemiChannel`.
    pub fn cell(&self) -> Result<Cell, ChannelError> {
        let state = Self::state_cell(self.channel_id, &self.body, self.counterparty.as_ref())?;
        Ok(CellBuilder::new()
            .store_slice(&self.signature)?
            .store_cell(&state)?
            .build()?)
    }

    /// The state as a base64 BOC.
    pub fn to_boc_base64(&self) -> Result<String, ChannelError> {
        boc_base64(self.cell()?)
    }
}

fn quarantine_message(
    op: u32,
    tag: u32,
    channel_id: u128,
    key: &SigningKey,
    by_a: bool,
    state_a: &SignedState,
    state_b: &SignedState,
) -> Result<Cell, ChannelError> {
    let signed = CellBuilder::new()
        .store_u32(32, tag)?
        .store_uint(128, &BigUint::from(channel_id))?
        .store_child(state_a.cell()?)?
        .store_child(state_b.cell()?)?
        .build()?;
    signed_by_party(op, by_a, key, &signed)
}

/// `start_uncooperative_close`: one party submits both latest states.
pub fn start_uncooperative_close(
    channel_id: u128,
    key: &SigningKey,
    by_a: bool,
    state_a: &SignedState,
    state_b: &SignedState,
) -> Result<Cell, ChannelError> {
    quarantine_message(
        OP_START_UNCOOPERATIVE_CLOSE,
        TAG_START_UNCOOPERATIVE_CLOSE,
        channel_id,
        key,
        by_a,
        state_a,
        state_b,
    )
}

/// `challenge_quarantined_state`: the counterparty submits newer states.
pub fn challenge_quarantined_state(
    channel_id: u128,
    key: &SigningKey,
    by_a: bool,
    state_a: &SignedState,
    state_b: &SignedState,
) -> Result<Cell, ChannelError> {
    quarantine_message(
        OP_CHALLENGE_QUARANTINED_STATE,
        TAG_CHALLENGE_STATE,
        channel_id,
        key,
        by_a,
        state_a,
        state_b,
    )
}

/// `finish_uncooperative_close`, after the quarantine.
pub fn finish_uncooperative_close() -> Result<Cell, ChannelError> {
    Ok(CellBuilder::new()
        .store_u32(32, OP_FINISH_UNCOOPERATIVE_CLOSE)?
        .build()?)
}

/// An inbound external message carrying `body` to `dest` (the contract
/// accepts cooperative closes and `finish_uncooperative_close` this way).
pub fn external_message(dest: &TonAddress, body: Cell) -> Result<Cell, ChannelError> {
    use tonlib_core::message::{
        CommonMsgInfo, ExternalIncomingMessage, TonMessage, TransferMessage,
    };
    let info = CommonMsgInfo::ExternalIncomingMessage(ExternalIncomingMessage {
        src: TonAddress::NULL,
        dest: dest.clone(),
        import_fee: BigUint::from(0u8),
    });
    TransferMessage::new(info, Arc::new(body))
        .build()
        .map_err(|e| ChannelError::Mismatch {
            what: "external message",
            expected: "a message tonlib-core can build".into(),
            found: e.to_string(),
        })
}

/// Serialises a cell as a base64 BOC (with CRC32).
pub fn boc_base64(cell: Cell) -> Result<String, ChannelError> {
    use base64_engine::encode;
    Ok(encode(&BagOfCells::from_root(cell).serialize(true)?))
}

/// Parses a BOC (hex) with one root, e.g. the contract code.
pub fn cell_from_hex(hex: &str) -> Result<Cell, ChannelError> {
    let root = BagOfCells::parse_hex(hex)?.single_root()?;
    Ok(Arc::unwrap_or_clone(root))
}

mod base64_engine {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    pub fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }
}
