#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The worker VM's QEMU command line and its preflight checks.
//!
//! * Golden command lines: each config's argv, one argument per line, must
//!   equal `host/tests/golden/qemu-NAME.args` exactly. After a deliberate
//!   change, run the tests with `KOKON_BLESS=1` to rewrite the golden
//!   files, and review their diff before committing.
//! * QEMU itself (`qemu-system-x86_64` on PATH; `apt-get install
//!   qemu-system-x86`) must accept the plain command line: it is started
//!   paused (`-S`), with a vhost-user vsock backend played by the test,
//!   answers `query-status` on its QMP socket, and exits 0 on `quit`.
//! * Every preflight check is tripped, with a fake QEMU (a script printing
//!   a version), missing image files, an unusable KVM path and a fake
//!   sysfs tree.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kokon_host::qemu::{
    command_line, preflight, preflight_with, Accel, HostPaths, QemuVersion, SnpLaunch, Tee,
    VmConfig, VmError, Vsock,
};

const IMAGE: &str = "/var/lib/kokon/image";

/// The serving configuration digest the SNP configs carry: bytes 0..32.
fn host_data() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

/// A TDX VM with fixed paths; the other configs are variations of it.
fn tdx() -> VmConfig {
    VmConfig {
        tee: Tee::Tdx,
        accel: Accel::Kvm,
        vcpus: 4,
        memory_mib: 16384,
        cpu_model: "host".into(),
        firmware: format!("{IMAGE}/OVMF.fd").into(),
        kernel: format!("{IMAGE}/vmlinuz").into(),
        initrd: format!("{IMAGE}/initrd.img").into(),
        cmdline: "console=ttyS0 panic=-1 quiet".into(),
        data_disk: None,
        snp: SnpLaunch::default(),
        tdx_quote_vsock_port: 4050,
        vsock: Vsock::Kernel { guest_cid: 3 },
        gpus: vec![],
        qmp_socket: "/run/kokon/qmp.sock".into(),
        fw_cfg_files: vec![],
    }
}

fn snp() -> VmConfig {
    VmConfig {
        tee: Tee::Snp,
        cpu_model: "EPYC-v4".into(),
        firmware: format!("{IMAGE}/OVMF.amdsev.fd").into(),
        snp: SnpLaunch {
            policy: 0x30000,
            host_data: host_data(),
        },
        ..tdx()
    }
}

fn none_kvm_vhost_user() -> VmConfig {
    VmConfig {
        tee: Tee::None,
        vcpus: 2,
        memory_mib: 2048,
        vsock: Vsock::VhostUser {
            socket: "/run/kokon/vsock.sock".into(),
        },
        fw_cfg_files: vec![(
            "opt/kokon/measurements".into(),
            format!("{IMAGE}/measurements.json").into(),
        )],
        ..tdx()
    }
}

fn none_tcg() -> VmConfig {
    VmConfig {
        tee: Tee::None,
        accel: Accel::Tcg,
        vcpus: 2,
        memory_mib: 2048,
        cpu_model: "max".into(),
        ..tdx()
    }
}

fn with_gpus(cfg: VmConfig, gpus: &[&str]) -> VmConfig {
    VmConfig {
        gpus: gpus.iter().map(|g| g.to_string()).collect(),
        ..cfg
    }
}

/// Compares `cfg`'s command line with `golden/qemu-NAME.args` (one argument
/// per line), or rewrites that file when `KOKON_BLESS=1`.
fn golden(name: &str, cfg: &VmConfig) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/qemu-{name}.args"));
    let args = command_line(cfg);
    assert!(
        args.iter().all(|a| !a.contains('\n')),
        "an argument holds a newline: {args:?}"
    );
    let actual = args.join("\n") + "\n";
    if std::env::var("KOKON_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KOKON_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let (expected, actual): (Vec<&str>, Vec<&str>) =
        (expected.lines().collect(), actual.lines().collect());
    let mut diff = String::new();
    for i in 0..expected.len().max(actual.len()) {
        let (e, a) = (expected.get(i), actual.get(i));
        if e != a {
            diff += &format!("line {}:\n", i + 1);
            if let Some(e) = e {
                diff += &format!("  - {e}\n");
            }
            if let Some(a) = a {
                diff += &format!("  + {a}\n");
            }
        }
    }
    panic!(
        "the command line differs from {} (- golden, + now); if the change is meant, rerun with KOKON_BLESS=1 and review the diff:\n{diff}",
        path.display()
    );
}

