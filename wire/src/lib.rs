//! The protocols kokon speaks between its parts.
//!
//! [`billing`] holds the JSON messages of the host's billing endpoints
//! (vouchers, channel status, close offers). [`kserve`] holds the KServe
//! Open Inference Protocol v2 messages that the client and the enclave
//! exchange inside the OHTTP envelope, and [`openai`] the OpenAI API's (chat
//! and legacy completions, streamed as Server-Sent Events, models, errors),
//! and [`bhttp_stream`] the Binary HTTP framing of a streamed answer.
//! The rest of this crate is the frame protocol between the host shim and its enclave:
//! the only code the host and the enclave share. Requests and responses
//! alternate on a connection (a Unix socket in development, vsock in a VM),
//! one response per request, in order. A frame is a 4-byte big-endian length, a 1-byte kind and a payload;
//! lengths are bounded before anything is allocated.
//! Frames encode and decode without I/O ([`Request::encode`],
//! [`Request::decode`] and the same for [`Response`]); the async `read` and
//! `write` are thin wrappers over them.
//!
//! Nothing in a frame is ever plaintext of a client: attestation requests
//! carry a nonce, inference requests carry OHTTP ciphertext, and error
//! messages are written by the enclave before (or without) decryption.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bhttp_stream;
pub mod billing;
pub mod kserve;
pub mod openai;
pub mod replay;
pub mod vm;

use kokon_bytes::Reader;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The host reuses an idle connection only within this time; the enclave
/// closes connections only after a much longer idle time
/// ([`ENCLAVE_IDLE_TIMEOUT`]), so a reused connection is never closed under a
/// request.
pub const HOST_IDLE_REUSE: std::time::Duration = std::time::Duration::from_secs(20);

/// The enclave closes a host connection left idle this long. The host stops
/// reusing its idle connections well before ([`HOST_IDLE_REUSE`]).
pub const ENCLAVE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Shortest and longest client nonce the enclave accepts in an attestation
/// request.
pub const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=64;

/// The length of the fresh nonce the client sends (within [`NONCE_LEN`]).
pub const CLIENT_NONCE_LEN: usize = 32;

/// The header of a sealed request that carries the client's send time (Unix
/// seconds), checked by the enclave's replay defence.
pub const SENT_AT_HEADER: &str = "kokon-sent-at";

/// The enclave refuses sealed requests whose [`SENT_AT_HEADER`] is older or
/// newer than this many seconds.
pub const FRESHNESS_WINDOW_SECS: i64 = 120;

/// Media types of Oblivious HTTP messages (RFC 9458 section 9), as they
/// travel between client, host and enclave.
pub mod media_type {
    /// An encapsulated request.
    pub const OHTTP_REQUEST: &str = "message/ohttp-req";
    /// An encapsulated response.
    pub const OHTTP_RESPONSE: &str = "message/ohttp-res";
    /// A chunked encapsulated request (draft-ietf-ohai-chunked-ohttp): its
    /// answer is streamed.
    pub const OHTTP_CHUNKED_REQUEST: &str = "message/ohttp-chunked-req";
    /// A chunked encapsulated response, relayed chunk by chunk.
    pub const OHTTP_CHUNKED_RESPONSE: &str = "message/ohttp-chunked-res";
}

/// Where Linux mounts configfs-tsm reports: the enclave's hardware evidence
/// source, which the host checks for before launching a hardware enclave.
pub const TSM_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// The SEV guest driver's device: the enclave's SEV-SNP evidence source on
/// kernels without configfs-tsm.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// The TDX guest driver's device: with the host's quoting service, the
/// enclave's TDX evidence source on kernels without configfs-tsm.
pub const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// The current time in Unix seconds (0 if the clock is before 1970): the
/// clock host, enclave and client stamp and check times with.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Largest payload accepted in a frame (16 MiB): the bound, on the
/// host-enclave link, on every request and answer. [`MAX_SEALED_REQUEST`]
/// and [`MAX_RESPONSE_BODY`] are derived from it.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Bytes of an inference frame's payload ahead of the encapsulated
/// request: the payment channel's id.
const CHANNEL_LEN: usize = 16;

