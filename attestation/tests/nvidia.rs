#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! NVIDIA GPU attestation reports from real H100s (Trustee's test data):
//! both verify with their own chains under the pinned NVIDIA root, the
//! parsed values equal the claims a reference verifier extracted, and a
//! catalogue of named mutations each trips the check it names. A synthetic
//! hierarchy (the real report re-signed under a test root) reaches the
//! checks after the signature that real evidence cannot be altered to trip.

mod common;

use std::collections::BTreeMap;

use common::{at, fixture};
use kokon_attestation::explain::nvidia_report;
use kokon_attestation::nvidia::{
    evidence_digest, gpu_nonce, read_chain, verify, Expectations, Report,
};
use kokon_attestation::pki::{pem_certificates, TrustAnchor};
use kokon_attestation::roots::{
    amd_ark, intel_sgx_root, nvidia_device_root, AmdProduct, NVIDIA_DEVICE_ROOT,
};
use kokon_attestation::sim::gpu::{tcb_info, SHA384};
use kokon_attestation::sim::{pem_encode, SimGpu};
use kokon_attestation::{Error, TrustAnchors};
use serde_json::Value;
use sha2::{Digest, Sha384};

/// The verification time: inside every certificate's validity (to 9999).
const NOW: &str = "2026-11-27T00:00:00Z";
/// The nonces of the two reports' requests (as Trustee's tests send them).
const NONCE1: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const NONCE_COCO: &str = "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec";

// Offsets in the first report (64 blocks of 55 bytes, 422 bytes of opaque data).
const REQ_NONCE: usize = 4;
const SLOT: usize = 36;
const RESP: usize = 37;
const COUNT: usize = 41;
const RECORD_LEN: usize = 42;
const RECORD: usize = 45;
const BLOCK: usize = 55;
const RESP_NONCE: usize = 3565;
const OPAQUE_LEN: usize = 3597;
const OPAQUE: usize = 3599;
const SIGNATURE: usize = 4021;
const REPORT_LEN: usize = 4117;

fn hex_fixture(name: &str) -> Vec<u8> {
    hex::decode(String::from_utf8(fixture(name)).unwrap().trim()).unwrap()
}

fn report1() -> Vec<u8> {
    hex_fixture("nvidia/trustee_hopperAttestationReport.txt")
}

/// The CoCo report without the NUL byte that follows its signature in the
/// fixture (see `the_coco_fixture_as_published_has_a_trailing_nul`).
fn coco_report() -> Vec<u8> {
    let mut report = hex_fixture("nvidia/trustee_hopper_coco_report1.txt");
    assert_eq!(report.pop(), Some(0));
    report
}

fn chain1() -> Vec<u8> {
    fixture("nvidia/trustee_hopper_cert_chain_case1.txt")
}

fn coco_chain() -> Vec<u8> {
    fixture("nvidia/trustee_hopper_coco_certs1.txt")
}

fn nvidia() -> TrustAnchors {
    TrustAnchors {
        roots: vec![nvidia_device_root().unwrap()],
    }
}

