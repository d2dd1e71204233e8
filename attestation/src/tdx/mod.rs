//! Intel TDX: the quote format and its verification.
//!
//! [`verify_quote`] checks, in order: the quote parses completely; the QE is
//! Intel's; the PCK certificate chain is valid at `now` and ends in a trust
//! anchor; the QE report is signed by the PCK key; the QE report data binds
//! the attestation key; the quote is signed by the attestation key.
//! [`verify_quote_with_collateral`] adds Intel's collateral: the root and PCK
//! CRLs (no certificate of the PCK chain revoked), the signed TCB info and QE
//! identity, the QE identity policy and the TCB level of platform, TDX module
//! and QE, giving a [`TcbVerdict`].

pub mod collateral;
pub mod pck;
pub mod qgs;
pub mod quote;
pub mod tcb;
pub mod tcb_status;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use sha2::{Digest, Sha256, Sha384};

use crate::pki::{verify_chain, CertifiedChain, TrustAnchors, VerifiedChain};
use crate::Error;
pub use collateral::Collateral;
pub use quote::{Measurement, Quote, TdReportBody};
pub use tcb::{TcbStatus, TcbVerdict};

/// Certificates in a PCK chain: the PCK certificate, Intel's platform or
/// processor CA, and the root CA.
pub const PCK_CHAIN_LEN: usize = 3;

/// A quote whose signatures and certificate chain verified.
#[derive(Debug, Clone)]
pub struct VerifiedQuote {
    /// The parsed quote.
    pub quote: Quote,
    /// The PCK chain and the anchor it ends in.
    pub chain: VerifiedChain,
    /// The chains of Intel's collateral signers, when collateral was
    /// checked (see [`verify_quote_with_collateral`]).
    pub collateral_signers: Vec<CertifiedChain>,
}

/// The PEM text of a quote's PCK chain: Intel's quote generation writes it
/// as a C string, so it ends in one NUL (go-tdx-guest's older sample and the
/// simulated TEE omit it). That one NUL is the only byte removed; the rest
/// must be canonical PEM ([`crate::pem`]).
fn pck_chain_text(certification_data: &[u8]) -> &[u8] {
    certification_data
        .strip_suffix(&[0])
        .unwrap_or(certification_data)
}

/// Verifies a TDX quote's signatures and PCK chain against `anchors` at `now` (Unix seconds).
pub fn verify_quote(
    bytes: &[u8],
    anchors: &TrustAnchors,
    now: i64,
) -> Result<VerifiedQuote, Error> {
    let quote = Quote::parse(bytes)?;
    if quote.header.qe_vendor_id != quote::INTEL_QE_VENDOR_ID {
        return Err(Error::Mismatch {
            what: "QE vendor ID",
            expected: hex::encode(quote::INTEL_QE_VENDOR_ID),
            found: hex::encode(quote.header.qe_vendor_id),
        });
    }
    let sig = &quote.signature;
    let chain =
        crate::pem::certificates(pck_chain_text(&sig.pck_chain_pem), "PCK certificate chain")?;
    if chain.len() != PCK_CHAIN_LEN {
        return Err(Error::Unsupported {
            field: "PCK certificate chain length",
            expected: format!("{PCK_CHAIN_LEN} (PCK certificate, intermediate CA, root CA)"),
            found: chain.len().to_string(),
        });
    }
    let chain = verify_chain(
        &chain,
        anchors,
        now,
        &["PCK leaf", "PCK platform CA", "root CA"],
    )?;

    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &chain.leaf_public_key)
        .verify(&sig.qe_report.raw, &sig.qe_report_signature)
        .map_err(|_| Error::BadSignature {
            what: "QE report signature by the PCK key",
        })?;

    let mut expected = [0u8; 64];
    let binding = Sha256::new()
        .chain_update(sig.attestation_key)
        .chain_update(&sig.qe_auth_data)
        .finalize();
    expected[..32].copy_from_slice(&binding);
    if sig.qe_report.report_data != expected {
        return Err(Error::Mismatch {
            what: "QE report data (SHA-256 of attestation key and QE auth data)",
            expected: hex::encode(expected),
            found: hex::encode(sig.qe_report.report_data),
        });
    }

    let mut att_key = Vec::with_capacity(65);
    att_key.push(0x04);
    att_key.extend_from_slice(&sig.attestation_key);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &att_key)
        .verify(&quote.signed_bytes, &sig.signature)
        .map_err(|_| Error::BadSignature {
            what: "quote signature by the attestation key",
        })?;

    Ok(VerifiedQuote {
        quote,
        chain,
        collateral_signers: Vec::new(),
    })
}

