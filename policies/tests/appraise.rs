#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The shipped policies against simulated evidence: each check has a case that trips it.

mod common;

use std::collections::BTreeMap;

use kokon_attestation::claims::{CcEnvironment, Claims, GpuCcState, MultiGpuMode};
use kokon_attestation::nvidia::{gpu_nonce, Report};
use kokon_attestation::sim::ocsp::{SimAnswer, SimStatus};
use kokon_attestation::sim::rim::SimRimSigner;
use kokon_attestation::sim::SimGpu;
use kokon_attestation::sim::{simulate, SimRoot, SimTd};
use kokon_attestation::{
    verify_bundle, AttestationBundle, Error, GpuEvidence, GpuRim, TrustAnchors, VerifiedEvidence,
};
use kokon_policies::{Check, LocalReferences, Policy};

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
    sim_with(debug, claims(model_digest, issued_at))
}

fn claims(model_digest: [u8; 32], issued_at: i64) -> Claims {
    Claims {
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
        gpu_cc: None,
    }
}

fn sim_with(debug: bool, claims: Claims) -> Sim {
    let root = SimRoot::generate(NOW).unwrap();
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

// ------------------------------------------------------------------ GPUs --

/// The real Hopper report the sim GPU re-signs.
fn gpu_template() -> Vec<u8> {
    let text = common::fixture("nvidia/trustee_hopperAttestationReport.txt");
    hex::decode(String::from_utf8(text).unwrap().trim()).unwrap()
}

/// The sim enclave's nonce, as the claims echo it, and its GPU nonce.
fn sim_gpu_nonce() -> [u8; 32] {
    gpu_nonce(&claims(magika(), NOW).nonce)
}

/// The checks of the dev policy with `[gpu]` set to `section` (none when
/// `None`) and `anchors` as its GPU roots (the test-anchor mechanism:
/// a resolved policy's roots are fields), on a sim bundle whose claims
/// name `evidence` and which carries it.
fn gpu_checks(
    section: Option<&str>,
    anchors: Option<TrustAnchors>,
    evidence: &[GpuEvidence],
) -> Vec<Check> {
    gpu_checks_with(section, anchors, evidence, |_| ())
}

/// [`gpu_checks`], with `edit` applied to the resolved policy first.
fn gpu_checks_with(
    section: Option<&str>,
    anchors: Option<TrustAnchors>,
    evidence: &[GpuEvidence],
    edit: impl FnOnce(&mut Policy),
) -> Vec<Check> {
    let cc = cc_state(evidence.len() as u32);
    gpu_checks_cc(section, anchors, evidence, Some(cc), edit)
}

/// The claimed state of `count` GPUs in confidential-computing mode.
fn cc_state(count: u32) -> GpuCcState {
    GpuCcState {
        cc_feature: true,
        devtools_mode: false,
        environment: CcEnvironment::Production,
        multi_gpu_mode: match count {
            0 | 1 => MultiGpuMode::None,
            _ => MultiGpuMode::ProtectedPcie,
        },
        gpu_count: count,
        ready: true,
    }
}

/// [`gpu_checks_with`], with `cc` as the claims' GPU state.
fn gpu_checks_cc(
    section: Option<&str>,
    anchors: Option<TrustAnchors>,
    evidence: &[GpuEvidence],
    cc: Option<GpuCcState>,
    edit: impl FnOnce(&mut Policy),
) -> Vec<Check> {
    gpu_checks_rims(section, anchors, evidence, &BTreeMap::new(), cc, edit)
}

/// [`gpu_checks_cc`], with `rims` in the bundle as the host adds them.
fn gpu_checks_rims(
    section: Option<&str>,
    anchors: Option<TrustAnchors>,
    evidence: &[GpuEvidence],
    rims: &BTreeMap<String, GpuRim>,
    cc: Option<GpuCcState>,
    edit: impl FnOnce(&mut Policy),
) -> Vec<Check> {
    let claims = Claims {
        gpus: evidence.iter().map(|e| e.claim()).collect(),
        gpu_cc: cc,
        ..claims(magika(), NOW)
    };
    let mut s = sim_with(false, claims);
    s.bundle.gpu_evidence = evidence.to_vec();
    s.bundle.gpu_rims = rims.clone();
    let text = match section {
        Some(body) => format!("{DEV}\n[gpu]\n{body}\n"),
        None => DEV.to_string(),
    };
    let mut p = Policy::from_toml(
        &text,
        &LocalReferences {
            sim_root: Some(s.root.anchor()),
            enclave_build_mrtd: Some(MRTD),
        },
    )
    .unwrap();
    if let Some(anchors) = anchors {
        p.gpu.anchors = anchors;
    }
    let v = verified(&s, &p);
    edit(&mut p);
    p.checks(&v, NOW)
}

/// The failed checks as `check: expected ... found ...`.
fn failed(checks: &[Check]) -> Vec<(String, String, String)> {
    checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.check.clone(), c.expected.clone(), c.found.clone()))
        .collect()
}

