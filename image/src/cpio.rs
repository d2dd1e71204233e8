//! The initramfs: a "newc" cpio archive (the kernel's
//! Documentation/driver-api/early-userspace/buffer-format.rst), written here
//! by hand because the format is tiny and every byte must be fixed, then
//! gzip-compressed with miniz_oxide's deflate at a fixed level.
//!
//! Fixed bytes: entries sorted by path (so every directory comes before its
//! contents), every directory listed, inode numbers 1, 2, ... in that order,
//! mtime 0, uid and gid 0, modes normalised (directories 0755, `/tmp` 1777,
//! executables 0755, other files 0644, `/dev/console` 0600), one link each;
//! the gzip header has mtime 0, no name and OS 255 (unknown).

use std::collections::BTreeMap;

use crate::error::ImageError;

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { data: Vec<u8>, executable: bool },
    CharDevice { major: u32, minor: u32 },
}

/// The archive being built: paths inside the image (no leading `/`) to
/// entries, sorted.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file at `path` (absolute or relative to the image's
    /// root) and its parent directories; mode 0755 if `executable`, else
    /// 0644.
    pub fn add_file(
        &mut self,
        path: &str,
        data: Vec<u8>,
        executable: bool,
    ) -> Result<(), ImageError> {
        if u32::try_from(data.len()).is_err() {
            return Err(ImageError::Layout(format!(
                "/{} is {} bytes, more than a cpio entry holds (4 GiB)",
                path.trim_start_matches('/'),
                data.len()
            )));
        }
        self.add(path, Entry::File { data, executable })
    }

    /// Adds a directory at `path` (0755, or 1777 for `tmp`) and its parents.
    pub fn add_dir(&mut self, path: &str) -> Result<(), ImageError> {
        let path = normalise(path)?;
        if let Some(entry) = self.entries.get(&path) {
            return match entry {
                Entry::Dir { .. } => Ok(()),
                _ => Err(ImageError::Layout(format!(
                    "/{path} is both a file and a directory"
                ))),
            };
        }
        let mode = if path == "tmp" { 0o1777 } else { 0o755 };
        self.add(&path, Entry::Dir { mode })
    }

    /// Adds a character device node (mode 0600) at `path`.
    pub fn add_char_device(
        &mut self,
        path: &str,
        major: u32,
        minor: u32,
    ) -> Result<(), ImageError> {
        self.add(path, Entry::CharDevice { major, minor })
    }

    /// The paths in the archive, sorted (`/`-prefixed).
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.entries.keys().map(|p| format!("/{p}"))
    }

    fn add(&mut self, path: &str, entry: Entry) -> Result<(), ImageError> {
        let path = normalise(path)?;
        if self.entries.contains_key(&path) {
            return Err(ImageError::Layout(format!(
                "/{path} is put into the image twice"
            )));
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.add_dir(parent)?;
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// The archive's bytes: the entries in path order, then the trailer.
    pub fn to_cpio(&self) -> Vec<u8> {
        let size: usize = self
            .entries
            .iter()
            .map(|(p, e)| {
                120 + p.len()
                    + if let Entry::File { data, .. } = e {
                        data.len()
                    } else {
                        0
                    }
            })
            .sum();
        let mut out = Vec::with_capacity(size + 128);
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir { mode } => (S_IFDIR | mode, 2, &[], (0, 0)),
                Entry::File { data, executable } => (
                    S_IFREG | if *executable { 0o755 } else { 0o644 },
                    1,
                    data,
                    (0, 0),
                ),
                Entry::CharDevice { major, minor } => (S_IFCHR | 0o600, 1, &[], (*major, *minor)),
            };
            header(&mut out, ino, mode, nlink, data.len() as u32, rdev, path);
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        header(&mut out, 0, 0, 1, 0, (0, 0), "TRAILER!!!");
        out
    }
}

/// `path` without leading or trailing `/`, checked: no empty, `.` or `..`
/// components, no NUL.
fn normalise(path: &str) -> Result<String, ImageError> {
    let trimmed = path.trim_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.contains('\0')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(ImageError::Layout(format!(
            "{path:?} is not a plain path inside the image (no empty, '.' or '..' parts)"
        )));
    }
    Ok(trimmed.to_owned())
}

