#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! NVIDIA's reference integrity manifests: RIMs in NVIDIA's form, signed
//! by a simulated hierarchy shaped like NVIDIA's, verify and appraise the
//! real H100 report (Trustee's test data) with its real measurements; the
//! report names its RIMs as NVIDIA's RIM service does; and a catalogue of
//! named wrong RIMs, each rejected by the check it names. (Real NVIDIA
//! RIMs verified the same way outside the test suite: docs/attestation.md.)

mod common;

use std::collections::BTreeMap;

use common::{at, fixture};
use kokon_attestation::nvidia::rim::{self, Reference};
use kokon_attestation::nvidia::Report;
use kokon_attestation::roots::nvidia_rim_root;
use kokon_attestation::sim::rim::{
    references_for, unsigned_rim, SimRimSigner, DRIVER_INDEXES, VBIOS_INDEXES,
};
use kokon_attestation::TrustAnchors;

const NOW: &str = "2026-11-27T00:00:00Z";

fn report() -> Report {
    let hex_text =
        String::from_utf8(fixture("nvidia/trustee_hopperAttestationReport.txt")).unwrap();
    Report::parse(&hex::decode(hex_text.trim()).unwrap()).unwrap()
}

struct Rims {
    signer: SimRimSigner,
    driver: String,
    vbios: String,
}

fn rims() -> Rims {
    let r = report();
    let signer = SimRimSigner::new().unwrap();
    let driver = signer
        .sign(&unsigned_rim(
            "550.90.07",
            "GH100",
            &references_for(&r, &DRIVER_INDEXES),
        ))
        .unwrap();
    let vbios = signer
        .sign(&unsigned_rim(
            "96.00.9F.00.01",
            "GH100",
            &references_for(&r, &VBIOS_INDEXES),
        ))
        .unwrap();
    Rims {
        signer,
        driver,
        vbios,
    }
}

fn check(xml: &str, anchors: &TrustAnchors) -> Result<rim::VerifiedRim, kokon_attestation::Error> {
    rim::verify(xml.as_bytes(), anchors, at(NOW))
}

#[test]
fn the_report_names_its_rims_as_nvidias_rim_service_does() {
    let r = report();
    assert_eq!(rim::driver_rim_id(&r), "NV_GPU_DRIVER_GH100_550.90.07");
    assert_eq!(
        rim::vbios_rim_id(&r).unwrap(),
        "NV_GPU_VBIOS_1010_0200_882_96009F0001"
    );
}

#[test]
fn signed_rims_verify_and_the_real_report_matches_every_active_index() {
    let s = rims();
    let anchors = s.signer.anchors();
    let driver = check(&s.driver, &anchors).unwrap();
    let vbios = check(&s.vbios, &anchors).unwrap();
    assert_eq!(driver.version, "550.90.07");
    assert_eq!(driver.product, "GH100");
    assert_eq!(driver.references.len(), 64);
    assert_eq!(driver.active().count(), 21);
    assert_eq!(driver.certificates[0].subject, "CN=test RIM signer (L4)");
    assert_eq!(driver.links.len(), 4);
    let appraisal = rim::appraise(&report(), &driver, &vbios).unwrap();
    // The report says NVDEC0 is disabled: index 36 is not compared.
    assert!(appraisal.nvdec0_skipped);
    assert_eq!(appraisal.compared.len(), 21 + 12 - 1);
    assert_eq!(appraisal.compared[&8], "driver");
    assert_eq!(appraisal.compared[&13], "VBIOS");
    assert!(!appraisal.compared.contains_key(&36));
}

#[test]
fn the_embedded_rim_root_is_nvidias_and_a_sim_rim_does_not_chain_to_it() {
    let root = nvidia_rim_root().unwrap();
    assert_eq!(root.name, "nvidia-corim-signing-root-ca");
    assert_eq!(
        root.fingerprint(),
        "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"
    );
    let e = check(&rims().driver, &TrustAnchors { roots: vec![root] })
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("certificate chain is not anchored in a trusted root: expected one of [nvidia-corim-signing-root-ca sha256:12977b51"),
        "{e}"
    );
}

