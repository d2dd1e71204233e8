//! A session with the enclave behind one host: attested once, attested
//! again when its evidence ages or its key changes, and every request sent
//! to the enclave as last attested.
//!
//! A [`VerifiedEnclave`] is one attestation: when the host restarts its
//! enclave, the new one holds a new key, and requests sealed to the old key
//! are refused ("not sealed to this enclave's key"). A [`Session`] notices
//! that, attests the new enclave under the same policy, and sends the
//! request once more, sealed to the new key. A new enclave that fails the
//! policy fails the request: nothing is ever sent to it.
//!
//! ```no_run
//! # async fn run() -> Result<(), kokon_client::ClientError> {
//! use kokon_client::{local, session::Session, Client};
//! use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
//!
//! let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
//! let question = ChatMessage::text_from("user", "Why is the sky blue?");
//! let request = ChatCompletionRequest::new("smollm2-135m-instruct", vec![question]);
//! let (answer, receipt) = session.chat_completion(&request).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use kokon_billing::SignedReceipt;
use kokon_policies::Policy;
use kokon_wire::kserve::{InferRequest, InferResponse};
use kokon_wire::openai::{ChatCompletion, ChatCompletionRequest};

use crate::{Client, ClientError, VerifiedEnclave};

/// How old evidence may get before a session attests again, by default
/// (see [`Session::max_evidence_age`]).
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(kokon_client::session::DEFAULT_MAX_EVIDENCE_AGE, Duration::from_secs(300));
/// ```
pub const DEFAULT_MAX_EVIDENCE_AGE: Duration = Duration::from_secs(300);

/// The enclave behind a host, kept attested (see the module).
///
/// Every request goes to an enclave that satisfied the session's policy:
/// before a request, evidence older than the allowed age is renewed, and a
/// request refused because the enclave's key changed is sent once more to
/// the enclave attested anew, never to one the policy refuses. A session is
/// shared by reference between tasks (concurrent callers attest once).
///
/// ```no_run
/// # async fn example() -> Result<(), kokon_client::ClientError> {
/// use kokon_client::{local, session::Session, Client};
///
/// let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
/// let request = kokon_wire::openai::ChatCompletionRequest::new(
///     "smollm2-135m-instruct",
///     vec![kokon_wire::openai::ChatMessage::text_from("user", "Hello")],
/// );
/// let (answer, receipt) = session.chat_completion(&request).await?;
/// let enclave = session.enclave().await?; // the enclave as last attested
/// # Ok(()) }
/// ```
pub struct Session {
    client: Client,
    policy: Policy,
    channel: Option<(u128, SigningKey)>,
    max_age: Duration,
    held: tokio::sync::RwLock<(Arc<VerifiedEnclave>, Instant)>,
}

