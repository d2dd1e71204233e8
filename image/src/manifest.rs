//! `manifest.json`: what a build produced and from what, with no host
//! paths or times in it, so that a rebuild from the same inputs writes the
//! same bytes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::file_sha256;
use crate::error::ImageError;

/// The manifest's file name in the output directory.
pub const MANIFEST: &str = "manifest.json";

/// The manifest format this crate writes and reads.
pub const FORMAT: u32 = 2;

/// The VM the image is measured for: the SEV-SNP launch digest covers one
/// VMSA per vCPU, whose contents depend on the vCPU type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmShape {
    /// The number of vCPUs.
    pub vcpus: u32,
    /// The guest's memory in MiB.
    pub memory_mib: u64,
    /// QEMU's vCPU model for SEV-SNP, e.g. `EPYC-v4`.
    pub snp_vcpu_type: String,
}

/// One file of the output directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Its name in the output directory.
    pub file: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The files QEMU is started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifacts {
    /// The firmware of TDX and development VMs, `-bios OVMF.fd`.
    pub ovmf: Artifact,
    /// The firmware of SEV-SNP VMs, `-bios OVMF.amdsev.fd`.
    pub snp_ovmf: Artifact,
    /// The kernel, `-kernel vmlinuz`.
    pub kernel: Artifact,
    /// The initramfs, `-initrd initrd.img`.
    pub initrd: Artifact,
    /// The kernel command line, `-append "$(cat cmdline)"`.
    pub cmdline: Artifact,
    /// The data disk, a read-only virtio disk (`data.img`), when the image
    /// has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Artifact>,
}

impl Artifacts {
    /// Every output file, in a fixed order.
    pub fn all(&self) -> Vec<&Artifact> {
        let mut all = vec![
            &self.ovmf,
            &self.snp_ovmf,
            &self.kernel,
            &self.initrd,
            &self.cmdline,
        ];
        all.extend(&self.data);
        all
    }
}

/// The data disk: an EROFS file system and its dm-verity hash tree, whose
/// parameters are on the (measured) command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDiskRecord {
    /// The file system's length in 4 KiB blocks.
    pub data_blocks: u64,
    /// The hash tree's first block.
    pub hash_start_block: u64,
    /// The tree's root hash, hex.
    pub root_hash: String,
    /// The salt, hex.
    pub salt: String,
    /// The files on the disk, by path in the guest (under `/data`).
    pub files: Vec<ImageFile>,
}

/// A pinned package the image was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRecord {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// The .deb's SHA-256.
    pub sha256: String,
}

/// The ONNX Runtime wheel and the library taken from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelRecord {
    /// The wheel's file name.
    pub filename: String,
    /// The wheel's SHA-256.
    pub sha256: String,
    /// The zip member taken.
    pub member: String,
    /// Where it is in the image.
    pub path: String,
    /// The library's SHA-256.
    pub library_sha256: String,
}

/// A file inside the initramfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// Its path inside the image.
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// What `build` made: the artifacts' digests and everything they were made
/// from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The output files.
    pub artifacts: Artifacts,
    /// The kernel release (`uname -r` in the guest).
    pub kernel_release: String,
    /// Where `OVMF.amdsev.fd` came from: the pinned `ovmf-amdsev` package,
    /// or a file given to the build.
    pub snp_firmware_source: String,
    /// The kernel command line.
    pub cmdline: String,
    /// The VM shape the image is measured for.
    pub vm: VmShape,
    /// The pinned packages, by name.
    pub packages: Vec<PackageRecord>,
    /// The ONNX Runtime wheel.
    pub wheel: WheelRecord,
    /// `/init`.
    pub init: ImageFile,
    /// `/usr/bin/kokon-enclave`.
    pub enclave: ImageFile,
    /// The enclave's arguments (`/etc/kokon/enclave.json`).
    pub enclave_args: Vec<String>,
    /// The spec's extra files (models), by path.
    pub files: Vec<ImageFile>,
    /// The shared libraries and ELF interpreter taken from the packages.
    pub libraries: Vec<ImageFile>,
    /// The kernel modules, in load order (`/etc/kokon/modules`).
    pub modules: Vec<String>,
    /// The data disk, when the image has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disk: Option<DataDiskRecord>,
    /// NVIDIA's driver, in a GPU image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRecord>,
}

