//! XML Signature verification for one profile: the enveloped signature
//! NVIDIA puts on its reference integrity manifests (RIMs), checked the way
//! XML-DSig 1.1 defines it.
//!
//! The profile, and nothing else, is accepted: one `ds:Signature`, the last
//! element child of the document element; its `ds:SignedInfo` canonicalized
//! with inclusive Canonical XML 1.1 (without comments), signed with
//! ECDSA P-384 and SHA-384 (RFC 4051, the signature value `r || s`); one
//! `ds:Reference` with `URI=""` (the whole document), the enveloped-signature
//! transform then Canonical XML 1.1, digested with SHA-384; the signer's
//! certificate chain in `ds:KeyInfo/ds:X509Data`, leaf first. Anything else
//! (other algorithms, more references, objects, other URIs) is refused, so
//! that what is signed is exactly what the caller then reads: the same
//! parsed tree, no signature wrapping.
//!
//! Canonical XML 1.1 is written here, for this profile's documents: no
//! crate in Rust implements it without a C library (libxml2, xmlsec) or
//! as a pre-release, and the part a signed RIM needs is small. The tree
//! comes from `roxmltree` (no DTD, entity-expanded, line ends and attribute
//! values normalized as XML 1.0 requires), and the canonical form follows
//! the specification: no XML declaration; elements as start and end tag;
//! the namespace declarations that differ from the parent's rendered ones,
//! the default first then by prefix; attributes by namespace URI, then
//! local name; `&`, `<`, `>` and CR escaped in text, `&`, `<`, `"`, TAB, LF
//! and CR in attribute values; comments dropped. The apex of a subtree
//! (`ds:SignedInfo`) renders every namespace in scope, inherited ones too.
//! Processing instructions and `xml:` attributes, which the inherited
//! attribute rules of 1.1 concern, are refused: RIMs have none.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use roxmltree::{Document, Node, NodeId, NodeType};
use sha2::{Digest, Sha384};

use crate::Error;

/// The XML-DSig namespace.
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Canonical XML 1.1, without comments.
pub const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
/// The enveloped-signature transform.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// ECDSA with SHA-384 (RFC 4051).
pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
/// SHA-384 (RFC 4051).
pub const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
/// The XML namespace (`xml:` attributes).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// Largest signed document accepted (NVIDIA's RIMs are about 40 KiB).
pub const MAX_DOCUMENT_LEN: usize = 1 << 20;
/// Most nodes a signed document may have.
const MAX_NODES: u32 = 100_000;
/// Deepest element nesting accepted (NVIDIA's RIMs nest 5 deep; the
/// canonical form is written recursively).
const MAX_DEPTH: usize = 32;
/// Size of a P-384 `r || s` signature.
const SIGNATURE_LEN: usize = 96;

/// A document whose reference digest verified: what its signer signed,
/// the signature and the signer's certificates, for the caller to check the
/// chain and then [`SignedDocument::check_signature`].
#[derive(Debug, Clone)]
pub struct SignedDocument {
    /// The canonical `ds:SignedInfo`: what the signature covers.
    pub signed_info: Vec<u8>,
    /// The signature value (`r || s`).
    pub signature: Vec<u8>,
    /// The certificates of `ds:X509Data` (DER), in document order.
    pub certificates: Vec<Vec<u8>>,
}

impl SignedDocument {
    /// Checks the signature over the canonical `ds:SignedInfo` with `key`,
    /// the signer's uncompressed P-384 public key.
    pub fn check_signature(&self, key: &[u8], what: &'static str) -> Result<(), Error> {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
            .verify(&self.signed_info, &self.signature)
            .map_err(|_| Error::BadSignature { what })
    }
}

/// Parses `xml` as a signed document would be: UTF-8, at most
/// [`MAX_DOCUMENT_LEN`] bytes, no DTD, a bounded number of nodes.
pub fn parse<'x>(xml: &'x [u8], what: &'static str) -> Result<Document<'x>, Error> {
    if xml.len() > MAX_DOCUMENT_LEN {
        return Err(Error::TooLarge { what });
    }
    let text = std::str::from_utf8(xml).map_err(|e| Error::Collateral {
        what,
        reason: format!("not UTF-8: {e}"),
    })?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| Error::Collateral {
        what,
        reason: format!("not well-formed XML: {e}"),
    })?;
    // Depth first, without recursion: the tree may be as deep as it is long.
    let mut stack = vec![(doc.root(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(Error::Collateral {
                what,
                reason: format!("elements nested deeper than {MAX_DEPTH}"),
            });
        }
        stack.extend(
            node.children()
                .filter(Node::is_element)
                .map(|c| (c, depth + 1)),
        );
    }
    Ok(doc)
}

