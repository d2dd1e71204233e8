#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The TDX measurements of the worker VM: MRTD from a TDVF image (a
//! synthetic one with hand-laid records, and Debian's OVMF.fd), the
//! kernel's Authenticode digest (hand-laid, against Google's `authenticode`
//! crate, and against the digest Debian signed), the RTMR1/RTMR2 events
//! against the real event logs in ../shared/fixtures, and every parser check.

use std::path::PathBuf;

use kokon_attestation::eventlog::{self, Event as LogEvent};
use kokon_attestation::tdx::Quote;
use kokon_measure::policy_snippet;
use kokon_measure::tdx::{
    authenticode, expected, load_options, mrtd, rtmr1_events, rtmr2_events, rtmr_register,
    tdvf_sections, Event, TdxError, TdxInputs, RTMR0_NOTE,
};
use sha2::{Digest, Sha256, Sha384};
use uuid::uuid;

/// Where the firmware is found when `KOKON_OVMF` is unset: the guest image
/// `just test` builds before the tests (`kokon image build`).
const DEFAULT_OVMF: &str = "../.cache/vm/image/OVMF.fd";

/// The TDX firmware the tests measure: `KOKON_OVMF`, else the built image's.
fn ovmf_path() -> PathBuf {
    std::env::var_os("KOKON_OVMF").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_OVMF),
        PathBuf::from,
    )
}

fn ovmf() -> Vec<u8> {
    let path = ovmf_path();
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "no TDX firmware at {} ({e}): run `just image` (or `just test`), or set KOKON_OVMF \
             to an OVMF.fd with TDX metadata",
            path.display()
        )
    })
}

/// SHA-256 of Debian trixie's OVMF.fd (ovmf 2025.02-8+deb13u1).
const DEBIAN_OVMF_SHA256: &str = "14954040cc754ade0c625ac3470ea46d4c14318b5b1396de4ef77090203d76db";

fn fixture(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
}

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

fn err_text<T: std::fmt::Debug>(r: Result<T, TdxError>) -> String {
    r.unwrap_err().to_string()
}

// ---------------------------------------------------------------------------
// A synthetic TDVF image.
// ---------------------------------------------------------------------------

const IMAGE: usize = 0x20000;
const DESCRIPTOR_AT: usize = IMAGE - 0x1000;

#[derive(Clone, Copy)]
struct Sec {
    offset: u32,
    raw: u32,
    gpa: u64,
    size: u64,
    kind: u32,
    attributes: u32,
}

/// BFV (2 pages, measured), CFV (1 page), TD_HOB (2 pages), TempMem (1 page).
fn sections() -> Vec<Sec> {
    vec![
        Sec {
            offset: 0x8000,
            raw: 0x2000,
            gpa: 0xfff0_8000,
            size: 0x2000,
            kind: 0,
            attributes: 1,
        },
        Sec {
            offset: 0x0,
            raw: 0x1000,
            gpa: 0xfff0_0000,
            size: 0x1000,
            kind: 1,
            attributes: 0,
        },
        Sec {
            offset: 0,
            raw: 0,
            gpa: 0x80_9000,
            size: 0x2000,
            kind: 2,
            attributes: 0,
        },
        Sec {
            offset: 0,
            raw: 0,
            gpa: 0x80_0000,
            size: 0x1000,
            kind: 3,
            attributes: 0,
        },
    ]
}

fn put(image: &mut [u8], at: usize, bytes: &[u8]) {
    image[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A 128 KiB image: patterned content, the TDVF descriptor 4 KiB before the
/// end, and the GUID table (a TDX metadata entry, then an SEV entry the
/// parser must step over) ending 32 bytes before the end.
fn tdvf(secs: &[Sec]) -> Vec<u8> {
    let mut image: Vec<u8> = (0..IMAGE).map(|i| (i * 7 % 251) as u8).collect();
    let mut d = b"TDVF".to_vec();
    d.extend_from_slice(&(16 + 32 * secs.len() as u32).to_le_bytes());
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&(secs.len() as u32).to_le_bytes());
    for s in secs {
        d.extend_from_slice(&s.offset.to_le_bytes());
        d.extend_from_slice(&s.raw.to_le_bytes());
        d.extend_from_slice(&s.gpa.to_le_bytes());
        d.extend_from_slice(&s.size.to_le_bytes());
        d.extend_from_slice(&s.kind.to_le_bytes());
        d.extend_from_slice(&s.attributes.to_le_bytes());
    }
    put(&mut image, DESCRIPTOR_AT, &d);
    let mut table = Vec::new();
    table.extend_from_slice(&((IMAGE - DESCRIPTOR_AT) as u32).to_le_bytes());
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&uuid!("e47a6535-984a-4798-865e-4685a7bf8ec2").to_bytes_le());
    table.extend_from_slice(&0x80b004u32.to_le_bytes());
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&uuid!("00f771de-1a7e-4fcb-890e-68c77e2fb44e").to_bytes_le());
    table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    table.extend_from_slice(&uuid!("96b582de-1fb2-45f7-baea-a366c55a082d").to_bytes_le());
    put(&mut image, IMAGE - 32 - table.len(), &table);
    image
}

