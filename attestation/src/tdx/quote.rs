//! The Intel TDX quote, versions 4 and 5, as laid out in Intel's "TDX DCAP
//! Quote Generation Library and Quote Verification Library" API (rev. 0.9,
//! 2023), sections A.3 and A.4: a 48-byte header; in v4 a 584-byte TD report
//! body (TDX 1.0), in v5 a body descriptor (type 2: TDX 1.0, 584 bytes;
//! type 3: TDX 1.5, 648 bytes, adding TEE_TCB_SVN2 and MRSERVICETD) and the
//! body; then the quote signature data with ECDSA P-256 certification data of
//! type 6 (QE report certification data) that nests type 5 (PCK certificate
//! chain).
//!
//! Parsing is total: every length is bounded by the input, every structure
//! boundary is checked. After the declared signature data only zero padding
//! is accepted (the kernel's quote buffers are zero-padded to a fixed size);
//! any other trailing byte is rejected. The PCK chain's PEM text is kept as
//! bytes here and read strictly by [`crate::pem`] when the quote is
//! verified. [`Quote::encode`] writes the same
//! layout; the simulated TEE uses it.

use kokon_bytes::Reader;

use crate::Error;

/// Quote version 4: TD report body 1.0 directly after the header.
pub const QUOTE_VERSION_4: u16 = 4;
/// Quote version 5: a typed body descriptor after the header.
pub const QUOTE_VERSION_5: u16 = 5;
/// v5 body type of a TDX 1.0 TD report.
pub const BODY_TYPE_TD10: u16 = 2;
/// v5 body type of a TDX 1.5 TD report.
pub const BODY_TYPE_TD15: u16 = 3;
/// Size of a TDX 1.5 TD report body.
pub const TD15_REPORT_BODY_LEN: usize = 648;
/// Attestation key type 2: ECDSA-256-with-P-256 curve.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// TEE type of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x0000_0081;
/// Intel's QE vendor ID (939A7233-F79C-4CA9-940A-0DB3957F0607).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Certification data type 5: PCK certificate chain (PEM, leaf first).
pub const CERT_DATA_PCK_CHAIN: u16 = 5;
/// Certification data type 6: QE report certification data.
pub const CERT_DATA_QE_REPORT: u16 = 6;
/// Size of the quote header.
pub const HEADER_LEN: usize = 48;
/// Size of a TDX 1.0 TD report body.
pub const TD_REPORT_BODY_LEN: usize = 584;
/// Size of an SGX enclave report body (the QE report).
pub const QE_REPORT_LEN: usize = 384;
/// Bit 0 of TD attributes: the TD is debuggable (its memory readable by the host).
pub const TD_ATTRIBUTES_DEBUG: u64 = 1;
/// Bit 28 of TD attributes: EPT violations are not converted to #VE (a
/// mitigation production TDs enable).
pub const TD_ATTRIBUTES_SEPT_VE_DISABLE: u64 = 1 << 28;

/// Largest certification data accepted (PCK chains are about 4 KiB).
const MAX_CERT_DATA_LEN: u32 = 64 * 1024;

/// A 48-byte SHA-384 measurement register.
pub type Measurement = [u8; 48];

/// The quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Quote format version (4).
    pub version: u16,
    /// Attestation key type (2 = ECDSA P-256).
    pub att_key_type: u16,
    /// TEE type (0x81 = TDX).
    pub tee_type: u32,
    /// Security version of the Quoting Enclave.
    pub qe_svn: u16,
    /// Security version of the Provisioning Certification Enclave.
    pub pce_svn: u16,
    /// Vendor of the Quoting Enclave.
    pub qe_vendor_id: [u8; 16],
    /// Platform identifier chosen by the QE.
    pub user_data: [u8; 20],
}

