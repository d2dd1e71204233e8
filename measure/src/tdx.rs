//! Intel TDX: the MRTD, RTMR1 and RTMR2 that a quote of the kokon worker VM
//! carries, recomputed from the VM's files.
//!
//! The VM these values hold for: QEMU 10.1 or later on a Linux 6.16+ host
//! (upstream KVM TDX), `-object tdx-guest`, q35, `-bios OVMF.fd` built from
//! edk2-stable202411 or later with TDX support (TDVF), and direct kernel boot
//! (`-kernel vmlinuz -initrd initrd.img -append CMDLINE`) of a Linux kernel
//! whose EFI stub measures through the CC measurement protocol (Debian's 6.12
//! does). Neither the memory size nor the vCPU count enters these three
//! registers: QEMU 10.1 stopped patching the kernel's setup header for
//! confidential guests, so the kernel is measured exactly as its file.
//!
//! - **MRTD** ([`mrtd`]): while QEMU builds the TD, the TDX module hashes one
//!   128-byte record per page added (`TDH.MEM.PAGE.ADD`: `"MEM.PAGE.ADD"`,
//!   the GPA at byte 16) and, for sections with the MR.EXTEND attribute, one
//!   record per 256-byte chunk (`TDH.MR.EXTEND`: `"MR.EXTEND"`, the GPA)
//!   followed by the chunk. QEMU adds the TDVF metadata's sections in their
//!   order, page by page, and KVM extends each page right after adding it.
//! - **RTMR1** ([`rtmr1_events`]): OVMF measures the kernel's PE/COFF
//!   Authenticode SHA-384 when it loads it, then at ReadyToBoot "Calling EFI
//!   Application from Boot Option" and a separator (edk2 commit efaf8931,
//!   edk2-stable202411; older OVMF put that separator into RTMR0), then the
//!   two ExitBootServices actions.
//! - **RTMR2** ([`rtmr2_events`]): the kernel's EFI stub measures the load
//!   options OVMF gives it (the command line, `" initrd=initrd"` appended when
//!   there is an initrd, as UTF-16 with its NUL) and the initrd it loads.
//! - **RTMR0** is not computed: see [`RTMR0_NOTE`].
//!
//! The firmware and the kernel are untrusted input: they are parsed with
//! checked slicing and bounded readers, and every rejection names what failed.

use kokon_attestation::tdx::{rtmr_replay, Measurement};
use kokon_bytes::{ReadError, Reader};
use sha2::digest::Output;
use sha2::{Digest, Sha384};
use thiserror::Error;
use uuid::{uuid, Uuid};

use crate::ovmf::{FooterTable, FooterTableError};
use crate::Register;

/// Why RTMR0 is not among the [`expected`] registers, for `kokon audit
/// measure` to print.
pub const RTMR0_NOTE: &str = "RTMR0 is not recomputed: OVMF extends into it the TD HOB (built by QEMU \
from the VM's memory size), the configuration firmware volume, the Secure Boot and boot variables, \
(depending on the OVMF version) QEMU's fw_cfg boot order, and the ACPI tables QEMU generates for \
the VM's shape (vCPUs, memory, devices, QEMU version). Take RTMR0 from a trusted first boot: replay that boot's event log against \
its quote with `kokon audit eventlog LOG --quote QUOTE`, check each RTMR0 event, and pin the value.";

/// Why a TDX measurement could not be computed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TdxError {
    /// The firmware file as a whole (its size, its TDX metadata entry).
    #[error("OVMF image: {0}")]
    Firmware(String),
    /// The firmware's footer GUID table is malformed.
    #[error(transparent)]
    FooterTable(#[from] FooterTableError),
    /// The TDVF metadata descriptor or one of its sections.
    #[error("TDVF metadata: {0}")]
    Metadata(String),
    /// The kernel is not a PE/COFF image OVMF measures as Authenticode.
    #[error("kernel PE/COFF image: {0}")]
    Kernel(String),
    /// The kernel command line cannot be measured as modelled here.
    #[error("kernel command line: {0}")]
    Cmdline(String),
}

