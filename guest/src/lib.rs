//! The worker VM's init: what `kokon-init`, the guest's PID 1, decides.
//!
//! The guest image (`kokon image build`) holds the enclave, its arguments
//! and the kernel modules it needs, all inside the measured initramfs. The
//! init mounts the kernel's file systems, loads the modules, chooses the
//! evidence backend, starts the enclave as the guest's one service, and
//! powers the VM off when the enclave exits (the host's supervisor then
//! starts a fresh VM) or when the host presses the ACPI power button.
//!
//! The backend: when the TEE's guest device exists (`/dev/tdx_guest`,
//! `/dev/sev-guest`) the enclave runs with `--tee auto`, hardware only. Only
//! a guest without one (a development VM, `--tee none`) may use the sim, and
//! only with the launch measurements and sim root its host hands it through
//! `fw_cfg` ([`kokon_wire::vm`]); a real TEE's evidence can never be
//! replaced by the sim's, and production policies refuse simulated evidence.
//!
//! This module is the part of the init that tests run: the plan, from a
//! root directory that is `/` in the guest and a fake tree in tests.

pub mod dm;
pub mod nvidia;

use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attestation::sim::{SimLaunch, SIM_ROOT_CERT_FILE, SIM_ROOT_DIR, SIM_ROOT_KEY_FILE};
use kokon_wire::vm;

/// The TEE guest devices whose presence means real hardware.
pub const TEE_DEVICES: [&str; 2] = ["dev/tdx_guest", "dev/sev-guest"];
/// Where QEMU's `fw_cfg` files appear (module `qemu_fw_cfg`).
pub const FW_CFG_BY_NAME: &str = "sys/firmware/qemu_fw_cfg/by_name";
/// The enclave's data directory in the guest (a tmpfs).
pub const DATA_DIR: &str = "run/kokon";

/// The data disk's device: the VM's one virtio disk.
pub const DATA_DEVICE: &str = "/dev/vda";
/// The name of the data disk's dm-verity device.
pub const DATA_DM_NAME: &str = "kokon-data";

/// The data disk's dm-verity parameters from the (measured) kernel command
/// line, `root/proc/cmdline`; `None` when the image has no data disk.
pub fn data_disk(root: &Path) -> anyhow::Result<Option<vm::DataVerity>> {
    let path = root.join("proc/cmdline");
    let cmdline =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    vm::DataVerity::from_cmdline(&cmdline).map_err(anyhow::Error::msg)
}

/// Mounts the data disk read-only on [`vm::DATA_MOUNT`], through a
/// dm-verity device whose root hash the measured command line gives: every
/// block read from it is checked, and a block the host altered fails to read.
pub fn mount_data_disk(verity: &vm::DataVerity) -> anyhow::Result<()> {
    let device = Path::new(DATA_DEVICE);
    wait_for(device, "the data disk (the image's command line names one: is the host giving the VM its data.img?)")?;
    let node = dm::create_verity(DATA_DM_NAME, DATA_DEVICE, verity)?;
    wait_for(&node, "the data disk's dm-verity device")?;
    std::fs::create_dir_all(vm::DATA_MOUNT)
        .with_context(|| format!("creating {}", vm::DATA_MOUNT))?;
    nix::mount::mount(
        Some(&node),
        vm::DATA_MOUNT,
        Some("erofs"),
        nix::mount::MsFlags::MS_RDONLY
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOSUID,
        None::<&str>,
    )
    .with_context(|| format!("mounting {} (erofs) on {}", node.display(), vm::DATA_MOUNT))?;
    Ok(())
}

/// Waits up to a minute (a guest under TCG is slow) for a device node.
fn wait_for(path: &Path, what: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("{} did not appear in 60 s: {what}", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// The enclave's arguments as the image stores them.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EnclaveConfig {
    args: Vec<String>,
    /// Directories the loader searches for the enclave's run-time loaded
    /// libraries (a GPU image's CUDA user space on the data disk).
    #[serde(default)]
    library_path: Option<String>,
}

/// How the enclave gets its evidence in this VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A TEE guest device exists: the hardware backend (`--tee auto`).
    Hardware(PathBuf),
    /// A development VM: the sim, with the launch measurements its host computed.
    Sim(SimLaunch),
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::Hardware(device) => write!(f, "hardware ({})", device.display()),
            Evidence::Sim(launch) => write!(
                f,
                "sim with the host's launch measurements (MRTD {}, RTMR1 {}, RTMR2 {})",
                hex::encode(launch.mrtd),
                hex::encode(launch.rtmr1),
                hex::encode(launch.rtmr2)
            ),
        }
    }
}

/// What the init does after mounting and loading modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How the enclave gets its evidence.
    pub evidence: Evidence,
    /// The enclave binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// What it gets in its environment besides the init's.
    pub env: Vec<(String, String)>,
}

