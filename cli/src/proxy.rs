//! `kokon proxy`: a local, plain-HTTP, OpenAI-compatible endpoint, so that
//! unmodified OpenAI SDKs and tools talk to an attested enclave.
//!
//! The proxy attests the enclave under the policy before it serves, and
//! again when the evidence is older than `--max-evidence-age` or when the
//! enclave's key changed (its host restarted it); the request that found
//! the key changed is sealed again to the newly attested key and sent once
//! more. A re-attestation that fails the policy fails the request: nothing
//! is ever sent to an enclave the policy does not accept.
//!
//! Every request is sealed on this machine (streamed ones as chunked OHTTP),
//! every answer's receipt is verified before the answer is complete, and,
//! with `--channel`, each verified receipt is paid with a voucher. Streams
//! always ask the enclave for usage, so that the receipt's token counts are
//! checked; the usage chunk is passed on only when the caller asked for it.
//!
//! It listens in plain HTTP: keep it on loopback (the default), since what
//! crosses it is the caller's plaintext.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kokon_client::session::Session;
use kokon_client::ClientError;
use kokon_host::http::{ChannelBody, STREAM_BUFFER};
use kokon_wire::openai::{sse_data, ApiError, ErrorResponse};

use crate::args::ProxyArgs;
use crate::channel::Paying;
use crate::local;

/// Largest request body accepted from the caller.
const MAX_BODY: usize = 8 << 20;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The proxy's state: the enclave, kept attested, and the channel it pays on.
struct Proxy {
    session: Session,
    paying: tokio::sync::Mutex<Option<Paying>>,
}

/// `kokon proxy`.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let policy = local::load_policy(&args.policy)?;
    let client = local::client(&args.host)?;
    let paying = match &args.channel {
        Some(path) => Some(Paying::open(path, &client).await?),
        None => None,
    };
    let channel = paying.as_ref().map(Paying::channel).transpose()?;
    let session = Session::open_billed(client, policy, channel)
        .await?
        .max_evidence_age(Duration::from_secs(args.max_evidence_age));
    let enclave = session.enclave().await?;
    let Some(text) = enclave.evidence.claims.text_model.clone() else {
        anyhow::bail!("the attested enclave serves no text model (its host runs without --llm)");
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "kokon proxy: attested {} sha256:{}… under policy {:?}; serving the OpenAI API at http://{addr}/v1",
        text.name,
        &hex::encode(text.digest)[..16],
        session.policy().name
    );
    let proxy = Arc::new(Proxy {
        session,
        paying: tokio::sync::Mutex::new(paying),
    });
    serve(listener, proxy).await
}

