#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The host as payee, through the real stack: requests are billed to a
//! payment channel, the host counts each receipt, refuses work beyond its
//! credit limit until a voucher arrives, refuses forged and replayed
//! vouchers, and keeps the newest voucher across a restart.

use ed25519_dalek::SigningKey;
use kokon_client::ClientError;
use kokon_host::ledger::{ChannelConfig, LedgerConfig};
use kokon_tests::{magika_request, Options, Stack, DEV_POLICY};
use kokon_ton::voucher::Payer;

const PRICE: u128 = 1_000_000;
const CHANNEL: u128 = 42;
const DEPOSIT: u128 = 100 * PRICE;

fn ledger(store: &std::path::Path, key: &SigningKey) -> LedgerConfig {
    LedgerConfig {
        channels: vec![ChannelConfig {
            id: CHANNEL.to_string(),
            client_key: hex::encode(key.verifying_key().to_bytes()),
            deposit: DEPOSIT.to_string(),
            credit_limit: (3 * PRICE).to_string(),
            address: None,
        }],
        store: store.to_path_buf(),
        host_key_file: None,
    }
}

async fn start(store: &std::path::Path, key: &SigningKey) -> Stack {
    Stack::start(Options {
        enclave_args: vec!["--price-nanoton-per-unit".into(), PRICE.to_string()],
        ledger: Some(ledger(store, key)),
        ..Options::default()
    })
    .await
}

fn row(stack: &Stack) -> Vec<i32> {
    match stack
        .env
        .magika()
        .prepare(include_bytes!("../../attestation/src/tdx/quote.rs"))
    {
        kokon_client::magika::Prepared::Features(row) => row,
        _ => panic!("sample too small"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_bills_refuses_unpaid_work_and_keeps_vouchers_across_a_restart() {
    let store = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[21; 32]);
    let stack = start(store.path(), &key).await;
    // The dev policy accepts up to 0.001 TON (PRICE) per inference.
    let policy = stack.policy(DEV_POLICY);
    let request = magika_request(&[row(&stack)]);

    // Without a channel, a billing host refuses.
    let free = stack.client.attest(&policy).await.unwrap();
    let err = stack.client.infer(&free, &request).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 401, message } if message.contains("kokon-payer")),
        "{err}"
    );

    let enclave = stack
        .client
        .attest(&policy)
        .await
        .unwrap()
        .with_channel(CHANNEL, key.clone());
    // Three requests fit the credit limit; the fourth waits for payment.
    for _ in 0..3 {
        let (_, r) = stack.client.infer(&enclave, &request).await.unwrap();
        assert_eq!(r.receipt.amount, PRICE);
    }
    let err = stack.client.infer(&enclave, &request).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 402, message } if message.contains("send a voucher")),
        "{err}"
    );

    let mut payer = Payer::new(key.clone(), CHANNEL, DEPOSIT, None);
    let first = payer.pay(3 * PRICE).unwrap();
    assert_eq!(stack.client.pay(&first).await.unwrap(), 3 * PRICE);
    stack.client.infer(&enclave, &request).await.unwrap();

    // Replayed, forged and foreign vouchers are refused and change nothing.
    let err = stack.client.pay(&first).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Host { status: 409, .. }),
        "{err}"
    );
    let mut forged = payer.pay(PRICE).unwrap();
    forged.body.sent = DEPOSIT;
    let err = stack.client.pay(&forged).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Host { status: 400, .. }),
        "{err}"
    );
    let mut stranger = Payer::new(SigningKey::from_bytes(&[22; 32]), CHANNEL, DEPOSIT, None);
    let err = stack
        .client
        .pay(&stranger.pay(PRICE).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Host { status: 400, .. }),
        "{err}"
    );
    stack.shutdown().await;

    // After a restart the host still holds the newest voucher: a newer one
    // counts on top of it, the old one is still refused.
    let stack = start(store.path(), &key).await;
    let err = stack.client.pay(&first).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Host { status: 409, .. }),
        "{err}"
    );
    let mut payer = Payer::new(key, CHANNEL, DEPOSIT, Some(first.body));
    let next = payer.pay(PRICE).unwrap();
    assert_eq!(stack.client.pay(&next).await.unwrap(), 4 * PRICE);
    stack.shutdown().await;
}