/// The largest encapsulated (OHTTP) request one frame carries to the
/// enclave: no host may accept a larger request body.
pub const MAX_SEALED_REQUEST: usize = MAX_FRAME_LEN as usize - CHANNEL_LEN;

/// Room kept in a response frame for what wraps an answer's body: the
/// Binary HTTP status and fields (the receipt among them), the OHTTP
/// response nonce and tag, and the receipt copied for the host.
pub const RESPONSE_ENVELOPE: usize = 64 * 1024;

/// The largest answer body (for KServe, the JSON header and any binary
/// tensor data) the enclave sends: its sealed response still fits one
/// frame. The enclave answers a larger one with a sealed error instead.
pub const MAX_RESPONSE_BODY: usize = MAX_FRAME_LEN as usize - RESPONSE_ENVELOPE;

/// What the host asks the enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Produce an attestation bundle binding this client nonce.
    Attest {
        /// The client's nonce.
        nonce: Vec<u8>,
    },
    /// Open, serve and seal one OHTTP-encapsulated request.
    Ohttp {
        /// The payment channel the host admitted the request for, after
        /// checking its payer proof (0: not billed). The enclave bills
        /// exactly this channel.
        channel: u128,
        /// The encapsulated request.
        request: Vec<u8>,
    },
    /// Report readiness.
    Health,
    /// Open a chunked OHTTP request and stream its answer: the enclave
    /// answers [`Response::StreamStart`] (or a refusal), waits for
    /// [`Request::Proceed`], then sends [`Response::StreamChunk`]s as they
    /// are sealed and one [`Response::StreamEnd`]. The host may send
    /// [`Request::Cancel`] at any time after `Proceed`; the stream then ends
    /// early, with a receipt for what was generated. Closing the connection
    /// instead of sending `Proceed` drops the request unbilled.
    OhttpStream {
        /// The payment channel the host admitted it for (0: not billed).
        channel: u128,
        /// The chunked encapsulated request.
        request: Vec<u8>,
    },
    /// Go ahead with the stream just opened: the host reserved its
    /// [`Response::StreamStart`] charge.
    Proceed,
    /// Stop the stream under way (the client went away).
    Cancel,
    /// Report the enclave's inference metrics ([`Response::Metrics`]).
    Metrics,
}

/// What the enclave answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An attestation bundle (JSON).
    Bundle(Vec<u8>),
    /// An OHTTP-encapsulated response.
    Ohttp(Vec<u8>),
    /// An OHTTP-encapsulated response to a request billed to a payment
    /// channel, with a copy of its signed receipt (JSON) for the host, which
    /// is the payee and needs the amount; the receipt names the request and
    /// response only by digest.
    Billed {
        /// The sealed response, for the client.
        sealed: Vec<u8>,
        /// The signed receipt (JSON), for the host.
        receipt: Vec<u8>,
    },
    /// Health report (JSON).
    Health(Vec<u8>),
    /// A stream was opened: the most it can be charged (nanotons), which
    /// the host reserves before answering [`Request::Proceed`].
    StreamStart {
        /// The charge if every allowed token is generated.
        max_charge: u128,
    },
    /// The next sealed chunks of a streamed response, for the client.
    StreamChunk(Vec<u8>),
    /// The end of a stream: the final sealed chunk (for the client, it
    /// carries the receipt in its trailer) and a copy of the signed receipt
    /// (JSON) for the host.
    StreamEnd {
        /// The last sealed bytes of the response.
        sealed: Vec<u8>,
        /// The signed receipt.
        receipt: Vec<u8>,
    },
    /// The enclave's inference metrics: OpenMetrics text (sizes and
    /// timings of its own work only).
    Metrics(String),
    /// The request was refused; the message is safe to show the host.
    Rejected(String),
    /// The enclave failed; the message is safe to show the host.
    Failed(String),
}

/// A framing error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer closed the connection before a whole frame arrived.
    #[error("connection closed before a complete frame")]
    Closed,
    /// The frame announced a payload over [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(u32),
    /// The frame kind is unknown.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The payload is not valid for its kind.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

