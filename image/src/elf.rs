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

/// The file at `path` in the tree, if it is one: its path in the image
/// (its directory's links resolved, its own name kept: the soname) and the
/// host file holding its bytes.
fn locate(path: &str, tree: &Tree) -> Option<(String, PathBuf)> {
    let source = tree.resolve(path).filter(|p| p.is_file())?;
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    let dir = tree.canonical(dir).unwrap_or_else(|| dir.to_owned());
    Some((format!("{dir}/{base}"), source))
}

/// The sonames the x86-64 ELF object `bytes` needs (`DT_NEEDED`); `label`
/// names it in errors.
pub fn needed(label: &str, bytes: &[u8]) -> Result<Vec<String>, ImageError> {
    Ok(wants(label, label, bytes)?.needed)
}

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
/// path. `outside` are objects the image's loader serves from elsewhere
/// (the GPU runtime on the data disk): (label, the sonames they need from
/// the image's system directories).
pub fn closure(
    roots: &[(String, &[u8])],
    outside: &[(String, Vec<String>)],
    tree: &Tree,
) -> Result<Vec<Needed>, ImageError> {
    let in_image: BTreeSet<&str> = roots.iter().map(|(p, _)| p.as_str()).collect();
    let mut found: BTreeMap<String, Needed> = BTreeMap::new();
    // Names already satisfied: by an interpreter (the loader is its own
    // soname) or by a library placed before.
    let mut satisfied: BTreeSet<String> = BTreeSet::new();
    let mut queue = VecDeque::new();
    for (path, bytes) in roots {
        queue.push_back((path.clone(), wants(path, path, bytes)?));
    }
    for (label, needed) in outside {
        let w = Wants {
            interpreter: None,
            needed: needed.clone(),
            search: Vec::new(),
        };
        queue.push_back((label.clone(), w));
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
                let (image_path, source) = locate(&candidate, tree)?;
                Some(Location::InTree(image_path, source))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A minimal ELF64 shared object for `machine`, with a `PT_INTERP` when
    /// `interp` is given.
    fn elf(machine: u16, interp: Option<&str>) -> Vec<u8> {
        let phnum: u16 = if interp.is_some() { 1 } else { 0 };
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        out.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        out.extend_from_slice(&machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // entry
        out.extend_from_slice(&(if phnum > 0 { 64u64 } else { 0 }).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        for v in [64u16, 56, phnum, 64, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(interp) = interp {
            let size = interp.len() as u64 + 1;
            out.extend_from_slice(&3u32.to_le_bytes()); // PT_INTERP
            out.extend_from_slice(&4u32.to_le_bytes());
            for v in [120u64, 120, 120, size, size, 1] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(interp.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn only_x86_64_elf_is_taken() {
        check("/init", &elf(62, None)).expect("x86-64");
        let err = check("/init", &elf(183, None)).expect_err("arm64");
        assert!(err.to_string().starts_with("ELF /init: machine"), "{err}");
        assert!(
            err.to_string()
                .ends_with("expected x86-64 (EM_X86_64, 64-bit)"),
            "{err}"
        );
        let err = check("/init", b"#!/bin/sh\n").expect_err("script");
        assert!(err.to_string().contains("not a readable ELF file"), "{err}");
    }

    #[test]
    fn the_interpreter_comes_from_the_packages() {
        let binary = elf(62, Some("/lib64/ld-test.so.2"));
        let roots = [("/init".to_owned(), binary.as_slice())];

        let empty = Tree::over(tempfile::tempdir().expect("tempdir"));
        let err = closure(&roots, &[], &empty).expect_err("no loader");
        assert!(
            matches!(&err, ImageError::MissingLibrary { library, needed_by, .. }
                if library == "/lib64/ld-test.so.2" && needed_by == "/init"),
            "{err}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("usr/lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&lib).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("usr/lib64")).expect("mkdir");
        std::fs::write(lib.join("ld-test.so.2"), elf(62, None)).expect("write");
        symlink(
            "../lib/x86_64-linux-gnu/ld-test.so.2",
            dir.path().join("usr/lib64/ld-test.so.2"),
        )
        .expect("link");
        let tree = Tree::over(dir);
        let found = closure(&roots, &[], &tree).expect("loader");
        assert_eq!(found.len(), 1);
        let loader = &found[0];
        assert_eq!(loader.image_path, "/lib64/ld-test.so.2");
        assert!(loader.interpreter);
        assert!(loader
            .source
            .ends_with("usr/lib/x86_64-linux-gnu/ld-test.so.2"));
    }
}
