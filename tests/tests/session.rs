#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The client library's session: a held attestation goes stale when the
//! host restarts its enclave (new key); a session notices, attests again
//! under the same policy and sends the request once more; evidence older
//! than the session's maximum age is renewed before a request.

use std::sync::Arc;
use std::time::Duration;

use kokon_client::session::Session;
use kokon_tests::{magika_request, Options, Stack};

#[tokio::test(flavor = "multi_thread")]
async fn a_session_reattests_when_the_enclave_key_changes_or_the_evidence_ages() {
    let stack = Stack::start(Options::default()).await;
    let row = stack
        .env
        .feature_row(include_bytes!("../../attestation/src/tdx/quote.rs"));
    let request = magika_request(&[row]);
    let session = Session::open(stack.client.clone(), stack.dev_policy())
        .await
        .unwrap();
    let held = stack.attest().await;
    let first = session.enclave().await.unwrap();
    session.infer(&request).await.unwrap();

    // The host restarts its enclave: a new key.
    stack.restart_enclave().await;
    // A held attestation is refused, and the error says why.
    let err = stack.client.infer(&held, &request).await.unwrap_err();
    assert!(err.is_key_changed(), "{err}");
    // The session attests the new enclave and is served.
    let (answer, _) = session.infer(&request).await.unwrap();
    assert_eq!(answer.model_name, "magika");
    let second = session.enclave().await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "a new attestation");
    assert_ne!(
        first.evidence.claims.ohttp_key_config,
        second.evidence.claims.ohttp_key_config
    );

    // Aged evidence is renewed before the next request.
    let aging = Session::open(stack.client.clone(), stack.dev_policy())
        .await
        .unwrap()
        .max_evidence_age(Duration::from_millis(100));
    let before = aging.enclave().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    aging.infer(&request).await.unwrap();
    let after = aging.enclave().await.unwrap();
    assert!(!Arc::ptr_eq(&before, &after), "renewed");
    assert!(after.evidence.claims.issued_at >= before.evidence.claims.issued_at);
    stack.shutdown().await;
}
