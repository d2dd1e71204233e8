//! Launches the enclave and keeps it running.
//!
//! The process backend (development) runs the enclave binary as a child
//! process that serves on a Unix socket. The supervisor waits until it
//! answers a health frame, then watches it: when it exits it is restarted
//! with exponential backoff (reset after a stable run). The enclave's
//! stderr is forwarded line by line to the host's log; the enclave never
//! writes client plaintext there.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kokon_wire::{Request, Response};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::relay;

/// How to start the enclave.
#[derive(Debug, Clone)]
pub struct EnclaveCommand {
    /// The enclave binary.
    pub program: PathBuf,
    /// Its arguments (the supervisor appends `--socket PATH`).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The Unix socket it serves on.
    pub socket: PathBuf,
    /// How long a start may take before it counts as failed.
    pub startup_timeout: Duration,
}

/// Live state of the enclave, shared with the HTTP front.
#[derive(Debug, Default)]
pub struct EnclaveState {
    /// Whether it is up and answered a health check.
    pub up: AtomicBool,
    /// The current process ID (0 when down).
    pub pid: AtomicU32,
    /// How many times it was restarted.
    pub restarts: AtomicU64,
}

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const STABLE_RUN: Duration = Duration::from_secs(30);

/// Supervises the enclave until `stop` turns true, then stops it with SIGTERM.
pub async fn supervise(
    cmd: EnclaveCommand,
    state: Arc<EnclaveState>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_START;
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        if !first {
            state.restarts.fetch_add(1, Ordering::Relaxed);
            metrics.enclave_restarts.inc();
        }
        first = false;
        let started = tokio::time::Instant::now();
        match spawn(&cmd) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                state.pid.store(pid, Ordering::Relaxed);
                tracing::info!(pid, program = %cmd.program.display(), "enclave started");
                let ready = wait_ready(&cmd, &mut child).await;
                if ready {
                    state.up.store(true, Ordering::Relaxed);
                    metrics.enclave_up.set(1);
                    tracing::info!(pid, "enclave ready");
                }
                let exit = if ready {
                    tokio::select! {
                        status = child.wait() => Some(status),
                        _ = stop.changed() => None,
                    }
                } else {
                    Some(child.wait().await)
                };
                state.up.store(false, Ordering::Relaxed);
                metrics.enclave_up.set(0);
                match exit {
                    None => {
                        terminate(&mut child).await;
                        state.pid.store(0, Ordering::Relaxed);
                        return;
                    }
                    Some(status) => {
                        state.pid.store(0, Ordering::Relaxed);
                        tracing::warn!(pid, status = ?status.ok(), "enclave exited");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, program = %cmd.program.display(), "cannot start the enclave")
            }
        }
        if started.elapsed() > STABLE_RUN {
            backoff = BACKOFF_START;
        }
        tracing::info!(
            delay_ms = backoff.as_millis() as u64,
            "restarting the enclave"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn spawn(cmd: &EnclaveCommand) -> std::io::Result<Child> {
    let _ = std::fs::remove_file(&cmd.socket);
    let mut child = Command::new(&cmd.program)
        .args(&cmd.args)
        .arg("--socket")
        .arg(&cmd.socket)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Keep the enclave's own severity, so its errors show under the host's filter.
                if line.contains(" ERROR ") || line.contains(" WARN ") {
                    tracing::warn!(target: "enclave", "{line}");
                } else {
                    tracing::info!(target: "enclave", "{line}");
                }
            }
        });
    }
    Ok(child)
}

/// Polls the socket with health frames until the enclave answers or gives up.
async fn wait_ready(cmd: &EnclaveCommand, child: &mut Child) -> bool {
    let deadline = tokio::time::Instant::now() + cmd.startup_timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(Response::Health(_)) =
            relay::call(&cmd.socket, &Request::Health, Duration::from_secs(2)).await
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::error!(
        timeout_s = cmd.startup_timeout.as_secs(),
        "enclave did not become ready; killing it"
    );
    let _ = child.start_kill();
    false
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    tracing::info!("enclave stopped");
}
