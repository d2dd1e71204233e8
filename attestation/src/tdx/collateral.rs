//! DCAP collateral: what Intel's PCS (or a PCCS) publishes about a platform,
//! signed by Intel, so that a verifier can appraise a quote's TCB offline.
//!
//! [`Collateral`] has the field names and encodings of `dcap-qvl`'s
//! `QuoteCollateralV3` (CRLs and signatures as hex, issuer chains as PEM,
//! TCB info and QE identity as the exact JSON text Intel signed), so the same
//! file works with both. [`verify`] checks every signature, chain, CRL and
//! validity window and returns the parsed, trusted [`TcbInfo`] and
//! [`QeIdentity`].

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tcb_status::TcbStatus;
use crate::pki::{self, check_not_revoked, verify_chain, TrustAnchors};
use crate::Error;

/// Largest collateral text accepted (a TCB info is about 10 KiB).
const MAX_JSON_LEN: usize = 1 << 20;

/// Bytes that travel as a hex string in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text.as_bytes())
            .map(Hex)
            .map_err(serde::de::Error::custom)
    }
}

/// Hex outside the signed JSON texts: lowercase only (Intel's signed texts
/// use uppercase, but their bytes are covered by the signature).
fn strict_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Hex, D::Error> {
    crate::serde_hex::deserialize(d).map(Hex)
}

/// The collateral for one TDX quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collateral {
    /// PEM chain of the PCK CRL's issuer (platform or processor CA, root).
    pub pck_crl_issuer_chain: String,
    /// Intel SGX Root CA CRL (DER).
    #[serde(deserialize_with = "strict_hex")]
    pub root_ca_crl: Hex,
    /// PCK CRL of the platform's or processor's CA (DER).
    #[serde(deserialize_with = "strict_hex")]
    pub pck_crl: Hex,
    /// PEM chain of the TCB signing certificate and the root.
    pub tcb_info_issuer_chain: String,
    /// The TCB info JSON object, exactly as signed.
    pub tcb_info: String,
    /// ECDSA P-256 signature (r || s) over `tcb_info`.
    #[serde(deserialize_with = "strict_hex")]
    pub tcb_info_signature: Hex,
    /// PEM chain of the QE identity's signer and the root.
    pub qe_identity_issuer_chain: String,
    /// The QE identity JSON object, exactly as signed.
    pub qe_identity: String,
    /// ECDSA P-256 signature (r || s) over `qe_identity`.
    #[serde(deserialize_with = "strict_hex")]
    pub qe_identity_signature: Hex,
}

/// The response header of Intel PCS that carries the TCB info's issuer chain.
pub const TCB_INFO_ISSUER_CHAIN_HEADER: &str = "TCB-Info-Issuer-Chain";
/// The same header as PCS API v3 and SGX TCB info name it.
pub const SGX_TCB_INFO_ISSUER_CHAIN_HEADER: &str = "SGX-TCB-Info-Issuer-Chain";
/// The response header that carries the QE identity's issuer chain.
pub const QE_IDENTITY_ISSUER_CHAIN_HEADER: &str = "SGX-Enclave-Identity-Issuer-Chain";
/// The response header that carries the PCK CRL's issuer chain.
pub const PCK_CRL_ISSUER_CHAIN_HEADER: &str = "SGX-PCK-CRL-Issuer-Chain";

/// What Intel PCS (or a PCCS) API v4 answers, as received: the four
/// responses [`Collateral::from_pcs`] assembles into collateral.
#[derive(Debug, Clone, Copy, Default)]
pub struct PcsResponses<'a> {
    /// Body of `GET /tdx/certification/v4/tcb?fmspc=…`:
    /// `{"tcbInfo":{…},"signature":"<hex>"}`.
    pub tcb_info: &'a [u8],
    /// Its `TCB-Info-Issuer-Chain` header: URL-encoded PEM.
    pub tcb_info_issuer_chain: &'a [u8],
    /// Body of `GET /tdx/certification/v4/qe/identity`:
    /// `{"enclaveIdentity":{…},"signature":"<hex>"}`.
    pub qe_identity: &'a [u8],
    /// Its `SGX-Enclave-Identity-Issuer-Chain` header: URL-encoded PEM.
    pub qe_identity_issuer_chain: &'a [u8],
    /// Body of `GET /sgx/certification/v4/pckcrl?ca=platform|processor`:
    /// DER (with `&encoding=der`), PEM, or hex (as PCCS serves it).
    pub pck_crl: &'a [u8],
    /// Its `SGX-PCK-CRL-Issuer-Chain` header: URL-encoded PEM.
    pub pck_crl_issuer_chain: &'a [u8],
    /// The Intel SGX Root CA CRL (the URL in the root certificate, e.g.
    /// `https://certificates.trustedservices.intel.com/IntelSGXRootCA.der`):
    /// DER, PEM or hex.
    pub root_ca_crl: &'a [u8],
}

