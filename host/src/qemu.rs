//! The QEMU command line of the worker VM, and the checks made before
//! starting it.
//!
//! `kokon host --backend qemu` runs the enclave inside a VM: a TDX trust
//! domain, an SEV-SNP guest, or (for development) a plain KVM or TCG guest.
//! This module is the pure part of that backend. [`command_line`] turns a
//! [`VmConfig`] into the exact argv of `qemu-system-x86_64`, in a fixed order
//! (the golden tests in `host/tests/golden/` pin it byte for byte), and
//! [`preflight`] turns a missing QEMU, firmware, image file, `/dev/kvm` or
//! VFIO binding into an error that names the fix. The supervisor starts the
//! process, restarts it, and powers it down over QMP.
//!
//! # Why the shape is fixed by the image
//!
//! A confidential guest's launch measurement covers more than the firmware:
//! for SEV-SNP it covers one VMSA per vCPU (so the vCPU count and the vCPU
//! type), the guest policy, and the page holding the kernel, initrd and
//! command-line hashes; for TDX, MRTD covers the firmware and RTMRs the
//! kernel, initrd and command line the firmware loads. An auditor computes
//! the expected values from the image manifest, so the VM shape (vCPUs,
//! memory, CPU model, command line, policy) comes from that manifest, never
//! from an operator's whim: [`VmConfig`] is built from it, and a VM launched
//! with another shape does not attest.
//!
//! # The groups of options
//!
//! * **Defaults off.** `-nodefaults -no-user-config -display none`: no NIC,
//!   no VGA, no default monitor or serial port, no config file read from
//!   the host; every device is named here. `-no-reboot`: a guest reboot or
//!   panic exits QEMU, and the supervisor starts a fresh VM (a confidential
//!   guest cannot be reset in place anyway: its register state is
//!   encrypted).
//! * **Machine.** `-machine q35` (PCIe, needed for root ports and VFIO),
//!   `smm=off` (no SMM: TDX and SEV-ES/SNP cannot have it, and the firmware
//!   is loaded with `-bios`, with no variable store to protect), and
//!   `memory-backend=ram0` naming the guest RAM object below. `-accel kvm`
//!   (always, for TDX and SNP) or `-accel tcg` (development without KVM).
//! * **Memory.** `-object memory-backend-memfd,id=ram0,size=…,share=on`:
//!   shared memfd memory, because a vhost-user backend (another process)
//!   maps the guest's memory to reach the virtqueues, and because SEV-SNP
//!   launches use memfd-backed RAM; for TDX and SNP, QEMU adds the private
//!   (guest_memfd) memory itself. `-m` gives the same size.
//! * **CPU and firmware.** `-cpu` (`host` for TDX and plain guests; for SNP
//!   the named model, e.g. `EPYC-v4`, that the auditor's measurement
//!   assumes, since the VMSAs carry its family/model/stepping), `-smp`,
//!   `-bios` (OVMF; TDX and SNP load firmware as measured RAM, not pflash).
//! * **Direct boot.** `-kernel -initrd -append`: the firmware loads them and
//!   measures them (TDX: into RTMRs; SNP: see `kernel-hashes` below).
//! * **Data disk** (when the image has one): `-drive
//!   file=data.img,if=none,id=data0,format=raw,readonly=on -device
//!   virtio-blk-pci,drive=data0`. The host can alter the file, so no launch
//!   measurement covers the disk itself: the command line carries its
//!   dm-verity root hash and the guest reads the disk only through dm-verity
//!   (kokon_image::disk), so a block that differs fails to read.
//! * **Console and control.** `-chardev stdio,id=console,signal=off -serial
//!   chardev:console`: the guest console goes to QEMU's stdout, which the
//!   supervisor logs (stdin is `/dev/null`; `signal=off` keeps a ^C on a
//!   terminal from killing QEMU behind the supervisor's back). `-qmp
//!   unix:…,server=on,wait=off`: the supervisor's control socket, used for
//!   `system_powerdown` (an ACPI power button press) and `quit`.
//! * **TDX** (QEMU 10.1 or later): `-object
//!   '{"qom-type":"tdx-guest","id":"tdx0","quote-generation-socket":{…}}'`
//!   in JSON form, because `quote-generation-socket` is a SocketAddress
//!   (a nested object) that the `key=value` syntax cannot express. It
//!   points at the host's Quote Generation Service on vsock CID 2 (the
//!   host) and [`VmConfig::tdx_quote_vsock_port`] (4050 by convention):
//!   QEMU forwards the guest's GetQuote requests there. The machine gets
//!   `kernel-irqchip=split` (TDX requires it) and
//!   `confidential-guest-support=tdx0`.
//! * **SEV-SNP** (QEMU 9.1 or later): `-object
//!   sev-snp-guest,id=sev0,policy=…,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,host-data=…`
//!   and `confidential-guest-support=sev0`. `policy` is part of the
//!   measurement and of the attestation report (default 0x30000: SMT
//!   allowed, bit 17 reserved-one; no debugging, no migration agent).
//!   `cbitpos=51` and `reduced-phys-bits=1` are the values of AMD Zen 3
//!   and Zen 4 (Milan, Genoa) processors; QEMU refuses to start when
//!   `cbitpos` does not match the host's CPUID. `kernel-hashes=on` makes
//!   QEMU put the SHA-256 of the kernel, initrd and command line in a page
//!   that is part of the launch measurement, and OVMF refuses to boot a
//!   kernel, initrd or command line that does not match them: the launch
//!   digest thereby covers what is booted. `host-data` (32 bytes, base64)
//!   is copied verbatim into every attestation report: it carries the
//!   digest of the serving configuration.
//! * **vsock** (the host↔enclave link): [`Vsock::Kernel`] gives
//!   `-device vhost-vsock-pci,guest-cid=N` (the host kernel's vhost-vsock,
//!   `/dev/vhost-vsock`); [`Vsock::VhostUser`] gives `-chardev
//!   socket,id=vsock0,path=…` and `-device
//!   vhost-user-vsock-pci,chardev=vsock0`, a user-space backend (such as
//!   `vhost-device-vsock`) listening on that socket, for hosts without
//!   vhost-vsock. For confidential guests QEMU turns on
//!   `iommu_platform` and `disable-legacy` for every virtio device itself
//!   (the guest then bounces virtio buffers through shared memory).
//! * **GPUs** (VFIO passthrough): `-object iommufd,id=iommufd0` (the iommufd
//!   VFIO backend, QEMU 9.0 or later, which confidential-guest device
//!   assignment builds on; the host needs `/dev/iommu` and VFIO device
//!   cdevs), then per GPU a PCIe root port on `pcie.0` with its own
//!   chassis number and a `vfio-pci` device on it with `rombar=0`: no
//!   option ROM, because OVMF would otherwise run code read from the
//!   device, which the host controls and no launch measurement covers
//!   (data-centre GPU drivers do not need it). `-fw_cfg
//!   name=opt/ovmf/X-PciMmio64Mb,string=…` makes OVMF open a 64-bit MMIO
//!   window large enough for the GPUs' BARs: an H100's 128 GiB BAR1 must
//!   be naturally aligned, so each GPU's root-port window takes up to
//!   256 GiB of address space, and the window is 256 GiB (262144 MiB) per
//!   GPU. No `-global q35-pcihost.pci-hole64-size` is needed: OVMF places
//!   the BARs itself and QEMU's ACPI tables describe the 64-bit hole from
//!   where the firmware put them (the property only adds room for hot
//!   plug, which this VM does not do). For TDX and SNP, VFIO assignment
//!   relies on QEMU 10.1's coordinated discard of guest_memfd-backed RAM,
//!   which keeps the IOMMU mappings in step with the guest's
//!   private/shared conversions: so SNP with GPUs needs QEMU 10.1 too. The
//!   GPU must itself be in confidential-computing mode (set on the host
//!   with NVIDIA's tools) for its attestation to succeed in the guest;
//!   nothing here can check that.
//! * **fw_cfg files**: `-fw_cfg name=…,file=…` for each of
//!   [`VmConfig::fw_cfg_files`] (e.g. `opt/kokon/measurements` for the
//!   plain backend). fw_cfg is host-controlled and unmeasured: a
//!   confidential guest must treat it as untrusted input.
//!
//! Values inside `key=value` options (paths, fw_cfg names) have their
//! commas doubled, QEMU's escape, so a path cannot add options.
//! [`command_line`] trusts the rest of its input; [`preflight`] checks what
//! comes from the operator (GPU addresses, files) before it is used.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

