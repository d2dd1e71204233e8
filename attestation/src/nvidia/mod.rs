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
//! Revocation is a separate step, [`VerifiedGpu::check_revocation`]: NVIDIA's
//! OCSP responses for the chain's device identity, provisioner and
//! architecture certificates ([`OCSP_POSITIONS`]), fetched and cached by
//! the untrusted host and verified by [`crate::ocsp::check`].
//!
//! Reference values are another: [`rim`] verifies NVIDIA's reference
//! integrity manifests for the report's driver and VBIOS (fetched and
//! cached by the host, signed under NVIDIA's CoRIM root) and compares every
//! index they mark active with the report.
//!
//! Freshness: the enclave asks each GPU for a report whose nonce is
//! [`gpu_nonce`] of the client's nonce, so a GPU report is as fresh as the
//! CPU evidence it comes with; the client expects that nonce.

pub mod opaque;
pub mod rim;
pub mod spdm;
pub mod verify;

pub use opaque::{OpaqueData, OpaqueField};
pub use spdm::{MeasurementBlock, Report, Request, Response};
pub use verify::{
    evidence_digest, read_chain, verify, Expectations, GpuChain, VerifiedGpu, OCSP_POSITIONS,
};

use sha2::{Digest, Sha256};

/// Domain separator of [`gpu_nonce`].
pub const GPU_NONCE_DOMAIN: &[u8] = b"kokon.gpu-nonce.v1\0";

/// The nonce of the GPU reports that answer a client's nonce: SHA-256 of
/// [`GPU_NONCE_DOMAIN`] followed by `client_nonce`. The enclave asks each
/// GPU for a report with this nonce (SPDM GET_MEASUREMENTS carries 32
/// bytes), so a GPU report is as fresh as the CPU evidence whose claims
/// echo `client_nonce`; the domain separator keeps it from equalling the
/// client's nonce or any other value derived from it.
pub fn gpu_nonce(client_nonce: &[u8]) -> [u8; spdm::NONCE_LEN] {
    Sha256::new()
        .chain_update(GPU_NONCE_DOMAIN)
        .chain_update(client_nonce)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpu_nonce_is_sha256_of_the_domain_and_the_client_nonce() {
        let mut input = b"kokon.gpu-nonce.v1\0".to_vec();
        input.extend_from_slice(&[9; 32]);
        let want: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(gpu_nonce(&[9; 32]), want);
        assert_ne!(gpu_nonce(&[9; 32]), [9; 32]);
        assert_ne!(gpu_nonce(&[9; 32]), gpu_nonce(&[9; 31]));
    }
}
