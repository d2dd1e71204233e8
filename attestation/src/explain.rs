//! Every field of a TDX quote, an SNP report or an NVIDIA GPU attestation
//! report, with what it means: the auditor's view (`kokon audit explain`)
//! and the measurement section of verification reports. One table per
//! format, so that both always agree.

use serde::Serialize;

use crate::nvidia::Report as GpuReport;
use crate::snp::report::{
    Report, POLICY_DEBUG, POLICY_MIGRATE_MA, POLICY_SINGLE_SOCKET, POLICY_SMT,
};
use crate::tdx::quote::{Quote, TdReportBody};

/// One field of a piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Its name, as the vendor's specification spells it.
    pub name: String,
    /// Its value (hex for bytes).
    pub value: String,
    /// What it means and who controls it.
    pub meaning: &'static str,
}

fn field(name: impl Into<String>, value: impl Into<String>, meaning: &'static str) -> Field {
    Field {
        name: name.into(),
        value: value.into(),
        meaning,
    }
}

fn flags(value: u64, names: &[(u64, &str)]) -> String {
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        format!("{value:#x}")
    } else {
        format!("{value:#x} ({})", set.join(", "))
    }
}

/// The fields of a TD report body (the measurements).
pub fn td_report(td: &TdReportBody) -> Vec<Field> {
    let attrs = td.td_attributes_u64();
    let mut out = vec![
        field("TEE_TCB_SVN", hex::encode(td.tee_tcb_svn), "security versions of the TDX module (byte 0: module SVN, byte 1: module version) and its components; appraised against Intel's TCB info"),
        field("MRSEAM", hex::encode(td.mr_seam), "measurement of the TDX module (Intel's firmware that enforces TD isolation)"),
        field("MRSIGNERSEAM", hex::encode(td.mr_signer_seam), "signer of the TDX module; zero for Intel's own, compared with the TCB info"),
        field("SEAMATTRIBUTES", hex::encode(td.seam_attributes), "attributes of the TDX module; compared with the TCB info under its mask"),
        field(
            "TDATTRIBUTES",
            flags(attrs, &[(1, "DEBUG: the host can read and change TD memory"), (1 << 28, "SEPT_VE_DISABLE"), (1 << 29, "MIGRATABLE"), (1 << 30, "PKS"), (1 << 31, "KL"), (1 << 63, "PERFMON")]),
            "TD attributes set by the host at launch; DEBUG must be off in production",
        ),
        field("XFAM", hex::encode(td.xfam), "extended CPU features (XSAVE) enabled for the TD"),
        field("MRTD", hex::encode(td.mr_td), "build-time measurement of the TD's initial memory: the virtual firmware (for kokon's sim: SHA-384 of the enclave binary)"),
        field("MRCONFIGID", hex::encode(td.mr_config_id), "set by the host at launch, opaque to the TDX module (zero unless the deployment uses it)"),
        field("MROWNER", hex::encode(td.mr_owner), "set by the host at launch: the TD owner's identity (zero unless used)"),
        field("MROWNERCONFIG", hex::encode(td.mr_owner_config), "set by the host at launch: owner configuration (zero unless used)"),
    ];
    let meanings = [
        "RTMR0: firmware configuration (TD HOB, ACPI tables) extended by the virtual firmware",
        "RTMR1: the OS loader and kernel, extended by the firmware",
        "RTMR2: kernel command line and initrd, extended by the loader",
        "RTMR3: kokon's serving configuration and model digest, extended by the enclave before it serves",
    ];
    for (i, (r, m)) in td.rtmr.iter().zip(meanings).enumerate() {
        out.push(field(format!("RTMR{i}"), hex::encode(r), m));
    }
    out.push(field(
        "REPORTDATA",
        hex::encode(td.report_data),
        "64 bytes chosen by the TD: kokon puts SHA-512 of its claims (keys, model, nonce) here",
    ));
    if let Some(td15) = &td.td15 {
        out.push(field("TEE_TCB_SVN2", hex::encode(td15.tee_tcb_svn2), "TDX 1.5: security versions of the TDX module running now (after a TD-preserving update)"));
        out.push(field(
            "MRSERVICETD",
            hex::encode(td15.mr_service_td),
            "TDX 1.5: measurement of the service TDs bound to this TD (zero when none)",
        ));
    }
    out
}