#[test]
fn golden_tdx() {
    golden("tdx", &tdx());
}

#[test]
fn golden_snp() {
    golden("snp", &snp());
}

#[test]
fn golden_snp_two_gpus() {
    golden(
        "snp-2gpu",
        &with_gpus(snp(), &["0000:3b:00.0", "0000:86:00.0"]),
    );
}

#[test]
fn golden_tdx_one_gpu() {
    golden("tdx-1gpu", &with_gpus(tdx(), &["0000:3b:00.0"]));
}

#[test]
fn golden_snp_with_a_data_disk() {
    golden(
        "snp-data",
        &VmConfig {
            data_disk: Some(format!("{IMAGE}/data.img").into()),
            ..snp()
        },
    );
}

#[test]
fn golden_none_kvm_vhost_user() {
    golden("none-kvm-vhost-user", &none_kvm_vhost_user());
}

#[test]
fn golden_none_tcg() {
    golden("none-tcg", &none_tcg());
}

/// The values of `option` that start with `prefix`, in order.
fn value_of<'a>(args: &'a [String], option: &str, prefix: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == option && w[1].starts_with(prefix))
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn the_tdx_object_is_json_naming_the_quote_service() {
    let args = command_line(&VmConfig {
        tdx_quote_vsock_port: 4051,
        ..tdx()
    });
    let objects = value_of(&args, "-object", "{");
    assert_eq!(objects.len(), 1, "{args:?}");
    let object: serde_json::Value = serde_json::from_str(objects[0]).unwrap();
    assert_eq!(
        object,
        serde_json::json!({
            "qom-type": "tdx-guest",
            "id": "tdx0",
            "quote-generation-socket": {"type": "vsock", "cid": "2", "port": "4051"}
        })
    );
    let machine = value_of(&args, "-machine", "q35");
    assert!(
        machine[0].contains(",confidential-guest-support=tdx0")
            && machine[0].contains(",kernel-irqchip=split"),
        "{machine:?}"
    );
    assert_eq!(value_of(&args, "-accel", ""), ["kvm"]);
}

#[test]
fn the_snp_object_carries_policy_and_host_data() {
    let mut cfg = snp();
    cfg.snp.policy = 0x30001;
    cfg.snp.host_data = [0xab; 32];
    let args = command_line(&cfg);
    let object = value_of(&args, "-object", "sev-snp-guest,")[0];
    let props: Vec<&str> = object.split(',').collect();
    assert!(props.contains(&"policy=0x30001"), "{object}");
    assert!(props.contains(&"kernel-hashes=on"), "{object}");
    let host_data = props
        .iter()
        .find_map(|p| p.strip_prefix("host-data="))
        .unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(host_data)
            .unwrap(),
        [0xab; 32]
    );
    assert_eq!(value_of(&args, "-cpu", ""), ["EPYC-v4"]);
    assert_eq!(value_of(&args, "-accel", ""), ["kvm"]);
}

#[test]
fn tdx_and_snp_use_kvm_whatever_accel_says() {
    for cfg in [tdx(), snp()] {
        let args = command_line(&VmConfig {
            accel: Accel::Tcg,
            ..cfg
        });
        assert_eq!(value_of(&args, "-accel", ""), ["kvm"]);
    }
    assert_eq!(value_of(&command_line(&none_tcg()), "-accel", ""), ["tcg"]);
}

#[test]
fn gpus_get_a_root_port_each_and_a_window_that_grows_with_them() {
    let gpus = ["0000:3b:00.0", "0000:86:00.0", "0000:af:00.0"];
    let args = command_line(&with_gpus(tdx(), &gpus));
    for (n, gpu) in gpus.iter().enumerate() {
        assert_eq!(
            value_of(&args, "-device", &format!("pcie-root-port,id=rp{n},")).len(),
            1
        );
        assert_eq!(
            value_of(&args, "-device", &format!("vfio-pci,host={gpu},bus=rp{n},")).len(),
            1,
            "{args:?}"
        );
    }
    assert_eq!(
        value_of(&args, "-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,"),
        ["name=opt/ovmf/X-PciMmio64Mb,string=786432"]
    );
    let none = command_line(&tdx());
    assert!(value_of(&none, "-object", "iommufd").is_empty());
    assert!(value_of(&none, "-device", "vfio-pci").is_empty());
}

