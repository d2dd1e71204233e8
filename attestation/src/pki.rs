//! X.509 certificate chains anchored in configured trust roots.
//!
//! The verifier never trusts a root found in the evidence: the chain's last
//! certificate must be byte-identical to one of the [`TrustAnchors`] passed
//! in. Each certificate must be valid at the given time and signed by the
//! next; every issuer must be a CA. The anchor itself is trusted by
//! identity (its self-signature is not what makes it trusted).

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::{FromDer, Pem};
use x509_parser::time::ASN1Time;

use crate::Error;

/// Largest number of certificates accepted in one chain.
const MAX_CHAIN_LEN: usize = 8;

/// A named trust root, e.g. Intel's SGX Root CA or this machine's sim root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    /// The name policies use for it.
    pub name: String,
    /// The root certificate (DER).
    pub der: Vec<u8>,
    /// True for a simulated TEE's root: evidence under it proves nothing about hardware.
    pub simulated: bool,
}

impl TrustAnchor {
    /// Reads the first certificate of a PEM text as a trust anchor.
    pub fn from_pem(name: &str, pem: &[u8], simulated: bool) -> Result<Self, Error> {
        let der = pem_certificates(pem)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Certificate {
                position: format!("trust root {name}"),
                subject: "?".into(),
                reason: "no certificate in PEM".into(),
            })?;
        parse_certificate(&der, &format!("trust root {name}"))?;
        Ok(Self {
            name: name.to_string(),
            der,
            simulated,
        })
    }

    /// SHA-256 of the DER certificate, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }
}

/// The set of roots a verification accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    /// The accepted roots.
    pub roots: Vec<TrustAnchor>,
}

/// A chain that verified: its leaf's public key and the anchor it ends in.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// The leaf certificate's subject public key (for EC keys: 0x04 || x || y).
    pub leaf_public_key: Vec<u8>,
    /// The leaf certificate's subject.
    pub leaf_subject: String,
    /// The trust anchor that the chain ends in.
    pub anchor: TrustAnchor,
    /// The chain's certificates (DER), leaf first.
    pub certificates: Vec<Vec<u8>>,
    /// What revocation checks need of each certificate, leaf first.
    pub links: Vec<ChainLink>,
    /// The leaf's extensions: (OID content bytes, extnValue).
    pub leaf_extensions: Vec<(Vec<u8>, Vec<u8>)>,
    /// Each certificate described for reports, leaf first.
    pub described: Vec<CertificateInfo>,
}

/// A certificate of a verified chain, described for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateInfo {
    /// Its place in the chain ("PCK leaf", "root CA", …).
    pub position: String,
    /// Its subject name.
    pub subject: String,
    /// Its issuer name.
    pub issuer: String,
    /// Its serial number (hex).
    pub serial: String,
    /// Start of its validity (RFC 3339).
    pub not_before: String,
    /// End of its validity (RFC 3339).
    pub not_after: String,
    /// SHA-256 of its DER encoding (hex).
    pub sha256: String,
}

/// A verified chain, named for reports: what it certifies, and its
/// certificates leaf first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertifiedChain {
    /// Which chain it is and what its leaf signs (the quote's QE report,
    /// Intel's TCB info, …), as a report's heading.
    pub purpose: &'static str,
    /// Its certificates, leaf first.
    pub certificates: Vec<CertificateInfo>,
}

impl VerifiedChain {
    /// The chain described for reports, under the heading `purpose`.
    pub fn certified(&self, purpose: &'static str) -> CertifiedChain {
        CertifiedChain {
            purpose,
            certificates: self.described.clone(),
        }
    }
}

impl VerifiedChain {
    /// The value of the leaf's extension `oid` (dotted), if present.
    pub fn leaf_extension(&self, oid: &[u64]) -> Option<&[u8]> {
        let der = crate::der::oid(oid);
        let content = der.get(2..)?;
        self.leaf_extensions
            .iter()
            .find(|(id, _)| id.as_slice() == content)
            .map(|(_, v)| v.as_slice())
    }
}

/// A certificate of a verified chain, as CRLs name it (raw DER fields, so
/// that revocation checks need no reparsing or formatting).
#[derive(Debug, Clone)]
pub struct ChainLink {
    /// Its subject name (DER).
    pub subject: Vec<u8>,
    /// Its issuer name (DER).
    pub issuer: Vec<u8>,
    /// Its serial number (big-endian, no leading zeros).
    pub serial: Vec<u8>,
    /// Its SubjectPublicKeyInfo (DER): what a CRL it issued is checked with.
    pub spki: Vec<u8>,
}