/// The files (and what else decides the values) of the worker VM.
#[derive(Debug, Clone, Copy)]
pub struct TdxInputs<'a> {
    /// The TDVF firmware, `-bios OVMF.fd`.
    pub ovmf: &'a [u8],
    /// The kernel, `-kernel vmlinuz` (an EFI stub, PE/COFF image).
    pub kernel: &'a [u8],
    /// The initrd, `-initrd initrd.img` (empty: none).
    pub initrd: &'a [u8],
    /// The command line, `-append CMDLINE`, as given to QEMU.
    pub cmdline: &'a str,
}

/// The registers a quote of this VM must carry: `mrtd`, `rtmr1`, `rtmr2`,
/// each with how it was computed. RTMR0 is left out ([`RTMR0_NOTE`]).
pub fn expected(inputs: &TdxInputs) -> Result<Vec<Register>, TdxError> {
    let sections = tdvf_sections(inputs.ovmf)?;
    let mrtd = mrtd_of(inputs.ovmf, &sections)?;
    let mut explanation = vec![
        "SHA-384 over the TDX module's records as QEMU adds the TDVF sections in metadata order, \
         page by page: MEM.PAGE.ADD(GPA), then for MR.EXTEND sections 16 x (MR.EXTEND(GPA), 256 \
         bytes of the page)"
            .to_string(),
    ];
    explanation.extend(sections.iter().enumerate().map(|(i, s)| s.describe(i)));
    Ok(vec![
        Register {
            name: "mrtd",
            value: mrtd.to_vec(),
            explanation,
        },
        rtmr_register("rtmr1", &rtmr1_events(inputs.kernel)?),
        rtmr_register("rtmr2", &rtmr2_events(inputs.cmdline, inputs.initrd)?),
    ])
}

/// The register an event sequence replays to from zero, explained event by
/// event.
pub fn rtmr_register(name: &'static str, events: &[Event]) -> Register {
    let mut explanation = vec![format!(
        "{} events extended from zero, each RTMR = SHA-384(RTMR || digest):",
        events.len()
    )];
    explanation.extend(events.iter().enumerate().map(|(i, e)| {
        let kind = kokon_attestation::eventlog::event_type_name(e.event_type).unwrap_or("?");
        format!("{}. {kind}: {} = {}", i + 1, e.what, hex::encode(e.digest))
    }));
    Register {
        name,
        value: rtmr_replay(events.iter().map(|e| &e.digest)).to_vec(),
        explanation,
    }
}

// ---------------------------------------------------------------------------
// MRTD from the TDVF metadata.
// ---------------------------------------------------------------------------

/// Section types of the TDVF design guide (and td-shim), by value.
const SECTION_TYPES: &[&str] = &[
    "BFV",
    "CFV",
    "TD_HOB",
    "TempMem",
    "PermMem",
    "Payload",
    "PayloadParam",
    "TdInfo",
];
const BFV: u32 = 0;
const CFV: u32 = 1;
const TD_HOB: u32 = 2;
const TEMP_MEM: u32 = 3;
/// Section attribute: the host measures the section's content into MRTD.
const MR_EXTEND: u32 = 0x1;
/// Section attribute: the guest accepts these pages itself.
const PAGE_AUG: u32 = 0x2;

/// The GUID table entry holding the TDVF metadata's offset from the end of
/// the image.
const TDX_METADATA_GUID: Uuid = uuid!("e47a6535-984a-4798-865e-4685a7bf8ec2");
/// QEMU loads `-bios` only in whole 64 KiB units.
const FIRMWARE_ALIGNMENT: usize = 64 * 1024;
/// The TDVF descriptor before its sections, and one section.
const DESCRIPTOR_LEN: u64 = 16;
const SECTION_LEN: u64 = 32;
const PAGE: u64 = 4096;
/// `TDH.MR.EXTEND` measures 256 bytes at a time.
const CHUNK: usize = 256;
/// Most guest memory the sections may add: OVMF's add up to a few MiB, and
/// this bounds the work an invented metadata can ask for.
const MAX_SECTION_MEMORY: u64 = 256 << 20;

