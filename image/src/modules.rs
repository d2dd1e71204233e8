//! The kernel modules the guest loads, taken from the kernel package:
//! those of [`MODULES`] that the kernel has as modules (not built in), with
//! the modules they depend on (each module's `.modinfo` `depends=`), in an
//! order that loads dependencies first, decompressed (the init loads plain
//! `.ko` files with `finit_module`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use crate::error::ImageError;
use crate::tree::Tree;

/// The modules the guest needs, by module name: vsock to the host
/// (`vmw_vsock_virtio_transport`), the TEE report interfaces (`configfs`
/// for configfs-tsm, `tsm`, `tdx_guest`, `sev_guest`), QEMU's fw_cfg
/// (`qemu_fw_cfg`), and the block and device-mapper modules a dm-verity
/// data disk needs (`virtio_blk`, `dm_mod`, `dm_verity`, and `erofs` for its
/// file system; see [`crate::disk`]), and the ACPI power
/// button with its input events (`button`, `evdev`), which the init watches
/// for the host's clean shutdown. Dependencies are added; those built into
/// the kernel are left out.
pub const MODULES: &[&str] = &[
    "configfs",
    "tsm",
    "tdx_guest",
    "sev_guest",
    "vsock",
    "vmw_vsock_virtio_transport",
    "qemu_fw_cfg",
    "virtio_blk",
    "dm_mod",
    "dm_verity",
    "erofs",
    "button",
    "evdev",
];

/// One module, decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name (`_`, never `-`): the image holds it at
    /// `/lib/modules/<name>.ko`.
    pub name: String,
    /// The `.ko` bytes.
    pub data: Vec<u8>,
}

/// The modules of `wanted` and their dependencies from kernel `release` in
/// `tree`, dependencies first.
pub fn select(tree: &Tree, release: &str, wanted: &[&str]) -> Result<Vec<Module>, ImageError> {
    let dir = format!("/lib/modules/{release}");
    let host_dir = tree.resolve(&dir).ok_or_else(|| {
        ImageError::Layout(format!(
            "{dir} (the kernel's modules) is in none of the locked packages"
        ))
    })?;
    let mut files = BTreeMap::new();
    index(&host_dir.join("kernel"), &mut files)?;
    let builtin: BTreeSet<String> = std::fs::read_to_string(host_dir.join("modules.builtin"))
        .map_err(ImageError::io("reading", host_dir.join("modules.builtin")))?
        .lines()
        .filter_map(|line| line.rsplit('/').next().and_then(|f| f.strip_suffix(".ko")))
        .map(normalise)
        .collect();
    let mut loaded: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let order = load_order(wanted, |name| {
        if builtin.contains(name) {
            return Ok(None);
        }
        let path = files.get(name).ok_or_else(|| ImageError::Module {
            module: name.to_owned(),
            reason: format!("neither built into {release} (modules.builtin) nor a module in {dir}"),
        })?;
        let data = decompress(name, path)?;
        let depends = dependencies(name, &data, release)?;
        loaded.insert(name.to_owned(), data);
        Ok(Some(depends))
    })?;
    Ok(order
        .into_iter()
        .filter_map(|name| {
            let data = loaded.remove(&name)?;
            Some(Module { name, data })
        })
        .collect())
}

/// The modules module `name` (its `.ko` bytes `ko`) depends on; an error
/// unless it was built for kernel `release` (its `vermagic`).
pub(crate) fn dependencies(
    name: &str,
    ko: &[u8],
    release: &str,
) -> Result<Vec<String>, ImageError> {
    let info = modinfo(name, ko)?;
    let vermagic = info.get("vermagic").map(String::as_str).unwrap_or("");
    if vermagic.split(' ').next() != Some(release) {
        return Err(ImageError::Module {
            module: name.to_owned(),
            reason: format!("vermagic {vermagic:?}, expected kernel release {release}"),
        });
    }
    Ok(info
        .get("depends")
        .map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(normalise)
                .collect()
        })
        .unwrap_or_default())
}

