//! The SEV hashes table QEMU writes into the guest for `kernel-hashes=on`:
//! SHA-256 of the kernel, the initrd and the command line, each tagged with
//! its GUID, which OVMF (the AmdSevX64 build) checks the blobs it loads
//! against. The layout must be byte-identical to QEMU's
//! (`PaddedSevHashTable` in `target/i386/sev.c`) for the measurement to
//! match.

use sha2::{Digest, Sha256};
use uuid::{uuid, Uuid};

use super::PAGE_SIZE;

const TABLE_HEADER_GUID: Uuid = uuid!("9438d606-4f22-4cc9-b479-a793d411fd21");
const KERNEL_ENTRY_GUID: Uuid = uuid!("4de79437-abd2-427f-b835-d5b172d2045b");
const INITRD_ENTRY_GUID: Uuid = uuid!("44baf731-3a2f-4bd7-9af1-41e29169781d");
const CMDLINE_ENTRY_GUID: Uuid = uuid!("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");

/// One entry: GUID, length (u16), SHA-256.
const ENTRY_SIZE: u16 = 16 + 2 + 32;
/// The table: GUID, length (u16), then the command line, initrd and kernel
/// entries.
const TABLE_SIZE: u16 = 16 + 2 + 3 * ENTRY_SIZE;
/// QEMU pads the table to a multiple of 16 bytes.
pub(super) const PADDED_TABLE_SIZE: u32 = (TABLE_SIZE as u32).div_ceil(16) * 16;

/// The three hashes, as QEMU computes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SevHashes {
    /// SHA-256 of the kernel file (`-kernel`), whole.
    pub(super) kernel: [u8; 32],
    /// SHA-256 of the initrd (`-initrd`), or of nothing without one.
    pub(super) initrd: [u8; 32],
    /// SHA-256 of the command line (`-append`) with its terminating NUL.
    pub(super) cmdline: [u8; 32],
}

impl SevHashes {
    /// Hashes the blobs QEMU loads.
    pub(super) fn new(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&str>) -> Self {
        let mut cmdline_hash = Sha256::new();
        cmdline_hash.update(cmdline.unwrap_or_default());
        cmdline_hash.update([0]);
        SevHashes {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd.unwrap_or_default()).into(),
            cmdline: cmdline_hash.finalize().into(),
        }
    }

    /// The padded table, as QEMU lays it out.
    fn table(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PADDED_TABLE_SIZE as usize);
        out.extend_from_slice(&TABLE_HEADER_GUID.to_bytes_le());
        out.extend_from_slice(&TABLE_SIZE.to_le_bytes());
        for (guid, hash) in [
            (CMDLINE_ENTRY_GUID, &self.cmdline),
            (INITRD_ENTRY_GUID, &self.initrd),
            (KERNEL_ENTRY_GUID, &self.kernel),
        ] {
            out.extend_from_slice(&guid.to_bytes_le());
            out.extend_from_slice(&ENTRY_SIZE.to_le_bytes());
            out.extend_from_slice(hash);
        }
        out.resize(PADDED_TABLE_SIZE as usize, 0);
        out
    }

    /// The page QEMU measures: zeros, with the table at `offset`.
    /// `Ovmf::hash_table_offset` checked that the table fits in the page;
    /// were it not to, the page stays zero (never a panic).
    pub(super) fn page(&self, offset: usize) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        let table = self.table();
        if let Some(area) = offset
            .checked_add(table.len())
            .and_then(|end| page.get_mut(offset..end))
        {
            area.copy_from_slice(&table);
        }
        page
    }
}
