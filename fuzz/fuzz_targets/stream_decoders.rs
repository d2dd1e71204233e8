//! Streamed answers as the client receives them from the (untrusted) host:
//! chunked OHTTP response bytes, the streamed Binary HTTP inside and the
//! Server-Sent Events inside that, fed in arbitrary splits. Decoding must
//! refuse, never panic.
#![no_main]
use kokon_seal::chunked::encapsulate_chunked;
use kokon_seal::{ServerKey, Suite};
use kokon_wire::bhttp_stream::ResponseDecoder;
use kokon_wire::openai::SseDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b).max(1));
    let mut decoder = ResponseDecoder::default();
    for piece in data.chunks(split) {
        if decoder.push(piece).is_err() {
            break;
        }
    }
    let _ = decoder.finish();
    let mut events = SseDecoder::default();
    for piece in data.chunks(split) {
        if events.push(piece).is_err() {
            break;
        }
    }
    let _ = events.finish();
    let key = ServerKey::derive(1, Suite::Aes256Gcm, &[7; 32]);
    if let Ok((_, mut client)) = encapsulate_chunked(key.config(), b"request") {
        for piece in data.chunks(split) {
            if client.push(piece).is_err() {
                return;
            }
        }
        let _ = client.finish();
    }
});
