//! Launches the enclave and keeps it running.
//!
//! The process backend (development) runs the enclave binary as a child
//! process that serves on a Unix socket. The supervisor waits until it
//! answers a health frame, then watches it: when it exits it is restarted
//! with exponential backoff (reset after a stable run). The enclave's
//! stderr is forwarded line by line to the host's log, and its last
//! [`STDERR_TAIL`] lines are kept for reports; the enclave never writes
//! client plaintext there.
//!
//! # The lifeline
//!
//! The enclave must not outlive its host, however the host dies (SIGKILL
//! and OOM kills included): an orphaned enclave keeps its socket, its keys
//! and its memory. The supervisor therefore starts it with its stdin on a
//! pipe whose write end it holds, without ever writing to it, for the
//! child's whole life, and passes [`LIFELINE_ARG`]. The enclave watches its
//! stdin on a thread of its own and exits (removing its socket) as soon as
//! it reads end of file, which the kernel delivers when the last write end
//! closes: when the host stops it, drops it, or dies. An enclave started by
//! hand without the flag ignores its stdin. The pipe does not depend on
//! which host thread spawned the child, unlike `PR_SET_PDEATHSIG`, which
//! fires when the spawning *thread* exits (tokio's threads come and go), so
//! it is not used. The VM backend will use the same lifeline over its
//! console or a vsock stream.
//!
//! # Start failures and crash loops
//!
//! When the enclave exits (or is not ready in time) on its very first start,
//! it will not do better on the next: a bad argument, an unusable data
//! directory, a missing runtime. The supervisor then stops, without
//! restarting it, and publishes the enclave's last error lines in
//! [`EnclaveState::start_error`], which [`crate::RunningHost::wait_ready`]
//! returns. Once it has been ready, it is restarted whenever it exits, and
//! every exit and every failed restart is logged as an error with the
//! enclave's last error lines (several in a row are reported as a crash
//! loop).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kokon_wire::{Request, Response};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::link::Link;
use crate::metrics::Metrics;
use crate::relay;
pub use crate::state::EnclaveState;
use crate::vm;
pub use crate::vm::VmCommand;

/// The argument the supervisor passes so that the enclave exits when its
/// stdin (the lifeline pipe) reaches end of file.
pub const LIFELINE_ARG: &str = "--exit-with-host";

/// How many of the enclave's last stderr lines are kept for reports.
pub const STDERR_TAIL: usize = 20;

/// How to start the enclave.
#[derive(Debug, Clone)]
pub struct EnclaveCommand {
    /// The enclave binary.
    pub program: PathBuf,
    /// Its arguments (the supervisor appends [`LIFELINE_ARG`] and `--socket PATH`).
    pub args: Vec<String>,
    /// Extra environment variables (the enclave also inherits the host's).
    pub env: Vec<(String, String)>,
    /// The Unix socket it serves on.
    pub socket: PathBuf,
    /// How long a start may take before it counts as failed.
    pub startup_timeout: Duration,
}

/// How the enclave runs: a child process, or inside the worker VM.
#[derive(Debug, Clone)]
pub enum Launch {
    /// The process backend (development).
    Process(EnclaveCommand),
    /// The VM backend.
    Vm(VmCommand),
}

impl From<EnclaveCommand> for Launch {
    fn from(cmd: EnclaveCommand) -> Self {
        Launch::Process(cmd)
    }
}

impl From<VmCommand> for Launch {
    fn from(cmd: VmCommand) -> Self {
        Launch::Vm(cmd)
    }
}

impl Launch {
    /// Where the enclave is reached.
    pub fn link(&self) -> Link {
        match self {
            Launch::Process(cmd) => Link::Unix(cmd.socket.clone()),
            Launch::Vm(cmd) => cmd.link.clone(),
        }
    }

    /// How long a start may take.
    pub fn startup_timeout(&self) -> Duration {
        match self {
            Launch::Process(cmd) => cmd.startup_timeout,
            Launch::Vm(cmd) => cmd.startup_timeout,
        }
    }

    fn program(&self) -> &std::path::Path {
        match self {
            Launch::Process(cmd) => &cmd.program,
            Launch::Vm(cmd) => &cmd.qemu,
        }
    }
}

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const STABLE_RUN: Duration = Duration::from_secs(30);
/// Failed restarts in a row from which the log calls it a crash loop.
const CRASH_LOOP: u32 = 3;

