//! What QEMU reads from an OVMF image to launch an SEV-SNP guest: through
//! the GUIDed footer table at the end of the flash image ([`crate::ovmf`]),
//! the SEV metadata (the guest memory sections OVMF wants pre-validated),
//! the SEV-ES reset block (where the APs start) and the SEV hashes table
//! area (where QEMU puts the kernel, initrd and command line hashes).
//!
//! The image is untrusted: every offset and length read from it is checked
//! before use, and every rejection says what was expected and what was found.

use kokon_bytes::Reader;
use uuid::{uuid, Uuid};

use super::SnpError;
use crate::ovmf::FooterTable;

/// GUID of the entry holding the SEV metadata's offset from the image's end.
pub(super) const SEV_METADATA_GUID: Uuid = uuid!("dc886566-984a-4798-a75e-5585a7bf67cc");
/// GUID of the SEV-ES reset block: the APs' reset address.
pub(super) const SEV_ES_RESET_BLOCK_GUID: Uuid = uuid!("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// GUID of the SEV hashes table area: its GPA and size.
pub(super) const SEV_HASH_TABLE_GUID: Uuid = uuid!("7255371f-3a3b-4b04-927b-1da6efa8d454");

/// The page size as a GPA offset.
const PAGE_SIZE: u64 = super::PAGE_SIZE as u64;
/// The flash image is mapped so that it ends at 4 GiB.
const FOUR_GIB: u64 = 1 << 32;
/// The SEV metadata header: signature, size, version, section count.
const METADATA_HEADER_SIZE: usize = 16;
/// One section descriptor: GPA, size, type (three u32).
const SECTION_DESCRIPTOR_SIZE: u64 = 12;

/// What a metadata section asks of the launch (edk2
/// `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Memory OVMF's SEC phase uses before it can validate pages itself.
    SecMem,
    /// The page the secure processor fills with the guest's secrets.
    Secrets,
    /// The page the secure processor fills with checked CPUID values.
    Cpuid,
    /// The calling area of an SVSM.
    SvsmCaa,
    /// The page holding the SEV hashes table.
    KernelHashes,
}

impl SectionKind {
    fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(SectionKind::SecMem),
            2 => Some(SectionKind::Secrets),
            3 => Some(SectionKind::Cpuid),
            4 => Some(SectionKind::SvsmCaa),
            0x10 => Some(SectionKind::KernelHashes),
            _ => None,
        }
    }

    /// The name edk2 gives the type.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::SecMem => "SNP_SEC_MEM",
            SectionKind::Secrets => "SNP_SECRETS",
            SectionKind::Cpuid => "CPUID",
            SectionKind::SvsmCaa => "SVSM_CAA",
            SectionKind::KernelHashes => "SNP_KERNEL_HASHES",
        }
    }

    /// Whether the section is exactly one page: the secure processor fills
    /// one secrets or CPUID page, and QEMU writes the hashes table into one.
    fn is_single_page(self) -> bool {
        matches!(
            self,
            SectionKind::Secrets | SectionKind::Cpuid | SectionKind::KernelHashes
        )
    }
}

/// One SEV metadata section (checked: page-aligned, inside the first 4 GiB,
/// except in the error that rejects it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Its guest-physical address.
    pub gpa: u64,
    /// Its size in bytes.
    pub size: u64,
    /// What the launch does with it.
    pub kind: SectionKind,
}

/// Where OVMF expects QEMU's SEV hashes table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HashTableArea {
    /// Its guest-physical address.
    pub(super) gpa: u32,
    /// Its size in bytes.
    pub(super) size: u32,
}

/// An OVMF image with the footer entries an SEV-SNP launch needs.
#[derive(Debug)]
pub(super) struct Ovmf<'a> {
    /// The whole flash image, measured page by page.
    pub(super) image: &'a [u8],
    /// The SEV metadata sections, in the image's order.
    pub(super) sections: Vec<Section>,
    /// Where the APs start (the SEV-ES reset block).
    pub(super) ap_reset_eip: u32,
    /// The SEV hashes table area, if the footer table has one.
    pub(super) hash_table: Option<HashTableArea>,
}

