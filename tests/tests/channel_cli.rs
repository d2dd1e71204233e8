#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! `kokon channel open|status|close`, `kokon infer --channel` and
//! `kokon host settle` on a TON network: the local sandbox, served as a
//! toncenter-style HTTP API.

use std::path::PathBuf;
use std::process::{Child, Command, Output};

use kokon_ton_sandbox::Bridge;
use serde_json::{json, Value};

const HOST_SEED: [u8; 32] = [61; 32];

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Ctx {
    env: kokon_tests::Env,
    dir: tempfile::TempDir,
    bridge: Bridge,
    network: PathBuf,
    host_address: String,
    channel_file: PathBuf,
    /// Tags the hosts this test starts (see `kokon_tests::assert_no_leftovers`).
    tag: String,
}

impl Ctx {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let api_port = port();
        let mut bridge = Bridge::start_with(
            &kokon_ton_sandbox::bridge_script(),
            &["--http", &api_port.to_string()],
        )
        .unwrap();
        let started = bridge
            .call(json!({"op": "start", "now": kokon_client::unix_now()}))
            .unwrap();
        let network = dir.path().join("network.toml");
        std::fs::write(
            &network,
            format!("endpoint = \"http://127.0.0.1:{api_port}\"\n"),
        )
        .unwrap();
        Self {
            env: kokon_tests::Env::load(),
            channel_file: dir.path().join("channel.json"),
            host_address: started["host"].as_str().unwrap().to_string(),
            dir,
            bridge,
            network,
            tag: kokon_tests::test_tag(),
        }
    }

    fn kokon(&self, args: &[&str]) -> Output {
        Command::new(&self.env.kokon_bin)
            .args(args)
            .current_dir(kokon_tests::repo_root())
            .env("KOKON_DATA_DIR", self.dir.path().join("data"))
            .env("KOKON_ORT_LIB", &self.env.ort_lib)
            .env("KOKON_MODEL", &self.env.model)
            .env("KOKON_MAGIKA_DIR", &self.env.magika_dir)
            .env("KOKON_ENCLAVE_BIN", &self.env.enclave_bin)
            .env("KOKON_TON_BRIDGE", kokon_ton_sandbox::bridge_script())
            .output()
            .unwrap()
    }

    /// Funds whatever wallet a failed command asked to fund.
    fn fund_from(&mut self, out: &Output, what: &str) {
        let stderr = text(&out.stderr);
        let wallet = stderr
            .split(what)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{stderr}"))
            .to_string();
        self.bridge
            .call(json!({"op": "fund", "from": "client", "to": wallet, "value": "1000000000"}))
            .unwrap();
    }

    /// `kokon channel open` (funding the client's wallet when asked);
    /// returns the channel file.
    fn open(&mut self) -> Value {
        let host_key = ed25519_dalek::SigningKey::from_bytes(&HOST_SEED);
        let args = [
            "channel".to_string(),
            "open".into(),
            "--network".into(),
            self.network.display().to_string(),
            "--host-key".into(),
            hex::encode(host_key.verifying_key().to_bytes()),
            "--host-address".into(),
            self.host_address.clone(),
            "--deposit".into(),
            "100000000".into(),
            "--out".into(),
            self.channel_file.display().to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.kokon(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        self.fund_from(&out, "fund the client wallet ");
        let out = self.kokon(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&std::fs::read(&self.channel_file).unwrap()).unwrap()
    }

    /// The host's channels file for `file`'s channel.
    fn channels(&self, file: &Value) -> PathBuf {
        let key_file = self.dir.path().join("host.key");
        std::fs::write(&key_file, hex::encode(HOST_SEED)).unwrap();
        let mut seed = [0u8; 32];
        hex::decode_to_slice(file["client_key"].as_str().unwrap(), &mut seed).unwrap();
        let client = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let channels = self.dir.path().join("channels.toml");
        std::fs::write(
            &channels,
            format!(
                "host_key_file = \"{}\"\n[[channel]]\nid = \"{}\"\nclient_key = \"{}\"\ndeposit = \"100000000\"\ncredit_limit = \"3000000\"\naddress = \"{}\"\n",
                key_file.display(),
                file["channel_id"].as_str().unwrap(),
                hex::encode(client.to_bytes()),
                file["channel_address"].as_str().unwrap(),
            ),
        )
        .unwrap();
        channels
    }

    async fn host(&self, channels: &std::path::Path) -> (Child, String) {
        let host_port = port();
        let child = Command::new(&self.env.kokon_bin)
            .args([
                "host",
                "--listen",
                &format!("127.0.0.1:{host_port}"),
                "--channels",
                channels.to_str().unwrap(),
                "--price-nanoton-per-unit",
                "1000000",
            ])
            .env("KOKON_DATA_DIR", self.dir.path().join("data"))
            .env("KOKON_ORT_LIB", &self.env.ort_lib)
            .env("KOKON_MODEL", &self.env.model)
            .env("KOKON_ENCLAVE_BIN", &self.env.enclave_bin)
            .env(kokon_tests::TEST_TAG_ENV, &self.tag)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{host_port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while kokon_tests::try_http_get(&base, "/healthz")
            .await
            .map(|r| r.0)
            != Some(200)
        {
            assert!(std::time::Instant::now() < deadline, "host did not start");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        (child, base)
    }

    fn infer_paid(&self, base: &str, n: usize) {
        for file in ["README.md", "attestation/src/tdx/quote.rs"]
            .iter()
            .cycle()
            .take(n)
        {
            let out = self.kokon(&[
                "infer",
                "--host",
                base,
                "--policy",
                "policies/dev-sim.toml",
                "--file",
                file,
                "--channel",
                self.channel_file.to_str().unwrap(),
            ]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        }
    }

    fn state(&mut self, address: &str) -> Value {
        self.bridge
            .call(json!({"op": "channel", "address": address}))
            .unwrap()["state"]
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_opens_pays_through_and_closes_a_channel_from_the_command_line() {
    let mut ctx = Ctx::new();
    let file = ctx.open();
    let channels = ctx.channels(&file);
    let (mut host, base) = ctx.host(&channels).await;
    ctx.infer_paid(&base, 2);
    let channel = ctx.channel_file.display().to_string();
    let out = ctx.kokon(&["channel", "status", "--channel", &channel, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (status["sent"].as_str(), status["seqno"].as_u64()),
        (Some("2000000"), Some(2))
    );
    assert_eq!(status["on_chain_state"], 1);
    assert!(
        status["newest_state_boc"]
            .as_str()
            .unwrap()
            .starts_with("te6"),
        "{status}"
    );

    let out = ctx.kokon(&["channel", "close", "--channel", &channel, "--host", &base]);
    let _ = host.kill();
    let _ = host.wait();
    kokon_tests::assert_no_leftovers(&ctx.tag);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("closed: 2000000 nanotons to the host"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_settles_on_the_newest_voucher_when_the_client_is_gone() {
    let mut ctx = Ctx::new();
    let file = ctx.open();
    let address = file["channel_address"].as_str().unwrap().to_string();
    let channels = ctx.channels(&file);
    let (mut host, base) = ctx.host(&channels).await;
    ctx.infer_paid(&base, 3);
    let _ = host.kill();
    let _ = host.wait();
    kokon_tests::assert_no_leftovers(&ctx.tag);
    let settle = |ctx: &Ctx, finish: bool| {
        let mut args = vec![
            "host".to_string(),
            "settle".into(),
            "--channels".into(),
            channels.display().to_string(),
            "--network".into(),
            ctx.network.display().to_string(),
        ];
        if finish {
            args.push("--finish".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctx.kokon(&args)
    };
    // The host's wallet needs gas first: the command says which to fund.
    let out = settle(&ctx, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    ctx.fund_from(&out, "fund the host wallet ");
    let out = settle(&ctx, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(3000000 nanotons)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(ctx.state(&address), 2, "closure started");
    // After the quarantine and the conditionals' period, the host finishes it.
    let later = kokon_client::unix_now() + 3600 + 600 + 60;
    ctx.bridge
        .call(json!({"op": "now", "value": later}))
        .unwrap();
    let balance = |ctx: &mut Ctx| -> u128 {
        let host = ctx.host_address.clone();
        ctx.bridge
            .call(json!({"op": "balance", "address": host}))
            .unwrap()["balance"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = balance(&mut ctx);
    let out = settle(&ctx, true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(ctx.state(&address), 0, "closed");
    let gained = balance(&mut ctx) - before;
    assert!(
        gained <= 3_000_000 && 3_000_000 - gained < 1_000_000,
        "the host's payout address gained {gained} of the 3000000 vouchered (less fees)"
    );
}

#[test]
fn an_unreachable_network_is_reported_never_taken_for_an_empty_wallet() {
    let env = kokon_tests::Env::load();
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let closed = port();
    let network = dir.path().join("network.toml");
    std::fs::write(
        &network,
        format!("endpoint = \"http://127.0.0.1:{closed}\"\n"),
    )
    .unwrap();
    let out = Command::new(&env.kokon_bin)
        .args(["channel", "open", "--network"])
        .arg(&network)
        .args(["--host-key", &hex::encode([7u8; 32])])
        .args(["--host-address", &format!("0:{}", "0".repeat(64))])
        .args(["--deposit", "1000", "--out"])
        .arg(dir.path().join("channel.json"))
        .env("KOKON_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
    assert!(stderr.contains("balance"), "{stderr}");
    assert!(!stderr.contains("fund"), "must not ask for funds: {stderr}");
    assert!(!dir.path().join("channel.json").exists());
}