/// A TDX module record: the operation's name, the GPA at byte 16.
fn rec(name: &str, gpa: u64) -> [u8; 128] {
    let mut r = [0u8; 128];
    r[..name.len()].copy_from_slice(name.as_bytes());
    r[16..24].copy_from_slice(&gpa.to_le_bytes());
    r
}

#[test]
fn mrtd_of_a_synthetic_tdvf_is_its_page_add_and_extend_records_in_order() {
    let image = tdvf(&sections());
    let mut h = Sha384::new();
    // BFV at 0xfff08000 from image offset 0x8000: each page added, then its
    // 16 chunks extended.
    for (page, gpa) in [0xfff0_8000u64, 0xfff0_9000].into_iter().enumerate() {
        h.update(rec("MEM.PAGE.ADD", gpa));
        for chunk in 0..16 {
            h.update(rec("MR.EXTEND", gpa + chunk as u64 * 256));
            let at = 0x8000 + page * 0x1000 + chunk * 256;
            h.update(&image[at..at + 256]);
        }
    }
    // CFV, TD_HOB and TempMem pages are only added.
    for gpa in [0xfff0_0000u64, 0x80_9000, 0x80_a000, 0x80_0000] {
        h.update(rec("MEM.PAGE.ADD", gpa));
    }
    let want: [u8; 48] = h.finalize().into();
    assert_eq!(hex::encode(mrtd(&image).unwrap()), hex::encode(want));

    // Measured content counts, unmeasured content does not.
    let mut changed = image.clone();
    changed[0x9fff] ^= 1;
    assert_ne!(mrtd(&changed).unwrap(), want);
    let mut changed = image.clone();
    changed[0x0fff] ^= 1; // CFV: added, not extended
    assert_eq!(mrtd(&changed).unwrap(), want);

    let parsed = tdvf_sections(&image).unwrap();
    assert_eq!(parsed.len(), 4);
    assert_eq!(parsed[0].type_name(), "BFV");
    assert_eq!(parsed[2].type_name(), "TD_HOB");
    assert!(parsed[0].extends() && !parsed[1].extends());
    assert_eq!(parsed[2].pages(), 2);
}

#[test]
fn mrtd_of_debians_ovmf() {
    let image = ovmf();
    let sections = tdvf_sections(&image).unwrap();
    let value = mrtd(&image).unwrap();
    eprintln!("{}: MRTD {}", ovmf_path().display(), hex::encode(value));
    // A BFV measured page by page, and pages added for the rest.
    assert!(sections
        .iter()
        .any(|s| s.type_name() == "BFV" && s.extends()));
    assert!(sections.iter().any(|s| s.type_name() == "TD_HOB"));
    // Debian's build (when it is the file read): its six sections, and the
    // MRTD this code computes for it (no independent reference: a pin
    // against regressions only).
    if hex::encode(Sha256::digest(&image)) == DEBIAN_OVMF_SHA256 {
        let layout: Vec<_> = sections
            .iter()
            .map(|s| {
                (
                    s.type_name(),
                    s.memory_address,
                    s.memory_data_size,
                    s.attributes,
                )
            })
            .collect();
        assert_eq!(
            layout,
            [
                ("BFV".to_string(), 0xffc8_4000, 0x37_c000, 1),
                ("CFV".to_string(), 0xffc0_0000, 0x8_4000, 0),
                ("TempMem".to_string(), 0x81_1000, 0xf000, 0),
                ("TempMem".to_string(), 0x80_b000, 0x2000, 0),
                ("TD_HOB".to_string(), 0x80_9000, 0x2000, 0),
                ("TempMem".to_string(), 0x80_0000, 0x6000, 0),
            ]
        );
        assert_eq!(hex::encode(value), DEBIAN_OVMF_MRTD);
    }
}

