//! OVMF's GUIDed footer table: the list of (GUID, data) entries at the end
//! of an OVMF flash image through which QEMU finds the SEV metadata, the
//! SEV-ES reset block, the SEV hashes table area and the TDVF metadata.
//! Both the SEV-SNP launch digest ([`crate::snp`]) and the TDX MRTD
//! ([`crate::tdx`]) read their entries from the one parse here.
//!
//! Layout (edk2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`, read by QEMU's
//! `hw/i386/pc_sysfw_ovmf.c`): the table ends 32 bytes before the end of the
//! image with the footer entry, a little-endian u16 length (of the whole
//! table, footer entry included) and the footer GUID. Before it, the entries
//! are read backwards from the last one: each is its data, then its length
//! (of the whole entry, its 18-byte header included) and its GUID, GUIDs
//! stored mixed-endian as edk2 stores them.
//!
//! The image is untrusted: the table is parsed with checked slicing, never
//! panics, and is refused whole when any entry is malformed (a length out of
//! range, an entry running past the table's start, bytes left over that
//! cannot be an entry, a GUID twice), each error saying what was expected
//! and what was found.

use std::collections::HashSet;

use thiserror::Error;
use uuid::{uuid, Uuid};

/// GUID of the footer entry that ends the table.
pub const FOOTER_GUID: Uuid = uuid!("96b582de-1fb2-45f7-baea-a366c55a082d");
/// The footer table ends this many bytes before the end of the image (the
/// reset vector and its padding follow it).
pub const FOOTER_END_FROM_IMAGE_END: usize = 32;
/// Each entry, the footer entry included, ends with its length (u16) and
/// its GUID.
pub const ENTRY_HEADER_SIZE: usize = 2 + 16;

/// One entry of the footer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its GUID.
    pub guid: Uuid,
    /// Its data: the bytes before its length and GUID.
    pub data: &'a [u8],
}

/// The entries of an OVMF image's footer table (the footer entry itself
/// left out), each GUID at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterTable<'a> {
    /// In the image's order, first to last.
    entries: Vec<Entry<'a>>,
}

/// Why an image's footer table was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FooterTableError {
    /// The image is too short to end with a footer entry.
    #[error(
        "OVMF footer table: the image's {len} bytes cannot hold the 18-byte footer entry and \
         the 32 bytes after it (at least 50 bytes)"
    )]
    ImageTooSmall {
        /// The image's length.
        len: usize,
    },
    /// The footer entry is not where OVMF puts it.
    #[error(
        "OVMF footer table: expected GUID {FOOTER_GUID} in the 18-byte footer entry at offset \
         {offset:#x} (ending 32 bytes before the image's end), found {found} (not an OVMF image \
         with a GUIDed footer table)"
    )]
    FooterGuid {
        /// The GUID found there.
        found: Uuid,
        /// The footer entry's offset in the image.
        offset: usize,
    },
    /// The footer entry's length does not fit the image.
    #[error(
        "OVMF footer table: length {length} out of range: at least 18 (the footer entry) and \
         at most the {available} bytes of the image up to the footer's end"
    )]
    FooterLength {
        /// The table's length, footer entry included.
        length: u16,
        /// The bytes of the image up to the footer's end.
        available: usize,
    },
    /// Bytes are left at the table's start that cannot hold an entry.
    #[error(
        "OVMF footer table: {left} bytes left at the table's start, fewer than an 18-byte entry \
         header"
    )]
    Leftover {
        /// How many.
        left: usize,
    },
    /// An entry's length is shorter than its own header.
    #[error("OVMF footer table: entry {guid} has length {length}, less than its 18-byte header")]
    EntryTooShort {
        /// The entry's GUID.
        guid: Uuid,
        /// Its length.
        length: u16,
    },
    /// An entry's length runs past the table's start.
    #[error(
        "OVMF footer table: entry {guid} has length {length}, but only {left} bytes of the \
         table are left"
    )]
    EntryLength {
        /// The entry's GUID.
        guid: Uuid,
        /// Its length.
        length: u16,
        /// The bytes of the table not yet read, this entry's included.
        left: usize,
    },
    /// Two entries have the same GUID.
    #[error("OVMF footer table: entry {guid} appears twice; each GUID may appear once")]
    DuplicateEntry {
        /// The GUID.
        guid: Uuid,
    },
}

