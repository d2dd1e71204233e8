//! The worker VM from the command line: `kokon image build|lock`, `kokon
//! audit measure`, and the launch of `kokon host --backend qemu`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kokon_host::link::Link;
use kokon_host::qemu::{self, Accel, SnpLaunch, Tee, VmConfig, Vsock};
use kokon_host::vm::{VmCommand, VsockDaemon};
use kokon_image::{ImageSpec, Manifest, VmShape};
use kokon_measure::Register;
use kokon_wire::vm::{
    ENCLAVE_VSOCK_PORT, FW_CFG_SIM_LAUNCH, FW_CFG_SIM_ROOT_CERT, FW_CFG_SIM_ROOT_KEY,
};
use sha2::Digest;

use crate::args::{HostArgs, ImageBuildArgs};
use crate::local;

/// The lock file of this checkout, relative to it.
const LOCK_FILE: &str = "image/debian.lock";
/// Where the magika package's files go in the image.
const MAGIKA_IN_IMAGE: &str = "opt/magika";
/// The kernel command line of the worker VM: the serial console (the
/// host's log), no reboot on panic (QEMU exits; the host restarts it).
const CMDLINE: &str = "console=ttyS0 panic=-1 rdinit=/init";
/// The guest's context ID on its vsock device.
const GUEST_CID: u32 = 3;

fn lock_file(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(lock) => Ok(lock.to_path_buf()),
        None => kokon_client::local::checkout_path(LOCK_FILE).with_context(|| {
            format!("no {LOCK_FILE} above this program or the current directory: pass --lock FILE")
        }),
    }
}

/// Downloaded packages are kept here between builds.
fn image_cache() -> PathBuf {
    kokon_client::local::checkout_path(".cache")
        .map(|c| c.join("image"))
        .unwrap_or_else(|| local::data_dir().join("image-cache"))
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()
        .context("locating this program")?
        .with_file_name(name))
}

/// `kokon image build`.
pub fn build(args: &ImageBuildArgs) -> anyhow::Result<()> {
    let model = match &args.model {
        Some(m) => m.clone(),
        None => local::env_path("KOKON_MODEL")?,
    };
    // magika's layout: <package>/models/<version>/model.onnx with its
    // config.min.json, and <package>/config/content_types_kb.min.json.
    let package = model
        .ancestors()
        .nth(3)
        .with_context(|| format!("{} is not inside a magika package", model.display()))?;
    let relative = |p: &Path| -> anyhow::Result<String> {
        let rel = p.strip_prefix(package)?;
        Ok(format!("{MAGIKA_IN_IMAGE}/{}", rel.display()))
    };
    let config = model.with_file_name("config.min.json");
    let labels = package.join("config").join("content_types_kb.min.json");
    let mut files = Vec::new();
    for file in [&model, &config, &labels] {
        if !file.is_file() {
            anyhow::bail!(
                "{} not found (the magika package is incomplete: run `just setup`)",
                file.display()
            );
        }
        files.push((relative(file)?, file.clone()));
    }
    let model_in_image = format!("/{}", relative(&model)?);
    // A GPU image's enclave runs its models on the GPU with the ONNX
    // Runtime on its data disk.
    let (ort_lib, device) = match args.gpu {
        false => (kokon_image::ORT_LIBRARY_PATH, "cpu"),
        true => (kokon_image::nvidia::RUNTIME_ORT, "cuda"),
    };
    let mut enclave_args: Vec<String> = [
        "--vsock-port".to_string(),
        ENCLAVE_VSOCK_PORT.to_string(),
        "--model".into(),
        model_in_image,
        "--model-name".into(),
        "magika".into(),
        "--ort-lib".into(),
        ort_lib.into(),
        "--device".into(),
        device.into(),
        "--price-nanoton-per-unit".into(),
        args.price_nanoton_per_unit.to_string(),
    ]
    .to_vec();
    let mut data_files = Vec::new();
    if let Some(dir) = &args.llm {
        data_files = text_model_files(dir)?;
        enclave_args.extend([
            "--llm".into(),
            format!("{}/{LLM_ON_DATA_DISK}", kokon_wire::vm::DATA_MOUNT),
            "--price-nanoton-per-prompt-token".into(),
            args.price_nanoton_per_prompt_token.to_string(),
            "--price-nanoton-per-completion-token".into(),
            args.price_nanoton_per_completion_token.to_string(),
        ]);
    }
    let spec = ImageSpec {
        lock: lock_file(args.lock.as_deref())?,
        cache: image_cache(),
        init: match &args.init {
            Some(p) => p.clone(),
            None => sibling("kokon-init")?,
        },
        enclave: match &args.enclave {
            Some(p) => p.clone(),
            None => local::enclave_binary()?,
        },
        files,
        data_files,
        enclave_args,
        cmdline: CMDLINE.into(),
        vm: VmShape {
            vcpus: args.vcpus,
            memory_mib: args.memory_mib,
            snp_vcpu_type: args.snp_vcpu_type.clone(),
        },
        snp_firmware: args.snp_firmware.clone(),
        gpu: args.gpu,
    };
    for (what, path) in [("init", &spec.init), ("enclave", &spec.enclave)] {
        if !path.is_file() {
            anyhow::bail!(
                "the {what} binary {} not found: build it with `cargo build --release --bins`",
                path.display()
            );
        }
    }
    let manifest = kokon_image::build(&spec, &args.out)?;
    println!("image written to {}", args.out.display());
    for artifact in manifest.artifacts.all() {
        println!("  {:<12} sha256 {}", artifact.file, artifact.sha256);
    }
    Ok(())
}

