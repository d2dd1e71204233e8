//! The kokon worker VM's guest image, reproducible byte for byte from
//! pinned inputs: `kokon image build` and `kokon image lock`.
//!
//! The VM boots with QEMU's direct kernel boot (`-bios OVMF.fd -kernel
//! vmlinuz -initrd initrd.img -append CMDLINE`), and the TEE measures those
//! four inputs (SEV-SNP launch digest; TDX MRTD and RTMRs). An SEV-SNP guest
//! boots `OVMF.amdsev.fd` instead: edk2's AmdSevX64 build, which reserves
//! the table QEMU's `kernel-hashes=on` fills and checks the kernel, initrd
//! and command line against it. [`build`] makes
//! them from the Debian packages and the ONNX Runtime wheel pinned in
//! `image/debian.lock`, plus the init and enclave binaries and model files
//! it is given, and writes `manifest.json` beside them. The same inputs give
//! the same bytes on any machine, so an auditor can rebuild the image and
//! recompute the measurements (docs/image.md).
//!
//! - [`lock`]: the lock file; [`refresh_lock`] rewrites its pins.
//! - [`fetch`]: apt and pip under a private cache; digests checked.
//! - [`tree`]: the packages unpacked, paths looked up as the guest would.
//! - [`elf`]: the shared libraries the binaries need.
//! - [`modules`]: the kernel modules, in load order.
//! - [`nvidia`]: NVIDIA's driver for GPU images, its modules compiled in a
//!   pinned build root.
//! - [`cpio`]: the initramfs archive and its compression.
//! - [`manifest`]: the build's record, `manifest.json`.

pub mod cpio;
pub mod digest;
pub mod disk;
pub mod elf;
pub mod erofs;
pub mod error;
pub mod fetch;
pub mod lock;
pub mod manifest;
pub mod modules;
pub mod nvidia;
pub mod output;
pub mod source;
pub mod space;
pub mod tree;
pub mod verity;

use std::io::Read as _;
use std::path::{Path, PathBuf};

pub use error::ImageError;
pub use lock::Lock;
pub use manifest::{Manifest, VmShape};

use cpio::Archive;
use digest::{file_sha256, sha256_hex};
use lock::Package;
use manifest::{Artifact, Artifacts, GpuRecord, ImageFile, PackageRecord, WheelRecord};
use output::write_atomically;
use source::Source;
use tree::Tree;

/// The image's layout, shared with the guest's init.
pub use kokon_wire::vm::{
    ENCLAVE_BINARY as ENCLAVE_PATH, ENCLAVE_CONFIG as ENCLAVE_CONFIG_PATH, INIT as INIT_PATH,
    MODULES_DIR, MODULES_LIST as MODULES_LIST_PATH,
};
/// ONNX Runtime's shared library in the image (the wheel's
/// `libonnxruntime.so.1.x`, under one name whatever its version, so the
/// enclave's `--ort-lib` does not change with the lock).
pub const ORT_LIBRARY_PATH: &str = "/usr/lib/kokon/libonnxruntime.so";
/// The firmware's path in the `ovmf` package.
pub const OVMF_PACKAGE_PATH: &str = "/usr/share/ovmf/OVMF.fd";
/// The SEV-SNP firmware's path in the `ovmf-amdsev` package.
pub const SNP_OVMF_PACKAGE_PATH: &str = "/usr/share/ovmf/OVMF.amdsev.fd";
/// The empty directories the init mounts on or writes to.
pub const EMPTY_DIRS: [&str; 6] = [
    "/proc",
    "/sys",
    "/sys/kernel/config",
    "/dev",
    "/tmp",
    "/run",
];
/// The longest kernel command line x86 takes (COMMAND_LINE_SIZE less its
/// NUL).
pub const MAX_CMDLINE: usize = 2047;

/// The firmware's file name in the output directory: TDX and development
/// VMs boot it.
pub const OVMF_FILE: &str = "OVMF.fd";
/// The SEV-SNP firmware's file name in the output directory.
pub const SNP_OVMF_FILE: &str = "OVMF.amdsev.fd";
/// The kernel's file name in the output directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initramfs's file name in the output directory.
pub const INITRD_FILE: &str = "initrd.img";
/// The command line's file name in the output directory (no newline).
pub const CMDLINE_FILE: &str = "cmdline";

