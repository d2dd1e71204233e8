#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The negative catalogue: one named case per check, each with the error it
//! must produce. Every case starts from genuine evidence that verifies (a
//! real TDX quote with Intel collateral; a real SNP report with its VCEK),
//! changes one thing, and names the check that must trip. A case whose
//! mutation is rejected for another reason fails the test.

mod common;

use common::{at, fixture, intel};
use kokon_attestation::roots::{amd_ark, amd_ask, AmdProduct};
use kokon_attestation::sim::SimRoot;
use kokon_attestation::snp::verify_report;
use kokon_attestation::tdx::{verify_quote_with_collateral, Collateral};
use kokon_attestation::{Error, TrustAnchors};

// ---------------------------------------------------------------- TDX ----

/// Offsets in the dcap-qvl v4 quote (QE auth data is 32 bytes).
const BODY: usize = 48;
const SIG_LEN: usize = 632;
const QUOTE_SIG: usize = 636;
const ATT_KEY: usize = 700;
const CERT_TYPE: usize = 764;
const QE_REPORT: usize = 770;
const QE_REPORT_SIG: usize = 1154;
const QE_AUTH: usize = 1220;
const INNER_TYPE: usize = 1252;
const PEM: usize = 1258;

struct Tdx {
    quote: Vec<u8>,
    collateral: Collateral,
    anchors: TrustAnchors,
    now: i64,
}

fn tdx_base() -> Tdx {
    Tdx {
        quote: fixture("tdx/dcapqvl_tdx_quote.dat"),
        collateral: Collateral::from_json(&fixture("tdx/dcapqvl_tdx_quote_collateral.json"))
            .unwrap(),
        anchors: intel(),
        now: at("2025-07-01T00:00:00Z"),
    }
}

fn flip(bytes: &mut [u8], offset: usize) {
    bytes[offset] ^= 0x01;
}

/// Changes one character of a JSON text (outside quotes' structure).
fn tamper_json(text: &mut String, from: &str, to: &str) {
    assert!(text.contains(from), "{from} not in collateral");
    *text = text.replacen(from, to, 1);
}

type TdxCase = (&'static str, fn(&mut Tdx), &'static str);

