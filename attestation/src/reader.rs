//! A bounded reader over untrusted bytes.
//!
//! Every parser in this crate reads through [`Reader`]: taking past the end is
//! an error that names the structure being read, and [`Reader::finish`] makes
//! trailing bytes an error too. Nothing here indexes or panics.

use crate::Error;

/// A cursor over a byte slice that never reads out of bounds.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    /// The offset of the next byte to be read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    /// Takes the next `len` bytes, or fails naming `what` was being read.
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(Error::Truncated {
                what,
                offset: self.offset,
                needed: len,
                available: self.remaining(),
            })?;
        let out = self.bytes.get(self.offset..end).ok_or(Error::Truncated {
            what,
            offset: self.offset,
            needed: len,
            available: self.remaining(),
        })?;
        self.offset = end;
        Ok(out)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let slice = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Takes a length-prefixed sub-slice whose length is given by `len`.
    pub fn sub(&mut self, len: u32, what: &'static str) -> Result<Reader<'a>, Error> {
        let len = usize::try_from(len).map_err(|_| Error::Truncated {
            what,
            offset: self.offset,
            needed: usize::MAX,
            available: self.remaining(),
        })?;
        Ok(Reader::new(self.take(len, what)?))
    }

    /// Fails if any bytes are left unread.
    pub fn finish(self, what: &'static str) -> Result<(), Error> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(Error::TrailingBytes { what, extra }),
        }
    }
}

impl Reader<'_> {
    /// Fails if any byte left unread is not zero: quote buffers handed out by
    /// the kernel are zero-padded to a fixed size, anything else is rejected.
    pub fn finish_zero_padded(self, what: &'static str) -> Result<(), Error> {
        let rest = self.bytes.get(self.offset..).unwrap_or_default();
        match rest.iter().position(|b| *b != 0) {
            None => Ok(()),
            Some(_) => Err(Error::TrailingBytes {
                what,
                extra: rest.len(),
            }),
        }
    }
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
                Some(Error::Truncated {
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
            Err(Error::TrailingBytes {
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
}
