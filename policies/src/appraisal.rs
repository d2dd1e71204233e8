//! Appraisal: checking verified evidence against a [`Policy`]. Every check
//! is recorded, passed or failed, with what the policy expects and what the
//! evidence shows (a verification report lists them all); a rejection
//! names every failed one.

use std::collections::BTreeMap;
use std::fmt;

use kokon_attestation::claims::CcEnvironment;
use kokon_attestation::nvidia::{self, gpu_nonce, rim, Expectations};
use kokon_attestation::GpuRim;
use kokon_attestation::{PlatformTcb, TeeReport, TrustAnchor, VerifiedEvidence, VerifiedPlatform};
use thiserror::Error;

use crate::{Policy, TcbRequirements, MAX_CLOCK_SKEW_SECS};

/// One check of an appraisal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The check.
    pub check: String,
    /// What the policy expects.
    pub expected: String,
    /// What the evidence shows.
    pub found: String,
    /// Whether the evidence satisfies it.
    pub passed: bool,
}

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

/// The checks of one appraisal, in the order they are made.
#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        check: &str,
        passed: bool,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.0.push(Check {
            check: check.into(),
            expected: expected.into(),
            found: found.into(),
            passed,
        });
    }
}

/// What the policy expects: `yes` when it allows the thing, `no` when not.
fn requirement(allowed: bool, yes: &str, no: &str) -> String {
    if allowed { yes } else { no }.to_string()
}

impl Policy {
    /// Appraises verified evidence at `now` (Unix seconds): the checks of
    /// [`Policy::checks`], accepted when all pass.
    pub fn appraise(&self, evidence: &VerifiedEvidence, now: i64) -> Result<(), Rejection> {
        self.verdict(&self.checks(evidence, now))
    }