/// What to build an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The lock file, `image/debian.lock`.
    pub lock: PathBuf,
    /// The download cache (apt state, .debs, wheels), e.g. `.cache/image`;
    /// reused across builds.
    pub cache: PathBuf,
    /// The init binary, `/init` in the image.
    pub init: PathBuf,
    /// The enclave binary, `/usr/bin/kokon-enclave` in the image.
    pub enclave: PathBuf,
    /// Extra files: (path inside the image, e.g. `models/magika/model.onnx`,
    /// source file).
    pub files: Vec<(String, PathBuf)>,
    /// Files for the data disk ([`disk`]): (path under `/data` in the guest,
    /// e.g. `smollm2/model.onnx`, source file). None: no data disk.
    pub data_files: Vec<(String, PathBuf)>,
    /// The enclave's arguments, written to `/etc/kokon/enclave.json`.
    pub enclave_args: Vec<String>,
    /// The kernel command line.
    pub cmdline: String,
    /// The VM the image is measured for.
    pub vm: VmShape,
    /// A firmware file to boot SEV-SNP guests with instead of the
    /// `ovmf-amdsev` package's (an operator's own AmdSevX64 build, e.g. with
    /// patches AMD has not yet upstreamed). The manifest records that it was
    /// given, and its digest.
    pub snp_firmware: Option<PathBuf>,
    /// A GPU image ([`nvidia`]): NVIDIA's driver from the lock's `[gpu]`
    /// pins (its modules compiled for the pinned kernel, its libraries, its
    /// firmware on the data disk) and the CUDA user space from its
    /// `[[gpu_wheel]]` pins on the data disk, with the enclave's library
    /// path. The enclave given should be built with `--features cuda` and
    /// its arguments say `--device cuda --ort-lib` [`nvidia::RUNTIME_ORT`].
    pub gpu: bool,
}