/// The text model's directory on the data disk.
const LLM_ON_DATA_DISK: &str = "llm";

/// The files of a text model directory, for the data disk: each regular
/// file but hidden ones (a setup stamp), as `llm/NAME`.
fn text_model_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            anyhow::bail!("{}: a file name that is not UTF-8", dir.display());
        };
        if name.starts_with('.') || !entry.file_type()?.is_file() {
            continue;
        }
        files.push((format!("{LLM_ON_DATA_DISK}/{name}"), entry.path()));
    }
    if !files
        .iter()
        .any(|(name, _)| name.ends_with("/kokon-llm.json"))
    {
        anyhow::bail!(
            "{} holds no kokon-llm.json: not a text model directory from scripts/llm/gguf_to_onnx.py",
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

/// `kokon image lock`.
pub fn lock(given: Option<&Path>) -> anyhow::Result<()> {
    let lock = lock_file(given)?;
    kokon_image::refresh_lock(&lock, &image_cache())?;
    println!("{} refreshed: review and commit it", lock.display());
    Ok(())
}

/// An image's files, read for measuring.
struct ImageFiles {
    manifest: Manifest,
    /// `OVMF.fd`, which TDX and development VMs boot.
    firmware: Vec<u8>,
    /// `OVMF.amdsev.fd`, which SEV-SNP VMs boot.
    snp_firmware: Vec<u8>,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
}

fn read_image(dir: &Path) -> anyhow::Result<ImageFiles> {
    let manifest = Manifest::load(dir).with_context(|| {
        format!(
            "{} holds no kokon guest image: build one with `kokon image build --out {}` (just image)",
            dir.display(),
            dir.display()
        )
    })?;
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    Ok(ImageFiles {
        firmware: read(kokon_image::OVMF_FILE)?,
        snp_firmware: read(kokon_image::SNP_OVMF_FILE)?,
        kernel: read(kokon_image::KERNEL_FILE)?,
        initrd: read(kokon_image::INITRD_FILE)?,
        manifest,
    })
}

/// An error unless GPUs are passed to the worker VM exactly when its image
/// (in `dir`) is a GPU image (`has_driver`): without NVIDIA's driver the
/// guest cannot use them, and a GPU image's enclave (`--device cuda`)
/// refuses to start without one.
fn gpus_fit_image(dir: &Path, has_driver: bool, gpus: &[String]) -> anyhow::Result<()> {
    match (has_driver, gpus.is_empty()) {
        (false, false) => anyhow::bail!(
            "--gpu {} passes GPUs to the worker VM, but the image in {} has no NVIDIA driver: build it with `kokon image build --gpu` (just image-gpu)",
            gpus.join(" --gpu "),
            dir.display()
        ),
        (true, true) => anyhow::bail!(
            "the image in {} is a GPU image (its enclave runs with --device cuda): pass its GPUs with --gpu PCI_BDF, or build an image without --gpu",
            dir.display()
        ),
        _ => Ok(()),
    }
}

/// The TDX registers of an image (also the sim's launch measurements in a development VM).
fn tdx_registers(image: &ImageFiles) -> anyhow::Result<Vec<Register>> {
    Ok(kokon_measure::tdx::expected(
        &kokon_measure::tdx::TdxInputs {
            ovmf: &image.firmware,
            kernel: &image.kernel,
            initrd: &image.initrd,
            cmdline: &image.manifest.cmdline,
        },
    )?)
}

/// The SEV-SNP launch digest of an image, for the manifest's VM shape unless
/// `vcpus` or `vcpu_type` say otherwise.
fn snp_registers(
    image: &ImageFiles,
    vcpus: Option<u32>,
    vcpu_type: Option<&str>,
) -> anyhow::Result<Vec<Register>> {
    let vcpu_type = vcpu_type
        .unwrap_or(&image.manifest.vm.snp_vcpu_type)
        .parse()
        .map_err(|e| anyhow::anyhow!("--vcpu-type: {e}"))?;
    Ok(kokon_measure::snp::expected(
        &kokon_measure::snp::SnpInputs {
            ovmf: &image.snp_firmware,
            kernel: Some(&image.kernel),
            initrd: Some(&image.initrd),
            cmdline: Some(&image.manifest.cmdline),
            vcpus: vcpus.unwrap_or(image.manifest.vm.vcpus),
            vcpu_type,
            guest_features: kokon_measure::snp::DEFAULT_GUEST_FEATURES,
        },
    )?)
}

/// `kokon audit measure`.
pub fn measure(
    dir: &Path,
    tee: &str,
    vcpus: Option<u32>,
    vcpu_type: Option<&str>,
    snippet: bool,
    into: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let image = read_image(dir)?;
    let registers = match tee {
        "tdx" => tdx_registers(&image)?,
        "snp" => snp_registers(&image, vcpus, vcpu_type)?,
        other => anyhow::bail!("--tee {other}: expected snp or tdx"),
    };
    if snippet {
        match into {
            None => print!("{}", kokon_measure::policy_snippet(&registers)),
            Some(policy) => print!("{}", with_measurements(&read_policy(policy)?, &registers)),
        }
        return Ok(());
    }
    // The data disk, which the command line's root hash fixes: checked
    // block by block as the guest's dm-verity will read it.
    let data_disk = match &image.manifest.data_disk {
        None => None,
        Some(record) => {
            let verity = kokon_wire::vm::DataVerity::from_cmdline(&image.manifest.cmdline)
                .map_err(anyhow::Error::msg)?
                .context("the manifest records a data disk but the command line names none")?;
            let file = dir.join(kokon_image::disk::DATA_FILE);
            kokon_image::disk::check(&file, &verity)?;
            Some((verity, record))
        }
    };
    if json {
        let data_disk = data_disk.map(|(verity, record)| {
            serde_json::json!({
                "file": kokon_image::disk::DATA_FILE,
                "root_hash": hex::encode(verity.root_hash),
                "data_blocks": verity.data_blocks,
                "checked": true,
                "files": record.files,
            })
        });
        let registers: Vec<_> = registers
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "value": hex::encode(&r.value),
                    "explanation": r.explanation,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "tee": tee,
                "registers": registers,
                "data_disk": data_disk,
                "gpu": image.manifest.gpu,
            }))?
        );
        return Ok(());
    }
    println!(
        "{} measurements of the image in {}:",
        tee.to_uppercase(),
        dir.display()
    );
    for register in &registers {
        println!("\n{} = {}", register.name, hex::encode(&register.value));
        for line in &register.explanation {
            println!("  {line}");
        }
    }
    if let Some((verity, record)) = data_disk {
        println!(
            "\ndata disk = {}, dm-verity root {}",
            kokon_image::disk::DATA_FILE,
            hex::encode(verity.root_hash)
        );
        println!(
            "  the measured command line's {} fixes its root hash, salt and layout ({} data blocks, hash tree from block {}); every block of {} was hashed up to that root here, as the guest's dm-verity reads it: it matches",
            kokon_wire::vm::DATA_PARAM,
            verity.data_blocks,
            verity.hash_start_block,
            kokon_image::disk::DATA_FILE
        );
        println!(
            "  files (EROFS, mounted read-only on {}):",
            kokon_wire::vm::DATA_MOUNT
        );
        for f in &record.files {
            println!("    {} sha256 {} ({} bytes)", f.path, f.sha256, f.size);
        }
    }
    if let Some(gpu) = &image.manifest.gpu {
        println!();
        for line in gpu_driver_lines(gpu) {
            println!("{line}");
        }
    }
    Ok(())
}

