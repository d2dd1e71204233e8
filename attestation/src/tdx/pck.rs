//! Intel's SGX extension in a PCK certificate (OID 1.2.840.113741.1.13.1):
//! the platform's FMSPC, PCE ID and the TCB it was certified at. Layout from
//! Intel's "SGX PCK Certificate and Certificate Revocation List Profile
//! Specification", section 1.5.
//!
//! Parsed with `der-parser`; every lookup is checked, nothing indexes.

use der_parser::ber::BerObject;
use der_parser::der::parse_der;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::Error;

/// The SGX extension's OID.
const SGX_EXTENSIONS: &str = "1.2.840.113741.1.13.1";
/// Its DER content octets: the prefix of every OID inside the extension.
const SGX_OID_DER: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
// The entries' OIDs below the extension's, as their trailing arcs (each
// below 128, so one content octet per arc): compared as bytes, not text.
const TCB: &[u8] = &[2];
const PCESVN: &[u8] = &[2, 17];
const CPUSVN: &[u8] = &[2, 18];
const PCEID: &[u8] = &[3];
const FMSPC: &[u8] = &[4];

/// The dotted name of an entry's OID, for messages.
fn name(arcs: &[u8]) -> String {
    arcs.iter()
        .fold(SGX_EXTENSIONS.to_string(), |acc, a| format!("{acc}.{a}"))
}

/// What the PCK certificate says about the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtension {
    /// Family-model-stepping-platform-custom SKU: selects the TCB info.
    pub fmspc: [u8; 6],
    /// ID of the Provisioning Certification Enclave.
    pub pce_id: [u8; 2],
    /// The 16 SGX TCB component SVNs the certificate was issued for.
    pub cpu_svn: [u8; 16],
    /// The PCE security version the certificate was issued for.
    pub pce_svn: u16,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Certificate {
        position: "PCK leaf".into(),
        subject: "?".into(),
        reason: format!("SGX extension: {}", reason.into()),
    }
}

/// The SGX extension's OID arcs.
pub const SGX_EXTENSIONS_OID: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];

/// Reads the SGX extension of a DER PCK certificate.
pub fn parse(pck_der: &[u8]) -> Result<PckExtension, Error> {
    let (_, cert) = X509Certificate::from_der(pck_der).map_err(|e| bad(format!("{e}")))?;
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == SGX_EXTENSIONS)
        .ok_or_else(|| bad("absent"))?;
    parse_extension(ext.value)
}

/// Reads the SGX extension's value (its extnValue contents).
pub fn parse_extension(value: &[u8]) -> Result<PckExtension, Error> {
    let (_, root) = parse_der(value).map_err(|e| bad(format!("bad DER: {e}")))?;
    let entries = pairs(&root)?;
    let octets = |arcs: &[u8], want: usize| -> Result<Vec<u8>, Error> {
        let value = find(&entries, arcs)?;
        let bytes = value
            .as_slice()
            .map_err(|_| bad(format!("{} is not an OCTET STRING", name(arcs))))?;
        if bytes.len() != want {
            return Err(bad(format!(
                "{} has {} bytes, expected {want}",
                name(arcs),
                bytes.len()
            )));
        }
        Ok(bytes.to_vec())
    };
    let mut fmspc = [0u8; 6];
    fmspc.copy_from_slice(&octets(FMSPC, 6)?);
    let mut pce_id = [0u8; 2];
    pce_id.copy_from_slice(&octets(PCEID, 2)?);

    let tcb = pairs(find(&entries, TCB)?)?;
    let mut cpu_svn = [0u8; 16];
    let raw = find(&tcb, CPUSVN)?
        .as_slice()
        .map_err(|_| bad("CPUSVN is not an OCTET STRING"))?;
    if raw.len() != 16 {
        return Err(bad(format!("CPUSVN has {} bytes, expected 16", raw.len())));
    }
    cpu_svn.copy_from_slice(raw);
    // The 16 components are also listed one by one (…13.1.2.1 to .16); they must agree.
    for (component, svn) in (1u8..).zip(cpu_svn.iter()) {
        let arcs = [2, component];
        let listed = find(&tcb, &arcs)?
            .as_u32()
            .map_err(|_| bad(format!("{} is not an INTEGER", name(&arcs))))?;
        if listed != u32::from(*svn) {
            return Err(bad(format!(
                "TCB component {component} is {listed} but CPUSVN byte says {svn}"
            )));
        }
    }
    let pce_svn = find(&tcb, PCESVN)?
        .as_u32()
        .ok()
        .and_then(|v| u16::try_from(v).ok())
        .ok_or_else(|| bad("PCESVN is not a 16-bit INTEGER"))?;
    Ok(PckExtension {
        fmspc,
        pce_id,
        cpu_svn,
        pce_svn,
    })
}

