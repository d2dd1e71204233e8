#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The shipped policies against simulated evidence: each check has a case that trips it.

use kokon_attestation::claims::Claims;
use kokon_attestation::sim::{simulate, SimRoot, SimTd};
use kokon_attestation::{verify_bundle, AttestationBundle, Error, VerifiedEvidence};
use kokon_policies::{LocalReferences, Policy};

const NOW: i64 = 1_780_000_000;
const DEV: &str = include_str!("../dev-sim.toml");
const PROD: &str = include_str!("../production-tdx.toml");
const MAGIKA: &str = "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c";
const MRTD: [u8; 48] = [0xab; 48];

struct Sim {
    root: SimRoot,
    bundle: AttestationBundle,
}

fn sim(debug: bool, model_digest: [u8; 32], issued_at: i64) -> Sim {
    let root = SimRoot::generate(NOW).unwrap();
    let claims = Claims {
        kokon_version: "0.1.0".into(),
        ohttp_key_config: vec![1],
        receipt_key: [1; 32],
        model_name: "magika".into(),
        model_digest,
        text_model: None,
        config_digest: [2; 32],
        runtime: "onnxruntime cpu".into(),
        nonce: vec![3; 32],
        issued_at,
        gpus: Vec::new(),
    };
    let bundle = simulate(
        &root,
        SimTd {
            mr_td: MRTD,
            rtmr: [[0; 48]; 3],
            debug,
        },
        claims,
        NOW,
    )
    .unwrap();
    Sim { root, bundle }
}

fn magika() -> [u8; 32] {
    hex::decode(MAGIKA).unwrap().try_into().unwrap()
}

fn dev_policy(root: &SimRoot, mrtd: [u8; 48]) -> Policy {
    Policy::from_toml(
        DEV,
        &LocalReferences {
            sim_root: Some(root.anchor()),
            enclave_build_mrtd: Some(mrtd),
        },
    )
    .unwrap()
}

fn verified(s: &Sim, policy: &Policy) -> VerifiedEvidence {
    verify_bundle(&s.bundle, &policy.anchors, NOW).unwrap()
}

#[test]
fn dev_policy_accepts_the_local_sim_enclave() {
    let s = sim(false, magika(), NOW);
    let p = dev_policy(&s.root, MRTD);
    p.appraise(&verified(&s, &p), NOW).unwrap();
}

#[test]
fn every_check_is_recorded_passed_or_failed_with_expected_and_found() {
    let s = sim(false, magika(), NOW);
    let p = dev_policy(&s.root, MRTD);
    let checks = p.checks(&verified(&s, &p), NOW);
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        names,
        [
            "simulated TEE",
            "trust root",
            "debug",
            "TCB status",
            "TCB evaluation data number",
            "TCB advisories",
            "MRTD",
            "RTMR0",
            "RTMR1",
            "RTMR2",
            "evidence age",
            "evidence time",
            "model"
        ]
    );
    for c in &checks {
        assert!(
            c.passed && !c.expected.is_empty() && !c.found.is_empty(),
            "{c:?}"
        );
    }
    let debug = |checks: &[kokon_policies::Check]| {
        checks.iter().find(|c| c.check == "debug").unwrap().clone()
    };
    assert!(
        debug(&checks).found.starts_with("DEBUG off"),
        "{:?}",
        debug(&checks)
    );
    assert_eq!(p.verdict(&checks), Ok(()));

    // A debug TD: the same checks, that one failed, and the verdict names it alone.
    let s = sim(true, magika(), NOW);
    let p = dev_policy(&s.root, MRTD);
    let checks = p.checks(&verified(&s, &p), NOW);
    assert_eq!(checks.len(), names.len());
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.check.as_str())
        .collect();
    assert_eq!(failed, ["debug"]);
    assert!(
        debug(&checks).found.starts_with("DEBUG on"),
        "{:?}",
        debug(&checks)
    );
    let r = p.verdict(&checks).unwrap_err();
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].found, debug(&checks).found);
    assert_eq!(p.appraise(&verified(&s, &p), NOW), Err(r));
}

#[test]
fn sim_evidence_is_rejected_by_the_production_policy() {
    let s = sim(false, magika(), NOW);
    let prod = Policy::from_toml(PROD, &LocalReferences::default()).unwrap();
    // The verifier refuses the chain: production trusts only Intel's root.
    let err = verify_bundle(&s.bundle, &prod.anchors, NOW).unwrap_err();
    assert!(matches!(err, Error::UntrustedRoot { .. }), "{err}");
    // And were the evidence verified some other way, appraisal refuses it too.
    let dev = dev_policy(&s.root, MRTD);
    let rejection = prod.appraise(&verified(&s, &dev), NOW).unwrap_err();
    let checks: Vec<_> = rejection
        .failures
        .iter()
        .map(|f| f.check.as_str())
        .collect();
    assert!(
        checks.contains(&"simulated TEE")
            && checks.contains(&"trust root")
            && checks.contains(&"MRTD"),
        "{rejection}"
    );
}

