//! DCAP collateral parsing and verification on arbitrary JSON, against a
//! real quote: signed JSON, CRLs, chains and TCB matching.
#![no_main]
use kokon_attestation::roots::intel_sgx_root;
use kokon_attestation::tdx::{verify_quote_with_collateral, Collateral};
use kokon_attestation::TrustAnchors;
use libfuzzer_sys::fuzz_target;

const QUOTE: &[u8] = include_bytes!("../../../shared/fixtures/tdx/dcapqvl_tdx_quote.dat");

fuzz_target!(|data: &[u8]| {
    if let Ok(collateral) = Collateral::from_json(data) {
        let anchors = TrustAnchors {
            roots: intel_sgx_root().into_iter().collect(),
        };
        let _ = verify_quote_with_collateral(QUOTE, &collateral, &anchors, 1_751_328_000);
    }
});