impl<'a> FooterTable<'a> {
    /// Parses the footer table that ends 32 bytes before the end of
    /// `image`, all of it: every entry is checked, not only those a caller
    /// looks up.
    pub fn parse(image: &'a [u8]) -> Result<Self, FooterTableError> {
        let (before_footer, length, guid) = image
            .len()
            .checked_sub(FOOTER_END_FROM_IMAGE_END)
            .and_then(|footer_end| split_header(image.get(..footer_end)?))
            .ok_or(FooterTableError::ImageTooSmall { len: image.len() })?;
        if guid != FOOTER_GUID {
            return Err(FooterTableError::FooterGuid {
                found: guid,
                offset: before_footer.len(),
            });
        }
        let mut rest = usize::from(length)
            .checked_sub(ENTRY_HEADER_SIZE)
            .and_then(|entries_len| before_footer.len().checked_sub(entries_len))
            .and_then(|start| before_footer.get(start..))
            .ok_or(FooterTableError::FooterLength {
                length,
                available: before_footer.len() + ENTRY_HEADER_SIZE,
            })?;
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        while !rest.is_empty() {
            let (head, length, guid) =
                split_header(rest).ok_or(FooterTableError::Leftover { left: rest.len() })?;
            let data_len = usize::from(length)
                .checked_sub(ENTRY_HEADER_SIZE)
                .ok_or(FooterTableError::EntryTooShort { guid, length })?;
            let (before, data) = head
                .len()
                .checked_sub(data_len)
                .and_then(|start| head.split_at_checked(start))
                .ok_or(FooterTableError::EntryLength {
                    guid,
                    length,
                    left: rest.len(),
                })?;
            if !seen.insert(guid) {
                return Err(FooterTableError::DuplicateEntry { guid });
            }
            entries.push(Entry { guid, data });
            rest = before;
        }
        entries.reverse();
        Ok(FooterTable { entries })
    }

    /// The data of the entry `guid`, if the table has one.
    pub fn get(&self, guid: Uuid) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|entry| entry.guid == guid)
            .map(|entry| entry.data)
    }

    /// The entries, in the image's order (the footer entry left out).
    pub fn entries(&self) -> &[Entry<'a>] {
        &self.entries
    }
}

