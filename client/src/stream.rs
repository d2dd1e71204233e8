//! Streamed answers from the text model.
//!
//! A streamed request is sealed as chunked Oblivious HTTP
//! (draft-ietf-ohai-chunked-ohttp) and sent with the
//! `message/ohttp-chunked-req` media type. The enclave seals its answer
//! chunk by chunk as the model produces it, and the host relays each chunk
//! as it comes: a Binary HTTP response of indeterminate length whose
//! content is the OpenAI API's Server-Sent Events and whose trailer carries
//! the usage receipt. [`TextStream`] opens the chunks as they arrive and
//! yields each event's data; at the end it verifies the receipt over
//! everything it yielded before it reports the end. A stream cut short by
//! the host is detected (the final chunk is authenticated) and reported as
//! an error, never as an end.
//!
//! The library asks the enclave for usage in every stream
//! (`stream_options.include_usage`), so the receipt's token counts are
//! checked against the usage the answer reports. Only a stream that failed
//! in the enclave mid-way reports no usage; its receipt is then checked for
//! everything but the counts, which it states.
//!
//! ```no_run
//! # async fn example() -> Result<(), kokon_client::ClientError> {
//! use kokon_client::{local, Client};
//! use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
//!
//! let client = Client::new("http://127.0.0.1:8443");
//! let enclave = client.attest(&local::dev_policy()?).await?;
//! let question = ChatMessage::text_from("user", "Why is the sky blue?");
//! let request = ChatCompletionRequest::new("smollm2-135m-instruct", vec![question]);
//! let mut stream = client.stream_chat(&enclave, &request).await?;
//! while let Some(chunk) = stream.next().await? {
//!     if let Some(text) = chunk.choices.first().and_then(|c| c.delta.content.as_deref()) {
//!         print!("{text}");
//!     }
//! }
//! // The end is reported only once the receipt verified over all of it.
//! let receipt = stream.receipt().expect("verified at the end");
//! println!("\n{} nanotons", receipt.receipt.amount);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use kokon_billing::payer::PAYER_HEADER;
use kokon_billing::{Expected, Price, SequenceWindow, SignedReceipt, RECEIPT_HEADER};
use kokon_seal::chunked::{encapsulate_chunked, ChunkedClient};
use kokon_wire::bhttp_stream::{Part, ResponseDecoder};
use kokon_wire::media_type;
use kokon_wire::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ErrorResponse, StreamOptions, Usage,
    CHAT_COMPLETIONS_PATH, DONE_DATA,
};
use sha2::{Digest, Sha256};

use crate::{unix_now, Client, ClientError, VerifiedEnclave};

/// What the receipt at the end of a stream must match.
struct ReceiptCheck {
    key: [u8; 32],
    request_digest: [u8; 32],
    model_digest: [u8; 32],
    channel_id: u128,
    max_price: Price,
    sequences: Arc<Mutex<SequenceWindow>>,
}

/// A streamed answer being received: the data of each Server-Sent Event as
/// it arrives ([`TextStream::next_event`]), then the verified receipt. An
/// answer that is not an event stream (a request without `stream: true`)
/// is yielded whole, as one item. From [`Client::stream_text`].
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
/// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
/// let body = br#"{"model":"smollm2-135m-instruct","prompt":"Once","stream":true}"#;
/// let mut stream = client.stream_text(&enclave, "POST", "/v1/completions", body).await?;
/// assert_eq!(stream.status(), 200);
/// while let Some(data) = stream.next_event().await? {
///     println!("{data}");
/// }
/// println!("{:?} {:?}", stream.usage(), stream.receipt());
/// # Ok(()) }
/// ```
pub struct TextStream {
    body: Incoming,
    opener: ChunkedClient,
    decoder: ResponseDecoder,
    sse: kokon_wire::openai::SseDecoder,
    events: VecDeque<String>,
    status: Option<u16>,
    /// Whether the content is an event stream (else a whole answer).
    events_mode: bool,
    content: Sha256,
    body_bytes: Vec<u8>,
    usage: Option<Usage>,
    trailers: Option<Vec<(String, Vec<u8>)>>,
    check: ReceiptCheck,
    receipt: Option<SignedReceipt>,
    timeout: Duration,
}