/// The MRTD this module computes for Debian's OVMF.fd.
const DEBIAN_OVMF_MRTD: &str = "bdc6fb145880f06f30c8b346b8dce2a99d9351b56892df22f80fcf6574caa9f9c31df8e8576d53b4d0cd1c3f28910e11";

/// Mutates the synthetic image and expects `mrtd` to fail with `message`.
/// A change to a valid input, and what its rejection must say.
type Case<T> = (&'static str, fn(&mut T));

/// Each case changes a copy of `valid`, which `check` must then refuse with
/// an error that contains the case's message.
fn each_trips<T: Clone, R: std::fmt::Debug>(
    valid: T,
    cases: &[Case<T>],
    check: impl Fn(&T) -> Result<R, TdxError>,
) {
    assert!(check(&valid).is_ok());
    for (message, change) in cases {
        let mut input = valid.clone();
        change(&mut input);
        let text = err_text(check(&input));
        assert!(text.contains(message), "expected {message:?} in {text:?}");
    }
}

#[test]
fn every_firmware_check_trips() {
    let cases: &[Case<Vec<u8>>] = &[
        (
            "OVMF image: size 0x1ff00 is not a non-zero multiple of 64 KiB",
            |i| i.truncate(IMAGE - 0x100),
        ),
        (
            "OVMF image: size 0x0 is not",
            |i| i.clear(),
        ),
        (
            "OVMF footer table: expected GUID 96b582de-1fb2-45f7-baea-a366c55a082d in the 18-byte footer entry at offset 0x1ffce (ending 32 bytes before the image's end), found 00000000-0000-0000-0000-000000000000",
            |i| i[IMAGE - 48..IMAGE - 32].fill(0),
        ),
        (
            "OVMF footer table: length 5 out of range: at least 18 (the footer entry) and at most the 131040 bytes of the image up to the footer's end",
            |i| put(i, IMAGE - 50, &5u16.to_le_bytes()),
        ),
        (
            "OVMF footer table: length 17 out of range: at least 18 (the footer entry) and at most the 131040 bytes",
            |i| put(i, IMAGE - 50, &17u16.to_le_bytes()),
        ),
        (
            "OVMF footer table: entry 00f771de-1a7e-4fcb-890e-68c77e2fb44e has length 200, but only 44 bytes of the table are left",
            |i| put(i, IMAGE - 50 - 18, &200u16.to_le_bytes()),
        ),
        (
            "OVMF footer table: 5 bytes left at the table's start, fewer than an 18-byte entry header",
            |i| put(i, IMAGE - 50, &(62u16 + 5).to_le_bytes()),
        ),
        (
            "OVMF footer table: entry 00f771de-1a7e-4fcb-890e-68c77e2fb44e has length 17, less than its 18-byte header",
            |i| put(i, IMAGE - 50 - 18, &17u16.to_le_bytes()),
        ),
        (
            // The whole table is checked, not only up to the entry looked up.
            "OVMF footer table: entry e47a6535-984a-4798-865e-4685a7bf8ec2 appears twice",
            |i| put(i, IMAGE - 50 - 16, &uuid!("e47a6535-984a-4798-865e-4685a7bf8ec2").to_bytes_le()),
        ),
        (
            "the GUID table has no TDX metadata entry (e47a6535-984a-4798-865e-4685a7bf8ec2)",
            |i| i[IMAGE - 50 - 22 - 16..IMAGE - 50 - 22].fill(0x11),
        ),
        (
            "the TDX metadata entry holds 2 bytes, expected a 4-byte offset",
            |i| {
                // The entry shrinks to 20 bytes, the table to 60.
                put(i, IMAGE - 50 - 22 - 18, &20u16.to_le_bytes());
                put(i, IMAGE - 50, &60u16.to_le_bytes());
            },
        ),
        (
            "TDVF metadata: offset 0x30000 from the end lies before the start of the image (0x20000)",
            |i| put(i, IMAGE - 50 - 22 - 18 - 4, &0x30000u32.to_le_bytes()),
        ),
        (
            "TDVF metadata: truncated descriptor length: needed 4 bytes at offset 4, 0 available",
            |i| {
                put(i, IMAGE - 50 - 22 - 18 - 4, &4u32.to_le_bytes());
                put(i, IMAGE - 4, b"TDVF");
            },
        ),
        (
            "descriptor at 0x1f000: signature 54445658, expected \"TDVF\"",
            |i| put(i, DESCRIPTOR_AT, b"TDVX"),
        ),
        (
            "descriptor at 0x1f000 of length 0x100000 runs past the image (0x20000)",
            |i| put(i, DESCRIPTOR_AT + 4, &0x100000u32.to_le_bytes()),
        ),
        (
            "descriptor version 2, expected 1",
            |i| put(i, DESCRIPTOR_AT + 8, &2u32.to_le_bytes()),
        ),
        (
            "1 sections, QEMU requires at least 2",
            |i| put(i, DESCRIPTOR_AT + 12, &1u32.to_le_bytes()),
        ),
        (
            "4294967295 sections take 0x1ffffffff0 bytes with the descriptor, but its length is 0x90",
            |i| put(i, DESCRIPTOR_AT + 12, &u32::MAX.to_le_bytes()),
        ),
        (
            "5 sections take 0xb0 bytes with the descriptor, but its length is 0x90",
            |i| put(i, DESCRIPTOR_AT + 12, &5u32.to_le_bytes()),
        ),
    ];
    each_trips(tdvf(&sections()), cases, |image| mrtd(image));
}

#[test]
fn every_section_check_trips() {
    let cases: &[Case<Vec<Sec>>] = &[
        (
            "TDVF metadata: section 0 (BFV): runs past the image (offset 0x1f000, size 0x2000, image 0x20000)",
            |s| s[0].offset = 0x1f000,
        ),
        (
            "section 2 (TD_HOB): GPA 0x809100 is not 4 KiB aligned",
            |s| s[2].gpa = 0x80_9100,
        ),
        (
            "section 3 (TempMem): memory size 0x1800 is not a multiple of 4 KiB",
            |s| s[3].size = 0x1800,
        ),
        (
            "section 0 (BFV): memory size 0x1000 is smaller than its raw data size 0x2000",
            |s| s[0].size = 0x1000,
        ),
        (
            "section 0 (BFV): memory size 0x3000 differs from its raw data size 0x2000",
            |s| s[0].size = 0x3000,
        ),
        (
            "section 3 (TempMem): GPA 0xfffffffffffff000 + size 0x2000 overflows",
            |s| {
                s[3].gpa = 0xffff_ffff_ffff_f000;
                s[3].size = 0x2000;
            },
        ),
        (
            "section 3 (TempMem): attributes 0x2 (PAGE.AUG): only MR.EXTEND (0x1) is modelled",
            |s| s[3].attributes = 2,
        ),
        (
            "section 1 (CFV): attributes 0x10: only MR.EXTEND",
            |s| s[1].attributes = 0x10,
        ),
        (
            "section 3 (PermMem): QEMU 10.1 accepts only BFV, CFV, TD_HOB and TempMem sections",
            |s| s[3].kind = 4,
        ),
        (
            "section 3 (type 99): QEMU 10.1 accepts only",
            |s| s[3].kind = 99,
        ),
        (
            "section 1 (CFV): no raw data, QEMU requires it of BFV and CFV",
            |s| s[1].raw = 0,
        ),
        (
            "section 2 (TD_HOB): raw data size 0x1000, QEMU requires 0",
            |s| s[2].raw = 0x1000,
        ),
        (
            "section 3 (TempMem): MR.EXTEND on memory whose content QEMU makes at launch",
            |s| s[3].attributes = 1,
        ),
        (
            "sections 3 and 2 overlap in guest memory (0x809000..0x80a000 and 0x809000..0x80b000)",
            |s| s[3].gpa = 0x80_9000,
        ),
        (
            "no TD_HOB section, which QEMU requires",
            |s| s[2].kind = 3,
        ),
        (
            "the sections take 0x10005000 bytes of guest memory, more than the 0x10000000 this model accepts",
            |s| s[3].size = 0x1000_0000,
        ),
    ];
    each_trips(sections(), cases, |secs| mrtd(&tdvf(secs)));
}

// ---------------------------------------------------------------------------
// The kernel's Authenticode digest.
// ---------------------------------------------------------------------------

const OPT: usize = 0x40 + 4 + 20;
const CHECKSUM: usize = OPT + 64;
const CERT_ENTRY: usize = OPT + 112 + 32;
const TABLE: usize = OPT + 112 + 6 * 8;

/// A PE32+ image: 2 sections listed out of file order (.data at 0x400,
/// .text at 0x200), 0x10 bytes after them, a 0x20-byte certificate table.
fn pe() -> Vec<u8> {
    let mut image: Vec<u8> = (0..0x630).map(|i| (i * 13 % 241) as u8).collect();
    image[..0x200].fill(0);
    put(&mut image, 0, b"MZ");
    put(&mut image, 0x3c, &0x40u32.to_le_bytes());
    put(&mut image, 0x40, b"PE\0\0");
    put(&mut image, 0x44, &0x8664u16.to_le_bytes());
    put(&mut image, 0x46, &2u16.to_le_bytes());
    put(&mut image, 0x54, &(112u16 + 6 * 8).to_le_bytes());
    put(&mut image, 0x56, &0x0206u16.to_le_bytes());
    put(&mut image, OPT, &0x20bu16.to_le_bytes());
    put(&mut image, OPT + 16, &0x200u32.to_le_bytes()); // AddressOfEntryPoint
    put(&mut image, OPT + 32, &0x1000u32.to_le_bytes()); // SectionAlignment
    put(&mut image, OPT + 36, &0x200u32.to_le_bytes()); // FileAlignment
    put(&mut image, OPT + 56, &0x3000u32.to_le_bytes()); // SizeOfImage
    put(&mut image, OPT + 60, &0x200u32.to_le_bytes()); // SizeOfHeaders
    put(&mut image, CHECKSUM, &0xdead_beefu32.to_le_bytes());
    put(&mut image, OPT + 68, &10u16.to_le_bytes()); // EFI application
    put(&mut image, OPT + 108, &6u32.to_le_bytes());
    put(&mut image, CERT_ENTRY, &0x610u32.to_le_bytes());
    put(&mut image, CERT_ENTRY + 4, &0x20u32.to_le_bytes());
    for (i, (name, va, pointer)) in [
        (b".data\0\0\0", 0x2000u32, 0x400u32),
        (b".text\0\0\0", 0x1000, 0x200),
    ]
    .into_iter()
    .enumerate()
    {
        let at = TABLE + 40 * i;
        put(&mut image, at, name);
        put(&mut image, at + 8, &0x200u32.to_le_bytes());
        put(&mut image, at + 12, &va.to_le_bytes());
        put(&mut image, at + 16, &0x200u32.to_le_bytes());
        put(&mut image, at + 20, &pointer.to_le_bytes());
    }
    image
}

#[test]
fn authenticode_leaves_out_the_checksum_and_certificates_and_sorts_sections() {
    let image = pe();
    let mut h = Sha384::new();
    h.update(&image[..CHECKSUM]);
    h.update(&image[CHECKSUM + 4..CERT_ENTRY]);
    h.update(&image[CERT_ENTRY + 8..0x200]);
    h.update(&image[0x200..0x400]); // .text, first in the file
    h.update(&image[0x400..0x600]); // .data
    h.update(&image[0x600..0x610]); // after the sections, before the certificates
    let want: [u8; 48] = h.finalize().into();
    assert_eq!(
        hex::encode(authenticode::<Sha384>(&image).unwrap()),
        hex::encode(want)
    );

    // Google's implementation agrees.
    let independent = |image: &[u8]| {
        let pe = object::read::pe::PeFile64::parse(image).unwrap();
        let mut h = Sha384::new();
        authenticode::authenticode_digest(&pe, &mut h).unwrap();
        hex::encode(h.finalize())
    };
    assert_eq!(independent(&image), hex::encode(want));

    // The checksum and the certificates do not count, everything else does.
    let mut changed = image.clone();
    put(&mut changed, CHECKSUM, &1u32.to_le_bytes());
    changed[0x620] ^= 0xff;
    assert_eq!(authenticode::<Sha384>(&changed).unwrap().as_slice(), want);
    for at in [0x10, 0x1ff, 0x2ab, 0x5ff, 0x60f] {
        let mut changed = image.clone();
        changed[at] ^= 1;
        let digest = hex::encode(authenticode::<Sha384>(&changed).unwrap());
        assert_ne!(digest, hex::encode(want), "byte {at:#x}");
        assert_eq!(digest, independent(&changed), "byte {at:#x}");
    }

    // With 4 data directories, none for certificates, the headers are hashed
    // from the checksum on, and all the data after the sections.
    let mut short = image.clone();
    put(&mut short, OPT + 108, &4u32.to_le_bytes());
    put(&mut short, 0x54, &(112u16 + 4 * 8).to_le_bytes());
    short.copy_within(TABLE..TABLE + 80, TABLE - 16);
    let mut h = Sha384::new();
    h.update(&short[..CHECKSUM]);
    h.update(&short[CHECKSUM + 4..0x200]);
    h.update(&short[0x200..]);
    assert_eq!(
        authenticode::<Sha384>(&short).unwrap().as_slice(),
        h.finalize().as_slice()
    );
}

#[test]
fn every_pe_check_trips() {
    let cases: &[Case<Vec<u8>>] = &[
        (
            "kernel PE/COFF image: no MZ signature at offset 0",
            |i| i[0] = b'Z',
        ),
        (
            "e_lfanew at 0x3c (0x4 bytes) lies past the end (0x20)",
            |i| i.truncate(0x20),
        ),
        (
            "PE signature at 0x7000 (0x4 bytes) lies past the end (0x630)",
            |i| put(i, 0x3c, &0x7000u32.to_le_bytes()),
        ),
        (
            "no PE signature at e_lfanew 0x40: found 50450001",
            |i| i[0x43] = 1,
        ),
        (
            "optional header magic 0x010c, expected 0x10b (PE32) or 0x20b (PE32+)",
            |i| put(i, OPT, &0x10cu16.to_le_bytes()),
        ),
        (
            "17 data directories end the optional header at 0xf8 bytes, but SizeOfOptionalHeader is 0xa0",
            |i| put(i, OPT + 108, &17u32.to_le_bytes()),
        ),
        (
            "7 data directories end the optional header at 0xa8 bytes, but SizeOfOptionalHeader is 0xa0",
            |i| put(i, OPT + 108, &7u32.to_le_bytes()),
        ),
        (
            "subsystem 11, expected 10 (EFI application)",
            |i| put(i, OPT + 68, &11u16.to_le_bytes()),
        ),
        (
            "the headers (SizeOfHeaders) at 0x0 (0x10000 bytes) lies past the end (0x630)",
            |i| put(i, OPT + 60, &0x10000u32.to_le_bytes()),
        ),
        (
            "SizeOfHeaders 0x80 ends inside the optional header (before 0xf0)",
            |i| put(i, OPT + 60, &0x80u32.to_le_bytes()),
        ),
        (
            "the section table at 0xf8 (0x9c40 bytes) lies past the end (0x630)",
            |i| put(i, 0x46, &1000u16.to_le_bytes()),
        ),
        (
            "section 1 (.text): raw data 0x600+0x200 runs past the image (0x630)",
            |i| put(i, TABLE + 40 + 20, &0x600u32.to_le_bytes()),
        ),
        (
            "the certificate table (0x40 bytes) does not fit after the 0x600 bytes of headers and sections in the image (0x630): edk2 refuses to measure it",
            |i| put(i, CERT_ENTRY + 4, &0x40u32.to_le_bytes()),
        ),
    ];
    each_trips(pe(), cases, |image| rtmr1_events(image));
}

/// The real kernel, when `KOKON_KERNEL` names one: the digest OVMF extends
/// agrees with Google's implementation, and its SHA-256 form with the
/// digest the distribution signed.
#[test]
fn authenticode_of_the_real_kernel() {
    let Some(path) = std::env::var_os("KOKON_KERNEL") else {
        eprintln!("KOKON_KERNEL not set: the real kernel is not checked");
        return;
    };
    let kernel = std::fs::read(&path).unwrap();
    let pe = object::read::pe::PeFile64::parse(&*kernel).unwrap();
    let mut h = Sha384::new();
    authenticode::authenticode_digest(&pe, &mut h).unwrap();
    let ours = authenticode::<Sha384>(&kernel).unwrap();
    assert_eq!(hex::encode(ours), hex::encode(h.finalize()));
    let events = rtmr1_events(&kernel).unwrap();
    assert_eq!(events[0].digest.as_slice(), ours.as_slice());
    eprintln!("kernel Authenticode SHA-384 {}", hex::encode(ours));

    let certificates = authenticode::AttributeCertificateIterator::new(&pe).unwrap();
    let signed: Vec<Vec<u8>> = certificates
        .into_iter()
        .flatten()
        .map(|c| {
            c.unwrap()
                .get_authenticode_signature()
                .unwrap()
                .digest()
                .to_vec()
        })
        .collect();
    assert!(!signed.is_empty(), "the kernel is not signed");
    let sha256 = authenticode::<Sha256>(&kernel).unwrap();
    assert!(
        signed.iter().any(|d| d.as_slice() == sha256.as_slice()),
        "SHA-256 {} is none of the signed digests {signed:02x?}",
        hex::encode(sha256)
    );
}

// ---------------------------------------------------------------------------
// RTMR1 and RTMR2 events against the real event logs.
// ---------------------------------------------------------------------------

fn log(name: &str) -> Vec<LogEvent> {
    eventlog::parse(&fixture(&format!("tdx/eventlog/{name}"))).unwrap()
}

/// Our event as the log would record it (the log's MR index is RTMR + 1).
fn in_log<'a>(log: &'a [LogEvent], ours: &Event) -> Option<&'a LogEvent> {
    log.iter().find(|e| {
        e.mr_index == ours.rtmr as u32 + 1
            && e.event_type == ours.event_type
            && Some(&e.data) == ours.log_data.as_ref()
    })
}

