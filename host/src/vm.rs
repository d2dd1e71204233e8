//! The VM backend's processes: QEMU running the worker VM, and, where the
//! kernel has no vhost-vsock, the vhost-user vsock daemon beside it.
//!
//! The supervisor ([`crate::supervisor`]) treats the VM as it treats the
//! enclave process: it starts it, waits until the enclave inside answers a
//! health frame over the [`Link`], restarts it with backoff when QEMU exits
//! (the guest powers off when its enclave exits; QEMU runs with
//! `-no-reboot`, so a guest reboot or panic also ends it), and stops it
//! cleanly: an ACPI power-down through QMP (the guest's init stops the
//! enclave and powers off), then a kill. The guest's console is QEMU's
//! standard output, forwarded line by line to the host's log.
//!
//! # Dying with the host
//!
//! QEMU and the daemon are started with `PR_SET_PDEATHSIG` = SIGKILL, so
//! the kernel kills them when the host dies, however it dies. The signal
//! fires when the *thread* that forked them exits, so they are forked by
//! one thread kept for the host's whole life ([`spawner`]), never by tokio's
//! threads, which come and go.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::link::Link;

/// How to start the worker VM.
#[derive(Debug, Clone)]
pub struct VmCommand {
    /// qemu-system-x86_64.
    pub qemu: PathBuf,
    /// Its arguments (see [`crate::qemu::command_line`]).
    pub qemu_args: Vec<String>,
    /// The vhost-user vsock daemon, when the VM's vsock device is vhost-user.
    pub vsock_daemon: Option<VsockDaemon>,
    /// QEMU's QMP socket, for the ACPI power-down.
    pub qmp: PathBuf,
    /// Where the enclave inside is reached.
    pub link: Link,
    /// How long a start (boot included) may take before it counts as failed.
    pub startup_timeout: Duration,
    /// How long the guest gets to power off after the ACPI power button before QEMU is killed.
    pub shutdown_grace: Duration,
}

/// The vhost-user vsock daemon (rust-vmm `vhost-device-vsock`).
#[derive(Debug, Clone)]
pub struct VsockDaemon {
    /// The daemon binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The vhost-user socket it creates and QEMU connects to: QEMU starts
    /// only once it exists.
    pub socket: PathBuf,
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The one thread that forks the VM's processes (see the module docs);
/// `None` if it could not be started.
fn spawner() -> Option<&'static mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            let runtime = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name("vm-spawner".into())
                .spawn(move || {
                    // tokio's child handles register with the runtime's reactor.
                    let _guard = runtime.enter();
                    for (mut command, reply) in rx {
                        let _ = reply.send(command.spawn());
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Makes the child `command` starts receive SIGKILL when the thread that
/// forks it exits (`PR_SET_PDEATHSIG`): the VM's processes (forked by the
/// spawner thread) and the short KVM probe
/// ([`crate::qemu::kvm_runs_firmware`], whose forking thread waits for it).
#[allow(unsafe_code)] // `pre_exec` is unsafe: the one use below is async-signal-safe.
pub(crate) fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: prctl is async-signal-safe; the closure runs in the child
    // between fork and exec and touches nothing else.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// Spawns `command` on the spawner thread with the parent-death signal set.
async fn spawn_tied(mut command: Command) -> std::io::Result<Child> {
    die_with_parent(command.as_std_mut());
    let (tx, rx) = mpsc::channel();
    spawner()
        .ok_or_else(|| std::io::Error::other("the VM spawner thread could not be started"))?
        .send((command, tx))
        .map_err(|_| std::io::Error::other("the VM spawner thread is gone"))?;
    tokio::task::spawn_blocking(move || rx.recv())
        .await
        .map_err(std::io::Error::other)?
        .map_err(|_| std::io::Error::other("the VM spawner thread is gone"))?
}

/// The VM's processes once started.
pub struct Vm {
    /// QEMU.
    pub qemu: Child,
    /// The vsock daemon, if any.
    pub daemon: Option<Child>,
}

/// Starts the daemon (and waits for its socket), then QEMU, with stdout
/// (the console) and stderr piped for the caller to forward.
pub async fn start(cmd: &VmCommand) -> std::io::Result<Vm> {
    let _ = std::fs::remove_file(&cmd.qmp);
    let daemon = match &cmd.vsock_daemon {
        Some(d) => {
            let _ = std::fs::remove_file(&d.socket);
            if let Link::HybridVsock { uds, .. } = &cmd.link {
                let _ = std::fs::remove_file(uds);
            }
            let mut command = Command::new(&d.program);
            command
                .args(&d.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let mut child = spawn_tied(command).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("starting the vsock daemon {}: {e} (install it: cargo install vhost-device-vsock)", d.program.display()),
                )
            })?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !d.socket.exists() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(std::io::Error::other(format!(
                        "the vsock daemon {} exited ({status}) before creating {}",
                        d.program.display(),
                        d.socket.display()
                    )));
                }
                if tokio::time::Instant::now() > deadline {
                    let _ = child.kill().await;
                    return Err(std::io::Error::other(format!(
                        "the vsock daemon did not create {} within 10 s",
                        d.socket.display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(child)
        }
        None => None,
    };
    let mut command = Command::new(&cmd.qemu);
    command
        .args(&cmd.qemu_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let qemu = spawn_tied(command).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "starting {}: {e} (Debian: apt-get install qemu-system-x86)",
                cmd.qemu.display()
            ),
        )
    })?;
    Ok(Vm { qemu, daemon })
}

/// Asks the guest to power off (ACPI power button, through QMP).
pub async fn power_down(qmp: &std::path::Path) -> std::io::Result<()> {
    let stream = tokio::net::UnixStream::connect(qmp).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // The greeting, then one answer per command.
    lines.next_line().await?;
    for command in ["qmp_capabilities", "system_powerdown"] {
        write
            .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
            .await?;
        loop {
            let Some(line) = lines.next_line().await? else {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            };
            // Skip asynchronous events; stop at the command's answer.
            if line.contains("\"return\"") {
                break;
            }
            if line.contains("\"error\"") {
                return Err(std::io::Error::other(format!("QMP {command}: {line}")));
            }
        }
    }
    Ok(())
}
