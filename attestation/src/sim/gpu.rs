//! A simulated NVIDIA GPU, for tests: a five-certificate chain shaped like
//! a Hopper GPU's (P-384 keys, the FWID in the leaf's TcbInfo extension)
//! under a fresh test root, whose leaf key re-signs a real report with a
//! chosen nonce. Its evidence goes through the same [`crate::nvidia::verify`]
//! as a GPU's; only the root differs, and the root is marked simulated.
//!
//! There is no simulated GPU report: a real one (a template whose
//! measurements, versions and FWID it keeps) is re-signed.

use rcgen::{
    CustomExtension, ExtendedKeyUsagePurpose, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384,
};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;

use super::hierarchy::{ca_chain, p384_key, params};
use super::ocsp::{link, respond, respond_by_issuer, SimAnswer, SimSigner};
use super::{pem_encode, sim_err};
use crate::bundle::GpuEvidence;
use crate::der::{integer, oid, tlv};
use crate::nvidia::spdm::{NONCE_LEN, SIGNATURE_LEN};
use crate::nvidia::Report;
use crate::pki::{TrustAnchor, TrustAnchors};
use crate::Error;

/// The name of a simulated GPU's root as a trust anchor.
pub const SIM_GPU_ROOT: &str = "sim-gpu-root";
/// The OID of SHA-384, the FWID's hash algorithm.
pub const SHA384: [u64; 9] = [2, 16, 840, 1, 101, 3, 4, 2, 2];
/// Where a report's nonce lies: after the GET_MEASUREMENTS header.
const REQUEST_NONCE: usize = 4;

/// The TcbInfo extension (2.23.133.5.4.1) as a Hopper leaf carries it:
/// `SEQUENCE { INTEGER 1, SEQUENCE { OID hash, OCTET STRING fwid } }` (the
/// real one also holds a SubjectPublicKeyInfo, left out).
pub fn tcb_info(hash_oid: &[u64], fwid: &[u8]) -> Vec<u8> {
    let fwid = tlv(0x30, &[oid(hash_oid), tlv(0x04, fwid)].concat());
    tlv(0x30, &[integer(1), fwid].concat())
}

/// A simulated GPU: its chain, root and attestation key.
pub struct SimGpu {
    chain_pem: String,
    /// The chain (DER), leaf first.
    chain: Vec<Vec<u8>>,
    /// The CAs' issuers, the BROM first: `cas[i]` signed `chain[i]`.
    cas: Vec<Issuer<'static, KeyPair>>,
    root: TrustAnchor,
    leaf: Option<EcdsaKeyPair>,
}

impl SimGpu {
    /// A GPU whose attestation certificate carries `fwid` (a template
    /// report's, see [`SimGpu::for_template`]).
    pub fn new(fwid: &[u8]) -> Result<Self, Error> {
        Self::with_leaf(Some(tcb_info(&SHA384, fwid)), true)
    }

    /// A GPU whose attestation certificate carries the FWID of `template`.
    pub fn for_template(template: &[u8]) -> Result<Self, Error> {
        Self::new(&Report::parse(template)?.response.opaque.fwid)
    }

