//! A simulated RIM signer, for tests: a four-certificate chain shaped like
//! NVIDIA's (CoRIM root, two reference-value CAs, a P-384 signer) under a
//! fresh test root, which writes SWID tags in the form NVIDIA's RIM service
//! serves them and signs them as NVIDIA does (an enveloped XML signature,
//! Canonical XML 1.1, ECDSA P-384, SHA-384). Its RIMs go through the same
//! [`crate::nvidia::rim::verify`] as NVIDIA's; only the root differs, and
//! it is marked simulated.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{Issuer, KeyPair};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;
use sha2::{Digest, Sha384};
use zeroize::Zeroizing;

use super::hierarchy::{ca_chain, p384_key, params};
use super::ocsp::{respond_by_issuer, SimAnswer};
use super::{pem_encode, sim_err};
use crate::bundle::GpuRim;
use crate::nvidia::rim::{driver_rim_id, vbios_rim_id, Reference, HASH_NAMESPACE, SWID};
use crate::nvidia::Report;
use crate::pki::{TrustAnchor, TrustAnchors};
use crate::xmldsig::{self, C14N11, DSIG, ECDSA_SHA384, ENVELOPED, SHA384};
use crate::Error;

/// The name of the simulated RIM root as a trust anchor.
pub const SIM_RIM_ROOT: &str = "sim-rim-root";
/// Where the signature's digest goes before it is known.
const DIGEST_SLOT: &str = "@@DIGEST@@";
/// Where the signature value goes before it is known.
const SIGNATURE_SLOT: &str = "@@SIGNATURE@@";

/// A simulated RIM signer: its chain (signer first), root and key.
pub struct SimRimSigner {
    chain: Vec<Vec<u8>>,
    /// The CAs' issuers, L3 first: `cas[i]` signed `chain[i]`.
    cas: Vec<Issuer<'static, KeyPair>>,
    root: TrustAnchor,
    key: EcdsaKeyPair,
    key_pkcs8: Zeroizing<Vec<u8>>,
}

impl SimRimSigner {
    /// A signer under a fresh test root. Certificates are valid from 1975
    /// to 4096 (rcgen's default).
    pub fn new() -> Result<Self, Error> {
        let cas = ca_chain(
            "test CoRIM root",
            &[
                "test reference value CA (L2)",
                "test reference value CA (L3)",
            ],
        )?;
        let key = p384_key()?;
        // ca_chain gives L3 first: it certifies the signer.
        let (_, l3) = cas.first().ok_or_else(|| sim_err("no L3"))?;
        let leaf = params("test RIM signer (L4)", false)?
            .signed_by(&key.rcgen, l3)
            .map_err(sim_err)?;
        let root_der = cas
            .last()
            .map(|(der, _)| der.clone())
            .ok_or_else(|| sim_err("no root"))?;
        let mut chain = vec![leaf.der().to_vec()];
        chain.extend(cas.iter().map(|(der, _)| der.clone()));
        Ok(Self {
            chain,
            cas: cas.into_iter().map(|(_, issuer)| issuer).collect(),
            root: TrustAnchor {
                name: SIM_RIM_ROOT.into(),
                der: root_der,
                simulated: true,
            },
            key: key.ring,
            key_pkcs8: key.pkcs8,
        })
    }

    /// The chain (DER), signer first, ending in the root.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The root as a trust anchor named [`SIM_RIM_ROOT`], marked simulated.
    pub fn anchor(&self) -> TrustAnchor {
        self.root.clone()
    }

    /// The root as the only trust anchor.
    pub fn anchors(&self) -> TrustAnchors {
        TrustAnchors {
            roots: vec![self.anchor()],
        }
    }