fn nonce(text: &str) -> [u8; 32] {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn claims() -> Value {
    serde_json::from_slice(&fixture(
        "nvidia/trustee_hopperAttestationReport-claims.txt",
    ))
    .unwrap()
}

/// Expectations taken from the reference claims: every measurement pinned,
/// the driver and VBIOS versions allowed, the driver version as the minimum.
fn claims_expectations() -> Expectations {
    let claims = claims();
    let config = &claims["config"];
    let driver = config["driver_version"].as_str().unwrap().to_string();
    Expectations {
        nonce: nonce(NONCE1),
        measurements: claims["measurements"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(i, v)| {
                (
                    i.parse().unwrap(),
                    hex::decode(v.as_str().unwrap()).unwrap(),
                )
            })
            .collect(),
        driver_versions: vec![driver.clone()],
        min_driver_version: Some(driver),
        vbios_versions: vec![config["vbios_version"].as_str().unwrap().to_string()],
    }
}

#[test]
fn the_embedded_root_is_the_published_nvidia_root() {
    let root = nvidia_device_root().unwrap();
    assert_eq!(root.name, NVIDIA_DEVICE_ROOT);
    let published = pem_certificates(&fixture("nvidia/nvidia_device_root.pem")).unwrap();
    assert_eq!(published, vec![root.der.clone()]);
    for chain in [chain1(), coco_chain()] {
        assert_eq!(read_chain(&chain).unwrap().last(), Some(&root.der));
    }
}

#[test]
fn the_hopper_report_verifies_and_equals_the_reference_claims() {
    let report = report1();
    assert_eq!(report.len(), REPORT_LEN);
    let chain = chain1();
    let v = verify(&report, &chain, &nvidia(), at(NOW), &claims_expectations()).unwrap();
    let claims = claims();
    let config = claims["config"].as_object().unwrap();

    assert_eq!(v.driver_version(), "550.90.07");
    assert_eq!(v.driver_version(), config["driver_version"]);
    assert_eq!(v.vbios_version(), "96.00.9f.00.01");
    assert_eq!(v.vbios_version(), config["vbios_version"]);
    assert_eq!(hex::encode(v.fwid()), config["fwid"]);
    assert_eq!(v.nonce(), &nonce(NONCE1));
    let expected: BTreeMap<u8, String> = claims["measurements"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(i, m)| (i.parse().unwrap(), m.as_str().unwrap().to_string()))
        .collect();
    let found: BTreeMap<u8, String> = v
        .measurements()
        .into_iter()
        .map(|(i, m)| (i, hex::encode(m)))
        .collect();
    assert_eq!(found.len(), 64);
    assert_eq!(found, expected);

    // Every opaque field, named and shown as the reference verifier does.
    let opaque = &v.report.response.opaque;
    let mut names: Vec<&str> = opaque.fields.iter().map(|f| f.name()).collect();
    names.sort_unstable();
    let mut claim_names: Vec<&str> = config.keys().map(String::as_str).collect();
    claim_names.sort_unstable();
    assert_eq!(names, claim_names);
    for field in &opaque.fields {
        if field.name() == "measurement_count" {
            continue;
        }
        assert_eq!(config[field.name()], field.value(), "{}", field.name());
    }
    let counts = opaque.measurement_counts().unwrap();
    assert_eq!(counts.len(), 64);
    for (index, count) in (1..).zip(&counts) {
        assert_eq!(
            config["measurement_count"][index.to_string()],
            *count,
            "count {index}"
        );
    }

    assert_eq!(v.anchor, NVIDIA_DEVICE_ROOT);
    let subjects = v.chain_subjects();
    assert_eq!(subjects.len(), 5);
    assert!(
        subjects[0].contains("CN=GH100 A01 GSP FMC LF"),
        "{subjects:?}"
    );
    assert!(
        subjects[1].contains("CN=GH100 A01 GSP BROM"),
        "{subjects:?}"
    );
    assert!(
        subjects[4].contains("CN=NVIDIA Device Identity CA"),
        "{subjects:?}"
    );
    let mut digest = Sha384::new();
    digest.update(&report);
    digest.update(&chain);
    assert_eq!(v.evidence_digest, <[u8; 48]>::from(digest.finalize()));
    assert_eq!(v.evidence_digest, evidence_digest(&report, &chain));
}

#[test]
fn the_coco_report_verifies_with_its_own_chain() {
    let expect = Expectations {
        nonce: nonce(NONCE_COCO),
        min_driver_version: Some("580".into()),
        ..Expectations::default()
    };
    let v = verify(&coco_report(), &coco_chain(), &nvidia(), at(NOW), &expect).unwrap();
    assert_eq!(v.driver_version(), "580.95.05");
    assert_eq!(v.vbios_version(), "96.00.74.00.1a");
    assert_eq!(
        hex::encode(v.fwid()),
        "f1ae7d0093a3f5689cced58045c9744f94eb2aa4ddca88135197fb41a7be45576c2881cf920e2cbcc090b1cb921f7b2d"
    );
    assert_eq!(v.measurements().len(), 64);
    let opaque = &v.report.response.opaque;
    assert_eq!(opaque.get(34).unwrap().value(), "1");
    assert_eq!(opaque.get(36).unwrap().value(), "SPT");
    assert!(v.chain_subjects()[0].contains("7BC23E44C689A774F1C5EC86E2C7B2544FFA8989"));
    // Signed by this GPU, not by the first report's.
    let e = verify(&coco_report(), &chain1(), &nvidia(), at(NOW), &expect).unwrap_err();
    assert!(matches!(e, Error::BadSignature { .. }), "{e}");
}

/// The CoCo fixture ends with one NUL byte after the signature. NVIDIA's
/// own verifiers reject it as published (the attestation SDK rejects bytes
/// after the response; nvtrust takes the last 96 bytes as the signature):
/// so does kokon, which accepts no unsigned trailing bytes.
#[test]
fn the_coco_fixture_as_published_has_a_trailing_nul() {
    let published = hex_fixture("nvidia/trustee_hopper_coco_report1.txt");
    let expect = Expectations {
        nonce: nonce(NONCE_COCO),
        ..Expectations::default()
    };
    let e = verify(&published, &coco_chain(), &nvidia(), at(NOW), &expect).unwrap_err();
    assert_eq!(
        e,
        Error::TrailingBytes {
            what: "NVIDIA GPU attestation report (after the SPDM signature)",
            extra: 1
        }
    );
}

#[test]
fn explain_names_every_field() {
    let report = Report::parse(&report1()).unwrap();
    let fields = nvidia_report(&report);
    // request (4), slot and count (2), 64 blocks, responder nonce, 14 opaque fields, signature.
    assert_eq!(fields.len(), 4 + 2 + 64 + 1 + 14 + 1);
    let value = |name: &str| {
        fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.clone())
            .unwrap_or_else(|| panic!("no field {name}"))
    };
    assert_eq!(value("request nonce"), NONCE1);
    assert_eq!(value("driver_version"), "550.90.07");
    assert_eq!(value("vbios_version"), "96.00.9f.00.01");
    assert_eq!(value("project"), "1010");
    assert_eq!(
        value("measurement index 2"),
        format!(
            "{} (mutable firmware)",
            claims()["measurements"]["2"].as_str().unwrap()
        )
    );
    assert!(fields.iter().all(|f| !f.meaning.is_empty()));
}

