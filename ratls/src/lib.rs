//! Attested TLS 1.3 (RA-TLS) for kokon.
//!
//! The enclave proves itself inside the TLS handshake instead of through a
//! separate attestation request: its short-lived, self-signed certificate
//! carries an attestation bundle (TEE evidence plus claims) in an
//! extension, and the bundle binds the certificate's key — the claims'
//! `nonce` field is SHA-256 of the certificate's SubjectPublicKeyInfo, so
//! the evidence's report data (SHA-512 of the claims) commits to the key.
//!
//! The extension is the IETF RATS conceptual message wrapper extension
//! (`id-pe-cmw`, 1.3.6.1.5.5.7.1.35, draft-ietf-rats-msg-wrap) holding a JSON
//! CMW record `["application/vnd.kokon.attestation-bundle+json", <base64url
//! bundle>]` as a UTF8String.
//!
//! [`AttestedServerVerifier`] and [`AttestedClientVerifier`] plug into
//! rustls: they verify the evidence under the policy's roots at the
//! handshake's time, check the key binding, and appraise the evidence with
//! the same [`Policy`] as the OHTTP path. A failure aborts the handshake
//! with the reason (rustls `Error::General`). Only TLS 1.3 is offered.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kokon_attestation::claims::ServingConfig;
use kokon_attestation::{verify_bundle, AttestationBundle, Claims, Evidence, VerifiedEvidence};
use kokon_policies::Policy;
use rcgen::{
    CertificateParams, CustomExtension, DnType, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// `id-pe-cmw`: the RATS conceptual message wrapper certificate extension.
pub const CMW_EXTENSION_OID: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 35];
/// The media type of the wrapped bundle.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.kokon.attestation-bundle+json";
/// How long an attested certificate is valid.
pub const CERT_VALIDITY_SECS: i64 = 3600;
/// Largest extension accepted (a bundle with TDX collateral is ~30 KiB).
const MAX_EXTENSION_LEN: usize = 256 * 1024;

/// Why an attested certificate could not be made or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RatlsError {
    /// Making the certificate failed.
    #[error("issuing the attested certificate: {0}")]
    Issue(String),
    /// The certificate carries no usable evidence.
    #[error("attested certificate: {0}")]
    Certificate(String),
    /// The evidence did not verify.
    #[error("attested certificate: evidence rejected: {0}")]
    Evidence(#[from] kokon_attestation::Error),
    /// The evidence does not bind the certificate's key.
    #[error("attested certificate: the evidence does not bind this certificate's key: expected nonce {expected}, found {found}")]
    Unbound {
        /// SHA-256 of the certificate's public key.
        expected: String,
        /// The claims' nonce.
        found: String,
    },
    /// The policy rejected the evidence.
    #[error("attested certificate: {0}")]
    Policy(#[from] kokon_policies::Rejection),
}

/// An attested certificate and its private key.
pub struct AttestedCertificate {
    /// The self-signed certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Its private key (PKCS#8, zeroized on drop by rustls).
    pub key: PrivateKeyDer<'static>,
}

/// Issues an attested certificate: a fresh ECDSA P-256 key, `claims` with
/// the key's SPKI digest as nonce and `now` as issue time, evidence for
/// those claims from `evidence`, and the serving configuration the claims'
/// `config_digest` commits to (when given), all in a certificate valid for
/// an hour.
pub fn issue(
    mut claims: Claims,
    evidence: impl FnOnce(&Claims) -> Result<Evidence, String>,
    serving_config: Option<ServingConfig>,
    backend: &str,
    now: i64,
) -> Result<AttestedCertificate, RatlsError> {
    let err = |e: &dyn std::fmt::Display| RatlsError::Issue(e.to_string());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| err(&e))?;
    claims.nonce = Sha256::digest(key.subject_public_key_info()).to_vec();
    claims.issued_at = now;
    let bundle = AttestationBundle {
        version: kokon_attestation::bundle::BUNDLE_VERSION,
        backend: backend.into(),
        evidence: evidence(&claims).map_err(|e| err(&e))?,
        claims,
        serving_config,
        gpu_evidence: Vec::new(),
        gpu_rims: Default::default(),
    };
    issue_with_bundle(&bundle, key, now)
}

