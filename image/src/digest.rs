//! SHA-256 digests, as lowercase hex: how the lock pins and the manifest
//! records every input and output.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::ImageError;

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 (lowercase hex) and size of the file at `path`, read in
/// pieces.
pub fn file_sha256(path: &Path) -> Result<(String, u64), ImageError> {
    let mut file = std::fs::File::open(path).map_err(ImageError::io("reading", path))?;
    reader_sha256(&mut file).map_err(ImageError::io("reading", path))
}

/// The SHA-256 (lowercase hex) and length of what `reader` yields, read in
/// pieces.
pub fn reader_sha256(reader: &mut dyn Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        let Some(chunk) = buf.get(..n) else { break };
        if n == 0 {
            break;
        }
        hasher.update(chunk);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_bytes_and_file_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let bytes = vec![7u8; 3 << 20];
        std::fs::write(&path, &bytes).expect("write");
        let (hex, size) = file_sha256(&path).expect("hash");
        assert_eq!(hex, sha256_hex(&bytes));
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
