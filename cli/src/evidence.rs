//! The auditor's commands on raw evidence: `kokon verify --evidence` and
//! `kokon audit explain`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attestation::explain::{self, Field};
use kokon_attestation::pki::pem_certificates;
use kokon_attestation::snp::Report;
use kokon_attestation::tdx::{Collateral, Quote, TcbStatus};
use kokon_attestation::{
    detect_format, roots, verify_evidence, AttestationBundle, Evidence, EvidenceFormat,
    PlatformTcb, TrustAnchors, VerifiedPlatform,
};
use kokon_client::ClientError;
use kokon_policies::{Failure, Rejection};
use serde_json::json;

/// What `kokon verify --evidence` was given.
pub struct RawEvidence {
    /// The quote or report file (binary, or hex text).
    pub file: PathBuf,
    /// Its format, when not detected.
    pub format: Option<String>,
    /// TDX collateral JSON.
    pub collateral: Option<PathBuf>,
    /// SNP: the VCEK or VLEK certificate (DER or PEM).
    pub vcek: Option<PathBuf>,
    /// SNP: the CA chain (ASK or ASVK, then ARK; PEM).
    pub chain: Option<PathBuf>,
    /// SNP: AMD's CRL (DER or PEM).
    pub crl: Option<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads evidence that may be stored as hex text (as some publish SNP reports).
fn read_evidence(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let trimmed: String = text.split_whitespace().collect();
    if !trimmed.is_empty()
        && trimmed.len() % 2 == 0
        && trimmed.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return hex::decode(trimmed).context("decoding hex evidence");
    }
    Ok(bytes)
}

fn format_of(bytes: &[u8], given: Option<&str>) -> anyhow::Result<EvidenceFormat> {
    match given {
        Some("tdx-quote") => Ok(EvidenceFormat::TdxQuote),
        Some("snp-report") => Ok(EvidenceFormat::SnpReport),
        Some(other) => anyhow::bail!("--format {other}: expected tdx-quote or snp-report"),
        None => detect_format(bytes).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the evidence format ({} bytes, neither a TDX quote v4/v5 nor a 1184-byte SNP report); pass --format",
                bytes.len()
            )
        }),
    }
}

/// A certificate file as DER (PEM is converted).
fn certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read(path)?;
    match pem_certificates(&bytes)?.into_iter().next() {
        Some(der) => Ok(der),
        None => Ok(bytes),
    }
}

/// Verifies raw evidence; with a policy, appraises it too. Without one,
/// the evidence must be genuine and (TDX) its TCB UpToDate.
pub fn verify(
    raw: &RawEvidence,
    policy: Option<&kokon_policies::Policy>,
    now: i64,
) -> anyhow::Result<VerifiedPlatform> {
    let data = read_evidence(&raw.file)?;
    let format = format_of(&data, raw.format.as_deref())?;
    let mut certificates = Vec::new();
    if format == EvidenceFormat::SnpReport {
        let vcek = raw
            .vcek
            .as_ref()
            .context("an SNP report needs --vcek (the VCEK or VLEK certificate)")?;
        certificates.push(certificate(vcek)?);
        if let Some(chain) = &raw.chain {
            certificates.extend(pem_certificates(&read(chain)?)?);
        }
    }
    let collateral = match &raw.collateral {
        Some(path) => Some(Collateral::from_json(&read(path)?)?),
        None => None,
    };
    let crl = match &raw.crl {
        Some(path) => kokon_attestation::pki::crl_der(&read(path)?)?,
        None => Vec::new(),
    };
    let evidence = Evidence {
        format,
        data,
        certificates,
        collateral,
        crl,
    };
    let anchors = match policy {
        Some(p) => p.anchors.clone(),
        None => TrustAnchors {
            roots: roots::hardware_roots()?,
        },
    };
    let verified = verify_evidence(&evidence, &anchors, now).map_err(ClientError::Evidence)?;
    match policy {
        Some(p) => p
            .appraise_platform(&verified)
            .map_err(ClientError::Policy)?,
        None => evidence_only(&verified).map_err(ClientError::Policy)?,
    }
    Ok(verified)
}

/// Without a policy: genuine evidence whose TCB the vendor rates UpToDate.
fn evidence_only(v: &VerifiedPlatform) -> Result<(), Rejection> {
    let failure = match &v.tcb {
        PlatformTcb::Tdx(t) if t.status == TcbStatus::UpToDate => return Ok(()),
        PlatformTcb::Tdx(_) => Failure {
            check: "TCB status".into(),
            expected: "UpToDate".into(),
            found: v.tcb.summary(),
        },
        PlatformTcb::Unappraised => Failure {
            check: "TCB status".into(),
            expected: "UpToDate (pass --collateral with Intel's TCB info and QE identity)".into(),
            found: "unknown: no collateral".into(),
        },
        // AMD publishes no TCB status: the VCEK certifies the reported TCB,
        // and a policy's floor judges it.
        PlatformTcb::Snp { .. } => return Ok(()),
    };
    Err(Rejection {
        policy: "evidence only (genuine and UpToDate)".into(),
        failures: vec![failure],
    })
}

/// The report of verified raw evidence.
pub fn report_json(v: &VerifiedPlatform, policy: Option<&str>) -> serde_json::Value {
    json!({
        "verdict": "accepted",
        "policy": policy,
        "format": v.format,
        "root": v.anchor.name,
        "root_sha256": v.anchor.fingerprint(),
        "simulated": v.anchor.simulated,
        "platform": v.platform,
        "debug": v.tee.debug(),
        "tcb": v.tcb.summary(),
        "fields": fields_json(&v.tee.fields()),
    })
}

