//! The kokon client SDK.
//!
//! A client trusts its policy file and the hardware vendors' roots, nothing
//! else. [`Client::attest`] fetches an attestation bundle for a fresh nonce,
//! verifies the evidence (signatures, chain to a policy root, binding of the
//! claims, RTMR3 replay), checks the nonce, and appraises it against the
//! policy; the result is a [`VerifiedEnclave`]. [`Client::request`] seals a
//! Binary HTTP request to the enclave's attested OHTTP key, sends it through
//! the (untrusted) host, opens the response and verifies its usage receipt
//! against the attested receipt key before returning anything.
//!
//! It must never send plaintext to an unverified key, nor return a response
//! whose receipt does not check out.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod local;
pub mod magika;
pub mod session;
pub mod stream;

use std::io::Cursor;
use std::sync::Mutex;
use std::time::Duration;

use bhttp::{Message, Mode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kokon_attestation::{verify_bundle, AttestationBundle, VerifiedEvidence};
pub use kokon_billing::payer::PayerProof;
use kokon_billing::payer::PAYER_HEADER;
use kokon_billing::{
    digest, Expected, Price, ReceiptError, SequenceWindow, SignedReceipt, RECEIPT_HEADER,
};
pub use kokon_fetch::CertificateDer;
use kokon_fetch::HttpsClient;
use kokon_policies::{Policy, Rejection};
use kokon_seal::{KeyConfig, SealError, Suite};
pub use kokon_wire::billing::CloseOffer;
use kokon_wire::billing::{ChannelStatus, VoucherAccepted};
use kokon_wire::kserve::{ErrorBody, InferRequest, InferResponse, ModelMetadata};
use kokon_wire::openai::{
    ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest, ErrorResponse, ModelList,
    CHAT_COMPLETIONS_PATH, COMPLETIONS_PATH, MODELS_PATH,
};
/// The current time in Unix seconds.
pub use kokon_wire::unix_now;
use thiserror::Error;

/// The header with the client's send time (checked by the enclave's replay defence).
pub use kokon_wire::SENT_AT_HEADER;
/// Attempts to deliver a voucher before giving up (see [`Client::pay`]).
pub const PAY_ATTEMPTS: u32 = 4;
/// Default time allowed for one HTTP exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The evidence did not verify.
    #[error("evidence rejected: {0}")]
    Evidence(#[from] kokon_attestation::Error),
    /// The policy rejected the verified evidence.
    #[error("{0}")]
    Policy(#[from] Rejection),
    /// The bundle answers another nonce: a replayed or stale attestation.
    #[error("nonce mismatch (stale or replayed attestation): expected {expected}, found {found}")]
    Nonce {
        /// The nonce sent.
        expected: String,
        /// The nonce in the claims.
        found: String,
    },
    /// The attested key configuration is unusable.
    #[error("attested OHTTP key configuration: {0}")]
    KeyConfig(SealError),
    /// Sealing or opening failed (a tampered or foreign response).
    #[error("{0}")]
    Seal(SealError),
    /// The receipt did not verify.
    #[error("{0}")]
    Receipt(#[from] ReceiptError),
    /// The host answered with an error (it never sees plaintext, so this is about transport or the enclave's availability).
    #[error("host answered {status}: {message}")]
    Host {
        /// HTTP status.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// The enclave answered a sealed error.
    #[error("enclave answered {status}: {message}")]
    Enclave {
        /// Status inside the sealed response.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// The host could not be reached or the exchange failed.
    #[error("transport: {0}")]
    Transport(String),
    /// A message did not have the expected form.
    #[error("protocol: {0}")]
    Protocol(String),
    /// This machine's set-up (policy file, data directory, `just setup`'s
    /// paths) is missing or unreadable.
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// True when the host refused a request because it was sealed to a key
    /// the enclave no longer holds (it was restarted, with a new key): attest
    /// again and send it once more ([`session::Session`] does).
    pub fn is_key_changed(&self) -> bool {
        matches!(self, ClientError::Host { status: 400, message } if message.contains("not sealed to this enclave's key"))
    }

    /// True when evidence or policy rejected the enclave (CLI exit status 2).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            ClientError::Evidence(_)
                | ClientError::Policy(_)
                | ClientError::Nonce { .. }
                | ClientError::KeyConfig(_)
        )
    }
}

/// An enclave whose evidence verified and satisfied the policy.
#[derive(Debug)]
pub struct VerifiedEnclave {
    /// The bundle as received.
    pub bundle: AttestationBundle,
    /// What verification established.
    pub evidence: VerifiedEvidence,
    /// The attested OHTTP key configuration.
    pub key_config: KeyConfig,
    /// The payment channel requests are billed to (0: none).
    pub channel_id: u128,
    /// The channel's client key, which signs each billed request's payer proof.
    channel_key: Option<ed25519_dalek::SigningKey>,
    /// The highest price per unit (nanotons) the client accepts, from its policy.
    pub max_price_per_unit: u128,
    /// The highest prices per prompt token (`per_unit`) and per completion
    /// token (`per_output_unit`) the client accepts, from its policy.
    pub max_token_price: Price,
    sequences: std::sync::Arc<Mutex<SequenceWindow>>,
}

impl VerifiedEnclave {
    /// Bills the following requests to payment channel `channel_id`, whose
    /// client key `key` signs a payer proof for each (the host admits
    /// nothing else).
    pub fn with_channel(mut self, channel_id: u128, key: ed25519_dalek::SigningKey) -> Self {
        self.channel_id = channel_id;
        self.channel_key = Some(key);
        self
    }

    /// The payer proof for the encapsulated request `sealed`, signed at
    /// `now` (Unix seconds), when billing.
    pub fn payer_proof(&self, sealed: &[u8], now: i64) -> Option<PayerProof> {
        let key = self.channel_key.as_ref()?;
        Some(PayerProof::sign(key, self.channel_id, sealed, now))
    }
}

/// Verifies a bundle under `policy` at `now`; with `nonce`, also requires the
/// claims to echo it (omit it only for offline checks of saved bundles).
pub fn verify(
    bundle: AttestationBundle,
    policy: &Policy,
    nonce: Option<&[u8]>,
    now: i64,
) -> Result<VerifiedEnclave, ClientError> {
    let evidence = verify_bundle(&bundle, &policy.anchors, now)?;
    if let Some(nonce) = nonce {
        if evidence.claims.nonce != nonce {
            return Err(ClientError::Nonce {
                expected: hex::encode(nonce),
                found: hex::encode(&evidence.claims.nonce),
            });
        }
    }
    policy.appraise(&evidence, now)?;
    let key_config = KeyConfig::parse(&evidence.claims.ohttp_key_config, Some(Suite::Aes256Gcm))
        .map_err(ClientError::KeyConfig)?;
    Ok(VerifiedEnclave {
        bundle,
        evidence,
        key_config,
        channel_id: 0,
        channel_key: None,
        max_price_per_unit: policy.max_price_per_unit,
        max_token_price: Price {
            per_unit: policy.max_price_per_prompt_token,
            per_output_unit: policy.max_price_per_completion_token,
        },
        sequences: std::sync::Arc::new(Mutex::new(SequenceWindow::default())),
    })
}

/// A response opened and checked.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Status inside the sealed response.
    pub status: u16,
    /// Its body.
    pub body: Vec<u8>,
    /// Its verified receipt.
    pub receipt: SignedReceipt,
}

/// A request sealed to an enclave, with what is needed to open its answer.
pub struct Sealed {
    /// The encapsulated request (what travels through the host).
    pub bytes: Vec<u8>,
    context: kokon_seal::ClientContext,
    request_digest: [u8; 32],
    billing: Billing,
}

/// How the answer to a sealed request is billed, as the client expects it.
#[derive(Debug, Clone, Copy)]
enum Billing {
    /// The classifier: these units at its price per unit.
    Units(u64),
    /// The text model: the prompt and completion tokens its answer reports
    /// (`usage`), at its token prices.
    Tokens,
}

impl VerifiedEnclave {
    /// Seals a request sent at `now` (Unix seconds, stamped in
    /// [`SENT_AT_HEADER`]). `units` is what a successful answer should be
    /// billed.
    pub fn seal(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        units: u64,
        now: i64,
    ) -> Result<Sealed, ClientError> {
        self.seal_billed(method, path, body, Billing::Units(units), now)
    }

    /// Seals a request to the text model (the OpenAI API), sent at `now`:
    /// its answer is billed by the tokens it reports.
    pub fn seal_text(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Sealed, ClientError> {
        if self.evidence.claims.text_model.is_none() {
            return Err(ClientError::Protocol(
                "the attested enclave serves no text model".into(),
            ));
        }
        self.seal_billed(method, path, body, Billing::Tokens, now)
    }

    fn seal_billed(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        billing: Billing,
        now: i64,
    ) -> Result<Sealed, ClientError> {
        let encoded = self.encode_request(method, path, body, now)?;
        let (bytes, context) =
            kokon_seal::encapsulate(&self.key_config, &encoded).map_err(ClientError::Seal)?;
        Ok(Sealed {
            bytes,
            context,
            request_digest: digest(&encoded),
            billing,
        })
    }

    /// The Binary HTTP request sent at `now`, as the enclave reads it.
    fn encode_request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ClientError> {
        let mut message = Message::request(
            method.as_bytes().to_vec(),
            b"https".to_vec(),
            b"kokon.enclave".to_vec(),
            path.as_bytes().to_vec(),
        );
        message.put_header("content-type", "application/json");
        message.put_header(SENT_AT_HEADER, now.to_string());
        if self.channel_id != 0 {
            message.put_header(kokon_billing::CHANNEL_HEADER, self.channel_id.to_string());
        }
        message.write_content(body);
        let mut encoded = zeroize::Zeroizing::new(Vec::new());
        message
            .write_bhttp(Mode::KnownLength, &mut *encoded)
            .map_err(|e| ClientError::Protocol(format!("encoding Binary HTTP: {e}")))?;
        Ok(encoded)
    }

    /// Opens the answer to `sealed` and verifies its receipt.
    pub fn open(&self, sealed: Sealed, response: &[u8]) -> Result<Opened, ClientError> {
        let plain = sealed
            .context
            .decapsulate(response)
            .map_err(ClientError::Seal)?;
        let message = Message::read_bhttp(&mut Cursor::new(plain.as_slice())).map_err(|e| {
            ClientError::Protocol(format!("sealed response is not Binary HTTP: {e}"))
        })?;
        let status = message
            .control()
            .status()
            .map(u16::from)
            .ok_or_else(|| ClientError::Protocol("sealed response has no status".into()))?;
        let receipt =
            message
                .header()
                .get(RECEIPT_HEADER.as_bytes())
                .ok_or(ReceiptError::Malformed(
                    "the sealed response carries no receipt".into(),
                ))?;
        let receipt = SignedReceipt::from_header(receipt)?;
        let body = message.content().to_vec();
        let claims = &self.evidence.claims;
        let (model_digest, units, output_units, max_price) = match sealed.billing {
            Billing::Units(units) => (
                claims.model_digest,
                if status == 200 { units } else { 0 },
                0,
                Price::per_unit(self.max_price_per_unit),
            ),
            Billing::Tokens => {
                let (prompt, completion) = match status {
                    200 => reported_usage(&body)?,
                    _ => (0, 0),
                };
                (
                    self.text_model_digest()?,
                    prompt,
                    completion,
                    self.max_token_price,
                )
            }
        };
        self.check_receipt(
            &receipt,
            Expected {
                key: claims.receipt_key,
                request_digest: sealed.request_digest,
                response_digest: digest(&body),
                model_digest,
                units,
                output_units,
                channel_id: self.channel_id,
                max_price,
            },
        )?;
        Ok(Opened {
            status,
            body,
            receipt,
        })
    }
}

impl VerifiedEnclave {
    /// The attested text model's digest.
    fn text_model_digest(&self) -> Result<[u8; 32], ClientError> {
        self.evidence
            .claims
            .text_model
            .as_ref()
            .map(|t| t.digest)
            .ok_or_else(|| {
                ClientError::Protocol("the attested enclave serves no text model".into())
            })
    }

    /// Verifies a receipt as `expected`, and that its sequence number was
    /// never seen before.
    fn check_receipt(
        &self,
        receipt: &SignedReceipt,
        expected: Expected,
    ) -> Result<(), ClientError> {
        receipt.verify(&expected)?;
        self.sequences
            .lock()
            .map_err(|_| ClientError::Protocol("poisoned".into()))?
            .record(receipt.receipt.sequence)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ClientError;

    #[test]
    fn a_changed_key_is_told_from_other_refusals() {
        let host = |status, message: &str| ClientError::Host {
            status,
            message: message.into(),
        };
        assert!(host(
            400,
            "the enclave rejected the request: cannot open the OHTTP request (not sealed to this enclave's key, or tampered): decrypt"
        )
        .is_key_changed());
        assert!(!host(400, "replayed request").is_key_changed());
        assert!(!host(502, "not sealed to this enclave's key").is_key_changed());
    }
}

/// The whole body of an answer.
async fn read_body(resp: http::Response<hyper::body::Incoming>) -> Result<Vec<u8>, ClientError> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Transport(format!("reading the response: {e}")))?
        .to_bytes()
        .to_vec())
}

/// The token counts an OpenAI API answer reports (its `usage`), which its
/// receipt must charge; an answer without usage (the model list) is free.
fn reported_usage(body: &[u8]) -> Result<(u64, u64), ClientError> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<kokon_wire::openai::Usage>,
    }
    let parsed: WithUsage = serde_json::from_slice(body)
        .map_err(|e| ClientError::Protocol(format!("the answer is not JSON: {e}")))?;
    Ok(parsed
        .usage
        .map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens)))
}

