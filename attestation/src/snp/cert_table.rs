//! The SEV-SNP certificate table that the host hands the guest with an
//! extended report (configfs-tsm `auxblob`, or `SNP_GET_EXT_REPORT`), from
//! the GHCB specification (AMD pub. 56421), section 4.1.8.1: entries of
//! { GUID (16 bytes), offset (u32 LE), length (u32 LE) } ending in an
//! all-zero entry; offsets are from the start of the table.
//!
//! The table comes from the untrusted host, so it is parsed defensively;
//! what it holds is verified like any other certificate.

use kokon_bytes::Reader;

use crate::Error;

/// Largest table accepted.
const MAX_TABLE_LEN: usize = 64 * 1024;
/// Most entries accepted.
const MAX_ENTRIES: usize = 16;

/// GUID of the VCEK entry (63da758d-e664-4564-adc5-f4b93be8accd).
pub const VCEK_GUID: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
/// GUID of the VLEK entry (a8074bc2-a25a-483e-aae6-39c045a0b8a1).
pub const VLEK_GUID: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
/// GUID of the ASK entry (4ab7b379-bbac-4fe4-a02f-05aef327c782).
pub const ASK_GUID: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
/// GUID of the ARK entry (c0b406a4-a803-4952-9743-3fb6014cd0ae).
pub const ARK_GUID: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";

/// One certificate from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its GUID in canonical text form.
    pub guid: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

/// Formats a GUID stored in the mixed-endian EFI layout.
fn guid_text(b: &[u8; 16]) -> String {
    let h = |r: &[u8]| hex::encode(r);
    let rev = |r: &[u8]| r.iter().rev().copied().collect::<Vec<u8>>();
    format!(
        "{}-{}-{}-{}-{}",
        h(&rev(b.get(0..4).unwrap_or_default())),
        h(&rev(b.get(4..6).unwrap_or_default())),
        h(&rev(b.get(6..8).unwrap_or_default())),
        h(b.get(8..10).unwrap_or_default()),
        h(b.get(10..16).unwrap_or_default())
    )
}

/// Encodes a GUID in the mixed-endian EFI layout (for building tables in tests).
pub fn guid_bytes(text: &str) -> Result<[u8; 16], Error> {
    let bad = || Error::Unsupported {
        field: "GUID",
        expected: "8-4-4-4-12 hex digits".into(),
        found: text.into(),
    };
    let parts: Vec<&str> = text.split('-').collect();
    let [a, b, c, d, e] = parts.as_slice() else {
        return Err(bad());
    };
    let mut out = Vec::with_capacity(16);
    for (part, reverse) in [(a, true), (b, true), (c, true), (d, false), (e, false)] {
        let mut bytes = hex::decode(part).map_err(|_| bad())?;
        if reverse {
            bytes.reverse();
        }
        out.extend(bytes);
    }
    out.try_into().map_err(|_| bad())
}

/// Parses a certificate table.
pub fn parse(table: &[u8]) -> Result<Vec<Entry>, Error> {
    if table.len() > MAX_TABLE_LEN {
        return Err(Error::TooLarge {
            what: "SNP certificate table",
        });
    }
    let mut r = Reader::new(table);
    let mut entries = Vec::new();
    loop {
        let guid: [u8; 16] = r.array("SNP certificate table: GUID")?;
        let offset = r.u32_le("SNP certificate table: offset")?;
        let length = r.u32_le("SNP certificate table: length")?;
        if guid == [0; 16] && offset == 0 && length == 0 {
            break;
        }
        if entries.len() == MAX_ENTRIES {
            return Err(Error::TooLarge {
                what: "SNP certificate table",
            });
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
        let der = table.get(start..end).ok_or(Error::Truncated {
            what: "SNP certificate table: certificate",
            offset: start,
            needed: end.saturating_sub(start),
            available: table.len().saturating_sub(start),
        })?;
        entries.push(Entry {
            guid: guid_text(&guid),
            der: der.to_vec(),
        });
    }
    Ok(entries)
}

/// The endorsement key certificate and its CA chain from a table: VCEK (or
/// VLEK) first, then ASK and ARK when present.
pub fn chain(entries: &[Entry]) -> Result<Vec<Vec<u8>>, Error> {
    let find = |g: &str| entries.iter().find(|e| e.guid == g).map(|e| e.der.clone());
    let vek = find(VCEK_GUID)
        .or_else(|| find(VLEK_GUID))
        .ok_or_else(|| Error::Unsupported {
            field: "SNP certificate table",
            expected: "a VCEK or VLEK entry".into(),
            found: format!(
                "entries {:?}",
                entries.iter().map(|e| &e.guid).collect::<Vec<_>>()
            ),
        })?;
    let mut out = vec![vek];
    if let (Some(ask), Some(ark)) = (find(ASK_GUID), find(ARK_GUID)) {
        out.push(ask);
        out.push(ark);
    }
    Ok(out)
}

/// Builds a table from (GUID, DER) pairs.
pub fn build(entries: &[(&str, &[u8])]) -> Result<Vec<u8>, Error> {
    let header = (entries.len() + 1) * 24;
    let mut out = Vec::new();
    let mut body = Vec::new();
    for (guid, der) in entries {
        out.extend_from_slice(&guid_bytes(guid)?);
        let offset = u32::try_from(header + body.len()).map_err(|_| Error::TooLarge {
            what: "SNP certificate table",
        })?;
        let len = u32::try_from(der.len()).map_err(|_| Error::TooLarge {
            what: "SNP certificate table",
        })?;
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(der);
    }
    out.extend_from_slice(&[0u8; 24]);
    out.extend(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip_in_the_efi_layout() {
        let b = guid_bytes(VCEK_GUID).unwrap();
        assert_eq!(b[0], 0x8d, "first field is little-endian");
        assert_eq!(guid_text(&b), VCEK_GUID);
    }

    #[test]
    fn tables_round_trip_and_bad_offsets_are_errors() {
        let t = build(&[(VCEK_GUID, b"vcek"), (ASK_GUID, b"ask"), (ARK_GUID, b"ark")]).unwrap();
        let e = parse(&t).unwrap();
        assert_eq!(
            chain(&e).unwrap(),
            vec![b"vcek".to_vec(), b"ask".to_vec(), b"ark".to_vec()]
        );
        for len in 0..t.len() {
            let _ = parse(&t[..len]);
        }
        let mut bad = t.clone();
        bad[16] = 0xff; // offset of the first entry past the end
        assert!(matches!(parse(&bad), Err(Error::Truncated { .. })));
        assert!(chain(&parse(&build(&[(ASK_GUID, b"a")]).unwrap()).unwrap()).is_err());
    }
}