    /// Every check of appraising verified evidence at `now`, passed or not:
    /// the platform checks of [`Policy::platform_checks`], then evidence
    /// age, models and the GPUs (each GPU's evidence verified under the
    /// policy's GPU roots at `now`, for
    /// [`gpu_nonce`] of the claims' nonce, with its pins).
    pub fn checks(&self, evidence: &VerifiedEvidence, now: i64) -> Vec<Check> {
        let mut c = Checks::default();
        self.check_platform(&evidence.tee, &evidence.tcb, &evidence.anchor, &mut c);
        let issued = evidence.claims.issued_at;
        let age = now.saturating_sub(issued);
        let rfc3339 = kokon_attestation::pki::rfc3339;
        c.add(
            "evidence age",
            age <= i64::try_from(self.max_age_seconds).unwrap_or(i64::MAX),
            format!("at most {} s", self.max_age_seconds),
            format!(
                "{age} s (issued at {}, checked at {})",
                rfc3339(issued),
                rfc3339(now)
            ),
        );
        c.add(
            "evidence time",
            issued <= now.saturating_add(MAX_CLOCK_SKEW_SECS),
            format!(
                "issued no later than {} + {MAX_CLOCK_SKEW_SECS} s",
                rfc3339(now)
            ),
            format!("issued at {}", rfc3339(issued)),
        );
        let claims = &evidence.claims;
        let allowed = format!(
            "one of [{}]",
            self.models
                .iter()
                .map(|m| format!("{} sha256:{}", m.name, hex::encode(m.digest)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let served = [("model", claims.model_name.as_str(), &claims.model_digest)]
            .into_iter()
            .chain(
                claims
                    .text_model
                    .as_ref()
                    .map(|m| ("text model", m.name.as_str(), &m.digest)),
            );
        for (what, name, digest) in served {
            c.add(
                what,
                self.allows_model(name, digest),
                allowed.clone(),
                format!("{name} sha256:{}", hex::encode(digest)),
            );
        }
        self.check_gpus(evidence, now, &mut c);
        c.0
    }

    /// The GPU checks: evidence present when required, then each GPU's
    /// evidence verified under the policy's GPU roots at `now`, for the
    /// nonce derived from the claims' nonce, with the allowed driver and
    /// VBIOS versions, then each pinned measurement.
    fn check_gpus(&self, evidence: &VerifiedEvidence, now: i64, c: &mut Checks) {
        let gpu = &self.gpu;
        let count = evidence.gpu_evidence.len();
        if gpu.require_cc {
            self.check_gpu_cc(evidence, c);
        }
        if gpu.required {
            c.add(
                "GPU evidence",
                count > 0,
                "at least one GPU report (gpu.required = true)",
                format!("{count} GPU reports"),
            );
        }
        let expect = Expectations {
            nonce: gpu_nonce(&evidence.claims.nonce),
            measurements: BTreeMap::new(),
            driver_versions: gpu.driver_versions.clone(),
            min_driver_version: gpu.min_driver_version.clone(),
            vbios_versions: gpu.vbios_versions.clone(),
        };
        let roots: Vec<&String> = gpu.anchors.roots.iter().map(|a| &a.name).collect();
        let expected = format!(
            "genuine GPU evidence under one of {roots:?} at {}, for nonce {} (the claims' nonce, derived){}{}{}",
            kokon_attestation::pki::rfc3339(now),
            hex::encode(expect.nonce),
            listed(", driver one of", &gpu.driver_versions),
            gpu.min_driver_version
                .as_ref()
                .map(|m| format!(", driver at least {m}"))
                .unwrap_or_default(),
            listed(", VBIOS one of", &gpu.vbios_versions),
        );
        for (i, e) in evidence.gpu_evidence.iter().enumerate() {
            let name = format!("GPU {i}");
            let verified = nvidia::verify(
                &e.report,
                e.chain_pem.as_bytes(),
                &gpu.anchors,
                now,
                &expect,
            );
            let v = match verified {
                Ok(v) => v,
                Err(err) => {
                    c.add(&name, false, expected.clone(), err.to_string());
                    continue;
                }
            };
            // A simulated GPU root (only code can install one) counts as a
            // simulated TEE does.
            let simulated = gpu
                .anchors
                .roots
                .iter()
                .any(|a| a.name == v.anchor && a.simulated);
            if simulated && !self.allow_simulated {
                c.add(
                    &name,
                    false,
                    format!("{expected}, from hardware (allow_simulated = false)"),
                    format!("simulated GPU evidence under root {:?}", v.anchor),
                );
                continue;
            }
            c.add(
                &name,
                true,
                expected.clone(),
                format!(
                    "verified under {:?}: driver {}, VBIOS {}, FWID {}",
                    v.anchor,
                    v.driver_version(),
                    v.vbios_version(),
                    hex::encode(v.fwid())
                ),
            );
            if gpu.require_ocsp || !e.ocsp.is_empty() {
                let expected = format!(
                    "NVIDIA's OCSP responses for the {}, signed by their issuers or delegated responders, current at {} and good{}",
                    nvidia::OCSP_POSITIONS
                        .filter_map(|p| v.certificates.get(p).map(|c| c.position.as_str()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    kokon_attestation::pki::rfc3339(now),
                    match gpu.require_ocsp {
                        true => " (gpu.require_ocsp = true)",
                        false => " (the host sent them)",
                    }
                );
                let (passed, found) = match v.check_revocation(&e.ocsp, now) {
                    Ok(verdicts) => (
                        true,
                        verdicts
                            .iter()
                            .map(|o| {
                                format!(
                                    "good, signed by {}, until {}",
                                    o.signer,
                                    o.next_update
                                        .as_deref()
                                        .unwrap_or("a day after its thisUpdate")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    Err(err) => (false, err.to_string()),
                };
                c.add(&format!("{name} revocation"), passed, expected, found);
            }
            self.check_reference_values(&name, &v, evidence, now, c);
            let measured = v.measurements();
            for (index, allowed) in &gpu.measurements {
                let found = measured
                    .get(index)
                    .map_or_else(|| "no block with this index".to_string(), hex::encode);
                c.add(
                    &format!("GPU {i} measurement {index}"),
                    measured
                        .get(index)
                        .is_some_and(|m| allowed.iter().any(|a| a.as_slice() == m)),
                    allowed_values(allowed),
                    found,
                );
            }
        }
    }

    /// A GPU's reference values (`gpu.require_rims`, or RIMs in the
    /// bundle): its driver's and its VBIOS's RIMs present, verified under
    /// the policy's RIM roots at `now` (from hardware unless simulation is
    /// allowed) and every active index matching; then their signing
    /// chains' OCSP answers (`gpu.require_ocsp`, or answers in the bundle).
    fn check_reference_values(
        &self,
        name: &str,
        v: &nvidia::VerifiedGpu,
        evidence: &VerifiedEvidence,
        now: i64,
        c: &mut Checks,
    ) {
        let gpu = &self.gpu;
        let driver_id = rim::driver_rim_id(&v.report);
        let vbios_id = rim::vbios_rim_id(&v.report);
        let carried = |id: &str| evidence.gpu_rims.get(id);
        let any = carried(&driver_id).is_some()
            || vbios_id.as_deref().is_ok_and(|id| carried(id).is_some());
        if !gpu.require_rims && !any {
            return;
        }
        let roots: Vec<&String> = gpu.rim_anchors.roots.iter().map(|a| &a.name).collect();
        let expected = format!(
            "NVIDIA's RIMs {driver_id} and {}, signed under one of {roots:?} at {}, every active index matching the report{}",
            vbios_id.as_deref().unwrap_or("(the VBIOS RIM)"),
            kokon_attestation::pki::rfc3339(now),
            match gpu.require_rims {
                true => " (gpu.require_rims = true)",
                false => " (the host sent them)",
            }
        );
        let verify = |id: &str| -> Result<(&GpuRim, rim::VerifiedRim), String> {
            let carried = carried(id).ok_or_else(|| format!("no RIM {id} in the bundle"))?;
            let verified = rim::verify(carried.rim.as_bytes(), &gpu.rim_anchors, now)
                .map_err(|e| format!("RIM {id}: {e}"))?;
            let simulated = gpu
                .rim_anchors
                .roots
                .iter()
                .any(|a| a.name == verified.anchor && a.simulated);
            if simulated && !self.allow_simulated {
                return Err(format!(
                    "RIM {id}: signed under a simulated root (allow_simulated = false)"
                ));
            }
            Ok((carried, verified))
        };
        let rims = vbios_id
            .map_err(|e| e.to_string())
            .and_then(|vbios_id| Ok((verify(&driver_id)?, verify(&vbios_id)?)));
        let ((driver_rim, driver), (vbios_rim, vbios)) = match rims {
            Ok(rims) => rims,
            Err(found) => {
                c.add(&format!("{name} reference values"), false, expected, found);
                return;
            }
        };
        let (passed, found) = match rim::appraise(&v.report, &driver, &vbios) {
            Ok(a) => (
                true,
                format!(
                    "{} indexes match (driver RIM {}, VBIOS RIM {}){}",
                    a.compared.len(),
                    driver.version,
                    vbios.version,
                    match a.nvdec0_skipped {
                        true => "; index 36 not compared: NVDEC0 is disabled",
                        false => "",
                    }
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        c.add(&format!("{name} reference values"), passed, expected, found);
        let sent = !driver_rim.ocsp.is_empty() || !vbios_rim.ocsp.is_empty();
        if gpu.require_ocsp || sent {
            let checked = driver
                .check_revocation(&driver_rim.ocsp, now)
                .map_err(|e| format!("driver RIM: {e}"))
                .and_then(|_| {
                    vbios
                        .check_revocation(&vbios_rim.ocsp, now)
                        .map_err(|e| format!("VBIOS RIM: {e}"))
                });
            let (passed, found) = match checked {
                Ok(_) => (true, "good, both signing chains".to_string()),
                Err(e) => (false, e),
            };
            c.add(
                &format!("{name} RIM revocation"),
                passed,
                format!(
                    "NVIDIA's OCSP answers for both RIMs' signer, L3 and L2 certificates, current at {} and good{}",
                    kokon_attestation::pki::rfc3339(now),
                    match gpu.require_ocsp {
                        true => " (gpu.require_ocsp = true)",
                        false => " (the host sent them)",
                    }
                ),
                found,
            );
        }
    }

    /// The GPUs' confidential-computing state in the claims
    /// (`gpu.require_cc`): the CC feature on, developer-tools mode off,
    /// the production environment (NVIDIA's simulation one too when the
    /// policy allows simulation), protected PCIe with more than one GPU,
    /// the GPUs ready, and one report in the bundle per GPU.
    fn check_gpu_cc(&self, evidence: &VerifiedEvidence, c: &mut Checks) {
        let reports = evidence.gpu_evidence.len();
        let environments = match self.allow_simulated {
            true => "the production or simulation environment",
            false => "the production environment",
        };
        let expected = format!(
            "GPUs in confidential-computing mode (gpu.require_cc = true): CC on, devtools off, {environments}, protected PCIe with more than one GPU, ready, one report per GPU"
        );
        let (passed, found) = match &evidence.claims.gpu_cc {
            None => (
                false,
                "no GPU confidential-computing state in the claims (an enclave serving on the CPU)"
                    .to_string(),
            ),
            Some(cc) => {
                let environment = match cc.environment {
                    CcEnvironment::Production => true,
                    CcEnvironment::Simulation => self.allow_simulated,
                    CcEnvironment::Unavailable => false,
                };
                (
                    cc.shortfalls().is_empty()
                        && environment
                        && cc.ready
                        && u32::try_from(reports).ok() == Some(cc.gpu_count),
                    format!("{}; {reports} GPU reports", cc.describe()),
                )
            }
        };
        c.add("GPU confidential computing", passed, expected, found);
    }

    /// Appraises raw evidence without claims (`kokon verify --evidence`): the
    /// checks of [`Policy::platform_checks`], accepted when all pass.
    pub fn appraise_platform(&self, evidence: &VerifiedPlatform) -> Result<(), Rejection> {
        self.verdict(&self.platform_checks(evidence))
    }

    /// Every check of the platform, passed or not: roots, simulation, debug,
    /// TCB, SNP guest policy and measurements.
    pub fn platform_checks(&self, evidence: &VerifiedPlatform) -> Vec<Check> {
        let mut c = Checks::default();
        self.check_platform(&evidence.tee, &evidence.tcb, &evidence.anchor, &mut c);
        c.0
    }

    /// The verdict on `checks`: accepted when all passed, else a rejection
    /// naming every failed one.
    pub fn verdict(&self, checks: &[Check]) -> Result<(), Rejection> {
        let failures: Vec<Failure> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| Failure {
                check: c.check.clone(),
                expected: c.expected.clone(),
                found: c.found.clone(),
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Rejection {
                policy: self.name.clone(),
                failures,
            })
        }
    }

    fn check_platform(
        &self,
        tee: &TeeReport,
        tcb: &PlatformTcb,
        anchor: &TrustAnchor,
        c: &mut Checks,
    ) {
        c.add(
            "simulated TEE",
            !anchor.simulated || self.allow_simulated,
            requirement(
                self.allow_simulated,
                "evidence from hardware or a simulated TEE (allow_simulated = true)",
                "evidence from hardware (allow_simulated = false)",
            ),
            format!(
                "{} evidence under root {:?}",
                if anchor.simulated {
                    "simulated"
                } else {
                    "hardware"
                },
                anchor.name
            ),
        );
        c.add(
            "trust root",
            self.anchors.roots.iter().any(|a| a.der == anchor.der),
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
        let debug = tee.debug();
        let found = match (tee, debug) {
            (TeeReport::Tdx(td), on) => format!(
                "DEBUG {} (TD attributes {})",
                if on { "on" } else { "off" },
                hex::encode(td.td_attributes)
            ),
            (TeeReport::Snp(r), on) => format!(
                "DEBUG {} (guest policy {:#x})",
                if on { "allowed" } else { "not allowed" },
                r.policy
            ),
        };
        c.add(
            "debug",
            !debug || self.allow_debug,
            requirement(
                self.allow_debug,
                "debugging on or off (allow_debug = true)",
                "debugging off (allow_debug = false)",
            ),
            found,
        );
        if let Some(tcb_req) = &self.tcb {
            check_tcb(tcb_req, tcb, c);
        }
        if let (Some(req), TeeReport::Snp(report)) = (&self.snp, tee) {
            use kokon_attestation::snp::report::{POLICY_MIGRATE_MA, POLICY_SMT};
            let allowed_in_guest = |bit: u64| {
                format!(
                    "{} (guest policy {:#x})",
                    if report.policy & bit != 0 {
                        "allowed"
                    } else {
                        "not allowed"
                    },
                    report.policy
                )
            };
            c.add(
                "SNP migration agent",
                report.policy & POLICY_MIGRATE_MA == 0 || req.allow_migration_agent,
                requirement(
                    req.allow_migration_agent,
                    "MIGRATE_MA on or off (allow_migration_agent = true)",
                    "MIGRATE_MA off (allow_migration_agent = false)",
                ),
                allowed_in_guest(POLICY_MIGRATE_MA),
            );
            c.add(
                "SNP SMT",
                report.policy & POLICY_SMT == 0 || req.allow_smt,
                requirement(
                    req.allow_smt,
                    "SMT on or off (allow_smt = true)",
                    "SMT off (allow_smt = false)",
                ),
                allowed_in_guest(POLICY_SMT),
            );
            if req.require_crl {
                let checked = matches!(
                    tcb,
                    PlatformTcb::Snp {
                        crl_checked: true,
                        ..
                    }
                );
                c.add(
                    "SNP revocation",
                    checked,
                    "AMD's CRL from KDS, checked against the chain (require_crl = true)",
                    if checked {
                        "AMD's CRL checked: nothing in the chain revoked"
                    } else {
                        "evidence without AMD's CRL"
                    },
                );
            }
            c.add(
                "SNP VMPL",
                report.vmpl <= req.max_vmpl,
                format!("at most {}", req.max_vmpl),
                report.vmpl.to_string(),
            );
        }
        for (register, allowed) in &self.measurements {
            let name = register.to_string();
            let Some(found) = register.value(tee) else {
                c.add(
                    &name,
                    false,
                    format!("evidence with a {register} register"),
                    format!("{:?} evidence, which has none", tee_format(tee)),
                );
                continue;
            };
            c.add(
                &name,
                allowed.iter().any(|a| a.as_slice() == found),
                allowed_values(allowed),
                hex::encode(found),
            );
        }
    }

    /// Whether the policy accepts the given model name and digest.
    pub fn allows_model(&self, name: &str, digest: &[u8; 32]) -> bool {
        self.models
            .iter()
            .any(|m| m.name == name && &m.digest == digest)
    }
}

fn check_tcb(req: &TcbRequirements, tcb: &PlatformTcb, c: &mut Checks) {
    match tcb {
        PlatformTcb::Unappraised => c.add(
            "TCB",
            false,
            "evidence with the vendor's TCB appraisal (TDX collateral or SNP VCEK)",
            "evidence without collateral",
        ),
        PlatformTcb::Tdx(v) => {
            c.add(
                "TCB status",
                req.allowed_statuses.contains(&v.status),
                format!("one of {:?}", req.allowed_statuses),
                format!("{} (FMSPC {}, TCB date {})", v.status, v.fmspc, v.tcb_date),
            );
            c.add(
                "TCB evaluation data number",
                v.tcb_evaluation_data_number >= req.min_tcb_evaluation_data_number,
                format!("at least {}", req.min_tcb_evaluation_data_number),
                v.tcb_evaluation_data_number.to_string(),
            );
            let extra: Vec<&String> = v
                .advisory_ids
                .iter()
                .filter(|a| !req.allowed_advisories.contains(a))
                .collect();
            // Found: the advisories outside the policy, or all of them when none is.
            let found = if extra.is_empty() {
                format!("{:?}", v.advisory_ids)
            } else {
                format!("{extra:?}")
            };
            c.add(
                "TCB advisories",
                extra.is_empty(),
                format!("only {:?}", req.allowed_advisories),
                found,
            );
        }
        PlatformTcb::Snp {
            product, reported, ..
        } => match req.snp_minimum.get(product) {
            Some(floor) => c.add(
                "SNP TCB",
                reported.at_least(floor),
                format!("at least {floor} ({product:?})"),
                format!("{reported}"),
            ),
            None => c.add(
                "SNP TCB",
                false,
                format!(
                    "a product with a floor in the policy ({:?})",
                    req.snp_minimum.keys().collect::<Vec<_>>()
                ),
                format!("{product:?}, which has none"),
            ),
        },
    }
}

/// What a list of allowed values expects, in hex.
fn allowed_values(allowed: &[Vec<u8>]) -> String {
    if allowed.is_empty() {
        return "a configured value (the policy lists none, so nothing is accepted)".to_string();
    }
    format!(
        "one of [{}]",
        allowed
            .iter()
            .map(hex::encode)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `, {label} [a, b]` for a non-empty list, else nothing.
fn listed(label: &str, values: &[String]) -> String {
    if values.is_empty() {
        String::new()
    } else {
        format!("{label} [{}]", values.join(", "))
    }
}

fn tee_format(tee: &TeeReport) -> &'static str {
    match tee {
        TeeReport::Tdx(_) => "TDX",
        TeeReport::Snp(_) => "SEV-SNP",
    }
}