#[test]
fn commas_in_paths_cannot_add_options() {
    let cfg = VmConfig {
        qmp_socket: "/run/a,b/qmp".into(),
        vsock: Vsock::VhostUser {
            socket: "/run/x,server=on/vsock".into(),
        },
        fw_cfg_files: vec![("opt/a,b".into(), "/etc/c,d".into())],
        ..none_kvm_vhost_user()
    };
    let args = command_line(&cfg);
    assert_eq!(
        value_of(&args, "-qmp", ""),
        ["unix:/run/a,,b/qmp,server=on,wait=off"]
    );
    assert_eq!(
        value_of(&args, "-chardev", "socket"),
        ["socket,id=vsock0,path=/run/x,,server=on/vsock"]
    );
    assert_eq!(
        value_of(&args, "-fw_cfg", "name=opt/a"),
        ["name=opt/a,,b,file=/etc/c,,d"]
    );
}

// ---------------------------------------------------------------------------
// QEMU itself
// ---------------------------------------------------------------------------

/// vhost-user requests the fake backend answers.
const GET_FEATURES: u32 = 1;
const GET_PROTOCOL_FEATURES: u32 = 15;
const GET_CONFIG: u32 = 24;

/// A vhost-user vsock backend that answers just enough for QEMU to realize
/// `vhost-user-vsock-pci` (the device is never started: QEMU runs paused):
/// it offers VHOST_USER_F_PROTOCOL_FEATURES and VIRTIO_F_VERSION_1, the
/// CONFIG protocol feature, and guest CID 3; other requests need no reply.
/// Returns the requests it saw, once QEMU hangs up.
fn fake_vhost_user_vsock(listener: UnixListener) -> thread::JoinHandle<Vec<u32>> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        loop {
            let mut header = [0u8; 12];
            if s.read_exact(&mut header).is_err() {
                return seen;
            }
            let request = u32::from_le_bytes(header[0..4].try_into().unwrap());
            let size = u32::from_le_bytes(header[8..12].try_into().unwrap());
            let mut payload = vec![0u8; size as usize];
            // Ancillary file descriptors (SET_VRING_CALL) are dropped by a
            // plain read: the device never runs.
            s.read_exact(&mut payload).unwrap();
            seen.push(request);
            let reply = match request {
                GET_FEATURES => Some(((1u64 << 30) | (1u64 << 32)).to_le_bytes().to_vec()),
                GET_PROTOCOL_FEATURES => Some((1u64 << 9).to_le_bytes().to_vec()),
                GET_CONFIG => {
                    // offset, size, flags, then the config: guest_cid (u64).
                    payload[12..20].copy_from_slice(&3u64.to_le_bytes());
                    Some(payload)
                }
                _ => None,
            };
            if let Some(body) = reply {
                let mut message = request.to_le_bytes().to_vec();
                message.extend(0x5u32.to_le_bytes()); // version 1 | reply
                message.extend((body.len() as u32).to_le_bytes());
                message.extend(body);
                s.write_all(&message).unwrap();
            }
        }
    })
}

