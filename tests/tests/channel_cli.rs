#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! `kokon channel open|status|topup|close` and `kokon infer --channel` on a
//! TON network: the local sandbox served as a toncenter-style HTTP API.

use std::process::{Command, Output};

use kokon_ton::sandbox::Bridge;
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread")]
async fn a_client_opens_pays_through_and_closes_a_channel_from_the_command_line() {
    let env = kokon_tests::Env::load();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let api_port = port();
    let mut bridge = Bridge::start_with(
        &kokon_tests::repo_root().join("tests/ton-bridge/bridge.js"),
        &["--http", &api_port.to_string()],
    )
    .unwrap();
    let started = bridge
        .call(json!({"op": "start", "now": kokon_client::unix_now()}))
        .unwrap();
    let host_address = started["host"].as_str().unwrap().to_string();
    let network = dir.path().join("network.toml");
    std::fs::write(
        &network,
        format!("endpoint = \"http://127.0.0.1:{api_port}\"\n"),
    )
    .unwrap();
    let kokon = |args: &[&str]| -> Output {
        Command::new(&env.kokon_bin)
            .args(args)
            .current_dir(kokon_tests::repo_root())
            .env("KOKON_DATA_DIR", &data)
            .env("KOKON_ORT_LIB", &env.ort_lib)
            .env("KOKON_MODEL", &env.model)
            .env("KOKON_MAGIKA_DIR", &env.magika_dir)
            .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
            .env(
                "KOKON_TON_BRIDGE",
                kokon_tests::repo_root().join("tests/ton-bridge/bridge.js"),
            )
            .output()
            .unwrap()
    };
    let host_seed = [61u8; 32];
    let host_key = ed25519_dalek::SigningKey::from_bytes(&host_seed);
    let channel_file = dir.path().join("channel.json");
    let open = |kokon: &dyn Fn(&[&str]) -> Output| {
        kokon(&[
            "channel",
            "open",
            "--network",
            network.to_str().unwrap(),
            "--host-key",
            &hex::encode(host_key.verifying_key().to_bytes()),
            "--host-address",
            &host_address,
            "--deposit",
            "100000000",
            "--out",
            channel_file.to_str().unwrap(),
        ])
    };
    // First the client's wallet must be funded: the command says which.
    let out = open(&kokon);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let wallet = stderr
        .split("fund the client wallet ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{stderr}"))
        .to_string();
    bridge
        .call(json!({"op": "fund", "from": "client", "to": wallet, "value": "1000000000"}))
        .unwrap();
    let out = open(&kokon);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&channel_file).unwrap()).unwrap();
    let id = file["channel_id"].as_str().unwrap().to_string();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(file["client_key"].as_str().unwrap(), &mut seed).unwrap();
    let client_public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();

    // The host bills this channel and can co-sign its close.
    let key_file = dir.path().join("host.key");
    std::fs::write(&key_file, hex::encode(host_seed)).unwrap();
    let channels = dir.path().join("channels.toml");
    std::fs::write(
        &channels,
        format!(
            "host_key_file = \"{}\"\n[[channel]]\nid = \"{id}\"\nclient_key = \"{}\"\ndeposit = \"100000000\"\ncredit_limit = \"3000000\"\n",
            key_file.display(),
            hex::encode(client_public.to_bytes())
        ),
    )
    .unwrap();
    let host_port = port();
    let mut host = std::process::Command::new(&env.kokon_bin)
        .args([
            "host",
            "--listen",
            &format!("127.0.0.1:{host_port}"),
            "--channels",
            channels.to_str().unwrap(),
            "--price-nanoton-per-unit",
            "1000000",
        ])
        .env("KOKON_DATA_DIR", &data)
        .env("KOKON_ORT_LIB", &env.ort_lib)
        .env("KOKON_MODEL", &env.model)
        .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
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

    for file in ["README.md", "attestation/src/tdx/quote.rs"] {
        let out = kokon(&[
            "infer",
            "--host",
            &base,
            "--policy",
            "policies/dev-sim.toml",
            "--file",
            file,
            "--channel",
            channel_file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = kokon(&[
        "channel",
        "status",
        "--channel",
        channel_file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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

    // The standard contract takes no top-up once open: the command says why.
    let out = kokon(&[
        "channel",
        "topup",
        "--channel",
        channel_file.to_str().unwrap(),
        "--amount",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("only before init_channel"),
        "{}",
        text(&out.stderr)
    );

    let out = kokon(&[
        "channel",
        "close",
        "--channel",
        channel_file.to_str().unwrap(),
        "--host",
        &base,
    ]);
    let _ = host.kill();
    let _ = host.wait();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("closed: 2000000 nanotons to the host"),
        "{}",
        text(&out.stdout)
    );
}
