//! The simulated TEE: real TDX quote v4 structures under a fake root (the
//! verifier also parses v5, which the sim does not produce).
//!
//! A [`SimRoot`] is an ECDSA P-256 CA created once per installation (the
//! caller stores it). [`SimTdx`] plays the platform: it issues a PCK platform
//! CA and a PCK leaf certificate under the root, an attestation key, and a QE
//! report signed by the PCK key that binds the attestation key, exactly as
//! Intel's Quoting Enclave does. Its quotes go through the same
//! [`crate::tdx::verify_quote`] as hardware quotes; only the root differs,
//! and the root is marked simulated so production policies refuse it.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub mod gpu;
mod hierarchy;
pub mod ocsp;
mod pcs;
pub mod rim;
pub use gpu::SimGpu;
pub use pcs::{SimTcb, SIM_CPU_SVN, SIM_FMSPC, SIM_PCE_SVN};

use crate::pki::TrustAnchor;
use crate::tdx::quote::{self, Header, Measurement, QeReport, Quote, QuoteSignature, TdReportBody};
use crate::tdx::rtmr_extend;
use crate::Error;

/// The name policies use for this installation's sim root.
pub const SIM_ROOT: &str = "sim-local";
/// Directory of the sim root inside kokon's data directory.
pub const SIM_ROOT_DIR: &str = "sim-root";
/// File name of the sim root certificate (DER) inside [`SIM_ROOT_DIR`].
pub const SIM_ROOT_CERT_FILE: &str = "root.der";
/// File name of the sim root key (PKCS#8 DER) inside [`SIM_ROOT_DIR`].
pub const SIM_ROOT_KEY_FILE: &str = "root.key";
/// Common name of every sim root, so that a human reading a chain knows.
pub const SIM_ROOT_CN: &str = "kokon simulated TEE root (NOT HARDWARE)";
/// QE authentication data: Intel's QE sends 32 bytes (0, 1, ..., 31).
const QE_AUTH_DATA: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];
/// ISVPRODID of the sim Quoting Enclave.
pub const SIM_QE_ISV_PROD_ID: u16 = 2;
/// Validity of a sim root.
const ROOT_VALIDITY_SECS: i64 = 10 * 365 * 24 * 3600;
/// Validity of the platform certificates issued at each start.
const PLATFORM_VALIDITY_SECS: i64 = 365 * 24 * 3600;
/// Backdating of certificates to tolerate clock skew.
const BACKDATE_SECS: i64 = 24 * 3600;

fn sim_err(e: impl std::fmt::Display) -> Error {
    Error::Sim(e.to_string())
}

fn validity(params: &mut CertificateParams, now: i64, secs: i64) -> Result<(), Error> {
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + time_offset(now - BACKDATE_SECS)?;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + time_offset(now + secs)?;
    Ok(())
}

fn time_offset(secs: i64) -> Result<std::time::Duration, Error> {
    u64::try_from(secs)
        .map(std::time::Duration::from_secs)
        .map_err(|_| sim_err("time before 1970"))
}

fn ca_params(cn: &str, now: i64, secs: i64) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(sim_err)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "kokon simulated TEE");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, now, secs)?;
    Ok(params)
}

/// The per-installation root of the simulated TEE.
pub struct SimRoot {
    cert_der: Vec<u8>,
    key_pkcs8: Zeroizing<Vec<u8>>,
}

