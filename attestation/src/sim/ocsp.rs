//! A simulated OCSP responder, for tests: signed responses (RFC 6960) about
//! a certificate of a simulated chain, with every field a test may want
//! wrong. What it writes is read by the same [`crate::ocsp::check`] as a
//! real responder's answers.

use std::time::Duration;

use der::asn1::{BitString, GeneralizedTime, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rcgen::{Issuer, KeyPair, SigningKey};
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspResponse, OcspResponseStatus,
    ResponderId, ResponseBytes, ResponseData, RevokedInfo, SingleResponse,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::sim_err;
use crate::Error;

/// ecdsa-with-SHA384, what a P-384 key signs responses with.
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";

/// What the responder says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStatus {
    /// good
    Good,
    /// revoked at this time (Unix seconds), with reason keyCompromise
    Revoked(i64),
    /// unknown
    Unknown,
}

/// How the response names its signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimResponderId {
    /// By the signer's subject name.
    ByName,
    /// By the SHA-1 of the signer's key.
    ByKey,
}

/// One response's contents. [`SimAnswer::good`] is a correct answer; tests
/// change one field to get a wrong one.
#[derive(Debug, Clone)]
pub struct SimAnswer {
    /// The certificate's status.
    pub status: SimStatus,
    /// thisUpdate (Unix seconds).
    pub this_update: i64,
    /// nextUpdate (Unix seconds), if any.
    pub next_update: Option<i64>,
    /// The CertID's hash algorithm (OID, dotted).
    pub hash: &'static str,
    /// The serial number the CertID names, when not the certificate's.
    pub serial: Option<Vec<u8>>,
    /// The responder ID's form.
    pub responder: SimResponderId,
    /// The response status, when not successful (e.g. tryLater).
    pub response_status: Option<OcspResponseStatus>,
    /// The response type, when not id-pkix-ocsp-basic.
    pub response_type: Option<&'static str>,
    /// The signature algorithm written, when not ecdsa-with-SHA384 (the
    /// signature is still made with SHA-384).
    pub signature_algorithm: Option<&'static str>,
    /// Flip a bit of the signature.
    pub corrupt_signature: bool,
}

impl SimAnswer {
    /// A good status from `this_update`, next update a week later, SHA-384
    /// CertID, responder by name.
    pub fn good(this_update: i64) -> Self {
        Self {
            status: SimStatus::Good,
            this_update,
            next_update: Some(this_update + 7 * 24 * 3600),
            hash: "2.16.840.1.101.3.4.2.2",
            serial: None,
            responder: SimResponderId::ByName,
            response_status: None,
            response_type: None,
            signature_algorithm: None,
            corrupt_signature: false,
        }
    }
}

/// Who signs: the key, its certificate (DER), and whether that certificate
/// goes into the response (a delegated responder's does).
pub struct SimSigner<'a> {
    /// The signing key (P-384).
    pub key: &'a KeyPair,
    /// Its certificate (DER).
    pub cert: &'a [u8],
    /// Whether the response carries `cert`.
    pub include_cert: bool,
}

