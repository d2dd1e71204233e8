//! The enclave's keyset, created fresh at every start and never exported:
//! the OHTTP (HPKE X25519 / HKDF-SHA256 / AES-256-GCM) key configuration
//! that clients seal requests to, and the Ed25519 key that signs usage
//! receipts. Both public halves go into the claims, so the evidence binds them.
//!
//! Secret seeds are drawn from the OS RNG into zeroizing buffers; the
//! derived private keys live inside `ServerKey` and `ReceiptSigner`, whose
//! key types zeroize on drop.

use kokon_billing::ReceiptSigner;
use kokon_seal::{ServerKey, Suite};
use zeroize::Zeroizing;

/// The OHTTP key identifier kokon uses.
pub const OHTTP_KEY_ID: u8 = 1;

/// The enclave's secret keys and their public forms.
pub struct Keyset {
    /// The OHTTP private key.
    pub ohttp: ServerKey,
    /// The encoded key configuration (RFC 9458 section 3).
    pub ohttp_key_config: Vec<u8>,
    /// The receipt signer.
    pub receipts: ReceiptSigner,
}

fn random_seed() -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    Ok(seed)
}

impl Keyset {
    /// Generates a new keyset.
    pub fn generate() -> anyhow::Result<Self> {
        let ohttp = ServerKey::derive(OHTTP_KEY_ID, Suite::Aes256Gcm, random_seed()?.as_ref());
        let ohttp_key_config = ohttp.config().encode();
        let receipts = ReceiptSigner::from_secret(&*random_seed()?);
        Ok(Self {
            ohttp,
            ohttp_key_config,
            receipts,
        })
    }
}
