#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! A hostile client against a billing host: every way found to be served
//! for free, or on someone else's channel, is refused with nothing charged,
//! and the channels' real owners are unaffected.

use bhttp::{Message, Mode};
use ed25519_dalek::SigningKey;
use kokon_client::{ClientError, PayerProof, VerifiedEnclave};
use kokon_host::ledger::{ChannelConfig, LedgerConfig};
use kokon_tests::{magika_request, magika_request_json, Options, Stack, DEV_POLICY};

const PRICE: u128 = 1_000_000;
const MINE: u128 = 111;
const VICTIM: u128 = 222;

fn channel(id: u128, key: &SigningKey) -> ChannelConfig {
    kokon_tests::channel_config(id, key, 100 * PRICE, 3 * PRICE)
}

/// An encapsulated inference whose sealed headers name `inner` as the channel.
fn sealed_naming(enclave: &VerifiedEnclave, inner: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut m = Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"kokon.enclave".to_vec(),
        b"/v2/models/magika/infer".to_vec(),
    );
    m.put_header("content-type", "application/json");
    m.put_header(
        kokon_client::SENT_AT_HEADER,
        kokon_client::unix_now().to_string(),
    );
    if let Some(c) = inner {
        m.put_header(kokon_billing::CHANNEL_HEADER, c);
    }
    m.write_content(body);
    let mut encoded = Vec::new();
    m.write_bhttp(Mode::KnownLength, &mut encoded).unwrap();
    kokon_seal::encapsulate(&enclave.key_config, &encoded)
        .unwrap()
        .0
}

fn proof(key: &SigningKey, channel: u128, sealed: &[u8], at: i64) -> (&'static str, String) {
    (
        kokon_billing::payer::PAYER_HEADER,
        PayerProof::sign(key, channel, sealed, at).to_header(),
    )
}

fn refused_with(err: &ClientError, status: u16, words: &str) -> bool {
    matches!(err, ClientError::Host { status: s, message } if *s == status && message.contains(words))
}