/// The field names of [`Collateral`]'s JSON, for messages.
const COLLATERAL_FIELDS: &str = "pck_crl_issuer_chain, root_ca_crl, pck_crl, tcb_info_issuer_chain, tcb_info, tcb_info_signature, qe_identity_issuer_chain, qe_identity, qe_identity_signature";

impl Collateral {
    /// Parses collateral JSON (`dcap-qvl`'s `QuoteCollateralV3`). A single
    /// Intel PCS response, or JSON missing a field, is refused saying what
    /// the whole collateral is and how to give it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > 4 * MAX_JSON_LEN {
            return Err(Error::TooLarge { what: "collateral" });
        }
        serde_json::from_slice(bytes).map_err(|e| {
            let pcs_piece = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
                .ok()
                .and_then(|object| {
                    ["tcbInfo", "enclaveIdentity"]
                        .into_iter()
                        .find(|key| object.contains_key(*key))
                });
            let reason = match pcs_piece {
                Some(key) => format!(
                    "this is one Intel PCS response ({key}); the collateral is the TCB info and QE identity responses, the PCK CRL, the root CA CRL and the issuer chains from their response headers: give them as a directory of PCS responses, or as one JSON object with the fields {COLLATERAL_FIELDS}"
                ),
                None => format!(
                    "{e}; expected one JSON object with the fields {COLLATERAL_FIELDS} (dcap-qvl's QuoteCollateralV3), or a directory of Intel PCS responses"
                ),
            };
            Error::Collateral {
                what: "collateral JSON",
                reason,
            }
        })
    }

    /// Assembles collateral from Intel PCS (or PCCS) responses: the signed
    /// JSON objects' exact text and signatures, the issuer chains decoded
    /// from their headers, the CRLs as DER. Nothing is verified here
    /// ([`verify`] does that); what is missing or malformed is named.
    pub fn from_pcs(r: &PcsResponses<'_>) -> Result<Self, Error> {
        let (tcb_info, tcb_info_signature) =
            signed_json(r.tcb_info, "TCB info response", "tcbInfo")?;
        let (qe_identity, qe_identity_signature) =
            signed_json(r.qe_identity, "QE identity response", "enclaveIdentity")?;
        Ok(Collateral {
            pck_crl_issuer_chain: issuer_chain(
                r.pck_crl_issuer_chain,
                "PCK CRL issuer chain",
                PCK_CRL_ISSUER_CHAIN_HEADER,
            )?,
            root_ca_crl: Hex(crl_body(r.root_ca_crl, "root CA CRL")?),
            pck_crl: Hex(crl_body(r.pck_crl, "PCK CRL")?),
            tcb_info_issuer_chain: issuer_chain(
                r.tcb_info_issuer_chain,
                "TCB info issuer chain",
                TCB_INFO_ISSUER_CHAIN_HEADER,
            )?,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: issuer_chain(
                r.qe_identity_issuer_chain,
                "QE identity issuer chain",
                QE_IDENTITY_ISSUER_CHAIN_HEADER,
            )?,
            qe_identity,
            qe_identity_signature,
        })
    }
}

/// Splits a PCS response `{"<field>": {...}, "signature": "<hex>"}` into
/// the exact text of the signed object and its signature.
fn signed_json(body: &[u8], what: &'static str, field: &str) -> Result<(String, Hex), Error> {
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow, rename = "tcbInfo")]
        tcb_info: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, rename = "enclaveIdentity")]
        enclave_identity: Option<&'a serde_json::value::RawValue>,
        signature: Option<String>,
    }
    let bad = |reason: String| Error::Collateral { what, reason };
    if body.len() > MAX_JSON_LEN {
        return Err(Error::TooLarge { what });
    }
    let shape = format!("Intel PCS's {{\"{field}\":{{...}},\"signature\":\"<hex>\"}}");
    let r: Response<'_> =
        serde_json::from_slice(body).map_err(|e| bad(format!("{e}; expected {shape}")))?;
    let raw = match field {
        "tcbInfo" => r.tcb_info,
        _ => r.enclave_identity,
    }
    .ok_or_else(|| bad(format!("no {field} object; expected {shape}")))?;
    let signature = r
        .signature
        .ok_or_else(|| bad(format!("no signature; expected {shape}")))?;
    let signature =
        hex::decode(signature.trim()).map_err(|e| bad(format!("signature is not hex: {e}")))?;
    Ok((raw.get().to_string(), Hex(signature)))
}