/// The TD report body (TDX 1.0): what the TDX module measured and the TD asserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReportBody {
    /// TCB SVNs of the TDX module and its components.
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    pub mr_seam: Measurement,
    /// Signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: Measurement,
    /// Attributes of the TDX module.
    pub seam_attributes: [u8; 8],
    /// TD attributes; bit 0 is DEBUG.
    pub td_attributes: [u8; 8],
    /// Extended features allowed to the TD.
    pub xfam: [u8; 8],
    /// Build-time measurement of the TD (initial memory: firmware).
    pub mr_td: Measurement,
    /// Software-defined configuration ID.
    pub mr_config_id: Measurement,
    /// Software-defined owner ID.
    pub mr_owner: Measurement,
    /// Software-defined owner configuration.
    pub mr_owner_config: Measurement,
    /// Runtime-extendable measurement registers 0-3.
    pub rtmr: [Measurement; 4],
    /// 64 bytes chosen by the TD: kokon puts SHA-512 of its claims here.
    pub report_data: [u8; 64],
    /// The TDX 1.5 additions, present when the quote carries a 1.5 body.
    pub td15: Option<Td15Extension>,
}

/// What a TDX 1.5 TD report adds to 1.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Td15Extension {
    /// TCB SVNs of the TDX module currently running (after a TD-preserving update).
    pub tee_tcb_svn2: [u8; 16],
    /// Measurement of the service TDs bound to this TD (zero when none).
    pub mr_service_td: Measurement,
}

/// The signature part of a quote with its certification data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteSignature {
    /// ECDSA P-256 signature (r || s) over header and body by the attestation key.
    pub signature: [u8; 64],
    /// The attestation public key (x || y).
    pub attestation_key: [u8; 64],
    /// The QE report that binds the attestation key.
    pub qe_report: QeReport,
    /// ECDSA P-256 signature (r || s) over the QE report by the PCK key.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed into the QE report data.
    pub qe_auth_data: Vec<u8>,
    /// The PCK certificate chain in PEM, leaf first (certification data type 5).
    pub pck_chain_pem: Vec<u8>,
}

/// The parts of the QE's SGX report body that verification uses, plus its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeReport {
    /// The 384 raw bytes, as signed by the PCK key.
    pub raw: [u8; QE_REPORT_LEN],
    /// CPU security version of the platform the QE ran on.
    pub cpu_svn: [u8; 16],
    /// MISCSELECT of the QE.
    pub misc_select: u32,
    /// SGX attributes of the QE (bit 1 of byte 0: debug).
    pub attributes: [u8; 16],
    /// MRENCLAVE of the Quoting Enclave.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER of the Quoting Enclave.
    pub mr_signer: [u8; 32],
    /// ISV product ID.
    pub isv_prod_id: u16,
    /// ISV security version.
    pub isv_svn: u16,
    /// Report data: SHA-256(attestation key || QE auth data) then 32 zero bytes.
    pub report_data: [u8; 64],
}

/// A parsed TDX quote (v4, or v5 with its body descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The header.
    pub header: Header,
    /// The TD report body.
    pub body: TdReportBody,
    /// Signature and certification data.
    pub signature: QuoteSignature,
    /// The bytes covered by the quote signature (header and body).
    pub signed_bytes: Vec<u8>,
}

impl TdReportBody {
    /// TD attributes as an integer.
    pub fn td_attributes_u64(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }

    /// Whether the TD runs in debug mode.
    pub fn is_debug(&self) -> bool {
        self.td_attributes_u64() & TD_ATTRIBUTES_DEBUG != 0
    }

