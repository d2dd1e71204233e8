//! Host <-> enclave frames, read by both sides.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else { return };
    rt.block_on(async {
        let _ = kokon_wire::Request::read(&mut &data[..]).await;
        let _ = kokon_wire::Response::read(&mut &data[..]).await;
    });
});
