//! Writer for minimal, byte-for-byte reproducible, uncompressed EROFS images.
//!
//! On-disk format (linux `fs/erofs/erofs_fs.h`), 4096-byte blocks:
//! * block 0: 1024 zero bytes, then the 128-byte superblock (magic
//!   0xE0F5E1E2, `blkszbits` 12, `meta_blkaddr` 0, no feature bits, no
//!   checksum, `build_time` 0), then the inodes from byte 1152 (the root is
//!   the first one, nid 36), continuing into the following blocks as needed;
//!   nid = byte offset / 32.
//! * then each inode's data, in inode order, block aligned and contiguous
//!   (`EROFS_INODE_FLAT_PLAIN`, start block in `i_u.raw_blkaddr`).
//!
//! Inodes are compact (32 bytes) unless a file is larger than `u32::MAX`
//! bytes or a directory has too many links for 16 bits; those get extended
//! (64-byte) inodes, never straddling a block. Directory data are blocks of
//! 12-byte `erofs_dirent`s followed by their names (no NUL), entries sorted
//! bytewise including "." and "..", never straddling a block; the last name
//! of a block ends at the zero padding or at `i_size`, which counts the bytes
//! of the last block actually used. Every inode has uid/gid 0 and mtime 0.
//!
//! Hand-written: no Rust crate writes EROFS, and the image builder keeps to
//! its own code for every byte of the image rather than a host tool whose
//! version would change the output. Checked with erofs-utils 1.5
//! (`fsck.erofs --extract` of a tree of edge cases) and Linux 6.18 (mounted
//! and compared); `image/tests/boot.rs` mounts one in the guest's 6.12.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use crate::source::Source;

const BLOCK: u64 = 4096;
const MAGIC: u32 = 0xE0F5_E1E2;
const SUPER_OFFSET: usize = 1024;
const FIRST_INODE: u64 = 1152;
const ROOT_NID: u16 = (FIRST_INODE / 32) as u16;
const DIRENT: usize = 12;
const NAME_MAX: usize = 255;
const FT_REG: u8 = 1;
const FT_DIR: u8 = 2;
const WRITING: &str = "writing the image";

/// One regular file of the image.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the image, e.g. "models/x.gguf": no leading slash,
    /// '/'-separated, no "." or ".." components, no empty components.
    pub path: String,
    /// Where the file's contents come from.
    pub source: Source,
    /// Mode 0755 when set, 0644 otherwise.
    pub executable: bool,
}

/// Why an image could not be written.
#[derive(Debug)]
pub enum ErofsError {
    /// A path is malformed.
    BadPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A component of a path is longer than 255 bytes.
    NameTooLong {
        /// The offending path.
        path: String,
        /// The component's length in bytes.
        len: usize,
    },
    /// Two entries have the same path.
    Duplicate {
        /// The repeated path.
        path: String,
    },
    /// A path is a file in one entry and a directory of another.
    FileAndDir {
        /// The path (prefix) used both ways.
        path: String,
    },
    /// A source is not a regular file, or its size changed while writing.
    BadSource {
        /// The source, described.
        source: String,
        /// What was expected of it.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The image would exceed a limit of the on-disk format.
    TooLarge {
        /// What overflows.
        what: &'static str,
        /// The format's limit.
        limit: u64,
        /// The value needed.
        found: u64,
    },
    /// An I/O operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl fmt::Display for ErofsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPath { path, reason } => write!(
                f,
                "erofs: bad path {path:?}: expected relative '/'-separated names, found {reason}"
            ),
            Self::NameTooLong { path, len } => write!(
                f,
                "erofs: name in {path:?} too long: expected at most {NAME_MAX} bytes, found {len}"
            ),
            Self::Duplicate { path } => write!(f, "erofs: duplicate path {path:?}"),
            Self::FileAndDir { path } => {
                write!(
                    f,
                    "erofs: {path:?} is used both as a file and as a directory"
                )
            }
            Self::BadSource {
                source,
                expected,
                found,
            } => write!(
                f,
                "erofs: source {source}: expected {expected}, found {found}"
            ),
            Self::TooLarge { what, limit, found } => {
                write!(
                    f,
                    "erofs: too large: {what}: expected at most {limit}, found {found}"
                )
            }
            Self::Io { context, source } => write!(f, "erofs: {context}: {source}"),
        }
    }
}

impl std::error::Error for ErofsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ErofsError {
    let context = context.into();
    move |source| ErofsError::Io { context, source }
}

