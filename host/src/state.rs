//! What the supervisor knows of the enclave and the front and relay read:
//! a leaf, so that neither the relay nor the front depends on the
//! supervisor.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::OnceLock;

/// Live state of the enclave, shared with the HTTP front.
#[derive(Debug, Default)]
pub struct EnclaveState {
    /// Whether it is up and answered a health check.
    pub up: AtomicBool,
    /// The current process ID (0 when down).
    pub pid: AtomicU32,
    /// How many times it was restarted.
    pub restarts: AtomicU64,
    /// Set when the very first start failed (the enclave exited, or was not
    /// ready in time, before it was ever ready): what happened and the
    /// enclave's last error lines. The supervisor has then stopped.
    pub start_error: OnceLock<String>,
}
