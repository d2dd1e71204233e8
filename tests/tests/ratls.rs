#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The enclave's attested TLS listener, end to end: a client that verifies
//! the enclave in the TLS handshake talks to it with no host in between, and
//! a client whose policy pins another enclave binary refuses the handshake.

use std::sync::Arc;
use std::time::Duration;

use kokon_tests::{Options, Stack};
use kokon_wire::{Request, Response};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return s,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("connect {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_verifies_the_enclave_in_the_tls_handshake() {
    let addr = free_port();
    let stack = Stack::start(Options {
        enclave_args: vec!["--ratls-listen".into(), addr.to_string()],
        ..Options::default()
    })
    .await;
    let name = rustls::pki_types::ServerName::try_from("kokon-enclave").unwrap();

    // Accepted: the certificate's evidence is the local sim enclave's.
    let config = kokon_ratls::client_config(Arc::new(stack.dev_policy()), None).unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name.clone(), connect(addr).await)
        .await
        .unwrap();
    Request::Health.write(&mut tls).await.unwrap();
    match Response::read(&mut tls).await.unwrap() {
        Response::Health(body) => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["backend"], "sim");
        }
        other => panic!("unexpected {other:?}"),
    }

    // Refused: a policy that expects another enclave binary.
    let other = stack.policy(&kokon_tests::DEV_POLICY.replace(
        "mrtd = [\"local-enclave-build\"]",
        &format!("mrtd = [\"{}\"]", "ab".repeat(48)),
    ));
    let config = kokon_ratls::client_config(Arc::new(other), None).unwrap();
    let err = TlsConnector::from(Arc::new(config))
        .connect(name, connect(addr).await)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("MRTD"), "{err}");
    stack.shutdown().await;
}
