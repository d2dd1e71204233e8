//! The TDREPORT and the message protocol of Intel's Quote Generation Service
//! (QGS), for TDX guests whose kernel has no configfs-tsm (Linux < 6.7).
//!
//! There the guest gets a TDREPORT (MAC'd by the CPU, verifiable only on the
//! same machine) from `/dev/tdx_guest` and sends it to the QGS on the host,
//! which has the quoting enclave sign it into a quote. Layouts from Intel's
//! `qgs_msg_lib` (SGX DCAP sources, `qgs_msg_lib.h`) and the TDX module ABI
//! (`TDREPORT_STRUCT`, `REPORTMACSTRUCT`):
//!
//! - a frame is a big-endian `u32` length followed by the message;
//! - a message starts with `{ major u16, minor u16, type u32, size u32,
//!   error_code u32 }` (little-endian; `size` counts the whole message);
//! - `GET_QUOTE_REQ` (type 0) adds `{ report_size u32, id_list_size u32 }`,
//!   then the TDREPORT and the (empty) attestation key ID list;
//! - `GET_QUOTE_RESP` (type 1) adds `{ selected_id_size u32, quote_size u32 }`,
//!   then the selected key ID and the quote.
//!
//! The response comes from the untrusted host: it is parsed with bounds, and
//! what it holds is a quote the client verifies like any other.

use kokon_bytes::Reader;

use crate::Error;

/// Size of a TDREPORT (`TDREPORT_STRUCT`).
pub const TD_REPORT_LEN: usize = 1024;
/// Offset of REPORTDATA in a TDREPORT: inside `REPORTMACSTRUCT`, after the
/// report type (4), reserved (12), CPUSVN (16) and two SHA-384 hashes (96).
pub const TD_REPORT_DATA_OFFSET: usize = 128;
/// The QGS protocol's major version.
pub const MAJOR_VERSION: u16 = 1;
/// Message type of a quote request.
pub const GET_QUOTE_REQ: u32 = 0;
/// Message type of a quote response.
pub const GET_QUOTE_RESP: u32 = 1;
/// Size of the message header.
const HEADER_LEN: usize = 16;
/// Size of the header plus the two size fields of a request or response.
const BODY_START: usize = HEADER_LEN + 8;
/// Largest response message accepted (quotes are a few KiB).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// The REPORTDATA a TDREPORT carries.
pub fn td_report_data(td_report: &[u8]) -> Result<[u8; 64], Error> {
    if td_report.len() != TD_REPORT_LEN {
        return Err(Error::Unsupported {
            field: "TDREPORT length",
            expected: TD_REPORT_LEN.to_string(),
            found: td_report.len().to_string(),
        });
    }
    let mut r = Reader::new(td_report);
    r.take(TD_REPORT_DATA_OFFSET, "TDREPORT REPORTMACSTRUCT head")?;
    Ok(r.array("TDREPORT REPORTDATA")?)
}

/// A frame's length prefix and message header, for a message of `size` bytes.
fn frame_start(kind: u32, size: u32, error_code: u32) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + size as usize);
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&MAJOR_VERSION.to_le_bytes());
    frame.extend_from_slice(&0u16.to_le_bytes());
    frame.extend_from_slice(&kind.to_le_bytes());
    frame.extend_from_slice(&size.to_le_bytes());
    frame.extend_from_slice(&error_code.to_le_bytes());
    frame
}

/// The framed `GET_QUOTE_REQ` for a TDREPORT, ready to write to the QGS.
pub fn get_quote_request(td_report: &[u8; TD_REPORT_LEN]) -> Vec<u8> {
    // Both sizes are small constants: the casts cannot truncate.
    let size = (BODY_START + TD_REPORT_LEN) as u32;
    let mut frame = frame_start(GET_QUOTE_REQ, size, 0);
    frame.extend_from_slice(&(TD_REPORT_LEN as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(td_report);
    frame
}

/// The length a frame's big-endian prefix announces, checked against
/// [`MAX_MESSAGE_LEN`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(len) if len <= MAX_MESSAGE_LEN => Ok(len),
        _ => Err(Error::TooLarge {
            what: "QGS message",
        }),
    }
}

