//! NVIDIA's reference integrity manifests (RIMs): the digests each GPU
//! measurement index should hold for a driver version and for a VBIOS,
//! published by NVIDIA's RIM service as signed SWID tags (ISO/IEC
//! 19770-2, the TCG RIM information model).
//!
//! [`verify`] checks a RIM, purely and at a given time: the document is
//! well-formed XML without DTD, its enveloped XML signature verifies
//! ([`crate::xmldsig`]: Canonical XML 1.1, ECDSA P-384, SHA-384) under the
//! leaf of the certificate chain it carries, which verifies up to the
//! pinned NVIDIA CoRIM signing Root CA ([`crate::roots::nvidia_rim_root`]),
//! and its content is read strictly from the tree that was verified: the
//! `SoftwareIdentity` element, `Meta/@colloquialVersion` (the driver or
//! VBIOS version), and one `Payload/Resource` of type `Measurement` per
//! index: `index` (0-based, so SPDM index `index + 1`), `active`
//! ("True"/"False"), `alternatives`, `size` (48) and the SHA-384 values
//! `Hash0` ... in the namespace `http://www.w3.org/2001/04/xmlenc#sha384`.
//!
//! [`appraise`] compares a GPU report with its driver's and its VBIOS's
//! RIMs, as NVIDIA's verifiers do: each RIM's version equals the report's;
//! no index is active in both; every active index is in the report with
//! one of its alternatives (index 36, the NVDEC0 engine's, is skipped when
//! the report says NVDEC0 is disabled). Indexes no RIM marks active are not
//! compared.
//!
//! [`driver_rim_id`] and [`vbios_rim_id`] name a report's RIMs as the RIM
//! service does (`NV_GPU_DRIVER_GH100_550.90.07`,
//! `NV_GPU_VBIOS_1010_0200_882_96009F0001`).

use std::collections::BTreeMap;

use roxmltree::{Document, Node};

use super::spdm::{Report, DIGEST_LEN};
use crate::pki::{verify_chain, CertificateInfo, ChainLink, TrustAnchors};
use crate::{xmldsig, Error};

/// The SWID tag namespace.
pub const SWID: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
/// The namespace of the measurement values' attributes (`Hash0`, ...).
pub const HASH_NAMESPACE: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
/// A RIM's certificates, leaf first, as messages name them.
pub const CHAIN_POSITIONS: [&str; 4] = [
    "RIM signer (L4)",
    "NVIDIA reference value CA (L3)",
    "NVIDIA reference value CA (L2)",
    "NVIDIA CoRIM signing Root CA",
];
/// The chain positions whose status NVIDIA's OCSP responder answers: the
/// signer (L4) and the two reference-value CAs (L3, L2); not the root.
pub const OCSP_POSITIONS: std::ops::Range<usize> = 0..3;
/// What a RIM is called in errors.
const WHAT: &str = "NVIDIA RIM";
/// The opaque field that says whether the NVDEC0 engine is enabled.
const NVDEC0_STATUS: u16 = 11;
/// NVDEC0 disabled, in that field.
const NVDEC0_DISABLED: u8 = 0x55;
/// The SPDM index of NVDEC0's measurement, skipped when it is disabled.
const NVDEC0_INDEX: u8 = 36;
/// Most alternatives a measurement may list.
const MAX_ALTERNATIVES: usize = 16;
/// Size of a P-384 point, the signer's key.
const P384_POINT_LEN: usize = 97;

/// What a RIM says of one measurement index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reference {
    /// Whether the index is checked.
    pub active: bool,
    /// The accepted digests.
    #[serde(with = "hex_list")]
    pub alternatives: Vec<[u8; DIGEST_LEN]>,
}

mod hex_list {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(list: &[[u8; 48]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(hex::encode))
    }
}

/// A RIM whose signature and chain verified, with its content.
#[derive(Debug, Clone)]
pub struct VerifiedRim {
    /// The version it is for (`Meta/@colloquialVersion`): a driver version
    /// ("550.90.07") or a VBIOS version ("96.00.9F.00.01").
    pub version: String,
    /// `SoftwareIdentity/@name`: the product ("GH100").
    pub product: String,
    /// The references by SPDM measurement index (1 to 254).
    pub references: BTreeMap<u8, Reference>,
    /// The signing chain's certificates, leaf first, described.
    pub certificates: Vec<CertificateInfo>,
    /// The name of the trust anchor the chain ends in.
    pub anchor: String,
    /// The signing chain, as revocation checks need it, leaf first.
    pub links: Vec<ChainLink>,
}

impl VerifiedRim {
    /// Checks NVIDIA's OCSP responses for this RIM's signing chain at
    /// `now`: one per certificate of [`OCSP_POSITIONS`], in chain order,
    /// each good ([`crate::ocsp::check_chain`]).
    pub fn check_revocation(
        &self,
        responses: &[Vec<u8>],
        now: i64,
    ) -> Result<Vec<crate::ocsp::Verdict>, Error> {
        crate::ocsp::check_chain(
            &self.links,
            &CHAIN_POSITIONS,
            OCSP_POSITIONS,
            responses,
            now,
        )
    }

