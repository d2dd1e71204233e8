#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Every byte of evidence is either signed or parsed strictly: flipping any
//! of bits 0, 3 and 7 of a genuine TDX quote (real v4 with PCK chain type 5
//! inside type 6, real v5 with a TD 1.5 body, and simulated), real SNP
//! report, or real NVIDIA GPU attestation report and its certificate chain,
//! at every byte position, makes full verification (with collateral, or
//! with the VCEK chain, or with the GPU's chain) fail. No exceptions: an accepted
//! flip is a carrier byte that nothing checks.

mod common;

use common::{at, fixture, intel};
use kokon_attestation::claims::Claims;
use kokon_attestation::nvidia::{
    verify as verify_gpu, Expectations, GpuChain, Report as GpuReport,
};
use kokon_attestation::pki::pem_certificates;
use kokon_attestation::roots::{amd_ark, nvidia_device_root, AmdProduct};
use kokon_attestation::sim::{simulate, SimRoot, SimTd};
use kokon_attestation::snp::verify_report;
use kokon_attestation::tdx::{verify_quote_with_collateral, Collateral};
use kokon_attestation::TrustAnchors;

/// Bits flipped at every byte position.
const BITS: [u8; 3] = [0, 3, 7];

/// Flips each of [`BITS`] at every position of `genuine` and returns the
/// (position, bit) pairs that `verify` still accepted, and how many were tried.
fn accepted_flips(
    genuine: &[u8],
    verify: impl Fn(&[u8]) -> bool + Sync,
) -> (Vec<(usize, u8)>, usize) {
    assert!(verify(genuine), "the genuine evidence must verify");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let positions: Vec<usize> = (0..genuine.len()).collect();
    let chunk = genuine.len().div_ceil(threads);
    let accepted = std::thread::scope(|scope| {
        let workers: Vec<_> = positions
            .chunks(chunk)
            .map(|part| {
                let verify = &verify;
                scope.spawn(move || {
                    let mut accepted = Vec::new();
                    let mut bytes = genuine.to_vec();
                    for &pos in part {
                        for bit in BITS {
                            bytes[pos] ^= 1 << bit;
                            if verify(&bytes) {
                                accepted.push((pos, bit));
                            }
                            bytes[pos] ^= 1 << bit;
                        }
                    }
                    accepted
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    (accepted, genuine.len() * BITS.len())
}

fn report(name: &str, len: usize, tried: usize, accepted: &[(usize, u8)]) {
    eprintln!(
        "{name}: {len} positions x {} bits = {tried} flips, {} accepted",
        BITS.len(),
        accepted.len()
    );
    assert!(
        accepted.is_empty(),
        "{name}: {} flips accepted (position, bit): {accepted:?}",
        accepted.len()
    );
}

#[test]
fn every_bit_flip_of_real_tdx_quotes_is_rejected() {
    let anchors = intel();
    // (quote, its collateral, a time inside the collateral's window)
    for (quote, collateral, now) in [
        (
            "tdx/dcapqvl_tdx_quote.dat",
            "tdx/dcapqvl_tdx_quote_collateral.json",
            "2025-07-01T00:00:00Z",
        ),
        (
            "tdx/gotdx_quote_v5_sample.dat",
            "tdx/dcapqvl_tdx_quote_outdated_collateral.json",
            "2026-03-01T00:00:00Z",
        ),
    ] {
        let bytes = fixture(quote);
        let collateral = Collateral::from_json(&fixture(collateral)).unwrap();
        let now = at(now);
        let (accepted, tried) = accepted_flips(&bytes, |q| {
            verify_quote_with_collateral(q, &collateral, &anchors, now).is_ok()
        });
        report(quote, bytes.len(), tried, &accepted);
    }
}

#[test]
fn every_bit_flip_of_a_sim_tdx_quote_is_rejected() {
    let now = 1_780_000_000;
    let root = SimRoot::generate(now).unwrap();
    let claims = Claims {
        kokon_version: "0.1.0".into(),
        ohttp_key_config: vec![0x01, 0x00, 0x20],
        receipt_key: [7; 32],
        model_name: "magika".into(),
        model_digest: [9; 32],
        text_model: None,
        config_digest: [3; 32],
        runtime: "onnxruntime cpu".into(),
        nonce: vec![5; 32],
        issued_at: now,
        gpus: Vec::new(),
        gpu_cc: None,
    };
    let td = SimTd {
        mr_td: [0xaa; 48],
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let bundle = simulate(&root, td, claims, now).unwrap();
    let collateral = bundle.evidence.collateral.clone().unwrap();
    let anchors = TrustAnchors {
        roots: vec![root.anchor()],
    };
    let quote = bundle.evidence.data;
    let (accepted, tried) = accepted_flips(&quote, |q| {
        verify_quote_with_collateral(q, &collateral, &anchors, now).is_ok()
    });
    report("sim TDX quote", quote.len(), tried, &accepted);
}

#[test]
fn every_bit_flip_of_a_real_snp_report_is_rejected() {
    let anchors = TrustAnchors {
        roots: AmdProduct::ALL
            .iter()
            .map(|p| amd_ark(*p).unwrap())
            .collect(),
    };
    let now = at("2025-01-01T00:00:00Z");
    for (name, report_file, vcek, chain) in [
        (
            "gosev_attestation.bin",
            "snp/gosev_attestation.bin",
            "snp/gosev_vcek.der",
            Some("snp/gosev_milan_chain.pem"),
        ),
        (
            "trustee_report.bin",
            "snp/trustee_report.bin",
            "snp/trustee_vcek.der",
            None,
        ),
    ] {
        let bytes = fixture(report_file);
        let vcek = fixture(vcek);
        let chain = chain
            .map(|c| pem_certificates(&fixture(c)).unwrap())
            .unwrap_or_default();
        let (accepted, tried) = accepted_flips(&bytes, |r| {
            verify_report(r, &vcek, &chain, &anchors, now).is_ok()
        });
        report(name, bytes.len(), tried, &accepted);
    }
}

#[test]
fn every_bit_flip_of_a_real_nvidia_gpu_report_and_its_chain_is_rejected() {
    let gpu_report = hex::decode(
        String::from_utf8(fixture("nvidia/trustee_hopperAttestationReport.txt"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let chain = fixture("nvidia/trustee_hopper_cert_chain_case1.txt");
    let anchors = TrustAnchors {
        roots: vec![nvidia_device_root().unwrap()],
    };
    let now = at("2026-11-27T00:00:00Z");
    let expect = Expectations {
        nonce: gpu_report[4..36].try_into().unwrap(),
        ..Expectations::default()
    };
    // The report's flips are checked under the chain verified once (its
    // P-384 signatures make each full verification cost milliseconds).
    let verified = GpuChain::verify(&chain, &anchors, now).unwrap();
    let (accepted, tried) = accepted_flips(&gpu_report, |r| {
        GpuReport::parse(r)
            .and_then(|r| verified.check(&r, &expect))
            .is_ok()
    });
    report("NVIDIA GPU report", gpu_report.len(), tried, &accepted);
    let (accepted, tried) = accepted_flips(&chain, |c| {
        verify_gpu(&gpu_report, c, &anchors, now, &expect).is_ok()
    });
    report(
        "NVIDIA GPU certificate chain",
        chain.len(),
        tried,
        &accepted,
    );
}