/// A parsed QGS message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol major version.
    pub major: u16,
    /// Protocol minor version.
    pub minor: u16,
    /// Message type.
    pub kind: u32,
    /// Size of the whole message.
    pub size: u32,
    /// The service's error code (responses only; 0 is success).
    pub error_code: u32,
}

/// A parsed `GET_QUOTE_REQ` (what a QGS receives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRequest {
    /// The TDREPORT to be quoted.
    pub td_report: Vec<u8>,
    /// The attestation key IDs the guest accepts (empty: any).
    pub id_list: Vec<u8>,
}

fn header(r: &mut Reader<'_>, message_len: usize, kind: u32) -> Result<Header, Error> {
    let h = Header {
        major: r.u16_le("QGS header major version")?,
        minor: r.u16_le("QGS header minor version")?,
        kind: r.u32_le("QGS header type")?,
        size: r.u32_le("QGS header size")?,
        error_code: r.u32_le("QGS header error code")?,
    };
    if h.major != MAJOR_VERSION {
        return Err(Error::Unsupported {
            field: "QGS protocol major version",
            expected: MAJOR_VERSION.to_string(),
            found: h.major.to_string(),
        });
    }
    if h.kind != kind {
        return Err(Error::Unsupported {
            field: "QGS message type",
            expected: kind.to_string(),
            found: h.kind.to_string(),
        });
    }
    if usize::try_from(h.size).ok() != Some(message_len) {
        return Err(Error::Mismatch {
            what: "QGS message size",
            expected: message_len.to_string(),
            found: h.size.to_string(),
        });
    }
    Ok(h)
}

/// A length field as `usize` (one that does not fit can never be satisfied).
fn as_len(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}

/// Parses a `GET_QUOTE_RESP` message (without its frame prefix) and returns
/// the quote. A non-zero error code is an error naming it.
pub fn parse_get_quote_response(message: &[u8]) -> Result<Vec<u8>, Error> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(Error::TooLarge {
            what: "QGS message",
        });
    }
    let mut r = Reader::new(message);
    let h = header(&mut r, message.len(), GET_QUOTE_RESP)?;
    if h.error_code != 0 {
        return Err(Error::Unsupported {
            field: "QGS error code",
            expected: "0 (success)".into(),
            found: format!("{:#010x}", h.error_code),
        });
    }
    let id_len = r.u32_le("QGS selected key ID size")?;
    let quote_len = r.u32_le("QGS quote size")?;
    r.take(as_len(id_len), "QGS selected key ID")?;
    let quote = r.take(as_len(quote_len), "QGS quote")?.to_vec();
    r.finish("QGS quote response")?;
    if quote.is_empty() {
        return Err(Error::Unsupported {
            field: "QGS quote size",
            expected: "a quote".into(),
            found: "0".into(),
        });
    }
    Ok(quote)
}

/// Parses a `GET_QUOTE_REQ` message (without its frame prefix): for quoting
/// services written in Rust, and for kokon's tests of the guest side.
pub fn parse_get_quote_request(message: &[u8]) -> Result<QuoteRequest, Error> {
    let mut r = Reader::new(message);
    header(&mut r, message.len(), GET_QUOTE_REQ)?;
    let report_len = r.u32_le("QGS report size")?;
    let id_list_len = r.u32_le("QGS key ID list size")?;
    let td_report = r.take(as_len(report_len), "QGS TDREPORT")?.to_vec();
    let id_list = r.take(as_len(id_list_len), "QGS key ID list")?.to_vec();
    r.finish("QGS quote request")?;
    td_report_data(&td_report)?;
    Ok(QuoteRequest { td_report, id_list })
}

