#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! An attestation flood cannot starve inference: 64 connections hammering
//! `/v1/attestation` leave private inference at no less than half of its
//! throughput without them. (Its own test binary: throughput is measured,
//! so nothing else may run beside it.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kokon_client::VerifiedEnclave;
use kokon_tests::{magika_request, Options, Stack};
use kokon_wire::kserve::InferRequest;

const FLOODERS: usize = 64;
const CLIENTS: usize = 4;
const WINDOW: Duration = Duration::from_secs(8);

/// Inferences served in `WINDOW` by `CLIENTS` concurrent clients.
async fn throughput(stack: &Stack, enclave: &Arc<VerifiedEnclave>, request: &InferRequest) -> f64 {
    let until = Instant::now() + WINDOW;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, enclave, request) =
                (stack.client.clone(), enclave.clone(), request.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    client.infer(&enclave, &request).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / WINDOW.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attestation_flood_leaves_inference_at_least_half_its_throughput() {
    let stack = Stack::start(Options::default()).await;
    let enclave = Arc::new(stack.attest().await);
    let row = stack.env.feature_row(include_bytes!("../../README.md"));
    let request = magika_request(&[row]);
    let _ = throughput(&stack, &enclave, &request).await; // warm up
    let unloaded = throughput(&stack, &enclave, &request).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, limited) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..FLOODERS)
        .map(|_| {
            tokio::spawn(kokon_tests::attack::flood_attestation(
                stack.base.clone(),
                stop.clone(),
                ok.clone(),
                limited.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = throughput(&stack, &enclave, &request).await;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    let ratio = loaded / unloaded;
    println!(
        "attestation flood: inference {unloaded:.1}/s unloaded, {loaded:.1}/s under {FLOODERS} flooding connections (ratio {ratio:.2}); the flood got {} attestations and {} refusals",
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed)
    );
    assert!(
        ratio >= 0.5,
        "inference fell to {ratio:.2} of its unloaded throughput"
    );
    assert!(limited.load(Ordering::Relaxed) > 0, "the flood was limited");
    stack.shutdown().await;
}
