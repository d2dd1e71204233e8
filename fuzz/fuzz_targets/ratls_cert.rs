//! Attested TLS certificates and Intel PCK certificates on arbitrary DER:
//! the evidence extension, the CMW record, the bundle, and the SGX extension.
#![no_main]
use kokon_policies::{LocalReferences, Policy};
use libfuzzer_sys::fuzz_target;

const POLICY: &str = include_str!("../../policies/production-tdx.toml");

fuzz_target!(|data: &[u8]| {
    let _ = kokon_attestation::tdx::pck::parse(data);
    if let Ok(policy) = Policy::from_toml(POLICY, &LocalReferences::default()) {
        let _ = kokon_ratls::verify_certificate(data, &policy, 1_780_000_000);
    }
});
