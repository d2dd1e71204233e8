//! NVIDIA GPU attestation reports on arbitrary bytes: parsing, the field
//! explanation, and verification with a real H100 chain (so that a report
//! that parses reaches the chain, signature and appraisal paths); the same
//! bytes read as a certificate chain text.
#![no_main]
use kokon_attestation::explain::nvidia_report;
use kokon_attestation::nvidia::{verify, Expectations, GpuChain, Report};
use kokon_attestation::roots::nvidia_device_root;
use kokon_attestation::TrustAnchors;
use libfuzzer_sys::fuzz_target;

const CHAIN: &[u8] =
    include_bytes!("../../../shared/fixtures/nvidia/trustee_hopper_cert_chain_case1.txt");
/// 2026-11-27T00:00:00Z.
const NOW: i64 = 1_795_737_600;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = Report::parse(data) {
        let _ = nvidia_report(&report);
    }
    let anchors = TrustAnchors {
        roots: nvidia_device_root().into_iter().collect(),
    };
    let _ = verify(data, CHAIN, &anchors, NOW, &Expectations::default());
    let _ = GpuChain::verify(data, &anchors, NOW);
});
