#![allow(clippy::expect_used, clippy::indexing_slicing, missing_docs)]
//! Building the guest image from the committed lock: the same spec gives the
//! same bytes, the initramfs holds what the guest needs (read back with a
//! cpio reader written here, and its loader run), and every check trips on
//! the input it guards against.
//!
//! The first run downloads the pinned packages (deb.debian.org) and the
//! wheel (PyPI) into the workspace's `.cache/image`; later runs are offline
//! except the tests that must ask the archive (wrong digest, unserved
//! version, refresh).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kokon_image::{build, refresh_lock, ImageError, ImageSpec, Lock, Manifest, VmShape};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    crate_dir().join("../.cache/image")
}

fn committed_lock() -> PathBuf {
    crate_dir().join("debian.lock")
}

/// The model file every build carries.
const MODEL: &[u8] = b"not really ONNX, just bytes to carry\n";
/// The file every build's data disk carries.
const WEIGHTS: &[u8] = b"large files go on the data disk\n";

/// A spec over `lock`: this test binary as both init and enclave (a Rust
/// ELF like theirs), and a small model file.
fn spec(lock: PathBuf, scratch: &Path) -> ImageSpec {
    let exe = std::env::current_exe().expect("current_exe");
    let model = scratch.join("model.onnx");
    std::fs::write(&model, MODEL).expect("write model");
    let weights = scratch.join("weights.bin");
    std::fs::write(&weights, WEIGHTS).expect("write weights");
    ImageSpec {
        lock,
        cache: cache(),
        init: exe.clone(),
        enclave: exe,
        files: vec![("models/test/model.onnx".into(), model)],
        data_files: vec![("big/weights.bin".into(), weights)],
        enclave_args: vec!["--vsock-port".into(), "5000".into()],
        cmdline: "console=ttyS0 panic=-1 rdinit=/init".into(),
        vm: VmShape {
            vcpus: 2,
            memory_mib: 2048,
            snp_vcpu_type: "EPYC-v4".into(),
        },
        snp_firmware: None,
        gpu: false,
    }
}

fn must_build(spec: &ImageSpec, out: &Path) -> Manifest {
    build(spec, out).unwrap_or_else(|e| {
        panic!("building the image failed (the first build needs deb.debian.org and PyPI): {e}")
    })
}

/// One image built from the committed lock, shared by the tests that only
/// read it.
fn image() -> &'static (tempfile::TempDir, Manifest) {
    static IMAGE: OnceLock<(tempfile::TempDir, Manifest)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let manifest = must_build(&spec(committed_lock(), dir.path()), &out);
        (dir, manifest)
    })
}

fn out_dir() -> PathBuf {
    image().0.path().join("out")
}

const ARTIFACTS: [&str; 7] = [
    "OVMF.fd",
    "OVMF.amdsev.fd",
    "vmlinuz",
    "initrd.img",
    "cmdline",
    "data.img",
    "manifest.json",
];

#[test]
fn the_same_spec_builds_the_same_bytes() {
    let (_, first) = image();
    let dir = tempfile::tempdir().expect("tempdir");
    // The second output directory already holds a stale initrd and a file
    // of someone else's: the first is replaced, the second left alone.
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("initrd.img"), b"stale").expect("write");
    std::fs::write(out.join("notes.txt"), b"mine").expect("write");
    // The second build has its own cache, holding only the pinned files, and
    // a lock whose archive cannot be reached: it must need no network, and
    // no path of the first build's may reach its bytes.
    let own_cache = dir.path().join("cache");
    for sub in ["debs", "wheels"] {
        std::fs::create_dir_all(own_cache.join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(cache().join(sub)).expect("list cache") {
            let entry = entry.expect("entry");
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with('.') {
                std::fs::copy(entry.path(), own_cache.join(sub).join(name)).expect("copy");
            }
        }
    }
    let offline_lock = edited_lock(dir.path(), |lock| {
        for source in &mut lock.source {
            source.uri = "http://offline.invalid/debian".into();
        }
    });
    let mut offline = spec(offline_lock, dir.path());
    offline.cache = own_cache;
    let second = build(&offline, &out)
        .unwrap_or_else(|e| panic!("the cached build went to the network: {e}"));
    assert_eq!(&second, first);
    for name in ARTIFACTS {
        let a = std::fs::read(out_dir().join(name)).expect("first");
        let b = std::fs::read(out.join(name)).expect("second");
        assert!(a == b, "{name} differs between two builds of the same spec");
    }
    assert_eq!(std::fs::read(out.join("notes.txt")).expect("kept"), b"mine");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    println!("artifacts of one build:");
    for artifact in first.artifacts.all() {
        println!(
            "  {} {} ({} bytes)",
            artifact.sha256, artifact.file, artifact.size
        );
    }
}