/// A connection to a kokon host.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HttpsClient,
    timeout: Duration,
}

impl Client {
    /// A client for the host at `base` (`https://host:port`, verified
    /// against the Mozilla roots, or plain `http://` for loopback).
    #[allow(clippy::expect_used)]
    pub fn new(base: &str) -> Self {
        // Only extra CAs can make this fail: ring's provider always supports
        // rustls's safe default protocol versions.
        Self::trusting(base, &[]).expect("TLS with the Mozilla roots and ring's defaults")
    }

    /// The same client with `timeout` for each exchange (default
    /// [`DEFAULT_TIMEOUT`]; a stream's, between its chunks).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A client for the host at `base` that also trusts the certificate
    /// authorities `ca` (a private CA's; see [`kokon_fetch::read_certificates`]).
    pub fn trusting(base: &str, ca: &[CertificateDer<'static>]) -> Result<Self, ClientError> {
        let http = kokon_fetch::client_trusting(ca)
            .map_err(|e| ClientError::Transport(format!("{e:#}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    async fn exchange(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.transport(&e))?;
            let status = resp.status().as_u16();
            Ok((status, read_body(resp).await?))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.timed_out())?
    }

    /// Sends `req` and waits for the head of the answer (a stream's body
    /// is read as it comes); a status other than 200 is the host's error.
    async fn open_answer(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.transport(&e))?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(Self::host_error(status, &read_body(resp).await?));
            }
            Ok(resp)
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.timed_out())?
    }

