//! NVIDIA's opaque data in the MEASUREMENTS response: a list of fields,
//! each `DataType (2, LE) | DataSize (2, LE) | Data`, that tell what the
//! measurements alone do not: the driver and VBIOS versions, the firmware
//! ID of the key that signs, the board and chip, the confidential-computing
//! mode. The types and their encodings are those of NVIDIA's verifiers
//! (nvtrust's local GPU verifier, the attestation SDK's opaque data parser).
//!
//! The fields lie inside the signed response, so their bytes cannot change
//! without breaking the signature; they are still parsed strictly so that
//! the values shown and compared are unambiguous: every type is one NVIDIA
//! defines and appears at most once, the fields fill the opaque data
//! exactly, text is printable ASCII padded with NULs, and the fields with a
//! structure have its size. A report without the driver version, the VBIOS
//! version or the FWID is rejected: verification needs all three.

use kokon_bytes::Reader;

use crate::Error;

/// Opaque field type of the driver version.
pub const DRIVER_VERSION: u16 = 3;
/// Opaque field type of the VBIOS version.
pub const VBIOS_VERSION: u16 = 6;
/// Opaque field type of the per-index measurement counts.
pub const MEASUREMENT_COUNT: u16 = 12;
/// Opaque field type of the firmware ID.
pub const FWID: u16 = 20;
/// Size of the FWID (SHA-384).
pub const FWID_LEN: usize = 48;
/// Size of the VBIOS version field.
const VBIOS_LEN: usize = 8;

/// How a field's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Bytes, shown as hex.
    Hex,
    /// Printable ASCII, then NUL padding.
    Text,
    /// 8 bytes: the version's first four parts little-endian, then the fifth.
    Vbios,
    /// 48 bytes, shown as hex.
    Fwid,
    /// Little-endian u32 counts, one per measurement index from 1.
    Counts,
    /// 8-byte NVSwitch PDIs.
    Pdis,
    /// A little-endian integer of at most 8 bytes.
    Integer,
    /// A little-endian integer naming the confidential-computing mode.
    Feature,
}

/// (type, name as nvtrust and Trustee spell it, format, meaning)
type FieldSpec = (u16, &'static str, Format, &'static str);

const FIELDS: [FieldSpec; 30] = [
    (1, "cert_issuer_name", Format::Hex, "issuer name of the attestation certificate, as the GPU reports it"),
    (2, "cert_authority_key_identifier", Format::Hex, "authority key identifier of the attestation certificate"),
    (DRIVER_VERSION, "driver_version", Format::Text, "version of the NVIDIA driver that asked for the report: compared with the allowed and minimum driver versions; names the driver's reference values (RIM)"),
    (4, "gpu_info", Format::Hex, "GPU information (NVIDIA's encoding)"),
    (5, "id_sku", Format::Hex, "SKU identifier"),
    (VBIOS_VERSION, "vbios_version", Format::Vbios, "version of the VBIOS (the GPU's firmware image): compared with the allowed VBIOS versions; names the VBIOS reference values (RIM)"),
    (7, "manufacturer_id", Format::Hex, "manufacturer identifier"),
    (8, "tamper_detection", Format::Hex, "tamper detection status"),
    (9, "smc", Format::Hex, "SMC (system management controller) status"),
    (10, "vpr", Format::Hex, "VPR (video protected region) status"),
    (11, "nvdec0_status", Format::Text, "status of the NVDEC0 video decoder (when disabled, its measurements are not expected)"),
    (MEASUREMENT_COUNT, "measurement_count", Format::Counts, "how many times each measurement index was extended, index 1 first"),
    (13, "cpr_info", Format::Hex, "CPR (compute protected region) information"),
    (14, "board_id", Format::Hex, "board identifier"),
    (15, "chip_sku", Format::Text, "chip SKU: names the VBIOS reference values (RIM)"),
    (16, "chip_sku_mod", Format::Text, "chip SKU modifier"),
    (17, "project", Format::Text, "board project: names the VBIOS reference values (RIM)"),
    (18, "project_sku", Format::Text, "board project SKU: names the VBIOS reference values (RIM)"),
    (19, "project_sku_mod", Format::Hex, "board project SKU modifier"),
    (FWID, "fwid", Format::Fwid, "firmware ID: SHA-384 of the GPU firmware that holds the attestation key; must equal the FWID in the attestation certificate"),
    (21, "protected_pcie_status", Format::Text, "protected PCIe (multi-GPU confidential computing) status"),
    (22, "switch_pdi", Format::Pdis, "platform device identifiers of the NVSwitches, one per NVLink"),
    (23, "floorswept_ports", Format::Hex, "NVLink ports disabled in manufacturing"),
    (24, "position_id", Format::Hex, "position of the GPU in the system"),
    (25, "lock_switch_status", Format::Hex, "NVSwitch lock status"),
    (32, "gpu_link_conn", Format::Hex, "GPU NVLink connections"),
    (33, "sys_enable_status", Format::Hex, "system enable status"),
    (34, "opaque_data_version", Format::Integer, "version of the opaque data's layout"),
    (35, "chip_info", Format::Text, "chip name"),
    (36, "feature_flag", Format::Feature, "confidential-computing mode: SPT (single GPU passthrough), MPT (multi-GPU passthrough) or PPCIE (protected PCIe)"),
];