#[test]
fn the_manifest_describes_the_outputs() {
    let (_, manifest) = image();
    let out = out_dir();
    assert_eq!(&Manifest::load(&out).expect("load"), manifest);
    manifest
        .verify(&out)
        .expect("the outputs are the manifest's");
    let sha = |name: &str| {
        let (hex, _) = kokon_image::digest::file_sha256(&out.join(name)).expect("hash");
        hex
    };
    assert_eq!(manifest.artifacts.ovmf.sha256, sha("OVMF.fd"));
    assert_eq!(manifest.artifacts.snp_ovmf.sha256, sha("OVMF.amdsev.fd"));
    assert_eq!(manifest.artifacts.kernel.sha256, sha("vmlinuz"));
    assert_eq!(manifest.artifacts.initrd.sha256, sha("initrd.img"));
    // The spec's command line and the data disk's dm-verity parameters, no newline.
    let data = manifest.data_disk.as_ref().expect("a data disk");
    assert_eq!(
        std::fs::read_to_string(out.join("cmdline")).expect("cmdline"),
        format!(
            "console=ttyS0 panic=-1 rdinit=/init {}",
            data.verity().expect("parameters").param()
        ),
    );
    assert_eq!(
        manifest.cmdline,
        format!(
            "console=ttyS0 panic=-1 rdinit=/init {}",
            data.verity().expect("parameters").param()
        )
    );
    assert_eq!(
        manifest.artifacts.data.as_ref().map(|a| a.sha256.clone()),
        Some(sha("data.img"))
    );
    assert_eq!(
        data.files,
        vec![kokon_image::manifest::ImageFile {
            path: "/data/big/weights.bin".into(),
            sha256: kokon_image::digest::sha256_hex(WEIGHTS),
            size: WEIGHTS.len() as u64,
        }]
    );
    let lock = Lock::load(&committed_lock()).expect("lock");
    let kernel = lock
        .package
        .iter()
        .find(|p| p.name.starts_with("linux-image-"))
        .expect("a kernel pin");
    assert_eq!(
        format!("linux-image-{}", manifest.kernel_release),
        kernel.name,
        "the release is the pinned kernel's"
    );
    assert_eq!(manifest.packages.len(), lock.package.len());
    assert_eq!(manifest.wheel.sha256, lock.wheel.sha256);
    assert_eq!(manifest.vm.snp_vcpu_type, "EPYC-v4");
    let exe = std::fs::read(std::env::current_exe().expect("exe")).expect("read exe");
    assert_eq!(manifest.init.sha256, kokon_image::digest::sha256_hex(&exe));
    assert_eq!(manifest.enclave.sha256, manifest.init.sha256);
    assert_eq!(manifest.files.len(), 1);
    assert_eq!(manifest.files[0].path, "/models/test/model.onnx");
    assert_eq!(
        manifest.files[0].sha256,
        kokon_image::digest::sha256_hex(MODEL)
    );
    // Both firmwares are OVMF builds with the SEV and TDX metadata (their
    // footer tables end 32 bytes before the end with this GUID).
    let footer_guid = [
        0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08,
        0x2d,
    ];
    for name in ["OVMF.fd", "OVMF.amdsev.fd"] {
        let ovmf = std::fs::read(out.join(name)).expect("ovmf");
        assert_eq!(
            ovmf.get(ovmf.len() - 48..ovmf.len() - 32),
            Some(&footer_guid[..]),
            "{name}"
        );
    }
    assert_eq!(
        manifest.snp_firmware_source,
        "/usr/share/ovmf/OVMF.amdsev.fd of the pinned ovmf-amdsev package"
    );

    // A changed artifact no longer passes.
    let copy = tempfile::tempdir().expect("tempdir");
    for name in ARTIFACTS {
        std::fs::copy(out.join(name), copy.path().join(name)).expect("copy");
    }
    std::fs::write(copy.path().join("cmdline"), "console=ttyS0 init=/bin/sh").expect("tamper");
    let err = manifest.verify(copy.path()).expect_err("tampered");
    assert!(
        matches!(&err, ImageError::Digest { expected, .. } if expected.starts_with(&manifest.artifacts.cmdline.sha256)),
        "{err}"
    );
}