// ------------------------------------------------- negative catalogue ----

struct Case {
    report: Vec<u8>,
    chain: Vec<u8>,
    anchors: TrustAnchors,
    now: i64,
    expect: Expectations,
}

fn base() -> Case {
    Case {
        report: report1(),
        chain: chain1(),
        anchors: nvidia(),
        now: at(NOW),
        expect: claims_expectations(),
    }
}

fn run(c: &Case) -> Result<(), Error> {
    verify(&c.report, &c.chain, &c.anchors, c.now, &c.expect).map(|_| ())
}

fn flip(bytes: &mut [u8], offset: usize) {
    bytes[offset] ^= 0x01;
}

/// Offset of block `k` (0-based) in the first report.
fn block(k: usize) -> usize {
    RECORD + BLOCK * k
}

/// Offset of the opaque field of type `id` (its DataType) in `report`.
fn opaque_field(report: &[u8], id: u16) -> usize {
    let mut at = OPAQUE;
    while at < SIGNATURE {
        let kind = u16::from_le_bytes([report[at], report[at + 1]]);
        if kind == id {
            return at;
        }
        at += 4 + usize::from(u16::from_le_bytes([report[at + 2], report[at + 3]]));
    }
    panic!("no opaque field {id}")
}

fn set_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

fn anchors(roots: Vec<TrustAnchor>) -> TrustAnchors {
    TrustAnchors { roots }
}

type NvCase = (&'static str, fn(&mut Case), &'static str);

