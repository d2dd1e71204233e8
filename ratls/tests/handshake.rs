#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Attested TLS handshakes over real sockets: a good handshake carries data;
//! a policy that pins another measurement aborts it with the policy's
//! reason; a certificate whose key the evidence does not bind is refused;
//! mutual attestation checks the client too.

use std::sync::Arc;

use kokon_attestation::sim::{SimRoot, SimTcb, SimTd, SimTdx};
use kokon_attestation::{Claims, Evidence, EvidenceFormat};
use kokon_policies::{LocalReferences, Policy};
use kokon_ratls::{client_config, issue, issue_with_bundle, server_config, AttestedCertificate};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DEV: &str = include_str!("../../policies/dev-sim.toml");
const MAGIKA: &str = "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c";
const MRTD: [u8; 48] = [0x42; 48];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Claims {
    Claims {
        kokon_version: "0.1.0".into(),
        ohttp_key_config: vec![1],
        receipt_key: [1; 32],
        model_name: "magika".into(),
        model_digest: hex::decode(MAGIKA).unwrap().try_into().unwrap(),
        text_model: None,
        config_digest: [2; 32],
        runtime: "onnxruntime cpu".into(),
        nonce: vec![],
        issued_at: 0,
        gpus: Vec::new(),
        gpu_cc: None,
    }
}

/// Sim evidence for the claims, as the enclave's backend would produce it.
fn sim_evidence(root: &SimRoot, c: &Claims) -> Result<Evidence, String> {
    let mut tdx = SimTdx::new(
        root,
        SimTd {
            mr_td: MRTD,
            rtmr: [[0; 48]; 3],
            debug: false,
        },
        now(),
    )
    .map_err(|e| e.to_string())?;
    for event in c.rtmr3_events() {
        tdx.extend_rtmr3(&event);
    }
    Ok(Evidence {
        format: EvidenceFormat::TdxQuote,
        data: tdx.quote(c.report_data()).map_err(|e| e.to_string())?,
        certificates: vec![],
        collateral: Some(
            tdx.collateral(&SimTcb::default(), now())
                .map_err(|e| e.to_string())?,
        ),
        crl: Vec::new(),
    })
}

fn attested(root: &SimRoot) -> AttestedCertificate {
    issue(claims(), |c| sim_evidence(root, c), None, "sim", now()).unwrap()
}

fn policy(root: &SimRoot, mrtd: [u8; 48]) -> Arc<Policy> {
    Arc::new(
        Policy::from_toml(
            DEV,
            &LocalReferences {
                sim_root: Some(root.anchor()),
                enclave_build_mrtd: Some(mrtd),
            },
        )
        .unwrap(),
    )
}

/// Runs one handshake and an echo; returns the client's and server's results.
async fn handshake(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
) -> (Result<Vec<u8>, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    });
    let connector = TlsConnector::from(Arc::new(client));
    let client_result = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("kokon-enclave").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(buf)
    }
    .await;
    let server_result = server_task.await.unwrap();
    (client_result, server_result)
}

#[tokio::test]
async fn a_good_attested_handshake_carries_data() {
    let root = SimRoot::generate(now()).unwrap();
    let (client, server) = handshake(
        server_config(attested(&root), None).unwrap(),
        client_config(policy(&root, MRTD), None).unwrap(),
    )
    .await;
    assert_eq!(client.unwrap(), b"hello");
    server.unwrap();
}

#[tokio::test]
async fn a_wrong_measurement_fails_the_handshake_with_the_policy_reason() {
    let root = SimRoot::generate(now()).unwrap();
    let (client, server) = handshake(
        server_config(attested(&root), None).unwrap(),
        client_config(policy(&root, [0x43; 48]), None).unwrap(),
    )
    .await;
    let err = client.unwrap_err();
    assert!(err.contains("rejected by policy \"dev-sim\""), "{err}");
    assert!(err.contains("MRTD: expected one of [4343"), "{err}");
    assert!(server.is_err());
}

#[tokio::test]
async fn a_certificate_whose_key_is_not_bound_fails() {
    let root = SimRoot::generate(now()).unwrap();
    // Evidence bound to one key, presented with another.
    let bound = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut c = claims();
    c.nonce = {
        use rcgen::PublicKeyData;
        use sha2::Digest;
        sha2::Sha256::digest(bound.subject_public_key_info()).to_vec()
    };
    c.issued_at = now();
    let bundle = kokon_attestation::AttestationBundle {
        version: 1,
        backend: "sim".into(),
        evidence: sim_evidence(&root, &c).unwrap(),
        claims: c,
        serving_config: None,
        gpu_evidence: Vec::new(),
        gpu_rims: Default::default(),
    };
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = issue_with_bundle(&bundle, other, now()).unwrap();
    let (client, _) = handshake(
        server_config(cert, None).unwrap(),
        client_config(policy(&root, MRTD), None).unwrap(),
    )
    .await;
    let err = client.unwrap_err();
    assert!(
        err.contains("does not bind this certificate's key"),
        "{err}"
    );
}

#[tokio::test]
async fn an_ordinary_self_signed_certificate_is_refused() {
    let root = SimRoot::generate(now()).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let plain = rcgen::CertificateParams::new(vec!["kokon-enclave".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert = AttestedCertificate {
        cert: plain.der().clone(),
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    };
    let (client, _) = handshake(
        server_config(cert, None).unwrap(),
        client_config(policy(&root, MRTD), None).unwrap(),
    )
    .await;
    assert!(client.unwrap_err().contains("no evidence extension"));
}

#[tokio::test]
async fn mutual_attestation_checks_both_sides() {
    let root = SimRoot::generate(now()).unwrap();
    let (client, server) = handshake(
        server_config(attested(&root), Some(policy(&root, MRTD))).unwrap(),
        client_config(policy(&root, MRTD), Some(attested(&root))).unwrap(),
    )
    .await;
    assert_eq!(client.unwrap(), b"hello");
    server.unwrap();

    // A client the server's policy does not accept is refused by the server.
    let (_, server) = handshake(
        server_config(attested(&root), Some(policy(&root, [0x44; 48]))).unwrap(),
        client_config(policy(&root, MRTD), Some(attested(&root))).unwrap(),
    )
    .await;
    let err = server.unwrap_err();
    assert!(err.contains("MRTD"), "{err}");
}
