#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The TDX event log: replaying the CCEL log of a real TD reproduces the
//! RTMR0-2 of that TD's quote; corrupt logs are errors, never panics.

mod common;

use common::fixture;
use kokon_attestation::eventlog::{event_type_name, parse, replay, Event};
use kokon_attestation::tdx::Quote;

#[test]
fn replaying_the_ccel_log_reproduces_the_quotes_rtmrs() {
    let events = parse(&fixture("tdx/eventlog/gotdx_ccel_data.dat")).unwrap();
    assert!(events.len() > 10, "{} events", events.len());
    let quote = Quote::parse(&fixture("tdx/eventlog/gotdx_cos113_quote.dat")).unwrap();
    let rtmr = replay(&events);
    for (i, (replayed, quoted)) in rtmr.iter().zip(&quote.body.rtmr).take(3).enumerate() {
        assert_eq!(hex::encode(replayed), hex::encode(quoted), "RTMR{i}");
    }
    // The quote's report data is the nonce the TD was asked for.
    let nonce = fixture("tdx/eventlog/gotdx_cos113_nonce.dat");
    assert_eq!(quote.body.report_data.as_slice(), nonce.as_slice());
    // A changed event digest no longer replays to the quote.
    let mut altered = events.clone();
    altered[3].digest[0] ^= 1;
    assert_ne!(replay(&altered)[..3], quote.body.rtmr[..3]);
}

#[test]
fn the_ovmf_log_parses_and_names_its_events() {
    let events = parse(&fixture("tdx/eventlog/trustee_ccel_data_ovmf.bin")).unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.mr_index <= 4));
    assert!(events.iter().any(|e| e.type_name() == "EV_SEPARATOR"));
}

#[test]
fn every_event_of_the_real_logs_has_its_tcg_name() {
    for log in [
        "tdx/eventlog/gotdx_ccel_data.dat",
        "tdx/eventlog/trustee_ccel_data_ovmf.bin",
    ] {
        for e in parse(&fixture(log)).unwrap() {
            assert!(
                event_type_name(e.event_type).is_some(),
                "{log}: type {:#x} unnamed",
                e.event_type
            );
        }
    }
    // The types OVMF logs for ACPI tables and tagged events, and the EFI
    // range's later additions, by their PC Client PFP values.
    for (value, name) in [
        (0x6, "EV_EVENT_TAG"),
        (0xa, "EV_PLATFORM_CONFIG_FLAGS"),
        (0xb, "EV_TABLE_OF_DEVICES"),
        (0xc, "EV_COMPACT_HASH"),
        (0xd, "EV_IPL"),
        (0x12, "EV_OMIT_BOOT_DEVICE_EVENTS"),
        (0x8000_0006, "EV_EFI_GPT_EVENT"),
        (0x8000_000c, "EV_EFI_VARIABLE_BOOT2"),
        (0x8000_00e0, "EV_EFI_VARIABLE_AUTHORITY"),
        (0x8000_00e4, "EV_EFI_SPDM_DEVICE_AUTHORITY"),
    ] {
        assert_eq!(event_type_name(value), Some(name), "{value:#x}");
    }
    let unknown = Event {
        mr_index: 2,
        event_type: 0x8000_0042,
        digest: [0; 48],
        data: vec![],
    };
    assert_eq!(unknown.type_name(), "unknown (0x80000042)");
}

#[test]
fn text_data_is_read_whole_and_binary_data_is_not_text() {
    let events = parse(&fixture("tdx/eventlog/gotdx_ccel_data.dat")).unwrap();
    // The kernel command line (743 bytes) with its dm-verity parameters.
    let cmdline = events
        .iter()
        .find_map(|e| e.text().filter(|t| t.starts_with("kernel_cmdline:")))
        .unwrap();
    assert!(cmdline.len() > 700, "{}", cmdline.len());
    assert!(
        cmdline.contains("dm-mod.create=vroot") && cmdline.ends_with("e00e66fa0\""),
        "{cmdline}"
    );
    let event = |data: &[u8]| Event {
        mr_index: 3,
        event_type: 0xd,
        digest: [0; 48],
        data: data.to_vec(),
    };
    assert_eq!(
        event(b"grub_cmd: a\n  b\0").text(),
        Some("grub_cmd: a\n  b")
    );
    for binary in [&b"\0\0\0\0"[..], b"", b"a\0b", b"\xff\xfe", b"S\0e\0c\0"] {
        assert_eq!(event(binary).text(), None, "{binary:?}");
    }
}

#[test]
fn truncated_and_corrupt_logs_are_errors_not_panics() {
    let log = fixture("tdx/eventlog/gotdx_ccel_data.dat");
    let used = 4096.min(log.len());
    for len in 0..used {
        let _ = parse(&log[..len]);
    }
    assert!(parse(&[]).is_err());
    let mut bad = log.clone();
    bad[4] = 1; // header type is not EV_NO_ACTION
    assert!(parse(&bad).is_err());
    let mut bad = log.clone();
    bad[0x20] = b'X'; // not a crypto-agile log
    assert!(parse(&bad)
        .unwrap_err()
        .to_string()
        .contains("Spec ID Event03"));
}
