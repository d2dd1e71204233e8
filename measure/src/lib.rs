//! The measurements a TEE takes of a kokon guest image, recomputed from the
//! image's files, offline and without the hardware: what an auditor compares
//! with a live attestation bundle and writes into a production policy.
//!
//! Everything here is pure: functions of the firmware, kernel, initrd and
//! command line bytes and of the VM's fixed shape (vCPUs, their type).
//! Untrusted inputs (a firmware file handed to an auditor) are parsed with
//! bounded readers and never panic.
//!
//! - [`snp`]: the SEV-SNP launch digest (`MEASUREMENT` of the attestation
//!   report) as the AMD secure processor computes it from the pages QEMU and
//!   OVMF hand it (firmware sections, the SEV hashes table of kernel, initrd
//!   and command line, one VMSA per vCPU).
//! - [`tdx`]: the TDX MRTD from the TDVF metadata, and RTMR1/RTMR2 as the TDX
//!   firmware extends them for the kernel, command line and initrd.
//! - [`ovmf`]: the OVMF footer GUID table both read their firmware entries
//!   from.

pub mod ovmf;
pub mod snp;
pub mod tdx;

use std::fmt::Write as _;

/// One register's expected value and how it was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The register's key in a policy's `[measurements]` table:
    /// `snp_measurement`, `mrtd`, `rtmr0`, `rtmr1` or `rtmr2`.
    pub name: &'static str,
    /// Its expected value (48 bytes for all of the above).
    pub value: Vec<u8>,
    /// How it was computed, one step per line, for `kokon audit measure`.
    pub explanation: Vec<String>,
}

/// The registers as a policy's `[measurements]` table, which
/// `policies/production-snp.toml` and `production-tdx.toml` accept.
pub fn policy_snippet(registers: &[Register]) -> String {
    let mut out = String::from("[measurements]\n");
    for register in registers {
        let _ = writeln!(
            out,
            "{} = [\"{}\"]",
            register.name,
            hex::encode(&register.value)
        );
    }
    out
}
