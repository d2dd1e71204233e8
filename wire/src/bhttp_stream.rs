//! Binary HTTP responses of indeterminate length (RFC 9292 section 3.2), as
//! a stream: the head (status and header fields) first, then the content in
//! chunks as it is produced, then the trailer fields, which is where a
//! streamed answer's receipt goes (it exists only once the answer is done).
//!
//! The encoder writes each part on its own; the decoder takes bytes in any
//! split as they arrive and returns each part once it is complete. Sizes are
//! bounded before anything is buffered, and malformed input is an error,
//! never a panic.

use kokon_bytes::{peek_varint as get_varint, put_varint};
use thiserror::Error;

/// The framing indicator of an indeterminate-length response.
const FRAMING_RESPONSE: u64 = 3;
/// Most bytes of one field section (head or trailer).
pub const MAX_FIELD_SECTION: usize = 64 * 1024;
/// Most bytes of one content chunk.
pub const MAX_CHUNK: usize = 1 << 20;

/// Why a streamed response could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The message is not a well-formed indeterminate-length response.
    #[error("streamed Binary HTTP response: {0}")]
    Malformed(String),
    /// A part exceeds its bound.
    #[error("streamed Binary HTTP response: {what} of {found} bytes exceeds {limit}")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its size.
        found: u64,
        /// The bound.
        limit: usize,
    },
    /// The stream ended before the trailer was complete.
    #[error("streamed Binary HTTP response ended early (in the {0})")]
    Truncated(&'static str),
}

fn put_fields(out: &mut Vec<u8>, fields: &[(&str, &[u8])]) {
    for (name, value) in fields {
        put_varint(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }
    put_varint(out, 0);
}

/// The head of a streamed response: framing indicator, status and header
/// fields (names lower-case, as HTTP/2 and BHTTP want them).
pub fn response_head(status: u16, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, FRAMING_RESPONSE);
    put_varint(&mut out, u64::from(status));
    put_fields(&mut out, headers);
    out
}

/// One content chunk (nothing for empty content: a zero length would end it).
pub fn content_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    if !data.is_empty() {
        put_varint(&mut out, data.len() as u64);
        out.extend_from_slice(data);
    }
    out
}

/// The end of the content and the trailer fields.
pub fn response_end(trailers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0];
    put_fields(&mut out, trailers);
    out
}

/// Header or trailer fields: name and value.
pub type Fields = Vec<(String, Vec<u8>)>;

/// A complete part of a streamed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The status and header fields.
    Head {
        /// The status code.
        status: u16,
        /// The header fields.
        headers: Fields,
    },
    /// A content chunk.
    Content(Vec<u8>),
    /// The trailer fields: the response is complete.
    Trailers(Fields),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Framing,
    Status,
    Head,
    Content,
    Trailer,
    Done,
}

/// Decodes a streamed response as its bytes arrive.
#[derive(Debug)]
pub struct ResponseDecoder {
    state: State,
    pending: Vec<u8>,
    status: u16,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        Self {
            state: State::Framing,
            pending: Vec::new(),
            status: 0,
        }
    }
}

/// A field section at the start of `bytes`: the fields and the bytes it
/// took, or `None` when incomplete.
fn field_section(bytes: &[u8], what: &'static str) -> Result<Option<(Fields, usize)>, StreamError> {
    let bounded = |found: u64| match found > MAX_FIELD_SECTION as u64 {
        true => Err(StreamError::TooLarge {
            what,
            found,
            limit: MAX_FIELD_SECTION,
        }),
        false => Ok(()),
    };
    let mut at = 0;
    let mut fields = Vec::new();
    loop {
        bounded(at as u64)?;
        let Some((name_len, used)) = get_varint(bytes.get(at..).unwrap_or_default()) else {
            return Ok(None);
        };
        at += used;
        if name_len == 0 {
            return Ok(Some((fields, at)));
        }
        bounded(name_len)?;
        let Some(name) = bytes.get(at..at + name_len as usize) else {
            return Ok(None);
        };
        let name = std::str::from_utf8(name)
            .map_err(|_| StreamError::Malformed(format!("a {what} field name is not UTF-8")))?
            .to_string();
        at += name_len as usize;
        let Some((value_len, used)) = get_varint(bytes.get(at..).unwrap_or_default()) else {
            return Ok(None);
        };
        at += used;
        bounded(value_len)?;
        let Some(value) = bytes.get(at..at + value_len as usize) else {
            return Ok(None);
        };
        at += value_len as usize;
        fields.push((name, value.to_vec()));
    }
}

