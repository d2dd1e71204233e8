//! TDX quote parsing and verification (signatures, PCK chain) on arbitrary
//! bytes; a quote that parses encodes to bytes that parse to the same quote
//! (the encoding drops the zero padding the parser allows).
#![no_main]
use kokon_attestation::tdx::{quote::Quote, verify_quote};
use kokon_attestation::TrustAnchors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = Quote::parse(data) {
        let again = Quote::encode(&quote.header, &quote.body, &quote.signature)
            .expect("a parsed quote encodes");
        assert_eq!(Quote::parse(&again).ok(), Some(quote));
    }
    let _ = verify_quote(data, &TrustAnchors::default(), 1_780_000_000);
});