impl TextStream {
    /// The status of the answer inside the sealed response: 200, since
    /// [`Client::stream_text`] returns an error answer as
    /// [`ClientError::Enclave`] rather than as a stream.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let body = br#"{"model":"smollm2-135m-instruct","prompt":"Once","stream":true}"#;
    /// let stream = client.stream_text(&enclave, "POST", "/v1/completions", body).await?;
    /// assert_eq!(stream.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> u16 {
        self.status.unwrap_or(0)
    }

    /// The usage the answer reported, once its last event arrived (the
    /// receipt charges it).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let body = br#"{"model":"smollm2-135m-instruct","prompt":"Once","stream":true,"stream_options":{"include_usage":true}}"#;
    /// let mut stream = client.stream_text(&enclave, "POST", "/v1/completions", body).await?;
    /// while stream.next_event().await?.is_some() {}
    /// let usage = stream.usage().expect("asked for");
    /// assert_eq!(stream.receipt().map(|r| r.receipt.output_units), Some(usage.completion_tokens));
    /// # Ok(()) }
    /// ```
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The verified receipt, once the stream ended (`None` before: a stream
    /// has no receipt until its end, and reports no end without one).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let body = br#"{"model":"smollm2-135m-instruct","prompt":"Once","stream":true}"#;
    /// let mut stream = client.stream_text(&enclave, "POST", "/v1/completions", body).await?;
    /// assert!(stream.receipt().is_none());
    /// while stream.next_event().await?.is_some() {}
    /// println!("{} nanotons", stream.receipt().expect("verified").receipt.amount);
    /// # Ok(()) }
    /// ```
    pub fn receipt(&self) -> Option<&SignedReceipt> {
        self.receipt.as_ref()
    }

    /// The data of the next Server-Sent Event (`[DONE]` included, as sent),
    /// or `None` at the end of the stream, once its receipt verified.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] when the stream breaks off or stalls
    /// longer than the client's timeout, [`ClientError::Seal`] when a chunk
    /// does not open or the stream was cut short (its last chunk is
    /// authenticated), [`ClientError::Protocol`] for a malformed answer,
    /// [`ClientError::Receipt`] when the receipt at the end does not verify
    /// over everything yielded.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let body = br#"{"model":"smollm2-135m-instruct","prompt":"Once","stream":true}"#;
    /// let mut stream = client.stream_text(&enclave, "POST", "/v1/completions", body).await?;
    /// while let Some(data) = stream.next_event().await? {
    ///     if data != "[DONE]" {
    ///         println!("{data}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_event(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if self.receipt.is_some() {
                return Ok(None);
            }
            self.pull().await?;
        }
    }

    /// Reads the next piece of the response and decodes what it completes.
    async fn pull(&mut self) -> Result<(), ClientError> {
        let frame = tokio::time::timeout(self.timeout, self.body.frame())
            .await
            .map_err(|_| {
                ClientError::Transport(format!("the stream stalled for {:?}", self.timeout))
            })?;
        let plain = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => self.opener.push(&data).map_err(ClientError::Seal)?,
                Err(_) => Vec::new(),
            },
            Some(Err(e)) => {
                return Err(ClientError::Transport(format!("the stream broke off: {e}")))
            }
            None => vec![self.opener.finish().map_err(ClientError::Seal)?],
        };
        for chunk in plain {
            let parts = self
                .decoder
                .push(&chunk)
                .map_err(|e| ClientError::Protocol(format!("streamed Binary HTTP: {e}")))?;
            for part in parts {
                self.take(part)?;
            }
        }
        if let Some(trailers) = self.trailers.take() {
            self.sse.finish().map_err(ClientError::Protocol)?;
            if !self.events_mode && self.status == Some(200) {
                // A whole answer is one item, with the usage it reports.
                let body = String::from_utf8(std::mem::take(&mut self.body_bytes))
                    .map_err(|_| ClientError::Protocol("the answer is not UTF-8".into()))?;
                self.usage = reported_usage(&body);
                self.events.push_back(body);
            }
            self.verify(&trailers)?;
        }
        Ok(())
    }

    fn take(&mut self, part: Part) -> Result<(), ClientError> {
        match part {
            Part::Head { status, headers } => {
                self.status = Some(status);
                self.events_mode = status == 200
                    && headers.iter().any(|(name, value)| {
                        name == "content-type" && value.starts_with(b"text/event-stream")
                    });
            }
            Part::Content(bytes) => {
                self.content.update(&bytes);
                if !self.events_mode {
                    // A whole answer (or an error object), read whole.
                    self.body_bytes.extend_from_slice(&bytes);
                    return Ok(());
                }
                for event in self.sse.push(&bytes).map_err(ClientError::Protocol)? {
                    if let Some(usage) = reported_usage(&event) {
                        self.usage = Some(usage);
                    }
                    self.events.push_back(event);
                }
            }
            Part::Trailers(fields) => self.trailers = Some(fields),
        }
        Ok(())
    }

    fn verify(&mut self, trailers: &[(String, Vec<u8>)]) -> Result<(), ClientError> {
        let receipt = trailers
            .iter()
            .find(|(name, _)| name == RECEIPT_HEADER)
            .ok_or_else(|| {
                kokon_billing::ReceiptError::Malformed(
                    "the streamed response carries no receipt in its trailer".into(),
                )
            })?;
        let receipt = SignedReceipt::from_header(&receipt.1)?;
        let (units, output_units) = match (self.status, self.usage) {
            (Some(200), Some(u)) => (u.prompt_tokens, u.completion_tokens),
            // A stream that failed mid-way: the counts the receipt states.
            (Some(200), None) if self.events_mode => {
                (receipt.receipt.units, receipt.receipt.output_units)
            }
            _ => (0, 0),
        };
        receipt.verify(&Expected {
            key: self.check.key,
            request_digest: self.check.request_digest,
            response_digest: self.content.clone().finalize().into(),
            model_digest: self.check.model_digest,
            units,
            output_units,
            channel_id: self.check.channel_id,
            max_price: self.check.max_price,
        })?;
        self.check
            .sequences
            .lock()
            .map_err(|_| ClientError::Protocol("poisoned".into()))?
            .record(receipt.receipt.sequence)?;
        self.receipt = Some(receipt);
        Ok(())
    }

    /// Reads to the head; an error answer is read whole, its receipt
    /// verified, and returned as [`ClientError::Enclave`].
    async fn start(mut self) -> Result<Self, ClientError> {
        while self.status.is_none() {
            if self.receipt.is_some() {
                return Err(ClientError::Protocol(
                    "the streamed response has no head".into(),
                ));
            }
            self.pull().await?;
        }
        if self.status == Some(200) {
            return Ok(self);
        }
        while self.receipt.is_none() {
            self.pull().await?;
        }
        let message = serde_json::from_slice::<ErrorResponse>(&self.body_bytes)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body_bytes).into_owned());
        Err(ClientError::Enclave {
            status: self.status(),
            message,
        })
    }
}