fn cases() -> Vec<NvCase> {
    vec![
        // Certificate chains.
        (
            "case 2: only the root",
            |c| c.chain = fixture("nvidia/trustee_hopper_cert_chain_case2.txt"),
            "unsupported NVIDIA GPU certificate chain length: expected 5 certificates (GPU attestation key (FMC leaf), GPU device identity (BROM), NVIDIA provisioner CA, NVIDIA GPU architecture CA, NVIDIA Device Identity CA), found 1",
        ),
        (
            "case 3: no provisioner CA",
            |c| c.chain = fixture("nvidia/trustee_hopper_cert_chain_case3.txt"),
            "certificate GPU device identity (BROM) (serialNumber=41431D480FE5E87274, C=US, O=NVIDIA Corporation, CN=GH100 A01 GSP BROM): issuer CN=NVIDIA GH100 Provisioner ICA 1, O=NVIDIA Corporation, C=US does not match the next certificate's subject CN=NVIDIA GH100 Identity, O=NVIDIA Corporation",
        ),
        (
            "case 4: no attestation certificate",
            |c| c.chain = fixture("nvidia/trustee_hopper_cert_chain_case4.txt"),
            "NVIDIA GPU certificate chain length: expected 5 certificates",
        ),
        (
            "chain anchored in AMD's Milan ARK only",
            |c| c.anchors = anchors(vec![amd_ark(AmdProduct::Milan).unwrap()]),
            "certificate chain is not anchored in a trusted root: expected one of [amd-ark-milan sha256:69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd], found CN=NVIDIA Device Identity CA, O=NVIDIA sha256:102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48",
        ),
        (
            "chain anchored in Intel's root only",
            |c| c.anchors = anchors(vec![intel_sgx_root().unwrap()]),
            "expected one of [intel-sgx-root sha256:44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3], found CN=NVIDIA Device Identity CA",
        ),
        (
            "no trust anchor at all",
            |c| c.anchors = anchors(vec![]),
            "expected one of [], found CN=NVIDIA Device Identity CA",
        ),
        (
            "chain given root first",
            |c| {
                let mut certs = read_chain(&c.chain).unwrap();
                certs.reverse();
                c.chain = certs.iter().map(|d| pem_encode(d)).collect::<String>().into_bytes();
            },
            "certificate NVIDIA Device Identity CA (serialNumber=53C22BA15E5D68088282DA074ED9FB37AA585771, C=US, O=NVIDIA Corporation, CN=GH100 A01 GSP FMC LF): issuer is not a CA (basicConstraints cA is false or absent)",
        ),
        (
            "now before the attestation certificate's notBefore",
            |c| c.now = at("2020-01-01T00:00:00Z"),
            "certificate GPU attestation key (FMC leaf) (serialNumber=53C22BA15E5D68088282DA074ED9FB37AA585771, C=US, O=NVIDIA Corporation, CN=GH100 A01 GSP FMC LF) is not valid at Jan  1 00:00:00 2020 +00:00: valid from Oct 17 00:00:00 2020 +00:00 to Dec 31 23:59:59 9999 +00:00",
        ),
        (
            "now before the provisioner CA's notBefore",
            |c| c.now = at("2021-06-01T00:00:00Z"),
            "certificate NVIDIA provisioner CA (CN=NVIDIA GH100 Provisioner ICA 1, O=NVIDIA Corporation, C=US) is not valid at Jun  1 00:00:00 2021 +00:00: valid from Mar  1 00:00:00 2022 +00:00 to Dec 31 23:59:59 9999 +00:00",
        ),
        (
            "the other device's chain",
            |c| c.chain = coco_chain(),
            "invalid signature: NVIDIA GPU attestation report (SPDM transcript, ECDSA P-384) by the attestation key",
        ),
        (
            "empty chain",
            |c| c.chain.clear(),
            "certificate GPU attestation key (FMC leaf) (?): empty certificate chain",
        ),
        (
            "chain text that is not PEM",
            |c| c.chain = b"MIIDfTCCAwKgAwIBAgIU".to_vec(),
            "NVIDIA GPU certificate chain: malformed PEM at byte 0: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"MIIDfTCCAwKgAwIBAgIU\"",
        ),
        (
            "chain with CRLF line ends",
            |c| c.chain = String::from_utf8(c.chain.clone()).unwrap().replace('\n', "\r\n").into_bytes(),
            "NVIDIA GPU certificate chain: malformed PEM at byte 0: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"-----BEGIN CERTIFICATE-----\\r\\n",
        ),
        (
            "chain with text after the last certificate",
            |c| c.chain.extend_from_slice(b"\nextra"),
            "NVIDIA GPU certificate chain: malformed PEM at byte 4826: expected \"-----BEGIN CERTIFICATE-----\\n\", found \"extra\"",
        ),
        // Signature over the transcript.
        (
            "flipped signature byte",
            |c| flip(&mut c.report, SIGNATURE + 10),
            "invalid signature: NVIDIA GPU attestation report",
        ),
        (
            "flipped byte of a measurement digest",
            |c| flip(&mut c.report, block(4) + 20),
            "invalid signature: NVIDIA GPU attestation report",
        ),
        (
            "flipped byte of the driver version",
            |c| {
                let at = opaque_field(&c.report, 3);
                flip(&mut c.report, at + 4);
            },
            "invalid signature: NVIDIA GPU attestation report",
        ),
        (
            "flipped byte of the request nonce",
            |c| flip(&mut c.report, REQ_NONCE + 3),
            "invalid signature: NVIDIA GPU attestation report",
        ),
        (
            "flipped byte of the responder nonce",
            |c| flip(&mut c.report, RESP_NONCE + 31),
            "invalid signature: NVIDIA GPU attestation report",
        ),
        // Freshness.
        (
            "another nonce expected",
            |c| c.expect.nonce = [0x5a; 32],
            "GPU attestation nonce (GET_MEASUREMENTS request) mismatch: expected 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a, found 931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb",
        ),
        // Truncation inside each field.
        (
            "empty report",
            |c| c.report.clear(),
            "truncated SPDM GET_MEASUREMENTS request: SPDMVersion: needed 1 bytes at offset 0, 0 available",
        ),
        (
            "truncated in the request nonce",
            |c| c.report.truncate(20),
            "truncated SPDM GET_MEASUREMENTS request: Nonce: needed 32 bytes at offset 4, 16 available",
        ),
        (
            "truncated before the slot ID",
            |c| c.report.truncate(SLOT),
            "truncated SPDM GET_MEASUREMENTS request: SlotIDParam: needed 1 bytes at offset 36, 0 available",
        ),
        (
            "truncated in the response header",
            |c| c.report.truncate(40),
            "truncated SPDM MEASUREMENTS response: Param2: needed 1 bytes at offset 40, 0 available",
        ),
        (
            "truncated in the record length",
            |c| c.report.truncate(RECORD_LEN + 2),
            "truncated SPDM MEASUREMENTS response: MeasurementRecordLength: needed 3 bytes at offset 42, 2 available",
        ),
        (
            "truncated in the measurement record",
            |c| c.report.truncate(1000),
            "truncated SPDM measurement record: needed 3520 bytes at offset 45, 955 available",
        ),
        (
            "truncated in the responder nonce",
            |c| c.report.truncate(RESP_NONCE + 15),
            "truncated SPDM MEASUREMENTS response: Nonce: needed 32 bytes at offset 3565, 15 available",
        ),
        (
            "truncated in the opaque length",
            |c| c.report.truncate(OPAQUE_LEN + 1),
            "truncated SPDM MEASUREMENTS response: OpaqueLength: needed 2 bytes at offset 3597, 1 available",
        ),
        (
            "truncated in the opaque data",
            |c| c.report.truncate(OPAQUE + 101),
            "truncated SPDM MEASUREMENTS response: OpaqueData: needed 422 bytes at offset 3599, 101 available",
        ),
        (
            "truncated in the signature",
            |c| c.report.truncate(REPORT_LEN - 17),
            "truncated SPDM MEASUREMENTS response: Signature: needed 96 bytes at offset 4021, 79 available",
        ),
        (
            "one byte after the signature",
            |c| c.report.push(0),
            "1 trailing bytes after NVIDIA GPU attestation report (after the SPDM signature)",
        ),
        // Request.
        (
            "request SPDM version 1.0",
            |c| c.report[0] = 0x10,
            "unsupported SPDM GET_MEASUREMENTS request: SPDMVersion: expected 0x11 (SPDM 1.1), found 0x10",
        ),
        (
            "request code GET_CERTIFICATE",
            |c| c.report[1] = 0x82,
            "unsupported SPDM GET_MEASUREMENTS request: RequestResponseCode: expected 0xe0 (GET_MEASUREMENTS), found 0x82",
        ),
        (
            "no signature requested",
            |c| c.report[2] = 0x00,
            "unsupported SPDM GET_MEASUREMENTS request: Param1 (attributes): expected 0x01 (signature requested), found 0x00",
        ),
        (
            "one block requested",
            |c| c.report[3] = 0x01,
            "unsupported SPDM GET_MEASUREMENTS request: Param2 (operation): expected 0xff (all measurement blocks), found 0x01",
        ),
        (
            "slot ID 8",
            |c| c.report[SLOT] = 8,
            "unsupported SPDM GET_MEASUREMENTS request: SlotIDParam: expected a slot ID from 0 to 7, found 8",
        ),
        (
            "response from another slot",
            |c| c.report[SLOT] = 1,
            "SPDM slot ID (MEASUREMENTS Param2 vs GET_MEASUREMENTS SlotIDParam) mismatch: expected 1, found 0",
        ),
        // Response header.
        (
            "response SPDM version 1.2",
            |c| c.report[RESP] = 0x12,
            "unsupported SPDM MEASUREMENTS response: SPDMVersion: expected 0x11 (SPDM 1.1), found 0x12",
        ),
        (
            "response code ERROR",
            |c| c.report[RESP + 1] = 0x7f,
            "unsupported SPDM MEASUREMENTS response: RequestResponseCode: expected 0x60 (MEASUREMENTS), found 0x7f",
        ),
        (
            "response Param1 set",
            |c| c.report[RESP + 2] = 0x40,
            "unsupported SPDM MEASUREMENTS response: Param1: expected 0x00 (reserved when all blocks are requested), found 0x40",
        ),
        (
            "no blocks",
            |c| c.report[COUNT] = 0,
            "unsupported SPDM NumberOfBlocks: expected 1 to 255 (all blocks were requested), found 0",
        ),
        (
            "one block more than the record holds",
            |c| c.report[COUNT] = 65,
            "SPDM NumberOfBlocks (vs the blocks in MeasurementRecordLength) mismatch: expected 64 (the blocks that fill MeasurementRecordLength 3520), found 65",
        ),
        (
            "one block fewer than the record holds",
            |c| c.report[COUNT] = 63,
            "SPDM MeasurementRecordLength (vs its NumberOfBlocks blocks) mismatch: expected 3465 bytes, found 3520 bytes",
        ),
        (
            "record length one byte longer",
            |c| c.report[RECORD_LEN] += 1,
            "SPDM MeasurementRecordLength (vs its NumberOfBlocks blocks) mismatch: expected 3520 bytes, found 3521 bytes",
        ),
        (
            "record length one byte shorter",
            |c| c.report[RECORD_LEN] -= 1,
            "truncated SPDM measurement block: Measurement: needed 51 bytes at offset 3469, 50 available",
        ),
        // Measurement blocks.
        (
            "block size one more than its DMTF value",
            |c| c.report[block(0) + 2] = 52,
            "unsupported SPDM MeasurementSize: expected 3 + DMTFSpecMeasurementValueSize = 51, found 52 (block index 1)",
        ),
        (
            "DMTF value size one less than the block holds",
            |c| c.report[block(0) + 5] = 47,
            "unsupported SPDM MeasurementSize: expected 3 + DMTFSpecMeasurementValueSize = 50, found 51 (block index 1)",
        ),
        (
            "DMTF value type 5",
            |c| c.report[block(2) + 4] = 0x05,
            "unsupported DMTFSpecMeasurementValueType: expected 0 to 4 (immutable ROM, mutable firmware, hardware configuration, firmware configuration, measurement manifest), found 5 (block index 3)",
        ),
        (
            "raw bit stream instead of a digest",
            |c| c.report[block(2) + 4] = 0x81,
            "unsupported DMTF measurement representation: expected a digest (DMTFSpecMeasurementValueType bit 7 clear), found a raw bit stream, type 0x81 (block index 3)",
        ),
        (
            "not the DMTF measurement specification",
            |c| c.report[block(1) + 1] = 0x02,
            "unsupported SPDM measurement block: MeasurementSpecification: expected 0x01 (DMTF), found 0x02",
        ),
        (
            "duplicate index",
            |c| c.report[block(1)] = 1,
            "unsupported SPDM measurement block index: expected each index at most once, found index 1 in blocks 1 and 2",
        ),
        (
            "index 0",
            |c| c.report[block(7)] = 0,
            "unsupported SPDM measurement block index: expected 1 to 254 (0 and 255 are not block indexes), found 0",
        ),
        (
            "index 255",
            |c| c.report[block(63)] = 255,
            "unsupported SPDM measurement block index: expected 1 to 254 (0 and 255 are not block indexes), found 255",
        ),
        // Opaque data.
        (
            "opaque length above SPDM's limit",
            |c| set_u16(&mut c.report, OPAQUE_LEN, 1025),
            "unsupported SPDM OpaqueLength: expected at most 1024 bytes (SPDM 1.1), found 1025",
        ),
        (
            "opaque length one byte short",
            |c| set_u16(&mut c.report, OPAQUE_LEN, 421),
            "truncated NVIDIA opaque field: Data: needed 1 bytes at offset 421, 0 available",
        ),
        (
            "opaque field overrunning the opaque data",
            |c| set_u16(&mut c.report, OPAQUE + 2, 0xffff),
            "truncated NVIDIA opaque field: Data: needed 65535 bytes at offset 4, 418 available",
        ),
        (
            "opaque field of an undefined type",
            |c| set_u16(&mut c.report, OPAQUE, 26),
            "unsupported NVIDIA opaque field type: expected a type NVIDIA defines (1 to 25, 32 to 36), found 26 (field 1)",
        ),
        (
            "opaque field twice",
            |c| {
                let at = opaque_field(&c.report, 14);
                set_u16(&mut c.report, at, 6);
            },
            "unsupported NVIDIA opaque field type: expected each type at most once, found vbios_version (6) twice",
        ),
        (
            "no driver version",
            |c| {
                let at = opaque_field(&c.report, 3);
                set_u16(&mut c.report, at, 5);
            },
            "unsupported NVIDIA opaque data: expected a driver_version field (type 3), found none",
        ),
        (
            "driver version with a control character",
            |c| {
                let at = opaque_field(&c.report, 3);
                c.report[at + 4] = 0x01;
            },
            "unsupported NVIDIA opaque field data: expected driver_version (3): printable ASCII, then NUL padding, found 10 bytes: 0135302e39302e303700",
        ),
        (
            "VBIOS version of 7 bytes",
            |c| set_u16(&mut c.report, OPAQUE + 2, 7),
            "unsupported NVIDIA opaque field data: expected vbios_version (6): 8 bytes, found 7 bytes: 009f0096010000",
        ),
        (
            "FWID of 47 bytes",
            |c| {
                let at = opaque_field(&c.report, 20);
                set_u16(&mut c.report, at + 2, 47);
            },
            "unsupported NVIDIA opaque field data: expected fwid (20): 48 bytes (SHA-384), found 47 bytes",
        ),
        (
            "measurement counts not a multiple of 4",
            |c| {
                let at = opaque_field(&c.report, 12);
                set_u16(&mut c.report, at + 2, 255);
            },
            "unsupported NVIDIA opaque field data: expected measurement_count (12): a multiple of 4 bytes (little-endian u32 counts), found 255 bytes",
        ),
        // Expectations.
        (
            "pinned measurement differs",
            |c| {
                c.expect.measurements.insert(5, vec![0; 48]);
            },
            "GPU measurement index 5 not accepted: expected 000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000, found 568b89291a34cece03b12aaa352d9afe273610307525b8443e90faa78d82ecfa9c7827d8f7915c35b2fab972e1086686",
        ),
        (
            "pinned index absent",
            |c| {
                c.expect.measurements.insert(65, vec![7; 48]);
            },
            "GPU measurement index 65 not accepted: expected 070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707, found no block with this index",
        ),
        (
            "driver version below the minimum",
            |c| c.expect.min_driver_version = Some("550.90.8".into()),
            "GPU driver version not accepted: expected at least 550.90.8, found 550.90.07",
        ),
        (
            "driver version below a shorter minimum",
            |c| c.expect.min_driver_version = Some("570".into()),
            "GPU driver version not accepted: expected at least 570, found 550.90.07",
        ),
        (
            "driver version not allowed",
            |c| c.expect.driver_versions = vec!["535.104.05".into(), "550.54.15".into()],
            "GPU driver version not accepted: expected one of [535.104.05, 550.54.15], found 550.90.07",
        ),
        (
            "VBIOS version not allowed",
            |c| c.expect.vbios_versions = vec!["96.00.74.00.1a".into()],
            "GPU VBIOS version not accepted: expected one of [96.00.74.00.1a], found 96.00.9f.00.01",
        ),
        (
            "minimum driver version that is not a version",
            |c| c.expect.min_driver_version = Some("r550".into()),
            "unsupported minimum GPU driver version (expectations): expected numbers separated by dots, found r550",
        ),
    ]
}