/// Builds a `GET_QUOTE_RESP` frame (prefix included) with `error_code` and
/// `quote`: the QGS side of the protocol, for tests and quoting services.
pub fn get_quote_response(error_code: u32, quote: &[u8]) -> Result<Vec<u8>, Error> {
    let len = BODY_START
        .checked_add(quote.len())
        .filter(|len| *len <= MAX_MESSAGE_LEN)
        .ok_or(Error::TooLarge {
            what: "QGS message",
        })?;
    let size = u32::try_from(len).map_err(|_| Error::TooLarge {
        what: "QGS message",
    })?;
    let quote_len =
        u32::try_from(quote.len()).map_err(|_| Error::TooLarge { what: "QGS quote" })?;
    let mut frame = frame_start(GET_QUOTE_RESP, size, error_code);
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(&quote_len.to_le_bytes());
    frame.extend_from_slice(quote);
    Ok(frame)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn report(data: u8) -> [u8; TD_REPORT_LEN] {
        let mut r = [0u8; TD_REPORT_LEN];
        r[TD_REPORT_DATA_OFFSET..TD_REPORT_DATA_OFFSET + 64].fill(data);
        r
    }

    #[test]
    fn a_request_round_trips_and_carries_the_report_data() {
        let frame = get_quote_request(&report(0x5a));
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(len, 16 + 8 + 1024);
        let req = parse_get_quote_request(&frame[4..]).unwrap();
        assert_eq!(td_report_data(&req.td_report).unwrap(), [0x5a; 64]);
        assert!(req.id_list.is_empty());
    }

    #[test]
    fn a_response_round_trips() {
        let frame = get_quote_response(0, b"quote bytes").unwrap();
        assert_eq!(
            parse_get_quote_response(&frame[4..]).unwrap(),
            b"quote bytes"
        );
    }

    #[test]
    fn a_response_with_a_selected_key_id_skips_it() {
        let mut msg = get_quote_response(0, b"q").unwrap()[4..].to_vec();
        msg[16..20].copy_from_slice(&2u32.to_le_bytes());
        msg.splice(24..24, [7, 7]);
        let size = msg.len() as u32;
        msg[8..12].copy_from_slice(&size.to_le_bytes());
        assert_eq!(parse_get_quote_response(&msg).unwrap(), b"q");
    }

    #[test]
    fn every_check_of_a_response_trips() {
        let good = get_quote_response(0, b"quote").unwrap()[4..].to_vec();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "major",
                {
                    let mut m = good.clone();
                    m[0] = 2;
                    m
                },
                "major version: expected 1, found 2",
            ),
            (
                "type",
                {
                    let mut m = good.clone();
                    m[4] = 0;
                    m
                },
                "message type: expected 1, found 0",
            ),
            (
                "size",
                {
                    let mut m = good.clone();
                    m[8] += 1;
                    m
                },
                "message size",
            ),
            (
                "error",
                {
                    let mut m = good.clone();
                    m[12] = 0x01;
                    m[14] = 0x01;
                    m
                },
                "QGS error code: expected 0 (success), found 0x00010001",
            ),
            (
                "quote length",
                {
                    let mut m = good.clone();
                    m[20] += 1;
                    m
                },
                "QGS quote",
            ),
            (
                "id length",
                {
                    let mut m = good.clone();
                    m[16] = 9;
                    m
                },
                "QGS",
            ),
            (
                "trailing",
                {
                    let mut m = good.clone();
                    m.push(0);
                    let s = m.len() as u32;
                    m[8..12].copy_from_slice(&s.to_le_bytes());
                    m
                },
                "trailing",
            ),
            (
                "empty quote",
                get_quote_response(0, b"").unwrap()[4..].to_vec(),
                "QGS quote size",
            ),
        ];
        for (name, msg, want) in cases {
            let err = parse_get_quote_response(&msg).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        for cut in 0..good.len() {
            assert!(parse_get_quote_response(&good[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_reading() {
        assert!(frame_len((MAX_MESSAGE_LEN as u32 + 1).to_be_bytes()).is_err());
        assert!(frame_len(u32::MAX.to_be_bytes()).is_err());
        assert_eq!(frame_len(100u32.to_be_bytes()).unwrap(), 100);
    }

    #[test]
    fn a_td_report_of_the_wrong_size_is_refused() {
        let err = td_report_data(&[0; 100]).unwrap_err().to_string();
        assert!(
            err.contains("TDREPORT length: expected 1024, found 100"),
            "{err}"
        );
    }
}
