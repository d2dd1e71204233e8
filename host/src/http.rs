//! The host's HTTP front.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/attestation?nonce=HEX` | relays to the enclave; returns its attestation bundle (JSON) |
//! | `POST /v1/ohttp` (`message/ohttp-req`) | relays ciphertext; returns `message/ohttp-res` |
//! | `POST /v1/voucher` | with billing: verifies, stores and counts a payment-channel voucher (JSON) |
//! | `GET /v1/channel?id=N` | with billing: what the channel was charged and paid, and the newest voucher's seqno |
//! | `POST /v1/channel/close?id=N` | with billing and a host key: the host's signature on a cooperative close at the newest voucher |
//! | `GET /healthz` | 200 when the enclave is up, 503 otherwise (JSON) |
//! | `GET /metrics` | Prometheus text format |
//!
//! Every request is bounded: body size (413), concurrency (503 when all
//! slots are busy), and time (504). Errors are JSON `{"error": "..."}` and
//! say what failed; none of them can contain client plaintext, which the
//! host never has.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use kokon_ton::voucher::{ChannelStatus, VoucherAccepted};
use kokon_wire::{media_type, unix_now, Request as Frame, Response as Reply};
use tokio::sync::Semaphore;

use crate::metrics::{Metrics, RouteLabels};
use crate::relay::{self, RelayError};
use crate::supervisor::EnclaveState;
use crate::Limits;

/// What every handler needs.
pub struct Front {
    /// The relay to the enclave.
    pub relay: relay::Relay,
    /// Enclave state.
    pub state: Arc<EnclaveState>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// Concurrency slots.
    pub slots: Semaphore,
    /// Fetches collateral the enclave's bundles lack.
    pub collateral: Option<crate::collateral::CollateralService>,
    /// With billing: the channels served, charged and paid.
    pub ledger: Option<crate::ledger::Ledger>,
}

/// The request header naming the client's payment channel (decimal ID).
pub const CHANNEL_HEADER: &str = kokon_billing::CHANNEL_HEADER;

type Body = Full<Bytes>;

fn json_error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let body = serde_json::json!({ "error": message.into() }).to_string();
    respond(status, "application/json", body.into_bytes())
}