/// What an auditor needs to know of a GPU image's NVIDIA driver: where each
/// part came from, and how the modules were compiled.
fn gpu_driver_lines(gpu: &kokon_image::manifest::GpuRecord) -> Vec<String> {
    let mut lines = vec![
        format!("GPU driver = NVIDIA {}", gpu.driver_version),
        format!(
            "  kernel modules, compiled by the image build from the pinned source package with {} in a build root of {} pinned packages (the manifest's gpu.toolchain), inside the measured initrd:",
            gpu.compiler,
            gpu.toolchain.len()
        ),
    ];
    let file = |f: &kokon_image::manifest::ImageFile| {
        format!("    {} sha256 {} ({} bytes)", f.path, f.sha256, f.size)
    };
    lines.extend(gpu.modules.iter().map(file));
    if gpu.adaptations.is_empty() {
        lines.push("  source edits: none".into());
    }
    lines.extend(
        gpu.adaptations
            .iter()
            .map(|a| format!("  source edit for the pinned kernel: {a}")),
    );
    lines.push("  user-space driver libraries, inside the measured initrd:".into());
    lines.extend(gpu.libraries.iter().map(file));
    lines.push(format!(
        "  the GSP firmware is on the data disk (above), named to the kernel by the measured command line's {}",
        kokon_image::nvidia::FIRMWARE_PARAM
    ));
    lines.push(format!(
        "  CUDA user space on the data disk under {} (the enclave's library path; ONNX Runtime with the CUDA provider and NVIDIA's CUDA libraries), from the wheels (PyPI, pinned):",
        gpu.library_path
    ));
    lines.extend(
        gpu.runtime
            .iter()
            .map(|w| format!("    {} sha256 {}", w.filename, w.sha256)),
    );
    lines.push("  packages (Debian, pinned):".into());
    lines.extend(
        gpu.packages
            .iter()
            .map(|p| format!("    {} {} sha256 {}", p.name, p.version, p.sha256)),
    );
    lines.push(
        "  to reproduce the modules' bytes: `kokon image build --gpu` with the same lock and binaries (docs/auditor.md)".into(),
    );
    lines
}

