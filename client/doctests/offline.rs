// Scaffolding for the client library's doctests that run offline. Only
// the doctests use it; they include it with a hidden line (an absolute
// path, so that it also resolves in merged doctests, edition 2024):
//
//     # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
//
// `Enclave` is an enclave in the doctest's own process, built from the
// parts a real enclave uses (sim TDX evidence under a fresh sim root, an
// OHTTP key, a receipt signer): it answers what an example sealed, as a
// host would relay it. `magika_metadata` is a toy Magika configuration, as
// an enclave serves Magika's. It is test scaffolding: it unwraps, and its
// keys are fixed.

use std::io::Cursor;

use bhttp::{Message, Mode, StatusCode};
use kokon_attestation::claims::{Claims, ModelClaim};
use kokon_attestation::sim::{simulate, SimRoot, SimTd};
use kokon_attestation::AttestationBundle;
use kokon_billing::{digest, Price, ReceiptSigner, Usage, CHANNEL_HEADER, RECEIPT_HEADER};
use kokon_client::VerifiedEnclave;
use kokon_policies::{LocalReferences, Policy};
use kokon_seal::{ServerKey, Suite};
use kokon_wire::kserve::ModelMetadata;

/// The checkout's development policy, which admits the models below.
const DEV_POLICY: &str = include_str!("../../policies/dev-sim.toml");
/// The classifier and the text model the enclave serves (by name; their
/// digests are the policy's).
pub const MODEL: &str = "magika";
/// The text model's name.
pub const TEXT_MODEL: &str = "smollm2-135m-instruct";
/// The enclave's measurement (the policy's `local-enclave-build`).
const MRTD: [u8; 48] = [0x42; 48];
/// Its prices, within the policy's.
const PRICE: Price = Price::per_unit(1_000);
const TOKEN_PRICE: Price = Price {
    per_unit: 10,
    per_output_unit: 30,
};

/// The enclave, and the sim platform that attests it.
pub struct Enclave {
    root: SimRoot,
    key: ServerKey,
    signer: ReceiptSigner,
}

impl Enclave {
    /// A fresh sim root and an enclave under it.
    pub fn new() -> Self {
        Self {
            root: SimRoot::generate(kokon_client::unix_now()).unwrap(),
            key: ServerKey::derive(1, Suite::Aes256Gcm, &[3; 32]),
            signer: ReceiptSigner::from_secret(&[4; 32]),
        }
    }

    /// The development policy, resolved for this enclave's sim root and
    /// measurement (as `kokon_client::local::dev_policy` resolves it for
    /// the machine's).
    pub fn policy(&self) -> Policy {
        Policy::from_toml(
            DEV_POLICY,
            &LocalReferences {
                sim_root: Some(self.root.anchor()),
                enclave_build_mrtd: Some(MRTD),
            },
        )
        .unwrap()
    }

    fn digest_of(&self, model: &str) -> [u8; 32] {
        let policy = self.policy();
        policy
            .models
            .iter()
            .find(|m| m.name == model)
            .unwrap()
            .digest
    }

    /// The attestation bundle the host would answer for `nonce`
    /// (`GET /v1/attestation?nonce=`).
    pub fn bundle(&self, nonce: &[u8]) -> AttestationBundle {
        let now = kokon_client::unix_now();
        let claims = Claims {
            kokon_version: "doctest".into(),
            ohttp_key_config: self.key.config().encode(),
            receipt_key: self.signer.public_key(),
            model_name: MODEL.into(),
            model_digest: self.digest_of(MODEL),
            text_model: Some(ModelClaim {
                name: TEXT_MODEL.into(),
                digest: self.digest_of(TEXT_MODEL),
            }),
            config_digest: [1; 32],
            runtime: "doctest".into(),
            nonce: nonce.to_vec(),
            issued_at: now,
            gpus: Vec::new(),
            gpu_cc: None,
        };
        let td = SimTd {
            mr_td: MRTD,
            rtmr: [[0; 48]; 3],
            debug: false,
        };
        simulate(&self.root, td, claims, now).unwrap()
    }

    /// The enclave as `Client::attest` returns it: attested for a fresh
    /// nonce under [`Enclave::policy`].
    pub fn verified(&self) -> VerifiedEnclave {
        let nonce = [7; 32];
        let now = kokon_client::unix_now();
        kokon_client::verify(self.bundle(&nonce), &self.policy(), Some(&nonce), now).unwrap()
    }

    /// Opens the sealed request `sealed` and answers it with `status` and
    /// `body`, with a receipt as the enclave bills it: one unit for an
    /// inference of 200 (the examples classify one row), the tokens the
    /// body reports for the text model's (`/v1/...`), nothing else.
    pub fn answer(&self, sealed: &[u8], status: u16, body: &[u8]) -> Vec<u8> {
        let (plain, context) = self.key.decapsulate(sealed).unwrap();
        let request = Message::read_bhttp(&mut Cursor::new(plain.as_slice())).unwrap();
        let channel_id = request
            .header()
            .get(CHANNEL_HEADER.as_bytes())
            .map(|v| String::from_utf8_lossy(v).parse().unwrap())
            .unwrap_or(0);
        let path = request.control().path().unwrap_or_default();
        let (text, infer) = (path.starts_with(b"/v1/"), path.ends_with(b"/infer"));
        let (model, units, output_units, price) = match (text, status) {
            (true, 200) => {
                let body: serde_json::Value = serde_json::from_slice(body).unwrap();
                let count = |name: &str| body["usage"][name].as_u64().unwrap_or(0);
                let tokens = (count("prompt_tokens"), count("completion_tokens"));
                (TEXT_MODEL, tokens.0, tokens.1, TOKEN_PRICE)
            }
            (true, _) => (TEXT_MODEL, 0, 0, TOKEN_PRICE),
            (false, 200) if infer => (MODEL, 1, 0, PRICE),
            (false, _) => (MODEL, 0, 0, PRICE),
        };
        let receipt = self
            .signer
            .sign(&Usage {
                request_digest: digest(&plain),
                response_digest: digest(body),
                model_digest: self.digest_of(model),
                units,
                output_units,
                price,
                channel_id,
                issued_at: kokon_client::unix_now(),
            })
            .unwrap();
        let mut response = Message::response(StatusCode::try_from(status).unwrap());
        response.put_header(RECEIPT_HEADER, receipt.to_header());
        response.write_content(body);
        let mut encoded = Vec::new();
        response
            .write_bhttp(Mode::KnownLength, &mut encoded)
            .unwrap();
        context.encapsulate(&encoded).unwrap()
    }
}

/// A toy Magika configuration (rows of 4 + 4 bytes, three labels: the
/// magika module's unit tests use it too), as the enclave serves Magika's
/// with the model's metadata.
pub fn magika_metadata() -> ModelMetadata {
    let toy: serde_json::Value = serde_json::from_str(include_str!("magika-toy.json")).unwrap();
    let parameters = serde_json::json!({ "magika": toy });
    ModelMetadata {
        name: MODEL.into(),
        versions: vec!["1".into()],
        platform: "onnxruntime_onnx".into(),
        inputs: vec![],
        outputs: vec![],
        parameters: parameters.as_object().cloned(),
    }
}

/// The toy configuration, ready to use.
pub fn magika() -> kokon_client::magika::Magika {
    kokon_client::magika::Magika::from_metadata(&magika_metadata()).unwrap()
}