/// The SEV-SNP guest policy kokon launches with unless the image says
/// otherwise: bit 16 (SMT allowed) and bit 17 (reserved, must be one);
/// debugging, migration agents and single-socket restriction off.
pub const DEFAULT_SNP_POLICY: u64 = 0x30000;

/// The vsock port of the host's TDX Quote Generation Service (QGS), by
/// Intel's convention.
pub const DEFAULT_TDX_QUOTE_VSOCK_PORT: u32 = 4050;

/// The vsock CID of the host, where the QGS listens.
const HOST_CID: u32 = 2;

/// The 64-bit MMIO window OVMF opens per passed-through GPU, in MiB
/// (256 GiB: an H100's 128 GiB BAR1, aligned, with the small BARs beside).
pub const MMIO64_MIB_PER_GPU: u64 = 262_144;

/// The IDs of the objects the command line names.
const RAM_ID: &str = "ram0";
const TDX_ID: &str = "tdx0";
const SEV_ID: &str = "sev0";
const IOMMUFD_ID: &str = "iommufd0";
const CONSOLE_ID: &str = "console";
const VSOCK_CHARDEV_ID: &str = "vsock0";
const DATA_DRIVE_ID: &str = "data0";

/// The trusted execution environment the VM runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    /// An Intel TDX trust domain (QEMU 10.1 or later, KVM).
    Tdx,
    /// An AMD SEV-SNP guest (QEMU 9.1 or later, KVM).
    Snp,
    /// A plain VM: no memory encryption, no hardware attestation
    /// (development and CI).
    None,
}

