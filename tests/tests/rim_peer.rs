#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! kokon's RIM signatures against a peer: signxml (PyPI), the XML
//! signature library NVIDIA's local GPU verifier checks RIMs with. A RIM
//! kokon's sim signer signs verifies in signxml, a RIM signxml signs (the
//! same unsigned SWID tag, the sim signer's key and chain) verifies and
//! appraises in kokon, and a RIM edited after signing fails in both: the
//! canonical form kokon writes is the one another implementation signs.

use std::path::PathBuf;
use std::process::Command;

use kokon_attestation::nvidia::rim;
use kokon_attestation::nvidia::Report;
use kokon_attestation::sim::pem_encode;
use kokon_attestation::sim::rim::{
    references_for, unsigned_rim, SimRimSigner, DRIVER_INDEXES, VBIOS_INDEXES,
};
use kokon_tests::repo_root;

/// 2026-11-27T00:00:00Z.
const NOW: i64 = 1_795_737_600;

fn python() -> PathBuf {
    std::env::var_os("KOKON_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/venv/bin/python"))
}

/// Runs the peer; its stdout, or its stderr as the error.
fn peer(args: &[&str]) -> Result<String, String> {
    let out = Command::new(python())
        .arg(repo_root().join("scripts/rim/signxml_peer.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `just setup`)", python().display()));
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&out.stderr).to_string()),
    }
}

fn report() -> Report {
    let path = repo_root().join("../shared/fixtures/nvidia/trustee_hopperAttestationReport.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    Report::parse(&hex::decode(text.trim()).unwrap()).unwrap()
}

#[test]
fn rim_signatures_verify_across_kokon_and_signxml() {
    let r = report();
    let signer = SimRimSigner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let driver_refs = references_for(&r, &DRIVER_INDEXES);
    let unsigned = unsigned_rim("550.90.07", "GH100", &driver_refs);
    std::fs::write(path("unsigned.xml"), &unsigned).unwrap();
    std::fs::write(path("key.pem"), signer.key_pem().as_bytes()).unwrap();
    std::fs::write(path("chain.pem"), signer.chain_pem()).unwrap();
    std::fs::write(path("signer.pem"), pem_encode(&signer.chain()[0])).unwrap();

    // kokon signs, signxml verifies (all 64 resources are what it signed).
    let ours = signer.sign(&unsigned).unwrap();
    std::fs::write(path("ours.xml"), &ours).unwrap();
    assert_eq!(
        peer(&["verify", &path("ours.xml"), &path("signer.pem")]).unwrap(),
        "64"
    );

    // signxml signs, kokon verifies and appraises the real report.
    peer(&[
        "sign",
        &path("unsigned.xml"),
        &path("key.pem"),
        &path("chain.pem"),
        &path("theirs.xml"),
    ])
    .unwrap();
    let theirs = std::fs::read(path("theirs.xml")).unwrap();
    let anchors = signer.anchors();
    let driver = rim::verify(&theirs, &anchors, NOW).unwrap();
    assert_eq!(driver.active().count(), 21);
    let vbios_refs = references_for(&r, &VBIOS_INDEXES);
    let vbios = signer
        .sign(&unsigned_rim("96.00.9F.00.01", "GH100", &vbios_refs))
        .unwrap();
    let vbios = rim::verify(vbios.as_bytes(), &anchors, NOW).unwrap();
    rim::appraise(&r, &driver, &vbios).unwrap();

    // Edited after signing: both refuse it.
    let digest = hex::encode(r.measurements()[&22]);
    for (name, signed) in [("ours", ours.into_bytes()), ("theirs", theirs)] {
        let edited = String::from_utf8(signed)
            .unwrap()
            .replacen(&digest, &"ab".repeat(48), 1);
        std::fs::write(path("edited.xml"), &edited).unwrap();
        let e = peer(&["verify", &path("edited.xml"), &path("signer.pem")]).unwrap_err();
        assert!(e.contains("Digest mismatch"), "{name}: {e}");
        let e = rim::verify(edited.as_bytes(), &anchors, NOW)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("signed XML document's digest"), "{name}: {e}");
    }
}
