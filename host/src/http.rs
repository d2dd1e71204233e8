//! The host's HTTP front.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/attestation?nonce=HEX` | relays to the enclave; returns its attestation bundle (JSON) |
//! | `POST /v1/ohttp` (`message/ohttp-req`) | relays ciphertext; returns `message/ohttp-res` |
//! | `POST /v1/ohttp` (`message/ohttp-chunked-req`) | relays ciphertext; streams `message/ohttp-chunked-res`, each sealed chunk as the enclave produces it |
//! | `POST /v1/voucher` | with billing: verifies, stores and counts a payment-channel voucher (JSON) |
//! | `GET /v1/channel?id=N` | with billing: what the channel was charged and paid, and the newest voucher's seqno |
//! | `POST /v1/channel/close?id=N` | with billing and a host key: the host's signature on a cooperative close at the newest voucher |
//! | `GET /healthz` | 200 when the enclave answers a ping within half a second (the answer is reused for at most a second), 503 otherwise (JSON) |
//! | `GET /metrics` | OpenMetrics text when asked for (`Accept`), else the Prometheus text format |
//!
//! The same routes are served in plain HTTP and, with a certificate
//! (`crate::tls`), over TLS.
//!
//! Every request is bounded: body size (413) and the time to send it (408)
//! on every route, before any slot is taken, so slow senders hold nothing
//! but their own connection; inference concurrency (503 when all slots are
//! busy); attestation concurrency and rate, apart from inference (429);
//! relay time (504). With billing, `/v1/ohttp` needs a payer proof (401
//! missing or malformed, 402 unknown channel or no credit, 403 forged,
//! stale or replayed; see [`crate::ledger`]). A streamed answer first
//! reserves the most it can cost (402 when the channel's credit does not
//! cover it; nothing is generated), and is settled from its receipt when it
//! ends, or when the client goes away and the host cancels it. Errors are JSON
//! `{"error": "..."}` and say what failed; none of them can contain client
//! plaintext, which the host never has.
//!
//! Each request is counted (route, status, latency) and logged at `info`
//! (route, status, bytes in and out, duration; never content) when it ends,
//! including when the client goes away first (status `client_closed`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame as BodyFrame, Incoming};
use kokon_billing::payer::PAYER_HEADER;
use kokon_wire::billing::{ChannelStatus, VoucherAccepted};
use kokon_wire::{media_type, unix_now, Request as Frame, Response as Reply};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::ledger::{Admission, Ledger, Refusal};
use crate::metrics::{Metrics, RequestLabels, RouteLabel};
use crate::relay::{self, RelayError};
use crate::state::EnclaveState;
use crate::Limits;

/// How long `/healthz` waits for the enclave's answer to a ping.
pub const HEALTH_PING_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an attestation over the host's limits waits for its 429.
pub const BUSY_DELAY: Duration = Duration::from_millis(500);
/// How long a ping's answer is reused by `/healthz`.
pub const HEALTH_CACHE: Duration = Duration::from_secs(1);

/// The last health ping: when, to which enclave process, and its verdict.
type Ping = (Instant, u32, Result<(), String>);

/// How long `/metrics` waits for the enclave's metrics.
pub const ENCLAVE_METRICS_TIMEOUT: Duration = Duration::from_secs(2);

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Every route, `/metrics` included.
    All,
    /// Every route but `/metrics` (served on a listener of its own).
    Public,
    /// `/metrics` only.
    Metrics,
}

/// What every handler needs.
pub struct Front {
    relay: relay::Relay,
    state: Arc<EnclaveState>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    slots: Arc<Semaphore>,
    attestation_slots: Semaphore,
    attestation_rate: TokenBucket,
    collateral: Option<crate::collateral::CollateralService>,
    ledger: Option<Arc<Ledger>>,
    health: tokio::sync::Mutex<Option<Ping>>,
    routes: Routes,
}

/// A response body: whole, or fed chunk by chunk ([`ChannelBody`]).
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Sealed chunks relayed as they arrive: most chunks buffered between the
/// enclave and a slow client before the relay waits.
pub const STREAM_BUFFER: usize = 16;

