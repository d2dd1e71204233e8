//! Certificate revocation by OCSP (RFC 6960), for chains whose issuers
//! publish an OCSP responder instead of CRLs (NVIDIA's GPU chains).
//!
//! The untrusted host asks the responder ([`request`]) and ships the
//! signed answers with the evidence, cached until their next update, so
//! that a verifier needs no network. [`check`] verifies one answer, purely
//! and at a given time, for one certificate of a chain that has already
//! verified ([`crate::pki::verify_chain`]), against that certificate's
//! issuer:
//!
//! 1. the response parses as DER (the RustCrypto `x509-ocsp` types) with
//!    nothing after it, its status is `successful` and its type is
//!    id-pkix-ocsp-basic;
//! 2. it is signed by the issuer itself or by a responder certificate it
//!    carries that the issuer signed, that is valid at `now` and whose
//!    extended key usage includes id-kp-OCSPSigning (RFC 6960 §4.2.2.2);
//!    the signature algorithm is ECDSA, RSA (PKCS #1 v1.5 with SHA-2, or
//!    PSS) or Ed25519, never SHA-1;
//! 3. one of its single responses names the certificate: the same serial
//!    number, and the hashes of the issuer's name and key under the
//!    response's hash algorithm (SHA-1, SHA-256, SHA-384 or SHA-512);
//! 4. that response is current at `now`: `thisUpdate <= now <= nextUpdate`,
//!    or, when it has no next update, at most [`MAX_AGE_WITHOUT_NEXT_UPDATE`]
//!    after `thisUpdate`;
//! 5. its status is `good` ([`Verdict::good`]); `revoked` and `unknown` are
//!    reported with the time and reason the responder gave.
//!
//! The responder certificate's own revocation is not checked (RFC 6960
//! §4.2.2.2.1 leaves that to the responder's id-pkix-ocsp-nocheck).

use der::{Decode, Encode, Reader, SliceReader};
use ring::digest::{self, Algorithm};
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    ResponderId, SingleResponse, TbsRequest,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::pki::{rfc3339, ChainLink};
use crate::Error;

/// Largest OCSP response accepted (NVIDIA's are under 3 KiB).
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;
/// How long after its `thisUpdate` a response without `nextUpdate` counts
/// as current: one day.
pub const MAX_AGE_WITHOUT_NEXT_UPDATE: i64 = 24 * 3600;
/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1).
const BASIC_RESPONSE: &str = "1.3.6.1.5.5.7.48.1.1";
/// id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9).
const OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
/// The signature algorithms accepted on responses: ECDSA with SHA-256 or
/// SHA-384, RSA PKCS #1 v1.5 with SHA-256, -384 or -512, RSA-PSS, Ed25519.
const SIGNATURE_ALGORITHMS: [&str; 7] = [
    "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3",
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
    "1.2.840.113549.1.1.10",
    "1.3.101.112",
];

/// The hash algorithms of a CertID this verifier computes, by OID.
fn cert_id_hash(oid: &str) -> Option<(&'static str, &'static Algorithm)> {
    match oid {
        "1.3.14.3.2.26" => Some(("SHA-1", &digest::SHA1_FOR_LEGACY_USE_ONLY)),
        "2.16.840.1.101.3.4.2.1" => Some(("SHA-256", &digest::SHA256)),
        "2.16.840.1.101.3.4.2.2" => Some(("SHA-384", &digest::SHA384)),
        "2.16.840.1.101.3.4.2.3" => Some(("SHA-512", &digest::SHA512)),
        _ => None,
    }
}

/// What the responder says of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Not revoked.
    Good,
    /// Revoked at `at` (RFC 3339), for `reason` when the responder gave one.
    Revoked {
        /// When (RFC 3339).
        at: String,
        /// The CRL reason code's name ("keyCompromise", ...), if given.
        reason: Option<String>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Good => f.write_str("good"),
            Status::Unknown => f.write_str("unknown to the responder"),
            Status::Revoked { at, reason: None } => write!(f, "revoked at {at}"),
            Status::Revoked {
                at,
                reason: Some(r),
            } => write!(f, "revoked at {at} ({r})"),
        }
    }
}

