//! `image/debian.lock`: where the image's packages come from and which exact
//! bytes they are.
//!
//! The lock has a part people edit and a part [`crate::refresh_lock`] writes:
//! `[[source]]`, `[request]` and the wheel's project, version and platform say
//! what to take; each `[[package]]` and the wheel's file name, SHA-256 and
//! size pin what was taken. `build` uses only the pins; it never resolves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ImageError;

/// The lock file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// The apt archives packages are fetched from (one `deb` line each).
    /// The first is apt's default release: a package it carries is taken
    /// from it; a later source supplies only the packages the first lacks
    /// (SEV-SNP's `ovmf-amdsev`, which trixie does not build).
    pub source: Vec<Source>,
    /// What to pin: the kernel's metapackage and the other packages' names.
    pub request: Request,
    /// What to pin for GPU images (`kokon image build --gpu`): NVIDIA's
    /// driver and the build root its kernel modules compile in. None: the
    /// lock cannot build GPU images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    /// The ONNX Runtime wheel from PyPI.
    pub wheel: Wheel,
    /// The pinned packages, sorted by name.
    pub package: Vec<Package>,
    /// The pinned GPU driver packages ([`Gpu::module_source`] and
    /// [`Gpu::packages`]), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_package: Vec<Package>,
    /// The pinned build root of the GPU driver's modules: [`Gpu::toolchain`],
    /// the pinned kernel's headers and everything they depend on, sorted by
    /// name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toolchain_package: Vec<Package>,
    /// The pinned wheels of [`Gpu::runtime`], sorted by project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_wheel: Vec<PinnedWheel>,
}

/// NVIDIA's driver for GPU images, from Debian's archive (docs/image.md,
/// "The GPU image").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// The open kernel modules' source package
    /// (`nvidia-open-kernel-source`), compiled against the pinned kernel.
    pub module_source: String,
    /// The packages the guest takes driver files from: the GSP firmware,
    /// `libcuda1`, `libnvidia-ml1`, the libraries those load, and the
    /// packages of their own libraries.
    pub packages: Vec<String>,
    /// The build root's packages (compiler, make, libc headers, a shell and
    /// the tools the module build calls). `kokon image lock` adds the
    /// pinned kernel's `linux-headers-*` and pins the whole dependency
    /// closure apt resolves for them, without recommends.
    pub toolchain: Vec<String>,
    /// The CUDA user space for the data disk: pip requirements (e.g.
    /// `onnxruntime-gpu[cuda,cudnn]==1.26.0`), resolved with their
    /// dependencies for the wheel's `python_version` and [`Gpu::platforms`].
    /// Of what pip resolves, [`GPU_RUNTIME_PROJECT`] and the `nvidia-*`
    /// wheels are pinned (`[[gpu_wheel]]`); the rest are Python packages
    /// the enclave does not use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime: Vec<String>,
    /// The platform tags pip may take the runtime's wheels for (NVIDIA's
    /// wheels use several manylinux levels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

/// The runtime wheel whose ONNX Runtime, with the CUDA provider, a GPU
/// image's enclave loads.
pub const GPU_RUNTIME_PROJECT: &str = "onnxruntime-gpu";

/// One pinned wheel of a GPU image's CUDA user space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedWheel {
    /// The PyPI project, normalised (`nvidia-cublas-cu12`).
    pub project: String,
    /// Its version.
    pub version: String,
    /// The wheel's file name.
    pub filename: String,
    /// The wheel's SHA-256, lowercase hex.
    pub sha256: String,
    /// The wheel's size in bytes.
    pub size: u64,
}

/// One apt archive: `deb [signed-by=KEYRING] URI SUITE COMPONENTS...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The archive's address, e.g. `http://deb.debian.org/debian` (apt
    /// checks every file against the suite's signed InRelease, so plain
    /// HTTP is how Debian serves it).
    pub uri: String,
    /// The suite, e.g. `trixie`.
    pub suite: String,
    /// The components, e.g. `["main"]`.
    pub components: Vec<String>,
    /// The keyring the suite's InRelease must be signed by.
    pub signed_by: PathBuf,
    /// Whether apt refuses the suite's index once its `Valid-Until` has
    /// passed (the default). `false` for a testing suite served from a
    /// frozen mirror: the signature is still checked, and `build` takes
    /// only files whose SHA-256 the lock pins, so a stale index can delay a
    /// refresh's news but cannot change an image.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub check_valid_until: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