impl ChainLink {
    /// What revocation checks need of `cert`.
    pub fn of(cert: &X509Certificate<'_>) -> Self {
        Self {
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            serial: serial_bytes(cert.raw_serial()).to_vec(),
            spki: cert.public_key().raw.to_vec(),
        }
    }

    /// The links of a chain (DER, leaf first) that is parsed but not
    /// verified: what a host needs to ask for the chain's revocation
    /// status, which the verifier then checks against the verified chain.
    pub fn parse_chain(chain: &[Vec<u8>]) -> Result<Vec<Self>, Error> {
        chain
            .iter()
            .enumerate()
            .map(|(i, der)| parse_certificate(der, &format!("#{i}")).map(|c| Self::of(&c)))
            .collect()
    }
}

/// Formats a DER name for messages.
pub(crate) fn name_text(raw: &[u8]) -> String {
    x509_parser::x509::X509Name::from_der(raw)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Splits a PEM text into DER certificates, leniently: for files an operator
/// supplies (trust roots, AMD chains saved with CRLF line ends). Evidence is
/// read with the strict [`crate::pem::certificates`] instead.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for item in Pem::iter_from_buffer(pem) {
        let item = item.map_err(|e| Error::Certificate {
            position: format!("#{} in PEM chain", out.len()),
            subject: "?".into(),
            reason: format!("bad PEM: {e}"),
        })?;
        if item.label != "CERTIFICATE" {
            continue;
        }
        if out.len() == MAX_CHAIN_LEN {
            return Err(Error::TooLarge {
                what: "certificate chain",
            });
        }
        out.push(item.contents);
    }
    Ok(out)
}

/// A CRL file as DER: DER as it is, PEM (`X509 CRL`) decoded.
pub fn crl_der(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = |reason: String| Error::Collateral {
        what: "CRL file",
        reason,
    };
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    for item in Pem::iter_from_buffer(bytes) {
        let item = item.map_err(|e| bad(format!("neither DER nor PEM: {e}")))?;
        if item.label == "X509 CRL" {
            return Ok(item.contents);
        }
    }
    Err(bad("no X509 CRL in it".into()))
}

/// One DER element: its tag, all its bytes, its content, and what follows it.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
    rest: &'a [u8],
}

/// Reads the DER element at the start of `bytes`, requiring a one-byte tag
/// and the minimal definite length encoding.
fn tlv(bytes: &[u8]) -> Result<Tlv<'_>, String> {
    let (&tag, after_tag) = bytes.split_first().ok_or("missing element")?;
    if tag & 0x1f == 0x1f {
        return Err(format!("multi-byte tag {tag:#04x}"));
    }
    let (&first, after_len) = after_tag.split_first().ok_or("missing length")?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let octets = after_len
            .get(..n)
            .filter(|o| (1..=4).contains(&n) && o.first() != Some(&0))
            .ok_or_else(|| format!("length of tag {tag:#04x} not in minimal definite form"))?;
        let len = octets
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return Err(format!("long-form length {len} of tag {tag:#04x}"));
        }
        (len, 2 + n)
    };
    let end = header
        .checked_add(len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| format!("element of tag {tag:#04x} runs past its container"))?;
    Ok(Tlv {
        tag,
        whole: bytes.get(..end).unwrap_or_default(),
        content: bytes.get(header..end).unwrap_or_default(),
        rest: bytes.get(end..).unwrap_or_default(),
    })
}

/// Checks the unsigned outer layer of a signed X.509 structure (certificate
/// or CRL): `SEQUENCE { tbs SEQUENCE, signatureAlgorithm SEQUENCE, signature
/// BIT STRING }`. The signature covers only the `tbs` bytes, so everything
/// else must be canonical: minimal lengths, nothing after the signature, a
/// BIT STRING with no unused bits, and a signatureAlgorithm byte-identical
/// to the one inside the signed part (the first SEQUENCE in it, after the
/// optional version and, for certificates, the serial number). The
/// signature value itself is checked by `ring`, which accepts only the DER
/// ECDSA encoding and RSA signatures of exactly the modulus length.
pub fn check_outer_der(der: &[u8]) -> Result<(), String> {
    let outer = tlv(der)?;
    if outer.tag != 0x30 || !outer.rest.is_empty() {
        return Err("not exactly one SEQUENCE".into());
    }
    let tbs = tlv(outer.content)?;
    let algorithm = tlv(tbs.rest)?;
    let signature = tlv(algorithm.rest)?;
    if tbs.tag != 0x30 || algorithm.tag != 0x30 || signature.tag != 0x03 {
        return Err("not SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING }".into());
    }
    if !signature.rest.is_empty() {
        return Err(format!(
            "{} bytes after the signature BIT STRING",
            signature.rest.len()
        ));
    }
    if signature.content.first() != Some(&0) {
        return Err(format!(
            "signature BIT STRING has unused-bits octet {:?}, expected 0",
            signature.content.first()
        ));
    }
    let mut inner = tlv(tbs.content)?;
    while inner.tag != 0x30 {
        inner = tlv(inner.rest)?;
    }
    if inner.whole != algorithm.whole {
        return Err(format!(
            "signatureAlgorithm {} differs from the signed one {}",
            hex::encode(algorithm.whole),
            hex::encode(inner.whole)
        ));
    }
    Ok(())
}

