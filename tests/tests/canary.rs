#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The host never sees plaintext: a unique marker sent by the client appears
//! nowhere in the host's logs (including the enclave's forwarded stderr),
//! its error messages, its metrics, or the bytes it relayed in either direction.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kokon_client::magika::Prepared;
use kokon_client::{Client, ClientError};
use kokon_policies::Policy;
use kokon_tests::{magika_request, Env, DEV_POLICY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Capture {
    to_host: Vec<u8>,
    from_host: Vec<u8>,
}

/// A TCP proxy that records every byte it relays.
async fn recording_proxy(upstream: String, capture: Arc<Mutex<Capture>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let capture = capture.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let c1 = capture.clone();
                let up = async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        c1.lock().unwrap().to_host.extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n @ 1..) = sr.read(&mut buf).await {
                        capture
                            .lock()
                            .unwrap()
                            .from_host
                            .extend_from_slice(&buf[..n]);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::join!(up, down);
            });
        }
    });
    format!("http://{addr}")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn host_never_sees_the_prompt() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("host.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = kokon_tests::free_port();
    let tag = kokon_tests::test_tag();
    let mut host = tokio::process::Command::new(&env.kokon_bin)
        .args(["host", "--listen", &format!("127.0.0.1:{port}")])
        .env("KOKON_DATA_DIR", data.path())
        .env_remove("KOKON_LOG")
        .env("RUST_LOG", "trace")
        .env("KOKON_ORT_LIB", &env.ort_lib)
        .env("KOKON_MODEL", &env.model)
        .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
        .env(kokon_tests::TEST_TAG_ENV, &tag)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();

    let capture = Arc::new(Mutex::new(Capture::default()));
    let base = recording_proxy(format!("127.0.0.1:{port}"), capture.clone()).await;
    let client = Client::new(&base);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while kokon_tests::try_http_get(&format!("http://127.0.0.1:{port}"), "/healthz")
        .await
        .map(|r| r.0)
        != Some(200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "host did not come up; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let policy = Policy::from_toml(DEV_POLICY, &env.local_references(data.path())).unwrap();
    let enclave = client.attest(&policy).await.unwrap();

    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).unwrap();
    let marker = format!("KOKON-CANARY-{}", hex::encode(raw));
    let content = format!("Secret memo. {marker} The quarterly numbers are confidential and must not leave the enclave. {marker}\n").repeat(4);
    let row = match env.magika().prepare(content.as_bytes()) {
        Prepared::Features(row) => row,
        Prepared::Decided(c) => panic!("{c:?}"),
    };
    // 1. A request whose ID and tensor carry the marker; the ID is echoed in the sealed response.
    let mut request = magika_request(std::slice::from_ref(&row));
    request.id = Some(marker.clone());
    let (response, _) = client.infer(&enclave, &request).await.unwrap();
    assert_eq!(
        response.id.as_deref(),
        Some(marker.as_str()),
        "the marker made the round trip in plaintext"
    );
    // 2. A bad request whose error message (sealed) names the marker.
    let mut bad = magika_request(&[row]);
    bad.inputs[0].name = marker.clone();
    let err = client.infer(&enclave, &bad).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Enclave { status: 400, message } if message.contains(&marker)),
        "{err}"
    );
    // 3. Tampered and replayed ciphertext, so the host's error paths run too.
    let sealed = enclave
        .seal_infer(&request, kokon_client::unix_now())
        .unwrap();
    let mut tampered = sealed.bytes.clone();
    tampered[60] ^= 1;
    assert!(client.send(&tampered).await.is_err());
    client.send(&sealed.bytes).await.unwrap();
    assert!(client.send(&sealed.bytes).await.is_err());
    // 4. Health and metrics through the same recorder.
    assert_eq!(kokon_tests::http_get(&base, "/metrics").await.0, 200);
    assert_eq!(kokon_tests::http_get(&base, "/healthz").await.0, 200);

    // SIGTERM: the host shuts down cleanly and stops its enclave.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), host.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "host exit status {status:?}");
    kokon_tests::assert_no_leftovers(&tag);

    let logs = std::fs::read(&log_path).unwrap();
    assert!(
        contains(&logs, b"enclave ready"),
        "the log was captured at trace level (RUST_LOG):\n{}",
        String::from_utf8_lossy(&logs)
    );
    // One line per request: route, status, sizes, duration.
    let text = String::from_utf8_lossy(&logs);
    let served = text
        .lines()
        .filter(|l| {
            l.contains(" request ")
                && l.contains("route=\"/v1/ohttp\"")
                && l.contains("status=200")
                && l.contains("bytes_in=")
                && l.contains("bytes_out=")
                && l.contains("duration_ms=")
        })
        .count();
    assert!(served >= 2, "request lines in the log:\n{text}");
    let capture = capture.lock().unwrap();
    assert!(
        capture.to_host.len() > 10_000 && capture.from_host.len() > 2_000,
        "the recorder saw the traffic"
    );
    let marker_as_tensor = marker
        .bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for needle in [
        marker.as_bytes(),
        marker_as_tensor.as_bytes(),
        &marker.as_bytes()[13..],
    ] {
        assert!(!contains(&logs, needle), "marker in the host's logs");
        assert!(
            !contains(&capture.to_host, needle),
            "marker in bytes relayed to the host"
        );
        assert!(
            !contains(&capture.from_host, needle),
            "marker in bytes the host sent back (errors, metrics, responses)"
        );
    }
}