#[test]
fn ovmfs_action_and_separator_events_are_in_both_logs() {
    let events = rtmr1_events(&pe()).unwrap();
    assert_eq!(events.len(), 5);
    for name in ["trustee_ccel_data_ovmf.bin", "gotdx_ccel_data.dat"] {
        let log = log(name);
        for ours in &events[1..] {
            if name.starts_with("trustee") && ours.event_type == 4 {
                continue; // that OVMF predates the RTMR1 separator
            }
            let found =
                in_log(&log, ours).unwrap_or_else(|| panic!("{name}: {} not found", ours.what));
            assert_eq!(
                hex::encode(found.digest),
                hex::encode(ours.digest),
                "{name}: {}",
                ours.what
            );
        }
    }
}

#[test]
fn the_stubs_tagged_events_are_those_of_the_ovmf_log() {
    let events = rtmr2_events("console=hvc0", b"initrd").unwrap();
    let log = log("trustee_ccel_data_ovmf.bin");
    let tagged: Vec<&LogEvent> = log.iter().filter(|e| e.mr_index == 3).collect();
    assert_eq!(tagged.len(), 2);
    for (ours, theirs) in events.iter().zip(&tagged) {
        assert_eq!(theirs.event_type, ours.event_type);
        assert_eq!(Some(&theirs.data), ours.log_data.as_ref(), "{}", ours.what);
    }
}