fn spec(id: u16) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.0 == id)
}

/// One opaque field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueField {
    /// Its type.
    pub id: u16,
    /// Its data, as the report holds it.
    pub data: Vec<u8>,
}

impl OpaqueField {
    /// Its name, as nvtrust and Trustee spell it ("driver_version", ...).
    pub fn name(&self) -> &'static str {
        spec(self.id).map(|s| s.1).unwrap_or("unknown")
    }

    /// What it means.
    pub fn meaning(&self) -> &'static str {
        spec(self.id).map(|s| s.3).unwrap_or("unknown field")
    }

    /// Its value as text, in the form NVIDIA's and Trustee's verifiers
    /// show it: text without its padding, the VBIOS version as
    /// `96.00.9f.00.01`, counts and PDIs as lists, the mode by name,
    /// anything else as hex.
    pub fn value(&self) -> String {
        let format = spec(self.id).map(|s| s.2).unwrap_or(Format::Hex);
        match format {
            Format::Text => text(&self.data).unwrap_or_else(|| hex::encode(&self.data)),
            Format::Vbios => vbios(&self.data),
            Format::Counts => le_chunks::<4>(&self.data)
                .iter()
                .map(|c| u32::from_le_bytes(*c).to_string())
                .collect::<Vec<_>>()
                .join(","),
            Format::Pdis => le_chunks::<8>(&self.data)
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(","),
            Format::Integer => le_integer(&self.data).to_string(),
            Format::Feature => match le_integer(&self.data) {
                0 => "SPT".into(),
                1 => "MPT".into(),
                2 => "PPCIE".into(),
                other => format!("unknown mode {other}"),
            },
            Format::Hex | Format::Fwid => hex::encode(&self.data),
        }
    }
}

/// The opaque data of a MEASUREMENTS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueData {
    /// Every field, in the report's order.
    pub fields: Vec<OpaqueField>,
    /// The driver version ("550.90.07").
    pub driver_version: String,
    /// The VBIOS version ("96.00.9f.00.01").
    pub vbios_version: String,
    /// The firmware ID.
    pub fwid: [u8; FWID_LEN],
}

impl OpaqueData {
    /// Parses the opaque data: fields back to back, filling it exactly.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let mut fields: Vec<OpaqueField> = Vec::new();
        while r.remaining() > 0 {
            let id = r.u16_le("NVIDIA opaque field: DataType")?;
            let size = r.u16_le("NVIDIA opaque field: DataSize")?;
            let data = r.take(usize::from(size), "NVIDIA opaque field: Data")?;
            let Some((_, name, format, _)) = spec(id) else {
                return Err(Error::Unsupported {
                    field: "NVIDIA opaque field type",
                    expected: "a type NVIDIA defines (1 to 25, 32 to 36)".into(),
                    found: format!("{id} (field {})", fields.len() + 1),
                });
            };
            if fields.iter().any(|f| f.id == id) {
                return Err(Error::Unsupported {
                    field: "NVIDIA opaque field type",
                    expected: "each type at most once".into(),
                    found: format!("{name} ({id}) twice"),
                });
            }
            check_format(*format, data).map_err(|expected| Error::Unsupported {
                field: "NVIDIA opaque field data",
                expected: format!("{name} ({id}): {expected}"),
                found: format!("{size} bytes: {}", hex::encode(data)),
            })?;
            fields.push(OpaqueField {
                id,
                data: data.to_vec(),
            });
        }
        let required = |id: u16| {
            fields
                .iter()
                .find(|f| f.id == id)
                .ok_or_else(|| Error::Unsupported {
                    field: "NVIDIA opaque data",
                    expected: format!(
                        "a {} field (type {id})",
                        spec(id).map(|s| s.1).unwrap_or("?")
                    ),
                    found: "none".into(),
                })
        };
        let driver_version = required(DRIVER_VERSION)?.value();
        let vbios_version = required(VBIOS_VERSION)?.value();
        let fwid = &required(FWID)?.data;
        let fwid = <[u8; FWID_LEN]>::try_from(fwid.as_slice()).map_err(|_| Error::Unsupported {
            field: "NVIDIA opaque field data",
            expected: "fwid (20): 48 bytes (SHA-384)".into(),
            found: format!("{} bytes", fwid.len()),
        })?;
        Ok(Self {
            fields,
            driver_version,
            vbios_version,
            fwid,
        })
    }

    /// The field of type `id`, if present.
    pub fn get(&self, id: u16) -> Option<&OpaqueField> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// How many times each measurement index was extended, index 1 first,
    /// if the report says.
    pub fn measurement_counts(&self) -> Option<Vec<u32>> {
        self.get(MEASUREMENT_COUNT).map(|f| {
            le_chunks::<4>(&f.data)
                .into_iter()
                .map(u32::from_le_bytes)
                .collect()
        })
    }
}

