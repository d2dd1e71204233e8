#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The `kokon` command line against a running host: output and exit status
//! (0 success, 2 evidence or policy rejected, 1 any other error).

use std::process::Output;

use kokon_tests::{repo_root, Options, Stack};

fn kokon(stack: &Stack, args: &[&str]) -> Output {
    std::process::Command::new(&stack.env.kokon_bin)
        .args(args)
        .current_dir(repo_root())
        .env("KOKON_DATA_DIR", stack.data.path())
        .env("KOKON_ENCLAVE_BIN", &stack.env.enclave_bin)
        // A client needs no local Magika: the enclave serves its processing
        // configuration with the model's metadata.
        .env_remove("KOKON_MAGIKA_DIR")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn attest_verify_and_infer_from_the_command_line() {
    let stack = Stack::start(Options::default()).await;
    let bundle = stack.data.path().join("bundle.json");
    let bundle = bundle.to_str().unwrap();

    let out = kokon(
        &stack,
        &[
            "attest",
            "--host",
            &stack.base,
            "--policy",
            "policies/dev-sim.toml",
            "--save",
            bundle,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "accepted");
    assert_eq!(report["evidence"]["simulated"], true);
    assert_eq!(
        report["evidence"]["fields"]["MRTD"],
        hex::encode(stack.env.enclave_mrtd())
    );

    let out = kokon(
        &stack,
        &[
            "verify",
            "--bundle",
            bundle,
            "--policy",
            "policies/dev-sim.toml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ACCEPTED"));

    let out = kokon(
        &stack,
        &[
            "verify",
            "--bundle",
            bundle,
            "--policy",
            "policies/production-tdx.toml",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "sim evidence under the production policy"
    );
    assert!(
        text(&out.stderr).contains("not anchored in a trusted root"),
        "{}",
        text(&out.stderr)
    );

    let out = kokon(
        &stack,
        &[
            "verify",
            "--bundle",
            bundle,
            "--policy",
            "policies/production-tdx.toml",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["verdict"], "rejected");
    assert!(
        verdict["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not anchored in a trusted root"),
        "{verdict}"
    );

    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = kokon(
        &stack,
        &[
            "verify",
            "--bundle",
            bundle,
            "--policy",
            "policies/dev-sim.toml",
            "--at",
            &later,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("evidence age").count(),
        1,
        "said once: {stderr}"
    );
    // Times as RFC 3339, and how to check the bundle as of its issue time.
    assert!(stderr.contains("checked at 20"), "{stderr}");
    assert!(
        stderr.contains("hint: the bundle was issued at 20"),
        "{stderr}"
    );
    assert!(stderr.contains("add --at 20"), "{stderr}");
    let out = kokon(
        &stack,
        &[
            "verify",
            "--bundle",
            bundle,
            "--policy",
            "policies/dev-sim.toml",
            "--at",
            &later,
            "--json",
        ],
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["failures"][0]["check"], "evidence age", "{verdict}");
    assert_eq!(verdict["failures"][0]["expected"], "at most 300 s");

    let out = kokon(
        &stack,
        &[
            "infer",
            "--host",
            &stack.base,
            "--policy",
            "policies/dev-sim.toml",
            "--model",
            "magika",
            "--file",
            "Cargo.toml",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["output"], "toml");
    assert_eq!(result["receipt"]["receipt"]["units"], 1);

    // KOKON_MAGIKA_DIR still overrides: a wrong one is an error naming it.
    let out = std::process::Command::new(&stack.env.kokon_bin)
        .args([
            "infer",
            "--host",
            &stack.base,
            "--policy",
            "policies/dev-sim.toml",
        ])
        .args(["--model", "magika", "--file", "Cargo.toml"])
        .current_dir(repo_root())
        .env("KOKON_DATA_DIR", stack.data.path())
        .env("KOKON_MAGIKA_DIR", "/nonexistent/magika")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/magika/models/standard_v3_3/config.min.json"),
        "{}",
        text(&out.stderr)
    );

    let out = kokon(
        &stack,
        &[
            "infer",
            "--host",
            &stack.base,
            "--policy",
            "policies/dev-sim.toml",
            "--model",
            "llama",
            "--file",
            "Cargo.toml",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a model the enclave does not serve is an ordinary error"
    );

    let out = kokon(
        &stack,
        &[
            "verify",
            "--bundle",
            "/nonexistent/bundle.json",
            "--policy",
            "policies/dev-sim.toml",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    stack.shutdown().await;
}

/// Renders a report page in Chromium: no console message, and the verdict
/// shown.
fn assert_renders(page: &std::path::Path, verdict: &str) -> String {
    let rendered = kokon_tests::render_in_chromium(page);
    assert!(
        rendered.console.is_empty(),
        "{}: {:?}",
        page.display(),
        rendered.console
    );
    assert!(
        rendered.dom.contains(&format!(
            r#"id="verdict" class="verdict {}">{}</span>"#,
            verdict.to_lowercase(),
            verdict
        )),
        "{}: no {verdict} verdict in the rendered page",
        page.display()
    );
    rendered.dom
}

#[tokio::test(flavor = "multi_thread")]
async fn attest_writes_an_html_report_that_a_browser_renders_accepted_or_rejected() {
    let stack = Stack::start(Options::default()).await;
    let dir = stack.data.path();
    let bundle = dir.join("bundle.json");
    let bundle = bundle.to_str().unwrap();
    // `kokon ARGS --policy POLICY --report DIR/PAGE`: its output, and the
    // page rendered in Chromium (no console message, the verdict shown).
    let with_report = |args: &[&str], policy: &str, page: &str, verdict: &str| {
        let page = dir.join(page);
        let report = ["--policy", policy, "--report", page.to_str().unwrap()];
        let out = kokon(&stack, &[args, &report].concat());
        let code = if verdict == "ACCEPTED" { 0 } else { 2 };
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        (out, assert_renders(&page, verdict))
    };
    let attest = ["attest", "--host", &stack.base];
    let (out, dom) = with_report(
        &[&attest[..], &["--json", "--save", bundle]].concat(),
        "policies/dev-sim.toml",
        "accepted.html",
        "ACCEPTED",
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The page shows what the JSON says: one gathering of the report.
    let mrtd = hex::encode(stack.env.enclave_mrtd());
    assert_eq!(json["evidence"]["fields"]["MRTD"], mrtd);
    assert!(dom.contains(&mrtd));
    let receipt_key = json["claims"]["receipt_key"].as_str().unwrap();
    assert!(dom.contains(receipt_key));
    for check in json["checks"].as_array().unwrap() {
        assert_eq!(check["passed"], true, "{check}");
        assert!(dom.contains(check["check"].as_str().unwrap()), "{check}");
    }
    assert!(!json["evidence"]["chains"].as_array().unwrap().is_empty());

    // The policy refuses the enclave (another MRTD): exit status 2, and the
    // page says rejected, with the failing check's expected and found.
    let other_mrtd = "00".repeat(48);
    let pinned = dir.join("pinned.toml");
    std::fs::write(
        &pinned,
        kokon_tests::DEV_POLICY.replace(
            r#"mrtd = ["local-enclave-build"]"#,
            &format!(r#"mrtd = ["{other_mrtd}"]"#),
        ),
    )
    .unwrap();
    let (out, dom) = with_report(
        &attest,
        pinned.to_str().unwrap(),
        "rejected.html",
        "REJECTED",
    );
    assert!(text(&out.stderr).contains("MRTD"), "{}", text(&out.stderr));
    let failures = &dom[dom.find(r#"<section id="failures">"#).unwrap()..];
    let failures = &failures[..failures.find("</section>").unwrap()];
    assert!(failures.contains("MRTD"), "{failures}");
    assert!(failures.contains(&other_mrtd), "expected: {failures}");
    assert!(failures.contains(&mrtd), "found: {failures}");

    // Evidence that does not verify under the policy's roots: rejected too,
    // showing nothing unverified.
    let verify = ["verify", "--bundle", bundle];
    let (_, dom) = with_report(
        &verify,
        "policies/production-tdx.toml",
        "untrusted.html",
        "REJECTED",
    );
    assert!(dom.contains("not anchored in a trusted root"));
    assert!(!dom.contains(r#"<section id="measurements">"#));

    // The saved bundle, verified offline: accepted, the nonce not checked.
    let (_, dom) = with_report(&verify, "policies/dev-sim.toml", "offline.html", "ACCEPTED");
    assert!(dom.contains("not checked: a saved bundle, verified offline"));
    stack.shutdown().await;
}

#[test]
fn the_browser_check_catches_console_errors_and_blocked_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("noisy.html");
    std::fs::write(
        &page,
        r#"<!DOCTYPE html><html><body><p>ok</p><script>console.error("deliberate console error"); throw new Error("thrown on purpose");</script></body></html>"#,
    )
    .unwrap();
    let rendered = kokon_tests::render_in_chromium(&page);
    assert!(rendered.dom.contains("<p>ok</p>"), "{}", rendered.dom);
    for message in ["deliberate console error", "thrown on purpose"] {
        assert!(
            rendered.console.iter().any(|l| l.contains(message)),
            "{message:?} not caught: {:?}",
            rendered.console
        );
    }
    // A script injected into a report would not run (its Content-Security-
    // Policy forbids scripts), and the refusal is a console message.
    let page = dir.path().join("injected.html");
    std::fs::write(
        &page,
        r#"<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"></head><body><script>document.body.append("ran")</script></body></html>"#,
    )
    .unwrap();
    let rendered = kokon_tests::render_in_chromium(&page);
    assert!(!rendered.dom.contains("ran</body>"), "{}", rendered.dom);
    assert!(
        rendered
            .console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{:?}",
        rendered.console
    );
}

#[test]
fn the_host_refuses_a_tee_it_cannot_provide_instead_of_falling_back() {
    let env = kokon_tests::Env::load();
    if std::path::Path::new(kokon_wire::TSM_REPORT_ROOT).exists() {
        return; // a real TEE guest: nothing to refuse
    }
    let out = std::process::Command::new(&env.kokon_bin)
        .args(["host", "--listen", "127.0.0.1:0", "--tee", "tdx"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("configfs-tsm not found")
            && text(&out.stderr).contains("never falls back to sim"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enclave_that_cannot_start_says_why_under_the_default_log_level() {
    let env = kokon_tests::Env::load();
    let data = tempfile::tempdir().unwrap();
    let tag = kokon_tests::test_tag();
    let host = tokio::process::Command::new(&env.kokon_bin)
        .args(["host", "--listen", "127.0.0.1:0"])
        .env("KOKON_DATA_DIR", data.path())
        .env("KOKON_ORT_LIB", data.path().join("missing.so"))
        .env("KOKON_MODEL", &env.model)
        .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
        .env(kokon_tests::TEST_TAG_ENV, &tag)
        .env_remove("KOKON_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The first start fails: the host gives up at once instead of looping,
    // with the enclave's own words, and never says it listens.
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), host.wait_with_output())
        .await
        .expect("the host kept restarting an enclave that cannot start")
        .unwrap();
    let seen = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{seen}");
    assert!(
        seen.contains("cannot load ONNX Runtime") && seen.contains("just setup"),
        "{seen}"
    );
    assert!(seen.contains("error: the enclave did not start"), "{seen}");
    assert!(
        !text(&out.stdout).contains("listening"),
        "{}",
        text(&out.stdout)
    );
    kokon_tests::assert_no_leftovers(&tag);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_errors_name_the_address_and_the_cause() {
    let env = kokon_tests::Env::load();
    let data = kokon_tests::sim_data_dir();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&env.kokon_bin)
            .args(args)
            .env("KOKON_DATA_DIR", data.path())
            .current_dir(kokon_tests::repo_root())
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let attest = |host: &str| {
        run(&[
            "attest",
            "--host",
            host,
            "--policy",
            "policies/dev-sim.toml",
        ])
    };
    // No scheme: said so, with both ways to write it.
    let (code, stderr) = attest("127.0.0.1:8443");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("https://127.0.0.1:8443"), "{stderr}");
    // Nothing listening: the address and the OS's reason, once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, stderr) = attest(&format!("http://127.0.0.1:{port}"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    // --json: machine-readable, transport errors included.
    let out = std::process::Command::new(&env.kokon_bin)
        .args([
            "attest",
            "--json",
            "--host",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--policy", "policies/dev-sim.toml"])
        .current_dir(kokon_tests::repo_root())
        .env("KOKON_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["verdict"], "error", "{error}");
    assert_eq!(error["kind"], "transport", "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{error}"
    );
    // The host's address in use: the address and the reason.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let host_data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&env.kokon_bin)
        .args(["host", "--listen", &addr])
        .env("KOKON_DATA_DIR", host_data.path())
        .env("KOKON_ORT_LIB", &env.ort_lib)
        .env("KOKON_MODEL", &env.model)
        .env("KOKON_ENCLAVE_BIN", &env.enclave_bin)
        .output()
        .unwrap();
    let (code, stderr) = (out.status.code(), text(&out.stderr));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("listening on {addr}")), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sim_root_mismatch_says_which_root_file_was_read() {
    let stack = Stack::start(Options::default()).await;
    // Another installation: its own sim root.
    let other = kokon_tests::sim_data_dir();
    let file = other
        .path()
        .join(kokon_attestation::sim::SIM_ROOT_DIR)
        .join(kokon_attestation::sim::SIM_ROOT_CERT_FILE);
    let out = std::process::Command::new(&stack.env.kokon_bin)
        .args([
            "attest",
            "--host",
            &stack.base,
            "--policy",
            "policies/dev-sim.toml",
        ])
        .current_dir(kokon_tests::repo_root())
        .env("KOKON_DATA_DIR", other.path())
        .env("KOKON_ENCLAVE_BIN", &stack.env.enclave_bin)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not anchored in a trusted root"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("read from {}", file.display())),
        "{stderr}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kokon_finds_its_set_up_without_the_environment() {
    use tokio::io::AsyncBufReadExt;
    let env = kokon_tests::Env::load();
    let data = tempfile::tempdir().unwrap();
    let tag = kokon_tests::test_tag();
    let mut command = tokio::process::Command::new(&env.kokon_bin);
    command
        .args(["host", "--listen", "127.0.0.1:0", "--log-format", "json"])
        // Run from elsewhere: the set-up is found from the executable.
        .current_dir(data.path())
        .env("KOKON_DATA_DIR", data.path())
        .env(kokon_tests::TEST_TAG_ENV, &tag)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for var in [
        "KOKON_ORT_LIB",
        "KOKON_MODEL",
        "KOKON_MAGIKA_DIR",
        "KOKON_LLM_DIR",
        "KOKON_ENCLAVE_BIN",
    ] {
        command.env_remove(var);
    }
    let mut host = command.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(host.stdout.take().unwrap()).lines();
    let listening = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("kokon host listening on") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    host.kill().await.unwrap();
    assert!(listening, "the host did not start from its set-up file");
    // --log-format json: every log line is one JSON object, the enclave's
    // forwarded lines and the host's "listening" event among them.
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut host.stderr.take().unwrap(), &mut log)
        .await
        .unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["level"].is_string() && e["timestamp"].is_string()),
        "{log}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "host listening" && e["addr"].is_string()),
        "{log}"
    );
    kokon_tests::assert_no_leftovers(&tag);
}

#[test]
fn the_host_takes_its_flags_from_a_config_file_and_a_bad_device_fails_fast() {
    let env = kokon_tests::Env::load();
    let data = tempfile::tempdir().unwrap();
    let host = |args: &[&str]| {
        let out = std::process::Command::new(&env.kokon_bin)
            .arg("host")
            .args(args)
            .env("KOKON_DATA_DIR", data.path())
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let config = data.path().join("host.toml");
    if !std::path::Path::new(kokon_wire::TSM_REPORT_ROOT).exists() {
        // The file's `tee` is used: this machine has no TDX to give.
        std::fs::write(&config, "listen = \"127.0.0.1:0\"\ntee = \"tdx\"\n").unwrap();
        let (code, stderr) = host(&["--config", config.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("--tee tdx"), "{stderr}");
        // The command line wins over the file.
        let (code, stderr) = host(&["--config", config.to_str().unwrap(), "--tee", "bogus"]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("--tee bogus"), "{stderr}");
    }
    // A key that is no flag is refused by name.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nfoo = 1\n").unwrap();
    let (code, stderr) = host(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--foo"), "{stderr}");
    // A device the enclave does not know: its own message, at once.
    let started = std::time::Instant::now();
    let (code, stderr) = host(&["--listen", "127.0.0.1:0", "--device", "gpu"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unknown device \"gpu\""), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // `kokon demo` outside the checkout says so before starting anything.
    let out = std::process::Command::new(&env.kokon_bin)
        .arg("demo")
        .current_dir(data.path())
        .env("KOKON_DATA_DIR", data.path())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("runs in the kokon checkout"), "{stderr}");
    assert!(text(&out.stdout).is_empty(), "nothing started");
}

#[test]
fn completions_a_man_page_and_the_systemd_unit_follow_the_cli() {
    let env = kokon_tests::Env::load();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&env.kokon_bin)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let bash = run(&["completions", "bash"]);
    for word in ["proxy", "chat", "--tls-listen", "--max-evidence-age"] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    assert!(run(&["completions", "zsh"]).contains("#compdef kokon"));
    let man = run(&["man"]);
    assert!(man.contains(".TH kokon 1"), "{man}");
    assert!(man.contains("proxy"), "{man}");
    // Every flag the unit passes is one `kokon host` takes.
    let unit = std::fs::read_to_string(repo_root().join("docs/kokon-host.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let help = run(&["host", "--help"]);
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "kokon host has no {flag}");
    }
}
