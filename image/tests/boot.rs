#![allow(clippy::expect_used, clippy::indexing_slicing, missing_docs)]
//! Boots a built image in QEMU (direct kernel boot with the image's own
//! OVMF, as the worker VM starts; under emulation, TCG, which works on any
//! host: a nested KVM may refuse QEMU's vCPU) with this test binary as `/init`, and checks from the serial
//! console that the kernel unpacked the initramfs, gave init a console, and
//! that the image's loader and libraries run a Rust binary as PID 1 which
//! loads every listed module in order and finds configfs-tsm; then that
//! the data disk mounts through the init's dm-verity set-up with each file
//! as the manifest records it, and, booted again with one byte of the disk
//! altered, that the altered file fails to read while the rest still reads.
//!
//! The guest side is [`guest_side`], an ignored test that the kernel runs as
//! PID 1 (`/init guest_side --exact --ignored`, the arguments after `--` on
//! the command line); anywhere else it refuses to run.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kokon_image::manifest::GpuRecord;
use kokon_image::{build, ImageError, ImageSpec, VmShape};

/// What the guest prints before each line the host reads.
const MARK: &str = "kokon-probe:";

/// The guest side: runs only as the guest's init (PID 1), where it loads
/// kernel modules and mounts file systems.
#[test]
#[ignore = "the VM's init in the_image_boots_loads_its_modules_and_reads_its_data_disk_only_as_measured; never on a host"]
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
    mount("proc", "/proc");
    mount("devtmpfs", "/dev");
    match kokon_guest::nvidia::device_nodes(Path::new("/")) {
        Ok(nodes) => println!("{MARK} nvidia device nodes {}", nodes.len()),
        Err(e) => println!("{MARK} nvidia device nodes error {e:#}"),
    }
    match kokon_guest::data_disk(Path::new("/")) {
        Ok(Some(verity)) => match kokon_guest::mount_data_disk(&verity) {
            Ok(()) => {
                println!("{MARK} data disk mounted");
                print_data_files(Path::new("/data"));
                print_loader_check();
                print_nvml_init();
            }
            Err(e) => println!("{MARK} data disk error {e:#}"),
        },
        Ok(None) => println!("{MARK} no data disk"),
        Err(e) => println!("{MARK} data disk error {e:#}"),
    }
    println!("{MARK} done");
    // Returning ends init: the kernel panics, panic=-1 reboots, and
    // QEMU's -no-reboot exits.
}

/// The libraries whose dependencies the guest's own loader resolves, as the
/// enclave's would: ONNX Runtime and its CUDA provider on the data disk
/// (with the image's library path), and the driver's libraries.
const LOADER_CHECKED: [&str; 5] = [
    "/data/gpu/lib/libonnxruntime.so",
    "/data/gpu/lib/libonnxruntime_providers_cuda.so",
    "/data/gpu/lib/libcudnn_engines_precompiled.so.9",
    "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
    "/usr/lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.550.163.01",
];

/// Prints `loader PATH ok`, or `loader PATH missing NAMES`, for each of
/// [`LOADER_CHECKED`]: `ld.so --list` with the enclave's library path.
fn print_loader_check() {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read("/etc/kokon/enclave.json").expect("enclave.json"))
            .expect("json");
    let library_path = config["library_path"].as_str().unwrap_or("");
    println!("{MARK} library path {library_path}");
    for library in LOADER_CHECKED {
        let out = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
            .arg("--list")
            .arg(library)
            .env("LD_LIBRARY_PATH", library_path)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let missing: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("not found"))
                    .filter_map(|l| l.split_whitespace().next())
                    .collect();
                if missing.is_empty() {
                    println!("{MARK} loader {library} ok");
                } else {
                    println!("{MARK} loader {library} missing {}", missing.join(","));
                }
            }
            Ok(out) => println!(
                "{MARK} loader {library} failed {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => println!("{MARK} loader {library} failed {e}"),
        }
    }
}