const REQ_ATTEST: u8 = 1;
const REQ_OHTTP: u8 = 2;
const REQ_HEALTH: u8 = 3;
const REQ_OHTTP_STREAM: u8 = 4;
const REQ_PROCEED: u8 = 5;
const REQ_CANCEL: u8 = 6;
const REQ_METRICS: u8 = 7;
const RESP_BUNDLE: u8 = 0x81;
const RESP_OHTTP: u8 = 0x82;
const RESP_HEALTH: u8 = 0x83;
const RESP_BILLED: u8 = 0x84;
const RESP_STREAM_START: u8 = 0x85;
const RESP_STREAM_CHUNK: u8 = 0x86;
const RESP_STREAM_END: u8 = 0x87;
const RESP_METRICS: u8 = 0x88;
const RESP_REJECTED: u8 = 0xe0;
const RESP_FAILED: u8 = 0xe1;

/// Length of a frame's head: the 4-byte big-endian payload length and the
/// 1-byte kind.
pub const FRAME_HEAD_LEN: usize = 5;

/// One frame of `kind` whose payload is `parts`, concatenated.
fn encode_frame(kind: u8, parts: &[&[u8]]) -> Result<Vec<u8>, WireError> {
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|l| *l <= MAX_FRAME_LEN)
        .ok_or(WireError::TooLarge(u32::MAX))?;
    let mut frame = Vec::with_capacity(FRAME_HEAD_LEN + payload_len);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(kind);
    for part in parts {
        frame.extend_from_slice(part);
    }
    Ok(frame)
}

/// Reads a frame head: the payload length it announces, checked against
/// [`MAX_FRAME_LEN`] once the whole head is read, and the frame's kind.
/// [`WireError::Closed`] without a whole head.
fn decode_head(r: &mut Reader<'_>) -> Result<(usize, u8), WireError> {
    let len = r.u32_be("frame length").map_err(|_| WireError::Closed)?;
    let kind = r.u8("frame kind").map_err(|_| WireError::Closed)?;
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge(len));
    }
    let len = usize::try_from(len).map_err(|_| WireError::TooLarge(len))?;
    Ok((len, kind))
}

/// Splits the frame at the start of `bytes` into its kind, its payload and
/// the number of bytes it takes. Fails as reading a stream holding exactly
/// `bytes` would: [`WireError::Closed`] without a whole frame.
fn decode_frame(bytes: &[u8]) -> Result<(u8, &[u8], usize), WireError> {
    let mut r = Reader::new(bytes);
    let (len, kind) = decode_head(&mut r)?;
    let payload = r
        .take(len, "frame payload")
        .map_err(|_| WireError::Closed)?;
    Ok((kind, payload, r.offset()))
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), WireError> {
    // One write per frame, so the reader wakes once.
    w.write_all(frame).await?;
    w.flush().await?;
    Ok(())
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u8, Vec<u8>), WireError> {
    let mut head = [0u8; FRAME_HEAD_LEN];
    r.read_exact(&mut head).await.map_err(eof_is_closed)?;
    let (len, kind) = decode_head(&mut Reader::new(&head))?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(eof_is_closed)?;
    Ok((kind, payload))
}

fn eof_is_closed(e: std::io::Error) -> WireError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::Closed
    } else {
        WireError::Io(e)
    }
}