/// One cpio entry as read back.
#[derive(Debug)]
struct Entry {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

/// Reads a newc archive (the format the kernel unpacks) strictly: every
/// header's magic, the 4-byte alignment, the trailer.
fn read_cpio(bytes: &[u8]) -> Vec<(String, Entry)> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    let align = |n: usize| (n + 3) & !3;
    loop {
        let header = &bytes[at..at + 110];
        assert_eq!(&header[..6], b"070701", "magic at {at}");
        let field = |i: usize| {
            let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).expect("ascii");
            u32::from_str_radix(hex, 16).expect("hex")
        };
        let namesize = field(11) as usize;
        let name_bytes = &bytes[at + 110..at + 110 + namesize];
        assert_eq!(name_bytes.last(), Some(&0), "NUL-terminated name");
        let name = std::str::from_utf8(&name_bytes[..namesize - 1])
            .expect("utf-8")
            .to_owned();
        let data_at = align(at + 110 + namesize);
        let size = field(6) as usize;
        let data = bytes[data_at..data_at + size].to_vec();
        at = align(data_at + size);
        if name == "TRAILER!!!" {
            assert_eq!(at, bytes.len(), "nothing after the trailer");
            return entries;
        }
        entries.push((
            name,
            Entry {
                ino: field(0),
                mode: field(1),
                uid: field(2),
                gid: field(3),
                mtime: field(5),
                rdev: (field(9), field(10)),
                data,
            },
        ));
    }
}

fn initrd_entries() -> &'static BTreeMap<String, Entry> {
    static ENTRIES: OnceLock<BTreeMap<String, Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| read_initrd(&out_dir()))
}

/// The entries of `out`'s initrd, checked for order, inodes and metadata.
fn read_initrd(out: &Path) -> BTreeMap<String, Entry> {
    {
        let gz = std::fs::read(out.join("initrd.img")).expect("initrd");
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut cpio)
            .expect("a valid gzip stream");
        let entries = read_cpio(&cpio);
        let names: Vec<&String> = entries.iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "entries sorted by path, each once");
        for (i, (name, entry)) in entries.iter().enumerate() {
            assert_eq!(entry.ino as usize, i + 1, "{name}: sequential inodes");
            assert_eq!((entry.mtime, entry.uid, entry.gid), (0, 0, 0), "{name}");
            if let Some((parent, _)) = name.rsplit_once('/') {
                let listed_before = entries[..i]
                    .iter()
                    .any(|(n, e)| n == parent && e.mode & 0o170000 == 0o040000);
                assert!(listed_before, "{name}: its directory {parent} comes first");
            }
        }
        entries.into_iter().collect()
    }
}

fn file<'a>(entries: &'a BTreeMap<String, Entry>, path: &str) -> &'a Entry {
    entries
        .get(path)
        .unwrap_or_else(|| panic!("{path} is not in the initrd"))
}

