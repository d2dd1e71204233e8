//! Getting the pinned files into the cache with Debian's and Python's own
//! tools: apt-get and apt-cache under a private configuration (its own
//! sources, indexes and empty dpkg status under `CACHE/apt`; nothing of the
//! system's apt state is read or touched, and no root is needed), and
//! `python3 -m pip download` for the wheel.
//!
//! Cache layout: `CACHE/apt/` (apt's configuration and indexes),
//! `CACHE/debs/<archive file name>`, `CACHE/wheels/<wheel file name>`,
//! `CACHE/lock` (held while fetching, so that concurrent builds take turns).
//! A cached file is used only when its SHA-256 is the pinned one; when every
//! pinned file is cached, nothing touches the network.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::digest::file_sha256;
use crate::error::ImageError;
use crate::lock::{Lock, Package, PinnedWheel, Wheel, GPU_RUNTIME_PROJECT};
use crate::space::Need;

/// The pinned files, verified, in the cache.
pub struct Fetched {
    /// Each pinned package and its .deb.
    pub debs: Vec<(Package, PathBuf)>,
    /// The wheel.
    pub wheel: PathBuf,
    /// For a GPU image: each pinned GPU driver package and its .deb.
    pub gpu_debs: Vec<(Package, PathBuf)>,
    /// For a GPU image: each pinned build-root package and its .deb.
    pub toolchain_debs: Vec<(Package, PathBuf)>,
    /// For a GPU image: each pinned runtime wheel and its file.
    pub gpu_wheels: Vec<(PinnedWheel, PathBuf)>,
}