#[test]
fn a_bundle_with_sim_gpu_evidence_for_the_derived_nonce_is_accepted() {
    let template = gpu_template();
    let gpu = SimGpu::for_template(&template).unwrap();
    let evidence = GpuEvidence {
        ocsp: gpu.ocsp_good(NOW - 3600).unwrap(),
        ..gpu.evidence(&template, &sim_gpu_nonce()).unwrap()
    };
    let index2 = hex::encode(Report::parse(&template).unwrap().measurements()[&2]);
    let section = format!(
        "measurements = {{ \"2\" = [\"{}\", \"{index2}\"] }}\ndriver_versions = [\"550.90.07\"]\nmin_driver_version = \"550.54\"\nvbios_versions = [\"96.00.9F.00.01\"]\nrequired = true",
        "00".repeat(48)
    );
    let rim_signer = SimRimSigner::new().unwrap();
    let mut rims = rim_signer
        .rims_for(&Report::parse(&template).unwrap())
        .unwrap();
    for rim in rims.values_mut() {
        rim.ocsp = rim_signer.ocsp_good(NOW - 3600).unwrap();
    }
    let checks = gpu_checks_rims(
        Some(&section),
        Some(gpu.anchors()),
        &[evidence.clone(), evidence],
        &rims,
        Some(cc_state(2)),
        |p| p.gpu.rim_anchors = rim_signer.anchors(),
    );
    assert_eq!(failed(&checks), []);
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        names[names.len() - 11..],
        [
            "GPU evidence",
            "GPU 0",
            "GPU 0 revocation",
            "GPU 0 reference values",
            "GPU 0 RIM revocation",
            "GPU 0 measurement 2",
            "GPU 1",
            "GPU 1 revocation",
            "GPU 1 reference values",
            "GPU 1 RIM revocation",
            "GPU 1 measurement 2"
        ]
    );
    let gpu0 = &checks[names.len() - 10];
    let revocation = &checks[names.len() - 9];
    assert_eq!(
        checks[names.len() - 8].found,
        "32 indexes match (driver RIM 550.90.07, VBIOS RIM 96.00.9F.00.01); index 36 not compared: NVDEC0 is disabled"
    );
    assert_eq!(checks[names.len() - 7].found, "good, both signing chains");
    assert_eq!(
        revocation.found,
        "good, signed by CN=test provisioner CA, until 2026-06-04T19:26:40Z; good, signed by CN=test architecture CA, until 2026-06-04T19:26:40Z; good, signed by CN=test GPU root, until 2026-06-04T19:26:40Z"
    );
    assert!(
        gpu0.found.starts_with(
            "verified under \"sim-gpu-root\": driver 550.90.07, VBIOS 96.00.9f.00.01, FWID "
        ),
        "{gpu0:?}"
    );
    assert!(
        gpu0.expected.contains(&hex::encode(sim_gpu_nonce())),
        "{gpu0:?}"
    );
    // Without a [gpu] section and without GPU evidence: no GPU check at all.
    let plain = gpu_checks(None, None, &[]);
    assert!(
        plain.iter().all(|c| !c.check.starts_with("GPU")),
        "{plain:?}"
    );
}

