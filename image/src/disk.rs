//! The data disk: large files (a text model, later the CUDA libraries) on
//! a read-only virtio disk instead of in the initramfs, which the firmware
//! loads into guest memory and the kernel unpacks into more of it.
//!
//! `data.img` is an EROFS file system ([`crate::erofs`]) followed by its
//! dm-verity hash tree ([`crate::verity`]). The tree's root hash goes on
//! the kernel command line ([`kokon_wire::vm::DataVerity`]), which the TEE
//! measures, and the guest's init reads the disk only through a dm-verity
//! device built from it: the launch measurement covers every byte the
//! guest can read from the disk, and a block the host alters fails to read.

use std::path::Path;

use kokon_wire::vm::DataVerity;
use sha2::{Digest, Sha256};

use crate::digest::reader_sha256;
use crate::error::ImageError;
use crate::manifest::{DataDiskRecord, ImageFile};
use crate::source::Source;
use crate::verity::BLOCK_SIZE;

/// The data disk's file name in the output directory.
pub const DATA_FILE: &str = "data.img";

/// Writes the data disk holding `files` (path under
/// [`kokon_wire::vm::DATA_MOUNT`], contents) to `path`, through a
/// temporary file and a rename. The salt (and the file system's UUID) is
/// derived from the files' paths and digests, so the same files give the
/// same bytes.
pub fn build(path: &Path, files: &[(String, Source)]) -> Result<DataDiskRecord, ImageError> {
    let mut records = Vec::new();
    let mut entries = Vec::new();
    for (name, source) in files {
        let name = name.trim_start_matches('/');
        let (sha256, size) = source
            .read_with(reader_sha256)
            .map_err(|e| ImageError::reading(source, e))?;
        records.push(ImageFile {
            path: format!("{}/{name}", kokon_wire::vm::DATA_MOUNT),
            sha256,
            size,
        });
        entries.push(crate::erofs::Entry {
            path: name.to_owned(),
            source: source.clone(),
            executable: false,
        });
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));
    let salt = salt(&records);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&salt[..16]);

    let mut tmp = crate::output::temporary_beside(path)?;
    let layout = |reason: String| ImageError::Layout(format!("the data disk: {reason}"));
    let data_len = crate::erofs::write(tmp.as_file_mut(), &entries, uuid)
        .map_err(|e| layout(e.to_string()))?;
    let verity = crate::verity::append_hash_tree(tmp.as_file_mut(), data_len, &salt)
        .map_err(|e| layout(e.to_string()))?;
    crate::output::persist(tmp, path)?;
    Ok(DataDiskRecord {
        data_blocks: verity.data_blocks,
        hash_start_block: verity.hash_start_block,
        root_hash: hex::encode(verity.root_hash),
        salt: hex::encode(salt),
        files: records,
    })
}

/// An upper bound of the size of the data disk holding `files`: their
/// blocks, the hash tree (a 32-byte hash per 4 KiB block, about 1/128
/// more, and its upper levels) and 16 MiB for the file system's metadata.
pub fn size_bound(files: &[(String, Source)]) -> Result<u64, ImageError> {
    let mut blocks = 0u64;
    for (_, source) in files {
        let size = source.size().map_err(|e| ImageError::reading(source, e))?;
        blocks = blocks.saturating_add(size.div_ceil(BLOCK_SIZE));
    }
    let hash_blocks = blocks.div_ceil(BLOCK_SIZE / 32).saturating_mul(2);
    Ok(blocks
        .saturating_add(hash_blocks)
        .saturating_mul(BLOCK_SIZE)
        .saturating_add(16 << 20))
}

/// The salt of a disk holding `files`: SHA-256 over their paths, digests
/// and sizes.
fn salt(files: &[ImageFile]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"kokon data disk v1\0");
    for f in files {
        hasher.update(f.path.as_bytes());
        hasher.update([0]);
        hasher.update(f.sha256.as_bytes());
        hasher.update(f.size.to_le_bytes());
    }
    hasher.finalize().into()
}