/// Writes `bytes` at `off` in `buf`; callers size `buf` so that it fits.
fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

enum Kind {
    Dir(BTreeMap<Vec<u8>, usize>),
    File { entry: usize, exec: bool },
}

struct Node {
    kind: Kind,
    parent: usize,
    size: u64,
    nlink: u32,
    nid: u64,
    blkaddr: u64,
}

impl Node {
    fn new(kind: Kind, parent: usize) -> Self {
        Node {
            kind,
            parent,
            size: 0,
            nlink: 1,
            nid: 0,
            blkaddr: 0,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    fn extended(&self) -> bool {
        self.size > u64::from(u32::MAX) || self.nlink > u32::from(u16::MAX)
    }

    /// The on-disk inode: 32 bytes (compact) or 64 (extended), FLAT_PLAIN.
    fn inode(&self, ino: u32) -> Vec<u8> {
        let mode: u16 = match self.kind {
            Kind::Dir(_) => 0o040755,
            Kind::File { exec: true, .. } => 0o100755,
            Kind::File { exec: false, .. } => 0o100644,
        };
        // Fits: the layout refuses images of more than u32::MAX blocks.
        let blkaddr = (self.blkaddr as u32).to_le_bytes();
        let mut b = vec![0u8; if self.extended() { 64 } else { 32 }];
        put(&mut b, 4, &mode.to_le_bytes());
        put(&mut b, 16, &blkaddr);
        put(&mut b, 20, &ino.to_le_bytes());
        if self.extended() {
            put(&mut b, 0, &1u16.to_le_bytes()); // i_format bit 0: extended
            put(&mut b, 8, &self.size.to_le_bytes());
            put(&mut b, 44, &self.nlink.to_le_bytes());
        } else {
            put(&mut b, 6, &(self.nlink as u16).to_le_bytes());
            put(&mut b, 8, &(self.size as u32).to_le_bytes());
        }
        b
    }
}

/// Builds the tree (node 0 is the root), validating every path.
fn build_tree(entries: &[Entry]) -> Result<Vec<Node>, ErofsError> {
    let mut nodes = vec![Node::new(Kind::Dir(BTreeMap::new()), 0)];
    for (index, entry) in entries.iter().enumerate() {
        let path = &entry.path;
        let bad = |reason| ErofsError::BadPath {
            path: path.clone(),
            reason,
        };
        if path.is_empty() {
            return Err(bad("an empty path"));
        }
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts {
            match *part {
                "" => return Err(bad("an empty component (leading, trailing or double '/')")),
                "." | ".." => return Err(bad("a \".\" or \"..\" component")),
                p if p.contains('\0') => return Err(bad("a NUL byte")),
                p if p.len() > NAME_MAX => {
                    return Err(ErofsError::NameTooLong {
                        path: path.clone(),
                        len: p.len(),
                    })
                }
                _ => {}
            }
        }
        let mut cur = 0;
        for (depth, part) in parts.iter().enumerate() {
            let last = depth + 1 == parts.len();
            let next = nodes.len();
            let Some(Node {
                kind: Kind::Dir(children),
                ..
            }) = nodes.get_mut(cur)
            else {
                let prefix = parts.get(..depth).unwrap_or_default().join("/");
                return Err(ErofsError::FileAndDir { path: prefix });
            };
            match children.get(part.as_bytes()).copied() {
                Some(child) if last => {
                    let dir = nodes.get(child).is_some_and(Node::is_dir);
                    let path = path.clone();
                    return Err(if dir {
                        ErofsError::FileAndDir { path }
                    } else {
                        ErofsError::Duplicate { path }
                    });
                }
                Some(child) => cur = child,
                None => {
                    children.insert(part.as_bytes().to_vec(), next);
                    let kind = if last {
                        Kind::File {
                            entry: index,
                            exec: entry.executable,
                        }
                    } else {
                        Kind::Dir(BTreeMap::new())
                    };
                    nodes.push(Node::new(kind, cur));
                    cur = next;
                }
            }
        }
    }
    Ok(nodes)
}

/// A directory's entries, "." and ".." included, sorted bytewise by name:
/// (name, node, file type).
fn dir_entries(nodes: &[Node], id: usize) -> Vec<(&[u8], usize, u8)> {
    let Some(Node {
        kind: Kind::Dir(children),
        parent,
        ..
    }) = nodes.get(id)
    else {
        return Vec::new();
    };
    let mut out = vec![(&b"."[..], id, FT_DIR), (&b".."[..], *parent, FT_DIR)];
    for (name, &child) in children {
        let ft = if nodes.get(child).is_some_and(Node::is_dir) {
            FT_DIR
        } else {
            FT_REG
        };
        out.push((name.as_slice(), child, ft));
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

/// Splits directory entries (given their name lengths) into blocks so that
/// none straddles a block: each block's index range, and the bytes used in
/// the last block.
fn pack_dir(lens: &[usize]) -> (Vec<(usize, usize)>, u64) {
    let (mut blocks, mut start, mut used) = (Vec::new(), 0, 0);
    for (i, len) in lens.iter().enumerate() {
        if used + DIRENT + len > BLOCK as usize {
            blocks.push((start, i));
            (start, used) = (i, 0);
        }
        used += DIRENT + len;
    }
    blocks.push((start, lens.len()));
    (blocks, used as u64)
}

/// A directory's data: whole blocks, zero padded (i_size excludes the
/// padding of the last block).
fn dir_data(nodes: &[Node], id: usize) -> Vec<u8> {
    let ents = dir_entries(nodes, id);
    let lens: Vec<usize> = ents.iter().map(|e| e.0.len()).collect();
    let (blocks, _) = pack_dir(&lens);
    let mut buf = vec![0u8; blocks.len() * BLOCK as usize];
    for (chunk, &(start, end)) in buf.chunks_mut(BLOCK as usize).zip(&blocks) {
        let mut nameoff = (end - start) * DIRENT;
        for (slot, (name, node, ft)) in ents.get(start..end).unwrap_or_default().iter().enumerate()
        {
            let nid = nodes.get(*node).map_or(0, |n| n.nid);
            put(chunk, slot * DIRENT, &nid.to_le_bytes());
            put(chunk, slot * DIRENT + 8, &(nameoff as u16).to_le_bytes());
            put(chunk, slot * DIRENT + 10, &[*ft]);
            put(chunk, nameoff, name);
            nameoff += name.len();
        }
    }
    buf
}

fn source_len(source: &Source) -> Result<u64, ErofsError> {
    source
        .size()
        .map_err(io_err(format!("reading the size of {source}")))
}

/// Counts what it writes, so that padding can aim at absolute offsets.
struct Out<'a> {
    w: BufWriter<&'a mut File>,
    pos: u64,
}

impl Write for Out<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.w.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

impl Out<'_> {
    fn pad_to(&mut self, target: u64) -> Result<(), ErofsError> {
        if self.pos > target {
            let msg = format!(
                "layout error: at byte {}, expected at most {target}",
                self.pos
            );
            return Err(io_err(WRITING)(io::Error::other(msg)));
        }
        let zeros = [0u8; BLOCK as usize];
        while self.pos < target {
            let n = (target - self.pos).min(BLOCK) as usize;
            self.write_all(zeros.get(..n).unwrap_or_default())
                .map_err(io_err(WRITING))?;
        }
        Ok(())
    }
}

fn copy_source(w: &mut Out<'_>, source: &Source, size: u64) -> Result<(), ErofsError> {
    let (copied, extra) = source
        .read_with(|r| {
            let copied = io::copy(&mut r.take(size), w)?;
            Ok((copied, io::copy(r, &mut io::sink())?))
        })
        .map_err(io_err(format!("copying {source} into the image")))?;
    if copied != size || extra != 0 {
        return Err(ErofsError::BadSource {
            source: source.to_string(),
            expected: format!("{size} bytes (its size when the image was laid out)"),
            found: format!("{} bytes", copied + extra),
        });
    }
    Ok(())
}

/// Writes the filesystem holding `entries` (directories implied by paths)
/// into `out` from offset 0 and returns its length, a multiple of 4096.
///
/// The image depends only on the paths, contents and executable flags of
/// `entries` (in any order) and on `uuid`. File contents are streamed.
/// Bytes of `out` beyond the returned length are left untouched. Refuses
/// duplicate paths, a path that is both a file and a directory, malformed
/// paths, names over 255 bytes, and images over the format's limits.
pub fn write(out: &mut File, entries: &[Entry], uuid: [u8; 16]) -> Result<u64, ErofsError> {
    let mut nodes = build_tree(entries)?;
    for node in nodes.iter_mut() {
        if let Kind::File { entry, .. } = node.kind {
            node.size = match entries.get(entry) {
                Some(e) => source_len(&e.source)?,
                None => 0,
            };
        }
    }
    // Inode order: breadth first from the root, children by name.
    let mut order = Vec::with_capacity(nodes.len());
    let mut queue = VecDeque::from([0usize]);
    while let Some(id) = queue.pop_front() {
        order.push(id);
        if let Some(Node {
            kind: Kind::Dir(children),
            ..
        }) = nodes.get(id)
        {
            queue.extend(children.values().copied());
        }
    }
    if u32::try_from(order.len()).is_err() {
        let (what, limit, found) = ("inodes", u32::MAX.into(), order.len() as u64);
        return Err(ErofsError::TooLarge { what, limit, found });
    }
    for &id in &order {
        let ents = dir_entries(&nodes, id);
        if ents.is_empty() {
            continue;
        }
        let subdirs = ents
            .iter()
            .filter(|e| e.2 == FT_DIR)
            .count()
            .saturating_sub(2);
        let lens: Vec<usize> = ents.iter().map(|e| e.0.len()).collect();
        let (blocks, last) = pack_dir(&lens);
        if let Some(node) = nodes.get_mut(id) {
            node.size = (blocks.len() as u64 - 1) * BLOCK + last;
            node.nlink = u32::try_from(subdirs + 2).unwrap_or(u32::MAX);
        }
    }
    // Metadata: inodes from byte 1152; an extended inode never straddles.
    let mut pos = FIRST_INODE;
    for &id in &order {
        if let Some(node) = nodes.get_mut(id) {
            let isize = if node.extended() { 64 } else { 32 };
            if pos % BLOCK + isize > BLOCK {
                pos += 32;
            }
            node.nid = pos / 32;
            pos += isize;
        }
    }
    // Data: contiguous, block aligned, in inode order; empty files get 0.
    let mut blocks = pos.div_ceil(BLOCK);
    for &id in &order {
        if let Some(node) = nodes.get_mut(id) {
            let n = node.size.div_ceil(BLOCK);
            if n > 0 {
                node.blkaddr = blocks;
                blocks += n;
            }
        }
    }
    if blocks > u64::from(u32::MAX) {
        let (what, limit) = ("image size in 4096-byte blocks", u32::MAX.into());
        return Err(ErofsError::TooLarge {
            what,
            limit,
            found: blocks,
        });
    }

    let mut head = vec![0u8; FIRST_INODE as usize];
    let sb = SUPER_OFFSET;
    put(&mut head, sb, &MAGIC.to_le_bytes());
    put(&mut head, sb + 12, &[12]); // blkszbits
    put(&mut head, sb + 14, &ROOT_NID.to_le_bytes());
    put(&mut head, sb + 16, &(order.len() as u64).to_le_bytes()); // inos
    put(&mut head, sb + 36, &(blocks as u32).to_le_bytes()); // blocks
    put(&mut head, sb + 48, &uuid);

    out.seek(SeekFrom::Start(0))
        .map_err(io_err("seeking to the image start"))?;
    let mut w = Out {
        w: BufWriter::with_capacity(1 << 20, out),
        pos: 0,
    };
    w.write_all(&head).map_err(io_err(WRITING))?;
    for (ino, &id) in (1u32..).zip(&order) {
        if let Some(node) = nodes.get(id) {
            w.pad_to(node.nid * 32)?;
            w.write_all(&node.inode(ino)).map_err(io_err(WRITING))?;
        }
    }
    for &id in &order {
        let Some(node) = nodes.get(id).filter(|n| n.size > 0) else {
            continue;
        };
        w.pad_to(node.blkaddr * BLOCK)?;
        match node.kind {
            Kind::Dir(_) => w
                .write_all(&dir_data(&nodes, id))
                .map_err(io_err(WRITING))?,
            Kind::File { entry, .. } => {
                if let Some(e) = entries.get(entry) {
                    copy_source(&mut w, &e.source, node.size)?;
                }
            }
        }
    }
    w.pad_to(blocks * BLOCK)?;
    w.flush().map_err(io_err(WRITING))?;
    Ok(blocks * BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            source: Source::Bytes(data.to_vec()),
            executable: false,
        }
    }

    fn image(entries: &[Entry]) -> Result<Vec<u8>, ErofsError> {
        let mut f = tempfile::tempfile().map_err(io_err("tempfile"))?;
        let len = write(&mut f, entries, [0; 16])?;
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0)).map_err(io_err("seek"))?;
        f.read_to_end(&mut buf).map_err(io_err("read"))?;
        assert_eq!(buf.len() as u64, len);
        assert_eq!(len % BLOCK, 0);
        Ok(buf)
    }

    fn small_tree() -> Vec<Entry> {
        vec![
            file("hello.txt", b"hello\n"),
            file("empty", b""),
            file("models/cfg.json", b"{}"),
            Entry {
                executable: true,
                ..file("bin/run", b"#!/bin/sh\n")
            },
            file("models/deep/x.bin", &[7u8; 4097]),
        ]
    }

    #[test]
    fn superblock_fields() {
        let img = image(&small_tree()).unwrap();
        let sb = &img[1024..1152];
        assert_eq!(&sb[0..4], &MAGIC.to_le_bytes());
        assert_eq!(sb[12], 12);
        assert_eq!(u16::from_le_bytes([sb[14], sb[15]]), 36);
        assert_eq!(u64::from_le_bytes(sb[16..24].try_into().unwrap()), 9); // 4 dirs + 5 files
        let blocks = u32::from_le_bytes(sb[36..40].try_into().unwrap());
        assert_eq!(u64::from(blocks) * BLOCK, img.len() as u64);
        // Root inode: compact, directory 0755, nlink 2 + 2 subdirs.
        let root = &img[1152..1184];
        assert_eq!(u16::from_le_bytes([root[4], root[5]]), 0o040755);
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 4);
    }

    #[test]
    fn deterministic_and_order_independent() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("big");
        std::fs::write(&host, vec![3u8; 10_000]).unwrap();
        let mut entries = small_tree();
        entries.push(Entry {
            path: "m/big".into(),
            source: Source::File(host),
            executable: false,
        });
        let a = image(&entries).unwrap();
        entries.reverse();
        assert_eq!(a, image(&entries).unwrap());
    }

    /// Known answer, recorded after fsck.erofs 1.5 --extract reproduced the
    /// tree and the kernel mounted it: any change to the format shows here.
    #[test]
    fn known_answer() {
        let digest = Sha256::digest(image(&small_tree()).unwrap());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "91e389f142299d92085b48ce43c3d3b69b135581e27735f906545759f1215abf"
        );
    }

    #[test]
    fn directory_blocks_never_straddle() {
        let names: Vec<String> = (0..300)
            .map(|i| format!("{i:03}-{}", "n".repeat(200)))
            .collect();
        let lens: Vec<usize> = names.iter().map(String::len).collect();
        let (blocks, last) = pack_dir(&lens);
        assert!(blocks.len() > 10);
        for &(s, e) in &blocks {
            assert!(lens[s..e].iter().map(|l| l + DIRENT).sum::<usize>() <= BLOCK as usize);
        }
        assert_eq!(blocks.last().unwrap().1, 300);
        assert!(last > 0 && last <= BLOCK);
    }

    fn refused(entries: &[Entry]) -> ErofsError {
        image(entries).expect_err("must be refused")
    }

    #[test]
    fn refusals() {
        for bad in ["", "/a", "a/", "a//b", "./a", "a/..", "a/./b", "a\0b"] {
            assert!(
                matches!(refused(&[file(bad, b"")]), ErofsError::BadPath { .. }),
                "{bad:?}"
            );
        }
        let long = "x".repeat(256);
        let err = refused(&[file(&format!("d/{long}"), b"")]);
        assert!(matches!(err, ErofsError::NameTooLong { len: 256, .. }));
        assert!(err
            .to_string()
            .contains("expected at most 255 bytes, found 256"));
        assert!(image(&[file(&"x".repeat(255), b"")]).is_ok());
        let dup = refused(&[file("a/b", b"1"), file("a/b", b"2")]);
        assert!(matches!(dup, ErofsError::Duplicate { .. }));
        for pair in [
            [file("a", b""), file("a/b", b"")],
            [file("a/b", b""), file("a", b"")],
        ] {
            assert!(matches!(refused(&pair), ErofsError::FileAndDir { .. }));
        }
        let dir = tempfile::tempdir().unwrap();
        let not_file = Source::File(dir.path().to_path_buf());
        let err = refused(&[Entry {
            source: not_file,
            ..file("d", b"")
        }]);
        assert!(matches!(err, ErofsError::Io { .. }), "{err}");
        assert!(err.to_string().contains("expected a regular file"), "{err}");
        let missing = Source::File(dir.path().join("missing"));
        let err = refused(&[Entry {
            source: missing,
            ..file("m", b"")
        }]);
        assert!(matches!(err, ErofsError::Io { .. }), "{err}");
    }
}