/// Verifies a TDX quote and appraises its TCB with `collateral`, all against
/// `anchors` at `now`. A Revoked TCB, a revoked certificate, a platform below
/// every TCB level, or any collateral outside its validity window is an error;
/// any other status (OutOfDate, …) is returned for the policy to judge.
pub fn verify_quote_with_collateral(
    bytes: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<(VerifiedQuote, TcbVerdict), Error> {
    let mut verified = verify_quote(bytes, anchors, now)?;
    let trusted = collateral::verify(collateral, anchors, now)?;
    let certs = &verified.chain.certificates;
    let (Some(leaf), Some(root)) = (certs.first(), certs.get(2)) else {
        return Err(Error::Unsupported {
            field: "PCK certificate chain length",
            expected: PCK_CHAIN_LEN.to_string(),
            found: certs.len().to_string(),
        });
    };
    if root != &trusted.root_der {
        return Err(Error::Mismatch {
            what: "root CA of the PCK chain and of the collateral",
            expected: hex::encode(Sha256::digest(root)),
            found: hex::encode(Sha256::digest(&trusted.root_der)),
        });
    }
    // The collateral names the PCK CRL's issuer chain; the CRL is checked
    // against the quote's own chain, so that copy must be the same
    // certificates (intermediate CA, root), in canonical PEM.
    let crl_issuers = crate::pem::certificates(
        collateral.pck_crl_issuer_chain.as_bytes(),
        "PCK CRL issuer chain",
    )?;
    if crl_issuers.as_slice() != certs.get(1..).unwrap_or_default() {
        return Err(Error::Mismatch {
            what: "PCK CRL issuer chain (collateral vs the quote's PCK chain above the leaf)",
            expected: fingerprints(certs.get(1..).unwrap_or_default()),
            found: fingerprints(&crl_issuers),
        });
    }
    let links = &verified.chain.links;
    if let (Some(leaf_link), Some(ca_link)) = (links.first(), links.get(1)) {
        crate::pki::check_not_revoked(ca_link, &trusted.root_crl, "PCK platform CA")?;
        let pck_crl = crate::pki::verify_crl(&collateral.pck_crl.0, ca_link, now, "PCK CRL")?;
        crate::pki::check_not_revoked(leaf_link, &pck_crl, "PCK leaf")?;
    }
    let pck = match verified.chain.leaf_extension(&pck::SGX_EXTENSIONS_OID) {
        Some(value) => pck::parse_extension(value)?,
        None => pck::parse(leaf)?,
    };
    let verdict = tcb::appraise(
        &verified.quote,
        &pck,
        &trusted.tcb_info,
        &trusted.qe_identity,
    )?;
    verified.collateral_signers = trusted.signers;
    Ok((verified, verdict))
}

/// SHA-256 fingerprints of certificates, for messages.
fn fingerprints(certs: &[Vec<u8>]) -> String {
    certs
        .iter()
        .map(|c| format!("sha256:{}", hex::encode(Sha256::digest(c))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Extends an RTMR as the TDX module does: `new = SHA-384(old || digest)`.
pub fn rtmr_extend(current: &Measurement, digest: &Measurement) -> Measurement {
    let mut out = [0u8; 48];
    out.copy_from_slice(
        &Sha384::new()
            .chain_update(current)
            .chain_update(digest)
            .finalize(),
    );
    out
}

/// Replays a list of event digests from an all-zero RTMR.
pub fn rtmr_replay<'a>(events: impl IntoIterator<Item = &'a Measurement>) -> Measurement {
    events
        .into_iter()
        .fold([0u8; 48], |acc, event| rtmr_extend(&acc, event))
}
