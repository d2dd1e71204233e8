//! AMD SEV-SNP: the attestation report and its verification.
//!
//! [`verify_report`] checks, in order: the report parses completely; the
//! endorsement key's certificate (VCEK or VLEK) chains through AMD's signing
//! CA (ASK, or ASVK for a VLEK) to an ARK among the trust anchors, each link
//! an RSA-PSS signature valid at `now`; the certificate's kind matches the
//! signing key the report names; the certificate's TCB extensions equal the
//! report's REPORTED_TCB and (for a VCEK) its hardware ID equals CHIP_ID;
//! the ECDSA P-384 signature over the report's first 0x2A0 bytes verifies
//! under the certificate's key. Guest policy (debug, migration agent, SMT),
//! VMPL, TCB floors and measurements are the appraisal policy's business.
//!
//! [`check_crl`] adds AMD's certificate revocation list (KDS
//! `/vcek/v1/<product>/crl`, signed by the ARK): it must be signed by the
//! chain's ARK, current at `now`, and list neither the ASK (or ASVK) nor the
//! endorsement key's certificate.

pub mod cert_table;
pub mod report;

use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::pki::{check_not_revoked, verify_chain, verify_crl, TrustAnchors, VerifiedChain};
use crate::roots::{amd_ask, AmdProduct};
use crate::Error;
pub use report::{Report, SigningKey, TcbVersion};

const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

/// A report whose chain and signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    /// The parsed report.
    pub report: Report,
    /// The product line whose ARK anchors the chain.
    pub product: AmdProduct,
    /// Which key signed it.
    pub signing_key: SigningKey,
    /// The reported TCB, decoded for the product.
    pub reported_tcb: TcbVersion,
    /// The chain and the anchor it ends in.
    pub chain: VerifiedChain,
}

fn bad_cert(position: &str, reason: impl Into<String>) -> Error {
    Error::Certificate {
        position: position.into(),
        subject: "?".into(),
        reason: reason.into(),
    }
}

/// Verifies an SNP report signed by the key certified by `vek_der`.
///
/// `chain` holds the signing CA and the ARK (DER, in that order) as AMD's
/// KDS serves them; when it is empty, the embedded ASK whose subject is the
/// VCEK's issuer is used (a VLEK needs its ASVK passed in).
pub fn verify_report(
    report_bytes: &[u8],
    vek_der: &[u8],
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    now: i64,
) -> Result<VerifiedReport, Error> {
    let report = Report::parse(report_bytes)?;
    let signing_key = report.signing_key()?;
    let position = match signing_key {
        SigningKey::Vcek => "VCEK",
        SigningKey::Vlek => "VLEK",
    };
    let (_, vek) = X509Certificate::from_der(vek_der)
        .map_err(|e| bad_cert(position, format!("bad DER: {e}")))?;
    let cn = vek
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("");
    let expected_cn = match signing_key {
        SigningKey::Vcek => "SEV-VCEK",
        SigningKey::Vlek => "SEV-VLEK",
    };
    if cn != expected_cn {
        return Err(Error::Mismatch {
            what: "endorsement key certificate kind (report key info vs certificate CN)",
            expected: expected_cn.into(),
            found: cn.into(),
        });
    }

    let mut full = vec![vek_der.to_vec()];
    if chain.is_empty() {
        let issuer = vek.issuer().to_string();
        let ask = AmdProduct::ALL
            .into_iter()
            .filter_map(|p| amd_ask(p).ok().map(|der| (p, der)))
            .find(|(_, der)| {
                X509Certificate::from_der(der)
                    .map(|(_, c)| c.subject().to_string() == issuer)
                    .unwrap_or(false)
            });
        let (product, ask) = ask.ok_or_else(|| {
            bad_cert(
                position,
                format!(
                    "issuer {issuer} is not an embedded ASK; pass its chain (for a VLEK: the ASVK and ARK from AMD KDS /vlek/v1/<product>/cert_chain)"
                ),
            )
        })?;
        full.push(ask);
        full.push(crate::roots::amd_ark(product)?.der);
    } else {
        full.extend(chain.iter().cloned());
    }
    let ca_name = match signing_key {
        SigningKey::Vcek => "ASK",
        SigningKey::Vlek => "ASVK",
    };
    let chain = verify_chain(&full, anchors, now, &[position, ca_name, "ARK"])?;
    let product = AmdProduct::from_root_name(&chain.anchor.name)
        .or(report.product())
        .ok_or_else(|| Error::Unsupported {
            field: "SNP product",
            expected: "an ARK of Milan, Genoa or Turin".into(),
            found: chain.anchor.name.clone(),
        })?;
    if let Some(named) = report.product() {
        if named != product {
            return Err(Error::Mismatch {
                what: "SNP product (report CPUID vs certificate chain)",
                expected: format!("{product:?}"),
                found: format!("{named:?}"),
            });
        }
    }

    let reported_tcb = TcbVersion::decode(report.reported_tcb, product);
    check_tcb_extensions(&vek, &reported_tcb, position)?;
    if signing_key == SigningKey::Vcek && report.key_info & 0b10 == 0 {
        let hw_id =
            extension(&vek, OID_HW_ID).ok_or_else(|| bad_cert(position, "no hwID extension"))?;
        let hw_id = octets(hw_id).unwrap_or(hw_id);
        if hw_id != report.chip_id.as_slice() {
            return Err(Error::Mismatch {
                what: "CHIP_ID (report vs VCEK hwID)",
                expected: hex::encode(hw_id),
                found: hex::encode(report.chip_id),
            });
        }
    }

    check_signature(&report, &chain.leaf_public_key, position)?;
    Ok(VerifiedReport {
        report,
        product,
        signing_key,
        reported_tcb,
        chain,
    })
}