/// Checks `doc`'s enveloped signature's structure and reference digest
/// (see the module documentation); the signature itself is left to
/// [`SignedDocument::check_signature`] once the caller trusts a key.
pub fn verify_reference(doc: &Document<'_>, what: &'static str) -> Result<SignedDocument, Error> {
    let bad = |reason: String| Error::Collateral { what, reason };
    if let Some(pi) = doc.descendants().find(|n| n.is_pi()) {
        return Err(bad(format!(
            "a processing instruction ({}) in a signed document",
            pi.pi().map(|p| p.target).unwrap_or("?")
        )));
    }
    if let Some(attr) = doc
        .descendants()
        .flat_map(|n| n.attributes())
        .find(|a| a.namespace() == Some(XML_NS))
    {
        return Err(bad(format!(
            "an xml:{} attribute in a signed document",
            attr.name()
        )));
    }
    let root = doc.root_element();
    let signatures: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().namespace() == Some(DSIG))
        .filter(|n| n.tag_name().name() == "Signature")
        .collect();
    let signature = match signatures.as_slice() {
        [one] => *one,
        many => {
            return Err(bad(format!(
                "expected one ds:Signature, found {}",
                many.len()
            )))
        }
    };
    if signature.parent_element() != Some(root) || root.last_element_child() != Some(signature) {
        return Err(bad(
            "the ds:Signature is not the document element's last child element".into(),
        ));
    }
    let [signed_info, signature_value, key_info] =
        children::<3>(signature, ["SignedInfo", "SignatureValue", "KeyInfo"], what)?;
    let [c14n, method, reference] = children::<3>(
        signed_info,
        ["CanonicalizationMethod", "SignatureMethod", "Reference"],
        what,
    )?;
    algorithm(c14n, C14N11, what)?;
    algorithm(method, ECDSA_SHA384, what)?;
    match reference.attribute("URI") {
        Some("") => {}
        other => {
            return Err(bad(format!(
                "the ds:Reference's URI is {other:?}, expected \"\" (the whole document)"
            )))
        }
    }
    let [transforms, digest_method, digest_value] = children::<3>(
        reference,
        ["Transforms", "DigestMethod", "DigestValue"],
        what,
    )?;
    let [enveloped, canonical] = children::<2>(transforms, ["Transform", "Transform"], what)?;
    algorithm(enveloped, ENVELOPED, what)?;
    algorithm(canonical, C14N11, what)?;
    algorithm(digest_method, SHA384, what)?;
    let digest = base64_text(digest_value, "ds:DigestValue", what)?;
    let document = canonicalize(root, Some(signature.id()))?;
    let computed = Sha384::digest(&document);
    if computed.as_slice() != digest.as_slice() {
        return Err(Error::Mismatch {
            what:
                "signed XML document's digest (SHA-384 of its canonical form without the signature)",
            expected: hex::encode(computed),
            found: hex::encode(&digest),
        });
    }
    let signature_bytes = base64_text(signature_value, "ds:SignatureValue", what)?;
    if signature_bytes.len() != SIGNATURE_LEN {
        return Err(bad(format!(
            "the ds:SignatureValue has {} bytes, expected {SIGNATURE_LEN} (ECDSA P-384 r || s)",
            signature_bytes.len()
        )));
    }
    let [x509_data] = children::<1>(key_info, ["X509Data"], what)?;
    let certificates = x509_data
        .children()
        .filter(Node::is_element)
        .map(|c| match is_ds(c, "X509Certificate") {
            true => base64_text(c, "ds:X509Certificate", what),
            false => Err(bad(format!(
                "ds:X509Data holds a {}, expected only ds:X509Certificate",
                c.tag_name().name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SignedDocument {
        signed_info: canonicalize(signed_info, None)?,
        signature: signature_bytes,
        certificates,
    })
}

/// Whether `node` is the XML-DSig element `name`.
fn is_ds(node: Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(DSIG) && node.tag_name().name() == name
}

/// The element children of `node`, which must be exactly the XML-DSig
/// elements `names` in order, with only whitespace between them.
fn children<'a, 'i, const N: usize>(
    node: Node<'a, 'i>,
    names: [&str; N],
    what: &'static str,
) -> Result<[Node<'a, 'i>; N], Error> {
    let parent = node.tag_name().name();
    let bad = |reason: String| Error::Collateral {
        what,
        reason: format!("ds:{parent}: {reason}"),
    };
    if let Some(text) = node
        .children()
        .filter(|c| c.is_text())
        .find_map(|c| c.text().filter(|t| !t.trim().is_empty()))
    {
        return Err(bad(format!("unexpected text {:?}", shorten(text))));
    }
    let found: Vec<Node<'a, 'i>> = node.children().filter(Node::is_element).collect();
    let found_names: Vec<String> = found
        .iter()
        .map(|c| match c.tag_name().namespace() {
            Some(DSIG) => format!("ds:{}", c.tag_name().name()),
            _ => format!(
                "{{{}}}{}",
                c.tag_name().namespace().unwrap_or(""),
                c.tag_name().name()
            ),
        })
        .collect();
    let expected: Vec<String> = names.iter().map(|n| format!("ds:{n}")).collect();
    if found_names != expected {
        return Err(bad(format!(
            "expected the elements [{}], found [{}]",
            expected.join(", "),
            found_names.join(", ")
        )));
    }
    <[Node<'a, 'i>; N]>::try_from(found).map_err(|_| bad("element count".into()))
}

/// Checks that `node` names `expected` as its `Algorithm` and has no
/// element children (parameters are not part of this profile).
fn algorithm(node: Node<'_, '_>, expected: &str, what: &'static str) -> Result<(), Error> {
    let found = node.attribute("Algorithm").unwrap_or("none");
    if found != expected || node.children().any(|c| c.is_element()) {
        return Err(Error::Unsupported {
            field: match node.tag_name().name() {
                "CanonicalizationMethod" => "signed XML canonicalization",
                "SignatureMethod" => "signed XML signature algorithm",
                "Transform" => "signed XML reference transform",
                _ => "signed XML digest algorithm",
            },
            expected: format!("{expected}, without parameters ({what})"),
            found: found.into(),
        });
    }
    Ok(())
}

/// The base64 text content of `node` (whitespace ignored).
fn base64_text(node: Node<'_, '_>, name: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    if node.children().any(|c| c.is_element()) {
        return Err(Error::Collateral {
            what,
            reason: format!("{name} holds elements"),
        });
    }
    let text: String = node
        .children()
        .filter_map(|c| c.text())
        .flat_map(str::chars)
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(text).map_err(|e| Error::Collateral {
        what,
        reason: format!("{name} is not base64: {e}"),
    })
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// A namespace declaration as canonical XML renders it: prefix ("" for
/// the default) and URI.
type Namespace<'a> = (&'a str, &'a str);

/// The inclusive Canonical XML 1.1 form of the subtree at `apex`, with the
/// element `skip` (and its subtree) left out. `apex` must come from a
/// document [`parse`] read (which bounds its depth).
pub fn canonicalize(apex: Node<'_, '_>, skip: Option<NodeId>) -> Result<Vec<u8>, Error> {
    let mut out = String::new();
    element(apex, skip, &[], &mut out)?;
    Ok(out.into_bytes())
}

fn element(
    node: Node<'_, '_>,
    skip: Option<NodeId>,
    rendered: &[Namespace<'_>],
    out: &mut String,
) -> Result<(), Error> {
    let qname = qname(node)?;
    let mut in_scope: Vec<Namespace<'_>> = node
        .namespaces()
        .map(|ns| (ns.name().unwrap_or(""), ns.uri()))
        .collect();
    in_scope.sort_unstable();
    let mut declare: Vec<Namespace<'_>> = in_scope
        .iter()
        .filter(|ns| !rendered.contains(ns))
        .copied()
        .collect();
    // A default namespace in effect above and none here: undeclare it.
    let parent_default = rendered
        .iter()
        .any(|(p, uri)| p.is_empty() && !uri.is_empty());
    if parent_default && !in_scope.iter().any(|(p, _)| p.is_empty()) {
        declare.insert(0, ("", ""));
    }
    out.push('<');
    out.push_str(qname);
    for (prefix, uri) in &declare {
        match prefix.is_empty() {
            true => out.push_str(" xmlns=\""),
            false => {
                out.push_str(" xmlns:");
                out.push_str(prefix);
                out.push_str("=\"");
            }
        }
        escape_attribute(uri, out);
        out.push('"');
    }
    let input = node.document().input_text();
    let mut attributes: Vec<(&str, &str, &str, &str)> = node
        .attributes()
        .map(|a| {
            let name = input.get(a.range_qname()).unwrap_or(a.name());
            (a.namespace().unwrap_or(""), a.name(), name, a.value())
        })
        .collect();
    attributes.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (_, _, name, value) in attributes {
        out.push(' ');
        out.push_str(name);
        out.push_str("=\"");
        escape_attribute(value, out);
        out.push('"');
    }
    out.push('>');
    for child in node.children() {
        match child.node_type() {
            NodeType::Element if Some(child.id()) == skip => {}
            NodeType::Element => element(child, skip, &in_scope, out)?,
            NodeType::Text => escape_text(child.text().unwrap_or(""), out),
            NodeType::Comment | NodeType::Root => {}
            NodeType::PI => {
                return Err(Error::Collateral {
                    what: "signed XML document",
                    reason: "a processing instruction".into(),
                })
            }
        }
    }
    out.push_str("</");
    out.push_str(qname);
    out.push('>');
    Ok(())
}

/// An element's qualified name as written in the document (the prefix is
/// part of the canonical form; the tree keeps only the namespace).
fn qname<'i>(node: Node<'_, 'i>) -> Result<&'i str, Error> {
    let input = node.document().input_text();
    let start = node.range().start + 1;
    let tail = input.get(start..).unwrap_or("");
    let end = tail
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .unwrap_or(tail.len());
    match tail.get(..end) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(Error::Collateral {
            what: "signed XML document",
            reason: format!("no element name at byte {start}"),
        }),
    }
}

fn escape_text(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attribute(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str) -> String {
        let doc = Document::parse(xml).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(canonicalize(doc.root_element(), None).unwrap_or_default())
            .unwrap_or_default()
    }

    #[test]
    fn canonical_xml_sorts_declarations_and_attributes_and_escapes() {
        assert_eq!(
            c14n("<?xml version=\"1.0\"?>\n<a xmlns:z=\"urn:z\" b='x&amp;y' xmlns=\"urn:d\" z:c=\"1\" a=\"&#x9;&lt;\"><!-- c --><e/>t&gt;&#13;</a>"),
            "<a xmlns=\"urn:d\" xmlns:z=\"urn:z\" a=\"&#x9;&lt;\" b=\"x&amp;y\" z:c=\"1\"><e></e>t&gt;&#xD;</a>"
        );
    }

    #[test]
    fn canonical_xml_renders_each_namespace_once_and_inherited_ones_at_the_apex() {
        let xml = "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:s xmlns:p=\"urn:p\"><t xmlns:q=\"urn:q\"/></p:s></r>";
        assert_eq!(
            c14n(xml),
            "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:s><t xmlns:q=\"urn:q\"></t></p:s></r>"
        );
        let doc = Document::parse(xml).unwrap_or_else(|e| panic!("{e}"));
        let sub = doc
            .descendants()
            .find(|n| n.tag_name().name() == "s")
            .unwrap_or_else(|| panic!("no s"));
        assert_eq!(
            String::from_utf8(canonicalize(sub, None).unwrap_or_default()).unwrap_or_default(),
            "<p:s xmlns=\"urn:d\" xmlns:p=\"urn:p\"><t xmlns:q=\"urn:q\"></t></p:s>"
        );
    }

    #[test]
    fn documents_nested_too_deep_are_refused_without_recursion() {
        let deep = format!("{}{}", "<a>".repeat(60_000), "</a>".repeat(60_000));
        let e = parse(deep.as_bytes(), "test").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("collateral: test: elements nested deeper than 32")
        );
        let ok = format!("{}{}", "<a>".repeat(32), "</a>".repeat(32));
        assert!(parse(ok.as_bytes(), "test").is_ok());
    }

    #[test]
    fn an_undeclared_default_namespace_is_rendered_empty() {
        assert_eq!(
            c14n("<r xmlns=\"urn:d\"><s xmlns=\"\"/></r>"),
            "<r xmlns=\"urn:d\"><s xmlns=\"\"></s></r>"
        );
    }
}