impl Request {
    /// The request as one frame.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        match self {
            Request::Attest { nonce } => encode_frame(REQ_ATTEST, &[nonce]),
            Request::Ohttp { channel, request } => {
                encode_frame(REQ_OHTTP, &[&channel.to_be_bytes(), request])
            }
            Request::OhttpStream { channel, request } => {
                encode_frame(REQ_OHTTP_STREAM, &[&channel.to_be_bytes(), request])
            }
            Request::Health => encode_frame(REQ_HEALTH, &[]),
            Request::Proceed => encode_frame(REQ_PROCEED, &[]),
            Request::Cancel => encode_frame(REQ_CANCEL, &[]),
            Request::Metrics => encode_frame(REQ_METRICS, &[]),
        }
    }

    /// Decodes the request frame at the start of `bytes`; returns it and the
    /// number of bytes it took. Fails as [`Request::read`] would on a stream
    /// holding exactly `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), WireError> {
        let (kind, payload, used) = decode_frame(bytes)?;
        Ok((Self::from_frame(kind, payload.to_vec())?, used))
    }

    fn from_frame(kind: u8, mut bytes: Vec<u8>) -> Result<Self, WireError> {
        match kind {
            REQ_ATTEST => Ok(Request::Attest { nonce: bytes }),
            REQ_OHTTP | REQ_OHTTP_STREAM => {
                let what = if kind == REQ_OHTTP {
                    "ohttp"
                } else {
                    "ohttp stream"
                };
                let mut r = Reader::new(&bytes);
                let channel = r
                    .u128_be("channel")
                    .map_err(|_| WireError::Malformed(what))?;
                // The request is the rest of the payload, kept in place.
                bytes.drain(..r.offset());
                Ok(if kind == REQ_OHTTP {
                    Request::Ohttp {
                        channel,
                        request: bytes,
                    }
                } else {
                    Request::OhttpStream {
                        channel,
                        request: bytes,
                    }
                })
            }
            REQ_HEALTH => Ok(Request::Health),
            REQ_PROCEED => Ok(Request::Proceed),
            REQ_CANCEL => Ok(Request::Cancel),
            REQ_METRICS => Ok(Request::Metrics),
            kind => Err(WireError::UnknownKind(kind)),
        }
    }

    /// Writes the request as one frame.
    pub async fn write<W: AsyncWrite + Unpin>(&self, w: &mut W) -> Result<(), WireError> {
        write_frame(w, &self.encode()?).await
    }

    /// Reads one request frame.
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Self, WireError> {
        let (kind, payload) = read_frame(r).await?;
        Self::from_frame(kind, payload)
    }
}

impl Response {
    /// The response as one frame.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        match self {
            Response::Bundle(b) => encode_frame(RESP_BUNDLE, &[b]),
            Response::Ohttp(b) => encode_frame(RESP_OHTTP, &[b]),
            Response::Health(b) => encode_frame(RESP_HEALTH, &[b]),
            Response::Billed { sealed, receipt } => {
                let len =
                    u32::try_from(sealed.len()).map_err(|_| WireError::Malformed("billed"))?;
                encode_frame(RESP_BILLED, &[&len.to_be_bytes(), sealed, receipt])
            }
            Response::StreamStart { max_charge } => {
                encode_frame(RESP_STREAM_START, &[&max_charge.to_be_bytes()])
            }
            Response::StreamChunk(b) => encode_frame(RESP_STREAM_CHUNK, &[b]),
            Response::StreamEnd { sealed, receipt } => {
                let len =
                    u32::try_from(sealed.len()).map_err(|_| WireError::Malformed("stream end"))?;
                encode_frame(RESP_STREAM_END, &[&len.to_be_bytes(), sealed, receipt])
            }
            Response::Metrics(m) => encode_frame(RESP_METRICS, &[m.as_bytes()]),
            Response::Rejected(m) => encode_frame(RESP_REJECTED, &[m.as_bytes()]),
            Response::Failed(m) => encode_frame(RESP_FAILED, &[m.as_bytes()]),
        }
    }

    /// Decodes the response frame at the start of `bytes`; returns it and
    /// the number of bytes it took. Fails as [`Response::read`] would on a
    /// stream holding exactly `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), WireError> {
        let (kind, payload, used) = decode_frame(bytes)?;
        Ok((Self::from_frame(kind, payload.to_vec())?, used))
    }

    fn from_frame(kind: u8, b: Vec<u8>) -> Result<Self, WireError> {
        let text = |b: Vec<u8>, what| String::from_utf8(b).map_err(|_| WireError::Malformed(what));
        match kind {
            RESP_BUNDLE => Ok(Response::Bundle(b)),
            RESP_OHTTP => Ok(Response::Ohttp(b)),
            RESP_HEALTH => Ok(Response::Health(b)),
            RESP_BILLED => {
                let (sealed, receipt) = sealed_and_receipt(&b, "billed")?;
                Ok(Response::Billed { sealed, receipt })
            }
            RESP_STREAM_START => {
                let mut r = Reader::new(&b);
                let max_charge = r
                    .u128_be("max charge")
                    .map_err(|_| WireError::Malformed("stream start"))?;
                if !r.rest().is_empty() {
                    return Err(WireError::Malformed("stream start"));
                }
                Ok(Response::StreamStart { max_charge })
            }
            RESP_STREAM_CHUNK => Ok(Response::StreamChunk(b)),
            RESP_STREAM_END => {
                let (sealed, receipt) = sealed_and_receipt(&b, "stream end")?;
                Ok(Response::StreamEnd { sealed, receipt })
            }
            RESP_METRICS => Ok(Response::Metrics(text(b, "metrics")?)),
            RESP_REJECTED => Ok(Response::Rejected(text(b, "rejected")?)),
            RESP_FAILED => Ok(Response::Failed(text(b, "failed")?)),
            kind => Err(WireError::UnknownKind(kind)),
        }
    }

    /// Writes the response as one frame.
    pub async fn write<W: AsyncWrite + Unpin>(&self, w: &mut W) -> Result<(), WireError> {
        write_frame(w, &self.encode()?).await
    }

    /// Reads one response frame.
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Self, WireError> {
        let (kind, payload) = read_frame(r).await?;
        Self::from_frame(kind, payload)
    }
}