/// A Linux boot-protocol header QEMU's direct kernel loader accepts (it is
/// never run: QEMU stays paused).
fn fake_kernel() -> Vec<u8> {
    let mut k = vec![0u8; 64 * 1024];
    k[0x1f1] = 4; // setup sectors
    k[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // protocol 2.15
    k[0x211] = 0x01; // loaded high
    k[0x22c..0x230].copy_from_slice(&0x37ff_ffffu32.to_le_bytes()); // initrd_addr_max
    k[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    k
}

/// Reads QMP lines until a command's answer (events are skipped).
fn qmp_answer(reader: &mut impl BufRead) -> serde_json::Value {
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "QMP closed before answering"
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value.get("return").is_some() || value.get("error").is_some() {
            return value;
        }
    }
}

/// Starts `cfg`'s command line paused and checks QEMU accepts it: QMP up,
/// `query-status` answers `prelaunch`, `quit` exits 0, and the vhost-user
/// backend was asked for its config (the device was realized).
fn qemu_accepts(cfg: VmConfig, dir: &Path) {
    let qemu = Path::new("qemu-system-x86_64");
    let version = preflight(qemu, &cfg).unwrap_or_else(|e| match e {
        VmError::QemuNotFound { .. } => panic!("{e} (CI installs it in scripts/setup.sh)"),
        e => panic!("{e}"),
    });
    let Vsock::VhostUser { socket } = &cfg.vsock else {
        panic!("this check plays the vhost-user backend");
    };
    let backend = fake_vhost_user_vsock(UnixListener::bind(socket).unwrap());
    let stderr_path = dir.join("stderr");
    let mut child = Command::new(qemu)
        .args(command_line(&cfg))
        .arg("-S")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "QEMU {version} exited ({status}) before QMP came up:\n{}",
                stderr()
            );
        }
        if let Ok(s) = UnixStream::connect(&cfg.qmp_socket) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no QMP socket after 30 s:\n{}",
            stderr()
        );
        thread::sleep(Duration::from_millis(50));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.contains("\"QMP\""), "{greeting}");
    let mut command = |execute: &str| {
        writeln!(writer, r#"{{"execute":"{execute}"}}"#).unwrap();
        qmp_answer(&mut reader)
    };
    assert_eq!(command("qmp_capabilities")["return"], serde_json::json!({}));
    let status = command("query-status");
    assert_eq!(
        status["return"]["status"],
        "prelaunch",
        "{status}\n{}",
        stderr()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "QEMU is gone:\n{}",
        stderr()
    );
    command("quit");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("QEMU did not exit after quit:\n{}", stderr());
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "QEMU exited {status}:\n{}", stderr());
    let seen = backend.join().unwrap();
    assert!(
        seen.contains(&GET_CONFIG),
        "QEMU never asked the vhost-user backend for its config: {seen:?}"
    );
}

/// A plain VM with files that exist, in a directory whose name has a comma
/// (so QEMU itself checks the escaping).
fn live_config(dir: &Path, accel: Accel, cpu: &str) -> VmConfig {
    let dir = dir.join("a,b");
    std::fs::create_dir(&dir).unwrap();
    // -bios wants a multiple of 64 KiB; nothing runs it.
    std::fs::write(dir.join("OVMF.fd"), vec![0u8; 64 * 1024]).unwrap();
    std::fs::write(dir.join("vmlinuz"), fake_kernel()).unwrap();
    std::fs::write(dir.join("initrd.img"), [0u8; 4096]).unwrap();
    std::fs::write(dir.join("measurements.json"), b"{}").unwrap();
    VmConfig {
        tee: Tee::None,
        accel,
        vcpus: 2,
        memory_mib: 256,
        cpu_model: cpu.into(),
        firmware: dir.join("OVMF.fd"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        cmdline: "console=ttyS0 panic=-1".into(),
        data_disk: None,
        snp: SnpLaunch::default(),
        tdx_quote_vsock_port: 4050,
        vsock: Vsock::VhostUser {
            socket: dir.join("vsock.sock"),
        },
        gpus: vec![],
        qmp_socket: dir.join("qmp.sock"),
        fw_cfg_files: vec![(
            "opt/kokon/measurements".into(),
            dir.join("measurements.json"),
        )],
    }
}

#[test]
fn qemu_accepts_the_tcg_command_line() {
    let dir = tempfile::tempdir().unwrap();
    qemu_accepts(live_config(dir.path(), Accel::Tcg, "max"), dir.path());
}

// ---------------------------------------------------------------------------
// Preflight
// ---------------------------------------------------------------------------

/// A host in a temporary directory: image files, a KVM "device" (a file
/// that opens read-write), a sysfs tree, and fake QEMUs.
struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for file in ["OVMF.fd", "vmlinuz", "initrd.img", "kvm"] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("sys/bus/pci/devices")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn paths(&self) -> HostPaths {
        HostPaths {
            kvm: self.path("kvm"),
            sysfs: self.path("sys"),
        }
    }

    /// `cfg` with its image files in this host.
    fn image(&self, cfg: VmConfig) -> VmConfig {
        VmConfig {
            firmware: self.path("OVMF.fd"),
            kernel: self.path("vmlinuz"),
            initrd: self.path("initrd.img"),
            ..cfg
        }
    }

    /// A PCI device at `bdf`, bound to `driver` (none: unbound).
    fn pci_device(&self, bdf: &str, driver: Option<&str>) {
        let device = self.path("sys/bus/pci/devices").join(bdf);
        std::fs::create_dir_all(&device).unwrap();
        if let Some(driver) = driver {
            std::os::unix::fs::symlink(
                format!("../../../../bus/pci/drivers/{driver}"),
                device.join("driver"),
            )
            .unwrap();
        }
    }

    /// A script that prints `output` for `--version`.
    fn fake_qemu(&self, output: &str) -> PathBuf {
        let name: String = output
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        script(
            self.dir.path(),
            &format!("qemu-{name}"),
            &format!("echo '{output}'"),
        )
    }

    fn qemu(&self, version: &str) -> PathBuf {
        self.fake_qemu(&format!("QEMU emulator version {version} (v{version})"))
    }

    fn preflight(&self, qemu: &Path, cfg: &VmConfig) -> Result<QemuVersion, VmError> {
        preflight_with(qemu, &self.image(cfg.clone()), &self.paths())
    }

    /// The preflight's error message, which must exist.
    fn error(&self, qemu: &Path, cfg: &VmConfig) -> String {
        match self.preflight(qemu, cfg) {
            Ok(v) => panic!("preflight passed (QEMU {v}) for {cfg:?}"),
            Err(e) => e.to_string(),
        }
    }
}