/// A DER OCSP response about `cert_der`, issued by `issuer_der`, signed by
/// `signer`, saying `answer`.
pub fn respond(
    cert_der: &[u8],
    issuer_der: &[u8],
    signer: &SimSigner<'_>,
    answer: &SimAnswer,
) -> Result<Vec<u8>, Error> {
    if let Some(status) = answer.response_status {
        return OcspResponse {
            response_status: status,
            response_bytes: None,
        }
        .to_der()
        .map_err(sim_err);
    }
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(sim_err)?;
    let (_, issuer) = X509Certificate::from_der(issuer_der).map_err(sim_err)?;
    let (_, signer_cert) = X509Certificate::from_der(signer.cert).map_err(sim_err)?;
    let hash = match answer.hash {
        "1.3.14.3.2.26" => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        "2.16.840.1.101.3.4.2.1" => &ring::digest::SHA256,
        "2.16.840.1.101.3.4.2.3" => &ring::digest::SHA512,
        _ => &ring::digest::SHA384,
    };
    let digest = |bytes: &[u8]| {
        OctetString::new(ring::digest::digest(hash, bytes).as_ref()).map_err(sim_err)
    };
    let serial = answer
        .serial
        .clone()
        .unwrap_or_else(|| cert.raw_serial().to_vec());
    let cert_id = CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: oid(answer.hash)?,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: digest(issuer.subject().as_raw())?,
        issuer_key_hash: digest(&issuer.public_key().subject_public_key.data)?,
        serial_number: x509_cert::serial_number::SerialNumber::new(&serial).map_err(sim_err)?,
    };
    let cert_status = match answer.status {
        SimStatus::Good => CertStatus::good(),
        SimStatus::Unknown => CertStatus::unknown(),
        SimStatus::Revoked(at) => CertStatus::revoked(RevokedInfo {
            revocation_time: time(at)?,
            revocation_reason: Some(x509_cert::ext::pkix::CrlReason::KeyCompromise),
        }),
    };
    let responder_id = match answer.responder {
        SimResponderId::ByName => ResponderId::ByName(
            x509_cert::name::Name::from_der(signer_cert.subject().as_raw()).map_err(sim_err)?,
        ),
        SimResponderId::ByKey => ResponderId::ByKey(
            OctetString::new(
                ring::digest::digest(
                    &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    &signer_cert.public_key().subject_public_key.data,
                )
                .as_ref(),
            )
            .map_err(sim_err)?,
        ),
    };
    let tbs = ResponseData {
        version: Default::default(),
        responder_id,
        produced_at: time(answer.this_update)?,
        responses: vec![SingleResponse {
            cert_id,
            cert_status,
            this_update: time(answer.this_update)?,
            next_update: answer.next_update.map(time).transpose()?,
            single_extensions: None,
        }],
        response_extensions: None,
    };
    let mut signature = signer
        .key
        .sign(&tbs.to_der().map_err(sim_err)?)
        .map_err(sim_err)?;
    if answer.corrupt_signature {
        if let Some(byte) = signature.last_mut() {
            *byte ^= 1;
        }
    }
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: spki::AlgorithmIdentifierOwned {
            oid: oid(answer.signature_algorithm.unwrap_or(ECDSA_SHA384))?,
            parameters: None,
        },
        signature: BitString::from_bytes(&signature).map_err(sim_err)?,
        certs: match signer.include_cert {
            true => Some(vec![
                x509_cert::Certificate::from_der(signer.cert).map_err(sim_err)?
            ]),
            false => None,
        },
    };
    OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: oid(answer.response_type.unwrap_or("1.3.6.1.5.5.7.48.1.1"))?,
            response: OctetString::new(basic.to_der().map_err(sim_err)?).map_err(sim_err)?,
        }),
    }
    .to_der()
    .map_err(sim_err)
}

fn oid(dotted: &str) -> Result<ObjectIdentifier, Error> {
    ObjectIdentifier::new(dotted).map_err(sim_err)
}

fn time(unix: i64) -> Result<OcspGeneralizedTime, Error> {
    let secs = u64::try_from(unix).map_err(sim_err)?;
    Ok(OcspGeneralizedTime(
        GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).map_err(sim_err)?,
    ))
}

/// A certificate of a simulated chain (DER), its issuer's certificate
/// (DER) and the issuer's key.
pub(crate) type Link<'a> = (&'a [u8], &'a [u8], &'a Issuer<'static, KeyPair>);

/// The certificate at `position` of `chain` (DER, leaf first), with the
/// next one as its issuer, whose key is `cas[position]`.
pub(crate) fn link<'a>(
    chain: &'a [Vec<u8>],
    cas: &'a [Issuer<'static, KeyPair>],
    position: usize,
) -> Result<Link<'a>, Error> {
    let missing = || sim_err(format!("no certificate {position} with an issuer"));
    let cert = chain.get(position).ok_or_else(missing)?;
    let issuer_der = chain.get(position + 1).ok_or_else(missing)?;
    let issuer = cas.get(position).ok_or_else(missing)?;
    Ok((cert, issuer_der, issuer))
}

/// An answer about the certificate at `position` of `chain`, signed by
/// its issuer (`cas[position]`), saying `answer`.
pub(crate) fn respond_by_issuer(
    chain: &[Vec<u8>],
    cas: &[Issuer<'static, KeyPair>],
    position: usize,
    answer: &SimAnswer,
) -> Result<Vec<u8>, Error> {
    let (cert, issuer_der, issuer) = link(chain, cas, position)?;
    let signer = SimSigner {
        key: issuer.key(),
        cert: issuer_der,
        include_cert: false,
    };
    respond(cert, issuer_der, &signer, answer)
}
