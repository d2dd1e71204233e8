#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! When the host cannot store a voucher, the client keeps the result it
//! paid for, gets an actionable payment error that names none of the host's
//! paths, and its next (cumulative) voucher is counted once storage works.

use ed25519_dalek::SigningKey;
use kokon_client::ClientError;
use kokon_host::ledger::LedgerConfig;
use kokon_tests::{magika_request, Options, Stack, DEV_POLICY};
use kokon_ton::voucher::Payer;

const PRICE: u128 = 1_000;
const CHANNEL: u128 = 77;

/// The host's log, captured (the host runs in this process).
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_voucher_store_loses_neither_the_result_nor_the_payment() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter("warn")
        .init();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("vouchers");
    let key = SigningKey::from_bytes(&[7; 32]);
    let stack = Stack::start(Options {
        enclave_args: vec!["--price-nanoton-per-unit".into(), PRICE.to_string()],
        ledger: Some(LedgerConfig {
            channels: vec![kokon_tests::channel_config(
                CHANNEL,
                &key,
                1000 * PRICE,
                3 * PRICE,
            )],
            store: store.clone(),
            host_key_file: None,
        }),
        ..Options::default()
    })
    .await;
    let enclave = stack
        .client
        .attest(&stack.policy(DEV_POLICY))
        .await
        .unwrap()
        .with_channel(CHANNEL, key.clone());
    let row = stack.env.feature_row(include_bytes!("../../README.md"));
    let request = magika_request(&[row]);
    let mut payer = Payer::new(key, CHANNEL, 1000 * PRICE, None);

    // The store breaks: its directory is replaced by a file.
    let _ = std::fs::remove_dir_all(&store);
    std::fs::write(&store, b"not a directory").unwrap();
    let (result, receipt) = stack.client.infer(&enclave, &request).await.unwrap();
    assert!(!result.outputs.is_empty(), "the client has its result");
    let voucher = payer.pay(receipt.receipt.amount).unwrap();
    let err = stack.client.pay(&voucher).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, ClientError::Host { status: 503, .. }) && message.contains("send it again"),
        "{message}"
    );
    assert!(
        !message.contains(&*store.to_string_lossy()) && !message.contains("vouchers"),
        "the host's paths stay in its log: {message}"
    );
    assert_eq!(stack.client.channel_status(CHANNEL).await.unwrap().1, 0);
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("cannot store a voucher") && logged.contains(&*store.to_string_lossy()),
        "the operator's log names the path that failed:\n{logged}"
    );

    // The store is back: the next voucher covers both requests.
    std::fs::remove_file(&store).unwrap();
    let (_, receipt) = stack.client.infer(&enclave, &request).await.unwrap();
    let voucher = payer.pay(receipt.receipt.amount).unwrap();
    assert_eq!(stack.client.pay(&voucher).await.unwrap(), 2 * PRICE);
    let (charged, paid, _) = stack.client.channel_status(CHANNEL).await.unwrap();
    assert_eq!((charged, paid), (2 * PRICE, 2 * PRICE));
    stack.shutdown().await;
}
