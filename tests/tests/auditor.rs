#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The auditor's command line on real evidence: `kokon verify --evidence`
//! (exit 0 genuine and UpToDate, 2 otherwise, 1 on usage errors) and
//! `kokon audit explain`.

use std::path::PathBuf;
use std::process::{Command, Output};

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
    assert!(v["tcb"].as_str().unwrap().starts_with("UpToDate"), "{v}");
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
    let out = kokon(&[
        "verify",
        "--evidence",
        &report,
        "--vcek",
        &vcek,
        "--chain",
        &chain,
        "--at",
        at,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("amd-ark-milan"));
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
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
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
