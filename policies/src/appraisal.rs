//! Appraisal: checking verified evidence against a [`Policy`], collecting
//! every failed check.

use std::fmt;

use kokon_attestation::{PlatformTcb, TeeReport, TrustAnchor, VerifiedEvidence, VerifiedPlatform};
use thiserror::Error;

use crate::{Policy, TcbRequirements, MAX_CLOCK_SKEW_SECS};

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check.
    pub check: String,
    /// What the policy expects.
    pub expected: String,
    /// What the evidence shows.
    pub found: String,
}

/// Why evidence was rejected by a policy: every failed check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct Rejection {
    /// The policy's name.
    pub policy: String,
    /// The failed checks.
    pub failures: Vec<Failure>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected by policy {:?}:", self.policy)?;
        for x in &self.failures {
            write!(
                f,
                "\n  - {}: expected {}, found {}",
                x.check, x.expected, x.found
            )?;
        }
        Ok(())
    }
}

impl Policy {
    /// Appraises verified evidence at `now` (Unix seconds): the platform
    /// checks of [`Policy::appraise_platform`], then evidence age and model.
    pub fn appraise(&self, evidence: &VerifiedEvidence, now: i64) -> Result<(), Rejection> {
        let mut failures = Vec::new();
        let mut fail = |check: &str, expected: String, found: String| {
            failures.push(Failure {
                check: check.into(),
                expected,
                found,
            })
        };
        self.platform_checks(&evidence.tee, &evidence.tcb, &evidence.anchor, &mut fail);
        let issued = evidence.claims.issued_at;
        let age = now.saturating_sub(issued);
        if age > i64::try_from(self.max_age_seconds).unwrap_or(i64::MAX) {
            fail(
                "evidence age",
                format!("at most {} s", self.max_age_seconds),
                format!(
                    "{age} s (issued at {}, checked at {})",
                    kokon_attestation::pki::rfc3339(issued),
                    kokon_attestation::pki::rfc3339(now)
                ),
            );
        }
        if issued > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            fail(
                "evidence time",
                format!(
                    "issued no later than {} + {MAX_CLOCK_SKEW_SECS} s",
                    kokon_attestation::pki::rfc3339(now)
                ),
                format!("issued at {}", kokon_attestation::pki::rfc3339(issued)),
            );
        }
        let claims = &evidence.claims;
        let allowed = || {
            format!(
                "one of [{}]",
                self.models
                    .iter()
                    .map(|m| format!("{} sha256:{}", m.name, hex::encode(m.digest)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let served = [("model", claims.model_name.as_str(), &claims.model_digest)]
            .into_iter()
            .chain(
                claims
                    .text_model
                    .as_ref()
                    .map(|m| ("text model", m.name.as_str(), &m.digest)),
            );
        for (what, name, digest) in served {
            if !self
                .models
                .iter()
                .any(|m| &m.digest == digest && m.name == name)
            {
                fail(
                    what,
                    allowed(),
                    format!("{name} sha256:{}", hex::encode(digest)),
                );
            }
        }
        self.verdict(failures)
    }

    /// Appraises raw evidence without claims (`kokon verify --evidence`): roots,
    /// simulation, debug, TCB, SNP guest policy and measurements.
    pub fn appraise_platform(&self, evidence: &VerifiedPlatform) -> Result<(), Rejection> {
        let mut failures = Vec::new();
        self.platform_checks(
            &evidence.tee,
            &evidence.tcb,
            &evidence.anchor,
            &mut |check: &str, expected, found| {
                failures.push(Failure {
                    check: check.into(),
                    expected,
                    found,
                })
            },
        );
        self.verdict(failures)
    }

    fn verdict(&self, failures: Vec<Failure>) -> Result<(), Rejection> {
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Rejection {
                policy: self.name.clone(),
                failures,
            })
        }
    }

    fn platform_checks(
        &self,
        tee: &TeeReport,
        tcb: &PlatformTcb,
        anchor: &TrustAnchor,
        fail: &mut impl FnMut(&str, String, String),
    ) {
        if anchor.simulated && !self.allow_simulated {
            fail(
                "simulated TEE",
                "evidence from hardware (allow_simulated = false)".into(),
                format!("simulated evidence under root {:?}", anchor.name),
            );
        }
        if !self.anchors.roots.iter().any(|a| a.der == anchor.der) {
            fail(
                "trust root",
                format!(
                    "one of {:?}",
                    self.anchors
                        .roots
                        .iter()
                        .map(|a| &a.name)
                        .collect::<Vec<_>>()
                ),
                anchor.name.clone(),
            );
        }
        if tee.debug() && !self.allow_debug {
            let found = match tee {
                TeeReport::Tdx(td) => {
                    format!("DEBUG on (TD attributes {})", hex::encode(td.td_attributes))
                }
                TeeReport::Snp(r) => format!("DEBUG allowed (guest policy {:#x})", r.policy),
            };
            fail("debug", "debugging off (allow_debug = false)".into(), found);
        }
        if let Some(tcb_req) = &self.tcb {
            self.appraise_tcb(tcb_req, tcb, fail);
        }
        if let (Some(req), Some(report)) = (&self.snp, tee_snp(tee)) {
            use kokon_attestation::snp::report::{POLICY_MIGRATE_MA, POLICY_SMT};
            if report.policy & POLICY_MIGRATE_MA != 0 && !req.allow_migration_agent {
                fail(
                    "SNP migration agent",
                    "MIGRATE_MA off (allow_migration_agent = false)".into(),
                    format!("allowed (guest policy {:#x})", report.policy),
                );
            }
            if report.policy & POLICY_SMT != 0 && !req.allow_smt {
                fail(
                    "SNP SMT",
                    "SMT off (allow_smt = false)".into(),
                    format!("allowed (guest policy {:#x})", report.policy),
                );
            }
            if req.require_crl
                && !matches!(
                    tcb,
                    PlatformTcb::Snp {
                        crl_checked: true,
                        ..
                    }
                )
            {
                fail(
                    "SNP revocation",
                    "AMD's CRL from KDS, checked against the chain (require_crl = true)".into(),
                    "evidence without AMD's CRL".into(),
                );
            }
            if report.vmpl > req.max_vmpl {
                fail(
                    "SNP VMPL",
                    format!("at most {}", req.max_vmpl),
                    report.vmpl.to_string(),
                );
            }
        }
        for (register, allowed) in &self.measurements {
            let Some(found) = register.value(tee) else {
                fail(
                    &register.to_string(),
                    format!("evidence with a {register} register"),
                    format!("{:?} evidence, which has none", tee_format(tee)),
                );
                continue;
            };
            if !allowed.iter().any(|a| a.as_slice() == found) {
                let expected = if allowed.is_empty() {
                    "a configured value (the policy lists none, so nothing is accepted)".to_string()
                } else {
                    format!(
                        "one of [{}]",
                        allowed
                            .iter()
                            .map(hex::encode)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                fail(&register.to_string(), expected, hex::encode(found));
            }
        }
    }

    fn appraise_tcb(
        &self,
        req: &TcbRequirements,
        tcb: &PlatformTcb,
        fail: &mut impl FnMut(&str, String, String),
    ) {
        match tcb {
            PlatformTcb::Unappraised => fail(
                "TCB",
                "evidence with the vendor's TCB appraisal (TDX collateral or SNP VCEK)".into(),
                "evidence without collateral".into(),
            ),
            PlatformTcb::Tdx(v) => {
                if !req.allowed_statuses.contains(&v.status) {
                    fail(
                        "TCB status",
                        format!("one of {:?}", req.allowed_statuses),
                        format!("{} (FMSPC {}, TCB date {})", v.status, v.fmspc, v.tcb_date),
                    );
                }
                if v.tcb_evaluation_data_number < req.min_tcb_evaluation_data_number {
                    fail(
                        "TCB evaluation data number",
                        format!("at least {}", req.min_tcb_evaluation_data_number),
                        v.tcb_evaluation_data_number.to_string(),
                    );
                }
                let extra: Vec<&String> = v
                    .advisory_ids
                    .iter()
                    .filter(|a| !req.allowed_advisories.contains(a))
                    .collect();
                if !extra.is_empty() {
                    fail(
                        "TCB advisories",
                        format!("only {:?}", req.allowed_advisories),
                        format!("{extra:?}"),
                    );
                }
            }
            PlatformTcb::Snp {
                product, reported, ..
            } => match req.snp_minimum.get(product) {
                Some(floor) if reported.at_least(floor) => {}
                Some(floor) => fail(
                    "SNP TCB",
                    format!("at least {floor} ({product:?})"),
                    format!("{reported}"),
                ),
                None => fail(
                    "SNP TCB",
                    format!(
                        "a product with a floor in the policy ({:?})",
                        req.snp_minimum.keys().collect::<Vec<_>>()
                    ),
                    format!("{product:?}, which has none"),
                ),
            },
        }
    }

    /// Whether the policy accepts the given model name and digest.
    pub fn allows_model(&self, name: &str, digest: &[u8; 32]) -> bool {
        self.models
            .iter()
            .any(|m| m.name == name && &m.digest == digest)
    }
}

fn tee_snp(tee: &TeeReport) -> Option<&kokon_attestation::snp::Report> {
    match tee {
        TeeReport::Snp(r) => Some(r),
        TeeReport::Tdx(_) => None,
    }
}

fn tee_format(tee: &TeeReport) -> &'static str {
    match tee {
        TeeReport::Tdx(_) => "TDX",
        TeeReport::Snp(_) => "SEV-SNP",
    }
}
