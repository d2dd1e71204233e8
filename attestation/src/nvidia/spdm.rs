//! The SPDM 1.1 messages of an NVIDIA GPU attestation report (DMTF DSP0274
//! 1.1, "GET_MEASUREMENTS request and MEASUREMENTS response messages"): the
//! requester's GET_MEASUREMENTS, then the GPU's signed MEASUREMENTS
//! response, back to back, as the driver returns them
//! (`nvmlDeviceGetConfComputeGpuAttestationReport`).
//!
//! ```text
//! request  (37 bytes)  SPDMVersion 0x11 | 0xE0 GET_MEASUREMENTS | Param1 attributes
//!                      | Param2 operation | Nonce (32) | SlotIDParam
//! response             SPDMVersion 0x11 | 0x60 MEASUREMENTS | Param1 | Param2 slot ID
//!                      | NumberOfBlocks | MeasurementRecordLength (3, LE)
//!                      | MeasurementRecord | Nonce (32) | OpaqueLength (2, LE)
//!                      | OpaqueData | Signature (96: ECDSA P-384 r || s)
//! block                Index | MeasurementSpecification | MeasurementSize (2, LE)
//!                      | DMTFSpecMeasurementValueType | DMTFSpecMeasurementValueSize (2, LE)
//!                      | DMTFSpecMeasurementValue
//! ```
//!
//! The signature covers the transcript: the request and the response up to
//! the signature (SHA-384). Parsing is total and strict: one version, one
//! request (signature requested, all blocks, slot 0 to 7), blocks that fill
//! the record exactly, each a SHA-384 digest in the DMTF format under a
//! distinct index, and nothing after the signature.

use std::collections::BTreeMap;

use kokon_bytes::Reader;

use super::opaque::OpaqueData;
use crate::Error;

/// SPDMVersion 1.1, the version of NVIDIA's GPU attestation reports.
pub const SPDM_VERSION_1_1: u8 = 0x11;
/// RequestResponseCode of GET_MEASUREMENTS.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// RequestResponseCode of MEASUREMENTS.
pub const MEASUREMENTS: u8 = 0x60;
/// GET_MEASUREMENTS Param1 bit 0: the responder signs its response.
pub const SIGNATURE_REQUESTED: u8 = 0x01;
/// GET_MEASUREMENTS Param2 0xFF: every measurement block.
pub const ALL_MEASUREMENTS: u8 = 0xFF;
/// MeasurementSpecification bit 0: the DMTF measurement format.
pub const DMTF_SPECIFICATION: u8 = 0x01;
/// Size of the GET_MEASUREMENTS request.
pub const REQUEST_LEN: usize = 37;
/// Size of each nonce.
pub const NONCE_LEN: usize = 32;
/// Size of a measurement digest (SHA-384).
pub const DIGEST_LEN: usize = 48;
/// Size of the signature (ECDSA P-384, r || s).
pub const SIGNATURE_LEN: usize = 96;
/// SPDM 1.1's limit on OpaqueLength.
pub const MAX_OPAQUE_LEN: u16 = 1024;
/// Highest slot ID (SlotIDParam bits 3:0, slots 0 to 7).
const MAX_SLOT_ID: u8 = 7;
/// Bit 7 of DMTFSpecMeasurementValueType: a raw bit stream, not a digest.
const RAW_BIT_STREAM: u8 = 0x80;

/// The GET_MEASUREMENTS request, as the requester sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Param1: request attributes (0x01, signature requested).
    pub attributes: u8,
    /// Param2: measurement operation (0xFF, all blocks).
    pub operation: u8,
    /// The requester's nonce: kokon's verifier chooses it.
    pub nonce: [u8; NONCE_LEN],
    /// SlotIDParam: the certificate slot whose key signs (0 to 7).
    pub slot_id: u8,
}

/// One measurement block in the DMTF format, holding a SHA-384 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// Its index (1 to 254).
    pub index: u8,
    /// DMTFSpecMeasurementValueType (bit 7 clear: a digest).
    pub value_type: u8,
    /// The digest.
    pub digest: [u8; DIGEST_LEN],
}

impl MeasurementBlock {
    /// What the block measures, by its DMTF value type.
    pub fn kind(&self) -> &'static str {
        match self.value_type {
            0 => "immutable ROM",
            1 => "mutable firmware",
            2 => "hardware configuration",
            3 => "firmware configuration",
            4 => "measurement manifest",
            _ => "unknown",
        }
    }
}

/// The MEASUREMENTS response, signed by the GPU's attestation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Param1 (reserved, zero, when all blocks were requested).
    pub param1: u8,
    /// Param2: the slot ID whose key signed.
    pub slot_id: u8,
    /// The measurement blocks, in the order of the record.
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// NVIDIA's opaque data: driver and VBIOS versions, FWID, ...
    pub opaque: OpaqueData,
    /// The signature (ECDSA P-384, r || s, big-endian).
    pub signature: [u8; SIGNATURE_LEN],
}

