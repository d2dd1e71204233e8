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
    pinned(
        INTEL_SGX_ROOT,
        INTEL_SGX_ROOT_CA_PEM,
        INTEL_SGX_ROOT_CA_SHA256,
        "embedded Intel SGX Root CA fingerprint",
    )
}

/// The embedded root `pem` as the anchor `name`, if its SHA-256 is `pin`.
fn pinned(name: &str, pem: &[u8], pin: &str, what: &'static str) -> Result<TrustAnchor, Error> {
    let anchor = TrustAnchor::from_pem(name, pem, false)?;
    if anchor.fingerprint() != pin {
        return Err(Error::Mismatch {
            what,
            expected: pin.into(),
            found: anchor.fingerprint(),
        });
    }
    Ok(anchor)
}

/// NVIDIA Device Identity CA, the root of NVIDIA GPUs' device identity and
/// attestation certificates (Hopper, Blackwell), valid 2021-11-05 to 9999.
/// The same certificate as `verifier_device_root.pem` in NVIDIA's nvtrust
/// local GPU verifier.
pub const NVIDIA_DEVICE_ROOT_CA_PEM: &[u8] =
    include_bytes!("../roots/nvidia_device_identity_ca.pem");
/// SHA-256 of the NVIDIA Device Identity CA certificate (DER).
pub const NVIDIA_DEVICE_ROOT_CA_SHA256: &str =
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48";
/// The name policies use for the NVIDIA Device Identity CA.
pub const NVIDIA_DEVICE_ROOT: &str = "nvidia-device-identity-ca";

/// The embedded NVIDIA Device Identity CA, checked against its pinned
/// fingerprint: the anchor of GPU evidence ([`crate::nvidia`]), kept apart
/// from the CPU roots of [`hardware_roots`].
pub fn nvidia_device_root() -> Result<TrustAnchor, Error> {
    pinned(
        NVIDIA_DEVICE_ROOT,
        NVIDIA_DEVICE_ROOT_CA_PEM,
        NVIDIA_DEVICE_ROOT_CA_SHA256,
        "embedded NVIDIA Device Identity CA fingerprint",
    )
}

/// NVIDIA CoRIM signing Root CA, the root of the certificates that sign
/// NVIDIA's reference integrity manifests (RIMs) for GPU drivers and
/// VBIOSes, valid 2023-03-16 to 2053-03-08. The same certificate as
/// `verifier_RIM_root.pem` in NVIDIA's nvtrust local GPU verifier.
pub const NVIDIA_RIM_ROOT_CA_PEM: &[u8] = include_bytes!("../roots/nvidia_corim_root_ca.pem");
/// SHA-256 of the NVIDIA CoRIM signing Root CA certificate (DER).
pub const NVIDIA_RIM_ROOT_CA_SHA256: &str =
    "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1";
/// The name policies use for the NVIDIA CoRIM signing Root CA.
pub const NVIDIA_RIM_ROOT: &str = "nvidia-corim-signing-root-ca";

/// The embedded NVIDIA CoRIM signing Root CA, checked against its pinned
/// fingerprint: the anchor of GPU reference values ([`crate::nvidia::rim`]).
pub fn nvidia_rim_root() -> Result<TrustAnchor, Error> {
    pinned(
        NVIDIA_RIM_ROOT,
        NVIDIA_RIM_ROOT_CA_PEM,
        NVIDIA_RIM_ROOT_CA_SHA256,
        "embedded NVIDIA CoRIM signing Root CA fingerprint",
    )
}

/// An AMD product line with its own root (ARK) and signing CA (ASK).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AmdProduct {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004/8004 (Zen 4), including Bergamo and Siena.
    Genoa,
    /// EPYC 9005 (Zen 5).
    Turin,
}

/// AMD's roots and signing CAs as published on its Key Distribution Service
/// (`https://kdsintf.amd.com/vcek/v1/<product>/cert_chain`), with the ARK's
/// pinned SHA-256.
/// (product, anchor name, ARK PEM, ASK PEM, ARK SHA-256)
type AmdChain = (
    AmdProduct,
    &'static str,
    &'static [u8],
    &'static [u8],
    &'static str,
);

const AMD_CHAINS: [AmdChain; 3] = [
    (
        AmdProduct::Milan,
        "amd-ark-milan",
        include_bytes!("../roots/amd/milan/ark.pem"),
        include_bytes!("../roots/amd/milan/ask.pem"),
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    (
        AmdProduct::Genoa,
        "amd-ark-genoa",
        include_bytes!("../roots/amd/genoa/ark.pem"),
        include_bytes!("../roots/amd/genoa/ask.pem"),
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    (
        AmdProduct::Turin,
        "amd-ark-turin",
        include_bytes!("../roots/amd/turin/ark.pem"),
        include_bytes!("../roots/amd/turin/ask.pem"),
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
];

impl AmdProduct {
    /// Every product kokon knows.
    pub const ALL: [AmdProduct; 3] = [AmdProduct::Milan, AmdProduct::Genoa, AmdProduct::Turin];

    /// The trust-anchor name of this product's ARK ("amd-ark-milan", ...).
    pub fn root_name(self) -> &'static str {
        AMD_CHAINS
            .iter()
            .find(|c| c.0 == self)
            .map(|c| c.1)
            .unwrap_or("amd-ark")
    }

    /// The product whose ARK has this anchor name.
    pub fn from_root_name(name: &str) -> Option<AmdProduct> {
        AMD_CHAINS.iter().find(|c| c.1 == name).map(|c| c.0)
    }
}

fn amd_chain(product: AmdProduct) -> Result<&'static AmdChain, Error> {
    AMD_CHAINS
        .iter()
        .find(|c| c.0 == product)
        .ok_or(Error::TooLarge {
            what: "AMD product",
        })
}

/// The embedded ARK of `product`, checked against its pinned fingerprint.
pub fn amd_ark(product: AmdProduct) -> Result<TrustAnchor, Error> {
    let (_, name, ark, _, pin) = amd_chain(product)?;
    pinned(name, ark, pin, "embedded AMD ARK fingerprint")
}

/// The embedded ASK (VCEK signing CA) of `product`, DER.
pub fn amd_ask(product: AmdProduct) -> Result<Vec<u8>, Error> {
    let (_, name, _, ask, _) = amd_chain(product)?;
    Ok(TrustAnchor::from_pem(name, ask, false)?.der)
}

/// Every embedded vendor root: Intel's and AMD's per product.
pub fn hardware_roots() -> Result<Vec<TrustAnchor>, Error> {
    let mut roots = vec![intel_sgx_root()?];
    for product in AmdProduct::ALL {
        roots.push(amd_ark(product)?);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_roots_match_their_pins() {
        assert!(intel_sgx_root().is_ok());
        assert!(nvidia_device_root().is_ok());
        for product in AmdProduct::ALL {
            assert!(amd_ark(product).is_ok(), "{product:?}");
            assert!(amd_ask(product).is_ok(), "{product:?}");
        }
        assert_eq!(hardware_roots().map(|r| r.len()).ok(), Some(4));
    }
}