/// Checks `data` against `format`; says what was expected otherwise.
fn check_format(format: Format, data: &[u8]) -> Result<(), String> {
    let ok = match format {
        Format::Hex => true,
        Format::Text => text(data).is_some(),
        Format::Vbios => data.len() == VBIOS_LEN,
        Format::Fwid => data.len() == FWID_LEN,
        Format::Counts => data.len() % 4 == 0,
        Format::Pdis => data.len() % 8 == 0,
        Format::Integer | Format::Feature => data.len() <= 8,
    };
    if ok {
        return Ok(());
    }
    Err(match format {
        Format::Hex => "bytes",
        Format::Text => "printable ASCII, then NUL padding",
        Format::Vbios => "8 bytes",
        Format::Fwid => "48 bytes (SHA-384)",
        Format::Counts => "a multiple of 4 bytes (little-endian u32 counts)",
        Format::Pdis => "a multiple of 8 bytes (8-byte PDIs)",
        Format::Integer | Format::Feature => "a little-endian integer of at most 8 bytes",
    }
    .into())
}

/// Printable ASCII followed by NUL padding, without the padding.
fn text(data: &[u8]) -> Option<String> {
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let body = data.get(..end)?;
    body.iter()
        .all(|b| (0x20..=0x7e).contains(b))
        .then(|| body.iter().map(|b| char::from(*b)).collect())
}

/// The VBIOS version as NVIDIA writes it: bytes 3, 2, 1, 0, then 4, in
/// hex, joined by dots (`00 9f 00 96 01 ..` is `96.00.9f.00.01`).
fn vbios(data: &[u8]) -> String {
    [3usize, 2, 1, 0, 4]
        .iter()
        .map(|i| format!("{:02x}", data.get(*i).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(".")
}

fn le_chunks<const N: usize>(data: &[u8]) -> Vec<[u8; N]> {
    data.chunks_exact(N)
        .map(|c| {
            let mut out = [0u8; N];
            out.copy_from_slice(c);
            out
        })
        .collect()
}

fn le_integer(data: &[u8]) -> u64 {
    data.iter()
        .take(8)
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_nvidia_writes_them() {
        assert_eq!(
            vbios(&[0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0]),
            "96.00.9f.00.01"
        );
        assert_eq!(text(b"550.90.07\0").as_deref(), Some("550.90.07"));
        assert_eq!(text(b"\0\0").as_deref(), Some(""));
        assert_eq!(text(b"55\x000\0"), None);
        assert_eq!(text(b"\xff\0"), None);
        assert_eq!(le_integer(&[1, 2]), 0x0201);
        let field = |id, data: &[u8]| OpaqueField {
            id,
            data: data.to_vec(),
        };
        assert_eq!(field(36, &[2, 0]).value(), "PPCIE");
        assert_eq!(field(36, &[9]).value(), "unknown mode 9");
        assert_eq!(field(12, &[1, 0, 0, 0, 0x82, 0, 0, 0]).value(), "1,130");
        assert_eq!(
            field(22, &[1; 16]).value(),
            "0101010101010101,0101010101010101"
        );
        assert_eq!(field(19, &[0, 0]).value(), "0000");
    }
}
