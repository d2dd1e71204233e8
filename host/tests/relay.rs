#![allow(clippy::unwrap_used, missing_docs)]
//! The relay's connection pool against a scripted fake enclave.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kokon_host::link::Link;
use kokon_host::relay::{Relay, RelayError};
use kokon_host::EnclaveState;
use kokon_wire::{Request, Response};
use tokio::net::UnixListener;

/// Serves `answers_per_connection` health answers per connection, then closes it.
fn fake_enclave(
    listener: UnixListener,
    answers_per_connection: usize,
    connections: Arc<AtomicUsize>,
) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                for _ in 0..answers_per_connection {
                    if Request::read(&mut stream).await.is_err() {
                        return;
                    }
                    let _ = Response::Health(b"{}".to_vec()).write(&mut stream).await;
                }
            });
        }
    });
}

fn setup(answers_per_connection: usize) -> (tempfile::TempDir, Relay, Arc<AtomicUsize>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("e.sock");
    let connections = Arc::new(AtomicUsize::new(0));
    fake_enclave(
        UnixListener::bind(&socket).unwrap(),
        answers_per_connection,
        connections.clone(),
    );
    let state = Arc::new(EnclaveState::default());
    state.pid.store(42, Ordering::Relaxed);
    (dir, Relay::new(Link::Unix(socket), state), connections)
}

#[tokio::test]
async fn idle_connections_are_reused() {
    let (_dir, relay, connections) = setup(usize::MAX);
    for _ in 0..5 {
        assert!(matches!(
            relay.call(&Request::Health, Duration::from_secs(5)).await,
            Ok(Response::Health(_))
        ));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_enclave_closed_is_replaced_without_losing_the_request() {
    let (_dir, relay, connections) = setup(1);
    for _ in 0..3 {
        // Give the fake time to close its end, so the pooled connection is stale.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(
            relay.call(&Request::Health, Duration::from_secs(5)).await,
            Ok(Response::Health(_))
        ));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_enclave_that_dies_mid_answer_is_reported_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("e.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = Request::read(&mut stream).await;
            drop(stream); // read the request, then "crash"
        }
    });
    let relay = Relay::new(Link::Unix(socket), Arc::new(EnclaveState::default()));
    let err = relay
        .call(
            &Request::Ohttp {
                channel: 0,
                request: vec![1; 100],
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::Closed), "{err}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "a request the enclave may have seen is never sent twice"
    );
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::new(
        Link::Unix(dir.path().join("none.sock")),
        Arc::new(EnclaveState::default()),
    );
    assert!(matches!(
        relay.call(&Request::Health, Duration::from_secs(5)).await,
        Err(RelayError::Unavailable(_))
    ));
}
