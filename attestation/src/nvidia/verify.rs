//! Verification of an NVIDIA GPU attestation report with its certificate
//! chain, at a given time, under given trust anchors, against the caller's
//! expectations. See the module documentation of [`crate::nvidia`] for the
//! checks and their order.

use std::collections::BTreeMap;

use der_parser::der::parse_der;
use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use sha2::{Digest, Sha384};

use super::opaque::FWID_LEN;
use super::spdm::{Report, DIGEST_LEN, NONCE_LEN};
use crate::pki::{verify_chain, CertificateInfo, ChainLink, TrustAnchors, VerifiedChain};
use crate::{ocsp, Error};

/// The certificates of a GPU's chain, leaf first, as messages name them
/// (on a Hopper GPU: GH100 A01 GSP FMC LF, GH100 A01 GSP BROM, NVIDIA GH100
/// Provisioner ICA 1, NVIDIA GH100 Identity, NVIDIA Device Identity CA).
pub const CHAIN_POSITIONS: [&str; 5] = [
    "GPU attestation key (FMC leaf)",
    "GPU device identity (BROM)",
    "NVIDIA provisioner CA",
    "NVIDIA GPU architecture CA",
    "NVIDIA Device Identity CA",
];

/// The chain positions whose status NVIDIA's OCSP responder answers: the
/// GPU's device identity (BROM), the provisioner CA and the architecture
/// CA. Not the attestation key's certificate, which the GPU's firmware
/// makes at boot (NVIDIA never sees it), nor the root, trusted by identity.
pub const OCSP_POSITIONS: std::ops::Range<usize> = 1..4;

/// What the chain text is called in errors.
const CHAIN_NAME: &str = "NVIDIA GPU certificate chain";
/// The end of a PEM certificate block, without its line feed.
const PEM_END: &[u8] = b"-----END CERTIFICATE-----";
/// The leaf's extension that holds the FWID (TCG DICE TcbInfo).
const FWID_EXTENSION: [u64; 6] = [2, 23, 133, 5, 4, 1];
/// The FWID's hash algorithm: SHA-384.
const SHA384_OID: &str = "2.16.840.1.101.3.4.2.2";
/// Size of an uncompressed P-384 point.
const P384_POINT_LEN: usize = 97;

/// What the caller requires of the GPU, beyond genuine evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The nonce the verifier sent: the report's GET_MEASUREMENTS request
    /// must carry it.
    pub nonce: [u8; NONCE_LEN],
    /// Measurement digests pinned by index: each must be present and equal.
    pub measurements: BTreeMap<u8, Vec<u8>>,
    /// Driver versions accepted ("550.90.07"); empty accepts any.
    pub driver_versions: Vec<String>,
    /// The lowest driver version accepted, compared part by part as numbers.
    pub min_driver_version: Option<String>,
    /// VBIOS versions accepted ("96.00.9f.00.01", any case); empty accepts any.
    pub vbios_versions: Vec<String>,
}

/// A report whose chain, signature, nonce and expectations all verified.
#[derive(Debug, Clone)]
pub struct VerifiedGpu {
    /// The parsed report.
    pub report: Report,
    /// The chain's certificates, leaf first, described for reports.
    pub certificates: Vec<CertificateInfo>,
    /// The name of the trust anchor the chain ends in.
    pub anchor: String,
    /// SHA-384 of the report followed by the chain text, as received: what
    /// CPU claims bind to name this GPU evidence (see [`evidence_digest`]).
    pub evidence_digest: [u8; DIGEST_LEN],
    /// The chain's certificates as revocation checks need them, leaf first.
    pub links: Vec<ChainLink>,
}

impl VerifiedGpu {
    /// The driver version.
    pub fn driver_version(&self) -> &str {
        &self.report.response.opaque.driver_version
    }

    /// The VBIOS version.
    pub fn vbios_version(&self) -> &str {
        &self.report.response.opaque.vbios_version
    }

    /// The measurement digests by index.
    pub fn measurements(&self) -> BTreeMap<u8, [u8; DIGEST_LEN]> {
        self.report.measurements()
    }

    /// The nonce of the request, equal to the expected one.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.report.request.nonce
    }

    /// The firmware ID, equal in the report and the attestation certificate.
    pub fn fwid(&self) -> &[u8; FWID_LEN] {
        &self.report.response.opaque.fwid
    }

    /// The subjects of the chain's certificates, leaf first.
    pub fn chain_subjects(&self) -> Vec<&str> {
        self.certificates
            .iter()
            .map(|c| c.subject.as_str())
            .collect()
    }

    /// Checks NVIDIA's OCSP responses for this GPU's chain at `now`: one
    /// response per certificate of [`OCSP_POSITIONS`], in chain order, each
    /// verified by [`ocsp::check`] against the certificate's issuer in the
    /// chain and saying good. Returns what each said.
    pub fn check_revocation(
        &self,
        responses: &[Vec<u8>],
        now: i64,
    ) -> Result<Vec<ocsp::Verdict>, Error> {
        ocsp::check_chain(
            &self.links,
            &CHAIN_POSITIONS,
            OCSP_POSITIONS,
            responses,
            now,
        )
    }
}