fn assert_contains(message: &str, expected: &str) {
    assert!(
        message.contains(expected),
        "expected {expected:?} in:\n{message}"
    );
}

#[test]
fn preflight_passes_a_host_that_has_everything() {
    let host = FakeHost::new();
    host.pci_device("0000:3b:00.0", Some("vfio-pci"));
    let qemu = host.qemu("10.1.0");
    for cfg in [
        tdx(),
        snp(),
        with_gpus(snp(), &["0000:3b:00.0"]),
        with_gpus(tdx(), &["0000:3B:00.0"]),
        none_kvm_vhost_user(),
        none_tcg(),
    ] {
        assert_eq!(
            host.preflight(&qemu, &cfg).unwrap(),
            QemuVersion::new(10, 1, 0)
        );
    }
    let old = host.qemu("7.2.22");
    assert_eq!(
        host.preflight(&old, &none_tcg()).unwrap(),
        QemuVersion::new(7, 2, 22)
    );
    assert_eq!(
        host.preflight(&host.qemu("9.1.0"), &snp()).unwrap(),
        QemuVersion::new(9, 1, 0)
    );
}

#[test]
fn preflight_names_a_missing_qemu_and_how_to_install_it() {
    let host = FakeHost::new();
    let missing = host.path("bin/qemu-system-x86_64");
    assert_eq!(
        host.error(&missing, &tdx()),
        format!(
            "qemu-system-x86_64 not found at {}: install it (Debian: apt-get install qemu-system-x86)",
            missing.display()
        )
    );
    // The real preflight, too.
    let e = preflight(Path::new("/nonexistent/qemu-system-x86_64"), &tdx()).unwrap_err();
    assert!(matches!(e, VmError::QemuNotFound { .. }), "{e}");
}

#[test]
fn preflight_rejects_a_binary_that_is_not_qemu() {
    let host = FakeHost::new();
    let qemu = host.fake_qemu("hello, world");
    let message = host.error(&qemu, &none_tcg());
    assert_contains(&message, "did not print \"QEMU emulator version X.Y.Z\"");
    assert_contains(&message, "hello, world");
    let not_executable = host.path("OVMF.fd");
    assert_contains(&host.error(&not_executable, &none_tcg()), "cannot run");
}

