//! The one error type of image building: each variant names the file,
//! package or command, and what was expected against what was found.

use std::path::PathBuf;

use crate::source::Source;

/// Why building the guest image, or refreshing its lock, failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", "creating").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A tool the build runs (apt-get, apt-cache, dpkg-deb, python3 -m pip)
    /// is not installed.
    #[error("cannot run {program}: {source} ({hint})")]
    ToolMissing {
        /// The program.
        program: String,
        /// What would install it.
        hint: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{what}: `{command}` failed ({status}); its last lines:\n{stderr_tail}")]
    Command {
        /// The step it was for.
        what: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its standard error (and output).
        stderr_tail: String,
    },
    /// The lock file is unreadable or inconsistent.
    #[error("lock file {path}: {reason}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A pinned package version is not in the archive's index any more
    /// (Debian removes superseded versions at point releases).
    #[error(
        "{package}={version} is no longer served by {archive}; refresh the lock with \
         `kokon image lock` (just image-lock) and commit image/debian.lock"
    )]
    NotServed {
        /// The package.
        package: String,
        /// The pinned version.
        version: String,
        /// The archive's host, e.g. deb.debian.org.
        archive: String,
    },
    /// A downloaded or cached file's SHA-256 is not the pinned one.
    #[error("SHA-256 of {what}: expected {expected} ({pinned_by}), found {found}")]
    Digest {
        /// The file (package or wheel).
        what: String,
        /// The pinned digest.
        expected: String,
        /// Where the expected digest comes from.
        pinned_by: String,
        /// The digest of the bytes at hand.
        found: String,
    },
    /// A shared library that a binary needs is in none of the locked packages.
    #[error(
        "{library} (DT_NEEDED of {needed_by}) is in none of the locked packages \
         (searched {searched}); add the Debian package that ships it to [request] \
         packages in the lock and refresh it"
    )]
    MissingLibrary {
        /// The library's name as the binary asks for it.
        library: String,
        /// The binary (its path inside the image) that needs it.
        needed_by: String,
        /// The directories searched, inside the image.
        searched: String,
    },
    /// An ELF file (binary, library, kernel module) could not be read as one.
    #[error("ELF {path}: {reason}")]
    Elf {
        /// The file (host path, or path inside a package).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A kernel module the image needs cannot be provided.
    #[error("kernel module {module}: {reason}")]
    Module {
        /// The module's name.
        module: String,
        /// What is wrong.
        reason: String,
    },
    /// The locked packages or the spec do not give the image's layout
    /// (no kernel, two kernels, no firmware, a bad or clashing path).
    #[error("image layout: {0}")]
    Layout(String),
    /// A wheel (ONNX Runtime, the GPU runtime) is not what the lock
    /// describes, or cannot be read.
    #[error("wheel {path}: {reason}")]
    Wheel {
        /// The wheel file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file system has less free space than the build will take of it.
    #[error(
        "not enough free space: the build needs {needed} of a file system that has {free} free \
         ({parts}); free some, or build elsewhere (TMPDIR for the build root, --out, the cache)"
    )]
    NoSpace {
        /// The bytes needed, for people ("6.1 GB").
        needed: String,
        /// The bytes free.
        free: String,
        /// Each need: what, where, how much.
        parts: String,
    },
    /// A manifest.json could not be read or written.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ImageError {
    /// An [`ImageError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// An error reading `source`: the host file's I/O error, a wheel
    /// member's error naming the member.
    pub(crate) fn reading(source: &Source, error: std::io::Error) -> Self {
        match source {
            Source::ZipMember { archive, member } => Self::Wheel {
                path: archive.clone(),
                reason: format!("reading {member}: {error}"),
            },
            Source::File(path) => Self::Io {
                action: "reading",
                path: path.clone(),
                source: error,
            },
            Source::Bytes(_) => Self::Layout(format!("reading {source}: {error}")),
        }
    }
}
