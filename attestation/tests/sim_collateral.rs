#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The sim PCS: collateral in Intel's formats under the sim root, so that
//! revocation, TCB statuses and advisories, and the QE identity checks can
//! each be tripped with a signed, otherwise genuine input.

use kokon_attestation::sim::{SimRoot, SimTcb, SimTd, SimTdx};
use kokon_attestation::tdx::{verify_quote_with_collateral, TcbStatus};
use kokon_attestation::{Error, TrustAnchors};

const NOW: i64 = 1_780_000_000;

struct Setup {
    tdx: SimTdx,
    quote: Vec<u8>,
    anchors: TrustAnchors,
}

fn setup() -> Setup {
    let root = SimRoot::generate(NOW).unwrap();
    let tdx = SimTdx::new(
        &root,
        SimTd {
            mr_td: [1; 48],
            rtmr: [[0; 48]; 3],
            debug: false,
        },
        NOW,
    )
    .unwrap();
    let quote = tdx.quote([7; 64]).unwrap();
    Setup {
        tdx,
        quote,
        anchors: TrustAnchors {
            roots: vec![root.anchor()],
        },
    }
}

fn verify(s: &Setup, tcb: SimTcb) -> Result<kokon_attestation::tdx::TcbVerdict, Error> {
    let c = s.tdx.collateral(&tcb, NOW).unwrap();
    verify_quote_with_collateral(&s.quote, &c, &s.anchors, NOW).map(|(_, v)| v)
}

#[test]
fn default_sim_collateral_is_up_to_date_and_also_parses_as_dcap_qvl_collateral() {
    let s = setup();
    let v = verify(&s, SimTcb::default()).unwrap();
    assert_eq!(v.status, TcbStatus::UpToDate);
    assert_eq!(v.fmspc, hex::encode(b"kokon\0"));
    let c = s.tdx.collateral(&SimTcb::default(), NOW).unwrap();
    let json = serde_json::to_vec(&c).unwrap();
    let theirs: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(&json).unwrap();
    assert_eq!(theirs.tcb_info, c.tcb_info);
    // And dcap-qvl agrees with our verdict when given the sim root.
    let report = dcap_qvl::verify::QuoteVerifier::new(s.anchors.roots[0].der.clone())
        .with_config::<dcap_qvl::configs::RingConfig>()
        .verify(&s.quote, &theirs, NOW as u64)
        .unwrap();
    assert_eq!(report.status, "UpToDate");
}

#[test]
fn statuses_and_advisories_are_reported_and_combined_with_the_qe() {
    let s = setup();
    let v = verify(
        &s,
        SimTcb {
            status: TcbStatus::SWHardeningNeeded,
            advisory_ids: vec!["INTEL-SA-00615".into()],
            ..SimTcb::default()
        },
    )
    .unwrap();
    assert_eq!(v.status, TcbStatus::SWHardeningNeeded);
    assert_eq!(v.advisory_ids, ["INTEL-SA-00615"]);
    let v = verify(
        &s,
        SimTcb {
            qe_status: TcbStatus::OutOfDate,
            ..SimTcb::default()
        },
    )
    .unwrap();
    assert_eq!(
        (v.status, v.platform_status, v.qe_status),
        (
            TcbStatus::OutOfDate,
            TcbStatus::UpToDate,
            TcbStatus::OutOfDate
        )
    );
}

/// Each case: a sim PCS setting and the error it must produce.
#[test]
fn sim_collateral_negative_cases() {
    let s = setup();
    let cases: Vec<(&str, SimTcb, &str)> = vec![
        (
            "revoked PCK certificate",
            SimTcb { revoke_pck: true, ..SimTcb::default() },
            "certificate PCK leaf (CN=kokon sim PCK Certificate, O=kokon simulated TEE) is revoked",
        ),
        (
            "revoked PCK platform CA",
            SimTcb { revoke_platform_ca: true, ..SimTcb::default() },
            "certificate PCK platform CA (CN=kokon sim PCK Platform CA, O=kokon simulated TEE) is revoked",
        ),
        (
            "TCB level Revoked",
            SimTcb { status: TcbStatus::Revoked, ..SimTcb::default() },
            "TCB: the platform's TCB level is Revoked",
        ),
        (
            "QE identity level Revoked",
            SimTcb { qe_status: TcbStatus::Revoked, ..SimTcb::default() },
            "TCB: the platform's TCB level is Revoked",
        ),
        (
            "platform below every TCB level",
            SimTcb { required_pce_svn: 14, ..SimTcb::default() },
            "is below every TCB level in the TCB info",
        ),
        (
            "TCB info for another FMSPC",
            SimTcb { fmspc: *b"other\0", ..SimTcb::default() },
            "FMSPC (TCB info vs PCK certificate) mismatch",
        ),
        (
            "QE identity for another QE product",
            SimTcb { qe_isv_prod_id: 1, ..SimTcb::default() },
            "QE ISVPRODID mismatch: expected 1, found 2",
        ),
    ];
    for (name, tcb, expected) in cases {
        let err = verify(&s, tcb).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?}, got {err}"
        );
    }
}