#[test]
fn preflight_names_the_qemu_version_found_and_needed() {
    let host = FakeHost::new();
    host.pci_device("0000:3b:00.0", Some("vfio-pci"));
    let cases = [
        (
            "10.0.2",
            tdx(),
            "is QEMU 10.0.2, but TDX needs QEMU 10.1.0 or later",
        ),
        (
            "9.0.0",
            snp(),
            "is QEMU 9.0.0, but SEV-SNP needs QEMU 9.1.0 or later",
        ),
        (
            "9.2.0",
            with_gpus(snp(), &["0000:3b:00.0"]),
            "is QEMU 9.2.0, but GPU passthrough to an SEV-SNP guest needs QEMU 10.1.0 or later",
        ),
        (
            "7.2.22",
            with_gpus(none_tcg(), &["0000:3b:00.0"]),
            "is QEMU 7.2.22, but GPU passthrough (iommufd) needs QEMU 9.0.0 or later",
        ),
    ];
    for (version, cfg, expected) in cases {
        let qemu = host.qemu(version);
        let message = host.error(&qemu, &cfg);
        assert_contains(&message, expected);
        assert_contains(&message, &qemu.display().to_string());
    }
}

#[test]
fn preflight_names_a_missing_image_file_and_how_to_build_it() {
    let qemu_host = FakeHost::new();
    let qemu = qemu_host.qemu("10.1.0");
    for (file, what) in [
        ("OVMF.fd", "firmware"),
        ("vmlinuz", "kernel"),
        ("initrd.img", "initrd"),
    ] {
        let host = FakeHost::new();
        std::fs::remove_file(host.path(file)).unwrap();
        assert_eq!(
            host.error(&qemu, &tdx()),
            format!(
                "the image's {what} {} is missing: build the image with `kokon image build --out DIR` (just image)",
                host.path(file).display()
            )
        );
    }
    // An image with a data disk needs its data.img; one without needs none.
    let host = FakeHost::new();
    let with_disk = VmConfig {
        data_disk: Some(host.path("data.img")),
        ..tdx()
    };
    assert_eq!(
        host.error(&qemu, &with_disk),
        format!(
            "the image's data disk {} is missing: build the image with `kokon image build --out DIR` (just image)",
            host.path("data.img").display()
        )
    );
    std::fs::write(host.path("data.img"), b"x").unwrap();
    host.preflight(&qemu, &with_disk).unwrap();
}

#[test]
fn preflight_says_when_kvm_is_unusable() {
    let host = FakeHost::new();
    let qemu = host.qemu("10.1.0");
    for kvm in [host.path("no-kvm"), host.path("sys")] {
        let paths = HostPaths {
            kvm: kvm.clone(),
            ..host.paths()
        };
        let none = preflight_with(&qemu, &host.image(none_kvm_vhost_user()), &paths)
            .unwrap_err()
            .to_string();
        assert_contains(
            &none,
            &format!("{} cannot be opened read-write", kvm.display()),
        );
        assert_contains(&none, "run the VM under TCG instead");
        let tdx = preflight_with(&qemu, &host.image(tdx()), &paths)
            .unwrap_err()
            .to_string();
        assert_contains(&tdx, "TDX and SEV-SNP need KVM");
        // TCG does not need it.
        preflight_with(&qemu, &host.image(none_tcg()), &paths).unwrap();
    }
    let host_cpu_under_tcg = VmConfig {
        cpu_model: "host".into(),
        ..none_tcg()
    };
    assert_contains(
        &host.error(&qemu, &host_cpu_under_tcg),
        "CPU model `host` needs KVM",
    );
}

#[test]
fn preflight_names_gpus_not_bound_to_vfio_and_the_fix() {
    let host = FakeHost::new();
    let qemu = host.qemu("10.1.0");
    host.pci_device("0000:3b:00.0", Some("nvidia"));
    host.pci_device("0000:5e:00.0", None);
    host.pci_device("0000:86:00.0", Some("vfio-pci"));

    let message = host.error(&qemu, &with_gpus(tdx(), &["0000:86:00.0", "0000:3b:00.0"]));
    assert_contains(
        &message,
        "GPU 0000:3b:00.0 is bound to nvidia, not vfio-pci: bind it with `driverctl set-override 0000:3b:00.0 vfio-pci`",
    );
    assert_contains(
        &message,
        "echo 0000:3b:00.0 > /sys/bus/pci/devices/0000:3b:00.0/driver/unbind",
    );
    assert_contains(
        &host.error(&qemu, &with_gpus(tdx(), &["0000:5e:00.0"])),
        "GPU 0000:5e:00.0 is bound to no driver, not vfio-pci",
    );
    let message = host.error(&qemu, &with_gpus(tdx(), &["0000:af:00.0"]));
    assert_contains(&message, "GPU 0000:af:00.0 is not present");
    assert_contains(&message, "lspci -D");
    for bad in ["3b:00.0", "0000:86:00.0,rombar=1", "../../../../kvm"] {
        assert_contains(
            &host.error(&qemu, &with_gpus(tdx(), &[bad])),
            &format!("GPU address {bad:?} is not a PCI address"),
        );
    }
}