/// The same as text.
pub fn report_text(v: &VerifiedPlatform, policy: Option<&str>) -> String {
    let mut out = String::new();
    let verdict = match policy {
        Some(p) => format!("ACCEPTED by policy {p:?}"),
        None => "GENUINE (signatures, chain, collateral) and TCB acceptable".into(),
    };
    out.push_str(&format!("  {:<20} {verdict}\n", "verdict"));
    out.push_str(&format!("  {:<20} {:?}\n", "format", v.format));
    out.push_str(&format!(
        "  {:<20} {} sha256:{}\n",
        "root",
        v.anchor.name,
        v.anchor.fingerprint()
    ));
    out.push_str(&format!("  {:<20} {}\n", "platform", v.platform));
    out.push_str(&format!("  {:<20} {}\n", "TCB", v.tcb.summary()));
    for f in v.tee.fields() {
        out.push_str(&format!("  {:<20} {}\n", f.name, f.value));
    }
    out
}

fn fields_json(fields: &[Field]) -> serde_json::Value {
    serde_json::to_value(fields).unwrap_or_default()
}

/// `kokon audit explain FILE`: every field of a quote, report or bundle.
pub fn explain(path: &Path, format: Option<&str>, json: bool) -> anyhow::Result<()> {
    let bytes = read(path)?;
    let (fields, claims) = match AttestationBundle::from_json(&bytes) {
        Ok(bundle) => (
            explain_evidence(&bundle.evidence.data, Some(bundle.evidence.format))?,
            Some(bundle.claims),
        ),
        Err(_) => {
            let data = read_evidence(path)?;
            let format = format_of(&data, format)?;
            (explain_evidence(&data, Some(format))?, None)
        }
    };
    if json {
        let out = json!({ "fields": fields_json(&fields), "claims": claims });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    for f in &fields {
        println!(
            "{}\n    value:   {}\n    meaning: {}",
            f.name, f.value, f.meaning
        );
    }
    if let Some(c) = claims {
        println!(
            "claims (bound by REPORTDATA = SHA-512 of their canonical encoding)\n    model {} sha256:{}\n    config sha256:{}\n    runtime {}\n    receipt key ed25519:{}\n    nonce {}\n    issued at {}",
            c.model_name,
            hex::encode(c.model_digest),
            hex::encode(c.config_digest),
            c.runtime,
            hex::encode(c.receipt_key),
            hex::encode(&c.nonce),
            c.issued_at
        );
    }
    Ok(())
}

fn explain_evidence(data: &[u8], format: Option<EvidenceFormat>) -> anyhow::Result<Vec<Field>> {
    Ok(match format {
        Some(EvidenceFormat::TdxQuote) => explain::tdx_quote(&Quote::parse(data)?),
        Some(EvidenceFormat::SnpReport) => explain::snp_report(&Report::parse(data)?),
        None => anyhow::bail!("unknown evidence format"),
    })
}

/// `kokon audit eventlog LOG [--quote QUOTE]`: each event, the replayed
/// RTMRs, and (with a quote) whether they match the quote's.
pub fn eventlog(log: &Path, quote: Option<&Path>, json: bool) -> anyhow::Result<()> {
    use kokon_attestation::eventlog;
    let events = eventlog::parse(&read(log)?)?;
    let replayed = eventlog::replay(&events);
    let quoted = match quote {
        Some(q) => Some(Quote::parse(&read_evidence(q)?)?.body.rtmr),
        None => None,
    };
    let printable = |data: &[u8]| -> String {
        let text: String = data
            .iter()
            .take(96)
            .map(|b| match b {
                0x20..=0x7e => *b as char,
                _ => '.',
            })
            .collect();
        text
    };
    let mismatches: Vec<String> = match &quoted {
        Some(q) => (0..3)
            .filter(|i| replayed.get(*i) != q.get(*i))
            .map(|i| format!("RTMR{i}"))
            .collect(),
        None => Vec::new(),
    };
    if json {
        let out = json!({
            "events": events.iter().map(|e| json!({
                "mr_index": e.mr_index,
                "rtmr": e.rtmr(),
                "type": e.type_name(),
                "event_type": e.event_type,
                "digest": hex::encode(e.digest),
                "data": printable(&e.data),
            })).collect::<Vec<_>>(),
            "replayed": replayed.iter().map(hex::encode).collect::<Vec<_>>(),
            "quote": quoted.map(|q| q.iter().map(hex::encode).collect::<Vec<_>>()),
            "mismatches": mismatches,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for (n, e) in events.iter().enumerate() {
            let target = e
                .rtmr()
                .map(|i| format!("RTMR{i}"))
                .unwrap_or_else(|| "(logged only)".into());
            println!(
                "{n:4} {target:<13} {:<34} {}\n     data: {}",
                e.type_name(),
                hex::encode(e.digest),
                printable(&e.data)
            );
        }
        for (i, r) in replayed.iter().enumerate() {
            let verdict = match &quoted {
                Some(q) if i < 3 && q.get(i) == Some(r) => " = quote",
                Some(_) if i < 3 => " != quote",
                _ => "",
            };
            println!("replayed RTMR{i} {}{verdict}", hex::encode(r));
        }
    }
    if !mismatches.is_empty() {
        return Err(ClientError::Policy(Rejection {
            policy: "event log replay".into(),
            failures: mismatches
                .iter()
                .map(|m| Failure {
                    check: m.clone(),
                    expected: "the quote's value".into(),
                    found: "a different replay of the event log".into(),
                })
                .collect(),
        })
        .into());
    }
    Ok(())
}
