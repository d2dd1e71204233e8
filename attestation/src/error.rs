//! The one error type of this crate. Every variant says what was checked, what
//! was expected and what was found; none carries secret or plaintext data.

use kokon_bytes::ReadError;
use thiserror::Error;

/// Why evidence was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside a structure.
    #[error("truncated {what}: needed {needed} bytes at offset {offset}, {available} available")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
        /// Bytes it needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes were left after a complete structure.
    #[error("{extra} trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that should have ended.
        what: &'static str,
        /// How many bytes followed it.
        extra: usize,
    },
    /// A field holds a value this verifier does not accept.
    #[error("unsupported {field}: expected {expected}, found {found}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// What is accepted.
        expected: String,
        /// What the evidence holds.
        found: String,
    },
    /// A length field exceeds its limit.
    #[error("{what} is larger than allowed")]
    TooLarge {
        /// The oversized structure.
        what: &'static str,
    },
    /// PEM text inside evidence is not in the one form a canonical encoder writes.
    #[error("{what}: malformed PEM at byte {offset}: expected {expected}, found {found}")]
    Pem {
        /// Which PEM text (e.g. "PCK certificate chain").
        what: &'static str,
        /// Where in that text the reader stopped.
        offset: usize,
        /// What the reader accepts there.
        expected: String,
        /// What the text holds there (escaped, shortened).
        found: String,
    },
    /// A certificate could not be parsed or is unfit for its place in the chain.
    #[error("certificate {position} ({subject}): {reason}")]
    Certificate {
        /// Its position in the chain, e.g. "PCK leaf".
        position: String,
        /// Its subject, or "?" when unparsable.
        subject: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate is not valid at the verification time.
    #[error("certificate {position} ({subject}) is not valid at {now}: valid from {not_before} to {not_after}")]
    CertificateNotValidAt {
        /// Its position in the chain.
        position: String,
        /// Its subject.
        subject: String,
        /// Start of validity (RFC 3339).
        not_before: String,
        /// End of validity (RFC 3339).
        not_after: String,
        /// Verification time (RFC 3339).
        now: String,
    },
    /// The chain does not end in a configured trust root.
    #[error("certificate chain is not anchored in a trusted root: expected one of [{expected}], found {found}")]
    UntrustedRoot {
        /// The trusted roots' names and fingerprints.
        expected: String,
        /// The chain's root subject and fingerprint.
        found: String,
    },
    /// A signature did not verify.
    #[error("invalid signature: {what}")]
    BadSignature {
        /// Which signature.
        what: &'static str,
    },
    /// A digest or value that binds two structures does not match.
    #[error("{what} mismatch: expected {expected}, found {found}")]
    Mismatch {
        /// What was compared.
        what: &'static str,
        /// The value computed by the verifier.
        expected: String,
        /// The value in the evidence.
        found: String,
    },
    /// Verified evidence holds a value that the caller's expectations do not
    /// accept (a pinned GPU measurement, an allowed driver or VBIOS version).
    #[error("{what} not accepted: expected {expected}, found {found}")]
    Appraisal {
        /// What was appraised, e.g. "GPU measurement index 12".
        what: String,
        /// What the expectations accept.
        expected: String,
        /// What the evidence holds.
        found: String,
    },
    /// A certificate is listed in a CRL signed by its issuer.
    #[error(
        "certificate {position} ({subject}) is revoked: serial {serial} is listed in the {crl}"
    )]
    Revoked {
        /// Its position in the chain.
        position: String,
        /// Its subject.
        subject: String,
        /// Its serial number (hex).
        serial: String,
        /// Which CRL lists it.
        crl: &'static str,
    },
    /// An OCSP responder, in a response that verified, does not say that a
    /// certificate is good.
    #[error("certificate {position} ({subject}) is not good: its OCSP response, signed by {signer}, says {status}")]
    OcspStatus {
        /// Its position in the chain.
        position: String,
        /// Its subject.
        subject: String,
        /// What the responder says of its serial number ("serial 1f2e is
        /// revoked at ... (KeyCompromise)", "... is unknown to the responder").
        status: String,
        /// Who signed the response.
        signer: String,
    },
    /// A piece of collateral (TCB info, QE identity, CRL) is outside its validity window.
    #[error("{what} is not valid at {now}: issued {issued}, next update {next_update}")]
    CollateralNotValidAt {
        /// Which collateral.
        what: &'static str,
        /// Its issue date (RFC 3339).
        issued: String,
        /// Its next-update date (RFC 3339).
        next_update: String,
        /// Verification time (RFC 3339).
        now: String,
    },
    /// Collateral is malformed or does not fit the evidence.
    #[error("collateral: {what}: {reason}")]
    Collateral {
        /// Which collateral or field.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The platform's TCB is at no level listed in the TCB info, or is revoked.
    #[error("TCB: {0}")]
    Tcb(String),
    /// The bundle's JSON is malformed.
    #[error("malformed attestation bundle: {0}")]
    Bundle(String),
    /// The simulated TEE could not produce evidence.
    #[error("simulated TEE: {0}")]
    Sim(String),
}

/// The reader's two failures are this crate's [`Error::Truncated`] and
/// [`Error::TrailingBytes`], field for field.
impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated {
                what,
                offset,
                needed,
                available,
            } => Error::Truncated {
                what,
                offset,
                needed,
                available,
            },
            ReadError::TrailingBytes { what, extra } => Error::TrailingBytes { what, extra },
        }
    }
}