/// Every field of a TDX quote: header, TD report, QE report and certification data.
pub fn tdx_quote(q: &Quote) -> Vec<Field> {
    let h = &q.header;
    let mut out = vec![
        field(
            "version",
            h.version.to_string(),
            "quote format version (4, or 5 with a typed body)",
        ),
        field(
            "attestation key type",
            h.att_key_type.to_string(),
            "2 = ECDSA P-256: the QE's attestation key signs the quote",
        ),
        field("TEE type", format!("{:#x}", h.tee_type), "0x81 = TDX"),
        field(
            "QE SVN",
            h.qe_svn.to_string(),
            "security version of the Quoting Enclave at signing time",
        ),
        field(
            "PCE SVN",
            h.pce_svn.to_string(),
            "security version of the Provisioning Certification Enclave",
        ),
        field(
            "QE vendor ID",
            hex::encode(h.qe_vendor_id),
            "939a7233f79c4ca9940a0db3957f0607 = Intel's QE",
        ),
        field(
            "user data",
            hex::encode(h.user_data),
            "platform identifier chosen by the QE (not verified)",
        ),
    ];
    out.extend(td_report(&q.body));
    let s = &q.signature;
    out.extend([
        field("quote signature", hex::encode(s.signature), "ECDSA P-256 over header and TD report by the attestation key"),
        field("attestation key", hex::encode(s.attestation_key), "the QE's ECDSA P-256 public key, bound by the QE report data"),
        field("QE report MRENCLAVE", hex::encode(s.qe_report.mr_enclave), "measurement of the Quoting Enclave"),
        field("QE report MRSIGNER", hex::encode(s.qe_report.mr_signer), "signer of the Quoting Enclave: compared with Intel's QE identity"),
        field("QE report ISVPRODID", s.qe_report.isv_prod_id.to_string(), "product ID of the QE: compared with Intel's QE identity"),
        field("QE report ISVSVN", s.qe_report.isv_svn.to_string(), "security version of the QE: appraised against the QE identity's TCB levels"),
        field("QE report data", hex::encode(s.qe_report.report_data), "SHA-256(attestation key || QE auth data), then zeros: binds the attestation key to the PCK-signed QE report"),
        field("QE report signature", hex::encode(s.qe_report_signature), "ECDSA P-256 over the QE report by the PCK key"),
        field("QE auth data", hex::encode(&s.qe_auth_data), "hashed into the QE report data"),
        field("PCK certificate chain", format!("{} bytes of PEM", s.pck_chain_pem.len()), "PCK leaf, Intel platform or processor CA, Intel SGX Root CA (the root must match kokon's pinned copy)"),
    ]);
    let (fmspc, ca) = match crate::tdx::pck::pcs_platform(q) {
        Ok(p) => (p.fmspc, p.ca.to_string()),
        Err(e) => (format!("unreadable: {e}"), "unreadable".into()),
    };
    out.extend([
        field("PCK FMSPC", fmspc, "the platform family, from the PCK certificate: selects Intel's TCB info (PCS /tdx/certification/v4/tcb?fmspc=…)"),
        field("PCK CA", ca, "the Intel CA that issued the PCK certificate: selects the PCK CRL (PCS /sgx/certification/v4/pckcrl?ca=…)"),
    ]);
    out
}