fn tdx_cases() -> Vec<TdxCase> {
    vec![
        (
            "empty input",
            |t| t.quote.clear(),
            "truncated quote header: version",
        ),
        (
            "truncated inside the header",
            |t| t.quote.truncate(47),
            "truncated quote header: user data",
        ),
        (
            "truncated inside the TD report",
            |t| t.quote.truncate(100),
            "truncated TD report body",
        ),
        (
            "truncated before the signature length",
            |t| t.quote.truncate(SIG_LEN),
            "truncated quote signature data size",
        ),
        (
            "truncated inside the signature data",
            |t| t.quote.truncate(QE_REPORT + 10),
            "truncated quote signature data",
        ),
        (
            "truncated inside the PCK chain",
            |t| t.quote.truncate(PEM + 100),
            "truncated quote signature data",
        ),
        (
            "non-zero trailing byte",
            |t| t.quote.push(7),
            "trailing bytes after quote",
        ),
        (
            "version 3 (SGX)",
            |t| t.quote[0] = 3,
            "unsupported quote version",
        ),
        ("version 6", |t| t.quote[0] = 6, "unsupported quote version"),
        (
            "version 5 without a body descriptor",
            |t| t.quote[0] = 5,
            "unsupported quote v5 body type",
        ),
        (
            "attestation key type 3 (ECDSA P-384)",
            |t| t.quote[2] = 3,
            "unsupported attestation key type",
        ),
        ("TEE type SGX", |t| t.quote[4] = 0, "unsupported TEE type"),
        (
            "QE vendor ID not Intel's",
            |t| flip(&mut t.quote, 12),
            "QE vendor ID mismatch",
        ),
        (
            "header user data changed",
            |t| flip(&mut t.quote, 40),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "TEE_TCB_SVN changed",
            |t| flip(&mut t.quote, BODY),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "MRSEAM changed",
            |t| flip(&mut t.quote, BODY + 16),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "TDATTRIBUTES: DEBUG set",
            |t| flip(&mut t.quote, BODY + 120),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "MRTD changed",
            |t| flip(&mut t.quote, BODY + 136),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "RTMR3 changed",
            |t| flip(&mut t.quote, BODY + 136 + 48 * 7),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "REPORTDATA changed",
            |t| flip(&mut t.quote, BODY + 520),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "quote signature changed",
            |t| flip(&mut t.quote, QUOTE_SIG + 5),
            "invalid signature: quote signature by the attestation key",
        ),
        (
            "attestation key changed",
            |t| flip(&mut t.quote, ATT_KEY + 5),
            "QE report data (SHA-256 of attestation key and QE auth data) mismatch",
        ),
        (
            "certification data type 5 at the top",
            |t| t.quote[CERT_TYPE] = 5,
            "unsupported certification data type",
        ),
        (
            "QE report MRSIGNER changed",
            |t| flip(&mut t.quote, QE_REPORT + 128),
            "invalid signature: QE report signature by the PCK key",
        ),
        (
            "QE report ISVSVN changed",
            |t| flip(&mut t.quote, QE_REPORT + 258),
            "invalid signature: QE report signature by the PCK key",
        ),
        (
            "QE report signature changed",
            |t| flip(&mut t.quote, QE_REPORT_SIG + 3),
            "invalid signature: QE report signature by the PCK key",
        ),
        (
            "QE auth data changed",
            |t| flip(&mut t.quote, QE_AUTH + 1),
            "QE report data (SHA-256 of attestation key and QE auth data) mismatch",
        ),
        (
            "inner certification data type 3",
            |t| t.quote[INNER_TYPE] = 3,
            "unsupported PCK certification data type",
        ),
        (
            "PCK leaf certificate corrupted",
            |t| flip(&mut t.quote, PEM + 300),
            "certificate PCK leaf",
        ),
        (
            "signature data length beyond the limit",
            |t| t.quote[SIG_LEN + 3] = 0x10,
            "quote signature data is larger than allowed",
        ),
        (
            "another root only",
            |t| {
                t.anchors = TrustAnchors {
                    roots: vec![SimRoot::generate(t.now).unwrap().anchor()],
                }
            },
            "not anchored in a trusted root",
        ),
        (
            "no trusted root at all",
            |t| t.anchors = TrustAnchors::default(),
            "not anchored in a trusted root",
        ),
        (
            "PCK chain expired (2053)",
            |t| t.now = at("2053-07-01T00:00:00Z"),
            "is not valid at",
        ),
        (
            "before the collateral was issued",
            |t| t.now = at("2025-06-10T00:00:00Z"),
            "is not valid at",
        ),
        (
            "PCK CRL past its next update",
            |t| t.now = at("2025-07-19T10:05:00Z"),
            "PCK CRL is not valid at",
        ),
        (
            "TCB info past its next update",
            |t| t.now = at("2025-08-01T00:00:00Z"),
            "not valid at",
        ),
        (
            "TCB info signature changed",
            |t| t.collateral.tcb_info_signature.0[5] ^= 1,
            "invalid signature: TCB info",
        ),
        (
            "TCB info text changed (a TCB status)",
            |t| tamper_json(&mut t.collateral.tcb_info, "\"OutOfDate\"", "\"UpToDate\""),
            "invalid signature: TCB info",
        ),
        (
            "TCB info text changed (FMSPC)",
            |t| tamper_json(&mut t.collateral.tcb_info, "B0C06F000000", "B0C06F000001"),
            "invalid signature: TCB info",
        ),
        (
            "QE identity signature changed",
            |t| t.collateral.qe_identity_signature.0[9] ^= 1,
            "invalid signature: QE identity",
        ),
        (
            "QE identity text changed (ISVPRODID)",
            |t| {
                tamper_json(
                    &mut t.collateral.qe_identity,
                    "\"isvprodid\":2",
                    "\"isvprodid\":3",
                )
            },
            "invalid signature: QE identity",
        ),
        (
            "TCB info signature truncated",
            |t| t.collateral.tcb_info_signature.0.truncate(63),
            "invalid signature: TCB info",
        ),
        (
            "root CA CRL signature changed",
            |t| {
                let n = t.collateral.root_ca_crl.0.len();
                t.collateral.root_ca_crl.0[n - 3] ^= 1
            },
            "invalid signature: root CA CRL",
        ),
        (
            "root CA CRL not DER",
            |t| t.collateral.root_ca_crl.0.truncate(20),
            "collateral: root CA CRL: bad DER",
        ),
        (
            "PCK CRL signature changed",
            |t| {
                let n = t.collateral.pck_crl.0.len();
                t.collateral.pck_crl.0[n - 3] ^= 1
            },
            "invalid signature: PCK CRL",
        ),
        (
            "PCK CRL of another issuer (the root's)",
            |t| t.collateral.pck_crl = t.collateral.root_ca_crl.clone(),
            "CRL issuer mismatch",
        ),
        (
            "TCB info signer chain without its root",
            |t| {
                let pem = t.collateral.tcb_info_issuer_chain.clone();
                let end = pem.find("-----END CERTIFICATE-----").unwrap() + 25;
                t.collateral.tcb_info_issuer_chain = pem[..end].to_string()
            },
            "not anchored in a trusted root",
        ),
        (
            "QE identity signer chain empty",
            |t| t.collateral.qe_identity_issuer_chain.clear(),
            "unsupported collateral signer chain length",
        ),
        (
            "TCB info signed by the QE identity's key (swapped texts)",
            |t| {
                let c = &mut t.collateral;
                std::mem::swap(&mut c.tcb_info_signature, &mut c.qe_identity_signature)
            },
            "invalid signature: TCB info",
        ),
        (
            "collateral from another platform (outdated quote's)",
            |t| {
                t.collateral = Collateral::from_json(&fixture(
                    "tdx/dcapqvl_tdx_quote_outdated_collateral.json",
                ))
                .unwrap()
            },
            "not valid at",
        ),
    ]
}

