//! Attestation bundle JSON, then its verification under no trusted root.
#![no_main]
use kokon_attestation::{verify_bundle, AttestationBundle, TrustAnchors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = AttestationBundle::from_json(data) {
        let _ = verify_bundle(&bundle, &TrustAnchors::default(), 1_780_000_000);
    }
});
