#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Funds are conserved: over random sequences of requests, failed requests,
//! lost vouchers, top-ups and a final close, the host is paid exactly what
//! it served and was vouchered for, never more than the deposits, never
//! beyond its credit limit unpaid; and on the real TVM the close splits the
//! deposits exactly as the newest voucher says.

use ed25519_dalek::SigningKey;
use kokon_tests::Rng;
use kokon_ton::voucher::{Payee, Payer, VoucherError};
use kokon_ton_sandbox::LocalChain;

const PRICE: u128 = 1_000_000;
const LIMIT: u128 = 4 * PRICE;

#[derive(Debug, Clone, Copy)]
enum Step {
    Request(u64),
    FailedRequest,
    LostVoucher(u64),
    TopUp(u128),
}

fn steps(rng: &mut Rng, n: usize) -> Vec<Step> {
    (0..n)
        .map(|_| match rng.below(10) {
            0 => Step::FailedRequest,
            1 => Step::LostVoucher(1 + rng.below(3)),
            2 => Step::TopUp(PRICE * u128::from(1 + rng.below(20))),
            _ => Step::Request(1 + rng.below(3)),
        })
        .collect()
}

/// Plays `steps`; returns what the host served (in nanotons). Checks the
/// invariants after every step.
fn play(steps: &[Step], payer: &mut Payer, payee: &mut Payee, deposit: &mut u128) -> u128 {
    let mut served = 0u128;
    for step in steps {
        match *step {
            Step::Request(units) | Step::LostVoucher(units) => {
                let amount = PRICE * u128::from(units);
                if payee.admit(amount).is_err() {
                    // Over the credit limit: the client catches up (resends
                    // its newest voucher) before asking again.
                    payee.accept(&payer.resign().unwrap()).ok();
                    continue;
                }
                let voucher = match payer.pay(amount) {
                    Ok(v) => v,
                    Err(VoucherError::InsufficientDeposit { .. }) => continue,
                    Err(e) => panic!("{e}"),
                };
                payee.charge(amount);
                served += amount;
                if matches!(step, Step::Request(_)) {
                    payee.accept(&voucher).unwrap();
                }
            }
            Step::FailedRequest => {}
            Step::TopUp(amount) => {
                *deposit += amount;
                payer.top_up(amount);
                payee.top_up(amount);
            }
        }
        // Invariants: nothing paid beyond what was signed, served or deposited;
        // the unpaid part never passes the limit by more than one request.
        assert!(payee.paid() <= payer.state().sent);
        assert!(payer.state().sent <= served);
        assert!(payer.state().sent <= *deposit);
        assert!(payee.charged().saturating_sub(payee.paid()) <= LIMIT + 3 * PRICE);
    }
    // Settle up: the client's newest voucher reaches the host.
    if payee.paid() < payer.state().sent {
        payee.accept(&payer.resign().unwrap()).unwrap();
    }
    assert_eq!(
        payee.paid(),
        served,
        "every served request paid exactly once"
    );
    served
}

fn parties(key: &SigningKey, channel: u128, deposit: u128) -> (Payer, Payee) {
    (
        Payer::new(key.clone(), channel, deposit, None),
        Payee::new(
            key.verifying_key().to_bytes(),
            channel,
            deposit,
            LIMIT,
            None,
        )
        .unwrap(),
    )
}

#[test]
fn vouchers_conserve_funds_over_random_sequences() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let key = SigningKey::from_bytes(&[(seed % 251) as u8; 32]);
        let mut deposit = PRICE * u128::from(5 + rng.below(50));
        let (mut payer, mut payee) = parties(&key, seed as u128, deposit);
        let plan = steps(&mut rng, 80);
        play(&plan, &mut payer, &mut payee, &mut deposit);
    }
}

#[test]
fn on_the_tvm_the_close_splits_the_deposits_as_the_newest_voucher_says() {
    for seed in [7u64, 11, 13] {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut chain =
            LocalChain::start(&kokon_ton_sandbox::bridge_script(), 1_780_000_000).unwrap();
        let client_key = SigningKey::from_bytes(&[seed as u8; 32]);
        let host_key = SigningKey::from_bytes(&[seed as u8 + 1; 32]);
        let params = chain
            .channel_params(1000 + u128::from(seed), &client_key, &host_key)
            .unwrap();
        let mut deposit = 20 * PRICE;
        let plan = steps(&mut rng, 60);
        // The standard contract takes top-ups only before `init_channel`, so
        // the plan's top-ups fund the channel on chain up front, in parts;
        // the parties' off-chain limits still grow only as the plan tops up.
        let mut parts = vec![deposit];
        parts.extend(plan.iter().filter_map(|s| match s {
            Step::TopUp(a) => Some(*a),
            _ => None,
        }));
        let address = chain
            .open_channel_in_parts(&params, &client_key, &parts)
            .unwrap();
        let total: u128 = parts.iter().sum();
        assert_eq!(chain.balances(&address).unwrap(), (total, 0));
        let (mut payer, mut payee) = parties(&client_key, params.channel_id, deposit);
        let served = play(&plan, &mut payer, &mut payee, &mut deposit);
        assert_eq!(deposit, total);
        let settled = chain
            .close_cooperatively(
                &address,
                &params,
                &client_key,
                &host_key,
                payee.paid(),
                deposit,
                payer.state().seqno.max(1),
            )
            .unwrap();
        assert_eq!(settled.to_host, served, "seed {seed}");
        assert!(settled.to_client >= deposit - served, "seed {seed}");
    }
}