#[test]
fn the_ovmf_logs_rtmr1_is_our_sequence_before_edk2_202411() {
    // That OVMF extended the kernel, "Calling EFI Application", and the
    // ExitBootServices actions; edk2-stable202411 added the separator.
    let log = log("trustee_ccel_data_ovmf.bin");
    let theirs: Vec<&LogEvent> = log.iter().filter(|e| e.mr_index == 2).collect();
    let mut ours = rtmr1_events(&pe()).unwrap();
    ours.remove(2);
    assert_eq!(ours.len(), theirs.len());
    ours[0].digest = theirs[0].digest; // its kernel is not at hand
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(
            (o.event_type, o.digest),
            (t.event_type, t.digest),
            "{}",
            o.what
        );
    }
    let replayed = eventlog::replay(&log);
    assert_eq!(rtmr_register("rtmr1", &ours).value, replayed[1]);
}

#[test]
fn our_digests_replay_to_the_rtmr1_of_a_real_quote() {
    // The cos113 TD (shim and GRUB, a newer OVMF): its RTMR1 is our
    // "Calling", separator and ExitBootServices events around the GPT,
    // shim and GRUB events of its log.
    let log = log("gotdx_ccel_data.dat");
    let quote = Quote::parse(&fixture("tdx/eventlog/gotdx_cos113_quote.dat")).unwrap();
    let ours = rtmr1_events(&pe()).unwrap();
    let mut sequence = Vec::new();
    for e in log.iter().filter(|e| e.mr_index == 2) {
        let ours = ours[1..]
            .iter()
            .find(|o| Some(&e.data) == o.log_data.as_ref() && o.event_type == e.event_type);
        sequence.push(match ours {
            Some(o) => o.clone(),
            None => Event {
                rtmr: 1,
                event_type: e.event_type,
                what: "from the log".into(),
                digest: e.digest,
                log_data: None,
            },
        });
    }
    assert_eq!(
        sequence.iter().filter(|e| e.what != "from the log").count(),
        4
    );
    assert_eq!(
        hex::encode(rtmr_register("rtmr1", &sequence).value),
        hex::encode(quote.body.rtmr[1])
    );
    let rtmr2: Vec<Event> = log
        .iter()
        .filter(|e| e.mr_index == 3)
        .map(|e| Event {
            rtmr: 2,
            event_type: e.event_type,
            what: String::new(),
            digest: e.digest,
            log_data: None,
        })
        .collect();
    assert_eq!(
        hex::encode(rtmr_register("rtmr2", &rtmr2).value),
        hex::encode(quote.body.rtmr[2])
    );
}