async fn serve(listener: tokio::net::TcpListener, proxy: Arc<Proxy>) -> anyhow::Result<()> {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| proxy.clone().handle(req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn respond(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// OpenAI's error object with `status`.
fn api_error(status: u16, kind: &str, message: String) -> Response<Body> {
    let error = ApiError {
        message,
        kind: kind.into(),
        param: None,
        code: None,
    };
    respond(status, "application/json", error.body())
}

/// A failure as the caller sees it: the enclave's own status and message;
/// the host's refusals of credit and load as they are; anything else about
/// the host, the transport or attestation as a 502.
fn failure(e: &ClientError) -> Response<Body> {
    match e {
        ClientError::Enclave { status, message } => {
            let kind = if *status < 500 {
                "invalid_request_error"
            } else {
                "server_error"
            };
            api_error(*status, kind, message.clone())
        }
        ClientError::Host { status, message } if matches!(status, 402 | 429 | 503) => api_error(
            *status,
            "kokon_host_error",
            format!("the kokon host: {message}"),
        ),
        e if e.is_rejection() => api_error(
            502,
            "kokon_attestation_error",
            format!("the enclave no longer satisfies the policy; nothing was sent: {e}"),
        ),
        e => api_error(502, "kokon_error", e.to_string()),
    }
}

impl Proxy {
    /// Pays a verified receipt's amount on the channel, if there is one.
    async fn pay(&self, amount: u128) {
        if amount == 0 {
            return;
        }
        if let Some(paying) = self.paying.lock().await.as_mut() {
            if let Err(e) = paying.pay(self.session.client(), amount).await {
                tracing::warn!(error = %format!("{e:#}"), "payment failed");
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if !path.starts_with("/v1/") {
            return Ok(api_error(
                404,
                "not_found_error",
                format!("unknown route {path}; this proxy serves the OpenAI API under /v1/"),
            ));
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(e) => {
                return Ok(api_error(
                    400,
                    "invalid_request_error",
                    format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
                ))
            }
        };
        let streamed = (method == Method::POST)
            .then(|| stream_request(&body))
            .flatten();
        let answer = match streamed {
            Some((body, include_usage)) => self.clone().stream(&path, body, include_usage).await,
            None => self.whole(method.as_str(), &path, body).await,
        };
        Ok(answer.unwrap_or_else(|e| failure(&e)))
    }

    async fn whole(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Response<Body>, ClientError> {
        let client = self.session.client();
        let opened = self
            .session
            .retried(|enclave| {
                let body = &body;
                async move { client.text_exchange(&enclave, method, path, body).await }
            })
            .await?;
        self.pay(opened.receipt.receipt.amount).await;
        Ok(respond(opened.status, "application/json", opened.body))
    }

    async fn stream(
        self: Arc<Self>,
        path: &str,
        body: Vec<u8>,
        include_usage: bool,
    ) -> Result<Response<Body>, ClientError> {
        let client = self.session.client();
        let mut stream = self
            .session
            .retried(|enclave| {
                let body = &body;
                async move { client.stream_text(&enclave, "POST", path, body).await }
            })
            .await?;
        let (tx, events) = ChannelBody::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                match stream.next_event().await {
                    Ok(Some(event)) => {
                        if !include_usage && usage_only(&event) {
                            continue;
                        }
                        if tx.send(Bytes::from(sse_data(&event))).await.is_err() {
                            // The caller went away: dropping the stream
                            // makes the host cancel it.
                            return;
                        }
                    }
                    Ok(None) => {
                        if let Some(receipt) = stream.receipt() {
                            self.pay(receipt.receipt.amount).await;
                        }
                        return;
                    }
                    Err(e) => {
                        let error = ErrorResponse {
                            error: ApiError::server(e.to_string()),
                        };
                        let event = serde_json::to_string(&error).unwrap_or_default();
                        let _ = tx.send(Bytes::from(sse_data(&event))).await;
                        return;
                    }
                }
            }
        });
        let mut response = Response::new(events.boxed_unsync());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/event-stream"),
        );
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-cache"),
        );
        Ok(response)
    }
}

/// For a request body asking for a stream: the body to send, asking for
/// usage too, and whether the caller asked for usage itself. `None` when it
/// is not a streamed request (or not JSON: the enclave answers that).
fn stream_request(body: &[u8]) -> Option<(Vec<u8>, bool)> {
    let mut request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = request.as_object_mut()?;
    if object.get("stream") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let asked = object
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&serde_json::Value::Bool(true));
    object.insert(
        "stream_options".into(),
        serde_json::json!({ "include_usage": true }),
    );
    Some((serde_json::to_vec(&request).ok()?, asked))
}

/// Whether an event is the usage chunk alone (no choices).
fn usage_only(event: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Vec<serde_json::Value>,
        usage: Option<serde_json::Value>,
    }
    serde_json::from_str::<Chunk>(event).is_ok_and(|c| c.choices.is_empty() && c.usage.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_always_ask_for_usage_and_remember_who_asked() {
        let (body, asked) = stream_request(br#"{"model":"m","stream":true}"#).unwrap_or_default();
        assert!(!asked);
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let (_, asked) = stream_request(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap_or_default();
        assert!(asked);
        assert!(stream_request(br#"{"model":"m"}"#).is_none());
        assert!(stream_request(br#"{"model":"m","stream":false}"#).is_none());
        assert!(stream_request(b"{not json").is_none());
        assert!(usage_only(r#"{"choices":[],"usage":{"prompt_tokens":1}}"#));
        assert!(!usage_only(r#"{"choices":[{"delta":{}}],"usage":null}"#));
        assert!(!usage_only("[DONE]"));
    }
}
