//! TDX quote parsing and verification (signatures, PCK chain) on arbitrary bytes.
#![no_main]
use kokon_attestation::tdx::{quote::Quote, verify_quote};
use kokon_attestation::TrustAnchors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Quote::parse(data);
    let _ = verify_quote(data, &TrustAnchors::default(), 1_780_000_000);
});