/// One section of the TDVF metadata (TDVF design guide, section 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Where its content starts in the firmware image.
    pub data_offset: u32,
    /// How many bytes of the image it holds.
    pub raw_data_size: u32,
    /// Its guest-physical address.
    pub memory_address: u64,
    /// How much guest memory it takes.
    pub memory_data_size: u64,
    /// BFV (0), CFV (1), TD_HOB (2), TempMem (3), ...
    pub section_type: u32,
    /// MR.EXTEND (1), PAGE.AUG (2).
    pub attributes: u32,
}

impl TdvfSection {
    /// The section type's name in the TDVF design guide.
    pub fn type_name(&self) -> String {
        usize::try_from(self.section_type)
            .ok()
            .and_then(|t| SECTION_TYPES.get(t))
            .map_or_else(|| format!("type {}", self.section_type), |n| n.to_string())
    }

    /// Whether the host measures its content into MRTD.
    pub fn extends(&self) -> bool {
        self.attributes & MR_EXTEND != 0
    }

    /// Its pages (memory size / 4 KiB).
    pub fn pages(&self) -> u64 {
        self.memory_data_size / PAGE
    }

    /// One line for `kokon audit measure`.
    fn describe(&self, index: usize) -> String {
        let source = if self.raw_data_size == 0 {
            "no image bytes".to_string()
        } else {
            format!("image {:#x}+{:#x}", self.data_offset, self.raw_data_size)
        };
        let measured = if self.extends() {
            format!(
                "MR.EXTEND: {} pages added, {} chunks extended",
                self.pages(),
                self.pages() * (PAGE / CHUNK as u64)
            )
        } else {
            format!("{} pages added, content not measured", self.pages())
        };
        format!(
            "section {index}: {}, {source} -> GPA {:#x}+{:#x}, attributes {:#x}, {measured}",
            self.type_name(),
            self.memory_address,
            self.memory_data_size,
            self.attributes
        )
    }
}

/// The MRTD of a TD that QEMU builds from this TDVF image.
pub fn mrtd(ovmf: &[u8]) -> Result<[u8; 48], TdxError> {
    mrtd_of(ovmf, &tdvf_sections(ovmf)?)
}

/// The TDVF metadata's sections, each checked as QEMU 10.1 checks it, and
/// against the image and each other.
pub fn tdvf_sections(ovmf: &[u8]) -> Result<Vec<TdvfSection>, TdxError> {
    let size = ovmf.len();
    if size == 0 || size % FIRMWARE_ALIGNMENT != 0 {
        return Err(TdxError::Firmware(format!(
            "size {size:#x} is not a non-zero multiple of 64 KiB, which QEMU requires of -bios"
        )));
    }
    let entry = FooterTable::parse(ovmf)?
        .get(TDX_METADATA_GUID)
        .ok_or_else(|| {
            TdxError::Firmware(format!(
                "the GUID table has no TDX metadata entry ({}): not a TDVF (OVMF with TDX) image",
                TDX_METADATA_GUID
            ))
        })?;
    let from_end = match entry.get(..4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => {
            return Err(TdxError::Firmware(format!(
                "the TDX metadata entry holds {} bytes, expected a 4-byte offset",
                entry.len()
            )))
        }
    };
    let start = usize::try_from(from_end)
        .ok()
        .and_then(|from_end| size.checked_sub(from_end))
        .ok_or_else(|| {
            TdxError::Metadata(format!(
                "offset {from_end:#x} from the end lies before the start of the image ({size:#x})"
            ))
        })?;
    let mut r = Reader::new(ovmf.get(start..).unwrap_or_default());
    let signature = r.array::<4>("descriptor signature").map_err(metadata)?;
    if &signature != b"TDVF" {
        return Err(TdxError::Metadata(format!(
            "descriptor at {start:#x}: signature {}, expected \"TDVF\"",
            hex::encode(signature)
        )));
    }
    let length = r.u32_le("descriptor length").map_err(metadata)?;
    let version = r.u32_le("descriptor version").map_err(metadata)?;
    let count = r.u32_le("descriptor section count").map_err(metadata)?;
    if start as u64 + u64::from(length) > size as u64 {
        return Err(TdxError::Metadata(format!(
            "descriptor at {start:#x} of length {length:#x} runs past the image ({size:#x})"
        )));
    }
    if version != 1 {
        return Err(TdxError::Metadata(format!(
            "descriptor version {version}, expected 1"
        )));
    }
    if count < 2 {
        return Err(TdxError::Metadata(format!(
            "{count} sections, QEMU requires at least 2"
        )));
    }
    let needed = DESCRIPTOR_LEN + SECTION_LEN * u64::from(count);
    if needed != u64::from(length) {
        return Err(TdxError::Metadata(format!(
            "{count} sections take {needed:#x} bytes with the descriptor, but its length is \
             {length:#x}"
        )));
    }
    let mut sections = Vec::new();
    for index in 0..count {
        let section = TdvfSection {
            data_offset: r.u32_le("section data offset").map_err(metadata)?,
            raw_data_size: r.u32_le("section raw data size").map_err(metadata)?,
            memory_address: r.u64_le("section memory address").map_err(metadata)?,
            memory_data_size: r.u64_le("section memory data size").map_err(metadata)?,
            section_type: r.u32_le("section type").map_err(metadata)?,
            attributes: r.u32_le("section attributes").map_err(metadata)?,
        };
        check_section(index, &section, size)?;
        sections.push(section);
    }
    check_layout(&sections)?;
    Ok(sections)
}