impl Session {
    /// Attests the enclave behind `client`'s host under `policy`; its
    /// requests are not billed.
    ///
    /// # Errors
    ///
    /// Those of [`Client::attest`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// use kokon_client::{local, session::Session, Client};
    ///
    /// let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(client: Client, policy: Policy) -> Result<Self, ClientError> {
        Self::open_billed(client, policy, None).await
    }

    /// Attests, and bills every request to payment channel `channel` (its
    /// ID and client key), whatever enclave serves it.
    ///
    /// # Errors
    ///
    /// Those of [`Client::attest`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// use kokon_client::{local, session::Session, Client};
    ///
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]); // the channel's client key
    /// let client = Client::new("http://127.0.0.1:8443");
    /// let session = Session::open_billed(client, local::dev_policy()?, Some((42, key))).await?;
    /// assert_eq!(session.enclave().await?.channel_id, 42);
    /// # Ok(()) }
    /// ```
    pub async fn open_billed(
        client: Client,
        policy: Policy,
        channel: Option<(u128, SigningKey)>,
    ) -> Result<Self, ClientError> {
        let enclave = attest(&client, &policy, channel.as_ref()).await?;
        Ok(Self {
            client,
            policy,
            channel,
            max_age: DEFAULT_MAX_EVIDENCE_AGE,
            held: tokio::sync::RwLock::new((Arc::new(enclave), Instant::now())),
        })
    }

    /// Attests again before a request once the evidence is older than `age`
    /// (default [`DEFAULT_MAX_EVIDENCE_AGE`]).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// use std::time::Duration;
    /// use kokon_client::{local, session::Session, Client};
    ///
    /// let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?)
    ///     .await?
    ///     .max_evidence_age(Duration::from_secs(60));
    /// # Ok(()) }
    /// ```
    pub fn max_evidence_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The client, for calls the session does not wrap (payment, say).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # use kokon_client::{local, session::Session, Client};
    /// # let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
    /// let (charged, paid, _) = session.client().channel_status(42).await?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The policy the enclave is held to.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # use kokon_client::{local, session::Session, Client};
    /// # let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
    /// println!("held to policy {}", session.policy().name);
    /// # Ok(()) }
    /// ```
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The attested enclave, attested again first when its evidence is
    /// older than the allowed age.
    ///
    /// # Errors
    ///
    /// Those of [`Client::attest`], when it attests again.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # use kokon_client::{local, session::Session, Client};
    /// # let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
    /// let enclave = session.enclave().await?;
    /// println!("{}", enclave.evidence.claims.model_name);
    /// # Ok(()) }
    /// ```
    pub async fn enclave(&self) -> Result<Arc<VerifiedEnclave>, ClientError> {
        {
            let held = self.held.read().await;
            if held.1.elapsed() < self.max_age {
                return Ok(held.0.clone());
            }
        }
        self.reattest(None).await
    }

    /// Attests again, once for concurrent callers: not when another caller
    /// already replaced `stale` (or, without one, renewed aged evidence).
    async fn reattest(
        &self,
        stale: Option<&Arc<VerifiedEnclave>>,
    ) -> Result<Arc<VerifiedEnclave>, ClientError> {
        let mut held = self.held.write().await;
        let done = match stale {
            Some(stale) => !Arc::ptr_eq(&held.0, stale),
            None => held.1.elapsed() < self.max_age,
        };
        if done {
            return Ok(held.0.clone());
        }
        let fresh = Arc::new(attest(&self.client, &self.policy, self.channel.as_ref()).await?);
        let reason = if stale.is_some() {
            "its key changed (restarted)"
        } else {
            "its evidence aged"
        };
        tracing::info!(reason, "re-attested the enclave");
        *held = (fresh.clone(), Instant::now());
        Ok(fresh)
    }

    /// Runs `call` on the attested enclave; when the enclave's key changed
    /// ([`ClientError::is_key_changed`]), attests again and runs it once
    /// more, on the enclave attested anew. For the calls the session does
    /// not wrap.
    ///
    /// # Errors
    ///
    /// `call`'s, or those of [`Client::attest`] when it attests again.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # use kokon_client::{local, session::Session, Client};
    /// # let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
    /// let client = session.client();
    /// let models = session
    ///     .retried(|enclave| async move { client.models(&enclave).await })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn retried<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<VerifiedEnclave>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let enclave = self.enclave().await?;
        match call(enclave.clone()).await {
            Err(e) if e.is_key_changed() => call(self.reattest(Some(&enclave)).await?).await,
            other => other,
        }
    }

    /// A KServe v2 inference on the attested model ([`Client::infer`]),
    /// retried once on an enclave attested anew when its key changed.
    ///
    /// # Errors
    ///
    /// Those of [`Client::infer`] and of [`Session::retried`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # use kokon_client::{local, session::Session, Client};
    /// # let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
    /// let row = vec![256; 2048]; // Magika's input: see kokon_client::magika
    /// let request = kokon_client::magika::request(&[row]); // binary in and out
    /// let (response, receipt) = session.infer(&request).await?;
    /// # Ok(()) }
    /// ```
    pub async fn infer(
        &self,
        request: &InferRequest,
    ) -> Result<(InferResponse, SignedReceipt), ClientError> {
        self.retried(|enclave| async move { self.client.infer(&enclave, request).await })
            .await
    }

    /// A chat completion from the attested text model
    /// ([`Client::chat_completion`]), retried once on an enclave attested
    /// anew when its key changed.
    ///
    /// # Errors
    ///
    /// Those of [`Client::chat_completion`] and of [`Session::retried`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), kokon_client::ClientError> {
    /// # use kokon_client::{local, session::Session, Client};
    /// # let session = Session::open(Client::new("http://127.0.0.1:8443"), local::dev_policy()?).await?;
    /// use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};
    ///
    /// let question = ChatMessage::text_from("user", "Why is the sky blue?");
    /// let request = ChatCompletionRequest::new("smollm2-135m-instruct", vec![question]);
    /// let (answer, receipt) = session.chat_completion(&request).await?;
    /// # Ok(()) }
    /// ```
    pub async fn chat_completion(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<(ChatCompletion, SignedReceipt), ClientError> {
        self.retried(|enclave| async move { self.client.chat_completion(&enclave, request).await })
            .await
    }
}

async fn attest(
    client: &Client,
    policy: &Policy,
    channel: Option<&(u128, SigningKey)>,
) -> Result<VerifiedEnclave, ClientError> {
    let enclave = client.attest(policy).await?;
    Ok(match channel {
        Some((id, key)) => enclave.with_channel(*id, key.clone()),
        None => enclave,
    })
}