/// Splits the 18-byte header (length, GUID) off the end of `bytes`: the
/// bytes before it, the length and the GUID; `None` when fewer are left.
fn split_header(bytes: &[u8]) -> Option<(&[u8], u16, Uuid)> {
    let (before, &[low, high, guid @ ..]) = bytes.split_last_chunk::<ENTRY_HEADER_SIZE>()?;
    Some((
        before,
        u16::from_le_bytes([low, high]),
        Uuid::from_bytes_le(guid),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Uuid = uuid!("dc886566-984a-4798-a75e-5585a7bf67cc");
    const B: Uuid = uuid!("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
    const C: Uuid = uuid!("e47a6535-984a-4798-865e-4685a7bf8ec2");
    /// Bytes of the image before the table in `image`.
    const PREFIX: usize = 100;

    /// The bytes of one entry: its data, its length, its GUID.
    fn entry(guid: Uuid, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        out.extend_from_slice(&(data.len() as u16 + 18).to_le_bytes());
        out.extend_from_slice(&guid.to_bytes_le());
        out
    }

    /// An image: `PREFIX` bytes of 0xaa, the `entries` bytes, the footer
    /// entry with `table_len` (of `entries` and the footer entry, unless
    /// given), and 32 bytes of 0xbb.
    fn image_with(entries: &[u8], table_len: Option<u16>) -> Vec<u8> {
        let mut out = vec![0xaa; PREFIX];
        out.extend_from_slice(entries);
        let len = table_len.unwrap_or(entries.len() as u16 + 18);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&FOOTER_GUID.to_bytes_le());
        out.extend_from_slice(&[0xbb; 32]);
        out
    }

    fn image(entries: &[(Uuid, &[u8])]) -> Vec<u8> {
        image_with(&entries_bytes(entries), None)
    }

    fn entries_bytes(entries: &[(Uuid, &[u8])]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(guid, data)| entry(*guid, data))
            .collect()
    }

    fn error(image: &[u8]) -> String {
        match FooterTable::parse(image) {
            Ok(table) => panic!("accepted: {table:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn entries_are_found_in_the_images_order() {
        let bytes = image(&[(A, &[1, 2, 3, 4]), (B, &[]), (C, &[9; 8])]);
        let table = FooterTable::parse(&bytes).unwrap();
        assert_eq!(
            table.entries(),
            [
                Entry {
                    guid: A,
                    data: &[1, 2, 3, 4]
                },
                Entry { guid: B, data: &[] },
                Entry {
                    guid: C,
                    data: &[9; 8]
                },
            ]
        );
        assert_eq!(table.get(A), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(table.get(B), Some(&[][..]));
        assert_eq!(table.get(C), Some(&[9u8; 8][..]));
        assert_eq!(table.get(FOOTER_GUID), None);
        assert_eq!(table.get(Uuid::nil()), None);
        // The data are the image's own bytes, just before each header.
        let c_at = bytes.len() - 32 - 18 - 18 - 8;
        assert_eq!(
            table.get(C).map(<[u8]>::as_ptr),
            Some(bytes[c_at..].as_ptr())
        );
    }

    #[test]
    fn a_table_of_only_the_footer_has_no_entries() {
        let bytes = image(&[]);
        assert_eq!(FooterTable::parse(&bytes).unwrap().entries(), []);
        // Nothing but the footer entry and the 32 bytes after it.
        let bytes = &bytes[PREFIX..];
        assert_eq!(bytes.len(), 50);
        assert_eq!(FooterTable::parse(bytes).unwrap().entries(), []);
    }

    #[test]
    fn a_table_may_start_at_the_images_start() {
        let bytes = image(&[(A, &[7; 10])]);
        let table = FooterTable::parse(&bytes[PREFIX..]).unwrap();
        assert_eq!(table.get(A), Some(&[7u8; 10][..]));
    }

    #[test]
    fn an_image_too_small_for_the_footer_is_refused() {
        for len in [0, 1, 32, 49] {
            assert_eq!(
                error(&vec![0; len]),
                format!(
                    "OVMF footer table: the image's {len} bytes cannot hold the 18-byte footer \
                     entry and the 32 bytes after it (at least 50 bytes)"
                )
            );
        }
        // One byte short of the smallest table: the footer entry cut.
        let bytes = image(&[]);
        assert!(FooterTable::parse(&bytes[PREFIX..]).is_ok());
        assert!(error(&bytes[PREFIX + 1..]).contains("the image's 49 bytes cannot hold"));
    }

    #[test]
    fn a_wrong_footer_guid_is_refused() {
        let mut bytes = image(&[(A, &[1; 4])]);
        let at = bytes.len() - 32 - 16;
        bytes[at..at + 16].fill(0);
        assert_eq!(
            error(&bytes),
            format!(
                "OVMF footer table: expected GUID 96b582de-1fb2-45f7-baea-a366c55a082d in the \
                 18-byte footer entry at offset {:#x} (ending 32 bytes before the image's end), \
                 found 00000000-0000-0000-0000-000000000000 (not an OVMF image with a GUIDed \
                 footer table)",
                bytes.len() - 50
            )
        );
    }

    #[test]
    fn a_footer_length_out_of_range_is_refused() {
        let entries = entries_bytes(&[(A, &[1; 4])]);
        let available = PREFIX + entries.len() + 18;
        for length in [0, 17] {
            assert_eq!(
                error(&image_with(&entries, Some(length))),
                format!(
                    "OVMF footer table: length {length} out of range: at least 18 (the footer \
                     entry) and at most the {available} bytes of the image up to the footer's end"
                )
            );
        }
        let length = available as u16 + 1;
        assert_eq!(
            error(&image_with(&entries, Some(length))),
            format!(
                "OVMF footer table: length {length} out of range: at least 18 (the footer entry) \
                 and at most the {available} bytes of the image up to the footer's end"
            )
        );
        assert_eq!(
            error(&image_with(&entries, Some(u16::MAX))),
            format!(
                "OVMF footer table: length 65535 out of range: at least 18 (the footer entry) \
                 and at most the {available} bytes of the image up to the footer's end"
            )
        );
    }

    #[test]
    fn bytes_left_before_the_first_entry_are_refused() {
        let entries = entries_bytes(&[(A, &[1; 4])]);
        for extra in [1u16, 17] {
            let length = entries.len() as u16 + 18 + extra;
            assert_eq!(
                error(&image_with(&entries, Some(length))),
                format!(
                    "OVMF footer table: {extra} bytes left at the table's start, fewer than an \
                     18-byte entry header"
                )
            );
        }
    }

    #[test]
    fn an_entry_shorter_than_its_header_is_refused() {
        for length in [0u16, 3, 17] {
            let mut entries = entries_bytes(&[(A, &[]), (B, &[1; 4])]);
            entries[0..2].copy_from_slice(&length.to_le_bytes());
            assert_eq!(
                error(&image_with(&entries, None)),
                format!(
                    "OVMF footer table: entry dc886566-984a-4798-a75e-5585a7bf67cc has length \
                     {length}, less than its 18-byte header"
                )
            );
        }
    }

    #[test]
    fn an_entry_running_past_the_tables_start_is_refused() {
        // B, read first, claims one byte more than the 44 bytes of the table
        // that are left; then A claims 4 bytes more than its own 22.
        let entries = entries_bytes(&[(A, &[1; 4]), (B, &[2; 4])]);
        let mut past = entries.clone();
        past[26..28].copy_from_slice(&45u16.to_le_bytes());
        assert_eq!(
            error(&image_with(&past, None)),
            "OVMF footer table: entry 00f771de-1a7e-4fcb-890e-68c77e2fb44e has length 45, but \
             only 44 bytes of the table are left"
        );
        let mut past = entries;
        past[4..6].copy_from_slice(&26u16.to_le_bytes());
        assert_eq!(
            error(&image_with(&past, None)),
            "OVMF footer table: entry dc886566-984a-4798-a75e-5585a7bf67cc has length 26, but \
             only 22 bytes of the table are left"
        );
    }

    #[test]
    fn a_guid_twice_is_refused() {
        let bytes = image(&[(A, &[1; 4]), (B, &[]), (A, &[1; 4])]);
        assert_eq!(
            error(&bytes),
            "OVMF footer table: entry dc886566-984a-4798-a75e-5585a7bf67cc appears twice; each \
             GUID may appear once"
        );
    }

    #[test]
    fn no_cut_or_changed_byte_panics() {
        // Every suffix of the image (the table always 32 bytes before the
        // end), and every byte of the table and its footer set to each of
        // the values that reach the checks: the parse returns.
        let bytes = image(&[(A, &[1; 4]), (B, &[]), (C, &[9; 8])]);
        let mut accepted = 0;
        for start in 0..bytes.len() {
            accepted += usize::from(FooterTable::parse(&bytes[start..]).is_ok());
        }
        // Cutting only the prefix before the table keeps it whole.
        assert_eq!(accepted, PREFIX + 1);
        for at in PREFIX..bytes.len() - 32 {
            for value in [0u8, 1, 17, 18, 19, 0x7f, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = value;
                let _ = FooterTable::parse(&changed);
            }
        }
    }
}
