//! The TDX event log (the ACPI CCEL table's log area): what the firmware and
//! boot loader extended into RTMR0-2, event by event, in the TCG crypto-agile
//! format (TCG PC Client Platform Firmware Profile, section 10.2: a
//! `TCG_PCClientPCREvent` header carrying the "Spec ID Event03", then
//! `TCG_PCR_EVENT2` records). The register index is the UEFI CC
//! measurement-register index: 1 = RTMR0, 2 = RTMR1, 3 = RTMR2, 4 = RTMR3.
//!
//! An auditor replays the log to check the quote's RTMRs and then reads
//! *which* firmware, kernel, command line and initrd produced them.

use kokon_bytes::Reader;
use sha2::{Digest, Sha384};

use crate::tdx::{rtmr_extend, Measurement};
use crate::Error;

/// TCG algorithm ID of SHA-384.
const TPM_ALG_SHA384: u16 = 0x000c;
/// Event type of events that are logged but not extended.
const EV_NO_ACTION: u32 = 0x3;
/// Most events accepted in one log.
const MAX_EVENTS: usize = 16 * 1024;
/// Largest single event accepted.
const MAX_EVENT_DATA: u32 = 1 << 20;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The CC measurement register index (1 = RTMR0 ... 4 = RTMR3).
    pub mr_index: u32,
    /// The TCG event type.
    pub event_type: u32,
    /// The SHA-384 digest extended.
    pub digest: Measurement,
    /// The event data (what was measured, as the firmware describes it).
    pub data: Vec<u8>,
}