#[test]
fn load_options_are_the_command_line_widened_with_initrd_and_nul() {
    let utf16 = |s: &str| s.bytes().flat_map(|b| [b, 0]).collect::<Vec<u8>>();
    assert_eq!(
        load_options("console=ttyS0 ro", true).unwrap(),
        utf16("console=ttyS0 ro initrd=initrd\0")
    );
    assert_eq!(
        load_options("console=ttyS0", false).unwrap(),
        utf16("console=ttyS0\0")
    );
    assert_eq!(load_options("", true).unwrap(), utf16(" initrd=initrd\0"));
    assert!(load_options("", false).unwrap().is_empty());
    // edk2's %a widens each byte, UTF-8 or not.
    assert_eq!(load_options("é", false).unwrap(), [0xc3, 0, 0xa9, 0, 0, 0]);
    assert!(
        err_text(load_options("a\0b", false)).contains("kernel command line: contains a NUL byte")
    );
    assert!(err_text(load_options("ro noinitrd", true)).contains("has noinitrd with an initrd"));
    assert!(load_options("ro noinitrd", false).is_ok());

    let events = rtmr2_events("console=ttyS0", b"the initrd").unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].digest,
        sha384(&utf16("console=ttyS0 initrd=initrd\0"))
    );
    assert_eq!(events[1].digest, sha384(b"the initrd"));
    assert_eq!(
        events[0].log_data.as_ref().unwrap()[..8],
        [0xed, 0x22, 0x3b, 0x8f, 26, 0, 0, 0]
    );
    // No initrd: no initrd event and no initrd= option; nothing at all: no events.
    let events = rtmr2_events("console=ttyS0", b"").unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].digest, sha384(&utf16("console=ttyS0\0")));
    assert!(rtmr2_events("", b"").unwrap().is_empty());
}