#[test]
fn the_initrd_holds_what_the_guest_needs() {
    let entries = initrd_entries();
    let exe = std::fs::read(std::env::current_exe().expect("exe")).expect("read exe");
    for (path, mode) in [
        ("init", 0o100755),
        ("usr/bin/kokon-enclave", 0o100755),
        ("lib64/ld-linux-x86-64.so.2", 0o100755),
        ("usr/lib/x86_64-linux-gnu/libc.so.6", 0o100644),
        ("usr/lib/x86_64-linux-gnu/libgcc_s.so.1", 0o100644),
        ("usr/lib/x86_64-linux-gnu/libstdc++.so.6", 0o100644),
        ("usr/lib/x86_64-linux-gnu/libm.so.6", 0o100644),
        ("usr/lib/kokon/libonnxruntime.so", 0o100644),
        ("etc/kokon/modules", 0o100644),
        ("etc/kokon/enclave.json", 0o100644),
        ("models/test/model.onnx", 0o100644),
    ] {
        assert_eq!(
            file(entries, path).mode,
            mode,
            "{path}: mode {:o}",
            file(entries, path).mode
        );
    }
    assert_eq!(file(entries, "init").data, exe);
    assert_eq!(file(entries, "usr/bin/kokon-enclave").data, exe);
    assert_eq!(file(entries, "models/test/model.onnx").data, MODEL);
    assert!(file(entries, "lib64/ld-linux-x86-64.so.2")
        .data
        .starts_with(b"\x7fELF"));
    let json: serde_json::Value =
        serde_json::from_slice(&file(entries, "etc/kokon/enclave.json").data).expect("json");
    assert_eq!(json, serde_json::json!({"args": ["--vsock-port", "5000"]}));

    let console = file(entries, "dev/console");
    assert_eq!(
        (console.mode, console.rdev),
        (0o020600, (5, 1)),
        "/dev/console is char 5,1"
    );
    for dir in [
        "proc",
        "sys",
        "sys/kernel/config",
        "dev",
        "run",
        "lib/modules",
    ] {
        assert_eq!(file(entries, dir).mode, 0o040755, "{dir}");
    }
    assert_eq!(file(entries, "tmp").mode, 0o041777);
    for (name, entry) in entries {
        let kind = entry.mode & 0o170000;
        let perm = entry.mode & 0o7777;
        let allowed = match kind {
            0o040000 => [0o755, 0o1777].contains(&perm),
            0o100000 => [0o644, 0o755].contains(&perm),
            0o020000 => name == "dev/console",
            _ => false,
        };
        assert!(allowed, "{name}: mode {:o}", entry.mode);
    }

    // The modules: each listed one is there, a relocatable ELF, and comes
    // after those it needs.
    let list = String::from_utf8(file(entries, "etc/kokon/modules").data.clone()).expect("utf-8");
    let order: Vec<&str> = list.lines().collect();
    for module in &order {
        let ko = &file(entries, &format!("lib/modules/{module}.ko")).data;
        assert_eq!(
            ko.get(..4),
            Some(&b"\x7fELF"[..]),
            "{module} is decompressed"
        );
        assert_eq!(ko.get(16), Some(&1), "{module} is ET_REL");
    }
    let ko_files = entries
        .keys()
        .filter(|k| k.starts_with("lib/modules/") && k.ends_with(".ko"))
        .count();
    assert_eq!(
        ko_files,
        order.len(),
        "every module in lib/modules is listed"
    );
    let pos = |m: &str| {
        order
            .iter()
            .position(|x| *x == m)
            .unwrap_or_else(|| panic!("{m} not in {order:?}"))
    };
    for (before, after) in [
        ("configfs", "tsm"),
        ("tsm", "sev_guest"),
        ("tsm", "tdx_guest"),
        ("vsock", "vmw_vsock_virtio_transport_common"),
        (
            "vmw_vsock_virtio_transport_common",
            "vmw_vsock_virtio_transport",
        ),
        ("dm_mod", "dm_verity"),
    ] {
        assert!(
            pos(before) < pos(after),
            "{before} loads before {after}: {order:?}"
        );
    }
    pos("qemu_fw_cfg");
    pos("virtio_blk");
}

#[test]
fn the_image_loader_runs_the_image_binaries() {
    let entries = initrd_entries();
    let root = tempfile::tempdir().expect("tempdir");
    for (name, entry) in entries {
        let path = root.path().join(name);
        match entry.mode & 0o170000 {
            0o040000 => std::fs::create_dir_all(&path).expect("mkdir"),
            0o100000 => {
                std::fs::write(&path, &entry.data).expect("write");
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(entry.mode & 0o777),
                )
                .expect("chmod");
            }
            _ => {}
        }
    }
    let loader = root.path().join("lib64/ld-linux-x86-64.so.2");
    // With no /etc/ld.so.cache the loader searches its system directories:
    // the libraries' directory must be one of them.
    let help = Command::new(&loader)
        .arg("--help")
        .output()
        .expect("run the image's loader");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("/usr/lib/x86_64-linux-gnu (system search path)"),
        "the image's loader does not search /usr/lib/x86_64-linux-gnu:\n{help}"
    );
    // Every library ONNX Runtime and the binaries need resolves inside the
    // image, and the image's libc runs the (enclave) binary.
    let lib = root.path().join("usr/lib/x86_64-linux-gnu");
    let library_path = format!(
        "{}:{}",
        lib.display(),
        root.path().join("usr/lib/kokon").display()
    );
    for object in ["usr/lib/kokon/libonnxruntime.so", "usr/bin/kokon-enclave"] {
        let out = Command::new(&loader)
            .args(["--inhibit-cache", "--library-path", &library_path, "--list"])
            .arg(root.path().join(object))
            .output()
            .expect("ld.so --list");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{object}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("not found"), "{object}:\n{text}");
        for line in text.lines().filter(|l| l.contains("=>")) {
            assert!(
                line.contains(&*root.path().to_string_lossy()),
                "{object} loads from outside the image: {line}"
            );
        }
    }
    let out = Command::new(&loader)
        .args(["--inhibit-cache", "--library-path", &library_path])
        .arg(root.path().join("usr/bin/kokon-enclave"))
        .args(["--list", "the_image_loader_runs_the_image_binaries"])
        .output()
        .expect("run the enclave binary with the image's libc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("the_image_loader_runs_the_image_binaries: test"));
}

