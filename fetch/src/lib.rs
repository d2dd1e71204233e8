//! Outbound HTTPS: the client SDK's connection to a host, the host's
//! collateral fetcher (Intel PCS or a PCCS, AMD KDS) and the TON HTTP API
//! client. Certificates are verified against the Mozilla roots (plain HTTP
//! is allowed for local services and tests); every request has a deadline
//! and every body a size limit, since what answers is not trusted.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::pem::PemObject;
pub use rustls::pki_types::CertificateDer;

/// An HTTP(S) client.
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client that verifies HTTPS servers against the Mozilla roots.
pub fn client() -> anyhow::Result<HttpsClient> {
    client_trusting(&[])
}

/// A client that verifies HTTPS servers against the Mozilla roots and the
/// certificate authorities `extra` (a private CA's, for instance).
pub fn client_trusting(extra: &[CertificateDer<'static>]) -> anyhow::Result<HttpsClient> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for ca in extra {
        roots
            .add(ca.clone())
            .context("a certificate authority to trust is not a valid CA certificate")?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Small request/response exchanges: no Nagle delay.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}

/// The certificates in a PEM file (`-----BEGIN CERTIFICATE-----` blocks):
/// certificate authorities to trust. A file without one is an error.
pub fn read_certificates(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        path.display()
    );
    Ok(certs)
}

/// A response read whole.
#[derive(Debug)]
pub struct Fetched {
    /// Its status.
    pub status: http::StatusCode,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// Sends `request` and reads the answer, failing after `timeout` or when the
/// body exceeds `max_body` bytes. Any status is returned: judging it is the
/// caller's business. Errors name the method and URL.
pub async fn send(
    client: &HttpsClient,
    request: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> anyhow::Result<Fetched> {
    let what = format!("{} {}", request.method(), request.uri());
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .with_context(|| format!("{what}: no answer within {timeout:?}"))?
        .with_context(|| what.clone())?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = Limited::new(response.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{what}: body: {e}"))?
        .to_bytes();
    Ok(Fetched {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every connection with `answer`, or never.
    async fn server(answer: Option<&'static [u8]>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = s.write_all(a).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        format!("http://{addr}/x")
    }

    fn get(url: &str) -> http::Request<Full<Bytes>> {
        http::Request::get(url).body(Full::default()).unwrap()
    }

    #[tokio::test]
    async fn a_response_is_read_whole_whatever_its_status() {
        let url = server(Some(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\nx-a: b\r\n\r\nnope!",
        ))
        .await;
        let f = send(&client().unwrap(), get(&url), Duration::from_secs(5), 100)
            .await
            .unwrap();
        assert_eq!(f.status, 404);
        assert_eq!(f.headers.get("x-a").unwrap(), "b");
        assert_eq!(&f.body[..], b"nope!");
    }

    #[tokio::test]
    async fn oversized_bodies_and_silent_servers_are_errors_naming_the_url() {
        let url = server(Some(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789",
        ))
        .await;
        let err = send(&client().unwrap(), get(&url), Duration::from_secs(5), 4)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("GET {url}: body")),
            "{err:#}"
        );
        let url = server(None).await;
        let err = send(&client().unwrap(), get(&url), Duration::from_millis(200), 4)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("GET {url}: no answer within 200ms")),
            "{err:#}"
        );
    }
}
