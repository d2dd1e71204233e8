#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! AMD's CRL (KDS `/vcek/v1/<product>/crl`) checked against an SNP chain.
//!
//! No fixture carries a real AMD CRL, and only AMD can sign one under its
//! ARKs; so the checks are exercised on a test hierarchy shaped like AMD's
//! (ARK → ASK → VCEK, P-384 here instead of RSA-PSS, which the chain
//! verifier handles alike), and the real ARK is shown to refuse a CRL that
//! it did not sign.

use kokon_attestation::pki::{verify_chain, TrustAnchor, TrustAnchors, VerifiedChain};
use kokon_attestation::roots::{amd_ark, AmdProduct};
use kokon_attestation::snp::check_crl;
use kokon_attestation::{verify_evidence, Error, Evidence, EvidenceFormat};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber, PKCS_ECDSA_P384_SHA384,
};
use time::OffsetDateTime;

const NOW: i64 = 1_780_000_000;
const DAY: i64 = 86_400;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn params(cn: &str, serial: u64, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Advanced Micro Devices");
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = at(NOW - 365 * DAY);
    p.not_after = at(NOW + 365 * DAY);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    p
}

struct Hierarchy {
    ark: Issuer<'static, KeyPair>,
    ask: Issuer<'static, KeyPair>,
    chain: VerifiedChain,
}

const ASK_SERIAL: u64 = 0x0a5c;
const VCEK_SERIAL: u64 = 0x0bee;

fn hierarchy() -> Hierarchy {
    let key = || KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let ark_params = params("ARK-Milan", 1, true);
    let ark_key = key();
    let ark_cert = ark_params.self_signed(&ark_key).unwrap();
    let ark = Issuer::new(ark_params, ark_key);
    let ask_params = params("SEV-Milan", ASK_SERIAL, true);
    let ask_key = key();
    let ask_cert = ask_params.signed_by(&ask_key, &ark).unwrap();
    let ask = Issuer::new(ask_params, ask_key);
    let vcek_cert = params("SEV-VCEK", VCEK_SERIAL, false)
        .signed_by(&key(), &ask)
        .unwrap();
    let anchors = TrustAnchors {
        roots: vec![TrustAnchor {
            name: "test-ark".into(),
            der: ark_cert.der().to_vec(),
            simulated: true,
        }],
    };
    let chain = verify_chain(
        &[
            vcek_cert.der().to_vec(),
            ask_cert.der().to_vec(),
            ark_cert.der().to_vec(),
        ],
        &anchors,
        NOW,
        &["VCEK", "ASK", "ARK"],
    )
    .unwrap();
    Hierarchy { ark, ask, chain }
}

fn crl(issuer: &Issuer<'_, KeyPair>, revoked: &[u64], this: i64, next: i64) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: at(this),
        next_update: at(next),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from(*serial),
                revocation_time: at(NOW - DAY),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

fn current(issuer: &Issuer<'_, KeyPair>, revoked: &[u64]) -> Vec<u8> {
    crl(issuer, revoked, NOW - DAY, NOW + 7 * DAY)
}

#[test]
fn a_current_crl_of_the_ark_that_revokes_nothing_in_the_chain_passes() {
    let h = hierarchy();
    check_crl(&h.chain, &current(&h.ark, &[]), NOW).unwrap();
    // Other ASKs revoked: not ours.
    check_crl(&h.chain, &current(&h.ark, &[0x1234, 0x5678]), NOW).unwrap();
}

#[test]
fn a_revoked_ask_is_rejected_naming_it() {
    let h = hierarchy();
    let err = check_crl(&h.chain, &current(&h.ark, &[ASK_SERIAL]), NOW).unwrap_err();
    assert!(
        matches!(&err, Error::Revoked { position, serial, crl: "AMD KDS CRL", .. }
            if position == "ASK or ASVK" && serial == "0a5c"),
        "{err}"
    );
}

#[test]
fn a_serial_listed_by_the_ark_does_not_revoke_a_certificate_the_ask_issued() {
    // CRL entries name certificates of the CRL's issuer only.
    let h = hierarchy();
    check_crl(&h.chain, &current(&h.ark, &[VCEK_SERIAL]), NOW).unwrap();
}

#[test]
fn a_crl_signed_by_another_key_under_the_arks_name_is_rejected() {
    let h = hierarchy();
    let impostor = Issuer::new(
        params("ARK-Milan", 1, true),
        KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
    );
    let err = check_crl(&h.chain, &current(&impostor, &[]), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadSignature {
                what: "AMD KDS CRL"
            }
        ),
        "{err}"
    );
}