/// A response whose signature, certificate ID and dates verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// The certificate's status.
    pub status: Status,
    /// The response's `thisUpdate` (RFC 3339).
    pub this_update: String,
    /// Its `nextUpdate` (RFC 3339), if any.
    pub next_update: Option<String>,
    /// Who signed it: the issuer, or the delegated responder's subject.
    pub signer: String,
}

impl Verdict {
    /// Fails unless the status is good: names the certificate and what the
    /// responder said of it.
    pub fn good(self, position: &str, cert: &ChainLink) -> Result<Self, Error> {
        match self.status {
            Status::Good => Ok(self),
            _ => Err(Error::OcspStatus {
                position: position.into(),
                subject: crate::pki::name_text(&cert.subject),
                status: format!("serial {} is {}", hex::encode(&cert.serial), self.status),
                signer: self.signer,
            }),
        }
    }
}

/// The DER OCSP request for `cert`, issued by `issuer`: one CertID, with
/// SHA-384 hashes, no nonce (answers are cached and shared), unsigned.
pub fn request(cert: &ChainLink, issuer: &ChainLink) -> Result<Vec<u8>, Error> {
    let bad = |e: der::Error| Error::Collateral {
        what: "OCSP request",
        reason: e.to_string(),
    };
    let key = issuer_key_bits(issuer)?;
    let hash = &digest::SHA384;
    let serial = x509_cert::serial_number::SerialNumber::new(&cert.serial).map_err(bad)?;
    let req_cert = CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2"),
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: der::asn1::OctetString::new(
            digest::digest(hash, &issuer.subject).as_ref(),
        )
        .map_err(bad)?,
        issuer_key_hash: der::asn1::OctetString::new(digest::digest(hash, &key).as_ref())
            .map_err(bad)?,
        serial_number: serial,
    };
    OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![Request {
                req_cert,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(bad)
}

/// The `nextUpdate` (Unix seconds) of the single response in `response`
/// that names `cert`, if it has one: how long a host may cache it. Fails
/// when the response does not parse, is not successful or does not name
/// `cert`; nothing is verified.
pub fn next_update(
    response: &[u8],
    cert: &ChainLink,
    issuer: &ChainLink,
) -> Result<Option<i64>, Error> {
    let (basic, _) = basic_response(response)?;
    let single = find_single(&basic, cert, issuer).map_err(|found| Error::Mismatch {
        what: "OCSP response's certificate ID (serial and issuer hashes)",
        expected: format!("serial {}", hex::encode(&cert.serial)),
        found,
    })?;
    Ok(single.next_update.map(|t| unix(t.0)))
}

/// Verifies `response` (DER) for the chain certificate `cert`, issued by
/// `issuer` (the next certificate of the same verified chain), at `now`
/// (Unix seconds). `position` names `cert` in errors. Returns what the
/// responder says, good or not: [`Verdict::good`] rejects the rest.
pub fn check(
    response: &[u8],
    cert: &ChainLink,
    issuer: &ChainLink,
    now: i64,
    position: &str,
) -> Result<Verdict, Error> {
    let (basic, basic_der) = basic_response(response)?;
    let signer = check_signature(&basic_der, &basic, issuer, now)?;
    let single = find_single(&basic, cert, issuer).map_err(|found| Error::Mismatch {
        what: "OCSP response's certificate ID (serial and issuer hashes)",
        expected: format!(
            "{position} ({}), serial {}",
            crate::pki::name_text(&cert.subject),
            hex::encode(&cert.serial)
        ),
        found,
    })?;
    let this_update = unix(single.this_update.0);
    let next_update = single.next_update.map(|t| unix(t.0));
    let until = next_update.unwrap_or(this_update.saturating_add(MAX_AGE_WITHOUT_NEXT_UPDATE));
    if now < this_update || now > until {
        return Err(Error::CollateralNotValidAt {
            what: "OCSP response",
            issued: rfc3339(this_update),
            next_update: match next_update {
                Some(next) => rfc3339(next),
                None => format!("none (counted as {} for at most a day)", rfc3339(until)),
            },
            now: rfc3339(now),
        });
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Unknown(_) => Status::Unknown,
        CertStatus::Revoked(info) => Status::Revoked {
            at: rfc3339(unix(info.revocation_time.0)),
            reason: info.revocation_reason.map(|r| format!("{r:?}")),
        },
    };
    Ok(Verdict {
        status,
        this_update: rfc3339(this_update),
        next_update: next_update.map(rfc3339),
        signer,
    })
}

/// Checks one OCSP response per certificate of a verified chain (`links`,
/// leaf first, named by `names`) at the chain positions `positions`, in
/// chain order, each against the next certificate as its issuer, at `now`;
/// every one must say good. Returns what each said.
pub fn check_chain(
    links: &[ChainLink],
    names: &[&str],
    positions: std::ops::Range<usize>,
    responses: &[Vec<u8>],
    now: i64,
) -> Result<Vec<Verdict>, Error> {
    let name = |position: usize| names.get(position).copied().unwrap_or("?");
    if responses.len() != positions.len() {
        return Err(Error::Unsupported {
            field: "OCSP responses",
            expected: format!(
                "{} (for the {})",
                positions.len(),
                positions.clone().map(name).collect::<Vec<_>>().join(", ")
            ),
            found: responses.len().to_string(),
        });
    }
    positions
        .zip(responses)
        .map(|(position, response)| {
            let (Some(cert), Some(issuer)) = (links.get(position), links.get(position + 1)) else {
                return Err(Error::Unsupported {
                    field: "certificate chain length (OCSP)",
                    expected: format!("a certificate {position} with an issuer"),
                    found: format!("{} certificates", links.len()),
                });
            };
            check(response, cert, issuer, now, name(position))?.good(name(position), cert)
        })
        .collect()
}

/// Parses the outer response and its basic response, checking the status,
/// the type, the size and that nothing follows either; returns the basic
/// response and its DER.
fn basic_response(response: &[u8]) -> Result<(BasicOcspResponse, Vec<u8>), Error> {
    let bad = |reason: String| Error::Collateral {
        what: "OCSP response",
        reason,
    };
    if response.len() > MAX_RESPONSE_LEN {
        return Err(Error::TooLarge {
            what: "OCSP response",
        });
    }
    let outer = OcspResponse::from_der(response).map_err(|e| bad(format!("bad DER: {e}")))?;
    if outer.response_status != OcspResponseStatus::Successful {
        return Err(Error::Unsupported {
            field: "OCSP response status",
            expected: "successful".into(),
            found: format!("{:?}", outer.response_status),
        });
    }
    let bytes = outer
        .response_bytes
        .ok_or_else(|| bad("status successful but no response bytes".into()))?;
    let kind = bytes.response_type.to_string();
    if kind != BASIC_RESPONSE {
        return Err(Error::Unsupported {
            field: "OCSP response type",
            expected: format!("id-pkix-ocsp-basic ({BASIC_RESPONSE})"),
            found: kind,
        });
    }
    let der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(der)
        .map_err(|e| bad(format!("basic response: bad DER: {e}")))?;
    Ok((basic, der.to_vec()))
}

/// The three parts of a signed structure (DER): what is signed, the
/// signature algorithm, the signature.
struct Signed<'a> {
    tbs: &'a [u8],
    algorithm: &'a [u8],
    signature: &'a [u8],
}

