#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! SEV-SNP reports from real hardware: every fixture verifies, the invalid
//! VCEKs are rejected, and the verdicts equal the `sev` crate's.

mod common;

use common::{at, fixture};
use kokon_attestation::pki::pem_certificates;
use kokon_attestation::roots::{amd_ark, AmdProduct};
use kokon_attestation::snp::{verify_report, Report, SigningKey};
use kokon_attestation::{Error, TrustAnchors};

fn amd() -> TrustAnchors {
    TrustAnchors {
        roots: AmdProduct::ALL
            .iter()
            .map(|p| amd_ark(*p).unwrap())
            .collect(),
    }
}

fn virtee_report() -> Vec<u8> {
    hex::decode(
        String::from_utf8(fixture("snp/virtee_report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

/// (name, report, VEK, chain or none)
type Case = (&'static str, Vec<u8>, Vec<u8>, Vec<Vec<u8>>);

fn cases() -> Vec<Case> {
    vec![
        (
            "virtee milan",
            virtee_report(),
            fixture("snp/virtee_vcek_milan.der"),
            pem_certificates(&fixture("snp/virtee_cert_chain_milan.pem")).unwrap(),
        ),
        (
            "trustee",
            fixture("snp/trustee_report.bin"),
            fixture("snp/trustee_vcek.der"),
            vec![],
        ),
        (
            "go-sev-guest",
            fixture("snp/gosev_attestation.bin"),
            fixture("snp/gosev_vcek.der"),
            pem_certificates(&fixture("snp/gosev_milan_chain.pem")).unwrap(),
        ),
    ]
}

const NOW: &str = "2025-01-01T00:00:00Z";

#[test]
fn every_snp_fixture_verifies_under_the_embedded_milan_root() {
    for (name, report, vcek, chain) in cases() {
        let v = verify_report(&report, &vcek, &chain, &amd(), at(NOW))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.product, AmdProduct::Milan, "{name}");
        assert_eq!(v.signing_key, SigningKey::Vcek);
        assert_eq!(v.chain.anchor.name, "amd-ark-milan");
        // go-sev-guest's sample was launched with policy 0xb0000: DEBUG allowed.
        assert_eq!(v.report.debug_allowed(), name == "go-sev-guest", "{name}");
    }
}

#[test]
fn the_invalid_vceks_are_rejected() {
    let report = fixture("snp/trustee_report.bin");
    for bad in [
        "snp/trustee_vcek_invalid_legacy.der",
        "snp/trustee_vcek_invalid_new.der",
    ] {
        let err = verify_report(&report, &fixture(bad), &[], &amd(), at(NOW)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Certificate { .. } | Error::BadSignature { .. } | Error::Mismatch { .. }
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_vlek_report_needs_the_asvk_chain() {
    let report = fixture("snp/trustee_vlek_report.bin");
    let parsed = Report::parse(&report).unwrap();
    assert_eq!(parsed.version, 3);
    assert_eq!(parsed.signing_key().unwrap(), SigningKey::Vlek);
    assert_eq!(parsed.product(), Some(AmdProduct::Milan));
    let err = verify_report(
        &report,
        &fixture("snp/trustee_vlek.der"),
        &[],
        &amd(),
        at("2025-06-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ASVK"), "{err}");
    // Its signature does verify under the VLEK's key (the ASVK chain is
    // what is missing), and not once a byte of it changes.
    let vlek = fixture("snp/trustee_vlek.der");
    let (_, cert) = x509_parser::parse_x509_certificate(&vlek).unwrap();
    let key = cert.public_key().subject_public_key.data.to_vec();
    kokon_attestation::snp::check_signature(&parsed, &key, "VLEK").unwrap();
    let mut flipped = report.clone();
    flipped[0x90] ^= 1;
    let flipped = Report::parse(&flipped).unwrap();
    assert!(kokon_attestation::snp::check_signature(&flipped, &key, "VLEK").is_err());
    // A VCEK cannot stand in for the VLEK the report names.
    let err = verify_report(
        &report,
        &fixture("snp/trustee_vcek.der"),
        &[],
        &amd(),
        at(NOW),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
}

#[test]
fn certificates_are_checked_at_the_given_time() {
    let (_, report, vcek, chain) = cases().remove(0);
    // The virtee VCEK is valid 2023-04-03 to 2030-04-03.
    for t in ["2023-04-01T00:00:00Z", "2030-04-05T00:00:00Z"] {
        assert!(matches!(
            verify_report(&report, &vcek, &chain, &amd(), at(t)),
            Err(Error::CertificateNotValidAt { .. })
        ));
    }
}

#[test]
fn a_turin_vcek_does_not_verify_a_milan_report() {
    let err = verify_report(
        &virtee_report(),
        &fixture("snp/virtee_vcek_turin.der"),
        &[],
        &amd(),
        at(NOW),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Mismatch { .. } | Error::BadSignature { .. }),
        "{err}"
    );
}

/// The `sev` crate's verdict on (report, VCEK, ARK, ASK).
fn sev_verdict(report: &[u8], vcek: &[u8], product: &str) -> bool {
    use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;
    let root = |f: &str| fixture(&format!("snp/amd_roots/{product}/{f}.pem"));
    let Ok(report) = AttestationReport::from_bytes(report) else {
        return false;
    };
    let (Ok(ark), Ok(ask), Ok(vek)) = (
        Certificate::from_pem(&root("ark")),
        Certificate::from_pem(&root("ask")),
        Certificate::from_der(vcek),
    ) else {
        return false;
    };
    let chain = Chain {
        ca: ca::Chain { ark, ask },
        vek,
    };
    chain.verify().is_ok() && (&chain, &report).verify().is_ok()
}

#[test]
fn verdicts_equal_the_sev_crate_on_every_report_and_key_and_on_flipped_bytes() {
    let reports: Vec<(&str, Vec<u8>)> = vec![
        ("virtee", virtee_report()),
        ("trustee", fixture("snp/trustee_report.bin")),
        ("gosev", fixture("snp/gosev_attestation.bin")),
    ];
    let keys = [
        "snp/virtee_vcek_milan.der",
        "snp/trustee_vcek.der",
        "snp/gosev_vcek.der",
        "snp/trustee_vcek_invalid_legacy.der",
        "snp/trustee_vcek_invalid_new.der",
    ];
    let mut agreed_ok = 0;
    for (name, report) in &reports {
        let mut variants = vec![report.clone()];
        // trustee's own tests flip byte 42 (policy/signed data) and 384 (reported TCB).
        for offset in [42usize, 0x50, 0x90, 384, 0x2A0 + 1] {
            let mut flipped = report.clone();
            flipped[offset] ^= 1;
            variants.push(flipped);
        }
        for key in keys {
            let vcek = fixture(key);
            for (i, bytes) in variants.iter().enumerate() {
                let ours = verify_report(bytes, &vcek, &[], &amd(), at(NOW)).is_ok();
                let theirs = sev_verdict(bytes, &vcek, "milan");
                assert_eq!(ours, theirs, "{name} variant {i} with {key}");
                agreed_ok += usize::from(ours);
            }
        }
    }
    assert_eq!(agreed_ok, 3, "exactly the three genuine pairs verify");
}

#[test]
fn parsed_fields_equal_the_sev_crate() {
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;
    for (name, report, _, _) in cases() {
        let ours = Report::parse(&report).unwrap();
        let theirs = AttestationReport::from_bytes(&report).unwrap();
        assert_eq!(ours.version, theirs.version, "{name}");
        assert_eq!(ours.measurement, theirs.measurement, "{name}");
        assert_eq!(ours.report_data, theirs.report_data, "{name}");
        assert_eq!(ours.host_data, theirs.host_data, "{name}");
        assert_eq!(ours.chip_id, theirs.chip_id, "{name}");
        assert_eq!(ours.vmpl, theirs.vmpl, "{name}");
        assert_eq!(ours.guest_svn, theirs.guest_svn, "{name}");
        let tcb = theirs.reported_tcb;
        assert_eq!(
            (
                ours_tcb(&ours).bootloader,
                ours_tcb(&ours).tee,
                ours_tcb(&ours).snp,
                ours_tcb(&ours).microcode
            ),
            (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode),
            "{name}"
        );
    }
}

fn ours_tcb(r: &Report) -> kokon_attestation::snp::TcbVersion {
    kokon_attestation::snp::TcbVersion::decode(r.reported_tcb, AmdProduct::Milan)
}
