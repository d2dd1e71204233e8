//! NVIDIA's driver in GPU images (`kokon image build --gpu`): the open
//! kernel modules compiled against the pinned kernel in a pinned build
//! root, the GSP firmware, and the user-space driver libraries, all from
//! the lock's `[gpu]` pins (docs/image.md, "The GPU image").
//!
//! Debian ships the modules as source (`nvidia-open-kernel-source`; the
//! OS-agnostic core comes precompiled, only the Linux glue compiles), so
//! the build compiles them: the `[[toolchain_package]]` pins (the kernel's
//! compiler, make, libc headers, the pinned kernel's headers, a shell and
//! their dependencies) are unpacked into a directory that becomes the root
//! of the build, entered with `unshare` (a user and mount namespace, so no
//! privilege is needed) and `chroot`. Nothing of the build host's
//! toolchain is used, the paths and timestamps are fixed, and the modules
//! are stripped of debug information: the same pins give the same bytes.
//!
//! The firmware goes on the data disk (`/data/firmware`, named on the
//! measured command line as `firmware_class.path`): the driver loads it
//! when the GPU is first opened, after the init has mounted the disk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::elf;
use crate::error::ImageError;
use crate::fetch::run;
use crate::lock::{PinnedWheel, GPU_RUNTIME_PROJECT};
use crate::modules::{dependencies, Module};
use crate::source::Source;
use crate::space::Need;
use crate::tree::Tree;

/// The modules built, by module name, in load order: the driver, then
/// unified memory (CUDA needs both; display and DRM are not built).
pub const MODULES: [&str; 2] = ["nvidia", "nvidia_uvm"];
/// The source tarball's path in `nvidia-open-kernel-source`.
pub const SOURCE_TARBALL: &str = "/usr/src/nvidia-open-kernel.tar.xz";
/// Where the tarball's tree is, in the build root, once extracted.
const SOURCE_DIR: &str = "/build/modules/nvidia-open-kernel";
/// The firmware's directory on the data disk (under `/data` in the guest).
pub const FIRMWARE_DIR: &str = "firmware";
/// The kernel parameter that points the firmware loader at the data disk.
pub const FIRMWARE_PARAM: &str = "firmware_class.path=/data/firmware";
/// The GSP firmware's directory in `firmware-nvidia-gsp`, one
/// subdirectory per driver version.
const PACKAGE_FIRMWARE_DIR: &str = "/usr/lib/firmware/nvidia";
/// Where Debian's driver packages put the user-space libraries (its
/// alternatives would link them into the search path; the image holds
/// them there directly).
const PACKAGE_LIBRARY_DIR: &str = "/usr/lib/x86_64-linux-gnu/nvidia/current";
/// The search-path directory the image holds the driver's libraries in.
pub const LIBRARY_DIR: &str = "/usr/lib/x86_64-linux-gnu";
/// The driver's libraries by soname, in [`PACKAGE_LIBRARY_DIR`]: the CUDA
/// driver, NVML (the enclave's confidential-computing checks), and the PTX
/// compiler `libcuda` loads.
const LIBRARIES: [&str; 3] = [
    "libcuda.so.1",
    "libnvidia-ml.so.1",
    "libnvidia-ptxjitcompiler.so.1",
];
/// The library `libcuda` loads by versioned name in confidential-computing
/// mode (OpenSSL 3 behind PKCS #11), in [`LIBRARY_DIR`] of its package.
const PKCS11_PREFIX: &str = "libnvidia-pkcs11-openssl3.so.";

/// The driver's files for the image, taken from the unpacked
/// `[[gpu_package]]` pins.
#[derive(Debug)]
pub struct DriverFiles {
    /// The driver version (`550.163.01`): the firmware's directory, checked
    /// against the libraries' file names.
    pub version: String,
    /// (path in the image, bytes) of each user-space library.
    pub libraries: Vec<(String, Vec<u8>)>,
    /// (path on the data disk, host file) of each firmware file.
    pub firmware: Vec<(String, PathBuf)>,
}