/// SHA-384 of `report` followed by `chain_pem`. Unambiguous: a report that
/// parses has exactly one length.
pub fn evidence_digest(report: &[u8], chain_pem: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hash = Sha384::new();
    hash.update(report);
    hash.update(chain_pem);
    hash.finalize().into()
}

/// Reads the chain text that comes with the report: PEM certificates, leaf
/// first, in the one form `crate::pem` accepts, except that the last line
/// feed may be missing (the driver's own chain ends without it; OpenSSL's
/// PEM writer adds it). Empty text is an empty chain.
pub fn read_chain(chain_pem: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    if chain_pem.is_empty() {
        return Ok(Vec::new());
    }
    if chain_pem.ends_with(PEM_END) {
        let mut text = chain_pem.to_vec();
        text.push(b'\n');
        return crate::pem::certificates(&text, CHAIN_NAME);
    }
    crate::pem::certificates(chain_pem, CHAIN_NAME)
}

/// A GPU's certificate chain that verified: five certificates from the
/// attestation key up to a trust anchor, the leaf's key a P-384 point, its
/// FWID read. One chain verifies any number of the GPU's reports.
#[derive(Debug, Clone)]
pub struct GpuChain {
    /// The verified chain.
    pub chain: VerifiedChain,
    /// The FWID in the attestation certificate's TcbInfo extension.
    pub fwid: [u8; FWID_LEN],
}

impl GpuChain {
    /// Verifies the chain text (PEM, leaf first, ending in the root; see
    /// [`read_chain`]) at `now` (Unix seconds) with `anchors` as the only
    /// trusted roots.
    pub fn verify(chain_pem: &[u8], anchors: &TrustAnchors, now: i64) -> Result<Self, Error> {
        let certificates = read_chain(chain_pem)?;
        let chain = verify_chain(&certificates, anchors, now, &CHAIN_POSITIONS)?;
        if chain.certificates.len() != CHAIN_POSITIONS.len() {
            return Err(Error::Unsupported {
                field: "NVIDIA GPU certificate chain length",
                expected: format!(
                    "{} certificates ({})",
                    CHAIN_POSITIONS.len(),
                    CHAIN_POSITIONS.join(", ")
                ),
                found: chain.certificates.len().to_string(),
            });
        }
        let key_len = chain.leaf_public_key.len();
        if key_len != P384_POINT_LEN {
            return Err(leaf_error(
                &chain,
                format!(
                    "public key has {key_len} bytes, expected an uncompressed P-384 point ({P384_POINT_LEN})"
                ),
            ));
        }
        let fwid = certificate_fwid(&chain)?;
        Ok(Self { chain, fwid })
    }

    /// Checks a parsed report against this chain and `expect`: the
    /// signature over the transcript by the leaf's key, the FWID, the nonce,
    /// then the expectations.
    pub fn check(&self, report: &Report, expect: &Expectations) -> Result<(), Error> {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &self.chain.leaf_public_key)
            .verify(&report.signed, &report.response.signature)
            .map_err(|_| Error::BadSignature {
                what: "NVIDIA GPU attestation report (SPDM transcript, ECDSA P-384) by the attestation key",
            })?;
        if self.fwid != report.response.opaque.fwid {
            return Err(Error::Mismatch {
                what: "GPU FWID (attestation certificate vs report opaque data)",
                expected: hex::encode(self.fwid),
                found: hex::encode(report.response.opaque.fwid),
            });
        }
        if report.request.nonce != expect.nonce {
            return Err(Error::Mismatch {
                what: "GPU attestation nonce (GET_MEASUREMENTS request)",
                expected: hex::encode(expect.nonce),
                found: hex::encode(report.request.nonce),
            });
        }
        appraise(report, expect)
    }
}

/// Verifies an NVIDIA GPU attestation report (the SPDM GET_MEASUREMENTS
/// request and MEASUREMENTS response, binary) and its certificate chain
/// (PEM, leaf first, ending in the root) at `now` (Unix seconds), with
/// `anchors` as the only trusted roots, against `expect`.
pub fn verify(
    report_bytes: &[u8],
    chain_pem: &[u8],
    anchors: &TrustAnchors,
    now: i64,
    expect: &Expectations,
) -> Result<VerifiedGpu, Error> {
    let report = Report::parse(report_bytes)?;
    let chain = GpuChain::verify(chain_pem, anchors, now)?;
    chain.check(&report, expect)?;
    Ok(VerifiedGpu {
        report,
        certificates: chain.chain.described,
        anchor: chain.chain.anchor.name,
        evidence_digest: evidence_digest(report_bytes, chain_pem),
        links: chain.chain.links,
    })
}

