//! The measurement registers a policy can pin, and where each is found in a
//! TEE report.

use std::fmt;

use kokon_attestation::TeeReport;

/// A TDX measurement register a policy can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Register {
    /// MRTD: build-time TD measurement.
    MrTd,
    /// RTMR0-3.
    Rtmr(u8),
    /// MRSEAM: the TDX module.
    MrSeam,
    /// MRSIGNERSEAM: the TDX module's signer.
    MrSignerSeam,
    /// MRCONFIGID.
    MrConfigId,
    /// MROWNER.
    MrOwner,
    /// MROWNERCONFIG.
    MrOwnerConfig,
    /// TDATTRIBUTES (8 bytes): pins DEBUG, SEPT_VE_DISABLE, MIGRATABLE, PKS, ...
    TdAttributes,
    /// XFAM (8 bytes): the CPU extended features enabled for the TD.
    Xfam,
    /// SNP launch MEASUREMENT.
    SnpMeasurement,
    /// SNP HOST_DATA (32 bytes).
    SnpHostData,
    /// SNP ID_KEY_DIGEST.
    SnpIdKeyDigest,
}

pub(crate) const REGISTER_NAMES: &str = "mrtd, rtmr0, rtmr1, rtmr2, rtmr3, mrseam, mrsignerseam, mrconfigid, mrowner, mrownerconfig, tdattributes, xfam (TDX); snp_measurement, snp_host_data, snp_id_key_digest (SEV-SNP)";

impl Register {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "mrtd" => Self::MrTd,
            "rtmr0" => Self::Rtmr(0),
            "rtmr1" => Self::Rtmr(1),
            "rtmr2" => Self::Rtmr(2),
            "rtmr3" => Self::Rtmr(3),
            "mrseam" => Self::MrSeam,
            "mrsignerseam" => Self::MrSignerSeam,
            "mrconfigid" => Self::MrConfigId,
            "mrowner" => Self::MrOwner,
            "mrownerconfig" => Self::MrOwnerConfig,
            "tdattributes" => Self::TdAttributes,
            "xfam" => Self::Xfam,
            "snp_measurement" => Self::SnpMeasurement,
            "snp_host_data" => Self::SnpHostData,
            "snp_id_key_digest" => Self::SnpIdKeyDigest,
            _ => return None,
        })
    }

    /// Its size in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::SnpHostData => 32,
            Self::TdAttributes | Self::Xfam => 8,
            _ => 48,
        }
    }

    /// The register's value in a TEE report, or `None` when this kind of
    /// evidence has no such register.
    pub fn value(self, tee: &TeeReport) -> Option<&[u8]> {
        match tee {
            TeeReport::Tdx(td) => Some(match self {
                Self::MrTd => &td.mr_td,
                Self::Rtmr(i) => {
                    // `parse` only builds RTMR0-3.
                    let [r0, r1, r2, r3] = &td.rtmr;
                    match i {
                        0 => r0,
                        1 => r1,
                        2 => r2,
                        _ => r3,
                    }
                }
                Self::MrSeam => &td.mr_seam,
                Self::MrSignerSeam => &td.mr_signer_seam,
                Self::MrConfigId => &td.mr_config_id,
                Self::MrOwner => &td.mr_owner,
                Self::MrOwnerConfig => &td.mr_owner_config,
                Self::TdAttributes => &td.td_attributes,
                Self::Xfam => &td.xfam,
                Self::SnpMeasurement | Self::SnpHostData | Self::SnpIdKeyDigest => return None,
            }),
            TeeReport::Snp(r) => match self {
                Self::SnpMeasurement => Some(&r.measurement),
                Self::SnpHostData => Some(&r.host_data),
                Self::SnpIdKeyDigest => Some(&r.id_key_digest),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MrTd => f.write_str("MRTD"),
            Self::Rtmr(i) => write!(f, "RTMR{i}"),
            Self::MrSeam => f.write_str("MRSEAM"),
            Self::MrSignerSeam => f.write_str("MRSIGNERSEAM"),
            Self::MrConfigId => f.write_str("MRCONFIGID"),
            Self::MrOwner => f.write_str("MROWNER"),
            Self::MrOwnerConfig => f.write_str("MROWNERCONFIG"),
            Self::TdAttributes => f.write_str("TDATTRIBUTES"),
            Self::Xfam => f.write_str("XFAM"),
            Self::SnpMeasurement => f.write_str("SNP MEASUREMENT"),
            Self::SnpHostData => f.write_str("SNP HOST_DATA"),
            Self::SnpIdKeyDigest => f.write_str("SNP ID_KEY_DIGEST"),
        }
    }
}