/// NVML's `NVML_ERROR_DRIVER_NOT_LOADED`: what `nvmlInit_v2` returns when
/// the driver has no GPU to drive.
const NVML_ERROR_DRIVER_NOT_LOADED: u32 = 9;

/// Prints `nvml init CODE` (or `nvml error ...`): the image's
/// `libnvidia-ml.so.1`, loaded and initialised as the enclave's NVML does.
#[allow(unsafe_code)] // dlopen and a C call: NVML's interface.
fn print_nvml_init() {
    // SAFETY: loading NVIDIA's library runs only its initialisers, as the
    // enclave's nvml-wrapper does.
    let library = match unsafe { libloading::Library::new("libnvidia-ml.so.1") } {
        Ok(library) => library,
        Err(e) => return println!("{MARK} nvml error {e}"),
    };
    // SAFETY: nvmlInit_v2 takes no arguments and returns nvmlReturn_t.
    let init = match unsafe { library.get::<unsafe extern "C" fn() -> u32>(b"nvmlInit_v2") } {
        Ok(init) => init,
        Err(e) => return println!("{MARK} nvml error {e}"),
    };
    // SAFETY: the symbol has that signature (nvml.h).
    let code = unsafe { init() };
    println!("{MARK} nvml init {code}");
}

/// The largest file the guest hashes: under emulation the GPU runtime's
/// larger libraries (hundreds of MB each) would take minutes; of those the
/// guest reports the size.
const HASHED_UP_TO: u64 = 64 << 20;

/// Prints `data PATH SHA256` (or `data PATH error ...`, or `data PATH size
/// N` above [`HASHED_UP_TO`]) for each file under `dir`, in name order.
fn print_data_files(dir: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            print_data_files(&path);
            continue;
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > HASHED_UP_TO {
            println!("{MARK} data {} size {size}", path.display());
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => println!(
                "{MARK} data {} {}",
                path.display(),
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
            ),
            Err(e) => println!("{MARK} data {} error {e}", path.display()),
        }
    }
}

/// The checks of a GPU image's boot: the driver's modules, libraries and
/// NVML as far as a VM without a GPU lets them run.
fn gpu_checks(gpu: &GpuRecord, lines: &[String], tail: &str, scratch: &Path) {
    // The driver probed and found no GPU: its symbols had all resolved
    // against the pinned kernel (a module built for another kernel fails
    // before it runs).
    let console = std::fs::read_to_string(scratch.join("console-data.log")).expect("console");
    assert!(
        console.contains("NVRM: No NVIDIA GPU found"),
        "nvidia.ko did not run; {tail}"
    );
    // Every symbol nvidia_uvm could not resolve is one the driver exports
    // (its RM interface, nvUvmInterface*, and nvidia_*), none the kernel's.
    let unknown: Vec<&str> = console
        .lines()
        .filter_map(|l| l.split_once("nvidia_uvm: Unknown symbol ").map(|(_, r)| r))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    assert!(
        !unknown.is_empty(),
        "nvidia_uvm logged no unknown symbols; {tail}"
    );
    let foreign: Vec<&&str> = unknown
        .iter()
        .filter(|s| !s.starts_with("nvUvmInterface") && !s.starts_with("nvidia_"))
        .collect();
    assert!(
        foreign.is_empty(),
        "nvidia_uvm lacks kernel symbols {foreign:?}; {tail}"
    );
    // The guest's loader finds everything the enclave's ONNX Runtime, its
    // CUDA provider and the driver's libraries need.
    assert!(
        lines.iter().any(|l| l == "library path /data/gpu/lib"),
        "{tail}"
    );
    for library in LOADER_CHECKED {
        let ok = format!("loader {library} ok");
        assert!(
            lines.contains(&ok),
            "{:?}; {tail}",
            lines
                .iter()
                .find(|l| l.starts_with(&format!("loader {library} ")))
        );
    }
    // NVML, from the image, loads and says what the enclave would be told:
    // no driver (there is no GPU).
    assert!(
        lines.contains(&format!("nvml init {NVML_ERROR_DRIVER_NOT_LOADED}")),
        "{:?}; {tail}",
        lines.iter().find(|l| l.starts_with("nvml "))
    );
    assert!(
        lines.iter().any(|l| l == "nvidia device nodes 0"),
        "no GPU bound, so no device nodes; {tail}"
    );
    assert_eq!(
        gpu.modules
            .iter()
            .map(|m| m.path.as_str())
            .collect::<Vec<_>>(),
        ["/lib/modules/nvidia.ko", "/lib/modules/nvidia_uvm.ko"]
    );
}