/// An issuer chain from its response header: URL-encoded PEM.
fn issuer_chain(header: &[u8], what: &'static str, name: &str) -> Result<String, Error> {
    let value = header.trim_ascii();
    if value.is_empty() {
        return Err(Error::Collateral {
            what,
            reason: format!(
                "absent; expected the {name} header of the PCS response (URL-encoded PEM certificates)"
            ),
        });
    }
    let pem = percent_encoding::percent_decode(value)
        .decode_utf8()
        .map_err(|e| Error::Collateral {
            what,
            reason: format!("the {name} header is not URL-encoded UTF-8: {e}"),
        })?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::Collateral {
            what,
            reason: format!("the {name} header holds no PEM certificate"),
        });
    }
    Ok(pem.into_owned())
}

/// A CRL response body as DER: DER as it is, hex text (PCCS) decoded, PEM
/// (`X509 CRL`) decoded.
fn crl_body(body: &[u8], what: &'static str) -> Result<Vec<u8>, Error> {
    if body.is_empty() {
        return Err(Error::Collateral {
            what,
            reason: "absent; expected the CRL as DER, PEM or hex".into(),
        });
    }
    if body.first() != Some(&0x30) {
        if let Ok(der) = hex::decode(body.trim_ascii()) {
            return Ok(der);
        }
    }
    crate::pki::crl_der(body).map_err(|e| Error::Collateral {
        what,
        reason: format!("{e}; expected the CRL as DER, PEM or hex"),
    })
}

/// One SVN of a TCB component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The security version.
    pub svn: u8,
}

/// The SVNs a TCB level requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcb {
    /// The 16 SGX components (CPUSVN bytes).
    #[serde(rename = "sgxtcbcomponents")]
    pub sgx_components: Vec<Component>,
    /// PCE security version.
    #[serde(rename = "pcesvn")]
    pub pce_svn: u16,
    /// The 16 TDX components (TEE_TCB_SVN bytes).
    #[serde(rename = "tdxtcbcomponents", default)]
    pub tdx_components: Vec<Component>,
}

/// A platform TCB level and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbLevel {
    /// The required SVNs.
    pub tcb: Tcb,
    /// When Intel released this TCB.
    pub tcb_date: String,
    /// Its status.
    pub tcb_status: TcbStatus,
    /// Advisories that apply at this level.
    #[serde(rename = "advisoryIDs", default)]
    pub advisory_ids: Vec<String>,
}

/// An ISV SVN threshold (QE or TDX module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsvSvn<T> {
    /// The minimum security version.
    pub isvsvn: T,
}

/// A level of a TDX module identity (SVN `u8`) or of the QE identity (`u16`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsvTcbLevel<T> {
    /// The minimum security version.
    pub tcb: IsvSvn<T>,
    /// When Intel released it.
    pub tcb_date: String,
    /// Its status.
    pub tcb_status: TcbStatus,
    /// Advisories that apply.
    #[serde(rename = "advisoryIDs", default)]
    pub advisory_ids: Vec<String>,
}

/// A level of a TDX module identity.
pub type ModuleTcbLevel = IsvTcbLevel<u8>;
/// A level of the QE identity.
pub type QeTcbLevel = IsvTcbLevel<u16>;

/// The expected signer and attributes of the TDX module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxModule {
    /// Expected MRSIGNERSEAM.
    pub mrsigner: Hex,
    /// Expected SEAMATTRIBUTES.
    pub attributes: Hex,
    /// Which SEAMATTRIBUTES bits are compared.
    pub attributes_mask: Hex,
}

/// A TDX module identity for one module version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxModuleIdentity {
    /// `TDX_<version in hex>`.
    pub id: String,
    /// Expected MRSIGNERSEAM.
    pub mrsigner: Hex,
    /// Expected SEAMATTRIBUTES.
    pub attributes: Hex,
    /// Which SEAMATTRIBUTES bits are compared.
    pub attributes_mask: Hex,
    /// Its levels, highest first.
    pub tcb_levels: Vec<ModuleTcbLevel>,
}