/// How QEMU runs the guest's CPUs, for [`Tee::None`] (TDX and SNP always
/// use KVM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's emulator: slow, but needs nothing from the host.
    Tcg,
}

impl Accel {
    /// QEMU's name for it (`-accel NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The vCPU model of a development VM under KVM. Nested KVM hosts may
/// refuse the host's IA32_ARCH_CAPABILITIES MSR (QEMU: "failed to set MSR
/// 0x10a"); a development VM needs none of it.
pub const KVM_DEVELOPMENT_CPU: &str = "host,-arch-capabilities";

/// A development VM's accelerator when none is asked for: KVM when `kvm`
/// (`/dev/kvm`) opens and KVM runs `firmware` ([`kvm_runs_firmware`], for
/// up to 3 s), TCG otherwise, with the reason KVM was not taken.
pub fn development_accel(qemu: &Path, kvm: &Path, firmware: &Path) -> (Accel, Option<String>) {
    let verdict = kvm_usable(kvm)
        .map_err(|e| format!("{}: {e}", kvm.display()))
        .and_then(|()| {
            kvm_runs_firmware(
                qemu,
                firmware,
                KVM_DEVELOPMENT_CPU,
                std::time::Duration::from_secs(3),
            )
        });
    match verdict {
        Ok(()) => (Accel::Kvm, None),
        Err(reason) => (Accel::Tcg, Some(reason)),
    }
}

/// The vsock device linking host and enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vsock {
    /// The host kernel's vhost-vsock (`/dev/vhost-vsock`), with the guest
    /// at this CID.
    Kernel {
        /// The guest's CID (3 or more).
        guest_cid: u32,
    },
    /// A vhost-user vsock backend (such as `vhost-device-vsock`) listening
    /// on this Unix socket; it owns the guest's CID.
    VhostUser {
        /// The backend's socket.
        socket: PathBuf,
    },
}

/// The SEV-SNP launch parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpLaunch {
    /// The guest policy ([`DEFAULT_SNP_POLICY`] unless the image says
    /// otherwise).
    pub policy: u64,
    /// HOST_DATA, copied into every attestation report: the digest of the
    /// serving configuration.
    pub host_data: [u8; 32],
}