#[test]
fn genuine_base_verifies() {
    run(&base()).unwrap();
}

#[test]
fn negative_catalogue() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for (name, mutate, expected) in &cases {
        assert!(names.insert(*name), "duplicate case {name}");
        let mut c = base();
        mutate(&mut c);
        match run(&c) {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(e) if e.to_string().contains(expected) => {}
            Err(e) => failures.push(format!("{name}:\n  expected {expected}\n  got      {e}")),
        }
    }
    eprintln!("{} NVIDIA negative cases", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_prefix_of_the_report_is_an_error_not_a_panic() {
    let c = base();
    for len in 0..c.report.len() {
        let e = verify(&c.report[..len], &c.chain, &c.anchors, c.now, &c.expect).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "prefix {len}: {e}");
    }
}

// -------------------------------------------------- synthetic hierarchy --

/// A sim GPU whose leaf has `extension` and a P-384 key (which re-signs
/// the real report) or a P-256 one.
fn synthetic(extension: Option<Vec<u8>>, p384: bool) -> SimGpu {
    SimGpu::with_leaf(extension, p384).unwrap()
}

fn real_fwid() -> Vec<u8> {
    hex::decode(claims()["config"]["fwid"].as_str().unwrap()).unwrap()
}

/// Verifies the real report re-signed by `s` (unsigned when it cannot sign).
fn verify_synthetic(s: &SimGpu) -> Result<(), Error> {
    let report = s.resign(&report1()).unwrap_or_else(|_| report1());
    verify(
        &report,
        s.chain_pem().as_bytes(),
        &s.anchors(),
        at(NOW),
        &claims_expectations(),
    )
    .map(|_| ())
}

