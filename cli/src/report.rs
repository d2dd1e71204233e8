//! Verification reports: what was verified about an enclave, gathered once
//! into a [`Report`] and shown as text, as JSON or as a self-contained HTML
//! page (`--report FILE.html`), so that the three cannot disagree.
//!
//! Everything in a report but the verdict's wording comes from the enclave
//! or its host, untrusted until verified, and a rejected enclave's report
//! shows what failed to verify: the HTML page escapes every value (the
//! template engine does, for each value it inserts) and loads nothing.

use kokon_attestation::explain::Field;
use kokon_attestation::pki::{rfc3339, CertifiedChain};
use kokon_attestation::{EvidenceFormat, PlatformTcb, TeeReport};
use kokon_client::{ClientError, Examined};
use serde::Serialize;

/// The suite kokon's OHTTP key configurations use (the only one the client
/// accepts).
const OHTTP_SUITE: &str = "X25519 / HKDF-SHA256 / AES-256-GCM";

/// The verdict on an enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The evidence verified and the policy accepts it.
    Accepted,
    /// The evidence did not verify, or the policy refuses it.
    Rejected,
}

impl Verdict {
    /// `accepted` or `rejected`.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
        }
    }
}

/// Why an enclave was rejected: one failed check, with what was expected and
/// found, or the evidence's error.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The check ("evidence" when the evidence itself did not verify).
    pub check: String,
    /// What was expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// The error, when the evidence did not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One check made, passed or failed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Who made it: "evidence" (signatures, chains, binding, nonce, keys) or
    /// "policy" (the appraisal).
    pub stage: &'static str,
    /// The check.
    pub check: String,
    /// What was expected.
    pub expected: String,
    /// What was found.
    pub found: String,
    /// Whether it passed.
    pub passed: bool,
}

/// What the hardware evidence shows.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceSection {
    /// Its format.
    pub format: EvidenceFormat,
    /// The trust root it chains to.
    pub root: String,
    /// SHA-256 of that root (hex).
    pub root_sha256: String,
    /// Whether the root is a simulated TEE's.
    pub simulated: bool,
    /// The platform certificate's subject.
    pub platform: String,
    /// Whether the TEE lets the host debug the guest.
    pub debug: bool,
    /// The vendor's TCB appraisal (an object of `kind` `tdx`, `snp` or
    /// `unappraised` in JSON).
    pub tcb: PlatformTcb,
    /// The same in one line.
    pub tcb_summary: String,
    /// Every field of the TEE report (as a name → value map in JSON).
    #[serde(serialize_with = "fields_map")]
    pub fields: Vec<Field>,
    /// The certificate chains that verified.
    pub chains: Vec<CertifiedChain>,
}

/// A served model.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// Its name.
    pub name: String,
    /// Its SHA-256 digest (hex).
    pub digest: String,
}

/// What the enclave claims, bound by the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimsSection {
    /// The enclave's kokon version.
    pub kokon_version: String,
    /// The classifier's name.
    pub model_name: String,
    /// Its SHA-256 digest (hex).
    pub model_digest: String,
    /// The text model, when one is served.
    pub text_model: Option<Model>,
    /// SHA-256 of the serving configuration (hex).
    pub config_digest: String,
    /// The serving configuration it commits to, item by item, when the
    /// bundle carried it (verified against the digest).
    pub serving_config: Option<serde_json::Map<String, serde_json::Value>>,
    /// The inference runtime.
    pub runtime: String,
    /// The GPUs' confidential-computing state, in one line, when the
    /// enclave serves on GPUs.
    pub gpu_cc: Option<String>,
    /// The Ed25519 key that signs usage receipts (hex).
    pub receipt_key: String,
    /// The OHTTP key configuration (RFC 9458, hex).
    pub ohttp_key_config: String,
    /// Its key identifier, when it parses.
    pub ohttp_key_id: Option<u8>,
    /// Its X25519 public key (hex), when it parses.
    pub ohttp_public_key: Option<String>,
    /// Its suite.
    pub ohttp_suite: &'static str,
    /// The nonce the claims echo (hex).
    pub nonce: String,
    /// When the enclave produced the evidence (RFC 3339).
    pub issued_at: String,
}