#[test]
fn tdx_genuine_base_verifies() {
    let t = tdx_base();
    verify_quote_with_collateral(&t.quote, &t.collateral, &t.anchors, t.now).unwrap();
}

#[test]
fn tdx_negative_catalogue() {
    let cases = tdx_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for (name, mutate, expected) in cases {
        assert!(names.insert(name), "duplicate case {name}");
        let mut t = tdx_base();
        mutate(&mut t);
        match verify_quote_with_collateral(&t.quote, &t.collateral, &t.anchors, t.now) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(
                e.to_string().contains(expected),
                "{name}: expected an error containing {expected:?}, got: {e}"
            ),
        }
    }
}

// ---------------------------------------------------------------- SNP ----

struct Snp {
    report: Vec<u8>,
    vek: Vec<u8>,
    chain: Vec<Vec<u8>>,
    anchors: TrustAnchors,
    now: i64,
}

fn snp_base() -> Snp {
    Snp {
        report: fixture("snp/trustee_report.bin"),
        vek: fixture("snp/trustee_vcek.der"),
        chain: vec![],
        anchors: TrustAnchors {
            roots: AmdProduct::ALL
                .iter()
                .map(|p| amd_ark(*p).unwrap())
                .collect(),
        },
        now: at("2025-01-01T00:00:00Z"),
    }
}

const SIGNATURE_BY_VEK: &str = "invalid signature: SNP report signature by the endorsement key";

type SnpCase = (&'static str, fn(&mut Snp), &'static str);

