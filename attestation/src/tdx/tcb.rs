//! TCB status: which level of Intel's TCB info a platform is at, and what
//! that means. Follows Intel's "Quote Verification Library" appraisal
//! (TCB info v3 for TDX, QE identity v2), as does the `dcap-qvl` crate that
//! kokon's differential tests compare against.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::collateral::{QeIdentity, QeTcbLevel, TcbInfo, TcbLevel};
use super::quote::{Quote, TdReportBody};
pub use super::tcb_status::TcbStatus;
use crate::Error;

/// The TCB appraisal of a verified quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcbVerdict {
    /// The combined status of platform, TDX module and QE.
    pub status: TcbStatus,
    /// Intel security advisories (INTEL-SA-…) that apply.
    pub advisory_ids: Vec<String>,
    /// The platform level's status alone.
    pub platform_status: TcbStatus,
    /// The Quoting Enclave's status alone.
    pub qe_status: TcbStatus,
    /// The date of the matched platform TCB level.
    pub tcb_date: String,
    /// The platform's FMSPC (hex).
    pub fmspc: String,
    /// The platform's CPUSVN from its PCK certificate (hex, 16 components).
    pub cpu_svn: String,
    /// The platform's PCE SVN from its PCK certificate.
    pub pce_svn: u16,
    /// The TCB evaluation data number of the collateral.
    pub tcb_evaluation_data_number: u32,
}

fn push_unique(into: &mut Vec<String>, from: &[String]) {
    for id in from {
        if !into.contains(id) {
            into.push(id.clone());
        }
    }
}

fn cmp_levels(a: &TcbLevel, b: &TcbLevel) -> Ordering {
    let svns = |l: &TcbLevel| {
        l.tcb
            .sgx_components
            .iter()
            .map(|c| c.svn)
            .collect::<Vec<_>>()
    };
    let tdx = |l: &TcbLevel| {
        l.tcb
            .tdx_components
            .iter()
            .map(|c| c.svn)
            .collect::<Vec<_>>()
    };
    svns(b)
        .cmp(&svns(a))
        .then_with(|| b.tcb.pce_svn.cmp(&a.tcb.pce_svn))
        .then_with(|| tdx(b).cmp(&tdx(a)))
}

/// The first level (highest first) whose every component the platform meets.
fn find_level<'a>(
    info: &'a TcbInfo,
    cpu_svn: &[u8; 16],
    pce_svn: u16,
    tee_tcb_svn: &[u8; 16],
) -> Result<&'a TcbLevel, Error> {
    let mut levels: Vec<&TcbLevel> = info.tcb_levels.iter().collect();
    levels.sort_by(|a, b| cmp_levels(a, b));
    // With a module version (byte 1) the module's own identity appraises bytes 0 and 1.
    let skip = if tee_tcb_svn.get(1).copied().unwrap_or(0) > 0 {
        2
    } else {
        0
    };
    for level in levels {
        let sgx = &level.tcb.sgx_components;
        let tdx = &level.tcb.tdx_components;
        if sgx.len() != 16 || tdx.len() != 16 {
            return Err(Error::Collateral {
                what: "TCB info",
                reason: format!(
                    "a TCB level lists {} SGX and {} TDX components, expected 16 each",
                    sgx.len(),
                    tdx.len()
                ),
            });
        }
        let sgx_ok = cpu_svn
            .iter()
            .zip(sgx)
            .all(|(have, need)| *have >= need.svn);
        let tdx_ok = tee_tcb_svn
            .iter()
            .zip(tdx)
            .skip(skip)
            .all(|(have, need)| *have >= need.svn);
        if sgx_ok && pce_svn >= level.tcb.pce_svn && tdx_ok {
            return Ok(level);
        }
    }
    Err(Error::Tcb(format!(
        "the platform (CPUSVN {}, PCESVN {pce_svn}, TEE_TCB_SVN {}) is below every TCB level in the TCB info",
        hex::encode(cpu_svn),
        hex::encode(tee_tcb_svn)
    )))
}

