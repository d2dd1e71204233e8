//! `kokon-init`: the worker VM's PID 1 (see the `kokon_guest` crate).
//!
//! Mounts the kernel's file systems, loads the image's kernel modules,
//! starts the enclave as planned by [`kokon_guest::plan`], reaps orphans,
//! asks the enclave to stop when the ACPI power button is pressed (the
//! host's clean shutdown), and powers the VM off when the enclave exits.
//! It logs to the console, which the host captures; the enclave never
//! writes client data there.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use kokon_wire::vm;
use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// The input event code of the power button (linux/input-event-codes.h).
const KEY_POWER: u16 = 116;
/// The input event type of keys.
const EV_KEY: u16 = 1;

fn log(message: &str) {
    eprintln!("kokon-init: {message}");
}

fn main() {
    if let Err(e) = run() {
        log(&format!("error: {e:#}"));
    }
    log("powering off");
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused: PID 1 must not exit.
    loop {
        std::thread::park();
    }
}

fn run() -> anyhow::Result<()> {
    let root = Path::new("/");
    for (source, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
    ] {
        mount_fs(source, target, fstype)?;
    }
    for module in kokon_guest::modules(root)? {
        load_module(&module);
    }
    // A GPU image's driver, if it loaded (it refuses without a GPU).
    for node in kokon_guest::nvidia::device_nodes(root)? {
        make_device_node(&node)?;
    }
    // configfs-tsm lives under configfs, a module in distribution kernels.
    mount_fs("configfs", "/sys/kernel/config", "configfs")?;
    if let Some(verity) = kokon_guest::data_disk(root)? {
        kokon_guest::mount_data_disk(&verity)?;
        log(&format!(
            "data disk: {} blocks under dm-verity root {} on {}",
            verity.data_blocks,
            hex::encode(verity.root_hash),
            vm::DATA_MOUNT
        ));
    }
    let plan = kokon_guest::plan(root)?;
    log(&format!("evidence: {}", plan.evidence));
    let child = Command::new(&plan.program)
        .args(&plan.args)
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .with_context(|| format!("starting {}", plan.program.display()))?;
    let enclave = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    watch_power_button(enclave);
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == enclave => {
                anyhow::bail!("the enclave exited with status {code}")
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == enclave => {
                anyhow::bail!("the enclave was killed by {signal}")
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => anyhow::bail!("waiting for the enclave: {e}"),
        }
    }
}

fn mount_fs(source: &str, target: &str, fstype: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
    match mount(
        Some(source),
        target,
        Some(fstype),
        MsFlags::MS_NOSUID,
        None::<&str>,
    ) {
        Ok(()) | Err(nix::errno::Errno::EBUSY) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("mounting {fstype} on {target}")),
    }
}

/// Loads one module; failures are logged, not fatal: a TEE's guest driver
/// refuses to load outside its TEE (ENODEV), which is how the init learns
/// which TEE it runs in.
fn load_module(path: &Path) {
    let result = File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            nix::kmod::finit_module(file.as_fd(), c"", nix::kmod::ModuleInitFlags::empty())
                .map_err(|e| e.desc().to_string())
        });
    match result {
        Ok(()) => log(&format!("loaded {}", path.display())),
        Err(e) => log(&format!("not loaded {}: {e}", path.display())),
    }
}

/// Creates a character device node, readable and writable by all (the
/// enclave is the guest's one service), as `nvidia-modprobe` does.
fn make_device_node(node: &kokon_guest::nvidia::DeviceNode) -> anyhow::Result<()> {
    match nix::sys::stat::mknod(
        node.path.as_str(),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(node.major, node.minor),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {
            log(&format!(
                "created {} ({}:{})",
                node.path, node.major, node.minor
            ));
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", node.path)),
    }
}

/// Sends the enclave SIGTERM when the ACPI power button is pressed (QEMU's
/// `system_powerdown`), on one thread per input device.
fn watch_power_button(enclave: Pid) {
    let Ok(entries) = std::fs::read_dir("/dev/input") else {
        log("no /dev/input: the power button is not watched");
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("event"))
        {
            continue;
        }
        let Ok(mut device) = File::open(&path) else {
            continue;
        };
        std::thread::spawn(move || {
            // struct input_event: struct timeval (16 bytes), type, code (u16), value (i32).
            let mut event = [0u8; 24];
            while device.read_exact(&mut event).is_ok() {
                let kind = u16::from_ne_bytes([event[16], event[17]]);
                let code = u16::from_ne_bytes([event[18], event[19]]);
                let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
                if kind == EV_KEY && code == KEY_POWER && value == 1 {
                    log("power button: stopping the enclave");
                    let _ = kill(enclave, Signal::SIGTERM);
                }
            }
        });
    }
}