/// A payload of a 4-byte length, that many sealed bytes, and a receipt.
fn sealed_and_receipt(b: &[u8], what: &'static str) -> Result<(Vec<u8>, Vec<u8>), WireError> {
    let malformed = |_| WireError::Malformed(what);
    let mut r = Reader::new(b);
    let len = r.u32_be("sealed response length").map_err(malformed)?;
    let sealed = r.sub(len, "sealed response").map_err(malformed)?.rest();
    Ok((sealed.to_vec(), r.rest().to_vec()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        for req in [
            Request::Attest { nonce: vec![1; 32] },
            Request::Ohttp {
                channel: 0,
                request: vec![9; 1000],
            },
            Request::Ohttp {
                channel: u128::MAX,
                request: vec![],
            },
            Request::Health,
            Request::OhttpStream {
                channel: 5,
                request: vec![7; 70],
            },
            Request::Proceed,
            Request::Cancel,
            Request::Metrics,
        ] {
            let mut buf = Vec::new();
            req.write(&mut buf).await.unwrap();
            assert_eq!(Request::read(&mut buf.as_slice()).await.unwrap(), req);
        }
        for resp in [
            Response::Bundle(vec![1]),
            Response::Ohttp(vec![2]),
            Response::Billed {
                sealed: vec![3, 4],
                receipt: b"{}".to_vec(),
            },
            Response::Health(vec![]),
            Response::Metrics("# EOF\n".into()),
            Response::Rejected("no".into()),
            Response::Failed("x".into()),
            Response::StreamStart {
                max_charge: u128::MAX - 1,
            },
            Response::StreamChunk(vec![1; 300]),
            Response::StreamEnd {
                sealed: vec![5, 6],
                receipt: b"{\"r\":1}".to_vec(),
            },
        ] {
            let mut buf = Vec::new();
            resp.write(&mut buf).await.unwrap();
            assert_eq!(Response::read(&mut buf.as_slice()).await.unwrap(), resp);
        }
    }

    #[test]
    fn the_largest_sealed_request_and_answer_fit_a_frame() {
        let request = |len: usize| Request::Ohttp {
            channel: u128::MAX,
            request: vec![7; len],
        };
        let frame = request(MAX_SEALED_REQUEST).encode().unwrap();
        assert_eq!(frame.len(), FRAME_HEAD_LEN + MAX_FRAME_LEN as usize);
        assert_eq!(
            Request::decode(&frame).unwrap().0,
            request(MAX_SEALED_REQUEST)
        );
        assert!(matches!(
            request(MAX_SEALED_REQUEST + 1).encode(),
            Err(WireError::TooLarge(_))
        ));
        // An answer body at the limit, with room for its envelope.
        let billed = Response::Billed {
            sealed: vec![0; MAX_RESPONSE_BODY + RESPONSE_ENVELOPE / 2],
            receipt: vec![0; 4096],
        };
        assert!(billed.encode().is_ok());
    }

    #[tokio::test]
    async fn oversized_truncated_and_unknown_frames_are_errors() {
        let huge = [0xff, 0xff, 0xff, 0xff, REQ_OHTTP];
        assert!(matches!(
            Request::read(&mut huge.as_slice()).await,
            Err(WireError::TooLarge(_))
        ));
        let short = [0, 0, 0, 10, REQ_OHTTP, 1, 2];
        assert!(matches!(
            Request::read(&mut short.as_slice()).await,
            Err(WireError::Closed)
        ));
        let no_channel = [0, 0, 0, 3, REQ_OHTTP, 1, 2, 3];
        assert!(matches!(
            Request::read(&mut no_channel.as_slice()).await,
            Err(WireError::Malformed("ohttp"))
        ));
        let unknown = [0, 0, 0, 0, 0x42];
        assert!(matches!(
            Request::read(&mut unknown.as_slice()).await,
            Err(WireError::UnknownKind(0x42))
        ));
        assert!(matches!(
            Request::read(&mut [].as_slice()).await,
            Err(WireError::Closed)
        ));
    }

    #[test]
    fn a_partial_head_is_closed_and_a_billed_length_is_bounded() {
        // Four bytes announcing too much are still only part of a head.
        assert!(matches!(
            Request::decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(WireError::Closed)
        ));
        let billed = |payload: &[u8]| {
            let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
            frame.push(RESP_BILLED);
            frame.extend_from_slice(payload);
            Response::decode(&frame).map(|(r, _)| r)
        };
        assert!(matches!(
            billed(&[0, 0, 0]),
            Err(WireError::Malformed("billed"))
        ));
        assert!(matches!(
            billed(&[0, 0, 0, 2, 1]),
            Err(WireError::Malformed("billed"))
        ));
        assert!(matches!(
            billed(&[0xff, 0xff, 0xff, 0xff, 1]),
            Err(WireError::Malformed("billed"))
        ));
        let start = |payload: &[u8]| {
            let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
            frame.push(RESP_STREAM_START);
            frame.extend_from_slice(payload);
            Response::decode(&frame).map(|(r, _)| r)
        };
        assert!(matches!(
            start(&[1; 15]),
            Err(WireError::Malformed("stream start"))
        ));
        assert!(matches!(
            start(&[1; 17]),
            Err(WireError::Malformed("stream start"))
        ));
        assert_eq!(
            billed(&[0, 0, 0, 1, 7]).unwrap(),
            Response::Billed {
                sealed: vec![7],
                receipt: vec![]
            }
        );
    }

    #[tokio::test]
    async fn the_pure_codec_is_what_travels() {
        let req = Request::Ohttp {
            channel: 7,
            request: vec![1, 2, 3],
        };
        let mut buf = Vec::new();
        req.write(&mut buf).await.unwrap();
        assert_eq!(req.encode().unwrap(), buf);
        buf.extend_from_slice(&[9, 9]);
        assert_eq!(Request::decode(&buf).unwrap(), (req, buf.len() - 2));
        let resp = Response::Billed {
            sealed: vec![3],
            receipt: b"{}".to_vec(),
        };
        let mut buf = Vec::new();
        resp.write(&mut buf).await.unwrap();
        assert_eq!(resp.encode().unwrap(), buf);
        assert_eq!(Response::decode(&buf).unwrap(), (resp, buf.len()));
        for bad in [
            &[0xff, 0xff, 0xff, 0xff, REQ_OHTTP][..],
            &[0, 0, 0, 10, REQ_OHTTP, 1, 2],
            &[0, 0, 0, 3, REQ_OHTTP, 1, 2, 3],
            &[0, 0, 0, 0, 0x42],
            &[],
        ] {
            assert_eq!(
                Request::decode(bad).unwrap_err().to_string(),
                Request::read(&mut &bad[..]).await.unwrap_err().to_string()
            );
        }
    }
}
