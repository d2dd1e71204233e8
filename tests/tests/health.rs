#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Honest health and metrics: `/healthz` reports a frozen enclave within
//! 2 s, and requests whose client went away are still counted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kokon_tests::{http_get, magika_request_json, Options, Stack};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_503_within_2_s_of_the_enclave_freezing_and_200_after() {
    let stack = Stack::start(Options::default()).await;
    assert_eq!(http_get(&stack.base, "/healthz").await.0, 200);
    let pid = Pid::from_raw(stack.host.state.pid.load(Ordering::Relaxed) as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    let (status, body) = loop {
        let (status, body) = http_get(&stack.base, "/healthz").await;
        if status != 200 || stopped.elapsed() > Duration::from_secs(5) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let noticed = stopped.elapsed();
    kill(pid, Signal::SIGCONT).unwrap();
    println!("/healthz answered {status} {noticed:?} after SIGSTOP: {body}");
    assert_eq!(status, 503, "{body}");
    assert!(noticed <= Duration::from_secs(2), "took {noticed:?}");
    assert!(body.contains("did not answer"), "{body}");
    let resumed = Instant::now();
    while http_get(&stack.base, "/healthz").await.0 != 200 {
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "still 503 after SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.shutdown().await;
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_is_counted_and_leaves_nothing_in_flight() {
    let stack = Stack::start(Options {
        enclave_env: vec![("KOKON_SIM_INFER_DELAY_MS".into(), "1500".into())],
        ..Options::default()
    })
    .await;
    let enclave = stack.attest().await;
    let row = stack.env.feature_row(include_bytes!("../../README.md"));
    let body = serde_json::to_vec(&magika_request_json(&[row])).unwrap();
    let sealed = enclave
        .seal(
            "POST",
            "/v2/models/magika/infer",
            &body,
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    // Send the whole request, then hang up while the enclave works on it.
    let mut s = tokio::net::TcpStream::connect(stack.host.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/ohttp HTTP/1.1\r\nhost: kokon\r\ncontent-type: message/ohttp-req\r\ncontent-length: {}\r\n\r\n",
        sealed.bytes.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&sealed.bytes).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = http_get(&stack.base, "/metrics").await.1;
    assert_eq!(
        metric(&text, "kokon_host_requests_in_flight "),
        1.0,
        "only the /metrics request itself is in flight:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "kokon_host_requests_total{route=\"/v1/ohttp\",status=\"client_closed\"} "
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "kokon_host_request_duration_seconds_count{route=\"/v1/ohttp\"} "
        ),
        1.0,
        "{text}"
    );
    stack.shutdown().await;
}
