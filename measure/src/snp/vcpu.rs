//! The vCPU types QEMU can give an SEV-SNP guest, and the CPUID signature
//! each one puts in RDX at reset (and so in every measured VMSA).

use std::fmt;
use std::str::FromStr;

use super::SnpError;

/// A QEMU `-cpu` model of the AMD EPYC family: the types sev-snp-measure
/// 0.0.13 knows (QEMU's `builtin_x86_defs` and their versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuType {
    /// `EPYC` (Naples, family 23 model 1 stepping 2).
    Epyc,
    /// `EPYC-v1`.
    EpycV1,
    /// `EPYC-v2`.
    EpycV2,
    /// `EPYC-IBPB` (an alias of `EPYC-v2`).
    EpycIbpb,
    /// `EPYC-v3`.
    EpycV3,
    /// `EPYC-v4`.
    EpycV4,
    /// `EPYC-Rome` (family 23 model 49 stepping 0).
    EpycRome,
    /// `EPYC-Rome-v1`.
    EpycRomeV1,
    /// `EPYC-Rome-v2`.
    EpycRomeV2,
    /// `EPYC-Rome-v3`.
    EpycRomeV3,
    /// `EPYC-Milan` (family 25 model 1 stepping 1).
    EpycMilan,
    /// `EPYC-Milan-v1`.
    EpycMilanV1,
    /// `EPYC-Milan-v2`.
    EpycMilanV2,
    /// `EPYC-Genoa` (family 25 model 17 stepping 0).
    EpycGenoa,
    /// `EPYC-Genoa-v1`.
    EpycGenoaV1,
    /// `EPYC-Turin` (family 26 model 0 stepping 0).
    EpycTurin,
}

impl VcpuType {
    /// Every type, in the order sev-snp-measure lists them.
    pub const ALL: [VcpuType; 16] = [
        VcpuType::Epyc,
        VcpuType::EpycV1,
        VcpuType::EpycV2,
        VcpuType::EpycIbpb,
        VcpuType::EpycV3,
        VcpuType::EpycV4,
        VcpuType::EpycRome,
        VcpuType::EpycRomeV1,
        VcpuType::EpycRomeV2,
        VcpuType::EpycRomeV3,
        VcpuType::EpycMilan,
        VcpuType::EpycMilanV1,
        VcpuType::EpycMilanV2,
        VcpuType::EpycGenoa,
        VcpuType::EpycGenoaV1,
        VcpuType::EpycTurin,
    ];

    /// The QEMU `-cpu` name.
    pub fn name(self) -> &'static str {
        match self {
            VcpuType::Epyc => "EPYC",
            VcpuType::EpycV1 => "EPYC-v1",
            VcpuType::EpycV2 => "EPYC-v2",
            VcpuType::EpycIbpb => "EPYC-IBPB",
            VcpuType::EpycV3 => "EPYC-v3",
            VcpuType::EpycV4 => "EPYC-v4",
            VcpuType::EpycRome => "EPYC-Rome",
            VcpuType::EpycRomeV1 => "EPYC-Rome-v1",
            VcpuType::EpycRomeV2 => "EPYC-Rome-v2",
            VcpuType::EpycRomeV3 => "EPYC-Rome-v3",
            VcpuType::EpycMilan => "EPYC-Milan",
            VcpuType::EpycMilanV1 => "EPYC-Milan-v1",
            VcpuType::EpycMilanV2 => "EPYC-Milan-v2",
            VcpuType::EpycGenoa => "EPYC-Genoa",
            VcpuType::EpycGenoaV1 => "EPYC-Genoa-v1",
            VcpuType::EpycTurin => "EPYC-Turin",
        }
    }

    /// Family, model and stepping of the model's CPUID leaf 1.
    pub fn family_model_stepping(self) -> (u32, u32, u32) {
        match self {
            VcpuType::Epyc
            | VcpuType::EpycV1
            | VcpuType::EpycV2
            | VcpuType::EpycIbpb
            | VcpuType::EpycV3
            | VcpuType::EpycV4 => (23, 1, 2),
            VcpuType::EpycRome
            | VcpuType::EpycRomeV1
            | VcpuType::EpycRomeV2
            | VcpuType::EpycRomeV3 => (23, 49, 0),
            VcpuType::EpycMilan | VcpuType::EpycMilanV1 | VcpuType::EpycMilanV2 => (25, 1, 1),
            VcpuType::EpycGenoa | VcpuType::EpycGenoaV1 => (25, 17, 0),
            VcpuType::EpycTurin => (26, 0, 0),
        }
    }

    /// The CPUID Fn0000_0001 EAX signature (AMD CPUID Specification #25481):
    /// what KVM puts in RDX at reset.
    pub fn signature(self) -> u32 {
        let (family, model, stepping) = self.family_model_stepping();
        cpuid_signature(family, model, stepping)
    }
}

/// Encodes family, model and stepping as CPUID Fn0000_0001 EAX does: a
/// family above 15 is 15 in the base field plus the rest in the extended
/// family field; the model's high nibble goes to the extended model field.
fn cpuid_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (base_family, extended_family) = match family.checked_sub(0xf) {
        Some(extra) if family > 0xf => (0xf, extra & 0xff),
        _ => (family & 0xf, 0),
    };
    (extended_family << 20)
        | (((model >> 4) & 0xf) << 16)
        | (base_family << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VcpuType {
    type Err = SnpError;

    /// Parses a QEMU `-cpu` name (as QEMU does, ignoring ASCII case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VcpuType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| SnpError::UnknownVcpuType {
                found: s.to_owned(),
                known: VcpuType::ALL.map(VcpuType::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_cpuid_encoding() {
        // Family 25 (0x19) is base family 0xf plus extended family 0xa.
        assert_eq!(VcpuType::EpycMilan.signature(), 0x00a0_0f11);
        assert_eq!(VcpuType::EpycGenoa.signature(), 0x00a1_0f10);
        assert_eq!(VcpuType::EpycV4.signature(), 0x0080_0f12);
        assert_eq!(VcpuType::EpycRome.signature(), 0x0083_0f10);
        assert_eq!(VcpuType::EpycTurin.signature(), 0x00b0_0f00);
        assert_eq!(cpuid_signature(6, 0x55, 4), 0x0005_0654);
    }

    #[test]
    fn names_round_trip() {
        for t in VcpuType::ALL {
            assert_eq!(t.to_string().parse::<VcpuType>().ok(), Some(t));
        }
        assert_eq!(
            "epyc-milan".parse::<VcpuType>().ok(),
            Some(VcpuType::EpycMilan)
        );
    }
}
