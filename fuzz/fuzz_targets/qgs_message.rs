//! Messages of the TDX Quote Generation Service (from the untrusted host),
//! and TDREPORTs.
#![no_main]
use kokon_attestation::tdx::qgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(prefix) = data.get(..4).and_then(|p| <[u8; 4]>::try_from(p).ok()) {
        let _ = qgs::frame_len(prefix);
    }
    let _ = qgs::parse_get_quote_response(data);
    let _ = qgs::parse_get_quote_request(data);
    let _ = qgs::td_report_data(data);
});