fn parse_certificate<'a>(der: &'a [u8], position: &str) -> Result<X509Certificate<'a>, Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => {
            check_outer_der(der).map_err(|reason| Error::Certificate {
                position: position.into(),
                subject: cert.subject().to_string(),
                reason: format!("non-canonical DER: {reason}"),
            })?;
            Ok(cert)
        }
        Ok((rest, _)) => Err(Error::Certificate {
            position: position.into(),
            subject: "?".into(),
            reason: format!("{} trailing bytes after DER", rest.len()),
        }),
        Err(e) => Err(Error::Certificate {
            position: position.into(),
            subject: "?".into(),
            reason: format!("bad DER: {e}"),
        }),
    }
}

/// Verifies a chain given leaf first, whose last certificate must be
/// byte-identical to one of `anchors`.
///
/// `positions` names the certificates for messages (leaf first); missing
/// names are numbered.
pub fn verify_chain(
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    now: i64,
    positions: &[&str],
) -> Result<VerifiedChain, Error> {
    let name = |i: usize| {
        positions
            .get(i)
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("#{i}"))
    };
    if chain.is_empty() {
        return Err(Error::Certificate {
            position: name(0),
            subject: "?".into(),
            reason: "empty certificate chain".into(),
        });
    }
    let certs = chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse_certificate(der, &name(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let at = asn1_time(now)?;
    for (i, cert) in certs.iter().enumerate() {
        let validity = cert.validity();
        if !validity.is_valid_at(at) {
            return Err(Error::CertificateNotValidAt {
                position: name(i),
                subject: cert.subject().to_string(),
                not_before: validity.not_before.to_string(),
                not_after: validity.not_after.to_string(),
                now: at.to_string(),
            });
        }
    }
    // Every certificate above the leaf must be a CA.
    for (i, cert) in certs.iter().enumerate().skip(1) {
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .map(|bc| bc.value.ca)
            .unwrap_or(false);
        if !is_ca {
            return Err(Error::Certificate {
                position: name(i),
                subject: cert.subject().to_string(),
                reason: "issuer is not a CA (basicConstraints cA is false or absent)".into(),
            });
        }
    }
    // The last certificate must be one of the anchors, byte for byte.
    let root_der = chain.last().map(Vec::as_slice).unwrap_or_default();
    let anchor = find_anchor(anchors, root_der)?;
    // Each certificate is signed by the next. The last one is trusted by
    // identity, so its self-signature adds nothing and is not checked
    // (as webpki treats trust anchors); its subject must still be its issuer.
    let last = certs.len().saturating_sub(1);
    for (i, cert) in certs.iter().enumerate() {
        let issuer = certs.get(i + 1).unwrap_or(cert);
        if cert.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(Error::Certificate {
                position: name(i),
                subject: cert.subject().to_string(),
                reason: format!(
                    "issuer {} does not match the next certificate's subject {}",
                    cert.issuer(),
                    issuer.subject()
                ),
            });
        }
        if i == last {
            break;
        }
        cert.verify_signature(Some(issuer.public_key()))
            .map_err(|_| Error::Certificate {
                position: name(i),
                subject: cert.subject().to_string(),
                reason: format!("signature does not verify under {}", issuer.subject()),
            })?;
    }
    let leaf = certs.first().ok_or(Error::TooLarge {
        what: "certificate chain",
    })?;
    Ok(VerifiedChain {
        leaf_public_key: leaf.public_key().subject_public_key.data.to_vec(),
        leaf_subject: leaf.subject().to_string(),
        anchor,
        certificates: chain.to_vec(),
        leaf_extensions: leaf
            .extensions()
            .iter()
            .map(|e| (e.oid.as_bytes().to_vec(), e.value.to_vec()))
            .collect(),
        described: certs
            .iter()
            .zip(chain)
            .enumerate()
            .map(|(i, (c, der))| CertificateInfo {
                position: name(i),
                subject: c.subject().to_string(),
                issuer: c.issuer().to_string(),
                serial: hex::encode(serial_bytes(c.raw_serial())),
                not_before: rfc3339(c.validity().not_before.timestamp()),
                not_after: rfc3339(c.validity().not_after.timestamp()),
                sha256: hex::encode(Sha256::digest(der)),
            })
            .collect(),
        links: certs.iter().map(ChainLink::of).collect(),
    })
}