/// A copy of the committed lock, changed by `edit`, in `dir`.
fn edited_lock(dir: &Path, edit: impl FnOnce(&mut Lock)) -> PathBuf {
    let mut lock = Lock::load(&committed_lock()).expect("committed lock");
    edit(&mut lock);
    let path = dir.join("debian.lock");
    lock.save(&path).expect("save");
    path
}

#[test]
fn a_wrong_digest_names_expected_and_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = Lock::load(&committed_lock()).expect("lock");
    let real_ovmf = real
        .package
        .iter()
        .find(|p| p.name == "ovmf")
        .expect("ovmf")
        .sha256
        .clone();
    let bogus = "0".repeat(64);
    let lock = edited_lock(dir.path(), |lock| {
        for p in lock.package.iter_mut().filter(|p| p.name == "ovmf") {
            p.sha256 = bogus.clone();
        }
    });
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("wrong digest");
    let text = err.to_string();
    assert!(
        matches!(&err, ImageError::Digest { expected, found, .. } if *expected == bogus && *found == real_ovmf),
        "{text}"
    );
    assert!(
        text.contains("ovmf=") && text.contains(&bogus) && text.contains(&real_ovmf),
        "{text}"
    );
    assert!(!dir.path().join("out/OVMF.fd").exists(), "nothing written");
}

#[test]
fn a_wheel_other_than_the_pinned_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = Lock::load(&committed_lock()).expect("lock").wheel;
    let bogus = "f".repeat(64);
    let lock = edited_lock(dir.path(), |lock| lock.wheel.sha256 = bogus.clone());
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("wrong digest");
    assert!(
        matches!(&err, ImageError::Digest { what, expected, found, .. }
            if what.contains(&real.filename) && *expected == bogus && *found == real.sha256),
        "{err}"
    );
    let cached = cache().join("wheels").join(&real.filename);
    let (on_disk, _) =
        kokon_image::digest::file_sha256(&cached).expect("the good wheel stays cached");
    assert_eq!(on_disk, real.sha256);

    let other = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_17_x86_64.whl";
    let lock = edited_lock(dir.path(), |lock| lock.wheel.filename = other.into());
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("other file");
    assert!(
        err.to_string().contains(&format!(
            "pip downloaded {} for onnxruntime==1.31.1; the lock pins {other}",
            real.filename
        )),
        "{err}"
    );
    assert!(!cache().join("wheels").join(other).exists());

    let lock = edited_lock(dir.path(), |lock| {
        lock.wheel.library = "onnxruntime/capi/libnothing.so".into()
    });
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("no member");
    assert!(
        err.to_string()
            .contains("no member onnxruntime/capi/libnothing.so"),
        "{err}"
    );
}

#[test]
fn a_missing_keyring_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = edited_lock(dir.path(), |lock| {
        lock.source[0].signed_by = "/nonexistent/debian-archive-keyring.gpg".into();
        // Not cached, so apt is needed.
        for p in lock.package.iter_mut().filter(|p| p.name == "libgcc-s1") {
            p.filename = "pool/main/g/gcc-14/libgcc-s1_uncached_amd64.deb".into();
        }
    });
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("no keyring");
    assert!(
        err.to_string().contains("the keyring /nonexistent/debian-archive-keyring.gpg does not exist (apt-get install debian-archive-keyring)"),
        "{err}"
    );
}

#[test]
fn an_unserved_version_says_to_refresh_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = edited_lock(dir.path(), |lock| {
        for p in lock.package.iter_mut().filter(|p| p.name == "libgcc-s1") {
            p.version = "0.0-nonexistent".into();
            p.filename = "pool/main/g/gcc-14/libgcc-s1_0.0-nonexistent_amd64.deb".into();
        }
    });
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("unserved");
    assert_eq!(
        err.to_string(),
        "libgcc-s1=0.0-nonexistent is no longer served by deb.debian.org; refresh the lock with \
         `kokon image lock` (just image-lock) and commit image/debian.lock"
    );
}

