//! Host <-> enclave frames, read by both sides: the pure decoder, no
//! runtime per input; whatever decodes encodes back to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((request, used)) = kokon_wire::Request::decode(data) {
        assert!(used <= data.len());
        let again = request.encode().expect("a decoded request encodes");
        assert_eq!(kokon_wire::Request::decode(&again).ok(), Some((request, again.len())));
    }
    if let Ok((response, used)) = kokon_wire::Response::decode(data) {
        assert!(used <= data.len());
        let again = response.encode().expect("a decoded response encodes");
        assert_eq!(kokon_wire::Response::decode(&again).ok(), Some((response, again.len())));
    }
});
