#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The auditor's command line on real evidence: `kokon verify --evidence`
//! (exit 0 genuine and UpToDate, 2 otherwise, 1 on usage errors) and
//! `kokon audit explain`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kokon_tests::pcs::{
    dcap_collateral, fixture_routes, intel_responses, save_as_curl_does, serve,
};

fn fixture(path: &str) -> PathBuf {
    kokon_tests::repo_root()
        .join("../shared/fixtures")
        .join(path)
}

fn kokon(args: &[&str]) -> Output {
    let env = kokon_tests::Env::load();
    Command::new(&env.kokon_bin)
        .args(args)
        .current_dir(kokon_tests::repo_root())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn quote() -> String {
    fixture("tdx/dcapqvl_tdx_quote.dat").display().to_string()
}

fn collateral() -> String {
    fixture("tdx/dcapqvl_tdx_quote_collateral.json")
        .display()
        .to_string()
}

#[test]
fn a_genuine_up_to_date_tdx_quote_exits_0_and_prints_its_fields() {
    let out = kokon(&[
        "verify",
        "--evidence",
        &quote(),
        "--collateral",
        &collateral(),
        "--at",
        "2025-07-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["format"], "tdx-quote");
    assert_eq!(v["root"], "intel-sgx-root");
    assert_eq!(v["headline"], "accepted", "nothing left unchecked");
    assert_eq!(v["caveats"], serde_json::json!([]));
    // The TCB appraisal as a structure, as the collateral states it.
    let tcb = &v["tcb"];
    assert_eq!(tcb["kind"], "tdx", "{tcb}");
    assert_eq!(tcb["status"], "UpToDate");
    assert_eq!(tcb["platform_status"], "UpToDate");
    assert_eq!(tcb["qe_status"], "UpToDate");
    assert_eq!(tcb["advisory_ids"], serde_json::json!([]));
    assert_eq!(tcb["fmspc"], "b0c06f000000");
    assert_eq!(tcb["tcb_evaluation_data_number"], 17);
    assert!(tcb["tcb_date"].as_str().unwrap().starts_with("20"), "{tcb}");
    assert_eq!(tcb["cpu_svn"].as_str().unwrap().len(), 32, "{tcb}");
    assert!(tcb["pce_svn"].is_u64(), "{tcb}");
    let fields = v["fields"].as_array().unwrap();
    assert!(fields.iter().any(|f| f["name"] == "MRTD"));
}

#[test]
fn without_collateral_or_outside_its_window_the_verdict_is_2_with_the_reason() {
    let out = kokon(&[
        "verify",
        "--evidence",
        &quote(),
        "--at",
        "2025-07-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no collateral"),
        "{}",
        text(&out.stderr)
    );

    let out = kokon(&[
        "verify",
        "--evidence",
        &quote(),
        "--collateral",
        &collateral(),
        "--at",
        "2025-09-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "rejected");
    assert!(
        v["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not valid at"),
        "{v}"
    );
}

#[test]
fn an_snp_report_verifies_with_its_vcek_and_a_policy_judges_it() {
    let report = fixture("snp/virtee_report_milan.hex").display().to_string();
    let vcek = fixture("snp/virtee_vcek_milan.der").display().to_string();
    let chain = fixture("snp/virtee_cert_chain_milan.pem")
        .display()
        .to_string();
    let at = "2025-01-01T00:00:00Z";
    let with_chain = |json: &[&str]| {
        let args = [
            "verify",
            "--evidence",
            &report,
            "--vcek",
            &vcek,
            "--chain",
            &chain,
            "--at",
            at,
        ];
        kokon(&[&args[..], json].concat())
    };
    let out = with_chain(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("amd-ark-milan"));
    // Without AMD's CRL the headline says revocation went unchecked.
    let headline = t.lines().next().unwrap();
    assert!(
        headline.contains("GENUINE") && headline.contains("(revocation not checked: no AMD CRL)"),
        "{t}"
    );
    let out = with_chain(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(
        v["headline"],
        "accepted (revocation not checked: no AMD CRL)"
    );
    assert_eq!(
        v["caveats"],
        serde_json::json!(["revocation not checked: no AMD CRL"])
    );
    assert_eq!(v["tcb"]["kind"], "snp");
    assert_eq!(v["tcb"]["product"], "milan");
    assert_eq!(v["tcb"]["crl_checked"], false);
    assert_eq!(
        v["tcb"]["reported"],
        serde_json::json!({"fmc": null, "bootloader": 3, "tee": 0, "snp": 8, "microcode": 115})
    );
    // The production policy fails closed: its measurement list is empty.
    let out = kokon(&[
        "verify",
        "--evidence",
        &report,
        "--vcek",
        &vcek,
        "--policy",
        "policies/production-snp.toml",
        "--at",
        at,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks: Vec<&str> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    // ... and it requires AMD's CRL, which no fixture has.
    assert_eq!(checks, ["SNP revocation", "SNP MEASUREMENT"], "{v}");
    // A CRL that is not the ARK's is refused, saying whose it is.
    let intel_crl = fixture("tdx/gotdx_rootcrl.der").display().to_string();
    let out = kokon(&[
        "verify",
        "--evidence",
        &report,
        "--vcek",
        &vcek,
        "--crl",
        &intel_crl,
        "--at",
        at,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        all.contains("CRL issuer") && all.contains("ARK-Milan") && all.contains("Intel"),
        "{all}"
    );
    // A corrupted VCEK is not genuine.
    let bad = fixture("snp/trustee_vcek_invalid_new.der")
        .display()
        .to_string();
    let out = kokon(&["verify", "--evidence", &report, "--vcek", &bad, "--at", at]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn usage_errors_exit_1() {
    let out = kokon(&["verify", "--evidence", &quote(), "--format", "pdf"]);
    assert_eq!(out.status.code(), Some(1));
    let report = fixture("snp/trustee_report.bin").display().to_string();
    let out = kokon(&["verify", "--evidence", &report]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--vcek"));
}

#[test]
fn audit_explain_prints_every_field_with_its_meaning() {
    let out = kokon(&["audit", "explain", &quote(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for name in [
        "QE vendor ID",
        "TDATTRIBUTES",
        "MRTD",
        "RTMR3",
        "REPORTDATA",
        "QE report MRSIGNER",
        "PCK FMSPC",
        "PCK CA",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // What to ask Intel PCS for, read from the PCK certificate.
    let value = |name: &str| {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(value("PCK FMSPC"), "B0C06F000000");
    assert_eq!(value("PCK CA"), "platform");
    assert!(v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| !f["meaning"].as_str().unwrap().is_empty()));

    let out = kokon(&[
        "audit",
        "explain",
        &fixture("snp/trustee_vlek_report.bin").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("MEASUREMENT") && t.contains("VLEK") && t.contains("CPUID"),
        "{t}"
    );

    let out = kokon(&[
        "audit",
        "explain",
        &fixture("tdx/gotdx_tdreport.dat").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "a raw TDREPORT is not a quote");
}

#[test]
fn audit_eventlog_replays_the_ccel_log_against_the_quote() {
    let log = fixture("tdx/eventlog/gotdx_ccel_data.dat")
        .display()
        .to_string();
    let td_quote = fixture("tdx/eventlog/gotdx_cos113_quote.dat")
        .display()
        .to_string();
    let out = kokon(&["audit", "eventlog", &log, "--quote", &td_quote, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mismatches"].as_array().unwrap().len(), 0);
    assert_eq!(v["replayed"][0], v["quote"][0]);
    // Against another TD's quote the replay does not match: exit 2.
    let out = kokon(&["audit", "eventlog", &log, "--quote", &quote()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("!= quote"));
}

#[test]
fn audit_eventlog_prints_every_event_whole_and_named() {
    let path = fixture("tdx/eventlog/gotdx_ccel_data.dat");
    let events = kokon_attestation::eventlog::parse(&std::fs::read(&path).unwrap()).unwrap();
    let log = path.display().to_string();
    let out = kokon(&["audit", "eventlog", &log, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let printed = v["events"].as_array().unwrap();
    assert_eq!(printed.len(), events.len());
    for (e, p) in events.iter().zip(printed) {
        assert!(p["type"].as_str().unwrap().starts_with("EV_"), "{p}");
        assert_eq!(p["data_hex"], hex::encode(&e.data));
        assert_eq!(p["size"], e.data.len());
    }
    // The kernel command line, dm-verity parameters included, as text.
    let cmdline = events
        .iter()
        .filter_map(|e| e.text())
        .find(|t| t.starts_with("kernel_cmdline:"))
        .unwrap();
    assert!(cmdline.len() > 700 && cmdline.contains("verity"));
    assert!(printed.iter().any(|p| p["text"] == cmdline));

    let out = kokon(&["audit", "eventlog", &log]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains(cmdline), "the command line is cut:\n{t}");
    assert!(!t.contains("unknown"), "{t}");
    for name in [
        "EV_PLATFORM_CONFIG_FLAGS",
        "EV_EFI_GPT_EVENT",
        "EV_IPL",
        "EV_SEPARATOR",
    ] {
        assert!(t.contains(name), "{name} missing");
    }
    // Binary data is dumped whole: the 1133-byte PK variable's last line.
    let pk = events.iter().find(|e| e.data.len() == 1133).unwrap();
    let last = pk.data.chunks(16).last().unwrap();
    let hex_line: Vec<String> = last.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        t.contains(&format!("{:04x}  {}", 1133 / 16 * 16, hex_line.join(" "))),
        "{t}"
    );
}

fn kokon_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = kokon_tests::Env::load().kokon_bin;
    Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(kokon_tests::repo_root())
        .output()
        .unwrap()
}

/// The dcap-qvl fixture collateral saved as `curl -o … -D ….headers`
/// saves Intel PCS's answers.
fn pcs_directory() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    save_as_curl_does(
        dir.path(),
        &intel_responses(&dcap_collateral(), "B0C06F000000"),
    );
    dir
}

fn verify_with_collateral(collateral: &Path) -> Output {
    kokon(&[
        "verify",
        "--evidence",
        &quote(),
        "--collateral",
        &collateral.display().to_string(),
        "--at",
        "2025-07-01T00:00:00Z",
        "--json",
    ])
}

#[test]
fn collateral_as_saved_from_intel_pcs_verifies_and_each_missing_piece_is_named() {
    let dir = pcs_directory();
    let out = verify_with_collateral(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tcb"]["status"], "UpToDate", "{v}");

    // Each file missing: exit 1, naming the file and what it should hold.
    for (name, what) in [
        ("tcb_info.json", "/tdx/certification/v4/tcb?fmspc=FMSPC"),
        ("tcb_info.headers", "the response headers"),
        ("qe_identity.json", "/tdx/certification/v4/qe/identity"),
        ("qe_identity.headers", "the response headers"),
        ("pck_crl.der", "/sgx/certification/v4/pckcrl"),
        ("pck_crl.headers", "the response headers"),
        ("root_ca_crl.der", "Intel SGX Root CA CRL"),
    ] {
        let dir = pcs_directory();
        std::fs::remove_file(dir.path().join(name)).unwrap();
        let out = verify_with_collateral(dir.path());
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stdout);
        assert!(err.contains(name) && err.contains(what), "{name}: {err}");
    }
    // A header dump without the issuer chain names the header.
    let dir = pcs_directory();
    std::fs::write(
        dir.path().join("qe_identity.headers"),
        "HTTP/2 200\r\ncontent-type: application/json\r\n\r\n",
    )
    .unwrap();
    let out = verify_with_collateral(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stdout);
    assert!(
        err.contains("qe_identity.headers has no SGX-Enclave-Identity-Issuer-Chain header"),
        "{err}"
    );
    // A TCB info whose signature is not Intel's is rejected (exit 2).
    let dir = pcs_directory();
    let path = dir.path().join("tcb_info.json");
    let body = std::fs::read_to_string(&path).unwrap();
    let at = body.find("\"signature\":\"").unwrap() + 13;
    let flipped = if &body[at..=at] == "0" { "1" } else { "0" };
    std::fs::write(
        &path,
        format!("{}{flipped}{}", &body[..at], &body[at + 1..]),
    )
    .unwrap();
    let out = verify_with_collateral(dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("invalid signature: TCB info"),
        "{}",
        text(&out.stdout)
    );
    // One PCS response alone, as the option's help once invited.
    let out = verify_with_collateral(&fixture("tdx/gotdx_tcbinfo_response.json"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stdout);
    assert!(
        err.contains("one Intel PCS response (tcbInfo)")
            && err.contains("directory of PCS responses"),
        "{err}"
    );
}

/// Runs kokon on a blocking thread, so that a stand-in service on this
/// test's runtime can answer it.
async fn kokon_async(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        kokon_env(&args, &env)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_collateral_gets_what_the_evidence_needs_from_the_vendors() {
    let server = serve(fixture_routes()).await;
    let base = server.base.clone();
    let root_crl = format!("{base}/IntelSGXRootCA.der");
    let args = |extra: &[&str]| -> Vec<String> {
        ["verify", "--evidence", &quote(), "--fetch-collateral"]
            .iter()
            .chain(extra)
            .chain(&["--at", "2025-07-01T00:00:00Z", "--json"])
            .map(|s| s.to_string())
            .collect()
    };
    // TDX: TCB info, QE identity, PCK CRL (FMSPC and CA from the quote's
    // PCK certificate) and the root CRL, with PCS's headers.
    let out = kokon_async(
        args(&["--pcs-url", &base, "--root-crl-url", &root_crl]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tcb"]["status"], "UpToDate", "{v}");
    assert_eq!(
        server.hits.lock().unwrap().clone(),
        [
            "/tdx/certification/v4/tcb?fmspc=B0C06F000000",
            "/tdx/certification/v4/qe/identity",
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "/IntelSGXRootCA.der",
        ]
    );
    // The same from the environment.
    let out = kokon_async(
        args(&[]),
        vec![
            ("KOKON_PCS_URL", base.clone()),
            ("KOKON_ROOT_CRL_URL", root_crl),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // SNP: the VCEK for the report's chip and TCB, its chain and AMD's CRL
    // from KDS, then verified. No fixture holds a CRL that AMD signed, so
    // the stand-in serves Intel's: the fetched CRL is checked and refused.
    let report = fixture("snp/virtee_report_milan.hex").display().to_string();
    let snp = |extra: &[&str]| -> Vec<String> {
        [
            "verify",
            "--evidence",
            &report,
            "--fetch-collateral",
            "--kds-url",
            &base,
        ]
        .iter()
        .chain(extra)
        .chain(&["--at", "2025-01-01T00:00:00Z"])
        .map(|s| s.to_string())
        .collect()
    };
    let out = kokon_async(snp(&["--snp-product", "milan"]), vec![]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("CRL issuer") && err.contains("ARK-Milan"),
        "{err}"
    );
    let hits = server.hits.lock().unwrap().clone();
    assert!(
        hits.iter()
            .any(|h| h.starts_with("/vcek/v1/Milan/") && h.contains("blSPL=3"))
            && hits.contains(&"/vcek/v1/Milan/cert_chain".to_string())
            && hits.contains(&"/vcek/v1/Milan/crl".to_string()),
        "{hits:?}"
    );
    // A version 2 report does not name its product line: the flag does.
    let out = kokon_async(snp(&[]), vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--snp-product"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collateral_service_is_named_with_the_cause() {
    // A port that was just free: nothing listens there.
    let port = kokon_tests::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let out = kokon_async(
        vec![
            "verify".into(),
            "--evidence".into(),
            quote(),
            "--fetch-collateral".into(),
            "--pcs-url".into(),
            base.clone(),
            "--json".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "GET {base}/tdx/certification/v4/tcb?fmspc=B0C06F000000"
        )) && err.contains("Connection refused"),
        "{err}"
    );
}

#[test]
fn the_explanation_of_a_bundle_lists_what_config_digest_commits_to() {
    use kokon_attestation::claims::{MeasuredFile, ServingConfig, SERVING_CONFIG_ITEMS};
    let config = ServingConfig {
        kokon_version: "0.1.0".into(),
        model_name: "magika".into(),
        device: "cuda".into(),
        max_batch: 32,
        batch_max_rows: 16,
        batch_delay_us: 250,
        freshness_window_secs: 300,
        price_nanoton_per_unit: 1500,
        model_parameter_files: vec![MeasuredFile {
            name: "magika.config".into(),
            sha256: "cd".repeat(32),
        }],
        text_model_name: Some("smollm2-135m-instruct".into()),
        llm_max_batch: 4,
        price_nanoton_per_prompt_token: 7,
        price_nanoton_per_completion_token: 11,
        gpu_mode: Some("development".into()),
    };
    let now = 1_780_000_000;
    let root = kokon_attestation::sim::SimRoot::generate(now).unwrap();
    let claims = kokon_attestation::Claims {
        model_name: "magika".into(),
        config_digest: config.digest(),
        runtime: "onnxruntime cuda".into(),
        ..kokon_tests::placeholder_claims(now)
    };
    let td = kokon_attestation::sim::SimTd {
        mr_td: [0xaa; 48],
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let mut bundle = kokon_attestation::sim::simulate(&root, td, claims, now).unwrap();
    bundle.serving_config = Some(config);
    let dir = tempfile::tempdir().unwrap();
    let explain = |bundle: &kokon_attestation::AttestationBundle, json: bool| {
        let path = dir.path().join("bundle.json");
        std::fs::write(&path, bundle.to_json()).unwrap();
        let path = path.display().to_string();
        let mut args = vec!["audit", "explain", path.as_str()];
        if json {
            args.push("--json");
        }
        let out = kokon(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        out.stdout
    };

    let v: serde_json::Value = serde_json::from_slice(&explain(&bundle, true)).unwrap();
    let s = &v["serving_config"];
    assert_eq!(s["matches"], true, "{s}");
    assert_eq!(s["config_digest"], hex::encode(bundle.claims.config_digest));
    let items = s["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    let expected: Vec<&str> = SERVING_CONFIG_ITEMS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected);
    let value = |name: &str| items.iter().find(|i| i["name"] == name).unwrap()["value"].clone();
    assert_eq!(value("device"), "cuda");
    assert_eq!(value("gpu_mode"), "development");
    assert_eq!(value("price_nanoton_per_unit"), 1500);
    assert_eq!(value("batch_max_rows"), 16);
    assert_eq!(value("batch_delay_us"), 250);
    assert_eq!(value("text_model_name"), "smollm2-135m-instruct");
    assert_eq!(
        value("model_parameter_files"),
        serde_json::json!([{"name": "magika.config", "sha256": "cd".repeat(32)}])
    );
    assert!(items
        .iter()
        .all(|i| !i["meaning"].as_str().unwrap().is_empty()));

    let t = text(&explain(&bundle, false));
    assert!(t.contains("config_digest commits to"), "{t}");
    for (name, meaning) in SERVING_CONFIG_ITEMS {
        assert!(
            t.contains(name) && t.contains(meaning),
            "{name} missing:\n{t}"
        );
    }
    assert!(
        t.contains("price_nanoton_per_completion_token") && t.contains(" 11\n"),
        "{t}"
    );

    // A configuration the digest does not commit to is called out.
    let mut other = bundle.clone();
    if let Some(c) = other.serving_config.as_mut() {
        c.price_nanoton_per_unit = 1;
    }
    let v: serde_json::Value = serde_json::from_slice(&explain(&other, true)).unwrap();
    assert_eq!(v["serving_config"]["matches"], false);
    assert!(v["serving_config"]["commitment"]
        .as_str()
        .unwrap()
        .contains("does not match"));
    // A bundle without it still names every item the digest covers.
    let mut bare = bundle;
    bare.serving_config = None;
    let v: serde_json::Value = serde_json::from_slice(&explain(&bare, true)).unwrap();
    let s = &v["serving_config"];
    assert_eq!(s["matches"], serde_json::Value::Null);
    assert_eq!(
        s["items"].as_array().unwrap().len(),
        SERVING_CONFIG_ITEMS.len()
    );
    assert!(text(&explain(&bare, false)).contains("(not in this bundle)"));
}

fn gpu(name: &str) -> String {
    fixture(&format!("nvidia/{name}")).display().to_string()
}

/// `kokon verify --evidence` on an NVIDIA GPU report (hex, detected): exit 0
/// with the chain, versions and measurements when it and its chain verify
/// under the embedded NVIDIA root; the nonce is checked only when given,
/// and the verdict says which. Each rejection exits 2 naming its cause.
#[test]
fn an_nvidia_gpu_report_verifies_with_its_chain_and_each_fault_exits_2() {
    let report = gpu("trustee_hopperAttestationReport.txt");
    let chain = gpu("trustee_hopper_cert_chain_case1.txt");
    let nonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--evidence",
            &report,
            "--at",
            "2026-11-27T00:00:00Z",
        ];
        args.extend_from_slice(extra);
        kokon(&args)
    };
    let out = verify(&["--gpu-chain", &chain, "--gpu-nonce", nonce, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "verified");
    assert_eq!(v["format"], "nvidia-report");
    assert_eq!(v["anchor"], "nvidia-device-identity-ca");
    assert_eq!(v["nonce"], nonce);
    assert_eq!(v["nonce_checked"], true);
    assert_eq!(v["chain"].as_array().unwrap().len(), 5);
    // The reference verifier's claims for this report.
    let claims: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(gpu("trustee_hopperAttestationReport-claims.txt")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["driver_version"], claims["config"]["driver_version"]);
    assert_eq!(v["vbios_version"], claims["config"]["vbios_version"]);
    assert_eq!(v["fwid"], claims["config"]["fwid"]);
    assert_eq!(v["measurements"], claims["measurements"]);

    // Without --gpu-nonce it verifies, and says freshness was not checked.
    let out = verify(&["--gpu-chain", &chain]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("NVIDIA GPU attestation report: VERIFIED"),
        "{said}"
    );
    assert!(said.contains("NOT CHECKED, no --gpu-nonce"), "{said}");
    assert!(said.contains("driver           550.90.07"), "{said}");

    for (extra, cause) in [
        (
            vec!["--gpu-chain", &chain, "--gpu-nonce", &"00".repeat(32)],
            "nonce (GET_MEASUREMENTS request) mismatch: expected 0000",
        ),
        (
            vec!["--gpu-chain", &gpu("trustee_hopper_coco_certs1.txt")],
            "invalid signature: NVIDIA GPU attestation report",
        ),
        (
            vec!["--gpu-chain", &gpu("trustee_hopper_cert_chain_case2.txt")],
            "expected 5 certificates",
        ),
    ] {
        let out = verify(&extra);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(err.contains(cause), "{extra:?}: {err}");
    }
    // Usage errors exit 1: no chain, a nonce of the wrong length, a chain
    // for CPU evidence, a policy (its [gpu] section is for bundles).
    for (extra, cause) in [
        (vec![], "needs --gpu-chain"),
        (
            vec!["--gpu-chain", &chain, "--gpu-nonce", "abcd"],
            "2 bytes, expected 32",
        ),
        (
            vec!["--gpu-chain", &chain, "--policy", "policies/dev-vm.toml"],
            "a policy's [gpu] section appraises GPU evidence in a bundle",
        ),
    ] {
        let out = verify(&extra);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{extra:?}: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains(cause),
            "{extra:?}: {}",
            text(&out.stderr)
        );
    }
    let out = kokon(&["verify", "--evidence", &quote(), "--gpu-chain", &chain]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--gpu-chain is for NVIDIA GPU reports"),
        "{}",
        text(&out.stderr)
    );
}

/// `kokon audit explain` on a GPU report (detected, or `--format
/// nvidia-report`) names every field with its meaning.
#[test]
fn audit_explain_names_the_fields_of_an_nvidia_gpu_report() {
    let report = gpu("trustee_hopperAttestationReport.txt");
    for extra in [vec![], vec!["--format", "nvidia-report"]] {
        let mut args = vec!["audit", "explain", &report, "--json"];
        args.extend_from_slice(&extra);
        let out = kokon(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let fields = v["fields"].as_array().unwrap();
        let named = |name: &str| fields.iter().find(|f| f["name"] == name);
        assert_eq!(named("SPDMVersion").unwrap()["value"], "0x11");
        assert_eq!(
            named("request nonce").unwrap()["value"],
            "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
        );
        assert!(fields
            .iter()
            .all(|f| f["meaning"].as_str().is_some_and(|m| !m.is_empty())));
    }
    // A TDX quote forced to be read as a GPU report is a parse error, not a panic.
    let out = kokon(&["audit", "explain", &quote(), "--format", "nvidia-report"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("error"), "{}", text(&out.stderr));
}

/// `kokon verify --evidence` with `--gpu-rim` and `--gpu-ocsp`: RIMs and
/// OCSP answers count only under NVIDIA's roots, so RIMs signed under a
/// test root and answers from a test hierarchy are rejected (exit 2,
/// naming what was expected), and wrong counts are refused. (NVIDIA's own
/// RIMs and answers for this report verify: docs/attestation.md.)
#[test]
fn gpu_rims_and_ocsp_answers_count_only_under_nvidias_roots() {
    let report_path = gpu("trustee_hopperAttestationReport.txt");
    let chain = gpu("trustee_hopper_cert_chain_case1.txt");
    let template = hex::decode(std::fs::read_to_string(&report_path).unwrap().trim()).unwrap();
    let report = kokon_attestation::nvidia::Report::parse(&template).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let signer = kokon_attestation::sim::rim::SimRimSigner::new().unwrap();
    let rims: Vec<String> = signer
        .rims_for(&report)
        .unwrap()
        .into_iter()
        .map(|(id, rim)| file(&id, rim.rim.as_bytes()))
        .collect();
    let sim_gpu = kokon_attestation::sim::SimGpu::for_template(&template).unwrap();
    let answers: Vec<String> = sim_gpu
        .ocsp_good(1_795_730_000)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, a)| file(&format!("ocsp{i}.der"), a))
        .collect();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--evidence",
            &report_path,
            "--gpu-chain",
            &chain,
            "--at",
            "2026-11-27T00:00:00Z",
        ];
        args.extend_from_slice(extra);
        kokon(&args)
    };
    for (extra, code, cause) in [
        (
            vec!["--gpu-rim", &rims[0], "--gpu-rim", &rims[1]],
            2,
            "certificate chain is not anchored in a trusted root: expected one of [nvidia-corim-signing-root-ca sha256:12977b51",
        ),
        (
            vec!["--gpu-rim", &rims[0]],
            1,
            "--gpu-rim: 1 files, expected 2 (the driver's RIM and the VBIOS's)",
        ),
        (
            vec!["--gpu-ocsp", &answers[0], "--gpu-ocsp", &answers[1], "--gpu-ocsp", &answers[2]],
            2,
            "OCSP responder mismatch: expected the issuer (CN=NVIDIA GH100 Provisioner ICA 1, O=NVIDIA Corporation, C=US)",
        ),
        (
            vec!["--gpu-ocsp", &answers[0]],
            2,
            "unsupported OCSP responses: expected 3 (for the GPU device identity (BROM), NVIDIA provisioner CA, NVIDIA GPU architecture CA), found 1",
        ),
    ] {
        let out = verify(&extra);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {err}");
        assert!(err.contains(cause), "{extra:?}: {err}");
    }
    // Without either, the verdict says what it did not check.
    let out = verify(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["not_checked"],
        "NVIDIA's reference measurements (no --gpu-rim); certificate revocation (no --gpu-ocsp); a policy's [gpu] pins apply to bundles (kokon verify --bundle), where the nonce comes from the claims"
    );
    assert_eq!(v["revocation"], serde_json::Value::Null);
}