#[test]
fn a_missing_library_is_named_with_its_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = edited_lock(dir.path(), |lock| {
        lock.request.packages.retain(|p| p != "libstdc++6");
        lock.package.retain(|p| p.name != "libstdc++6");
    });
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("no libstdc++");
    assert!(
        matches!(&err, ImageError::MissingLibrary { library, needed_by, .. }
            if library == "libstdc++.so.6" && needed_by == "/usr/lib/kokon/libonnxruntime.so"),
        "{err}"
    );
    assert!(
        err.to_string().contains("/usr/lib/x86_64-linux-gnu"),
        "{err}"
    );
}

#[test]
fn an_unpinned_request_is_refused_before_fetching() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = edited_lock(dir.path(), |lock| {
        lock.request.packages.push("libssl3t64".into())
    });
    let err = build(&spec(lock, dir.path()), &dir.path().join("out")).expect_err("unpinned");
    assert!(
        err.to_string()
            .contains("[\"libssl3t64\"] have no [[package]] pin"),
        "{err}"
    );
}

#[test]
fn a_cache_without_room_for_its_downloads_is_refused_before_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A wheel larger than any disk here: the build must refuse it before
    // it downloads anything into the empty cache.
    let lock = edited_lock(dir.path(), |lock| lock.wheel.size = 1 << 62);
    let mut empty_cache = spec(lock, dir.path());
    empty_cache.cache = dir.path().join("cache");
    let err = build(&empty_cache, &dir.path().join("out"))
        .expect_err("no room")
        .to_string();
    assert!(err.contains("not enough free space"), "{err}");
    assert!(
        err.contains(&format!(
            "the downloads the cache lacks in {}",
            empty_cache.cache.display()
        )),
        "{err}"
    );
    // A GPU image's downloads fit, but not the data disk they will make
    // (estimated from the wheels' sizes before they are downloaded).
    let lock = edited_lock(dir.path(), |lock| {
        if let Some(wheel) = lock.gpu_wheel.first_mut() {
            wheel.size = 1 << 61;
        }
    });
    let mut gpu = ImageSpec {
        gpu: true,
        ..empty_cache.clone()
    };
    gpu.lock = lock;
    let err = build(&gpu, &dir.path().join("out"))
        .expect_err("no room")
        .to_string();
    assert!(err.contains("the data disk, data.img (estimated)"), "{err}");
    assert!(err.contains("the NVIDIA modules' build root"), "{err}");
    for sub in ["debs", "wheels"] {
        let dir = empty_cache.cache.join(sub);
        let entries = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        assert_eq!(entries, 0, "{} holds downloads", dir.display());
    }
}

#[test]
fn bad_spec_paths_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = spec(committed_lock(), dir.path());
    bad.files = vec![("../etc/shadow".into(), dir.path().join("model.onnx"))];
    let err = build(&bad, &dir.path().join("out")).expect_err("dotdot");
    assert!(
        err.to_string()
            .contains("not a plain path inside the image"),
        "{err}"
    );
    let mut clash = spec(committed_lock(), dir.path());
    clash.files = vec![("init".into(), dir.path().join("model.onnx"))];
    let err = build(&clash, &dir.path().join("out")).expect_err("clash");
    assert_eq!(
        err.to_string(),
        "image layout: /init is put into the image twice"
    );
    let mut bad_data = spec(committed_lock(), dir.path());
    bad_data.data_files = vec![("big/../../x".into(), dir.path().join("weights.bin"))];
    let err = build(&bad_data, &dir.path().join("out")).expect_err("dotdot on the disk");
    assert!(
        err.to_string().starts_with("image layout: the data disk: "),
        "{err}"
    );
    assert!(err.to_string().contains("big/../../x"), "{err}");
    let mut not_elf = spec(committed_lock(), dir.path());
    not_elf.enclave = dir.path().join("model.onnx");
    let err = build(&not_elf, &dir.path().join("out")).expect_err("not ELF");
    assert!(
        err.to_string()
            .starts_with("ELF /usr/bin/kokon-enclave: not a readable ELF file"),
        "{err}"
    );
}