impl<'a> Ovmf<'a> {
    /// Parses the footer table and the SEV metadata of `image`.
    pub(super) fn parse(image: &'a [u8]) -> Result<Self, SnpError> {
        check_image_size(image.len())?;
        let table = FooterTable::parse(image)?;
        let metadata = find_entry(&table, SEV_METADATA_GUID, "SEV metadata")?;
        let sections = parse_sev_metadata(image, metadata)?;
        let reset_block = find_entry(&table, SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")?;
        let ap_reset_eip = entry_u32(reset_block, "SEV-ES reset block")?;
        let hash_table = table
            .get(SEV_HASH_TABLE_GUID)
            .map(parse_hash_table_area)
            .transpose()?;
        Ok(Ovmf {
            image,
            sections,
            ap_reset_eip,
            hash_table,
        })
    }

    /// Where in its page QEMU writes a hashes table of `table_len` bytes,
    /// given a kernel: the table's GPA from the footer table, which must
    /// lie, whole, in an SNP_KERNEL_HASHES section (QEMU measures those
    /// pages, OVMF reads the table at that GPA).
    pub(super) fn hash_table_offset(&self, table_len: u32) -> Result<usize, SnpError> {
        let area = self.hash_table.ok_or(SnpError::NoHashTable {
            reason: "its footer table has no SEV hashes table entry".into(),
        })?;
        if area.gpa == 0 || area.size < table_len {
            return Err(SnpError::NoHashTable {
                reason: format!(
                    "its SEV hashes table area is GPA {:#x}, {} bytes; QEMU needs a non-zero GPA \
                     and at least {table_len} bytes",
                    area.gpa, area.size
                ),
            });
        }
        let hashes_sections = || {
            self.sections
                .iter()
                .filter(|section| section.kind == SectionKind::KernelHashes)
        };
        if hashes_sections().next().is_none() {
            return Err(SnpError::NoHashTable {
                reason: "its SEV metadata has no SNP_KERNEL_HASHES section".into(),
            });
        }
        let (start, end) = (
            u64::from(area.gpa),
            u64::from(area.gpa) + u64::from(table_len),
        );
        hashes_sections()
            .find(|section| section.gpa <= start && end <= section.gpa + section.size)
            .map(|section| (start - section.gpa) as usize)
            .ok_or(SnpError::HashTableOutsideSection {
                gpa: area.gpa,
                len: table_len,
            })
    }

    /// The guest-physical address the image is mapped at: it ends at 4 GiB.
    pub(super) fn gpa(&self) -> u64 {
        // `check_image_size` bounded the length by 4 GiB.
        FOUR_GIB.saturating_sub(self.image.len() as u64)
    }
}

/// The image is mapped whole below 4 GiB and measured in whole pages.
fn check_image_size(len: usize) -> Result<(), SnpError> {
    let len64 = len as u64;
    if len == 0 || len64 % PAGE_SIZE != 0 || len64 > FOUR_GIB {
        return Err(SnpError::ImageSize { len });
    }
    Ok(())
}

/// The data of the footer entry `guid`, which an SEV launch needs.
fn find_entry<'a>(
    table: &FooterTable<'a>,
    guid: Uuid,
    what: &'static str,
) -> Result<&'a [u8], SnpError> {
    table.get(guid).ok_or(SnpError::MissingEntry { what, guid })
}

/// The little-endian u32 an entry starts with.
fn entry_u32(data: &[u8], what: &'static str) -> Result<u32, SnpError> {
    Reader::new(data)
        .u32_le(what)
        .map_err(|_| SnpError::EntryData {
            what,
            expected: 4,
            found: data.len(),
        })
}

/// The SEV hashes table area: its GPA and size (`SevHashTableDescriptor`
/// in QEMU).
fn parse_hash_table_area(data: &[u8]) -> Result<HashTableArea, SnpError> {
    const WHAT: &str = "SEV hashes table";
    let mut reader = Reader::new(data);
    let area = reader
        .u32_le(WHAT)
        .and_then(|gpa| Ok((gpa, reader.u32_le(WHAT)?)));
    let (gpa, size) = area.map_err(|_| SnpError::EntryData {
        what: WHAT,
        expected: 8,
        found: data.len(),
    })?;
    Ok(HashTableArea { gpa, size })
}

/// Parses the SEV metadata ("ASEV", version 1) that the footer entry places
/// at an offset from the image's end, and checks every section.
fn parse_sev_metadata(image: &[u8], entry: &[u8]) -> Result<Vec<Section>, SnpError> {
    let offset = entry_u32(entry, "SEV metadata")?;
    let start = usize::try_from(offset)
        .ok()
        .and_then(|offset| image.len().checked_sub(offset))
        .ok_or(SnpError::MetadataOffset {
            offset,
            len: image.len(),
        })?;
    let mut reader = Reader::new(image.get(start..).unwrap_or_default());
    let signature: [u8; 4] = reader.array("SEV metadata header")?;
    let size = reader.u32_le("SEV metadata header")?;
    let version = reader.u32_le("SEV metadata header")?;
    let count = reader.u32_le("SEV metadata header")?;
    if &signature != b"ASEV" {
        return Err(SnpError::MetadataSignature { found: signature });
    }
    if version != 1 {
        return Err(SnpError::MetadataVersion { found: version });
    }
    let needed = u64::from(count) * SECTION_DESCRIPTOR_SIZE + METADATA_HEADER_SIZE as u64;
    if u64::from(size) < needed {
        return Err(SnpError::MetadataSize {
            size,
            count,
            needed,
        });
    }
    // `needed` fits a u32 count times 12 plus 16; on a 32-bit target a
    // length past usize is as truncated as one past the image.
    let descriptors = usize::try_from(needed - METADATA_HEADER_SIZE as u64).unwrap_or(usize::MAX);
    let mut descriptors = Reader::new(reader.take(descriptors, "SEV metadata sections")?);
    let mut sections = Vec::new();
    for index in 0..count {
        let gpa = descriptors.u32_le("SEV metadata section")?;
        let size = descriptors.u32_le("SEV metadata section")?;
        let kind = descriptors.u32_le("SEV metadata section")?;
        sections.push(check_section(index, gpa, size, kind)?);
    }
    Ok(sections)
}

/// A section must be of a known type, page-aligned, non-empty, end at or
/// below 4 GiB, and (secrets, CPUID, hashes) be exactly one page.
fn check_section(index: u32, gpa: u32, size: u32, kind: u32) -> Result<Section, SnpError> {
    let kind = SectionKind::from_u32(kind).ok_or(SnpError::SectionType { index, found: kind })?;
    let (gpa, size) = (u64::from(gpa), u64::from(size));
    let section = Section { gpa, size, kind };
    if gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 || size == 0 {
        return Err(SnpError::SectionUnaligned { index, section });
    }
    if gpa + size > FOUR_GIB {
        return Err(SnpError::SectionRange { index, section });
    }
    if kind.is_single_page() && size != PAGE_SIZE {
        return Err(SnpError::SectionNotOnePage { index, section });
    }
    Ok(section)
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at GPA {:#x}, {:#x} bytes",
            self.kind.name(),
            self.gpa,
            self.size
        )
    }
}