#[test]
fn another_alternative_matches_and_an_index_outside_the_report_does_not() {
    let r = report();
    let signer = SimRimSigner::new().unwrap();
    let anchors = signer.anchors();
    let vbios = check(
        &signer
            .sign(&unsigned_rim(
                "96.00.9F.00.01",
                "GH100",
                &references_for(&r, &VBIOS_INDEXES),
            ))
            .unwrap(),
        &anchors,
    )
    .unwrap();
    let mut refs = references_for(&r, &DRIVER_INDEXES);
    let right = refs[&22].alternatives[0];
    refs.get_mut(&22).unwrap().alternatives = vec![[7; 48], right];
    let driver = signer
        .sign(&unsigned_rim("550.90.07", "GH100", &refs))
        .unwrap();
    let driver = check(&driver, &anchors).unwrap();
    rim::appraise(&r, &driver, &vbios).unwrap();

    // Index 36 (NVDEC0) wrong: skipped, the report says NVDEC0 is disabled.
    let mut refs = references_for(&r, &DRIVER_INDEXES);
    refs.get_mut(&36).unwrap().alternatives = vec![[7; 48]];
    let driver = check(
        &signer
            .sign(&unsigned_rim("550.90.07", "GH100", &refs))
            .unwrap(),
        &anchors,
    )
    .unwrap();
    rim::appraise(&r, &driver, &vbios).unwrap();
}

/// The appraisal's catalogue: each RIM pair, and the start of the error.
#[test]
fn each_appraisal_check_trips_saying_what_it_expected() {
    let r = report();
    let signer = SimRimSigner::new().unwrap();
    let anchors = signer.anchors();
    let rim_of = |version: &str, refs: &BTreeMap<u8, Reference>| {
        check(
            &signer.sign(&unsigned_rim(version, "GH100", refs)).unwrap(),
            &anchors,
        )
        .unwrap()
    };
    let driver = rim_of("550.90.07", &references_for(&r, &DRIVER_INDEXES));
    let vbios = rim_of("96.00.9F.00.01", &references_for(&r, &VBIOS_INDEXES));
    let measured = r.measurements();
    let mut wrong = references_for(&r, &DRIVER_INDEXES);
    wrong.get_mut(&22).unwrap().alternatives = vec![[7; 48], [8; 48]];
    let mut beyond = references_for(&r, &DRIVER_INDEXES);
    beyond.insert(
        65,
        Reference {
            active: true,
            alternatives: vec![[1; 48]],
        },
    );
    let conflict = references_for(&r, &[8, 22, 1]);
    let cases = [
        (
            "another driver version's RIM",
            rim_of("550.90.08", &references_for(&r, &DRIVER_INDEXES)),
            vbios.clone(),
            "GPU driver RIM version not accepted: expected the report's driver version 550.90.07, found 550.90.08".to_string(),
        ),
        (
            "another VBIOS version's RIM",
            driver.clone(),
            rim_of("96.00.9F.00.02", &references_for(&r, &VBIOS_INDEXES)),
            "GPU VBIOS RIM version not accepted: expected the report's VBIOS version 96.00.9f.00.01, found 96.00.9F.00.02".into(),
        ),
        (
            "an index active in both RIMs",
            rim_of("550.90.07", &conflict),
            vbios.clone(),
            "GPU measurement index 1 not accepted: expected active in one RIM, found active in the driver and the VBIOS RIM".into(),
        ),
        (
            "a measurement none of whose alternatives the report holds",
            rim_of("550.90.07", &wrong),
            vbios.clone(),
            format!(
                "GPU measurement index 22 (driver RIM) not accepted: expected one of [{}, {}], found {}",
                "07".repeat(48),
                "08".repeat(48),
                hex::encode(measured[&22])
            ),
        ),
        (
            "an active index the report does not hold",
            rim_of("550.90.07", &beyond),
            vbios.clone(),
            "GPU measurement index 65 (driver RIM) not accepted: expected one of [".into(),
        ),
    ];
    for (name, d, v, want) in cases {
        let e = rim::appraise(&r, &d, &v).unwrap_err().to_string();
        assert!(e.starts_with(&want), "{name}: expected {want:?}, got {e:?}");
    }
    let e = rim::appraise(&r, &rim_of("550.90.07", &beyond), &vbios)
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("found no block with this index"), "{e}");
}