/// The usage an event reports, if any.
fn reported_usage(event: &str) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    serde_json::from_str::<WithUsage>(event).ok()?.usage
}

/// The message of an event that carries OpenAI's error object.
fn reported_error(event: &str) -> Option<String> {
    serde_json::from_str::<ErrorResponse>(event)
        .ok()
        .map(|e| e.error.message)
}

/// A streamed chat completion: its chunks as the model produces them, from
/// [`Client::stream_chat`]. Its end is reported only once the receipt in
/// the stream's trailer verified over every chunk.
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
/// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
/// use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
///
/// let question = ChatMessage::text_from("user", "Why is the sky blue?");
/// let request = ChatCompletionRequest::new("smollm2-135m-instruct", vec![question]);
/// let mut stream = client.stream_chat(&enclave, &request).await?;
/// let mut answer = String::new();
/// while let Some(chunk) = stream.next().await? {
///     answer.extend(chunk.choices.iter().filter_map(|c| c.delta.content.as_deref()));
/// }
/// let (usage, receipt) = (stream.usage(), stream.receipt());
/// # Ok(()) }
/// ```
pub struct ChatStream {
    inner: TextStream,
}

impl ChatStream {
    /// The next chunk, or `None` at the end of the answer, once its receipt
    /// verified. A failure in the enclave mid-way is an error.
    ///
    /// # Errors
    ///
    /// Those of [`TextStream::next_event`]; [`ClientError::Enclave`] for an
    /// error the enclave reports mid-way, [`ClientError::Protocol`] for an
    /// event that is not a chunk.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// # let request = kokon_wire::openai::ChatCompletionRequest::new("smollm2-135m-instruct", vec![]);
    /// let mut stream = client.stream_chat(&enclave, &request).await?;
    /// while let Some(chunk) = stream.next().await? {
    ///     for choice in &chunk.choices {
    ///         print!("{}", choice.delta.content.as_deref().unwrap_or(""));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Result<Option<ChatCompletionChunk>, ClientError> {
        while let Some(event) = self.inner.next_event().await? {
            if event == DONE_DATA {
                continue;
            }
            if let Some(message) = reported_error(&event) {
                return Err(ClientError::Enclave {
                    status: 500,
                    message,
                });
            }
            return serde_json::from_str(&event)
                .map(Some)
                .map_err(|e| ClientError::Protocol(format!("chat completion chunk: {e}")));
        }
        Ok(None)
    }

    /// The usage, once the last chunk arrived (the library always asks for
    /// it; the receipt charges it).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// # let request = kokon_wire::openai::ChatCompletionRequest::new("smollm2-135m-instruct", vec![]);
    /// let mut stream = client.stream_chat(&enclave, &request).await?;
    /// while stream.next().await?.is_some() {}
    /// if let Some(usage) = stream.usage() {
    ///     println!("{} prompt + {} completion tokens", usage.prompt_tokens, usage.completion_tokens);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    /// The verified receipt, once the stream ended (`None` before).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// # let request = kokon_wire::openai::ChatCompletionRequest::new("smollm2-135m-instruct", vec![]);
    /// let mut stream = client.stream_chat(&enclave, &request).await?;
    /// while stream.next().await?.is_some() {}
    /// let receipt = stream.receipt().expect("the end comes after the receipt verified");
    /// println!("receipt {}: {} nanotons", receipt.receipt.sequence, receipt.receipt.amount);
    /// # Ok(()) }
    /// ```
    pub fn receipt(&self) -> Option<&SignedReceipt> {
        self.inner.receipt()
    }
}