/// NVIDIA's driver in a GPU image ([`crate::nvidia`]): where each part
/// came from. Its firmware is among the data disk's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRecord {
    /// The driver version (`550.163.01`).
    pub driver_version: String,
    /// The pinned driver packages: the module source, firmware, libraries.
    pub packages: Vec<PackageRecord>,
    /// The pinned build root the modules were compiled in.
    pub toolchain: Vec<PackageRecord>,
    /// The compiler, the kernel's own (`CONFIG_CC_VERSION_TEXT`).
    pub compiler: String,
    /// The source edits made for the pinned kernel before compiling.
    pub adaptations: Vec<String>,
    /// The compiled modules in the initramfs, in load order (also at the
    /// end of [`Manifest::modules`]).
    pub modules: Vec<ImageFile>,
    /// The driver's user-space libraries in the initramfs.
    pub libraries: Vec<ImageFile>,
    /// The CUDA user space's pinned wheels (ONNX Runtime with the CUDA
    /// provider, NVIDIA's CUDA libraries), whose libraries are on the data
    /// disk under [`GpuRecord::library_path`].
    pub runtime: Vec<crate::lock::PinnedWheel>,
    /// The enclave's library path (`/etc/kokon/enclave.json`'s
    /// `library_path`).
    pub library_path: String,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(ImageError::io("reading", path.clone()))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Manifest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if manifest.format != FORMAT {
            return Err(ImageError::Manifest {
                path,
                reason: format!("format {}, expected {FORMAT}", manifest.format),
            });
        }
        Ok(manifest)
    }

    /// Checks that the artifacts in `dir` are the ones this manifest
    /// describes (SHA-256 and size).
    pub fn verify(&self, dir: &Path) -> Result<(), ImageError> {
        for artifact in self.artifacts.all() {
            let path = dir.join(&artifact.file);
            let (sha256, size) = file_sha256(&path)?;
            if sha256 != artifact.sha256 || size != artifact.size {
                return Err(ImageError::Digest {
                    what: path.display().to_string(),
                    expected: format!("{} ({} bytes)", artifact.sha256, artifact.size),
                    pinned_by: MANIFEST.into(),
                    found: format!("{sha256} ({size} bytes)"),
                });
            }
        }
        Ok(())
    }

    /// The manifest's bytes: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| ImageError::Manifest {
            path: MANIFEST.into(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(file: &str, bytes: &[u8]) -> Artifact {
        Artifact {
            file: file.into(),
            sha256: crate::digest::sha256_hex(bytes),
            size: bytes.len() as u64,
        }
    }

    fn sample(dir: &Path) -> Manifest {
        let files = [
            ("OVMF.fd", b"fw"),
            ("OVMF.amdsev.fd", b"sn"),
            ("vmlinuz", b"kl"),
            ("initrd.img", b"rd"),
            ("cmdline", b"c="),
        ];
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).expect("write");
        }
        let image_file = ImageFile {
            path: "/init".into(),
            sha256: "0".repeat(64),
            size: 1,
        };
        Manifest {
            format: FORMAT,
            artifacts: Artifacts {
                ovmf: artifact("OVMF.fd", b"fw"),
                snp_ovmf: artifact("OVMF.amdsev.fd", b"sn"),
                kernel: artifact("vmlinuz", b"kl"),
                initrd: artifact("initrd.img", b"rd"),
                cmdline: artifact("cmdline", b"c="),
                data: None,
            },
            kernel_release: "6.12.1".into(),
            snp_firmware_source: "the ovmf-amdsev package".into(),
            cmdline: "c=".into(),
            vm: VmShape {
                vcpus: 1,
                memory_mib: 512,
                snp_vcpu_type: "EPYC-v4".into(),
            },
            packages: Vec::new(),
            wheel: WheelRecord {
                filename: "w.whl".into(),
                sha256: "1".repeat(64),
                member: "m".into(),
                path: "/usr/lib/kokon/m".into(),
                library_sha256: "2".repeat(64),
            },
            init: image_file.clone(),
            enclave: image_file,
            enclave_args: Vec::new(),
            files: Vec::new(),
            libraries: Vec::new(),
            modules: vec!["configfs".into()],
            data_disk: None,
            gpu: None,
        }
    }

    #[test]
    fn manifests_read_back_and_check_their_format_and_artifacts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = sample(dir.path());
        std::fs::write(
            dir.path().join(MANIFEST),
            manifest.to_bytes().expect("bytes"),
        )
        .expect("write");
        assert_eq!(Manifest::load(dir.path()).expect("load"), manifest);
        manifest.verify(dir.path()).expect("verify");

        let mut future = manifest.clone();
        future.format = FORMAT + 1;
        std::fs::write(dir.path().join(MANIFEST), future.to_bytes().expect("bytes"))
            .expect("write");
        let err = Manifest::load(dir.path()).expect_err("format 3");
        assert!(err.to_string().ends_with("format 3, expected 2"), "{err}");

        std::fs::write(dir.path().join(MANIFEST), b"{\"format\": 2}").expect("write");
        let err = Manifest::load(dir.path()).expect_err("incomplete");
        assert!(err.to_string().contains("missing field"), "{err}");

        std::fs::write(dir.path().join("vmlinuz"), b"other").expect("write");
        let err = manifest.verify(dir.path()).expect_err("changed kernel");
        assert!(
            err.to_string().contains("vmlinuz") && err.to_string().contains("(5 bytes)"),
            "{err}"
        );
        std::fs::write(dir.path().join("vmlinuz"), b"kl").expect("write");
        std::fs::write(dir.path().join("OVMF.amdsev.fd"), b"snp").expect("write");
        let err = manifest
            .verify(dir.path())
            .expect_err("changed SNP firmware");
        assert!(err.to_string().contains("OVMF.amdsev.fd"), "{err}");
    }
}
