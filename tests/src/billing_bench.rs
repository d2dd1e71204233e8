//! Billing throughput: receipts and vouchers signed and verified per second,
//! and how many requests one on-chain settlement covers in the demo.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use kokon_billing::{digest, Expected, Price, ReceiptSigner, Usage};
use kokon_ton::voucher::Payer;
use kokon_ton_sandbox::{DEMO_DEPOSIT, DEMO_PRICE};

const WINDOW: Duration = Duration::from_millis(700);

/// Runs `f` repeatedly for about [`WINDOW`]; returns operations per second.
fn rate(mut f: impl FnMut() -> bool) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < WINDOW {
        anyhow::ensure!(f(), "a billing operation failed");
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Prints the billing figures.
pub fn run() -> anyhow::Result<()> {
    let signer = ReceiptSigner::from_secret(&[5; 32]);
    let usage = Usage {
        request_digest: digest(b"request"),
        response_digest: digest(b"response"),
        model_digest: [7; 32],
        units: 1,
        output_units: 0,
        price: Price::per_unit(DEMO_PRICE),
        channel_id: 9,
        issued_at: 1_780_000_000,
    };
    let sample = signer.sign(&usage)?;
    let expected = Expected {
        key: signer.public_key(),
        request_digest: usage.request_digest,
        response_digest: usage.response_digest,
        model_digest: usage.model_digest,
        units: 1,
        output_units: 0,
        channel_id: 9,
        max_price: Price::per_unit(DEMO_PRICE),
    };
    let signed = rate(|| signer.sign(&usage).is_ok())?;
    let verified = rate(|| sample.verify(&expected).is_ok())?;
    println!("receipts: {signed:9.0} signed/s   {verified:9.0} verified/s (TON cell, Ed25519 over its hash)");

    let key = SigningKey::from_bytes(&[6; 32]);
    let public = key.verifying_key().to_bytes();
    let mut payer = Payer::new(key, 9, u128::MAX, None);
    let voucher = payer.pay(1)?;
    let signed = rate(|| payer.pay(1).is_ok())?;
    let verified = rate(|| voucher.verify(&public, 9).is_ok())?;
    println!("vouchers: {signed:9.0} signed/s   {verified:9.0} verified/s (semichannel state, Ed25519 over its cell hash)");
    println!(
        "one on-chain settlement covers {} requests in the demo's configuration (deposit {} nanotons at {} per inference)",
        DEMO_DEPOSIT / DEMO_PRICE,
        DEMO_DEPOSIT,
        DEMO_PRICE
    );
    Ok(())
}