/// The driver's libraries and firmware in `tree` (the guest's packages
/// with the `[[gpu_package]]` pins).
pub fn driver_files(tree: &Tree) -> Result<DriverFiles, ImageError> {
    let versions = tree.list(PACKAGE_FIRMWARE_DIR);
    let [version] = versions.as_slice() else {
        return Err(ImageError::Layout(format!(
            "the GPU packages have {} driver versions in {PACKAGE_FIRMWARE_DIR} ({versions:?}), expected one (firmware-nvidia-gsp)",
            versions.len()
        )));
    };
    let firmware_dir = format!("{PACKAGE_FIRMWARE_DIR}/{version}");
    let mut firmware = Vec::new();
    for name in tree.list(&firmware_dir) {
        let path = format!("{firmware_dir}/{name}");
        let source = tree
            .resolve(&path)
            .ok_or_else(|| ImageError::Layout(format!("{path}: a dangling link")))?;
        firmware.push((format!("{FIRMWARE_DIR}/nvidia/{version}/{name}"), source));
    }
    if firmware.is_empty() {
        return Err(ImageError::Layout(format!(
            "{firmware_dir} holds no firmware"
        )));
    }
    let mut libraries = Vec::new();
    for soname in LIBRARIES {
        let path = format!("{PACKAGE_LIBRARY_DIR}/{soname}");
        let canonical = tree.canonical(&path).ok_or_else(|| {
            ImageError::Layout(format!(
                "{path} is in none of the GPU packages (libcuda1, libnvidia-ml1, libnvidia-ptxjitcompiler1)"
            ))
        })?;
        if !canonical.ends_with(&format!(".so.{version}")) {
            return Err(ImageError::Layout(format!(
                "{path} is {canonical}, expected the driver version {version} of the firmware"
            )));
        }
        libraries.push((format!("{LIBRARY_DIR}/{soname}"), tree.read(&path)?));
    }
    let pkcs11 = format!("{PKCS11_PREFIX}{version}");
    let path = format!("{LIBRARY_DIR}/{pkcs11}");
    libraries.push((path.clone(), tree.read(&path)?));
    Ok(DriverFiles {
        version: version.clone(),
        libraries,
        firmware,
    })
}

/// The CUDA user space's directory on the data disk (under `/data`).
pub const RUNTIME_DIR: &str = "gpu/lib";
/// The same directory in the guest: the enclave's library path, where the
/// loader finds the CUDA provider's libraries (it has no `RUNPATH`).
pub const RUNTIME_LIBRARY_PATH: &str = "/data/gpu/lib";
/// ONNX Runtime with the CUDA provider in the guest, under one name
/// whatever its version (the enclave's `--ort-lib`); the providers are
/// beside it, where it looks for them.
pub const RUNTIME_ORT: &str = "/data/gpu/lib/libonnxruntime.so";
/// The members of the `onnxruntime-gpu` wheel taken, by their name on the
/// data disk: ONNX Runtime (its versioned file), the providers' bridge and
/// the CUDA provider.
const ORT_MEMBERS: [(&str, &str); 3] = [
    ("onnxruntime/capi/libonnxruntime.so.", "libonnxruntime.so"),
    (
        "onnxruntime/capi/libonnxruntime_providers_shared.so",
        "libonnxruntime_providers_shared.so",
    ),
    (
        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_cuda.so",
    ),
];

/// The CUDA user space taken from the `[[gpu_wheel]]` pins: the wheel
/// members that go on the data disk, read from the wheels when the disk
/// is written (never extracted: they are 3.3 GB).
pub struct Runtime {
    /// (path on the data disk, wheel member), by path.
    pub files: Vec<(String, Source)>,
}