/// A response body fed from a channel, one frame per chunk, as the chunks
/// come; it ends when the sender is dropped. When the client goes away,
/// hyper drops it, and the sender sees that.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl ChannelBody {
    /// A body and the sender that feeds it (`buffer` chunks ahead at most).
    pub fn channel(buffer: usize) -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(buffer);
        (tx, Self(rx))
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(BodyFrame::data(c))))
    }
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let body = serde_json::json!({ "error": message.into() }).to_string();
    respond(status, "application/json", body.into_bytes())
}

/// A JSON body (the types serialized here cannot fail to serialize).
fn json_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn refused(r: Refusal) -> Response<Body> {
    json_error(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
        r.message,
    )
}

fn relay_error(e: RelayError) -> Response<Body> {
    let status = match e {
        RelayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        RelayError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        RelayError::Closed | RelayError::Wire(_) => StatusCode::BAD_GATEWAY,
    };
    json_error(status, e.to_string())
}

/// A token bucket: `rate` tokens a second, at most `rate` saved up.
struct TokenBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes a token if one is there.
    fn take(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        let now = Instant::now();
        let (tokens, last) = *s;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        if tokens >= 1.0 {
            *s = (tokens - 1.0, now);
            true
        } else {
            *s = (tokens, now);
            false
        }
    }
}

/// Counts and logs one request when it ends, however it ends: answered, or
/// dropped because the client went away first.
struct RequestGuard {
    metrics: Arc<Metrics>,
    route: &'static str,
    started: Instant,
    bytes_in: u64,
    answered: Option<(u16, u64)>,
}

impl RequestGuard {
    fn new(metrics: Arc<Metrics>, route: &'static str) -> Self {
        metrics.in_flight.inc();
        Self {
            metrics,
            route,
            started: Instant::now(),
            bytes_in: 0,
            answered: None,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let (status, bytes_out) = match self.answered {
            Some((code, bytes)) => (code.to_string(), bytes),
            None => ("client_closed".to_string(), 0),
        };
        self.metrics.in_flight.dec();
        self.metrics
            .latency
            .get_or_create(&RouteLabel {
                route: self.route.into(),
            })
            .observe(elapsed.as_secs_f64());
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: self.route.into(),
                status: status.clone(),
            })
            .inc();
        tracing::info!(
            route = self.route,
            status = %status,
            bytes_in = self.bytes_in,
            bytes_out,
            duration_ms = format!("{:.3}", elapsed.as_secs_f64() * 1e3),
            "request"
        );
    }
}

impl Front {
    /// The front of a host: relays to the enclave within `limits`.
    pub fn new(
        relay: relay::Relay,
        state: Arc<EnclaveState>,
        metrics: Arc<Metrics>,
        limits: Limits,
        collateral: Option<crate::collateral::CollateralService>,
        ledger: Option<Ledger>,
        routes: Routes,
    ) -> Self {
        Self {
            relay,
            state,
            metrics,
            slots: Arc::new(Semaphore::new(limits.max_concurrency)),
            attestation_slots: Semaphore::new(limits.max_attestations),
            attestation_rate: TokenBucket::new(limits.attestations_per_second),
            limits,
            collateral,
            ledger: ledger.map(Arc::new),
            health: tokio::sync::Mutex::new(None),
            routes,
        }
    }

    /// The routes its main listeners serve.
    pub fn routes(&self) -> Routes {
        self.routes
    }

