//! Free-space checks before a build's large steps. A GPU image downloads
//! 2 GB of wheels, compiles its modules in a build root of about 1.5 GB and
//! writes a 3.3 GB data disk: running out of space halfway says less, and
//! later, than a refusal up front that names the directory, what needs the
//! space, and how much is free.
//!
//! Needs are summed per file system (directories on one device share its
//! free space), and a directory that does not exist yet is charged to its
//! nearest existing ancestor.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::error::ImageError;

/// Space that one step of the build will take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// What takes it, e.g. "the data disk".
    pub what: String,
    /// Where it goes.
    pub dir: PathBuf,
    /// How many bytes.
    pub bytes: u64,
}

/// One gibibyte, for estimates.
pub const GIB: u64 = 1 << 30;

/// Refuses when the free space of some file system is less than what
/// `needs` will take of it, naming each need.
pub fn check(needs: &[Need]) -> Result<(), ImageError> {
    check_with(needs, file_system)
}

/// [`check`] with the file system of a directory (its device and free
/// bytes) given by `fs_of`.
fn check_with(
    needs: &[Need],
    fs_of: impl Fn(&Path) -> io::Result<(u64, u64)>,
) -> Result<(), ImageError> {
    let mut by_fs: BTreeMap<u64, (u64, u64, Vec<&Need>)> = BTreeMap::new();
    for need in needs {
        let existing = nearest_existing(&need.dir);
        let (device, free) = fs_of(&existing).map_err(ImageError::io(
            "reading the free space of",
            existing.clone(),
        ))?;
        let entry = by_fs.entry(device).or_insert((free, 0, Vec::new()));
        entry.1 = entry.1.saturating_add(need.bytes);
        entry.2.push(need);
    }
    for (free, needed, parts) in by_fs.into_values() {
        if needed > free {
            let parts: Vec<String> = parts
                .iter()
                .map(|n| format!("{} in {}: {}", n.what, n.dir.display(), human(n.bytes)))
                .collect();
            return Err(ImageError::NoSpace {
                needed: human(needed),
                free: human(free),
                parts: parts.join("; "),
            });
        }
    }
    Ok(())
}

/// The device and the bytes an unprivileged user may still write of the
/// file system holding `dir`.
fn file_system(dir: &Path) -> io::Result<(u64, u64)> {
    let device = std::fs::metadata(dir)?.dev();
    let stat = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    Ok((device, free))
}

/// `dir`, or its nearest ancestor that exists (where it will be created).
fn nearest_existing(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    absolute
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

/// Bytes as GB with one decimal (MB below 1 GB), for messages.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b => format!("{:.1} MB", b as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(what: &str, dir: &str, bytes: u64) -> Need {
        Need {
            what: what.into(),
            dir: dir.into(),
            bytes,
        }
    }

    /// "/usr" and "/etc" (which exist, as the directories checked must)
    /// on device 1 with 10 GB free, "/" on device 2 with 4 GB free.
    fn fake(dir: &Path) -> io::Result<(u64, u64)> {
        match dir.to_str() {
            Some("/") => Ok((2, 4_000_000_000)),
            Some(_) => Ok((1, 10_000_000_000)),
            None => Err(io::Error::other("not UTF-8")),
        }
    }

    #[test]
    fn needs_on_one_file_system_add_up_and_are_each_named() {
        let fits = [
            need("wheels", "/usr", 6_000_000_000),
            need("disk", "/etc", 4_000_000_000),
        ];
        check_with(&fits, fake).expect("10 GB of 10 GB");
        let over = [
            need("wheels", "/usr", 6_000_000_000),
            need("disk", "/etc", 4_500_000_000),
        ];
        let err = check_with(&over, fake)
            .expect_err("10.5 GB of 10 GB")
            .to_string();
        assert!(err.contains("needs 10.5 GB"), "{err}");
        assert!(err.contains("has 10.0 GB free"), "{err}");
        assert!(
            err.contains("wheels in /usr: 6.0 GB; disk in /etc: 4.5 GB"),
            "{err}"
        );
    }

    #[test]
    fn each_file_system_is_checked_against_its_own_free_space() {
        // 6 GB on device 1 and 3 GB on device 2 fit, though 9 GB exceed
        // either one's free space.
        let fits = [
            need("wheels", "/usr", 6_000_000_000),
            need("root", "/", 3_000_000_000),
        ];
        check_with(&fits, fake).expect("each fits its own");
        let over = [
            need("wheels", "/usr", 1_000),
            need("root", "/", 5_000_000_000),
        ];
        let err = check_with(&over, fake)
            .expect_err("5 GB of 4 GB")
            .to_string();
        assert!(err.contains("root in /: 5.0 GB"), "{err}");
        assert!(!err.contains("wheels"), "{err}");
    }

    #[test]
    fn a_directory_yet_to_be_made_counts_against_its_existing_ancestor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let later = dir.path().join("out/not/yet");
        assert_eq!(nearest_existing(&later), dir.path());
        check(&[need("small", later.to_str().expect("utf-8"), 1)]).expect("1 byte fits");
        let err = check(&[need("huge", later.to_str().expect("utf-8"), u64::MAX / 2)])
            .expect_err("no file system here has 4.6 EB free")
            .to_string();
        assert!(err.contains("huge in"), "{err}");
        assert!(err.contains("free"), "{err}");
    }
}