impl ResponseDecoder {
    /// Feeds bytes; returns every part they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Part>, StreamError> {
        self.pending.extend_from_slice(bytes);
        let mut parts = Vec::new();
        loop {
            match self.state {
                State::Framing | State::Status => {
                    let Some((value, used)) = get_varint(&self.pending) else {
                        return Ok(parts);
                    };
                    if self.state == State::Framing {
                        if value != FRAMING_RESPONSE {
                            return Err(StreamError::Malformed(format!(
                                "framing indicator {value}, expected {FRAMING_RESPONSE} (an indeterminate-length response)"
                            )));
                        }
                        self.state = State::Status;
                    } else {
                        if !(200..=599).contains(&value) {
                            return Err(StreamError::Malformed(format!(
                                "status {value}: expected a final status 200..599"
                            )));
                        }
                        self.status = value as u16;
                        self.state = State::Head;
                    }
                    self.pending.drain(..used);
                }
                State::Head | State::Trailer => {
                    let what = if self.state == State::Head {
                        "header section"
                    } else {
                        "trailer section"
                    };
                    let Some((fields, used)) = field_section(&self.pending, what)? else {
                        return Ok(parts);
                    };
                    self.pending.drain(..used);
                    if self.state == State::Head {
                        parts.push(Part::Head {
                            status: self.status,
                            headers: fields,
                        });
                        self.state = State::Content;
                    } else {
                        parts.push(Part::Trailers(fields));
                        self.state = State::Done;
                    }
                }
                State::Content => {
                    let Some((len, used)) = get_varint(&self.pending) else {
                        return Ok(parts);
                    };
                    if len == 0 {
                        self.pending.drain(..used);
                        self.state = State::Trailer;
                        continue;
                    }
                    if len > MAX_CHUNK as u64 {
                        return Err(StreamError::TooLarge {
                            what: "content chunk",
                            found: len,
                            limit: MAX_CHUNK,
                        });
                    }
                    let end = used + len as usize;
                    let Some(chunk) = self.pending.get(used..end) else {
                        return Ok(parts);
                    };
                    parts.push(Part::Content(chunk.to_vec()));
                    self.pending.drain(..end);
                }
                State::Done => {
                    // Only padding (zeros) may follow.
                    if self.pending.iter().any(|b| *b != 0) {
                        return Err(StreamError::Malformed(
                            "bytes other than padding after the trailer".into(),
                        ));
                    }
                    self.pending.clear();
                    return Ok(parts);
                }
            }
        }
    }

    /// The end of the stream: an error unless the trailer was complete.
    pub fn finish(&self) -> Result<(), StreamError> {
        match self.state {
            State::Done => Ok(()),
            State::Framing | State::Status | State::Head => Err(StreamError::Truncated("head")),
            State::Content => Err(StreamError::Truncated("content")),
            State::Trailer => Err(StreamError::Truncated("trailer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut m = response_head(200, &[("content-type", b"text/event-stream")]);
        m.extend(content_chunk(b"data: {\"a\":1}\n\n"));
        m.extend(content_chunk(b""));
        m.extend(content_chunk(&[b'x'; 300]));
        m.extend(response_end(&[("kokon-receipt", b"{\"r\":1}")]));
        m
    }

    fn parts_of(bytes: &[u8]) -> Vec<Part> {
        let mut d = ResponseDecoder::default();
        let mut parts = Vec::new();
        // Byte by byte: every split must work.
        for b in bytes {
            parts.extend(d.push(&[*b]).unwrap());
        }
        d.finish().unwrap();
        parts
    }

    #[test]
    fn a_stream_decodes_part_by_part_in_any_split() {
        let parts = parts_of(&sample());
        assert_eq!(
            parts,
            vec![
                Part::Head {
                    status: 200,
                    headers: vec![("content-type".into(), b"text/event-stream".to_vec())]
                },
                Part::Content(b"data: {\"a\":1}\n\n".to_vec()),
                Part::Content(vec![b'x'; 300]),
                Part::Trailers(vec![("kokon-receipt".into(), b"{\"r\":1}".to_vec())]),
            ]
        );
        // Padding after the trailer is allowed.
        let mut padded = sample();
        padded.extend([0, 0, 0]);
        assert_eq!(parts_of(&padded).len(), 4);
    }

    #[test]
    fn malformed_and_truncated_streams_are_errors() {
        let bytes = sample();
        for cut in [0, 1, 3, 25, bytes.len() - 1] {
            let mut d = ResponseDecoder::default();
            d.push(&bytes[..cut]).unwrap();
            assert!(d.finish().is_err(), "cut at {cut}");
        }
        let mut d = ResponseDecoder::default();
        assert!(
            matches!(d.push(&[2]), Err(StreamError::Malformed(_))),
            "known-length request framing"
        );
        let mut d = ResponseDecoder::default();
        assert!(d.push(&[3, 0x40, 100]).is_err(), "informational status");
        let mut huge = response_head(200, &[]);
        huge.extend([0xc0, 0, 0, 0, 0x10, 0, 0, 0]);
        let mut d = ResponseDecoder::default();
        assert!(matches!(
            d.push(&huge),
            Err(StreamError::TooLarge {
                what: "content chunk",
                ..
            })
        ));
        let mut trailing = sample();
        trailing.push(7);
        let mut d = ResponseDecoder::default();
        assert!(d.push(&trailing).is_err(), "garbage after the trailer");
    }
}