/// An absolute path of the image, under `root`.
fn in_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The kernel modules to load, in order, as paths under `root`.
pub fn modules(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let list = in_root(root, vm::MODULES_LIST);
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", list.display())),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| match line.strip_prefix('/') {
            Some(absolute) => root.join(absolute),
            None if line.ends_with(".ko") => in_root(root, vm::MODULES_DIR).join(line),
            None => in_root(root, vm::MODULES_DIR).join(format!("{line}.ko")),
        })
        .collect())
}

/// Chooses the backend and the enclave's command line. For the sim, writes
/// the sim root and the launch measurements from `fw_cfg` into the data
/// directory, where the enclave reads them.
pub fn plan(root: &Path) -> anyhow::Result<Plan> {
    let config_path = in_root(root, vm::ENCLAVE_CONFIG);
    let text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "reading the enclave's configuration {}",
            config_path.display()
        )
    })?;
    let config: EnclaveConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not {{\"args\": [...]}}", config_path.display()))?;
    let mut env = Vec::new();
    if let Some(path) = config.library_path {
        if path.is_empty() || path.split(':').any(|dir| !dir.starts_with('/')) {
            anyhow::bail!(
                "{}: library_path {path:?} must be absolute directories separated by ':'",
                config_path.display()
            );
        }
        env.push(("LD_LIBRARY_PATH".to_owned(), path));
    }
    let mut args = config.args;
    if args
        .iter()
        .any(|a| a == "--tee" || a.starts_with("--tee=") || a == "--sim-launch")
    {
        anyhow::bail!(
            "{} chooses the evidence backend itself (--tee/--sim-launch); the init chooses it from the hardware",
            config_path.display()
        );
    }
    let data_dir = root.join(DATA_DIR);
    args.extend(["--data-dir".into(), path_arg(&data_dir)?]);
    let evidence = match TEE_DEVICES
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.exists())
    {
        Some(device) => {
            args.extend(["--tee".into(), "auto".into()]);
            Evidence::Hardware(device)
        }
        None => {
            let launch = provision_sim(root, &data_dir)?;
            let launch_file = data_dir.join("sim-launch.json");
            args.extend([
                "--tee".into(),
                "sim".into(),
                "--sim-launch".into(),
                path_arg(&launch_file)?,
            ]);
            Evidence::Sim(launch)
        }
    };
    Ok(Plan {
        evidence,
        program: in_root(root, vm::ENCLAVE_BINARY),
        args,
        env,
    })
}