/// One section's own checks: QEMU's (`hw/i386/tdvf.c`), then those this model
/// adds (the content lies in the image, only what it models).
fn check_section(index: u32, s: &TdvfSection, image: usize) -> Result<(), TdxError> {
    let name = s.type_name();
    let fail = |what: String| {
        Err(TdxError::Metadata(format!(
            "section {index} ({name}): {what}"
        )))
    };
    if s.memory_data_size < u64::from(s.raw_data_size) {
        return fail(format!(
            "memory size {:#x} is smaller than its raw data size {:#x}",
            s.memory_data_size, s.raw_data_size
        ));
    }
    if s.memory_address % PAGE != 0 {
        return fail(format!("GPA {:#x} is not 4 KiB aligned", s.memory_address));
    }
    if s.memory_data_size % PAGE != 0 {
        return fail(format!(
            "memory size {:#x} is not a multiple of 4 KiB",
            s.memory_data_size
        ));
    }
    if s.memory_address.checked_add(s.memory_data_size).is_none() {
        return fail(format!(
            "GPA {:#x} + size {:#x} overflows",
            s.memory_address, s.memory_data_size
        ));
    }
    if s.attributes & !MR_EXTEND != 0 {
        let aug = if s.attributes & PAGE_AUG != 0 {
            " (PAGE.AUG)"
        } else {
            ""
        };
        return fail(format!(
            "attributes {:#x}{aug}: only MR.EXTEND (0x1) is modelled",
            s.attributes
        ));
    }
    match s.section_type {
        BFV | CFV => {
            if s.raw_data_size == 0 {
                return fail("no raw data, QEMU requires it of BFV and CFV".into());
            }
            if s.memory_data_size != u64::from(s.raw_data_size) {
                return fail(format!(
                    "memory size {:#x} differs from its raw data size {:#x}: QEMU would copy \
                     image bytes past the section, which is not modelled",
                    s.memory_data_size, s.raw_data_size
                ));
            }
            let end = u64::from(s.data_offset) + u64::from(s.raw_data_size);
            if end > image as u64 {
                return fail(format!(
                    "runs past the image (offset {:#x}, size {:#x}, image {image:#x})",
                    s.data_offset, s.raw_data_size
                ));
            }
        }
        TD_HOB | TEMP_MEM => {
            if s.raw_data_size != 0 {
                return fail(format!(
                    "raw data size {:#x}, QEMU requires 0 of TD_HOB and TempMem",
                    s.raw_data_size
                ));
            }
            if s.extends() {
                return fail(
                    "MR.EXTEND on memory whose content QEMU makes at launch is not modelled".into(),
                );
            }
        }
        _ => {
            return fail("QEMU 10.1 accepts only BFV, CFV, TD_HOB and TempMem sections".to_string())
        }
    }
    Ok(())
}