impl Default for SnpLaunch {
    fn default() -> Self {
        Self {
            policy: DEFAULT_SNP_POLICY,
            host_data: [0; 32],
        }
    }
}

/// Everything the command line is made from; the VM's shape comes from the
/// image manifest (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// TDX, SNP or none.
    pub tee: Tee,
    /// KVM or TCG, for [`Tee::None`] only.
    pub accel: Accel,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// QEMU's CPU model: `host` for TDX and KVM guests, the measured model
    /// (e.g. `EPYC-v4`) for SNP, a named one (e.g. `max`) for TCG.
    pub cpu_model: String,
    /// OVMF (TDVF for TDX, the AmdSev build for SNP).
    pub firmware: PathBuf,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The guest initrd.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// The image's data disk (`data.img`), attached read-only as the VM's
    /// one virtio disk; the command line carries its dm-verity root hash.
    pub data_disk: Option<PathBuf>,
    /// SEV-SNP launch parameters (ignored for other TEEs).
    pub snp: SnpLaunch,
    /// The vsock port of the host's TDX quote generation service
    /// ([`DEFAULT_TDX_QUOTE_VSOCK_PORT`]; ignored for other TEEs).
    pub tdx_quote_vsock_port: u32,
    /// The host↔enclave vsock device.
    pub vsock: Vsock,
    /// GPUs to pass through, as PCI addresses like `0000:3b:00.0`.
    pub gpus: Vec<String>,
    /// The QMP control socket QEMU listens on.
    pub qmp_socket: PathBuf,
    /// fw_cfg entries: (name, host file), e.g.
    /// `("opt/kokon/measurements", path)`.
    pub fw_cfg_files: Vec<(String, PathBuf)>,
}

impl VmConfig {
    /// Whether QEMU runs this VM under KVM.
    pub fn uses_kvm(&self) -> bool {
        self.tee != Tee::None || self.accel == Accel::Kvm
    }
}

/// QEMU's value escape inside a `key=value,…` option: a comma is doubled.
fn opt_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// [`opt_value`] of a path.
fn opt_path(path: &Path) -> String {
    opt_value(&path.to_string_lossy())
}

/// An argv under construction.
#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    /// An option without a value.
    fn flag(&mut self, flag: &str) {
        self.0.push(flag.to_owned());
    }

    /// An option and its value.
    fn opt(&mut self, option: &str, value: impl Into<String>) {
        self.0.push(option.to_owned());
        self.0.push(value.into());
    }
}