/// The event types of the TCG PC Client Platform Firmware Profile (version
/// 1.06, section 10.4.1, with the TCG EFI Platform specification's EFI
/// range), by value.
const EVENT_TYPES: &[(u32, &str)] = &[
    (0x0000_0000, "EV_PREBOOT_CERT"),
    (0x0000_0001, "EV_POST_CODE"),
    (0x0000_0002, "EV_UNUSED"),
    (0x0000_0003, "EV_NO_ACTION"),
    (0x0000_0004, "EV_SEPARATOR"),
    (0x0000_0005, "EV_ACTION"),
    (0x0000_0006, "EV_EVENT_TAG"),
    (0x0000_0007, "EV_S_CRTM_CONTENTS"),
    (0x0000_0008, "EV_S_CRTM_VERSION"),
    (0x0000_0009, "EV_CPU_MICROCODE"),
    (0x0000_000a, "EV_PLATFORM_CONFIG_FLAGS"),
    (0x0000_000b, "EV_TABLE_OF_DEVICES"),
    (0x0000_000c, "EV_COMPACT_HASH"),
    (0x0000_000d, "EV_IPL"),
    (0x0000_000e, "EV_IPL_PARTITION_DATA"),
    (0x0000_000f, "EV_NONHOST_CODE"),
    (0x0000_0010, "EV_NONHOST_CONFIG"),
    (0x0000_0011, "EV_NONHOST_INFO"),
    (0x0000_0012, "EV_OMIT_BOOT_DEVICE_EVENTS"),
    (0x0000_0013, "EV_POST_CODE2"),
    (0x8000_0000, "EV_EFI_EVENT_BASE"),
    (0x8000_0001, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
    (0x8000_0002, "EV_EFI_VARIABLE_BOOT"),
    (0x8000_0003, "EV_EFI_BOOT_SERVICES_APPLICATION"),
    (0x8000_0004, "EV_EFI_BOOT_SERVICES_DRIVER"),
    (0x8000_0005, "EV_EFI_RUNTIME_SERVICES_DRIVER"),
    (0x8000_0006, "EV_EFI_GPT_EVENT"),
    (0x8000_0007, "EV_EFI_ACTION"),
    (0x8000_0008, "EV_EFI_PLATFORM_FIRMWARE_BLOB"),
    (0x8000_0009, "EV_EFI_HANDOFF_TABLES"),
    (0x8000_000a, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"),
    (0x8000_000b, "EV_EFI_HANDOFF_TABLES2"),
    (0x8000_000c, "EV_EFI_VARIABLE_BOOT2"),
    (0x8000_000d, "EV_EFI_GPT_EVENT2"),
    (0x8000_0010, "EV_EFI_HCRTM_EVENT"),
    (0x8000_00e0, "EV_EFI_VARIABLE_AUTHORITY"),
    (0x8000_00e1, "EV_EFI_SPDM_FIRMWARE_BLOB"),
    (0x8000_00e2, "EV_EFI_SPDM_FIRMWARE_CONFIG"),
    (0x8000_00e3, "EV_EFI_SPDM_DEVICE_POLICY"),
    (0x8000_00e4, "EV_EFI_SPDM_DEVICE_AUTHORITY"),
];

/// The TCG name of an event type, if the specification names it.
pub fn event_type_name(event_type: u32) -> Option<&'static str> {
    EVENT_TYPES
        .iter()
        .find(|(value, _)| *value == event_type)
        .map(|(_, name)| *name)
}

impl Event {
    /// The TCG name of the event type, or `unknown (0x…)` with its value.
    pub fn type_name(&self) -> String {
        match event_type_name(self.event_type) {
            Some(name) => name.into(),
            None => format!("unknown ({:#010x})", self.event_type),
        }
    }

    /// The event data as text, when it is text: UTF-8 without control
    /// characters other than line breaks and tabs, once the NUL bytes that
    /// C strings end with are removed (a kernel command line, a GRUB
    /// command, an EFI action). Binary data (UEFI structures, separators)
    /// gives `None`.
    pub fn text(&self) -> Option<&str> {
        let end = self.data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let text = std::str::from_utf8(self.data.get(..end)?).ok()?;
        let printable = text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
        (!text.is_empty() && printable).then_some(text)
    }

    /// The RTMR this event extends (0-3), if any.
    pub fn rtmr(&self) -> Option<usize> {
        match (self.event_type, self.mr_index) {
            (EV_NO_ACTION, _) => None,
            (_, i @ 1..=4) => Some(i as usize - 1),
            _ => None,
        }
    }
}

/// Parses an event log. The log area is usually padded (0x00 or 0xFF) after
/// the last event; parsing stops there.
pub fn parse(log: &[u8]) -> Result<Vec<Event>, Error> {
    let mut r = Reader::new(log);
    // Header: TCG_PCClientPCREvent with a SHA-1-sized digest field.
    r.u32_le("event log header: MR index")?;
    let header_type = r.u32_le("event log header: type")?;
    if header_type != EV_NO_ACTION {
        return Err(Error::Unsupported {
            field: "event log header type",
            expected: "3 (EV_NO_ACTION, Spec ID Event03)".into(),
            found: header_type.to_string(),
        });
    }
    r.take(20, "event log header: digest")?;
    let size = r.u32_le("event log header: size")?;
    let mut spec = r.sub(size, "event log header: Spec ID event")?;
    let signature = spec.take(16, "Spec ID event: signature")?;
    if signature != b"Spec ID Event03\0" {
        return Err(Error::Unsupported {
            field: "event log format",
            expected: "Spec ID Event03 (crypto-agile)".into(),
            found: String::from_utf8_lossy(signature).into_owned(),
        });
    }
    spec.take(4 + 4, "Spec ID event: class and version")?;
    let algorithms = spec.u32_le("Spec ID event: algorithm count")?;
    let mut sizes = Vec::new();
    for _ in 0..algorithms.min(16) {
        let id = spec.u16_le("Spec ID event: algorithm ID")?;
        let size = spec.u16_le("Spec ID event: digest size")?;
        sizes.push((id, usize::from(size)));
    }
    if !sizes
        .iter()
        .any(|(id, size)| *id == TPM_ALG_SHA384 && *size == 48)
    {
        return Err(Error::Unsupported {
            field: "event log algorithms",
            expected: "SHA-384".into(),
            found: format!("{sizes:?}"),
        });
    }

    let mut events = Vec::new();
    while r.remaining() >= 8 {
        let rest = log.get(r.offset()..).unwrap_or_default();
        if rest.iter().all(|b| *b == 0) || rest.iter().all(|b| *b == 0xff) {
            break;
        }
        let mr_index = r.u32_le("event: MR index")?;
        let event_type = r.u32_le("event: type")?;
        if mr_index == u32::MAX || event_type == u32::MAX {
            break;
        }
        if events.len() == MAX_EVENTS {
            return Err(Error::TooLarge { what: "event log" });
        }
        let count = r.u32_le("event: digest count")?;
        let mut digest = None;
        for _ in 0..count {
            let id = r.u16_le("event: algorithm ID")?;
            let size = sizes
                .iter()
                .find(|(a, _)| *a == id)
                .map(|(_, s)| *s)
                .ok_or_else(|| Error::Unsupported {
                    field: "event digest algorithm",
                    expected: format!("{:?}", sizes.iter().map(|(a, _)| a).collect::<Vec<_>>()),
                    found: format!("{id:#06x}"),
                })?;
            let bytes = r.take(size, "event: digest")?;
            if id == TPM_ALG_SHA384 {
                let mut d = [0u8; 48];
                d.copy_from_slice(bytes);
                digest = Some(d);
            }
        }
        let size = r.u32_le("event: data size")?;
        if size > MAX_EVENT_DATA {
            return Err(Error::TooLarge { what: "event data" });
        }
        let data = r.take(size as usize, "event: data")?.to_vec();
        let digest = digest.ok_or(Error::Unsupported {
            field: "event digests",
            expected: "a SHA-384 digest".into(),
            found: "none".into(),
        })?;
        events.push(Event {
            mr_index,
            event_type,
            digest,
            data,
        });
    }
    Ok(events)
}

/// Replays the events into RTMR0-3 from zero.
pub fn replay(events: &[Event]) -> [Measurement; 4] {
    let mut rtmr = [[0u8; 48]; 4];
    for event in events {
        if let Some(slot) = event.rtmr().and_then(|i| rtmr.get_mut(i)) {
            *slot = rtmr_extend(slot, &event.digest);
        }
    }
    rtmr
}

/// SHA-384 of an event's data: for events whose digest is of their own data
/// (e.g. the kernel command line), an auditor can check the digest directly.
pub fn data_digest(event: &Event) -> Measurement {
    let mut out = [0u8; 48];
    out.copy_from_slice(&Sha384::digest(&event.data));
    out
}
