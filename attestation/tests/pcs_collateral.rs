#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Collateral assembled from what Intel PCS answers (`Collateral::from_pcs`):
//! real PCS response bodies, the issuer chains of their headers, CRLs in
//! each encoding PCS or a PCCS uses; every missing or malformed piece named.

mod common;

use common::{at, fixture, intel};
use kokon_attestation::tdx::collateral::{PcsResponses, TcbInfo};
use kokon_attestation::tdx::{verify_quote_with_collateral, Collateral, TcbStatus};
use kokon_attestation::Error;

fn dcap() -> Collateral {
    Collateral::from_json(&fixture("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap()
}

fn url_encoded(pem: &str) -> Vec<u8> {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .into_bytes()
}

/// What PCS answers for the dcap-qvl fixture's platform, as owned bytes.
struct Answers {
    tcb_info: Vec<u8>,
    tcb_chain: Vec<u8>,
    qe_identity: Vec<u8>,
    qe_chain: Vec<u8>,
    pck_crl: Vec<u8>,
    pck_chain: Vec<u8>,
    root_crl: Vec<u8>,
}

impl Answers {
    fn of(c: &Collateral) -> Self {
        Self {
            tcb_info: format!(
                "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                c.tcb_info,
                hex::encode(&c.tcb_info_signature.0)
            )
            .into_bytes(),
            tcb_chain: url_encoded(&c.tcb_info_issuer_chain),
            qe_identity: format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                c.qe_identity,
                hex::encode(&c.qe_identity_signature.0)
            )
            .into_bytes(),
            qe_chain: url_encoded(&c.qe_identity_issuer_chain),
            pck_crl: c.pck_crl.0.clone(),
            pck_chain: url_encoded(&c.pck_crl_issuer_chain),
            root_crl: c.root_ca_crl.0.clone(),
        }
    }

    fn responses(&self) -> PcsResponses<'_> {
        PcsResponses {
            tcb_info: &self.tcb_info,
            tcb_info_issuer_chain: &self.tcb_chain,
            qe_identity: &self.qe_identity,
            qe_identity_issuer_chain: &self.qe_chain,
            pck_crl: &self.pck_crl,
            pck_crl_issuer_chain: &self.pck_chain,
            root_ca_crl: &self.root_crl,
        }
    }
}

#[test]
fn pcs_answers_assemble_into_the_collateral_intel_signed() {
    let expected = dcap();
    let answers = Answers::of(&expected);
    let got = Collateral::from_pcs(&answers.responses()).unwrap();
    assert_eq!(got, expected);
    let (_, tcb) = verify_quote_with_collateral(
        &fixture("tdx/dcapqvl_tdx_quote.dat"),
        &got,
        &intel(),
        at("2025-07-01T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(tcb.status, TcbStatus::UpToDate);

    // CRLs as PEM (PCS without encoding=der) and as hex (PCCS); a trailing
    // newline after a JSON body.
    let pem = |der: &[u8]| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
            lines.join("\n")
        )
        .into_bytes()
    };
    let mut other = Answers::of(&expected);
    other.pck_crl = pem(&expected.pck_crl.0);
    other.root_crl = format!("{}\n", hex::encode(&expected.root_ca_crl.0)).into_bytes();
    other.qe_identity.push(b'\n');
    let got = Collateral::from_pcs(&other.responses()).unwrap();
    assert!(got.pck_crl == expected.pck_crl, "PEM PCK CRL");
    assert!(got.root_ca_crl == expected.root_ca_crl, "hex root CRL");
    assert!(got.qe_identity == expected.qe_identity, "QE identity text");
    assert!(got == expected);
}

#[test]
fn real_pcs_bodies_give_the_exact_text_intel_signed() {
    // go-tdx-guest's recorded PCS answers (TCB info v3 for FMSPC
    // 50806f000000, QE identity), with the issuer chain Intel sends with
    // them: its TCB signing key is the one the dcap-qvl chain certifies.
    let chains = dcap();
    let tcb_chain = url_encoded(&chains.tcb_info_issuer_chain);
    let pck_chain = url_encoded(&chains.pck_crl_issuer_chain);
    let (tcb, qe, pck_crl, root_crl) = (
        fixture("tdx/gotdx_tcbinfo_response.json"),
        fixture("tdx/gotdx_qeidentity_response.json"),
        fixture("tdx/gotdx_pckcrl"),
        fixture("tdx/gotdx_rootcrl.der"),
    );
    let c = Collateral::from_pcs(&PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: &tcb_chain,
        qe_identity: &qe,
        qe_identity_issuer_chain: &tcb_chain,
        pck_crl: &pck_crl,
        pck_crl_issuer_chain: &pck_chain,
        root_ca_crl: &root_crl,
    })
    .unwrap();
    let info: TcbInfo = serde_json::from_str(&c.tcb_info).unwrap();
    assert_eq!(hex::encode(&info.fmspc.0), "50806f000000");
    assert_eq!(c.pck_crl.0, pck_crl);
    // The extracted texts are byte for byte what the signatures cover.
    let signer = kokon_attestation::pem::certificates(
        chains.tcb_info_issuer_chain.as_bytes(),
        "TCB info issuer chain",
    )
    .unwrap();
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&signer[0]).unwrap();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        cert.public_key().subject_public_key.data.to_vec(),
    );
    key.verify(c.tcb_info.as_bytes(), &c.tcb_info_signature.0)
        .unwrap();
    key.verify(c.qe_identity.as_bytes(), &c.qe_identity_signature.0)
        .unwrap();
    let mut changed = c.tcb_info.clone().into_bytes();
    changed[10] ^= 1;
    assert!(key.verify(&changed, &c.tcb_info_signature.0).is_err());
}