    /// The active references by SPDM index.
    pub fn active(&self) -> impl Iterator<Item = (u8, &Reference)> {
        self.references
            .iter()
            .filter(|(_, r)| r.active)
            .map(|(i, r)| (*i, r))
    }
}

/// The RIM service's name of the driver RIM for `report`'s driver.
pub fn driver_rim_id(report: &Report) -> String {
    format!(
        "NV_GPU_DRIVER_GH100_{}",
        report.response.opaque.driver_version
    )
}

/// The RIM service's name of the VBIOS RIM for `report`'s board and VBIOS:
/// project, project SKU, chip SKU and VBIOS version (without dots), upper
/// case, from the opaque data.
pub fn vbios_rim_id(report: &Report) -> Result<String, Error> {
    let opaque = &report.response.opaque;
    let text = |id: u16, name: &str| {
        opaque
            .get(id)
            .map(|f| f.value().trim().to_ascii_uppercase())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::Unsupported {
                field: "NVIDIA opaque data",
                expected: format!("a {name} field (type {id}), which names the VBIOS RIM"),
                found: "none".into(),
            })
    };
    Ok(format!(
        "NV_GPU_VBIOS_{}_{}_{}_{}",
        text(17, "project")?,
        text(18, "project_sku")?,
        text(15, "chip_sku")?,
        opaque.vbios_version.replace('.', "").to_ascii_uppercase()
    ))
}

/// Verifies a RIM (the signed SWID tag, XML) at `now` (Unix seconds) with
/// `anchors` as the only trusted roots, and reads it.
pub fn verify(xml: &[u8], anchors: &TrustAnchors, now: i64) -> Result<VerifiedRim, Error> {
    let doc = xmldsig::parse(xml, WHAT)?;
    let signed = xmldsig::verify_reference(&doc, WHAT)?;
    let chain = verify_chain(&signed.certificates, anchors, now, &CHAIN_POSITIONS)?;
    if chain.leaf_public_key.len() != P384_POINT_LEN {
        return Err(Error::Certificate {
            position: CHAIN_POSITIONS[0].into(),
            subject: chain.leaf_subject.clone(),
            reason: format!(
                "public key has {} bytes, expected an uncompressed P-384 point ({P384_POINT_LEN})",
                chain.leaf_public_key.len()
            ),
        });
    }
    signed.check_signature(
        &chain.leaf_public_key,
        "NVIDIA RIM (XML signature, ECDSA P-384) by its signer",
    )?;
    let (version, product, references) = read(&doc)?;
    Ok(VerifiedRim {
        version,
        product,
        references,
        certificates: chain.described,
        anchor: chain.anchor.name,
        links: chain.links,
    })
}

fn bad(reason: String) -> Error {
    Error::Collateral { what: WHAT, reason }
}

/// Whether `node` is the SWID element `name`.
fn is_swid(node: &Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(SWID) && node.tag_name().name() == name
}

/// The one SWID child element `name` of `parent`.
fn only_child<'a, 'i>(parent: Node<'a, 'i>, name: &str) -> Result<Node<'a, 'i>, Error> {
    let found: Vec<Node<'a, 'i>> = parent.children().filter(|c| is_swid(c, name)).collect();
    match found.as_slice() {
        [one] => Ok(*one),
        other => Err(bad(format!(
            "expected one {name} element, found {}",
            other.len()
        ))),
    }
}

/// The content of a verified RIM: version, product and references.
type Content = (String, String, BTreeMap<u8, Reference>);

fn read(doc: &Document<'_>) -> Result<Content, Error> {
    let root = doc.root_element();
    if !is_swid(&root, "SoftwareIdentity") {
        return Err(bad(format!(
            "the document element is {{{}}}{}, expected a SWID SoftwareIdentity",
            root.tag_name().namespace().unwrap_or(""),
            root.tag_name().name()
        )));
    }
    let product = root.attribute("name").unwrap_or("").to_string();
    let meta = only_child(root, "Meta")?;
    let version = meta
        .attribute("colloquialVersion")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("Meta has no colloquialVersion".into()))?
        .to_string();
    let payload = only_child(root, "Payload")?;
    let mut references = BTreeMap::new();
    for resource in payload.children().filter(Node::is_element) {
        if !is_swid(&resource, "Resource") {
            return Err(bad(format!(
                "Payload holds a {}, expected only Resource elements",
                resource.tag_name().name()
            )));
        }
        let (index, reference) = read_resource(resource)?;
        if references.insert(index, reference).is_some() {
            return Err(bad(format!(
                "two Resources for measurement index {}",
                index - 1
            )));
        }
    }
    if references.is_empty() {
        return Err(bad("no measurements in its Payload".into()));
    }
    Ok((version, product, references))
}