/// A BasicOCSPResponse (DER, as [`basic_response`] returns it) split into
/// its signed part, signature algorithm and signature.
fn signed_parts(basic: &[u8]) -> Result<Signed<'_>, der::Error> {
    let mut reader = SliceReader::new(basic)?;
    reader.sequence(|r| {
        let tbs = r.tlv_bytes()?;
        let algorithm = r.tlv_bytes()?;
        let signature = r.tlv_bytes()?;
        if !r.is_finished() {
            r.tlv_bytes()?;
        }
        Ok(Signed {
            tbs,
            algorithm,
            signature,
        })
    })
}

/// Checks the response's signature by the issuer or by a responder
/// certificate the issuer delegated to; returns the signer's name.
fn check_signature(
    basic_der: &[u8],
    basic: &BasicOcspResponse,
    issuer: &ChainLink,
    now: i64,
) -> Result<String, Error> {
    let bad = |reason: String| Error::Collateral {
        what: "OCSP response",
        reason,
    };
    let Signed {
        tbs,
        algorithm,
        signature,
    } = signed_parts(basic_der).map_err(|e| bad(format!("bad DER: {e}")))?;
    let (_, algorithm) =
        AlgorithmIdentifier::from_der(algorithm).map_err(|e| bad(format!("bad DER: {e}")))?;
    let name = algorithm.algorithm.to_id_string();
    if !SIGNATURE_ALGORITHMS.contains(&name.as_str()) {
        return Err(Error::Unsupported {
            field: "OCSP response signature algorithm",
            expected: "ECDSA with SHA-256/384, RSA with SHA-256/384/512 or PSS, Ed25519".into(),
            found: name,
        });
    }
    let (_, signature) = x509_parser::asn1_rs::BitString::from_der(signature)
        .map_err(|e| bad(format!("bad DER: {e}")))?;
    let (signer, signer_spki) = match responder_is(&basic.tbs_response_data.responder_id, issuer) {
        true => (crate::pki::name_text(&issuer.subject), issuer.spki.clone()),
        false => delegated_responder(basic, issuer, now)?,
    };
    let (_, key) = SubjectPublicKeyInfo::from_der(&signer_spki)
        .map_err(|e| bad(format!("{signer}'s key: {e}")))?;
    x509_parser::verify::verify_signature(&key, &algorithm, &signature, tbs).map_err(|_| {
        Error::BadSignature {
            what: "OCSP response (by its responder)",
        }
    })?;
    Ok(signer)
}