    fn parse(r: &mut Reader<'_>, td15: bool) -> Result<Self, Error> {
        Ok(Self {
            tee_tcb_svn: r.array("TD report body: TEE_TCB_SVN")?,
            mr_seam: r.array("TD report body: MRSEAM")?,
            mr_signer_seam: r.array("TD report body: MRSIGNERSEAM")?,
            seam_attributes: r.array("TD report body: SEAMATTRIBUTES")?,
            td_attributes: r.array("TD report body: TDATTRIBUTES")?,
            xfam: r.array("TD report body: XFAM")?,
            mr_td: r.array("TD report body: MRTD")?,
            mr_config_id: r.array("TD report body: MRCONFIGID")?,
            mr_owner: r.array("TD report body: MROWNER")?,
            mr_owner_config: r.array("TD report body: MROWNERCONFIG")?,
            rtmr: [
                r.array("TD report body: RTMR0")?,
                r.array("TD report body: RTMR1")?,
                r.array("TD report body: RTMR2")?,
                r.array("TD report body: RTMR3")?,
            ],
            report_data: r.array("TD report body: REPORTDATA")?,
            td15: match td15 {
                false => None,
                true => Some(Td15Extension {
                    tee_tcb_svn2: r.array("TD report body 1.5: TEE_TCB_SVN2")?,
                    mr_service_td: r.array("TD report body 1.5: MRSERVICETD")?,
                }),
            },
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tee_tcb_svn);
        for part in [&self.mr_seam, &self.mr_signer_seam] {
            out.extend_from_slice(part);
        }
        for part in [&self.seam_attributes, &self.td_attributes, &self.xfam] {
            out.extend_from_slice(part);
        }
        for part in [
            &self.mr_td,
            &self.mr_config_id,
            &self.mr_owner,
            &self.mr_owner_config,
        ] {
            out.extend_from_slice(part);
        }
        for rtmr in &self.rtmr {
            out.extend_from_slice(rtmr);
        }
        out.extend_from_slice(&self.report_data);
        if let Some(td15) = &self.td15 {
            out.extend_from_slice(&td15.tee_tcb_svn2);
            out.extend_from_slice(&td15.mr_service_td);
        }
    }
}

impl Header {
    fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let header = Self {
            version: r.u16_le("quote header: version")?,
            att_key_type: r.u16_le("quote header: attestation key type")?,
            tee_type: r.u32_le("quote header: TEE type")?,
            qe_svn: r.u16_le("quote header: QE SVN")?,
            pce_svn: r.u16_le("quote header: PCE SVN")?,
            qe_vendor_id: r.array("quote header: QE vendor ID")?,
            user_data: r.array("quote header: user data")?,
        };
        if header.version != QUOTE_VERSION_4 && header.version != QUOTE_VERSION_5 {
            return Err(Error::Unsupported {
                field: "quote version",
                expected: format!("{QUOTE_VERSION_4} or {QUOTE_VERSION_5}"),
                found: header.version.to_string(),
            });
        }
        if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
            return Err(Error::Unsupported {
                field: "attestation key type",
                expected: format!("{ATT_KEY_TYPE_ECDSA_P256} (ECDSA P-256)"),
                found: header.att_key_type.to_string(),
            });
        }
        if header.tee_type != TEE_TYPE_TDX {
            return Err(Error::Unsupported {
                field: "TEE type",
                expected: format!("{TEE_TYPE_TDX:#x} (TDX)"),
                found: format!("{:#x}", header.tee_type),
            });
        }
        Ok(header)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.att_key_type.to_le_bytes());
        out.extend_from_slice(&self.tee_type.to_le_bytes());
        out.extend_from_slice(&self.qe_svn.to_le_bytes());
        out.extend_from_slice(&self.pce_svn.to_le_bytes());
        out.extend_from_slice(&self.qe_vendor_id);
        out.extend_from_slice(&self.user_data);
    }
}

impl QeReport {
    fn parse(raw: [u8; QE_REPORT_LEN]) -> Result<Self, Error> {
        let mut r = Reader::new(&raw);
        let cpu_svn = r.array("QE report: CPUSVN")?;
        let misc_select = r.u32_le("QE report: MISCSELECT")?;
        r.take(28, "QE report: reserved")?;
        let attributes = r.array("QE report: attributes")?;
        let mr_enclave = r.array("QE report: MRENCLAVE")?;
        r.take(32, "QE report: reserved")?;
        let mr_signer = r.array("QE report: MRSIGNER")?;
        r.take(96, "QE report: reserved")?;
        let isv_prod_id = r.u16_le("QE report: ISVPRODID")?;
        let isv_svn = r.u16_le("QE report: ISVSVN")?;
        r.take(60, "QE report: reserved")?;
        let report_data = r.array("QE report: report data")?;
        r.finish("QE report")?;
        Ok(Self {
            raw,
            cpu_svn,
            misc_select,
            attributes,
            mr_enclave,
            mr_signer,
            isv_prod_id,
            isv_svn,
            report_data,
        })
    }