/// Intel's TCB info (version 3, id "TDX").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbInfo {
    /// "TDX".
    pub id: String,
    /// 3.
    pub version: u32,
    /// Issued at (RFC 3339).
    pub issue_date: String,
    /// Must be refreshed by (RFC 3339).
    pub next_update: String,
    /// The platform family it describes.
    pub fmspc: Hex,
    /// PCE ID.
    pub pce_id: Hex,
    /// Evaluation data number (grows with each TCB recovery).
    pub tcb_evaluation_data_number: u32,
    /// The default TDX module identity.
    #[serde(default)]
    pub tdx_module: Option<TdxModule>,
    /// TDX module identities per version.
    #[serde(default)]
    pub tdx_module_identities: Vec<TdxModuleIdentity>,
    /// Platform TCB levels.
    pub tcb_levels: Vec<TcbLevel>,
}

/// Intel's identity of the TD Quoting Enclave (version 2, id "TD_QE").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QeIdentity {
    /// "TD_QE".
    pub id: String,
    /// 2.
    pub version: u32,
    /// Issued at (RFC 3339).
    pub issue_date: String,
    /// Must be refreshed by (RFC 3339).
    pub next_update: String,
    /// Evaluation data number.
    pub tcb_evaluation_data_number: u32,
    /// Expected MISCSELECT.
    pub miscselect: Hex,
    /// Which MISCSELECT bits are compared.
    pub miscselect_mask: Hex,
    /// Expected attributes.
    pub attributes: Hex,
    /// Which attribute bits are compared.
    pub attributes_mask: Hex,
    /// Expected MRSIGNER.
    pub mrsigner: Hex,
    /// Expected ISVPRODID.
    pub isvprodid: u16,
    /// Levels by ISVSVN, highest first.
    pub tcb_levels: Vec<QeTcbLevel>,
}

/// Collateral whose signatures, chains, CRLs and dates verified.
#[derive(Debug, Clone)]
pub struct VerifiedCollateral {
    /// The TCB info.
    pub tcb_info: TcbInfo,
    /// The QE identity.
    pub qe_identity: QeIdentity,
    /// The root CA CRL.
    pub root_crl: pki::VerifiedCrl,
    /// The root the collateral chains to (DER).
    pub root_der: Vec<u8>,
    /// The chains of the TCB info's signer and, when Intel signed it with
    /// another certificate, the QE identity's.
    pub signers: Vec<pki::CertifiedChain>,
}

fn parse_time(what: &'static str, text: &str) -> Result<i64, Error> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| Error::Collateral {
            what,
            reason: format!("bad date {text:?}: {e}"),
        })
}

fn check_window(
    what: &'static str,
    issued: &str,
    next_update: &str,
    now: i64,
) -> Result<(), Error> {
    let from = parse_time(what, issued)?;
    let until = parse_time(what, next_update)?;
    if now < from || now > until {
        return Err(Error::CollateralNotValidAt {
            what,
            issued: issued.into(),
            next_update: next_update.into(),
            now: pki::rfc3339(now),
        });
    }
    Ok(())
}

/// What the TCB info signer's chain certifies, in reports.
const TCB_INFO_SIGNER: &str =
    "The chain of the collateral's signer (Intel's TCB info and QE identity)";
/// What a separate QE identity signer's chain certifies, in reports.
const QE_IDENTITY_SIGNER: &str = "The chain of the collateral's QE identity signer";

/// Verifies a signed JSON object: its signer's chain (signer, root) ends in
/// `anchors`, the signer is not revoked, and the signature covers the text.
/// Returns the signer's chain.
fn verify_signed_json(
    what: &'static str,
    text: &str,
    signature: &[u8],
    issuer_chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    root_crl: &pki::VerifiedCrl,
    now: i64,
) -> Result<pki::VerifiedChain, Error> {
    if text.len() > MAX_JSON_LEN {
        return Err(Error::TooLarge { what });
    }
    let signer = verify_signer(what, issuer_chain, anchors, now)?;
    if let Some(link) = signer.links.first() {
        check_not_revoked(link, root_crl, what)?;
    }
    verify_json_signature(what, text, signature, &signer.leaf_public_key)?;
    Ok(signer)
}

fn verify_json_signature(
    what: &'static str,
    text: &str,
    signature: &[u8],
    key: &[u8],
) -> Result<(), Error> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(text.as_bytes(), signature)
        .map_err(|_| Error::BadSignature { what })
}