/// The arguments of `qemu-system-x86_64` (after the program name) that
/// launch `cfg`, in a fixed order. See the module documentation for each
/// group. Run [`preflight`] first: this function trusts its input.
pub fn command_line(cfg: &VmConfig) -> Vec<String> {
    let mut a = Args::default();
    a.flag("-nodefaults");
    a.flag("-no-user-config");
    a.opt("-display", "none");
    a.flag("-no-reboot");
    a.opt("-accel", if cfg.uses_kvm() { "kvm" } else { "tcg" });

    let cgs = match cfg.tee {
        Tee::Tdx => format!(",kernel-irqchip=split,confidential-guest-support={TDX_ID}"),
        Tee::Snp => format!(",confidential-guest-support={SEV_ID}"),
        Tee::None => String::new(),
    };
    a.opt(
        "-machine",
        format!("q35,smm=off,memory-backend={RAM_ID}{cgs}"),
    );
    a.opt(
        "-object",
        format!(
            "memory-backend-memfd,id={RAM_ID},size={}M,share=on",
            cfg.memory_mib
        ),
    );
    match cfg.tee {
        // JSON, because quote-generation-socket is a nested SocketAddress.
        // Written out by hand, not by serde_json, so that the key order is
        // fixed whatever features serde_json is built with.
        Tee::Tdx => a.opt(
            "-object",
            format!(
                r#"{{"qom-type":"tdx-guest","id":"{TDX_ID}","quote-generation-socket":{{"type":"vsock","cid":"{HOST_CID}","port":"{}"}}}}"#,
                cfg.tdx_quote_vsock_port
            ),
        ),
        Tee::Snp => a.opt(
            "-object",
            format!(
                "sev-snp-guest,id={SEV_ID},policy={:#x},cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,host-data={}",
                cfg.snp.policy,
                base64::engine::general_purpose::STANDARD.encode(cfg.snp.host_data)
            ),
        ),
        Tee::None => {}
    }

    a.opt("-cpu", cfg.cpu_model.as_str());
    a.opt("-smp", cfg.vcpus.to_string());
    a.opt("-m", format!("{}M", cfg.memory_mib));
    a.opt("-bios", cfg.firmware.to_string_lossy());
    a.opt("-kernel", cfg.kernel.to_string_lossy());
    a.opt("-initrd", cfg.initrd.to_string_lossy());
    a.opt("-append", cfg.cmdline.as_str());
    if let Some(disk) = &cfg.data_disk {
        a.opt(
            "-drive",
            format!(
                "file={},if=none,id={DATA_DRIVE_ID},format=raw,readonly=on",
                opt_path(disk)
            ),
        );
        a.opt("-device", format!("virtio-blk-pci,drive={DATA_DRIVE_ID}"));
    }

    a.opt("-chardev", format!("stdio,id={CONSOLE_ID},signal=off"));
    a.opt("-serial", format!("chardev:{CONSOLE_ID}"));
    a.opt(
        "-qmp",
        format!("unix:{},server=on,wait=off", opt_path(&cfg.qmp_socket)),
    );

    match &cfg.vsock {
        Vsock::Kernel { guest_cid } => {
            a.opt("-device", format!("vhost-vsock-pci,guest-cid={guest_cid}"));
        }
        Vsock::VhostUser { socket } => {
            a.opt(
                "-chardev",
                format!("socket,id={VSOCK_CHARDEV_ID},path={}", opt_path(socket)),
            );
            a.opt(
                "-device",
                format!("vhost-user-vsock-pci,chardev={VSOCK_CHARDEV_ID}"),
            );
        }
    }

    if !cfg.gpus.is_empty() {
        a.opt("-object", format!("iommufd,id={IOMMUFD_ID}"));
        for (n, bdf) in cfg.gpus.iter().enumerate() {
            a.opt(
                "-device",
                format!("pcie-root-port,id=rp{n},bus=pcie.0,chassis={}", n + 1),
            );
            a.opt(
                "-device",
                format!(
                    "vfio-pci,host={},bus=rp{n},iommufd={IOMMUFD_ID},rombar=0",
                    opt_value(bdf)
                ),
            );
        }
        let window = MMIO64_MIB_PER_GPU.saturating_mul(cfg.gpus.len() as u64);
        a.opt(
            "-fw_cfg",
            format!("name=opt/ovmf/X-PciMmio64Mb,string={window}"),
        );
    }

    for (name, file) in &cfg.fw_cfg_files {
        a.opt(
            "-fw_cfg",
            format!("name={},file={}", opt_value(name), opt_path(file)),
        );
    }
    a.0
}

/// A QEMU version, as `qemu-system-x86_64 --version` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    /// Major version (10 in 10.1.2).
    pub major: u32,
    /// Minor version (1 in 10.1.2).
    pub minor: u32,
    /// Micro version (2 in 10.1.2).
    pub micro: u32,
}

impl QemuVersion {
    /// The version `major.minor.micro`.
    pub const fn new(major: u32, minor: u32, micro: u32) -> Self {
        Self {
            major,
            minor,
            micro,
        }
    }

