//! The worker VM's fixed points, shared by the host that launches it, the
//! image that is booted and the guest's init.
//!
//! The host reaches the enclave on a vsock port of the guest. In a
//! development VM (`--tee none`), where no TEE measures the guest, the host
//! plays the hardware's part: it hands the guest, through QEMU's `fw_cfg`
//! files, the launch measurements a TDX module would take of the image it
//! boots and the sim root that signs the simulated evidence. A real TDX or
//! SEV-SNP guest never uses them: its init starts the hardware backend
//! whenever the TEE's guest device exists, and simulated evidence is
//! refused by every production policy.

/// The vsock port the enclave serves the host on, inside the VM.
pub const ENCLAVE_VSOCK_PORT: u32 = 5000;

/// `fw_cfg` file: the development VM's launch measurements
/// (`kokon_attestation::sim::SimLaunch` as JSON).
pub const FW_CFG_SIM_LAUNCH: &str = "opt/kokon/sim-launch";
/// `fw_cfg` file: the sim root's certificate (DER).
pub const FW_CFG_SIM_ROOT_CERT: &str = "opt/kokon/sim-root-cert";
/// `fw_cfg` file: the sim root's private key (PKCS#8).
pub const FW_CFG_SIM_ROOT_KEY: &str = "opt/kokon/sim-root-key";

/// The guest image's layout, which the image builder writes and the init
/// reads: the init (the command line's `rdinit=`).
pub const INIT: &str = "/init";
/// The enclave binary.
pub const ENCLAVE_BINARY: &str = "/usr/bin/kokon-enclave";
/// The enclave's arguments (JSON `{"args": [...]}`).
pub const ENCLAVE_CONFIG: &str = "/etc/kokon/enclave.json";
/// The kernel modules to load, one name a line, dependencies first.
pub const MODULES_LIST: &str = "/etc/kokon/modules";
/// The kernel modules' directory (`<name>.ko`, decompressed).
pub const MODULES_DIR: &str = "/lib/modules";