#[test]
fn each_gpu_check_trips_with_what_it_expected_and_found() {
    let template = gpu_template();
    let gpu = SimGpu::for_template(&template).unwrap();
    let fresh = [gpu.evidence(&template, &sim_gpu_nonce()).unwrap()];
    let anchors = Some(gpu.anchors());

    // A simulated GPU under a policy that refuses simulation: the CPU's
    // simulation check and the GPU's both fail.
    let f = failed(&gpu_checks_with(None, anchors.clone(), &fresh, |p| {
        p.allow_simulated = false;
    }));
    let names: Vec<&str> = f.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["simulated TEE", "GPU 0"], "{f:?}");
    assert!(
        f[1].1.ends_with("from hardware (allow_simulated = false)"),
        "{f:?}"
    );
    assert_eq!(f[1].2, "simulated GPU evidence under root \"sim-gpu-root\"");

    // A report for another nonce (replayed from another session).
    let stale = gpu.evidence(&template, &gpu_nonce(b"another")).unwrap();
    let f = failed(&gpu_checks(None, anchors.clone(), &[stale]));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "GPU 0");
    assert!(f[0].1.contains(&hex::encode(sim_gpu_nonce())), "{f:?}");
    assert_eq!(
        f[0].2,
        format!(
            "GPU attestation nonce (GET_MEASUREMENTS request) mismatch: expected {}, found {}",
            hex::encode(sim_gpu_nonce()),
            hex::encode(gpu_nonce(b"another"))
        )
    );

    // A chain under a root the policy does not name: without [gpu], the
    // embedded NVIDIA root is the only GPU root.
    let f = failed(&gpu_checks(None, None, &fresh));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].1
            .starts_with("genuine GPU evidence under one of [\"nvidia-device-identity-ca\"]"),
        "{f:?}"
    );
    assert!(
        f[0].2.starts_with("certificate chain is not anchored in a trusted root: expected one of [nvidia-device-identity-ca")
            && f[0].2.contains("found CN=test GPU root"),
        "{f:?}"
    );

    // A pinned measurement that differs.
    let other = "11".repeat(48);
    let f = failed(&gpu_checks(
        Some(&format!("measurements = {{ \"2\" = [\"{other}\"] }}")),
        anchors.clone(),
        &fresh,
    ));
    let index2 = hex::encode(Report::parse(&template).unwrap().measurements()[&2]);
    assert_eq!(
        f,
        [(
            "GPU 0 measurement 2".into(),
            format!("one of [{other}]"),
            index2
        )]
    );
    // A pinned index the report lacks.
    let f = failed(&gpu_checks(
        Some(&format!("measurements = {{ \"200\" = [\"{other}\"] }}")),
        anchors.clone(),
        &fresh,
    ));
    assert_eq!(f[0].2, "no block with this index", "{f:?}");

    // A driver below the minimum, or not listed; a VBIOS not listed.
    let cases = [
        ("min_driver_version = \"550.100\"", "GPU driver version not accepted: expected at least 550.100, found 550.90.07"),
        ("driver_versions = [\"560.1\"]", "GPU driver version not accepted: expected one of [560.1], found 550.90.07"),
        ("vbios_versions = [\"96.00.00.00.01\"]", "GPU VBIOS version not accepted: expected one of [96.00.00.00.01], found 96.00.9f.00.01"),
    ];
    for (section, found) in cases {
        let f = failed(&gpu_checks(Some(section), anchors.clone(), &fresh));
        assert_eq!(f.len(), 1, "{section}: {f:?}");
        assert_eq!(
            (f[0].0.as_str(), f[0].2.as_str()),
            ("GPU 0", found),
            "{section}"
        );
    }

    // Required, and the bundle carries none.
    let f = failed(&gpu_checks(
        Some("required = true\nrequire_cc = false"),
        anchors,
        &[],
    ));
    assert_eq!(
        f,
        [(
            "GPU evidence".into(),
            "at least one GPU report (gpu.required = true)".into(),
            "0 GPU reports".into()
        )]
    );
}

