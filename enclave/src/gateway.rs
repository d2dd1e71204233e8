//! The OHTTP gateway: the only place where client plaintext exists.
//!
//! For each encapsulated request it: decapsulates with the attested HPKE key
//! (RFC 9458); parses the Binary HTTP request (RFC 9292); checks freshness
//! (`kokon-sent-at` within the window) and that this exact encapsulated
//! request was never served before (RFC 9458 section 6.2: replay defence
//! needs both); routes it (KServe v2 to the classifier; the OpenAI API to the
//! text model, when one is served); signs a usage receipt over the request
//! and response digests; and seals the Binary HTTP response under the
//! request's HPKE context.
//!
//! What leaves this module toward the host is either a sealed response or a
//! [`Outcome::Rejected`] message written without looking at plaintext.
//! Nothing here logs request or response content.

use std::io::Cursor;
use std::sync::Mutex;
use std::time::Duration;

use bhttp::{Message, Mode, StatusCode};
use kokon_billing::{digest, Price, Usage, CHANNEL_HEADER, RECEIPT_HEADER};
use kokon_llm::openai::{self as llm_api, Endpoint};
use kokon_seal::chunked::ChunkedResponse;
use kokon_wire::bhttp_stream::{content_chunk, response_end, response_head};
use kokon_wire::kserve::{self, ErrorBody, InferRequest};
use kokon_wire::openai::{ApiError, CHAT_COMPLETIONS_PATH, COMPLETIONS_PATH, MODELS_PATH};
use kokon_wire::replay::ReplayCache;
/// The enclave's clock, in Unix seconds.
pub use kokon_wire::unix_now;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::inference::{InferError, Model};
use crate::keys::Keyset;

/// Requests older or newer than this many seconds are refused.
pub use kokon_wire::FRESHNESS_WINDOW_SECS;
/// The request header carrying the client's send time (Unix seconds).
pub use kokon_wire::SENT_AT_HEADER;
/// Most requests remembered for replay detection; beyond it the gateway fails closed.
const REPLAY_CACHE_CAPACITY: usize = 1 << 20;

/// What the gateway returns to the host.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The sealed Binary HTTP response.
    Sealed(Vec<u8>),
    /// The sealed response to a request billed to a channel, with the
    /// receipt (JSON) the host needs to count the payment.
    Billed {
        /// The sealed response.
        sealed: Vec<u8>,
        /// The signed receipt.
        receipt: Vec<u8>,
    },
    /// Refused before or without reading plaintext; the message is for the host.
    Rejected(String),
}

/// The text model behind the OpenAI API, and its prices.
pub struct TextService {
    /// Its generation engine.
    pub engine: kokon_llm::Engine,
    /// Per prompt token (`per_unit`) and per completion token (`per_output_unit`).
    pub price: Price,
    /// When it was loaded (Unix seconds), for the model list.
    pub loaded_at: i64,
}

/// The gateway: keys, models and replay state.
pub struct Gateway {
    keys: Keyset,
    model: Model,
    price: Price,
    text: Option<TextService>,
    replay: Mutex<ReplayCache>,
    fault_delay: Option<Duration>,
}

/// Which model a reply is billed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Classifier,
    Text,
}

/// Why a decapsulated request is not served: a sealed error for the
/// client, or a refusal for the host.
enum Admit {
    Sealed(Reply),
    Rejected(String),
}

/// A routed request's answer: whole, or a generation to stream.
enum Answer {
    Whole(Reply),
    Stream(Box<llm_api::Generation>),
}

fn not_sealed(e: kokon_seal::SealError) -> String {
    format!("cannot open the OHTTP request (not sealed to this enclave's key, or tampered): {e}")
}

struct Reply {
    status: u16,
    /// Its header fields: the content type first.
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    units: u64,
    output_units: u64,
    served: Served,
}

/// The header fields of a JSON body.
fn json_headers() -> Vec<(&'static str, Vec<u8>)> {
    vec![("content-type", kserve::JSON_CONTENT_TYPE.into())]
}

impl Reply {
    fn json(status: u16, value: &impl serde::Serialize, units: u64) -> Self {
        Self {
            status,
            headers: json_headers(),
            body: serde_json::to_vec(value).unwrap_or_default(),
            units,
            output_units: 0,
            served: Served::Classifier,
        }
    }

