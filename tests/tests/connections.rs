#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Connection floods: a peer holding hundreds of idle connections to a
//! `kokon host` whose descriptor limit is low gets only its share, the host
//! does not spin, and everyone else (here `/healthz` and attestation from
//! another loopback address) is still served.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kokon_tests::{try_http_get, Env};

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_flood_gets_its_share_and_the_host_neither_spins_nor_stops_answering() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let port = kokon_tests::free_port();
    let log = data.path().join("host.log");
    let command = format!(
        "ulimit -n 400 && exec {} host --listen 127.0.0.1:{port} --max-connections-per-peer 40",
        env.kokon_bin.display()
    );
    let tag = kokon_tests::test_tag();
    let mut host = tokio::process::Command::new("bash")
        .args(["-c", &command])
        .env(kokon_tests::TEST_TAG_ENV, &tag)
        .env("KOKON_DATA_DIR", data.path())
        .env("KOKON_ORT_LIB", &env.ort_lib)
        .env("KOKON_MODEL", &env.model)
        .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while try_http_get(&base, "/healthz").await.map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "host did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 600 idle connections from another loopback address: more than the
    // host has descriptors for.
    let target: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..600 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(s) = socket.connect(target).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = host.id().unwrap();
    let before = cpu_seconds(pid);
    let t = Instant::now();
    let mut answered = 0;
    for _ in 0..10 {
        if try_http_get(&base, "/healthz").await.map(|r| r.0) == Some(200) {
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let nonce = "ab".repeat(32);
    let attested = try_http_get(&base, &format!("/v1/attestation?nonce={nonce}")).await;
    let busy = (cpu_seconds(pid) - before) / t.elapsed().as_secs_f64();
    let (_, metrics) = try_http_get(&base, "/metrics").await.unwrap();
    let refused: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("kokon_host_connections_refused_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    println!(
        "connection flood: {} connections opened from 127.0.0.2, the host closed {refused} at once; /healthz answered {answered}/10; host CPU {:.0}% meanwhile",
        held.len(),
        busy * 100.0
    );
    drop(held);
    let _ = host.kill().await;
    kokon_tests::assert_no_leftovers(&tag);
    assert_eq!(answered, 10, "/healthz stopped answering");
    assert_eq!(attested.map(|r| r.0), Some(200), "attestation stopped");
    assert!(
        refused >= 500.0,
        "the flood's excess was not refused: {refused}"
    );
    assert!(
        busy < 0.5,
        "the host used {:.0}% CPU while flooded",
        busy * 100.0
    );
}