/// Issues a certificate for `key` carrying `bundle` as it is (no binding is
/// added: [`issue`] is the normal way; this exists to test verifiers).
pub fn issue_with_bundle(
    bundle: &AttestationBundle,
    key: KeyPair,
    now: i64,
) -> Result<AttestedCertificate, RatlsError> {
    let err = |e: &dyn std::fmt::Display| RatlsError::Issue(e.to_string());
    let cmw = serde_json::to_string(&(BUNDLE_MEDIA_TYPE, URL_SAFE_NO_PAD.encode(bundle.to_json())))
        .map_err(|e| err(&e))?;
    let mut params =
        CertificateParams::new(vec!["kokon-enclave".to_string()]).map_err(|e| err(&e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kokon attested enclave");
    let at = |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| err(&e));
    params.not_before = at(now - 60)?;
    params.not_after = at(now + CERT_VALIDITY_SECS)?;
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &CMW_EXTENSION_OID,
        kokon_attestation::der::tlv(0x0c, cmw.as_bytes()),
    )];
    let cert = params.self_signed(&key).map_err(|e| err(&e))?;
    let pkcs8 = zeroize::Zeroizing::new(key.serialize_der());
    Ok(AttestedCertificate {
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec())),
    })
}

/// Verifies an attested certificate at `now`: evidence under the policy's
/// roots, the key binding, then the policy.
pub fn verify_certificate(
    cert_der: &[u8],
    policy: &Policy,
    now: i64,
) -> Result<VerifiedEvidence, RatlsError> {
    let bad = |m: String| RatlsError::Certificate(m);
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| bad(format!("bad DER: {e}")))?;
    let oid = CMW_EXTENSION_OID.map(|a| a.to_string()).join(".");
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .ok_or_else(|| bad(format!("no evidence extension ({oid})")))?;
    if ext.value.len() > MAX_EXTENSION_LEN {
        return Err(bad("evidence extension too large".into()));
    }
    let (_, text) = x509_parser::der_parser::der::parse_der_utf8string(ext.value)
        .map_err(|e| bad(format!("evidence extension is not a UTF8String: {e}")))?;
    let text = text
        .as_str()
        .map_err(|e| bad(format!("evidence extension: {e}")))?;
    let (media_type, value): (String, String) = serde_json::from_str(text)
        .map_err(|e| bad(format!("evidence extension is not a JSON CMW record: {e}")))?;
    if media_type != BUNDLE_MEDIA_TYPE {
        return Err(bad(format!(
            "CMW media type: expected {BUNDLE_MEDIA_TYPE}, found {media_type}"
        )));
    }
    let json = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| bad(format!("CMW value is not base64url: {e}")))?;
    let bundle = AttestationBundle::from_json(&json)?;
    let verified = verify_bundle(&bundle, &policy.anchors, now)?;
    let spki = Sha256::digest(cert.public_key().raw);
    if verified.claims.nonce != spki.as_slice() {
        return Err(RatlsError::Unbound {
            expected: hex(&spki),
            found: hex(&verified.claims.nonce),
        });
    }
    policy.appraise(&verified, now)?;
    Ok(verified)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: RatlsError) -> rustls::Error {
    rustls::Error::General(e.to_string())
}

fn handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General(
        "attested TLS requires TLS 1.3".into(),
    ))
}

fn schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

/// A client-side verifier: the server must present an attested certificate
/// that the policy accepts. Server names are not checked: the evidence, not
/// a name, identifies the enclave.
#[derive(Debug)]
pub struct AttestedServerVerifier {
    policy: Arc<Policy>,
}

impl AttestedServerVerifier {
    /// A verifier applying `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }
}

impl ServerCertVerifier for AttestedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_certificate(end_entity, &self.policy, now.as_secs() as i64).map_err(tls_error)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// A server-side verifier for mutual attestation: the client must present
/// an attested certificate that the policy accepts.
#[derive(Debug)]
pub struct AttestedClientVerifier {
    policy: Arc<Policy>,
}

impl AttestedClientVerifier {
    /// A verifier applying `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }
}

impl ClientCertVerifier for AttestedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_certificate(end_entity, &self.policy, now.as_secs() as i64).map_err(tls_error)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// A TLS 1.3 server configuration presenting `cert`; with `clients`, it
/// requires attested client certificates too (mutual attestation).
pub fn server_config(
    cert: AttestedCertificate,
    clients: Option<Arc<Policy>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match clients {
        Some(policy) => {
            builder.with_client_cert_verifier(Arc::new(AttestedClientVerifier::new(policy)))
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(vec![cert.cert], cert.key)
}

/// A TLS 1.3 client configuration that accepts only servers whose attested
/// certificate `policy` accepts; with `own`, it presents its own.
pub fn client_config(
    policy: Arc<Policy>,
    own: Option<AttestedCertificate>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AttestedServerVerifier::new(policy)));
    match own {
        Some(c) => builder.with_client_auth_cert(vec![c.cert], c.key),
        None => Ok(builder.with_no_client_auth()),
    }
}