/// Selects the shared libraries of the runtime wheels: ONNX Runtime and
/// its CUDA provider from `onnxruntime-gpu`, and every `nvidia/*/lib/*.so*`
/// of NVIDIA's wheels (cuDNN, cuBLAS, the CUDA runtime, ...), into one
/// directory of the data disk.
pub fn runtime_files(wheels: &[(PinnedWheel, PathBuf)]) -> Result<Runtime, ImageError> {
    let mut files: Vec<(String, Source)> = Vec::new();
    for (pin, wheel) in wheels {
        let err = |reason: String| ImageError::Wheel {
            path: wheel.clone(),
            reason,
        };
        let zip =
            crate::source::open_zip(wheel).map_err(|e| err(format!("not a readable zip: {e}")))?;
        let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
        let mut taken = Vec::new();
        if pin.project == GPU_RUNTIME_PROJECT {
            for (member, name) in ORT_MEMBERS {
                let matching: Vec<&String> = names
                    .iter()
                    .filter(|n| match member.strip_suffix('.') {
                        // The versioned library: `libonnxruntime.so.1.x.y`.
                        Some(_) => n.starts_with(member) && !n.ends_with(".so"),
                        None => n.as_str() == member,
                    })
                    .collect();
                let [one] = matching.as_slice() else {
                    return Err(err(format!(
                        "{} members match {member}, expected one",
                        matching.len()
                    )));
                };
                taken.push(((*one).clone(), name.to_owned()));
            }
        } else {
            for member in &names {
                let mut parts = member.split('/');
                let (Some("nvidia"), Some(_), Some("lib"), Some(base), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    continue;
                };
                if base.contains(".so") && !base.starts_with('.') {
                    taken.push((member.clone(), base.to_owned()));
                }
            }
        }
        for (member, name) in taken {
            let path = format!("{RUNTIME_DIR}/{name}");
            if files.iter().any(|(p, _)| *p == path) {
                return Err(err(format!(
                    "{member} would be {path}, which another runtime wheel already supplies"
                )));
            }
            files.push((
                path,
                Source::ZipMember {
                    archive: wheel.clone(),
                    member,
                },
            ));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Runtime { files })
}

/// What the runtime's libraries need from the image's system directories
/// (for [`elf::closure`], which puts it in the initramfs): for each, its
/// path in the guest and every `DT_NEEDED` that is neither another runtime
/// library, nor one of the driver's (`driver_sonames`), nor the loader.
pub fn runtime_needs(
    runtime: &Runtime,
    driver_sonames: &[&str],
) -> Result<Vec<(String, Vec<String>)>, ImageError> {
    let provided: BTreeSet<&str> = runtime
        .files
        .iter()
        .filter_map(|(path, _)| path.rsplit('/').next())
        .chain(driver_sonames.iter().copied())
        // The loader, which some CUDA libraries name as a DT_NEEDED.
        .chain(["ld-linux-x86-64.so.2"])
        .collect();
    let mut needs = Vec::new();
    for (path, file) in &runtime.files {
        let label = format!("/data/{path}");
        let bytes = file.read_all().map_err(|e| ImageError::reading(file, e))?;
        let needed: Vec<String> = elf::needed(&label, &bytes)?
            .into_iter()
            .filter(|n| !provided.contains(n.as_str()))
            .collect();
        needs.push((label, needed));
    }
    Ok(needs)
}

/// What the build root of [`build_modules`] takes at most, in the
/// temporary directory: the toolchain's packages unpacked, the source and
/// the compiled objects (1.55 GB measured for 550.163.01 with the pinned
/// gcc-14; 2 GiB reserved). Checked before it is made.
pub fn build_root_need() -> Need {
    Need {
        what: "the NVIDIA modules' build root".into(),
        dir: std::env::temp_dir(),
        bytes: 2 * crate::space::GIB,
    }
}

/// The modules [`build_modules`] compiled, and how.
pub struct BuiltModules {
    /// The modules of [`MODULES`], in load order.
    pub modules: Vec<Module>,
    /// The kernel's compiler they were built with (its
    /// `CONFIG_CC_VERSION_TEXT`).
    pub compiler: String,
    /// The source edits the pinned kernel needed, each described.
    pub adaptations: Vec<String>,
}

/// Compiles [`MODULES`] from the `nvidia-open-kernel-source` package
/// `source` for kernel `release`, in a build root of the `toolchain`
/// packages (which must hold the release's `linux-headers-*`).
pub fn build_modules(
    toolchain: &[&Path],
    source: &Path,
    release: &str,
) -> Result<BuiltModules, ImageError> {
    let root = Tree::unpack(toolchain.iter().copied().chain([source]))?;
    let dir = root.root();
    // The one link a maintainer script (update-alternatives) would make
    // that the build uses.
    let awk = dir.join("usr/bin/awk");
    if awk.symlink_metadata().is_err() && dir.join("usr/bin/mawk").exists() {
        std::os::unix::fs::symlink("mawk", &awk).map_err(ImageError::io("linking", awk))?;
    }
    let headers = format!("/usr/src/linux-headers-{release}");
    let common = common_headers(&root)?;
    let compiler = kernel_compiler(&root, &headers)?;
    let cc = compiler.split(' ').next().unwrap_or_default().to_owned();
    if root.resolve(&format!("/usr/bin/{cc}")).is_none() {
        return Err(ImageError::Layout(format!(
            "the kernel was built with {cc} ({compiler}), which is not in the pinned build root; \
             add its package to gpu.toolchain and run `kokon image lock`"
        )));
    }
    for path in ["build", "dev", "tmp"] {
        let p = dir.join(path);
        std::fs::create_dir_all(&p).map_err(ImageError::io("creating", p))?;
    }
    let null = dir.join("dev/null");
    std::fs::write(&null, b"").map_err(ImageError::io("creating", null))?;

    in_build_root(
        dir,
        "extracting the NVIDIA kernel modules' source",
        &format!("cd /build && tar -xJf {SOURCE_TARBALL}"),
    )?;
    let adaptations = adapt(dir, &common)?;
    let jobs = std::thread::available_parallelism().map_or(1, usize::from);
    in_build_root(
        dir,
        "compiling the NVIDIA kernel modules (docs/image.md, \"The GPU image\")",
        &format!(
            "cd {SOURCE_DIR}\n\
             make -j{jobs} SYSSRC={common} SYSOUT={headers} CC={cc} \
             NV_KERNEL_MODULES='nvidia nvidia-uvm' modules\n\
             {strip} --strip-debug nvidia.ko nvidia-uvm.ko",
            strip = cc
                .rsplit_once("-gcc")
                .map_or("strip".to_owned(), |(prefix, _)| format!("{prefix}-strip")),
        ),
    )?;
    let mut modules = Vec::new();
    for name in MODULES {
        let path = dir.join(format!(
            "{}/{}.ko",
            SOURCE_DIR.trim_start_matches('/'),
            name.replace('_', "-")
        ));
        let data = std::fs::read(&path).map_err(ImageError::io("reading", path))?;
        let depends = dependencies(name, &data, release)?;
        if let Some(other) = depends
            .iter()
            .find(|d| !modules.iter().any(|m: &Module| &m.name == *d))
        {
            return Err(ImageError::Module {
                module: name.to_owned(),
                reason: format!("depends on {other}, which loads after it or is not built"),
            });
        }
        modules.push(Module {
            name: name.to_owned(),
            data,
        });
    }
    Ok(BuiltModules {
        modules,
        compiler,
        adaptations,
    })
}

/// The build root's `/usr/src/linux-headers-*-common`: Debian splits a
/// kernel's headers into the flavour's directory (`SYSOUT`) and the
/// common tree (`SYSSRC`).
fn common_headers(root: &Tree) -> Result<String, ImageError> {
    let common: Vec<String> = root
        .list("/usr/src")
        .into_iter()
        .filter(|n| n.starts_with("linux-headers-") && n.ends_with("-common"))
        .collect();
    match common.as_slice() {
        [one] => Ok(format!("/usr/src/{one}")),
        _ => Err(ImageError::Layout(format!(
            "the build root has {} linux-headers-*-common directories ({common:?}), expected one",
            common.len()
        ))),
    }
}

/// The compiler the kernel was built with, from its headers'
/// `include/config/auto.conf`.
fn kernel_compiler(root: &Tree, headers: &str) -> Result<String, ImageError> {
    let path = format!("{headers}/include/config/auto.conf");
    let text = String::from_utf8(root.read(&path)?)
        .map_err(|_| ImageError::Layout(format!("{path} is not UTF-8")))?;
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ImageError::Layout(format!(
                "{path} has no CONFIG_CC_VERSION_TEXT (the kernel's compiler)"
            ))
        })
}