/// What `kokon image lock` resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The Debian architecture of the guest, `amd64`.
    pub architecture: String,
    /// The kernel metapackage whose one `linux-image-*` dependency is pinned
    /// (e.g. `linux-image-cloud-amd64`).
    pub kernel: String,
    /// The other packages, pinned at their candidate versions: the firmware
    /// (`ovmf` for TDX and development VMs, `ovmf-amdsev` for SEV-SNP) and
    /// the libraries the image's binaries need.
    pub packages: Vec<String>,
}

/// The ONNX Runtime wheel: what to download, and the file it pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    /// The PyPI project, `onnxruntime`.
    pub project: String,
    /// Its version (the project's: scripts/setup.sh).
    pub version: String,
    /// The CPython version whose wheel is taken (`3.11`).
    pub python_version: String,
    /// The platform tag pip is asked for (`manylinux_2_28_x86_64`).
    pub platform: String,
    /// The shared library taken from the wheel (a zip member).
    pub library: String,
    /// The wheel's file name (pinned).
    pub filename: String,
    /// The wheel's SHA-256, lowercase hex (pinned).
    pub sha256: String,
    /// The wheel's size in bytes (pinned).
    pub size: u64,
}

/// One pinned Debian package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// The package name.
    pub name: String,
    /// The exact version.
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// The .deb's SHA-256, lowercase hex.
    pub sha256: String,
    /// The .deb's size in bytes.
    pub size: u64,
    /// Its path in the archive (`pool/main/...`).
    pub filename: String,
}

impl Package {
    /// The .deb's file name in the cache: the archive file's base name.
    pub fn deb_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

/// The first lines of every lock file.
const HEADER: &str = "\
# The kokon guest image's inputs (kokon-image; docs/image.md).
# Edit [[source]], [request] and the wheel's project/version/python_version/
# platform/library; then `kokon image lock` (just image-lock) rewrites the pins:
# every [[package]] and the wheel's filename/sha256/size. Never edit pins by hand.

";

impl Lock {
    /// What a lock starts from when there is none yet: Debian trixie (forky
    /// main for what trixie lacks), the cloud kernel, both OVMF builds, the
    /// C and C++ runtime libraries, the project's ONNX Runtime, and
    /// trixie's NVIDIA driver with its build root for GPU images. Pins are
    /// empty until refreshed.
    pub fn unpinned_default() -> Self {
        let debian = |suite: &str, components: &[&str], check_valid_until| Source {
            uri: "http://deb.debian.org/debian".into(),
            suite: suite.into(),
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            signed_by: "/usr/share/keyrings/debian-archive-keyring.gpg".into(),
            check_valid_until,
        };
        Lock {
            source: vec![
                // contrib, non-free and non-free-firmware: NVIDIA's driver.
                debian(
                    "trixie",
                    &["main", "contrib", "non-free", "non-free-firmware"],
                    true,
                ),
                debian("forky", &["main"], false),
            ],
            request: Request {
                architecture: "amd64".into(),
                kernel: "linux-image-cloud-amd64".into(),
                packages: ["libc6", "libgcc-s1", "libstdc++6", "ovmf", "ovmf-amdsev"]
                    .map(String::from)
                    .to_vec(),
            },
            gpu: Some(Gpu {
                module_source: "nvidia-open-kernel-source".into(),
                packages: [
                    "firmware-nvidia-gsp",
                    "libcuda1",
                    "libnvidia-ml1",
                    "libnvidia-pkcs11-openssl3",
                    "libnvidia-ptxjitcompiler1",
                    "libssl3t64",
                    "libzstd1",
                    "zlib1g",
                ]
                .map(String::from)
                .to_vec(),
                toolchain: [
                    "base-files",
                    "bash",
                    "dash",
                    "debianutils",
                    "diffutils",
                    "findutils",
                    "gcc-14",
                    "grep",
                    "libc6-dev",
                    "make",
                    "mawk",
                    "sed",
                    "tar",
                    "xz-utils",
                ]
                .map(String::from)
                .to_vec(),
                runtime: vec!["onnxruntime-gpu[cuda,cudnn]==1.26.0".into()],
                platforms: [
                    "manylinux_2_28_x86_64",
                    "manylinux_2_27_x86_64",
                    "manylinux_2_17_x86_64",
                    "manylinux2014_x86_64",
                    "manylinux_2_12_x86_64",
                    "manylinux2010_x86_64",
                ]
                .map(String::from)
                .to_vec(),
            }),
            wheel: Wheel {
                project: "onnxruntime".into(),
                version: "1.31.1".into(),
                python_version: "3.11".into(),
                platform: "manylinux_2_28_x86_64".into(),
                library: "onnxruntime/capi/libonnxruntime.so.1.31.1".into(),
                filename: String::new(),
                sha256: String::new(),
                size: 0,
            },
            package: Vec::new(),
            gpu_package: Vec::new(),
            toolchain_package: Vec::new(),
            gpu_wheel: Vec::new(),
        }
    }

