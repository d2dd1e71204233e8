#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The production policies against real TDX and SEV-SNP evidence: each
//! hardware check (TCB status, advisories, collateral presence, SNP TCB
//! floor per product, debug, migration agent, SMT, VMPL, measurements) has a
//! case that passes and one that trips it.

mod common;

use common::fixture;
use kokon_attestation::roots::AmdProduct;
use kokon_attestation::snp::{Report, TcbVersion};
use kokon_attestation::tdx::{Collateral, TcbStatus, TcbVerdict};
use kokon_attestation::{
    verify_evidence, Evidence, EvidenceFormat, PlatformTcb, TeeReport, VerifiedPlatform,
};
use kokon_policies::{LocalReferences, Policy, Rejection};

const TDX: &str = include_str!("../production-tdx.toml");
const SNP: &str = include_str!("../production-snp.toml");

fn at(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

/// A policy file with the measurement lists filled in from `pins`.
fn policy(text: &str, pins: &[(&str, String)]) -> Policy {
    let mut text = text.to_string();
    for (register, value) in pins {
        text = text.replace(
            &format!("{register} = []"),
            &format!("{register} = [\"{value}\"]"),
        );
    }
    Policy::from_toml(&text, &LocalReferences::default()).unwrap()
}

fn tdx_evidence(collateral: bool) -> VerifiedPlatform {
    let evidence = Evidence {
        format: EvidenceFormat::TdxQuote,
        data: fixture("tdx/dcapqvl_tdx_quote.dat"),
        certificates: vec![],
        collateral: collateral.then(|| {
            Collateral::from_json(&fixture("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap()
        }),
        crl: Vec::new(),
    };
    let p = policy(TDX, &[]);
    verify_evidence(&evidence, &p.anchors, at("2025-07-01T00:00:00Z")).unwrap()
}

fn tdx_pins(v: &VerifiedPlatform) -> Vec<(&'static str, String)> {
    let TeeReport::Tdx(td) = &v.tee else { panic!() };
    vec![
        ("mrtd", hex::encode(td.mr_td)),
        ("rtmr0", hex::encode(td.rtmr[0])),
        ("rtmr1", hex::encode(td.rtmr[1])),
        ("rtmr2", hex::encode(td.rtmr[2])),
    ]
}

fn checks(r: Rejection) -> Vec<String> {
    r.failures.into_iter().map(|f| f.check).collect()
}

#[test]
fn production_tdx_accepts_an_up_to_date_quote_with_its_pinned_measurements() {
    let v = tdx_evidence(true);
    policy(TDX, &tdx_pins(&v)).appraise_platform(&v).unwrap();
}

#[test]
fn production_tdx_fails_closed_until_measurements_are_pinned() {
    let v = tdx_evidence(true);
    let r = policy(TDX, &[]).appraise_platform(&v).unwrap_err();
    assert_eq!(checks(r), ["MRTD", "RTMR0", "RTMR1", "RTMR2"]);
}

#[test]
fn production_tdx_requires_collateral() {
    let v = tdx_evidence(false);
    let r = policy(TDX, &tdx_pins(&v))
        .appraise_platform(&v)
        .unwrap_err();
    assert_eq!(checks(r), ["TCB"]);
}

#[test]
fn a_tcb_status_or_advisory_outside_the_policy_is_rejected() {
    let mut v = tdx_evidence(true);
    let p = policy(TDX, &tdx_pins(&v));
    let PlatformTcb::Tdx(verdict) = &v.tcb else {
        panic!()
    };
    let base: TcbVerdict = verdict.clone();
    for (status, advisories, expect) in [
        (TcbStatus::OutOfDate, vec![], vec!["TCB status"]),
        (
            TcbStatus::SWHardeningNeeded,
            vec!["INTEL-SA-00837".to_string()],
            vec!["TCB status", "TCB advisories"],
        ),
        (
            TcbStatus::UpToDate,
            vec!["INTEL-SA-00615".to_string()],
            vec!["TCB advisories"],
        ),
    ] {
        v.tcb = PlatformTcb::Tdx(TcbVerdict {
            status,
            advisory_ids: advisories,
            ..base.clone()
        });
        let r = p.appraise_platform(&v).unwrap_err();
        assert_eq!(checks(r), expect, "{status}");
    }
    // An advisory the policy tolerates passes.
    let tolerant = TDX.replace(
        "allowed_advisories = []",
        "allowed_advisories = [\"INTEL-SA-00615\"]",
    );
    policy(&tolerant, &tdx_pins(&v))
        .appraise_platform(&v)
        .unwrap();
}

fn snp_report(path: &str) -> Report {
    Report::parse(&fixture(path)).unwrap()
}

/// A verified SNP platform whose AMD CRL was checked (no fixture carries a
/// real AMD CRL; `check_crl` itself is tested in the attestation crate).
fn snp_platform(report: Report, product: AmdProduct) -> VerifiedPlatform {
    let reported = TcbVersion::decode(report.reported_tcb, product);
    VerifiedPlatform {
        format: EvidenceFormat::SnpReport,
        tee: TeeReport::Snp(Box::new(report)),
        tcb: PlatformTcb::Snp {
            product,
            reported,
            crl_checked: true,
        },
        anchor: kokon_attestation::roots::amd_ark(product).unwrap(),
        platform: "SEV-VCEK".into(),
        chains: Vec::new(),
    }
}

#[test]
fn production_snp_accepts_the_verified_trustee_report_with_its_measurement() {
    let evidence = Evidence {
        format: EvidenceFormat::SnpReport,
        data: fixture("snp/trustee_report.bin"),
        certificates: vec![fixture("snp/trustee_vcek.der")],
        collateral: None,
        crl: Vec::new(),
    };
    let p = policy(SNP, &[]);
    let v = verify_evidence(&evidence, &p.anchors, at("2025-01-01T00:00:00Z")).unwrap();
    let TeeReport::Snp(r) = &v.tee else { panic!() };
    let pin = [("snp_measurement", hex::encode(r.measurement))];
    // The fixtures carry no AMD CRL: production requires one.
    assert_eq!(
        checks(p.appraise_platform(&v).unwrap_err()),
        ["SNP revocation", "SNP MEASUREMENT"]
    );
    assert_eq!(
        checks(policy(SNP, &pin).appraise_platform(&v).unwrap_err()),
        ["SNP revocation"]
    );
    let without_crl = SNP.replace("require_crl = true", "require_crl = false");
    policy(&without_crl, &pin).appraise_platform(&v).unwrap();
    // With the CRL checked, the pinned production policy accepts it.
    let mut checked = v.clone();
    if let PlatformTcb::Snp { crl_checked, .. } = &mut checked.tcb {
        *crl_checked = true;
    }
    policy(SNP, &pin).appraise_platform(&checked).unwrap();
}

#[test]
fn production_snp_rejects_debug_and_a_tcb_below_the_floor() {
    // go-sev-guest's sample: guest policy 0xb0000 (DEBUG), reported SNP SPL 5 < 8.
    let report = snp_report("snp/gosev_attestation.bin");
    let pin = hex::encode(report.measurement);
    let v = snp_platform(report, AmdProduct::Milan);
    let r = policy(SNP, &[("snp_measurement", pin)])
        .appraise_platform(&v)
        .unwrap_err();
    assert_eq!(checks(r), ["debug", "SNP TCB"]);
}

#[test]
fn production_snp_checks_vmpl_migration_agent_smt_and_products_without_a_floor() {
    // trustee's VLEK report comes from VMPL 1.
    let report = snp_report("snp/trustee_vlek_report.bin");
    let pin = hex::encode(report.measurement);
    let p = policy(SNP, &[("snp_measurement", pin.clone())]);
    let r = p
        .appraise_platform(&snp_platform(report.clone(), AmdProduct::Milan))
        .unwrap_err();
    assert_eq!(checks(r), ["SNP VMPL"]);

    let mut ma = report.clone();
    ma.vmpl = 0;
    ma.policy |= kokon_attestation::snp::report::POLICY_MIGRATE_MA;
    let r = p
        .appraise_platform(&snp_platform(ma.clone(), AmdProduct::Milan))
        .unwrap_err();
    assert_eq!(checks(r), ["SNP migration agent"]);

    let no_smt = SNP.replace("allow_smt = true", "allow_smt = false");
    ma.policy &= !kokon_attestation::snp::report::POLICY_MIGRATE_MA;
    let r = policy(&no_smt, &[("snp_measurement", pin.clone())])
        .appraise_platform(&snp_platform(ma.clone(), AmdProduct::Milan))
        .unwrap_err();
    assert_eq!(checks(r), ["SNP SMT"]);

    let r = p
        .appraise_platform(&snp_platform(ma, AmdProduct::Genoa))
        .unwrap_err();
    assert_eq!(checks(r), ["SNP TCB"]);
}

#[test]
fn tdx_registers_do_not_exist_in_snp_evidence() {
    let report = snp_report("snp/trustee_report.bin");
    let text = SNP.replace("snp_measurement = []", "mrtd = [\"00\"]");
    assert!(
        Policy::from_toml(&text, &LocalReferences::default()).is_err(),
        "48 bytes expected"
    );
    let text = SNP.replace(
        "snp_measurement = []",
        &format!("mrtd = [\"{}\"]", "00".repeat(48)),
    );
    let p = Policy::from_toml(&text, &LocalReferences::default()).unwrap();
    let r = p
        .appraise_platform(&snp_platform(report, AmdProduct::Milan))
        .unwrap_err();
    assert_eq!(checks(r), ["MRTD"]);
}

#[test]
fn the_tcb_evaluation_data_number_floor_and_td_attributes_are_checked() {
    let v = tdx_evidence(true);
    let pins = tdx_pins(&v);
    let newer = TDX.replace(
        "min_tcb_evaluation_data_number = 17",
        "min_tcb_evaluation_data_number = 18",
    );
    let r = policy(&newer, &pins).appraise_platform(&v).unwrap_err();
    assert_eq!(checks(r), ["TCB evaluation data number"]);
    // A TD with DEBUG (bit 0) besides SEPT_VE_DISABLE is not the pinned TD.
    let debug = TDX.replace(
        "tdattributes = [\"0000001000000000\"]",
        "tdattributes = [\"0100001000000000\"]",
    );
    let r = policy(&debug, &pins).appraise_platform(&v).unwrap_err();
    assert_eq!(checks(r), ["TDATTRIBUTES"]);
    let xfam = TDX.replace(
        "[measurements]",
        "[measurements]\nxfam = [\"e702060000000000\"]",
    );
    policy(&xfam, &pins).appraise_platform(&v).unwrap();
}
