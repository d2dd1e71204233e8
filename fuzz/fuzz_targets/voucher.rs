//! Vouchers as the host receives them from clients (`POST /v1/voucher`).
#![no_main]
use kokon_wire::billing::VoucherJson;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<VoucherJson>(data) {
        if let Ok(state) = json.state() {
            let _ = state.verify(&[7; 32], 1);
        }
    }
});