    /// Reads and parses `path` without checking its pins (what a refresh
    /// starts from).
    pub fn read(path: &Path) -> Result<Self, ImageError> {
        let text = std::fs::read_to_string(path).map_err(ImageError::io("reading", path))?;
        toml::from_str(&text).map_err(|e| ImageError::Lock {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Reads `path` and checks that its pins are complete and well formed:
    /// what `build` needs.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let lock = Self::read(path)?;
        lock.check().map_err(|reason| ImageError::Lock {
            path: path.to_owned(),
            reason,
        })?;
        Ok(lock)
    }

    /// The lock as its file's text: the header, then TOML with the packages
    /// sorted by name (the same lock always gives the same bytes).
    pub fn to_text(&self) -> Result<String, ImageError> {
        let mut sorted = self.clone();
        sorted.package.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.request.packages.sort();
        sorted.request.packages.dedup();
        sorted.gpu_package.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.toolchain_package.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.gpu_wheel.sort_by(|a, b| a.project.cmp(&b.project));
        if let Some(gpu) = &mut sorted.gpu {
            gpu.packages.sort();
            gpu.packages.dedup();
            gpu.toolchain.sort();
            gpu.toolchain.dedup();
        }
        let body = toml::to_string(&sorted).map_err(|e| ImageError::Lock {
            path: PathBuf::new(),
            reason: format!("serialising: {e}"),
        })?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Writes the lock to `path` (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<(), ImageError> {
        let text = self.to_text()?;
        crate::output::write_atomically(path, text.as_bytes())
    }

    /// Every check `load` makes, as the reason it fails.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.source.is_empty() {
            return Err("no [[source]]".into());
        }
        for source in &self.source {
            if source.components.is_empty() {
                return Err(format!(
                    "[[source]] {} {} has no components",
                    source.uri, source.suite
                ));
            }
            for word in [&source.uri, &source.suite]
                .into_iter()
                .chain(&source.components)
            {
                plain_word("[[source]] field", word)?;
            }
        }
        word(
            "request.architecture",
            &self.request.architecture,
            ARCHITECTURE,
        )?;
        word("request.kernel", &self.request.kernel, PACKAGE)?;
        for name in &self.request.packages {
            word("request.packages", name, PACKAGE)?;
        }
        let w = &self.wheel;
        for (field, value) in [
            ("wheel.project", &w.project),
            ("wheel.version", &w.version),
            ("wheel.python_version", &w.python_version),
            ("wheel.platform", &w.platform),
        ] {
            word(field, value, PYPI)?;
        }
        plain_word("wheel.library", &w.library)?;
        wheel_filename("wheel.filename", &w.filename)?;
        sha256_field(&format!("wheel {}", w.filename), &w.sha256)?;
        let names = pins("package", &self.package)?;
        let unpinned: Vec<&str> = self
            .request
            .packages
            .iter()
            .map(String::as_str)
            .filter(|n| !names.contains(n))
            .collect();
        if !unpinned.is_empty() {
            return Err(format!(
                "[request] packages {unpinned:?} have no [[package]] pin; run `kokon image lock` (just image-lock)"
            ));
        }
        // The pins are the requested packages and the one kernel.
        if names.len() != self.request.packages.len() + 1 {
            return Err(format!(
                "{} pinned packages, expected {} ([request] packages and the kernel {} points to); \
                 run `kokon image lock` (just image-lock)",
                names.len(),
                self.request.packages.len() + 1,
                self.request.kernel
            ));
        }
        self.check_gpu()
    }

    /// The checks of [`Lock::gpu`] and its pins.
    fn check_gpu(&self) -> Result<(), String> {
        let gpu_pins = pins("gpu_package", &self.gpu_package)?;
        let toolchain_pins = pins("toolchain_package", &self.toolchain_package)?;
        let wheel_pins = wheel_pins(&self.gpu_wheel)?;
        let Some(gpu) = &self.gpu else {
            if gpu_pins.is_empty() && toolchain_pins.is_empty() && wheel_pins.is_empty() {
                return Ok(());
            }
            return Err(
                "[[gpu_package]], [[toolchain_package]] or [[gpu_wheel]] pins without a [gpu] request"
                    .into(),
            );
        };
        for requirement in &gpu.runtime {
            word("gpu.runtime", requirement, REQUIREMENT)?;
        }
        for platform in &gpu.platforms {
            word("gpu.platforms", platform, PYPI)?;
        }
        match (gpu.runtime.is_empty(), wheel_pins.contains(GPU_RUNTIME_PROJECT)) {
            (true, _) if !wheel_pins.is_empty() => {
                return Err("[[gpu_wheel]] pins without gpu.runtime".into())
            }
            (false, false) => {
                return Err(format!(
                    "gpu.runtime has no [[gpu_wheel]] pin of {GPU_RUNTIME_PROJECT}; run `kokon image lock` (just image-lock)"
                ))
            }
            _ => {}
        }
        if !gpu.runtime.is_empty() && gpu.platforms.is_empty() {
            return Err("gpu.runtime needs gpu.platforms (pip's platform tags)".into());
        }
        word("gpu.module_source", &gpu.module_source, PACKAGE)?;
        for name in gpu.packages.iter().chain(&gpu.toolchain) {
            word("gpu package", name, PACKAGE)?;
        }
        let wanted: BTreeSet<&str> = std::iter::once(gpu.module_source.as_str())
            .chain(gpu.packages.iter().map(String::as_str))
            .collect();
        if wanted != gpu_pins {
            return Err(format!(
                "[[gpu_package]] pins {gpu_pins:?}, expected gpu.module_source and gpu.packages {wanted:?}; \
                 run `kokon image lock` (just image-lock)"
            ));
        }
        let unpinned: Vec<&str> = gpu
            .toolchain
            .iter()
            .map(String::as_str)
            .filter(|n| !toolchain_pins.contains(n))
            .collect();
        if !unpinned.is_empty() {
            return Err(format!(
                "gpu.toolchain {unpinned:?} have no [[toolchain_package]] pin; run `kokon image lock` (just image-lock)"
            ));
        }
        if !toolchain_pins
            .iter()
            .any(|n| n.starts_with("linux-headers-"))
        {
            return Err(
                "[[toolchain_package]] has no linux-headers-* (the pinned kernel's headers); \
                 run `kokon image lock` (just image-lock)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Checks each `[[gpu_wheel]]` pin and returns their projects; a project
/// pinned twice is an error.
fn wheel_pins(wheels: &[PinnedWheel]) -> Result<BTreeSet<&str>, String> {
    let mut projects = BTreeSet::new();
    for w in wheels {
        word("gpu_wheel project", &w.project, PYPI)?;
        word(
            &format!("gpu_wheel {} version", w.project),
            &w.version,
            PYPI,
        )?;
        wheel_filename(&format!("gpu_wheel {} filename", w.project), &w.filename)?;
        sha256_field(&format!("gpu_wheel {}", w.project), &w.sha256)?;
        if !projects.insert(w.project.as_str()) {
            return Err(format!("gpu_wheel {} is pinned twice", w.project));
        }
    }
    Ok(projects)
}

/// Checks each pin of `list` (the lock's `[[list]]`) and returns their
/// names; a name pinned twice is an error.
fn pins<'a>(list: &str, packages: &'a [Package]) -> Result<BTreeSet<&'a str>, String> {
    let mut names = BTreeSet::new();
    for p in packages {
        word(&format!("{list} name"), &p.name, PACKAGE)?;
        word(&format!("{list} {} version", p.name), &p.version, VERSION)?;
        word(
            &format!("{list} {} architecture", p.name),
            &p.architecture,
            ARCHITECTURE,
        )?;
        plain_word(&format!("{list} {} filename", p.name), &p.filename)?;
        if !names.insert(p.name.as_str()) {
            return Err(format!("{list} {} is pinned twice", p.name));
        }
        sha256_field(&format!("{list} {}", p.name), &p.sha256)?;
        let base = p.deb_name();
        if !base.ends_with(".deb")
            || base.starts_with('.')
            || p.filename.split('/').any(|c| c == "..")
        {
            return Err(format!(
                "{list} {}: filename {:?} is not an archive .deb path",
                p.name, p.filename
            ));
        }
    }
    Ok(names)
}

/// A wheel's file name, as the cache's file name: a plain word ending in
/// `.whl`, no directory, not hidden.
fn wheel_filename(field: &str, filename: &str) -> Result<(), String> {
    plain_word(field, filename)?;
    if filename.contains('/') || filename.starts_with('.') || !filename.ends_with(".whl") {
        return Err(format!("{field} {filename:?} is not a wheel's file name"));
    }
    Ok(())
}

/// A non-empty value without whitespace or characters apt or a shell would
/// read specially.
fn plain_word(field: &str, value: &str) -> Result<(), String> {
    let bad = value.is_empty()
        || value.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '=' | '[' | ']' | '"' | '\'' | '\\')
        });
    if bad {
        return Err(format!(
            "{field} {value:?} is empty or has whitespace, quotes, '=' or brackets"
        ));
    }
    Ok(())
}

/// The characters after the first (which must be a letter or digit) of a
/// Debian package name, a Debian version, a Debian architecture, and a PyPI
/// project, version or tag: values that go on apt's and pip's command lines
/// can never read as options.
const PACKAGE: &str = "abcdefghijklmnopqrstuvwxyz0123456789+.-";
const VERSION: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+~:-";
const ARCHITECTURE: &str = "abcdefghijklmnopqrstuvwxyz0123456789-";
const PYPI: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+!";
/// A pip requirement: a project, extras in brackets, version specifiers.
const REQUIREMENT: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+![],=<>~";

/// A value that starts with a letter or digit and has only `allowed`
/// characters.
fn word(field: &str, value: &str, allowed: &str) -> Result<(), String> {
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !value.chars().all(|c| allowed.contains(c)) {
        return Err(format!(
            "{field} {value:?} must start with a letter or digit and have only the characters {allowed:?}"
        ));
    }
    Ok(())
}

/// A SHA-256 as 64 lowercase hex digits.
fn sha256_field(what: &str, value: &str) -> Result<(), String> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(format!(
            "{what}: sha256 {value:?} is not 64 lowercase hex digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(name: &str) -> Package {
        Package {
            name: name.into(),
            version: "1.0-1".into(),
            architecture: "amd64".into(),
            sha256: "b".repeat(64),
            size: 2,
            filename: format!("pool/main/x/{name}/{name}_1.0-1_amd64.deb"),
        }
    }

    /// A complete lock with the default `[gpu]` request pinned.
    fn pinned_gpu() -> Lock {
        let mut lock = pinned();
        let gpu = Lock::unpinned_default().gpu.expect("default gpu request");
        lock.gpu_package = std::iter::once(&gpu.module_source)
            .chain(&gpu.packages)
            .map(|n| pin(n))
            .collect();
        lock.toolchain_package = gpu
            .toolchain
            .iter()
            .map(|n| pin(n))
            .chain([pin("linux-headers-6.12.1-cloud-amd64"), pin("cpp-14")])
            .collect();
        lock.gpu_wheel = ["onnxruntime-gpu", "nvidia-cublas-cu12"]
            .map(|project| PinnedWheel {
                project: project.into(),
                version: "1.0".into(),
                filename: format!("{}-1.0-py3-none-any.whl", project.replace('-', "_")),
                sha256: "c".repeat(64),
                size: 3,
            })
            .to_vec();
        lock.gpu = Some(gpu);
        lock
    }

    /// A complete lock without a `[gpu]` request.
    fn pinned() -> Lock {
        let mut lock = Lock::unpinned_default();
        lock.gpu = None;
        lock.wheel.filename = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl".into();
        lock.wheel.sha256 = "a".repeat(64);
        lock.wheel.size = 1;
        for name in [
            "ovmf",
            "ovmf-amdsev",
            "libc6",
            "linux-image-6.12.1-cloud-amd64",
            "libstdc++6",
            "libgcc-s1",
        ] {
            lock.package.push(pin(name));
        }
        lock
    }

    #[test]
    fn text_is_sorted_and_reads_back() {
        let lock = pinned();
        let text = lock.to_text().expect("text");
        assert!(text.starts_with("# The kokon guest image's inputs"));
        let back: Lock = toml::from_str(&text).expect("parse");
        let names: Vec<&str> = back.package.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "libc6",
                "libgcc-s1",
                "libstdc++6",
                "linux-image-6.12.1-cloud-amd64",
                "ovmf",
                "ovmf-amdsev"
            ]
        );
        assert_eq!(
            back.to_text().expect("text"),
            text,
            "rewriting changes nothing"
        );
        back.check().expect("a complete lock passes");
        // The default (checked) is left unwritten; only forky's waiver is.
        assert_eq!(text.matches("check_valid_until").count(), 1, "{text}");
        assert!(text.contains("check_valid_until = false"), "{text}");
        let checked: Vec<bool> = back.source.iter().map(|s| s.check_valid_until).collect();
        assert_eq!(checked, [true, false]);
    }