/// Positions of an SNP chain's certificates, leaf first, as messages name them.
const CHAIN_POSITIONS: [&str; 3] = ["endorsement key (VCEK or VLEK)", "ASK or ASVK", "ARK"];

/// Checks AMD's CRL against a verified SNP chain (leaf, signing CA, ARK): the
/// ARK signed it, it is current at `now`, and it revokes no certificate of
/// the chain.
pub fn check_crl(chain: &VerifiedChain, crl_der: &[u8], now: i64) -> Result<(), Error> {
    let [leaf, ca, ark] = chain.links.as_slice() else {
        return Err(Error::Unsupported {
            field: "SNP certificate chain length",
            expected: "3 (endorsement key, ASK or ASVK, ARK)".into(),
            found: chain.links.len().to_string(),
        });
    };
    let crl = verify_crl(crl_der, ark, now, "AMD KDS CRL")?;
    for (link, position) in [leaf, ca, ark].into_iter().zip(CHAIN_POSITIONS) {
        check_not_revoked(link, &crl, position)?;
    }
    Ok(())
}

/// Checks the report's ECDSA P-384 signature under an endorsement key
/// (uncompressed point). [`verify_report`] does this after the chain.
pub fn check_signature(report: &Report, key: &[u8], position: &str) -> Result<(), Error> {
    if key.len() != 97 {
        return Err(bad_cert(
            position,
            format!(
                "public key has {} bytes, expected a P-384 point (97)",
                key.len()
            ),
        ));
    }
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
        .verify(&report.signed, &report.signature)
        .map_err(|_| Error::BadSignature {
            what: "SNP report signature by the endorsement key",
        })
}

fn extension<'a>(cert: &'a X509Certificate<'_>, oid: &str) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .map(|e| e.value)
}

/// The value of a DER OCTET STRING, if `der` is one.
fn octets(der: &[u8]) -> Option<&[u8]> {
    der_parser::der::parse_der_octetstring(der)
        .ok()
        .and_then(|(_, o)| o.as_slice().ok())
}

fn spl(cert: &X509Certificate<'_>, oid: &str, position: &str) -> Result<Option<u8>, Error> {
    let Some(value) = extension(cert, oid) else {
        return Ok(None);
    };
    der_parser::der::parse_der_integer(value)
        .ok()
        .and_then(|(_, v)| v.as_u32().ok())
        .and_then(|v| u8::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| bad_cert(position, format!("extension {oid} is not a small INTEGER")))
}

fn check_tcb_extensions(
    cert: &X509Certificate<'_>,
    reported: &TcbVersion,
    position: &str,
) -> Result<(), Error> {
    let checks = [
        ("bootloader SPL", OID_BL_SPL, Some(reported.bootloader)),
        ("TEE SPL", OID_TEE_SPL, Some(reported.tee)),
        ("SNP SPL", OID_SNP_SPL, Some(reported.snp)),
        ("microcode SPL", OID_UCODE_SPL, Some(reported.microcode)),
        ("FMC SPL", OID_FMC_SPL, reported.fmc),
    ];
    for (name, oid, want) in checks {
        let have = spl(cert, oid, position)?;
        match (want, have) {
            (None, None) => {}
            (Some(w), Some(h)) if w == h => {}
            (Some(_), None) => {
                return Err(bad_cert(position, format!("no {name} extension ({oid})")))
            }
            _ => {
                return Err(Error::Mismatch {
                    what: "REPORTED_TCB vs endorsement key certificate TCB",
                    expected: format!(
                        "{name} {}",
                        have.map(|h| h.to_string()).unwrap_or("absent".into())
                    ),
                    found: format!(
                        "{name} {}",
                        want.map(|w| w.to_string()).unwrap_or("absent".into())
                    ),
                })
            }
        }
    }
    Ok(())
}