#[test]
fn require_cc_trips_on_each_state_short_of_confidential_computing() {
    let template = gpu_template();
    let gpu = SimGpu::for_template(&template).unwrap();
    let fresh = gpu.evidence(&template, &sim_gpu_nonce()).unwrap();
    let anchors = Some(gpu.anchors());
    let cc_check = |section: &str, evidence: &[GpuEvidence], cc: Option<GpuCcState>| {
        let checks = gpu_checks_cc(Some(section), anchors.clone(), evidence, cc, |_| ());
        checks
            .into_iter()
            .find(|c| c.check == "GPU confidential computing")
    };
    // `required = true` requires it; `require_cc` alone does too.
    for section in ["required = true", "require_cc = true"] {
        let c = cc_check(section, std::slice::from_ref(&fresh), Some(cc_state(1))).unwrap();
        assert!(c.passed, "{c:?}");
        assert_eq!(
            c.expected,
            "GPUs in confidential-computing mode (gpu.require_cc = true): CC on, devtools off, the production or simulation environment, protected PCIe with more than one GPU, ready, one report per GPU"
        );
        assert_eq!(
            c.found,
            "CC on, devtools off, environment production, 1 GPU, multi-GPU mode none, ready; 1 GPU reports"
        );
    }
    // Not required: no such check, whatever the state.
    assert!(cc_check(
        "required = true\nrequire_cc = false",
        std::slice::from_ref(&fresh),
        None
    )
    .is_none());
    assert!(cc_check("anchors = [\"nvidia-device-identity-ca\"]", &[], None).is_none());
    // Each shortfall trips it.
    let one = cc_state(1);
    let two = [fresh.clone(), fresh.clone()];
    let cases: [(&[GpuEvidence], Option<GpuCcState>, &str); 8] = [
        (&[], None, "no GPU confidential-computing state in the claims (an enclave serving on the CPU)"),
        (&two[..1], Some(GpuCcState { cc_feature: false, ..one }), "CC off, devtools off, environment production, 1 GPU, multi-GPU mode none, ready; 1 GPU reports"),
        (&two[..1], Some(GpuCcState { devtools_mode: true, ..one }), "CC on, devtools on, environment production, 1 GPU, multi-GPU mode none, ready; 1 GPU reports"),
        (&two[..1], Some(GpuCcState { environment: CcEnvironment::Unavailable, ..one }), "CC on, devtools off, environment unavailable, 1 GPU, multi-GPU mode none, ready; 1 GPU reports"),
        (&two[..1], Some(GpuCcState { ready: false, ..one }), "CC on, devtools off, environment production, 1 GPU, multi-GPU mode none, not ready; 1 GPU reports"),
        (&two, Some(GpuCcState { multi_gpu_mode: MultiGpuMode::None, ..cc_state(2) }), "CC on, devtools off, environment production, 2 GPUs, multi-GPU mode none, ready; 2 GPU reports"),
        // Fewer reports than GPUs (one GPU left unattested), or more.
        (&two[..1], Some(cc_state(2)), "CC on, devtools off, environment production, 2 GPUs, multi-GPU mode protected-pcie, ready; 1 GPU reports"),
        (&two, Some(one), "CC on, devtools off, environment production, 1 GPU, multi-GPU mode none, ready; 2 GPU reports"),
    ];
    for (evidence, cc, found) in cases {
        let c = cc_check("required = true", evidence, cc).unwrap();
        assert!(!c.passed, "{c:?}");
        assert_eq!(c.found, found);
    }
    // NVIDIA's simulation environment passes only where simulation is allowed.
    let sim_env = Some(GpuCcState {
        environment: CcEnvironment::Simulation,
        ..one
    });
    let c = cc_check("required = true", &two[..1], sim_env).unwrap();
    assert!(c.passed, "{c:?}");
    let checks = gpu_checks_cc(
        Some("required = true"),
        anchors.clone(),
        &two[..1],
        sim_env,
        |p| {
            p.allow_simulated = false;
        },
    );
    let c = checks
        .iter()
        .find(|c| c.check == "GPU confidential computing")
        .unwrap();
    assert!(
        !c.passed
            && c.expected
                .contains("CC on, devtools off, the production environment,"),
        "{c:?}"
    );
}

