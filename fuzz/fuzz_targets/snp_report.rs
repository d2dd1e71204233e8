//! SEV-SNP report parsing and verification on arbitrary bytes, with a real
//! VCEK so that the chain, TCB-extension and signature paths are reached.
#![no_main]
use kokon_attestation::roots::{amd_ark, AmdProduct};
use kokon_attestation::snp::{verify_report, Report};
use kokon_attestation::TrustAnchors;
use libfuzzer_sys::fuzz_target;

const VCEK: &[u8] = include_bytes!("../../../shared/fixtures/snp/trustee_vcek.der");

fuzz_target!(|data: &[u8]| {
    let _ = Report::parse(data);
    let anchors = TrustAnchors {
        roots: amd_ark(AmdProduct::Milan).into_iter().collect(),
    };
    let _ = verify_report(data, VCEK, &[], &anchors, 1_735_689_600);
});
