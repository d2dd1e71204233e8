#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The client refuses responses whose receipt is forged, missing, or for
//! another request, even when the response itself is correctly sealed. An
//! in-process enclave built from the real parts plays the (misbehaving) server.

use std::io::Cursor;

use bhttp::{Message, Mode, StatusCode};
use kokon_attestation::claims::Claims;
use kokon_attestation::sim::{simulate, SimRoot, SimTd};
use kokon_billing::{digest, ReceiptError, ReceiptSigner, RECEIPT_HEADER};
use kokon_client::{ClientError, VerifiedEnclave};
use kokon_policies::{LocalReferences, Policy};
use kokon_seal::{ServerKey, Suite};

const MRTD: [u8; 48] = [0x42; 48];
const MAGIKA: &str = "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c";

struct FakeEnclave {
    key: ServerKey,
    signer: ReceiptSigner,
    verified: VerifiedEnclave,
}

fn fake_enclave() -> FakeEnclave {
    let now = kokon_client::unix_now();
    let root = SimRoot::generate(now).unwrap();
    let key = ServerKey::derive(1, Suite::Aes256Gcm, &[3; 32]);
    let signer = ReceiptSigner::from_secret(&[4; 32]);
    let claims = Claims {
        kokon_version: "test".into(),
        ohttp_key_config: key.config().encode(),
        receipt_key: signer.public_key(),
        model_name: "magika".into(),
        model_digest: hex::decode(MAGIKA).unwrap().try_into().unwrap(),
        text_model: None,
        config_digest: [1; 32],
        runtime: "test".into(),
        nonce: vec![9; 32],
        issued_at: now,
        gpus: Vec::new(),
        gpu_cc: None,
    };
    let bundle = simulate(
        &root,
        SimTd {
            mr_td: MRTD,
            rtmr: [[0; 48]; 3],
            debug: false,
        },
        claims,
        now,
    )
    .unwrap();
    let policy = Policy::from_toml(
        kokon_tests::DEV_POLICY,
        &LocalReferences {
            sim_root: Some(root.anchor()),
            enclave_build_mrtd: Some(MRTD),
        },
    )
    .unwrap();
    let verified = kokon_client::verify(bundle, &policy, Some(&[9; 32]), now).unwrap();
    FakeEnclave {
        key,
        signer,
        verified,
    }
}

/// Serves one sealed request, letting `receipt` decide what receipt header to attach.
fn answer(
    fake: &FakeEnclave,
    sealed: &[u8],
    receipt: impl Fn(&[u8], &[u8]) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let (plain, ctx) = fake.key.decapsulate(sealed).unwrap();
    Message::read_bhttp(&mut Cursor::new(plain.as_slice())).unwrap();
    let body = br#"{"model_name":"magika","outputs":[]}"#;
    let mut response = Message::response(StatusCode::try_from(200u16).unwrap());
    if let Some(header) = receipt(&plain, body) {
        response.put_header(RECEIPT_HEADER, header);
    }
    response.write_content(body);
    let mut encoded = Vec::new();
    response
        .write_bhttp(Mode::KnownLength, &mut encoded)
        .unwrap();
    ctx.encapsulate(&encoded).unwrap()
}

fn model_digest() -> [u8; 32] {
    hex::decode(MAGIKA).unwrap().try_into().unwrap()
}