fn snp_cases() -> Vec<SnpCase> {
    vec![
        (
            "empty input",
            |s| s.report.clear(),
            "truncated SNP report: VERSION",
        ),
        (
            "truncated in the header",
            |s| s.report.truncate(10),
            "truncated SNP report: POLICY",
        ),
        (
            "truncated in the measurement",
            |s| s.report.truncate(0xA0),
            "truncated SNP report: MEASUREMENT",
        ),
        (
            "truncated at the signature",
            |s| s.report.truncate(0x2A0),
            "truncated SNP report: signature R",
        ),
        (
            "truncated inside the signature",
            |s| s.report.truncate(0x2A0 + 100),
            "truncated SNP report: signature S",
        ),
        (
            "one trailing byte",
            |s| s.report.push(0),
            "1 trailing bytes after SNP report",
        ),
        (
            "version 1",
            |s| s.report[0] = 1,
            "unsupported SNP report version",
        ),
        (
            "version 4",
            |s| s.report[0] = 4,
            "unsupported SNP report version",
        ),
        (
            "signature algorithm 2",
            |s| s.report[0x34] = 2,
            "unsupported SNP report signature algorithm",
        ),
        (
            "signing key field 2 (reserved)",
            |s| s.report[0x48] = 2 << 2,
            "unsupported SNP report signing key",
        ),
        (
            "signing key says VLEK, certificate is a VCEK",
            |s| s.report[0x48] = 1 << 2,
            "endorsement key certificate kind",
        ),
        (
            "reserved word at 0x4C set",
            |s| s.report[0x4C] = 1,
            "SNP report: reserved 0x4C",
        ),
        (
            "version 2 with CPUID bytes set",
            |s| s.report[0x188] = 0x19,
            "v2 reserved bytes 0x188",
        ),
        (
            "reserved bytes after CPUID set",
            |s| s.report[0x190] = 1,
            "SNP report: reserved 0x18B",
        ),
        (
            "mitigation vector set before version 5",
            |s| s.report[0x1F8] = 1,
            "reserved bytes 0x1F8",
        ),
        (
            "reserved bytes before the signature set",
            |s| s.report[0x250] = 1,
            "SNP report: reserved 0x208",
        ),
        (
            "signature R wider than P-384",
            |s| s.report[0x2A0 + 60] = 1,
            "SNP report signature component",
        ),
        (
            "signature reserved area set",
            |s| s.report[0x2A0 + 200] = 1,
            "SNP report: signature reserved",
        ),
        (
            "GUEST_SVN changed",
            |s| flip(&mut s.report, 0x04),
            SIGNATURE_BY_VEK,
        ),
        (
            "POLICY: DEBUG set",
            |s| s.report[0x0A] ^= 0x08,
            SIGNATURE_BY_VEK,
        ),
        (
            "FAMILY_ID changed",
            |s| flip(&mut s.report, 0x10),
            SIGNATURE_BY_VEK,
        ),
        (
            "IMAGE_ID changed",
            |s| flip(&mut s.report, 0x20),
            SIGNATURE_BY_VEK,
        ),
        (
            "VMPL changed",
            |s| flip(&mut s.report, 0x30),
            SIGNATURE_BY_VEK,
        ),
        (
            "CURRENT_TCB changed",
            |s| flip(&mut s.report, 0x38),
            SIGNATURE_BY_VEK,
        ),
        (
            "PLATFORM_INFO changed",
            |s| flip(&mut s.report, 0x40),
            SIGNATURE_BY_VEK,
        ),
        (
            "chip ID masked afterwards",
            |s| s.report[0x48] |= 0b10,
            SIGNATURE_BY_VEK,
        ),
        (
            "REPORT_DATA changed",
            |s| flip(&mut s.report, 0x50),
            SIGNATURE_BY_VEK,
        ),
        (
            "MEASUREMENT changed",
            |s| flip(&mut s.report, 0x90),
            SIGNATURE_BY_VEK,
        ),
        (
            "HOST_DATA changed",
            |s| flip(&mut s.report, 0xC0),
            SIGNATURE_BY_VEK,
        ),
        (
            "ID_KEY_DIGEST changed",
            |s| flip(&mut s.report, 0xE0),
            SIGNATURE_BY_VEK,
        ),
        (
            "AUTHOR_KEY_DIGEST changed",
            |s| flip(&mut s.report, 0x110),
            SIGNATURE_BY_VEK,
        ),
        (
            "REPORT_ID changed",
            |s| flip(&mut s.report, 0x140),
            SIGNATURE_BY_VEK,
        ),
        (
            "REPORT_ID_MA changed",
            |s| flip(&mut s.report, 0x160),
            SIGNATURE_BY_VEK,
        ),
        (
            "COMMITTED_TCB changed",
            |s| flip(&mut s.report, 0x1E0),
            SIGNATURE_BY_VEK,
        ),
        (
            "LAUNCH_TCB changed",
            |s| flip(&mut s.report, 0x1F0),
            SIGNATURE_BY_VEK,
        ),
        (
            "signature R changed",
            |s| flip(&mut s.report, 0x2A0),
            SIGNATURE_BY_VEK,
        ),
        (
            "signature S changed",
            |s| flip(&mut s.report, 0x2A0 + 72),
            SIGNATURE_BY_VEK,
        ),
        (
            "REPORTED_TCB bootloader SPL raised",
            |s| s.report[0x180] += 1,
            "REPORTED_TCB vs endorsement key certificate TCB mismatch",
        ),
        (
            "REPORTED_TCB microcode SPL lowered",
            |s| s.report[0x187] -= 1,
            "REPORTED_TCB vs endorsement key certificate TCB mismatch",
        ),
        (
            "CHIP_ID changed",
            |s| flip(&mut s.report, 0x1A0),
            "CHIP_ID (report vs VCEK hwID) mismatch",
        ),
        (
            "version 3 naming a Genoa CPU on a Milan chain",
            |s| {
                s.report[0] = 3;
                s.report[0x188] = 0x19;
                s.report[0x189] = 0x11
            },
            "SNP product (report CPUID vs certificate chain) mismatch",
        ),
        (
            "the legacy invalid VCEK",
            |s| s.vek = fixture("snp/trustee_vcek_invalid_legacy.der"),
            "certificate VCEK",
        ),
        (
            "the new invalid VCEK",
            |s| s.vek = fixture("snp/trustee_vcek_invalid_new.der"),
            "certificate VCEK",
        ),
        (
            "another chip's VCEK",
            |s| s.vek = fixture("snp/virtee_vcek_milan.der"),
            "mismatch",
        ),
        (
            "a Turin VCEK",
            |s| s.vek = fixture("snp/virtee_vcek_turin.der"),
            "mismatch",
        ),
        (
            "VCEK not DER",
            |s| s.vek.truncate(40),
            "certificate VCEK (?): bad DER",
        ),
        (
            "a VLEK certificate for a VCEK report",
            |s| s.vek = fixture("snp/trustee_vlek.der"),
            "endorsement key certificate kind",
        ),
        (
            "Genoa ASK with the Milan ARK",
            |s| {
                s.chain = vec![
                    amd_ask(AmdProduct::Genoa).unwrap(),
                    amd_ark(AmdProduct::Milan).unwrap().der,
                ]
            },
            "does not match the next certificate's subject",
        ),
        (
            "chain of the ASK alone",
            |s| s.chain = vec![amd_ask(AmdProduct::Milan).unwrap()],
            "not anchored in a trusted root",
        ),
        (
            "chain in the wrong order",
            |s| {
                s.chain = vec![
                    amd_ark(AmdProduct::Milan).unwrap().der,
                    amd_ask(AmdProduct::Milan).unwrap(),
                ]
            },
            "not anchored in a trusted root",
        ),
        (
            "the ARK as the VCEK's only issuer",
            |s| s.chain = vec![amd_ark(AmdProduct::Milan).unwrap().der],
            "does not match the next certificate's subject",
        ),
        (
            "anchors without the Milan ARK",
            |s| {
                s.anchors = TrustAnchors {
                    roots: vec![
                        amd_ark(AmdProduct::Genoa).unwrap(),
                        amd_ark(AmdProduct::Turin).unwrap(),
                    ],
                }
            },
            "not anchored in a trusted root",
        ),
        (
            "Intel's root only",
            |s| s.anchors = intel(),
            "not anchored in a trusted root",
        ),
        (
            "before the VCEK's validity",
            |s| s.now = at("2022-06-01T00:00:00Z"),
            "certificate VCEK (OU=Engineering",
        ),
        (
            "after the VCEK's validity",
            |s| s.now = at("2031-01-01T00:00:00Z"),
            "is not valid at",
        ),
    ]
}