/// A verification report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict with what could not be checked, e.g. `accepted
    /// (revocation not checked: no AMD CRL)`.
    pub headline: String,
    /// What could not be checked (empty when nothing was left out).
    pub caveats: Vec<&'static str>,
    /// The policy's name.
    pub policy: String,
    /// Why it was rejected (empty when accepted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// When it was verified (RFC 3339).
    pub verified_at: String,
    /// The verifier: this kokon's version.
    pub verifier: String,
    /// The evidence backend the host named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The evidence, when it verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceSection>,
    /// The claims, when the evidence verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<ClaimsSection>,
    /// Every check made, in order.
    pub checks: Vec<Check>,
}

fn fields_map<S: serde::Serializer>(fields: &[Field], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(fields.iter().map(|f| (&f.name, &f.value)))
}

/// Whether a TEE report field is a measurement (what the text report shows).
fn is_measurement(name: &str) -> bool {
    name.starts_with("MR") || name.starts_with("RTMR") || name == "MEASUREMENT"
}

/// Why `e` rejected the enclave, check by check (what `--json` prints on a
/// rejection, and the HTML report shows).
pub fn failures(e: &ClientError) -> Vec<Failure> {
    let failure = |check: &str, expected: &str, found: &str| Failure {
        check: check.into(),
        expected: Some(expected.into()),
        found: Some(found.into()),
        error: None,
    };
    match e {
        ClientError::Policy(r) => r
            .failures
            .iter()
            .map(|f| failure(&f.check, &f.expected, &f.found))
            .collect(),
        ClientError::Nonce { expected, found } => vec![failure("nonce", expected, found)],
        other => vec![Failure {
            check: "evidence".into(),
            expected: None,
            found: None,
            error: Some(other.to_string()),
        }],
    }
}

/// A verdict followed by what the verification could not check, e.g.
/// `accepted (revocation not checked: no AMD CRL)`.
pub fn headline(verdict: &str, caveats: &[&str]) -> String {
    match caveats {
        [] => verdict.into(),
        _ => format!("{verdict} ({})", caveats.join("; ")),
    }
}

fn verifier() -> String {
    format!("kokon {}", env!("CARGO_PKG_VERSION"))
}

impl Report {
    /// The report on examined evidence: `rejection` is why the policy (or
    /// the attested key configuration) refused it, `None` when accepted.
    pub fn new(x: &Examined, rejection: Option<&ClientError>) -> Self {
        let e = &x.evidence;
        let c = &e.claims;
        let key = x.key_config();
        let mut checks = evidence_checks(x, key.as_ref().err());
        checks.extend(x.checks.iter().map(|k| Check {
            stage: "policy",
            check: k.check.clone(),
            expected: k.expected.clone(),
            found: k.found.clone(),
            passed: k.passed,
        }));
        let key = key.ok();
        let verdict = match rejection {
            None => Verdict::Accepted,
            Some(_) => Verdict::Rejected,
        };
        let caveats = e.tcb.caveats();
        Self {
            verdict,
            headline: headline(verdict.word(), &caveats),
            caveats,
            policy: x.policy.clone(),
            failures: rejection.map(failures).unwrap_or_default(),
            verified_at: rfc3339(x.verified_at),
            verifier: verifier(),
            backend: Some(x.bundle.backend.clone()),
            evidence: Some(EvidenceSection {
                format: e.format,
                root: e.anchor.name.clone(),
                root_sha256: e.anchor.fingerprint(),
                simulated: e.anchor.simulated,
                platform: e.platform.clone(),
                debug: e.debug(),
                tcb: e.tcb.clone(),
                tcb_summary: e.tcb_summary(),
                fields: e.fields(),
                chains: e.chains.clone(),
            }),
            claims: Some(ClaimsSection {
                kokon_version: c.kokon_version.clone(),
                model_name: c.model_name.clone(),
                model_digest: hex::encode(c.model_digest),
                text_model: c.text_model.as_ref().map(|m| Model {
                    name: m.name.clone(),
                    digest: hex::encode(m.digest),
                }),
                config_digest: hex::encode(c.config_digest),
                serving_config: e.serving_config.as_ref().map(|s| {
                    s.items()
                        .into_iter()
                        .map(|(name, _, value)| (name.to_string(), value))
                        .collect()
                }),
                runtime: c.runtime.clone(),
                gpu_cc: c.gpu_cc.as_ref().map(|g| g.describe()),
                receipt_key: hex::encode(c.receipt_key),
                ohttp_key_config: hex::encode(&c.ohttp_key_config),
                ohttp_key_id: key.as_ref().map(|k| k.key_id),
                ohttp_public_key: key.as_ref().map(|k| hex::encode(k.public_key)),
                ohttp_suite: OHTTP_SUITE,
                nonce: hex::encode(&c.nonce),
                issued_at: rfc3339(c.issued_at),
            }),
            checks,
        }
    }