impl Client {
    /// Seals `body` for `method path` on the text model as a chunked
    /// request, sends it through the host and returns its answer as a
    /// stream (the head already read; an error answer is returned as
    /// [`ClientError::Enclave`] with its receipt verified).
    ///
    /// Each chunk of the answer is opened as it arrives; the stream reports
    /// its end only once the receipt in its trailer verified over
    /// everything it yielded, and a stream the host cut short is an error.
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] when the attested enclave serves no text
    /// model, [`ClientError::Transport`] or [`ClientError::Host`] when the
    /// host cannot be reached or refuses, [`ClientError::Enclave`] for an
    /// error answer, and those of [`TextStream::next_event`] while reading
    /// the head.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let body = br#"{"model":"smollm2-135m-instruct","prompt":"Once upon a time","stream":true}"#;
    /// let mut stream = client.stream_text(&enclave, "POST", "/v1/completions", body).await?;
    /// while let Some(data) = stream.next_event().await? {
    ///     println!("{data}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream_text(
        &self,
        enclave: &VerifiedEnclave,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<TextStream, ClientError> {
        let model_digest = enclave.text_model_digest()?;
        let now = unix_now();
        let encoded = enclave.encode_request(method, path, crate::JSON_FIELDS, body, now)?;
        let (sealed, opener) =
            encapsulate_chunked(&enclave.key_config, &encoded).map_err(ClientError::Seal)?;
        let mut req = http::Request::post(format!("{}/v1/ohttp", self.base)).header(
            http::header::CONTENT_TYPE,
            media_type::OHTTP_CHUNKED_REQUEST,
        );
        if let Some(proof) = enclave.payer_proof(&sealed, now) {
            req = req.header(PAYER_HEADER, proof.to_header());
        }
        let req = req
            .body(Full::new(Bytes::from(sealed)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = self.open_answer(req).await?;
        TextStream {
            body: response.into_body(),
            opener,
            decoder: ResponseDecoder::default(),
            sse: Default::default(),
            events: VecDeque::new(),
            status: None,
            events_mode: false,
            content: Sha256::new(),
            body_bytes: Vec::new(),
            usage: None,
            trailers: None,
            check: ReceiptCheck {
                key: enclave.evidence.claims.receipt_key,
                request_digest: kokon_billing::digest(&encoded),
                model_digest,
                channel_id: enclave.channel_id,
                max_price: enclave.max_token_price,
                sequences: enclave.sequences.clone(),
            },
            receipt: None,
            timeout: self.timeout,
        }
        .start()
        .await
    }

    /// A streamed chat completion from the attested text model; usage is
    /// always asked for, so that the receipt's counts are checked.
    ///
    /// # Errors
    ///
    /// Those of [`Client::stream_text`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
    ///
    /// let question = ChatMessage::text_from("user", "Why is the sky blue?");
    /// let request = ChatCompletionRequest::new("smollm2-135m-instruct", vec![question]);
    /// let mut stream = client.stream_chat(&enclave, &request).await?;
    /// while let Some(chunk) = stream.next().await? {
    ///     print!("{}", chunk.choices.first().and_then(|c| c.delta.content.as_deref()).unwrap_or(""));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream_chat(
        &self,
        enclave: &VerifiedEnclave,
        request: &ChatCompletionRequest,
    ) -> Result<ChatStream, ClientError> {
        let mut request = request.clone();
        request.stream = Some(true);
        request.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        let body =
            serde_json::to_vec(&request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let inner = self
            .stream_text(enclave, "POST", CHAT_COMPLETIONS_PATH, &body)
            .await?;
        Ok(ChatStream { inner })
    }
}