/// The development VM policy `base` with the TDX measurements of the image in `dir`.
pub fn measured_policy(dir: &Path, base: &Path) -> anyhow::Result<String> {
    let registers = tdx_registers(&read_image(dir)?)?;
    Ok(with_measurements(&read_policy(base)?, &registers))
}

fn read_policy(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `policy` with the registers' values in its `[measurements]` table: each
/// register's key is set to exactly its value, every other key (TD
/// attributes, a register not recomputed such as RTMR0) and every comment
/// stays as it was, and a policy without the table gets one.
fn with_measurements(policy: &str, registers: &[Register]) -> String {
    let line_of = |r: &Register| format!("{} = [\"{}\"]\n", r.name, hex::encode(&r.value));
    let mut out = String::new();
    let mut written = vec![false; registers.len()];
    let mut in_table = false;
    let mut seen_table = false;
    let mut skipping_array = false;
    let flush = |out: &mut String, written: &mut Vec<bool>| {
        for (register, done) in registers.iter().zip(written.iter_mut()) {
            if !*done {
                out.push_str(&line_of(register));
                *done = true;
            }
        }
    };
    for line in policy.lines() {
        if skipping_array {
            skipping_array = !line.contains(']');
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if in_table {
                flush(&mut out, &mut written);
            }
            in_table = trimmed.trim_end() == "[measurements]";
            seen_table |= in_table;
        } else if in_table {
            let key = trimmed.split('=').next().unwrap_or_default().trim();
            if let Some((register, done)) = registers
                .iter()
                .zip(written.iter_mut())
                .find(|(r, _)| r.name == key)
            {
                if !*done {
                    out.push_str(&line_of(register));
                    *done = true;
                }
                let value = trimmed.split_once('=').map(|(_, v)| v).unwrap_or_default();
                skipping_array = value.contains('[') && !value.contains(']');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if in_table {
        flush(&mut out, &mut written);
    }
    if !seen_table {
        out.push_str("\n[measurements]\n");
        flush(&mut out, &mut written);
    }
    out
}

/// The worker VM for `kokon host --backend qemu`.
pub fn launch(
    args: &HostArgs,
    data_dir: &Path,
    run_dir: &Path,
) -> anyhow::Result<kokon_host::Launch> {
    let dir = args.image.as_deref().context(
        "--backend qemu needs --image DIR (build one with `kokon image build --out DIR`)",
    )?;
    let image = read_image(dir)?;
    gpus_fit_image(dir, image.manifest.gpu.is_some(), &args.gpus)?;
    let tee = match args.tee.as_str() {
        "tdx" => Tee::Tdx,
        "snp" => Tee::Snp,
        "none" => Tee::None,
        other => anyhow::bail!("--backend qemu --tee {other}: expected tdx, snp or none"),
    };
    // What the TEE will measure, in the log, so that an operator sees it
    // before any client does; an image that cannot launch measured under
    // this TEE (SEV-SNP without a kernel-hashes table) fails here.
    let expected = match tee {
        Tee::Tdx => tdx_registers(&image)?,
        Tee::Snp => snp_registers(&image, None, None).with_context(|| {
            format!(
                "{} cannot launch as an SEV-SNP guest with measured direct boot",
                dir.display()
            )
        })?,
        Tee::None => Vec::new(),
    };
    for register in &expected {
        tracing::info!(register = register.name, value = %hex::encode(&register.value), "the VM's expected measurement");
    }
    let vm_dir = run_dir.join(format!("vm-{}", std::process::id()));
    std::fs::create_dir_all(&vm_dir).with_context(|| format!("creating {}", vm_dir.display()))?;
    let mut fw_cfg_files = Vec::new();
    if tee == Tee::None {
        // The host plays the TEE's part: the image's launch measurements and the sim root.
        let registers = tdx_registers(&image)?;
        let value = |name: &str| -> [u8; 48] {
            registers
                .iter()
                .find(|r| r.name == name)
                .and_then(|r| r.value.as_slice().try_into().ok())
                .unwrap_or([0; 48])
        };
        let launch = kokon_attestation::sim::SimLaunch {
            mrtd: value("mrtd"),
            rtmr0: value("rtmr0"),
            rtmr1: value("rtmr1"),
            rtmr2: value("rtmr2"),
        };
        let root =
            kokon_attestation::sim::SimRoot::load_or_create(data_dir, kokon_client::unix_now())?;
        for (name, file, bytes) in [
            (
                FW_CFG_SIM_LAUNCH,
                "sim-launch.json",
                serde_json::to_vec(&launch)?,
            ),
            (
                FW_CFG_SIM_ROOT_CERT,
                "sim-root.der",
                root.cert_der().to_vec(),
            ),
            (
                FW_CFG_SIM_ROOT_KEY,
                "sim-root.key",
                root.key_pkcs8().to_vec(),
            ),
        ] {
            let path = vm_dir.join(file);
            kokon_guest::write_private(&path, &bytes)?;
            fw_cfg_files.push((name.to_string(), path));
        }
    }
    let kernel_vsock = Path::new("/dev/vhost-vsock").exists();
    let (vsock, link, vsock_daemon) = if kernel_vsock {
        let cid = GUEST_CID + std::process::id();
        (
            Vsock::Kernel { guest_cid: cid },
            Link::Vsock {
                cid,
                port: ENCLAVE_VSOCK_PORT,
            },
            None,
        )
    } else {
        let socket = vm_dir.join("vhost-vsock.sock");
        let uds = vm_dir.join("vsock.sock");
        let daemon = VsockDaemon {
            program: vsock_daemon_binary(),
            args: vec![
                "--guest-cid".into(),
                GUEST_CID.to_string(),
                "--socket".into(),
                socket.display().to_string(),
                "--uds-path".into(),
                uds.display().to_string(),
                // The credit it grants the guest: larger than the largest
                // frame, so that no answer waits on a credit update (which
                // vhost-device-vsock has been known to lose). Its buffer is
                // allocated zeroed, so untouched pages cost nothing.
                "--tx-buffer-size".into(),
                (2 * kokon_wire::MAX_FRAME_LEN).to_string(),
            ],
            socket: socket.clone(),
        };
        (
            Vsock::VhostUser { socket },
            Link::HybridVsock {
                uds,
                port: ENCLAVE_VSOCK_PORT,
            },
            Some(daemon),
        )
    };
    let accel = match args.accel.as_deref() {
        Some("kvm") => Accel::Kvm,
        Some("tcg") => Accel::Tcg,
        Some(other) => anyhow::bail!("--accel {other}: expected kvm or tcg"),
        None if tee != Tee::None => Accel::Kvm,
        None => development_accel(&args.qemu, &dir.join(kokon_image::OVMF_FILE)),
    };
    let config = VmConfig {
        tee,
        accel,
        vcpus: image.manifest.vm.vcpus,
        memory_mib: image.manifest.vm.memory_mib,
        cpu_model: match tee {
            Tee::Snp => image.manifest.vm.snp_vcpu_type.clone(),
            Tee::None if accel == Accel::Tcg => "max".into(),
            Tee::None => qemu::KVM_DEVELOPMENT_CPU.into(),
            _ => "host".into(),
        },
        firmware: dir.join(match tee {
            Tee::Snp => kokon_image::SNP_OVMF_FILE,
            Tee::Tdx | Tee::None => kokon_image::OVMF_FILE,
        }),
        kernel: dir.join(kokon_image::KERNEL_FILE),
        initrd: dir.join(kokon_image::INITRD_FILE),
        cmdline: image.manifest.cmdline.clone(),
        data_disk: image
            .manifest
            .artifacts
            .data
            .as_ref()
            .map(|data| dir.join(&data.file)),
        snp: SnpLaunch {
            // The enclave's arguments in the image: its serving configuration.
            host_data: sha2::Sha256::digest(serde_json::to_vec(&image.manifest.enclave_args)?)
                .into(),
            ..SnpLaunch::default()
        },
        tdx_quote_vsock_port: 4050,
        vsock,
        gpus: args.gpus.clone(),
        qmp_socket: vm_dir.join("qmp.sock"),
        fw_cfg_files,
    };
    qemu::preflight(&args.qemu, &config)?;
    Ok(VmCommand {
        qemu: args.qemu.clone(),
        qemu_args: qemu::command_line(&config),
        vsock_daemon,
        qmp: config.qmp_socket.clone(),
        link,
        startup_timeout: Duration::from_secs(match accel {
            Accel::Kvm => 120,
            Accel::Tcg => 600,
        }),
        shutdown_grace: Duration::from_secs(10),
    }
    .into())
}

/// A development VM's accelerator when none is asked for, logged.
fn development_accel(qemu: &Path, firmware: &Path) -> Accel {
    let (accel, reason) = qemu::development_accel(qemu, Path::new("/dev/kvm"), firmware);
    match reason {
        None => tracing::info!("development VM: KVM runs the firmware; using KVM"),
        Some(reason) => tracing::warn!(
            %reason,
            "development VM: KVM cannot run the firmware here; using TCG (emulation, slow)"
        ),
    }
    accel
}

/// The vhost-user vsock daemon: $KOKON_VHOST_DEVICE_VSOCK, else the one
/// `just setup` installs into .cache/bin, else from PATH.
fn vsock_daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KOKON_VHOST_DEVICE_VSOCK") {
        return PathBuf::from(p);
    }
    kokon_client::local::checkout_path(".cache/bin/vhost-device-vsock")
        .unwrap_or_else(|| PathBuf::from("vhost-device-vsock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(name: &'static str, byte: u8) -> Register {
        Register {
            name,
            value: vec![byte; 48],
            explanation: Vec::new(),
        }
    }

    #[test]
    fn gpus_go_only_to_gpu_images_and_gpu_images_need_them() {
        let dir = Path::new("/var/lib/kokon/image");
        let gpu = ["0000:3b:00.0".to_owned()];
        gpus_fit_image(dir, false, &[]).expect("a CPU image without GPUs");
        gpus_fit_image(dir, true, &gpu).expect("a GPU image with a GPU");
        let err = gpus_fit_image(dir, false, &gpu).unwrap_err().to_string();
        assert!(
            err.contains("--gpu 0000:3b:00.0 passes GPUs")
                && err.contains("/var/lib/kokon/image has no NVIDIA driver")
                && err.contains("kokon image build --gpu"),
            "{err}"
        );
        let err = gpus_fit_image(dir, true, &[]).unwrap_err().to_string();
        assert!(
            err.contains("is a GPU image") && err.contains("pass its GPUs with --gpu"),
            "{err}"
        );
    }

    #[test]
    fn the_gpu_driver_is_explained_part_by_part() {
        let file = |path: &str, byte: char| kokon_image::manifest::ImageFile {
            path: path.into(),
            sha256: byte.to_string().repeat(64),
            size: 7,
        };
        let package = |name: &str| kokon_image::manifest::PackageRecord {
            name: name.into(),
            version: "550.163.01-2".into(),
            architecture: "amd64".into(),
            sha256: "c".repeat(64),
        };
        let mut gpu = kokon_image::manifest::GpuRecord {
            driver_version: "550.163.01".into(),
            packages: vec![package("libcuda1")],
            toolchain: vec![package("gcc-14"), package("make")],
            compiler: "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0".into(),
            adaptations: vec!["nvidia/nv-pci.c: an edit".into()],
            modules: vec![file("/lib/modules/nvidia.ko", 'a')],
            libraries: vec![file("/usr/lib/x86_64-linux-gnu/libcuda.so.1", 'b')],
            runtime: vec![kokon_image::lock::PinnedWheel {
                project: "onnxruntime-gpu".into(),
                version: "1.26.0".into(),
                filename: "onnxruntime_gpu-1.26.0-cp311-cp311-manylinux_2_28_x86_64.whl".into(),
                sha256: "d".repeat(64),
                size: 9,
            }],
            library_path: "/data/gpu/lib".into(),
        };
        let lines = gpu_driver_lines(&gpu);
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        for expected in [
            "GPU driver = NVIDIA 550.163.01".to_owned(),
            format!("    /lib/modules/nvidia.ko sha256 {a} (7 bytes)"),
            "  source edit for the pinned kernel: nvidia/nv-pci.c: an edit".into(),
            format!("    /usr/lib/x86_64-linux-gnu/libcuda.so.1 sha256 {b} (7 bytes)"),
            format!("    libcuda1 550.163.01-2 sha256 {c}"),
            format!(
                "    onnxruntime_gpu-1.26.0-cp311-cp311-manylinux_2_28_x86_64.whl sha256 {}",
                "d".repeat(64)
            ),
        ] {
            assert!(lines.contains(&expected), "{expected:?} not in {lines:#?}");
        }
        assert!(lines[1].contains("with x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0 in a build root of 2 pinned packages"));
        assert!(lines
            .iter()
            .any(|l| l.ends_with("firmware_class.path=/data/firmware")));
        gpu.adaptations.clear();
        assert!(gpu_driver_lines(&gpu).contains(&"  source edits: none".to_owned()));
    }

    #[test]
    fn measurements_fill_their_keys_and_keep_everything_else() {
        let policy = "name = \"p\"\n[measurements]\n# TD attributes\ntdattributes = [\"0000001000000000\"]\nmrtd = []\nrtmr0 = []\nrtmr1 = [\n  \"old\",\n]\n\n[[models.allowed]]\nname = \"magika\"\n";
        let out = with_measurements(
            policy,
            &[
                register("mrtd", 1),
                register("rtmr1", 2),
                register("rtmr2", 3),
            ],
        );
        let one = hex::encode([1u8; 48]);
        let two = hex::encode([2u8; 48]);
        let three = hex::encode([3u8; 48]);
        assert_eq!(
            out,
            format!("name = \"p\"\n[measurements]\n# TD attributes\ntdattributes = [\"0000001000000000\"]\nmrtd = [\"{one}\"]\nrtmr0 = []\nrtmr1 = [\"{two}\"]\n\nrtmr2 = [\"{three}\"]\n[[models.allowed]]\nname = \"magika\"\n")
        );
        // Still a policy, with RTMR0 still failing closed.
        let table: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(
            table["measurements"]["rtmr0"].as_array().map(Vec::len),
            Some(0)
        );
    }

    /// The shipped production policies accept the filled-in table: the
    /// registers are pinned, the TD attributes still are, RTMR0 still
    /// accepts nothing until a first boot's value is added.
    #[test]
    fn the_production_policies_load_with_the_measurements() {
        use kokon_policies::{LocalReferences, Policy, Register as Reg};
        let tdx = with_measurements(
            include_str!("../../policies/production-tdx.toml"),
            &[
                register("mrtd", 1),
                register("rtmr1", 2),
                register("rtmr2", 3),
            ],
        );
        let policy = Policy::from_toml(&tdx, &LocalReferences::default()).unwrap();
        let pinned = |r: Reg| policy.measurements.get(&r).cloned().unwrap_or_default();
        assert_eq!(pinned(Reg::MrTd), vec![vec![1u8; 48]]);
        assert_eq!(pinned(Reg::Rtmr(1)), vec![vec![2u8; 48]]);
        assert_eq!(pinned(Reg::Rtmr(2)), vec![vec![3u8; 48]]);
        assert!(policy.measurements.contains_key(&Reg::Rtmr(0)));
        assert!(pinned(Reg::Rtmr(0)).is_empty());
        assert_eq!(pinned(Reg::TdAttributes).len(), 1);
        let snp = with_measurements(
            include_str!("../../policies/production-snp.toml"),
            &[register("snp_measurement", 4)],
        );
        let policy = Policy::from_toml(&snp, &LocalReferences::default()).unwrap();
        assert_eq!(
            policy.measurements.get(&Reg::SnpMeasurement),
            Some(&vec![vec![4u8; 48]])
        );
    }

    #[test]
    fn a_policy_without_measurements_gets_the_table() {
        let out = with_measurements("name = \"p\"\n", &[register("snp_measurement", 9)]);
        assert_eq!(
            out,
            format!(
                "name = \"p\"\n\n[measurements]\nsnp_measurement = [\"{}\"]\n",
                hex::encode([9u8; 48])
            )
        );
    }
}