    /// Serves one request, on a listener that serves `routes`.
    pub async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        routes: Routes,
    ) -> Result<Response<Body>, Infallible> {
        let route = match (req.method(), req.uri().path(), routes) {
            (&Method::GET, "/metrics", Routes::All | Routes::Metrics) => "/metrics",
            (_, _, Routes::Metrics) => "other",
            (&Method::GET, "/v1/attestation", _) => "/v1/attestation",
            (&Method::POST, "/v1/ohttp", _) => "/v1/ohttp",
            (&Method::POST, "/v1/voucher", _) => "/v1/voucher",
            (&Method::GET, "/v1/channel", _) => "/v1/channel",
            (&Method::POST, "/v1/channel/close", _) => "/v1/channel/close",
            (&Method::GET, "/healthz", _) => "/healthz",
            _ => "other",
        };
        let mut guard = RequestGuard::new(self.metrics.clone(), route);
        let response = match route {
            "/healthz" => self.healthz().await,
            "/v1/voucher" => self.voucher(req, &mut guard).await,
            "/v1/channel" | "/v1/channel/close" => self.channel(&req, route),
            "/metrics" => {
                let accept = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let enclave = self.enclave_metrics().await;
                let (text, media_type) = self.metrics.render_for(accept, enclave.as_deref());
                respond(StatusCode::OK, media_type, text.into_bytes())
            }
            "/v1/attestation" => self.attestation(req).await,
            "/v1/ohttp" => self.ohttp(req, &mut guard).await,
            _ => json_error(
                StatusCode::NOT_FOUND,
                match routes {
                    Routes::All => {
                        "no such route; see /v1/attestation, /v1/ohttp, /healthz, /metrics"
                    }
                    Routes::Public => "no such route; see /v1/attestation, /v1/ohttp, /healthz",
                    Routes::Metrics => "no such route; this listener serves GET /metrics only",
                },
            ),
        };
        let bytes_out = hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        guard.answered = Some((response.status().as_u16(), bytes_out));
        Ok(response)
    }

    /// The enclave's inference metrics (OpenMetrics text), when it is up
    /// and answers in time; a scrape without them still shows the host's.
    async fn enclave_metrics(&self) -> Option<String> {
        if !self.state.up.load(Ordering::Relaxed) {
            return None;
        }
        match self
            .relay
            .call(&Frame::Metrics, ENCLAVE_METRICS_TIMEOUT)
            .await
        {
            Ok(Reply::Metrics(text)) => Some(text),
            Ok(_) => {
                tracing::debug!("the enclave answered a metrics scrape with the wrong frame");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "the enclave's metrics are unavailable");
                None
            }
        }
    }

    /// Pings the enclave (at most once a second per enclave process) and
    /// says whether it answered. A stopped or restarting enclave is
    /// reported at once, and a new one is pinged as soon as it is up.
    async fn healthz(&self) -> Response<Body> {
        let pid = self.state.pid.load(Ordering::Relaxed);
        let verdict = if !self.state.up.load(Ordering::Relaxed) {
            Err("the enclave is not running (starting or restarting)".to_string())
        } else {
            let mut cached = self.health.lock().await;
            match &*cached {
                Some((at, for_pid, verdict)) if *for_pid == pid && at.elapsed() < HEALTH_CACHE => {
                    verdict.clone()
                }
                _ => {
                    let verdict = match self.relay.call(&Frame::Health, HEALTH_PING_TIMEOUT).await {
                        Ok(Reply::Health(_)) => Ok(()),
                        Ok(_) => Err("the enclave answered the ping with the wrong frame".into()),
                        Err(e) => Err(e.to_string()),
                    };
                    *cached = Some((Instant::now(), pid, verdict.clone()));
                    verdict
                }
            }
        };
        let body = serde_json::json!({
            "status": if verdict.is_ok() { "ok" } else { "enclave unavailable" },
            "error": verdict.as_ref().err(),
            "enclave": {
                "up": verdict.is_ok(),
                "pid": self.state.pid.load(Ordering::Relaxed),
                "restarts": self.state.restarts.load(Ordering::Relaxed),
            }
        });
        respond(
            if verdict.is_ok() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            "application/json",
            body.to_string().into_bytes(),
        )
    }

    async fn voucher(
        &self,
        req: hyper::Request<Incoming>,
        guard: &mut RequestGuard,
    ) -> Response<Body> {
        let Some(ledger) = &self.ledger else {
            return json_error(
                StatusCode::NOT_FOUND,
                "this host does not bill: no vouchers",
            );
        };
        let body = match read_body(
            req,
            self.limits.max_voucher_bytes,
            self.limits.voucher_timeout,
        )
        .await
        {
            Ok(b) => b,
            Err(r) => return r,
        };
        guard.bytes_in = body.len() as u64;
        match ledger.accept(&body) {
            Ok(paid) => respond(
                StatusCode::OK,
                "application/json",
                json_bytes(&VoucherAccepted { paid }),
            ),
            Err(r) => refused(r),
        }
    }

    fn channel(&self, req: &hyper::Request<Incoming>, route: &str) -> Response<Body> {
        let Some(ledger) = &self.ledger else {
            return json_error(StatusCode::NOT_FOUND, "this host does not bill");
        };
        let id = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("id=")))
            .and_then(|v| v.parse::<u128>().ok());
        let Some(id) = id else {
            return json_error(StatusCode::BAD_REQUEST, "expected ?id=<decimal channel ID>");
        };
        if route == "/v1/channel/close" {
            return match ledger.close_offer(id) {
                Ok(offer) => respond(StatusCode::OK, "application/json", json_bytes(&offer)),
                Err(r) => refused(r),
            };
        }
        match ledger.status(id) {
            Ok((charged, paid, seqno)) => respond(
                StatusCode::OK,
                "application/json",
                json_bytes(&ChannelStatus {
                    channel_id: id,
                    charged,
                    paid,
                    seqno,
                }),
            ),
            Err(r) => refused(r),
        }
    }

    /// Attestation has its own slots and rate, so a flood of it cannot take
    /// the enclave from inference.
    async fn attestation(&self, req: hyper::Request<Incoming>) -> Response<Body> {
        let nonce = match nonce(req.uri().query()) {
            Ok(nonce) => nonce,
            Err(msg) => return json_error(StatusCode::BAD_REQUEST, msg),
        };
        let busy = || {
            let mut r = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "attestation is limited to {} at once and {} a second on this host; retry in a second",
                    self.limits.max_attestations, self.limits.attestations_per_second
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        };
        // Over the limit, the refusal itself is slowed down: a client that
        // hammers costs itself time, not the host (or its enclave) CPU.
        if !self.attestation_rate.take() {
            tokio::time::sleep(BUSY_DELAY).await;
            return busy();
        }
        let Ok(_permit) = self.attestation_slots.try_acquire() else {
            tokio::time::sleep(BUSY_DELAY).await;
            return busy();
        };
        match self
            .relay
            .call(&Frame::Attest { nonce }, self.limits.request_timeout)
            .await
        {
            Ok(Reply::Bundle(b)) => {
                let b = match &self.collateral {
                    Some(service) => service.complete(b, unix_now()).await,
                    None => b,
                };
                respond(StatusCode::OK, "application/json", b)
            }
            Ok(other) => self.unexpected(other),
            Err(e) => {
                tracing::warn!(error = %e, route = "/v1/attestation", "relay failed");
                relay_error(e)
            }
        }
    }

    /// Reads the whole body (bounded in size and time) before anything
    /// else is taken; with billing, admits it on its payer proof; then
    /// relays it in one of the inference slots: whole, or, for a chunked
    /// request, as a stream.
    async fn ohttp(
        self: &Arc<Self>,
        req: hyper::Request<Incoming>,
        guard: &mut RequestGuard,
    ) -> Response<Body> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let chunked = match content_type {
            media_type::OHTTP_REQUEST => false,
            media_type::OHTTP_CHUNKED_REQUEST => true,
            _ => {
                return json_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                    "content-type must be {} (or {} for a streamed answer), found {content_type:?}",
                    media_type::OHTTP_REQUEST,
                    media_type::OHTTP_CHUNKED_REQUEST
                ),
                )
            }
        };
        if self.ledger.is_some() && !req.headers().contains_key(PAYER_HEADER) {
            // Refused before the body is read: nothing to admit it on.
            return refused(Refusal {
                status: 401,
                message: format!("this host bills every request: sign it with your payment channel's client key in the {PAYER_HEADER} header"),
            });
        }
        let proof = req
            .headers()
            .get(PAYER_HEADER)
            .map(|v| v.as_bytes().to_vec());
        let body = match read_body(req, self.limits.max_body_bytes, self.limits.body_timeout).await
        {
            Ok(b) => b,
            Err(r) => return r,
        };
        guard.bytes_in = body.len() as u64;
        let admission = match &self.ledger {
            Some(ledger) => match ledger.admit(proof.as_deref(), &body, unix_now()) {
                Ok(a) => Some(a),
                Err(r) => return refused(r),
            },
            None => None,
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "all {} request slots are busy; retry shortly",
                    self.limits.max_concurrency
                ),
            );
        };
        self.metrics.bytes_to_enclave.inc_by(body.len() as u64);
        let channel = admission.as_ref().map(|a| a.channel).unwrap_or(0);
        if chunked {
            return self.stream(channel, body, admission, permit).await;
        }
        let frame = Frame::Ohttp {
            channel,
            request: body,
        };
        match self.relay.call(&frame, self.limits.request_timeout).await {
            Ok(Reply::Ohttp(b)) => {
                self.metrics.bytes_from_enclave.inc_by(b.len() as u64);
                respond(StatusCode::OK, media_type::OHTTP_RESPONSE, b)
            }
            Ok(Reply::Billed { sealed, receipt }) => {
                self.settle(admission, &receipt);
                self.metrics.bytes_from_enclave.inc_by(sealed.len() as u64);
                respond(StatusCode::OK, media_type::OHTTP_RESPONSE, sealed)
            }
            Ok(other) => self.unexpected(other),
            Err(e) => {
                tracing::warn!(error = %e, route = "/v1/ohttp", "relay failed");
                relay_error(e)
            }
        }
    }

    /// Counts a receipt against the admitted channel, releasing what the
    /// request reserved.
    fn settle(&self, admission: Option<Admission>, receipt: &[u8]) {
        if let (Some(ledger), Some(admission)) = (&self.ledger, admission) {
            if let Err(r) = ledger.charge(admission, receipt) {
                tracing::error!(status = r.status, error = %r.message, "could not count a receipt");
            }
        }
    }

    /// Opens a stream on its own enclave connection: reserves the most the
    /// answer can cost (refused: the enclave drops it unbilled), lets the
    /// enclave go ahead, and answers with a body that a relay task feeds
    /// chunk by chunk, holding the request's slot until the stream ends.
    async fn stream(
        self: &Arc<Self>,
        channel: u128,
        request: Vec<u8>,
        mut admission: Option<Admission>,
        permit: OwnedSemaphorePermit,
    ) -> Response<Body> {
        let timeout = self.limits.request_timeout;
        let (mut link, first) = match self
            .relay
            .open(&Frame::OhttpStream { channel, request }, timeout)
            .await
        {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(error = %e, route = "/v1/ohttp", "relay failed");
                return relay_error(e);
            }
        };
        let max_charge = match first {
            Reply::StreamStart { max_charge } => max_charge,
            other => return self.unexpected(other),
        };
        if let Some(admission) = admission.as_mut() {
            if let Err(r) = admission.reserve(max_charge) {
                return refused(r);
            }
        }
        if let Err(e) = Frame::Proceed.write(&mut link).await {
            return relay_error(relay::RelayError::Wire(e));
        }
        let (tx, body) = ChannelBody::channel(STREAM_BUFFER);
        let front = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            front.relay_stream(link, tx, admission).await;
        });
        let mut response = Response::new(body.boxed_unsync());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(media_type::OHTTP_CHUNKED_RESPONSE),
        );
        response
    }

    /// Relays a stream's chunks to the client as they come. When the client
    /// goes away, cancels the stream and keeps reading to its receipt; a
    /// link that fails or stalls past the request timeout ends the client's
    /// body short (its decryption then reports the truncation) and bills
    /// nothing.
    async fn relay_stream(
        &self,
        mut link: crate::link::LinkStream,
        tx: mpsc::Sender<Bytes>,
        admission: Option<Admission>,
    ) {
        let timeout = self.limits.request_timeout;
        let mut client = Some(tx);
        loop {
            let frame = match tokio::time::timeout(timeout, Reply::read(&mut link)).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the enclave link broke mid-stream");
                    return;
                }
                Err(_) => {
                    tracing::warn!(?timeout, "the enclave stalled mid-stream");
                    return;
                }
            };
            match frame {
                Reply::StreamChunk(sealed) => {
                    self.metrics.bytes_from_enclave.inc_by(sealed.len() as u64);
                    if let Some(tx) = &client {
                        if tx.send(Bytes::from(sealed)).await.is_err() {
                            // The client went away: stop generating.
                            client = None;
                            if Frame::Cancel.write(&mut link).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Reply::StreamEnd { sealed, receipt } => {
                    self.metrics.bytes_from_enclave.inc_by(sealed.len() as u64);
                    if let Some(tx) = &client {
                        let _ = tx.send(Bytes::from(sealed)).await;
                    }
                    self.settle(admission, &receipt);
                    return;
                }
                Reply::Failed(m) | Reply::Rejected(m) => {
                    tracing::warn!(error = %m, "the enclave failed mid-stream");
                    return;
                }
                _ => {
                    tracing::warn!("the enclave answered a stream with the wrong frame");
                    return;
                }
            }
        }
    }

    /// The enclave's refusals and failures, and frames that answer nothing asked.
    fn unexpected(&self, reply: Reply) -> Response<Body> {
        match reply {
            Reply::Rejected(m) => json_error(
                StatusCode::BAD_REQUEST,
                format!("the enclave rejected the request: {m}"),
            ),
            Reply::Failed(m) => {
                json_error(StatusCode::BAD_GATEWAY, format!("the enclave failed: {m}"))
            }
            _ => json_error(
                StatusCode::BAD_GATEWAY,
                "the enclave answered with the wrong frame",
            ),
        }
    }
}