    /// Builds a QE report body with the given identity and report data.
    pub fn build(
        mr_enclave: [u8; 32],
        mr_signer: [u8; 32],
        isv_prod_id: u16,
        isv_svn: u16,
        report_data: [u8; 64],
    ) -> Self {
        let mut raw = Vec::with_capacity(QE_REPORT_LEN);
        raw.extend_from_slice(&[0u8; 16 + 4 + 28 + 16]);
        raw.extend_from_slice(&mr_enclave);
        raw.extend_from_slice(&[0u8; 32]);
        raw.extend_from_slice(&mr_signer);
        raw.extend_from_slice(&[0u8; 96]);
        raw.extend_from_slice(&isv_prod_id.to_le_bytes());
        raw.extend_from_slice(&isv_svn.to_le_bytes());
        raw.extend_from_slice(&[0u8; 60]);
        raw.extend_from_slice(&report_data);
        let mut fixed = [0u8; QE_REPORT_LEN];
        fixed.copy_from_slice(&raw);
        Self {
            raw: fixed,
            cpu_svn: [0; 16],
            misc_select: 0,
            attributes: [0; 16],
            mr_enclave,
            mr_signer,
            isv_prod_id,
            isv_svn,
            report_data,
        }
    }
}

impl QuoteSignature {
    fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let signature = r.array("quote signature")?;
        let attestation_key = r.array("attestation public key")?;
        let cert_type = r.u16_le("certification data type")?;
        if cert_type != CERT_DATA_QE_REPORT {
            return Err(Error::Unsupported {
                field: "certification data type",
                expected: format!("{CERT_DATA_QE_REPORT} (QE report certification data)"),
                found: cert_type.to_string(),
            });
        }
        let len = bounded_len(r.u32_le("certification data size")?, "certification data")?;
        let mut qe = r.sub(len, "certification data")?;
        let qe_report = QeReport::parse(qe.array("QE report")?)?;
        let qe_report_signature = qe.array("QE report signature")?;
        let auth_len = qe.u16_le("QE authentication data size")?;
        let qe_auth_data = qe
            .take(usize::from(auth_len), "QE authentication data")?
            .to_vec();
        let inner_type = qe.u16_le("PCK certification data type")?;
        if inner_type != CERT_DATA_PCK_CHAIN {
            return Err(Error::Unsupported {
                field: "PCK certification data type",
                expected: format!("{CERT_DATA_PCK_CHAIN} (PCK certificate chain)"),
                found: inner_type.to_string(),
            });
        }
        let chain_len = bounded_len(
            qe.u32_le("PCK certification data size")?,
            "PCK certificate chain",
        )?;
        let pck_chain_pem = qe
            .take(chain_len as usize, "PCK certificate chain")?
            .to_vec();
        qe.finish("QE report certification data")?;
        Ok(Self {
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            pck_chain_pem,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut qe = Vec::new();
        qe.extend_from_slice(&self.qe_report.raw);
        qe.extend_from_slice(&self.qe_report_signature);
        let auth_len = u16::try_from(self.qe_auth_data.len()).map_err(|_| Error::TooLarge {
            what: "QE authentication data",
        })?;
        qe.extend_from_slice(&auth_len.to_le_bytes());
        qe.extend_from_slice(&self.qe_auth_data);
        qe.extend_from_slice(&CERT_DATA_PCK_CHAIN.to_le_bytes());
        qe.extend_from_slice(
            &len_u32(self.pck_chain_pem.len(), "PCK certificate chain")?.to_le_bytes(),
        );
        qe.extend_from_slice(&self.pck_chain_pem);

        let mut sig = Vec::new();
        sig.extend_from_slice(&self.signature);
        sig.extend_from_slice(&self.attestation_key);
        sig.extend_from_slice(&CERT_DATA_QE_REPORT.to_le_bytes());
        sig.extend_from_slice(&len_u32(qe.len(), "certification data")?.to_le_bytes());
        sig.extend_from_slice(&qe);

        out.extend_from_slice(&len_u32(sig.len(), "quote signature data")?.to_le_bytes());
        out.extend_from_slice(&sig);
        Ok(())
    }
}

fn bounded_len(len: u32, what: &'static str) -> Result<u32, Error> {
    if len > MAX_CERT_DATA_LEN {
        return Err(Error::TooLarge { what });
    }
    Ok(len)
}

fn len_u32(len: usize, what: &'static str) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::TooLarge { what })
}

impl Quote {
    /// Parses a TDX quote v4 or v5. Fails on any malformed or truncated
    /// structure and on trailing bytes other than zero padding.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let header = Header::parse(&mut r)?;
        let body = if header.version == QUOTE_VERSION_5 {
            let body_type = r.u16_le("quote v5 body type")?;
            let size = r.u32_le("quote v5 body size")?;
            let (td15, expected) = match body_type {
                BODY_TYPE_TD10 => (false, TD_REPORT_BODY_LEN),
                BODY_TYPE_TD15 => (true, TD15_REPORT_BODY_LEN),
                other => {
                    return Err(Error::Unsupported {
                        field: "quote v5 body type",
                        expected: format!(
                            "{BODY_TYPE_TD10} (TDX 1.0) or {BODY_TYPE_TD15} (TDX 1.5)"
                        ),
                        found: other.to_string(),
                    })
                }
            };
            if usize::try_from(size).ok() != Some(expected) {
                return Err(Error::Unsupported {
                    field: "quote v5 body size",
                    expected: expected.to_string(),
                    found: size.to_string(),
                });
            }
            let mut body = r.sub(size, "TD report body")?;
            let parsed = TdReportBody::parse(&mut body, td15)?;
            body.finish("TD report body")?;
            parsed
        } else {
            TdReportBody::parse(&mut r, false)?
        };
        let signed_bytes = bytes.get(..r.offset()).unwrap_or_default().to_vec();
        let sig_len = r.u32_le("quote signature data size")?;
        let mut sig = r.sub(
            bounded_len(sig_len, "quote signature data")?,
            "quote signature data",
        )?;
        let signature = QuoteSignature::parse(&mut sig)?;
        sig.finish("quote signature data")?;
        r.finish_zero_padded("quote")?;
        Ok(Self {
            header,
            body,
            signature,
            signed_bytes,
        })
    }

    /// Encodes header and body: the bytes the attestation key signs.
    pub fn encode_signed_part(header: &Header, body: &TdReportBody) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 6 + TD15_REPORT_BODY_LEN);
        header.encode(&mut out);
        if header.version == QUOTE_VERSION_5 {
            let (body_type, len) = match body.td15 {
                None => (BODY_TYPE_TD10, TD_REPORT_BODY_LEN),
                Some(_) => (BODY_TYPE_TD15, TD15_REPORT_BODY_LEN),
            };
            out.extend_from_slice(&body_type.to_le_bytes());
            out.extend_from_slice(&(len as u32).to_le_bytes());
        }
        body.encode(&mut out);
        out
    }

    /// Encodes the whole quote.
    pub fn encode(
        header: &Header,
        body: &TdReportBody,
        signature: &QuoteSignature,
    ) -> Result<Vec<u8>, Error> {
        let mut out = Self::encode_signed_part(header, body);
        signature.encode(&mut out)?;
        Ok(out)
    }
}
