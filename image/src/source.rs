//! Where a file of an image comes from: bytes in memory, a host file, or
//! a member of a zip archive (a Python wheel), read only when needed.
//!
//! Wheel members are inflated each time they are read instead of being
//! extracted first: the GPU runtime's libraries are 3.3 GB, which would
//! otherwise sit on disk twice (extracted, then in the data disk) while
//! the image is built.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

/// Contents of a file of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The contents themselves.
    Bytes(Vec<u8>),
    /// A host file, streamed when it is read; it must not change size
    /// meanwhile.
    File(PathBuf),
    /// A member of a zip archive, inflated when it is read (the zip
    /// crate checks its CRC-32 at the end).
    ZipMember {
        /// The archive.
        archive: PathBuf,
        /// The member's name in the archive.
        member: String,
    },
}

impl Source {
    /// Its length in bytes: a host file's size, or a member's
    /// uncompressed size as its archive records it. Fails on a host path
    /// that is not a regular file.
    pub fn size(&self) -> io::Result<u64> {
        match self {
            Self::Bytes(bytes) => Ok(bytes.len() as u64),
            Self::File(path) => {
                let meta = std::fs::metadata(path)?;
                if !meta.is_file() {
                    return Err(io::Error::other(format!(
                        "expected a regular file, found {:?}",
                        meta.file_type()
                    )));
                }
                Ok(meta.len())
            }
            Self::ZipMember { archive, member } => {
                let mut zip = open_zip(archive)?;
                let entry = zip.by_name(member).map_err(io::Error::other)?;
                Ok(entry.size())
            }
        }
    }

    /// Calls `f` with a reader of its contents.
    pub fn read_with<T>(&self, f: impl FnOnce(&mut dyn Read) -> io::Result<T>) -> io::Result<T> {
        match self {
            Self::Bytes(bytes) => f(&mut bytes.as_slice()),
            Self::File(path) => f(&mut File::open(path)?),
            Self::ZipMember { archive, member } => {
                let mut zip = open_zip(archive)?;
                let mut entry = zip.by_name(member).map_err(io::Error::other)?;
                f(&mut entry)
            }
        }
    }

    /// All of its contents.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        self.read_with(|r| {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes)?;
            Ok(bytes)
        })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => write!(f, "{} bytes in memory", bytes.len()),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::ZipMember { archive, member } => {
                write!(f, "{member} in {}", archive.display())
            }
        }
    }
}

/// The zip archive at `archive`, its central directory read.
pub(crate) fn open_zip(archive: &std::path::Path) -> io::Result<zip::ZipArchive<File>> {
    zip::ZipArchive::new(File::open(archive)?).map_err(io::Error::other)
}

/// Writes a zip archive at `path` holding `members` (name, contents),
/// deflated: a wheel for tests.
#[cfg(test)]
pub(crate) fn write_test_zip(path: &std::path::Path, members: &[(&str, &[u8])]) {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(File::create(path).expect("create"));
    for (name, data) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("start");
        zip.write_all(data).expect("write");
    }
    zip.finish().expect("finish");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive(dir: &std::path::Path, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("a.whl");
        write_test_zip(&path, members);
        path
    }

    #[test]
    fn every_kind_reads_its_contents_and_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let contents = b"the same bytes, three ways".repeat(1000);
        let host = dir.path().join("f");
        std::fs::write(&host, &contents).expect("write");
        let wheel = archive(dir.path(), &[("other", b"x"), ("lib/f.so", &contents)]);
        for source in [
            Source::Bytes(contents.clone()),
            Source::File(host.clone()),
            Source::ZipMember {
                archive: wheel.clone(),
                member: "lib/f.so".into(),
            },
        ] {
            assert_eq!(
                source.size().expect("size"),
                contents.len() as u64,
                "{source}"
            );
            assert_eq!(source.read_all().expect("read"), contents, "{source}");
        }
    }

    #[test]
    fn missing_members_and_non_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = archive(dir.path(), &[("present", b"x")]);
        let absent = Source::ZipMember {
            archive: wheel.clone(),
            member: "absent".into(),
        };
        assert!(absent.size().is_err());
        assert!(absent.read_all().is_err());
        assert_eq!(absent.to_string(), format!("absent in {}", wheel.display()));
        let not_zip = Source::ZipMember {
            archive: dir.path().join("missing.whl"),
            member: "present".into(),
        };
        assert!(not_zip.size().is_err());
        let directory = Source::File(dir.path().to_path_buf()).size().unwrap_err();
        assert!(
            directory.to_string().contains("expected a regular file"),
            "{directory}"
        );
    }

    #[test]
    fn a_corrupted_member_fails_its_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let contents = vec![0x5au8; 4096];
        let path = dir.path().join("stored.zip");
        let mut zip = zip::ZipWriter::new(File::create(&path).expect("create"));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("m", stored).expect("start");
        zip.write_all(&contents).expect("write");
        zip.finish().expect("finish");
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes
            .windows(16)
            .position(|w| w == [0x5au8; 16])
            .expect("the stored contents");
        bytes[at + 100] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let source = Source::ZipMember {
            archive: path,
            member: "m".into(),
        };
        assert!(source.read_all().is_err(), "a CRC-32 mismatch must fail");
    }
}
