//! The TDX event log (CCEL) parser and replay on arbitrary bytes.
#![no_main]
use kokon_attestation::eventlog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = eventlog::parse(data) {
        let _ = eventlog::replay(&events);
    }
});