    /// Reads the version from the output of `qemu-system-x86_64 --version`,
    /// whose first line is like `QEMU emulator version 7.2.22 (Debian
    /// 1:7.2+dfsg-7+deb12u18)`. `None` when no such line is there.
    pub fn parse(output: &str) -> Option<Self> {
        let rest = output
            .lines()
            .find_map(|line| line.trim().strip_prefix("QEMU emulator version "))?;
        let mut parts = rest.split_whitespace().next()?.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let micro = match parts.next() {
            Some(micro) => micro.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self::new(major, minor, micro))
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// The oldest QEMU that can launch `cfg`, and what in `cfg` needs it
/// (`None`: any QEMU with the q35 machine will do).
///
/// TDX support, and VFIO assignment to any guest whose private memory is
/// guest_memfd (TDX, SNP), came in 10.1; SEV-SNP in 9.1; the iommufd VFIO
/// backend in 9.0.
pub fn minimum_qemu(cfg: &VmConfig) -> Option<(QemuVersion, &'static str)> {
    match (cfg.tee, cfg.gpus.is_empty()) {
        (Tee::Tdx, _) => Some((QemuVersion::new(10, 1, 0), "TDX")),
        (Tee::Snp, true) => Some((QemuVersion::new(9, 1, 0), "SEV-SNP")),
        (Tee::Snp, false) => Some((
            QemuVersion::new(10, 1, 0),
            "GPU passthrough to an SEV-SNP guest",
        )),
        (Tee::None, false) => Some((QemuVersion::new(9, 0, 0), "GPU passthrough (iommufd)")),
        (Tee::None, true) => None,
    }
}

/// Why the VM cannot be launched, each with the fix.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The QEMU binary is not there.
    #[error("qemu-system-x86_64 not found at {}: install it (Debian: apt-get install qemu-system-x86)", .path.display())]
    QemuNotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The QEMU binary is there but cannot be run.
    #[error("cannot run {} --version: {source}", .path.display())]
    QemuNotRunnable {
        /// The binary.
        path: PathBuf,
        /// What running it gave.
        source: io::Error,
    },
    /// `--version` did not print a QEMU version.
    #[error("{} --version did not print \"QEMU emulator version X.Y.Z\" (is it QEMU?); it printed: {output:?}", .path.display())]
    QemuVersionUnreadable {
        /// The binary.
        path: PathBuf,
        /// What it printed (first 200 characters).
        output: String,
    },
    /// The QEMU binary is older than the VM needs.
    #[error("{} is QEMU {found}, but {purpose} needs QEMU {needed} or later: install a newer QEMU (a distribution backport, or built from source) and pass its path", .path.display())]
    QemuTooOld {
        /// The binary.
        path: PathBuf,
        /// Its version.
        found: QemuVersion,
        /// The version needed.
        needed: QemuVersion,
        /// What needs it.
        purpose: &'static str,
    },
    /// The image lacks a file the VM boots from.
    #[error("the image's {what} {} is missing: build the image with `kokon image build --out DIR` (just image)", .path.display())]
    ImageFileMissing {
        /// firmware, kernel or initrd.
        what: &'static str,
        /// The path looked at.
        path: PathBuf,
    },
    /// KVM is needed but `/dev/kvm` cannot be opened read-write.
    #[error("{} cannot be opened read-write ({source}): {fix}", .path.display())]
    KvmUnusable {
        /// The KVM device.
        path: PathBuf,
        /// Why it cannot be opened.
        source: io::Error,
        /// What to do.
        fix: &'static str,
    },
    /// CPU model `host` asked for under TCG.
    #[error(
        "CPU model `host` needs KVM, but this VM runs under TCG: use a named model such as `max`"
    )]
    HostCpuWithoutKvm,
    /// A GPU address that is not a full PCI address.
    #[error("GPU address {bdf:?} is not a PCI address like 0000:3b:00.0 (domain:bus:device.function, in hex; `lspci -D` lists them)")]
    BadGpuAddress {
        /// The address given.
        bdf: String,
    },
    /// No PCI device at that address.
    #[error("GPU {bdf} is not present ({} does not exist): check the address with `lspci -D`", .path.display())]
    GpuNotFound {
        /// The address given.
        bdf: String,
        /// The sysfs directory looked for.
        path: PathBuf,
    },
    /// The GPU is not bound to vfio-pci, so QEMU cannot take it.
    #[error("GPU {bdf} is bound to {driver}, not vfio-pci: bind it with `driverctl set-override {bdf} vfio-pci` (or: echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind; echo {bdf} > /sys/bus/pci/drivers_probe)")]
    GpuNotVfio {
        /// The address given.
        bdf: String,
        /// The driver it is bound to (`no driver` when none).
        driver: String,
    },
}