    /// A GPU whose leaf has `extension` as its TcbInfo extension (none when
    /// `None`) and a P-384 key, or a P-256 one that cannot sign reports
    /// (for the verifier's negative tests). Certificates are valid from
    /// 1975 to 4096 (rcgen's default).
    pub fn with_leaf(extension: Option<Vec<u8>>, p384: bool) -> Result<Self, Error> {
        let cas = ca_chain(
            "test GPU root",
            &["test architecture CA", "test provisioner CA", "test BROM"],
        )?;
        let (leaf_key, leaf) = match p384 {
            true => {
                let key = p384_key()?;
                (key.rcgen, Some(key.ring))
            }
            false => (
                KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sim_err)?,
                None,
            ),
        };
        let mut p = params("test FMC LF", false)?;
        p.custom_extensions = extension
            .map(|e| vec![CustomExtension::from_oid_content(&[2, 23, 133, 5, 4, 1], e)])
            .unwrap_or_default();
        // ca_chain gives the BROM first: it certifies the leaf.
        let (_, brom) = cas.first().ok_or_else(|| sim_err("no BROM"))?;
        let leaf_der = p
            .signed_by(&leaf_key, brom)
            .map_err(sim_err)?
            .der()
            .to_vec();
        let root_der = cas
            .last()
            .map(|(der, _)| der.clone())
            .ok_or_else(|| sim_err("no root"))?;
        let mut chain = vec![leaf_der];
        chain.extend(cas.iter().map(|(der, _)| der.clone()));
        Ok(Self {
            chain_pem: chain.iter().map(|d| pem_encode(d)).collect(),
            chain,
            cas: cas.into_iter().map(|(_, issuer)| issuer).collect(),
            root: TrustAnchor {
                name: SIM_GPU_ROOT.into(),
                der: root_der,
                simulated: true,
            },
            leaf,
        })
    }

    /// The chain (PEM, leaf first, ending in the root).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The root as a trust anchor named [`SIM_GPU_ROOT`], marked simulated.
    pub fn anchor(&self) -> TrustAnchor {
        self.root.clone()
    }

    /// The root as the only trust anchor.
    pub fn anchors(&self) -> TrustAnchors {
        TrustAnchors {
            roots: vec![self.anchor()],
        }
    }

    /// `report` re-signed by this GPU's attestation key (its last 96 bytes
    /// replaced by the signature over the rest).
    pub fn resign(&self, report: &[u8]) -> Result<Vec<u8>, Error> {
        let key = self
            .leaf
            .as_ref()
            .ok_or_else(|| sim_err("this sim GPU's key is P-256: it cannot sign reports"))?;
        let signed = report.len().checked_sub(SIGNATURE_LEN).ok_or_else(|| {
            sim_err(format!(
                "a report of {} bytes has no signature",
                report.len()
            ))
        })?;
        let mut out = report.get(..signed).unwrap_or_default().to_vec();
        let signature = key
            .sign(&SystemRandom::new(), &out)
            .map_err(|_| sim_err("signing failed"))?;
        out.extend_from_slice(signature.as_ref());
        Ok(out)
    }

    /// The `template` report (which must parse) with `nonce` as its
    /// request's nonce, signed by this GPU.
    pub fn report(&self, template: &[u8], nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>, Error> {
        Report::parse(template)?;
        let mut report = template.to_vec();
        report
            .get_mut(REQUEST_NONCE..REQUEST_NONCE + NONCE_LEN)
            .ok_or_else(|| sim_err("report too short"))?
            .copy_from_slice(nonce);
        self.resign(&report)
    }

    /// [`SimGpu::report`] with this GPU's chain, as a bundle carries it
    /// (without OCSP responses).
    pub fn evidence(&self, template: &[u8], nonce: &[u8; NONCE_LEN]) -> Result<GpuEvidence, Error> {
        Ok(GpuEvidence {
            report: self.report(template, nonce)?,
            chain_pem: self.chain_pem.clone(),
            ocsp: Vec::new(),
        })
    }

    /// The chain's certificates (DER), leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// An OCSP response about the certificate at `position` of the chain
    /// (0 is the leaf), signed by its issuer, saying `answer`.
    pub fn ocsp(&self, position: usize, answer: &SimAnswer) -> Result<Vec<u8>, Error> {
        respond_by_issuer(&self.chain, &self.cas, position, answer)
    }

    /// An OCSP response about the certificate at `position`, signed by a
    /// responder certificate that its issuer signed and the response
    /// carries, with id-kp-OCSPSigning in its extended key usage or not.
    pub fn ocsp_delegated(
        &self,
        position: usize,
        answer: &SimAnswer,
        ocsp_signing: bool,
    ) -> Result<Vec<u8>, Error> {
        let (cert, issuer_der, issuer) = link(&self.chain, &self.cas, position)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(sim_err)?;
        let mut p = params("test OCSP responder", false)?;
        if ocsp_signing {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        }
        let responder = p.signed_by(&key, issuer).map_err(sim_err)?.der().to_vec();
        let signer = SimSigner {
            key: &key,
            cert: &responder,
            include_cert: true,
        };
        respond(cert, issuer_der, &signer, answer)
    }

    /// Good OCSP responses, from `this_update` for a week, for every
    /// certificate a GPU's issuers answer for
    /// ([`crate::nvidia::OCSP_POSITIONS`]), in chain order.
    pub fn ocsp_good(&self, this_update: i64) -> Result<Vec<Vec<u8>>, Error> {
        crate::nvidia::OCSP_POSITIONS
            .map(|position| self.ocsp(position, &SimAnswer::good(this_update)))
            .collect()
    }
}