impl SimRoot {
    /// Creates a new root valid from (about) `now` for ten years.
    pub fn generate(now: i64) -> Result<Self, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sim_err)?;
        let cert = ca_params(SIM_ROOT_CN, now, ROOT_VALIDITY_SECS)?
            .self_signed(&key)
            .map_err(sim_err)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key_pkcs8: Zeroizing::new(key.serialize_der()),
        })
    }

    /// Loads a root from its certificate (DER) and PKCS#8 key (DER).
    pub fn from_parts(cert_der: Vec<u8>, key_pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, Error> {
        let root = Self {
            cert_der,
            key_pkcs8,
        };
        root.key_pair()?;
        Ok(root)
    }

    fn key_pair(&self) -> Result<KeyPair, Error> {
        KeyPair::from_pkcs8_der_and_sign_algo(
            &self.key_pkcs8.as_slice().into(),
            &PKCS_ECDSA_P256_SHA256,
        )
        .map_err(sim_err)
    }

    /// The root certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The root's private key (PKCS#8 DER).
    pub fn key_pkcs8(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// The root as a trust anchor, marked simulated.
    pub fn anchor(&self) -> TrustAnchor {
        anchor(self.cert_der.clone())
    }
}

/// A sim root certificate (DER) as a trust anchor named `sim-local`, marked simulated.
pub fn anchor(cert_der: Vec<u8>) -> TrustAnchor {
    TrustAnchor {
        name: SIM_ROOT.into(),
        der: cert_der,
        simulated: true,
    }
}

/// The sim's MRTD of an enclave binary: SHA-384 of its bytes.
pub fn mr_td_of(binary: &[u8]) -> Measurement {
    sha2::Sha384::digest(binary).into()
}

impl SimRoot {
    /// Loads the sim root from `<data_dir>/sim-root/`, creating it on first
    /// use: the enclave's process backend and the host of a development VM
    /// (which hands it to the guest) share it with the clients of this
    /// machine, which trust it.
    ///
    /// Creation writes certificate and key into a private temporary
    /// directory and renames that directory into place, so concurrent first
    /// starts agree on one root and never pair one's certificate with
    /// another's key.
    pub fn load_or_create(data_dir: &std::path::Path, now: i64) -> Result<Self, Error> {
        use std::fs;
        let io = |what: &str, path: &std::path::Path, e: std::io::Error| {
            Error::Sim(format!("{what} {}: {e}", path.display()))
        };
        let dir = data_dir.join(SIM_ROOT_DIR);
        if !dir.exists() {
            fs::create_dir_all(data_dir).map_err(|e| io("creating", data_dir, e))?;
            let tmp = data_dir.join(format!(".sim-root.{}", std::process::id()));
            fs::create_dir_all(&tmp).map_err(|e| io("creating", &tmp, e))?;
            let root = SimRoot::generate(now)?;
            for (name, bytes, mode) in [
                (SIM_ROOT_KEY_FILE, root.key_pkcs8(), 0o600),
                (SIM_ROOT_CERT_FILE, root.cert_der(), 0o644),
            ] {
                let path = tmp.join(name);
                write_new_file(&path, bytes, mode).map_err(|e| io("writing", &path, e))?;
            }
            if fs::rename(&tmp, &dir).is_err() {
                // Another process installed its root first: use that one.
                let _ = fs::remove_dir_all(&tmp);
            }
        }
        let cert_path = dir.join(SIM_ROOT_CERT_FILE);
        let key_path = dir.join(SIM_ROOT_KEY_FILE);
        let cert = fs::read(&cert_path).map_err(|e| io("reading", &cert_path, e))?;
        let key = Zeroizing::new(fs::read(&key_path).map_err(|e| io("reading", &key_path, e))?);
        SimRoot::from_parts(cert, key)
            .map_err(|e| Error::Sim(format!("sim root in {} is unusable: {e}", dir.display())))
    }
}

fn write_new_file(path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A development VM's launch measurements: what a TDX module would have
/// measured of the image its host boots (`kokon audit measure --tee tdx`
/// computes the same values from the image's files). The host hands them to
/// the guest with the sim root, as the hardware would measure the guest in
/// production, so a development VM's evidence carries its image's real
/// measurements and a policy pinning them rejects any other image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimLaunch {
    /// MRTD: the firmware.
    #[serde(with = "crate::serde_hex")]
    pub mrtd: Measurement,
    /// RTMR0: the firmware's configuration (zero when not computed).
    #[serde(with = "crate::serde_hex")]
    pub rtmr0: Measurement,
    /// RTMR1: the kernel.
    #[serde(with = "crate::serde_hex")]
    pub rtmr1: Measurement,
    /// RTMR2: the kernel command line and the initrd.
    #[serde(with = "crate::serde_hex")]
    pub rtmr2: Measurement,
}

impl SimLaunch {
    /// The simulated TD these measurements describe (never debug).
    pub fn td(&self) -> SimTd {
        SimTd {
            mr_td: self.mrtd,
            rtmr: [self.rtmr0, self.rtmr1, self.rtmr2],
            debug: false,
        }
    }
}

/// The TD's initial measurements in the simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTd {
    /// MRTD: in a development VM the image's (see [`SimLaunch`]); in the
    /// process backend kokon's sim takes SHA-384 of the enclave binary.
    pub mr_td: Measurement,
    /// RTMR0-2 at launch (firmware, kernel, initrd: none in the process backend).
    pub rtmr: [Measurement; 3],
    /// Whether the TD claims debug mode (TD attributes bit 0).
    pub debug: bool,
}