/// Makes sure every file `lock` pins is in `cache` with its pinned SHA-256,
/// downloading what is missing; with `gpu`, the GPU driver's and its build
/// root's packages too. Before downloading, checks that the downloads and
/// the space the build takes `later` fit.
pub fn fetch(
    lock: &Lock,
    lock_path: &Path,
    cache: &Path,
    gpu: bool,
    later: &[Need],
) -> Result<Fetched, ImageError> {
    if gpu && lock.gpu.is_none() {
        return Err(ImageError::Lock {
            path: lock_path.to_owned(),
            reason: "a GPU image needs the lock's [gpu] request and its pins (docs/image.md); \
                     add it and run `kokon image lock` (just image-lock)"
                .into(),
        });
    }
    let cache = prepare_cache(cache)?;
    let _turn = CacheTurn::take(&cache)?;
    let debs_dir = cache.join("debs");
    let mut missing = Vec::new();
    let mut in_cache = |packages: &'_ [Package]| -> Result<Vec<(Package, PathBuf)>, ImageError> {
        let mut debs = Vec::new();
        for package in packages {
            let path = debs_dir.join(package.deb_name());
            // A package pinned in two lists (the build root's and the
            // guest's) is downloaded once.
            if !matches_pin(&path, &package.sha256)? && !missing.contains(package) {
                missing.push(package.clone());
            }
            debs.push((package.clone(), path));
        }
        Ok(debs)
    };
    let debs = in_cache(&lock.package)?;
    let (gpu_debs, toolchain_debs) = if gpu {
        (
            in_cache(&lock.gpu_package)?,
            in_cache(&lock.toolchain_package)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let mut gpu_wheels = Vec::new();
    let mut missing_wheels = Vec::new();
    if gpu {
        for pin in &lock.gpu_wheel {
            let path = cache.join("wheels").join(&pin.filename);
            if !matches_pin(&path, &pin.sha256)? {
                missing_wheels.push(pin);
            }
            gpu_wheels.push((pin.clone(), path));
        }
    }
    let wheel = cache.join("wheels").join(&lock.wheel.filename);
    let wheel_missing = !matches_pin(&wheel, &lock.wheel.sha256)?;
    let download_bytes = missing
        .iter()
        .map(|p| p.size)
        .chain(missing_wheels.iter().map(|w| w.size))
        .chain(wheel_missing.then_some(lock.wheel.size))
        .fold(0u64, u64::saturating_add);
    if download_bytes > 0 {
        let downloads = Need {
            what: "the downloads the cache lacks".into(),
            dir: cache.clone(),
            bytes: download_bytes,
        };
        crate::space::check(&[&[downloads], later].concat())?;
    }
    if !missing.is_empty() {
        let apt = Apt::prepare(lock, lock_path, &cache)?;
        apt.update()?;
        apt.download(&missing.iter().collect::<Vec<_>>(), &debs_dir)?;
    }
    let platforms = lock
        .gpu
        .as_ref()
        .map_or(&[][..], |g| g.platforms.as_slice());
    for pin in missing_wheels {
        let request = PipRequest {
            project: &pin.project,
            version: &pin.version,
            python_version: &lock.wheel.python_version,
            platforms,
            pinned: Some((&pin.filename, &pin.sha256)),
        };
        pip_download(&request, &cache)?;
    }
    if wheel_missing {
        let platforms = [lock.wheel.platform.clone()];
        pip_download(&PipRequest::wheel(&lock.wheel, &platforms, true), &cache)?;
    }
    Ok(Fetched {
        debs,
        wheel,
        gpu_debs,
        toolchain_debs,
        gpu_wheels,
    })
}

/// The pins for `request`'s `[[source]]`, `[request]` and wheel request: the
/// candidates in the archive's current indexes, and the wheel pip downloads
/// now (which is left in the cache).
pub fn resolve(request: &Lock, lock_path: &Path, cache: &Path) -> Result<Lock, ImageError> {
    let cache = prepare_cache(cache)?;
    let _turn = CacheTurn::take(&cache)?;
    let apt = Apt::prepare(request, lock_path, &cache)?;
    apt.update()?;
    let meta = apt.show(std::slice::from_ref(&request.request.kernel))?;
    let kernel = meta
        .first()
        .and_then(|s| s.get("Depends"))
        .and_then(|deps| {
            deps.split(',')
                .map(|d| d.trim().split([' ', '(']).next().unwrap_or(""))
                .find(|name| name.starts_with("linux-image-"))
                .map(str::to_owned)
        })
        .ok_or_else(|| ImageError::Lock {
            path: lock_path.to_owned(),
            reason: format!(
                "the kernel metapackage {} has no linux-image-* dependency in the archive's index",
                request.request.kernel
            ),
        })?;
    let mut names = request.request.packages.clone();
    names.push(kernel.clone());
    let package = apt.pins(&names, lock_path)?;
    let (gpu_package, toolchain_package) = match &request.gpu {
        None => (Vec::new(), Vec::new()),
        Some(gpu) => {
            let mut names = gpu.packages.clone();
            names.push(gpu.module_source.clone());
            // The headers of the kernel just pinned, built for it.
            let headers = kernel.replacen("linux-image-", "linux-headers-", 1);
            let mut roots = gpu.toolchain.clone();
            roots.push(headers);
            let closure = apt.closure(&roots)?;
            (apt.pins(&names, lock_path)?, apt.pins(&closure, lock_path)?)
        }
    };
    let platforms = [request.wheel.platform.clone()];
    let (wheel_path, (sha256, size)) = pip_download(
        &PipRequest::wheel(&request.wheel, &platforms, false),
        &cache,
    )?;
    let gpu_wheel = match &request.gpu {
        Some(gpu) if !gpu.runtime.is_empty() => resolve_gpu_wheels(
            &gpu.runtime,
            &request.wheel.python_version,
            &gpu.platforms,
            &cache,
        )?,
        _ => Vec::new(),
    };
    let filename = wheel_path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ImageError::Wheel {
            path: wheel_path.clone(),
            reason: "not a UTF-8 file name".into(),
        })?;
    let mut lock = request.clone();
    lock.package = package;
    lock.gpu_package = gpu_package;
    lock.toolchain_package = toolchain_package;
    lock.gpu_wheel = gpu_wheel;
    lock.wheel.filename = filename;
    lock.wheel.sha256 = sha256;
    lock.wheel.size = size;
    Ok(lock)
}

/// Creates the cache's directories and returns its absolute path (apt's
/// configuration names it).
fn prepare_cache(cache: &Path) -> Result<PathBuf, ImageError> {
    for sub in [
        "debs",
        "wheels",
        "apt/etc/apt.conf.d",
        "apt/etc/preferences.d",
        "apt/etc/sources.list.d",
        "apt/state/lists/partial",
        "apt/cache/archives/partial",
    ] {
        let dir = cache.join(sub);
        std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", dir))?;
    }
    std::fs::canonicalize(cache).map_err(ImageError::io("resolving", cache))
}

/// Whether `path` exists with SHA-256 `sha256`.
fn matches_pin(path: &Path, sha256: &str) -> Result<bool, ImageError> {
    if !path.exists() {
        return Ok(false);
    }
    Ok(file_sha256(path)?.0 == sha256)
}

