//! dm-verity hash trees, bit-for-bit as `veritysetup format --no-superblock --format=1
//! --hash=sha256 --data-block-size=4096 --hash-block-size=4096 --hash-offset=<data size>`
//! writes them, i.e. what the kernel's dm-verity target (format version 1) checks.
//!
//! Format (kernel `Documentation/admin-guide/device-mapper/verity.rst`, `dm-verity-target.c`
//! `verity_ctr`, cryptsetup `lib/verity/verity_hash.c`):
//! * every digest is `SHA256(salt || block)` (version 1 prepends the salt);
//! * digests sit in 32-byte slots (the digest size rounded up to a power of two), 128 per
//!   4096-byte hash block; unused slots and the tail of a level's last block are zero;
//! * level 0 hashes the data blocks, level `i + 1` hashes the blocks of level `i`; the number
//!   of levels is the smallest `L` with `data_blocks <= 128^L`, so a single data block has no
//!   hash blocks at all and the root hash is then the digest of that data block;
//! * the root hash is the digest of the single block of the top level;
//! * on disk, starting at the hash start block, the TOP level comes first and level 0 last
//!   (`hash_level_block[i]` is assigned for `i = levels - 1` down to `0`).

use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// Size in bytes of both data blocks and hash blocks.
pub const BLOCK_SIZE: u64 = 4096;
/// Longest salt `veritysetup` accepts, in bytes.
pub const MAX_SALT_LEN: usize = 256;

const BLOCK: usize = 4096;
const DIGEST: usize = 32;
/// Digests per hash block: 4096 / 32 (a SHA-256 digest is already a power of two).
const PER_BLOCK: usize = BLOCK / DIGEST;
/// Buffer size for streaming reads and writes.
const IO_BUF: usize = 1 << 20;

/// dm-verity parameters of a data area and its appended hash tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verity {
    /// Number of 4096-byte data blocks covered by the tree.
    pub data_blocks: u64,
    /// Device block (4096-byte units) where the hash tree starts, i.e. its top level.
    pub hash_start_block: u64,
    /// Root hash: `SHA256(salt || top hash block)`, or of the data block when there is only one.
    pub root_hash: [u8; 32],
    /// Salt prepended to every hashed block.
    pub salt: Vec<u8>,
    /// Number of 4096-byte hash blocks in the tree (0 for a single data block).
    pub hash_blocks: u64,
}

/// Errors from building or checking a dm-verity hash tree.
#[derive(Debug)]
pub enum VerityError {
    /// Reading, writing or resizing the file failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The data length is zero or not a multiple of 4096 bytes.
    BadDataLength {
        /// The length given, in bytes.
        found: u64,
    },
    /// The salt is longer than [`MAX_SALT_LEN`].
    SaltTooLong {
        /// The salt length given, in bytes.
        found: usize,
    },
    /// The file is shorter than the data area (and tree) it should hold.
    FileTooShort {
        /// Minimum length in bytes.
        expected: u64,
        /// Actual length in bytes.
        found: u64,
    },
    /// A [`Verity`] field is inconsistent with the others.
    BadParameters {
        /// Which field.
        what: &'static str,
        /// The value (or, for the hash start, the minimum) it must have.
        expected: u64,
        /// The value it has.
        found: u64,
    },
    /// Block numbers or byte offsets do not fit in 64 bits.
    TooLarge,
    /// A data block does not hash to its entry in level 0 (or to the root hash if it is alone).
    DataBlockMismatch {
        /// Index of the data block.
        block: u64,
        /// Digest stored in the tree (or the root hash).
        expected: [u8; 32],
        /// Digest of the data block as read.
        found: [u8; 32],
    },
    /// A hash block does not hash to its entry in the level above (or to the root hash).
    HashBlockMismatch {
        /// Tree level (0 hashes the data).
        level: usize,
        /// Index of the block within its level.
        index: u64,
        /// Absolute 4096-byte block number on the device.
        device_block: u64,
        /// Digest stored in the level above (or the root hash for the top level).
        expected: [u8; 32],
        /// Digest of the hash block as read.
        found: [u8; 32],
    },
}

