//! Writing results so that a reader never sees half a file: a temporary
//! file beside the target, then a rename.

use std::io::Write as _;
use std::path::Path;

use crate::error::ImageError;

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, replacing what was there.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut tmp = temporary_beside(path)?;
    tmp.write_all(bytes)
        .map_err(ImageError::io("writing", tmp.path().to_owned()))?;
    persist(tmp, path)
}

/// A temporary file in `path`'s directory, for [`persist`] to rename to
/// `path` once written.
pub fn temporary_beside(path: &Path) -> Result<tempfile::NamedTempFile, ImageError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".kokon-tmp-")
        .tempfile_in(dir)
        .map_err(ImageError::io("creating a temporary file in", dir))
}

/// Syncs the written temporary file `tmp` and renames it to `path`,
/// replacing what was there.
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), ImageError> {
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