#[test]
fn a_refreshed_lock_builds() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No lock yet: the refresh starts from the defaults.
    let path = dir.path().join("debian.lock");
    refresh_lock(&path, &cache())
        .unwrap_or_else(|e| panic!("refresh (needs deb.debian.org and PyPI): {e}"));
    let refreshed = Lock::load(&path).expect("a complete lock");
    let defaults = Lock::unpinned_default();
    assert_eq!(refreshed.source, defaults.source);
    assert_eq!(refreshed.request, defaults.request);
    assert!(
        refreshed
            .package
            .iter()
            .any(|p| p.name.starts_with("linux-image-6.12.")),
        "{:?}",
        refreshed.package
    );
    assert!(refreshed
        .wheel
        .filename
        .starts_with("onnxruntime-1.31.1-cp311-cp311-manylinux"));
    // trixie is the default release: its ovmf is taken, although forky has
    // a newer one; forky supplies only ovmf-amdsev, which trixie lacks.
    let version = |name: &str| {
        refreshed
            .package
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.version.clone())
            .unwrap_or_else(|| panic!("{name} pinned"))
    };
    assert!(
        version("ovmf").starts_with("2025.02-"),
        "{}",
        version("ovmf")
    );
    assert!(
        !version("ovmf-amdsev").starts_with("2025.02-"),
        "{}",
        version("ovmf-amdsev")
    );
    // Rewriting is stable: the file is the lock's canonical text.
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        refreshed.to_text().expect("text")
    );
    let manifest = must_build(&spec(path, dir.path()), &dir.path().join("out"));
    assert_eq!(manifest.packages.len(), refreshed.package.len());
}

/// The NVIDIA modules' SHA-256 as `kokon image build --gpu` compiled them
/// from the committed lock's `[gpu]` pins on the machine that refreshed the
/// lock (2026-11-28). A build anywhere else from the same pins must give the
/// same bytes; after refreshing the `[gpu]` pins or changing the build
/// step, build once and take the digests from the manifest's `gpu.modules`.
const NVIDIA_MODULES_SHA256: [(&str, &str); 2] = [
    (
        "/lib/modules/nvidia.ko",
        "e04d10cd4e05feec0b332e83ccfa4cb40ef300508a4bbb22e2ae5c4575a48b4c",
    ),
    (
        "/lib/modules/nvidia_uvm.ko",
        "1bde0f4408bfe4bf0716c18aa8410f0760bdaa5af65ff4bee39ddad35b732ea8",
    ),
];

