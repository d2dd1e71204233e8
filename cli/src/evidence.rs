//! The auditor's commands on raw evidence: `kokon verify --evidence` and
//! `kokon audit explain`, for CPU evidence (TDX quotes, SNP reports) and
//! NVIDIA GPU attestation reports.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attestation::explain::{self, Field};
use kokon_attestation::nvidia::{self, rim, spdm, VerifiedGpu};
use kokon_attestation::ocsp;
use kokon_attestation::pki::pem_certificates;
use kokon_attestation::snp::Report;
use kokon_attestation::tdx::collateral::{
    PcsResponses, PCK_CRL_ISSUER_CHAIN_HEADER, QE_IDENTITY_ISSUER_CHAIN_HEADER,
    SGX_TCB_INFO_ISSUER_CHAIN_HEADER, TCB_INFO_ISSUER_CHAIN_HEADER,
};
use kokon_attestation::tdx::{Collateral, Quote, TcbStatus};
use kokon_attestation::{
    detect_format, roots, verify_evidence, AttestationBundle, Evidence, EvidenceFormat,
    PlatformTcb, TrustAnchors, VerifiedPlatform,
};
use kokon_client::ClientError;
use kokon_host::collateral::{CollateralConfig, CollateralService};
use kokon_policies::{Failure, Rejection};
use serde_json::json;

use crate::report;

/// What `kokon verify --evidence` was given.
pub struct RawEvidence {
    /// The quote or report file (binary, or hex text).
    pub file: PathBuf,
    /// Its format, when not detected.
    pub format: Option<String>,
    /// TDX collateral: a directory of PCS responses or a JSON file.
    pub collateral: Option<PathBuf>,
    /// Fetch what the evidence needs from these sources.
    pub fetch: Option<CollateralConfig>,
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
        Some(other) => {
            anyhow::bail!("--format {other}: expected tdx-quote, snp-report or nvidia-report")
        }
        None => detect_format(bytes).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the evidence format ({} bytes, neither a TDX quote v4/v5 nor a 1184-byte SNP report); pass --format",
                bytes.len()
            )
        }),
    }
}

/// Whether `path` holds an NVIDIA GPU attestation report: `--format
/// nvidia-report`, or, with no format given, bytes (binary or hex) that
/// begin as an SPDM 1.1 GET_MEASUREMENTS request does.
pub fn is_gpu_report(path: &Path, format: Option<&str>) -> anyhow::Result<bool> {
    Ok(is_gpu(&read_evidence(path)?, format))
}

/// [`is_gpu_report`] of bytes already read.
fn is_gpu(data: &[u8], format: Option<&str>) -> bool {
    match format {
        Some(format) => format == "nvidia-report",
        None => data.starts_with(&[spdm::SPDM_VERSION_1_1, spdm::GET_MEASUREMENTS]),
    }
}

/// Verifies an NVIDIA GPU attestation report (binary or hex) with its
/// certificate chain at `now`, anchored only in the embedded NVIDIA Device
/// Identity CA. `nonce` (hex) is the nonce its request must carry; without
/// one the report's own is taken, so freshness is not checked.
pub fn verify_gpu(
    report: &Path,
    chain: &Path,
    nonce: Option<&str>,
    now: i64,
) -> anyhow::Result<VerifiedGpu> {
    let data = read_evidence(report)?;
    let chain = read(chain)?;
    let nonce = match nonce {
        Some(text) => <[u8; spdm::NONCE_LEN]>::try_from(
            hex::decode(text).with_context(|| format!("--gpu-nonce {text:?} is not hex"))?,
        )
        .map_err(|n| {
            anyhow::anyhow!(
                "--gpu-nonce: {} bytes, expected {}",
                n.len(),
                spdm::NONCE_LEN
            )
        })?,
        None => {
            nvidia::Report::parse(&data)
                .map_err(ClientError::Evidence)?
                .request
                .nonce
        }
    };
    let anchors = TrustAnchors {
        roots: vec![roots::nvidia_device_root()?],
    };
    let expect = nvidia::Expectations {
        nonce,
        ..nvidia::Expectations::default()
    };
    Ok(nvidia::verify(&data, &chain, &anchors, now, &expect).map_err(ClientError::Evidence)?)
}