/// An error unless `path`'s SHA-256 is `expected`.
fn check_digest(path: &Path, what: &str, expected: &str) -> Result<(), ImageError> {
    let (found, _) = file_sha256(path)?;
    if found != expected {
        return Err(digest_error(what, expected, found));
    }
    Ok(())
}

/// The error for a file whose SHA-256 is not the lock's.
fn digest_error(what: &str, expected: &str, found: String) -> ImageError {
    ImageError::Digest {
        what: what.to_owned(),
        expected: expected.to_owned(),
        pinned_by: "image/debian.lock".into(),
        found,
    }
}

/// The cache's lock file, held (flock) for as long as this lives.
struct CacheTurn(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl CacheTurn {
    fn take(cache: &Path) -> Result<Self, ImageError> {
        let path = cache.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io("opening", path.clone()))?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, errno)| ImageError::Io {
                action: "locking",
                path,
                source: errno.into(),
            },
        )?;
        Ok(Self(flock))
    }
}

/// apt-get and apt-cache under the cache's private configuration.
struct Apt {
    config: PathBuf,
    /// The archives' host names, for "no longer served by ...".
    archives: String,
}

impl Apt {
    /// Writes the private configuration, sources list and empty dpkg status.
    fn prepare(lock: &Lock, lock_path: &Path, cache: &Path) -> Result<Self, ImageError> {
        let root = cache.join("apt");
        let root_str = root
            .to_str()
            .filter(|s| !s.contains(['"', '\n']))
            .ok_or_else(|| {
                ImageError::Layout(format!(
                    "the cache path {} is not plain UTF-8 (apt's configuration names it)",
                    root.display()
                ))
            })?;
        let arch = &lock.request.architecture;
        // The first source is the default release: apt prefers its versions
        // (priority 990), so a later, newer suite supplies only what the
        // first lacks.
        let default_release = lock.source.first().map_or("", |s| s.suite.as_str());
        // APT_CONFIG names this file, so apt reads it first and, through
        // Dir, takes its parts and main configuration from here too: the
        // system's /etc/apt is never read.
        let config = format!(
            "Dir \"{root_str}/\";\n\
             Dir::Etc \"etc/\";\n\
             Dir::Etc::SourceList \"sources.list\";\n\
             Dir::State \"state/\";\n\
             Dir::State::status \"{root_str}/state/status\";\n\
             Dir::Cache \"cache/\";\n\
             Debug::NoLocking \"true\";\n\
             APT::Architecture \"{arch}\";\n\
             APT::Architectures {{ \"{arch}\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             APT::Default-Release \"{default_release}\";\n\
             Acquire::Languages \"none\";\n\
             Acquire::GzipIndexes \"true\";\n\
             Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::CNF::DefaultEnabled \"false\";\n"
        );
        let mut sources = String::new();
        let mut hosts = Vec::new();
        for source in &lock.source {
            if !source.signed_by.is_file() {
                return Err(ImageError::Lock {
                    path: lock_path.to_owned(),
                    reason: format!(
                        "[[source]] {}: the keyring {} does not exist (apt-get install debian-archive-keyring)",
                        source.uri,
                        source.signed_by.display()
                    ),
                });
            }
            sources.push_str(&format!(
                "deb [signed-by={} arch={arch}{}] {} {} {}\n",
                source.signed_by.display(),
                if source.check_valid_until {
                    ""
                } else {
                    " check-valid-until=no"
                },
                source.uri,
                source.suite,
                source.components.join(" ")
            ));
            let host = source.uri.split("://").nth(1).unwrap_or(&source.uri);
            hosts.push(host.split('/').next().unwrap_or(host).to_owned());
        }
        let write = |name: &str, text: &str| {
            let path = root.join(name);
            std::fs::write(&path, text).map_err(ImageError::io("writing", path))
        };
        write("apt.conf", &config)?;
        write("etc/sources.list", &sources)?;
        write("state/status", "")?;
        hosts.dedup();
        Ok(Apt {
            config: root.join("apt.conf"),
            archives: hosts.join(", "),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &self.config)
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C");
        cmd
    }

    /// `apt-get update`: the suites' signed indexes.
    fn update(&self) -> Result<(), ImageError> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "update"]);
        run(
            &format!("fetching the package indexes from {} (needs the network once; later builds use the cache)", self.archives),
            &mut cmd,
            "apt-get is Debian's; this build needs a Debian or Ubuntu host",
        )?;
        Ok(())
    }

    /// `apt-cache show` of each query (`NAME` for the candidate version),
    /// as stanzas.
    fn show(&self, queries: &[String]) -> Result<Vec<BTreeMap<String, String>>, ImageError> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions"]).args(queries);
        let out = run(
            "reading the package indexes",
            &mut cmd,
            "apt-cache is Debian's",
        )?;
        Ok(stanzas(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The pins of `queries` (`NAME` for the candidate version, or
    /// `NAME=VERSION`) from the archive's index: version, SHA-256, size and
    /// archive path.
    fn pins(&self, queries: &[String], lock_path: &Path) -> Result<Vec<Package>, ImageError> {
        let stanzas = self.show(queries)?;
        let mut package = Vec::new();
        for query in queries {
            let name = query.split('=').next().unwrap_or(query);
            let stanza = stanzas
                .iter()
                .find(|s| s.get("Package").map(String::as_str) == Some(name))
                .ok_or_else(|| ImageError::Lock {
                    path: lock_path.to_owned(),
                    reason: format!("apt-cache show {query} printed no entry for it"),
                })?;
            let field = |key: &str| {
                stanza.get(key).cloned().ok_or_else(|| ImageError::Lock {
                    path: lock_path.to_owned(),
                    reason: format!("apt-cache show {query}: no {key} field"),
                })
            };
            let size = field("Size")?;
            package.push(Package {
                name: name.to_owned(),
                version: field("Version")?,
                architecture: field("Architecture")?,
                sha256: field("SHA256")?,
                size: size.parse().map_err(|_| ImageError::Lock {
                    path: lock_path.to_owned(),
                    reason: format!("apt-cache show {query}: Size {size:?} is not a number"),
                })?,
                filename: field("Filename")?,
            });
        }
        Ok(package)
    }

    /// The packages, as `NAME=VERSION`, that apt's resolver installs for
    /// `roots` on an empty system (dependencies, no recommends): a build
    /// root's closure.
    fn closure(&self, roots: &[String]) -> Result<Vec<String>, ImageError> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "install", "--simulate", "--no-install-recommends"])
            .args(roots);
        let out = run(
            "resolving the GPU driver's build root",
            &mut cmd,
            "apt-get is Debian's",
        )?;
        Ok(simulated_installs(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `apt-get download` of each package into `dir`, each checked against
    /// its pin before it is renamed to its archive file name.
    fn download(&self, packages: &[&Package], dir: &Path) -> Result<(), ImageError> {
        // First the versions the archive still has: apt-cache prints an
        // entry for each and an error for the others.
        let queries: Vec<String> = packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        let mut cmd = self.command("apt-cache");
        cmd.arg("show").args(&queries);
        let out = output(&mut cmd, "apt-cache is Debian's")?;
        let found = stanzas(&String::from_utf8_lossy(&out.stdout));
        for p in packages {
            let served = found
                .iter()
                .any(|s| s.get("Package") == Some(&p.name) && s.get("Version") == Some(&p.version));
            if !served {
                return Err(ImageError::NotServed {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    archive: self.archives.clone(),
                });
            }
        }
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(dir)
            .map_err(ImageError::io("creating a temporary directory in", dir))?;
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "download"])
            .args(&queries)
            .current_dir(tmp.path());
        run(
            "downloading the pinned packages",
            &mut cmd,
            "apt-get is Debian's",
        )?;
        for p in packages {
            // apt-get download names the file NAME_VERSION_ARCH.deb, an
            // epoch's colon written %3a.
            let saved = tmp.path().join(format!(
                "{}_{}_{}.deb",
                p.name,
                p.version.replace(':', "%3a"),
                p.architecture
            ));
            check_digest(
                &saved,
                &format!("{}={} ({})", p.name, p.version, p.deb_name()),
                &p.sha256,
            )?;
            let target = dir.join(p.deb_name());
            std::fs::rename(&saved, &target).map_err(ImageError::io("renaming into", target))?;
        }
        Ok(())
    }
}