/// The host paths [`preflight_with`] looks at; tests point them at fake
/// trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The KVM device (`/dev/kvm`).
    pub kvm: PathBuf,
    /// The sysfs root (`/sys`), where `bus/pci/devices/BDF/driver` tells a
    /// PCI device's driver.
    pub sysfs: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            kvm: PathBuf::from("/dev/kvm"),
            sysfs: PathBuf::from("/sys"),
        }
    }
}

/// Checks that `qemu` can launch `cfg` on this host, and returns its
/// version: [`preflight_with`] on the real `/dev/kvm` and `/sys`.
pub fn preflight(qemu: &Path, cfg: &VmConfig) -> Result<QemuVersion, VmError> {
    preflight_with(qemu, cfg, &HostPaths::default())
}

/// Checks, in this order, that `qemu` runs and is recent enough for `cfg`
/// ([`minimum_qemu`]), that the firmware, kernel, initrd and data disk (if
/// any) are files, that
/// KVM can be opened when the VM uses it (and that a TCG VM does not ask
/// for CPU model `host`), and that every GPU is a PCI device bound to
/// vfio-pci. The first failure is returned, naming the fix.
pub fn preflight_with(
    qemu: &Path,
    cfg: &VmConfig,
    host: &HostPaths,
) -> Result<QemuVersion, VmError> {
    let version = qemu_version(qemu)?;
    if let Some((needed, purpose)) = minimum_qemu(cfg) {
        if version < needed {
            return Err(VmError::QemuTooOld {
                path: qemu.to_owned(),
                found: version,
                needed,
                purpose,
            });
        }
    }
    let files = [
        ("firmware", Some(&cfg.firmware)),
        ("kernel", Some(&cfg.kernel)),
        ("initrd", Some(&cfg.initrd)),
        ("data disk", cfg.data_disk.as_ref()),
    ];
    for (what, path) in files.into_iter().filter_map(|(w, p)| Some((w, p?))) {
        if !path.is_file() {
            return Err(VmError::ImageFileMissing {
                what,
                path: path.clone(),
            });
        }
    }
    if cfg.uses_kvm() {
        kvm_usable(&host.kvm).map_err(|source| VmError::KvmUnusable {
            path: host.kvm.clone(),
            source,
            fix: if cfg.tee == Tee::None {
                "give this user access to it (group kvm) or run the VM under TCG instead (slow, needs no KVM)"
            } else {
                "TDX and SEV-SNP need KVM: load kvm_intel or kvm_amd with TDX or SEV-SNP enabled, and give this user access to it (group kvm)"
            },
        })?;
    } else if cfg.cpu_model.split(',').next() == Some("host") {
        return Err(VmError::HostCpuWithoutKvm);
    }
    for bdf in &cfg.gpus {
        check_vfio(&host.sysfs, bdf)?;
    }
    Ok(version)
}

/// Runs `qemu --version` and reads the version it prints.
pub fn qemu_version(qemu: &Path) -> Result<QemuVersion, VmError> {
    let output = Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => VmError::QemuNotFound {
                path: qemu.to_owned(),
            },
            _ => VmError::QemuNotRunnable {
                path: qemu.to_owned(),
                source,
            },
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    QemuVersion::parse(&stdout)
        .filter(|_| output.status.success())
        .ok_or_else(|| VmError::QemuVersionUnreadable {
            path: qemu.to_owned(),
            output: stdout.chars().take(200).collect(),
        })
}

/// Whether the KVM device at `path` opens read-write (what QEMU needs).
pub fn kvm_usable(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop)
}

