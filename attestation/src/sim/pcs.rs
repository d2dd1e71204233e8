//! The simulated Intel PCS: collateral for the sim platform in Intel's
//! formats (TCB info v3, QE identity v2, root and PCK CRLs, signed JSON),
//! under the sim root. It lets development and tests exercise the whole
//! collateral path — TCB levels, statuses, advisories and revocation — with
//! the same verifier as hardware.
//!
//! The PCK leaf carries Intel's SGX extension (FMSPC, PCE ID, TCB), written
//! with [`crate::der`] (the verifier parses it with `der-parser`).

use rcgen::{
    CertificateRevocationListParams, CustomExtension, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

use super::{leaf_params, pem_encode, sign, signing_key, sim_err, SimTdx};
use crate::der::{integer, oid, tlv};
use crate::tdx::collateral::{Collateral, Hex};
use crate::tdx::TcbStatus;
use crate::Error;

/// The sim platform's SGX TCB component SVNs (its CPUSVN).
pub const SIM_CPU_SVN: [u8; 16] = [3, 3, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
/// The sim platform's PCE SVN.
pub const SIM_PCE_SVN: u16 = 13;
/// The sim platform's FMSPC ("kokon\0").
pub const SIM_FMSPC: [u8; 6] = *b"kokon\0";
/// Validity of sim collateral.
const COLLATERAL_VALIDITY_SECS: i64 = 30 * 24 * 3600;

/// What the sim PCS says about the sim platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTcb {
    /// The platform TCB level's status.
    pub status: TcbStatus,
    /// Advisories listed at that level.
    pub advisory_ids: Vec<String>,
    /// The QE identity level's status.
    pub qe_status: TcbStatus,
    /// List the PCK leaf in the PCK CRL.
    pub revoke_pck: bool,
    /// List the PCK platform CA in the root CRL.
    pub revoke_platform_ca: bool,
    /// The FMSPC the TCB info is for.
    pub fmspc: [u8; 6],
    /// The PCE SVN the TCB level requires.
    pub required_pce_svn: u16,
    /// The QE product ID the QE identity expects.
    pub qe_isv_prod_id: u16,
}

impl Default for SimTcb {
    fn default() -> Self {
        Self {
            status: TcbStatus::UpToDate,
            advisory_ids: Vec::new(),
            qe_status: TcbStatus::UpToDate,
            revoke_pck: false,
            revoke_platform_ca: false,
            fmspc: SIM_FMSPC,
            required_pce_svn: SIM_PCE_SVN,
            qe_isv_prod_id: super::SIM_QE_ISV_PROD_ID,
        }
    }
}

/// A random positive 16-byte serial number.
pub(super) fn serial(rng: &SystemRandom) -> Result<Vec<u8>, Error> {
    let mut s = vec![0u8; 16];
    rng.fill(&mut s).map_err(sim_err)?;
    if let Some(first) = s.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    Ok(s)
}

fn pair(arcs: &[u64], value: Vec<u8>) -> Vec<u8> {
    tlv(0x30, &[oid(arcs), value].concat())
}

const SGX: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];

fn sgx(arcs: &[u64]) -> Vec<u64> {
    [&SGX[..], arcs].concat()
}

/// Intel's SGX extension for the sim PCK certificate.
pub(super) fn sgx_extension() -> CustomExtension {
    let mut tcb = Vec::new();
    for (i, svn) in SIM_CPU_SVN.iter().enumerate() {
        tcb.extend(pair(&sgx(&[2, i as u64 + 1]), integer(u32::from(*svn))));
    }
    tcb.extend(pair(&sgx(&[2, 17]), integer(u32::from(SIM_PCE_SVN))));
    tcb.extend(pair(&sgx(&[2, 18]), tlv(0x04, &SIM_CPU_SVN)));
    let content = tlv(
        0x30,
        &[
            pair(&sgx(&[1]), tlv(0x04, &[0x5a; 16])),
            pair(&sgx(&[2]), tlv(0x30, &tcb)),
            pair(&sgx(&[3]), tlv(0x04, &[0, 0])),
            pair(&sgx(&[4]), tlv(0x04, &SIM_FMSPC)),
            pair(&sgx(&[5]), tlv(0x0a, &[0])),
        ]
        .concat(),
    );
    CustomExtension::from_oid_content(&SGX, content)
}