/// What to ask pip for: one project's wheel at one version, for a CPython
/// version and the platform tags it may take.
struct PipRequest<'a> {
    project: &'a str,
    version: &'a str,
    python_version: &'a str,
    platforms: &'a [String],
    /// The pinned file name and SHA-256: another file is an error and stays
    /// out of the cache.
    pinned: Option<(&'a str, &'a str)>,
}

impl<'a> PipRequest<'a> {
    /// The lock's ONNX Runtime wheel.
    fn wheel(wheel: &'a Wheel, platforms: &'a [String], pinned: bool) -> Self {
        PipRequest {
            project: &wheel.project,
            version: &wheel.version,
            python_version: &wheel.python_version,
            platforms,
            pinned: pinned.then_some((wheel.filename.as_str(), wheel.sha256.as_str())),
        }
    }
}

/// The cache's wheel directory, and a fresh directory in it for pip to
/// download into (what is kept is renamed from there into the cache).
fn download_dir(cache: &Path) -> Result<(PathBuf, tempfile::TempDir), ImageError> {
    let wheels = cache.join("wheels");
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&wheels)
        .map_err(ImageError::io(
            "creating a temporary directory in",
            wheels.clone(),
        ))?;
    Ok((wheels, tmp))
}

/// `python3 -m pip download` of one wheel into the cache's wheels; the
/// downloaded file, its SHA-256 and its size.
fn pip_download(
    request: &PipRequest,
    cache: &Path,
) -> Result<(PathBuf, (String, u64)), ImageError> {
    let (wheels, tmp) = download_dir(cache)?;
    let mut cmd = pip_command(request.python_version, request.platforms, tmp.path());
    cmd.arg("--no-deps")
        .arg(format!("{}=={}", request.project, request.version));
    run(
        &format!("downloading the {} {} wheel from PyPI (needs the network once; later builds use the cache)", request.project, request.version),
        &mut cmd,
        "python3 with pip",
    )?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .map_err(ImageError::io("reading", tmp.path().to_owned()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let file = match (files.pop(), files.is_empty()) {
        (Some(file), true) => file,
        _ => {
            return Err(ImageError::Wheel {
                path: tmp.path().to_owned(),
                reason: format!(
                    "pip download of {}=={} left {} files, expected one wheel",
                    request.project,
                    request.version,
                    files.len() + 1
                ),
            })
        }
    };
    let name = file.file_name().map(PathBuf::from).unwrap_or_default();
    let digest = file_sha256(&file)?;
    if let Some((filename, sha256)) = request.pinned {
        if name != Path::new(filename) {
            return Err(ImageError::Wheel {
                path: file.clone(),
                reason: format!(
                    "pip downloaded {} for {}=={}; the lock pins {filename}",
                    name.display(),
                    request.project,
                    request.version,
                ),
            });
        }
        if digest.0 != sha256 {
            return Err(digest_error(&format!("wheel {filename}"), sha256, digest.0));
        }
    }
    let target = wheels.join(name);
    std::fs::rename(&file, &target).map_err(ImageError::io("renaming into", target.clone()))?;
    Ok((target, digest))
}

/// `python3 -m pip download` of binary wheels for CPython `python_version`
/// on `platforms` into `dir`; the caller adds what to download.
fn pip_command(python_version: &str, platforms: &[String], dir: &Path) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--implementation",
        "cp",
        "--python-version",
    ])
    .arg(python_version);
    for platform in platforms {
        cmd.arg("--platform").arg(platform);
    }
    cmd.arg("-d").arg(dir);
    cmd
}