impl fmt::Display for VerityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, source } => write!(f, "dm-verity: {what}: {source}"),
            Self::BadDataLength { found } => write!(
                f,
                "dm-verity: data length must be a non-zero multiple of {BLOCK_SIZE} bytes, found {found}"
            ),
            Self::SaltTooLong { found } => write!(
                f,
                "dm-verity: salt must be at most {MAX_SALT_LEN} bytes, found {found}"
            ),
            Self::FileTooShort { expected, found } => write!(
                f,
                "dm-verity: file must be at least {expected} bytes long, found {found}"
            ),
            Self::BadParameters { what, expected, found } => {
                write!(f, "dm-verity: {what}: expected {expected}, found {found}")
            }
            Self::TooLarge => write!(f, "dm-verity: block offsets overflow 64 bits"),
            Self::DataBlockMismatch { block, expected, found } => write!(
                f,
                "dm-verity: data block {block} is corrupt: expected digest {}, found {}",
                hex::encode(expected),
                hex::encode(found)
            ),
            Self::HashBlockMismatch { level, index, device_block, expected, found } => write!(
                f,
                "dm-verity: hash block {index} of level {level} (device block {device_block}) is \
                 corrupt: expected digest {} (from the level above, or the root hash), found {}",
                hex::encode(expected),
                hex::encode(found)
            ),
        }
    }
}

impl std::error::Error for VerityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Maps an `io::Error` into [`VerityError::Io`] with a description of the operation.
fn io(what: &'static str) -> impl FnOnce(io::Error) -> VerityError {
    move |source| VerityError::Io { what, source }
}

/// Number of hash blocks in each level, level 0 (the one hashing the data) first.
fn level_sizes(data_blocks: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut n = data_blocks;
    while n > 1 {
        n = n.div_ceil(PER_BLOCK as u64);
        sizes.push(n);
    }
    sizes
}

/// The number of hash blocks in the tree of `data_blocks` data blocks.
pub fn hash_blocks(data_blocks: u64) -> u64 {
    level_sizes(data_blocks).iter().sum()
}

/// First device block of each level (indexed like `sizes`): the top level starts at
/// `hash_start`, each lower level follows the one above it, level 0 comes last.
/// Returns the starts and the block just past the tree.
fn level_starts(hash_start: u64, sizes: &[u64]) -> Result<(Vec<u64>, u64), VerityError> {
    let mut starts = vec![0; sizes.len()];
    let mut pos = hash_start;
    for (start, size) in starts.iter_mut().zip(sizes).rev() {
        *start = pos;
        pos = pos.checked_add(*size).ok_or(VerityError::TooLarge)?;
    }
    Ok((starts, pos))
}

/// Byte offset of a 4096-byte block.
fn byte_offset(block: u64) -> Result<u64, VerityError> {
    block.checked_mul(BLOCK_SIZE).ok_or(VerityError::TooLarge)
}

/// Number of data blocks in `data_len` bytes; refuses zero and partial blocks.
fn data_blocks_of(data_len: u64) -> Result<u64, VerityError> {
    if data_len == 0 || data_len % BLOCK_SIZE != 0 {
        return Err(VerityError::BadDataLength { found: data_len });
    }
    Ok(data_len / BLOCK_SIZE)
}

fn check_salt(salt: &[u8]) -> Result<(), VerityError> {
    if salt.len() > MAX_SALT_LEN {
        return Err(VerityError::SaltTooLong { found: salt.len() });
    }
    Ok(())
}

fn file_len(file: &File) -> Result<u64, VerityError> {
    Ok(file.metadata().map_err(io("reading the file size"))?.len())
}

/// `SHA256(salt || block)`, from a hasher already fed with the salt.
fn digest(salted: &Sha256, block: &[u8]) -> [u8; 32] {
    let mut h = salted.clone();
    h.update(block);
    h.finalize().into()
}

/// Streams the first `blocks` data blocks of `file`, passing each index and digest to `each`.
fn hash_data(
    mut file: &File,
    blocks: u64,
    salted: &Sha256,
    mut each: impl FnMut(u64, [u8; 32]) -> Result<(), VerityError>,
) -> Result<(), VerityError> {
    file.seek(SeekFrom::Start(0))
        .map_err(io("seeking to the data"))?;
    let mut reader = BufReader::with_capacity(IO_BUF, file);
    let mut block = [0u8; BLOCK];
    for index in 0..blocks {
        reader
            .read_exact(&mut block)
            .map_err(io("reading a data block"))?;
        each(index, digest(salted, &block))?;
    }
    Ok(())
}

