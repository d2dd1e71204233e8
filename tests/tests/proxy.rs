#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! `kokon proxy` driven by the official `openai` Python package, as an
//! unmodified application would use it: models, whole and streamed chat
//! completions, usage, legacy completions and errors, every request sealed
//! on the way and paid on a channel; then the enclave is restarted with a
//! new key and the proxy re-attests and retries by itself; a second proxy
//! renews evidence older than its --max-evidence-age.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use kokon_host::ledger::LedgerConfig;
use kokon_tests::{Options, Stack};

const CHANNEL: u128 = 4242;
const DEPOSIT: u128 = 1_000_000_000;

/// A channel file as `kokon channel open` writes it; the proxy uses its
/// ID, key and deposit (the addresses matter only on chain).
fn channel_file(dir: &std::path::Path, key: &SigningKey) -> std::path::PathBuf {
    let path = dir.join("channel.json");
    let file = serde_json::json!({
        "network": "unused.toml",
        "channel_id": CHANNEL.to_string(),
        "client_key": hex::encode(key.to_bytes()),
        "host_key": hex::encode([1u8; 32]),
        "client_wallet": "0:00",
        "host_address": "0:00",
        "channel_address": "0:00",
        "deposit": DEPOSIT.to_string(),
        "voucher": null,
    });
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

/// Kills the proxy however the test ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kokon proxy` on a free port paying on `channel`; returns it, the
/// base URL it says it serves, and its log lines as they come.
fn start_proxy(
    stack: &Stack,
    channel: &std::path::Path,
    extra: &[&str],
) -> (Reap, String, std::sync::mpsc::Receiver<String>) {
    let mut proxy = Command::new(&stack.env.kokon_bin)
        .args(["proxy", "--listen", "127.0.0.1:0", "--host", &stack.base])
        .args(["--policy", "policies/dev-sim.toml", "--channel"])
        .arg(channel)
        .args(extra)
        .current_dir(kokon_tests::repo_root())
        .env("KOKON_DATA_DIR", stack.data.path())
        .env("KOKON_ENCLAVE_BIN", &stack.env.enclave_bin)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(proxy.stderr.take().unwrap());
    let proxy = Reap(proxy);
    // The proxy says where it serves once it attested; its log goes on.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let base = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the proxy did not start: {log:?}"));
        if let Some(at) = line.split("serving the OpenAI API at ").nth(1) {
            assert!(line.contains("attested smollm2-135m-instruct"), "{line}");
            break at.trim().to_string();
        }
        log.push(line);
    };
    (proxy, base, lines)
}

/// Runs the Python client in `phase` against the proxy at `base`.
fn python(stack: &Stack, base: &str, phase: &str) -> serde_json::Value {
    let out = Command::new(&stack.env.python)
        .arg(kokon_tests::repo_root().join("tests/python/openai_client.py"))
        .args([base, phase])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{phase}: {stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_python_package_talks_to_the_enclave_through_kokon_proxy() {
    let store = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[42; 32]);
    let env = kokon_tests::Env::load();
    let stack = Stack::start(Options {
        enclave_args: vec![
            "--llm".into(),
            env.llm_dir.display().to_string(),
            "--price-nanoton-per-prompt-token".into(),
            "1000".into(),
            "--price-nanoton-per-completion-token".into(),
            "3000".into(),
        ],
        ledger: Some(LedgerConfig {
            channels: vec![kokon_tests::channel_config(
                CHANNEL, &key, DEPOSIT, 5_000_000,
            )],
            store: store.path().to_path_buf(),
            host_key_file: None,
        }),
        ..Options::default()
    })
    .await;
    let channel = channel_file(stack.data.path(), &key);
    let (proxy, base, lines) = start_proxy(&stack, &channel, &[]);

    let seen = python(&stack, &base, "all");
    assert_eq!(seen["content"], "The capital of France is Paris.");
    assert_eq!(seen["not_found"], 404);
    assert_eq!(seen["bad_request"], 400);

    // Every verified receipt was paid with a voucher the host holds.
    let status = || async { stack.client.channel_status(CHANNEL).await.unwrap() };
    let (charged, paid, seqno) = kokon_tests::poll_until(status, |b| b.0 > 0 && b.0 == b.1).await;
    assert!(charged > 0);
    assert_eq!(paid, charged, "the proxy paid what the host charged");
    // Chat, two streams and a legacy completion; the model list and the
    // errors cost nothing.
    assert_eq!(seqno, 4, "one voucher per paid answer");

    // The enclave is restarted with a new key: the proxy re-attests and
    // retries, and the application notices nothing.
    stack.restart_enclave().await;
    let again = python(&stack, &base, "again");
    assert_eq!(again["content"], "The capital of France is Paris.");
    let reattested = (0..50).any(|_| {
        let line = lines.recv_timeout(Duration::from_millis(200));
        line.is_ok_and(|l| l.contains("re-attested") && l.contains("key changed"))
    });
    assert!(reattested, "the proxy logs its re-attestation");
    drop(proxy);

    // Evidence older than --max-evidence-age is renewed before a request.
    let (proxy, base, lines) = start_proxy(&stack, &channel, &["--max-evidence-age", "1"]);
    python(&stack, &base, "again");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    python(&stack, &base, "again");
    let aged = (0..50).any(|_| {
        let line = lines.recv_timeout(Duration::from_millis(200));
        line.is_ok_and(|l| l.contains("re-attested") && l.contains("evidence aged"))
    });
    assert!(aged, "the proxy re-attests aged evidence");
    let (charged, paid, _) = kokon_tests::poll_until(status, |b| b.0 > 0 && b.0 == b.1).await;
    assert_eq!(
        paid, charged,
        "the second proxy went on paying on the same channel"
    );
    drop(proxy);
    stack.shutdown().await;
}