/// An executable shell script `name` in `dir` running `body`; `--ready`
/// as its first argument makes it exit at once (so that the test can wait
/// out another thread's fork holding it open for writing: ETXTBSY).
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\n[ \"$1\" = --ready ] && exit 0\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = Command::new(&path).arg("--ready").status() {
        assert!(
            e.raw_os_error() == Some(26) && Instant::now() < deadline,
            "{e}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    path
}

/// A development VM takes KVM only when KVM runs the firmware: a QEMU that
/// reports a KVM internal error (and, as QEMU does, stays up with the guest
/// paused), one that fails and exits, one that exits quietly, a missing
/// QEMU and an unusable /dev/kvm each mean TCG, with QEMU's words or the
/// cause as the reason; a QEMU still running quietly at the deadline means
/// KVM.
#[test]
fn development_vms_take_kvm_only_when_it_runs_the_firmware() {
    use kokon_host::qemu::{development_accel, kvm_runs_firmware, KVM_DEVELOPMENT_CPU};
    let dir = tempfile::tempdir().unwrap();
    let firmware = dir.path().join("OVMF.fd");
    std::fs::write(&firmware, [0u8; 16]).unwrap();
    let probe = |qemu: &Path| {
        kvm_runs_firmware(
            qemu,
            &firmware,
            KVM_DEVELOPMENT_CPU,
            Duration::from_millis(500),
        )
    };

    let runs = script(dir.path(), "runs", "exec sleep 30");
    probe(&runs).expect("a QEMU still running quietly: KVM works");

    let paused = script(
        dir.path(),
        "paused",
        "echo 'KVM internal error. Suberror: 1' >&2\necho 'extra data[0]: 0x1' >&2\nexec sleep 30",
    );
    let err = probe(&paused).expect_err("internal error");
    assert!(err.contains("KVM internal error. Suberror: 1"), "{err}");

    let msr = script(
        dir.path(),
        "msr",
        "echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x2000000' >&2\nexit 1",
    );
    let err = probe(&msr).expect_err("MSR");
    assert!(err.contains("failed to set MSR 0x10a"), "{err}");

    let quits = script(dir.path(), "quits", "exit 0");
    let err = probe(&quits).expect_err("exited");
    assert!(err.starts_with("QEMU exited (exit status: 0)"), "{err}");

    // The probe runs QEMU with the firmware and KVM, nothing else.
    let args = dir.path().join("args");
    let recorder = script(
        dir.path(),
        "recorder",
        &format!("echo \"$@\" > {}\nexec sleep 30", args.display()),
    );
    probe(&recorder).expect("runs");
    let seen = std::fs::read_to_string(&args).unwrap();
    assert!(
        seen.starts_with("-accel kvm -machine q35 -cpu host,-arch-capabilities")
            && seen
                .trim_end()
                .ends_with(&format!("-bios {}", firmware.display())),
        "{seen}"
    );

    let err = probe(&dir.path().join("no-qemu")).expect_err("missing QEMU");
    assert!(err.starts_with("starting "), "{err}");

    let (accel, reason) = development_accel(&runs, &dir.path().join("no-kvm"), &firmware);
    assert_eq!(accel, Accel::Tcg);
    let reason = reason.unwrap();
    assert!(reason.contains("no-kvm: No such file"), "{reason}");
    // /dev/null opens read-write, so it passes as a KVM device here, and
    // the QEMU decides.
    assert_eq!(
        development_accel(&paused, Path::new("/dev/null"), &firmware).0,
        Accel::Tcg
    );
    assert_eq!(
        development_accel(&runs, Path::new("/dev/null"), &firmware),
        (Accel::Kvm, None)
    );
}
