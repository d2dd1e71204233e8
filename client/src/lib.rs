//! The kokon client SDK: attest an enclave, seal requests to it, open its
//! answers and check their receipts.
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
//!
//! # Example
//!
//! Attest the enclave behind a local host (`kokon host --llm ...`) under the
//! development policy, ask its text model a question, and read the receipt
//! that came with the answer:
//!
//! ```no_run
//! use kokon_client::{local, Client};
//! use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), kokon_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8443");
//! // The policy of the kokon checkout, resolved for this machine's sim TEE.
//! let policy = local::dev_policy()?;
//! // Evidence, nonce, measurements, models and prices: checked here, before
//! // anything is sent.
//! let enclave = client.attest(&policy).await?;
//!
//! let question = ChatMessage::text_from("user", "Why is the sky blue?");
//! let request = ChatCompletionRequest::new("smollm2-135m-instruct", vec![question]);
//! // Sealed to the attested key; the host relays ciphertext only. The answer
//! // is returned only once its receipt verified: signed by the attested
//! // receipt key, for this request and this answer, with the token counts
//! // the answer reports, at prices the policy allows.
//! let (answer, receipt) = client.chat_completion(&enclave, &request).await?;
//! for choice in &answer.choices {
//!     println!("{}", choice.message.content);
//! }
//! let r = &receipt.receipt;
//! assert_eq!(
//!     (r.units, r.output_units),
//!     (answer.usage.prompt_tokens, answer.usage.completion_tokens)
//! );
//! println!("receipt {}: {} nanotons", r.sequence, r.amount);
//! # Ok(()) }
//! ```
//!
//! The same with Magika, the classifier: [`Client::infer`] (the pre- and
//! post-processing are in [`magika`]). A program that keeps talking to a
//! host uses a [`session::Session`], which attests the enclave again when
//! its evidence ages or the host restarts it. The crate's `examples/` hold
//! whole programs (`minimal`, `chat`, `chat_stream`).
//!
//! # Modules
//!
//! - This page: [`Client`], a connection to a kokon host (attestation,
//!   inference, chat, payment); [`verify`] and [`VerifiedEnclave`], an
//!   enclave whose evidence satisfied a policy, which seals requests
//!   ([`VerifiedEnclave::seal`]) and opens their answers
//!   ([`VerifiedEnclave::open`]); [`ClientError`], what went wrong.
//! - [`session`]: [`session::Session`], the enclave behind a host kept
//!   attested (re-attested on aged evidence or a changed key).
//! - [`stream`]: streamed answers from the text model
//!   ([`Client::stream_chat`]), their receipt verified before their end.
//! - [`local`]: what a client finds on this machine: the development policy
//!   ([`local::dev_policy`]), policy files with local references, the
//!   paths `just setup` wrote.
//! - [`magika`]: Magika's pre-processing of a file into the model's input
//!   and post-processing of its scores into a label, as Magika does them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

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
use kokon_billing::payer::PAYER_HEADER;
use kokon_billing::{
    digest, Expected, Price, ReceiptError, SequenceWindow, SignedReceipt, RECEIPT_HEADER,
};
use kokon_fetch::HttpsClient;
use kokon_policies::{Policy, Rejection};
use kokon_seal::{KeyConfig, SealError, Suite};
use kokon_wire::billing::{ChannelStatus, VoucherAccepted};
use kokon_wire::kserve::{self, ErrorBody, InferRequest, InferResponse, ModelMetadata};
use kokon_wire::openai::{
    ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest, ErrorResponse, ModelList,
    CHAT_COMPLETIONS_PATH, COMPLETIONS_PATH, MODELS_PATH,
};
use thiserror::Error;

/// The proof, signed with a payment channel's client key, that bills one
/// sealed request to the channel ([`VerifiedEnclave::payer_proof`]; the
/// host admits nothing else to a billed channel).
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kokon_client::{unix_now, PayerProof};
///
/// # let enclave = offline::Enclave::new().verified();
/// let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
/// let enclave = enclave.with_channel(42, key.clone());
/// let now = unix_now();
/// let sealed = enclave.seal("POST", "/v2/models/magika/infer", b"{}", 1, now)?;
/// let proof: PayerProof = enclave.payer_proof(&sealed.bytes, now).ok_or("not billed")?;
/// // The host checks it against the channel's key, for these very bytes.
/// proof.verify(&key.verifying_key(), &sealed.bytes, now)?;
/// assert!(proof.verify(&key.verifying_key(), b"other bytes", now).is_err());
/// # Ok(()) }
/// ```
pub use kokon_billing::payer::PayerProof;

/// A certificate (DER) of a certificate authority to trust besides the
/// Mozilla roots, for [`Client::trusting`].
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kokon_client::{CertificateDer, Client};
///
/// let ca: Vec<CertificateDer<'static>> = kokon_fetch::read_certificates("ca.pem".as_ref())?;
/// let client = Client::trusting("https://kokon.example:8443", &ca)?;
/// # Ok(()) }
/// ```
pub use kokon_fetch::CertificateDer;

/// The host's signed half of a cooperative close of a payment channel,
/// from [`Client::close_offer`].
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{Client, CloseOffer};
///
/// let client = Client::new("https://kokon.example:8443");
/// let offer: CloseOffer = client.close_offer(42).await?;
/// println!("the host takes {} nanotons, {} come back", offer.to_host, offer.to_client);
/// # Ok(()) }
/// ```
pub use kokon_wire::billing::CloseOffer;

/// The current time in Unix seconds, the clock requests are stamped with
/// ([`VerifiedEnclave::seal`]) and evidence is checked against
/// ([`verify`]).
///
/// ```
/// let now = kokon_client::unix_now();
/// assert!(now > 1_700_000_000);
/// ```
pub use kokon_wire::unix_now;

/// The header of a sealed request with the client's send time (Unix
/// seconds; the enclave refuses a request sent too long ago, a replay).
/// [`VerifiedEnclave::seal`] sets it inside the sealed request, where the
/// host cannot change it.
///
/// ```
/// assert_eq!(kokon_client::SENT_AT_HEADER, "kokon-sent-at");
/// ```
pub use kokon_wire::SENT_AT_HEADER;

