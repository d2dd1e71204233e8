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

/// Where the init mounts the image's data disk (read-only EROFS under
/// dm-verity): the large files, such as a text model, that do not belong in
/// the initramfs.
pub const DATA_MOUNT: &str = "/data";
/// The kernel command line parameter that carries the data disk's dm-verity
/// parameters ([`DataVerity`]). The command line is measured (TDX RTMR2, the
/// SEV-SNP hashes table), so the root hash, and with it every byte the
/// guest reads from the disk, is covered by the launch measurement.
pub const DATA_PARAM: &str = "kokon.data";
/// The data disk's block size, for both its data and its hash tree.
pub const DATA_BLOCK_SIZE: u64 = 4096;

/// The dm-verity parameters of the data disk: one virtio disk holding the
/// data area (an EROFS file system) from its first block and, from
/// `hash_start_block`, its SHA-256 hash tree (format 1, 4 KiB blocks, as
/// `veritysetup --no-superblock` writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVerity {
    /// The data area's length in 4 KiB blocks.
    pub data_blocks: u64,
    /// The first block of the hash tree.
    pub hash_start_block: u64,
    /// The tree's root hash.
    pub root_hash: [u8; 32],
    /// The salt each hash starts with.
    pub salt: [u8; 32],
}

impl DataVerity {
    /// The command line parameter, `kokon.data=DATA_BLOCKS:HASH_START:ROOT:SALT`
    /// (the last two in hex).
    pub fn param(&self) -> String {
        format!(
            "{DATA_PARAM}={}:{}:{}:{}",
            self.data_blocks,
            self.hash_start_block,
            hex::encode(self.root_hash),
            hex::encode(self.salt)
        )
    }

    /// The parameters in a kernel command line, if it has [`DATA_PARAM`];
    /// a malformed or repeated one is an error that says what was expected.
    pub fn from_cmdline(cmdline: &str) -> Result<Option<Self>, String> {
        let prefix = format!("{DATA_PARAM}=");
        let mut values = cmdline
            .split_ascii_whitespace()
            .filter_map(|word| word.strip_prefix(&prefix));
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(format!("{DATA_PARAM} is given more than once"));
        }
        let bad = |what: String| {
            format!("{DATA_PARAM}={value}: {what} (expected DATA_BLOCKS:HASH_START:ROOT_HEX:SALT_HEX, 32-byte root and salt)")
        };
        let fields: Vec<&str> = value.split(':').collect();
        let [data_blocks, hash_start_block, root, salt] = fields.as_slice() else {
            return Err(bad(format!("{} fields", fields.len())));
        };
        let number = |s: &str, what: &str| {
            s.parse::<u64>()
                .map_err(|e| bad(format!("{what} {s:?}: {e}")))
        };
        Self::from_parts(
            number(data_blocks, "data blocks")?,
            number(hash_start_block, "hash start block")?,
            root,
            salt,
        )
        .map(Some)
        .map_err(bad)
    }

    /// The parameters from their parts, the root hash and salt in hex (as
    /// the command line and the image manifest hold them); an error says
    /// which part is wrong.
    pub fn from_parts(
        data_blocks: u64,
        hash_start_block: u64,
        root_hash: &str,
        salt: &str,
    ) -> Result<Self, String> {
        let digest = |s: &str, what: &str| -> Result<[u8; 32], String> {
            let bytes = hex::decode(s).map_err(|e| format!("{what}: {e}"))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| format!("{what} is {} bytes", bytes.len()))
        };
        if data_blocks == 0 || hash_start_block < data_blocks {
            return Err(format!(
                "the hash tree (from block {hash_start_block}) must follow a non-empty data area ({data_blocks} blocks)"
            ));
        }
        Ok(DataVerity {
            data_blocks,
            hash_start_block,
            root_hash: digest(root_hash, "root hash")?,
            salt: digest(salt, "salt")?,
        })
    }

    /// The dm-verity target's table parameters for `device`, which holds
    /// both the data and the tree (the kernel's
    /// Documentation/admin-guide/device-mapper/verity.rst).
    pub fn table_params(&self, device: &str) -> String {
        format!(
            "1 {device} {device} {DATA_BLOCK_SIZE} {DATA_BLOCK_SIZE} {} {} sha256 {} {}",
            self.data_blocks,
            self.hash_start_block,
            hex::encode(self.root_hash),
            hex::encode(self.salt)
        )
    }

    /// The data area's length in 512-byte sectors (the dm table's length).
    pub fn data_sectors(&self) -> u64 {
        self.data_blocks.saturating_mul(DATA_BLOCK_SIZE / 512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verity() -> DataVerity {
        DataVerity {
            data_blocks: 300,
            hash_start_block: 300,
            root_hash: [0xab; 32],
            salt: [0x01; 32],
        }
    }

    #[test]
    fn the_data_parameter_round_trips_through_a_command_line() {
        let v = verity();
        let cmdline = format!("console=ttyS0 {} panic=-1", v.param());
        assert_eq!(DataVerity::from_cmdline(&cmdline), Ok(Some(v.clone())));
        assert_eq!(DataVerity::from_cmdline("console=ttyS0 panic=-1"), Ok(None));
        assert_eq!(v.data_sectors(), 2400);
        assert_eq!(
            v.table_params("/dev/vda"),
            format!(
                "1 /dev/vda /dev/vda 4096 4096 300 300 sha256 {} {}",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
    }

    #[test]
    fn malformed_data_parameters_are_refused_with_the_reason() {
        let root = "ab".repeat(32);
        let salt = "01".repeat(32);
        for (value, reason) in [
            (format!("300:300:{root}"), "3 fields"),
            (format!("x:300:{root}:{salt}"), "data blocks \"x\""),
            (format!("300:-1:{root}:{salt}"), "hash start block"),
            (
                format!("300:300:{}:{salt}", "ab".repeat(31)),
                "root hash is 31 bytes",
            ),
            (format!("300:300:{root}:zz"), "salt"),
            (format!("0:0:{root}:{salt}"), "non-empty data area"),
            (format!("300:299:{root}:{salt}"), "must follow"),
        ] {
            let err = DataVerity::from_cmdline(&format!("{DATA_PARAM}={value}")).unwrap_err();
            assert!(err.contains(reason), "{value}: {err}");
        }
        let twice = format!("{} {}", verity().param(), verity().param());
        assert!(DataVerity::from_cmdline(&twice)
            .unwrap_err()
            .contains("more than once"));
    }
}
