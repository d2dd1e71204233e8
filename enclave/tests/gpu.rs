#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The enclave's GPU checks and GPU evidence: with simulated GPUs (any
//! machine), and with the machine's own GPUs through NVML (skipped with a
//! message where NVML cannot be loaded or lists no GPU).
//!
//! `cargo test -p kokon-enclave --test gpu` runs them all.

use std::sync::Arc;

use kokon_attestation::claims::{CcEnvironment, Claims, GpuCcState, MultiGpuMode, ServingConfig};
use kokon_attestation::nvidia::{self, gpu_nonce, Expectations};
use kokon_attestation::sim::SimTd;
use kokon_attestation::{verify_bundle, AttestationBundle, TrustAnchors};
use kokon_enclave::evidence::{load_or_create_sim_root, start_sim};
use kokon_enclave::gpu::{read_state, CcSettings, GpuAttester, GpuMode, Gpus, SimGpus};
use kokon_enclave::nvml::Nvml;
use kokon_enclave::server::bundle;
use kokon_policies::{LocalReferences, Policy};

const DEV_POLICY: &str = include_str!("../../policies/dev-sim.toml");
const MRTD: [u8; 48] = [0x42; 48];
const NONCE: [u8; 32] = [7; 32];

fn now() -> i64 {
    kokon_enclave::gateway::unix_now()
}

/// The real Hopper report the simulated GPUs re-sign.
fn template() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/nvidia/trustee_hopperAttestationReport.txt"
    );
    hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap()
}

/// Settings of GPUs in confidential-computing mode, in production.
const CC_ON: CcSettings = CcSettings {
    cc_feature: true,
    devtools_mode: false,
    environment: CcEnvironment::Production,
    multi_gpu_mode: MultiGpuMode::None,
};

fn sim(count: u32, settings: CcSettings) -> Arc<SimGpus> {
    Arc::new(SimGpus::new(&template(), count, settings).unwrap())
}

fn start(gpus: &Arc<SimGpus>, mode: GpuMode) -> anyhow::Result<Gpus> {
    Gpus::start(gpus.clone(), mode, gpus.anchors(), now())
}

