#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Every parser of untrusted bytes, fed thousands of mutations of valid
//! inputs (bit flips, truncations, insertions, corrupted length fields and
//! random bytes), returns an error or a value and never panics. A fast,
//! deterministic complement to the fuzz targets.

use kokon_attestation::sim::{simulate, SimRoot, SimTd};
use kokon_attestation::tdx::quote::Quote;
use kokon_attestation::{verify_bundle, AttestationBundle, TrustAnchors};
use kokon_billing::SignedReceipt;
use kokon_seal::{KeyConfig, ServerKey, Suite};

struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(6) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 => v.truncate(self.below(v.len() + 1)),
                2 => {
                    let i = self.below(v.len() + 1);
                    v.insert(i, self.next() as u8);
                }
                3 if v.len() >= 4 => {
                    // Corrupt what may be a length field with an extreme value.
                    let i = self.below(v.len() - 3);
                    let value = [0u32, 1, 0x7fff_ffff, u32::MAX, v.len() as u32][self.below(5)];
                    v[i..i + 4].copy_from_slice(&value.to_le_bytes());
                }
                4 => v = (0..self.below(2048)).map(|_| self.next() as u8).collect(),
                _ => v.extend((0..self.below(64)).map(|_| self.next() as u8)),
            }
        }
        v
    }
}

fn sim_bundle() -> (AttestationBundle, TrustAnchors) {
    let now = 1_780_000_000;
    let root = SimRoot::generate(now).unwrap();
    let claims = kokon_tests::placeholder_claims(now);
    let bundle = simulate(
        &root,
        SimTd {
            mr_td: [1; 48],
            rtmr: [[0; 48]; 3],
            debug: false,
        },
        claims,
        now,
    )
    .unwrap();
    (
        bundle,
        TrustAnchors {
            roots: vec![root.anchor()],
        },
    )
}

#[test]
fn quote_parser_and_verifier_never_panic() {
    let (bundle, anchors) = sim_bundle();
    let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
    let mut real = Vec::new();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/tdx/gotdx_prod_quote_v4_spr_e4.dat");
    if let Ok(bytes) = std::fs::read(fixture) {
        real = bytes;
    }
    for seed in [&bundle.evidence.data, &real] {
        for _ in 0..3000 {
            let input = m.mutate(seed);
            let _ = Quote::parse(&input);
            let mut b = bundle.clone();
            b.evidence.data = input;
            let _ = verify_bundle(&b, &anchors, 1_780_000_000);
        }
    }
}

#[test]
fn pcs_answers_and_event_logs_never_panic() {
    use kokon_attestation::tdx::collateral::{Collateral, PcsResponses};
    use kokon_tests::pcs::{dcap_collateral, fixture, intel_responses};
    let answers: Vec<Vec<u8>> = intel_responses(&dcap_collateral(), "B0C06F000000")
        .into_iter()
        .flat_map(|(_, r)| {
            let header = r.headers.first().map(|(_, v)| v.clone().into_bytes());
            [Some(r.body), header]
        })
        .flatten()
        .collect();
    let mut m = Mutator(0x5eed);
    for _ in 0..2000 {
        let mut pieces = answers.clone();
        let i = m.below(pieces.len());
        pieces[i] = m.mutate(&pieces[i]);
        let [tcb, tcb_chain, qe, qe_chain, pck_crl, pck_chain, root_crl] = pieces.as_slice() else {
            panic!("{} answers", pieces.len());
        };
        let _ = Collateral::from_pcs(&PcsResponses {
            tcb_info: tcb,
            tcb_info_issuer_chain: tcb_chain,
            qe_identity: qe,
            qe_identity_issuer_chain: qe_chain,
            pck_crl,
            pck_crl_issuer_chain: pck_chain,
            root_ca_crl: root_crl,
        });
    }
    let log = fixture("tdx/eventlog/gotdx_ccel_data.dat");
    for _ in 0..300 {
        if let Ok(events) = kokon_attestation::eventlog::parse(&m.mutate(&log)) {
            for e in &events {
                let _ = (e.type_name(), e.text());
            }
        }
    }
}

#[test]
fn bundle_json_parser_never_panics() {
    let (bundle, _) = sim_bundle();
    let json = bundle.to_json();
    let mut m = Mutator(7);
    for _ in 0..5000 {
        let _ = AttestationBundle::from_json(&m.mutate(&json));
    }
}

#[test]
fn ohttp_parsers_never_panic() {
    let key = ServerKey::derive(1, Suite::Aes256Gcm, &[7; 32]);
    let config = key.config().encode();
    let (request, _) = kokon_seal::encapsulate(key.config(), b"a request").unwrap();
    let mut m = Mutator(11);
    for _ in 0..3000 {
        let _ = KeyConfig::parse(&m.mutate(&config), None);
        if let Ok((_, ctx)) = key.decapsulate(&m.mutate(&request)) {
            let _ = ctx.encapsulate(b"x");
        }
    }
    for _ in 0..2000 {
        let (request, client) = kokon_seal::encapsulate(key.config(), b"q").unwrap();
        let (_, ctx) = key.decapsulate(&request).unwrap();
        let response = ctx.encapsulate(b"a response").unwrap();
        let _ = client.decapsulate(&m.mutate(&response));
    }
}

#[test]
fn receipt_and_frame_parsers_never_panic() {
    let signer = kokon_billing::ReceiptSigner::from_secret(&[1; 32]);
    let receipt = signer
        .sign(&kokon_billing::Usage {
            request_digest: [1; 32],
            response_digest: [2; 32],
            model_digest: [3; 32],
            units: 1,
            output_units: 0,
            price: kokon_billing::Price::per_unit(5),
            channel_id: 9,
            issued_at: 0,
        })
        .unwrap()
        .to_header();
    let mut m = Mutator(13);
    for _ in 0..3000 {
        let _ = SignedReceipt::from_header(&m.mutate(&receipt));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut frame = Vec::new();
        kokon_wire::Request::Ohttp {
            channel: 9,
            request: vec![5; 300],
        }
        .write(&mut frame)
        .await
        .unwrap();
        for _ in 0..3000 {
            let bytes = m.mutate(&frame);
            let _ = kokon_wire::Request::read(&mut bytes.as_slice()).await;
            let _ = kokon_wire::Response::read(&mut bytes.as_slice()).await;
        }
    });
}

#[test]
fn policy_parser_never_panics() {
    let mut m = Mutator(17);
    let text = kokon_tests::PRODUCTION_POLICY.as_bytes();
    for _ in 0..3000 {
        let mutated = m.mutate(text);
        if let Ok(s) = std::str::from_utf8(&mutated) {
            let _ =
                kokon_policies::Policy::from_toml(s, &kokon_policies::LocalReferences::default());
        }
    }
}