/// A simulated TDX platform and Quoting Enclave.
pub struct SimTdx {
    root_issuer: Issuer<'static, KeyPair>,
    root_der: Vec<u8>,
    ca_issuer: Issuer<'static, KeyPair>,
    ca_serial: Vec<u8>,
    pck_serial: Vec<u8>,
    pck_chain_pem: Vec<u8>,
    attestation_key: EcdsaKeyPair,
    qe_report: QeReport,
    qe_report_signature: [u8; 64],
    td: SimTd,
    rtmr3: Measurement,
    rng: SystemRandom,
}

impl SimTdx {
    /// Provisions a platform under `root` at `now`: PCK platform CA, PCK leaf,
    /// attestation key and its QE report.
    pub fn new(root: &SimRoot, td: SimTd, now: i64) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let root_key = root.key_pair()?;
        let root_issuer = Issuer::from_ca_cert_der(&root.cert_der.as_slice().into(), root_key)
            .map_err(sim_err)?;

        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sim_err)?;
        let mut ca_params = ca_params("kokon sim PCK Platform CA", now, PLATFORM_VALIDITY_SECS)?;
        let ca_serial = pcs::serial(&rng)?;
        ca_params.serial_number = Some(ca_serial.clone().into());
        let ca_cert = ca_params
            .signed_by(&ca_key, &root_issuer)
            .map_err(sim_err)?;
        let ca_issuer = Issuer::new(ca_params, ca_key);

        let (pck_key, pck_rcgen) = signing_key(&rng)?;
        let mut leaf_params = leaf_params(
            "kokon sim PCK Certificate",
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            now,
            PLATFORM_VALIDITY_SECS,
        )?;
        let pck_serial = pcs::serial(&rng)?;
        leaf_params.serial_number = Some(pck_serial.clone().into());
        leaf_params.custom_extensions = vec![pcs::sgx_extension()];
        let leaf_cert = leaf_params
            .signed_by(&pck_rcgen, &ca_issuer)
            .map_err(sim_err)?;

        let mut pck_chain_pem = String::new();
        for der in [
            leaf_cert.der().as_ref(),
            ca_cert.der().as_ref(),
            root.cert_der.as_slice(),
        ] {
            pck_chain_pem.push_str(&pem_encode(der));
        }

        let att_pkcs8 = Zeroizing::new(
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(sim_err)?
                .as_ref()
                .to_vec(),
        );
        let attestation_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &att_pkcs8, &rng)
                .map_err(sim_err)?;
        let att_pub = attestation_public_key(&attestation_key)?;
        let qe_auth_data: &[u8] = &QE_AUTH_DATA;
        let mut qe_report_data = [0u8; 64];
        qe_report_data[..32].copy_from_slice(
            &Sha256::new()
                .chain_update(att_pub)
                .chain_update(qe_auth_data)
                .finalize(),
        );
        let qe_report = QeReport::build(
            Sha256::digest(b"kokon sim QE").into(),
            Sha256::digest(b"kokon sim QE signer").into(),
            SIM_QE_ISV_PROD_ID,
            8,
            qe_report_data,
        );
        let qe_report_signature = sign(&pck_key, &rng, &qe_report.raw)?;

        Ok(Self {
            root_issuer,
            root_der: root.cert_der.clone(),
            ca_issuer,
            ca_serial,
            pck_serial,
            pck_chain_pem: pck_chain_pem.into_bytes(),
            attestation_key,
            qe_report,
            qe_report_signature,
            td,
            rtmr3: [0; 48],
            rng,
        })
    }

    /// Extends RTMR3 with an event digest, as the TDX module's TDG.MR.RTMR.EXTEND does.
    pub fn extend_rtmr3(&mut self, digest: &Measurement) {
        self.rtmr3 = rtmr_extend(&self.rtmr3, digest);
    }

    /// Produces a quote with the given report data.
    pub fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, Error> {
        let header = Header {
            version: quote::QUOTE_VERSION_4,
            att_key_type: quote::ATT_KEY_TYPE_ECDSA_P256,
            tee_type: quote::TEE_TYPE_TDX,
            qe_svn: 8,
            pce_svn: 13,
            qe_vendor_id: quote::INTEL_QE_VENDOR_ID,
            user_data: [0; 20],
        };
        let [rtmr0, rtmr1, rtmr2] = self.td.rtmr;
        let body = TdReportBody {
            tee_tcb_svn: [0; 16],
            mr_seam: [0; 48],
            mr_signer_seam: [0; 48],
            seam_attributes: [0; 8],
            // SEPT_VE_DISABLE, as production TDs set it; DEBUG on request.
            td_attributes: (quote::TD_ATTRIBUTES_SEPT_VE_DISABLE
                | if self.td.debug {
                    quote::TD_ATTRIBUTES_DEBUG
                } else {
                    0
                })
            .to_le_bytes(),
            xfam: 0x0006_02e7u64.to_le_bytes(),
            mr_td: self.td.mr_td,
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmr: [rtmr0, rtmr1, rtmr2, self.rtmr3],
            report_data,
            td15: None,
        };
        let signed = Quote::encode_signed_part(&header, &body);
        let signature = QuoteSignature {
            signature: sign(&self.attestation_key, &self.rng, &signed)?,
            attestation_key: attestation_public_key(&self.attestation_key)?,
            qe_report: self.qe_report.clone(),
            qe_report_signature: self.qe_report_signature,
            qe_auth_data: QE_AUTH_DATA.to_vec(),
            pck_chain_pem: self.pck_chain_pem.clone(),
        };
        Quote::encode(&header, &body, &signature)
    }
}