/// The call in the driver's source that kernels with a four-argument
/// `pci_resize_resource()` (6.12.117's stable branch, 6.18) reject.
const RESIZE_CALL: &str = "pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size)";
/// The source file it is in.
const RESIZE_FILE: &str = "nvidia/nv-pci.c";

/// Applies the source edits the pinned kernel needs to the extracted
/// source in `root`, and describes each. One so far: the driver calls
/// `pci_resize_resource()` with three arguments; where the kernel's
/// declaration (`include/linux/pci.h` in the `common` headers) takes a
/// fourth, `exclude_bars`, the call passes 0 (exclude no BARs, the
/// three-argument behaviour).
fn adapt(root: &Path, common: &str) -> Result<Vec<String>, ImageError> {
    let header = root.join(format!(
        "{}/include/linux/pci.h",
        common.trim_start_matches('/')
    ));
    let header_text =
        std::fs::read_to_string(&header).map_err(ImageError::io("reading", header))?;
    let four_arguments = header_text
        .split_once("pci_resize_resource(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .is_some_and(|(parameters, _)| parameters.matches(',').count() == 3);
    if !four_arguments {
        return Ok(Vec::new());
    }
    let file = root.join(format!(
        "{}/{RESIZE_FILE}",
        SOURCE_DIR.trim_start_matches('/')
    ));
    let source = std::fs::read_to_string(&file).map_err(ImageError::io("reading", file.clone()))?;
    match source.matches(RESIZE_CALL).count() {
        1 => {}
        // A driver that already passes four arguments needs no edit.
        0 if source.contains("pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size,") => {
            return Ok(Vec::new())
        }
        n => {
            return Err(ImageError::Layout(format!(
                "{RESIZE_FILE}: expected one call {RESIZE_CALL}, found {n}; the kernel's \
                 pci_resize_resource() takes four arguments, and this driver's source is not the one the adaptation knows"
            )))
        }
    }
    let adapted = source.replace(
        RESIZE_CALL,
        "pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size, 0)",
    );
    std::fs::write(&file, adapted).map_err(ImageError::io("writing", file))?;
    Ok(vec![format!(
        "{RESIZE_FILE}: pci_resize_resource() given exclude_bars = 0, the kernel's fourth argument ({common}/include/linux/pci.h)"
    )])
}

/// Runs `script` (`sh -eu`) in the build root `root`: a new user namespace
/// mapping the caller to root and a new mount namespace, the build host's
/// `/dev/null` bound into the root, then `chroot`. The environment is only
/// what the script sets: a fixed `PATH`, the C locale, and the timestamps
/// the kernel's build records pinned to zero.
fn in_build_root(root: &Path, what: &str, script: &str) -> Result<(), ImageError> {
    let step = root.join("build/step.sh");
    let text = format!(
        "export PATH=/usr/bin:/usr/sbin LC_ALL=C SOURCE_DATE_EPOCH=0 \
         KBUILD_BUILD_TIMESTAMP=@0 KBUILD_BUILD_USER=kokon KBUILD_BUILD_HOST=kokon HOME=/build\n\
         {script}\n"
    );
    std::fs::write(&step, text).map_err(ImageError::io("writing", step.clone()))?;
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .args(["--user", "--map-root-user", "--mount", "--", "/bin/sh", "-c"])
        .arg("mount --bind /dev/null \"$1/dev/null\" && exec chroot \"$1\" /bin/sh -eu /build/step.sh")
        .arg("kokon-build-root")
        .arg(root);
    run(
        what,
        &mut cmd,
        "the GPU image's module build runs in a user and mount namespace: it needs util-linux's unshare \
         and mount, coreutils' chroot, and a kernel that lets this user create user namespaces",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &[u8]) {
        let path = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    const COMMON: &str = "/usr/src/linux-headers-6.12.1-common";
    const THREE: &[u8] =
        b"int __must_check pci_resize_resource(struct pci_dev *dev, int i, int size);\n";
    const FOUR: &[u8] =
        b"int __must_check pci_resize_resource(struct pci_dev *dev, int i, int size,\n\t\t\t\t     int exclude_bars);\n";
    const CALL: &[u8] = b"    r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size);\n";

    fn source_tree(header: &[u8], source: &[u8]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        write(
            root.path(),
            &format!("{COMMON}/include/linux/pci.h"),
            header,
        );
        write(root.path(), &format!("{SOURCE_DIR}/{RESIZE_FILE}"), source);
        root
    }

    fn source_after(root: &Path) -> String {
        std::fs::read_to_string(root.join(format!("{}/{RESIZE_FILE}", &SOURCE_DIR[1..])))
            .expect("read")
    }

    #[test]
    fn a_four_argument_kernel_gets_the_call_adapted_and_recorded() {
        let root = source_tree(FOUR, CALL);
        let done = adapt(root.path(), COMMON).expect("adapt");
        assert_eq!(done.len(), 1);
        assert!(
            done[0].starts_with("nvidia/nv-pci.c: pci_resize_resource() given exclude_bars = 0")
        );
        assert_eq!(
            source_after(root.path()),
            "    r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size, 0);\n"
        );
    }

    #[test]
    fn a_three_argument_kernel_or_an_adapted_driver_needs_no_edit() {
        let root = source_tree(THREE, CALL);
        assert_eq!(
            adapt(root.path(), COMMON).expect("adapt"),
            Vec::<String>::new()
        );
        assert_eq!(source_after(root.path()).as_bytes(), CALL);

        let fixed = b"    r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size, 0);\n";
        let root = source_tree(FOUR, fixed);
        assert_eq!(
            adapt(root.path(), COMMON).expect("adapt"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_unknown_driver_source_is_refused_not_guessed() {
        let twice = [CALL, CALL].concat();
        let root = source_tree(FOUR, &twice);
        let err = adapt(root.path(), COMMON)
            .expect_err("two calls")
            .to_string();
        assert!(
            err.contains("expected one call") && err.contains("found 2"),
            "{err}"
        );
        let root = source_tree(FOUR, b"    r = pci_resize_resource(dev, bar, size);\n");
        let err = adapt(root.path(), COMMON)
            .expect_err("another call")
            .to_string();
        assert!(err.contains("found 0"), "{err}");
    }

    #[test]
    fn the_kernels_compiler_and_headers_are_read_from_the_build_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        let tree = Tree::over(dir);
        let headers = "/usr/src/linux-headers-6.12.1-cloud-amd64";
        let err = kernel_compiler(&tree, headers).expect_err("no headers");
        assert!(err.to_string().contains("auto.conf"), "{err}");
        write(
            &root,
            &format!("{headers}/include/config/auto.conf"),
            b"CONFIG_X=y\nCONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\n",
        );
        assert_eq!(
            kernel_compiler(&tree, headers).expect("compiler"),
            "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"
        );
        write(
            &root,
            &format!("{headers}/include/config/auto.conf"),
            b"CONFIG_X=y\n",
        );
        let err = kernel_compiler(&tree, headers).expect_err("none");
        assert!(
            err.to_string().contains("has no CONFIG_CC_VERSION_TEXT"),
            "{err}"
        );

        let err = common_headers(&tree).expect_err("no common");
        assert!(
            err.to_string().contains("0 linux-headers-*-common"),
            "{err}"
        );
        write(&root, "/usr/src/linux-headers-6.12.1-common/Makefile", b"");
        assert_eq!(common_headers(&tree).expect("one"), COMMON);
        write(&root, "/usr/src/linux-headers-6.12.2-common/Makefile", b"");
        let err = common_headers(&tree).expect_err("two");
        assert!(
            err.to_string().contains("2 linux-headers-*-common"),
            "{err}"
        );
    }

    /// A tree with the driver packages' layout, version `version` for the
    /// firmware and `library_version` for the libraries.
    fn driver_tree(version: &str, library_version: &str) -> (PathBuf, Tree) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        write(
            &root,
            &format!("{PACKAGE_FIRMWARE_DIR}/{version}/gsp_ga10x.bin"),
            b"gsp",
        );
        for soname in LIBRARIES {
            let stem = soname.trim_end_matches(".1");
            let real = format!("{stem}.{library_version}");
            write(
                &root,
                &format!("{PACKAGE_LIBRARY_DIR}/{real}"),
                soname.as_bytes(),
            );
            let link = root.join(format!("{}/{soname}", &PACKAGE_LIBRARY_DIR[1..]));
            std::os::unix::fs::symlink(&real, link).expect("link");
        }
        write(
            &root,
            &format!("{LIBRARY_DIR}/{PKCS11_PREFIX}{library_version}"),
            b"p11",
        );
        (root, Tree::over(dir))
    }

    #[test]
    fn the_driver_files_are_taken_by_soname_and_version() {
        let (_, tree) = driver_tree("550.163.01", "550.163.01");
        let files = driver_files(&tree).expect("files");
        assert_eq!(files.version, "550.163.01");
        let libraries: Vec<(&str, &[u8])> = files
            .libraries
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        assert_eq!(
            libraries,
            [
                (
                    "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                    b"libcuda.so.1".as_slice()
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
                    b"libnvidia-ml.so.1"
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1",
                    b"libnvidia-ptxjitcompiler.so.1"
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.550.163.01",
                    b"p11"
                ),
            ]
        );
        let firmware: Vec<&str> = files.firmware.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(firmware, ["firmware/nvidia/550.163.01/gsp_ga10x.bin"]);
    }

    /// A wheel at `dir/NAME` holding `members` (name, bytes).
    fn wheel(dir: &Path, project: &str, members: &[(&str, &[u8])]) -> (PinnedWheel, PathBuf) {
        let path = dir.join(format!(
            "{}-1.0-py3-none-any.whl",
            project.replace('-', "_")
        ));
        crate::source::write_test_zip(&path, members);
        let pin = PinnedWheel {
            project: project.into(),
            version: "1.0".into(),
            filename: String::new(),
            sha256: String::new(),
            size: 0,
        };
        (pin, path)
    }

    const ORT_WHEEL: [(&str, &[u8]); 5] = [
        ("onnxruntime/capi/libonnxruntime.so.1.26.0", b"ort"),
        (
            "onnxruntime/capi/libonnxruntime_providers_shared.so",
            b"shared",
        ),
        ("onnxruntime/capi/libonnxruntime_providers_cuda.so", b"cuda"),
        (
            "onnxruntime/capi/libonnxruntime_providers_tensorrt.so",
            b"trt",
        ),
        ("onnxruntime/capi/onnxruntime_pybind11_state.so", b"py"),
    ];

    #[test]
    fn the_runtime_takes_ort_and_nvidias_libraries_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheels = [
            wheel(dir.path(), "onnxruntime-gpu", &ORT_WHEEL),
            wheel(
                dir.path(),
                "nvidia-cublas-cu12",
                &[
                    ("nvidia/cublas/lib/libcublas.so.12", b"cublas"),
                    ("nvidia/cublas/lib/libcublasLt.so.12", b"lt"),
                    ("nvidia/cublas/include/cublas.h", b"h"),
                    ("nvidia/cublas/lib/deeper/libx.so", b"x"),
                    ("nvidia_cublas_cu12-12.9.dist-info/METADATA", b"m"),
                ],
            ),
        ];
        let runtime = runtime_files(&wheels).expect("runtime");
        let files: Vec<(&str, Vec<u8>)> = runtime
            .files
            .iter()
            .map(|(p, f)| (p.as_str(), f.read_all().expect("read")))
            .collect();
        assert_eq!(
            files,
            [
                ("gpu/lib/libcublas.so.12", b"cublas".to_vec()),
                ("gpu/lib/libcublasLt.so.12", b"lt".to_vec()),
                ("gpu/lib/libonnxruntime.so", b"ort".to_vec()),
                ("gpu/lib/libonnxruntime_providers_cuda.so", b"cuda".to_vec()),
                (
                    "gpu/lib/libonnxruntime_providers_shared.so",
                    b"shared".to_vec()
                ),
            ]
        );
    }

    #[test]
    fn runtime_wheels_that_clash_or_lack_ort_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clash = [
            wheel(dir.path(), "nvidia-a", &[("nvidia/a/lib/libx.so.1", b"a")]),
            wheel(dir.path(), "nvidia-b", &[("nvidia/b/lib/libx.so.1", b"b")]),
        ];
        let err = runtime_files(&clash).err().expect("clash").to_string();
        assert!(
            err.contains("which another runtime wheel already supplies"),
            "{err}"
        );

        let no_cuda = wheel(dir.path(), "onnxruntime-gpu", &ORT_WHEEL[..2]);
        let err = runtime_files(&[no_cuda])
            .err()
            .expect("no provider")
            .to_string();
        assert!(
            err.contains("0 members match onnxruntime/capi/libonnxruntime_providers_cuda.so"),
            "{err}"
        );
    }

    #[test]
    fn the_runtime_needs_what_it_does_not_provide() {
        // This test's own executable stands for a runtime library: a
        // dynamically linked x86-64 ELF that needs libc.
        let exe = std::env::current_exe().expect("current_exe");
        let runtime = Runtime {
            files: vec![("gpu/lib/libx.so".into(), Source::File(exe))],
        };
        let needs = runtime_needs(&runtime, &[]).expect("needs");
        assert_eq!(needs.len(), 1);
        assert_eq!(needs[0].0, "/data/gpu/lib/libx.so");
        assert!(needs[0].1.iter().any(|n| n == "libc.so.6"), "{needs:?}");
        let needs = runtime_needs(&runtime, &["libc.so.6"]).expect("needs");
        assert!(!needs[0].1.iter().any(|n| n == "libc.so.6"), "{needs:?}");
    }

    #[test]
    fn mismatched_or_missing_driver_files_are_named() {
        let (_, tree) = driver_tree("550.163.01", "550.144.03");
        let err = driver_files(&tree).expect_err("mismatch").to_string();
        assert!(
            err.contains("libcuda.so.550.144.03, expected the driver version 550.163.01"),
            "{err}"
        );

        let (root, tree) = driver_tree("550.163.01", "550.163.01");
        std::fs::create_dir_all(root.join("usr/lib/firmware/nvidia/570.1")).expect("mkdir");
        let err = driver_files(&tree).expect_err("two versions").to_string();
        assert!(err.contains("2 driver versions"), "{err}");

        let (root, tree) = driver_tree("550.163.01", "550.163.01");
        std::fs::remove_file(
            root.join("usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.1"),
        )
        .expect("rm");
        let err = driver_files(&tree).expect_err("no NVML").to_string();
        assert!(
            err.contains("libnvidia-ml.so.1 is in none of the GPU packages"),
            "{err}"
        );
    }
}
