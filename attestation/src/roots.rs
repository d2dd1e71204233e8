//! Vendor trust roots embedded in the binary, pinned by fingerprint.

use crate::pki::TrustAnchor;
use crate::Error;

/// Intel SGX Root CA (also the root of TDX PCK chains), valid 2018-05-21 to 2049-12-31.
pub const INTEL_SGX_ROOT_CA_PEM: &[u8] = include_bytes!("../roots/intel_sgx_root_ca.pem");
/// SHA-256 of the Intel SGX Root CA certificate (DER), as Intel publishes it.
pub const INTEL_SGX_ROOT_CA_SHA256: &str =
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";
/// The name policies use for the Intel SGX Root CA.
pub const INTEL_SGX_ROOT: &str = "intel-sgx-root";

/// The embedded Intel SGX Root CA, checked against its pinned fingerprint.
pub fn intel_sgx_root() -> Result<TrustAnchor, Error> {
    let anchor = TrustAnchor::from_pem(INTEL_SGX_ROOT, INTEL_SGX_ROOT_CA_PEM, false)?;
    if anchor.fingerprint() != INTEL_SGX_ROOT_CA_SHA256 {
        return Err(Error::Mismatch {
            what: "embedded Intel SGX Root CA fingerprint",
            expected: INTEL_SGX_ROOT_CA_SHA256.into(),
            found: anchor.fingerprint(),
        });
    }
    Ok(anchor)
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_intel_root_matches_its_pin() {
        assert!(super::intel_sgx_root().is_ok());
    }
}
