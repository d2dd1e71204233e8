#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Slow clients cannot starve a host: 128 uploads that drip their bodies a
//! byte at a time (64 on `/v1/ohttp`, 64 on `/v1/voucher`), reconnecting
//! whenever the host cuts them off, are held for 40 s while a paying client
//! keeps getting private inferences and `/healthz` keeps answering.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use kokon_host::ledger::LedgerConfig;
use kokon_tests::{magika_request, Options, Stack, DEV_POLICY};

const CHANNEL: u128 = 5;
const DRIPPERS_PER_ROUTE: usize = 64;

#[tokio::test(flavor = "multi_thread")]
async fn dripping_uploads_on_every_route_do_not_stop_private_inference() {
    let attack = Duration::from_secs(
        std::env::var("KOKON_SLOW_CLIENT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40),
    );
    let store = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let stack = Stack::start(Options {
        ledger: Some(LedgerConfig {
            channels: vec![kokon_tests::channel_config(CHANNEL, &key, 1000, 1000)],
            store: store.path().to_path_buf(),
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
        .with_channel(CHANNEL, key);
    let row = stack.env.feature_row(include_bytes!("../../README.md"));
    let request = magika_request(&[row]);

    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicU64::new(0));
    let mut drippers = Vec::new();
    for path in ["/v1/ohttp", "/v1/voucher"] {
        for _ in 0..DRIPPERS_PER_ROUTE {
            drippers.push(tokio::spawn(kokon_tests::attack::drip(
                stack.host.addr,
                path,
                stop.clone(),
                cut.clone(),
            )));
        }
    }
    // Let every dripper get its headers in and start dripping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let (mut served, mut failed, mut health_ok) = (0u64, Vec::new(), 0u64);
    let mut worst = Duration::ZERO;
    while started.elapsed() < attack {
        let t = Instant::now();
        match stack.client.infer(&enclave, &request).await {
            Ok(_) => served += 1,
            Err(e) => failed.push(e.to_string()),
        }
        worst = worst.max(t.elapsed());
        if kokon_tests::http_get(&stack.base, "/healthz").await.0 == 200 {
            health_ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for d in drippers {
        let _ = d.await;
    }
    println!(
        "slow clients: {} dripping uploads held for {:?}; the host cut off {} of them; {served} private inferences served ({:.1}/s, slowest {worst:?}), {} failed; /healthz ok {health_ok} times",
        2 * DRIPPERS_PER_ROUTE,
        attack,
        cut.load(Ordering::Relaxed),
        served as f64 / attack.as_secs_f64(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "inference failed under slow clients: {failed:?}"
    );
    assert!(served >= 10, "only {served} inferences in {attack:?}");
    assert_eq!(health_ok, served, "/healthz answered every time");
    assert!(
        cut.load(Ordering::Relaxed) >= 2 * DRIPPERS_PER_ROUTE as u64
            || attack < Duration::from_secs(11),
        "the host cut off every dripper at its body deadline"
    );
    stack.shutdown().await;
}
