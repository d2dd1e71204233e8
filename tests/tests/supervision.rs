#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Supervision of the enclave process: it dies with its host (SIGKILL
//! included) through the lifeline; an enclave that cannot start fails the
//! host at once with the enclave's own words instead of restarting forever;
//! and the harness's leftover check catches what a test leaves running.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kokon_host::{EnclaveCommand, HostConfig};
use kokon_tests::{assert_no_leftovers, leftovers_after, tagged_processes, test_tag, Env};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `pid` runs (a zombie no longer does).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

fn host_process(env: &Env, data: &Path, tag: &str, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&env.kokon_bin);
    cmd.args([
        "host",
        "--listen",
        &format!("127.0.0.1:{}", kokon_tests::free_port()),
    ])
    .args(extra)
    .env("KOKON_DATA_DIR", data)
    .env("KOKON_ORT_LIB", &env.ort_lib)
    .env("KOKON_MODEL", &env.model)
    .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
    .env(kokon_tests::TEST_TAG_ENV, tag)
    .env_remove("KOKON_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// An in-process host whose enclave runs with `args` (after the sim defaults).
fn library_config(env: &Env, data: &Path, data_dir: &Path, tag: &str, args: &[&str]) -> HostConfig {
    let p = |p: &Path| p.display().to_string();
    HostConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        enclave: EnclaveCommand {
            program: env.enclave_bin.clone(),
            args: [
                "--tee",
                "sim",
                "--model",
                &p(&env.model),
                "--ort-lib",
                &p(&env.ort_lib),
                "--data-dir",
                &p(data_dir),
            ]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect(),
            env: vec![(kokon_tests::TEST_TAG_ENV.into(), tag.into())],
            socket: data.join("enclave.sock"),
            startup_timeout: Duration::from_secs(60),
        }
        .into(),
        limits: Default::default(),
        collateral: None,
        ledger: None,
        tls: None,
        metrics_listen: None,
    }
}

/// Starts an in-process host whose enclave cannot start; returns the error
/// `wait_ready` gives and how long it took, after checking that the
/// supervisor gave up without restarting it.
async fn first_start_error(config: HostConfig) -> (String, Duration) {
    let started = Instant::now();
    let host = kokon_host::start(config).await.unwrap();
    let err = host
        .wait_ready(Duration::from_secs(60))
        .await
        .expect_err("the enclave cannot start");
    let took = started.elapsed();
    // Give a restart, if the supervisor were to make one, time to happen.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        host.state.restarts.load(Ordering::Relaxed),
        0,
        "it was restarted"
    );
    assert!(!host.state.up.load(Ordering::Relaxed));
    host.shutdown().await;
    (format!("{err:#}"), took)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_enclave_dies_with_its_host_even_on_sigkill() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let tag = test_tag();
    let mut host = host_process(&env, data.path(), &tag, &[]).spawn().unwrap();
    // The host announces that it listens once the enclave is ready.
    let mut stdout = tokio::io::BufReader::new(host.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .expect("the host did not announce itself")
    .unwrap();
    assert!(
        line.contains("listening") && line.contains("ready"),
        "{line:?}"
    );
    let host_pid = host.id().unwrap();
    let enclaves: Vec<(u32, String)> = tagged_processes(&tag)
        .into_iter()
        .filter(|(pid, _)| *pid != host_pid)
        .collect();
    assert_eq!(enclaves.len(), 1, "{enclaves:?}");
    let (enclave, cmdline) = enclaves[0].clone();
    assert!(cmdline.contains("kokon-enclave"), "{cmdline}");
    let socket = cmdline
        .split(' ')
        .skip_while(|a| *a != "--socket")
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap();
    assert!(socket.exists(), "{}", socket.display());

    let killed = Instant::now();
    host.start_kill().unwrap();
    while running(enclave) && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let gone_after = killed.elapsed();
    eprintln!("host SIGKILLed: its enclave (pid {enclave}) was gone after {gone_after:?}");
    assert!(!running(enclave), "the enclave outlived its host by 5 s");
    assert!(
        gone_after < Duration::from_secs(2),
        "the enclave took {gone_after:?} to follow its host"
    );
    let _ = host.wait().await;
    assert!(!socket.exists(), "the enclave left its socket behind");
    assert_no_leftovers(&tag);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_enclave_argument_fails_the_first_start_without_restarts() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let tag = test_tag();
    let config = library_config(&env, data.path(), data.path(), &tag, &["--device", "foo"]);
    let (err, took) = first_start_error(config).await;
    eprintln!("start failure reported after {took:?}: {err}");
    assert!(
        err.contains("exited before it was ready") && err.contains("unknown device \"foo\""),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_no_leftovers(&tag);
}

#[tokio::test(flavor = "multi_thread")]
async fn kokon_host_exits_with_the_enclaves_message_on_a_bad_device() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let tag = test_tag();
    let mut devices = vec!["foo"];
    // A build without the `cuda` feature refuses cuda once it has loaded the runtime.
    if !kokon_enclave::inference::CUDA_BUILT {
        devices.push("cuda");
    }
    for device in devices {
        let started = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            host_process(&env, data.path(), &tag, &["--device", device])
                .spawn()
                .unwrap()
                .wait_with_output(),
        )
        .await
        .expect("the host kept restarting its enclave")
        .unwrap();
        let stderr = text(&out.stderr);
        eprintln!("--device {device}: host exited in {:?}", started.elapsed());
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("the enclave did not start"), "{stderr}");
        let expected = match device {
            "foo" => "unknown device \"foo\"",
            _ => "without the `cuda` feature",
        };
        assert!(stderr.contains(expected), "--device {device}: {stderr}");
        assert!(!text(&out.stdout).contains("listening"));
    }
    assert_no_leftovers(&tag);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_data_directory_is_named_and_fails_the_start() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let tag = test_tag();
    // Tests run as root, which ignores permission bits: a directory under a
    // regular file cannot be created by anyone.
    let file = data.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let data_dir = file.join("kokon");
    let config = library_config(&env, data.path(), &data_dir, &tag, &[]);
    let (err, _) = first_start_error(config).await;
    eprintln!("{err}");
    assert!(
        err.contains(&format!("creating {}", data_dir.display()))
            && err.contains("Not a directory"),
        "{err}"
    );
    // `kokon host` itself needs the directory too, and says so.
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        host_process(&env, &data_dir, &tag, &[])
            .spawn()
            .unwrap()
            .wait_with_output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&data_dir.display().to_string()), "{stderr}");
    assert_no_leftovers(&tag);
}

#[test]
fn the_leftover_check_catches_a_leaked_process() {
    let tag = test_tag();
    let mut leaked = std::process::Command::new("sleep")
        .arg("30")
        .env(kokon_tests::TEST_TAG_ENV, &tag)
        .spawn()
        .unwrap();
    // Until the child has exec'd, /proc shows the test's own environment
    // (without the tag): wait until the leak is there to be caught.
    let visible = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tagged_processes(&tag).is_empty() && std::time::Instant::now() < visible {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let caught = std::panic::catch_unwind(|| assert_no_leftovers(&tag));
    let left = tagged_processes(&tag);
    let _ = leaked.kill();
    let _ = leaked.wait();
    let message = caught.expect_err("the leak went unnoticed");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains(&format!("pid {}", leaked.id())) && message.contains("sleep 30"),
        "{message}"
    );
    assert_eq!(left.len(), 1, "{left:?}");
    // Once it is gone (reaped), the check passes.
    assert!(leftovers_after(&tag, Duration::from_secs(1)).is_empty());
    assert!(tagged_processes(&test_tag()).is_empty());
}