/// The data disk's files: a small one, and one of many distinct 4 KiB
/// blocks (block `i` is `i` as 8 bytes, repeated), which the tampering
/// test finds on the disk.
fn data_files(scratch: &Path) -> Vec<(String, PathBuf)> {
    let small = scratch.join("hello.txt");
    std::fs::write(&small, b"hello from the data disk\n").expect("write");
    let big = scratch.join("blocks.bin");
    let blocks: Vec<u8> = (0..PATTERN_BLOCKS)
        .flat_map(|i| std::iter::repeat_n(i, 512).flat_map(u64::to_le_bytes))
        .collect();
    std::fs::write(&big, blocks).expect("write");
    vec![
        ("notes/hello.txt".into(), small),
        ("a-models/blocks.bin".into(), big),
    ]
}

/// The blocks of `a-models/blocks.bin` (first on the disk, before the GPU
/// runtime's gigabytes, so the tampering test finds it quickly): 3 MiB, so that the tree has two levels.
const PATTERN_BLOCKS: u64 = 768;

/// Boots the image in `out` with `disk` as its data disk; returns the
/// console lines after [`MARK`] and the console's tail, for messages.
fn boot(out: &Path, disk: &Path, append: &str, scratch: &Path) -> (Vec<String>, String) {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        panic!("{qemu} is not installed (Debian: apt-get install qemu-system-x86); this test boots the image");
    }
    let console = scratch.join(format!(
        "console-{}.log",
        disk.file_stem().and_then(|s| s.to_str()).unwrap_or("disk")
    ));
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
        .arg(append)
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=data0,format=raw,readonly=on",
            disk.display()
        ))
        .args(["-device", "virtio-blk-pci,drive=data0"])
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
    let tail = format!("console tail:\n{tail}\nstderr: {stderr}");
    assert!(
        status.is_some(),
        "QEMU did not stop within {limit:?}; {tail}"
    );
    let lines = log
        .lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .split_once(MARK)
                .map(|(_, r)| r.trim().to_owned())
        })
        .collect();
    (lines, tail)
}

