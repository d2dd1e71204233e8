//! Appraisal policies: which verified evidence a client accepts.
//!
//! Evidence verification (the `attestation` crate) answers "is this genuine
//! TEE evidence binding these claims?". A [`Policy`] answers "is it the
//! enclave I am willing to send my data to?": trusted roots, whether
//! simulated TEEs or debug TDs are acceptable, how old evidence may be, the
//! allowed value of each measurement register, and the allowed models. In
//! RFC 9334 terms a policy holds the verifier's reference values.
//!
//! GPU evidence (NVIDIA, bound to the claims by `verify_bundle`) is
//! verified here, under the policy's GPU roots and pins, with the nonce
//! derived from the claims' ([`kokon_attestation::nvidia::gpu_nonce`]).
//!
//! Policies are TOML files (see `policies/*.toml`). A rejection lists every
//! failed check with the expected and the found value.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod appraisal;
mod registers;
mod schema;

use std::collections::BTreeMap;

use kokon_attestation::TrustAnchors;

pub use appraisal::{Check, Failure, Rejection};
pub use registers::Register;
pub use schema::{
    AllowedModel, GpuRequirements, LoadError, LocalReferences, SnpSection, TcbRequirements,
};

/// The policy value that stands for "SHA-384 of the locally built enclave binary".
pub const LOCAL_ENCLAVE_BUILD: &str = "local-enclave-build";
/// Allowed clock skew for evidence issued "in the future" (seconds).
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

/// A loaded, fully resolved policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The roots evidence must chain to.
    pub anchors: TrustAnchors,
    /// Whether evidence under a simulated root is acceptable.
    pub allow_simulated: bool,
    /// Whether a debug TD is acceptable.
    pub allow_debug: bool,
    /// Largest accepted age of evidence, in seconds.
    pub max_age_seconds: u64,
    /// Allowed values per pinned register (an empty list allows nothing).
    pub measurements: BTreeMap<Register, Vec<Vec<u8>>>,
    /// TCB requirements; `None` accepts evidence without a vendor appraisal.
    pub tcb: Option<TcbRequirements>,
    /// SNP guest-policy requirements; `None` puts none beyond debug.
    pub snp: Option<SnpSection>,
    /// What the GPU evidence must be (the `[gpu]` section, or its defaults).
    pub gpu: GpuRequirements,
    /// The highest price per unit (nanotons) receipts may charge; 0 without a
    /// `[billing]` section (free enclaves only).
    pub max_price_per_unit: u128,
    /// The highest price per prompt token (nanotons) a text model's receipts
    /// may charge; 0 without it.
    pub max_price_per_prompt_token: u128,
    /// The highest price per completion token (nanotons); 0 without it.
    pub max_price_per_completion_token: u128,
    /// Allowed models (the classifier and the text model alike).
    pub models: Vec<AllowedModel>,
}