/// Module names use `_`; file names and `depends=` may use `-`.
fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules of `wanted` and their dependencies, each after the modules it
/// depends on, visiting dependencies in name order (so the order is a
/// function of the modules alone). `depends(name)` gives a module's
/// dependencies, or `None` for a module built into the kernel (left out).
fn load_order(
    wanted: &[&str],
    mut depends: impl FnMut(&str) -> Result<Option<Vec<String>>, ImageError>,
) -> Result<Vec<String>, ImageError> {
    enum Step {
        Enter(String, Vec<String>),
        Leave(String),
    }
    let mut order = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut on_path: Vec<String> = Vec::new();
    for name in wanted {
        let mut stack = vec![Step::Enter(normalise(name), Vec::new())];
        while let Some(step) = stack.pop() {
            match step {
                Step::Leave(name) => {
                    on_path.pop();
                    order.push(name.clone());
                    done.insert(name);
                }
                Step::Enter(name, mut chain) => {
                    if done.contains(&name) {
                        continue;
                    }
                    if on_path.contains(&name) {
                        chain.push(name.clone());
                        return Err(ImageError::Module {
                            module: name,
                            reason: format!("depends on itself: {}", chain.join(" -> ")),
                        });
                    }
                    let Some(mut deps) = depends(&name)? else {
                        done.insert(name);
                        continue;
                    };
                    deps.sort();
                    deps.dedup();
                    on_path.push(name.clone());
                    chain.push(name.clone());
                    stack.push(Step::Leave(name));
                    for dep in deps.into_iter().rev() {
                        stack.push(Step::Enter(dep, chain.clone()));
                    }
                }
            }
        }
    }
    Ok(order)
}

/// Every `*.ko` and `*.ko.xz` under `dir`, by module name.
fn index(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result<(), ImageError> {
    let entries = std::fs::read_dir(dir).map_err(ImageError::io("reading", dir))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("reading", dir))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(ImageError::io("reading", path.clone()))?;
        if kind.is_dir() {
            index(&path, files)?;
            continue;
        }
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .find_map(|ext| file.strip_suffix(ext));
        if let Some(stem) = stem {
            files.insert(normalise(stem), path.clone());
        }
    }
    Ok(())
}

/// A module file's `.ko` bytes: as is, or xz-decompressed.
fn decompress(name: &str, path: &Path) -> Result<Vec<u8>, ImageError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "ko" => std::fs::read(path).map_err(ImageError::io("reading", path)),
        "xz" => {
            let file = std::fs::File::open(path).map_err(ImageError::io("reading", path))?;
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut BufReader::new(file), &mut out).map_err(|e| {
                ImageError::Module {
                    module: name.to_owned(),
                    reason: format!("decompressing {}: {e}", path.display()),
                }
            })?;
            Ok(out)
        }
        _ => Err(ImageError::Module {
            module: name.to_owned(),
            reason: format!(
                "{}: only .ko and .ko.xz modules are supported",
                path.display()
            ),
        }),
    }
}

