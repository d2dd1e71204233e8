//! The pinned packages unpacked into one directory (`dpkg-deb -x`, no
//! maintainer scripts run): a small Debian root file system from which the
//! kernel, firmware, modules and libraries are taken. Paths are looked up
//! as the guest would see them: symbolic links are followed inside the
//! tree (an absolute link target means the tree's root, never the build
//! host's), and `/lib`, `/lib64`, `/bin` and `/sbin` stand for their `/usr`
//! directories as on a merged-/usr Debian system (base-files' links, which
//! are not among the pinned packages).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::ImageError;
use crate::fetch::run;

/// The unpacked packages, removed when dropped.
pub struct Tree {
    root: tempfile::TempDir,
}

/// The most symbolic links one lookup follows (as the kernel's limit).
const MAX_LINKS: usize = 40;

impl Tree {
    /// Unpacks each .deb into a fresh temporary directory.
    pub fn unpack<'a>(debs: impl IntoIterator<Item = &'a Path>) -> Result<Self, ImageError> {
        let root = tempfile::Builder::new()
            .prefix("kokon-image-")
            .tempdir()
            .map_err(ImageError::io(
                "creating a temporary directory in",
                std::env::temp_dir(),
            ))?;
        for deb in debs {
            let mut cmd = Command::new("dpkg-deb");
            cmd.arg("-x").arg(deb).arg(root.path());
            run(
                &format!("unpacking {}", deb.display()),
                &mut cmd,
                "dpkg-deb is Debian's dpkg (apt-get install dpkg)",
            )?;
        }
        Ok(Tree { root })
    }

    /// The directory the packages are unpacked in (a build root: see
    /// [`crate::nvidia`]).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A tree over an existing directory (tests).
    #[cfg(test)]
    pub(crate) fn over(root: tempfile::TempDir) -> Self {
        Tree { root }
    }

    /// The host path of `path` (absolute, as in the guest) after following
    /// links inside the tree; `None` if it does not exist.
    pub fn resolve(&self, path: &str) -> Option<PathBuf> {
        Some(join(self.root.path(), &self.resolve_parts(path)?))
    }

    /// `path` with every link resolved, as a path inside the tree (e.g.
    /// `/lib/x86_64-linux-gnu` is `/usr/lib/x86_64-linux-gnu`); `None` if
    /// it does not exist.
    pub fn canonical(&self, path: &str) -> Option<String> {
        Some(format!("/{}", self.resolve_parts(path)?.join("/")))
    }

    fn resolve_parts(&self, path: &str) -> Option<Vec<String>> {
        let root = self.root.path();
        let mut pending: VecDeque<String> = components(path).collect();
        let mut current: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            if part == ".." {
                current.pop();
                continue;
            }
            let host = join(root, &current).join(&part);
            match std::fs::symlink_metadata(&host) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    let target = std::fs::read_link(&host).ok()?;
                    let target = target.to_str()?;
                    if target.starts_with('/') {
                        current.clear();
                    }
                    for c in components(target).rev() {
                        pending.push_front(c);
                    }
                }
                Ok(_) => current.push(part),
                Err(_)
                    if current.is_empty()
                        && matches!(part.as_str(), "lib" | "lib64" | "bin" | "sbin") =>
                {
                    // Merged /usr: /lib is usr/lib.
                    pending.push_front(part);
                    pending.push_front("usr".into());
                }
                Err(_) => return None,
            }
        }
        Some(current)
    }

    /// The bytes of the regular file at `path`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, ImageError> {
        let host = self.file(path)?;
        std::fs::read(&host).map_err(ImageError::io("reading", host))
    }

    /// The host path of the regular file at `path`, or an error saying no
    /// locked package ships it.
    pub fn file(&self, path: &str) -> Result<PathBuf, ImageError> {
        match self.resolve(path) {
            Some(host) if host.is_file() => Ok(host),
            _ => Err(ImageError::Layout(format!(
                "{path} is in none of the locked packages"
            ))),
        }
    }

    /// The names in the directory at `path`, sorted; empty if there is no
    /// such directory.
    pub fn list(&self, path: &str) -> Vec<String> {
        let Some(dir) = self.resolve(path) else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// The parts of a path, without empty ones and `.`.
fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(parts);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_tree_with_merged_usr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).expect("mkdir");
        std::fs::create_dir_all(r.join("usr/lib64")).expect("mkdir");
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/ld.so"), b"loader").expect("write");
        std::fs::write(
            r.join("usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33"),
            b"c++",
        )
        .expect("write");
        symlink(
            "../lib/x86_64-linux-gnu/ld.so",
            r.join("usr/lib64/ld-linux.so.2"),
        )
        .expect("link");
        symlink(
            "libstdc++.so.6.0.33",
            r.join("usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
        )
        .expect("link");
        // An absolute target is the tree's root, not the host's.
        symlink("/etc/passwd", r.join("usr/lib/x86_64-linux-gnu/escape")).expect("link");
        symlink("/usr/lib/x86_64-linux-gnu/ld.so", r.join("usr/lib/abs")).expect("link");
        symlink("loop", r.join("usr/lib/loop")).expect("link");
        let tree = Tree::over(dir);

        assert_eq!(
            tree.read("/lib64/ld-linux.so.2")
                .expect("merged /usr and a relative link"),
            b"loader"
        );
        assert_eq!(
            tree.read("/lib/x86_64-linux-gnu/libstdc++.so.6")
                .expect("soname link"),
            b"c++"
        );
        assert_eq!(tree.read("/usr/lib/abs").expect("absolute link"), b"loader");
        assert!(
            tree.resolve("/usr/lib/x86_64-linux-gnu/escape").is_none(),
            "no /etc/passwd in the tree"
        );
        assert!(tree.resolve("/usr/lib/loop").is_none(), "a loop ends");
        assert!(tree.resolve("/lib/nothing").is_none());
        let err = tree.read("/usr/share/ovmf/OVMF.fd").expect_err("absent");
        assert!(
            err.to_string()
                .contains("/usr/share/ovmf/OVMF.fd is in none of the locked packages"),
            "{err}"
        );
        assert_eq!(tree.list("/lib64"), ["ld-linux.so.2"]);
        assert_eq!(
            tree.canonical("/lib/x86_64-linux-gnu").as_deref(),
            Some("/usr/lib/x86_64-linux-gnu")
        );
        assert_eq!(
            tree.canonical("/lib64/ld-linux.so.2").as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/ld.so")
        );
        assert!(tree.list("/nothing").is_empty());
    }
}