/// Builds the image into `out` (created if needed): `OVMF.fd`,
/// `OVMF.amdsev.fd`, `vmlinuz`, `initrd.img`, `cmdline` and `manifest.json`, each written through a
/// temporary file and a rename; other files in `out` are left alone.
pub fn build(spec: &ImageSpec, out: &Path) -> Result<Manifest, ImageError> {
    // The spec's own inputs first: a bad path, a clash or a binary that is
    // not x86-64 ELF fails before anything is downloaded.
    check_cmdline(&spec.cmdline)?;
    let mut archive = Archive::new();
    let init = read(&spec.init)?;
    let enclave = read(&spec.enclave)?;
    elf::check(INIT_PATH, &init)?;
    elf::check(ENCLAVE_PATH, &enclave)?;
    let init_record = image_file(INIT_PATH, &init);
    let enclave_record = image_file(ENCLAVE_PATH, &enclave);
    archive.add_file(INIT_PATH, init.clone(), true)?;
    archive.add_file(ENCLAVE_PATH, enclave.clone(), true)?;
    let mut files = Vec::new();
    for (path, source) in &spec.files {
        let data = read(source)?;
        let path = format!("/{}", path.trim_start_matches('/'));
        files.push(image_file(&path, &data));
        archive.add_file(&path, data, false)?;
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    // A GPU image's enclave finds the CUDA libraries on the data disk.
    let enclave_config = match spec.gpu {
        false => serde_json::json!({ "args": spec.enclave_args }),
        true => serde_json::json!({
            "args": spec.enclave_args,
            "library_path": nvidia::RUNTIME_LIBRARY_PATH,
        }),
    };
    let mut enclave_json = serde_json::to_vec(&enclave_config)
        .map_err(|e| ImageError::Layout(format!("{ENCLAVE_CONFIG_PATH}: {e}")))?;
    enclave_json.push(b'\n');
    archive.add_file(ENCLAVE_CONFIG_PATH, enclave_json, false)?;
    for dir in EMPTY_DIRS {
        archive.add_dir(dir)?;
    }
    archive.add_char_device("/dev/console", 5, 1)?;

    let lock = Lock::load(&spec.lock)?;
    let later = gpu_space_estimate(spec, &lock, out);
    let fetched = fetch::fetch(&lock, &spec.lock, &spec.cache, spec.gpu, &later)?;
    let member = &lock.wheel.library;
    let ort = wheel_member(&fetched.wheel, member)?;
    // The module source is compiled in its own build root, not taken from.
    let module_source = lock.gpu.as_ref().map(|g| g.module_source.as_str());
    let (sources, driver_debs): (Vec<_>, Vec<_>) = fetched
        .gpu_debs
        .iter()
        .partition(|(p, _)| Some(p.name.as_str()) == module_source);
    let tree = Tree::unpack(
        fetched
            .debs
            .iter()
            .chain(driver_debs)
            .map(|(_, path)| path.as_path()),
    )?;
    let (release, vmlinuz) = kernel(&tree)?;
    let gpu = match sources.as_slice() {
        [] => None,
        [(_, source)] => Some(gpu_parts(spec, &fetched, source, &tree, &release, out)?),
        more => {
            return Err(ImageError::Layout(format!(
                "{} module source packages pinned, expected one",
                more.len()
            )))
        }
    };
    let ovmf = tree.read(OVMF_PACKAGE_PATH)?;
    let (snp_ovmf, snp_firmware_source) = match &spec.snp_firmware {
        Some(path) => (
            read(path)?,
            "given to the build (--snp-firmware)".to_owned(),
        ),
        None => (
            tree.read(SNP_OVMF_PACKAGE_PATH)?,
            format!("{SNP_OVMF_PACKAGE_PATH} of the pinned ovmf-amdsev package"),
        ),
    };

    let ort_path = ORT_LIBRARY_PATH.to_owned();
    let mut roots = vec![
        (INIT_PATH.to_owned(), init.as_slice()),
        (ENCLAVE_PATH.to_owned(), enclave.as_slice()),
        (ort_path.clone(), ort.as_slice()),
    ];
    // The GPU runtime's libraries are on the data disk; what they need of
    // the system (the C and C++ runtimes) goes into the initramfs.
    let mut outside = Vec::new();
    if let Some((driver, _, runtime)) = &gpu {
        roots.extend(
            driver
                .libraries
                .iter()
                .map(|(p, d)| (p.clone(), d.as_slice())),
        );
        let driver_sonames: Vec<&str> = driver
            .libraries
            .iter()
            .filter_map(|(p, _)| p.rsplit('/').next())
            .collect();
        outside = nvidia::runtime_needs(runtime, &driver_sonames)?;
    }
    let mut libraries = Vec::new();
    for needed in elf::closure(&roots, &outside, &tree)? {
        let data = std::fs::read(&needed.source)
            .map_err(ImageError::io("reading", needed.source.clone()))?;
        libraries.push(image_file(&needed.image_path, &data));
        archive.add_file(&needed.image_path, data, needed.interpreter)?;
    }
    let ort_sha256 = sha256_hex(&ort);
    archive.add_file(&ort_path, ort, false)?;

    let mut modules = modules::select(&tree, &release, modules::MODULES)?;
    let mut gpu_record = None;
    let data_files = match &gpu {
        Some((driver, _, runtime)) => data_disk_files(spec, &driver.firmware, &runtime.files),
        None => data_disk_files(spec, &[], &[]),
    };
    let mut cmdline = spec.cmdline.clone();
    if let Some((driver, built, _)) = gpu {
        let module_files = built
            .modules
            .iter()
            .map(|m| image_file(&format!("{MODULES_DIR}/{}.ko", m.name), &m.data))
            .collect();
        let mut driver_libraries = Vec::new();
        for (path, data) in driver.libraries {
            driver_libraries.push(image_file(&path, &data));
            archive.add_file(&path, data, false)?;
        }
        modules.extend(built.modules);
        cmdline = format!("{cmdline} {}", nvidia::FIRMWARE_PARAM);
        gpu_record = Some(GpuRecord {
            driver_version: driver.version,
            packages: package_records(&lock.gpu_package),
            toolchain: package_records(&lock.toolchain_package),
            compiler: built.compiler,
            adaptations: built.adaptations,
            modules: module_files,
            libraries: driver_libraries,
            runtime: lock.gpu_wheel.clone(),
            library_path: nvidia::RUNTIME_LIBRARY_PATH.into(),
        });
    }
    let mut module_list = String::new();
    let mut module_names = Vec::new();
    for module in modules {
        module_list.push_str(&module.name);
        module_list.push('\n');
        archive.add_file(
            &format!("{MODULES_DIR}/{}.ko", module.name),
            module.data,
            false,
        )?;
        module_names.push(module.name);
    }
    archive.add_file(MODULES_LIST_PATH, module_list.into_bytes(), false)?;
    let initrd = cpio::gzip(&archive.to_cpio());

    std::fs::create_dir_all(out).map_err(ImageError::io("creating", out))?;
    // The data disk's root hash goes on the measured command line.
    let data_disk = match data_files.as_slice() {
        [] => None,
        files => {
            let record = disk::build(&out.join(disk::DATA_FILE), files)?;
            cmdline = format!("{cmdline} {}", record.verity()?.param());
            check_cmdline(&cmdline)?;
            Some(record)
        }
    };
    let artifacts = Artifacts {
        ovmf: write_artifact(out, OVMF_FILE, &ovmf)?,
        snp_ovmf: write_artifact(out, SNP_OVMF_FILE, &snp_ovmf)?,
        kernel: write_artifact(out, KERNEL_FILE, &vmlinuz)?,
        initrd: write_artifact(out, INITRD_FILE, &initrd)?,
        cmdline: write_artifact(out, CMDLINE_FILE, cmdline.as_bytes())?,
        data: match data_disk {
            Some(_) => Some(file_artifact(out, disk::DATA_FILE)?),
            None => None,
        },
    };
    let packages = package_records(&lock.package);
    let manifest = Manifest {
        format: manifest::FORMAT,
        artifacts,
        kernel_release: release,
        snp_firmware_source,
        cmdline,
        vm: spec.vm.clone(),
        packages,
        wheel: WheelRecord {
            filename: lock.wheel.filename.clone(),
            sha256: lock.wheel.sha256.clone(),
            member: member.clone(),
            path: ort_path,
            library_sha256: ort_sha256,
        },
        init: init_record,
        enclave: enclave_record,
        enclave_args: spec.enclave_args.clone(),
        files,
        libraries,
        modules: module_names,
        data_disk,
        gpu: gpu_record,
    };
    write_atomically(&out.join(manifest::MANIFEST), &manifest.to_bytes()?)?;
    Ok(manifest)
}

/// Rewrites the pins of the lock at `lock` (or, if there is none, of
/// [`Lock::unpinned_default`]): the kernel its metapackage points to now,
/// the other requested packages' candidate versions, their SHA-256, size
/// and archive file name from apt's signed indexes, and the wheel pip
/// downloads now. The file is written sorted, so the same archive state
/// gives the same bytes.
pub fn refresh_lock(lock: &Path, cache: &Path) -> Result<(), ImageError> {
    let request = if lock.exists() {
        Lock::read(lock)?
    } else {
        Lock::unpinned_default()
    };
    let pinned = fetch::resolve(&request, lock, cache)?;
    pinned.check().map_err(|reason| ImageError::Lock {
        path: lock.to_owned(),
        reason: format!("the refreshed pins: {reason}"),
    })?;
    pinned.save(lock)
}

/// What a GPU image's build takes once its downloads are in the cache,
/// estimated before they are (none for a CPU image): its build root, and
/// its data disk, the runtime wheels inflated (1.74 times their size for
/// the pinned CUDA 12.9 wheels; twice, here). [`gpu_parts`] checks the
/// exact size once they are here.
fn gpu_space_estimate(spec: &ImageSpec, lock: &Lock, out: &Path) -> Vec<space::Need> {
    if !spec.gpu {
        return Vec::new();
    }
    let wheels = lock
        .gpu_wheel
        .iter()
        .fold(0u64, |sum, w| sum.saturating_add(w.size));
    vec![
        nvidia::build_root_need(),
        data_disk_need(out, "estimated", wheels.saturating_mul(2)),
    ]
}

/// The data disk's files: the spec's, and a GPU image's `firmware` and
/// `runtime` (path under `/data`, contents).
fn data_disk_files(
    spec: &ImageSpec,
    firmware: &[(String, PathBuf)],
    runtime: &[(String, Source)],
) -> Vec<(String, Source)> {
    spec.data_files
        .iter()
        .chain(firmware)
        .map(|(path, file)| (path.clone(), Source::File(file.clone())))
        .chain(runtime.iter().cloned())
        .collect()
}

/// The data disk's need of `bytes` in `out`, `how` they were reckoned.
fn data_disk_need(out: &Path, how: &str, bytes: u64) -> space::Need {
    space::Need {
        what: format!("the data disk, {} ({how})", disk::DATA_FILE),
        dir: out.to_owned(),
        bytes,
    }
}

/// A GPU image's parts: the driver's files from `tree`, its modules
/// compiled from the module `source` package for kernel `release`, and the
/// CUDA user space from the runtime wheels. Before compiling, checks that
/// the build root and the data disk (written to `out`) will fit.
fn gpu_parts(
    spec: &ImageSpec,
    fetched: &fetch::Fetched,
    source: &Path,
    tree: &Tree,
    release: &str,
    out: &Path,
) -> Result<(nvidia::DriverFiles, nvidia::BuiltModules, nvidia::Runtime), ImageError> {
    if fetched.gpu_wheels.is_empty() {
        return Err(ImageError::Lock {
            path: spec.lock.clone(),
            reason: "a GPU image needs the CUDA user space, gpu.runtime, pinned as [[gpu_wheel]]; \
                     run `kokon image lock` (just image-lock)"
                .into(),
        });
    }
    let driver = nvidia::driver_files(tree)?;
    let runtime = nvidia::runtime_files(&fetched.gpu_wheels)?;
    let data_files = data_disk_files(spec, &driver.firmware, &runtime.files);
    space::check(&[
        nvidia::build_root_need(),
        data_disk_need(out, "at most", disk::size_bound(&data_files)?),
    ])?;
    let toolchain: Vec<&Path> = fetched
        .toolchain_debs
        .iter()
        .map(|(_, p)| p.as_path())
        .collect();
    let modules = nvidia::build_modules(&toolchain, source, release)?;
    Ok((driver, modules, runtime))
}

/// The manifest's records of `packages`, sorted by name.
fn package_records(packages: &[Package]) -> Vec<PackageRecord> {
    let mut records: Vec<PackageRecord> = packages
        .iter()
        .map(|p| PackageRecord {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            sha256: p.sha256.clone(),
        })
        .collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    records
}

/// The one kernel in the packages' `/boot`: its release and bytes.
fn kernel(tree: &Tree) -> Result<(String, Vec<u8>), ImageError> {
    let kernels: Vec<String> = tree
        .list("/boot")
        .into_iter()
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    let [name] = kernels.as_slice() else {
        return Err(ImageError::Layout(format!(
            "the locked packages have {} kernels in /boot ({kernels:?}), expected one",
            kernels.len()
        )));
    };
    let release = name.trim_start_matches("vmlinuz-").to_owned();
    Ok((release, tree.read(&format!("/boot/{name}"))?))
}

/// An error unless `cmdline` fits the kernel's buffer and is one line.
fn check_cmdline(cmdline: &str) -> Result<(), ImageError> {
    if cmdline.len() > MAX_CMDLINE || cmdline.contains(['\0', '\n']) {
        return Err(ImageError::Layout(format!(
            "the kernel command line must be one line of at most {MAX_CMDLINE} bytes without NUL; found {} bytes: {cmdline:?}",
            cmdline.len()
        )));
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(ImageError::io("reading", path))
}

fn image_file(path: &str, data: &[u8]) -> ImageFile {
    ImageFile {
        path: path.to_owned(),
        sha256: sha256_hex(data),
        size: data.len() as u64,
    }
}

fn write_artifact(out: &Path, name: &str, data: &[u8]) -> Result<Artifact, ImageError> {
    write_atomically(&out.join(name), data)?;
    file_artifact(out, name)
}

/// The [`Artifact`] of the file `name` in `out`.
fn file_artifact(out: &Path, name: &str) -> Result<Artifact, ImageError> {
    let (sha256, size) = file_sha256(&out.join(name))?;
    Ok(Artifact {
        file: name.to_owned(),
        sha256,
        size,
    })
}

/// The bytes of zip member `member` of the wheel at `wheel`.
fn wheel_member(wheel: &Path, member: &str) -> Result<Vec<u8>, ImageError> {
    let err = |reason: String| ImageError::Wheel {
        path: wheel.to_owned(),
        reason,
    };
    let file = std::fs::File::open(wheel).map_err(ImageError::io("reading", wheel))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| err(format!("not a readable zip: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| err(format!("no member {member}: {e}")))?;
    let mut data = Vec::new();
    entry
        .read_to_end(&mut data)
        .map_err(|e| err(format!("reading member {member}: {e}")))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_must_fit_and_be_one_line() {
        check_cmdline("console=ttyS0 panic=-1 rdinit=/init").expect("plain");
        check_cmdline(&"x".repeat(MAX_CMDLINE)).expect("at the limit");
        let err = check_cmdline(&"x".repeat(MAX_CMDLINE + 1)).expect_err("too long");
        assert!(err.to_string().contains("found 2048 bytes"), "{err}");
        assert!(check_cmdline("a\nb").is_err());
    }

    #[test]
    fn the_packages_must_hold_one_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let boot = dir.path().join("boot");
        std::fs::create_dir_all(&boot).expect("mkdir");
        std::fs::write(boot.join("config-6.12.1-cloud"), b"").expect("write");
        let path = dir.path().to_owned();
        let tree = Tree::over(dir);
        let err = kernel(&tree).expect_err("none");
        assert_eq!(
            err.to_string(),
            "image layout: the locked packages have 0 kernels in /boot ([]), expected one"
        );
        std::fs::write(path.join("boot/vmlinuz-6.12.1-cloud"), b"kernel").expect("write");
        assert_eq!(
            kernel(&tree).expect("one"),
            ("6.12.1-cloud".to_owned(), b"kernel".to_vec())
        );
        std::fs::write(path.join("boot/vmlinuz-6.12.2-cloud"), b"kernel").expect("write");
        let err = kernel(&tree).expect_err("two");
        assert!(err.to_string().contains("have 2 kernels"), "{err}");
    }
}
