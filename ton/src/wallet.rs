//! Wallet-wrapped settlement: the channel messages built in this crate, sent
//! from a standard TON wallet (v4r2 or v5r1) as a signed external message,
//! serialised as a BOC — what a party actually broadcasts. Built with
//! `tonlib-core`'s wallet support; the secret key it needs is zeroized when
//! the wallet is dropped.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use num_bigint::BigUint;
use tonlib_core::cell::Cell;
use tonlib_core::message::{CommonMsgInfo, InternalMessage, TonMessage, TransferMessage};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::mnemonic::KeyPair;
use tonlib_core::wallet::ton_wallet::TonWallet;
use tonlib_core::wallet::wallet_version::WalletVersion;
use tonlib_core::TonAddress;
use zeroize::Zeroize;

use crate::ChannelError;

/// Which standard wallet contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Wallet v4 revision 2.
    V4R2,
    /// Wallet v5 revision 1 (W5).
    V5R1,
}

/// A standard wallet controlled by an Ed25519 key.
pub struct Wallet {
    inner: TonWallet,
}

impl Drop for Wallet {
    fn drop(&mut self) {
        self.inner.key_pair.secret_key.zeroize();
    }
}

fn err(e: impl std::fmt::Display) -> ChannelError {
    ChannelError::Mismatch {
        what: "wallet message",
        expected: "a message tonlib-core can build".into(),
        found: e.to_string(),
    }
}

/// An internal message to `to` carrying `value` nanotons and `body`, with
/// the contract's `init` (code, data) when it deploys one.
pub struct Outgoing {
    /// Destination.
    pub to: TonAddress,
    /// Nanotons attached.
    pub value: u128,
    /// The message body.
    pub body: Cell,
    /// Code and data to deploy at `to`.
    pub init: Option<(Cell, Cell)>,
}

impl Wallet {
    /// The wallet of `version` for `key` (workchain 0, default wallet ID).
    pub fn new(version: Version, key: &SigningKey) -> Result<Self, ChannelError> {
        let key_pair = KeyPair {
            public_key: key.verifying_key().to_bytes().to_vec(),
            secret_key: key.to_keypair_bytes().to_vec(),
        };
        let version = match version {
            Version::V4R2 => WalletVersion::V4R2,
            Version::V5R1 => WalletVersion::V5R1,
        };
        Ok(Self {
            inner: TonWallet::new(version, key_pair)?,
        })
    }

    /// Its address.
    pub fn address(&self) -> &TonAddress {
        &self.inner.address
    }

    /// A signed external message asking the wallet (deploying it with
    /// `deploy`) to send `outgoing`.
    pub fn external(
        &self,
        seqno: u32,
        expire_at: u32,
        deploy: bool,
        outgoing: &[Outgoing],
    ) -> Result<Cell, ChannelError> {
        let messages = outgoing
            .iter()
            .map(|o| {
                let info = CommonMsgInfo::InternalMessage(InternalMessage {
                    ihr_disabled: true,
                    bounce: o.init.is_none(),
                    bounced: false,
                    src: TonAddress::NULL,
                    dest: o.to.clone(),
                    value: BigUint::from(o.value),
                    ihr_fee: BigUint::from(0u8),
                    fwd_fee: BigUint::from(0u8),
                    created_lt: 0,
                    created_at: 0,
                });
                let mut m = TransferMessage::new(info, Arc::new(o.body.clone()));
                if let Some((code, data)) = &o.init {
                    let init =
                        StateInit::new(Arc::new(code.clone()), Arc::new(data.clone())).to_cell()?;
                    m.with_state_init(init);
                }
                m.build().map(Arc::new).map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.inner
            .create_external_msg(expire_at, seqno, deploy, messages)
            .map_err(err)
    }
}
