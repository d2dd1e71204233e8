//! The SEV-SNP attestation report (`ATTESTATION_REPORT`), versions 2, 3 and
//! 5, as laid out in AMD's "SEV Secure Nested Paging Firmware ABI
//! Specification" (pub. 56860), table 23: 1184 bytes, of which the first
//! 0x2A0 are signed with ECDSA P-384 / SHA-384 by the VCEK or VLEK.
//!
//! Version 3 adds the CPUID family, model and stepping (0x188..0x18B);
//! version 5 the launch and current mitigation vectors (0x1F8, 0x200).
//! Parsing is total and checks every reserved field the ABI says is zero.

use kokon_bytes::Reader;

use crate::roots::AmdProduct;
use crate::Error;

/// Size of a report.
pub const REPORT_LEN: usize = 0x4A0;
/// Size of the signed part.
pub const SIGNED_LEN: usize = 0x2A0;
/// Signature algorithm 1: ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Guest policy bit 16: SMT may be enabled on the host.
pub const POLICY_SMT: u64 = 1 << 16;
/// Guest policy bit 17: reserved, must be one.
pub const POLICY_RESERVED_ONE: u64 = 1 << 17;
/// Guest policy bit 18: a migration agent may be associated with the guest.
pub const POLICY_MIGRATE_MA: u64 = 1 << 18;
/// Guest policy bit 19: the guest may be debugged (its memory read by the host).
pub const POLICY_DEBUG: u64 = 1 << 19;
/// Guest policy bit 20: the guest may run on a single socket only.
pub const POLICY_SINGLE_SOCKET: u64 = 1 << 20;

/// Which key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SigningKey {
    /// The chip's Versioned Chip Endorsement Key.
    Vcek,
    /// A cloud provider's Versioned Loaded Endorsement Key.
    Vlek,
}

/// A TCB version: the security patch levels of the SNP firmware components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TcbVersion {
    /// Turin and later only: the FMC firmware's SPL.
    pub fmc: Option<u8>,
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the 8-byte TCB_VERSION for a product (Turin moved the fields).
    pub fn decode(raw: u64, product: AmdProduct) -> Self {
        let b = raw.to_le_bytes();
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        match product {
            AmdProduct::Turin => Self {
                fmc: Some(byte(0)),
                bootloader: byte(1),
                tee: byte(2),
                snp: byte(3),
                microcode: byte(7),
            },
            AmdProduct::Milan | AmdProduct::Genoa => Self {
                fmc: None,
                bootloader: byte(0),
                tee: byte(1),
                snp: byte(6),
                microcode: byte(7),
            },
        }
    }

    /// True when every component is at least `floor`'s.
    pub fn at_least(&self, floor: &TcbVersion) -> bool {
        self.bootloader >= floor.bootloader
            && self.tee >= floor.tee
            && self.snp >= floor.snp
            && self.microcode >= floor.microcode
            && self.fmc.unwrap_or(0) >= floor.fmc.unwrap_or(0)
    }
}

impl std::fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// A parsed attestation report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Report format version (2, 3 or 5).
    pub version: u32,
    /// Guest SVN chosen by the guest owner.
    pub guest_svn: u32,
    /// The guest policy the VM was launched with.
    pub policy: u64,
    /// Family ID from the ID block.
    pub family_id: [u8; 16],
    /// Image ID from the ID block.
    pub image_id: [u8; 16],
    /// The VMPL the report was requested from (0 is the most privileged).
    pub vmpl: u32,
    /// Signature algorithm (1).
    pub signature_algo: u32,
    /// The firmware's current TCB.
    pub current_tcb: u64,
    /// Platform info: bit 0 SMT enabled, bit 1 TSME enabled, ...
    pub platform_info: u64,
    /// Bit 0: author key digest present; bit 1: chip ID masked; bits 2-4: signing key.
    pub key_info: u32,
    /// 64 bytes chosen by the guest: kokon puts SHA-512 of its claims here.
    pub report_data: [u8; 64],
    /// Launch measurement of the guest (firmware, and what it measured).
    pub measurement: [u8; 48],
    /// 32 bytes set by the host at launch.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID key that signed the ID block.
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key that certified the ID key.
    pub author_key_digest: [u8; 48],
    /// Report ID of this guest.
    pub report_id: [u8; 32],
    /// Report ID of its migration agent.
    pub report_id_ma: [u8; 32],
    /// The TCB the VCEK was derived from.
    pub reported_tcb: u64,
    /// Version 3+: CPUID family, model and stepping.
    pub cpuid: Option<[u8; 3]>,
    /// The chip's unique ID (zero when masked).
    pub chip_id: [u8; 64],
    /// Committed TCB.
    pub committed_tcb: u64,
    /// Current firmware version (build, minor, major).
    pub current_version: [u8; 3],
    /// Committed firmware version (build, minor, major).
    pub committed_version: [u8; 3],
    /// TCB at launch.
    pub launch_tcb: u64,
    /// Version 5: mitigation vectors at launch and now.
    pub mitigation_vectors: Option<(u64, u64)>,
    /// The signed bytes (0..0x2A0).
    pub signed: Vec<u8>,
    /// The signature as (r || s), big-endian, 48 bytes each.
    pub signature: [u8; 96],
}