/// Every field of an SNP report.
pub fn snp_report(r: &Report) -> Vec<Field> {
    let signing = match (r.key_info >> 2) & 7 {
        0 => "VCEK",
        1 => "VLEK",
        _ => "unknown",
    };
    let mut out = vec![
        field("VERSION", r.version.to_string(), "report format version (2, 3 or 5)"),
        field("GUEST_SVN", r.guest_svn.to_string(), "security version of the guest, from its ID block"),
        field(
            "POLICY",
            flags(r.policy, &[(POLICY_SMT, "SMT allowed"), (POLICY_MIGRATE_MA, "MIGRATE_MA: a migration agent may be bound"), (POLICY_DEBUG, "DEBUG: the host may debug the guest"), (POLICY_SINGLE_SOCKET, "SINGLE_SOCKET")]),
            "guest policy fixed at launch; DEBUG must be off in production",
        ),
        field("FAMILY_ID", hex::encode(r.family_id), "family ID from the ID block (owner-defined)"),
        field("IMAGE_ID", hex::encode(r.image_id), "image ID from the ID block (owner-defined)"),
        field("VMPL", r.vmpl.to_string(), "privilege level that requested the report; 0 is the most privileged"),
        field("SIGNATURE_ALGO", r.signature_algo.to_string(), "1 = ECDSA P-384 with SHA-384"),
        field("CURRENT_TCB", format!("{:016x}", r.current_tcb), "TCB the firmware runs at now"),
        field("PLATFORM_INFO", flags(r.platform_info, &[(1, "SMT enabled"), (2, "TSME enabled"), (4, "ECC memory"), (8, "RAPL disabled"), (16, "ciphertext hiding")]), "platform configuration"),
        field("signing key", signing.to_string(), "which key signed: the chip's VCEK or a cloud provider's VLEK"),
        field("REPORT_DATA", hex::encode(r.report_data), "64 bytes chosen by the guest: kokon puts SHA-512 of its claims here"),
        field("MEASUREMENT", hex::encode(r.measurement), "launch digest of the guest's initial memory (firmware, and kernel/initrd/cmdline when measured boot hashes them); reproducible with sev-snp-measure"),
        field("HOST_DATA", hex::encode(r.host_data), "32 bytes the host set at launch"),
        field("ID_KEY_DIGEST", hex::encode(r.id_key_digest), "SHA-384 of the key that signed the ID block"),
        field("AUTHOR_KEY_DIGEST", hex::encode(r.author_key_digest), "SHA-384 of the author key that certified the ID key"),
        field("REPORT_ID", hex::encode(r.report_id), "identifier of this guest"),
        field("REPORT_ID_MA", hex::encode(r.report_id_ma), "identifier of its migration agent (all ones when none)"),
        field("REPORTED_TCB", format!("{:016x}", r.reported_tcb), "TCB the VCEK was derived from: must equal the VCEK's TCB extensions; compared with the policy's floor"),
    ];
    if let Some([fam, model, step]) = r.cpuid {
        out.push(field(
            "CPUID",
            format!("family {fam:#x} model {model:#x} stepping {step:#x}"),
            "version 3+: the CPU, which names the product line",
        ));
    }
    out.extend([
        field(
            "CHIP_ID",
            hex::encode(r.chip_id),
            "unique chip ID: must equal the VCEK's hwID (zero when masked)",
        ),
        field(
            "COMMITTED_TCB",
            format!("{:016x}", r.committed_tcb),
            "TCB the firmware committed to (cannot roll back below)",
        ),
        field(
            "CURRENT version",
            format!(
                "{}.{}.{}",
                r.current_version[2], r.current_version[1], r.current_version[0]
            ),
            "SNP firmware version running",
        ),
        field(
            "COMMITTED version",
            format!(
                "{}.{}.{}",
                r.committed_version[2], r.committed_version[1], r.committed_version[0]
            ),
            "SNP firmware version committed",
        ),
        field(
            "LAUNCH_TCB",
            format!("{:016x}", r.launch_tcb),
            "TCB at the guest's launch",
        ),
    ]);
    if let Some((launch, current)) = r.mitigation_vectors {
        out.push(field(
            "LAUNCH_MIT_VECTOR",
            format!("{launch:#x}"),
            "version 5: mitigations in place at launch",
        ));
        out.push(field(
            "CURRENT_MIT_VECTOR",
            format!("{current:#x}"),
            "version 5: mitigations in place now",
        ));
    }
    out.push(field(
        "SIGNATURE",
        hex::encode(r.signature),
        "ECDSA P-384 (r || s) over bytes 0..0x2A0 by the VCEK or VLEK",
    ));
    out
}

/// Every field of an NVIDIA GPU attestation report: the SPDM request, the
/// measurement blocks, NVIDIA's opaque fields and the signature.
pub fn nvidia_report(r: &GpuReport) -> Vec<Field> {
    let q = &r.request;
    let p = &r.response;
    let mut out = vec![
        field(
            "SPDMVersion",
            "0x11",
            "SPDM 1.1, the version of both messages",
        ),
        field(
            "GET_MEASUREMENTS attributes",
            format!("{:#04x}", q.attributes),
            "0x01: the GPU was asked to sign its response",
        ),
        field(
            "GET_MEASUREMENTS operation",
            format!("{:#04x}", q.operation),
            "0xff: all measurement blocks were requested",
        ),
        field(
            "request nonce",
            hex::encode(q.nonce),
            "32 bytes chosen by the verifier: must equal the nonce it sent (freshness)",
        ),
        field(
            "slot ID",
            p.slot_id.to_string(),
            "the certificate slot whose key signed (the request's SlotIDParam)",
        ),
        field(
            "NumberOfBlocks",
            p.blocks.len().to_string(),
            "measurement blocks in the response",
        ),
    ];
    for block in &p.blocks {
        out.push(field(
            format!("measurement index {}", block.index),
            format!("{} ({})", hex::encode(block.digest), block.kind()),
            "SHA-384 digest of a GPU firmware or configuration component, extended by the GPU; compared with the policy's pins (NVIDIA publishes reference values in its driver and VBIOS RIMs)",
        ));
    }
    out.push(field(
        "responder nonce",
        hex::encode(p.nonce),
        "32 bytes chosen by the GPU",
    ));
    for f in &p.opaque.fields {
        out.push(field(f.name(), f.value(), f.meaning()));
    }
    out.push(field(
        "signature",
        hex::encode(p.signature),
        "ECDSA P-384 (r || s) over SHA-384 of the request and the response up to the signature, by the key of the GPU's attestation certificate",
    ));
    out
}
