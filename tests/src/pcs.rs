//! A local stand-in for Intel PCS and AMD KDS: an HTTP server that serves
//! recorded collateral the way they do (the PCS's signed JSON bodies, its
//! URL-encoded issuer-chain headers, DER CRLs; KDS's DER VCEK and PEM
//! chain), and logs the paths asked for. The host's collateral service and
//! `kokon verify --fetch-collateral` are tested against it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kokon_attestation::tdx::collateral::{
    Collateral, PCK_CRL_ISSUER_CHAIN_HEADER, QE_IDENTITY_ISSUER_CHAIN_HEADER,
    TCB_INFO_ISSUER_CHAIN_HEADER,
};

/// A fixture file (from `../shared/fixtures`).
pub fn fixture(path: &str) -> Vec<u8> {
    let file = crate::repo_root().join("../shared/fixtures").join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The dcap-qvl fixture collateral of `tdx/dcapqvl_tdx_quote.dat`.
pub fn dcap_collateral() -> Collateral {
    Collateral::from_json(&fixture("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap()
}

/// The virtee Milan SNP report (stored as hex).
pub fn virtee_report() -> Vec<u8> {
    hex::decode(
        String::from_utf8(fixture("snp/virtee_report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

/// One recorded response: the path and query it answers, its headers and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Path and query, e.g. `/tdx/certification/v4/qe/identity`.
    pub path: String,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

/// Path and query (or [`post_key`]) -> (headers, body).
pub type Routes = HashMap<String, (Vec<(&'static str, String)>, Vec<u8>)>;

/// A PEM chain as Intel sends it in a header: URL-encoded.
pub fn encode_header(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What Intel PCS answers for `c`'s platform (FMSPC `fmspc`, platform CA),
/// by the name of the piece: `tcb_info`, `qe_identity`, `pck_crl`,
/// `root_ca_crl` (the root CRL at `/IntelSGXRootCA.der`).
pub fn intel_responses(c: &Collateral, fmspc: &str) -> Vec<(&'static str, Response)> {
    let response = |path: String, header: Option<(&'static str, &str)>, body| Response {
        path,
        headers: header
            .map(|(name, pem)| (name, encode_header(pem)))
            .into_iter()
            .collect(),
        body,
    };
    // PCS's signed JSON: the object exactly as Intel signed it, then the signature.
    let signed = |field: &str, text: &str, signature: &[u8]| {
        format!(
            "{{\"{field}\":{text},\"signature\":\"{}\"}}",
            hex::encode(signature)
        )
        .into_bytes()
    };
    vec![
        (
            "tcb_info",
            response(
                format!("/tdx/certification/v4/tcb?fmspc={fmspc}"),
                Some((TCB_INFO_ISSUER_CHAIN_HEADER, &c.tcb_info_issuer_chain)),
                signed("tcbInfo", &c.tcb_info, &c.tcb_info_signature.0),
            ),
        ),
        (
            "qe_identity",
            response(
                "/tdx/certification/v4/qe/identity".into(),
                Some((QE_IDENTITY_ISSUER_CHAIN_HEADER, &c.qe_identity_issuer_chain)),
                signed(
                    "enclaveIdentity",
                    &c.qe_identity,
                    &c.qe_identity_signature.0,
                ),
            ),
        ),
        (
            "pck_crl",
            response(
                "/sgx/certification/v4/pckcrl?ca=platform&encoding=der".into(),
                Some((PCK_CRL_ISSUER_CHAIN_HEADER, &c.pck_crl_issuer_chain)),
                c.pck_crl.0.clone(),
            ),
        ),
        (
            "root_ca_crl",
            response("/IntelSGXRootCA.der".into(), None, c.root_ca_crl.0.clone()),
        ),
    ]
}

/// Saves PCS responses as `curl -o NAME.json|.der -D NAME.headers` does,
/// the layout `kokon verify --collateral DIR` reads.
pub fn save_as_curl_does(dir: &Path, responses: &[(&'static str, Response)]) {
    for (name, r) in responses {
        let body = match *name {
            "tcb_info" | "qe_identity" => format!("{name}.json"),
            _ => format!("{name}.der"),
        };
        std::fs::write(dir.join(body), &r.body).unwrap();
        if !r.headers.is_empty() {
            let mut dump =
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n".to_string();
            for (k, v) in &r.headers {
                dump.push_str(&format!("{k}: {v}\r\n"));
            }
            dump.push_str("\r\n");
            std::fs::write(dir.join(format!("{name}.headers")), dump).unwrap();
        }
    }
}

/// The routes of a PCS serving the dcap-qvl fixture collateral, and of a KDS
/// serving the virtee Milan VCEK, its chain and (any DER CRL, to show the
/// relaying) a CRL.
pub fn fixture_routes() -> Routes {
    let mut r: Routes = intel_responses(&dcap_collateral(), "B0C06F000000")
        .into_iter()
        .map(|(_, r)| (r.path, (r.headers, r.body)))
        .collect();
    let parsed = kokon_attestation::snp::Report::parse(&virtee_report()).unwrap();
    r.insert(
        format!(
            "/vcek/v1/Milan/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
            hex::encode(parsed.chip_id)
        ),
        (vec![], fixture("snp/virtee_vcek_milan.der")),
    );
    r.insert(
        "/vcek/v1/Milan/cert_chain".into(),
        (vec![], fixture("snp/virtee_cert_chain_milan.pem")),
    );
    r.insert(
        "/vcek/v1/Milan/crl".into(),
        (vec![], fixture("tdx/gotdx_rootcrl.der")),
    );
    r
}

/// A running stand-in service.
pub struct Server {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    /// Every path and query asked for, in order.
    pub hits: Arc<Mutex<Vec<String>>>,
}

/// The route of a POST to `path` with `body`: `POST <path> <SHA-256 of
/// the body, hex>` (an OCSP responder answers by what is asked).
pub fn post_key(path: &str, body: &[u8]) -> String {
    use sha2::Digest;
    format!("POST {path} {}", hex::encode(sha2::Sha256::digest(body)))
}

/// Serves `routes` (GETs by path and query, POSTs by [`post_key`]) on a
/// loopback port until the runtime ends; anything else is 404.
pub async fn serve(routes: Routes) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = Arc::new(routes);
    let hits = Arc::new(Mutex::new(Vec::new()));
    let log = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (routes, log) = (routes.clone(), log.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (routes, log) = (routes.clone(), log.clone());
                    async move {
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let key = match req.method() == hyper::Method::POST {
                            true => {
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                post_key(&path, &body)
                            }
                            false => path,
                        };
                        log.lock().unwrap().push(key.clone());
                        let mut response = match routes.get(&key) {
                            Some((headers, body)) => {
                                let mut r =
                                    hyper::Response::new(Full::new(Bytes::from(body.clone())));
                                for (name, value) in headers {
                                    r.headers_mut().insert(*name, value.parse().unwrap());
                                }
                                r
                            }
                            None => {
                                let mut r =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"")));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        response
                            .headers_mut()
                            .insert("connection", "close".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { base, hits }
}