/// How many times [`Client::pay`] tries to deliver a voucher (to a host that
/// is unreachable or answers 503) before it gives up.
///
/// ```
/// assert!(kokon_client::PAY_ATTEMPTS > 1);
/// ```
pub const PAY_ATTEMPTS: u32 = 4;

/// The time a [`Client`] allows one HTTP exchange, unless
/// [`Client::with_timeout`] says otherwise.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(kokon_client::DEFAULT_TIMEOUT, Duration::from_secs(60));
/// let patient = kokon_client::Client::new("http://127.0.0.1:8443")
///     .with_timeout(kokon_client::DEFAULT_TIMEOUT * 5);
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The header fields of a sealed request with a JSON body.
pub const JSON_FIELDS: &[(&str, &str)] = &[("content-type", kserve::JSON_CONTENT_TYPE)];

/// What went wrong. The message says what failed and why.
///
/// [`ClientError::is_rejection`] tells a rejected enclave (its evidence,
/// policy, nonce or key configuration: never send it anything) from a
/// failed exchange, and [`ClientError::is_key_changed`] a host whose
/// enclave restarted (attest again).
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{local, Client, ClientError};
///
/// let client = Client::new("http://127.0.0.1:8443");
/// match client.attest(&local::dev_policy()?).await {
///     Ok(enclave) => println!("attested {}", enclave.evidence.claims.model_name),
///     Err(e) if e.is_rejection() => eprintln!("do not use this enclave: {e}"),
///     Err(ClientError::Transport(why)) => eprintln!("no host: {why}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
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
    ///
    /// ```
    /// use kokon_client::ClientError;
    ///
    /// let refused = ClientError::Host {
    ///     status: 400,
    ///     message: "cannot open the OHTTP request (not sealed to this enclave's key, or tampered)".into(),
    /// };
    /// assert!(refused.is_key_changed());
    /// let busy = ClientError::Host { status: 503, message: "the enclave is restarting".into() };
    /// assert!(!busy.is_key_changed());
    /// ```
    pub fn is_key_changed(&self) -> bool {
        matches!(self, ClientError::Host { status: 400, message } if message.contains("not sealed to this enclave's key"))
    }

    /// True when evidence or policy rejected the enclave (CLI exit status 2):
    /// its evidence did not verify, the policy refused it, it answered
    /// another nonce, or its key configuration is unusable.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let enclave = offline::Enclave::new();
    /// use kokon_client::{unix_now, verify, ClientError};
    ///
    /// // Evidence for another nonce than the one sent: a replay.
    /// let bundle = enclave.bundle(&[1; 32]);
    /// let err = verify(bundle, &enclave.policy(), Some(&[2; 32]), unix_now()).unwrap_err();
    /// assert!(matches!(err, ClientError::Nonce { .. }) && err.is_rejection());
    /// assert!(!ClientError::Transport("connection refused".into()).is_rejection());
    /// ```
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

/// An enclave whose evidence verified and satisfied the policy, from
/// [`Client::attest`] (or [`verify`]): what it is (its claims) and the key
/// requests to it are sealed to.
///
/// It only exists once the evidence verified, the nonce matched and the
/// policy accepted it, so whatever is sealed with it goes to the attested
/// enclave alone; every answer it opens ([`VerifiedEnclave::open`]) comes
/// with a receipt signed by the attested receipt key, checked, and a
/// receipt sequence number it never saw before.
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # fn main() -> Result<(), kokon_client::ClientError> {
/// # let host = offline::Enclave::new();
/// # let enclave = host.verified();
/// // let enclave = client.attest(&policy).await?;
/// let claims = &enclave.evidence.claims;
/// assert_eq!(claims.model_name, "magika");
/// assert_eq!(enclave.channel_id, 0, "not billed to a channel");
///
/// let sealed = enclave.seal("POST", "/v2/models/magika/infer", br#"{"inputs":[]}"#, 1, kokon_client::unix_now())?;
/// // `sealed.bytes` go through the host; the enclave answers.
/// # let answer = host.answer(&sealed.bytes, 200, br#"{"model_name":"magika","outputs":[]}"#);
/// let opened = enclave.open(sealed, &answer)?;
/// assert_eq!((opened.status, opened.receipt.receipt.units), (200, 1));
/// # Ok(()) }
/// ```
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
    /// nothing else). The channel is named inside each sealed request too,
    /// and every receipt must name it.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let enclave = offline::Enclave::new().verified();
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    /// let enclave = enclave.with_channel(42, key);
    /// assert_eq!(enclave.channel_id, 42);
    /// ```
    pub fn with_channel(mut self, channel_id: u128, key: ed25519_dalek::SigningKey) -> Self {
        self.channel_id = channel_id;
        self.channel_key = Some(key);
        self
    }

    /// The payer proof for the encapsulated request `sealed`, signed at
    /// `now` (Unix seconds), when billing ([`VerifiedEnclave::with_channel`]);
    /// `None` otherwise.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), kokon_client::ClientError> {
    /// # let enclave = offline::Enclave::new().verified();
    /// let now = kokon_client::unix_now();
    /// let sealed = enclave.seal("GET", "/v2/models/magika", b"", 0, now)?;
    /// assert!(enclave.payer_proof(&sealed.bytes, now).is_none(), "not billed");
    ///
    /// let enclave = enclave.with_channel(42, ed25519_dalek::SigningKey::from_bytes(&[5; 32]));
    /// let proof = enclave.payer_proof(&sealed.bytes, now).expect("billed");
    /// assert_eq!((proof.channel_id, proof.signed_at), (42, now));
    /// # Ok(()) }
    /// ```
    pub fn payer_proof(&self, sealed: &[u8], now: i64) -> Option<PayerProof> {
        let key = self.channel_key.as_ref()?;
        Some(PayerProof::sign(key, self.channel_id, sealed, now))
    }
}