#[test]
fn production_policy_cannot_be_made_to_trust_the_sim_root() {
    let text = PROD.replace(
        "[\"intel-sgx-root\"]",
        "[\"intel-sgx-root\", \"sim-local\"]",
    );
    let root = SimRoot::generate(NOW).unwrap();
    let err = Policy::from_toml(
        &text,
        &LocalReferences {
            sim_root: Some(root.anchor()),
            enclave_build_mrtd: None,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("allow_simulated = false"), "{err}");
}

#[test]
fn a_debug_td_is_rejected() {
    let s = sim(true, magika(), NOW);
    let p = dev_policy(&s.root, MRTD);
    let r = p.appraise(&verified(&s, &p), NOW).unwrap_err();
    assert_eq!(r.failures.len(), 1, "{r}");
    assert_eq!(r.failures[0].check, "debug");
}

#[test]
fn a_wrong_model_digest_is_rejected_with_expected_and_found() {
    let s = sim(false, [0x11; 32], NOW);
    let p = dev_policy(&s.root, MRTD);
    let r = p.appraise(&verified(&s, &p), NOW).unwrap_err();
    assert_eq!(r.failures[0].check, "model");
    assert!(
        r.failures[0].expected.contains(MAGIKA) && r.failures[0].found.contains(&"11".repeat(32)),
        "{r}"
    );
}

#[test]
fn another_enclave_binary_is_rejected() {
    let s = sim(false, magika(), NOW);
    let p = dev_policy(&s.root, [0xcd; 48]);
    let r = p.appraise(&verified(&s, &p), NOW).unwrap_err();
    assert_eq!(r.failures[0].check, "MRTD");
    assert_eq!(r.failures[0].found, hex::encode(MRTD));
}

#[test]
fn stale_and_future_evidence_is_rejected() {
    let s = sim(false, magika(), NOW - 301);
    let p = dev_policy(&s.root, MRTD);
    assert_eq!(
        p.appraise(&verified(&s, &p), NOW).unwrap_err().failures[0].check,
        "evidence age"
    );
    let s = sim(false, magika(), NOW + 120);
    let p = dev_policy(&s.root, MRTD);
    assert_eq!(
        p.appraise(&verified(&s, &p), NOW).unwrap_err().failures[0].check,
        "evidence time"
    );
}

#[test]
fn empty_allow_lists_accept_nothing() {
    let text = DEV.replace("mrtd = [\"local-enclave-build\"]", "mrtd = []");
    let s = sim(false, magika(), NOW);
    let p = Policy::from_toml(
        &text,
        &LocalReferences {
            sim_root: Some(s.root.anchor()),
            enclave_build_mrtd: None,
        },
    )
    .unwrap();
    let r = p.appraise(&verified(&s, &p), NOW).unwrap_err();
    assert!(
        r.failures[0].expected.contains("nothing is accepted"),
        "{r}"
    );
}

#[test]
fn malformed_policies_are_load_errors() {
    let locals = LocalReferences::default();
    for (text, needle) in [
        (PROD.replace("mrtd = []", "mrtx = []"), "unknown register"),
        (
            PROD.replace("mrtd = []", "mrtd = [\"abcd\"]"),
            "expected 48 bytes",
        ),
        (PROD.replace("intel-sgx-root", "acme-root"), "unknown root"),
        (
            PROD.replace("max_age_seconds = 300", "max_age_seconds = \"soon\""),
            "syntax",
        ),
        (
            PROD.replace("allow_debug = false", "allow_debug = false\nextra = 1"),
            "syntax",
        ),
        (DEV.to_string(), "no sim root"),
    ] {
        let err = Policy::from_toml(&text, &locals).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn each_rtmr_is_checked_against_its_own_register() {
    let s = sim(false, magika(), NOW);
    for (register, index) in [("rtmr0", 0), ("rtmr1", 1), ("rtmr2", 2), ("rtmr3", 3)] {
        let line = format!("{register} = [\"{}\"]", "ee".repeat(48));
        let text = DEV.replace("[measurements]", &format!("[measurements]\n{line}"));
        let text = text.replace(&format!("{register} = [\"{}\"]", "0".repeat(96)), "");
        let p = Policy::from_toml(
            &text,
            &LocalReferences {
                sim_root: Some(s.root.anchor()),
                enclave_build_mrtd: Some(MRTD),
            },
        )
        .unwrap();
        let v = verified(&s, &p);
        let r = p.appraise(&v, NOW).unwrap_err();
        assert_eq!(r.failures.len(), 1, "{r}");
        assert_eq!(r.failures[0].check, register.to_uppercase());
        assert_eq!(
            r.failures[0].found,
            hex::encode(v.td().unwrap().rtmr[index])
        );
    }
}
