//! Live TON networks (testnet, mainnet) over a toncenter-style HTTP API v2:
//! send a BOC, read an account's balance, run a get-method. Configured by a
//! TOML file:
//!
//! ```toml
//! endpoint = "https://testnet.toncenter.com/api/v2"
//! api_key = "..."            # optional, sent as X-API-Key
//! ```
//!
//! Everything that reaches the chain is built and signed by `kokon-ton`
//! (pure: cells, messages, signatures); this crate only carries bytes and
//! reads answers (bounded).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};

/// Largest answer accepted.
const MAX_ANSWER: usize = 4 << 20;
/// Time allowed per call.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Where the network's HTTP API is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Base URL of the API v2 (e.g. `https://testnet.toncenter.com/api/v2`).
    pub endpoint: String,
    /// API key, if the endpoint wants one.
    #[serde(default)]
    pub api_key: Option<String>,
}

impl NetworkConfig {
    /// Reads a network file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// A client of one network's HTTP API.
pub struct TonApi {
    config: NetworkConfig,
    http: kokon_fetch::HttpsClient,
}

impl TonApi {
    /// A client for `config`; HTTPS is verified against the Mozilla roots.
    pub fn new(config: NetworkConfig) -> anyhow::Result<Self> {
        Ok(Self {
            config,
            http: kokon_fetch::client()?,
        })
    }

    async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!(
            "{}/{path_and_query}",
            self.config.endpoint.trim_end_matches('/')
        );
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(key) = &self.config.api_key {
            req = req.header("X-API-Key", key);
        }
        let req = match body {
            Some(b) => req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(b.to_string())))?,
            None => req.body(Full::default())?,
        };
        let fetched = kokon_fetch::send(&self.http, req, TIMEOUT, MAX_ANSWER).await?;
        let (status, bytes) = (fetched.status, fetched.body);
        let answer: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{url} answered {status} with no JSON"))?;
        if answer.get("ok") != Some(&Value::Bool(true)) {
            bail!(
                "{url} answered {status}: {}",
                answer.get("error").unwrap_or(&answer)
            );
        }
        answer
            .get("result")
            .cloned()
            .with_context(|| format!("{url}: answer without result"))
    }

    /// Broadcasts a message (base64 BOC).
    pub async fn send_boc(&self, boc: &str) -> anyhow::Result<()> {
        self.call("POST", "sendBoc", Some(json!({ "boc": boc })))
            .await
            .map(|_| ())
    }

    /// An account's balance in nanotons.
    pub async fn balance(&self, address: &str) -> anyhow::Result<u128> {
        let r = self
            .call("GET", &format!("getAddressBalance?address={address}"), None)
            .await?;
        match &r {
            Value::String(s) => Ok(s.parse()?),
            Value::Number(n) => Ok(n.to_string().parse()?),
            other => bail!("balance is not a number: {other}"),
        }
    }

    /// Runs a get-method with no arguments; returns the API's `stack`.
    pub async fn run_get_method(&self, address: &str, method: &str) -> anyhow::Result<Value> {
        let r = self
            .call(
                "POST",
                "runGetMethod",
                Some(json!({ "address": address, "method": method, "stack": [] })),
            )
            .await?;
        let exit = r.get("exit_code").and_then(Value::as_i64).unwrap_or(0);
        if exit != 0 {
            bail!("{method} on {address} exited with {exit}");
        }
        r.get("stack")
            .cloned()
            .with_context(|| format!("{method}: no stack in {r}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt;

    /// A local API answering as toncenter does.
    async fn mock() -> String {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let path = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            let keyed = req.headers().get("X-API-Key").is_some();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let answer = match path.as_str() {
                                p if p.starts_with("/getAddressBalance") && keyed => {
                                    json!({"ok": true, "result": "123456789"})
                                }
                                "/sendBoc" if body.starts_with(b"{\"boc\":\"te6") => {
                                    json!({"ok": true, "result": {"@type": "ok"}})
                                }
                                "/runGetMethod" => {
                                    json!({"ok": true, "result": {"exit_code": 0, "stack": [["num", "0x1"]]}})
                                }
                                _ => json!({"ok": false, "error": "bad request", "code": 400}),
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(answer.to_string()),
                            )))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        base
    }

    #[tokio::test]
    async fn the_client_speaks_the_api_and_reports_its_errors() {
        let api = TonApi::new(NetworkConfig {
            endpoint: mock().await,
            api_key: Some("k".into()),
        })
        .unwrap();
        assert_eq!(api.balance("EQ...").await.unwrap(), 123_456_789);
        api.send_boc("te6cckEBAQEAAgAAAEysuc0=").await.unwrap();
        assert_eq!(
            api.run_get_method("EQ...", "seqno").await.unwrap(),
            json!([["num", "0x1"]])
        );
        let err = api.send_boc("not a boc").await.unwrap_err().to_string();
        assert!(err.contains("bad request"), "{err}");
    }

    /// Runs only with `KOKON_TON_NETWORK` pointing at a network file.
    #[tokio::test]
    async fn a_configured_live_network_answers() {
        let Ok(path) = std::env::var("KOKON_TON_NETWORK") else {
            eprintln!(
                "skipped: set KOKON_TON_NETWORK to a network file to run against a live network"
            );
            return;
        };
        let api = TonApi::new(NetworkConfig::from_file(path.as_ref()).unwrap()).unwrap();
        // The zero address exists on every network.
        let zero = "0:0000000000000000000000000000000000000000000000000000000000000000";
        api.balance(zero).await.unwrap();
    }
}