#[tokio::test(flavor = "multi_thread")]
async fn payer_attacks_are_refused_with_nothing_charged_and_the_owners_are_unaffected() {
    let store = tempfile::tempdir().unwrap();
    let mine = SigningKey::from_bytes(&[11; 32]);
    let victim = SigningKey::from_bytes(&[22; 32]);
    let stack = Stack::start(Options {
        enclave_args: vec!["--price-nanoton-per-unit".into(), PRICE.to_string()],
        ledger: Some(LedgerConfig {
            channels: vec![channel(MINE, &mine), channel(VICTIM, &victim)],
            store: store.path().to_path_buf(),
            host_key_file: None,
        }),
        ..Options::default()
    })
    .await;
    let policy = stack.policy(DEV_POLICY);
    let attested = stack.client.attest(&policy).await.unwrap();
    let row = stack
        .env
        .feature_row(include_bytes!("../../attestation/src/tdx/quote.rs"));
    let body = serde_json::to_vec(&magika_request_json(std::slice::from_ref(&row))).unwrap();
    let now = kokon_client::unix_now();
    let client = &stack.client;
    let charged = |id| async move { client.channel_status(id).await.unwrap().0 };

    // The outer channel header alone, no inner one: once served for free.
    let sealed = sealed_naming(&attested, None, &body);
    let err = client
        .send_with_headers(
            &sealed,
            &[(kokon_billing::CHANNEL_HEADER, MINE.to_string())],
        )
        .await
        .unwrap_err();
    assert!(refused_with(&err, 401, "kokon-payer"), "{err}");

    // My own channel, properly signed, but the sealed request says channel 0.
    let sealed = sealed_naming(&attested, Some("0"), &body);
    let err = client
        .send_with_headers(&sealed, &[proof(&mine, MINE, &sealed, now)])
        .await
        .unwrap_err();
    assert!(refused_with(&err, 400, "another payment channel"), "{err}");

    // The victim's channel, signed with my key.
    let sealed = sealed_naming(&attested, Some("222"), &body);
    let err = client
        .send_with_headers(&sealed, &[proof(&mine, VICTIM, &sealed, now)])
        .await
        .unwrap_err();
    assert!(refused_with(&err, 403, "does not verify"), "{err}");

    // Admitted on my channel, sealed for the victim's.
    let sealed = sealed_naming(&attested, Some("222"), &body);
    let err = client
        .send_with_headers(&sealed, &[proof(&mine, MINE, &sealed, now)])
        .await
        .unwrap_err();
    assert!(refused_with(&err, 400, "another payment channel"), "{err}");

    // A proof from long ago, a proof for another request, garbage, an unknown channel.
    let sealed = sealed_naming(&attested, Some("111"), &body);
    let err = client
        .send_with_headers(&sealed, &[proof(&mine, MINE, &sealed, now - 1_000)])
        .await
        .unwrap_err();
    assert!(refused_with(&err, 403, "outside"), "{err}");
    let err = client
        .send_with_headers(&sealed, &[proof(&mine, MINE, b"another request", now)])
        .await
        .unwrap_err();
    assert!(refused_with(&err, 403, "does not verify"), "{err}");
    let err = client
        .send_with_headers(
            &sealed,
            &[(kokon_billing::payer::PAYER_HEADER, "111:0:zz".into())],
        )
        .await
        .unwrap_err();
    assert!(refused_with(&err, 401, "malformed"), "{err}");
    let err = client
        .send_with_headers(&sealed, &[proof(&mine, 333, &sealed, now)])
        .await
        .unwrap_err();
    assert!(refused_with(&err, 402, "not served"), "{err}");

    assert_eq!(charged(MINE).await, 0, "nothing was charged to me");
    assert_eq!(
        charged(VICTIM).await,
        0,
        "nothing was charged to the victim"
    );

    // The victim uses their channel as before, up to their credit limit.
    let owner = stack
        .client
        .attest(&policy)
        .await
        .unwrap()
        .with_channel(VICTIM, victim.clone());
    let request = magika_request(&[row]);
    for _ in 0..3 {
        let (_, r) = client.infer(&owner, &request).await.unwrap();
        assert_eq!((r.receipt.channel_id, r.receipt.amount), (VICTIM, PRICE));
    }
    assert_eq!(charged(VICTIM).await, 3 * PRICE);
    let err = client.infer(&owner, &request).await.unwrap_err();
    assert!(refused_with(&err, 402, "credit limit"), "{err}");

    // A request signed for my channel that names none inside is billed, and
    // its receipt names, exactly the channel charged.
    let unnamed = stack.client.attest(&policy).await.unwrap();
    let sealed = unnamed
        .seal(
            "POST",
            "/v2/models/magika/infer",
            &body,
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let response = client
        .send_billed(
            &sealed.bytes,
            Some(&PayerProof::sign(&mine, MINE, &sealed.bytes, now)),
        )
        .await
        .unwrap();
    let err = unnamed.open(sealed, &response).unwrap_err();
    assert!(
        err.to_string().contains("channel") && err.to_string().contains("0x6f"),
        "the receipt names channel 111 (0x6f), not the 0 this client expected: {err}"
    );
    assert_eq!(charged(MINE).await, PRICE);

    // The same signed request again: a replay.
    let sealed = sealed_naming(&attested, Some("111"), &body);
    let header = [proof(&mine, MINE, &sealed, now)];
    client.send_with_headers(&sealed, &header).await.unwrap();
    let err = client
        .send_with_headers(&sealed, &header)
        .await
        .unwrap_err();
    assert!(refused_with(&err, 403, "replayed"), "{err}");
    assert_eq!(charged(MINE).await, 2 * PRICE, "the replay was not charged");
    assert_eq!(
        charged(VICTIM).await,
        3 * PRICE,
        "the victim paid only for their own"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_cannot_run_a_channel_past_its_credit_limit() {
    let store = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[33; 32]);
    let stack = Stack::start(Options {
        enclave_args: vec!["--price-nanoton-per-unit".into(), PRICE.to_string()],
        enclave_env: vec![("KOKON_SIM_INFER_DELAY_MS".into(), "300".into())],
        ledger: Some(LedgerConfig {
            channels: vec![channel(MINE, &key)],
            store: store.path().to_path_buf(),
            host_key_file: None,
        }),
        ..Options::default()
    })
    .await;
    let policy = stack.policy(DEV_POLICY);
    let enclave = std::sync::Arc::new(
        stack
            .client
            .attest(&policy)
            .await
            .unwrap()
            .with_channel(MINE, key),
    );
    let row = stack
        .env
        .feature_row(include_bytes!("../../attestation/src/tdx/quote.rs"));
    let request = magika_request(&[row]);
    // One request teaches the host what a request costs.
    stack.client.infer(&enclave, &request).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, enclave, request) =
                (stack.client.clone(), enclave.clone(), request.clone());
            tokio::spawn(async move { client.infer(&enclave, &request).await.is_ok() })
        })
        .collect();
    let mut served = 0;
    for t in tasks {
        served += u128::from(t.await.unwrap());
    }
    let (charged, paid, _) = stack.client.channel_status(MINE).await.unwrap();
    assert_eq!(served, 2, "the credit limit (3 requests) allowed two more");
    assert!(
        charged - paid <= 3 * PRICE,
        "charged {charged}, paid {paid}: past the credit limit"
    );
    stack.shutdown().await;
}
