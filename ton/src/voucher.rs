//! Vouchers: the client's signed cumulative payment states, and the two
//! sides that keep them.
//!
//! The [`Payer`] (client) signs a new state after each verified receipt:
//! seqno + 1, sent + the receipt's amount. The [`Payee`] (host) accepts a
//! voucher only if it is signed by the client's channel key for this channel,
//! newer than the last one, pays no less, and stays within the deposit, and
//! refuses work once the unpaid amount would pass the credit limit.
//!
//! Both are pure decisions over the channel's state: storing vouchers is the
//! caller's. A host [`Payee::check`]s a voucher, stores it durably, and only
//! then [`Payee::record`]s it, so a crash never loses a payment it has
//! acknowledged (kokon's host does this in its ledger).

use ed25519_dalek::SigningKey;

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

/// The host's side: verifies and counts vouchers; enforces credit.
pub struct Payee {
    client_key: [u8; 32],
    channel_id: u128,
    deposit: u128,
    credit_limit: u128,
    latest: Option<SignedState>,
    charged: u128,
    last_charge: u128,
}

impl Payee {
    /// A payee for `channel_id`, whose client signs with `client_key`,
    /// starting from `stored` (the newest voucher it kept, verified again
    /// here before it counts). What the stored voucher pays counts as charged.
    pub fn new(
        client_key: [u8; 32],
        channel_id: u128,
        deposit: u128,
        credit_limit: u128,
        stored: Option<SignedState>,
    ) -> Result<Self, VoucherError> {
        if let Some(state) = &stored {
            state.verify(&client_key, channel_id)?;
        }
        let charged = stored.as_ref().map(|v| v.body.sent).unwrap_or(0);
        Ok(Self {
            client_key,
            channel_id,
            deposit,
            credit_limit,
            latest: stored,
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

    /// Whether `voucher` may be accepted: signed by the client for this
    /// channel, newer than the last, paying no less, within the deposit.
    /// Returns what it newly pays. Nothing changes until [`Payee::record`].
    pub fn check(&self, voucher: &SignedState) -> Result<u128, VoucherError> {
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
        Ok(voucher.body.sent - self.paid())
    }

    /// Counts `voucher`, which [`Payee::check`] passed and the caller has
    /// stored durably.
    pub fn record(&mut self, voucher: SignedState) {
        self.latest = Some(voucher);
    }

    /// Checks and records `voucher` at once, for a payee that keeps no store
    /// (a host stores between the two). Returns the newly paid amount.
    pub fn accept(&mut self, voucher: &SignedState) -> Result<u128, VoucherError> {
        let newly = self.check(voucher)?;
        self.record(voucher.clone());
        Ok(newly)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CHANNEL: u128 = 77;

    fn parties() -> (Payer, Payee) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        (
            Payer::new(key, CHANNEL, 1_000, None),
            Payee::new(public, CHANNEL, 1_000, 100, None).unwrap(),
        )
    }

    #[test]
    fn older_replayed_forged_and_foreign_vouchers_are_refused() {
        let (mut payer, mut payee) = parties();
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
        let (mut payer, mut payee) = parties();
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

    #[test]
    fn a_checked_voucher_counts_only_once_recorded() {
        let (mut payer, mut payee) = parties();
        let v = payer.pay(40).unwrap();
        assert_eq!(payee.check(&v).unwrap(), 40);
        assert_eq!(payee.paid(), 0, "check alone counts nothing");
        payee.record(v.clone());
        assert_eq!(payee.paid(), 40);
        assert!(matches!(
            payee.check(&v),
            Err(VoucherError::Stale { what: "seqno", .. })
        ));
    }

    #[test]
    fn a_stored_voucher_is_verified_again_and_counts_as_charged() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        let mut payer = Payer::new(key, CHANNEL, 1_000, None);
        let v = payer.pay(70).unwrap();
        let payee = Payee::new(public, CHANNEL, 1_000, 100, Some(v.clone())).unwrap();
        assert_eq!((payee.paid(), payee.charged()), (70, 70));
        let mut forged = v;
        forged.body.sent = 900;
        assert!(matches!(
            Payee::new(public, CHANNEL, 1_000, 100, Some(forged)),
            Err(VoucherError::Channel(_))
        ));
    }
}