/// Checks NVIDIA's OCSP answers (`--gpu-ocsp`, DER files in chain order)
/// for a verified GPU report's chain at `now`; `None` without files.
pub fn gpu_revocation(
    v: &VerifiedGpu,
    files: &[PathBuf],
    now: i64,
) -> anyhow::Result<Option<Vec<ocsp::Verdict>>> {
    if files.is_empty() {
        return Ok(None);
    }
    let answers = files
        .iter()
        .map(|f| read(f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        v.check_revocation(&answers, now)
            .map_err(ClientError::Evidence)?,
    ))
}

/// A GPU report compared with its driver's and its VBIOS's RIMs.
pub struct GpuReferenceValues {
    /// The driver RIM, verified.
    pub driver: rim::VerifiedRim,
    /// The VBIOS RIM, verified.
    pub vbios: rim::VerifiedRim,
    /// What the comparison covered.
    pub appraisal: rim::RimAppraisal,
}

/// Verifies the RIMs `files` (`--gpu-rim`: the driver's and the VBIOS's,
/// in either order, as XML or as the RIM service's JSON answer) under the
/// embedded NVIDIA CoRIM signing root at `now` and compares `v`'s report
/// with them; `None` without files.
pub fn gpu_reference_values(
    v: &VerifiedGpu,
    files: &[PathBuf],
    now: i64,
) -> anyhow::Result<Option<GpuReferenceValues>> {
    if files.is_empty() {
        return Ok(None);
    }
    let [first, second] = files else {
        anyhow::bail!(
            "--gpu-rim: {} files, expected 2 (the driver's RIM and the VBIOS's)",
            files.len()
        );
    };
    let anchors = TrustAnchors {
        roots: vec![roots::nvidia_rim_root()?],
    };
    let load = |path: &PathBuf| -> anyhow::Result<rim::VerifiedRim> {
        let bytes = read(path)?;
        let xml = match bytes.trim_ascii_start().first() {
            Some(b'{') => kokon_host::collateral::rim_document(&bytes, None)?.into_bytes(),
            _ => bytes,
        };
        rim::verify(&xml, &anchors, now)
            .map_err(ClientError::Evidence)
            .with_context(|| format!("--gpu-rim {}", path.display()))
    };
    let (a, b) = (load(first)?, load(second)?);
    let (driver, vbios) = match a.version == v.driver_version() {
        true => (a, b),
        false => (b, a),
    };
    let appraisal = rim::appraise(&v.report, &driver, &vbios).map_err(ClientError::Evidence)?;
    Ok(Some(GpuReferenceValues {
        driver,
        vbios,
        appraisal,
    }))
}

/// What `kokon verify` says of a GPU report that verified.
pub struct GpuVerdict<'a> {
    /// The verified report.
    pub verified: &'a VerifiedGpu,
    /// Whether the nonce was the caller's (`--gpu-nonce`).
    pub nonce_checked: bool,
    /// What NVIDIA's OCSP answers said, when given (`--gpu-ocsp`).
    pub revocation: Option<Vec<ocsp::Verdict>>,
    /// The comparison with NVIDIA's RIMs, when given (`--gpu-rim`).
    pub reference: Option<GpuReferenceValues>,
}

/// What GPU verification without a bundle leaves to one.
const GPU_LEFT_TO_BUNDLES: &str = "a policy's [gpu] pins apply to bundles (kokon verify --bundle), where the nonce comes from the claims";

