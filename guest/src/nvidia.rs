//! NVIDIA's device nodes in a GPU image. The driver registers its character
//! devices but creates no nodes (on a distribution, `nvidia-modprobe` or
//! udev does): once `nvidia.ko` and `nvidia_uvm.ko` have loaded, the init
//! creates `/dev/nvidiactl`, one `/dev/nvidiaN` per GPU the driver bound
//! (its minor from `/proc/driver/nvidia/gpus/*/information`) and the
//! unified-memory nodes (their major from `/proc/devices`), as
//! `nvidia-modprobe` would.

use std::path::Path;

use anyhow::Context;

/// The driver's fixed character-device major (`NV_MAJOR_DEVICE_NUMBER`).
pub const MAJOR: u64 = 195;
/// The control device's minor.
pub const CONTROL_MINOR: u64 = 255;
/// Where the driver lists the GPUs it bound, one directory per PCI address.
pub const GPUS_DIR: &str = "proc/driver/nvidia/gpus";
/// The name `nvidia_uvm` registers its major under in `/proc/devices`.
pub const UVM_DEVICE: &str = "nvidia-uvm";

/// One character device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Its path, e.g. `/dev/nvidia0`.
    pub path: String,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

/// The nodes for the driver as `root`'s `/proc` shows it: none when
/// `nvidia.ko` is not loaded (no GPU, or not a GPU image); the control
/// node and each GPU's when it is; the unified-memory nodes when
/// `nvidia_uvm` is loaded too.
pub fn device_nodes(root: &Path) -> anyhow::Result<Vec<DeviceNode>> {
    let gpus_dir = root.join(GPUS_DIR);
    let entries = match std::fs::read_dir(&gpus_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", gpus_dir.display())),
    };
    let mut minors = Vec::new();
    for entry in entries {
        let information = entry
            .with_context(|| format!("reading {}", gpus_dir.display()))?
            .path()
            .join("information");
        let text = std::fs::read_to_string(&information)
            .with_context(|| format!("reading {}", information.display()))?;
        let minor = text
            .lines()
            .find_map(|l| l.strip_prefix("Device Minor:"))
            .map(str::trim)
            .with_context(|| format!("{} has no \"Device Minor:\" line", information.display()))?;
        let minor: u64 = minor.parse().with_context(|| {
            format!(
                "{}: Device Minor {minor:?} is not a number",
                information.display()
            )
        })?;
        if minor >= CONTROL_MINOR {
            anyhow::bail!(
                "{}: Device Minor {minor}, expected below the control device's {CONTROL_MINOR}",
                information.display()
            );
        }
        minors.push(minor);
    }
    minors.sort_unstable();
    let mut nodes = vec![DeviceNode {
        path: "/dev/nvidiactl".into(),
        major: MAJOR,
        minor: CONTROL_MINOR,
    }];
    nodes.extend(minors.into_iter().map(|minor| DeviceNode {
        path: format!("/dev/nvidia{minor}"),
        major: MAJOR,
        minor,
    }));
    let devices = root.join("proc/devices");
    let text = std::fs::read_to_string(&devices)
        .with_context(|| format!("reading {}", devices.display()))?;
    // Character devices come first; the block devices' section follows.
    let uvm = text
        .lines()
        .take_while(|l| !l.starts_with("Block devices"))
        .filter_map(|l| l.trim().split_once(' '))
        .find(|(_, name)| name.trim() == UVM_DEVICE)
        .map(|(major, _)| major.parse::<u64>())
        .transpose()
        .with_context(|| {
            format!(
                "{}: the {UVM_DEVICE} major is not a number",
                devices.display()
            )
        })?;
    if let Some(major) = uvm {
        for (name, minor) in [("nvidia-uvm", 0), ("nvidia-uvm-tools", 1)] {
            nodes.push(DeviceNode {
                path: format!("/dev/{name}"),
                major,
                minor,
            });
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICES: &str = "Character devices:\n  1 mem\n195 nvidia\n234 nvidia-uvm\n\nBlock devices:\n  7 loop\n235 nvidia-uvm\n";

    fn proc(gpus: &[(&str, &str)], devices: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        for (bus, information) in gpus {
            let dir = root.path().join(GPUS_DIR).join(bus);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("information"), information).expect("write");
        }
        std::fs::create_dir_all(root.path().join("proc")).expect("mkdir");
        std::fs::write(root.path().join("proc/devices"), devices).expect("write");
        root
    }

    fn node(path: &str, major: u64, minor: u64) -> DeviceNode {
        DeviceNode {
            path: path.into(),
            major,
            minor,
        }
    }

    #[test]
    fn no_driver_means_no_nodes() {
        let root = tempfile::tempdir().expect("tempdir");
        assert_eq!(device_nodes(root.path()).expect("nodes"), []);
    }

    #[test]
    fn each_bound_gpu_gets_its_minor_and_uvm_its_registered_major() {
        let root = proc(
            &[
                (
                    "0000:c1:00.0",
                    "Model: \t\t NVIDIA H100\nIRQ:   \t\t 50\nDevice Minor: \t 1\n",
                ),
                (
                    "0000:41:00.0",
                    "Model: \t\t NVIDIA H100\nDevice Minor: \t 0\n",
                ),
            ],
            DEVICES,
        );
        assert_eq!(
            device_nodes(root.path()).expect("nodes"),
            [
                node("/dev/nvidiactl", 195, 255),
                node("/dev/nvidia0", 195, 0),
                node("/dev/nvidia1", 195, 1),
                node("/dev/nvidia-uvm", 234, 0),
                node("/dev/nvidia-uvm-tools", 234, 1),
            ]
        );
    }

    #[test]
    fn without_nvidia_uvm_only_the_driver_nodes() {
        let root = proc(
            &[("0000:41:00.0", "Device Minor: 0\n")],
            "Character devices:\n195 nvidia\n\nBlock devices:\n235 nvidia-uvm\n",
        );
        assert_eq!(
            device_nodes(root.path()).expect("nodes"),
            [
                node("/dev/nvidiactl", 195, 255),
                node("/dev/nvidia0", 195, 0)
            ]
        );
    }

    #[test]
    fn malformed_driver_files_are_named() {
        let root = proc(&[("0000:41:00.0", "Model: H100\n")], DEVICES);
        let err = device_nodes(root.path()).expect_err("no minor").to_string();
        assert!(err.contains("has no \"Device Minor:\" line"), "{err}");

        let root = proc(&[("0000:41:00.0", "Device Minor: x1\n")], DEVICES);
        let err = format!("{:#}", device_nodes(root.path()).expect_err("not a number"));
        assert!(err.contains("Device Minor \"x1\" is not a number"), "{err}");

        let root = proc(&[("0000:41:00.0", "Device Minor: 255\n")], DEVICES);
        let err = device_nodes(root.path()).expect_err("control").to_string();
        assert!(
            err.contains("expected below the control device's 255"),
            "{err}"
        );

        let root = proc(
            &[("0000:41:00.0", "Device Minor: 0\n")],
            "Character devices:\nx nvidia-uvm\n",
        );
        let err = device_nodes(root.path()).expect_err("major").to_string();
        assert!(
            err.contains("the nvidia-uvm major is not a number"),
            "{err}"
        );
    }
}
