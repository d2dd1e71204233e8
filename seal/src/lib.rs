//! Oblivious HTTP (RFC 9458) encapsulation for kokon.
//!
//! Clients seal Binary HTTP requests to the enclave's attested key
//! configuration; only the enclave can open them, and it seals its response
//! under a key derived from the same HPKE context, so relays (the host, a
//! load balancer) see ciphertext only.
//!
//! Why not the `ohttp` crate alone: its pure-Rust backend (0.8) offers only
//! AES-128-GCM and ChaCha20-Poly1305, and kokon's suite is X25519 /
//! HKDF-SHA256 / AES-256-GCM (its NSS backend needs NSS, unavailable here).
//! This crate implements the RFC's framing (sections 3, 4.3, 4.4) on the
//! RustCrypto `hpke`, `hkdf` and `aes-gcm` crates and is tested to
//! interoperate byte-for-byte with the `ohttp` crate in both directions under
//! the suite they share (AES-128-GCM), then used with AES-256-GCM.
//!
//! Nothing here panics on untrusted input; plaintexts are returned in
//! zeroizing buffers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunked;

use aes_gcm::aead::{Aead as _, KeyInit, Nonce};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use hkdf::Hkdf;
use hpke::aead::{Aead, AeadCtxR, AeadCtxS, AesGcm128, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use kokon_bytes::{ReadError, Reader};
use sha2_next::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

/// HPKE KEM ID of DHKEM(X25519, HKDF-SHA256).
pub const KEM_X25519_SHA256: u16 = 0x0020;
/// HPKE KDF ID of HKDF-SHA256.
pub const KDF_HKDF_SHA256: u16 = 0x0001;
/// HPKE AEAD ID of AES-128-GCM.
pub const AEAD_AES_128_GCM: u16 = 0x0001;
/// HPKE AEAD ID of AES-256-GCM: kokon's suite.
pub const AEAD_AES_256_GCM: u16 = 0x0002;

const INFO_REQUEST: &[u8] = b"message/bhttp request";
const LABEL_RESPONSE: &[u8] = b"message/bhttp response";
const NPK: usize = 32;
const NN: usize = 12;
const HEADER_LEN: usize = 7;

/// Why a message could not be sealed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The key configuration is malformed or offers no supported suite.
    #[error("OHTTP key configuration: {0}")]
    KeyConfig(String),
    /// The request names another key or suite than this server's.
    #[error("request is for key {found_key} with KEM/KDF/AEAD {found_suite:04x?}; this enclave has key {expected_key} with {expected_suite:04x?}")]
    WrongKey {
        /// This server's key ID.
        expected_key: u8,
        /// The request's key ID.
        found_key: u8,
        /// This server's suite.
        expected_suite: [u16; 3],
        /// The request's suite.
        found_suite: [u16; 3],
    },
    /// The message is shorter than its fixed parts.
    #[error("truncated OHTTP {0}")]
    Truncated(&'static str),
    /// Decryption failed: tampered, truncated, or sealed to another key.
    #[error("OHTTP {0} does not decrypt (tampered, truncated, or sealed to another key)")]
    Decrypt(&'static str),
    /// A cryptographic primitive failed.
    #[error("OHTTP crypto: {0}")]
    Crypto(String),
}

/// The AEADs this crate seals with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// AES-128-GCM (interoperability with other OHTTP stacks).
    Aes128Gcm,
    /// AES-256-GCM (kokon's default).
    Aes256Gcm,
}

impl Suite {
    fn aead_id(self) -> u16 {
        match self {
            Suite::Aes128Gcm => AEAD_AES_128_GCM,
            Suite::Aes256Gcm => AEAD_AES_256_GCM,
        }
    }

    fn from_aead_id(id: u16) -> Option<Self> {
        match id {
            AEAD_AES_128_GCM => Some(Suite::Aes128Gcm),
            AEAD_AES_256_GCM => Some(Suite::Aes256Gcm),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Suite::Aes128Gcm => 16,
            Suite::Aes256Gcm => 32,
        }
    }

    fn ids(self) -> [u16; 3] {
        [KEM_X25519_SHA256, KDF_HKDF_SHA256, self.aead_id()]
    }
}

/// A public key configuration (RFC 9458 section 3) with one suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// Key identifier.
    pub key_id: u8,
    /// X25519 public key.
    pub public_key: [u8; NPK],
    /// The AEAD.
    pub suite: Suite,
}