#[test]
fn the_image_boots_loads_its_modules_and_reads_its_data_disk_only_as_measured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = ImageSpec {
        lock: crate_dir.join("debian.lock"),
        cache: crate_dir.join("../.cache/image"),
        init: exe.clone(),
        enclave: exe,
        files: Vec::new(),
        data_files: data_files(dir.path()),
        enclave_args: Vec::new(),
        cmdline: "console=ttyS0 panic=-1 rdinit=/init".into(),
        vm: VmShape {
            vcpus: 1,
            memory_mib: 1024,
            snp_vcpu_type: "EPYC-v4".into(),
        },
        snp_firmware: None,
        // A GPU image: the NVIDIA modules it compiles must load into the
        // pinned kernel as far as a VM without a GPU lets them.
        gpu: true,
    };
    let out = dir.path().join("out");
    // A GPU image takes about 6 GB (its wheels, build root and data disk),
    // which the build checks before it downloads or writes them: where the
    // disk lacks them, the CPU image boots instead, and the test says so.
    let manifest = match build(&spec, &out) {
        Ok(manifest) => manifest,
        Err(e @ ImageError::NoSpace { .. }) => {
            eprintln!(
                "SKIPPED the GPU half of this test (the NVIDIA modules, libraries and NVML \
                 in the guest): {e}. Booting the CPU image instead."
            );
            build(&ImageSpec { gpu: false, ..spec }, &out)
                .unwrap_or_else(|e| panic!("building the CPU image failed: {e}"))
        }
        Err(e) => {
            panic!("building the image failed (the first build needs deb.debian.org and PyPI): {e}")
        }
    };
    let append = format!(
        "{} -- guest_side --exact --ignored --nocapture --test-threads=1",
        manifest.cmdline
    );
    let disk = out.join("data.img");
    let (lines, tail) = boot(&out, &disk, &append, dir.path());
    assert!(lines.iter().any(|l| l == "pid 1"), "init never ran; {tail}");
    for module in &manifest.modules {
        let ok = format!("module {module} ok");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("module {module} ")));
        // Outside a TEE the TDX and SEV guest drivers find no device
        // (ENODEV), which proves their symbols resolved: a module loaded
        // before its dependencies fails with ENOENT instead.
        // So does NVIDIA's driver without a GPU; its unified-memory module
        // then lacks the symbols only the driver exports (ENOENT).
        let refused = match module.as_str() {
            "tdx_guest" | "sev_guest" | "nvidia" => Some("ENODEV"),
            "nvidia_uvm" => Some("ENOENT"),
            _ => None,
        };
        let fine = line == Some(&ok)
            || refused.is_some_and(|errno| line == Some(&format!("module {module} {errno}")));
        assert!(fine, "{module}: {line:?}; {tail}");
    }
    if let Some(gpu) = &manifest.gpu {
        gpu_checks(gpu, &lines, &tail, dir.path());
    }
    assert!(
        lines.iter().any(|l| l == "configfs-tsm ok"),
        "configfs-tsm missing; {tail}"
    );
    // The data disk, through dm-verity: each file as the manifest records it.
    let record = manifest
        .data_disk
        .as_ref()
        .expect("the manifest records the data disk");
    assert!(
        lines.iter().any(|l| l == "data disk mounted"),
        "the data disk was not mounted; {tail}"
    );
    let expected: Vec<String> = record
        .files
        .iter()
        .map(|f| match f.size > HASHED_UP_TO {
            false => format!("data {} {}", f.path, f.sha256),
            true => format!("data {} size {}", f.path, f.size),
        })
        .collect();
    let found: Vec<&String> = lines.iter().filter(|l| l.starts_with("data /")).collect();
    assert_eq!(found, expected.iter().collect::<Vec<_>>(), "{tail}");
    assert!(lines.iter().any(|l| l == "done"), "{tail}");

    // The host alters one byte of one block of the big file: that file
    // fails to read (dm-verity's I/O error), the other still reads.
    // blocks.bin is the disk's first file, within its first 8 MiB.
    let mut head = Vec::new();
    std::fs::File::open(&disk)
        .expect("open data.img")
        .take(8 << 20)
        .read_to_end(&mut head)
        .expect("read data.img");
    let block_100: Vec<u8> = std::iter::repeat_n(100u64, 512)
        .flat_map(u64::to_le_bytes)
        .collect();
    let at = head
        .windows(block_100.len())
        .position(|w| w == block_100.as_slice())
        .expect("block 100 of blocks.bin is on the disk");
    // In place: a GPU image's disk is 3.3 GB, too much to copy.
    let tampered = disk;
    {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&tampered)
            .expect("open data.img");
        let offset = u64::try_from(at + 7).expect("offset");
        file.seek(SeekFrom::Start(offset)).expect("seek");
        file.write_all(&[head[at + 7] ^ 0x01]).expect("write");
    }
    let (lines, tail) = boot(&out, &tampered, &append, dir.path());
    assert!(
        lines.iter().any(|l| l == "data disk mounted"),
        "the file system's own blocks are intact, so it mounts; {tail}"
    );
    let small = &record
        .files
        .iter()
        .find(|f| f.path.ends_with("hello.txt"))
        .expect("hello.txt");
    assert!(
        lines.contains(&format!("data {} {}", small.path, small.sha256)),
        "the untouched file still reads; {tail}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("data /data/a-models/blocks.bin error")
                && l.contains("Input/output error")),
        "the altered file must fail to read; {tail}"
    );
    assert!(lines.iter().any(|l| l == "done"), "{tail}");
}