fn what_fails(mutate: impl Fn(&mut Answers)) -> String {
    let mut answers = Answers::of(&dcap());
    mutate(&mut answers);
    match Collateral::from_pcs(&answers.responses()).unwrap_err() {
        e @ (Error::Collateral { .. } | Error::TooLarge { .. }) => e.to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn every_missing_or_malformed_piece_is_named() {
    type Mutation = Box<dyn Fn(&mut Answers)>;
    let cases: Vec<(Mutation, &[&str])> = vec![
        (
            Box::new(|a| a.tcb_info.clear()),
            &[
                "TCB info response",
                "{\"tcbInfo\":{...},\"signature\":\"<hex>\"}",
            ],
        ),
        (
            Box::new(|a| a.tcb_info = b"{\"signature\":\"00\"}".to_vec()),
            &["TCB info response", "no tcbInfo object"],
        ),
        (
            Box::new(|a| a.qe_identity = a.tcb_info.clone()),
            &["QE identity response", "no enclaveIdentity object"],
        ),
        (
            Box::new(|a| {
                a.tcb_info = String::from_utf8(a.tcb_info.clone())
                    .unwrap()
                    .replace("\"signature\"", "\"sig\"")
                    .into_bytes()
            }),
            &["TCB info response", "no signature"],
        ),
        (
            Box::new(|a| {
                a.qe_identity = String::from_utf8(a.qe_identity.clone())
                    .unwrap()
                    .replace("\"signature\":\"", "\"signature\":\"zz")
                    .into_bytes()
            }),
            &["QE identity response", "signature is not hex"],
        ),
        (
            Box::new(|a| a.tcb_chain.clear()),
            &["TCB info issuer chain", "TCB-Info-Issuer-Chain header"],
        ),
        (
            Box::new(|a| a.qe_chain.clear()),
            &[
                "QE identity issuer chain",
                "SGX-Enclave-Identity-Issuer-Chain header",
            ],
        ),
        (
            Box::new(|a| a.pck_chain = b"not%20a%20chain".to_vec()),
            &["PCK CRL issuer chain", "holds no PEM certificate"],
        ),
        (
            Box::new(|a| a.pck_chain = b"%FF%FE".to_vec()),
            &["PCK CRL issuer chain", "not URL-encoded UTF-8"],
        ),
        (
            Box::new(|a| a.pck_crl.clear()),
            &["PCK CRL", "absent; expected the CRL as DER, PEM or hex"],
        ),
        (
            Box::new(|a| a.root_crl = b"garbage".to_vec()),
            &["root CA CRL", "expected the CRL as DER, PEM or hex"],
        ),
    ];
    for (mutate, needles) in cases {
        let err = what_fails(mutate);
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }
}

#[test]
fn a_wrong_signature_in_a_pcs_answer_fails_verification() {
    let mut answers = Answers::of(&dcap());
    let text = String::from_utf8(answers.tcb_info.clone()).unwrap();
    let at_sig = text.find("\"signature\":\"").unwrap() + 13;
    let mut bytes = text.into_bytes();
    bytes[at_sig] = if bytes[at_sig] == b'0' { b'1' } else { b'0' };
    answers.tcb_info = bytes;
    let c = Collateral::from_pcs(&answers.responses()).unwrap();
    let err = verify_quote_with_collateral(
        &fixture("tdx/dcapqvl_tdx_quote.dat"),
        &c,
        &intel(),
        at("2025-07-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::BadSignature { what: "TCB info" }),
        "{err}"
    );
}

#[test]
fn a_lone_pcs_response_given_as_collateral_json_says_what_is_missing() {
    let err = Collateral::from_json(&fixture("tdx/gotdx_tcbinfo_response.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("one Intel PCS response (tcbInfo)")
            && err.contains("QE identity")
            && err.contains("directory of PCS responses"),
        "{err}"
    );
    let err = Collateral::from_json(b"{\"tcb_info\":\"{}\"}")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing field `pck_crl_issuer_chain`") && err.contains("QuoteCollateralV3"),
        "{err}"
    );
}
