//! Writing results so that a reader never sees half a file: a temporary
//! file beside the target, then a rename.

use std::io::Write as _;
use std::path::Path;

use crate::error::ImageError;

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, replacing what was there.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kokon-tmp-")
        .tempfile_in(dir)
        .map_err(ImageError::io("creating a temporary file in", dir))?;
    tmp.write_all(bytes)
        .map_err(ImageError::io("writing", tmp.path().to_owned()))?;
    tmp.as_file()
        .sync_all()
        .map_err(ImageError::io("writing", tmp.path().to_owned()))?;
    tmp.persist(path).map_err(|e| ImageError::Io {
        action: "renaming a temporary file to",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}
