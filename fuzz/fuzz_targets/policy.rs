//! Policy files.
#![no_main]
use kokon_policies::{LocalReferences, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::from_toml(text, &LocalReferences::default());
    }
});
