//! Receipt headers, as the client receives them; a receipt that decodes
//! encodes to a header that decodes to the same receipt.
#![no_main]
use kokon_billing::{Expected, SignedReceipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SignedReceipt::from_header(data) {
        assert_eq!(SignedReceipt::from_header(&r.to_header()).as_ref(), Ok(&r));
        let expected = Expected {
            key: [1; 32],
            request_digest: [0; 32],
            response_digest: [0; 32],
            model_digest: [0; 32],
            units: 1,
            output_units: 0,
            channel_id: 0,
            max_price: kokon_billing::Price {
                per_unit: u128::MAX,
                per_output_unit: u128::MAX,
            },
        };
        let _ = r.verify(&expected);
    }
});