impl KeyConfig {
    /// Encodes the configuration.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 + NPK + 2 + 4);
        out.push(self.key_id);
        out.extend_from_slice(&KEM_X25519_SHA256.to_be_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
        out.extend_from_slice(&self.suite.aead_id().to_be_bytes());
        out
    }

    /// Parses a configuration, picking the strongest suite it offers that this
    /// crate supports. `require` restricts the choice to one suite.
    pub fn parse(bytes: &[u8], require: Option<Suite>) -> Result<Self, SealError> {
        let err = |e: ReadError| SealError::KeyConfig(e.to_string());
        let mut r = Reader::new(bytes);
        let key_id = r.u8("key ID").map_err(err)?;
        let kem = r.u16_be("KEM ID").map_err(err)?;
        if kem != KEM_X25519_SHA256 {
            return Err(SealError::KeyConfig(format!(
                "KEM {kem:#06x}; expected {KEM_X25519_SHA256:#06x} (X25519)"
            )));
        }
        let public_key = r.array::<NPK>("public key").map_err(err)?;
        let len = r.u16_be("suite list length").map_err(err)?;
        let mut list = r.sub(u32::from(len), "suite list").map_err(err)?;
        r.finish("key configuration").map_err(err)?;
        let mut best = None;
        while list.remaining() > 0 {
            let kdf = list.u16_be("KDF ID in the suite list").map_err(err)?;
            let aead = list.u16_be("AEAD ID in the suite list").map_err(err)?;
            if kdf != KDF_HKDF_SHA256 {
                continue;
            }
            if let Some(s) = Suite::from_aead_id(aead).filter(|s| require.is_none_or(|r| r == *s)) {
                if best != Some(Suite::Aes256Gcm) {
                    best = Some(s);
                }
            }
        }
        let suite = best.ok_or_else(|| match require {
            Some(r) => SealError::KeyConfig(format!("no HKDF-SHA256 / {r:?} suite offered")),
            None => SealError::KeyConfig(
                "no supported suite (HKDF-SHA256 with AES-128-GCM or AES-256-GCM)".into(),
            ),
        })?;
        Ok(Self {
            key_id,
            public_key,
            suite,
        })
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let [k0, k1] = KEM_X25519_SHA256.to_be_bytes();
        let [d0, d1] = KDF_HKDF_SHA256.to_be_bytes();
        let [a0, a1] = self.suite.aead_id().to_be_bytes();
        [self.key_id, k0, k1, d0, d1, a0, a1]
    }
}

/// A message too short for its fixed parts: names the part, as
/// [`SealError::Truncated`] does.
fn truncated(e: ReadError) -> SealError {
    SealError::Truncated(e.what())
}

/// The HPKE info of a request: its label, a zero byte and the header
/// (RFC 9458 section 4.3; the chunked draft changes only the label).
fn request_info(label: &[u8], header: &[u8; HEADER_LEN]) -> Vec<u8> {
    let mut info = Vec::with_capacity(label.len() + 1 + HEADER_LEN);
    info.extend_from_slice(label);
    info.push(0);
    info.extend_from_slice(header);
    info
}

/// The recipient's public key from a key configuration.
fn public_key(config: &KeyConfig) -> Result<<Kem as hpke::Kem>::PublicKey, SealError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(&config.public_key)
        .map_err(|_| SealError::KeyConfig("invalid X25519 public key".into()))
}

/// An encapsulated request: header, encapsulated key, then the sealed body.
fn encapsulated(header: &[u8; HEADER_LEN], enc: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + enc.len() + body.len());
    out.extend_from_slice(header);
    out.extend_from_slice(enc);
    out.extend_from_slice(body);
    out
}

fn crypto(e: impl std::fmt::Debug) -> SealError {
    SealError::Crypto(format!("{e:?}"))
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(crypto)?;
    Ok(out)
}

/// The key and nonce for the response AEAD (RFC 9458 section 4.4).
fn response_key(
    secret: &[u8],
    enc: &[u8],
    response_nonce: &[u8],
    suite: Suite,
) -> Result<(Zeroizing<Vec<u8>>, [u8; NN]), SealError> {
    let mut salt = Vec::with_capacity(enc.len() + response_nonce.len());
    salt.extend_from_slice(enc);
    salt.extend_from_slice(response_nonce);
    let prk = Hkdf::<Sha256>::new(Some(&salt), secret);
    let mut key = Zeroizing::new(vec![0u8; suite.key_len()]);
    prk.expand(b"key", &mut key).map_err(crypto)?;
    let mut nonce = [0u8; NN];
    prk.expand(b"nonce", &mut nonce).map_err(crypto)?;
    Ok((key, nonce))
}