fn leaf_error(chain: &VerifiedChain, reason: String) -> Error {
    Error::Certificate {
        position: CHAIN_POSITIONS[0].into(),
        subject: chain.leaf_subject.clone(),
        reason,
    }
}

/// The FWID in the leaf's TcbInfo extension (2.23.133.5.4.1): its last
/// element, `SEQUENCE { hashAlg OID (SHA-384), digest OCTET STRING }`.
fn certificate_fwid(chain: &VerifiedChain) -> Result<[u8; FWID_LEN], Error> {
    let bad =
        |reason: &str| leaf_error(chain, format!("FWID extension (2.23.133.5.4.1): {reason}"));
    let value = chain
        .leaf_extension(&FWID_EXTENSION)
        .ok_or_else(|| bad("absent"))?;
    let (rest, outer) = parse_der(value).map_err(|e| bad(&format!("bad DER: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(&format!("{} bytes after its SEQUENCE", rest.len())));
    }
    let items = outer.as_sequence().map_err(|_| bad("not a SEQUENCE"))?;
    let fwid = items
        .last()
        .and_then(|last| last.as_sequence().ok())
        .ok_or_else(|| bad("its last element is not a SEQUENCE"))?;
    let [algorithm, digest] = fwid.as_slice() else {
        return Err(bad("the FWID is not SEQUENCE { hashAlg, digest }"));
    };
    let algorithm = algorithm
        .as_oid()
        .map(|o| o.to_id_string())
        .map_err(|_| bad("the FWID's hashAlg is not an OID"))?;
    if algorithm != SHA384_OID {
        return Err(bad(&format!(
            "the FWID's hashAlg is {algorithm}, expected SHA-384 ({SHA384_OID})"
        )));
    }
    let digest = digest
        .as_slice()
        .map_err(|_| bad("the FWID's digest is not an OCTET STRING"))?;
    <[u8; FWID_LEN]>::try_from(digest).map_err(|_| {
        bad(&format!(
            "the FWID's digest has {} bytes, expected {FWID_LEN}",
            digest.len()
        ))
    })
}

/// The parts of a dotted version as numbers ("550.90.07" is [550, 90, 7]).
fn version_parts(text: &str) -> Option<Vec<u64>> {
    text.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

/// Checks the report against the caller's pins and allowed versions.
fn appraise(report: &Report, expect: &Expectations) -> Result<(), Error> {
    for (index, want) in &expect.measurements {
        let found = report.response.blocks.iter().find(|b| b.index == *index);
        let found = match found {
            Some(block) if block.digest.as_slice() == want.as_slice() => continue,
            Some(block) => hex::encode(block.digest),
            None => "no block with this index".into(),
        };
        return Err(Error::Appraisal {
            what: format!("GPU measurement index {index}"),
            expected: hex::encode(want),
            found,
        });
    }
    let opaque = &report.response.opaque;
    let driver = &opaque.driver_version;
    if !expect.driver_versions.is_empty() && !expect.driver_versions.contains(driver) {
        return Err(Error::Appraisal {
            what: "GPU driver version".into(),
            expected: format!("one of [{}]", expect.driver_versions.join(", ")),
            found: driver.clone(),
        });
    }
    if let Some(min) = &expect.min_driver_version {
        let floor = version_parts(min).ok_or_else(|| Error::Unsupported {
            field: "minimum GPU driver version (expectations)",
            expected: "numbers separated by dots".into(),
            found: min.clone(),
        })?;
        if version_parts(driver).is_none_or(|have| have < floor) {
            return Err(Error::Appraisal {
                what: "GPU driver version".into(),
                expected: format!("at least {min}"),
                found: driver.clone(),
            });
        }
    }
    let vbios = &opaque.vbios_version;
    if !expect.vbios_versions.is_empty()
        && !expect
            .vbios_versions
            .iter()
            .any(|v| v.eq_ignore_ascii_case(vbios))
    {
        return Err(Error::Appraisal {
            what: "GPU VBIOS version".into(),
            expected: format!("one of [{}]", expect.vbios_versions.join(", ")),
            found: vbios.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_part_by_part_as_numbers() {
        assert_eq!(version_parts("550.90.07"), Some(vec![550, 90, 7]));
        assert!(version_parts("550.90.07") > version_parts("550.54.15"));
        assert!(version_parts("550.100") > version_parts("550.90.07"));
        assert!(version_parts("550.90") < version_parts("550.90.07"));
        assert_eq!(version_parts("550.x"), None);
        assert_eq!(version_parts(""), None);
    }
}