fn rfc3339(secs: i64) -> String {
    crate::pki::rfc3339(secs)
}

fn offset_time(secs: i64) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(sim_err)
}

fn crl(issuer: &Issuer<'_, KeyPair>, revoked: Option<&[u8]>, now: i64) -> Result<Vec<u8>, Error> {
    let params = CertificateRevocationListParams {
        this_update: offset_time(now - 3600)?,
        next_update: offset_time(now + COLLATERAL_VALIDITY_SECS)?,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: offset_time(now - 3600)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .into_iter()
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer).map_err(sim_err)?.der().to_vec())
}

impl SimTdx {
    /// Collateral for this platform as the sim PCS issues it at `now`.
    pub fn collateral(&self, tcb: &SimTcb, now: i64) -> Result<Collateral, Error> {
        let rng = SystemRandom::new();
        // The TCB signing certificate, under the root, as Intel's "SGX TCB Signing".
        let (signer, signer_rcgen) = signing_key(&rng)?;
        let signer_cert = leaf_params(
            "kokon sim TCB Signing",
            vec![KeyUsagePurpose::DigitalSignature],
            now,
            COLLATERAL_VALIDITY_SECS,
        )?
        .signed_by(&signer_rcgen, &self.root_issuer)
        .map_err(sim_err)?;
        let signer_chain = pem_encode(signer_cert.der()) + &pem_encode(&self.root_der);

        let issued = rfc3339(now - 3600);
        let next = rfc3339(now + COLLATERAL_VALIDITY_SECS);
        let components = |svns: &[u8]| -> Vec<serde_json::Value> {
            svns.iter().map(|s| json!({ "svn": s })).collect()
        };
        let tcb_info = json!({
            "id": "TDX",
            "version": 3,
            "issueDate": issued,
            "nextUpdate": next,
            "fmspc": hex::encode_upper(tcb.fmspc),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": {
                "mrsigner": "00".repeat(48),
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF"
            },
            "tdxModuleIdentities": [],
            "tcbLevels": [{
                "tcb": {
                    "sgxtcbcomponents": components(&SIM_CPU_SVN),
                    "pcesvn": tcb.required_pce_svn,
                    "tdxtcbcomponents": components(&[0; 16]),
                },
                "tcbDate": issued,
                "tcbStatus": tcb.status,
                "advisoryIDs": tcb.advisory_ids,
            }]
        })
        .to_string();
        let qe = &self.qe_report;
        let qe_identity = json!({
            "id": "TD_QE",
            "version": 2,
            "issueDate": issued,
            "nextUpdate": next,
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "00".repeat(16),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode_upper(qe.mr_signer),
            "isvprodid": tcb.qe_isv_prod_id,
            "tcbLevels": [{
                "tcb": { "isvsvn": qe.isv_svn },
                "tcbDate": issued,
                "tcbStatus": tcb.qe_status,
            }]
        })
        .to_string();
        Ok(Collateral {
            pck_crl_issuer_chain: String::from_utf8_lossy(&self.pck_chain_pem)
                .split_inclusive("-----END CERTIFICATE-----\n")
                .skip(1)
                .collect(),
            root_ca_crl: Hex(crl(
                &self.root_issuer,
                tcb.revoke_platform_ca.then_some(self.ca_serial.as_slice()),
                now,
            )?),
            pck_crl: Hex(crl(
                &self.ca_issuer,
                tcb.revoke_pck.then_some(self.pck_serial.as_slice()),
                now,
            )?),
            tcb_info_issuer_chain: signer_chain.clone(),
            tcb_info_signature: Hex(sign(&signer, &rng, tcb_info.as_bytes())?.to_vec()),
            tcb_info,
            qe_identity_issuer_chain: signer_chain,
            qe_identity_signature: Hex(sign(&signer, &rng, qe_identity.as_bytes())?.to_vec()),
            qe_identity,
        })
    }
}
