#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! OCSP revocation of a GPU's chain: NVIDIA's responder answers for the
//! device identity, provisioner and architecture certificates. A simulated
//! GPU (the real H100 report re-signed under a test hierarchy) and its
//! simulated responder give good answers that verify, and a catalogue of
//! named wrong answers, each rejected by the check it names. Requests for
//! the real H100 chain name its certificates as RFC 6960 asks.

mod common;

use common::{at, fixture};
use der::Decode;
use kokon_attestation::nvidia::{gpu_nonce, verify, Expectations, GpuChain, VerifiedGpu};
use kokon_attestation::ocsp::{self, Status, MAX_RESPONSE_LEN};
use kokon_attestation::roots::nvidia_device_root;
use kokon_attestation::sim::ocsp::{SimAnswer, SimResponderId, SimStatus};
use kokon_attestation::sim::SimGpu;
use kokon_attestation::TrustAnchors;
use x509_ocsp::OcspResponseStatus;

const NOW: &str = "2026-11-27T00:00:00Z";
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

fn report1() -> Vec<u8> {
    hex::decode(
        String::from_utf8(fixture("nvidia/trustee_hopperAttestationReport.txt"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

fn now() -> i64 {
    at(NOW)
}

/// A simulated GPU and its evidence, verified.
struct Gpu {
    sim: SimGpu,
    verified: VerifiedGpu,
}

fn gpu() -> Gpu {
    let template = report1();
    let sim = SimGpu::for_template(&template).unwrap();
    let nonce = gpu_nonce(b"nonce");
    let evidence = sim.evidence(&template, &nonce).unwrap();
    let expect = Expectations {
        nonce,
        ..Expectations::default()
    };
    let verified = verify(
        &evidence.report,
        evidence.chain_pem.as_bytes(),
        &sim.anchors(),
        now(),
        &expect,
    )
    .unwrap();
    Gpu { sim, verified }
}

fn good() -> SimAnswer {
    SimAnswer::good(now() - HOUR)
}

/// The three good responses with the one at chain position `position`
/// replaced by `response`.
fn with(g: &Gpu, position: usize, response: Vec<u8>) -> Vec<Vec<u8>> {
    let mut all = g.sim.ocsp_good(now() - HOUR).unwrap();
    all[position - 1] = response;
    all
}

fn rejected(g: &Gpu, responses: &[Vec<u8>]) -> String {
    g.verified
        .check_revocation(responses, now())
        .unwrap_err()
        .to_string()
}

#[test]
fn good_answers_from_each_issuer_verify_and_say_who_signed() {
    let g = gpu();
    let verdicts = g
        .verified
        .check_revocation(&g.sim.ocsp_good(now() - HOUR).unwrap(), now())
        .unwrap();
    let signers: Vec<&str> = verdicts.iter().map(|v| v.signer.as_str()).collect();
    assert_eq!(
        signers,
        [
            "CN=test provisioner CA",
            "CN=test architecture CA",
            "CN=test GPU root"
        ]
    );
    assert!(verdicts.iter().all(|v| v.status == Status::Good));
    assert_eq!(verdicts[0].this_update, "2026-11-26T23:00:00Z");
    assert_eq!(
        verdicts[0].next_update.as_deref(),
        Some("2026-12-03T23:00:00Z")
    );
}

#[test]
fn responders_named_by_key_delegated_ones_and_every_certid_hash_verify() {
    let g = gpu();
    let by_key = SimAnswer {
        responder: SimResponderId::ByKey,
        ..good()
    };
    g.verified
        .check_revocation(&with(&g, 1, g.sim.ocsp(1, &by_key).unwrap()), now())
        .unwrap();
    let delegated = g.sim.ocsp_delegated(2, &good(), true).unwrap();
    let verdicts = g
        .verified
        .check_revocation(&with(&g, 2, delegated), now())
        .unwrap();
    assert_eq!(verdicts[1].signer, "CN=test OCSP responder");
    for hash in [
        "1.3.14.3.2.26",
        "2.16.840.1.101.3.4.2.1",
        "2.16.840.1.101.3.4.2.3",
    ] {
        let answer = SimAnswer { hash, ..good() };
        g.verified
            .check_revocation(&with(&g, 3, g.sim.ocsp(3, &answer).unwrap()), now())
            .unwrap_or_else(|e| panic!("CertID hash {hash}: {e}"));
    }
}

#[test]
fn an_answer_without_next_update_counts_for_a_day() {
    let g = gpu();
    let answer = |this_update| SimAnswer {
        next_update: None,
        ..SimAnswer::good(this_update)
    };
    let fresh = g.sim.ocsp(1, &answer(now() - DAY + 60)).unwrap();
    g.verified
        .check_revocation(&with(&g, 1, fresh), now())
        .unwrap();
    let stale = g.sim.ocsp(1, &answer(now() - DAY - 60)).unwrap();
    let e = rejected(&g, &with(&g, 1, stale));
    assert!(
        e.starts_with("OCSP response is not valid at 2026-11-27T00:00:00Z: issued 2026-11-25T23:59:00Z, next update none (counted as 2026-11-26T23:59:00Z for at most a day)"),
        "{e}"
    );
}

/// The catalogue: each wrong answer, and the start of what its rejection says.
#[test]
fn each_wrong_answer_is_rejected_saying_why() {
    let g = gpu();
    let other = gpu();
    let serial = |position: usize| hex::encode(&g.verified.links[position].serial);
    let answer = |f: &dyn Fn(&mut SimAnswer)| {
        let mut a = good();
        f(&mut a);
        a
    };
    let at_position =
        |position, a: SimAnswer| with(&g, position, g.sim.ocsp(position, &a).unwrap());
    let revoked_at = now() - DAY;
    let mut oversized = g.sim.ocsp(1, &good()).unwrap();
    oversized.resize(MAX_RESPONSE_LEN + 1, 0);
    let mut trailing = g.sim.ocsp(1, &good()).unwrap();
    trailing.push(0);
    let good1 = g.sim.ocsp(1, &good()).unwrap();
    let cases: Vec<(&str, Vec<Vec<u8>>, String)> = vec![
        (
            "revoked",
            at_position(2, answer(&|a| a.status = SimStatus::Revoked(revoked_at))),
            format!("certificate NVIDIA provisioner CA (CN=test provisioner CA) is not good: its OCSP response, signed by CN=test architecture CA, says serial {} is revoked at 2026-11-26T00:00:00Z (KeyCompromise)", serial(2)),
        ),
        (
            "unknown",
            at_position(1, answer(&|a| a.status = SimStatus::Unknown)),
            format!("certificate GPU device identity (BROM) (CN=test BROM) is not good: its OCSP response, signed by CN=test provisioner CA, says serial {} is unknown to the responder", serial(1)),
        ),
        (
            "too few responses",
            g.sim.ocsp_good(now() - HOUR).unwrap()[..2].to_vec(),
            "unsupported OCSP responses: expected 3 (for the GPU device identity (BROM), NVIDIA provisioner CA, NVIDIA GPU architecture CA), found 2".into(),
        ),
        (
            "no responses",
            Vec::new(),
            "unsupported OCSP responses: expected 3".into(),
        ),
        (
            "responses out of order (signed by another issuer, no responder certificate)",
            with(&g, 1, g.sim.ocsp(2, &good()).unwrap()),
            "OCSP responder mismatch: expected the issuer (CN=test provisioner CA) or a responder certificate in the response that it signed, found 0 certificates, none named by the responder ID".into(),
        ),
        (
            "another certificate's serial",
            at_position(1, answer(&|a| a.serial = Some(vec![0x42; 8]))),
            format!("OCSP response's certificate ID (serial and issuer hashes) mismatch: expected GPU device identity (BROM) (CN=test BROM), serial {}, found serial 4242424242424242 with SHA-384 issuer hashes of this issuer", serial(1)),
        ),
        (
            "an unknown CertID hash (MD5)",
            at_position(1, answer(&|a| a.hash = "1.2.840.113549.2.5")),
            format!("OCSP response's certificate ID (serial and issuer hashes) mismatch: expected GPU device identity (BROM) (CN=test BROM), serial {0}, found serial {0} with issuer hashes under an unsupported algorithm (1.2.840.113549.2.5)", serial(1)),
        ),
        (
            "the same names signed by another GPU's hierarchy",
            with(&g, 1, other.sim.ocsp(1, &good()).unwrap()),
            "invalid signature: OCSP response (by its responder)".into(),
        ),
        (
            "a corrupted signature",
            at_position(3, answer(&|a| a.corrupt_signature = true)),
            "invalid signature: OCSP response (by its responder)".into(),
        ),
        (
            "a delegated responder without id-kp-OCSPSigning",
            with(&g, 1, g.sim.ocsp_delegated(1, &good(), false).unwrap()),
            "certificate OCSP responder (CN=test OCSP responder): its extended key usage lacks id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9)".into(),
        ),
        (
            "a delegated responder certified by another hierarchy's CA of the same name",
            with(&g, 1, other.sim.ocsp_delegated(1, &good(), true).unwrap()),
            "certificate OCSP responder (CN=test OCSP responder): signature does not verify under CN=test provisioner CA".into(),
        ),
        (
            "thisUpdate after now",
            at_position(1, SimAnswer::good(now() + HOUR)),
            "OCSP response is not valid at 2026-11-27T00:00:00Z: issued 2026-11-27T01:00:00Z, next update 2026-12-04T01:00:00Z".into(),
        ),
        (
            "nextUpdate before now",
            at_position(1, answer(&|a| a.next_update = Some(now() - 60))),
            "OCSP response is not valid at 2026-11-27T00:00:00Z: issued 2026-11-26T23:00:00Z, next update 2026-11-26T23:59:00Z".into(),
        ),
        (
            "status tryLater",
            at_position(1, answer(&|a| a.response_status = Some(OcspResponseStatus::TryLater))),
            "unsupported OCSP response status: expected successful, found TryLater".into(),
        ),
        (
            "status unauthorized",
            at_position(1, answer(&|a| a.response_status = Some(OcspResponseStatus::Unauthorized))),
            "unsupported OCSP response status: expected successful, found Unauthorized".into(),
        ),
        (
            "a response type other than basic",
            at_position(1, answer(&|a| a.response_type = Some("1.3.6.1.5.5.7.48.1.2"))),
            "unsupported OCSP response type: expected id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1), found 1.3.6.1.5.5.7.48.1.2".into(),
        ),
        (
            "a SHA-1 signature algorithm",
            at_position(1, answer(&|a| a.signature_algorithm = Some("1.2.840.113549.1.1.5"))),
            "unsupported OCSP response signature algorithm: expected ECDSA with SHA-256/384, RSA with SHA-256/384/512 or PSS, Ed25519, found 1.2.840.113549.1.1.5".into(),
        ),
        (
            "a signature algorithm that does not match the key (ECDSA with SHA-256 for SHA-384)",
            at_position(1, answer(&|a| a.signature_algorithm = Some("1.2.840.10045.4.3.2"))),
            "invalid signature: OCSP response (by its responder)".into(),
        ),
        (
            "a trailing byte",
            with(&g, 1, trailing),
            "collateral: OCSP response: bad DER".into(),
        ),
        (
            "truncated",
            with(&g, 1, good1[..good1.len() - 1].to_vec()),
            "collateral: OCSP response: bad DER".into(),
        ),
        (
            "empty",
            with(&g, 1, Vec::new()),
            "collateral: OCSP response: bad DER".into(),
        ),
        (
            "larger than allowed",
            with(&g, 1, oversized),
            "OCSP response is larger than allowed".into(),
        ),
    ];
    assert!(cases.len() >= 20);
    for (name, responses, want) in cases {
        let e = rejected(&g, &responses);
        assert!(e.starts_with(&want), "{name}: expected {want:?}, got {e:?}");
    }
}

#[test]
fn every_truncation_and_bit_flip_of_an_answer_is_an_error_not_a_panic() {
    let g = gpu();
    let response = g.sim.ocsp(1, &good()).unwrap();
    let (cert, issuer) = (&g.verified.links[1], &g.verified.links[2]);
    for len in 0..response.len() {
        assert!(ocsp::check(&response[..len], cert, issuer, now(), "BROM").is_err());
    }
    let mut accepted = 0;
    for bit in 0..response.len() * 8 {
        let mut flipped = response.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        accepted += usize::from(ocsp::check(&flipped, cert, issuer, now(), "BROM").is_ok());
    }
    // Only the bits outside what is signed and checked may flip unnoticed
    // (the certificate ID's hash algorithm parameters, the signature's
    // unused-bits count is fixed): never more than a handful.
    assert!(accepted <= 8, "{accepted} bit flips accepted");
}

#[test]
fn requests_for_the_real_h100_chain_name_each_certificate_by_sha384_hashes() {
    let anchors = TrustAnchors {
        roots: vec![nvidia_device_root().unwrap()],
    };
    let chain = GpuChain::verify(
        &fixture("nvidia/trustee_hopper_cert_chain_case1.txt"),
        &anchors,
        now(),
    )
    .unwrap();
    let links = &chain.chain.links;
    for position in kokon_attestation::nvidia::OCSP_POSITIONS {
        let (cert, issuer) = (&links[position], &links[position + 1]);
        let der = ocsp::request(cert, issuer).unwrap();
        let request = x509_ocsp::OcspRequest::from_der(&der).unwrap();
        let [single] = request.tbs_request.request_list.as_slice() else {
            panic!("one certificate per request");
        };
        let id = &single.req_cert;
        assert_eq!(id.hash_algorithm.oid.to_string(), "2.16.840.1.101.3.4.2.2");
        assert_eq!(
            id.issuer_name_hash.as_bytes(),
            ring::digest::digest(&ring::digest::SHA384, &issuer.subject).as_ref()
        );
        let (_, spki) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
                x509_parser::error::X509Error,
            >>::from_der(&issuer.spki)
            .unwrap();
        assert_eq!(
            id.issuer_key_hash.as_bytes(),
            ring::digest::digest(&ring::digest::SHA384, &spki.subject_public_key.data).as_ref()
        );
        let serial = id.serial_number.as_bytes();
        let magnitude = &serial[serial.iter().position(|b| *b != 0).unwrap()..];
        assert_eq!(magnitude, cert.serial.as_slice());
        assert!(request.tbs_request.request_extensions.is_none(), "no nonce");
    }
}
