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

pub mod snp;
pub mod tdx;