#[test]
fn a_malformed_gpu_section_is_refused_with_its_field() {
    let cases = [
        ("requried = true", "policy syntax: "),
        (
            "anchors = [\"amd-ark-milan\"]",
            "policy gpu.anchors: unknown root \"amd-ark-milan\"; known: nvidia-device-identity-ca",
        ),
        (
            "anchors = []",
            "policy gpu.anchors: at least one root is required",
        ),
        (
            "rim_anchors = [\"nvidia-device-identity-ca\"]",
            "policy gpu.rim_anchors: unknown root \"nvidia-device-identity-ca\"; known: nvidia-corim-signing-root-ca",
        ),
        (
            "rim_anchors = []",
            "policy gpu.rim_anchors: at least one root is required",
        ),
        (
            "measurements = { \"2\" = [\"zz\"] }",
            "policy gpu.measurements.2: \"zz\" is not hex",
        ),
        (
            "measurements = { \"2\" = [\"abcd\"] }",
            "policy gpu.measurements.2: expected 48 bytes, found 2",
        ),
        (
            "measurements = { \"0\" = [] }",
            "policy gpu.measurements.0: the index must be a number from 1 to 254",
        ),
        (
            "measurements = { \"255\" = [] }",
            "policy gpu.measurements.255: the index must be a number from 1 to 254",
        ),
        (
            "measurements = { \"x\" = [] }",
            "policy gpu.measurements.x: the index must be a number from 1 to 254",
        ),
        (
            "min_driver_version = \"550.x\"",
            "policy gpu.min_driver_version: \"550.x\" is not numbers separated by dots",
        ),
        ("required = \"yes\"", "policy syntax: "),
        ("require_cc = 1", "policy syntax: "),
    ];
    let locals = LocalReferences {
        sim_root: Some(SimRoot::generate(NOW).unwrap().anchor()),
        enclave_build_mrtd: Some(MRTD),
    };
    Policy::from_toml(&format!("{DEV}\n[gpu]\n"), &locals).unwrap();
    for (section, expected) in cases {
        let text = format!("{DEV}\n[gpu]\n{section}\n");
        let e = Policy::from_toml(&text, &locals).unwrap_err();
        assert!(e.to_string().starts_with(expected), "{section}: {e}");
    }
    let e = Policy::from_toml(&format!("{DEV}\n[gpu]\nrequried = true\n"), &locals).unwrap_err();
    assert!(e.to_string().contains("unknown field `requried`"), "{e}");
}

#[test]
fn the_production_policies_take_gpu_evidence_under_nvidias_root_only_and_do_not_require_it() {
    for text in [PROD, include_str!("../production-snp.toml")] {
        let p = Policy::from_toml(text, &LocalReferences::default()).unwrap();
        assert!(!p.gpu.required);
        let names: Vec<&str> = p
            .gpu
            .anchors
            .roots
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["nvidia-device-identity-ca"]);
        assert!(p.gpu.measurements.is_empty());
    }
}

#[test]
fn gpu_revocation_is_required_with_the_evidence_and_checked_whenever_the_host_sends_it() {
    let template = gpu_template();
    let gpu = SimGpu::for_template(&template).unwrap();
    let bare = gpu.evidence(&template, &sim_gpu_nonce()).unwrap();
    let with_ocsp = |ocsp: Vec<Vec<u8>>| GpuEvidence {
        ocsp,
        ..bare.clone()
    };
    let revocation = |section: Option<&str>, evidence: GpuEvidence| {
        gpu_checks(section, Some(gpu.anchors()), &[evidence])
            .into_iter()
            .find(|c| c.check == "GPU 0 revocation")
    };
    // Required (by `required`, or alone), none sent: rejected, saying so.
    for section in ["required = true", "require_ocsp = true"] {
        let c = revocation(Some(section), bare.clone()).unwrap();
        assert!(!c.passed, "{section}: {c:?}");
        assert!(
            c.expected.ends_with("and good (gpu.require_ocsp = true)"),
            "{c:?}"
        );
        assert!(
            c.found
                .starts_with("unsupported OCSP responses: expected 3"),
            "{c:?}"
        );
    }
    // Not required and none sent: no revocation check.
    assert!(revocation(Some("required = true\nrequire_ocsp = false"), bare.clone()).is_none());
    assert!(revocation(None, bare.clone()).is_none());
    // Not required but sent: checked all the same, and a revoked
    // certificate rejects.
    let mut ocsp = gpu.ocsp_good(NOW - 3600).unwrap();
    ocsp[1] = gpu
        .ocsp(
            2,
            &SimAnswer {
                status: SimStatus::Revoked(NOW - 60),
                ..SimAnswer::good(NOW - 3600)
            },
        )
        .unwrap();
    let c = revocation(None, with_ocsp(ocsp)).unwrap();
    assert!(!c.passed, "{c:?}");
    assert!(
        c.expected.ends_with("and good (the host sent them)"),
        "{c:?}"
    );
    assert!(
        c.found.starts_with("certificate NVIDIA provisioner CA (CN=test provisioner CA) is not good: its OCSP response, signed by CN=test architecture CA, says serial "),
        "{c:?}"
    );
    assert!(
        c.found
            .ends_with(" is revoked at 2026-05-28T20:25:40Z (KeyCompromise)"),
        "{c:?}"
    );
    // Stale responses (past their next update) reject too.
    let stale = gpu.ocsp_good(NOW - 8 * 24 * 3600).unwrap();
    let c = revocation(Some("required = true"), with_ocsp(stale)).unwrap();
    assert!(!c.passed, "{c:?}");
    assert!(
        c.found
            .starts_with("OCSP response is not valid at 2026-05-28T20:26:40Z"),
        "{c:?}"
    );
}