/// A parsed NVIDIA GPU attestation report: request, response and what
/// the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The GET_MEASUREMENTS request.
    pub request: Request,
    /// The MEASUREMENTS response.
    pub response: Response,
    /// The signed transcript: the report without its signature.
    pub signed: Vec<u8>,
}

impl Report {
    /// Parses a report: the request, the response, nothing after.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let request = read_request(&mut r)?;
        let response = read_response(&mut r, &request)?;
        r.finish("NVIDIA GPU attestation report (after the SPDM signature)")?;
        let signed = bytes
            .get(..bytes.len().saturating_sub(SIGNATURE_LEN))
            .unwrap_or_default()
            .to_vec();
        Ok(Self {
            request,
            response,
            signed,
        })
    }

    /// The measurement digests by index.
    pub fn measurements(&self) -> BTreeMap<u8, [u8; DIGEST_LEN]> {
        self.response
            .blocks
            .iter()
            .map(|b| (b.index, b.digest))
            .collect()
    }
}

/// Reads the byte `what` and fails unless it is `expected` (`meaning` says
/// what that value is).
fn fixed_byte(
    r: &mut Reader<'_>,
    what: &'static str,
    expected: u8,
    meaning: &str,
) -> Result<u8, Error> {
    let found = r.u8(what)?;
    if found == expected {
        return Ok(found);
    }
    Err(Error::Unsupported {
        field: what,
        expected: format!("{expected:#04x} ({meaning})"),
        found: format!("{found:#04x}"),
    })
}

fn read_request(r: &mut Reader<'_>) -> Result<Request, Error> {
    fixed_byte(
        r,
        "SPDM GET_MEASUREMENTS request: SPDMVersion",
        SPDM_VERSION_1_1,
        "SPDM 1.1",
    )?;
    fixed_byte(
        r,
        "SPDM GET_MEASUREMENTS request: RequestResponseCode",
        GET_MEASUREMENTS,
        "GET_MEASUREMENTS",
    )?;
    let attributes = fixed_byte(
        r,
        "SPDM GET_MEASUREMENTS request: Param1 (attributes)",
        SIGNATURE_REQUESTED,
        "signature requested",
    )?;
    let operation = fixed_byte(
        r,
        "SPDM GET_MEASUREMENTS request: Param2 (operation)",
        ALL_MEASUREMENTS,
        "all measurement blocks",
    )?;
    let nonce = r.array("SPDM GET_MEASUREMENTS request: Nonce")?;
    let slot_id = r.u8("SPDM GET_MEASUREMENTS request: SlotIDParam")?;
    if slot_id > MAX_SLOT_ID {
        return Err(Error::Unsupported {
            field: "SPDM GET_MEASUREMENTS request: SlotIDParam",
            expected: format!("a slot ID from 0 to {MAX_SLOT_ID}"),
            found: slot_id.to_string(),
        });
    }
    Ok(Request {
        attributes,
        operation,
        nonce,
        slot_id,
    })
}

fn read_response(r: &mut Reader<'_>, request: &Request) -> Result<Response, Error> {
    fixed_byte(
        r,
        "SPDM MEASUREMENTS response: SPDMVersion",
        SPDM_VERSION_1_1,
        "SPDM 1.1",
    )?;
    fixed_byte(
        r,
        "SPDM MEASUREMENTS response: RequestResponseCode",
        MEASUREMENTS,
        "MEASUREMENTS",
    )?;
    let param1 = fixed_byte(
        r,
        "SPDM MEASUREMENTS response: Param1",
        0,
        "reserved when all blocks are requested",
    )?;
    let slot_id = r.u8("SPDM MEASUREMENTS response: Param2")?;
    if slot_id != request.slot_id {
        return Err(Error::Mismatch {
            what: "SPDM slot ID (MEASUREMENTS Param2 vs GET_MEASUREMENTS SlotIDParam)",
            expected: request.slot_id.to_string(),
            found: slot_id.to_string(),
        });
    }
    let count = r.u8("SPDM MEASUREMENTS response: NumberOfBlocks")?;
    if count == 0 {
        return Err(Error::Unsupported {
            field: "SPDM NumberOfBlocks",
            expected: "1 to 255 (all blocks were requested)".into(),
            found: "0".into(),
        });
    }
    let [l0, l1, l2] = r.array("SPDM MEASUREMENTS response: MeasurementRecordLength")?;
    let record_len = u32::from_le_bytes([l0, l1, l2, 0]);
    let record = r.sub(record_len, "SPDM measurement record")?;
    let blocks = read_blocks(record, count)?;
    let nonce = r.array("SPDM MEASUREMENTS response: Nonce")?;
    let opaque_len = r.u16_le("SPDM MEASUREMENTS response: OpaqueLength")?;
    if opaque_len > MAX_OPAQUE_LEN {
        return Err(Error::Unsupported {
            field: "SPDM OpaqueLength",
            expected: format!("at most {MAX_OPAQUE_LEN} bytes (SPDM 1.1)"),
            found: opaque_len.to_string(),
        });
    }
    let opaque = r.take(
        usize::from(opaque_len),
        "SPDM MEASUREMENTS response: OpaqueData",
    )?;
    let opaque = OpaqueData::parse(opaque)?;
    let signature = r.array("SPDM MEASUREMENTS response: Signature")?;
    Ok(Response {
        param1,
        slot_id,
        blocks,
        nonce,
        opaque,
        signature,
    })
}