/// Appraises one TEE TCB SVN (launch or current): platform level, then the module identity.
fn evaluate(
    info: &TcbInfo,
    cpu_svn: &[u8; 16],
    pce_svn: u16,
    tee_tcb_svn: &[u8; 16],
) -> Result<(TcbStatus, Vec<String>, String), Error> {
    let level = find_level(info, cpu_svn, pce_svn, tee_tcb_svn)?;
    let mut status = level.tcb_status;
    let mut advisories = level.advisory_ids.clone();
    let mut date = level.tcb_date.clone();
    if let Some(identity) = module_identity(info, tee_tcb_svn)? {
        let wanted = &identity.id;
        let module_svn = tee_tcb_svn.first().copied().unwrap_or(0);
        let module_level = identity
            .tcb_levels
            .iter()
            .find(|l| module_svn >= l.tcb.isvsvn)
            .ok_or_else(|| {
                Error::Tcb(format!(
                    "TDX module {wanted} ISVSVN {module_svn} is below every level of its identity"
                ))
            })?;
        status = status.converge(module_level.tcb_status);
        push_unique(&mut advisories, &module_level.advisory_ids);
        if module_level.tcb_date < date {
            date = module_level.tcb_date.clone();
        }
    }
    Ok((status, advisories, date))
}

/// The TDX module identity `TDX_<version>` for a TEE TCB SVN whose byte 1
/// (the module version) is not zero; `None` for version 0.
fn module_identity<'a>(
    info: &'a TcbInfo,
    tee_tcb_svn: &[u8; 16],
) -> Result<Option<&'a super::collateral::TdxModuleIdentity>, Error> {
    let version = tee_tcb_svn.get(1).copied().unwrap_or(0);
    if version == 0 {
        return Ok(None);
    }
    let wanted = format!("TDX_{version:02X}");
    info.tdx_module_identities
        .iter()
        .find(|i| i.id.eq_ignore_ascii_case(&wanted))
        .map(Some)
        .ok_or_else(|| Error::Tcb(format!("no TDX module identity {wanted} in the TCB info")))
}

/// Checks MRSIGNERSEAM and SEAMATTRIBUTES against the module identity of the TCB info.
fn check_module_identity(info: &TcbInfo, body: &TdReportBody) -> Result<(), Error> {
    let base = info.tdx_module.as_ref().ok_or_else(|| Error::Collateral {
        what: "TCB info",
        reason: "a TDX TCB info must have tdxModule".into(),
    })?;
    let (mrsigner, attributes, mask) = match module_identity(info, &body.tee_tcb_svn)? {
        Some(id) => (&id.mrsigner, &id.attributes, &id.attributes_mask),
        None => (&base.mrsigner, &base.attributes, &base.attributes_mask),
    };
    if mrsigner.0.as_slice() != body.mr_signer_seam.as_slice() {
        return Err(Error::Mismatch {
            what: "MRSIGNERSEAM (TDX module signer)",
            expected: hex::encode(&mrsigner.0),
            found: hex::encode(body.mr_signer_seam),
        });
    }
    let ok = attributes
        .0
        .iter()
        .zip(&mask.0)
        .zip(&body.seam_attributes)
        .all(|((want, m), have)| want & m == have & m && have & !m == 0);
    if !ok || attributes.0.len() != 8 || mask.0.len() != 8 {
        return Err(Error::Mismatch {
            what: "SEAMATTRIBUTES (under the TCB info's mask)",
            expected: format!(
                "{} mask {}",
                hex::encode(&attributes.0),
                hex::encode(&mask.0)
            ),
            found: hex::encode(body.seam_attributes),
        });
    }
    Ok(())
}