/// One `Resource`: its SPDM index (the RIM's `index` + 1) and reference.
fn read_resource(resource: Node<'_, '_>) -> Result<(u8, Reference), Error> {
    let attribute = |name: &str| {
        resource
            .attribute(name)
            .ok_or_else(|| bad(format!("a Resource without {name}")))
    };
    let kind = attribute("type")?;
    if kind != "Measurement" {
        return Err(bad(format!(
            "a Resource of type {kind:?}, expected \"Measurement\""
        )));
    }
    let index_text = attribute("index")?;
    let index = index_text
        .parse::<u8>()
        .ok()
        .filter(|i| *i <= 253)
        .ok_or_else(|| {
            bad(format!(
                "a Resource index {index_text:?}, expected 0 to 253"
            ))
        })?;
    let what = |reason: String| bad(format!("measurement index {index}: {reason}"));
    let active = match attribute("active")? {
        "True" => true,
        "False" => false,
        other => return Err(what(format!("active is {other:?}, expected True or False"))),
    };
    let size = attribute("size")?;
    if size != DIGEST_LEN.to_string() {
        return Err(what(format!("size is {size:?}, expected {DIGEST_LEN}")));
    }
    let count_text = attribute("alternatives")?;
    let count = count_text
        .parse::<usize>()
        .ok()
        .filter(|c| (1..=MAX_ALTERNATIVES).contains(c))
        .ok_or_else(|| {
            what(format!(
                "alternatives is {count_text:?}, expected 1 to {MAX_ALTERNATIVES}"
            ))
        })?;
    let alternatives = (0..count)
        .map(|i| {
            let name = format!("Hash{i}");
            let value = resource
                .attribute((HASH_NAMESPACE, name.as_str()))
                .ok_or_else(|| what(format!("no {name} (SHA-384) of {count} alternatives")))?;
            hex::decode(value)
                .ok()
                .and_then(|d| <[u8; DIGEST_LEN]>::try_from(d).ok())
                .ok_or_else(|| what(format!("{name} is not {DIGEST_LEN} bytes of hex")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        index + 1,
        Reference {
            active,
            alternatives,
        },
    ))
}

/// What [`appraise`] compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimAppraisal {
    /// The SPDM indexes compared, each with the RIM that holds it
    /// ("driver" or "VBIOS").
    pub compared: BTreeMap<u8, &'static str>,
    /// Index 36 (NVDEC0) was skipped because the report says NVDEC0 is
    /// disabled.
    pub nvdec0_skipped: bool,
}

/// Compares `report` with its driver's RIM and its VBIOS's RIM (both
/// verified): versions, conflicts, then every active index.
pub fn appraise(
    report: &Report,
    driver: &VerifiedRim,
    vbios: &VerifiedRim,
) -> Result<RimAppraisal, Error> {
    let opaque = &report.response.opaque;
    if driver.version != opaque.driver_version {
        return Err(Error::Appraisal {
            what: "GPU driver RIM version".into(),
            expected: format!("the report's driver version {}", opaque.driver_version),
            found: driver.version.clone(),
        });
    }
    if !vbios.version.eq_ignore_ascii_case(&opaque.vbios_version) {
        return Err(Error::Appraisal {
            what: "GPU VBIOS RIM version".into(),
            expected: format!("the report's VBIOS version {}", opaque.vbios_version),
            found: vbios.version.clone(),
        });
    }
    let nvdec0_skipped = opaque
        .get(NVDEC0_STATUS)
        .is_some_and(|f| f.data.first() == Some(&NVDEC0_DISABLED));
    let mut golden: BTreeMap<u8, (&'static str, &Reference)> = BTreeMap::new();
    for (source, rim) in [("driver", driver), ("VBIOS", vbios)] {
        for (index, reference) in rim.active() {
            if let Some((other, _)) = golden.insert(index, (source, reference)) {
                return Err(Error::Appraisal {
                    what: format!("GPU measurement index {index}"),
                    expected: "active in one RIM".into(),
                    found: format!("active in the {other} and the {source} RIM"),
                });
            }
        }
    }
    let measured = report.measurements();
    let mut compared = BTreeMap::new();
    for (index, (source, reference)) in golden {
        if index == NVDEC0_INDEX && nvdec0_skipped {
            continue;
        }
        let found = match measured.get(&index) {
            Some(digest) if reference.alternatives.contains(digest) => {
                compared.insert(index, source);
                continue;
            }
            Some(digest) => hex::encode(digest),
            None => "no block with this index".into(),
        };
        return Err(Error::Appraisal {
            what: format!("GPU measurement index {index} ({source} RIM)"),
            expected: format!(
                "one of [{}]",
                reference
                    .alternatives
                    .iter()
                    .map(hex::encode)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            found,
        });
    }
    Ok(RimAppraisal {
        compared,
        nvdec0_skipped,
    })
}