#[test]
fn snp_genuine_base_verifies() {
    let s = snp_base();
    verify_report(&s.report, &s.vek, &s.chain, &s.anchors, s.now).unwrap();
}

#[test]
fn snp_negative_catalogue() {
    let cases = snp_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for (name, mutate, expected) in cases {
        assert!(names.insert(name), "duplicate case {name}");
        let mut s = snp_base();
        mutate(&mut s);
        match verify_report(&s.report, &s.vek, &s.chain, &s.anchors, s.now) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(
                e.to_string().contains(expected),
                "{name}: expected an error containing {expected:?}, got: {e}"
            ),
        }
    }
}

#[test]
fn every_prefix_of_genuine_evidence_is_an_error_not_a_panic() {
    let t = tdx_base();
    // The fixture is zero-padded from 4936 to 5006 bytes: cut inside the quote.
    for len in (0..4936).step_by(7) {
        assert!(
            verify_quote_with_collateral(&t.quote[..len], &t.collateral, &t.anchors, t.now)
                .is_err()
        );
    }
    let s = snp_base();
    for len in 0..s.report.len() {
        assert!(matches!(
            verify_report(&s.report[..len], &s.vek, &s.chain, &s.anchors, s.now),
            Err(Error::Truncated { .. })
        ));
    }
}