/// A bundle whose evidence verified (signatures, chains, binding of the
/// claims, and the nonce when one was sent), with every check of the
/// policy's appraisal, passed or failed: what a verification report shows
/// whether the policy accepts the enclave or not.
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # fn main() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{examine, unix_now};
///
/// # let host = offline::Enclave::new();
/// # let policy = host.policy();
/// # let bundle = host.bundle(&[9; 32]);
/// let examined = examine(bundle, &policy, Some(&[9; 32]), unix_now())?;
/// for c in &examined.checks {
///     println!("{} {}: expected {}, found {}", if c.passed { "ok  " } else { "FAIL" }, c.check, c.expected, c.found);
/// }
/// assert!(examined.checks.iter().all(|c| c.passed));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Examined {
    /// The bundle as received.
    pub bundle: AttestationBundle,
    /// What verification established.
    pub evidence: VerifiedEvidence,
    /// The nonce the claims had to echo (`None`: an offline check of a saved bundle).
    pub nonce: Option<Vec<u8>>,
    /// When it was verified (Unix seconds).
    pub verified_at: i64,
    /// The policy's name.
    pub policy: String,
    /// Every check of the policy, in order.
    pub checks: Vec<kokon_policies::Check>,
}

/// Verifies a bundle's evidence at `now` under `policy`'s roots and, with
/// `nonce`, requires the claims to echo it (omit it only for offline checks
/// of saved bundles); then makes every check of the policy. Errs only when
/// the evidence itself fails; the policy's verdict is [`Examined::accept`]'s.
///
/// # Errors
///
/// [`ClientError::Evidence`] when the evidence does not verify,
/// [`ClientError::Nonce`] when it answers another nonce. A policy that
/// refuses the enclave is no error here: its failed checks are in
/// [`Examined::checks`].
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # fn main() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{examine, unix_now};
///
/// # let host = offline::Enclave::new();
/// # let policy = host.policy();
/// # let bundle = host.bundle(&[9; 32]);
/// // Ten minutes on, the evidence still verifies, but the policy's age check fails.
/// let examined = examine(bundle, &policy, None, unix_now() + 600)?;
/// assert!(examined.checks.iter().any(|c| !c.passed));
/// # Ok(()) }
/// ```
pub fn examine(
    bundle: AttestationBundle,
    policy: &Policy,
    nonce: Option<&[u8]>,
    now: i64,
) -> Result<Examined, ClientError> {
    let evidence = verify_bundle(&bundle, &policy.anchors, now)?;
    if let Some(nonce) = nonce {
        if evidence.claims.nonce != nonce {
            return Err(ClientError::Nonce {
                expected: hex::encode(nonce),
                found: hex::encode(&evidence.claims.nonce),
            });
        }
    }
    let checks = policy.checks(&evidence, now);
    Ok(Examined {
        bundle,
        evidence,
        nonce: nonce.map(<[u8]>::to_vec),
        verified_at: now,
        policy: policy.name.clone(),
        checks,
    })
}