/// Reads `count` blocks that must fill `record` exactly.
fn read_blocks(mut record: Reader<'_>, count: u8) -> Result<Vec<MeasurementBlock>, Error> {
    let total = record.remaining();
    let mut blocks: Vec<MeasurementBlock> = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        if record.remaining() == 0 {
            return Err(Error::Mismatch {
                what: "SPDM NumberOfBlocks (vs the blocks in MeasurementRecordLength)",
                expected: format!(
                    "{} (the blocks that fill MeasurementRecordLength {total})",
                    blocks.len()
                ),
                found: count.to_string(),
            });
        }
        let block = read_block(&mut record)?;
        if let Some(twin) = blocks.iter().position(|b| b.index == block.index) {
            return Err(Error::Unsupported {
                field: "SPDM measurement block index",
                expected: "each index at most once".into(),
                found: format!(
                    "index {} in blocks {} and {}",
                    block.index,
                    twin + 1,
                    blocks.len() + 1
                ),
            });
        }
        blocks.push(block);
    }
    if record.remaining() != 0 {
        return Err(Error::Mismatch {
            what: "SPDM MeasurementRecordLength (vs its NumberOfBlocks blocks)",
            expected: format!("{} bytes", total - record.remaining()),
            found: format!("{total} bytes"),
        });
    }
    Ok(blocks)
}

fn read_block(record: &mut Reader<'_>) -> Result<MeasurementBlock, Error> {
    let index = record.u8("SPDM measurement block: Index")?;
    if index == 0 || index == 0xFF {
        return Err(Error::Unsupported {
            field: "SPDM measurement block index",
            expected: "1 to 254 (0 and 255 are not block indexes)".into(),
            found: index.to_string(),
        });
    }
    fixed_byte(
        record,
        "SPDM measurement block: MeasurementSpecification",
        DMTF_SPECIFICATION,
        "DMTF",
    )?;
    let size = record.u16_le("SPDM measurement block: MeasurementSize")?;
    let mut m = record.sub(u32::from(size), "SPDM measurement block: Measurement")?;
    let value_type = m.u8("DMTF measurement: DMTFSpecMeasurementValueType")?;
    let value_size = m.u16_le("DMTF measurement: DMTFSpecMeasurementValueSize")?;
    if usize::from(size) != 3 + usize::from(value_size) {
        return Err(Error::Unsupported {
            field: "SPDM MeasurementSize",
            expected: format!(
                "3 + DMTFSpecMeasurementValueSize = {}",
                3 + usize::from(value_size)
            ),
            found: format!("{size} (block index {index})"),
        });
    }
    if value_type & RAW_BIT_STREAM != 0 {
        return Err(Error::Unsupported {
            field: "DMTF measurement representation",
            expected: "a digest (DMTFSpecMeasurementValueType bit 7 clear)".into(),
            found: format!("a raw bit stream, type {value_type:#04x} (block index {index})"),
        });
    }
    if value_type > 4 {
        return Err(Error::Unsupported {
            field: "DMTFSpecMeasurementValueType",
            expected: "0 to 4 (immutable ROM, mutable firmware, hardware configuration, firmware configuration, measurement manifest)".into(),
            found: format!("{value_type} (block index {index})"),
        });
    }
    if usize::from(value_size) != DIGEST_LEN {
        return Err(Error::Unsupported {
            field: "DMTF measurement digest size",
            expected: format!("{DIGEST_LEN} bytes (SHA-384)"),
            found: format!("{value_size} (block index {index})"),
        });
    }
    let digest = m.array("DMTF measurement: DMTFSpecMeasurementValue")?;
    m.finish("DMTF measurement")?;
    Ok(MeasurementBlock {
        index,
        value_type,
        digest,
    })
}