/// The GPU image's runtime wheels pinned now: `requirements` downloaded
/// with their dependencies (left in the cache), of which
/// [`GPU_RUNTIME_PROJECT`] and the `nvidia-*` wheels are kept.
fn resolve_gpu_wheels(
    requirements: &[String],
    python_version: &str,
    platforms: &[String],
    cache: &Path,
) -> Result<Vec<PinnedWheel>, ImageError> {
    let (wheels, tmp) = download_dir(cache)?;
    let mut cmd = pip_command(python_version, platforms, tmp.path());
    cmd.args(requirements);
    run(
        &format!("resolving the GPU runtime {requirements:?} with PyPI (about 2 GB of wheels)"),
        &mut cmd,
        "python3 with pip",
    )?;
    let mut pinned = Vec::new();
    for entry in
        std::fs::read_dir(tmp.path()).map_err(ImageError::io("reading", tmp.path().to_owned()))?
    {
        let path = entry
            .map_err(ImageError::io("reading", tmp.path().to_owned()))?
            .path();
        let filename = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some((project, version)) = wheel_name(&filename) else {
            return Err(ImageError::Wheel {
                path,
                reason: "pip left a file that is not a wheel".into(),
            });
        };
        if project != GPU_RUNTIME_PROJECT && !project.starts_with("nvidia-") {
            continue;
        }
        let (sha256, size) = file_sha256(&path)?;
        let target = wheels.join(&filename);
        std::fs::rename(&path, &target).map_err(ImageError::io("renaming into", target))?;
        pinned.push(PinnedWheel {
            project,
            version,
            filename,
            sha256,
            size,
        });
    }
    pinned.sort_by(|a, b| a.project.cmp(&b.project));
    Ok(pinned)
}