impl Examined {
    /// The verdict of `policy` (the one it was examined under): the
    /// enclave, when every check passed and its OHTTP key configuration is
    /// usable.
    ///
    /// # Errors
    ///
    /// [`ClientError::Policy`] naming every failed check,
    /// [`ClientError::KeyConfig`] when the key configuration is unusable.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), kokon_client::ClientError> {
    /// use kokon_client::{examine, unix_now, ClientError};
    ///
    /// # let host = offline::Enclave::new();
    /// # let policy = host.policy();
    /// let fresh = examine(host.bundle(&[9; 32]), &policy, Some(&[9; 32]), unix_now())?;
    /// let enclave = fresh.accept(&policy)?;
    /// assert_eq!(enclave.evidence.claims.nonce, [9; 32]);
    ///
    /// let stale = examine(host.bundle(&[9; 32]), &policy, None, unix_now() + 600)?;
    /// assert!(matches!(stale.accept(&policy), Err(ClientError::Policy(_))));
    /// # Ok(()) }
    /// ```
    pub fn accept(self, policy: &Policy) -> Result<VerifiedEnclave, ClientError> {
        policy.verdict(&self.checks)?;
        let key_config = self.key_config()?;
        Ok(VerifiedEnclave {
            bundle: self.bundle,
            evidence: self.evidence,
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

    /// The attested OHTTP key configuration, if it is one the client can seal to.
    ///
    /// # Errors
    ///
    /// [`ClientError::KeyConfig`] when it is not one (a suite other than
    /// X25519, HKDF-SHA256 and AES-256-GCM, or malformed).
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), kokon_client::ClientError> {
    /// use kokon_client::{examine, unix_now};
    ///
    /// # let host = offline::Enclave::new();
    /// # let policy = host.policy();
    /// let examined = examine(host.bundle(&[9; 32]), &policy, Some(&[9; 32]), unix_now())?;
    /// let config = examined.key_config()?;
    /// println!("OHTTP key {}", config.key_id);
    /// # Ok(()) }
    /// ```
    pub fn key_config(&self) -> Result<KeyConfig, ClientError> {
        KeyConfig::parse(
            &self.evidence.claims.ohttp_key_config,
            Some(Suite::Aes256Gcm),
        )
        .map_err(ClientError::KeyConfig)
    }
}

/// Verifies a bundle under `policy` at `now`; with `nonce`, also requires the
/// claims to echo it (omit it only for offline checks of saved bundles).
///
/// This is what [`Client::attest`] does with the bundle it fetched, and
/// what an auditor does with a saved one. A [`VerifiedEnclave`] is returned
/// only when everything holds: the evidence's signatures and certificate
/// chain up to one of the policy's roots, the claims bound to the
/// evidence, the nonce, the policy's appraisal (measurements, TCB, models,
/// age at `now`), and a usable OHTTP key configuration.
///
/// # Errors
///
/// [`ClientError::Evidence`] when the evidence does not verify,
/// [`ClientError::Nonce`] when it answers another nonce,
/// [`ClientError::Policy`] when the policy refuses it (every failed check
/// named), [`ClientError::KeyConfig`] when its key configuration is
/// unusable.
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # fn main() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{unix_now, verify, ClientError};
///
/// # let host = offline::Enclave::new();
/// # let policy = host.policy();
/// let nonce = [9; 32];
/// # let bundle = host.bundle(&nonce);
/// // let bundle = client.fetch_bundle(&nonce).await?;
/// let saved = bundle.clone();
/// let enclave = verify(bundle, &policy, Some(&nonce), unix_now())?;
/// assert_eq!(enclave.evidence.claims.nonce, nonce);
///
/// // The same evidence ten minutes on is too old for the policy.
/// let err = verify(saved, &policy, None, unix_now() + 600).unwrap_err();
/// assert!(matches!(err, ClientError::Policy(_)), "{err}");
/// # Ok(()) }
/// ```
pub fn verify(
    bundle: AttestationBundle,
    policy: &Policy,
    nonce: Option<&[u8]>,
    now: i64,
) -> Result<VerifiedEnclave, ClientError> {
    examine(bundle, policy, nonce, now)?.accept(policy)
}

/// An answer opened and checked, from [`VerifiedEnclave::open`] or
/// [`Client::request`]: its receipt verified before it was returned.
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{local, Client, Opened};
///
/// let client = Client::new("http://127.0.0.1:8443");
/// let enclave = client.attest(&local::dev_policy()?).await?;
/// let opened: Opened = client.request(&enclave, "GET", "/v2/models/magika", b"", 0).await?;
/// println!("{} {}", opened.status, String::from_utf8_lossy(&opened.body));
/// println!("receipt {}: {} nanotons", opened.receipt.receipt.sequence, opened.receipt.receipt.amount);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Opened {
    /// Status inside the sealed response.
    pub status: u16,
    /// Its header fields (name, value), in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Its body.
    pub body: Vec<u8>,
    /// Its verified receipt.
    pub receipt: SignedReceipt,
}

/// A request sealed to an enclave, with what is needed to open its answer,
/// from [`VerifiedEnclave::seal`]: `bytes` travel through the host, the
/// rest stays here for [`VerifiedEnclave::open`].
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # fn main() -> Result<(), kokon_client::ClientError> {
/// # let enclave = offline::Enclave::new().verified();
/// let body = br#"{"secret":"nobody but the enclave reads this"}"#;
/// let sealed = enclave.seal("POST", "/v2/models/magika/infer", body, 1, kokon_client::unix_now())?;
/// assert!(!sealed.bytes.windows(6).any(|w| w == b"secret"), "ciphertext only");
/// # Ok(()) }
/// ```
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
    /// Seals a request with a JSON body sent at `now` (Unix seconds, stamped
    /// in [`SENT_AT_HEADER`]). `units` is what a successful answer should be
    /// billed: [`VerifiedEnclave::open`] refuses a receipt for another count.
    ///
    /// The request is encoded as Binary HTTP and encapsulated (Oblivious
    /// HTTP) to the attested key: only the attested enclave can read it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] when the request cannot be encoded,
    /// [`ClientError::Seal`] when encapsulation fails.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), kokon_client::ClientError> {
    /// # let enclave = offline::Enclave::new().verified();
    /// use kokon_client::unix_now;
    ///
    /// let body = br#"{"inputs":[{"name":"bytes","shape":[1,2],"datatype":"INT32","data":[1,2]}]}"#;
    /// let sealed = enclave.seal("POST", "/v2/models/magika/infer", body, 1, unix_now())?;
    /// let proof = enclave.payer_proof(&sealed.bytes, unix_now());
    /// // client.send_billed(&sealed.bytes, proof.as_ref()).await?, then enclave.open(sealed, &answer)
    /// assert!(sealed.bytes.len() > body.len());
    /// # Ok(()) }
    /// ```
    pub fn seal(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        units: u64,
        now: i64,
    ) -> Result<Sealed, ClientError> {
        self.seal_with_fields(method, path, JSON_FIELDS, body, units, now)
    }

    /// Seals a request with header `fields` (its content type among them)
    /// and `body`, as [`VerifiedEnclave::seal`] does.
    pub fn seal_with_fields(
        &self,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
        body: &[u8],
        units: u64,
        now: i64,
    ) -> Result<Sealed, ClientError> {
        self.seal_billed(method, path, fields, body, Billing::Units(units), now)
    }

    /// Seals a KServe v2 inference request on the attested model, sent at
    /// `now`, as [`Client::infer`] sends it: binary inputs
    /// ([`kserve::TensorData::Binary`], what the SDK's constructors build)
    /// after the JSON header, its length in [`kserve::HEADER_LENGTH`];
    /// billed by the rows of its first input. Open the answer with
    /// [`VerifiedEnclave::open`], then [`Opened::infer_response`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] when the request cannot be encoded,
    /// [`ClientError::Seal`] when encapsulation fails.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), kokon_client::ClientError> {
    /// # let enclave = offline::Enclave::new().verified();
    /// use kokon_wire::kserve::{InferInput, InferRequest};
    ///
    /// let request = InferRequest {
    ///     inputs: vec![InferInput::int32("bytes", vec![1, 2], &[1, 2])],
    ///     ..InferRequest::default()
    /// };
    /// let sealed = enclave.seal_infer(&request, kokon_client::unix_now())?;
    /// assert!(!sealed.bytes.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn seal_infer(&self, request: &InferRequest, now: i64) -> Result<Sealed, ClientError> {
        let parts = InferParts::new(self, request)?;
        self.seal_with_fields(
            "POST",
            &parts.path,
            &parts.fields(),
            &parts.encoded.body,
            parts.units,
            now,
        )
    }