/// Reads `data_len` bytes (a non-zero multiple of 4096) from the start of `file`, writes the
/// hash tree right after them (at offset `data_len`) and returns the parameters. The file is
/// then exactly `data_len` plus the tree long (anything after the data is replaced).
/// Streams the data; holds at most the level-0 digests (32 bytes per data block) in memory.
/// Does not sync the file: call `File::sync_all` if durability matters.
pub fn append_hash_tree(
    file: &mut File,
    data_len: u64,
    salt: &[u8],
) -> Result<Verity, VerityError> {
    let data_blocks = data_blocks_of(data_len)?;
    check_salt(salt)?;
    let found = file_len(file)?;
    if found < data_len {
        return Err(VerityError::FileTooShort {
            expected: data_len,
            found,
        });
    }
    let sizes = level_sizes(data_blocks);
    let (starts, end) = level_starts(data_blocks, &sizes)?;
    let end_offset = byte_offset(end)?;
    let mut salted = Sha256::new();
    salted.update(salt);

    let mut digests = Vec::with_capacity(usize::try_from(data_blocks).unwrap_or(0));
    hash_data(file, data_blocks, &salted, |_, d| {
        digests.push(d);
        Ok(())
    })?;
    file.set_len(end_offset)
        .map_err(io("resizing the file for the hash tree"))?;
    for start in &starts {
        let mut out: &File = file;
        out.seek(SeekFrom::Start(byte_offset(*start)?))
            .map_err(io("seeking to a hash level"))?;
        let mut writer = BufWriter::with_capacity(IO_BUF, out);
        let mut above = Vec::with_capacity(digests.len().div_ceil(PER_BLOCK));
        for chunk in digests.chunks(PER_BLOCK) {
            let mut block = [0u8; BLOCK];
            for (slot, d) in block.chunks_exact_mut(DIGEST).zip(chunk) {
                slot.copy_from_slice(d);
            }
            writer
                .write_all(&block)
                .map_err(io("writing a hash block"))?;
            above.push(digest(&salted, &block));
        }
        writer.flush().map_err(io("writing a hash block"))?;
        digests = above;
    }
    // data_blocks >= 1 and the top level has exactly one block, so one digest is left.
    let root_hash = digests
        .first()
        .copied()
        .ok_or(VerityError::BadDataLength { found: data_len })?;
    Ok(Verity {
        data_blocks,
        hash_start_block: data_blocks,
        root_hash,
        salt: salt.to_vec(),
        hash_blocks: end - data_blocks,
    })
}