fn aead_seal(suite: Suite, key: &[u8], nonce: &[u8; NN], pt: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce = Nonce::<Aes128Gcm>::try_from(&nonce[..]).map_err(crypto)?;
    match suite {
        Suite::Aes128Gcm => Aes128Gcm::new_from_slice(key)
            .map_err(crypto)?
            .encrypt(&nonce, pt)
            .map_err(crypto),
        Suite::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(crypto)?
            .encrypt(&nonce, pt)
            .map_err(crypto),
    }
}

fn aead_open(suite: Suite, key: &[u8], nonce: &[u8; NN], ct: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce = Nonce::<Aes128Gcm>::try_from(&nonce[..]).map_err(crypto)?;
    let opened = match suite {
        Suite::Aes128Gcm => Aes128Gcm::new_from_slice(key)
            .map_err(crypto)?
            .decrypt(&nonce, ct),
        Suite::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(crypto)?
            .decrypt(&nonce, ct),
    };
    opened.map_err(|_| SealError::Decrypt("response"))
}

type Kem = X25519HkdfSha256;
/// A secret byte string, zeroized on drop.
type Secret = Zeroizing<Vec<u8>>;
/// A sealed request: encapsulated key, ciphertext and the exported response secret.
type SealedParts = (Vec<u8>, Vec<u8>, Secret);

/// The enclave's side: the private key and its configuration.
pub struct ServerKey {
    config: KeyConfig,
    secret: <Kem as hpke::Kem>::PrivateKey,
}

/// The state needed to seal the response to one opened request.
pub struct ResponseContext {
    secret: Zeroizing<Vec<u8>>,
    enc: Vec<u8>,
    suite: Suite,
}

/// The state needed to open the response to one sealed request.
pub struct ClientContext {
    secret: Zeroizing<Vec<u8>>,
    enc: Vec<u8>,
    suite: Suite,
}

/// The response secret exported from the request's HPKE context under `label`.
fn export(
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    label: &[u8],
    suite: Suite,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let mut secret = Zeroizing::new(vec![0u8; suite.key_len().max(NN)]);
    export(label, &mut secret).map_err(crypto)?;
    Ok(secret)
}

impl ServerKey {
    /// A request for another key or suite is refused, naming both.
    fn check_header(&self, header: [u8; HEADER_LEN]) -> Result<(), SealError> {
        if header == self.config.header() {
            return Ok(());
        }
        let [key, k0, k1, d0, d1, a0, a1] = header;
        Err(SealError::WrongKey {
            expected_key: self.config.key_id,
            found_key: key,
            expected_suite: self.config.suite.ids(),
            found_suite: [
                u16::from_be_bytes([k0, k1]),
                u16::from_be_bytes([d0, d1]),
                u16::from_be_bytes([a0, a1]),
            ],
        })
    }

    /// Derives a key pair from input keying material (at least 32 random bytes).
    pub fn derive(key_id: u8, suite: Suite, ikm: &[u8]) -> Self {
        let (secret, public) = Kem::derive_keypair(ikm);
        let mut public_key = [0u8; NPK];
        public_key.copy_from_slice(&public.to_bytes());
        Self {
            config: KeyConfig {
                key_id,
                public_key,
                suite,
            },
            secret,
        }
    }

    /// The public configuration to publish (and bind into the evidence).
    pub fn config(&self) -> &KeyConfig {
        &self.config
    }

    /// Opens an encapsulated request (RFC 9458 section 4.3).
    pub fn decapsulate(
        &self,
        request: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, ResponseContext), SealError> {
        let mut r = Reader::new(request);
        let header = r.array::<HEADER_LEN>("request header").map_err(truncated)?;
        self.check_header(header)?;
        let enc = r.take(NPK, "encapsulated key").map_err(truncated)?;
        let ct = r.rest();
        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc)
            .map_err(|_| SealError::Decrypt("request"))?;
        let info = request_info(INFO_REQUEST, &header);
        let suite = self.config.suite;
        let (plain, secret) = match suite {
            Suite::Aes128Gcm => {
                open_request::<AesGcm128>(&self.secret, &encapped, &info, ct, suite)?
            }
            Suite::Aes256Gcm => {
                open_request::<AesGcm256>(&self.secret, &encapped, &info, ct, suite)?
            }
        };
        Ok((
            plain,
            ResponseContext {
                secret,
                enc: enc.to_vec(),
                suite,
            },
        ))
    }
}

