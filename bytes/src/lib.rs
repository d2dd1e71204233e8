//! A bounded reader over untrusted bytes.
//!
//! Every parser of untrusted bytes in kokon (evidence formats, OHTTP key
//! configurations and messages, host <-> enclave frames) reads through
//! [`Reader`]: taking past the end is an error that names the structure
//! being read, and [`Reader::finish`] makes trailing bytes an error too.
//! Callers map [`ReadError`] into their own error type.
//!
//! This crate must never index, unwrap or panic on any input, nor do I/O.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use thiserror::Error;

/// Why a [`Reader`] stopped. Exhaustive on purpose: a bounded reader fails in
/// exactly these two ways, and callers map each to their own error.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The input ended inside a structure.
    #[error("truncated {what}: needed {needed} bytes at offset {offset}, {available} available")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
        /// Bytes it needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes were left after a complete structure.
    #[error("{extra} trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that should have ended.
        what: &'static str,
        /// How many bytes followed it.
        extra: usize,
    },
}

impl ReadError {
    /// The structure being read when the reader stopped.
    pub fn what(&self) -> &'static str {
        match self {
            ReadError::Truncated { what, .. } | ReadError::TrailingBytes { what, .. } => what,
        }
    }
}

/// A cursor over a byte slice that never reads out of bounds.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
    /// How many bytes were read before `rest`.
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            offset: 0,
        }
    }

    /// The offset of the next byte to be read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Takes the next `len` bytes, or fails naming `what` was being read
    /// (and then reads nothing).
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], ReadError> {
        let (out, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(ReadError::Truncated {
                what,
                offset: self.offset,
                needed: len,
                available: self.rest.len(),
            })?;
        self.rest = rest;
        // Cannot overflow: `offset + len` is at most the input's length.
        self.offset += len;
        Ok(out)
    }

    /// Takes all the bytes that are left (possibly none).
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.rest;
        self.offset += rest.len();
        self.rest = &[];
        rest
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ReadError> {
        let slice = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ReadError> {
        let [b] = self.array(what)?;
        Ok(b)
    }

    /// Reads a big-endian `u16`.
    pub fn u16_be(&mut self, what: &'static str) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32_be(&mut self, what: &'static str) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a big-endian `u128`.
    pub fn u128_be(&mut self, what: &'static str) -> Result<u128, ReadError> {
        Ok(u128::from_be_bytes(self.array(what)?))
    }

    /// Takes the next `len` bytes (a length read from the input) as a reader
    /// of their own, whose offsets start again at 0.
    pub fn sub(&mut self, len: u32, what: &'static str) -> Result<Reader<'a>, ReadError> {
        let len = usize::try_from(len).map_err(|_| ReadError::Truncated {
            what,
            offset: self.offset,
            needed: usize::MAX,
            available: self.rest.len(),
        })?;
        Ok(Reader::new(self.take(len, what)?))
    }

    /// Fails if any bytes are left unread.
    pub fn finish(self, what: &'static str) -> Result<(), ReadError> {
        match self.rest.len() {
            0 => Ok(()),
            extra => Err(ReadError::TrailingBytes { what, extra }),
        }
    }

    /// Fails if any byte left unread is not zero: quote buffers handed out by
    /// the kernel are zero-padded to a fixed size, anything else is rejected.
    pub fn finish_zero_padded(self, what: &'static str) -> Result<(), ReadError> {
        if self.rest.iter().all(|b| *b == 0) {
            Ok(())
        } else {
            Err(ReadError::TrailingBytes {
                what,
                extra: self.rest.len(),
            })
        }
    }
}

/// Appends `value` as a QUIC variable-length integer (RFC 9000 section
/// 16), the length encoding of Binary HTTP and chunked OHTTP. Values of
/// 2^62 and above do not fit and are truncated to 62 bits.
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    match value {
        v if v < 1 << 6 => out.push(v as u8),
        v if v < 1 << 14 => out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes()),
        v if v < 1 << 30 => out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes()),
        v => out.extend_from_slice(&((v & ((1 << 62) - 1)) | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// The variable-length integer at the start of `bytes` and how many bytes
/// it takes, or `None` while `bytes` holds only part of it (for decoders fed
/// as data arrives).
pub fn peek_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = 1usize << (first >> 6);
    let raw = bytes.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for b in raw.iter().skip(1) {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_past_the_end_names_the_structure() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_le("a").ok(), Some(0x0201));
        let err = r.u32_le("quote header").err();
        assert!(
            matches!(
                err,
                Some(ReadError::Truncated {
                    what: "quote header",
                    offset: 2,
                    needed: 4,
                    available: 1
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut r = Reader::new(&[1, 2, 3]);
        let _ = r.take(2, "x");
        assert!(matches!(
            r.finish("quote"),
            Err(ReadError::TrailingBytes {
                what: "quote",
                extra: 1
            })
        ));
    }

    #[test]
    fn huge_lengths_do_not_overflow() {
        let mut r = Reader::new(&[0; 8]);
        let _ = r.take(4, "x");
        assert!(r.take(usize::MAX, "y").is_err());
        assert!(r.sub(u32::MAX, "z").is_err());
    }

    #[test]
    fn integers_are_read_in_their_byte_order() {
        let bytes: Vec<u8> = (1..=16).collect();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("u8"), Ok(0x01));
        assert_eq!(r.u16_be("u16"), Ok(0x0203));
        assert_eq!(r.u16_le("u16"), Ok(0x0504));
        assert_eq!(r.u32_be("u32"), Ok(0x0607_0809));
        assert_eq!(r.u32_le("u32"), Ok(0x0d0c_0b0a));
        assert_eq!(r.offset(), 13);
        assert_eq!(r.remaining(), 3);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u64_le("u64"), Ok(0x0807_0605_0403_0201));
        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.u128_be("u128"),
            Ok(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10)
        );
        assert_eq!(r.finish("all"), Ok(()));
    }

    #[test]
    fn a_failed_read_reads_nothing() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(r.u8("kind"), Ok(1));
        assert_eq!(
            r.u128_be("channel"),
            Err(ReadError::Truncated {
                what: "channel",
                offset: 1,
                needed: 16,
                available: 8
            })
        );
        assert_eq!(r.offset(), 1);
        assert_eq!(r.array::<8>("rest"), Ok([2, 3, 4, 5, 6, 7, 8, 9]));
        assert_eq!(
            r.u8("next"),
            Err(ReadError::Truncated {
                what: "next",
                offset: 9,
                needed: 1,
                available: 0
            })
        );
    }

    #[test]
    fn offset_plus_length_overflow_is_truncation() {
        let mut r = Reader::new(&[0; 8]);
        assert_eq!(r.take(4, "x").map(<[u8]>::len), Ok(4));
        assert_eq!(
            r.take(usize::MAX, "y"),
            Err(ReadError::Truncated {
                what: "y",
                offset: 4,
                needed: usize::MAX,
                available: 4
            })
        );
        assert_eq!(
            r.take(usize::MAX - 3, "y").err().map(|e| e.what()),
            Some("y")
        );
        assert_eq!((r.offset(), r.remaining()), (4, 4));
    }

    #[test]
    fn a_sub_reader_holds_exactly_its_length() {
        let mut r = Reader::new(&[9, 1, 2, 3, 4]);
        assert_eq!(r.u8("head"), Ok(9));
        let mut sub = r.sub(3, "body").unwrap();
        assert_eq!((sub.offset(), sub.remaining()), (0, 3));
        assert_eq!(sub.u16_be("field"), Ok(0x0102));
        assert_eq!(
            sub.clone().finish("body"),
            Err(ReadError::TrailingBytes {
                what: "body",
                extra: 1
            })
        );
        assert_eq!(
            sub.u16_be("field"),
            Err(ReadError::Truncated {
                what: "field",
                offset: 2,
                needed: 2,
                available: 1
            })
        );
        assert_eq!(r.offset(), 4);
        assert_eq!(
            r.sub(2, "tail").err(),
            Some(ReadError::Truncated {
                what: "tail",
                offset: 4,
                needed: 2,
                available: 1
            })
        );
    }

    #[test]
    fn rest_takes_everything_left() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.rest(), &[2, 3]);
        assert_eq!((r.offset(), r.remaining()), (3, 0));
        assert_eq!(r.rest(), &[] as &[u8]);
        assert_eq!(r.take(0, "nothing"), Ok(&[] as &[u8]));
        assert_eq!(r.finish("all"), Ok(()));
    }

    #[test]
    fn only_zero_padding_may_follow() {
        let mut r = Reader::new(&[7, 0, 0, 0]);
        assert_eq!(r.u8("a"), Ok(7));
        assert_eq!(r.finish_zero_padded("quote"), Ok(()));
        let mut r = Reader::new(&[7, 0, 1, 0]);
        assert_eq!(r.u8("a"), Ok(7));
        assert_eq!(
            r.finish_zero_padded("quote"),
            Err(ReadError::TrailingBytes {
                what: "quote",
                extra: 3
            })
        );
        assert_eq!(Reader::new(&[]).finish_zero_padded("quote"), Ok(()));
    }

    #[test]
    fn messages_state_expected_and_found() {
        let mut r = Reader::new(&[1, 2]);
        let err = r.u32_be("frame length").unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated frame length: needed 4 bytes at offset 0, 2 available"
        );
        assert_eq!(
            r.finish("frame").unwrap_err().to_string(),
            "2 trailing bytes after frame"
        );
    }

    #[test]
    fn varints_round_trip_at_every_size() {
        for v in [
            0u64,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            (1 << 62) - 1,
        ] {
            let mut out = Vec::new();
            super::put_varint(&mut out, v);
            assert_eq!(super::peek_varint(&out), Some((v, out.len())), "{v}");
            assert_eq!(
                super::peek_varint(&out[..out.len() - 1]),
                None,
                "{v} partial"
            );
        }
        assert_eq!(super::peek_varint(&[]), None);
    }
}
