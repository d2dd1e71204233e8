//! Relays one frame to the enclave and its answer back. The host never
//! interprets the payloads: they are OHTTP ciphertext and attestation bundles.

use std::path::Path;
use std::time::Duration;

use kokon_wire::{Request, Response, WireError};
use thiserror::Error;
use tokio::net::UnixStream;

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

/// Sends `request` and waits up to `timeout` for the response.
pub async fn call(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, RelayError> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket)
            .await
            .map_err(RelayError::Unavailable)?;
        request.write(&mut stream).await.map_err(|e| match e {
            WireError::Io(_) | WireError::Closed => RelayError::Closed,
            other => RelayError::Wire(other),
        })?;
        Response::read(&mut stream).await.map_err(|e| match e {
            WireError::Closed => RelayError::Closed,
            WireError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                RelayError::Closed
            }
            other => RelayError::Wire(other),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RelayError::Timeout(timeout))?
}