impl Report {
    /// Which key signed it.
    pub fn signing_key(&self) -> Result<SigningKey, Error> {
        match (self.key_info >> 2) & 0x7 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            other => Err(Error::Unsupported {
                field: "SNP report signing key",
                expected: "0 (VCEK) or 1 (VLEK)".into(),
                found: other.to_string(),
            }),
        }
    }

    /// Whether the guest policy allows debugging.
    pub fn debug_allowed(&self) -> bool {
        self.policy & POLICY_DEBUG != 0
    }

    /// The product named by the CPUID fields (version 3+).
    pub fn product(&self) -> Option<AmdProduct> {
        let [family, model, _] = self.cpuid?;
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(AmdProduct::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(AmdProduct::Genoa),
            (0x1A, 0x00..=0x11) => Some(AmdProduct::Turin),
            _ => None,
        }
    }

    /// Parses a report of exactly [`REPORT_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > REPORT_LEN {
            return Err(Error::TrailingBytes {
                what: "SNP report",
                extra: bytes.len() - REPORT_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u32_le("SNP report: VERSION")?;
        if ![2, 3, 5].contains(&version) {
            return Err(Error::Unsupported {
                field: "SNP report version",
                expected: "2, 3 or 5".into(),
                found: version.to_string(),
            });
        }
        let guest_svn = r.u32_le("SNP report: GUEST_SVN")?;
        let policy = r.u64_le("SNP report: POLICY")?;
        let family_id = r.array("SNP report: FAMILY_ID")?;
        let image_id = r.array("SNP report: IMAGE_ID")?;
        let vmpl = r.u32_le("SNP report: VMPL")?;
        let signature_algo = r.u32_le("SNP report: SIGNATURE_ALGO")?;
        if signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(Error::Unsupported {
                field: "SNP report signature algorithm",
                expected: "1 (ECDSA P-384 with SHA-384)".into(),
                found: signature_algo.to_string(),
            });
        }
        let current_tcb = r.u64_le("SNP report: CURRENT_TCB")?;
        let platform_info = r.u64_le("SNP report: PLATFORM_INFO")?;
        let key_info = r.u32_le("SNP report: key info")?;
        reserved(&mut r, 4, "SNP report: reserved 0x4C")?;
        let report_data = r.array("SNP report: REPORT_DATA")?;
        let measurement = r.array("SNP report: MEASUREMENT")?;
        let host_data = r.array("SNP report: HOST_DATA")?;
        let id_key_digest = r.array("SNP report: ID_KEY_DIGEST")?;
        let author_key_digest = r.array("SNP report: AUTHOR_KEY_DIGEST")?;
        let report_id = r.array("SNP report: REPORT_ID")?;
        let report_id_ma = r.array("SNP report: REPORT_ID_MA")?;
        let reported_tcb = r.u64_le("SNP report: REPORTED_TCB")?;
        let cpuid: [u8; 3] = r.array("SNP report: CPUID")?;
        let cpuid = if version >= 3 {
            Some(cpuid)
        } else if cpuid != [0; 3] {
            return Err(Error::Unsupported {
                field: "SNP report v2 reserved bytes 0x188..0x18B",
                expected: "zero".into(),
                found: hex::encode(cpuid),
            });
        } else {
            None
        };
        reserved(&mut r, 0x1A0 - 0x18B, "SNP report: reserved 0x18B")?;
        let chip_id = r.array("SNP report: CHIP_ID")?;
        let committed_tcb = r.u64_le("SNP report: COMMITTED_TCB")?;
        let current: [u8; 4] = r.array("SNP report: CURRENT version")?;
        let committed: [u8; 4] = r.array("SNP report: COMMITTED version")?;
        let launch_tcb = r.u64_le("SNP report: LAUNCH_TCB")?;
        let vectors = (
            r.u64_le("SNP report: LAUNCH_MIT_VECTOR")?,
            r.u64_le("SNP report: CURRENT_MIT_VECTOR")?,
        );
        let mitigation_vectors = if version >= 5 {
            Some(vectors)
        } else if vectors != (0, 0) {
            return Err(Error::Unsupported {
                field: "SNP report reserved bytes 0x1F8..0x208 before version 5",
                expected: "zero".into(),
                found: format!("{:016x}{:016x}", vectors.0, vectors.1),
            });
        } else {
            None
        };
        reserved(&mut r, SIGNED_LEN - 0x208, "SNP report: reserved 0x208")?;
        let signed = bytes.get(..SIGNED_LEN).unwrap_or_default().to_vec();
        let sig_r: [u8; 72] = r.array("SNP report: signature R")?;
        let sig_s: [u8; 72] = r.array("SNP report: signature S")?;
        reserved(
            &mut r,
            REPORT_LEN - SIGNED_LEN - 144,
            "SNP report: signature reserved",
        )?;
        r.finish("SNP report")?;
        let mut signature = [0u8; 96];
        let halves = [
            (
                &sig_r,
                "SNP report signature R bytes 48..72 (zero extension)",
            ),
            (
                &sig_s,
                "SNP report signature S bytes 48..72 (zero extension)",
            ),
        ];
        for (out, (half, field)) in signature.chunks_mut(48).zip(halves) {
            let (low, high) = half.split_at(48);
            if high.iter().any(|b| *b != 0) {
                return Err(Error::Unsupported {
                    field,
                    expected: "zero (a P-384 component has 48 bytes)".into(),
                    found: hex::encode(high),
                });
            }
            // Little-endian in the report, big-endian for the verifier.
            for (o, i) in out.iter_mut().zip(low.iter().rev()) {
                *o = *i;
            }
        }
        let [cb, cm, cj, _] = current;
        let [kb, km, kj, _] = committed;
        Ok(Self {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            key_info,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current_version: [cb, cm, cj],
            committed_version: [kb, km, kj],
            launch_tcb,
            mitigation_vectors,
            signed,
            signature,
        })
    }
}

fn reserved(r: &mut Reader<'_>, len: usize, what: &'static str) -> Result<(), Error> {
    let bytes = r.take(len, what)?;
    if bytes.iter().any(|b| *b != 0) {
        return Err(Error::Unsupported {
            field: what,
            expected: "zero".into(),
            found: hex::encode(bytes),
        });
    }
    Ok(())
}