/// A module's `.modinfo` section: NUL-separated `key=value` strings (a key
/// given twice, like `alias`, keeps its last value).
fn modinfo(name: &str, ko: &[u8]) -> Result<BTreeMap<String, String>, ImageError> {
    let err = |reason: String| ImageError::Elf {
        path: format!("kernel module {name}"),
        reason,
    };
    let elf = Elf::parse(ko).map_err(|e| err(format!("not a readable ELF file: {e}")))?;
    let section = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
        .ok_or_else(|| err("no .modinfo section".into()))?;
    let range = section
        .file_range()
        .ok_or_else(|| err(".modinfo has no bytes in the file".into()))?;
    let bytes = ko.get(range.clone()).ok_or_else(|| {
        err(format!(
            ".modinfo at {range:?} is outside the file's {} bytes",
            ko.len()
        ))
    })?;
    Ok(bytes
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (key, value) = text.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(
        graph: &[(&str, &[&str])],
        builtin: &[&str],
    ) -> impl FnMut(&str) -> Result<Option<Vec<String>>, ImageError> {
        let graph: BTreeMap<String, Vec<String>> = graph
            .iter()
            .map(|(n, d)| ((*n).to_owned(), d.iter().map(|s| (*s).to_owned()).collect()))
            .collect();
        let builtin: Vec<String> = builtin.iter().map(|s| (*s).to_owned()).collect();
        move |name| {
            if builtin.iter().any(|b| b == name) {
                return Ok(None);
            }
            graph
                .get(name)
                .cloned()
                .map(Some)
                .ok_or_else(|| ImageError::Module {
                    module: name.to_owned(),
                    reason: "absent".into(),
                })
        }
    }

    #[test]
    fn dependencies_load_first_and_builtins_are_left_out() {
        let graph: &[(&str, &[&str])] = &[
            ("tdx_guest", &["tsm"]),
            ("sev_guest", &["tsm"]),
            ("tsm", &["configfs"]),
            ("configfs", &[]),
            (
                "vmw_vsock_virtio_transport",
                &["vsock", "vmw_vsock_virtio_transport_common"],
            ),
            ("vmw_vsock_virtio_transport_common", &["vsock"]),
            ("vsock", &[]),
            ("dm_verity", &["dm_mod", "dm_bufio", "reed_solomon"]),
            ("dm_mod", &[]),
            ("dm_bufio", &[]),
        ];
        let order = load_order(
            &[
                "sev_guest",
                "tdx_guest",
                "vmw_vsock_virtio_transport",
                "dm-verity",
            ],
            deps(graph, &["reed_solomon"]),
        )
        .expect("order");
        assert_eq!(
            order,
            [
                "configfs",
                "tsm",
                "sev_guest",
                "tdx_guest",
                "vsock",
                "vmw_vsock_virtio_transport_common",
                "vmw_vsock_virtio_transport",
                "dm_bufio",
                "dm_mod",
                "dm_verity"
            ]
        );
    }

    #[test]
    fn cycles_and_absent_modules_are_errors() {
        let graph: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["c"]), ("c", &["a"])];
        let err = load_order(&["a"], deps(graph, &[])).expect_err("cycle");
        assert!(
            err.to_string()
                .contains("depends on itself: a -> b -> c -> a"),
            "{err}"
        );
        let err = load_order(&["x"], deps(graph, &[])).expect_err("absent");
        assert_eq!(err.to_string(), "kernel module x: absent");
    }

    /// A minimal ELF64 relocatable file with one `.modinfo` section.
    fn ko(modinfo_bytes: &[u8]) -> Vec<u8> {
        ko_with(b"\0.modinfo\0.shstrtab\0", modinfo_bytes)
    }

    /// The same with another section name table (`.modinfo` at offset 1).
    fn ko_with(shstrtab: &[u8], modinfo_bytes: &[u8]) -> Vec<u8> {
        let info_off = 64u64;
        let str_off = info_off + modinfo_bytes.len() as u64;
        let sh_off = str_off + shstrtab.len() as u64;
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        out.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
        out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // entry
        out.extend_from_slice(&0u64.to_le_bytes()); // phoff
        out.extend_from_slice(&sh_off.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        for v in [64u16, 0, 0, 64, 3, 2] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(modinfo_bytes);
        out.extend_from_slice(shstrtab);
        let section = |out: &mut Vec<u8>, name: u32, kind: u32, off: u64, size: u64| {
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            for v in [0u64, 0, off, size] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&[0u8; 8]); // link, info
            out.extend_from_slice(&1u64.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes());
        };
        section(&mut out, 0, 0, 0, 0);
        section(&mut out, 1, 1, info_off, modinfo_bytes.len() as u64);
        section(&mut out, 10, 3, str_off, shstrtab.len() as u64);
        out
    }

    #[test]
    fn modinfo_is_read_from_its_section() {
        let info = modinfo(
            "tsm",
            &ko(b"license=GPL\0depends=configfs\0name=tsm\0vermagic=6.12.1 SMP mod_unload\0"),
        )
        .expect("modinfo");
        assert_eq!(info.get("depends").map(String::as_str), Some("configfs"));
        assert_eq!(
            info.get("vermagic").map(String::as_str),
            Some("6.12.1 SMP mod_unload")
        );
        let mut truncated = ko(b"depends=\0");
        truncated.truncate(70);
        assert!(
            modinfo("x", &truncated).is_err(),
            "a cut file is an error, not a panic"
        );
        let err =
            modinfo("x", &ko_with(b"\0.notinfo\0.shstrtab\0", b"depends=\0")).expect_err("none");
        assert_eq!(err.to_string(), "ELF kernel module x: no .modinfo section");
        let err = modinfo("x", b"not elf").expect_err("not ELF");
        assert!(
            err.to_string()
                .starts_with("ELF kernel module x: not a readable ELF file"),
            "{err}"
        );
    }

    #[test]
    fn a_module_of_another_kernel_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let modules = dir.path().join("usr/lib/modules/6.12.1-cloud/kernel/fs");
        std::fs::create_dir_all(&modules).expect("mkdir");
        std::fs::write(
            modules.join("configfs.ko"),
            ko(b"name=configfs\0vermagic=6.1.0 SMP\0depends=\0"),
        )
        .expect("write");
        std::fs::write(
            modules.join("../../modules.builtin"),
            "kernel/fs/ext4/ext4.ko\n",
        )
        .expect("write");
        let tree = Tree::over(dir);
        let err = select(&tree, "6.12.1-cloud", &["configfs"]).expect_err("vermagic");
        assert_eq!(
            err.to_string(),
            "kernel module configfs: vermagic \"6.1.0 SMP\", expected kernel release 6.12.1-cloud"
        );
        assert!(select(&tree, "6.12.1-cloud", &["ext4"])
            .expect("builtin")
            .is_empty());
        std::fs::write(modules.join("virtio_blk.ko.zst"), b"(zstd)").expect("write");
        let err = select(&tree, "6.12.1-cloud", &["virtio-blk"]).expect_err("zstd");
        assert!(
            err.to_string()
                .contains("only .ko and .ko.xz modules are supported"),
            "{err}"
        );
        let err = select(&tree, "6.12.1-cloud", &["vsock"]).expect_err("absent");
        assert!(
            err.to_string().contains("neither built into 6.12.1-cloud"),
            "{err}"
        );
    }
}