#[test]
fn a_synthetic_chain_with_the_reports_fwid_verifies() {
    let s = synthetic(Some(tcb_info(&SHA384, &real_fwid())), true);
    verify_synthetic(&s).unwrap();
    // The same chain is no GPU's under NVIDIA's root.
    let e = verify(
        &s.resign(&report1()).unwrap(),
        s.chain_pem().as_bytes(),
        &nvidia(),
        at(NOW),
        &claims_expectations(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("found CN=test GPU root"), "{e}");
}

#[test]
fn the_fwid_must_match_the_attestation_certificate() {
    let mut other = real_fwid();
    other[0] ^= 1;
    let cases: [(&str, Option<Vec<u8>>, &str); 5] = [
        (
            "another FWID",
            Some(tcb_info(&SHA384, &other)),
            "GPU FWID (attestation certificate vs report opaque data) mismatch: expected f4c384aebb579217",
        ),
        (
            "no TcbInfo extension",
            None,
            "certificate GPU attestation key (FMC leaf) (CN=test FMC LF): FWID extension (2.23.133.5.4.1): absent",
        ),
        (
            "FWID hashed with SHA-256",
            Some(tcb_info(&[2, 16, 840, 1, 101, 3, 4, 2, 1], &real_fwid())),
            "FWID extension (2.23.133.5.4.1): the FWID's hashAlg is 2.16.840.1.101.3.4.2.1, expected SHA-384 (2.16.840.1.101.3.4.2.2)",
        ),
        (
            "FWID of 32 bytes",
            Some(tcb_info(&SHA384, &real_fwid()[..32])),
            "FWID extension (2.23.133.5.4.1): the FWID's digest has 32 bytes, expected 48",
        ),
        (
            "extension that is not a SEQUENCE",
            Some(kokon_attestation::der::integer(1)),
            "FWID extension (2.23.133.5.4.1): not a SEQUENCE",
        ),
    ];
    for (name, extension, expected) in cases {
        let e = verify_synthetic(&synthetic(extension, true)).unwrap_err();
        assert!(e.to_string().contains(expected), "{name}: {e}");
    }
}

#[test]
fn the_attestation_key_must_be_p384() {
    let s = synthetic(Some(tcb_info(&SHA384, &real_fwid())), false);
    let e = verify_synthetic(&s).unwrap_err();
    assert!(
        e.to_string().contains(
            "certificate GPU attestation key (FMC leaf) (CN=test FMC LF): public key has 65 bytes, expected an uncompressed P-384 point (97)"
        ),
        "{e}"
    );
}

#[test]
fn a_sim_gpu_signs_the_template_with_the_chosen_nonce() {
    let gpu = SimGpu::for_template(&report1()).unwrap();
    let nonce = gpu_nonce(b"the client's nonce");
    let evidence = gpu.evidence(&report1(), &nonce).unwrap();
    let expect = Expectations {
        nonce,
        ..claims_expectations()
    };
    let chain = evidence.chain_pem.as_bytes();
    let v = verify(&evidence.report, chain, &gpu.anchors(), at(NOW), &expect).unwrap();
    assert_eq!(v.nonce(), &nonce);
    assert_eq!(v.anchor, "sim-gpu-root");
    assert_eq!(v.evidence_digest, evidence.digest());
    // The template's own nonce is no longer the report's.
    let e = verify(
        &evidence.report,
        chain,
        &gpu.anchors(),
        at(NOW),
        &claims_expectations(),
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "GPU attestation nonce (GET_MEASUREMENTS request) mismatch: expected {NONCE1}, found {}",
            hex::encode(nonce)
        )),
        "{e}"
    );
}
