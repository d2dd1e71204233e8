#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! TDX quotes with Intel collateral: the fixture facts, and a differential
//! test against the `dcap-qvl` crate on every quote/collateral pair and time.

mod common;

use common::{at, fixture, intel};
use kokon_attestation::tdx::{verify_quote_with_collateral, Collateral, TcbStatus};

const UP_TO_DATE: (&str, &str) = (
    "tdx/dcapqvl_tdx_quote.dat",
    "tdx/dcapqvl_tdx_quote_collateral.json",
);
const OUTDATED: (&str, &str) = (
    "tdx/dcapqvl_tdx_quote_outdated.dat",
    "tdx/dcapqvl_tdx_quote_outdated_collateral.json",
);

fn collateral(path: &str) -> Collateral {
    Collateral::from_json(&fixture(path)).unwrap()
}

/// The window is the intersection of every piece's: TCB info and QE identity
/// (issueDate..nextUpdate) and both CRLs (thisUpdate..nextUpdate); here the
/// PCK CRL's next update (2025-07-19T10:00:35Z) comes first.
#[test]
fn the_dcap_qvl_quote_is_up_to_date_with_no_advisories_inside_the_window() {
    let (q, c) = UP_TO_DATE;
    for now in [
        "2025-06-19T10:33:00Z",
        "2025-07-01T00:00:00Z",
        "2025-07-19T10:00:00Z",
    ] {
        let (v, tcb) = verify_quote_with_collateral(&fixture(q), &collateral(c), &intel(), at(now))
            .unwrap_or_else(|e| panic!("at {now}: {e}"));
        assert_eq!(tcb.status, TcbStatus::UpToDate, "at {now}");
        assert!(tcb.advisory_ids.is_empty());
        assert_eq!(tcb.fmspc, "b0c06f000000");
        assert_eq!(v.quote.header.version, 4);
    }
}

#[test]
fn outside_the_collateral_window_the_quote_is_rejected() {
    let (q, c) = UP_TO_DATE;
    for now in [
        "2025-06-19T10:00:00Z",
        "2025-07-19T10:17:00Z",
        "2026-01-01T00:00:00Z",
    ] {
        let err = verify_quote_with_collateral(&fixture(q), &collateral(c), &intel(), at(now))
            .unwrap_err();
        assert!(err.to_string().contains("not valid at"), "at {now}: {err}");
    }
}

#[test]
fn the_outdated_quote_is_not_up_to_date() {
    let (q, c) = OUTDATED;
    let result = verify_quote_with_collateral(
        &fixture(q),
        &collateral(c),
        &intel(),
        at("2026-03-01T00:00:00Z"),
    );
    match result {
        Ok((_, tcb)) => assert_ne!(tcb.status, TcbStatus::UpToDate),
        Err(e) => assert!(e.to_string().contains("below every TCB level"), "{e}"),
    }
}

#[test]
fn a_v5_quote_with_a_td15_body_verifies() {
    let (_, c) = OUTDATED;
    let (v, tcb) = verify_quote_with_collateral(
        &fixture("tdx/gotdx_quote_v5_sample.dat"),
        &collateral(c),
        &intel(),
        at("2026-03-01T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(v.quote.header.version, 5);
    assert!(v.quote.body.td15.is_some());
    assert_eq!(tcb.status, TcbStatus::UpToDate);
}

/// dcap-qvl's verdict: Ok(status, advisories) or Err.
fn dcap_qvl(quote: &[u8], collateral: &[u8], now: i64) -> Result<(String, Vec<String>), String> {
    let c: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(collateral).unwrap();
    dcap_qvl::verify::ring::verify(quote, &c, now as u64)
        .map(|v| (v.status, v.advisory_ids))
        .map_err(|e| format!("{e:#}"))
}

#[test]
fn verdicts_equal_dcap_qvl_on_every_quote_collateral_pair_and_time() {
    let quotes = [
        "tdx/dcapqvl_tdx_quote.dat",
        "tdx/dcapqvl_tdx_quote_outdated.dat",
        "tdx/gotdx_quote_v5_sample.dat",
        "tdx/trustee_tdx_quote_4.dat",
        "tdx/trustee_tdx_quote_5.dat",
        "tdx/trustee_tdx_quote_6.dat",
    ];
    let collaterals = [UP_TO_DATE.1, OUTDATED.1];
    let times = [
        "2025-06-01T00:00:00Z",
        "2025-06-25T00:00:00Z",
        "2025-07-10T00:00:00Z",
        "2025-08-01T00:00:00Z",
        "2026-02-25T00:00:00Z",
        "2026-03-10T00:00:00Z",
        "2026-04-01T00:00:00Z",
    ];
    let mut compared = 0;
    let mut accepted = 0;
    for q in quotes {
        let quote = fixture(q);
        for c in collaterals {
            let raw = fixture(c);
            for t in times {
                let now = at(t);
                let theirs = dcap_qvl(&quote, &raw, now);
                let ours = verify_quote_with_collateral(&quote, &collateral(c), &intel(), now)
                    .map(|(_, tcb)| (tcb.status.to_string(), tcb.advisory_ids))
                    .map_err(|e| e.to_string());
                match (&ours, &theirs) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a, b, "{q} with {c} at {t}");
                        accepted += 1;
                    }
                    (Err(_), Err(_)) => {}
                    _ => panic!("{q} with {c} at {t}: kokon {ours:?}, dcap-qvl {theirs:?}"),
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 84);
    assert!(
        accepted >= 4,
        "only {accepted} accepted: the comparison is vacuous"
    );
}
