//! OHTTP key configurations and encapsulated requests, as the enclave
//! receives them; a key configuration that parses encodes to one that parses
//! to the same (the encoding offers only the suite the parser chose).
#![no_main]
use kokon_seal::{KeyConfig, ServerKey, Suite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = KeyConfig::parse(data, None) {
        assert_eq!(KeyConfig::parse(&config.encode(), None), Ok(config));
    }
    let key = ServerKey::derive(1, Suite::Aes256Gcm, &[7; 32]);
    if let Ok((_, ctx)) = key.decapsulate(data) {
        let _ = ctx.encapsulate(b"response");
    }
});