fn nonce(query: Option<&str>) -> Result<Vec<u8>, String> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .ok_or_else(|| {
            format!(
                "missing query parameter nonce=HEX ({} to {} random bytes)",
                kokon_wire::NONCE_LEN.start(),
                kokon_wire::NONCE_LEN.end()
            )
        })?;
    hex::decode(value).map_err(|e| format!("nonce is not hex: {e}"))
}

/// Reads a body of at most `max` bytes that must arrive within `deadline`.
///
/// A body over `max` is answered 413, but only after reading on, discarding,
/// up to `max` bytes more (within the same deadline): a client still sending
/// would otherwise see its connection reset, not the 413. A body declared
/// larger than that is answered at once.
async fn read_body(
    req: hyper::Request<Incoming>,
    max: usize,
    deadline: Duration,
) -> Result<Vec<u8>, Response<Body>> {
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the {max}-byte limit"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let until = tokio::time::Instant::now() + deadline;
    let mut body = req.into_body();
    if let Some(len) = declared.filter(|len| *len > max) {
        if len - max <= max {
            drain(&mut body, max, until).await;
        }
        return Err(too_large());
    }
    let mut collected = Vec::new();
    let read = tokio::time::timeout_at(until, async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            if data.len() > max - collected.len() {
                return Ok(false);
            }
            collected.extend_from_slice(&data);
        }
        Ok::<_, hyper::Error>(true)
    })
    .await;
    match read {
        Ok(Ok(true)) => Ok(collected),
        Ok(Ok(false)) => {
            drain(&mut body, max, until).await;
            Err(too_large())
        }
        Ok(Err(e)) => Err(json_error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {deadline:?}"),
        )),
    }
}

/// Reads and discards up to `limit` bytes of the rest of `body`, until
/// `until`.
async fn drain(body: &mut Incoming, limit: usize, until: tokio::time::Instant) {
    let _ = tokio::time::timeout_at(until, async {
        let mut left = limit;
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, Bytes::len);
            match left.checked_sub(len) {
                Some(rest) => left = rest,
                None => break,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::nonce;

    #[test]
    fn nonces_are_read_from_the_query() {
        assert_eq!(nonce(Some("nonce=00ff")), Ok(vec![0, 0xff]));
        assert_eq!(nonce(Some("a=1&nonce=0102&b=2")), Ok(vec![1, 2]));
        assert!(nonce(None)
            .unwrap_err()
            .contains("missing query parameter nonce"));
        assert!(nonce(Some("nonce=xyz")).unwrap_err().contains("not hex"));
    }
}
