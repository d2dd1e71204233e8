#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The TDX event log: replaying the CCEL log of a real TD reproduces the
//! RTMR0-2 of that TD's quote; corrupt logs are errors, never panics.

mod common;

use common::fixture;
use kokon_attestation::eventlog::{parse, replay};
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