/// Checks across sections: a TD HOB, no two on the same guest memory, and
/// a bounded total.
fn check_layout(sections: &[TdvfSection]) -> Result<(), TdxError> {
    if !sections.iter().any(|s| s.section_type == TD_HOB) {
        return Err(TdxError::Metadata(
            "no TD_HOB section, which QEMU requires".into(),
        ));
    }
    let total: u64 = sections
        .iter()
        .map(|s| s.memory_data_size)
        .fold(0, u64::saturating_add);
    if total > MAX_SECTION_MEMORY {
        return Err(TdxError::Metadata(format!(
            "the sections take {total:#x} bytes of guest memory, more than the {MAX_SECTION_MEMORY:#x} \
             this model accepts"
        )));
    }
    let mut ranges: Vec<(u64, u64, usize)> = sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.memory_data_size > 0)
        .map(|(i, s)| (s.memory_address, s.memory_address + s.memory_data_size, i))
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if let [(a_start, a_end, a), (b_start, b_end, b)] = pair {
            if b_start < a_end {
                return Err(TdxError::Metadata(format!(
                    "sections {a} and {b} overlap in guest memory ({a_start:#x}..{a_end:#x} and \
                     {b_start:#x}..{b_end:#x})"
                )));
            }
        }
    }
    Ok(())
}

/// The MRTD of checked sections.
fn mrtd_of(ovmf: &[u8], sections: &[TdvfSection]) -> Result<[u8; 48], TdxError> {
    let mut mrtd = Sha384::new();
    for (index, s) in sections.iter().enumerate() {
        for page in 0..s.pages() {
            let gpa = s.memory_address + page * PAGE;
            mrtd.update(record(b"MEM.PAGE.ADD", gpa));
            if !s.extends() {
                continue;
            }
            let start = u64::from(s.data_offset) + page * PAGE;
            let content = usize::try_from(start)
                .ok()
                .and_then(|start| ovmf.get(start..start.checked_add(PAGE as usize)?))
                .ok_or_else(|| {
                    TdxError::Metadata(format!(
                        "section {index}: page at image offset {start:#x} lies past the image"
                    ))
                })?;
            for (i, chunk) in content.chunks(CHUNK).enumerate() {
                mrtd.update(record(b"MR.EXTEND", gpa + (i * CHUNK) as u64));
                mrtd.update(chunk);
            }
        }
    }
    Ok(digest48(mrtd))
}

/// A 128-byte record the TDX module hashes into MRTD: the operation's name,
/// the GPA at byte 16, zeros.
fn record(operation: &[u8], gpa: u64) -> [u8; 128] {
    let mut out = [0u8; 128];
    let (name, rest) = out.split_at_mut(16);
    name.iter_mut().zip(operation).for_each(|(d, s)| *d = *s);
    rest.iter_mut()
        .zip(gpa.to_le_bytes())
        .for_each(|(d, s)| *d = s);
    out
}

/// A reader error while reading the TDVF descriptor.
fn metadata(e: ReadError) -> TdxError {
    TdxError::Metadata(e.to_string())
}

// ---------------------------------------------------------------------------
// RTMR1 and RTMR2: the events of a direct kernel boot.
// ---------------------------------------------------------------------------

/// TCG event types of the events below.
const EV_SEPARATOR: u32 = 0x4;
const EV_EVENT_TAG: u32 = 0x6;
const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
const EV_EFI_ACTION: u32 = 0x8000_0007;
/// The Linux EFI stub's tagged events (`drivers/firmware/efi/libstub`).
const INITRD_EVENT_TAG_ID: u32 = 0x8f3b_22ec;
const LOAD_OPTIONS_EVENT_TAG_ID: u32 = 0x8f3b_22ed;
/// What OVMF (`X86QemuLoadImageLib`) appends to the command line when QEMU
/// has an initrd.
const INITRD_OPTION: &str = " initrd=initrd";

/// One event extended into an RTMR during boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The RTMR (1 or 2).
    pub rtmr: usize,
    /// The TCG event type.
    pub event_type: u32,
    /// What was measured, for people.
    pub what: String,
    /// The SHA-384 digest extended.
    pub digest: Measurement,
    /// The event data as the event log records it, where it does not depend
    /// on the boot (the kernel's event records load addresses: `None`).
    pub log_data: Option<Vec<u8>>,
}

