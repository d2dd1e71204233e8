//! The host's parser of the kokon-payer header (untrusted, before any check).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = kokon_billing::payer::PayerProof::from_header(data) {
        // Strict: only the canonical encoding parses.
        assert_eq!(proof.to_header().as_bytes(), data);
    }
});