    /// Seals a request to the text model (the OpenAI API), sent at `now`:
    /// its answer is billed by the tokens it reports, which
    /// [`VerifiedEnclave::open`] requires the receipt to charge.
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] when the attested enclave serves no text
    /// model (or the request cannot be encoded), [`ClientError::Seal`]
    /// when encapsulation fails.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), kokon_client::ClientError> {
    /// # let host = offline::Enclave::new();
    /// # let enclave = host.verified();
    /// let request = br#"{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Hi"}]}"#;
    /// let sealed = enclave.seal_text("POST", "/v1/chat/completions", request, kokon_client::unix_now())?;
    /// # let answer = host.answer(&sealed.bytes, 200, br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#);
    /// let opened = enclave.open(sealed, &answer)?;
    /// let charged = &opened.receipt.receipt;
    /// assert_eq!((charged.units, charged.output_units), (9, 3), "the tokens the answer reports");
    /// # Ok(()) }
    /// ```
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
        self.seal_billed(method, path, JSON_FIELDS, body, Billing::Tokens, now)
    }

    fn seal_billed(
        &self,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
        body: &[u8],
        billing: Billing,
        now: i64,
    ) -> Result<Sealed, ClientError> {
        let encoded = self.encode_request(method, path, fields, body, now)?;
        let (bytes, context) =
            kokon_seal::encapsulate(&self.key_config, &encoded).map_err(ClientError::Seal)?;
        Ok(Sealed {
            bytes,
            context,
            request_digest: digest(&encoded),
            billing,
        })
    }

    /// The Binary HTTP request with header `fields` sent at `now`, as the
    /// enclave reads it.
    fn encode_request(
        &self,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ClientError> {
        let mut message = Message::request(
            method.as_bytes().to_vec(),
            b"https".to_vec(),
            b"kokon.enclave".to_vec(),
            path.as_bytes().to_vec(),
        );
        for (name, value) in fields {
            message.put_header(*name, *value);
        }
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
    ///
    /// Nothing is returned unless the answer opens under `sealed`'s keys
    /// (it comes from the attested enclave, for this request, untouched)
    /// and its receipt verifies: signed by the attested receipt key, over
    /// this request's and this answer's digests, for the attested model, the
    /// units (or the reported tokens) expected, this enclave's channel, at
    /// prices within the policy's, with a sequence number not seen before.
    /// An error answer is returned as opened (its `status`), with a receipt
    /// that charges nothing.
    ///
    /// # Errors
    ///
    /// [`ClientError::Seal`] when the answer does not open (tampered, or
    /// not for this request), [`ClientError::Protocol`] when it is not a
    /// Binary HTTP response, [`ClientError::Receipt`] when its receipt is
    /// missing, malformed, replayed or says anything else than expected.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), kokon_client::ClientError> {
    /// # let host = offline::Enclave::new();
    /// # let enclave = host.verified();
    /// use kokon_client::{unix_now, ClientError};
    ///
    /// let sealed = enclave.seal("GET", "/v2/models/magika", b"", 0, unix_now())?;
    /// # let answer = host.answer(&sealed.bytes, 404, br#"{"error":"no such model"}"#);
    /// let opened = enclave.open(sealed, &answer)?;
    /// assert_eq!((opened.status, opened.receipt.receipt.amount), (404, 0));
    ///
    /// // A byte changed on the way: refused.
    /// let sealed = enclave.seal("GET", "/v2/models/magika", b"", 0, unix_now())?;
    /// # let mut answer = host.answer(&sealed.bytes, 200, b"{}");
    /// let last = answer.len() - 1;
    /// answer[last] ^= 1;
    /// assert!(matches!(enclave.open(sealed, &answer), Err(ClientError::Seal(_))));
    /// # Ok(()) }
    /// ```
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
        let fields = message
            .header()
            .iter()
            .map(|f| (f.name().to_vec(), f.value().to_vec()))
            .collect();
        Ok(Opened {
            status,
            fields,
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

/// A connection to a kokon host (cheap to clone: clones share their
/// connections).
///
/// The host is not trusted: it relays sealed requests and answers it cannot
/// read. Everything the client relies on is checked here: the evidence
/// ([`Client::attest`]) and every answer's receipt ([`Client::request`]
/// and the calls built on it). Each exchange is bounded by a timeout
/// ([`Client::with_timeout`]).
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{local, Client};
/// use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
///
/// let client = Client::new("http://127.0.0.1:8443");
/// let enclave = client.attest(&local::dev_policy()?).await?;
/// let request = ChatCompletionRequest::new(
///     "smollm2-135m-instruct",
///     vec![ChatMessage::text_from("user", "Say hello.")],
/// );
/// let (answer, receipt) = client.chat_completion(&enclave, &request).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HttpsClient,
    timeout: Duration,
}

impl Client {
    /// A client for the host at `base` (`https://host:port`, verified
    /// against the Mozilla roots, or plain `http://` for loopback). Nothing
    /// is sent until a call.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() {
    /// use kokon_client::{Client, ClientError};
    ///
    /// # let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    /// let client = Client::new(&format!("http://{closed}"));
    /// // No host there: the error names it and why.
    /// let Err(ClientError::Transport(why)) = client.fetch_bundle(&[0; 32]).await else {
    ///     panic!("a host answered");
    /// };
    /// assert!(why.starts_with(&format!("http://{closed}: ")), "{why}");
    /// # }
    /// ```
    #[allow(clippy::expect_used)]
    pub fn new(base: &str) -> Self {
        // Only extra CAs can make this fail: ring's provider always supports
        // rustls's safe default protocol versions.
        Self::trusting(base, &[]).expect("TLS with the Mozilla roots and ring's defaults")
    }

    /// The same client with `timeout` for each exchange (default
    /// [`DEFAULT_TIMEOUT`]; a stream's, between its chunks). An exchange
    /// that takes longer fails with [`ClientError::Transport`].
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use kokon_client::{Client, ClientError};
    ///
    /// // A host that takes connections and never answers.
    /// let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let client = Client::new(&format!("http://{}", silent.local_addr().unwrap()))
    ///     .with_timeout(Duration::from_millis(200));
    /// let Err(ClientError::Transport(why)) = client.fetch_bundle(&[0; 32]).await else {
    ///     panic!("a silent host answered");
    /// };
    /// assert!(why.ends_with("no answer within 200ms"), "{why}");
    /// # }
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A client for the host at `base` that also trusts the certificate
    /// authorities `ca` (a private CA's; see [`kokon_fetch::read_certificates`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] when a certificate in `ca` is not a valid
    /// CA certificate.
    ///
    /// ```
    /// use kokon_client::{CertificateDer, Client, ClientError};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pem_file = std::env::temp_dir().join(format!("kokon-doc-ca-{}.pem", std::process::id()));
    /// # let root = kokon_attestation::sim::SimRoot::generate(kokon_client::unix_now())?;
    /// # std::fs::write(&pem_file, kokon_attestation::sim::pem_encode(root.cert_der()))?;
    /// let ca = kokon_fetch::read_certificates(&pem_file)?;
    /// let client = Client::trusting("https://kokon.example:8443", &ca)?;
    ///
    /// let not_a_ca = CertificateDer::from(b"not a certificate".to_vec());
    /// let refused = Client::trusting("https://kokon.example:8443", &[not_a_ca]);
    /// assert!(matches!(refused, Err(ClientError::Transport(_))));
    /// # std::fs::remove_file(&pem_file)?;
    /// # Ok(()) }
    /// ```
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

    /// Fetches an attestation bundle for `nonce`, unverified: [`verify`] it
    /// (or let [`Client::attest`] do both).
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] when the host cannot be reached or does
    /// not answer in time, [`ClientError::Host`] when it answers an error,
    /// [`ClientError::Evidence`] when the bundle cannot be read.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// use kokon_client::{local, unix_now, verify, Client};
    ///
    /// let client = Client::new("http://127.0.0.1:8443");
    /// let nonce = [42; 32]; // draw a fresh one from the OS RNG
    /// let bundle = client.fetch_bundle(&nonce).await?;
    /// std::fs::write("bundle.json", bundle.to_json()).ok(); // for an audit
    /// let enclave = verify(bundle, &local::dev_policy()?, Some(&nonce), unix_now())?;
    /// # Ok(()) }
    /// ```
    pub async fn fetch_bundle(&self, nonce: &[u8]) -> Result<AttestationBundle, ClientError> {
        let uri = format!("{}/v1/attestation?nonce={}", self.base, hex::encode(nonce));
        let req = http::Request::get(uri)
            .body(Full::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(AttestationBundle::from_json(&self.ok_body(req).await?)?)
    }

    /// Attests the enclave behind the host with a fresh nonce and appraises it.
    ///
    /// The nonce is drawn from the OS RNG; the bundle the host returns is
    /// checked by [`verify`] at the current time, so the enclave returned is
    /// one whose evidence is fresh, verified and accepted by `policy`.
    ///
    /// # Errors
    ///
    /// Those of [`Client::fetch_bundle`] (transport, host) and of
    /// [`verify`] (evidence, nonce, policy, key configuration: see
    /// [`ClientError::is_rejection`]).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// use kokon_client::{local, Client};
    ///
    /// let client = Client::new("http://127.0.0.1:8443");
    /// let enclave = client.attest(&local::dev_policy()?).await?;
    /// println!("{} runs {}", enclave.evidence.claims.runtime, enclave.evidence.claims.model_name);
    /// # Ok(()) }
    /// ```
    pub async fn attest(&self, policy: &Policy) -> Result<VerifiedEnclave, ClientError> {
        self.examine(policy).await?.accept(policy)
    }

    /// Fetches the enclave's evidence for a fresh nonce, verifies it and
    /// makes every check of `policy` (see [`examine`]), without the verdict.
    ///
    /// # Errors
    ///
    /// As [`Client::fetch_bundle`] and [`examine`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// use kokon_client::{local, Client};
    ///
    /// let client = Client::new("http://127.0.0.1:8443");
    /// let policy = local::dev_policy()?;
    /// let examined = client.examine(&policy).await?;
    /// let failed: Vec<_> = examined.checks.iter().filter(|c| !c.passed).collect();
    /// println!("{} checks failed", failed.len());
    /// let enclave = examined.accept(&policy)?;
    /// # Ok(()) }
    /// ```
    pub async fn examine(&self, policy: &Policy) -> Result<Examined, ClientError> {
        let mut nonce = [0u8; kokon_wire::CLIENT_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| ClientError::Protocol(format!("OS RNG: {e}")))?;
        let bundle = self.fetch_bundle(&nonce).await?;
        examine(bundle, policy, Some(&nonce), unix_now())
    }

    /// Sends a voucher (the client's newest signed channel state) to the
    /// host, which is the payee; returns the total the host counts as paid.
    /// A host that is unreachable or cannot store it right now (503) is
    /// tried again a few times ([`PAY_ATTEMPTS`]); vouchers are cumulative,
    /// so one that is never delivered is covered by the next.
    ///
    /// # Errors
    ///
    /// [`ClientError::Host`] when the host refuses the voucher (its message
    /// says why: stale, over the deposit, a bad signature),
    /// [`ClientError::Transport`] when it cannot be delivered.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use kokon_client::Client;
    /// use kokon_ton::voucher::Payer;
    ///
    /// let client = Client::new("http://127.0.0.1:8443");
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]); // the channel's client key
    /// let mut payer = Payer::new(key, 42, 1_000_000_000, None);
    /// // After a receipt of 1,000 nanotons verified:
    /// let voucher = payer.pay(1_000)?;
    /// let paid = client.pay(&voucher).await?;
    /// # Ok(()) }
    /// ```
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

    /// The host's signed half of a cooperative close of `channel`, for the
    /// client to check, countersign and send to the chain.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`], [`ClientError::Host`] (an unknown
    /// channel, say), or [`ClientError::Protocol`] for an unreadable offer.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// let offer = client.close_offer(42).await?;
    /// assert_eq!(offer.channel_id, 42);
    /// # Ok(()) }
    /// ```
    pub async fn close_offer(&self, channel: u128) -> Result<CloseOffer, ClientError> {
        let req = http::Request::post(format!("{}/v1/channel/close?id={channel}", self.base))
            .body(Full::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.json(req, "close offer").await
    }

    /// What the host counts for `channel`: (charged, paid, newest voucher
    /// seqno). The host's word, to compare with the receipts and vouchers
    /// the client kept.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`], [`ClientError::Host`] or
    /// [`ClientError::Protocol`], as [`Client::close_offer`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// let (charged, paid, seqno) = client.channel_status(42).await?;
    /// println!("{} nanotons unpaid (voucher {seqno})", charged.saturating_sub(paid));
    /// # Ok(()) }
    /// ```
    pub async fn channel_status(&self, channel: u128) -> Result<(u128, u128, u64), ClientError> {
        let req = http::Request::get(format!("{}/v1/channel?id={channel}", self.base))
            .body(Full::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let s: ChannelStatus = self.json(req, "channel status").await?;
        Ok((s.charged, s.paid, s.seqno))
    }

    /// Sends sealed bytes through the host, unbilled, and returns the sealed
    /// answer (for [`VerifiedEnclave::open`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] when the host cannot be reached or does
    /// not answer in time, [`ClientError::Host`] when it refuses (see
    /// [`ClientError::is_key_changed`]).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let sealed = enclave.seal("GET", "/v2/models/magika", b"", 0, kokon_client::unix_now())?;
    /// let answer = client.send(&sealed.bytes).await?;
    /// let opened = enclave.open(sealed, &answer)?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, sealed: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.send_with_headers(sealed, &[]).await
    }

    /// Sends sealed bytes through the host with `proof` (billed to its
    /// channel, which the proof names: the host reads nothing else); with
    /// `None`, as [`Client::send`].
    ///
    /// # Errors
    ///
    /// Those of [`Client::send`]; the host also refuses a bad proof or a
    /// channel over its credit ([`ClientError::Host`]).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let enclave = enclave.with_channel(42, ed25519_dalek::SigningKey::from_bytes(&[5; 32]));
    /// let now = kokon_client::unix_now();
    /// let sealed = enclave.seal("POST", "/v2/models/magika/infer", b"{}", 1, now)?;
    /// let proof = enclave.payer_proof(&sealed.bytes, now);
    /// let answer = client.send_billed(&sealed.bytes, proof.as_ref()).await?;
    /// let opened = enclave.open(sealed, &answer)?;
    /// # Ok(()) }
    /// ```
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

    /// Sends sealed bytes through the host with extra outer headers (which
    /// the host sees: never put anything private in them).
    ///
    /// # Errors
    ///
    /// Those of [`Client::send`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let sealed = enclave.seal("GET", "/v2/models/magika", b"", 0, kokon_client::unix_now())?;
    /// let headers = [("x-request-id", "7f3a".to_string())];
    /// let answer = client.send_with_headers(&sealed.bytes, &headers).await?;
    /// # Ok(()) }
    /// ```
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

    /// Seals, sends, opens and checks one request with a JSON body:
    /// [`VerifiedEnclave::seal`]
    /// (with a payer proof when billing), [`Client::send_billed`],
    /// [`VerifiedEnclave::open`]. `units` is what a successful answer should
    /// be billed. The answer is returned whatever its status, its receipt
    /// verified.
    ///
    /// # Errors
    ///
    /// Those of the three steps.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let opened = client.request(&enclave, "GET", "/v2/models/magika", b"", 0).await?;
    /// assert_eq!(opened.status, 200);
    /// assert_eq!(opened.receipt.receipt.amount, 0);
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        enclave: &VerifiedEnclave,
        method: &str,
        path: &str,
        body: &[u8],
        units: u64,
    ) -> Result<Opened, ClientError> {
        self.request_with_fields(enclave, method, path, JSON_FIELDS, body, units)
            .await
    }

    /// Seals, sends, opens and checks one request with header `fields`
    /// (its content type among them).
    pub async fn request_with_fields(
        &self,
        enclave: &VerifiedEnclave,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
        body: &[u8],
        units: u64,
    ) -> Result<Opened, ClientError> {
        let now = unix_now();
        let sealed = enclave.seal_with_fields(method, path, fields, body, units, now)?;
        let proof = enclave.payer_proof(&sealed.bytes, now);
        let response = self.send_billed(&sealed.bytes, proof.as_ref()).await?;
        enclave.open(sealed, &response)
    }

    /// Seals, sends, opens and checks one request to the text model (the
    /// OpenAI API), whatever its status: an error answer is OpenAI's error
    /// object, with a receipt for nothing. A successful answer's receipt
    /// must charge the tokens its `usage` reports.
    ///
    /// # Errors
    ///
    /// Those of [`Client::request`]; [`ClientError::Protocol`] when the
    /// attested enclave serves no text model or a successful answer is not
    /// JSON.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let body = br#"{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Hi"}]}"#;
    /// let opened = client.text_exchange(&enclave, "POST", "/v1/chat/completions", body).await?;
    /// println!("{}: {}", opened.status, String::from_utf8_lossy(&opened.body));
    /// # Ok(()) }
    /// ```
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
    /// OpenAI error. The body is returned only once its receipt verified.
    ///
    /// # Errors
    ///
    /// Those of [`Client::text_exchange`], and [`ClientError::Enclave`]
    /// (status and OpenAI's message) for an answer other than 200.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let body = br#"{"model":"smollm2-135m-instruct","prompt":"Once upon a time","max_tokens":16}"#;
    /// let (answer, receipt) = client.text_request(&enclave, "POST", "/v1/completions", body).await?;
    /// # Ok(()) }
    /// ```
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
    /// with its verified receipt (which charges the tokens the answer's
    /// `usage` reports). For the answer as it is written, see
    /// [`Client::stream_chat`].
    ///
    /// # Errors
    ///
    /// Those of [`Client::text_request`]; [`ClientError::Protocol`] when
    /// the answer is not a chat completion.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
    ///
    /// let request = ChatCompletionRequest {
    ///     max_tokens: Some(64),
    ///     ..ChatCompletionRequest::new(
    ///         "smollm2-135m-instruct",
    ///         vec![ChatMessage::text_from("user", "Why is the sky blue?")],
    ///     )
    /// };
    /// let (answer, receipt) = client.chat_completion(&enclave, &request).await?;
    /// assert_eq!(receipt.receipt.output_units, answer.usage.completion_tokens);
    /// # Ok(()) }
    /// ```
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

    /// A (legacy) completion from the attested text model, with its
    /// verified receipt (which charges the tokens the answer's `usage`
    /// reports).
    ///
    /// # Errors
    ///
    /// Those of [`Client::text_request`]; [`ClientError::Protocol`] when
    /// the answer is not a completion.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// use kokon_wire::openai::CompletionRequest;
    ///
    /// let request = CompletionRequest::new("smollm2-135m-instruct", "Once upon a time");
    /// let (answer, receipt) = client.completion(&enclave, &request).await?;
    /// for choice in &answer.choices {
    ///     println!("{}", choice.text);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn completion(
        &self,
        enclave: &VerifiedEnclave,
        request: &CompletionRequest,
    ) -> Result<(Completion, SignedReceipt), ClientError> {
        self.post_text(enclave, COMPLETIONS_PATH, request, "completion")
            .await
    }

    /// The text models the attested enclave serves (`GET /v1/models`),
    /// asked of the enclave itself (sealed; its receipt charges nothing).
    ///
    /// # Errors
    ///
    /// Those of [`Client::text_request`]; [`ClientError::Protocol`] when
    /// the answer is not a model list.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// for model in client.models(&enclave).await?.data {
    ///     println!("{}", model.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn models(&self, enclave: &VerifiedEnclave) -> Result<ModelList, ClientError> {
        let (answer, _) = self.text_request(enclave, "GET", MODELS_PATH, b"").await?;
        serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(format!("models: {e}")))
    }

    /// Runs a KServe v2 inference on the attested model, billed by the rows
    /// of its first input (the first dimension of its shape). The response
    /// is returned only once its receipt verified ([`VerifiedEnclave::open`]).
    /// Inputs given as [`kserve::TensorData::Binary`] (what the SDK's
    /// constructors, e.g. [`kserve::InferTensor::int32`], build) travel as
    /// binary tensor data after the JSON header, the rest (e.g.
    /// [`kserve::InferTensor::int32_json`]) as JSON numbers; outputs come as
    /// the request asks ([`InferRequest::binary_output`],
    /// [`kserve::RequestedOutput::binary`]) and are decoded either way
    /// ([`Opened::infer_response`]).
    ///
    /// # Errors
    ///
    /// Those of [`Client::request`]; [`ClientError::Enclave`] (status and
    /// KServe's message) for an answer other than 200,
    /// [`ClientError::Protocol`] when it is not an inference response.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// use kokon_client::magika::{self, Magika, Prepared};
    ///
    /// let magika = Magika::from_metadata(&client.model_metadata(&enclave).await?)
    ///     .map_err(kokon_client::ClientError::Protocol)?;
    /// if let Prepared::Features(row) = magika.prepare(b"fn main() { println!(\"hello\"); }") {
    ///     // Binary INT32 rows in, binary FP32 scores out.
    ///     let request = magika::request(&[row]);
    ///     let (response, receipt) = client.infer(&enclave, &request).await?;
    ///     let scores = response.outputs.iter().find(|o| o.name == magika::OUTPUT);
    ///     if let Some(scores) = scores.and_then(|o| o.f32_data()) {
    ///         println!("{:?}", magika.classify(&scores));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn infer(
        &self,
        enclave: &VerifiedEnclave,
        request: &InferRequest,
    ) -> Result<(InferResponse, SignedReceipt), ClientError> {
        let parts = InferParts::new(enclave, request)?;
        let opened = self
            .request_with_fields(
                enclave,
                "POST",
                &parts.path,
                &parts.fields(),
                &parts.encoded.body,
                parts.units,
            )
            .await?;
        let response = opened.infer_response()?;
        Ok((response, opened.receipt))
    }

    /// The attested model's KServe metadata (`GET /v2/models/{name}`): its
    /// tensors and the parameters a client needs to use it (Magika's
    /// processing configuration), as the enclave measured them. Asked of the
    /// enclave itself (sealed; its receipt charges nothing), so it is the
    /// attested model's.
    ///
    /// # Errors
    ///
    /// Those of [`Client::request`]; [`ClientError::Enclave`] for an answer
    /// other than 200, [`ClientError::Protocol`] when it is not metadata.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # let client = kokon_client::Client::new("http://127.0.0.1:8443");
    /// # let enclave = client.attest(&kokon_client::local::dev_policy()?).await?;
    /// let metadata = client.model_metadata(&enclave).await?;
    /// for input in &metadata.inputs {
    ///     println!("{} {:?} {}", input.name, input.shape, input.datatype);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn model_metadata(
        &self,
        enclave: &VerifiedEnclave,
    ) -> Result<ModelMetadata, ClientError> {
        let model = &enclave.evidence.claims.model_name;
        let opened = self
            .request(enclave, "GET", &format!("/v2/models/{model}"), b"", 0)
            .await?;
        kserve_answer(&opened, "model metadata", |o| {
            serde_json::from_slice(&o.body).map_err(|e| e.to_string())
        })
    }
}