#[test]
fn a_gpu_image_compiles_the_driver_reproducibly_and_carries_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut gpu_spec = spec(committed_lock(), dir.path());
    gpu_spec.gpu = true;
    // About 6 GB (wheels, build root, data disk), which the build checks
    // before it downloads or writes them.
    let manifest = match build(&gpu_spec, &out) {
        Err(e @ ImageError::NoSpace { .. }) => {
            eprintln!("SKIPPED: this machine has no room for a GPU image: {e}");
            return;
        }
        built => built.unwrap_or_else(|e| panic!("building the GPU image failed: {e}")),
    };
    let gpu = manifest
        .gpu
        .as_ref()
        .expect("a GPU image records its driver");
    let lock = Lock::load(&committed_lock()).expect("lock");

    // The modules: compiled for the pinned kernel, the same bytes as where
    // the lock was refreshed, loaded last.
    let modules: Vec<(&str, &str)> = gpu
        .modules
        .iter()
        .map(|m| (m.path.as_str(), m.sha256.as_str()))
        .collect();
    assert_eq!(
        modules, NVIDIA_MODULES_SHA256,
        "the NVIDIA modules differ from the ones built from the same pins elsewhere"
    );
    assert!(
        manifest
            .modules
            .ends_with(&["nvidia".into(), "nvidia_uvm".into()]),
        "{:?}",
        manifest.modules
    );
    assert!(
        gpu.compiler.starts_with("x86_64-linux-gnu-gcc-14 "),
        "the kernel's compiler: {}",
        gpu.compiler
    );
    assert_eq!(gpu.adaptations.len(), 1, "{:?}", gpu.adaptations);
    assert!(gpu.adaptations[0].contains("pci_resize_resource() given exclude_bars = 0"));
    let pinned = |list: &[kokon_image::lock::Package]| -> Vec<(String, String)> {
        let mut v: Vec<_> = list
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        v.sort();
        v
    };
    let recorded = |list: &[kokon_image::manifest::PackageRecord]| -> Vec<(String, String)> {
        list.iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    };
    assert_eq!(recorded(&gpu.packages), pinned(&lock.gpu_package));
    assert_eq!(recorded(&gpu.toolchain), pinned(&lock.toolchain_package));
    let gsp = lock
        .gpu_package
        .iter()
        .find(|p| p.name == "firmware-nvidia-gsp")
        .expect("firmware pinned");
    assert!(
        gsp.version.starts_with(&format!("{}-", gpu.driver_version)),
        "driver {} from firmware {}",
        gpu.driver_version,
        gsp.version
    );

    // The libraries, in the initrd on the loader's search path, with
    // what they need (OpenSSL's libcrypto for the PKCS #11 library).
    let entries = read_initrd(&out);
    let version = &gpu.driver_version;
    let expected_libraries = [
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1".to_owned(),
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1".to_owned(),
        "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1".to_owned(),
        format!("/usr/lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.{version}"),
    ];
    let libraries: Vec<&String> = gpu.libraries.iter().map(|l| &l.path).collect();
    assert_eq!(libraries, expected_libraries.iter().collect::<Vec<_>>());
    for record in gpu.libraries.iter().chain(&gpu.modules) {
        let entry = file(&entries, record.path.trim_start_matches('/'));
        assert_eq!(
            kokon_image::digest::sha256_hex(&entry.data),
            record.sha256,
            "{}",
            record.path
        );
    }
    assert!(
        manifest
            .libraries
            .iter()
            .any(|l| l.path.ends_with("/libcrypto.so.3")),
        "libnvidia-pkcs11-openssl3 needs libcrypto.so.3"
    );

    // The firmware, on the data disk, which the measured command line
    // names to the firmware loader.
    assert!(
        manifest.cmdline.contains(&format!(
            " {} kokon.data=",
            kokon_image::nvidia::FIRMWARE_PARAM
        )),
        "{}",
        manifest.cmdline
    );
    let disk = manifest.data_disk.as_ref().expect("data disk");
    for name in ["gsp_ga10x.bin", "gsp_tu10x.bin"] {
        let path = format!("/data/firmware/nvidia/{version}/{name}");
        assert!(
            disk.files.iter().any(|f| f.path == path),
            "{path} not on the data disk"
        );
    }
    assert!(disk.files.iter().any(|f| f.path == "/data/big/weights.bin"));

    // The CUDA user space, on the data disk: ONNX Runtime with the CUDA
    // provider under one name, and NVIDIA's libraries, from the pinned
    // wheels; the enclave's library path names their directory.
    assert_eq!(gpu.runtime, lock.gpu_wheel);
    assert_eq!(gpu.library_path, "/data/gpu/lib");
    for name in [
        "libonnxruntime.so",
        "libonnxruntime_providers_shared.so",
        "libonnxruntime_providers_cuda.so",
        "libcudart.so.12",
        "libcublas.so.12",
        "libcublasLt.so.12",
        "libcudnn.so.9",
        "libcufft.so.11",
        "libcurand.so.10",
    ] {
        let path = format!("/data/gpu/lib/{name}");
        assert!(
            disk.files.iter().any(|f| f.path == path),
            "{path} not on the data disk"
        );
    }
    let config: serde_json::Value =
        serde_json::from_slice(&file(&entries, "etc/kokon/enclave.json").data).expect("json");
    assert_eq!(config["library_path"], "/data/gpu/lib");
    assert_eq!(config["args"], serde_json::json!(["--vsock-port", "5000"]));

    // The CPU image carries none of it.
    let (_, cpu) = image();
    assert_eq!(cpu.gpu, None);
    assert!(!cpu.modules.iter().any(|m| m.starts_with("nvidia")));
    assert!(!cpu.cmdline.contains("firmware_class"));
}

#[test]
fn a_gpu_image_needs_the_locks_gpu_pins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = edited_lock(dir.path(), |lock| {
        lock.gpu = None;
        lock.gpu_package.clear();
        lock.toolchain_package.clear();
        lock.gpu_wheel.clear();
    });
    let mut gpu_spec = spec(lock, dir.path());
    gpu_spec.gpu = true;
    let err = build(&gpu_spec, &dir.path().join("out")).expect_err("no [gpu]");
    assert!(
        err.to_string()
            .contains("a GPU image needs the lock's [gpu] request and its pins"),
        "{err}"
    );
}