#[test]
fn gpu_reference_values_are_required_with_the_evidence_and_each_failure_is_named() {
    let template = gpu_template();
    let report = Report::parse(&template).unwrap();
    let gpu = SimGpu::for_template(&template).unwrap();
    let evidence = GpuEvidence {
        ocsp: gpu.ocsp_good(NOW - 3600).unwrap(),
        ..gpu.evidence(&template, &sim_gpu_nonce()).unwrap()
    };
    let signer = SimRimSigner::new().unwrap();
    let rims = signer.rims_for(&report).unwrap();
    // The GPU's own root counted as hardware, so that the GPU's checks
    // pass under a policy that refuses simulation and the RIMs' are seen.
    let gpu_root = TrustAnchors {
        roots: vec![kokon_attestation::TrustAnchor {
            simulated: false,
            ..gpu.anchor()
        }],
    };
    let check = |section: &str, rims: &BTreeMap<String, GpuRim>, allow_simulated: bool| {
        gpu_checks_rims(
            Some(section),
            Some(gpu_root.clone()),
            std::slice::from_ref(&evidence),
            rims,
            Some(cc_state(1)),
            |p| {
                p.gpu.rim_anchors = signer.anchors();
                p.allow_simulated = allow_simulated;
            },
        )
        .into_iter()
        .filter(|c| c.check.starts_with("GPU 0 r") || c.check.starts_with("GPU 0 R"))
        .map(|c| (c.check, c.passed, c.found))
        .collect::<Vec<_>>()
    };
    // Required, none sent.
    let c = check("required = true", &BTreeMap::new(), true);
    assert_eq!(
        c[1],
        (
            "GPU 0 reference values".into(),
            false,
            "no RIM NV_GPU_DRIVER_GH100_550.90.07 in the bundle".into()
        )
    );
    // Sent but not required: checked; without OCSP answers, whose absence
    // is named when the policy requires them.
    let c = check("require_ocsp = true\nrequire_cc = false", &rims, true);
    assert_eq!(c[1].0, "GPU 0 reference values");
    assert!(c[1].1, "{c:?}");
    assert_eq!(
        c[2],
        (
            "GPU 0 RIM revocation".into(),
            false,
            "driver RIM: unsupported OCSP responses: expected 3 (for the RIM signer (L4), NVIDIA reference value CA (L3), NVIDIA reference value CA (L2)), found 0".into()
        )
    );
    // Not required, none sent: no check.
    let c = check("require_cc = false", &BTreeMap::new(), true);
    assert!(
        c.iter().all(|(name, ..)| name == "GPU 0 revocation"),
        "{c:?}"
    );
    // Under a simulated root while the policy refuses simulation.
    let c = check("required = true\nrequire_ocsp = false", &rims, false);
    assert_eq!(
        c[1].2,
        "RIM NV_GPU_DRIVER_GH100_550.90.07: signed under a simulated root (allow_simulated = false)"
    );
    // The VBIOS RIM of another VBIOS, filed under this one's id.
    let mut other = rims.clone();
    let vbios_id = "NV_GPU_VBIOS_1010_0200_882_96009F0001";
    other.get_mut(vbios_id).unwrap().rim = signer
        .sign(&kokon_attestation::sim::rim::unsigned_rim(
            "96.00.9F.00.02",
            "GH100",
            &kokon_attestation::sim::rim::references_for(&report, &[1]),
        ))
        .unwrap();
    let c = check("required = true\nrequire_ocsp = false", &other, true);
    assert_eq!(
        c[1].2,
        "GPU VBIOS RIM version not accepted: expected the report's VBIOS version 96.00.9f.00.01, found 96.00.9F.00.02"
    );
    // A RIM that does not verify.
    let mut broken = rims.clone();
    let driver = broken.get_mut("NV_GPU_DRIVER_GH100_550.90.07").unwrap();
    driver.rim = driver.rim.replacen("True", "False", 1);
    let c = check("required = true\nrequire_ocsp = false", &broken, true);
    assert!(
        c[1].2
            .starts_with("RIM NV_GPU_DRIVER_GH100_550.90.07: signed XML document's digest"),
        "{c:?}"
    );
}