/// A wheel file name's project (normalised: lowercase, `-`) and version.
fn wheel_name(filename: &str) -> Option<(String, String)> {
    let stem = filename.strip_suffix(".whl")?;
    let mut parts = stem.split('-');
    let project = parts.next().filter(|p| !p.is_empty())?;
    let version = parts.next().filter(|v| !v.is_empty())?;
    Some((
        project.to_lowercase().replace(['_', '.'], "-"),
        version.to_owned(),
    ))
}

/// Runs `cmd`, capturing its output; an error unless it exits 0.
pub fn run(what: &str, cmd: &mut Command, hint: &'static str) -> Result<Output, ImageError> {
    let out = output(cmd, hint)?;
    if !out.status.success() {
        return Err(ImageError::Command {
            what: what.to_owned(),
            command: command_line(cmd),
            status: out.status.to_string(),
            stderr_tail: tail(&out),
        });
    }
    Ok(out)
}

/// Runs `cmd`, capturing its output, whatever its exit status.
fn output(cmd: &mut Command, hint: &'static str) -> Result<Output, ImageError> {
    cmd.output().map_err(|source| ImageError::ToolMissing {
        program: cmd.get_program().to_string_lossy().into_owned(),
        hint,
        source,
    })
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last 15 lines of a command's standard error, or of its output when
/// it wrote no errors.
fn tail(out: &Output) -> String {
    let text = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(15);
    lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
}

/// `NAME=VERSION` of each `Inst NAME (VERSION ...` line of `apt-get
/// --simulate install`, in apt's order.
fn simulated_installs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("Inst ")?.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('(')?;
            Some(format!("{name}={version}"))
        })
        .collect()
}

/// apt's RFC 822 style records: `Key: value` lines (continuations indented),
/// records separated by blank lines. Continuation lines are dropped: none
/// of the fields read here has them.
fn stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut all = Vec::new();
    let mut current = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                all.push(std::mem::take(&mut current));
            }
        } else if !line.starts_with([' ', '\t']) {
            if let Some((key, value)) = line.split_once(':') {
                current.insert(key.to_owned(), value.trim().to_owned());
            }
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_names_give_project_and_version() {
        assert_eq!(
            wheel_name("nvidia_cublas_cu12-12.9.3.13-py3-none-manylinux_2_27_x86_64.whl"),
            Some(("nvidia-cublas-cu12".into(), "12.9.3.13".into()))
        );
        assert_eq!(
            wheel_name("onnxruntime_gpu-1.26.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"),
            Some(("onnxruntime-gpu".into(), "1.26.0".into()))
        );
        assert_eq!(wheel_name("numpy-2.4.6.tar.gz"), None);
        assert_eq!(wheel_name("-1.0-py3-none-any.whl"), None);
    }

    #[test]
    fn simulated_installs_are_read_from_inst_lines() {
        let text =
            "Reading package lists...\nInst gcc-14-base (14.2.0-19 Debian:13.8/stable [amd64])\n\
                    Inst libc6 (2.41-12+deb13u5 Debian:13.8/stable [amd64]) []\n\
                    Conf libc6 (2.41-12+deb13u5 Debian:13.8/stable [amd64])\nInst broken\n";
        assert_eq!(
            simulated_installs(text),
            ["gcc-14-base=14.2.0-19", "libc6=2.41-12+deb13u5"]
        );
    }

    #[test]
    fn stanzas_are_split_on_blank_lines() {
        let text = "Package: a\nVersion: 1:2.0-1\nDescription: x\n more\n\nPackage: b\nDepends: c (>= 1), d\n";
        let s = stanzas(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("Version").map(String::as_str), Some("1:2.0-1"));
        assert_eq!(s[1].get("Depends").map(String::as_str), Some("c (>= 1), d"));
    }

    #[test]
    fn failing_commands_report_their_last_lines() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 30); do echo line$i >&2; done; exit 3",
        ]);
        let err = run("testing", &mut cmd, "sh").expect_err("exit 3");
        let text = err.to_string();
        assert!(text.contains("testing: `sh -c"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(
            text.contains("line30") && text.contains("line16") && !text.contains("line15\n"),
            "{text}"
        );
        let mut cmd = Command::new("/nonexistent/tool");
        let err = run("testing", &mut cmd, "install it").expect_err("missing");
        assert!(
            err.to_string().contains("cannot run /nonexistent/tool"),
            "{err}"
        );
    }
}