fn refusal(gpus: &Arc<SimGpus>, mode: GpuMode) -> String {
    match start(gpus, mode) {
        Ok(_) => panic!("{mode} started"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn confidential_mode_refuses_cc_off_devtools_on_and_unprotected_multi_gpu() {
    let expected = "--gpu-mode confidential: expected GPUs in confidential-computing mode (CC feature on, developer-tools mode off, protected PCIe with more than one GPU), found ";
    let cases = [
        (
            sim(1, CcSettings { cc_feature: false, environment: CcEnvironment::Unavailable, ..CC_ON }),
            "CC off, devtools off, environment unavailable, 1 GPU, multi-GPU mode none, not ready: the CC feature is off; to serve on them anyway, start with --gpu-mode development",
        ),
        (
            sim(1, CcSettings { devtools_mode: true, ..CC_ON }),
            "CC on, devtools on, environment production, 1 GPU, multi-GPU mode none, not ready: developer-tools mode is on;",
        ),
        (
            sim(2, CC_ON),
            "CC on, devtools off, environment production, 2 GPUs, multi-GPU mode none, not ready: several GPUs are not in protected PCIe mode;",
        ),
        (
            sim(2, CcSettings { multi_gpu_mode: MultiGpuMode::Nvle, ..CC_ON }),
            "2 GPUs, multi-GPU mode nvle, not ready: several GPUs are not in protected PCIe mode;",
        ),
    ];
    for (gpus, found) in cases {
        let message = refusal(&gpus, GpuMode::Confidential);
        assert!(message.starts_with(expected), "{message}");
        assert!(message.contains(found), "{message}");
        // Refused: the GPUs are not set ready.
        assert!(!gpus.ready().unwrap(), "{message}");
    }
    // No GPU at all: refused in either mode.
    for mode in [GpuMode::Confidential, GpuMode::Development] {
        assert_eq!(
            refusal(&sim(0, CC_ON), mode),
            "--device cuda: expected at least one GPU, found none (NVML lists 0)"
        );
    }
}

#[test]
fn gpus_in_cc_mode_are_set_ready_after_their_evidence_verified() {
    for (count, multi_gpu_mode) in [(1, MultiGpuMode::None), (2, MultiGpuMode::ProtectedPcie)] {
        let gpus = sim(
            count,
            CcSettings {
                multi_gpu_mode,
                ..CC_ON
            },
        );
        assert!(!gpus.ready().unwrap());
        let started = start(&gpus, GpuMode::Confidential).unwrap();
        assert!(gpus.ready().unwrap());
        assert_eq!(started.mode(), GpuMode::Confidential);
        // Each attestation: one report per GPU for the derived nonce.
        let (evidence, state) = started.attest(&NONCE, now()).unwrap();
        assert_eq!(evidence.len(), count as usize);
        assert_eq!(
            state,
            GpuCcState {
                cc_feature: true,
                devtools_mode: false,
                environment: CcEnvironment::Production,
                multi_gpu_mode,
                gpu_count: count,
                ready: true,
            }
        );
        for e in &evidence {
            let expect = Expectations {
                nonce: gpu_nonce(&NONCE),
                ..Expectations::default()
            };
            nvidia::verify(
                &e.report,
                e.chain_pem.as_bytes(),
                &gpus.anchors(),
                now(),
                &expect,
            )
            .unwrap();
        }
    }
}

#[test]
fn a_gpu_answering_another_nonce_is_caught_at_start_and_at_attestation() {
    let replayed = gpu_nonce(b"an earlier client");
    // At start: the local check fails, the GPUs stay not ready.
    let gpus = sim(1, CC_ON);
    gpus.set_wrong_nonce(Some(replayed));
    let message = refusal(&gpus, GpuMode::Confidential);
    assert!(
        message.starts_with("checking the GPUs' attestation evidence before setting them ready: GPU 0's evidence does not verify: GPU attestation nonce (GET_MEASUREMENTS request) mismatch: expected "),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("found {}", hex::encode(replayed))),
        "{message}"
    );
    assert!(!gpus.ready().unwrap());
    // At an attestation: no bundle with it.
    let gpus = sim(1, CC_ON);
    let started = start(&gpus, GpuMode::Confidential).unwrap();
    gpus.set_wrong_nonce(Some(replayed));
    let message = format!("{:#}", started.attest(&NONCE, now()).unwrap_err());
    assert!(
        message.starts_with("GPU 0's evidence does not verify: GPU attestation nonce (GET_MEASUREMENTS request) mismatch: expected ")
            && message.contains(&hex::encode(gpu_nonce(&NONCE))),
        "{message}"
    );
}

#[test]
fn development_mode_serves_on_gpus_without_cc_and_says_so() {
    let gpus = sim(
        1,
        CcSettings {
            cc_feature: false,
            environment: CcEnvironment::Unavailable,
            ..CC_ON
        },
    );
    let started = start(&gpus, GpuMode::Development).unwrap();
    assert_eq!(started.mode(), GpuMode::Development);
    // CC off: no evidence to verify, nothing to set ready.
    assert!(!gpus.ready().unwrap());
    let (evidence, state) = started.attest(&NONCE, now()).unwrap();
    assert!(evidence.is_empty());
    assert!(!state.cc_feature && !state.ready, "{state:?}");
    // CC on with developer tools: evidence and ready, as in confidential mode.
    let gpus = sim(
        1,
        CcSettings {
            devtools_mode: true,
            ..CC_ON
        },
    );
    let started = start(&gpus, GpuMode::Development).unwrap();
    assert!(gpus.ready().unwrap());
    let (evidence, state) = started.attest(&NONCE, now()).unwrap();
    assert_eq!(evidence.len(), 1);
    assert!(state.devtools_mode);
}

/// A sim enclave with `gpus` (started in `mode`) answering [`NONCE`]: its
/// bundle as a client receives it, and the dev policy with `[gpu]
/// required = true` and the simulated GPUs' roots.
fn enclave_bundle(gpus: &Arc<SimGpus>, mode: GpuMode) -> (AttestationBundle, Policy) {
    let now = now();
    let dir = tempfile::tempdir().unwrap();
    let td = SimTd {
        mr_td: MRTD,
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let mut backend = start_sim(dir.path(), td, now).unwrap();
    let root = load_or_create_sim_root(dir.path(), now).unwrap();
    let mut policy = Policy::from_toml(
        // NVIDIA's OCSP answers and RIMs are the host's to add (the enclave
        // has no network): tests/tests/collateral.rs checks that path.
        &format!(
            "{DEV_POLICY}\n[gpu]\nrequired = true\nrequire_ocsp = false\nrequire_rims = false\n"
        ),
        &LocalReferences {
            sim_root: Some(root.anchor()),
            enclave_build_mrtd: Some(MRTD),
        },
    )
    .unwrap();
    policy.gpu.anchors = gpus.anchors();
    let magika = policy.models.iter().find(|m| m.name == "magika").unwrap();
    let serving_config = ServingConfig {
        model_name: "magika".into(),
        device: "cuda".into(),
        gpu_mode: Some(mode.as_str().into()),
        ..ServingConfig::default()
    };
    let claims = Claims {
        kokon_version: "test".into(),
        ohttp_key_config: vec![1, 2, 3],
        receipt_key: [1; 32],
        model_name: magika.name.clone(),
        model_digest: magika.digest,
        text_model: None,
        config_digest: serving_config.digest(),
        runtime: "test".into(),
        nonce: NONCE.to_vec(),
        issued_at: now,
        gpus: Vec::new(),
        gpu_cc: None,
    };
    for event in claims.rtmr3_events() {
        backend.extend_runtime_measurement(&event).unwrap();
    }
    let started = start(gpus, mode).unwrap();
    let bundle = bundle(&backend, Some(&started), &serving_config, claims).unwrap();
    (
        AttestationBundle::from_json(&bundle.to_json()).unwrap(),
        policy,
    )
}

#[test]
fn the_bundles_gpu_evidence_verifies_end_to_end_and_the_policy_requires_cc() {
    let gpus = sim(
        2,
        CcSettings {
            multi_gpu_mode: MultiGpuMode::ProtectedPcie,
            ..CC_ON
        },
    );
    let (bundle, policy) = enclave_bundle(&gpus, GpuMode::Confidential);
    assert_eq!(bundle.gpu_evidence.len(), 2);
    assert_eq!(
        bundle.serving_config.as_ref().unwrap().gpu_mode.as_deref(),
        Some("confidential")
    );
    let verified = verify_bundle(&bundle, &policy.anchors, now()).unwrap();
    let checks = policy.checks(&verified, now());
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let cc = checks
        .iter()
        .find(|c| c.check == "GPU confidential computing")
        .unwrap();
    assert_eq!(
        cc.found,
        "CC on, devtools off, environment production, 2 GPUs, multi-GPU mode protected-pcie, ready; 2 GPU reports"
    );
    assert!(["GPU 0", "GPU 1"]
        .iter()
        .all(|name| checks.iter().any(|c| c.check == *name && c.passed)));

    // The host cannot drop a GPU's evidence: the claims name both.
    let mut dropped = bundle.clone();
    dropped.gpu_evidence.pop();
    let err = verify_bundle(&dropped, &policy.anchors, now()).unwrap_err();
    assert!(err.to_string().starts_with("GPU evidence (the claims' gpus vs SHA-384 of the bundle's gpu_evidence) mismatch: expected GPU 1: "), "{err}");
}

#[test]
fn development_gpus_are_stated_in_the_bundle_and_refused_by_a_policy_requiring_cc() {
    // CC on with developer tools: evidence verifies, the CC check fails.
    let gpus = sim(
        1,
        CcSettings {
            devtools_mode: true,
            ..CC_ON
        },
    );
    let (bundle, policy) = enclave_bundle(&gpus, GpuMode::Development);
    assert_eq!(
        bundle.serving_config.as_ref().unwrap().gpu_mode.as_deref(),
        Some("development")
    );
    assert!(bundle.claims.gpu_cc.unwrap().devtools_mode);
    let verified = verify_bundle(&bundle, &policy.anchors, now()).unwrap();
    let rejection = policy.appraise(&verified, now()).unwrap_err();
    assert_eq!(rejection.failures.len(), 1, "{rejection}");
    assert_eq!(rejection.failures[0].check, "GPU confidential computing");
    assert!(
        rejection.failures[0].expected.starts_with(
            "GPUs in confidential-computing mode (gpu.require_cc = true): CC on, devtools off"
        ),
        "{rejection}"
    );
    assert_eq!(
        rejection.failures[0].found,
        "CC on, devtools on, environment production, 1 GPU, multi-GPU mode none, ready; 1 GPU reports"
    );

    // CC off: no GPU evidence at all; both the evidence and the CC checks fail.
    let gpus = sim(
        1,
        CcSettings {
            cc_feature: false,
            ..CC_ON
        },
    );
    let (bundle, policy) = enclave_bundle(&gpus, GpuMode::Development);
    assert!(bundle.gpu_evidence.is_empty());
    let verified = verify_bundle(&bundle, &policy.anchors, now()).unwrap();
    let rejection = policy.appraise(&verified, now()).unwrap_err();
    let names: Vec<&str> = rejection
        .failures
        .iter()
        .map(|f| f.check.as_str())
        .collect();
    assert_eq!(
        names,
        ["GPU confidential computing", "GPU evidence"],
        "{rejection}"
    );
    // A policy that does not require CC accepts it, as it states.
    let mut relaxed = policy.clone();
    relaxed.gpu.required = false;
    relaxed.gpu.require_cc = false;
    relaxed.appraise(&verified, now()).unwrap();
}

// ----------------------------------------------------- the machine's GPUs --

/// NVML and its GPU count, or `None` (with a message) where it cannot be
/// loaded or lists no GPU.
fn machine_gpus() -> Option<Arc<Nvml>> {
    let nvml = match Nvml::load() {
        Ok(nvml) => nvml,
        Err(e) => {
            eprintln!("skipped: no NVML here: {e:#}");
            return None;
        }
    };
    match nvml.gpu_count() {
        Ok(0) => {
            eprintln!("skipped: NVML lists no GPU");
            None
        }
        Ok(_) => Some(Arc::new(nvml)),
        Err(e) => panic!("NVML loaded but lists no GPUs: {e:#}"),
    }
}

#[test]
fn nvml_the_machines_gpus_start_as_their_cc_state_allows() {
    let Some(nvml) = machine_gpus() else { return };
    let state = read_state(nvml.as_ref()).unwrap();
    eprintln!("this machine's GPUs: {}", state.describe());
    let anchors = TrustAnchors {
        roots: vec![kokon_attestation::roots::nvidia_device_root().unwrap()],
    };
    let confidential = Gpus::start(nvml.clone(), GpuMode::Confidential, anchors.clone(), now());
    if state.shortfalls().is_empty() {
        // GPUs in CC mode: their evidence verified under NVIDIA's root, and
        // each attestation carries one report per GPU.
        let gpus = confidential.unwrap();
        assert!(nvml.ready().unwrap());
        let (evidence, after) = gpus.attest(&NONCE, now()).unwrap();
        assert_eq!(evidence.len(), after.gpu_count as usize);
        assert!(after.ready);
        return;
    }
    let message = format!("{:#}", confidential.err().unwrap());
    assert!(
        message.starts_with(
            "--gpu-mode confidential: expected GPUs in confidential-computing mode (CC feature on, developer-tools mode off, protected PCIe with more than one GPU), found "
        ) && message.contains(&state.shortfalls().join(", ")),
        "{message}"
    );
    // Refused: the ready state is as it was.
    assert_eq!(read_state(nvml.as_ref()).unwrap().ready, state.ready);
    if !state.cc_feature {
        // CC off: development mode serves, without GPU evidence, and the
        // state it would claim says CC off.
        let gpus = Gpus::start(nvml.clone(), GpuMode::Development, anchors, now()).unwrap();
        let (evidence, claimed) = gpus.attest(&NONCE, now()).unwrap();
        assert!(evidence.is_empty());
        assert_eq!(claimed, state);
    }
}

#[test]
fn nvml_the_enclave_binary_refuses_cuda_on_gpus_without_cc() {
    let Some(nvml) = machine_gpus() else { return };
    let state = read_state(nvml.as_ref()).unwrap();
    if state.shortfalls().is_empty() {
        eprintln!("skipped: these GPUs are in CC mode ({})", state.describe());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The GPU checks come before ONNX Runtime or the model is loaded: the
    // paths need not exist.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kokon-enclave"))
        .args([
            "--device",
            "cuda",
            "--gpu-mode",
            "confidential",
            "--tee",
            "sim",
        ])
        .arg("--socket")
        .arg(dir.path().join("enclave.sock"))
        .arg("--model")
        .arg(dir.path().join("absent.onnx"))
        .arg("--ort-lib")
        .arg(dir.path().join("absent.so"))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--gpu-mode confidential: expected GPUs in confidential-computing mode")
            && stderr.contains(&state.describe()),
        "{stderr}"
    );
}