    fn timed_out(&self) -> ClientError {
        ClientError::Transport(format!(
            "{}: no answer within {:?}",
            self.base, self.timeout
        ))
    }

    /// A failed exchange with the host, naming it and every cause (the
    /// HTTP client's own message is only "client error (Connect)").
    fn transport(&self, e: &(dyn std::error::Error + 'static)) -> ClientError {
        let mut message = format!("{}: {e}", self.base);
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        ClientError::Transport(message)
    }

    /// Sends `req` and returns the body of a 200 answer; any other status is
    /// the host's error.
    async fn ok_body(&self, req: http::Request<Full<Bytes>>) -> Result<Vec<u8>, ClientError> {
        let (status, body) = self.exchange(req).await?;
        if status != 200 {
            return Err(Self::host_error(status, &body));
        }
        Ok(body)
    }

    /// Sends `req` and reads a 200 answer's JSON body as `T` (`what` names it).
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: http::Request<Full<Bytes>>,
        what: &str,
    ) -> Result<T, ClientError> {
        let body = self.ok_body(req).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("{what}: {e}")))
    }

    fn host_error(status: u16, body: &[u8]) -> ClientError {
        let message = serde_json::from_slice::<ErrorBody>(body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(500).collect());
        ClientError::Host { status, message }
    }

    /// Fetches an attestation bundle for `nonce`.
    pub async fn fetch_bundle(&self, nonce: &[u8]) -> Result<AttestationBundle, ClientError> {
        let uri = format!("{}/v1/attestation?nonce={}", self.base, hex::encode(nonce));
        let req = http::Request::get(uri)
            .body(Full::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(AttestationBundle::from_json(&self.ok_body(req).await?)?)
    }

    /// Attests the enclave behind the host with a fresh nonce and appraises it.
    pub async fn attest(&self, policy: &Policy) -> Result<VerifiedEnclave, ClientError> {
        let mut nonce = [0u8; kokon_wire::CLIENT_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| ClientError::Protocol(format!("OS RNG: {e}")))?;
        let bundle = self.fetch_bundle(&nonce).await?;
        verify(bundle, policy, Some(&nonce), unix_now())
    }

    /// Sends a voucher (the client's newest signed channel state) to the
    /// host, which is the payee; returns the total the host counts as paid.
    /// A host that is unreachable or cannot store it right now (503) is
    /// tried again a few times; vouchers are cumulative, so one that is
    /// never delivered is covered by the next.
    pub async fn pay(&self, voucher: &kokon_ton::SignedState) -> Result<u128, ClientError> {
        let body = serde_json::to_vec(&kokon_wire::billing::VoucherJson::from(voucher))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut delay = Duration::from_millis(200);
        let mut attempts = 1;
        loop {
            let req = http::Request::post(format!("{}/v1/voucher", self.base))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.clone())))
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            match self
                .json::<VoucherAccepted>(req, "the host's voucher answer")
                .await
            {
                Ok(accepted) => return Ok(accepted.paid),
                Err(ClientError::Host { status: 503, .. } | ClientError::Transport(_))
                    if attempts < PAY_ATTEMPTS =>
                {
                    attempts += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The host's signed half of a cooperative close of `channel`.
    pub async fn close_offer(&self, channel: u128) -> Result<CloseOffer, ClientError> {
        let req = http::Request::post(format!("{}/v1/channel/close?id={channel}", self.base))
            .body(Full::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.json(req, "close offer").await
    }

    /// What the host counts for `channel`: (charged, paid, newest voucher seqno).
    pub async fn channel_status(&self, channel: u128) -> Result<(u128, u128, u64), ClientError> {
        let req = http::Request::get(format!("{}/v1/channel?id={channel}", self.base))
            .body(Full::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let s: ChannelStatus = self.json(req, "channel status").await?;
        Ok((s.charged, s.paid, s.seqno))
    }

    /// Sends sealed bytes through the host, unbilled.
    pub async fn send(&self, sealed: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.send_with_headers(sealed, &[]).await
    }

    /// Sends sealed bytes through the host with `proof` (billed to its
    /// channel, which the proof names: the host reads nothing else).
    pub async fn send_billed(
        &self,
        sealed: &[u8],
        proof: Option<&PayerProof>,
    ) -> Result<Vec<u8>, ClientError> {
        match proof {
            Some(p) => {
                self.send_with_headers(sealed, &[(PAYER_HEADER, p.to_header())])
                    .await
            }
            None => self.send(sealed).await,
        }
    }

    /// Sends sealed bytes through the host with extra outer headers.
    pub async fn send_with_headers(
        &self,
        sealed: &[u8],
        headers: &[(&str, String)],
    ) -> Result<Vec<u8>, ClientError> {
        let mut req = http::Request::post(format!("{}/v1/ohttp", self.base)).header(
            http::header::CONTENT_TYPE,
            kokon_wire::media_type::OHTTP_REQUEST,
        );
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(sealed)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.ok_body(req).await
    }

    /// Seals, sends, opens and checks one request.
    pub async fn request(
        &self,
        enclave: &VerifiedEnclave,
        method: &str,
        path: &str,
        body: &[u8],
        units: u64,
    ) -> Result<Opened, ClientError> {
        let now = unix_now();
        let sealed = enclave.seal(method, path, body, units, now)?;
        let proof = enclave.payer_proof(&sealed.bytes, now);
        let response = self.send_billed(&sealed.bytes, proof.as_ref()).await?;
        enclave.open(sealed, &response)
    }

    /// Seals, sends, opens and checks one request to the text model (the
    /// OpenAI API), whatever its status: an error answer is OpenAI's error
    /// object, with a receipt for nothing.
    pub async fn text_exchange(
        &self,
        enclave: &VerifiedEnclave,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Opened, ClientError> {
        let now = unix_now();
        let sealed = enclave.seal_text(method, path, body, now)?;
        let proof = enclave.payer_proof(&sealed.bytes, now);
        let response = self.send_billed(&sealed.bytes, proof.as_ref()).await?;
        enclave.open(sealed, &response)
    }

    /// Seals, sends, opens and checks one request to the text model (the
    /// OpenAI API); returns the answer's body and receipt, or the enclave's
    /// OpenAI error.
    pub async fn text_request(
        &self,
        enclave: &VerifiedEnclave,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(Vec<u8>, SignedReceipt), ClientError> {
        let opened = self.text_exchange(enclave, method, path, body).await?;
        if opened.status != 200 {
            let message = serde_json::from_slice::<ErrorResponse>(&opened.body)
                .map(|e| e.error.message)
                .unwrap_or_default();
            return Err(ClientError::Enclave {
                status: opened.status,
                message,
            });
        }
        Ok((opened.body, opened.receipt))
    }

    /// A chat completion (a whole answer) from the attested text model,
    /// with its verified receipt.
    pub async fn chat_completion(
        &self,
        enclave: &VerifiedEnclave,
        request: &ChatCompletionRequest,
    ) -> Result<(ChatCompletion, SignedReceipt), ClientError> {
        self.post_text(enclave, CHAT_COMPLETIONS_PATH, request, "chat completion")
            .await
    }

    /// POSTs `request` as JSON to the text model and reads its JSON answer.
    async fn post_text<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        enclave: &VerifiedEnclave,
        path: &str,
        request: &Q,
        what: &str,
    ) -> Result<(A, SignedReceipt), ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (answer, receipt) = self.text_request(enclave, "POST", path, &body).await?;
        let answer = serde_json::from_slice(&answer)
            .map_err(|e| ClientError::Protocol(format!("{what}: {e}")))?;
        Ok((answer, receipt))
    }

    /// A (legacy) completion from the attested text model, with its receipt.
    pub async fn completion(
        &self,
        enclave: &VerifiedEnclave,
        request: &CompletionRequest,
    ) -> Result<(Completion, SignedReceipt), ClientError> {
        self.post_text(enclave, COMPLETIONS_PATH, request, "completion")
            .await
    }

    /// The text models the attested enclave serves (`GET /v1/models`).
    pub async fn models(&self, enclave: &VerifiedEnclave) -> Result<ModelList, ClientError> {
        let (answer, _) = self.text_request(enclave, "GET", MODELS_PATH, b"").await?;
        serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(format!("models: {e}")))
    }

    /// Runs a KServe v2 inference on the attested model.
    pub async fn infer(
        &self,
        enclave: &VerifiedEnclave,
        request: &InferRequest,
    ) -> Result<(InferResponse, SignedReceipt), ClientError> {
        let model = &enclave.evidence.claims.model_name;
        let units = request
            .inputs
            .first()
            .and_then(|i| i.shape.first())
            .and_then(|r| u64::try_from(*r).ok())
            .unwrap_or(1);
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let opened = self
            .request(
                enclave,
                "POST",
                &format!("/v2/models/{model}/infer"),
                &body,
                units,
            )
            .await?;
        Ok((
            kserve_answer(&opened, "inference response")?,
            opened.receipt,
        ))
    }

    /// The attested model's KServe metadata (`GET /v2/models/{name}`): its
    /// tensors and the parameters a client needs to use it (Magika's
    /// processing configuration), as the enclave measured them.
    pub async fn model_metadata(
        &self,
        enclave: &VerifiedEnclave,
    ) -> Result<ModelMetadata, ClientError> {
        let model = &enclave.evidence.claims.model_name;
        let opened = self
            .request(enclave, "GET", &format!("/v2/models/{model}"), b"", 0)
            .await?;
        kserve_answer(&opened, "model metadata")
    }
}

/// A KServe answer's body as `T`, or the enclave's KServe error.
fn kserve_answer<T: serde::de::DeserializeOwned>(
    opened: &Opened,
    what: &str,
) -> Result<T, ClientError> {
    if opened.status != 200 {
        let message = serde_json::from_slice::<ErrorBody>(&opened.body)
            .map(|e| e.error)
            .unwrap_or_default();
        return Err(ClientError::Enclave {
            status: opened.status,
            message,
        });
    }
    serde_json::from_slice(&opened.body).map_err(|e| ClientError::Protocol(format!("{what}: {e}")))
}
