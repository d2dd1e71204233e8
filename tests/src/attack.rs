//! What hostile clients do, for the tests and the soak: drip request bodies
//! a byte at a time, and hammer the attestation route.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Holds one dripping upload on `path` (`/v1/ohttp` or `/v1/voucher`) of
/// the host at `addr` until `stop`: headers, then a one-byte chunk every
/// ~second, reconnecting whenever the host answers or closes. Counts the
/// host's cut-offs in `cut`.
pub async fn drip(
    addr: SocketAddr,
    path: &'static str,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicU64>,
) {
    let content_type = if path == "/v1/ohttp" {
        "message/ohttp-req"
    } else {
        "application/json"
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // A well-formed (if unverifiable) payer proof, so that a billing
        // host has to wait for the body before it can refuse.
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: kokon\r\ncontent-type: {content_type}\r\nkokon-payer: 5:0:{}\r\ntransfer-encoding: chunked\r\n\r\n",
            "00".repeat(64)
        );
        if s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 512];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if s.write_all(b"1\r\nx\r\n").await.is_err() {
                cut.fetch_add(1, Ordering::Relaxed);
                break;
            }
            // Anything the host says (408, or a close) ends this upload.
            match tokio::time::timeout(Duration::from_millis(900), s.read(&mut buf)).await {
                Ok(_) => {
                    cut.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) => continue,
            }
        }
    }
}

/// Asks the host at `base` for attestations as fast as it answers, each on
/// a new connection, until `stop`; counts bundles in `ok` and anything else in `refused`.
pub async fn flood_attestation(
    base: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let mut nonce = [0u8; 32];
    while !stop.load(Ordering::Relaxed) {
        let _ = getrandom::fill(&mut nonce);
        let path = format!("/v1/attestation?nonce={}", hex::encode(nonce));
        match crate::try_http_get(&base, &path).await {
            Some((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
            _ => refused.fetch_add(1, Ordering::Relaxed),
        };
    }
}