    /// A KServe inference answer, with its binary tensor data, if any.
    fn kserve(encoded: kserve::Encoded, units: u64) -> Self {
        let mut headers = vec![("content-type", encoded.content_type().into())];
        if let Some(length) = encoded.header_length {
            headers.push((kserve::HEADER_LENGTH, length.to_string().into_bytes()));
        }
        Self {
            status: 200,
            headers,
            body: encoded.body,
            units,
            output_units: 0,
            served: Served::Classifier,
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &ErrorBody {
                error: message.into(),
            },
            0,
        )
    }

    /// An OpenAI API answer, billed to the text model.
    fn text(status: u16, body: Vec<u8>, units: u64, output_units: u64) -> Self {
        Self {
            status,
            headers: json_headers(),
            body,
            units,
            output_units,
            served: Served::Text,
        }
    }

    /// An OpenAI error object (not billed).
    fn api_error(error: &ApiError) -> Self {
        Self::text(error.status(), error.body(), 0, 0)
    }
}

impl Gateway {
    /// A gateway serving `model` at `price` (and `text`, when given) with
    /// `keys`. `fault_delay` (simulation only) holds each inference for a
    /// while, so tests can kill the enclave mid-request.
    pub fn new(
        keys: Keyset,
        model: Model,
        price: Price,
        text: Option<TextService>,
        fault_delay: Option<Duration>,
    ) -> Self {
        Self {
            keys,
            model,
            price,
            text,
            replay: Mutex::new(ReplayCache::new(REPLAY_CACHE_CAPACITY)),
            fault_delay,
        }
    }

    /// The keyset.
    pub fn keys(&self) -> &Keyset {
        &self.keys
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The text model, when one is served.
    pub fn text(&self) -> Option<&TextService> {
        self.text.as_ref()
    }

    /// Serves one encapsulated request at `now` (Unix seconds), billed to
    /// `billed_channel`: the channel the host admitted it for (0: not
    /// billed). A sealed request that names another channel is refused, so
    /// no receipt names a channel other than the one charged.
    pub fn handle(&self, encapsulated: &[u8], billed_channel: u128, now: i64) -> Outcome {
        let (plain, context) = match self.keys.ohttp.decapsulate(encapsulated) {
            Ok(opened) => opened,
            Err(e) => return Outcome::Rejected(not_sealed(e)),
        };
        let plain = Zeroizing::new(plain);
        let reply = match self.admit(&plain, encapsulated, billed_channel, now) {
            Ok(request) => match self.route(&request, false) {
                Answer::Whole(reply) => reply,
                // Not reached: streams are only started when allowed.
                Answer::Stream(_) => Reply::api_error(&ApiError::server("unexpected stream")),
            },
            Err(Admit::Sealed(reply)) => reply,
            Err(Admit::Rejected(message)) => return Outcome::Rejected(message),
        };
        self.seal(context, &plain, reply, billed_channel, now)
    }

    /// Opens a chunked encapsulated request (draft-ietf-ohai-chunked-ohttp)
    /// at `now`, billed to `billed_channel` as in [`Gateway::handle`], and
    /// starts its answer: a stream of Server-Sent Events when the request
    /// asked for one, otherwise the whole answer in one chunk. Either way
    /// the response is Binary HTTP of indeterminate length whose trailer
    /// carries the receipt.
    pub fn open_stream(
        &self,
        encapsulated: &[u8],
        billed_channel: u128,
        now: i64,
    ) -> Result<ResponseStream<'_>, String> {
        let (plain, sealer) = self
            .keys
            .ohttp
            .decapsulate_chunked(encapsulated)
            .map_err(not_sealed)?;
        let answer = match self.admit(&plain, encapsulated, billed_channel, now) {
            Ok(request) => self.route(&request, true),
            Err(Admit::Sealed(reply)) => Answer::Whole(reply),
            Err(Admit::Rejected(message)) => return Err(message),
        };
        let (model_digest, price) = match &answer {
            Answer::Whole(reply) => self.billed_as(reply.served),
            Answer::Stream(_) => self.billed_as(Served::Text),
        };
        let max_charge = match &answer {
            Answer::Whole(reply) => price.charge(reply.units, reply.output_units),
            Answer::Stream(g) => price.charge(g.prompt_tokens() as u64, g.max_tokens as u64),
        }
        .unwrap_or(u128::MAX);
        Ok(ResponseStream {
            gateway: self,
            sealer,
            answer: Some(answer),
            request_digest: digest(&plain),
            content: Sha256::new(),
            model_digest,
            price,
            channel_id: billed_channel,
            max_charge,
            usage: None,
            head_sent: false,
        })
    }