/// Checks a data area and its tree the way the kernel would: from the root hash down, every
/// stored hash block must hash to its entry in the level above (the top block to the root
/// hash), then every data block to its entry in level 0. Returns the first mismatch found,
/// highest level first, naming the block.
pub fn check(file: &mut File, verity: &Verity) -> Result<(), VerityError> {
    check_salt(&verity.salt)?;
    if verity.data_blocks == 0 {
        return Err(VerityError::BadDataLength { found: 0 });
    }
    if verity.hash_start_block < verity.data_blocks {
        return Err(VerityError::BadParameters {
            what: "hash start block (at least the data block count)",
            expected: verity.data_blocks,
            found: verity.hash_start_block,
        });
    }
    let sizes = level_sizes(verity.data_blocks);
    let (starts, end) = level_starts(verity.hash_start_block, &sizes)?;
    let tree_blocks = end - verity.hash_start_block;
    if verity.hash_blocks != tree_blocks {
        return Err(VerityError::BadParameters {
            what: "hash block count",
            expected: tree_blocks,
            found: verity.hash_blocks,
        });
    }
    let end_offset = byte_offset(end)?;
    let found = file_len(file)?;
    if found < end_offset {
        return Err(VerityError::FileTooShort {
            expected: end_offset,
            found,
        });
    }
    let mut salted = Sha256::new();
    salted.update(&verity.salt);

    // Digests the blocks of the current level must have, starting with the root hash.
    let mut expected = vec![verity.root_hash];
    for (level, start) in starts.iter().enumerate().rev() {
        // Entries this level holds: one per block of the level below, or per data block.
        let wanted_children = level
            .checked_sub(1)
            .and_then(|below| sizes.get(below))
            .copied()
            .unwrap_or(verity.data_blocks);
        let mut next = Vec::with_capacity(usize::try_from(wanted_children).unwrap_or(0));
        let mut input: &File = file;
        input
            .seek(SeekFrom::Start(byte_offset(*start)?))
            .map_err(io("seeking to a hash level"))?;
        let mut reader = BufReader::with_capacity(IO_BUF, input);
        let mut block = [0u8; BLOCK];
        for (index, want) in (0u64..).zip(&expected) {
            reader
                .read_exact(&mut block)
                .map_err(io("reading a hash block"))?;
            let got = digest(&salted, &block);
            if got != *want {
                return Err(VerityError::HashBlockMismatch {
                    level,
                    index,
                    device_block: start + index,
                    expected: *want,
                    found: got,
                });
            }
            let left = usize::try_from(wanted_children)
                .unwrap_or(usize::MAX)
                .saturating_sub(next.len());
            let slots = block
                .chunks_exact(DIGEST)
                .filter_map(|s| <[u8; 32]>::try_from(s).ok());
            next.extend(slots.take(left));
        }
        expected = next;
    }
    let mut wanted = expected.into_iter();
    hash_data(
        file,
        verity.data_blocks,
        &salted,
        |block, got| match wanted.next() {
            Some(want) if want == got => Ok(()),
            want => Err(VerityError::DataBlockMismatch {
                block,
                expected: want.unwrap_or_default(),
                found: got,
            }),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    const SALT32: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// Known answers from `veritysetup 2.6.1` (Debian 12 cryptsetup-bin 2:2.6.1-4~deb12u2):
    /// `veritysetup format --no-superblock --hash-offset=<4096*blocks> --data-blocks=<blocks>
    /// --salt=<salt> --data-block-size=4096 --hash-block-size=4096 --hash=sha256 --format=1 F F`
    /// on a file of `blocks` blocks made by [`block`]. Columns: data blocks, salt hex ("" is
    /// veritysetup's `-`), root hash, SHA-256 of the whole resulting file, hash blocks.
    const VECTORS: &[(u64, &str, &str, &str, u64)] = &[
        (
            1,
            SALT32,
            "9f84e65ca864d086a00a1355144345350ce52535b313037cb86c299025684713",
            "cf0149323ec30594a3d41d3689dd541fb748912bf234a46da49b3dbb8fa47c38",
            0,
        ),
        (
            2,
            SALT32,
            "54ff599d3c014005bb8e28626a82b319304dc94211d4784e37797e93dbc60e9f",
            "e6e412d72f30c3aabccb3b99fa6a1a2161d92edab90a4c9e8d9b517a0a322377",
            1,
        ),
        (
            127,
            SALT32,
            "3627f835a6ce084e9b810c7659d1242aba6eedc725beb824527091c3927a7d83",
            "09eafea9d3abc25dc6979beed54b24967309b7f237608989430bb0fb8035da82",
            1,
        ),
        (
            128,
            SALT32,
            "df16aa9bd5af1aaebaba426cb74df79dbe366bee696ef84c34f3a754e057bdae",
            "1d1da503c9f7d0e62b5502dfe43f1ebd1de1344c4a886c02ffbae19b79cd4079",
            1,
        ),
        (
            129,
            SALT32,
            "cf043fa341800f5ea4daf01623cdee520674d708a800ed5513bdfad27efcebbb",
            "311c8f882711a297d96d88bbce2730162cb5dbed194b02c7de329c05ba162283",
            3,
        ),
        (
            16384,
            SALT32,
            "98a480ca3bea54e072ebe5f681f28e851ce6cb38c7746bc28fc2259b2f53eb36",
            "97d4b2de2b39f00dfc92b9b552434fee255d01be4e7a1351d0e60333ebf4b444",
            129,
        ),
        (
            16385,
            SALT32,
            "61aa118713adbc7c6b624c9d70d7238965e66c3fa3a6f2c8dff028cf3f35a5f2",
            "12f452991cd5fe588f871adf1072349096ccda4719038fcf60e4e807c99de06b",
            132,
        ),
        (
            129,
            "",
            "ee1e0979ceab846499b222250bad1250c79cd4c2e19bb7a8bb54809834752fcf",
            "213e0171907d3ec2a608733473751bc98b51e3a8b9a751a8eaed091862759285",
            3,
        ),
        (
            200,
            "a1b2c3d4e5f607",
            "208887d16902bf18aa28c50584896ce7f8f086a279746bf1272d6ad8225dea94",
            "c19a48b7190c7fb8fa576ae3859c8cf6584437e7523171af8dbe9d7d01ac147f",
            3,
        ),
    ];

    /// Data block `i`: byte `j` is `j*31 + i*17` (mod 256), then `i` little-endian in bytes 0..8.
    fn block(i: u64) -> Vec<u8> {
        let mut b: Vec<u8> = (0..4096u64).map(|j| (j * 31 + i * 17) as u8).collect();
        b[..8].copy_from_slice(&i.to_le_bytes());
        b
    }

    fn data_file(blocks: u64) -> File {
        let mut f = tempfile::tempfile().unwrap();
        let mut w = std::io::BufWriter::new(&mut f);
        for i in 0..blocks {
            w.write_all(&block(i)).unwrap();
        }
        drop(w);
        f
    }

    fn whole_sha256(f: &mut File) -> String {
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        hex::encode(h.finalize())
    }

    fn salt32() -> Vec<u8> {
        hex::decode(SALT32).unwrap()
    }

    fn flip_bit(f: &mut File, offset: u64) {
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.read_exact(&mut b).unwrap();
        b[0] ^= 0x10;
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&b).unwrap();
    }

    #[test]
    fn known_answers_from_veritysetup() {
        for &(blocks, salt, root, file_sha, hash_blocks) in VECTORS {
            let salt = hex::decode(salt).unwrap();
            let mut f = data_file(blocks);
            let v = append_hash_tree(&mut f, blocks * 4096, &salt).unwrap();
            assert_eq!(hex::encode(v.root_hash), root, "root, {blocks} blocks");
            assert_eq!(v.hash_blocks, hash_blocks, "hash blocks, {blocks} blocks");
            assert_eq!((v.data_blocks, v.hash_start_block), (blocks, blocks));
            assert_eq!(v.salt, salt);
            assert_eq!(f.metadata().unwrap().len(), (blocks + hash_blocks) * 4096);
            assert_eq!(whole_sha256(&mut f), file_sha, "file, {blocks} blocks");
            check(&mut f, &v).unwrap();
        }
    }

    #[test]
    fn level_layout_matches_kernel() {
        assert_eq!(level_sizes(1), Vec::<u64>::new());
        assert_eq!(level_sizes(128), vec![1]);
        assert_eq!(level_sizes(129), vec![2, 1]);
        assert_eq!(level_sizes(128 * 128 + 1), vec![129, 2, 1]);
        // Top level first: level 2 at 100, level 1 at 101, level 0 at 103.
        assert_eq!(
            level_starts(100, &[129, 2, 1]).unwrap(),
            (vec![103, 101, 100], 232)
        );
    }

    #[test]
    fn replaces_anything_after_the_data() {
        let mut f = data_file(129);
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(&[0xff; 5 * 4096 + 7]).unwrap();
        let v = append_hash_tree(&mut f, 129 * 4096, &salt32()).unwrap();
        assert_eq!(hex::encode(v.root_hash), VECTORS[4].2);
        assert_eq!(whole_sha256(&mut f), VECTORS[4].3);
    }

    #[test]
    fn refuses_bad_lengths_and_salts() {
        let mut f = data_file(2);
        for len in [0, 4095, 4097, 2 * 4096 - 1] {
            match append_hash_tree(&mut f, len, &[]) {
                Err(VerityError::BadDataLength { found }) => assert_eq!(found, len),
                r => panic!("{len}: {r:?}"),
            }
        }
        match append_hash_tree(&mut f, 3 * 4096, &[]) {
            Err(VerityError::FileTooShort { expected, found }) => {
                assert_eq!((expected, found), (3 * 4096, 2 * 4096))
            }
            r => panic!("{r:?}"),
        }
        match append_hash_tree(&mut f, 4096, &[7; 257]) {
            Err(VerityError::SaltTooLong { found: 257 }) => {}
            r => panic!("{r:?}"),
        }
        let msg = append_hash_tree(&mut f, 4097, &[]).unwrap_err().to_string();
        assert!(
            msg.contains("non-zero multiple of 4096") && msg.contains("4097"),
            "{msg}"
        );
        // Nothing was written by the refused calls.
        assert_eq!(f.metadata().unwrap().len(), 2 * 4096);
    }

    #[test]
    fn reports_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, block(0).repeat(2)).unwrap();
        let mut read_only = File::open(&path).unwrap();
        match append_hash_tree(&mut read_only, 2 * 4096, &[]) {
            Err(VerityError::Io { what, .. }) => assert!(what.contains("resizing"), "{what}"),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn check_detects_flips_in_data_and_every_level() {
        let blocks = 128 * 128 + 1; // levels: 0 (129 blocks), 1 (2 blocks), 2 (1 block)
        let mut f = data_file(blocks);
        let v = append_hash_tree(&mut f, blocks * 4096, &salt32()).unwrap();
        check(&mut f, &v).unwrap();
        // Tree: level 2 at block `blocks`, level 1 at +1, level 0 at +3.
        let cases: [(u64, Option<(usize, u64)>); 6] = [
            (5 * 4096 + 100, None),                             // data block 5
            ((blocks - 1) * 4096 + 4095, None),                 // last data block
            ((blocks + 3 + 128) * 4096 + 2000, Some((0, 128))), // padding of last level-0 block
            ((blocks + 3 + 7) * 4096 + 3, Some((0, 7))),
            ((blocks + 2) * 4096 + 31, Some((1, 1))),
            (blocks * 4096 + 64, Some((2, 0))), // unused slot of the top block
        ];
        for (offset, want) in cases {
            flip_bit(&mut f, offset);
            let err = check(&mut f, &v).unwrap_err();
            match (err, want) {
                (
                    VerityError::DataBlockMismatch {
                        block,
                        expected,
                        found,
                    },
                    None,
                ) => {
                    assert_eq!(block, offset / 4096);
                    assert_ne!(expected, found);
                }
                (
                    VerityError::HashBlockMismatch {
                        level,
                        index,
                        device_block,
                        ..
                    },
                    Some(w),
                ) => {
                    assert_eq!((level, index), w);
                    assert_eq!(device_block, offset / 4096);
                }
                (e, w) => panic!("offset {offset}: {e} (wanted {w:?})"),
            }
            flip_bit(&mut f, offset);
            check(&mut f, &v).unwrap();
        }
    }

    #[test]
    fn check_single_block_and_wrong_root() {
        let mut f = data_file(1);
        let v = append_hash_tree(&mut f, 4096, &salt32()).unwrap();
        flip_bit(&mut f, 10);
        match check(&mut f, &v) {
            Err(VerityError::DataBlockMismatch {
                block: 0, expected, ..
            }) => {
                assert_eq!(expected, v.root_hash)
            }
            r => panic!("{r:?}"),
        }
        let mut f = data_file(129);
        let mut v = append_hash_tree(&mut f, 129 * 4096, &salt32()).unwrap();
        v.root_hash[0] ^= 1;
        match check(&mut f, &v) {
            Err(VerityError::HashBlockMismatch {
                level: 1,
                index: 0,
                device_block: 129,
                ..
            }) => {}
            r => panic!("{r:?}"),
        }
        v.root_hash[0] ^= 1;
        v.salt[0] ^= 1; // a different salt changes every digest
        assert!(matches!(
            check(&mut f, &v),
            Err(VerityError::HashBlockMismatch { level: 1, .. })
        ));
    }

    #[test]
    fn check_refuses_inconsistent_parameters() {
        let mut f = data_file(129);
        let good = append_hash_tree(&mut f, 129 * 4096, &salt32()).unwrap();
        let bad = |change: &dyn Fn(&mut Verity)| {
            let mut v = good.clone();
            change(&mut v);
            v
        };
        let v = bad(&|v| v.data_blocks = 0);
        assert!(matches!(
            check(&mut f, &v),
            Err(VerityError::BadDataLength { found: 0 })
        ));
        let v = bad(&|v| v.hash_start_block = 128);
        match check(&mut f, &v) {
            Err(VerityError::BadParameters {
                expected: 129,
                found: 128,
                ..
            }) => {}
            r => panic!("{r:?}"),
        }
        let v = bad(&|v| v.hash_blocks = 2);
        match check(&mut f, &v) {
            Err(VerityError::BadParameters {
                expected: 3,
                found: 2,
                what,
            }) => {
                assert!(what.contains("hash block count"))
            }
            r => panic!("{r:?}"),
        }
        let v = bad(&|v| v.hash_start_block = 130);
        match check(&mut f, &v) {
            Err(VerityError::FileTooShort { expected, found }) => {
                assert_eq!((expected, found), (133 * 4096, 132 * 4096))
            }
            r => panic!("{r:?}"),
        }
        let v = bad(&|v| v.salt = vec![0; 257]);
        assert!(matches!(
            check(&mut f, &v),
            Err(VerityError::SaltTooLong { found: 257 })
        ));
        let v = bad(&|v| v.hash_start_block = u64::MAX - 1);
        assert!(matches!(check(&mut f, &v), Err(VerityError::TooLarge)));
        let v = bad(&|v| v.hash_start_block = u64::MAX / 4096);
        assert!(matches!(check(&mut f, &v), Err(VerityError::TooLarge)));
        check(&mut f, &good).unwrap();
    }
}