    /// The signer's private key (PKCS #8, PEM), for a peer implementation
    /// to sign with.
    pub fn key_pem(&self) -> Zeroizing<String> {
        let b64 = Zeroizing::new(STANDARD.encode(self.key_pkcs8.as_slice()));
        let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// `unsigned` (a SWID tag, see [`unsigned_rim`]) with an enveloped
    /// signature by this signer, as its document element's last child.
    pub fn sign(&self, unsigned: &str) -> Result<String, Error> {
        let close = unsigned
            .rfind("</SoftwareIdentity>")
            .ok_or_else(|| sim_err("no </SoftwareIdentity> to sign before"))?;
        let (body, end) = unsigned.split_at(close);
        let mut certificates = String::new();
        for der in &self.chain {
            let _ = write!(
                certificates,
                "<ds:X509Certificate>{}</ds:X509Certificate>",
                STANDARD.encode(der)
            );
        }
        let signature = format!(
            "<ds:Signature xmlns:ds=\"{DSIG}\"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{C14N11}\"/><ds:SignatureMethod Algorithm=\"{ECDSA_SHA384}\"/><ds:Reference URI=\"\"><ds:Transforms><ds:Transform Algorithm=\"{ENVELOPED}\"/><ds:Transform Algorithm=\"{C14N11}\"/></ds:Transforms><ds:DigestMethod Algorithm=\"{SHA384}\"/><ds:DigestValue>{DIGEST_SLOT}</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>{SIGNATURE_SLOT}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>{certificates}</ds:X509Data></ds:KeyInfo></ds:Signature>"
        );
        let draft = format!("{body}{signature}{end}");
        let digest = {
            let doc = xmldsig::parse(draft.as_bytes(), "sim RIM")?;
            let root = doc.root_element();
            let sig = root
                .last_element_child()
                .ok_or_else(|| sim_err("no signature element"))?;
            STANDARD.encode(Sha384::digest(xmldsig::canonicalize(root, Some(sig.id()))?))
        };
        let draft = draft.replace(DIGEST_SLOT, &digest);
        let signed_info = {
            let doc = xmldsig::parse(draft.as_bytes(), "sim RIM")?;
            let info = doc
                .descendants()
                .find(|n| n.tag_name().name() == "SignedInfo")
                .ok_or_else(|| sim_err("no SignedInfo"))?;
            xmldsig::canonicalize(info, None)?
        };
        let value = self
            .key
            .sign(&SystemRandom::new(), &signed_info)
            .map_err(|_| sim_err("signing failed"))?;
        Ok(draft.replace(SIGNATURE_SLOT, &STANDARD.encode(value.as_ref())))
    }

    /// Good OCSP answers, from `this_update` for a week, for the signing
    /// chain's certificates of [`crate::nvidia::rim::OCSP_POSITIONS`].
    pub fn ocsp_good(&self, this_update: i64) -> Result<Vec<Vec<u8>>, Error> {
        crate::nvidia::rim::OCSP_POSITIONS
            .map(|position| {
                respond_by_issuer(
                    &self.chain,
                    &self.cas,
                    position,
                    &SimAnswer::good(this_update),
                )
            })
            .collect()
    }

    /// The driver's and the VBIOS's RIMs for `report`, as the host puts
    /// them in a bundle (by the RIM service's ids, without OCSP answers):
    /// the indexes NVIDIA's Hopper RIMs mark active ([`DRIVER_INDEXES`],
    /// [`VBIOS_INDEXES`]) with the report's digests, the rest of 1 to 64
    /// inactive.
    pub fn rims_for(&self, report: &Report) -> Result<BTreeMap<String, GpuRim>, Error> {
        let opaque = &report.response.opaque;
        let rim = |version: &str, active: &[u8]| {
            Ok::<_, Error>(GpuRim {
                rim: self.sign(&unsigned_rim(
                    version,
                    "GH100",
                    &references_for(report, active),
                ))?,
                ocsp: Vec::new(),
            })
        };
        Ok(BTreeMap::from([
            (
                driver_rim_id(report),
                rim(&opaque.driver_version, &DRIVER_INDEXES)?,
            ),
            (
                vbios_rim_id(report)?,
                rim(&opaque.vbios_version.to_ascii_uppercase(), &VBIOS_INDEXES)?,
            ),
        ]))
    }

    /// The chain as PEM, signer first (for a peer implementation).
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|d| pem_encode(d)).collect()
    }
}

/// The SPDM indexes NVIDIA's Hopper driver RIMs mark active: 8 and 22 to 41.
pub const DRIVER_INDEXES: [u8; 21] = [
    8, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41,
];
/// The SPDM indexes NVIDIA's Hopper VBIOS RIMs mark active: 1 to 7 and 9
/// to 13.
pub const VBIOS_INDEXES: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13];

/// References for every SPDM index 1 to 64: those in `active` with
/// `report`'s digest as their one alternative, the rest inactive (a zero
/// digest).
pub fn references_for(report: &Report, active: &[u8]) -> BTreeMap<u8, Reference> {
    let measured = report.measurements();
    (1..=64)
        .map(|i| {
            let on = active.contains(&i);
            let value = measured.get(&i).filter(|_| on).copied().unwrap_or([0; 48]);
            (
                i,
                Reference {
                    active: on,
                    alternatives: vec![value],
                },
            )
        })
        .collect()
}

/// An unsigned SWID tag in the form of NVIDIA's RIMs: `version` as the
/// colloquial version, `product` as the name, and one Measurement
/// resource per entry of `references` (by SPDM index; the RIM counts from
/// 0), each with its alternatives as `Hash0`, `Hash1`, ...
pub fn unsigned_rim(version: &str, product: &str, references: &BTreeMap<u8, Reference>) -> String {
    let tag_id = hex::encode(Sha384::digest(format!("{product} {version}")));
    let mut xml = format!(
        "<SoftwareIdentity xmlns=\"{SWID}\" xmlns:ns0=\"{SWID}\" xmlns:ns2=\"{HASH_NAMESPACE}\" corpus=\"false\" name=\"{product}\" patch=\"false\" supplemental=\"false\" tagId=\"{tag_id}\" version=\"1.0\" tagVersion=\"0\">\n    <ns0:Entity name=\"NVIDIA Corporation\" role=\"softwareCreator tagCreator\"/>\n    <ns0:Meta xmlns:ns1=\"https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/\" colloquialVersion=\"{version}\" edition=\"GPU\" product=\"{product}\" revision=\"r1\" PayloadType=\"direct\" ns1:BindingSpec=\"RIMIM\" ns1:BindingSpecVersion=\"1.01\"/>\n    <ns0:Payload xmlns:SHA384=\"{HASH_NAMESPACE}\">\n"
    );
    for (index, reference) in references {
        let rim_index = index.saturating_sub(1);
        let _ = write!(
            xml,
            "        <ns0:Resource type=\"Measurement\" index=\"{rim_index}\" active=\"{}\" alternatives=\"{}\"",
            match reference.active {
                true => "True",
                false => "False",
            },
            reference.alternatives.len()
        );
        for (i, value) in reference.alternatives.iter().enumerate() {
            let _ = write!(xml, " ns2:Hash{i}=\"{}\"", hex::encode(value));
        }
        let _ = writeln!(xml, " name=\"Measurement_{rim_index}\" size=\"48\"/>");
    }
    xml.push_str("    </ns0:Payload>\n</SoftwareIdentity>");
    xml
}