/// One newc header and its NUL-terminated name, padded to 4 bytes.
fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: u32,
    rdev: (u32, u32),
    name: &str,
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        filesize,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// The deflate level of the initramfs: zlib's default, about twice as fast
/// as the best (9) for a few percent more bytes. Part of the measured
/// bytes: changing it changes every measurement.
const LEVEL: u8 = 6;

/// `data` as a gzip member (RFC 1952) with fixed header bytes: mtime 0, no
/// name, XFL 0, OS 255.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, LEVEL);
    let mut out = Vec::with_capacity(deflated.len() + 18);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_bytes_are_as_the_kernel_reads_them() {
        let mut archive = Archive::new();
        archive
            .add_file("/init", b"abcde".to_vec(), true)
            .expect("init");
        archive
            .add_char_device("dev/console", 5, 1)
            .expect("console");
        let bytes = archive.to_cpio();
        let text = String::from_utf8_lossy(&bytes);
        // Fields: ino mode uid gid nlink mtime filesize devmajor devminor
        // rdevmajor rdevminor namesize check.
        let h = |fields: [&str; 13]| format!("070701{}", fields.concat());
        let z = "00000000";
        let dev = h([
            "00000001", "000041ED", z, z, "00000002", z, z, z, z, z, z, "00000004", z,
        ]) + "dev\0\0\0";
        let console = h([
            "00000002", "00002180", z, z, "00000001", z, z, z, z, "00000005", "00000001",
            "0000000C", z,
        ]) + "dev/console\0\0\0";
        let init = h([
            "00000003", "000081ED", z, z, "00000001", z, "00000005", z, z, z, z, "00000005", z,
        ]) + "init\0\0abcde\0\0\0";
        let trailer =
            h([z, z, z, z, "00000001", z, z, z, z, z, z, "0000000B", z]) + "TRAILER!!!\0\0\0\0";
        assert_eq!(text, format!("{dev}{console}{init}{trailer}"));
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn parents_are_listed_and_paths_checked() {
        let mut archive = Archive::new();
        archive
            .add_file("usr/lib/kokon/lib.so", vec![1], false)
            .expect("file");
        archive.add_dir("/tmp").expect("tmp");
        archive
            .add_dir("usr/lib")
            .expect("an existing directory again");
        let paths: Vec<String> = archive.paths().collect();
        assert_eq!(
            paths,
            [
                "/tmp",
                "/usr",
                "/usr/lib",
                "/usr/lib/kokon",
                "/usr/lib/kokon/lib.so"
            ]
        );
        assert!(matches!(
            archive.entries.get("tmp"),
            Some(Entry::Dir { mode: 0o1777 })
        ));

        let err = archive
            .add_file("/usr/lib/kokon/lib.so", vec![2], false)
            .expect_err("twice");
        assert_eq!(
            err.to_string(),
            "image layout: /usr/lib/kokon/lib.so is put into the image twice"
        );
        let err = archive
            .add_file("usr/lib/kokon/lib.so/x", vec![2], false)
            .expect_err("under a file");
        assert!(
            err.to_string().contains("both a file and a directory"),
            "{err}"
        );
        for bad in ["../etc/passwd", "models/../../x", "a//b", "", "/", "./x"] {
            let err = archive.add_file(bad, vec![], false).expect_err(bad);
            assert!(err.to_string().contains("not a plain path"), "{bad}: {err}");
        }
    }

    #[test]
    fn gzip_is_fixed_and_decodes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let a = gzip(&data);
        assert_eq!(a, gzip(&data));
        assert_eq!(
            a.get(..10),
            Some(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255][..])
        );
        let body = a.get(10..a.len() - 8).expect("body");
        assert_eq!(
            miniz_oxide::inflate::decompress_to_vec(body).expect("inflate"),
            data
        );
        assert_eq!(a.get(a.len() - 4..), Some(&100_000u32.to_le_bytes()[..]));
    }
}
