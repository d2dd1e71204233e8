#![allow(clippy::unwrap_used, missing_docs)]
//! The short soak (`just soak` runs the long one): 64 paying clients, the
//! enclave killed twice, slow clients and an attestation flood, 25 s.
//! Nothing may be lost, double-charged or served unpaid.

use std::time::Duration;

use kokon_tests::soak::{run, SoakConfig};

#[tokio::test(flavor = "multi_thread")]
async fn a_short_soak_loses_nothing_and_serves_nobody_unpaid() {
    let report = run(SoakConfig {
        duration: Duration::from_secs(25),
        clients: 64,
        kills: 2,
        drippers_per_route: 16,
        flooders: 16,
    })
    .await;
    println!("{}", report.error_kinds());
    println!("{}", report.line());
    assert!(report.clean(), "{}", report.line());
    assert_eq!(report.enclave_kills, 2);
    assert!(report.requests > 64, "{}", report.line());
    assert!(report.unpaid_refused > 0, "{}", report.line());
}
