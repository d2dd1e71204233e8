//! NVIDIA RIMs on arbitrary bytes: the XML signature's structure, digest
//! and canonical form, the chain under the embedded NVIDIA CoRIM root, and
//! the SWID content, as a client verifies a RIM the host sent; the same
//! bytes as the RIM service's JSON answer.
#![no_main]
use kokon_attestation::nvidia::rim;
use kokon_attestation::roots::nvidia_rim_root;
use kokon_attestation::{xmldsig, TrustAnchors};
use libfuzzer_sys::fuzz_target;

/// 2025-08-21T12:00:00Z.
const NOW: i64 = 1_755_777_600;

fuzz_target!(|data: &[u8]| {
    let anchors = TrustAnchors {
        roots: nvidia_rim_root().into_iter().collect(),
    };
    let _ = rim::verify(data, &anchors, NOW);
    if let Ok(doc) = xmldsig::parse(data, "fuzzed") {
        let _ = xmldsig::canonicalize(doc.root_element(), None);
        let _ = xmldsig::verify_reference(&doc, "fuzzed");
    }
});
