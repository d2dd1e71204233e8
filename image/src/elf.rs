//! The shared libraries the image's binaries load, found as the guest's
//! dynamic loader will find them: each binary's `DT_NEEDED` names, looked up
//! in its `DT_RUNPATH`/`DT_RPATH` (`$ORIGIN` expanded) and then in the
//! loader's system directories, among the files already in the image and in
//! the unpacked packages, never on the build host; recursively; and each
//! binary's ELF interpreter (`PT_INTERP`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use goblin::elf::Elf;

use crate::error::ImageError;
use crate::tree::Tree;

/// The directories Debian's x86-64 glibc loader searches when there is no
/// /etc/ld.so.cache (`ld.so --help` prints them), in its order.
pub const SYSTEM_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// A file the image gets because a binary needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// Its path inside the image.
    pub image_path: String,
    /// The file in the unpacked packages holding its bytes (a link's
    /// target).
    pub source: PathBuf,
    /// Whether it is an ELF interpreter (which the kernel executes).
    pub interpreter: bool,
}

/// What an ELF object asks of the loader.
struct Wants {
    interpreter: Option<String>,
    needed: Vec<String>,
    search: Vec<String>,
}

/// Reads what `bytes` (the object at `image_path` inside the image) needs;
/// `label` names it in errors.
fn wants(label: &str, image_path: &str, bytes: &[u8]) -> Result<Wants, ImageError> {
    let elf = Elf::parse(bytes).map_err(|e| ImageError::Elf {
        path: label.to_owned(),
        reason: format!("not a readable ELF file: {e}"),
    })?;
    if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(ImageError::Elf {
            path: label.to_owned(),
            reason: format!(
                "machine {} ({}-bit), expected x86-64 (EM_X86_64, 64-bit)",
                goblin::elf::header::machine_to_str(elf.header.e_machine),
                if elf.is_64 { 64 } else { 32 }
            ),
        });
    }
    let origin = image_path
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .unwrap_or("");
    let paths = if elf.runpaths.is_empty() {
        &elf.rpaths
    } else {
        &elf.runpaths
    };
    let search = paths
        .iter()
        .flat_map(|p| p.split(':'))
        .filter(|p| !p.is_empty())
        .map(|p| p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        .collect();
    Ok(Wants {
        interpreter: elf.interpreter.map(str::to_owned),
        needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
        search,
    })
}

/// An error unless `bytes` (the file at `image_path` in the image) is a
/// readable x86-64 ELF file.
pub fn check(image_path: &str, bytes: &[u8]) -> Result<(), ImageError> {
    wants(image_path, image_path, bytes).map(|_| ())
}

/// Where a needed name was found.
enum Location {
    /// A file the image already has (one of the roots).
    InImage,
    /// In the packages: its place in the image and the file holding it.
    InTree(String, PathBuf),
}

/// The libraries and interpreters that `roots` (image path, bytes) need,
/// transitively: from the image itself where a root already provides the
/// path, otherwise from `tree`. Each library is placed in the directory the
/// loader finds it in (links resolved, e.g. `/usr/lib/x86_64-linux-gnu`)
/// under the name the binary asks for; each interpreter at its `PT_INTERP`
/// path.
pub fn closure(roots: &[(String, &[u8])], tree: &Tree) -> Result<Vec<Needed>, ImageError> {
    let in_image: BTreeSet<&str> = roots.iter().map(|(p, _)| p.as_str()).collect();
    let mut found: BTreeMap<String, Needed> = BTreeMap::new();
    // Names already satisfied: by an interpreter (the loader is its own
    // soname) or by a library placed before.
    let mut satisfied: BTreeSet<String> = BTreeSet::new();
    let mut queue = VecDeque::new();
    for (path, bytes) in roots {
        queue.push_back((path.clone(), wants(path, path, bytes)?));
    }
    while let Some((path, w)) = queue.pop_front() {
        if let Some(interp) = &w.interpreter {
            if !found.contains_key(interp) {
                let source = tree
                    .resolve(interp)
                    .filter(|p| p.is_file())
                    .ok_or_else(|| ImageError::MissingLibrary {
                        library: interp.clone(),
                        needed_by: path.clone(),
                        searched: "its PT_INTERP path".into(),
                    })?;
                if let Some(name) = interp.rsplit('/').next() {
                    satisfied.insert(name.to_owned());
                }
                let needed = Needed {
                    image_path: interp.clone(),
                    source,
                    interpreter: true,
                };
                found.insert(interp.clone(), needed);
            }
        }
        let dirs: Vec<&str> = w
            .search
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_DIRS)
            .collect();
        for name in &w.needed {
            if satisfied.contains(name) {
                continue;
            }
            let location = dirs.iter().find_map(|dir| {
                let candidate = if name.contains('/') {
                    name.clone()
                } else {
                    format!("{dir}/{name}")
                };
                if in_image.contains(candidate.as_str()) {
                    return Some(Location::InImage);
                }
                let source = tree.resolve(&candidate).filter(|p| p.is_file())?;
                let (dir, base) = candidate.rsplit_once('/').unwrap_or(("", &candidate));
                let dir = tree.canonical(dir).unwrap_or_else(|| dir.to_owned());
                Some(Location::InTree(format!("{dir}/{base}"), source))
            });
            match location {
                None => {
                    return Err(ImageError::MissingLibrary {
                        library: name.clone(),
                        needed_by: path.clone(),
                        searched: dirs.join(", "),
                    })
                }
                Some(Location::InImage) => {}
                Some(Location::InTree(image_path, source)) => {
                    satisfied.insert(name.clone());
                    let bytes = std::fs::read(&source)
                        .map_err(ImageError::io("reading", source.clone()))?;
                    let label = format!("{image_path} (from {})", source.display());
                    queue.push_back((image_path.clone(), wants(&label, &image_path, &bytes)?));
                    let needed = Needed {
                        image_path: image_path.clone(),
                        source,
                        interpreter: false,
                    };
                    found.insert(image_path, needed);
                }
            }
        }
    }
    Ok(found.into_values().collect())
}
