//! Evidence verification latency: kokon's verifiers against the `dcap-qvl`
//! and `sev` crates on the same real inputs, interleaved sample by sample.

use std::time::{Duration, Instant};

use kokon_attestation::roots::{amd_ark, amd_ask, intel_sgx_root, AmdProduct};
use kokon_attestation::snp::verify_report;
use kokon_attestation::tdx::{verify_quote_with_collateral, Collateral};
use kokon_attestation::TrustAnchors;

const SAMPLES: usize = 300;

fn fixture(path: &str) -> anyhow::Result<Vec<u8>> {
    let full = kokon_tests::repo_root()
        .join("../shared/fixtures")
        .join(path);
    std::fs::read(&full).map_err(|e| anyhow::anyhow!("{}: {e}", full.display()))
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Times `ours` and `theirs` alternately; returns their p50s.
fn duel(
    mut ours: impl FnMut() -> bool,
    mut theirs: impl FnMut() -> bool,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let time = |f: &mut dyn FnMut() -> bool, who: &str| -> anyhow::Result<Duration> {
        let t = Instant::now();
        anyhow::ensure!(f(), "{who} rejected genuine evidence");
        Ok(t.elapsed())
    };
    for i in 0..SAMPLES + 20 {
        // Alternate which goes first, so neither always runs on a cold cache.
        let (d, e) = if i % 2 == 0 {
            let d = time(&mut ours, "kokon")?;
            (d, time(&mut theirs, "the peer")?)
        } else {
            let e = time(&mut theirs, "the peer")?;
            (time(&mut ours, "kokon")?, e)
        };
        if i >= 20 {
            a.push(d);
            b.push(e);
        }
    }
    Ok((p50(a), p50(b)))
}

/// Prints the verification figures.
pub fn run() -> anyhow::Result<()> {
    let quote = fixture("tdx/dcapqvl_tdx_quote.dat")?;
    let collateral_json = fixture("tdx/dcapqvl_tdx_quote_collateral.json")?;
    let collateral = Collateral::from_json(&collateral_json)?;
    let theirs: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(&collateral_json)?;
    let intel = TrustAnchors {
        roots: vec![intel_sgx_root()?],
    };
    let now = 1_751_328_000; // 2025-07-01, inside the collateral window
    let (k, d) = duel(
        || verify_quote_with_collateral(&quote, &collateral, &intel, now).is_ok(),
        || dcap_qvl::verify::ring::verify(&quote, &theirs, now as u64).is_ok(),
    )?;
    println!(
        "verify TDX quote + collateral   kokon p50 {:6.3} ms   dcap-qvl p50 {:6.3} ms   kokon/dcap-qvl {:.2}",
        k.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3,
        k.as_secs_f64() / d.as_secs_f64()
    );

    let report = fixture("snp/trustee_report.bin")?;
    let vcek = fixture("snp/trustee_vcek.der")?;
    let amd = TrustAnchors {
        roots: vec![amd_ark(AmdProduct::Milan)?],
    };
    let chain = vec![amd_ask(AmdProduct::Milan)?, amd_ark(AmdProduct::Milan)?.der];
    let now = 1_735_689_600; // 2025-01-01
    let sev_verify = || {
        use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
        use sev::firmware::guest::AttestationReport;
        use sev::parser::ByteParser;
        let (Ok(ark), Ok(ask), Ok(vek), Ok(r)) = (
            Certificate::from_der(chain.get(1).map(Vec::as_slice).unwrap_or_default()),
            Certificate::from_der(chain.first().map(Vec::as_slice).unwrap_or_default()),
            Certificate::from_der(&vcek),
            AttestationReport::from_bytes(&report),
        ) else {
            return false;
        };
        let chain = Chain {
            ca: ca::Chain { ark, ask },
            vek,
        };
        chain.verify().is_ok() && (&chain, &r).verify().is_ok()
    };
    let (k, s) = duel(
        || verify_report(&report, &vcek, &chain, &amd, now).is_ok(),
        sev_verify,
    )?;
    println!(
        "verify SNP report + VCEK chain  kokon p50 {:6.3} ms   sev      p50 {:6.3} ms   kokon/sev      {:.2}",
        k.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3,
        k.as_secs_f64() / s.as_secs_f64()
    );
    Ok(())
}