/// A fresh ECDSA P-256 key, as ring (to sign data) and rcgen (to sign certificates) see it.
pub(crate) fn signing_key(rng: &SystemRandom) -> Result<(EcdsaKeyPair, KeyPair), Error> {
    let pkcs8 = Zeroizing::new(
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map_err(sim_err)?
            .as_ref()
            .to_vec(),
    );
    let ring_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, rng).map_err(sim_err)?;
    let rcgen_key =
        KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_slice().into(), &PKCS_ECDSA_P256_SHA256)
            .map_err(sim_err)?;
    Ok((ring_key, rcgen_key))
}

/// Parameters of a sim end-entity certificate.
pub(crate) fn leaf_params(
    cn: &str,
    key_usages: Vec<KeyUsagePurpose>,
    now: i64,
    secs: i64,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(sim_err)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "kokon simulated TEE");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = key_usages;
    validity(&mut params, now, secs)?;
    Ok(params)
}

fn sign(key: &EcdsaKeyPair, rng: &SystemRandom, msg: &[u8]) -> Result<[u8; 64], Error> {
    let sig = key.sign(rng, msg).map_err(sim_err)?;
    sig.as_ref()
        .try_into()
        .map_err(|_| sim_err("unexpected ECDSA signature length"))
}

fn attestation_public_key(key: &EcdsaKeyPair) -> Result<[u8; 64], Error> {
    key.public_key()
        .as_ref()
        .get(1..)
        .and_then(|xy| <[u8; 64]>::try_from(xy).ok())
        .ok_or_else(|| sim_err("unexpected public key encoding"))
}

/// Encodes DER as a PEM certificate block.
pub fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Provisions a sim platform under `root` and returns the bundle that an
/// enclave with `td`'s measurements would hand out for `claims`, after
/// extending RTMR3 with the claims' configuration and model events, with
/// UpToDate sim collateral. For
/// tests, examples and tools; the enclave itself keeps its [`SimTdx`].
pub fn simulate(
    root: &SimRoot,
    td: SimTd,
    claims: crate::Claims,
    now: i64,
) -> Result<crate::AttestationBundle, Error> {
    let mut tdx = SimTdx::new(root, td, now)?;
    for event in claims.rtmr3_events() {
        tdx.extend_rtmr3(&event);
    }
    let data = tdx.quote(claims.report_data())?;
    Ok(crate::AttestationBundle {
        version: crate::bundle::BUNDLE_VERSION,
        backend: "sim".into(),
        evidence: crate::Evidence {
            format: crate::EvidenceFormat::TdxQuote,
            data,
            certificates: Vec::new(),
            collateral: Some(tdx.collateral(&SimTcb::default(), now)?),
            crl: Vec::new(),
        },
        claims,
        serving_config: None,
        gpu_evidence: Vec::new(),
        gpu_rims: Default::default(),
    })
}