/// Checks the QE report against the QE identity and returns its TCB level.
pub fn appraise_qe(quote: &Quote, identity: &QeIdentity) -> Result<QeTcbLevel, Error> {
    let qe = &quote.signature.qe_report;
    if identity.mrsigner.0.as_slice() != qe.mr_signer.as_slice() {
        return Err(Error::Mismatch {
            what: "QE MRSIGNER",
            expected: hex::encode(&identity.mrsigner.0),
            found: hex::encode(qe.mr_signer),
        });
    }
    if identity.isvprodid != qe.isv_prod_id {
        return Err(Error::Mismatch {
            what: "QE ISVPRODID",
            expected: identity.isvprodid.to_string(),
            found: qe.isv_prod_id.to_string(),
        });
    }
    if qe.attributes.first().copied().unwrap_or(0) & 0x02 != 0 {
        return Err(Error::Unsupported {
            field: "QE attributes",
            expected: "DEBUG off".into(),
            found: "DEBUG on".into(),
        });
    }
    let le32 = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u32, |acc, x| (acc << 8) | u32::from(*x))
    };
    let misc_mask = le32(&identity.miscselect_mask.0);
    if qe.misc_select & misc_mask != le32(&identity.miscselect.0) & misc_mask {
        return Err(Error::Mismatch {
            what: "QE MISCSELECT (masked)",
            expected: format!("{:08x}", le32(&identity.miscselect.0) & misc_mask),
            found: format!("{:08x}", qe.misc_select & misc_mask),
        });
    }
    let masked = |v: &[u8]| {
        v.iter()
            .zip(&identity.attributes_mask.0)
            .map(|(a, m)| a & m)
            .collect::<Vec<_>>()
    };
    if masked(&qe.attributes) != masked(&identity.attributes.0) {
        return Err(Error::Mismatch {
            what: "QE ATTRIBUTES (masked)",
            expected: hex::encode(masked(&identity.attributes.0)),
            found: hex::encode(masked(&qe.attributes)),
        });
    }
    identity
        .tcb_levels
        .iter()
        .find(|l| qe.isv_svn >= l.tcb.isvsvn)
        .cloned()
        .ok_or_else(|| {
            Error::Tcb(format!(
                "QE ISVSVN {} is below every level of the QE identity",
                qe.isv_svn
            ))
        })
}

/// Appraises the platform, TDX module and QE TCB of a quote whose PCK
/// extension is `pck`. Fails when no level matches or the result is Revoked.
pub fn appraise(
    quote: &Quote,
    pck: &super::pck::PckExtension,
    info: &TcbInfo,
    identity: &QeIdentity,
) -> Result<TcbVerdict, Error> {
    if !info.fmspc.0.as_slice().eq(pck.fmspc.as_slice()) {
        return Err(Error::Mismatch {
            what: "FMSPC (TCB info vs PCK certificate)",
            expected: hex::encode(pck.fmspc),
            found: hex::encode(&info.fmspc.0),
        });
    }
    let qe_level = appraise_qe(quote, identity)?;
    let body = &quote.body;
    let (launch, mut advisories, tcb_date) =
        evaluate(info, &pck.cpu_svn, pck.pce_svn, &body.tee_tcb_svn)?;
    check_module_identity(info, body)?;
    let current = match &body.td15 {
        Some(td15) => Some(evaluate(
            info,
            &pck.cpu_svn,
            pck.pce_svn,
            &td15.tee_tcb_svn2,
        )?),
        None => None,
    };
    let mut status = launch.converge(qe_level.tcb_status);
    push_unique(&mut advisories, &qe_level.advisory_ids);
    let current_status = current
        .as_ref()
        .map(|(s, _, _)| s.converge(qe_level.tcb_status));
    if status == TcbStatus::Revoked || current_status == Some(TcbStatus::Revoked) {
        return Err(Error::Tcb(
            "the platform's TCB level is Revoked in the TCB info".into(),
        ));
    }
    if let Some(current) = current_status {
        status = status.check_for_relaunch(current);
    }
    Ok(TcbVerdict {
        status,
        advisory_ids: advisories,
        platform_status: launch,
        qe_status: qe_level.tcb_status,
        tcb_date,
        fmspc: hex::encode(pck.fmspc),
        cpu_svn: hex::encode(pck.cpu_svn),
        pce_svn: pck.pce_svn,
        tcb_evaluation_data_number: info
            .tcb_evaluation_data_number
            .min(identity.tcb_evaluation_data_number),
    })
}