/// Which Intel PCS collateral a quote needs: its platform's FMSPC (from the
/// PCK certificate) and the PCK CA that issued it, as PCS API v4 names them
/// in `/tdx/certification/v4/tcb?fmspc=…` and `/sgx/certification/v4/pckcrl?ca=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcsPlatform {
    /// The FMSPC, uppercase hex as PCS prints it.
    pub fmspc: String,
    /// `platform` or `processor`.
    pub ca: &'static str,
}

/// The collateral a quote needs, read from its PCK chain (not verified: it
/// only says what to fetch; the collateral is verified against the chain).
pub fn pcs_platform(quote: &super::Quote) -> Result<PcsPlatform, Error> {
    let chain = crate::pki::pem_certificates(&quote.signature.pck_chain_pem)?;
    let (Some(leaf), Some(ca)) = (chain.first(), chain.get(1)) else {
        return Err(Error::Unsupported {
            field: "PCK certificate chain length",
            expected: "at least 2 (PCK leaf, PCK CA)".into(),
            found: chain.len().to_string(),
        });
    };
    let fmspc = hex::encode_upper(parse(leaf)?.fmspc);
    let (_, cert) = X509Certificate::from_der(ca).map_err(|e| Error::Certificate {
        position: "PCK CA".into(),
        subject: "?".into(),
        reason: format!("bad DER: {e}"),
    })?;
    let subject = cert.subject().to_string();
    let ca = if subject.contains("Processor") {
        "processor"
    } else if subject.contains("Platform") {
        "platform"
    } else {
        return Err(Error::Certificate {
            position: "PCK CA".into(),
            subject,
            reason: "neither Intel's platform nor its processor CA".into(),
        });
    };
    Ok(PcsPlatform { fmspc, ca })
}

/// Reads a SEQUENCE of SEQUENCE { OID, value } into (OID content octets,
/// value) pairs.
fn pairs<'a, 'b>(seq: &'b BerObject<'a>) -> Result<Vec<(&'b [u8], &'b BerObject<'a>)>, Error> {
    let items = seq.as_sequence().map_err(|_| bad("expected a SEQUENCE"))?;
    items
        .iter()
        .map(|item| {
            let pair = item
                .as_sequence()
                .map_err(|_| bad("expected SEQUENCE { OID, value }"))?;
            match pair.as_slice() {
                [oid, value] => Ok((
                    oid.as_oid().map_err(|_| bad("expected an OID"))?.as_bytes(),
                    value,
                )),
                _ => Err(bad("expected SEQUENCE { OID, value }")),
            }
        })
        .collect()
}

/// The value of the entry whose OID is the SGX extension's followed by `arcs`.
fn find<'a, 'b>(
    entries: &[(&'b [u8], &'b BerObject<'a>)],
    arcs: &[u8],
) -> Result<&'b BerObject<'a>, Error> {
    entries
        .iter()
        .find(|(oid, _)| oid.strip_prefix(SGX_OID_DER.as_slice()) == Some(arcs))
        .map(|(_, v)| *v)
        .ok_or_else(|| bad(format!("{} is absent", name(arcs))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oid_prefix_is_the_sgx_extension_oid_encoded() {
        let der = crate::der::oid(&SGX_EXTENSIONS_OID);
        assert_eq!(der.get(2..), Some(SGX_OID_DER.as_slice()));
        assert_eq!(name(PCESVN), "1.2.840.113741.1.13.1.2.17");
    }
}