impl GpuVerdict<'_> {
    /// What was not checked, for the verdict.
    fn not_checked(&self) -> String {
        let mut out = Vec::new();
        if self.reference.is_none() {
            out.push("NVIDIA's reference measurements (no --gpu-rim)");
        }
        if self.revocation.is_none() {
            out.push("certificate revocation (no --gpu-ocsp)");
        }
        out.push(GPU_LEFT_TO_BUNDLES);
        out.join("; ")
    }

    fn revocation_text(&self) -> Option<String> {
        self.revocation.as_ref().map(|verdicts| {
            verdicts
                .iter()
                .map(|o| format!("good, signed by {}", o.signer))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn reference_text(&self) -> Option<String> {
        self.reference.as_ref().map(|r| {
            format!(
                "{} indexes match the RIMs of driver {} and VBIOS {}{}",
                r.appraisal.compared.len(),
                r.driver.version,
                r.vbios.version,
                match r.appraisal.nvdec0_skipped {
                    true => " (index 36 not compared: NVDEC0 is disabled)",
                    false => "",
                }
            )
        })
    }

    fn nonce_note(&self) -> &'static str {
        if self.nonce_checked {
            "equal to --gpu-nonce"
        } else {
            "NOT CHECKED, no --gpu-nonce: the report may be a replay"
        }
    }

    /// The verdict as JSON.
    pub fn json(&self) -> serde_json::Value {
        let v = self.verified;
        let measurements: serde_json::Map<String, serde_json::Value> = v
            .measurements()
            .iter()
            .map(|(i, d)| (i.to_string(), json!(hex::encode(d))))
            .collect();
        json!({
            "verdict": "verified",
            "format": "nvidia-report",
            "anchor": v.anchor,
            "chain": v.chain_subjects(),
            "nonce": hex::encode(v.nonce()),
            "nonce_checked": self.nonce_checked,
            "fwid": hex::encode(v.fwid()),
            "driver_version": v.driver_version(),
            "vbios_version": v.vbios_version(),
            "measurements": measurements,
            "evidence_sha384": hex::encode(v.evidence_digest),
            "revocation": self.revocation_text(),
            "reference_values": self.reference_text(),
            "not_checked": self.not_checked(),
        })
    }

    /// The verdict as text.
    pub fn text(&self) -> String {
        let v = self.verified;
        let mut out = String::from("NVIDIA GPU attestation report: VERIFIED\n");
        let mut line = |name: &str, value: String| out.push_str(&format!("  {name:<16} {value}\n"));
        line(
            "chain",
            format!("{} certificates up to {}", v.certificates.len(), v.anchor),
        );
        for subject in v.chain_subjects() {
            line("", subject.to_owned());
        }
        line(
            "signature",
            "ECDSA P-384 over the GET_MEASUREMENTS transcript, by the leaf's key: valid".into(),
        );
        line(
            "FWID",
            format!(
                "{} (equal in the report and the leaf)",
                hex::encode(v.fwid())
            ),
        );
        line(
            "nonce",
            format!("{} ({})", hex::encode(v.nonce()), self.nonce_note()),
        );
        line("driver", v.driver_version().to_owned());
        line("VBIOS", v.vbios_version().to_owned());
        let measurements = v.measurements();
        line(
            "measurements",
            format!("{} blocks (SHA-384)", measurements.len()),
        );
        for (index, digest) in &measurements {
            line("", format!("{index:>3} {}", hex::encode(digest)));
        }
        line(
            "evidence SHA-384",
            format!("{} (report, then chain)", hex::encode(v.evidence_digest)),
        );
        if let Some(text) = self.revocation_text() {
            line("revocation", text);
        }
        if let Some(text) = self.reference_text() {
            line("reference", text);
        }
        line("not checked", self.not_checked());
        out
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
pub async fn verify(
    raw: &RawEvidence,
    policy: Option<&kokon_policies::Policy>,
    now: i64,
) -> anyhow::Result<VerifiedPlatform> {
    let data = read_evidence(&raw.file)?;
    let format = format_of(&data, raw.format.as_deref())?;
    let mut certificates = Vec::new();
    if let Some(vcek) = &raw.vcek {
        certificates.push(certificate(vcek)?);
        if let Some(chain) = &raw.chain {
            certificates.extend(pem_certificates(&read(chain)?)?);
        }
    }
    let mut collateral = match &raw.collateral {
        Some(path) => Some(read_collateral(path)?),
        None => None,
    };
    let mut crl = match &raw.crl {
        Some(path) => kokon_attestation::pki::crl_der(&read(path)?)?,
        None => Vec::new(),
    };
    if let Some(config) = &raw.fetch {
        let service = CollateralService::new(config.clone())?;
        match format {
            EvidenceFormat::TdxQuote => {
                collateral = Some(
                    service
                        .tdx(&data, now)
                        .await
                        .context("fetching the TDX collateral")?,
                );
            }
            EvidenceFormat::SnpReport => {
                if certificates.len() < 3 {
                    certificates = service
                        .snp(&data, &certificates, now)
                        .await
                        .context("fetching the SNP certificate chain")?;
                }
                if crl.is_empty() {
                    crl = service
                        .snp_crl(&data, now)
                        .await
                        .context("fetching AMD's CRL")?;
                }
            }
        }
    }
    if format == EvidenceFormat::SnpReport && certificates.is_empty() {
        anyhow::bail!(
            "an SNP report needs --vcek (the VCEK or VLEK certificate) or --fetch-collateral"
        );
    }
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

/// The files of a collateral directory: Intel PCS responses as `curl -o
/// FILE -D FILE.headers` saves them (docs/attestation.md lists the commands).
pub const PCS_FILES: [(&str, &str); 7] = [
    ("tcb_info.json", "the body of GET /tdx/certification/v4/tcb?fmspc=FMSPC"),
    ("tcb_info.headers", "the response headers of GET /tdx/certification/v4/tcb?fmspc=FMSPC"),
    ("qe_identity.json", "the body of GET /tdx/certification/v4/qe/identity"),
    ("qe_identity.headers", "the response headers of GET /tdx/certification/v4/qe/identity"),
    ("pck_crl.der", "the body of GET /sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der"),
    ("pck_crl.headers", "the response headers of GET /sgx/certification/v4/pckcrl?ca=…"),
    ("root_ca_crl.der", "the Intel SGX Root CA CRL, e.g. https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"),
];

/// `--collateral PATH`: a directory of PCS responses, or a JSON file.
fn read_collateral(path: &Path) -> anyhow::Result<Collateral> {
    if !path.is_dir() {
        return Collateral::from_json(&read(path)?)
            .with_context(|| format!("--collateral {}", path.display()));
    }
    let mut files = Vec::new();
    for (name, what) in PCS_FILES {
        let file = path.join(name);
        let bytes = std::fs::read(&file)
            .with_context(|| format!("--collateral {}: reading {name} ({what})", path.display()))?;
        files.push(bytes);
    }
    let [tcb, tcb_headers, qe, qe_headers, pck_crl, pck_crl_headers, root_crl] = files.as_slice()
    else {
        anyhow::bail!("--collateral {}: incomplete", path.display());
    };
    let header = |dump: &[u8], file: &str, names: &[&str]| -> anyhow::Result<Vec<u8>> {
        let value = header(dump, names);
        if value.is_empty() {
            anyhow::bail!(
                "--collateral {}: {file} has no {} header (expected the response headers as `curl -D {file}` saves them)",
                path.display(),
                names.join(" or ")
            );
        }
        Ok(value)
    };
    Collateral::from_pcs(&PcsResponses {
        tcb_info: tcb,
        tcb_info_issuer_chain: &header(
            tcb_headers,
            "tcb_info.headers",
            &[
                TCB_INFO_ISSUER_CHAIN_HEADER,
                SGX_TCB_INFO_ISSUER_CHAIN_HEADER,
            ],
        )?,
        qe_identity: qe,
        qe_identity_issuer_chain: &header(
            qe_headers,
            "qe_identity.headers",
            &[QE_IDENTITY_ISSUER_CHAIN_HEADER],
        )?,
        pck_crl,
        pck_crl_issuer_chain: &header(
            pck_crl_headers,
            "pck_crl.headers",
            &[PCK_CRL_ISSUER_CHAIN_HEADER],
        )?,
        root_ca_crl: root_crl,
    })
    .with_context(|| format!("--collateral {}", path.display()))
}

/// The value of the last of the headers `names` (any case) in a header
/// dump (`curl -D`: a status line, then `Name: value` lines; after
/// redirects, one block per response); empty when there is none.
fn header(dump: &[u8], names: &[&str]) -> Vec<u8> {
    String::from_utf8_lossy(dump)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| names.iter().any(|n| name.trim().eq_ignore_ascii_case(n)))
        .map(|(_, value)| value.trim().as_bytes().to_vec())
        .next_back()
        .unwrap_or_default()
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
            expected: "UpToDate (pass --collateral with Intel's TCB info and QE identity, or --fetch-collateral)".into(),
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
    let caveats = v.tcb.caveats();
    json!({
        "verdict": "accepted",
        "headline": report::headline("accepted", &caveats),
        "caveats": caveats,
        "policy": policy,
        "format": v.format,
        "root": v.anchor.name,
        "root_sha256": v.anchor.fingerprint(),
        "simulated": v.anchor.simulated,
        "platform": v.platform,
        "debug": v.tee.debug(),
        "tcb": v.tcb,
        "fields": fields_json(&v.tee.fields()),
    })
}

/// The same as text.
pub fn report_text(v: &VerifiedPlatform, policy: Option<&str>) -> String {
    let mut out = String::new();
    let verdict = match (policy, v.format) {
        (Some(p), _) => format!("ACCEPTED by policy {p:?}"),
        (None, EvidenceFormat::TdxQuote) => {
            "GENUINE: signatures, chain and collateral verified, TCB UpToDate".into()
        }
        (None, EvidenceFormat::SnpReport) => {
            "GENUINE: signatures and chain verified, the VCEK certifies the reported TCB".into()
        }
    };
    let verdict = report::headline(&verdict, &v.tcb.caveats());
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

/// `kokon audit explain FILE`: every field of a quote, report (CPU or GPU) or bundle;
/// for a bundle also its claims and what `config_digest` commits to.
pub fn explain(path: &Path, format: Option<&str>, json: bool) -> anyhow::Result<()> {
    let bytes = read(path)?;
    let (fields, bundle) = match AttestationBundle::from_json(&bytes) {
        Ok(bundle) => (
            explain_evidence(&bundle.evidence.data, Some(bundle.evidence.format))?,
            Some(bundle),
        ),
        Err(_) => {
            let data = read_evidence(path)?;
            if is_gpu(&data, format) {
                let report = nvidia::Report::parse(&data).map_err(ClientError::Evidence)?;
                (explain::nvidia_report(&report), None)
            } else {
                let format = format_of(&data, format)?;
                (explain_evidence(&data, Some(format))?, None)
            }
        }
    };
    let config = bundle.as_ref().map(serving_config);
    if json {
        let out = json!({
            "fields": fields_json(&fields),
            "claims": bundle.as_ref().map(|b| &b.claims),
            "serving_config": config,
        });
        return emit(&(serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"));
    }
    let mut out = String::new();
    for f in &fields {
        out.push_str(&format!(
            "{}\n    value:   {}\n    meaning: {}\n",
            f.name, f.value, f.meaning
        ));
    }
    if let (Some(b), Some(config)) = (&bundle, &config) {
        let c = &b.claims;
        out.push_str(&format!(
            "claims (bound by REPORTDATA = SHA-512 of their canonical encoding)\n    model {} sha256:{}\n    config sha256:{}\n    runtime {}\n    receipt key ed25519:{}\n    nonce {}\n    issued at {}\n",
            c.model_name,
            hex::encode(c.model_digest),
            hex::encode(c.config_digest),
            c.runtime,
            hex::encode(c.receipt_key),
            hex::encode(&c.nonce),
            c.issued_at
        ));
        out.push_str(&format!(
            "config_digest commits to: {}\n",
            config["commitment"].as_str().unwrap_or_default()
        ));
        for item in config["items"].as_array().into_iter().flatten() {
            let value = match &item["value"] {
                serde_json::Value::Null if b.serving_config.is_none() => {
                    "(not in this bundle)".into()
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!(
                "    {:<36} {value}\n        {}\n",
                item["name"].as_str().unwrap_or_default(),
                item["meaning"].as_str().unwrap_or_default()
            ));
        }
    }
    emit(&out)
}

/// What a bundle's `config_digest` commits to: each item of the serving
/// configuration with its meaning and (when the bundle carries it) its
/// value, and whether those values hash to the digest.
fn serving_config(bundle: &AttestationBundle) -> serde_json::Value {
    use kokon_attestation::claims::SERVING_CONFIG_ITEMS;
    let digest = bundle.claims.config_digest;
    let (items, state): (Vec<serde_json::Value>, String) = match &bundle.serving_config {
        Some(config) => (
            config
                .items()
                .into_iter()
                .map(|(name, meaning, value)| json!({"name": name, "meaning": meaning, "value": value}))
                .collect(),
            match config.digest() == digest {
                true => "the values below, which hash to it".into(),
                false => format!(
                    "other values than those below, which hash to sha256:{} (the bundle's serving_config does not match its claims)",
                    hex::encode(config.digest())
                ),
            },
        ),
        None => (
            SERVING_CONFIG_ITEMS
                .iter()
                .map(|(name, meaning)| json!({"name": name, "meaning": meaning, "value": null}))
                .collect(),
            "these items (the bundle does not carry their values)".into(),
        ),
    };
    json!({
        "config_digest": hex::encode(digest),
        "commitment": format!("SHA-256 of the enclave's serving configuration as JSON (items in this order): {state}"),
        "matches": bundle.serving_config.as_ref().map(|c| c.digest() == digest),
        "items": items,
    })
}

fn explain_evidence(data: &[u8], format: Option<EvidenceFormat>) -> anyhow::Result<Vec<Field>> {
    Ok(match format {
        Some(EvidenceFormat::TdxQuote) => explain::tdx_quote(&Quote::parse(data)?),
        Some(EvidenceFormat::SnpReport) => explain::snp_report(&Report::parse(data)?),
        None => anyhow::bail!("unknown evidence format"),
    })
}

/// `kokon audit eventlog LOG [--quote QUOTE]`: each event whole (its RTMR,
/// type, digest and data: text as text, anything else as a hex dump), the
/// replayed RTMRs, and (with a quote) whether they match the quote's.
pub fn eventlog(log: &Path, quote: Option<&Path>, json: bool) -> anyhow::Result<()> {
    use kokon_attestation::eventlog;
    let events = eventlog::parse(&read(log)?)?;
    let replayed = eventlog::replay(&events);
    let quoted = match quote {
        Some(q) => Some(Quote::parse(&read_evidence(q)?)?.body.rtmr),
        None => None,
    };
    let mismatches: Vec<String> = match &quoted {
        Some(q) => (0..3)
            .filter(|i| replayed.get(*i) != q.get(*i))
            .map(|i| format!("RTMR{i}"))
            .collect(),
        None => Vec::new(),
    };
    let out = if json {
        let out = json!({
            "events": events.iter().map(|e| json!({
                "mr_index": e.mr_index,
                "rtmr": e.rtmr(),
                "type": e.type_name(),
                "event_type": e.event_type,
                "digest": hex::encode(e.digest),
                "size": e.data.len(),
                "data_hex": hex::encode(&e.data),
                "text": e.text(),
            })).collect::<Vec<_>>(),
            "replayed": replayed.iter().map(hex::encode).collect::<Vec<_>>(),
            "quote": quoted.map(|q| q.iter().map(hex::encode).collect::<Vec<_>>()),
            "mismatches": mismatches,
        });
        serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
    } else {
        let mut out = String::new();
        for (n, e) in events.iter().enumerate() {
            let target = e
                .rtmr()
                .map(|i| format!("RTMR{i}"))
                .unwrap_or_else(|| "(logged only)".into());
            out.push_str(&format!(
                "{n:4} {target:<13} {} ({:#010x})\n     digest {}\n",
                e.type_name(),
                e.event_type,
                hex::encode(e.digest),
            ));
            match e.text() {
                Some(text) => {
                    let mut lines = text.lines();
                    out.push_str(&format!("     text   {}\n", lines.next().unwrap_or("")));
                    for line in lines {
                        out.push_str(&format!("            {line}\n"));
                    }
                }
                None => {
                    out.push_str(&format!("     data   {} bytes\n", e.data.len()));
                    out.push_str(&hex_dump(&e.data, "       "));
                }
            }
        }
        for (i, r) in replayed.iter().enumerate() {
            let verdict = match &quoted {
                Some(q) if i < 3 && q.get(i) == Some(r) => " = quote",
                Some(_) if i < 3 => " != quote",
                _ => "",
            };
            out.push_str(&format!("replayed RTMR{i} {}{verdict}\n", hex::encode(r)));
        }
        out
    };
    emit(&out)?;
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

/// All of `data` as a hex dump: offset, 16 bytes in hex, the same bytes as
/// ASCII (`.` for the rest), each line after `indent`.
fn hex_dump(data: &[u8], indent: &str) -> String {
    let mut out = String::new();
    for (i, chunk) in data.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|b| match b {
                0x20..=0x7e => char::from(*b),
                _ => '.',
            })
            .collect();
        out.push_str(&format!(
            "{indent}{:04x}  {:<47}  |{ascii}|\n",
            i * 16,
            hex.join(" ")
        ));
    }
    out
}

/// Writes a command's output to stdout. A reader that stops early (`| head`)
/// ends the output quietly; any other write error is an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to standard output"))
        }
        _ => Ok(()),
    }
}