#[test]
fn a_genuine_receipt_is_accepted() {
    let fake = fake_enclave();
    let sealed = fake
        .verified
        .seal(
            "POST",
            "/v2/models/magika/infer",
            b"{}",
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let response = answer(&fake, &sealed.bytes, |req, body| {
        Some(
            fake.signer
                .sign_for(digest(req), digest(body), model_digest(), 1, 0)
                .to_header(),
        )
    });
    let opened = fake.verified.open(sealed, &response).unwrap();
    assert_eq!(opened.receipt.receipt.units, 1);
}

#[test]
fn a_forged_receipt_is_rejected() {
    let fake = fake_enclave();
    let forger = ReceiptSigner::from_secret(&[5; 32]);
    let sealed = fake
        .verified
        .seal(
            "POST",
            "/v2/models/magika/infer",
            b"{}",
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let response = answer(&fake, &sealed.bytes, |req, body| {
        Some(
            forger
                .sign_for(digest(req), digest(body), model_digest(), 1, 0)
                .to_header(),
        )
    });
    let err = fake.verified.open(sealed, &response).unwrap_err();
    assert!(
        matches!(err, ClientError::Receipt(ReceiptError::BadSignature { .. })),
        "{err}"
    );
}

#[test]
fn an_inflated_or_misdirected_receipt_is_rejected() {
    let fake = fake_enclave();
    type Case = (&'static str, fn(&FakeEnclave, &[u8], &[u8]) -> Vec<u8>);
    let cases: [Case; 4] = [
        ("units", |f, req, body| {
            f.signer
                .sign_for(digest(req), digest(body), model_digest(), 100, 0)
                .to_header()
        }),
        ("request digest", |f, _, body| {
            f.signer
                .sign_for(
                    digest(b"another request"),
                    digest(body),
                    model_digest(),
                    1,
                    0,
                )
                .to_header()
        }),
        ("response digest", |f, req, _| {
            f.signer
                .sign_for(digest(req), digest(b"another body"), model_digest(), 1, 0)
                .to_header()
        }),
        ("model digest", |f, req, body| {
            f.signer
                .sign_for(digest(req), digest(body), [0; 32], 1, 0)
                .to_header()
        }),
    ];
    for (field, make) in cases {
        let sealed = fake
            .verified
            .seal(
                "POST",
                "/v2/models/magika/infer",
                b"{}",
                1,
                kokon_client::unix_now(),
            )
            .unwrap();
        let response = answer(&fake, &sealed.bytes, |req, body| {
            Some(make(&fake, req, body))
        });
        match fake.verified.open(sealed, &response) {
            Err(ClientError::Receipt(ReceiptError::Mismatch { field: f, .. })) => {
                assert_eq!(f, field)
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

/// The receipt's request digest is over the Binary HTTP request as the
/// client sealed it, binary tensor data included: the enclave's digest of
/// what it read matches, and a receipt for the same request with one byte of
/// its binary section changed, or for the same rows sent as JSON numbers, is
/// another request's.
#[test]
fn a_binary_requests_receipt_covers_its_binary_section() {
    use kokon_wire::kserve::{header_length, Encoding, InferRequest};

    let fake = fake_enclave();
    let rows = [vec![256; 8], vec![7; 8]];
    let request = kokon_tests::magika_request(&rows);
    let json = kokon_tests::magika_request_json(&rows);
    let json_body = serde_json::to_vec(&json).unwrap();
    type Tamper = fn(&[u8], &[u8]) -> Vec<u8>;
    let cases: [(&str, Tamper); 3] = [
        ("as sealed", |plain, _| plain.to_vec()),
        ("a binary byte changed", |plain, _| {
            let mut plain = plain.to_vec();
            // The last rows' bytes end the body: (7i32).to_le_bytes() ends in 0.
            let at = plain.len() - 2;
            plain[at] ^= 1;
            plain
        }),
        ("the rows as JSON", |plain, json| {
            // The sealed request with the JSON body in place of the binary one.
            let message = Message::read_bhttp(&mut Cursor::new(plain)).unwrap();
            let mut again = Message::request(
                message.control().method().unwrap().to_vec(),
                message.control().scheme().unwrap().to_vec(),
                message.control().authority().unwrap_or_default().to_vec(),
                message.control().path().unwrap().to_vec(),
            );
            for field in message.header().iter() {
                if !field
                    .name()
                    .eq_ignore_ascii_case(b"inference-header-content-length")
                {
                    again.put_header(field.name(), field.value());
                }
            }
            again.write_content(json);
            let mut out = Vec::new();
            again.write_bhttp(Mode::KnownLength, &mut out).unwrap();
            out
        }),
    ];
    for (case, tamper) in cases {
        let sealed = fake
            .verified
            .seal_infer(&request, kokon_client::unix_now())
            .unwrap();
        let response = answer(&fake, &sealed.bytes, |plain, body| {
            // The enclave reads the rows from the binary section.
            let message = Message::read_bhttp(&mut Cursor::new(plain)).unwrap();
            let fields = message
                .header()
                .iter()
                .map(|f| (f.name(), f.value()))
                .collect::<Vec<_>>();
            let length = header_length(fields).unwrap();
            assert!(length.is_some(), "a binary section");
            let read = InferRequest::decode(message.content(), length).unwrap();
            assert_eq!(read.inputs[0].data.encoding(), Encoding::Binary);
            assert_eq!(read.inputs[0].values::<i32>().unwrap(), rows.concat());
            assert!(read.binary_output);
            let request_digest = digest(&tamper(plain, &json_body));
            Some(
                fake.signer
                    .sign_for(request_digest, digest(body), model_digest(), 2, 0)
                    .to_header(),
            )
        });
        match (case, fake.verified.open(sealed, &response)) {
            ("as sealed", Ok(opened)) => assert_eq!(opened.receipt.receipt.units, 2),
            (_, Err(ClientError::Receipt(ReceiptError::Mismatch { field, .. })))
                if case != "as sealed" =>
            {
                assert_eq!(field, "request digest", "{case}")
            }
            (case, other) => panic!("{case}: {other:?}"),
        }
    }
}

#[test]
fn a_missing_or_reused_receipt_is_rejected() {
    let fake = fake_enclave();
    let sealed = fake
        .verified
        .seal(
            "POST",
            "/v2/models/magika/infer",
            b"{}",
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let response = answer(&fake, &sealed.bytes, |_, _| None);
    assert!(matches!(
        fake.verified.open(sealed, &response),
        Err(ClientError::Receipt(ReceiptError::Malformed(_)))
    ));
    // Sequence numbers must increase: a receipt with an old sequence number is a replay.
    let first = fake
        .verified
        .seal("POST", "/p", b"{}", 1, kokon_client::unix_now())
        .unwrap();
    let r1 = answer(&fake, &first.bytes, |req, body| {
        Some(
            fake.signer
                .sign_for(digest(req), digest(body), model_digest(), 1, 0)
                .to_header(),
        )
    });
    fake.verified.open(first, &r1).unwrap();
    let again = ReceiptSigner::from_secret(&[4; 32]); // same key, counter restarted at 1
    let second = fake
        .verified
        .seal("POST", "/p", b"{}", 1, kokon_client::unix_now())
        .unwrap();
    let r2 = answer(&fake, &second.bytes, |req, body| {
        Some(
            again
                .sign_for(digest(req), digest(body), model_digest(), 1, 0)
                .to_header(),
        )
    });
    let err = fake.verified.open(second, &r2).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Receipt(ReceiptError::Mismatch {
                field: "sequence",
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn answers_to_concurrent_requests_may_arrive_in_any_order() {
    let fake = fake_enclave();
    let first = fake
        .verified
        .seal("POST", "/p", b"{}", 1, kokon_client::unix_now())
        .unwrap();
    let second = fake
        .verified
        .seal("POST", "/p", b"{}", 1, kokon_client::unix_now())
        .unwrap();
    let sign = |req: &[u8], body: &[u8]| {
        Some(
            fake.signer
                .sign_for(digest(req), digest(body), model_digest(), 1, 0)
                .to_header(),
        )
    };
    let r1 = answer(&fake, &first.bytes, sign);
    let r2 = answer(&fake, &second.bytes, sign);
    assert_eq!(
        fake.verified
            .open(second, &r2)
            .unwrap()
            .receipt
            .receipt
            .sequence,
        2
    );
    assert_eq!(
        fake.verified
            .open(first, &r1)
            .unwrap()
            .receipt
            .receipt
            .sequence,
        1
    );
}

/// Signs a receipt for a request of `units` on no channel.
trait SignFor {
    fn sign_for(
        &self,
        request_digest: [u8; 32],
        response_digest: [u8; 32],
        model_digest: [u8; 32],
        units: u64,
        issued_at: i64,
    ) -> kokon_billing::SignedReceipt;
}

impl SignFor for ReceiptSigner {
    fn sign_for(
        &self,
        request_digest: [u8; 32],
        response_digest: [u8; 32],
        model_digest: [u8; 32],
        units: u64,
        issued_at: i64,
    ) -> kokon_billing::SignedReceipt {
        self.sign(&kokon_billing::Usage {
            request_digest,
            response_digest,
            model_digest,
            units,
            output_units: 0,
            price: kokon_billing::Price::default(),
            channel_id: 0,
            issued_at,
        })
        .unwrap()
    }
}