/// A JSON body (the types serialized here cannot fail to serialize).
fn json_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn refused(r: crate::ledger::Refusal) -> Response<Body> {
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

impl Front {
    /// Serves one request.
    pub async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let route = match (req.method(), req.uri().path()) {
            (&Method::GET, "/v1/attestation") => "/v1/attestation",
            (&Method::POST, "/v1/ohttp") => "/v1/ohttp",
            (&Method::POST, "/v1/voucher") => "/v1/voucher",
            (&Method::GET, "/v1/channel") => "/v1/channel",
            (&Method::POST, "/v1/channel/close") => "/v1/channel/close",
            (&Method::GET, "/healthz") => "/healthz",
            (&Method::GET, "/metrics") => "/metrics",
            _ => "other",
        };
        self.metrics.in_flight.inc();
        let response = match route {
            "/healthz" => self.healthz(),
            "/v1/voucher" => self.voucher(req).await,
            "/v1/channel" | "/v1/channel/close" => self.channel(&req, route),
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render().into_bytes(),
            ),
            "other" => json_error(
                StatusCode::NOT_FOUND,
                "no such route; see /v1/attestation, /v1/ohttp, /healthz, /metrics",
            ),
            _ => match self.slots.try_acquire() {
                Err(_) => json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "all {} request slots are busy; retry shortly",
                        self.limits.max_concurrency
                    ),
                ),
                Ok(_permit) => match tokio::time::timeout(
                    self.limits.request_timeout,
                    self.clone().relayed(route, req),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => json_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("request took longer than {:?}", self.limits.request_timeout),
                    ),
                },
            },
        };
        self.metrics.in_flight.dec();
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .requests
            .get_or_create(&RouteLabels {
                route: route.into(),
                status: response.status().as_u16(),
            })
            .inc();
        Ok(response)
    }

    fn healthz(&self) -> Response<Body> {
        let up = self.state.up.load(Ordering::Relaxed);
        let body = serde_json::json!({
            "status": if up { "ok" } else { "enclave unavailable" },
            "enclave": {
                "up": up,
                "pid": self.state.pid.load(Ordering::Relaxed),
                "restarts": self.state.restarts.load(Ordering::Relaxed),
            }
        });
        respond(
            if up {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            "application/json",
            body.to_string().into_bytes(),
        )
    }

    async fn voucher(&self, req: hyper::Request<Incoming>) -> Response<Body> {
        let Some(ledger) = &self.ledger else {
            return json_error(
                StatusCode::NOT_FOUND,
                "this host does not bill: no vouchers",
            );
        };
        let body = match read_body(req, 64 * 1024).await {
            Ok(b) => b,
            Err(r) => return r,
        };
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

    /// With billing, the channel a request is billed to, if it may be served.
    fn admit(&self, req: &hyper::Request<Incoming>) -> Result<(), crate::ledger::Refusal> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let channel = req
            .headers()
            .get(CHANNEL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u128>().ok())
            .ok_or_else(|| crate::ledger::Refusal {
                status: 402,
                message: format!("this host bills every request: name your payment channel in the {CHANNEL_HEADER} header"),
            })?;
        ledger.admit(channel)
    }

    async fn relayed(
        self: Arc<Self>,
        route: &str,
        req: hyper::Request<Incoming>,
    ) -> Response<Body> {
        let frame = match route {
            "/v1/attestation" => match nonce(req.uri().query()) {
                Ok(nonce) => Frame::Attest { nonce },
                Err(msg) => return json_error(StatusCode::BAD_REQUEST, msg),
            },
            _ => {
                let content_type = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if let Err(r) = self.admit(&req) {
                    return refused(r);
                }
                if content_type != media_type::OHTTP_REQUEST {
                    return json_error(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "content-type must be {}, found {content_type:?}",
                            media_type::OHTTP_REQUEST
                        ),
                    );
                }
                match read_body(req, self.limits.max_body_bytes).await {
                    Ok(body) => Frame::Ohttp(body),
                    Err(r) => return r,
                }
            }
        };
        if let Frame::Ohttp(b) = &frame {
            self.metrics.bytes_to_enclave.inc_by(b.len() as u64);
        }
        match self.relay.call(&frame, self.limits.request_timeout).await {
            Ok(Reply::Bundle(b)) => {
                let b = match &self.collateral {
                    Some(service) => service.complete(b, unix_now()).await,
                    None => b,
                };
                respond(StatusCode::OK, "application/json", b)
            }
            Ok(Reply::Ohttp(b)) => {
                self.metrics.bytes_from_enclave.inc_by(b.len() as u64);
                respond(StatusCode::OK, media_type::OHTTP_RESPONSE, b)
            }
            Ok(Reply::Billed { sealed, receipt }) => {
                if let Some(ledger) = &self.ledger {
                    if let Err(r) = ledger.charge(&receipt) {
                        tracing::warn!(status = r.status, error = %r.message, "could not count a receipt");
                    }
                }
                self.metrics.bytes_from_enclave.inc_by(sealed.len() as u64);
                respond(StatusCode::OK, media_type::OHTTP_RESPONSE, sealed)
            }
            Ok(Reply::Rejected(m)) => json_error(
                StatusCode::BAD_REQUEST,
                format!("the enclave rejected the request: {m}"),
            ),
            Ok(Reply::Failed(m)) => {
                json_error(StatusCode::BAD_GATEWAY, format!("the enclave failed: {m}"))
            }
            Ok(Reply::Health(_)) => json_error(
                StatusCode::BAD_GATEWAY,
                "the enclave answered with the wrong frame",
            ),
            Err(e) => {
                tracing::warn!(error = %e, route, "relay failed");
                relay_error(e)
            }
        }
    }
}

fn nonce(query: Option<&str>) -> Result<Vec<u8>, String> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .ok_or("missing query parameter nonce=HEX (16 to 64 random bytes)")?;
    hex::decode(value).map_err(|e| format!("nonce is not hex: {e}"))
}

async fn read_body(req: hyper::Request<Incoming>, max: usize) -> Result<Vec<u8>, Response<Body>> {
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
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(json_error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
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