/// Verifies a collateral signer's chain (signing certificate, root).
fn verify_signer(
    what: &'static str,
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    now: i64,
) -> Result<pki::VerifiedChain, Error> {
    if chain.len() != 2 {
        return Err(Error::Unsupported {
            field: "collateral signer chain length",
            expected: "2 (signing certificate, root CA)".into(),
            found: chain.len().to_string(),
        });
    }
    verify_chain(chain, anchors, now, &[what, "root CA"])
}

/// Verifies collateral against `anchors` at `now`: the root CRL (signed by
/// the root the TCB signer chains to), then TCB info and QE identity
/// (chain, revocation, signature, id and version, validity window).
pub fn verify(
    collateral: &Collateral,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<VerifiedCollateral, Error> {
    let signer_chain = crate::pem::certificates(
        collateral.tcb_info_issuer_chain.as_bytes(),
        "TCB info issuer chain",
    )?;
    let root_der = signer_chain.last().ok_or_else(|| Error::Collateral {
        what: "TCB info issuer chain",
        reason: "no certificate".into(),
    })?;
    // The root must be trusted before its CRL means anything.
    pki::find_anchor(anchors, root_der)?;
    let signer = verify_signer("TCB info", &signer_chain, anchors, now)?;
    let root_link = signer.links.last().ok_or(Error::TooLarge {
        what: "TCB info issuer chain",
    })?;
    let root_crl = pki::verify_crl(&collateral.root_ca_crl.0, root_link, now, "root CA CRL")?;
    if let Some(link) = signer.links.first() {
        check_not_revoked(link, &root_crl, "TCB info")?;
    }
    let mut signers = vec![signer.certified(TCB_INFO_SIGNER)];
    let tcb_signer = signer.leaf_public_key;
    if collateral.tcb_info.len() > MAX_JSON_LEN {
        return Err(Error::TooLarge { what: "TCB info" });
    }
    verify_json_signature(
        "TCB info",
        &collateral.tcb_info,
        &collateral.tcb_info_signature.0,
        &tcb_signer,
    )?;
    let tcb_info: TcbInfo =
        serde_json::from_str(&collateral.tcb_info).map_err(|e| Error::Collateral {
            what: "TCB info",
            reason: e.to_string(),
        })?;
    if tcb_info.id != "TDX" || tcb_info.version != 3 {
        return Err(Error::Unsupported {
            field: "TCB info id and version",
            expected: "TDX version 3".into(),
            found: format!("{} version {}", tcb_info.id, tcb_info.version),
        });
    }
    check_window("TCB info", &tcb_info.issue_date, &tcb_info.next_update, now)?;

    // Intel signs both with the same certificate: its chain is checked once.
    if collateral.qe_identity_issuer_chain == collateral.tcb_info_issuer_chain {
        if collateral.qe_identity.len() > MAX_JSON_LEN {
            return Err(Error::TooLarge {
                what: "QE identity",
            });
        }
        verify_json_signature(
            "QE identity",
            &collateral.qe_identity,
            &collateral.qe_identity_signature.0,
            &tcb_signer,
        )?;
    } else {
        let qe_signer = verify_signed_json(
            "QE identity",
            &collateral.qe_identity,
            &collateral.qe_identity_signature.0,
            &crate::pem::certificates(
                collateral.qe_identity_issuer_chain.as_bytes(),
                "QE identity issuer chain",
            )?,
            anchors,
            &root_crl,
            now,
        )?;
        signers.push(qe_signer.certified(QE_IDENTITY_SIGNER));
    }
    let qe_identity: QeIdentity =
        serde_json::from_str(&collateral.qe_identity).map_err(|e| Error::Collateral {
            what: "QE identity",
            reason: e.to_string(),
        })?;
    if qe_identity.id != "TD_QE" || !(2..=3).contains(&qe_identity.version) {
        return Err(Error::Unsupported {
            field: "QE identity id and version",
            expected: "TD_QE version 2 or 3".into(),
            found: format!("{} version {}", qe_identity.id, qe_identity.version),
        });
    }
    check_window(
        "QE identity",
        &qe_identity.issue_date,
        &qe_identity.next_update,
        now,
    )?;
    Ok(VerifiedCollateral {
        tcb_info,
        qe_identity,
        root_crl,
        root_der: root_der.clone(),
        signers,
    })
}