/// The anchor that is byte-identical to `root_der`, or why there is none.
pub fn find_anchor(anchors: &TrustAnchors, root_der: &[u8]) -> Result<TrustAnchor, Error> {
    anchors
        .roots
        .iter()
        .find(|a| a.der == root_der)
        .cloned()
        .ok_or_else(|| Error::UntrustedRoot {
            expected: anchors
                .roots
                .iter()
                .map(|a| format!("{} sha256:{}", a.name, a.fingerprint()))
                .collect::<Vec<_>>()
                .join(", "),
            found: format!(
                "{} sha256:{}",
                X509Certificate::from_der(root_der)
                    .map(|(_, c)| c.subject().to_string())
                    .unwrap_or_else(|_| "?".into()),
                hex::encode(Sha256::digest(root_der))
            ),
        })
}

/// A certificate revocation list whose signature and validity were checked.
#[derive(Debug, Clone)]
pub struct VerifiedCrl {
    /// What the list is, for messages ("Intel root CA CRL").
    pub name: &'static str,
    /// The issuer's subject name (DER).
    pub issuer: Vec<u8>,
    /// Serial numbers of the revoked certificates (big-endian, no leading zeros).
    pub revoked: Vec<Vec<u8>>,
}

/// Parses a DER CRL, checks that `issuer_der` signed it and that it is
/// current at `now` (thisUpdate ≤ now ≤ nextUpdate).
pub fn verify_crl(
    crl_der: &[u8],
    issuer: &ChainLink,
    now: i64,
    name: &'static str,
) -> Result<VerifiedCrl, Error> {
    use x509_parser::revocation_list::CertificateRevocationList;
    let bad = |reason: String| Error::Collateral { what: name, reason };
    let crl = match CertificateRevocationList::from_der(crl_der) {
        Ok(([], crl)) => {
            check_outer_der(crl_der)
                .map_err(|reason| bad(format!("non-canonical DER: {reason}")))?;
            crl
        }
        Ok((rest, _)) => return Err(bad(format!("{} trailing bytes after DER", rest.len()))),
        Err(e) => return Err(bad(format!("bad DER: {e}"))),
    };
    if crl.issuer().as_raw() != issuer.subject.as_slice() {
        return Err(Error::Mismatch {
            what: "CRL issuer",
            expected: name_text(&issuer.subject),
            found: crl.issuer().to_string(),
        });
    }
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&issuer.spki)
        .map_err(|e| bad(format!("issuer key: {e}")))?;
    crl.verify_signature(&spki)
        .map_err(|_| Error::BadSignature { what: name })?;
    let at = asn1_time(now)?;
    let this_update = crl.last_update();
    let next_update = crl.next_update();
    let current = this_update <= at && next_update.is_none_or(|next| at <= next);
    if !current {
        return Err(Error::CollateralNotValidAt {
            what: name,
            issued: this_update.to_string(),
            next_update: next_update.map(|t| t.to_string()).unwrap_or_default(),
            now: at.to_string(),
        });
    }
    Ok(VerifiedCrl {
        name,
        issuer: crl.issuer().as_raw().to_vec(),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| serial_bytes(r.raw_serial()).to_vec())
            .collect(),
    })
}

/// Fails if the certificate `link` is listed in `crl` (a CRL of its issuer).
pub fn check_not_revoked(link: &ChainLink, crl: &VerifiedCrl, position: &str) -> Result<(), Error> {
    if link.issuer != crl.issuer {
        return Ok(());
    }
    if crl.revoked.contains(&link.serial) {
        return Err(Error::Revoked {
            position: position.into(),
            subject: name_text(&link.subject),
            serial: hex::encode(&link.serial),
            crl: crl.name,
        });
    }
    Ok(())
}

/// A DER INTEGER's magnitude without its leading zero bytes.
fn serial_bytes(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw.get(start..).unwrap_or_default()
}

fn asn1_time(now: i64) -> Result<ASN1Time, Error> {
    ASN1Time::from_timestamp(now).map_err(|_| Error::Unsupported {
        field: "verification time",
        expected: "a representable time".into(),
        found: now.to_string(),
    })
}

/// Formats Unix seconds as RFC 3339 for messages.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
