//! KServe inference bodies as the enclave decrypts them, with the binary
//! tensor data extension: the first two bytes choose the JSON header's
//! length (`Inference-Header-Content-Length`; 0xffff: none), the rest is the
//! body. Decoding must refuse, never panic; what decodes encodes back to a
//! body that decodes to the same request.
#![no_main]
use kokon_wire::kserve::{InferRequest, InferResponse, TensorData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((length, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let length = match u16::from_be_bytes(*length) {
        0xffff => None,
        n => Some(usize::from(n)),
    };
    if let Ok(request) = InferRequest::decode(body, length) {
        let encoded = request.encode().expect("a decoded request encodes");
        let again = InferRequest::decode(&encoded.body, encoded.header_length)
            .expect("an encoded request decodes");
        // JSON numbers may move by a rounding step (serde_json's default
        // float parsing); everything else comes back as it was.
        assert_eq!(again.inputs.len(), request.inputs.len());
        for (a, b) in again.inputs.iter().zip(&request.inputs) {
            assert_eq!((&a.name, &a.shape, a.datatype), (&b.name, &b.shape, b.datatype));
            match (&a.data, &b.data) {
                (TensorData::Binary(x), TensorData::Binary(y)) => assert_eq!(x, y),
                (TensorData::Json(x), TensorData::Json(y)) => assert_eq!(x.len(), y.len()),
                _ => panic!("a tensor changed encoding"),
            }
        }
        assert_eq!(again.binary_output, request.binary_output);
        for input in &request.inputs {
            let _ = input.values::<f32>();
            let _ = input.clone().into_encoding(kokon_wire::kserve::Encoding::Json);
            let _ = request.output_encoding(&input.name);
        }
    }
    if let Ok(response) = InferResponse::decode(body, length) {
        let encoded = response.encode().expect("a decoded response encodes");
        assert!(InferResponse::decode(&encoded.body, encoded.header_length).is_ok());
    }
});
