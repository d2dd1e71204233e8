#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! kokon-seal against the `ohttp` crate (the reference Rust OHTTP stack) in
//! both directions, then kokon's AES-256-GCM suite and its failure modes.

use kokon_seal::{encapsulate, KeyConfig, SealError, ServerKey, Suite};
use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{ClientRequest, Server, SymmetricSuite};

const REQ: &[u8] = b"\x00\x04POST\x05https\x05kokon\x0f/v2/models/x/infer";
const RESP: &[u8] = b"\x01\x40\xc8\x00\x00";

#[test]
fn kokon_client_talks_to_ohttp_server() {
    let config = ohttp::KeyConfig::new(
        7,
        Kem::X25519Sha256,
        vec![SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm)],
    )
    .unwrap();
    let encoded = config.encode().unwrap();
    let server = Server::new(config).unwrap();
    let parsed = KeyConfig::parse(&encoded, None).unwrap();
    assert_eq!(parsed.encode(), encoded, "key config encoding is identical");
    let (sealed, ctx) = encapsulate(&parsed, REQ).unwrap();
    let (opened, server_ctx) = server.decapsulate(&sealed).unwrap();
    assert_eq!(opened, REQ);
    let response = server_ctx.encapsulate(RESP).unwrap();
    assert_eq!(&*ctx.decapsulate(&response).unwrap(), RESP);
}

#[test]
fn ohttp_client_talks_to_kokon_server() {
    let key = ServerKey::derive(3, Suite::Aes128Gcm, &[9; 32]);
    let client = ClientRequest::from_encoded_config(&key.config().encode()).unwrap();
    let (sealed, client_ctx) = client.encapsulate(REQ).unwrap();
    let (opened, ctx) = key.decapsulate(&sealed).unwrap();
    assert_eq!(&*opened, REQ);
    let response = ctx.encapsulate(RESP).unwrap();
    assert_eq!(client_ctx.decapsulate(&response).unwrap(), RESP);
}

fn kokon_pair() -> (ServerKey, KeyConfig) {
    let key = ServerKey::derive(1, Suite::Aes256Gcm, &[5; 32]);
    let config = KeyConfig::parse(&key.config().encode(), Some(Suite::Aes256Gcm)).unwrap();
    (key, config)
}

#[test]
fn aes_256_gcm_round_trip() {
    let (key, config) = kokon_pair();
    assert_eq!(config.suite, Suite::Aes256Gcm);
    let (sealed, ctx) = encapsulate(&config, REQ).unwrap();
    assert_eq!(
        &sealed[5..7],
        &[0, 2],
        "AEAD ID 0x0002 (AES-256-GCM) on the wire"
    );
    let (opened, rctx) = key.decapsulate(&sealed).unwrap();
    assert_eq!(&*opened, REQ);
    assert_eq!(
        &*ctx.decapsulate(&rctx.encapsulate(RESP).unwrap()).unwrap(),
        RESP
    );
}

#[test]
fn every_tampered_request_byte_is_rejected() {
    let (key, config) = kokon_pair();
    let (sealed, _) = encapsulate(&config, REQ).unwrap();
    for i in 0..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x80;
        let err = key
            .decapsulate(&t)
            .err()
            .unwrap_or_else(|| panic!("byte {i} flipped and accepted"));
        if i < 7 {
            assert!(matches!(err, SealError::WrongKey { .. }), "byte {i}: {err}");
        }
    }
    for len in 0..sealed.len() {
        assert!(
            key.decapsulate(&sealed[..len]).is_err(),
            "truncated to {len} accepted"
        );
    }
}

#[test]
fn a_request_sealed_to_another_key_is_rejected() {
    let (key, _) = kokon_pair();
    let other = ServerKey::derive(1, Suite::Aes256Gcm, &[6; 32]);
    let (sealed, _) = encapsulate(other.config(), REQ).unwrap();
    assert_eq!(
        key.decapsulate(&sealed).err(),
        Some(SealError::Decrypt("request"))
    );
}

#[test]
fn tampered_or_truncated_responses_are_rejected() {
    let (key, config) = kokon_pair();
    let (sealed, _) = encapsulate(&config, REQ).unwrap();
    let (_, rctx) = key.decapsulate(&sealed).unwrap();
    let response = rctx.encapsulate(RESP).unwrap();
    for i in [0, 31, 32, response.len() - 1] {
        let (sealed, ctx) = encapsulate(&config, REQ).unwrap();
        let (_, rctx) = key.decapsulate(&sealed).unwrap();
        let mut r = rctx.encapsulate(RESP).unwrap();
        r[i] ^= 1;
        assert_eq!(
            ctx.decapsulate(&r).err(),
            Some(SealError::Decrypt("response")),
            "byte {i}"
        );
    }
    let (sealed, ctx) = encapsulate(&config, REQ).unwrap();
    let _ = key.decapsulate(&sealed).unwrap();
    assert_eq!(
        ctx.decapsulate(&response[..10]).err(),
        Some(SealError::Truncated("response nonce"))
    );
}

#[test]
fn key_configs_without_a_supported_suite_are_rejected() {
    let chacha = ohttp::KeyConfig::new(
        1,
        Kem::X25519Sha256,
        vec![SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305)],
    )
    .unwrap();
    assert!(matches!(
        KeyConfig::parse(&chacha.encode().unwrap(), None),
        Err(SealError::KeyConfig(_))
    ));
    let (_, config) = kokon_pair();
    let mut aes128 = config.clone();
    aes128.suite = Suite::Aes128Gcm;
    assert!(matches!(
        KeyConfig::parse(&aes128.encode(), Some(Suite::Aes256Gcm)),
        Err(SealError::KeyConfig(_))
    ));
    let encoded = config.encode();
    for len in 0..encoded.len() {
        assert!(
            KeyConfig::parse(&encoded[..len], None).is_err(),
            "truncated config of {len} bytes accepted"
        );
    }
}
