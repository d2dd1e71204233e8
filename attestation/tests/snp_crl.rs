#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! AMD's CRL (KDS `/vcek/v1/<product>/crl`) checked against an SNP chain.
//!
//! No fixture carries a real AMD CRL, and only AMD can sign one under its
//! ARKs; so the checks are exercised on a test hierarchy shaped like AMD's
//! (ARK → ASK → VCEK, P-384 here instead of RSA-PSS, which the chain
//! verifier handles alike), and the real ARK is shown to refuse a CRL that
//! it did not sign. A real report signed again under that hierarchy runs
//! the whole verification with and without a CRL, and its verdict says
//! when revocation went unchecked.

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
    /// The ARK, ASK and VCEK certificates (DER).
    ders: [Vec<u8>; 3],
}

const ASK_SERIAL: u64 = 0x0a5c;
const VCEK_SERIAL: u64 = 0x0bee;

fn hierarchy() -> Hierarchy {
    hierarchy_for(
        params("SEV-VCEK", VCEK_SERIAL, false),
        &KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
    )
}

/// ARK → ASK → a VCEK of `vcek` params and key, anchored as Milan's ARK.
fn hierarchy_for(vcek: CertificateParams, vcek_key: &KeyPair) -> Hierarchy {
    let key = || KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let ark_params = params("ARK-Milan", 1, true);
    let ark_key = key();
    let ark_cert = ark_params.self_signed(&ark_key).unwrap();
    let ark = Issuer::new(ark_params, ark_key);
    let ask_params = params("SEV-Milan", ASK_SERIAL, true);
    let ask_key = key();
    let ask_cert = ask_params.signed_by(&ask_key, &ark).unwrap();
    let ask = Issuer::new(ask_params, ask_key);
    let vcek_cert = vcek.signed_by(vcek_key, &ask).unwrap();
    let ders = [
        ark_cert.der().to_vec(),
        ask_cert.der().to_vec(),
        vcek_cert.der().to_vec(),
    ];
    let chain = verify_chain(
        &[ders[2].clone(), ders[1].clone(), ders[0].clone()],
        &test_ark(&ders[0]),
        NOW,
        &["VCEK", "ASK", "ARK"],
    )
    .unwrap();
    Hierarchy {
        ark,
        ask,
        chain,
        ders,
    }
}

/// The test ARK as the only anchor, named as Milan's.
fn test_ark(der: &[u8]) -> TrustAnchors {
    TrustAnchors {
        roots: vec![TrustAnchor {
            name: AmdProduct::Milan.root_name().into(),
            der: der.to_vec(),
            simulated: true,
        }],
    }
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
    assert_eq!(
        v.tcb.caveats(),
        [kokon_attestation::bundle::CAVEAT_NO_AMD_CRL]
    );
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

/// A real report (virtee's, Milan) signed again by a VCEK of the test
/// hierarchy whose TCB and hwID extensions are the report's: the whole of
/// `verify_evidence` runs on it, AMD's CRL included.
fn resigned_report() -> (Vec<u8>, Hierarchy) {
    use kokon_attestation::snp::{Report, TcbVersion};
    use rcgen::CustomExtension;
    use ring::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    let mut report = hex::decode(
        String::from_utf8(fixture("snp/virtee_report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let parsed = Report::parse(&report).unwrap();
    let tcb = TcbVersion::decode(parsed.reported_tcb, AmdProduct::Milan);
    let integer = |v: u8| match v {
        0..=0x7f => vec![0x02, 0x01, v],
        _ => vec![0x02, 0x02, 0x00, v],
    };
    let amd = |arcs: &[u64]| [&[1, 3, 6, 1, 4, 1, 3704, 1][..], arcs].concat();
    let mut hw_id = vec![0x04, 0x40];
    hw_id.extend_from_slice(&parsed.chip_id);
    let mut vcek = params("SEV-VCEK", VCEK_SERIAL, false);
    vcek.custom_extensions = vec![
        CustomExtension::from_oid_content(&amd(&[3, 1]), integer(tcb.bootloader)),
        CustomExtension::from_oid_content(&amd(&[3, 2]), integer(tcb.tee)),
        CustomExtension::from_oid_content(&amd(&[3, 3]), integer(tcb.snp)),
        CustomExtension::from_oid_content(&amd(&[3, 8]), integer(tcb.microcode)),
        CustomExtension::from_oid_content(&amd(&[4]), hw_id),
    ];
    let vcek_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let h = hierarchy_for(vcek, &vcek_key);
    let rng = ring::rand::SystemRandom::new();
    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &vcek_key.serialize_der(),
        &rng,
    )
    .unwrap();
    let signed_len = kokon_attestation::snp::report::SIGNED_LEN;
    let signature = signer.sign(&rng, &report[..signed_len]).unwrap();
    let (r, s) = signature.as_ref().split_at(48);
    // R and S little-endian, each in a 72-byte field; the rest stays zero.
    let area = &mut report[signed_len..];
    area.fill(0);
    for (i, b) in r.iter().rev().enumerate() {
        area[i] = *b;
    }
    for (i, b) in s.iter().rev().enumerate() {
        area[72 + i] = *b;
    }
    (report, h)
}

#[test]
fn a_verdict_reached_without_amds_crl_says_so_and_one_with_it_does_not() {
    use kokon_attestation::bundle::CAVEAT_NO_AMD_CRL;
    use kokon_attestation::PlatformTcb;
    let (report, h) = resigned_report();
    let evidence = |crl: Vec<u8>| Evidence {
        format: EvidenceFormat::SnpReport,
        data: report.clone(),
        certificates: vec![h.ders[2].clone(), h.ders[1].clone(), h.ders[0].clone()],
        collateral: None,
        crl,
    };
    let anchors = test_ark(&h.ders[0]);
    let checked = verify_evidence(&evidence(current(&h.ark, &[])), &anchors, NOW).unwrap();
    assert!(
        matches!(
            checked.tcb,
            PlatformTcb::Snp {
                crl_checked: true,
                ..
            }
        ),
        "{:?}",
        checked.tcb
    );
    assert!(checked.tcb.caveats().is_empty());
    assert!(checked.tcb.summary().contains("AMD CRL checked"));

    let unchecked = verify_evidence(&evidence(Vec::new()), &anchors, NOW).unwrap();
    assert_eq!(unchecked.tcb.caveats(), [CAVEAT_NO_AMD_CRL]);
    let json = serde_json::to_value(&unchecked.tcb).unwrap();
    assert_eq!(json["kind"], "snp");
    assert_eq!(json["crl_checked"], false);

    // The CRL is really checked: one that revokes the ASK rejects it.
    let err =
        verify_evidence(&evidence(current(&h.ark, &[ASK_SERIAL])), &anchors, NOW).unwrap_err();
    assert!(matches!(err, Error::Revoked { .. }), "{err}");
}
