#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The client's verdict on an enclave with GPUs: the GPU evidence a bundle
//! carries must be the evidence its TEE-signed claims name (else the
//! evidence fails), and each must verify under the policy's GPU roots for
//! the nonce derived from the client's (else the policy refuses).

use kokon_attestation::claims::Claims;
use kokon_attestation::nvidia::gpu_nonce;
use kokon_attestation::sim::{simulate, SimGpu, SimRoot, SimTd};
use kokon_attestation::{AttestationBundle, GpuEvidence};
use kokon_client::{examine, unix_now, ClientError};
use kokon_policies::{LocalReferences, Policy};
use kokon_seal::{ServerKey, Suite};

const DEV_POLICY: &str = include_str!("../../policies/dev-sim.toml");
const MRTD: [u8; 48] = [0x42; 48];
const NONCE: [u8; 32] = [7; 32];

/// The real Hopper report the sim GPU re-signs.
fn template() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/nvidia/trustee_hopperAttestationReport.txt"
    );
    hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap()
}

/// A sim enclave answering [`NONCE`], whose claims name `claimed` and
/// which carries `carried`, and the dev policy with `gpu`'s root as its GPU
/// root.
fn enclave(
    gpu: &SimGpu,
    claimed: &[&GpuEvidence],
    carried: &[&GpuEvidence],
) -> (AttestationBundle, Policy) {
    let now = unix_now();
    let root = SimRoot::generate(now).unwrap();
    let mut policy = Policy::from_toml(
        DEV_POLICY,
        &LocalReferences {
            sim_root: Some(root.anchor()),
            enclave_build_mrtd: Some(MRTD),
        },
    )
    .unwrap();
    policy.gpu.anchors = gpu.anchors();
    let magika = policy.models.iter().find(|m| m.name == "magika").unwrap();
    let claims = Claims {
        kokon_version: "test".into(),
        ohttp_key_config: ServerKey::derive(1, Suite::Aes256Gcm, &[3; 32])
            .config()
            .encode(),
        receipt_key: [1; 32],
        model_name: magika.name.clone(),
        model_digest: magika.digest,
        text_model: None,
        config_digest: [2; 32],
        runtime: "test".into(),
        nonce: NONCE.to_vec(),
        issued_at: now,
        gpus: claimed.iter().map(|e| e.claim()).collect(),
        gpu_cc: None,
    };
    let td = SimTd {
        mr_td: MRTD,
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let mut bundle = simulate(&root, td, claims, now).unwrap();
    bundle.gpu_evidence = carried.iter().map(|e| (*e).clone()).collect();
    // As the client receives it.
    (
        AttestationBundle::from_json(&bundle.to_json()).unwrap(),
        policy,
    )
}

#[test]
fn an_enclave_whose_gpu_evidence_is_bound_and_fresh_is_accepted() {
    let gpu = SimGpu::for_template(&template()).unwrap();
    let evidence = gpu.evidence(&template(), &gpu_nonce(&NONCE)).unwrap();
    let (bundle, policy) = enclave(&gpu, &[&evidence], &[&evidence]);
    let examined = examine(bundle, &policy, Some(&NONCE), unix_now()).unwrap();
    let gpu0 = examined.checks.iter().find(|c| c.check == "GPU 0").unwrap();
    assert!(gpu0.passed, "{gpu0:?}");
    let enclave = examined.accept(&policy).unwrap();
    assert_eq!(enclave.evidence.gpu_evidence, [evidence]);
}

#[test]
fn unbound_or_stale_gpu_evidence_is_refused() {
    let gpu = SimGpu::for_template(&template()).unwrap();
    let evidence = gpu.evidence(&template(), &gpu_nonce(&NONCE)).unwrap();
    // Evidence that the claims do not name: the host added it.
    let (bundle, policy) = enclave(&gpu, &[], &[&evidence]);
    match examine(bundle, &policy, Some(&NONCE), unix_now()) {
        Err(ClientError::Evidence(e)) => assert_eq!(
            e.to_string(),
            format!(
                "GPU evidence (the claims' gpus vs SHA-384 of the bundle's gpu_evidence) mismatch: expected GPU 0: none, found GPU 0: {}",
                hex::encode(evidence.digest())
            )
        ),
        other => panic!("{:?}", other.map(|x| x.checks)),
    }
    // Evidence the claims name, for another client's nonce: the policy refuses it.
    let stale = gpu.evidence(&template(), &gpu_nonce(&[8; 32])).unwrap();
    let (bundle, policy) = enclave(&gpu, &[&stale], &[&stale]);
    let examined = examine(bundle, &policy, Some(&NONCE), unix_now()).unwrap();
    match examined.accept(&policy) {
        Err(ClientError::Policy(r)) => {
            assert_eq!(r.failures.len(), 1, "{r}");
            assert_eq!(r.failures[0].check, "GPU 0");
            assert!(
                r.failures[0]
                    .found
                    .starts_with("GPU attestation nonce (GET_MEASUREMENTS request) mismatch"),
                "{r}"
            );
        }
        other => panic!("{:?}", other.map(|e| e.evidence.claims)),
    }
}