fn open_request<A: Aead>(
    sk: &<Kem as hpke::Kem>::PrivateKey,
    encapped: &<Kem as hpke::Kem>::EncappedKey,
    info: &[u8],
    ct: &[u8],
    suite: Suite,
) -> Result<(Secret, Secret), SealError> {
    let mut ctx: AeadCtxR<A, HkdfSha256, Kem> =
        hpke::setup_receiver(&OpModeR::Base, sk, encapped, info)
            .map_err(|_| SealError::Decrypt("request"))?;
    let plain = Zeroizing::new(
        ctx.open(ct, b"")
            .map_err(|_| SealError::Decrypt("request"))?,
    );
    let secret = export(|l, o| ctx.export(l, o), LABEL_RESPONSE, suite)?;
    Ok((plain, secret))
}

fn seal_request<A: Aead>(
    pk: &<Kem as hpke::Kem>::PublicKey,
    info: &[u8],
    pt: &[u8],
    suite: Suite,
) -> Result<SealedParts, SealError> {
    let (encapped, mut ctx): (_, AeadCtxS<A, HkdfSha256, Kem>) =
        hpke::setup_sender(&OpModeS::Base, pk, info).map_err(crypto)?;
    let ct = ctx.seal(pt, b"").map_err(crypto)?;
    let secret = export(|l, o| ctx.export(l, o), LABEL_RESPONSE, suite)?;
    Ok((encapped.to_bytes().to_vec(), ct, secret))
}

impl ResponseContext {
    /// Seals the response (RFC 9458 section 4.4).
    pub fn encapsulate(self, response: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce_len = self.suite.key_len().max(NN);
        let response_nonce: [u8; 32] = random()?;
        let response_nonce = response_nonce
            .get(..nonce_len)
            .ok_or_else(|| crypto("nonce length"))?;
        let (key, nonce) = response_key(&self.secret, &self.enc, response_nonce, self.suite)?;
        let ct = aead_seal(self.suite, &key, &nonce, response)?;
        let mut out = Vec::with_capacity(nonce_len + ct.len());
        out.extend_from_slice(response_nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// Seals a request to `config` (RFC 9458 section 4.3).
pub fn encapsulate(
    config: &KeyConfig,
    request: &[u8],
) -> Result<(Vec<u8>, ClientContext), SealError> {
    let pk = public_key(config)?;
    let header = config.header();
    let info = request_info(INFO_REQUEST, &header);
    let (enc, ct, secret) = match config.suite {
        Suite::Aes128Gcm => seal_request::<AesGcm128>(&pk, &info, request, config.suite)?,
        Suite::Aes256Gcm => seal_request::<AesGcm256>(&pk, &info, request, config.suite)?,
    };
    Ok((
        encapsulated(&header, &enc, &ct),
        ClientContext {
            secret,
            enc,
            suite: config.suite,
        },
    ))
}

impl ClientContext {
    /// Opens the response to the request this context sealed.
    pub fn decapsulate(self, response: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let nonce_len = self.suite.key_len().max(NN);
        let mut r = Reader::new(response);
        let response_nonce = r.take(nonce_len, "response nonce").map_err(truncated)?;
        let ct = r.rest();
        let (key, nonce) = response_key(&self.secret, &self.enc, response_nonce, self.suite)?;
        Ok(Zeroizing::new(aead_open(self.suite, &key, &nonce, ct)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_key_configs_name_the_part_that_is_wrong() {
        let config = ServerKey::derive(7, Suite::Aes256Gcm, &[1; 32])
            .config()
            .encode();
        let message = |bytes: &[u8]| KeyConfig::parse(bytes, None).unwrap_err().to_string();
        assert_eq!(
            message(&config[..8]),
            "OHTTP key configuration: truncated public key: needed 32 bytes at offset 3, 5 available"
        );
        let mut trailing = config.clone();
        trailing.push(0);
        assert_eq!(
            message(&trailing),
            "OHTTP key configuration: 1 trailing bytes after key configuration"
        );
        let mut odd_list = config[..config.len() - 2].to_vec();
        odd_list[35..37].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(
            message(&odd_list),
            "OHTTP key configuration: truncated AEAD ID in the suite list: needed 2 bytes at offset 2, 0 available"
        );
    }
}
