//! OHTTP key configurations and encapsulated requests, as the enclave receives them.
#![no_main]
use kokon_seal::{KeyConfig, ServerKey, Suite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = KeyConfig::parse(data, None);
    let key = ServerKey::derive(1, Suite::Aes256Gcm, &[7; 32]);
    if let Ok((_, ctx)) = key.decapsulate(data) {
        let _ = ctx.encapsulate(b"response");
    }
});