/// RTMR1's events: the kernel's Authenticode digest when OVMF loads it, then
/// OVMF's ReadyToBoot and ExitBootServices events.
pub fn rtmr1_events(kernel: &[u8]) -> Result<Vec<Event>, TdxError> {
    let mut digest = [0u8; 48];
    digest.copy_from_slice(&authenticode::<Sha384>(kernel)?);
    Ok(vec![
        Event {
            rtmr: 1,
            event_type: EV_EFI_BOOT_SERVICES_APPLICATION,
            what: format!(
                "the kernel's PE/COFF Authenticode SHA-384 ({} bytes), as OVMF loads it",
                kernel.len()
            ),
            digest,
            log_data: None,
        },
        action("Calling EFI Application from Boot Option"),
        Event {
            rtmr: 1,
            event_type: EV_SEPARATOR,
            what: "separator 00000000 (OVMF at ReadyToBoot)".into(),
            digest: sha384(&[0; 4]),
            log_data: Some(vec![0; 4]),
        },
        action("Exit Boot Services Invocation"),
        action("Exit Boot Services Returned with Success"),
    ])
}

/// RTMR2's events, as the kernel's EFI stub measures them: the load options
/// (when there are any), then the initrd (when there is one).
pub fn rtmr2_events(cmdline: &str, initrd: &[u8]) -> Result<Vec<Event>, TdxError> {
    let options = load_options(cmdline, !initrd.is_empty())?;
    let mut events = Vec::new();
    if !options.is_empty() {
        events.push(tagged(
            LOAD_OPTIONS_EVENT_TAG_ID,
            "LOADED_IMAGE::LoadOptions",
            format!(
                "the load options \"{cmdline}{}\" as UTF-16 with its NUL ({} bytes)",
                if initrd.is_empty() { "" } else { INITRD_OPTION },
                options.len()
            ),
            &options,
        ));
    }
    if !initrd.is_empty() {
        events.push(tagged(
            INITRD_EVENT_TAG_ID,
            "Linux initrd",
            format!("the initrd ({} bytes)", initrd.len()),
            initrd,
        ));
    }
    Ok(events)
}

/// The `LoadOptions` OVMF hands the kernel (`X86QemuLoadImageLib`): QEMU's
/// command line, `" initrd=initrd"` when there is an initrd, each byte
/// widened to a UTF-16 code unit (edk2's `%a`), and a NUL. Empty when both
/// are (OVMF then passes none).
pub fn load_options(cmdline: &str, initrd: bool) -> Result<Vec<u8>, TdxError> {
    if cmdline.contains('\0') {
        return Err(TdxError::Cmdline(
            "contains a NUL byte, which QEMU's C string cannot carry".into(),
        ));
    }
    if initrd && cmdline.split_ascii_whitespace().any(|p| p == "noinitrd") {
        return Err(TdxError::Cmdline(
            "has noinitrd with an initrd: the EFI stub then neither loads nor measures it, \
             which is not modelled"
                .into(),
        ));
    }
    let suffix = if initrd { INITRD_OPTION } else { "" };
    if cmdline.is_empty() && suffix.is_empty() {
        return Ok(Vec::new());
    }
    Ok(cmdline
        .bytes()
        .chain(suffix.bytes())
        .chain([0])
        .flat_map(|b| [b, 0])
        .collect())
}

/// An `EV_EFI_ACTION` event OVMF extends into RTMR1.
fn action(text: &str) -> Event {
    Event {
        rtmr: 1,
        event_type: EV_EFI_ACTION,
        what: format!("\"{text}\""),
        digest: sha384(text.as_bytes()),
        log_data: Some(text.as_bytes().to_vec()),
    }
}

/// An `EV_EVENT_TAG` event of the EFI stub: the digest of `measured`, the
/// data a `TCG_PCClientTaggedEvent` (ID, size, the NUL-terminated name).
fn tagged(id: u32, name: &str, what: String, measured: &[u8]) -> Event {
    let mut data = id.to_le_bytes().to_vec();
    data.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    data.extend_from_slice(name.as_bytes());
    data.push(0);
    Event {
        rtmr: 2,
        event_type: EV_EVENT_TAG,
        what,
        digest: sha384(measured),
        log_data: Some(data),
    }
}

