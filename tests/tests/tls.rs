#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! TLS on the wire. The client on `https://` hosts: verified against the
//! Mozilla roots and `--ca`, behind a TLS reverse proxy in front of the
//! host; an untrusted certificate is refused before anything is sent, and
//! the error names the address and the cause. The host serving TLS itself,
//! next to plain HTTP, from files it reads again when they change.

use std::sync::Arc;

use kokon_client::{Client, ClientError};
use kokon_tests::{magika_request, Options, Stack};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;

/// A private CA and a server certificate it issued for 127.0.0.1 and
/// localhost, all PEM.
struct Issued {
    ca: String,
    cert: String,
    key: String,
}

fn private_ca() -> Issued {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_der(ca.der(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Issued {
        ca: ca.pem(),
        cert: leaf.pem(),
        key: key.serialize_pem(),
    }
}

/// A client of `base` that trusts `ca` (PEM) besides the Mozilla roots.
fn trusting(base: &str, ca: &str) -> Client {
    let ca = rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    Client::trusting(base, &ca).unwrap()
}

/// A TLS-terminating reverse proxy to `backend` on a free port; its URL.
async fn tls_front(backend: std::net::SocketAddr, issued: &Issued) -> String {
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(issued.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_speaks_https_verified_against_a_private_ca() {
    let stack = Stack::start(Options::default()).await;
    let issued = private_ca();
    let https = tls_front(stack.host.addr, &issued).await;
    let ca_file = stack.data.path().join("ca.pem");
    std::fs::write(&ca_file, &issued.ca).unwrap();
    let policy = stack.dev_policy();

    // Trusting the private CA: attested and served over TLS.
    let ca = kokon_fetch::read_certificates(&ca_file).unwrap();
    let client = Client::trusting(&https, &ca).unwrap();
    let enclave = client.attest(&policy).await.unwrap();
    let row = stack
        .env
        .feature_row(include_bytes!("../../attestation/src/tdx/quote.rs"));
    let (answer, _) = client
        .infer(&enclave, &magika_request(&[row]))
        .await
        .unwrap();
    assert_eq!(answer.model_name, "magika");

    // The Mozilla roots alone do not trust it: refused in the handshake,
    // with the address and the cause.
    let err = Client::new(&https).attest(&policy).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Transport(_)), "{text}");
    assert!(text.contains(&https), "{text}");
    assert!(text.contains("certificate"), "{text}");

    // The CLI: `--ca` on any command.
    let kokon = |extra: &[&str]| {
        std::process::Command::new(&stack.env.kokon_bin)
            .args([
                "attest",
                "--host",
                &https,
                "--policy",
                "policies/dev-sim.toml",
            ])
            .args(extra)
            .current_dir(kokon_tests::repo_root())
            .env("KOKON_DATA_DIR", stack.data.path())
            .env("KOKON_ENCLAVE_BIN", &stack.env.enclave_bin)
            .output()
            .unwrap()
    };
    let out = kokon(&["--ca", ca_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kokon(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    // A --ca file without a certificate is refused by name.
    let out = kokon(&["--ca", "README.md"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("README.md"), "{stderr}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_serves_tls_and_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = private_ca();
    std::fs::write(&cert, &first.cert).unwrap();
    std::fs::write(&key, &first.key).unwrap();
    let stack = Stack::start(Options {
        tls: Some(kokon_host::tls::TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..Options::default()
    })
    .await;
    let https = format!("https://127.0.0.1:{}", stack.host.tls_addr.unwrap().port());
    let policy = stack.dev_policy();
    trusting(&https, &first.ca).attest(&policy).await.unwrap();
    // Plain HTTP is still served beside it.
    stack.client.attest(&policy).await.unwrap();

    // A renewed certificate (another CA) takes effect on the next connection.
    let second = private_ca();
    std::fs::write(&key, &second.key).unwrap();
    std::fs::write(&cert, &second.cert).unwrap();
    trusting(&https, &second.ca).attest(&policy).await.unwrap();
    let err = trusting(&https, &first.ca)
        .attest(&policy)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // A renewal that does not load leaves the previous certificate serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    trusting(&https, &second.ca).attest(&policy).await.unwrap();
    stack.shutdown().await;

    // Files that do not load stop the host from starting, by name.
    let err = kokon_host::tls::TlsFiles::open(&cert, &key).err().unwrap();
    assert!(format!("{err:#}").contains("cert.pem"), "{err:#}");
    std::fs::write(&cert, &first.cert).unwrap();
    let err = kokon_host::tls::TlsFiles::open(&cert, &key).err().unwrap();
    assert!(
        format!("{err:#}").contains("do not make a certificate and its key"),
        "{err:#}"
    );
}
