#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Durability: the real `kokon host` process is killed with SIGKILL at
//! random moments while a client makes 1,000 paid requests. After every
//! restart the newest voucher is still there, no request is paid twice,
//! and at the end the host's ledger and the chain agree.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use kokon_client::{Client, ClientError};
use kokon_tests::Rng;
use kokon_ton::voucher::Payer;
use kokon_ton_sandbox::LocalChain;

const PRICE: u128 = 1_000_000;
const DEPOSIT: u128 = 2_000_000_000;
const REQUESTS: u64 = 1_000;

struct Host {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
}

fn spawn_host(
    env: &kokon_tests::Env,
    data: &std::path::Path,
    channels: &std::path::Path,
    port: u16,
    tag: &str,
) -> Host {
    let child = std::process::Command::new(&env.kokon_bin)
        .args([
            "host",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--channels",
            &channels.display().to_string(),
            "--price-nanoton-per-unit",
            &PRICE.to_string(),
        ])
        .env("KOKON_DATA_DIR", data)
        .env("KOKON_ORT_LIB", &env.ort_lib)
        .env("KOKON_MODEL", &env.model)
        .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
        .env(kokon_tests::TEST_TAG_ENV, tag)
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(data.join("host.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    Host {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log: data.join("host.log"),
    }
}

/// Waits for the host's enclave; returns its pid, or `None` if the host died.
async fn ready(host: &Host) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = kokon_tests::try_http_get(&host.base, "/healthz").await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(pid) = v["enclave"]["pid"].as_u64() {
                return Some(pid as u32);
            }
        }
        if !host_alive(host.child.id()) {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "the host did not come up: {}",
            std::fs::read_to_string(host.log.as_path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn host_alive(pid: u32) -> bool {
    // Signal 0 probes; a killed, unreaped child is a zombie, which /proc shows.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn transient(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Transport(_)
            | ClientError::Host {
                status: 502..=504,
                ..
            }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_host_at_random_loses_no_voucher_and_charges_nothing_twice() {
    let env = kokon_tests::Env::load();
    let data = tempfile::tempdir().unwrap();
    let tag = kokon_tests::test_tag();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Rng(seed);

    // The channel, on the sandbox.
    let mut chain = LocalChain::start(
        &kokon_ton_sandbox::bridge_script(),
        kokon_client::unix_now(),
    )
    .unwrap();
    let client_key = SigningKey::from_bytes(&[31; 32]);
    let host_key = SigningKey::from_bytes(&[32; 32]);
    let params = chain.channel_params(4242, &client_key, &host_key).unwrap();
    let address = chain.open_channel(&params, &client_key, DEPOSIT).unwrap();
    let channels = data.path().join("channels.toml");
    std::fs::write(
        &channels,
        format!(
            "[[channel]]\nid = \"4242\"\nclient_key = \"{}\"\ndeposit = \"{DEPOSIT}\"\ncredit_limit = \"{}\"\n",
            hex::encode(params.key_a),
            5 * PRICE
        ),
    )
    .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    // Made once the first enclave has created this installation's sim root.
    let mut policy = None;
    let request = kokon_tests::magika_request(&[vec![1; 2048]]);
    let mut payer = Payer::new(client_key.clone(), 4242, DEPOSIT, None);

    // The killer: SIGKILLs whatever host and enclaves run, at random moments,
    // whatever they are doing (serving, storing a voucher, starting up).
    let pids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let kills = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (pids, kills, stop) = (pids.clone(), kills.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
                let victims: Vec<u32> = pids.lock().unwrap().drain(..).collect();
                if !victims.is_empty() && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    victims.iter().for_each(|p| kill(*p));
                    kills.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };

    let mut served = 0u64;
    let mut host: Option<Host> = None;
    let mut enclave = None;
    while served < REQUESTS {
        // (Re)start the host when it is gone, then attest and reconcile.
        if host
            .as_mut()
            .is_none_or(|h| h.child.try_wait().ok().flatten().is_some())
        {
            enclave = None;
            let h = spawn_host(&env, data.path(), &channels, port, &tag);
            pids.lock().unwrap().push(h.child.id());
            host = Some(h);
        }
        let Some(h) = host.as_ref() else { continue };
        if enclave.is_none() {
            let Some(pid) = ready(h).await else { continue };
            pids.lock().unwrap().push(pid);
            let policy = policy.get_or_insert_with(|| {
                kokon_tests::Stack::policy_for(&env, data.path(), kokon_tests::DEV_POLICY)
            });
            let Ok(e) = client.attest(policy).await else {
                continue;
            };
            // The host holds the newest voucher it acknowledged, or the one
            // before it if it died while storing the newest.
            let Ok((_, paid, seqno)) = client.channel_status(4242).await else {
                continue;
            };
            let mine = payer.state();
            assert!(
                paid == mine.sent || (seqno + 1 == mine.seqno && paid + PRICE == mine.sent),
                "after a restart the host has paid {paid} (seqno {seqno}); the client signed {mine:?}"
            );
            if paid < mine.sent && client.pay(&payer.resign().unwrap()).await.is_err() {
                continue;
            }
            enclave = Some(e.with_channel(4242, client_key.clone()));
        }
        let Some(e) = enclave.as_ref() else { continue };
        let receipt = match client.infer(e, &request).await {
            Ok((_, r)) => r,
            Err(err) if transient(&err) => {
                enclave = None;
                continue;
            }
            Err(err) => panic!("request failed: {err}"),
        };
        served += 1;
        let voucher = payer.pay(receipt.receipt.amount).unwrap();
        match client.pay(&voucher).await {
            Ok(paid) => assert_eq!(paid, voucher.body.sent),
            Err(err) if transient(&err) => enclave = None,
            Err(err) => panic!("voucher refused: {err}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    killer.join().unwrap();
    let kills = kills.load(std::sync::atomic::Ordering::Relaxed);
    // Make sure the last voucher is stored (the host may have died after paying).
    let (paid, seqno) = loop {
        if host
            .as_mut()
            .is_none_or(|h| h.child.try_wait().ok().flatten().is_some())
        {
            host = Some(spawn_host(&env, data.path(), &channels, port, &tag));
        }
        if ready(host.as_ref().unwrap()).await.is_none() {
            continue;
        }
        let (_, paid, seqno) = client.channel_status(4242).await.unwrap();
        if paid < payer.state().sent {
            client.pay(&payer.resign().unwrap()).await.unwrap();
            continue;
        }
        break (paid, seqno);
    };
    let mut host = host.unwrap();
    for pid in pids.lock().unwrap().iter() {
        kill(*pid);
    }
    kill(host.child.id());
    let _ = host.child.wait();
    // Every enclave went with its host, SIGKILLed or not.
    kokon_tests::assert_no_leftovers(&tag);
    assert!(kills >= 3, "only {kills} kills: the test proves little");
    assert_eq!(
        payer.state().sent,
        u128::from(REQUESTS) * PRICE,
        "each served request paid once"
    );
    assert_eq!((paid, seqno), (payer.state().sent, payer.state().seqno));
    let settled = chain
        .close_cooperatively(
            &address,
            &params,
            &client_key,
            &host_key,
            paid,
            DEPOSIT,
            seqno,
        )
        .unwrap();
    assert_eq!(
        settled.to_host, paid,
        "the chain pays the host what its ledger holds"
    );
    eprintln!("{REQUESTS} paid requests, {kills} SIGKILLs, settled {paid} nanotons");
}