/// What an inference request seals: the attested model's infer path, the
/// encoded body (a binary section when an input is binary), and the units
/// (the rows of its first input) it is billed.
struct InferParts {
    path: String,
    encoded: kserve::Encoded,
    header_length: Option<String>,
    units: u64,
}

impl InferParts {
    fn new(enclave: &VerifiedEnclave, request: &InferRequest) -> Result<Self, ClientError> {
        let model = &enclave.evidence.claims.model_name;
        let units = request
            .inputs
            .first()
            .and_then(|i| i.shape.first())
            .and_then(|r| u64::try_from(*r).ok())
            .unwrap_or(1);
        let encoded = request
            .encode()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self {
            path: format!("/v2/models/{model}/infer"),
            header_length: encoded.header_length.map(|l| l.to_string()),
            encoded,
            units,
        })
    }

    /// The header fields: the content type, and the JSON header's length
    /// when binary data follows it.
    fn fields(&self) -> Vec<(&str, &str)> {
        let mut fields = vec![("content-type", self.encoded.content_type())];
        if let Some(length) = &self.header_length {
            fields.push((kserve::HEADER_LENGTH, length));
        }
        fields
    }
}

impl Opened {
    /// The inference response it carries, its binary outputs read from its
    /// binary section (the [`kserve::HEADER_LENGTH`] field): an
    /// [`InferResponse`] whose [`kserve::InferTensor::values`] are the same
    /// elements whether they came as binary or as JSON numbers.
    ///
    /// # Errors
    ///
    /// [`ClientError::Enclave`] (status and KServe's message) for an answer
    /// other than 200, [`ClientError::Protocol`] when it is not an
    /// inference response.
    pub fn infer_response(&self) -> Result<InferResponse, ClientError> {
        kserve_answer(self, "inference response", |o| {
            let fields = o.fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
            kserve::header_length(fields)
                .and_then(|length| InferResponse::decode(&o.body, length))
                .map_err(|e| e.0)
        })
    }
}

/// A KServe answer's body as `decode` reads it (`what` names it in its
/// error), or the enclave's KServe error.
fn kserve_answer<T>(
    opened: &Opened,
    what: &str,
    decode: impl FnOnce(&Opened) -> Result<T, String>,
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
    decode(opened).map_err(|e| ClientError::Protocol(format!("{what}: {e}")))
}