    /// The report on evidence that did not verify (`error`), checked at
    /// `now` under `policy`: the verdict and why, nothing unverified.
    pub fn unverified(policy: &str, error: &ClientError, now: i64) -> Self {
        Self {
            verdict: Verdict::Rejected,
            headline: Verdict::Rejected.word().into(),
            caveats: Vec::new(),
            policy: policy.into(),
            failures: failures(error),
            verified_at: rfc3339(now),
            verifier: verifier(),
            backend: None,
            evidence: None,
            claims: None,
            checks: Vec::new(),
        }
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<16} {v}\n"));
        line(
            "verdict",
            headline(
                &format!(
                    "{} by policy {:?}",
                    self.verdict.word().to_uppercase(),
                    self.policy
                ),
                &self.caveats,
            ),
        );
        for f in &self.failures {
            match (&f.expected, &f.found, &f.error) {
                (Some(expected), Some(found), _) => line(
                    "failed",
                    format!("{}: expected {expected}, found {found}", f.check),
                ),
                (_, _, error) => line(
                    "failed",
                    format!("{}: {}", f.check, error.as_deref().unwrap_or("?")),
                ),
            }
        }
        if let Some(backend) = &self.backend {
            line("backend", backend.clone());
        }
        if let Some(e) = &self.evidence {
            line(
                "evidence",
                format!(
                    "{:?}, chain to {:?}{}",
                    e.format,
                    e.root,
                    if e.simulated {
                        " (SIMULATED: no hardware protection)"
                    } else {
                        ""
                    }
                ),
            );
            line("debug", if e.debug { "ON" } else { "off" }.into());
            line("TCB", e.tcb_summary.clone());
            for f in e.fields.iter().filter(|f| is_measurement(&f.name)) {
                line(&f.name, f.value.clone());
            }
        }
        let binding: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.stage == "evidence" && BINDING_CHECKS.contains(&c.check.as_str()))
            .map(|c| format!("{} {}", c.check, if c.passed { "✓" } else { "✗" }))
            .collect();
        if !binding.is_empty() {
            line("binding", binding.join(", "));
        }
        if let Some(c) = &self.claims {
            line(
                "model",
                format!("{} sha256:{}", c.model_name, c.model_digest),
            );
            if let Some(m) = &c.text_model {
                line("text model", format!("{} sha256:{}", m.name, m.digest));
            }
            line("runtime", c.runtime.clone());
            if let Some(gpu_cc) = &c.gpu_cc {
                line("GPU CC state", gpu_cc.clone());
            }
            line(
                "configuration",
                match &c.serving_config {
                    Some(items) => items
                        .iter()
                        .map(|(name, value)| format!("{name}={value}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    None => format!(
                        "sha256:{} (the bundle does not carry the serving configuration)",
                        c.config_digest
                    ),
                },
            );
            line(
                "OHTTP key",
                match c.ohttp_key_id {
                    Some(id) => format!("id {id} {}", OHTTP_SUITE.replace(" / ", "/")),
                    None => format!("unusable configuration {}", c.ohttp_key_config),
                },
            );
            line("receipt key", format!("ed25519:{}", c.receipt_key));
            line("nonce", c.nonce.clone());
            line("issued at", c.issued_at.clone());
        }
        out
    }

    /// The report as a self-contained HTML page: inline CSS, no scripts, no
    /// external resources (a Content-Security-Policy forbids any), every
    /// value escaped.
    pub fn html(&self) -> anyhow::Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("report.html", include_str!("report.html"))?;
        let fields = self.evidence.as_ref().map(|e| &e.fields[..]).unwrap_or(&[]);
        let (measurements, other_fields): (Vec<&Field>, Vec<&Field>) =
            fields.iter().partition(|f| is_measurement(&f.name));
        let policy_checks: Vec<&Check> =
            self.checks.iter().filter(|c| c.stage == "policy").collect();
        let evidence_checks: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| c.stage == "evidence")
            .collect();
        Ok(env
            .get_template("report.html")?
            .render(minijinja::context! {
                report => minijinja::Value::from_serialize(self),
                measurements => measurements,
                other_fields => other_fields,
                evidence_checks => evidence_checks,
                policy_checks => policy_checks,
            })?)
    }
}

