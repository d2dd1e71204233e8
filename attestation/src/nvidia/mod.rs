//! NVIDIA GPU attestation (Hopper confidential computing): the SPDM
//! GET_MEASUREMENTS request and MEASUREMENTS response that the GPU signs,
//! and their pure verification.
//!
//! [`verify()`] checks, in order:
//!
//! 1. the report parses completely and strictly ([`spdm`], [`opaque`]):
//!    SPDM 1.1, GET_MEASUREMENTS with a signature requested for all blocks,
//!    MEASUREMENTS whose blocks fill the record exactly under distinct
//!    indexes (1 to 254), each a SHA-384 digest in the DMTF format; NVIDIA's
//!    opaque fields well-formed, each at most once, with the driver
//!    version, the VBIOS version and the FWID present; nothing after the
//!    96-byte signature;
//! 2. the chain (PEM, leaf first) verifies at `now` up to a root that is
//!    byte-identical to one of the anchors (the caller passes
//!    [`crate::roots::nvidia_device_root`]; a root found in the evidence is
//!    never trusted), has the five certificates of a GPU's chain, a P-384
//!    leaf key and, in the leaf's TcbInfo extension (2.23.133.5.4.1), a
//!    SHA-384 FWID ([`GpuChain::verify`]);
//! 3. the ECDSA P-384 signature (r || s) over the transcript, the request
//!    and the response without its signature, hashed with SHA-384, verifies
//!    under the leaf's key;
//! 4. the leaf's FWID equals the one in the report;
//! 5. the request's nonce is the expected one;
//! 6. the [`Expectations`]: every pinned measurement present and equal, the
//!    driver version allowed and not below the minimum, the VBIOS version
//!    allowed.
//!
//! Not checked here: NVIDIA's reference measurements (RIMs, fetched from
//! NVIDIA's RIM service and signed under their own root) and certificate
//! revocation (OCSP); measurements are compared only with the caller's pins.

pub mod opaque;
pub mod spdm;
pub mod verify;

pub use opaque::{OpaqueData, OpaqueField};
pub use spdm::{MeasurementBlock, Report, Request, Response};
pub use verify::{evidence_digest, read_chain, verify, Expectations, GpuChain, VerifiedGpu};
