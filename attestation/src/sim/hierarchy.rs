//! The certificate hierarchies of simulated vendors (a GPU's identity
//! chain, a RIM signer's chain): P-384 CAs under a fresh test root, and a
//! P-384 leaf key usable both by rcgen (to be certified) and by ring (to
//! sign evidence). Certificates are valid from 1975 to 4096 (rcgen's
//! default).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P384_SHA384,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use zeroize::Zeroizing;

use super::sim_err;
use crate::Error;

/// A certificate's parameters: the common name `cn`, a CA or not.
pub(crate) fn params(cn: &str, ca: bool) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(sim_err)?;
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    Ok(p)
}

/// A CA's certificate (DER) and the issuer that signs with its key.
pub(crate) type Ca = (Vec<u8>, Issuer<'static, KeyPair>);

/// A root named `root` and CAs named `cas`, each signed by the one before:
/// every CA's certificate (DER) with its issuer, the LAST CA FIRST (so
/// that entry `i + 1` certified entry `i`; the root is the last entry).
pub(crate) fn ca_chain(root: &str, cas: &[&str]) -> Result<Vec<Ca>, Error> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(sim_err)?;
    let root_params = params(root, true)?;
    let root_der = root_params
        .self_signed(&root_key)
        .map_err(sim_err)?
        .der()
        .to_vec();
    let mut chain = vec![(root_der, Issuer::new(root_params, root_key))];
    for cn in cas {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(sim_err)?;
        let p = params(cn, true)?;
        let (_, issuer) = chain.last().ok_or_else(|| sim_err("no root"))?;
        let der = p.signed_by(&key, issuer).map_err(sim_err)?.der().to_vec();
        chain.push((der, Issuer::new(p, key)));
    }
    chain.reverse();
    Ok(chain)
}

/// A fresh P-384 key: for ring (fixed-size signatures), for rcgen, and
/// its PKCS #8 form.
pub(crate) struct P384Key {
    pub(crate) ring: EcdsaKeyPair,
    pub(crate) rcgen: KeyPair,
    pub(crate) pkcs8: Zeroizing<Vec<u8>>,
}

pub(crate) fn p384_key() -> Result<P384Key, Error> {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).map_err(sim_err)?;
    let ring = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(sim_err)?;
    let rcgen =
        KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), &PKCS_ECDSA_P384_SHA384)
            .map_err(sim_err)?;
    Ok(P384Key {
        ring,
        rcgen,
        pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
    })
}