    /// Checks a decapsulated request before anything is served: Binary
    /// HTTP, fresh, never seen, billed to the admitted channel.
    fn admit(
        &self,
        plain: &[u8],
        encapsulated: &[u8],
        billed_channel: u128,
        now: i64,
    ) -> Result<Message, Admit> {
        let Ok(request) = Message::read_bhttp(&mut Cursor::new(plain)) else {
            return Err(Admit::Sealed(Reply::error(
                400,
                "the sealed content is not a valid Binary HTTP request",
            )));
        };
        let sent_at = request
            .header()
            .get(SENT_AT_HEADER.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok());
        match sent_at {
            Some(t) if (now - t).abs() <= FRESHNESS_WINDOW_SECS => {}
            _ => return Err(Admit::Rejected(format!("request outside the {FRESHNESS_WINDOW_SECS} s freshness window or without {SENT_AT_HEADER}"))),
        }
        let id = digest(encapsulated);
        let fresh = match self.replay.lock() {
            Ok(mut cache) => cache.insert(id, now, now + 2 * FRESHNESS_WINDOW_SECS),
            Err(_) => Err(kokon_wire::replay::Full),
        };
        match fresh {
            Ok(true) => {}
            Ok(false) => {
                return Err(Admit::Rejected(
                    "replayed request: this encapsulated request was already served".into(),
                ))
            }
            Err(_) => {
                return Err(Admit::Rejected(
                    "replay cache full: try again shortly".into(),
                ))
            }
        }
        let named = request.header().get(CHANNEL_HEADER.as_bytes()).map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u128>().ok())
        });
        match named {
            None => Ok(request),
            Some(Some(id)) if id == billed_channel => Ok(request),
            // Neither the sealed value nor anything else from the plaintext
            // goes into this message for the host.
            Some(_) => Err(Admit::Rejected(format!(
                "the sealed request names another payment channel than the one the host admitted it for ({billed_channel}); nothing was served or billed"
            ))),
        }
    }

    /// Routes a request; `streamable` when its answer can be streamed (a
    /// chunked request).
    fn route(&self, request: &Message, streamable: bool) -> Answer {
        let method = request.control().method().unwrap_or_default();
        let path = std::str::from_utf8(request.control().path().unwrap_or_default()).unwrap_or("");
        let name = self.model.name();
        let model_path = format!("/v2/models/{name}");
        Answer::Whole(match (method, path) {
            (b"GET", p) if p == model_path => Reply::json(200, &self.model.metadata(), 0),
            (b"POST", p) if p == format!("{model_path}/infer") => self.infer(request),
            (_, p) if p.starts_with("/v2/models/") => Reply::error(404, format!("unknown model or route; this enclave serves {model_path} and {model_path}/infer")),
            (_, p) if p.starts_with("/v1/") => {
                return self.openai(method, p, request.content(), streamable)
            }
            _ => Reply::error(404, "unknown route"),
        })
    }

    /// The OpenAI API on the text model.
    fn openai(&self, method: &[u8], path: &str, body: &[u8], streamable: bool) -> Answer {
        let Some(text) = &self.text else {
            return Answer::Whole(Reply::api_error(&ApiError::not_found(
                "this enclave serves no text model (start it with --llm)",
            )));
        };
        let endpoint = match (method, path) {
            (b"GET", MODELS_PATH) => {
                let list = llm_api::models(&text.engine, text.loaded_at);
                let body = serde_json::to_vec(&list).unwrap_or_default();
                return Answer::Whole(Reply::text(200, body, 0, 0));
            }
            (b"POST", CHAT_COMPLETIONS_PATH) => Endpoint::Chat,
            (b"POST", COMPLETIONS_PATH) => Endpoint::Completion,
            _ => {
                return Answer::Whole(Reply::api_error(&ApiError::not_found(format!(
                    "unknown route; the OpenAI API here is GET {MODELS_PATH}, POST {CHAT_COMPLETIONS_PATH} and POST {COMPLETIONS_PATH}"
                ))))
            }
        };
        let mut id = [0u8; 12];
        if getrandom::fill(&mut id).is_err() {
            return Answer::Whole(Reply::api_error(&ApiError::server(
                "the enclave's random number generator failed",
            )));
        }
        let generation =
            match llm_api::start(&text.engine, endpoint, body, &hex::encode(id), unix_now()) {
                Ok(g) => g,
                Err(e) => return Answer::Whole(Reply::api_error(&e)),
            };
        match (generation.stream, streamable) {
            (true, true) => return Answer::Stream(Box::new(generation)),
            (true, false) => {
                return Answer::Whole(Reply::api_error(&ApiError::invalid(
                    format!("stream: true needs a chunked OHTTP request ({}), whose answer is sealed and relayed chunk by chunk", kokon_wire::media_type::OHTTP_CHUNKED_REQUEST),
                    Some("stream"),
                )))
            }
            (false, _) => {}
        }
        // The gateway runs on a blocking-allowed thread (the server's
        // block_in_place): wait for the engine there.
        Answer::Whole(
            match tokio::runtime::Handle::current().block_on(generation.whole()) {
                Ok((body, usage)) => {
                    Reply::text(200, body, usage.prompt_tokens, usage.completion_tokens)
                }
                Err(e) => Reply::api_error(&e),
            },
        )
    }

    /// A KServe inference: a JSON body, or a JSON header of the length in
    /// its [`kserve::HEADER_LENGTH`] field followed by binary tensor data.
    fn infer(&self, message: &Message) -> Reply {
        let fields = message.header().iter().map(|f| (f.name(), f.value()));
        let request = match kserve::header_length(fields)
            .and_then(|length| InferRequest::decode(message.content(), length))
        {
            Ok(r) => r,
            Err(e) => return Reply::error(400, e.0),
        };
        if let Some(delay) = self.fault_delay {
            std::thread::sleep(delay);
        }
        let (response, units) = match self.model.infer(&request) {
            Ok(answer) => answer,
            Err(InferError::BadRequest(msg)) => return Reply::error(400, msg),
            Err(e) => return Reply::error(500, e.to_string()),
        };
        match response.encode() {
            Ok(encoded) if encoded.body.len() > kokon_wire::MAX_RESPONSE_BODY => Reply::error(
                500,
                format!(
                    "the answer of {} bytes exceeds the {}-byte limit on answers; ask for its outputs in binary (\"binary_data_output\": true) or send a smaller batch",
                    encoded.body.len(),
                    kokon_wire::MAX_RESPONSE_BODY
                ),
            ),
            Ok(encoded) => Reply::kserve(encoded, units),
            Err(e) => Reply::error(500, e.0),
        }
    }

    /// The digest and prices of the model a reply is billed to.
    fn billed_as(&self, served: Served) -> ([u8; 32], Price) {
        match (served, &self.text) {
            (Served::Text, Some(text)) => (text.engine.model().digest(), text.price),
            _ => (self.model.digest(), self.price),
        }
    }

    /// Signs the receipt for `reply`, issued at `now` (Unix seconds), and
    /// seals the reply with it.
    fn seal(
        &self,
        context: kokon_seal::ResponseContext,
        request_plain: &[u8],
        reply: Reply,
        channel_id: u128,
        now: i64,
    ) -> Outcome {
        let (model_digest, price) = self.billed_as(reply.served);
        let receipt = match self.keys.receipts.sign(&Usage {
            request_digest: digest(request_plain),
            response_digest: digest(&reply.body),
            model_digest,
            units: reply.units,
            output_units: reply.output_units,
            price,
            channel_id,
            issued_at: now,
        }) {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected(format!("internal error signing the receipt: {e}")),
        };
        let Ok(status) = StatusCode::try_from(reply.status) else {
            return Outcome::Rejected("internal error: invalid response status".into());
        };
        let mut response = Message::response(status);
        for (name, value) in &reply.headers {
            response.put_header(*name, value.as_slice());
        }
        response.put_header(RECEIPT_HEADER, receipt.to_header());
        response.write_content(&reply.body);
        let mut encoded = Zeroizing::new(Vec::new());
        if response
            .write_bhttp(Mode::KnownLength, &mut *encoded)
            .is_err()
        {
            return Outcome::Rejected("internal error encoding the response".into());
        }
        match context.encapsulate(&encoded) {
            Ok(sealed) if channel_id != 0 => Outcome::Billed {
                sealed,
                receipt: receipt.to_header(),
            },
            Ok(sealed) => Outcome::Sealed(sealed),
            Err(_) => Outcome::Rejected("internal error sealing the response".into()),
        }
    }
}