    #[test]
    fn incomplete_or_malformed_pins_are_rejected() {
        let mut lock = pinned();
        lock.package.retain(|p| p.name != "ovmf");
        let err = lock.check().expect_err("ovmf unpinned");
        assert!(
            err.contains("\"ovmf\"") && err.contains("image lock"),
            "{err}"
        );

        let mut lock = pinned();
        lock.package.retain(|p| !p.name.starts_with("linux-image"));
        let err = lock.check().expect_err("no kernel");
        assert!(err.contains("5 pinned packages, expected 6"), "{err}");

        let mut lock = pinned();
        if let Some(p) = lock.package.first_mut() {
            p.sha256 = "ABC".into();
        }
        let err = lock.check().expect_err("bad digest");
        assert!(err.contains("not 64 lowercase hex"), "{err}");

        let mut lock = pinned();
        if let Some(p) = lock.package.first_mut() {
            p.filename = "pool/../../etc/passwd.deb".into();
        }
        assert!(lock
            .check()
            .expect_err("dotdot")
            .contains("not an archive .deb path"));

        let mut lock = pinned();
        if let Some(p) = lock.package.first_mut() {
            p.version = "1.0 -o Dir=/".into();
        }
        assert!(lock
            .check()
            .expect_err("space")
            .contains("must start with a letter or digit"));

        let mut lock = pinned();
        lock.request.packages.push("-s".into());
        let err = lock.check().expect_err("option-like");
        assert!(
            err.starts_with("request.packages \"-s\" must start with a letter or digit"),
            "{err}"
        );

        let mut lock = pinned();
        lock.wheel.project = "--index-url=http://evil".into();
        assert!(lock
            .check()
            .expect_err("pip option")
            .starts_with("wheel.project"));

        let mut lock = pinned();
        lock.package
            .push(lock.package.first().cloned().expect("one"));
        assert!(lock.check().expect_err("twice").contains("pinned twice"));

        let mut lock = pinned();
        lock.wheel.filename = "../x.whl".into();
        assert!(lock
            .check()
            .expect_err("wheel")
            .contains("not a wheel's file name"));

        let mut lock = pinned();
        lock.source.clear();
        assert_eq!(lock.check().expect_err("no source"), "no [[source]]");
    }

