//! Relays frames to the enclave and its answers back. The host never
//! interprets the payloads: they are OHTTP ciphertext and attestation bundles.
//!
//! Connections are reused: after an answer, the connection goes back to a
//! small pool of idle ones. A pooled connection is used only while it is
//! younger than [`HOST_IDLE_REUSE`] and belongs to the enclave process that
//! is running now. If writing to it fails, the request never reached the
//! enclave and is sent once more on a fresh connection; any later failure
//! is reported, never retried (the enclave may have acted on the request).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kokon_wire::{Request, Response, WireError, HOST_IDLE_REUSE};
use thiserror::Error;

use crate::link::{Link, LinkStream};
use crate::state::EnclaveState;

/// Most idle connections kept.
const MAX_IDLE: usize = 64;

/// Why the enclave did not answer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Nothing listens on the socket (starting or restarting).
    #[error("the enclave is not available (starting or restarting): {0}")]
    Unavailable(std::io::Error),
    /// The enclave closed the connection without answering (it crashed mid-request).
    #[error("the enclave closed the connection before answering (it crashed or was killed; the host is restarting it)")]
    Closed,
    /// The enclave did not answer in time.
    #[error("the enclave did not answer within {0:?}")]
    Timeout(Duration),
    /// The link broke.
    #[error("enclave link: {0}")]
    Wire(WireError),
}

fn write_error(e: WireError) -> RelayError {
    match e {
        WireError::Io(_) | WireError::Closed => RelayError::Closed,
        other => RelayError::Wire(other),
    }
}

fn read_error(e: WireError) -> RelayError {
    match e {
        WireError::Closed => RelayError::Closed,
        WireError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset => RelayError::Closed,
        other => RelayError::Wire(other),
    }
}

/// Connects to the enclave and writes `request`: a write that fails on a
/// fresh connection means the enclave went away.
async fn send_fresh(link: &Link, request: &Request) -> Result<LinkStream, RelayError> {
    let mut stream = link.connect().await.map_err(RelayError::Unavailable)?;
    request.write(&mut stream).await.map_err(write_error)?;
    Ok(stream)
}

/// Sends `request` on a fresh connection and waits up to `timeout` for the response.
pub async fn call(
    link: &Link,
    request: &Request,
    timeout: Duration,
) -> Result<Response, RelayError> {
    let exchange = async {
        let mut stream = send_fresh(link, request).await?;
        Response::read(&mut stream).await.map_err(read_error)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RelayError::Timeout(timeout))?
}

struct Idle {
    stream: LinkStream,
    since: Instant,
    pid: u32,
}

/// A relay to the enclave with a pool of idle connections.
pub struct Relay {
    link: Link,
    state: Arc<EnclaveState>,
    idle: Mutex<Vec<Idle>>,
}

impl Relay {
    /// A relay to the enclave reached through `link`.
    pub fn new(link: Link, state: Arc<EnclaveState>) -> Self {
        Self {
            link,
            state,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self, pid: u32) -> Option<LinkStream> {
        let mut idle = self.idle.lock().ok()?;
        idle.retain(|c| c.pid == pid && c.since.elapsed() < HOST_IDLE_REUSE);
        idle.pop().map(|c| c.stream)
    }

    fn put(&self, stream: LinkStream, pid: u32) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(Idle {
                    stream,
                    since: Instant::now(),
                    pid,
                });
            }
        }
    }

    async fn exchange(&self, request: &Request) -> Result<Response, RelayError> {
        let pid = self.state.pid.load(Ordering::Relaxed);
        let pooled = match self.take(pid) {
            Some(mut pooled) => match request.write(&mut pooled).await {
                Ok(()) => Some(pooled),
                // Not delivered: the pooled connection was stale.
                Err(_) => None,
            },
            None => None,
        };
        let mut stream = match pooled {
            Some(stream) => stream,
            None => send_fresh(&self.link, request).await?,
        };
        let response = Response::read(&mut stream).await.map_err(read_error)?;
        self.put(stream, pid);
        Ok(response)
    }

    /// Sends `request` on a connection of its own (a stream's) and waits up
    /// to `timeout` for the first response; returns the connection with it.
    pub async fn open(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<(LinkStream, Response), RelayError> {
        let exchange = async {
            let mut stream = send_fresh(&self.link, request).await?;
            let first = Response::read(&mut stream).await.map_err(read_error)?;
            Ok((stream, first))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RelayError::Timeout(timeout))?
    }

    /// Sends `request` and waits up to `timeout` for the response.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, RelayError> {
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| RelayError::Timeout(timeout))?
    }
}
