#![allow(clippy::expect_used, clippy::indexing_slicing, missing_docs)]
//! Boots a built image in QEMU (direct kernel boot with the image's own
//! OVMF, as the worker VM starts; under emulation, TCG, which works on any
//! host: a nested KVM may refuse QEMU's vCPU) with this test binary as `/init`, and checks from the serial
//! console that the kernel unpacked the initramfs, gave init a console, and
//! that the image's loader and libraries run a Rust binary as PID 1 which
//! loads every listed module in order and finds configfs-tsm.
//!
//! The guest side is [`guest_side`], an ignored test that the kernel runs as
//! PID 1 (`/init guest_side --exact --ignored`, the arguments after `--` on
//! the command line); anywhere else it refuses to run.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kokon_image::{build, ImageSpec, VmShape};

/// What the guest prints before each line the host reads.
const MARK: &str = "kokon-probe:";

/// The guest side: runs only as the guest's init (PID 1), where it loads
/// kernel modules and mounts file systems.
#[test]
#[ignore = "the VM's init in the_image_boots_and_loads_its_modules; never on a host"]
fn guest_side() {
    assert_eq!(
        std::process::id(),
        1,
        "guest_side loads kernel modules: it runs only as a VM's init"
    );
    println!("{MARK} pid 1");
    let list = std::fs::read_to_string("/etc/kokon/modules").expect("/etc/kokon/modules");
    for name in list.lines() {
        let file = std::fs::File::open(format!("/lib/modules/{name}.ko")).expect("module file");
        let result = nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty());
        match result {
            Ok(()) => println!("{MARK} module {name} ok"),
            Err(errno) => println!("{MARK} module {name} {errno:?}"),
        }
    }
    let mount = |fstype: &str, target: &str| {
        nix::mount::mount(
            Some(fstype),
            target,
            Some(fstype),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap_or_else(|e| println!("{MARK} mount {fstype} on {target}: {e}"));
    };
    mount("sysfs", "/sys");
    mount("configfs", "/sys/kernel/config");
    let tsm = Path::new("/sys/kernel/config/tsm/report").is_dir();
    println!("{MARK} configfs-tsm {}", if tsm { "ok" } else { "missing" });
    println!("{MARK} done");
    // Returning ends init: the kernel panics, panic=-1 reboots, and
    // QEMU's -no-reboot exits.
}

#[test]
fn the_image_boots_and_loads_its_modules() {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        panic!("{qemu} is not installed (Debian: apt-get install qemu-system-x86); this test boots the image");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = ImageSpec {
        lock: crate_dir.join("debian.lock"),
        cache: crate_dir.join("../.cache/image"),
        init: exe.clone(),
        enclave: exe,
        files: Vec::new(),
        enclave_args: Vec::new(),
        cmdline: "console=ttyS0 panic=-1 rdinit=/init".into(),
        vm: VmShape {
            vcpus: 1,
            memory_mib: 1024,
            snp_vcpu_type: "EPYC-v4".into(),
        },
        snp_firmware: None,
    };
    let out = dir.path().join("out");
    let manifest = build(&spec, &out).unwrap_or_else(|e| {
        panic!("building the image failed (the first build needs deb.debian.org and PyPI): {e}")
    });
    let append = format!(
        "{} -- guest_side --exact --ignored --nocapture --test-threads=1",
        manifest.cmdline
    );
    let console = dir.path().join("console.log");
    let mut child = Command::new(qemu)
        .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max"])
        .args([
            "-m",
            "1024",
            "-smp",
            "1",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-bios")
        .arg(out.join("OVMF.fd"))
        .arg("-kernel")
        .arg(out.join("vmlinuz"))
        .arg("-initrd")
        .arg(out.join("initrd.img"))
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu");
    let limit = Duration::from_secs(300);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let log = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
    let tail: String = log
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        status.is_some(),
        "QEMU did not stop within {limit:?}; console tail:\n{tail}\nstderr: {stderr}"
    );
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .split_once(MARK)
                .map(|(_, r)| r.trim())
        })
        .collect();
    assert!(
        lines.contains(&"pid 1"),
        "init never ran; console tail:\n{tail}\nstderr: {stderr}"
    );
    for module in &manifest.modules {
        let ok = format!("module {module} ok");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("module {module} ")))
            .copied();
        // Outside a TEE the TDX and SEV guest drivers find no device
        // (ENODEV), which proves their symbols resolved: a module loaded
        // before its dependencies fails with ENOENT instead.
        let expected_outside_tee = ["tdx_guest", "sev_guest"].contains(&module.as_str());
        let fine = line == Some(ok.as_str())
            || (expected_outside_tee && line == Some(&format!("module {module} ENODEV")));
        assert!(fine, "{module}: {line:?}; console tail:\n{tail}");
    }
    assert!(
        lines.contains(&"configfs-tsm ok"),
        "configfs-tsm missing; console tail:\n{tail}"
    );
    assert!(lines.contains(&"done"), "console tail:\n{tail}");
}