/// Whether the responder ID names `issuer` (by name, or by the SHA-1 of
/// its key).
fn responder_is(id: &ResponderId, issuer: &ChainLink) -> bool {
    match id {
        ResponderId::ByName(name) => name.to_der().is_ok_and(|n| n == issuer.subject),
        ResponderId::ByKey(hash) => issuer_key_bits(issuer).is_ok_and(|key| {
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &key).as_ref() == hash.as_bytes()
        }),
    }
}

/// The responder certificate the response carries and names, checked as
/// a delegate of `issuer`: signed by it, valid at `now`, for OCSP signing.
/// Returns its subject and its SubjectPublicKeyInfo (DER).
fn delegated_responder(
    basic: &BasicOcspResponse,
    issuer: &ChainLink,
    now: i64,
) -> Result<(String, Vec<u8>), Error> {
    let position = "OCSP responder";
    let issuer_name = crate::pki::name_text(&issuer.subject);
    let certs: Vec<Vec<u8>> = basic
        .certs
        .iter()
        .flatten()
        .filter_map(|c| c.to_der().ok())
        .collect();
    let named = certs.iter().find_map(|der| {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let id = &basic.tbs_response_data.responder_id;
        let link = ChainLink {
            subject: cert.subject().as_raw().to_vec(),
            issuer: Vec::new(),
            serial: Vec::new(),
            spki: cert.public_key().raw.to_vec(),
        };
        responder_is(id, &link).then_some(der)
    });
    let der = named.ok_or_else(|| Error::Mismatch {
        what: "OCSP responder",
        expected: format!(
            "the issuer ({issuer_name}) or a responder certificate in the response that it signed"
        ),
        found: format!(
            "{} certificates, none named by the responder ID",
            certs.len()
        ),
    })?;
    let cert_error = |subject: String, reason: String| Error::Certificate {
        position: position.into(),
        subject,
        reason,
    };
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| cert_error("?".into(), format!("bad DER: {e}")))?;
    let subject = cert.subject().to_string();
    if cert.issuer().as_raw() != issuer.subject.as_slice() {
        return Err(cert_error(
            subject,
            format!(
                "issued by {}, expected the certificate's issuer {issuer_name}",
                cert.issuer()
            ),
        ));
    }
    let (_, issuer_key) = SubjectPublicKeyInfo::from_der(&issuer.spki)
        .map_err(|e| cert_error(subject.clone(), format!("issuer key: {e}")))?;
    cert.verify_signature(Some(&issuer_key)).map_err(|_| {
        cert_error(
            subject.clone(),
            format!("signature does not verify under {issuer_name}"),
        )
    })?;
    let at = x509_parser::time::ASN1Time::from_timestamp(now).map_err(|_| Error::Unsupported {
        field: "verification time",
        expected: "a representable time".into(),
        found: now.to_string(),
    })?;
    let validity = cert.validity();
    if !validity.is_valid_at(at) {
        return Err(Error::CertificateNotValidAt {
            position: position.into(),
            subject,
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
            now: at.to_string(),
        });
    }
    let for_ocsp = cert.extended_key_usage().ok().flatten().is_some_and(|eku| {
        eku.value.ocsp_signing
            || eku
                .value
                .other
                .iter()
                .any(|o| o.to_id_string() == OCSP_SIGNING)
    });
    if !for_ocsp {
        return Err(cert_error(
            subject,
            "its extended key usage lacks id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9)".into(),
        ));
    }
    Ok((subject, cert.public_key().raw.to_vec()))
}