/// A streamed answer under way (see [`Gateway::open_stream`]): its Binary
/// HTTP response (head, content, trailer with the receipt) sealed chunk by
/// chunk as it is produced. Dropping it before [`ResponseStream::end`]
/// cancels the generation and bills nothing.
pub struct ResponseStream<'g> {
    gateway: &'g Gateway,
    sealer: ChunkedResponse,
    /// What is left to send: `None` once all content is out.
    answer: Option<Answer>,
    request_digest: [u8; 32],
    /// SHA-256 over all content sent, which the receipt signs.
    content: Sha256,
    model_digest: [u8; 32],
    price: Price,
    channel_id: u128,
    max_charge: u128,
    /// Units and output units of the content sent, once all is out.
    usage: Option<(u64, u64)>,
    head_sent: bool,
}

impl ResponseStream<'_> {
    /// The most this answer can be charged (nanotons): every prompt token
    /// and `max_tokens` completion tokens at the served prices. The host
    /// reserves it before the stream goes ahead.
    pub fn max_charge(&self) -> u128 {
        self.max_charge
    }

    fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        self.sealer
            .seal(plain, false)
            .map_err(|_| "internal error sealing a response chunk".to_string())
    }

    /// The next sealed bytes for the client: first the response head, then
    /// each Server-Sent Event as the model produces it (a whole answer goes
    /// with its head); `None` once all content is out.
    ///
    /// Cancel-safe: dropping the future before it completes loses nothing
    /// (the model's next token waits for the next call).
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        let generation = match &mut self.answer {
            None => return Ok(None),
            Some(Answer::Stream(generation)) if self.head_sent => generation,
            Some(Answer::Stream(_)) => {
                self.head_sent = true;
                let head = response_head(200, &[("content-type", b"text/event-stream")]);
                return self.seal(&head).map(Some);
            }
            Some(Answer::Whole(_)) => {
                let Some(Answer::Whole(reply)) = self.answer.take() else {
                    return Ok(None);
                };
                let headers: Vec<(&str, &[u8])> = reply
                    .headers
                    .iter()
                    .map(|(name, value)| (*name, value.as_slice()))
                    .collect();
                let mut plain = Zeroizing::new(response_head(reply.status, &headers));
                plain.extend_from_slice(&content_chunk(&reply.body));
                self.content.update(&reply.body);
                self.usage = Some((reply.units, reply.output_units));
                return self.seal(&plain).map(Some);
            }
        };
        match generation.next_event().await {
            Some((event, usage)) => {
                let event = Zeroizing::new(event);
                if let Some(u) = usage {
                    self.usage = Some((u.prompt_tokens, u.completion_tokens));
                }
                self.content.update(&*event);
                let chunk = Zeroizing::new(content_chunk(&event));
                self.seal(&chunk).map(Some)
            }
            None => {
                if self.usage.is_none() {
                    // Ended without usage (the model failed mid-way): what
                    // was generated.
                    self.usage = Some((
                        generation.prompt_tokens() as u64,
                        generation.generated() as u64,
                    ));
                }
                self.answer = None;
                Ok(None)
            }
        }
    }

    /// Ends the answer at `now` (Unix seconds): early, when content is left
    /// (the host cancelled: the generation stops and what it generated is
    /// billed). Signs the receipt over the content sent and returns the
    /// last sealed bytes, whose trailer carries it, and the receipt (JSON)
    /// for the host.
    pub fn end(mut self, now: i64) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (units, output_units) = match self.answer.take() {
            Some(Answer::Stream(g)) => (g.prompt_tokens() as u64, g.generated() as u64),
            Some(Answer::Whole(_)) => (0, 0),
            None => self.usage.unwrap_or((0, 0)),
        };
        let receipt = self
            .gateway
            .keys
            .receipts
            .sign(&Usage {
                request_digest: self.request_digest,
                response_digest: self.content.clone().finalize().into(),
                model_digest: self.model_digest,
                units,
                output_units,
                price: self.price,
                channel_id: self.channel_id,
                issued_at: now,
            })
            .map_err(|e| format!("internal error signing the receipt: {e}"))?
            .to_header();
        let trailer = response_end(&[(RECEIPT_HEADER, &receipt)]);
        let sealed = self
            .sealer
            .seal(&trailer, true)
            .map_err(|_| "internal error sealing the end of the response".to_string())?;
        Ok((sealed, receipt))
    }
}