fn sha384(data: &[u8]) -> Measurement {
    digest48(Sha384::new_with_prefix(data))
}

fn digest48(hash: Sha384) -> Measurement {
    let mut out = [0u8; 48];
    out.copy_from_slice(&hash.finalize());
    out
}

// ---------------------------------------------------------------------------
// The kernel's PE/COFF Authenticode digest, as edk2 computes it.
// ---------------------------------------------------------------------------

/// Offsets in the optional header (the same in PE32 and PE32+).
const OPT_SIZE_OF_HEADERS: u64 = 60;
const OPT_CHECKSUM: u64 = 64;
const OPT_SUBSYSTEM: u64 = 68;
/// The subsystem of an EFI application (the Linux EFI stub is one).
const EFI_APPLICATION: u16 = 10;
/// The certificate table's data directory entry.
const DIRECTORY_SECURITY: u64 = 4;
const SECTION_HEADER_LEN: u64 = 40;

/// The Authenticode digest of a PE/COFF image, as edk2 measures one it loads
/// (`MeasurePeImageAndExtend`, the PE/COFF specification's algorithm): the
/// headers without the checksum and the certificate table's directory entry,
/// each section's raw data in file order, then what follows the sections
/// except the certificate table.
pub fn authenticode<D: Digest>(image: &[u8]) -> Result<Output<D>, TdxError> {
    if image.get(..2) != Some(b"MZ") {
        return Err(TdxError::Kernel(
            "no MZ signature at offset 0: not a PE/COFF (EFI stub) image".into(),
        ));
    }
    let pe = u64::from(le_u32(image, 0x3c, "e_lfanew")?);
    let signature = slice(image, pe, 4, "PE signature")?;
    if signature != b"PE\0\0" {
        return Err(TdxError::Kernel(format!(
            "no PE signature at e_lfanew {pe:#x}: found {}",
            hex::encode(signature)
        )));
    }
    let coff = pe + 4;
    let section_count = u64::from(le_u16(image, coff + 2, "NumberOfSections")?);
    let optional_size = u64::from(le_u16(image, coff + 16, "SizeOfOptionalHeader")?);
    let optional = coff + 20;
    let (count_at, directories) = match le_u16(image, optional, "optional header magic")? {
        0x10b => (optional + 92, optional + 96),
        0x20b => (optional + 108, optional + 112),
        magic => {
            return Err(TdxError::Kernel(format!(
                "optional header magic {magic:#06x}, expected 0x10b (PE32) or 0x20b (PE32+)"
            )))
        }
    };
    let headers_len = u64::from(le_u32(
        image,
        optional + OPT_SIZE_OF_HEADERS,
        "SizeOfHeaders",
    )?);
    let directory_count = u64::from(le_u32(image, count_at, "NumberOfRvaAndSizes")?);
    // edk2's PE/COFF loader takes only an optional header that ends right
    // after its data directories; it would not load (nor measure) another.
    let directories_end = directories + 8 * directory_count;
    if directory_count > 16 || directories_end != optional + optional_size {
        return Err(TdxError::Kernel(format!(
            "{directory_count} data directories end the optional header at {:#x} bytes, but \
             SizeOfOptionalHeader is {optional_size:#x}",
            directories_end - optional
        )));
    }
    let subsystem = le_u16(image, optional + OPT_SUBSYSTEM, "Subsystem")?;
    if subsystem != EFI_APPLICATION {
        return Err(TdxError::Kernel(format!(
            "subsystem {subsystem}, expected {EFI_APPLICATION} (EFI application), which OVMF \
             measures as EV_EFI_BOOT_SERVICES_APPLICATION"
        )));
    }
    let headers = slice(image, 0, headers_len, "the headers (SizeOfHeaders)")?;
    let checksum = optional + OPT_CHECKSUM;
    let certificate_entry = directories + 8 * DIRECTORY_SECURITY;
    // The fields left out of the hash: the checksum, and the certificate
    // table's directory entry when there is one.
    let (skipped, certificate_size) = if directory_count > DIRECTORY_SECURITY {
        let size = le_u32(image, certificate_entry + 4, "certificate table size")?;
        (vec![(checksum, 4), (certificate_entry, 8)], u64::from(size))
    } else {
        (vec![(checksum, 4)], 0)
    };
    let skipped_end = skipped.last().map_or(0, |(at, len)| at + len);
    if headers_len < skipped_end {
        return Err(TdxError::Kernel(format!(
            "SizeOfHeaders {headers_len:#x} ends inside the optional header (before {skipped_end:#x})"
        )));
    }
    let mut hash = D::new();
    let mut from = 0;
    for (at, len) in skipped.iter().copied().chain([(headers_len, 0)]) {
        hash.update(slice(headers, from, at - from, "the headers")?);
        from = at + len;
    }

    let table_at = optional + optional_size;
    let table = slice(
        image,
        table_at,
        section_count * SECTION_HEADER_LEN,
        "the section table",
    )?;
    let mut sections = Vec::new();
    for (index, header) in table.chunks(SECTION_HEADER_LEN as usize).enumerate() {
        let size = u64::from(le_u32(header, 16, "SizeOfRawData")?);
        let pointer = u64::from(le_u32(header, 20, "PointerToRawData")?);
        if size == 0 {
            continue;
        }
        let name = String::from_utf8_lossy(header.get(..8).unwrap_or_default())
            .trim_end_matches('\0')
            .to_string();
        let data = image
            .get(usize::try_from(pointer).unwrap_or(usize::MAX)..)
            .and_then(|rest| rest.get(..usize::try_from(size).ok()?))
            .ok_or_else(|| {
                TdxError::Kernel(format!(
                    "section {index} ({name}): raw data {pointer:#x}+{size:#x} runs past the \
                     image ({:#x})",
                    image.len()
                ))
            })?;
        sections.push((pointer, data));
    }
    // edk2 sorts by file offset with a stable insertion sort.
    sections.sort_by_key(|(pointer, _)| *pointer);
    let mut hashed = headers_len;
    for (_, data) in &sections {
        hash.update(data);
        hashed += data.len() as u64;
    }
    let len = image.len() as u64;
    if len > hashed {
        match (hashed + certificate_size).cmp(&len) {
            std::cmp::Ordering::Less => {
                let extra = len - certificate_size - hashed;
                hash.update(slice(image, hashed, extra, "the data after the sections")?);
            }
            std::cmp::Ordering::Greater => {
                return Err(TdxError::Kernel(format!(
                    "the certificate table ({certificate_size:#x} bytes) does not fit after the \
                     {hashed:#x} bytes of headers and sections in the image ({len:#x}): edk2 \
                     refuses to measure it"
                )))
            }
            std::cmp::Ordering::Equal => {}
        }
    }
    Ok(hash.finalize())
}

/// `len` bytes of `bytes` at `offset`, or an error naming `what`.
fn slice<'a>(bytes: &'a [u8], offset: u64, len: u64, what: &str) -> Result<&'a [u8], TdxError> {
    usize::try_from(offset)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(offset, len)| bytes.get(offset..offset.checked_add(len)?))
        .ok_or_else(|| {
            TdxError::Kernel(format!(
                "{what} at {offset:#x} ({len:#x} bytes) lies past the end ({:#x})",
                bytes.len()
            ))
        })
}

fn le_u16(bytes: &[u8], offset: u64, what: &str) -> Result<u16, TdxError> {
    match slice(bytes, offset, 2, what)? {
        &[a, b] => Ok(u16::from_le_bytes([a, b])),
        _ => Err(TdxError::Kernel(format!("{what}: not 2 bytes"))),
    }
}

fn le_u32(bytes: &[u8], offset: u64, what: &str) -> Result<u32, TdxError> {
    match slice(bytes, offset, 4, what)? {
        &[a, b, c, d] => Ok(u32::from_le_bytes([a, b, c, d])),
        _ => Err(TdxError::Kernel(format!("{what}: not 4 bytes"))),
    }
}