/// Checks the data disk at `path` against `verity` (the parameters on an
/// image's measured command line) as the guest's dm-verity would, every
/// block up to the root hash: an error names the first block that differs.
pub fn check(path: &Path, verity: &DataVerity) -> Result<(), ImageError> {
    let mut file = std::fs::File::open(path).map_err(ImageError::io("reading", path))?;
    let tree = crate::verity::Verity {
        data_blocks: verity.data_blocks,
        hash_start_block: verity.hash_start_block,
        root_hash: verity.root_hash,
        salt: verity.salt.to_vec(),
        hash_blocks: crate::verity::hash_blocks(verity.data_blocks),
    };
    crate::verity::check(&mut file, &tree).map_err(|e| {
        ImageError::Layout(format!(
            "the data disk {} does not match the command line's dm-verity parameters: {e}",
            path.display()
        ))
    })
}

impl DataDiskRecord {
    /// The dm-verity parameters the command line carries.
    pub fn verity(&self) -> Result<DataVerity, ImageError> {
        DataVerity::from_parts(
            self.data_blocks,
            self.hash_start_block,
            &self.root_hash,
            &self.salt,
        )
        .map_err(|reason| ImageError::Layout(format!("the data disk's parameters: {reason}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_checks_against_its_parameters_and_an_altered_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("weights.bin");
        let weights: Vec<u8> = (0..20_000u32).flat_map(u32::to_le_bytes).collect();
        std::fs::write(&source, &weights).expect("write");
        let files = vec![("m/weights.bin".to_owned(), Source::File(source))];
        let path = dir.path().join(DATA_FILE);
        let record = build(&path, &files).expect("build");
        let verity = record.verity().expect("parameters");
        check(&path, &verity).expect("the disk as built");
        // The same files give the same disk.
        let again = dir.path().join("again.img");
        assert_eq!(build(&again, &files).expect("build"), record);
        let written = std::fs::metadata(&path).expect("stat").len();
        let bound = size_bound(&files).expect("bound");
        assert!(written <= bound, "{written} bytes written, bound {bound}");
        assert_eq!(
            std::fs::read(&again).expect("read"),
            std::fs::read(&path).expect("read")
        );
        assert_eq!(
            record.files,
            vec![ImageFile {
                path: "/data/m/weights.bin".into(),
                sha256: crate::digest::sha256_hex(&weights),
                size: weights.len() as u64,
            }]
        );
        // One byte of the file altered on the disk.
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes
            .windows(8)
            .position(|w| w == [0x10, 0x27, 0, 0, 0x11, 0x27, 0, 0])
            .expect("the words 10000, 10001 are on the disk");
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let err = check(&path, &verity).expect_err("altered").to_string();
        assert!(
            err.contains("does not match the command line's dm-verity parameters"),
            "{err}"
        );
        assert!(err.contains("data block"), "{err}");
        // Another root hash: the disk is not the one the command line names.
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let other = DataVerity {
            root_hash: [0; 32],
            ..verity
        };
        assert!(check(&path, &other).is_err());
    }

    #[test]
    fn a_wheel_member_gives_the_disk_its_extracted_file_would() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library: Vec<u8> = (0..50_000u32).flat_map(u32::to_le_bytes).collect();
        let extracted = dir.path().join("libx.so");
        std::fs::write(&extracted, &library).expect("write");
        let wheel = dir.path().join("x.whl");
        crate::source::write_test_zip(&wheel, &[("nvidia/x/lib/libx.so", &library)]);
        let from_file = build(
            &dir.path().join("a.img"),
            &[("gpu/lib/libx.so".into(), Source::File(extracted))],
        )
        .expect("build from the file");
        let member = Source::ZipMember {
            archive: wheel.clone(),
            member: "nvidia/x/lib/libx.so".into(),
        };
        let from_wheel = build(
            &dir.path().join("b.img"),
            &[("gpu/lib/libx.so".into(), member)],
        )
        .expect("build from the wheel");
        assert_eq!(from_wheel, from_file);
        assert_eq!(
            std::fs::read(dir.path().join("a.img")).expect("read"),
            std::fs::read(dir.path().join("b.img")).expect("read")
        );
        // A member the wheel lacks is named, with the wheel.
        let absent = Source::ZipMember {
            archive: wheel.clone(),
            member: "nvidia/x/lib/liby.so".into(),
        };
        let err = build(&dir.path().join("c.img"), &[("y".into(), absent)])
            .expect_err("no such member")
            .to_string();
        assert!(err.contains("nvidia/x/lib/liby.so"), "{err}");
        assert!(err.contains(&wheel.display().to_string()), "{err}");
    }
}