#[test]
fn a_crl_of_another_issuer_is_rejected() {
    let h = hierarchy();
    let err = check_crl(&h.chain, &current(&h.ask, &[]), NOW).unwrap_err();
    assert!(
        matches!(&err, Error::Mismatch { what: "CRL issuer", found, .. } if found.contains("SEV-Milan")),
        "{err}"
    );
}

#[test]
fn an_expired_or_future_crl_is_rejected() {
    let h = hierarchy();
    for (this, next) in [(NOW - 30 * DAY, NOW - DAY), (NOW + DAY, NOW + 30 * DAY)] {
        let err = check_crl(&h.chain, &crl(&h.ark, &[], this, next), NOW).unwrap_err();
        assert!(
            matches!(
                err,
                Error::CollateralNotValidAt {
                    what: "AMD KDS CRL",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn garbage_is_rejected() {
    let h = hierarchy();
    for bytes in [&b""[..], b"\x30\x03abc", b"not a crl"] {
        let err = check_crl(&h.chain, bytes, NOW).unwrap_err().to_string();
        assert!(err.contains("AMD KDS CRL"), "{err}");
    }
    let mut trailing = current(&h.ark, &[]);
    trailing.push(0);
    let err = check_crl(&h.chain, &trailing, NOW).unwrap_err().to_string();
    assert!(err.contains("trailing bytes"), "{err}");
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(path),
    )
    .unwrap()
}

/// The subject of `cert_der`, re-encoded attribute by attribute.
fn same_name(cert_der: &[u8]) -> rcgen::DistinguishedName {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    for attr in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attr.attr_type().iter().unwrap().collect();
        let text = attr.as_str().unwrap().to_string();
        let value = match attr.attr_value().tag() {
            x509_parser::der_parser::asn1_rs::Tag::PrintableString => {
                rcgen::DnValue::PrintableString(text.try_into().unwrap())
            }
            _ => rcgen::DnValue::Utf8String(text),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    dn
}

#[test]
fn real_evidence_with_a_crl_the_real_ark_did_not_sign_is_rejected() {
    // A CRL in the name of AMD's Milan ARK, signed by a key of ours.
    let ark = amd_ark(AmdProduct::Milan).unwrap();
    let mut impostor_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    impostor_params.distinguished_name = same_name(&ark.der);
    impostor_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    impostor_params.key_usages = vec![KeyUsagePurpose::CrlSign];
    let impostor = Issuer::new(
        impostor_params,
        KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
    );
    let now = 1_735_689_600; // 2025-01-01, inside the VCEK's validity
    let evidence = |crl: Vec<u8>| Evidence {
        format: EvidenceFormat::SnpReport,
        data: fixture("snp/trustee_report.bin"),
        certificates: vec![fixture("snp/trustee_vcek.der")],
        collateral: None,
        crl,
    };
    let anchors = TrustAnchors { roots: vec![ark] };
    let forged = crl(&impostor, &[], now - DAY, now + DAY);
    let err = verify_evidence(&evidence(forged), &anchors, now).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadSignature {
                what: "AMD KDS CRL"
            }
        ),
        "{err}"
    );
    // Without a CRL the same evidence verifies, and says the CRL is missing.
    let v = verify_evidence(&evidence(Vec::new()), &anchors, now).unwrap();
    assert!(
        v.tcb.summary().contains("no AMD CRL"),
        "{}",
        v.tcb.summary()
    );
    // Its one chain, described for reports: VCEK, ASK, ARK.
    let [chain] = v.chains.as_slice() else {
        panic!("{:?}", v.chains)
    };
    let positions: Vec<&str> = chain
        .certificates
        .iter()
        .map(|c| c.position.as_str())
        .collect();
    assert_eq!(positions, ["VCEK", "ASK", "ARK"]);
    assert!(chain.purpose.contains("VCEK"), "{}", chain.purpose);
    assert_eq!(chain.certificates[0].subject, v.platform);
    assert!(
        chain.certificates[1].subject.contains("SEV-Milan"),
        "{:?}",
        chain.certificates[1]
    );
}

#[test]
fn crl_files_are_read_as_der_or_pem() {
    use base64::Engine;
    let h = hierarchy();
    let der = current(&h.ark, &[]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem = format!("-----BEGIN X509 CRL-----\n{b64}\n-----END X509 CRL-----\n");
    assert_eq!(kokon_attestation::pki::crl_der(&der).unwrap(), der);
    assert_eq!(
        kokon_attestation::pki::crl_der(pem.as_bytes()).unwrap(),
        der
    );
    let cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    for bad in [&b"garbage"[..], cert_pem.as_bytes(), b""] {
        let err = kokon_attestation::pki::crl_der(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CRL file"), "{err}");
    }
}