fn path_arg(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Reads one `fw_cfg` file the host provided.
fn fw_cfg(root: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = root.join(FW_CFG_BY_NAME).join(name).join("raw");
    std::fs::read(&path).with_context(|| {
        format!(
            "no TEE guest device ({}) and no development-VM measurements from the host ({}): \
             this guest can produce no evidence (a real TEE needs its guest driver; a development VM \
             needs `kokon host --backend qemu --tee none`)",
            TEE_DEVICES.map(|d| format!("/{d}")).join(", "),
            path.display()
        )
    })
}

/// Writes the sim root and launch measurements from `fw_cfg` into `data_dir`.
fn provision_sim(root: &Path, data_dir: &Path) -> anyhow::Result<SimLaunch> {
    let launch_bytes = fw_cfg(root, vm::FW_CFG_SIM_LAUNCH)?;
    let launch: SimLaunch = serde_json::from_slice(&launch_bytes).with_context(|| {
        format!(
            "fw_cfg {} is not a sim launch measurement",
            vm::FW_CFG_SIM_LAUNCH
        )
    })?;
    let cert = fw_cfg(root, vm::FW_CFG_SIM_ROOT_CERT)?;
    let key = zeroize::Zeroizing::new(fw_cfg(root, vm::FW_CFG_SIM_ROOT_KEY)?);
    let sim_root = data_dir.join(SIM_ROOT_DIR);
    std::fs::create_dir_all(&sim_root)
        .with_context(|| format!("creating {}", sim_root.display()))?;
    write_private(&sim_root.join(SIM_ROOT_CERT_FILE), &cert)?;
    write_private(&sim_root.join(SIM_ROOT_KEY_FILE), &key)?;
    write_private(&data_dir.join("sim-launch.json"), &launch_bytes)?;
    Ok(launch)
}

/// Writes `bytes` to `path`, readable by its owner only (the sim root's key
/// among them), replacing what was there.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(args: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/kokon")).unwrap();
        std::fs::write(in_root(root.path(), vm::ENCLAVE_CONFIG), args).unwrap();
        root
    }

    fn launch() -> SimLaunch {
        SimLaunch {
            mrtd: [1; 48],
            rtmr0: [0; 48],
            rtmr1: [2; 48],
            rtmr2: [3; 48],
        }
    }

    fn give_fw_cfg(root: &Path) {
        for (name, bytes) in [
            (
                vm::FW_CFG_SIM_LAUNCH,
                serde_json::to_vec(&launch()).unwrap(),
            ),
            (vm::FW_CFG_SIM_ROOT_CERT, b"cert".to_vec()),
            (vm::FW_CFG_SIM_ROOT_KEY, b"key".to_vec()),
        ] {
            let dir = root.join(FW_CFG_BY_NAME).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("raw"), bytes).unwrap();
        }
    }

    #[test]
    fn a_tee_device_means_hardware_even_when_the_host_offers_the_sim() {
        let root = image(r#"{"args": ["--vsock-port", "5000"]}"#);
        give_fw_cfg(root.path());
        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        std::fs::write(root.path().join("dev/sev-guest"), b"").unwrap();
        let plan = plan(root.path()).unwrap();
        assert_eq!(
            plan.evidence,
            Evidence::Hardware(root.path().join("dev/sev-guest"))
        );
        assert_eq!(&plan.args[..2], ["--vsock-port", "5000"]);
        assert_eq!(&plan.args[4..], ["--tee", "auto"]);
        assert!(!root.path().join(DATA_DIR).join(SIM_ROOT_DIR).exists());
    }

    #[test]
    fn a_development_vm_runs_the_sim_with_its_hosts_measurements() {
        let root = image(r#"{"args": ["--vsock-port", "5000"]}"#);
        give_fw_cfg(root.path());
        let plan = plan(root.path()).unwrap();
        assert_eq!(plan.evidence, Evidence::Sim(launch()));
        let data = root.path().join(DATA_DIR);
        assert_eq!(
            &plan.args[2..],
            [
                "--data-dir".to_string(),
                data.display().to_string(),
                "--tee".into(),
                "sim".into(),
                "--sim-launch".into(),
                data.join("sim-launch.json").display().to_string()
            ]
        );
        let sim_root = data.join(SIM_ROOT_DIR);
        assert_eq!(
            std::fs::read(sim_root.join(SIM_ROOT_CERT_FILE)).unwrap(),
            b"cert"
        );
        assert_eq!(
            std::fs::read(sim_root.join(SIM_ROOT_KEY_FILE)).unwrap(),
            b"key"
        );
        let written: SimLaunch =
            serde_json::from_slice(&std::fs::read(data.join("sim-launch.json")).unwrap()).unwrap();
        assert_eq!(written, launch());
    }

    #[test]
    fn a_gpu_images_library_path_reaches_the_enclaves_loader() {
        let root = image(r#"{"args": [], "library_path": "/data/gpu/lib"}"#);
        give_fw_cfg(root.path());
        assert_eq!(
            plan(root.path()).unwrap().env,
            [("LD_LIBRARY_PATH".to_owned(), "/data/gpu/lib".to_owned())]
        );
        let root = image(r#"{"args": []}"#);
        give_fw_cfg(root.path());
        assert_eq!(plan(root.path()).unwrap().env, []);
        for bad in ["", "data/gpu", "/data/gpu:lib"] {
            let root = image(&format!(r#"{{"args": [], "library_path": "{bad}"}}"#));
            let err = plan(root.path()).expect_err(bad).to_string();
            assert!(err.contains("must be absolute directories"), "{err}");
        }
    }

    #[test]
    fn no_tee_and_no_measurements_is_an_error_naming_both() {
        let root = image(r#"{"args": []}"#);
        let e = format!("{:#}", plan(root.path()).unwrap_err());
        assert!(e.contains("/dev/tdx_guest, /dev/sev-guest"), "{e}");
        assert!(e.contains(vm::FW_CFG_SIM_LAUNCH), "{e}");
    }

    #[test]
    fn bad_measurements_from_the_host_are_refused() {
        let root = image(r#"{"args": []}"#);
        give_fw_cfg(root.path());
        let raw = root
            .path()
            .join(FW_CFG_BY_NAME)
            .join(vm::FW_CFG_SIM_LAUNCH)
            .join("raw");
        std::fs::write(&raw, br#"{"mrtd": "00"}"#).unwrap();
        let e = format!("{:#}", plan(root.path()).unwrap_err());
        assert!(e.contains("is not a sim launch measurement"), "{e}");
    }

    #[test]
    fn the_image_cannot_choose_the_backend() {
        let root = image(r#"{"args": ["--tee", "sim"]}"#);
        let e = format!("{:#}", plan(root.path()).unwrap_err());
        assert!(e.contains("the init chooses it from the hardware"), "{e}");
        let root = image(r#"{"argv": []}"#);
        let e = format!("{:#}", plan(root.path()).unwrap_err());
        assert!(e.contains("is not {\"args\": [...]}"), "{e}");
    }

    #[test]
    fn modules_load_in_the_listed_order() {
        let root = image("{}");
        std::fs::write(
            in_root(root.path(), vm::MODULES_LIST),
            "# dependencies first\nvsock\nvmw_vsock_virtio_transport.ko\n/lib/modules/extra/tsm.ko\n\n",
        )
        .unwrap();
        assert_eq!(
            modules(root.path()).unwrap(),
            [
                root.path().join("lib/modules/vsock.ko"),
                root.path()
                    .join("lib/modules/vmw_vsock_virtio_transport.ko"),
                root.path().join("lib/modules/extra/tsm.ko"),
            ]
        );
        let bare = tempfile::tempdir().unwrap();
        assert!(modules(bare.path()).unwrap().is_empty());
    }
}
