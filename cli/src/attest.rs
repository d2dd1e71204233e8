//! `kokon attest` and `kokon verify`: fetch and verify an enclave's
//! attestation, or verify saved bundles and raw evidence offline.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attestation::AttestationBundle;
use kokon_client::{ClientError, Examined, VerifiedEnclave};
use kokon_policies::Policy;

use crate::args::VerifyArgs;
use crate::report::Report;
use crate::{evidence, local};

/// `kokon attest`: fetches and verifies the enclave's attestation.
pub async fn attest(
    host: &str,
    policy: &Path,
    save: Option<PathBuf>,
    json: bool,
    report: Option<&Path>,
) -> anyhow::Result<()> {
    let p = local::load_policy(policy)?;
    let examined = local::client(host)?.examine(&p).await;
    let (enclave, r) = conclude(examined, &p, kokon_client::unix_now(), report)?;
    if let Some(path) = save {
        std::fs::write(&path, enclave.bundle.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print_report(&r, json);
    Ok(())
}

/// The policy's verdict on `examined` (checked at `now`) and its report,
/// written as HTML to `html` when asked: for an accepted enclave and for a
/// rejected one alike, not when the enclave could not be asked at all.
pub fn conclude(
    examined: Result<Examined, ClientError>,
    policy: &Policy,
    now: i64,
    html: Option<&Path>,
) -> anyhow::Result<(VerifiedEnclave, Report)> {
    let (outcome, report) = match examined {
        Ok(x) => {
            let outcome = x.clone().accept(policy);
            let report = Report::new(&x, outcome.as_ref().err());
            (outcome, report)
        }
        Err(e) if e.is_rejection() => {
            let report = Report::unverified(&policy.name, &e, now);
            (Err(e), report)
        }
        Err(e) => return Err(e.into()),
    };
    let written = match html {
        Some(path) => report.html().and_then(|page| {
            std::fs::write(path, page)
                .with_context(|| format!("writing the report {}", path.display()))
        }),
        None => Ok(()),
    };
    match (outcome, written) {
        (Ok(enclave), Ok(())) => Ok((enclave, report)),
        (Ok(_), Err(w)) => Err(w),
        // The rejection is the answer; a report that could not be written is said too.
        (Err(e), written) => {
            if let Err(w) = written {
                eprintln!("error: {w:#}");
            }
            Err(e.into())
        }
    }
}

/// `kokon verify`: a saved bundle against a policy, or raw evidence.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let VerifyArgs {
        bundle,
        evidence,
        format,
        gpu_chain,
        gpu_nonce,
        gpu_ocsp,
        gpu_rim,
        collateral,
        fetch_collateral,
        sources,
        vcek,
        chain,
        crl,
        policy,
        at,
        json,
        report,
    } = args;
    let now = parse_time(at.as_deref())?;
    if let Some(file) = &evidence {
        // Before the policy is loaded: this is a usage error whatever the policy.
        anyhow::ensure!(
            policy.is_none() || !evidence::is_gpu_report(file, format.as_deref())?,
            "--policy: a policy's [gpu] section appraises GPU evidence in a bundle (kokon verify --bundle), whose claims give the nonce; verify a raw GPU report with --gpu-nonce instead"
        );
    }
    let p = policy.as_deref().map(local::load_policy).transpose()?;
    if let Some(file) = evidence {
        if evidence::is_gpu_report(&file, format.as_deref())? {
            let chain = gpu_chain
                .context("an NVIDIA GPU report needs --gpu-chain (its certificate chain, PEM)")?;
            let v = evidence::verify_gpu(&file, &chain, gpu_nonce.as_deref(), now)?;
            let out = evidence::GpuVerdict {
                verified: &v,
                nonce_checked: gpu_nonce.is_some(),
                revocation: evidence::gpu_revocation(&v, &gpu_ocsp, now)?,
                reference: evidence::gpu_reference_values(&v, &gpu_rim, now)?,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.json()).unwrap_or_default()
                );
            } else {
                print!("{}", out.text());
            }
            return Ok(());
        }
        anyhow::ensure!(
            gpu_chain.is_none(),
            "--gpu-chain is for NVIDIA GPU reports; {} is not one",
            file.display()
        );
        let raw = evidence::RawEvidence {
            file,
            format,
            collateral,
            // An auditor's fetch is kept in memory only: fresh every time.
            fetch: fetch_collateral.then(|| sources.config(None)).transpose()?,
            vcek,
            chain,
            crl,
        };
        let v = evidence::verify(&raw, p.as_ref(), now).await?;
        let name = p.as_ref().map(|p| p.name.as_str());
        if json {
            let out = evidence::report_json(&v, name);
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            print!("{}", evidence::report_text(&v, name));
        }
        return Ok(());
    }
    let (Some(bundle), Some(p)) = (bundle, p) else {
        anyhow::bail!("--bundle needs --policy");
    };
    let bytes = std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let bundle = AttestationBundle::from_json(&bytes).map_err(ClientError::from);
    let issued = bundle.as_ref().map(|b| b.claims.issued_at).ok();
    let examined = bundle.and_then(|b| kokon_client::examine(b, &p, None, now));
    let (_, r) = conclude(examined, &p, now, report.as_deref()).inspect_err(|e| {
        let aged = matches!(e.downcast_ref(), Some(ClientError::Policy(r)) if r.failures.iter().any(|f| f.check == "evidence age"));
        if let (true, Some(issued)) = (aged, issued) {
            let at = kokon_attestation::pki::rfc3339(issued);
            eprintln!("hint: the bundle was issued at {at}; to verify it as of then, add --at {at}");
        }
    })?;
    print_report(&r, json);
    Ok(())
}

/// `--at`: an RFC 3339 time, default now.
fn parse_time(at: Option<&str>) -> anyhow::Result<i64> {
    match at {
        None => Ok(kokon_client::unix_now()),
        Some(s) => Ok(time::OffsetDateTime::parse(
            s,
            &time::format_description::well_known::Rfc3339,
        )
        .with_context(|| format!("--at {s:?} is not an RFC 3339 time"))?
        .unix_timestamp()),
    }
}

/// Prints what was verified (text or JSON).
pub fn print_report(r: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r.json()).unwrap_or_default()
        );
    } else {
        print!("{}", r.text());
    }
}