#[test]
fn expected_registers_of_the_worker_vm() {
    let firmware = ovmf();
    let kernel = pe();
    let inputs = TdxInputs {
        ovmf: &firmware,
        kernel: &kernel,
        initrd: b"initrd bytes",
        cmdline: "console=ttyS0 ro",
    };
    let registers = expected(&inputs).unwrap();
    let names: Vec<_> = registers.iter().map(|r| r.name).collect();
    assert_eq!(names, ["mrtd", "rtmr1", "rtmr2"]);
    assert_eq!(registers[0].value, mrtd(&firmware).unwrap());
    assert!(registers[0]
        .explanation
        .iter()
        .any(|l| l.starts_with("section 0: BFV")));
    let rtmr1 = rtmr1_events(&kernel).unwrap();
    let mut value = [0u8; 48];
    for e in &rtmr1 {
        value = sha384(&[value.as_slice(), &e.digest].concat());
    }
    assert_eq!(registers[1].value, value);
    assert_eq!(registers[1].explanation.len(), 6);
    assert!(registers[1].explanation[2]
        .contains("EV_EFI_ACTION: \"Calling EFI Application from Boot Option\""));
    let rtmr2 = rtmr2_events("console=ttyS0 ro", b"initrd bytes").unwrap();
    assert_eq!(registers[2].value, rtmr_register("rtmr2", &rtmr2).value);
    let snippet = policy_snippet(&registers);
    assert!(snippet.contains(&format!(
        "mrtd = [\"{}\"]",
        hex::encode(&registers[0].value)
    )));
    assert!(!snippet.contains("rtmr0"));
    assert!(RTMR0_NOTE.contains("trusted first boot"));

    // Each input moves its register and only it.
    let other = expected(&TdxInputs {
        cmdline: "console=ttyS0",
        ..inputs
    })
    .unwrap();
    assert_eq!(other[..2], registers[..2]);
    assert_ne!(other[2].value, registers[2].value);
    // A broken kernel is an error, not a value.
    let text = err_text(expected(&TdxInputs {
        kernel: b"not a kernel",
        ..inputs
    }));
    assert!(text.contains("no MZ signature"), "{text}");
}
