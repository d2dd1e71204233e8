#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The negative catalogue: one named case per check, each with the error it
//! must produce. Every case starts from genuine evidence that verifies (a
//! real TDX quote with Intel collateral; a real SNP report with its VCEK),
//! changes one thing, and names the check that must trip. A case whose
//! mutation is rejected for another reason fails the test.

mod common;

use common::{at, fixture, intel};
use kokon_attestation::roots::{amd_ark, amd_ask, AmdProduct};
use kokon_attestation::sim::{pem_encode, SimRoot};
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

/// Offsets of the three nested lengths that enclose the PCK chain.
const CERT_DATA_LEN: usize = CERT_TYPE + 2;
const CHAIN_LEN: usize = INNER_TYPE + 2;

fn u32_at(bytes: &[u8], offset: usize) -> usize {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize
}

fn add_u32(bytes: &mut [u8], offset: usize, delta: isize) {
    let v = (u32_at(bytes, offset) as isize + delta) as u32;
    bytes[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
}

/// Rewrites the quote's PCK chain text (NUL included) with `edit`, keeping
/// every enclosing length consistent and the zero padding after the quote.
fn edit_chain(t: &mut Tdx, edit: impl FnOnce(&mut Vec<u8>)) {
    let len = u32_at(&t.quote, CHAIN_LEN);
    let mut chain = t.quote[PEM..PEM + len].to_vec();
    edit(&mut chain);
    let delta = chain.len() as isize - len as isize;
    let mut quote = t.quote[..PEM].to_vec();
    quote.extend_from_slice(&chain);
    quote.extend_from_slice(&t.quote[PEM + len..]);
    for offset in [SIG_LEN, CERT_DATA_LEN, CHAIN_LEN] {
        add_u32(&mut quote, offset, delta);
    }
    t.quote = quote;
}

/// Replaces the first occurrence of `from` in the PCK chain text.
fn replace_in_chain(t: &mut Tdx, from: &str, to: &str) {
    edit_chain(t, |chain| {
        let text = String::from_utf8(chain.clone()).unwrap();
        assert!(text.contains(from), "{from:?} not in the PCK chain");
        *chain = text.replacen(from, to, 1).into_bytes();
    })
}

/// Re-encodes the PCK chain with certificate `index`'s DER changed by `edit`.
fn edit_certificate(t: &mut Tdx, index: usize, edit: impl FnOnce(&mut Vec<u8>)) {
    edit_chain(t, |chain| {
        let mut certs =
            kokon_attestation::pem::certificates(&chain[..chain.len() - 1], "test").unwrap();
        edit(&mut certs[index]);
        *chain = certs
            .iter()
            .map(|c| pem_encode(c))
            .collect::<String>()
            .into_bytes();
        chain.push(0);
    })
}

/// Offset of a certificate's signatureAlgorithm (outer SEQUENCE and TBS
/// both use two-byte long-form lengths in Intel's certificates).
fn signature_algorithm_at(der: &[u8]) -> usize {
    assert_eq!((der[0], der[1], der[4], der[5]), (0x30, 0x82, 0x30, 0x82));
    8 + (usize::from(der[6]) << 8 | usize::from(der[7]))
}

/// Offset of a certificate's signature BIT STRING.
fn signature_at(der: &[u8]) -> usize {
    let alg = signature_algorithm_at(der);
    alg + 2 + usize::from(der[alg + 1])
}

/// Adds `delta` to the outer SEQUENCE's two-byte length.
fn grow_outer(der: &mut [u8], delta: usize) {
    let len = (usize::from(der[2]) << 8 | usize::from(der[3])) + delta;
    der[2..4].copy_from_slice(&(len as u16).to_be_bytes());
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
            "PCK chain: END line altered",
            |t| replace_in_chain(t, "-----END CERTIFICATE-----", "-----END CERTIFICATF-----"),
            "PCK certificate chain: malformed PEM at byte 1747: expected \"-----END CERTIFICATE-----\\n\" after the last base64 line, found \"-----END CERTIFICATF",
        ),
        (
            "PCK chain: BEGIN line altered",
            |t| replace_in_chain(t, "-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATe-----"),
            "PCK certificate chain: malformed PEM at byte 0: expected \"-----BEGIN CERTIFICATE-----\\n\"",
        ),
        (
            "PCK chain: label X509 CERTIFICATE",
            |t| {
                replace_in_chain(t, "BEGIN CERTIFICATE", "BEGIN X509 CERTIFICATE");
                replace_in_chain(t, "END CERTIFICATE", "END X509 CERTIFICATE")
            },
            "PCK certificate chain: malformed PEM at byte 0: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"-----BEGIN X509",
        ),
        (
            "PCK chain: END label of another type",
            |t| replace_in_chain(t, "-----END CERTIFICATE-----", "-----END X509 CRL-----"),
            "found \"-----END X509 CRL-----",
        ),
        (
            "PCK chain: first END line missing",
            |t| replace_in_chain(t, "-----END CERTIFICATE-----\n", ""),
            "after the last base64 line, found \"-----BEGIN CERTIFICATE-----",
        ),
        (
            "PCK chain: last END line missing",
            |t| {
                edit_chain(t, |c| {
                    let n = c.len();
                    c.drain(n - 27..n - 1);
                })
            },
            "expected a line ending in \\n",
        ),
        (
            "PCK chain: text between certificates",
            |t| {
                replace_in_chain(
                    t,
                    "-----END CERTIFICATE-----\n",
                    "-----END CERTIFICATE-----\nsubject=PCK CA\n",
                )
            },
            "PCK certificate chain: malformed PEM at byte 1773: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"subject=PCK CA",
        ),
        (
            "PCK chain: blank line between certificates",
            |t| {
                replace_in_chain(
                    t,
                    "-----END CERTIFICATE-----\n",
                    "-----END CERTIFICATE-----\n\n",
                )
            },
            "at byte 1773: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"\\n",
        ),
        (
            "PCK chain: CRLF line ends",
            |t| {
                edit_chain(t, |c| {
                    let text = String::from_utf8(c.clone()).unwrap();
                    *c = text.replace('\n', "\r\n").into_bytes();
                })
            },
            "found \"-----BEGIN CERTIFICATE-----\\r\\n",
        ),
        (
            "PCK chain: CR inside a base64 line",
            |t| {
                edit_chain(t, |c| c.insert(28 + 64, b'\r'))
            },
            "at byte 92: expected a base64 character (A-Z a-z 0-9 + / =) or \\n, found \"\\r\\n",
        ),
        (
            "PCK chain: blank line after BEGIN",
            |t| edit_chain(t, |c| c.insert(28, b'\n')),
            "at byte 28: expected a base64 line of 1 to 64 characters, found a line of 0 characters",
        ),
        (
            "PCK chain: base64 line of 128 characters",
            |t| edit_chain(t, |c| {
                c.remove(28 + 64);
            }),
            "at byte 28: expected a base64 line of 1 to 64 characters, found a line of 128 characters",
        ),
        (
            "PCK chain: short base64 line before the last",
            |t| edit_chain(t, |c| c.insert(28 + 32, b'\n')),
            "at byte 61: expected \"-----END CERTIFICATE-----\\n\" after the last base64 line",
        ),
        (
            "PCK chain: space in a base64 line",
            |t| edit_chain(t, |c| c[40] = b' '),
            "at byte 40: expected a base64 character",
        ),
        (
            "PCK chain: '=' in the middle of the base64",
            |t| edit_chain(t, |c| c[40] = b'='),
            "PCK certificate chain: malformed PEM at byte 0: expected canonical base64",
        ),
        (
            "PCK chain: non-canonical padding bits (aqI= -> aqJ=)",
            |t| replace_in_chain(t, "aqI=\n-----END CERTIFICATE-----\n\0", "aqJ=\n-----END CERTIFICATE-----\n\0"),
            "expected canonical base64 (standard alphabet, '=' padding only at the end, zero trailing bits), found Invalid last symbol 74",
        ),
        (
            "PCK chain: padding removed",
            |t| replace_in_chain(t, "aqI=\n-----END CERTIFICATE-----\n\0", "aqI\n-----END CERTIFICATE-----\n\0"),
            "expected canonical base64",
        ),
        (
            "PCK chain: extra padding",
            |t| replace_in_chain(t, "aqI=\n-----END CERTIFICATE-----\n\0", "aqI==\n-----END CERTIFICATE-----\n\0"),
            "expected canonical base64",
        ),
        (
            "PCK chain: final NUL replaced by a non-zero byte",
            |t| edit_chain(t, |c| *c.last_mut().unwrap() = b'\n'),
            "PCK certificate chain: malformed PEM at byte 3677: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"\\n\"",
        ),
        (
            "PCK chain: two NULs at the end",
            |t| edit_chain(t, |c| c.push(0)),
            "malformed PEM at byte 3677: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"\\x00\"",
        ),
        (
            "PCK chain: NUL then a non-zero byte",
            |t| edit_chain(t, |c| c.push(7)),
            "malformed PEM at byte 3677: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"\\x00\\x07\"",
        ),
        (
            "PCK chain: final newline removed",
            |t| {
                edit_chain(t, |c| {
                    let n = c.len();
                    c.remove(n - 2);
                })
            },
            "expected a line ending in \\n",
        ),
        (
            "PCK chain: a fourth certificate (the root twice)",
            |t| {
                edit_chain(t, |c| {
                    let root = String::from_utf8(c.clone()).unwrap();
                    let start = root.rfind("-----BEGIN").unwrap();
                    let root = root[start..root.len() - 1].to_string();
                    c.pop();
                    c.extend_from_slice(root.as_bytes());
                    c.push(0);
                })
            },
            "unsupported PCK certificate chain length: expected 3",
        ),
        (
            "PCK leaf: signature BIT STRING with 1 unused bit",
            |t| {
                edit_certificate(t, 0, |der| {
                    let at = signature_at(der);
                    der[at + 2] = 1;
                })
            },
            "certificate PCK leaf (?): bad DER: Parsing Error: InvalidSignatureValue",
        ),
        (
            "PCK leaf: outer signatureAlgorithm ecdsa-with-SHA384",
            |t| {
                edit_certificate(t, 0, |der| {
                    let at = signature_algorithm_at(der);
                    der[at + 11] = 0x03;
                })
            },
            "certificate PCK leaf (CN=Intel SGX PCK Certificate, O=Intel Corporation, L=Santa Clara, ST=CA, C=US): non-canonical DER: signatureAlgorithm 300a06082a8648ce3d040303 differs from the signed one 300a06082a8648ce3d040302",
        ),
        (
            "PCK leaf: ECDSA signature INTEGER r with a leading zero",
            |t| {
                edit_certificate(t, 0, |der| {
                    let at = signature_at(der);
                    // 03 len 00 | 30 len | 02 rlen r ...
                    assert_eq!((der[at], der[at + 3], der[at + 5]), (0x03, 0x30, 0x02));
                    der[at + 1] += 1;
                    der[at + 4] += 1;
                    der[at + 6] += 1;
                    der.insert(at + 7, 0);
                    grow_outer(der, 1);
                })
            },
            "certificate PCK leaf (CN=Intel SGX PCK Certificate, O=Intel Corporation, L=Santa Clara, ST=CA, C=US): signature does not verify",
        ),
        (
            "PCK leaf: outer length in non-minimal long form",
            |t| {
                edit_certificate(t, 0, |der| {
                    der[1] = 0x83;
                    der.insert(2, 0);
                })
            },
            "non-canonical DER: length of tag 0x30 not in minimal definite form",
        ),
        (
            "PCK platform CA: a byte after the signature",
            |t| {
                edit_certificate(t, 1, |der| {
                    der.push(0);
                    grow_outer(der, 1);
                })
            },
            "certificate PCK platform CA (CN=Intel SGX PCK Platform CA, O=Intel Corporation, L=Santa Clara, ST=CA, C=US): non-canonical DER: 1 bytes after the signature BIT STRING",
        ),
        (
            "PCK CRL issuer chain of another CA (the TCB signer's)",
            |t| t.collateral.pck_crl_issuer_chain = t.collateral.tcb_info_issuer_chain.clone(),
            "PCK CRL issuer chain (collateral vs the quote's PCK chain above the leaf) mismatch",
        ),
        (
            "PCK CRL issuer chain with CRLF line ends",
            |t| {
                let c = &mut t.collateral;
                c.pck_crl_issuer_chain = c.pck_crl_issuer_chain.replace('\n', "\r\n")
            },
            "PCK CRL issuer chain: malformed PEM at byte 0",
        ),
        (
            "PCK CRL issuer chain with text after it",
            |t| t.collateral.pck_crl_issuer_chain.push('\n'),
            "PCK CRL issuer chain: malformed PEM at byte 1904",
        ),
        (
            "TCB info issuer chain with an altered END line",
            |t| {
                let c = &mut t.collateral;
                c.tcb_info_issuer_chain = c
                    .tcb_info_issuer_chain
                    .replacen("-----END CERTIFICATE-----", "-----END CERTIFICATE----", 1)
            },
            "TCB info issuer chain: malformed PEM",
        ),
        (
            "QE identity issuer chain with a NUL after it",
            |t| t.collateral.qe_identity_issuer_chain.push('\0'),
            "QE identity issuer chain: malformed PEM at byte 1892",
        ),
        (
            "root CA CRL: signatureAlgorithm differs from the signed one",
            |t| {
                let crl = &mut t.collateral.root_ca_crl.0;
                let pos = crl
                    .windows(12)
                    .rposition(|w| w == [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])
                    .unwrap();
                crl[pos + 11] = 0x03;
            },
            "collateral: root CA CRL: non-canonical DER: signatureAlgorithm",
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
                let end = pem.find("-----END CERTIFICATE-----").unwrap() + 26;
                t.collateral.tcb_info_issuer_chain = pem[..end].to_string()
            },
            "not anchored in a trusted root",
        ),
        (
            "QE identity signer chain empty",
            |t| t.collateral.qe_identity_issuer_chain.clear(),
            "QE identity issuer chain: malformed PEM at byte 0: expected \"-----BEGIN CERTIFICATE-----\\n\", found the end of the text",
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
            "unsupported SNP report signature R bytes 48..72 (zero extension): expected zero (a P-384 component has 48 bytes), found 000000000000000000000000010000000000000000000000",
        ),
        (
            "signature R: its highest byte set",
            |s| s.report[0x2A0 + 71] = 0x80,
            "SNP report signature R bytes 48..72",
        ),
        (
            "signature R: byte 48 (first of the zero extension) set",
            |s| s.report[0x2A0 + 48] = 1,
            "SNP report signature R bytes 48..72",
        ),
        (
            "signature S wider than P-384",
            |s| s.report[0x2A0 + 72 + 48] = 1,
            "unsupported SNP report signature S bytes 48..72 (zero extension): expected zero",
        ),
        (
            "signature S: its highest byte set",
            |s| s.report[0x2A0 + 72 + 71] = 0xff,
            "SNP report signature S bytes 48..72",
        ),
        (
            "signature reserved area: first byte set",
            |s| s.report[0x2A0 + 144] = 1,
            "unsupported SNP report: signature reserved: expected zero",
        ),
        (
            "signature reserved area: last byte set",
            |s| s.report[0x4A0 - 1] = 0x80,
            "unsupported SNP report: signature reserved: expected zero",
        ),
        (
            "signature S low byte changed",
            |s| s.report[0x2A0 + 72] ^= 1,
            SIGNATURE_BY_VEK,
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
