//! `kokon attest` and `kokon verify`: fetch and verify an enclave's
//! attestation, or verify saved bundles and raw evidence offline.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attestation::AttestationBundle;
use kokon_client::{ClientError, VerifiedEnclave};

use crate::args::VerifyArgs;
use crate::{evidence, local, report};

/// `kokon attest`: fetches and verifies the enclave's attestation.
pub async fn attest(
    host: &str,
    policy: &Path,
    save: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let p = local::load_policy(policy)?;
    let enclave = local::client(host)?.attest(&p).await?;
    if let Some(path) = save {
        std::fs::write(&path, enclave.bundle.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print_verified(&enclave, &p.name, json);
    Ok(())
}

/// `kokon verify`: a saved bundle against a policy, or raw evidence.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let VerifyArgs {
        bundle,
        evidence,
        format,
        collateral,
        vcek,
        chain,
        crl,
        policy,
        at,
        json,
    } = args;
    let p = policy.as_deref().map(local::load_policy).transpose()?;
    let now = parse_time(at.as_deref())?;
    if let Some(file) = evidence {
        let raw = evidence::RawEvidence {
            file,
            format,
            collateral,
            vcek,
            chain,
            crl,
        };
        let v = evidence::verify(&raw, p.as_ref(), now)?;
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
    let b = AttestationBundle::from_json(&bytes).map_err(ClientError::from)?;
    let issued = b.claims.issued_at;
    let enclave = kokon_client::verify(b, &p, None, now).inspect_err(|e| {
        let aged = matches!(e, ClientError::Policy(r) if r.failures.iter().any(|f| f.check == "evidence age"));
        if aged {
            let at = kokon_attestation::pki::rfc3339(issued);
            eprintln!("hint: the bundle was issued at {at}; to verify it as of then, add --at {at}");
        }
    })?;
    print_verified(&enclave, &p.name, json);
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
pub fn print_verified(e: &VerifiedEnclave, policy: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(e, policy)).unwrap_or_default()
        );
    } else {
        print!("{}", report::text(e, policy));
    }
}