/// The evidence checks that bind the claims to the hardware evidence.
const BINDING_CHECKS: [&str; 2] = [REPORT_DATA_CHECK, RTMR3_CHECK];
const REPORT_DATA_CHECK: &str = "report data = SHA-512(claims)";
const RTMR3_CHECK: &str = "RTMR3 = replay(config, models)";

/// The checks of the evidence itself, which passed if `x` exists (it is
/// only made from evidence that verified), and of the attested key
/// configuration (`key_error` when the client cannot seal to it).
fn evidence_checks(x: &Examined, key_error: Option<&ClientError>) -> Vec<Check> {
    let e = &x.evidence;
    let c = &e.claims;
    let check = |check: &str, expected: String, found: String, passed: bool| Check {
        stage: "evidence",
        check: check.into(),
        expected,
        found,
        passed,
    };
    let mut out = vec![check(
        "signatures and certificate chains",
        format!(
            "{} signed under a root of policy {:?}, every certificate valid at {}",
            match e.format {
                EvidenceFormat::TdxQuote => "a TDX quote",
                EvidenceFormat::SnpReport => "an SEV-SNP report",
            },
            x.policy,
            rfc3339(x.verified_at)
        ),
        format!(
            "verified; chains to {:?} (sha256:{})",
            e.anchor.name,
            e.anchor.fingerprint()
        ),
        true,
    )];
    let report_data = match &e.tee {
        TeeReport::Tdx(td) => td.report_data,
        TeeReport::Snp(r) => r.report_data,
    };
    out.push(check(
        REPORT_DATA_CHECK,
        hex::encode(c.report_data()),
        hex::encode(report_data),
        true,
    ));
    if let Some(td) = e.td() {
        let [_, _, _, rtmr3] = &td.rtmr;
        out.push(check(
            RTMR3_CHECK,
            hex::encode(kokon_attestation::tdx::rtmr_replay(&c.rtmr3_events())),
            hex::encode(rtmr3),
            true,
        ));
    }
    out.push(match &x.nonce {
        Some(nonce) => check(
            "nonce",
            format!("{} (sent by this client)", hex::encode(nonce)),
            hex::encode(&c.nonce),
            true,
        ),
        None => check(
            "nonce",
            "not checked: a saved bundle, verified offline".into(),
            hex::encode(&c.nonce),
            true,
        ),
    });
    out.push(check(
        "OHTTP key configuration",
        format!("one the client can seal to ({OHTTP_SUITE})"),
        match key_error {
            None => "usable".into(),
            Some(err) => err.to_string(),
        },
        key_error.is_none(),
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use kokon_attestation::claims::{Claims, ServingConfig};
    use kokon_attestation::sim::{simulate, SimRoot, SimTd};
    use kokon_policies::{LocalReferences, Policy};
    use kokon_seal::{KeyConfig, Suite};

    use super::*;

    const NOW: i64 = 1_780_000_000;
    const MRTD: [u8; 48] = [0xab; 48];
    const MAGIKA: &str = "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c";
    const HOSTILE: &str =
        "<script>alert(\"x\")</script><img src=\"https://evil.example/x.png\" onerror='y'>&amp;";

    /// Simulated evidence for a model named `model` that runs `runtime`,
    /// examined under the development policy.
    fn examined(model: &str, runtime: &str) -> (Examined, Policy) {
        examined_with(model, runtime, None)
    }

    /// [`examined`], with `gpu_cc` as the claims' GPU state.
    fn examined_with(
        model: &str,
        runtime: &str,
        gpu_cc: Option<kokon_attestation::claims::GpuCcState>,
    ) -> (Examined, Policy) {
        let root = SimRoot::generate(NOW).unwrap();
        let key = KeyConfig {
            key_id: 7,
            public_key: [9; 32],
            suite: Suite::Aes256Gcm,
        };
        let claims = Claims {
            kokon_version: "0.1.0".into(),
            ohttp_key_config: key.encode(),
            receipt_key: [1; 32],
            model_name: model.into(),
            model_digest: hex::decode(MAGIKA).unwrap().try_into().unwrap(),
            text_model: None,
            config_digest: serving_config().digest(),
            runtime: runtime.into(),
            nonce: vec![3; 32],
            issued_at: NOW,
            gpus: Vec::new(),
            gpu_cc,
        };
        let td = SimTd {
            mr_td: MRTD,
            rtmr: [[0; 48]; 3],
            debug: false,
        };
        let mut bundle = simulate(&root, td, claims, NOW).unwrap();
        bundle.serving_config = Some(serving_config());
        let policy = Policy::from_toml(
            include_str!("../../policies/dev-sim.toml"),
            &LocalReferences {
                sim_root: Some(root.anchor()),
                enclave_build_mrtd: Some(MRTD),
            },
        )
        .unwrap();
        let x = kokon_client::examine(bundle, &policy, Some(&[3; 32]), NOW).unwrap();
        (x, policy)
    }

    /// The serving configuration the simulated enclave's claims commit to.
    fn serving_config() -> ServingConfig {
        ServingConfig {
            model_name: "magika".into(),
            price_nanoton_per_unit: 4242,
            ..ServingConfig::default()
        }
    }

    /// The report on `x`, with the policy's verdict.
    fn report(x: &Examined, policy: &Policy) -> Report {
        let verdict = x.clone().accept(policy);
        Report::new(x, verdict.as_ref().err())
    }

    /// The tags the page's template writes: any other is injected.
    const TAGS: [&str; 25] = [
        "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3",
        "p", "span", "strong", "code", "br", "table", "tr", "th", "td", "section", "div",
        "details", "summary", "footer",
    ];

    /// Only the template's own tags, and no reference to anything a browser
    /// would fetch.
    fn assert_self_contained(html: &str) {
        for (i, _) in html.match_indices('<') {
            let name: String = html[i + 1..]
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                .collect();
            assert!(
                TAGS.contains(&name.as_str()),
                "tag {name:?} in the page: {}",
                &html[i..(i + 80).min(html.len())]
            );
        }
        for needle in ["http://", "https://", "//", "@import", "url("] {
            assert!(!html.contains(needle), "{needle:?} in the page");
        }
    }

    /// `text` as the page shows it: HTML-escaped as the template engine does.
    fn escaped(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
            .replace('/', "&#x2f;")
    }

    #[test]
    fn an_accepted_report_shows_every_section() {
        let (x, policy) = examined("magika", "onnxruntime 1.31.1 cpu");
        let r = report(&x, &policy);
        assert_eq!(r.verdict, Verdict::Accepted);
        let html = r.html().unwrap();
        assert_self_contained(&html);
        assert!(
            html.contains(r#"class="verdict accepted">ACCEPTED</span>"#),
            "{html}"
        );
        for id in [
            "evidence-checks",
            "policy-checks",
            "measurements",
            "tcb",
            "models",
            "keys",
            "chains",
            "fields",
        ] {
            assert!(html.contains(&format!(r#"<section id="{id}">"#)), "{id}");
        }
        assert!(!html.contains(r#"<section id="failures">"#));
        assert!(!html.contains("✗ failed"));
        assert!(html.contains("dev-sim"));
        assert!(html.contains(&hex::encode(MRTD)), "MRTD");
        assert!(html.contains(MAGIKA), "model digest");
        assert!(
            html.contains(&format!("x25519:{}", hex::encode([9u8; 32]))),
            "OHTTP key"
        );
        assert!(
            html.contains(&format!("ed25519:{}", hex::encode([1u8; 32]))),
            "receipt key"
        );
        assert!(html.contains("UpToDate"), "TCB status");
        assert!(html.contains(&rfc3339(NOW)), "time of verification");
        assert!(html.contains(&verifier()), "kokon version");
        // Both chains (the quote's PCK chain and the collateral signer's),
        // each certificate with its validity in RFC 3339.
        let chains = &r.evidence.as_ref().unwrap().chains;
        assert_eq!(chains.len(), 2, "{chains:?}");
        for cert in chains.iter().flat_map(|c| &c.certificates) {
            for value in [
                &cert.subject,
                &cert.issuer,
                &cert.not_before,
                &cert.not_after,
            ] {
                assert!(html.contains(&escaped(value)), "{value}");
            }
            time::OffsetDateTime::parse(
                &cert.not_after,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
        }
    }

    #[test]
    fn every_check_of_the_json_report_is_on_the_page() {
        let (x, policy) = examined("magika", "onnxruntime 1.31.1 cpu");
        let r = report(&x, &policy);
        let json = r.json();
        let html = r.html().unwrap();
        let checks = json["checks"].as_array().unwrap();
        // The evidence's and the policy's: signatures, binding, nonce, key;
        // simulation, root, debug, TCB, measurements, age, model.
        assert!(checks.len() >= 15, "{checks:?}");
        for c in checks {
            for key in ["check", "expected", "found"] {
                let value = c[key].as_str().unwrap();
                assert!(
                    html.contains(&escaped(value)),
                    "{key} {value:?} not on the page"
                );
            }
        }
        assert_eq!(json["evidence"]["fields"]["MRTD"], hex::encode(MRTD));
        assert_eq!(json["verdict"], "accepted");
    }

    #[test]
    fn the_json_report_has_the_tcb_as_a_structure_and_a_headline() {
        let (x, policy) = examined("magika", "onnxruntime 1.31.1 cpu");
        let json = report(&x, &policy).json();
        assert_eq!(json["headline"], "accepted");
        assert_eq!(json["caveats"], serde_json::json!([]));
        let tcb = &json["evidence"]["tcb"];
        assert_eq!(tcb["kind"], "tdx", "{tcb}");
        assert_eq!(tcb["status"], "UpToDate");
        assert!(tcb["advisory_ids"].is_array());
        assert!(json["evidence"]["tcb_summary"]
            .as_str()
            .unwrap()
            .starts_with("UpToDate"));
        // The serving configuration, verified against config_digest, on
        // every form of the report.
        assert_eq!(
            json["claims"]["serving_config"]["price_nanoton_per_unit"],
            4242
        );
        let r = report(&x, &policy);
        assert!(
            r.text().contains("price_nanoton_per_unit=4242"),
            "{}",
            r.text()
        );
        let html = r.html().unwrap();
        assert!(
            html.contains(r#"<td class="k">price_nanoton_per_unit</td><td class="v">4242</td>"#),
            "{html}"
        );
        assert_eq!(
            headline(
                "ACCEPTED by policy \"p\"",
                &["revocation not checked: no AMD CRL"]
            ),
            "ACCEPTED by policy \"p\" (revocation not checked: no AMD CRL)"
        );
    }

    #[test]
    fn a_policy_rejection_is_reported_with_the_failing_check() {
        let (x, policy) = examined("not-magika", "onnxruntime 1.31.1 cpu");
        let r = report(&x, &policy);
        assert_eq!(r.verdict, Verdict::Rejected);
        let html = r.html().unwrap();
        assert_self_contained(&html);
        assert!(html.contains(r#"class="verdict rejected">REJECTED</span>"#));
        assert!(html.contains(r#"<section id="failures">"#));
        assert!(html.contains("✗ failed"));
        let failure = &r.failures[0];
        assert_eq!(failure.check, "model");
        assert!(failure
            .found
            .as_deref()
            .unwrap()
            .starts_with("not-magika sha256:"));
        assert!(html.contains("not-magika sha256:"));
        // What verified is still shown: the measurements and the chains.
        assert!(html.contains(&hex::encode(MRTD)));
        assert!(html.contains(r#"<section id="chains">"#));
        assert_eq!(r.json()["failures"][0]["check"], "model");
        assert!(r.text().contains("REJECTED by policy \"dev-sim\""));
    }

    #[test]
    fn evidence_values_are_escaped() {
        let (x, policy) = examined(HOSTILE, HOSTILE);
        let r = report(&x, &policy);
        let html = r.html().unwrap();
        assert_self_contained(&html);
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2f;script&gt;&lt;img src=&quot;https:&#x2f;&#x2f;evil.example&#x2f;x.png&quot; onerror=&#x27;y&#x27;&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&amp;amp;"),
            "an entity in the value is shown, not decoded"
        );
    }

    #[test]
    fn evidence_that_does_not_verify_is_reported_without_unverified_content() {
        let error = ClientError::Evidence(kokon_attestation::Error::Bundle(HOSTILE.into()));
        let r = Report::unverified("dev-sim", &error, NOW);
        let html = r.html().unwrap();
        assert_self_contained(&html);
        assert!(html.contains(r#"class="verdict rejected">REJECTED</span>"#));
        assert!(html.contains("evidence rejected: "));
        for id in [
            "evidence-checks",
            "measurements",
            "models",
            "keys",
            "chains",
        ] {
            assert!(!html.contains(&format!(r#"<section id="{id}">"#)), "{id}");
        }
        assert_eq!(r.json()["failures"][0]["check"], "evidence");
        assert!(r.json().get("evidence").is_none());
    }

    #[test]
    fn the_text_report_shows_the_verdict_and_the_binding() {
        let (x, policy) = examined("magika", "onnxruntime 1.31.1 cpu");
        let text = report(&x, &policy).text();
        assert!(text.contains("ACCEPTED by policy \"dev-sim\""), "{text}");
        assert!(
            text.contains("report data = SHA-512(claims) ✓, RTMR3 = replay(config, models) ✓"),
            "{text}"
        );
        assert!(
            text.contains(&format!("MRTD             {}", hex::encode(MRTD))),
            "{text}"
        );
    }

    #[test]
    fn the_gpus_cc_state_is_reported_when_claimed() {
        use kokon_attestation::claims::{CcEnvironment, GpuCcState, MultiGpuMode};
        let state = GpuCcState {
            cc_feature: false,
            devtools_mode: false,
            environment: CcEnvironment::Unavailable,
            multi_gpu_mode: MultiGpuMode::None,
            gpu_count: 1,
            ready: false,
        };
        let described =
            "CC off, devtools off, environment unavailable, 1 GPU, multi-GPU mode none, not ready";
        let (x, policy) = examined_with("magika", "onnxruntime 1.31.1 cuda", Some(state));
        let r = report(&x, &policy);
        assert!(
            r.text()
                .contains(&format!("GPU CC state     {described}\n")),
            "{}",
            r.text()
        );
        assert!(r.html().unwrap().contains(described));
        // On the CPU: no such line.
        let (x, policy) = examined("magika", "onnxruntime 1.31.1 cpu");
        let r = report(&x, &policy);
        assert!(!r.text().contains("GPU CC state"));
        assert!(!r.html().unwrap().contains("confidential computing</td>"));
    }

    #[test]
    fn a_measurement_is_an_mr_or_rtmr_register_or_the_snp_measurement() {
        for name in ["MRTD", "MRSEAM", "RTMR3", "MEASUREMENT"] {
            assert!(is_measurement(name), "{name}");
        }
        for name in ["REPORTDATA", "TDATTRIBUTES", "HOST_DATA", "XFAM"] {
            assert!(!is_measurement(name), "{name}");
        }
    }
}