/// The single response whose CertID names `cert` under `issuer`, or what
/// the response names instead.
fn find_single<'a>(
    basic: &'a BasicOcspResponse,
    cert: &ChainLink,
    issuer: &ChainLink,
) -> Result<&'a SingleResponse, String> {
    let key = issuer_key_bits(issuer).map_err(|e| e.to_string())?;
    let responses = &basic.tbs_response_data.responses;
    responses
        .iter()
        .find(|single| names(&single.cert_id, cert, issuer, &key))
        .ok_or_else(|| {
            let ids: Vec<String> = responses
                .iter()
                .map(|s| {
                    let id = &s.cert_id;
                    let serial = hex::encode(serial_magnitude(id.serial_number.as_bytes()));
                    let oid = id.hash_algorithm.oid.to_string();
                    let issuer = match (cert_id_hash(&oid), names_issuer(id, issuer, &key)) {
                        (None, _) => {
                            format!("issuer hashes under an unsupported algorithm ({oid})")
                        }
                        (Some((hash, _)), true) => format!("{hash} issuer hashes of this issuer"),
                        (Some((hash, _)), false) => {
                            format!("{hash} issuer hashes of another issuer")
                        }
                    };
                    format!("serial {serial} with {issuer}")
                })
                .collect();
            match ids.is_empty() {
                true => "no single responses".into(),
                false => ids.join("; "),
            }
        })
}

/// Whether `id` names `cert` issued by `issuer` (whose key bits are `key`).
fn names(id: &CertId, cert: &ChainLink, issuer: &ChainLink, key: &[u8]) -> bool {
    serial_magnitude(id.serial_number.as_bytes()) == cert.serial.as_slice()
        && names_issuer(id, issuer, key)
}

/// Whether `id`'s issuer hashes are those of `issuer`.
fn names_issuer(id: &CertId, issuer: &ChainLink, key: &[u8]) -> bool {
    let Some((_, hash)) = cert_id_hash(&id.hash_algorithm.oid.to_string()) else {
        return false;
    };
    digest::digest(hash, &issuer.subject).as_ref() == id.issuer_name_hash.as_bytes()
        && digest::digest(hash, key).as_ref() == id.issuer_key_hash.as_bytes()
}

/// The issuer's subjectPublicKey bits (what CertID's key hash covers).
fn issuer_key_bits(issuer: &ChainLink) -> Result<Vec<u8>, Error> {
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(&issuer.spki).map_err(|e| Error::Collateral {
            what: "OCSP issuer key",
            reason: e.to_string(),
        })?;
    Ok(spki.subject_public_key.data.to_vec())
}

/// A serial number's magnitude without leading zero bytes.
fn serial_magnitude(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw.get(start..).unwrap_or_default()
}

/// A GeneralizedTime as Unix seconds.
fn unix(t: der::asn1::GeneralizedTime) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}