/// The verification catalogue: each wrong RIM, and the start of the error.
#[test]
fn each_wrong_rim_is_rejected_saying_why() {
    let s = rims();
    let r = report();
    let anchors = s.signer.anchors();
    let other = SimRimSigner::new().unwrap();
    let good = s.driver.clone();
    let edit = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replacen(from, to, 1)
    };
    let resigned = |f: &dyn Fn(String) -> String| {
        let unsigned = unsigned_rim("550.90.07", "GH100", &references_for(&r, &DRIVER_INDEXES));
        s.signer.sign(&f(unsigned)).unwrap()
    };
    let digest22 = hex::encode(r.measurements()[&22]);
    let digest_value = {
        let start = good.find("<ds:DigestValue>").unwrap() + "<ds:DigestValue>".len();
        let end = good.find("</ds:DigestValue>").unwrap();
        good[start..end].to_string()
    };
    let signature_value = {
        let start = good.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
        let end = good.find("</ds:SignatureValue>").unwrap();
        good[start..end].to_string()
    };
    let flipped_signature = {
        let mut bytes = base64_decode(&signature_value);
        bytes[10] ^= 1;
        base64_encode(&bytes)
    };
    let flipped_digest = {
        let mut bytes = base64_decode(&digest_value);
        bytes[0] ^= 1;
        base64_encode(&bytes)
    };
    let signed_info = |xml: &str| {
        let start = xml.find("<ds:SignedInfo>").unwrap();
        let end = xml.find("</ds:SignedInfo>").unwrap() + "</ds:SignedInfo>".len();
        xml[start..end].to_string()
    };
    let mut oversized = good.clone();
    oversized.push_str(&" ".repeat(1 << 20));
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "a measurement edited after signing",
            edit(&digest22, &"ab".repeat(48)).into_bytes(),
            "signed XML document's digest (SHA-384 of its canonical form without the signature) mismatch".into(),
        ),
        (
            "an attribute added after signing",
            edit("<ns0:Payload ", "<ns0:Payload extra=\"1\" ").into_bytes(),
            "signed XML document's digest".into(),
        ),
        (
            "a digest value that is not the signed one",
            edit(&digest_value, &flipped_digest).into_bytes(),
            "signed XML document's digest".into(),
        ),
        (
            "a corrupted signature",
            edit(&signature_value, &flipped_signature).into_bytes(),
            "invalid signature: NVIDIA RIM (XML signature, ECDSA P-384) by its signer".into(),
        ),
        (
            "a signature of 95 bytes",
            edit(&signature_value, &base64_encode(&base64_decode(&signature_value)[..95])).into_bytes(),
            "collateral: NVIDIA RIM: the ds:SignatureValue has 95 bytes, expected 96".into(),
        ),
        (
            "signed by another hierarchy's signer, with this one's chain",
            {
                let theirs = other
                    .sign(&unsigned_rim("550.90.07", "GH100", &references_for(&r, &DRIVER_INDEXES)))
                    .unwrap();
                let chain = |xml: &str| {
                    let start = xml.find("<ds:KeyInfo>").unwrap();
                    let end = xml.find("</ds:KeyInfo>").unwrap();
                    xml[start..end].to_string()
                };
                theirs.replace(&chain(&theirs), &chain(&good)).into_bytes()
            },
            "invalid signature: NVIDIA RIM".into(),
        ),
        (
            "another hierarchy's RIM",
            other
                .sign(&unsigned_rim("550.90.07", "GH100", &references_for(&r, &DRIVER_INDEXES)))
                .unwrap()
                .into_bytes(),
            "certificate chain is not anchored in a trusted root: expected one of [sim-rim-root".into(),
        ),
        (
            "exclusive canonicalization",
            edit(
                "CanonicalizationMethod Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"",
                "CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"",
            )
            .into_bytes(),
            "unsupported signed XML canonicalization: expected http://www.w3.org/2006/12/xml-c14n11, without parameters (NVIDIA RIM), found http://www.w3.org/2001/10/xml-exc-c14n#".into(),
        ),
        (
            "RSA instead of ECDSA",
            edit("xmldsig-more#ecdsa-sha384", "xmldsig-more#rsa-sha384").into_bytes(),
            "unsupported signed XML signature algorithm".into(),
        ),
        (
            "a SHA-256 digest",
            edit(
                "DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#sha384\"",
                "DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"",
            )
            .into_bytes(),
            "unsupported signed XML digest algorithm".into(),
        ),
        (
            "a transform other than enveloped",
            edit("xmldsig#enveloped-signature", "xmldsig#base64").into_bytes(),
            "unsupported signed XML reference transform".into(),
        ),
        (
            "a reference to an element, not the document",
            edit("<ds:Reference URI=\"\">", "<ds:Reference URI=\"#payload\">").into_bytes(),
            "collateral: NVIDIA RIM: the ds:Reference's URI is Some(\"#payload\"), expected \"\" (the whole document)".into(),
        ),
        (
            "a second reference",
            {
                let info = signed_info(&good);
                let reference_start = info.find("<ds:Reference").unwrap();
                let reference_end = info.find("</ds:Reference>").unwrap() + "</ds:Reference>".len();
                let doubled = format!("{}{}", &info[..reference_end], &info[reference_start..]);
                good.replace(&info, &doubled).into_bytes()
            },
            "collateral: NVIDIA RIM: ds:SignedInfo: expected the elements [ds:CanonicalizationMethod, ds:SignatureMethod, ds:Reference], found [ds:CanonicalizationMethod, ds:SignatureMethod, ds:Reference, ds:Reference]".into(),
        ),
        (
            "an object in the signature",
            edit("</ds:KeyInfo>", "</ds:KeyInfo><ds:Object>x</ds:Object>").into_bytes(),
            "collateral: NVIDIA RIM: ds:Signature: expected the elements [ds:SignedInfo, ds:SignatureValue, ds:KeyInfo], found [ds:SignedInfo, ds:SignatureValue, ds:KeyInfo, ds:Object]".into(),
        ),
        (
            "no key information",
            {
                let start = good.find("<ds:KeyInfo>").unwrap();
                let end = good.find("</ds:KeyInfo>").unwrap() + "</ds:KeyInfo>".len();
                format!("{}{}", &good[..start], &good[end..]).into_bytes()
            },
            "collateral: NVIDIA RIM: ds:Signature: expected the elements [ds:SignedInfo, ds:SignatureValue, ds:KeyInfo], found [ds:SignedInfo, ds:SignatureValue]".into(),
        ),
        (
            "an element after the signature",
            edit("</ds:Signature>", "</ds:Signature><ns0:Link/>").into_bytes(),
            "collateral: NVIDIA RIM: the ds:Signature is not the document element's last child element".into(),
        ),
        (
            "the signature inside the payload",
            {
                let start = good.find("<ds:Signature").unwrap();
                let end = good.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
                let sig = &good[start..end];
                let rest = format!("{}{}", &good[..start], &good[end..]);
                rest.replacen("</ns0:Payload>", &format!("{sig}</ns0:Payload>"), 1).into_bytes()
            },
            "collateral: NVIDIA RIM: the ds:Signature is not the document element's last child element".into(),
        ),
        (
            "two signatures",
            {
                let start = good.find("<ds:Signature").unwrap();
                let end = good.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
                let sig = good[start..end].to_string();
                edit("<ns0:Payload ", &format!("{sig}<ns0:Payload ")).into_bytes()
            },
            "collateral: NVIDIA RIM: expected one ds:Signature, found 2".into(),
        ),
        (
            "a DTD",
            format!("<!DOCTYPE SoftwareIdentity [<!ENTITY x \"y\">]>{good}").into_bytes(),
            "collateral: NVIDIA RIM: not well-formed XML".into(),
        ),
        (
            "a processing instruction",
            edit("<ns0:Payload ", "<?kokon x?><ns0:Payload ").into_bytes(),
            "collateral: NVIDIA RIM: a processing instruction (kokon) in a signed document".into(),
        ),
        (
            "an xml:lang attribute",
            edit("<ns0:Payload ", "<ns0:Payload xml:lang=\"en\" ").into_bytes(),
            "collateral: NVIDIA RIM: an xml:lang attribute in a signed document".into(),
        ),
        (
            "not UTF-8",
            {
                let mut bytes = good.clone().into_bytes();
                bytes[10] = 0xff;
                bytes
            },
            "collateral: NVIDIA RIM: not UTF-8".into(),
        ),
        (
            "truncated",
            good.as_bytes()[..good.len() - 1].to_vec(),
            "collateral: NVIDIA RIM: not well-formed XML".into(),
        ),
        (
            "larger than allowed",
            oversized.into_bytes(),
            "NVIDIA RIM is larger than allowed".into(),
        ),
        (
            "a certificate that is not base64",
            edit("<ds:X509Certificate>", "<ds:X509Certificate>!").into_bytes(),
            "collateral: NVIDIA RIM: ds:X509Certificate is not base64".into(),
        ),
        (
            "no Meta",
            resigned(&|x| {
                let start = x.find("<ns0:Meta").unwrap();
                let end = x[start..].find("/>").unwrap() + start + 2;
                format!("{}{}", &x[..start], &x[end..])
            })
            .into_bytes(),
            "collateral: NVIDIA RIM: expected one Meta element, found 0".into(),
        ),
        (
            "no colloquial version",
            resigned(&|x| x.replace("colloquialVersion=\"550.90.07\"", "")).into_bytes(),
            "collateral: NVIDIA RIM: Meta has no colloquialVersion".into(),
        ),
        (
            "a resource that is not a measurement",
            resigned(&|x| x.replacen("type=\"Measurement\"", "type=\"Opaque\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: a Resource of type \"Opaque\", expected \"Measurement\"".into(),
        ),
        (
            "an index beyond 253",
            resigned(&|x| x.replacen("index=\"0\"", "index=\"254\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: a Resource index \"254\", expected 0 to 253".into(),
        ),
        (
            "an active flag that is neither True nor False",
            resigned(&|x| x.replacen("active=\"True\"", "active=\"true\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: measurement index 7: active is \"true\", expected True or False".into(),
        ),
        (
            "a size other than 48",
            resigned(&|x| x.replacen("size=\"48\"", "size=\"32\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: measurement index 0: size is \"32\", expected 48".into(),
        ),
        (
            "no alternatives",
            resigned(&|x| x.replacen("alternatives=\"1\"", "alternatives=\"0\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: measurement index 0: alternatives is \"0\", expected 1 to 16".into(),
        ),
        (
            "fewer values than alternatives",
            resigned(&|x| x.replacen("alternatives=\"1\"", "alternatives=\"2\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: measurement index 0: no Hash1 (SHA-384) of 2 alternatives".into(),
        ),
        (
            "a value that is not SHA-384 hex",
            resigned(&|x| x.replacen(&"00".repeat(48), &"00".repeat(32), 1)).into_bytes(),
            "collateral: NVIDIA RIM: measurement index 0: Hash0 is not 48 bytes of hex".into(),
        ),
        (
            "a value outside the hash namespace",
            resigned(&|x| x.replacen("ns2:Hash0", "Hash0", 1)).into_bytes(),
            "collateral: NVIDIA RIM: measurement index 0: no Hash0 (SHA-384) of 1 alternatives".into(),
        ),
        (
            "an index listed twice",
            resigned(&|x| x.replacen("index=\"1\"", "index=\"0\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: two Resources for measurement index 0".into(),
        ),
        (
            "an empty payload",
            resigned(&|x| {
                let start = x.find("<ns0:Resource").unwrap();
                let end = x.find("</ns0:Payload>").unwrap();
                format!("{}{}", &x[..start], &x[end..])
            })
            .into_bytes(),
            "collateral: NVIDIA RIM: no measurements in its Payload".into(),
        ),
        (
            "a document element outside the SWID namespace",
            resigned(&|x| x.replacen("<SoftwareIdentity xmlns=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\"", "<SoftwareIdentity xmlns=\"urn:other\"", 1)).into_bytes(),
            "collateral: NVIDIA RIM: the document element is {urn:other}SoftwareIdentity, expected a SWID SoftwareIdentity".into(),
        ),
    ];
    assert!(cases.len() >= 35, "{}", cases.len());
    for (name, xml, want) in cases {
        let e = rim::verify(&xml, &anchors, at(NOW))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&want), "{name}: expected {want:?}, got {e:?}");
    }
    // Outside the chain's validity (rcgen's certificates start in 1975).
    let e = rim::verify(good.as_bytes(), &anchors, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("certificate RIM signer (L4) (CN=test RIM signer (L4)) is not valid at"),
        "{e}"
    );
}

#[test]
fn every_truncation_and_many_byte_changes_of_a_rim_are_errors_not_panics() {
    let s = rims();
    let anchors = s.signer.anchors();
    let good = s.vbios.into_bytes();
    for len in (0..good.len()).step_by(97) {
        assert!(rim::verify(&good[..len], &anchors, at(NOW)).is_err());
    }
    for i in (0..good.len()).step_by(89) {
        let mut changed = good.clone();
        changed[i] ^= 0x20;
        // A flipped case in whitespace-insensitive base64 or a changed
        // byte of a comment may still verify; nothing may panic.
        let _ = rim::verify(&changed, &anchors, at(NOW));
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_rims_signing_chain_is_checked_against_ocsp_answers_from_its_issuers() {
    let r = report();
    let signer = SimRimSigner::new().unwrap();
    let rims = signer.rims_for(&r).unwrap();
    let ids: Vec<&String> = rims.keys().collect();
    assert_eq!(
        ids,
        [
            "NV_GPU_DRIVER_GH100_550.90.07",
            "NV_GPU_VBIOS_1010_0200_882_96009F0001"
        ]
    );
    let driver = check(&rims[ids[0]].rim, &signer.anchors()).unwrap();
    let verdicts = driver
        .check_revocation(&signer.ocsp_good(at(NOW) - 3600).unwrap(), at(NOW))
        .unwrap();
    let signers: Vec<&str> = verdicts.iter().map(|v| v.signer.as_str()).collect();
    assert_eq!(
        signers,
        [
            "CN=test reference value CA (L3)",
            "CN=test reference value CA (L2)",
            "CN=test CoRIM root"
        ]
    );
    let other = SimRimSigner::new().unwrap();
    let e = driver
        .check_revocation(&other.ocsp_good(at(NOW) - 3600).unwrap(), at(NOW))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "invalid signature: OCSP response (by its responder)");
    let e = driver
        .check_revocation(&signer.ocsp_good(at(NOW) - 3600).unwrap()[..2], at(NOW))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "unsupported OCSP responses: expected 3 (for the RIM signer (L4), NVIDIA reference value CA (L3), NVIDIA reference value CA (L2)), found 2"
    );
}