/// Whether KVM on this host can run `firmware`: QEMU starts it under KVM
/// with the vCPU model `cpu` (no kernel, disks or display) and must still be
/// running, with no error from KVM, after `within`.
///
/// Opening `/dev/kvm` is not enough. Some nested KVM hosts (cloud VMs that
/// expose KVM to their guests) cannot emulate what OVMF does first: QEMU
/// prints "KVM internal error. Suberror: 1" (an emulation failure) and
/// pauses the guest rather than exiting, or refuses a vCPU MSR ("failed to
/// set MSR 0x10a") and exits. A development VM (`--tee none`) launched with
/// no `--accel` uses this to choose TCG on such a host instead of hanging;
/// TDX and SEV-SNP always need KVM. The error carries QEMU's words.
pub fn kvm_runs_firmware(
    qemu: &Path,
    firmware: &Path,
    cpu: &str,
    within: std::time::Duration,
) -> Result<(), String> {
    use std::io::BufRead as _;
    let mut command = Command::new(qemu);
    command
        .args(["-accel", "kvm", "-machine", "q35", "-cpu", cpu, "-m", "128"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-bios")
        .arg(firmware)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // A paused QEMU must not outlive a host killed during the probe.
    crate::vm::die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    // QEMU's stderr, line by line, from a thread: a paused guest keeps it
    // open, so the probe cannot wait for its end.
    let (lines, errors) = std::sync::mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = std::time::Instant::now() + within;
    let mut said = Vec::new();
    let verdict = loop {
        let now = std::time::Instant::now();
        let step = deadline
            .saturating_duration_since(now)
            .min(std::time::Duration::from_millis(50));
        if let Ok(line) = errors.recv_timeout(step) {
            let failed = line.contains("internal error") || line.contains("failed");
            said.push(line);
            if failed {
                break Err(said.join("; "));
            }
            continue;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                // Whatever it printed on the way out.
                std::thread::sleep(std::time::Duration::from_millis(50));
                said.extend(errors.try_iter());
                break Err(format!("QEMU exited ({status}): {}", said.join("; ")));
            }
            Ok(None) if std::time::Instant::now() >= deadline => break Ok(()),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for QEMU: {e}")),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    verdict
}

/// Whether `bdf` is a full PCI address: `DDDD:BB:DD.F`, in hex.
fn is_pci_address(bdf: &str) -> bool {
    let b = bdf.as_bytes();
    b.len() == 12
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b':',
            10 => *c == b'.',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Checks that the PCI device `bdf` exists under `sysfs` and is bound to
/// vfio-pci.
pub fn check_vfio(sysfs: &Path, bdf: &str) -> Result<(), VmError> {
    if !is_pci_address(bdf) {
        return Err(VmError::BadGpuAddress { bdf: bdf.into() });
    }
    // sysfs names devices in lower case.
    let device = sysfs.join("bus/pci/devices").join(bdf.to_ascii_lowercase());
    if !device.exists() {
        return Err(VmError::GpuNotFound {
            bdf: bdf.into(),
            path: device,
        });
    }
    let driver = std::fs::read_link(device.join("driver"))
        .ok()
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()));
    match driver.as_deref() {
        Some("vfio-pci") => Ok(()),
        other => Err(VmError::GpuNotVfio {
            bdf: bdf.into(),
            driver: other.unwrap_or("no driver").into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_qemu_output() {
        let debian = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(QemuVersion::parse(debian), Some(QemuVersion::new(7, 2, 22)));
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 10.1.0 (v10.1.0)\n"),
            Some(QemuVersion::new(10, 1, 0))
        );
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 9.1\n"),
            Some(QemuVersion::new(9, 1, 0))
        );
        for bad in [
            "",
            "qemu 9.1.0",
            "QEMU emulator version x.1.0",
            "QEMU emulator version 9.1.0.4",
            "QEMU emulator version ",
        ] {
            assert_eq!(QemuVersion::parse(bad), None, "{bad:?}");
        }
        assert!(QemuVersion::new(10, 0, 9) < QemuVersion::new(10, 1, 0));
        assert!(QemuVersion::new(9, 10, 0) > QemuVersion::new(9, 2, 0));
        assert_eq!(QemuVersion::new(10, 1, 2).to_string(), "10.1.2");
    }

    #[test]
    fn pci_addresses_are_checked() {
        assert!(is_pci_address("0000:3b:00.0"));
        assert!(is_pci_address("0000:C1:1F.7"));
        for bad in [
            "3b:00.0",
            "0000:3b:00.0,rombar=1",
            "0000:3b:00:0",
            "0000/3b:00.0",
            "../../../0.0",
            "0000:3g:00.0",
            "",
        ] {
            assert!(!is_pci_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn option_values_escape_commas() {
        assert_eq!(opt_value("/run/a,b/qmp"), "/run/a,,b/qmp");
        assert_eq!(opt_path(Path::new("/plain")), "/plain");
    }
}