/// Supervises the enclave until `stop` turns true (or its sender is
/// dropped), then stops it with SIGTERM. Returns early, without restarting,
/// when the very first start fails (see [`EnclaveState::start_error`]).
pub async fn supervise(
    cmd: Launch,
    state: Arc<EnclaveState>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_START;
    let mut first = true;
    let mut ever_ready = false;
    let mut failed_in_a_row = 0u32;
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
        // What went wrong with this start, if it never became ready.
        let failure = match spawn(&cmd).await {
            Ok(mut enclave) => {
                let pid = enclave.child.id().unwrap_or(0);
                state.pid.store(pid, Ordering::Relaxed);
                tracing::info!(pid, program = %cmd.program().display(), "enclave started");
                match wait_ready(&cmd, &mut enclave.child, &mut stop).await {
                    Startup::Stopped => {
                        enclave.stop().await;
                        state.pid.store(0, Ordering::Relaxed);
                        return;
                    }
                    Startup::Ready => {
                        ever_ready = true;
                        failed_in_a_row = 0;
                        state.up.store(true, Ordering::Relaxed);
                        metrics.enclave_up.set(1);
                        tracing::info!(pid, "enclave ready");
                        let exit = tokio::select! {
                            status = enclave.child.wait() => Some(status),
                            _ = stop.changed() => None,
                        };
                        state.up.store(false, Ordering::Relaxed);
                        metrics.enclave_up.set(0);
                        state.pid.store(0, Ordering::Relaxed);
                        let Some(status) = exit else {
                            enclave.stop().await;
                            return;
                        };
                        enclave.stop_daemon().await;
                        let lines = enclave.last_lines().await;
                        tracing::error!(
                            pid,
                            status = %describe(status.ok()),
                            last_lines = %lines,
                            "the enclave exited; restarting it"
                        );
                        None
                    }
                    Startup::Exited(status) => {
                        enclave.stop_daemon().await;
                        state.pid.store(0, Ordering::Relaxed);
                        let lines = enclave.last_lines().await;
                        Some(format!(
                            "the enclave exited before it was ready ({}); its last lines:\n{lines}",
                            describe(status)
                        ))
                    }
                    Startup::TimedOut => {
                        let _ = enclave.child.kill().await;
                        enclave.stop_daemon().await;
                        state.pid.store(0, Ordering::Relaxed);
                        let lines = enclave.last_lines().await;
                        Some(format!(
                            "the enclave was not ready within {:?} and was killed; its last lines:\n{lines}",
                            cmd.startup_timeout()
                        ))
                    }
                }
            }
            Err(e) => Some(format!(
                "cannot start the enclave {}: {e}",
                cmd.program().display()
            )),
        };
        if let Some(failure) = failure {
            if !ever_ready {
                tracing::error!("{failure}");
                tracing::error!("the enclave failed on its first start: not restarting it");
                let _ = state.start_error.set(failure);
                return;
            }
            failed_in_a_row += 1;
            if failed_in_a_row >= CRASH_LOOP {
                tracing::error!(
                    failed_restarts = failed_in_a_row,
                    "enclave crash loop: {failure}"
                );
            } else {
                tracing::error!("enclave restart failed: {failure}");
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

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "exit status unknown".into(), |s| s.to_string())
}

/// A started enclave: the process (the enclave, whose stdin is the
/// lifeline, or QEMU) and the task forwarding its stderr (or console).
struct Spawned {
    child: Child,
    /// The VM's vsock daemon, if any.
    daemon: Option<Child>,
    /// The VM's QMP socket, for a clean power-down.
    qmp: Option<PathBuf>,
    /// How long a VM gets to power off.
    grace: Duration,
    /// The write end of the lifeline, held (never written) for the child's
    /// life: out of `child`, whose `wait` would close it.
    _lifeline: Option<tokio::process::ChildStdin>,
    tail: Arc<Mutex<VecDeque<String>>>,
    forwarder: Option<JoinHandle<()>>,
}

impl Spawned {
    /// Stops the enclave: SIGTERM for a process; for a VM, the ACPI power
    /// button, then a kill when it is not off within its grace period.
    async fn stop(&mut self) {
        match &self.qmp {
            None => terminate(&mut self.child).await,
            Some(qmp) => {
                if let Err(e) = vm::power_down(qmp).await {
                    tracing::warn!(error = %e, "ACPI power-down through QMP failed; killing the VM");
                }
                if tokio::time::timeout(self.grace, self.child.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(grace = ?self.grace, "the VM did not power off in time; killing it");
                    let _ = self.child.kill().await;
                }
                tracing::info!("VM stopped");
            }
        }
        self.stop_daemon().await;
    }

    /// Stops the VM's vsock daemon (it serves one VM's life).
    async fn stop_daemon(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill().await;
        }
    }

    /// The enclave's last error lines, once its stderr is drained (briefly
    /// waited for): from its first error-looking line among the last
    /// [`STDERR_TAIL`] on, or all of them when none looks like one.
    async fn last_lines(&mut self) -> String {
        if let Some(forwarder) = self.forwarder.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), forwarder).await;
        }
        let tail = match self.tail.lock() {
            Ok(t) => t.iter().cloned().collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        if tail.is_empty() {
            return "  (it wrote nothing to stderr)".into();
        }
        let from = tail
            .iter()
            .position(|l| {
                l.contains(" ERROR ") || l.starts_with("error:") || l.contains("panicked at")
            })
            .unwrap_or(0);
        tail.get(from..)
            .unwrap_or_default()
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn spawn(launch: &Launch) -> std::io::Result<Spawned> {
    let cmd = match launch {
        Launch::Process(cmd) => cmd,
        Launch::Vm(cmd) => {
            let mut vm = vm::start(cmd).await?;
            // The console (stdout) and QEMU's own messages (stderr).
            let console = vm.qemu.stdout.take();
            let stderr = vm.qemu.stderr.take();
            let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
            let forwarder = forward_lines(console, tail.clone(), "vm");
            let qemu_forwarder = forward_lines(stderr, tail.clone(), "qemu");
            let forwarder = match (forwarder, qemu_forwarder) {
                (Some(a), Some(b)) => Some(tokio::spawn(async move {
                    let _ = tokio::join!(a, b);
                })),
                (a, b) => a.or(b),
            };
            return Ok(Spawned {
                child: vm.qemu,
                daemon: vm.daemon,
                qmp: Some(cmd.qmp.clone()),
                grace: cmd.shutdown_grace,
                _lifeline: None,
                tail,
                forwarder,
            });
        }
    };
    let _ = std::fs::remove_file(&cmd.socket);
    let mut child = Command::new(&cmd.program)
        .args(&cmd.args)
        .arg(LIFELINE_ARG)
        .arg("--socket")
        .arg(&cmd.socket)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // The lifeline: `Spawned` keeps the write end open for the enclave's life.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let lifeline = child.stdin.take();
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let forwarder = forward_lines(child.stderr.take(), tail.clone(), "enclave");
    Ok(Spawned {
        child,
        daemon: None,
        qmp: None,
        grace: Duration::ZERO,
        _lifeline: lifeline,
        tail,
        forwarder,
    })
}

/// Forwards `output`'s lines to the host's log, with `source` as a field,
/// keeping the last [`STDERR_TAIL`] in `tail`.
fn forward_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    output: Option<R>,
    tail: Arc<Mutex<VecDeque<String>>>,
    source: &'static str,
) -> Option<JoinHandle<()>> {
    let output = output?;
    Some(tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // Keep the enclave's own severity, so its errors show under the host's filter.
            if line.contains(" ERROR ") || line.contains(" WARN ") || line.starts_with("error:") {
                tracing::warn!(target: "enclave", source, "{line}");
            } else {
                tracing::info!(target: "enclave", source, "{line}");
            }
            if line.trim().is_empty() {
                continue;
            }
            if let Ok(mut tail) = tail.lock() {
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    }))
}

/// How a start ended.
enum Startup {
    Ready,
    Exited(Option<ExitStatus>),
    TimedOut,
    Stopped,
}

/// Polls the socket with health frames until the enclave answers, exits,
/// runs out of time, or the host stops.
async fn wait_ready(cmd: &Launch, child: &mut Child, stop: &mut watch::Receiver<bool>) -> Startup {
    let deadline = tokio::time::Instant::now() + cmd.startup_timeout();
    let link = cmd.link();
    while tokio::time::Instant::now() < deadline {
        if *stop.borrow() || stop.has_changed().is_err() {
            return Startup::Stopped;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Startup::Exited(Some(status));
        }
        if let Ok(Response::Health(_)) =
            relay::call(&link, &Request::Health, Duration::from_secs(2)).await
        {
            return Startup::Ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Startup::TimedOut
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