    #[test]
    fn gpu_pins_are_checked_like_the_images() {
        let lock = pinned_gpu();
        lock.check().expect("a complete GPU lock passes");
        let text = lock.to_text().expect("text");
        let back: Lock = toml::from_str(&text).expect("parse");
        assert_eq!(back, {
            let mut sorted = lock.clone();
            sorted.package.sort_by(|a, b| a.name.cmp(&b.name));
            sorted.gpu_package.sort_by(|a, b| a.name.cmp(&b.name));
            sorted.toolchain_package.sort_by(|a, b| a.name.cmp(&b.name));
            sorted.gpu_wheel.sort_by(|a, b| a.project.cmp(&b.project));
            sorted
        });
        assert_eq!(
            back.to_text().expect("text"),
            text,
            "rewriting changes nothing"
        );
        // The CPU lock's text has no GPU sections at all.
        let cpu = pinned().to_text().expect("text");
        assert!(!cpu.contains("gpu") && !cpu.contains("toolchain"), "{cpu}");

        let mut lock = pinned_gpu();
        lock.gpu_package.retain(|p| p.name != "libcuda1");
        let err = lock.check().expect_err("libcuda1 unpinned");
        assert!(
            err.starts_with("[[gpu_package]] pins")
                && err.contains("\"libcuda1\"")
                && err.contains("image lock"),
            "{err}"
        );

        let mut lock = pinned_gpu();
        lock.gpu_package.push(pin("extra"));
        assert!(lock
            .check()
            .expect_err("extra")
            .starts_with("[[gpu_package]] pins"));

        let mut lock = pinned_gpu();
        lock.toolchain_package.retain(|p| p.name != "make");
        let err = lock.check().expect_err("make unpinned");
        assert!(
            err.contains("gpu.toolchain [\"make\"] have no [[toolchain_package]] pin"),
            "{err}"
        );

        let mut lock = pinned_gpu();
        lock.toolchain_package
            .retain(|p| !p.name.starts_with("linux-headers-"));
        let err = lock.check().expect_err("no headers");
        assert!(err.contains("has no linux-headers-*"), "{err}");

        let mut lock = pinned_gpu();
        if let Some(p) = lock.toolchain_package.first_mut() {
            p.filename = "pool/../x.deb".into();
        }
        let err = lock.check().expect_err("dotdot");
        assert!(
            err.starts_with("toolchain_package ") && err.contains("not an archive .deb path"),
            "{err}"
        );

        let mut lock = pinned_gpu();
        let twice = lock.gpu_package.first().cloned().expect("one");
        lock.gpu_package.push(twice);
        assert!(lock
            .check()
            .expect_err("twice")
            .contains("gpu_package nvidia-open-kernel-source is pinned twice"));

        let mut lock = pinned_gpu();
        if let Some(gpu) = &mut lock.gpu {
            gpu.toolchain.push("--no-download".into());
        }
        assert!(lock
            .check()
            .expect_err("option-like")
            .starts_with("gpu package \"--no-download\" must start with a letter or digit"));

        let mut lock = pinned_gpu();
        lock.gpu = None;
        assert_eq!(
            lock.check().expect_err("pins without request"),
            "[[gpu_package]], [[toolchain_package]] or [[gpu_wheel]] pins without a [gpu] request"
        );

        let mut lock = pinned_gpu();
        lock.gpu_wheel.retain(|w| w.project != "onnxruntime-gpu");
        let err = lock.check().expect_err("no runtime pin");
        assert!(
            err.starts_with("gpu.runtime has no [[gpu_wheel]] pin of onnxruntime-gpu"),
            "{err}"
        );

        let mut lock = pinned_gpu();
        if let Some(w) = lock.gpu_wheel.first_mut() {
            w.filename = "../evil.whl".into();
        }
        let err = lock.check().expect_err("path");
        assert!(err.contains("is not a wheel's file name"), "{err}");

        let mut lock = pinned_gpu();
        if let Some(w) = lock.gpu_wheel.first_mut() {
            w.sha256 = "x".into();
        }
        assert!(lock
            .check()
            .expect_err("digest")
            .contains("not 64 lowercase hex"));

        let mut lock = pinned_gpu();
        let twice = lock.gpu_wheel.first().cloned().expect("one");
        lock.gpu_wheel.push(twice);
        assert!(lock.check().expect_err("twice").contains("is pinned twice"));

        let mut lock = pinned_gpu();
        if let Some(gpu) = &mut lock.gpu {
            gpu.runtime = vec!["--index-url=http://evil".into()];
        }
        assert!(lock.check().expect_err("pip option").starts_with(
            "gpu.runtime \"--index-url=http://evil\" must start with a letter or digit"
        ));

        let mut lock = pinned_gpu();
        if let Some(gpu) = &mut lock.gpu {
            gpu.platforms.clear();
        }
        assert!(lock
            .check()
            .expect_err("no platforms")
            .contains("needs gpu.platforms"));

        let mut lock = pinned_gpu();
        if let Some(gpu) = &mut lock.gpu {
            gpu.runtime.clear();
        }
        assert_eq!(
            lock.check().expect_err("wheels without runtime"),
            "[[gpu_wheel]] pins without gpu.runtime"
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let mut text = pinned().to_text().expect("text");
        text = text.replace("[request]\n", "[request]\nkernal = \"x\"\n");
        let err = toml::from_str::<Lock>(&text).expect_err("typo");
        assert!(err.to_string().contains("kernal"), "{err}");
    }
}
