#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Streamed text generation end to end: chunked OHTTP from the client,
//! each chunk sealed in the enclave and relayed by the host as it is
//! produced, the receipt in the response's trailer; credit for `max_tokens`
//! reserved before a billed stream starts and what was generated settled
//! when it ends or is cut off.

use ed25519_dalek::SigningKey;
use kokon_client::stream::ChatStream;
use kokon_client::ClientError;
use kokon_host::ledger::LedgerConfig;
use kokon_tests::{http_post, Options, Stack, DEV_POLICY};
use kokon_wire::bhttp_stream::{Part, ResponseDecoder};
use kokon_wire::media_type::{OHTTP_CHUNKED_REQUEST, OHTTP_REQUEST};
use kokon_wire::openai::DONE_DATA;

const PROMPT_PRICE: u128 = 1000;
const COMPLETION_PRICE: u128 = 3000;
const CHANNEL: u128 = 777;
const MODEL: &str = "smollm2-135m-instruct";
const STORY: &str = "Tell me a long story about a dragon who learns to fly.";

fn options(ledger: Option<LedgerConfig>) -> Options {
    Options {
        ledger,
        ..kokon_tests::text_options(PROMPT_PRICE, COMPLETION_PRICE)
    }
}

use kokon_tests::chat_request as chat;

/// Reads a chat stream to its end: the text and the number of chunks.
async fn collect(stream: &mut ChatStream) -> (String, usize) {
    let (mut text, mut chunks) = (String::new(), 0);
    while let Some(chunk) = stream.next().await.unwrap() {
        chunks += 1;
        if let Some(choice) = chunk.choices.first() {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
        }
    }
    (text, chunks)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_chat_completion_arrives_chunk_by_chunk_with_its_receipt() {
    let stack = Stack::start(options(None)).await;
    let enclave = stack.attest().await;
    let question = chat("What is the capital of France?", 32);
    let mut stream = stack.client.stream_chat(&enclave, &question).await.unwrap();
    assert!(stream.receipt().is_none(), "no receipt before the end");
    let (text, chunks) = collect(&mut stream).await;
    // The same answer as the whole one, in many chunks.
    let (whole, _) = stack
        .client
        .chat_completion(&enclave, &question)
        .await
        .unwrap();
    assert_eq!(text, whole.choices[0].message.content);
    assert_eq!(text, "The capital of France is Paris.");
    assert!(chunks > 5, "{chunks} chunks");
    let usage = stream.usage().unwrap();
    assert_eq!(usage, whole.usage);
    let r = &stream.receipt().unwrap().receipt;
    assert_eq!(
        (r.units, r.output_units),
        (usage.prompt_tokens, usage.completion_tokens)
    );
    assert_eq!(
        r.amount,
        u128::from(r.units) * PROMPT_PRICE + u128::from(r.output_units) * COMPLETION_PRICE
    );

    // The legacy endpoint streams too, raw events ending with [DONE].
    let body = br#"{"model":"smollm2-135m-instruct","prompt":"The capital of France is","max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}"#;
    let mut raw = stack
        .client
        .stream_text(&enclave, "POST", "/v1/completions", body)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = raw.next_event().await.unwrap() {
        events.push(event);
    }
    assert_eq!(events.last().unwrap(), DONE_DATA);
    assert_eq!(raw.usage().unwrap().completion_tokens, 5);
    assert_eq!(raw.receipt().unwrap().receipt.output_units, 5);

    // A request without stream: true, sent chunked, is answered whole.
    let mut models = stack
        .client
        .stream_text(&enclave, "GET", "/v1/models", b"")
        .await
        .unwrap();
    let list = models.next_event().await.unwrap().unwrap();
    assert!(list.contains(MODEL), "{list}");
    assert!(models.next_event().await.unwrap().is_none());
    assert_eq!(models.receipt().unwrap().receipt.amount, 0);

    // Errors are OpenAI's error objects, with a verified receipt for nothing.
    let mut unknown = chat("hi", 4);
    unknown.model = "gpt-4o".into();
    match stack.client.stream_chat(&enclave, &unknown).await {
        Err(ClientError::Enclave { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("gpt-4o"), "{message}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("an unknown model streamed"),
    }
    // stream: true through the whole-message path is refused with a reason.
    let mut whole_stream = chat("hi", 4);
    whole_stream.stream = Some(true);
    let err = stack
        .client
        .chat_completion(&enclave, &whole_stream)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("message/ohttp-chunked-req"), "{err}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_reserves_its_most_and_is_settled_at_what_it_generated() {
    let store = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    const CREDIT: u128 = 1_000_000;
    let stack = Stack::start(options(Some(LedgerConfig {
        channels: vec![kokon_tests::channel_config(
            CHANNEL,
            &key,
            100 * CREDIT,
            CREDIT,
        )],
        store: store.path().to_path_buf(),
        host_key_file: None,
    })))
    .await;
    let enclave = stack
        .client
        .attest(&stack.policy(DEV_POLICY))
        .await
        .unwrap()
        .with_channel(CHANNEL, key);
    let charged = || async { stack.client.channel_status(CHANNEL).await.unwrap().0 };

    // More than the whole credit could cost: refused before anything runs.
    let err = stack
        .client
        .stream_chat(&enclave, &chat(STORY, 400))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ClientError::Host { status: 402, message } if message.contains("max_tokens")),
        "{err}"
    );
    assert_eq!(charged().await, 0, "a refused stream costs nothing");

    // While one stream holds its reservation, a second that would overrun
    // the credit together with it is refused.
    let mut first = stack
        .client
        .stream_chat(&enclave, &chat(STORY, 100))
        .await
        .unwrap();
    assert!(first.next().await.unwrap().is_some());
    let err = stack
        .client
        .stream_chat(&enclave, &chat(STORY, 250))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ClientError::Host { status: 402, .. }),
        "{err}"
    );
    let (_, _) = collect(&mut first).await;
    let whole = first.receipt().unwrap().receipt.clone();
    let generated = whole.output_units;
    assert!(generated > 20, "the story is long: {generated} tokens");
    // The host counts exactly what the receipt says.
    let settled = kokon_tests::poll_until(charged, |c| *c == whole.amount).await;
    assert_eq!(settled, whole.amount);

    // The same story cut off after three chunks: the host cancels it, and
    // settles what was generated, less than the whole story.
    let mut cut = stack
        .client
        .stream_chat(&enclave, &chat(STORY, 100))
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(cut.next().await.unwrap().is_some());
    }
    drop(cut);
    let after = kokon_tests::poll_until(charged, |c| *c > settled).await;
    let cost = after - settled;
    let prompt_cost = u128::from(whole.units) * PROMPT_PRICE;
    assert!(cost >= prompt_cost + 2 * COMPLETION_PRICE, "{cost}");
    let cut_tokens = (cost - prompt_cost) / COMPLETION_PRICE;
    assert!(
        cut_tokens < u128::from(generated),
        "cut off after {cut_tokens} of {generated} tokens"
    );
    assert_eq!((cost - prompt_cost) % COMPLETION_PRICE, 0);
    stack.shutdown().await;
}

/// A chunked request for `GET path`, sealed to the enclave, sent now.
fn chunked_get(
    enclave: &kokon_client::VerifiedEnclave,
    path: &str,
) -> (Vec<u8>, kokon_seal::chunked::ChunkedClient) {
    let mut m = bhttp::Message::request(
        b"GET".to_vec(),
        b"https".to_vec(),
        b"kokon.enclave".to_vec(),
        path.as_bytes().to_vec(),
    );
    m.put_header(
        kokon_client::SENT_AT_HEADER,
        kokon_client::unix_now().to_string(),
    );
    let mut encoded = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut encoded)
        .unwrap();
    kokon_seal::chunked::encapsulate_chunked(&enclave.key_config, &encoded).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_chunked_requests_are_refused_and_the_enclave_keeps_serving() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    let post = |content_type: &'static str, body: Vec<u8>| {
        let base = stack.base.clone();
        async move { http_post(&base, "/v1/ohttp", content_type, body).await }
    };
    let text = |body: &[u8]| String::from_utf8_lossy(body).into_owned();

    // Garbage as a chunked request: refused by the enclave, nothing opened.
    let (status, body) = post(OHTTP_CHUNKED_REQUEST, vec![0x01, 0x00, 0x20, 7, 7, 7]).await;
    assert_eq!(status, 400, "{}", text(&body));
    assert!(
        text(&body).contains("cannot open the OHTTP request"),
        "{}",
        text(&body)
    );
    // Another media type: 415, naming both accepted ones.
    let (status, body) = post("application/json", b"{}".to_vec()).await;
    assert_eq!(status, 415);
    assert!(
        text(&body).contains(OHTTP_CHUNKED_REQUEST),
        "{}",
        text(&body)
    );

    // A valid chunked request is answered (the classifier's metadata, whole
    // inside the chunked response), and its replay is refused.
    let (sealed, mut opener) = chunked_get(&enclave, "/v2/models/magika");
    let (status, body) = post(OHTTP_CHUNKED_REQUEST, sealed.clone()).await;
    assert_eq!(status, 200, "{}", text(&body));
    let mut plain = opener.push(&body).unwrap();
    plain.push(opener.finish().unwrap());
    let mut decoder = ResponseDecoder::default();
    let parts: Vec<Part> = plain
        .iter()
        .flat_map(|p| decoder.push(p).unwrap())
        .collect();
    decoder.finish().unwrap();
    assert!(
        matches!(parts.first(), Some(Part::Head { status: 200, .. })),
        "{parts:?}"
    );
    assert!(
        matches!(parts.last(), Some(Part::Trailers(t)) if t.iter().any(|(n, _)| n == kokon_billing::RECEIPT_HEADER)),
        "the receipt is in the trailer: {parts:?}"
    );
    let (status, body) = post(OHTTP_CHUNKED_REQUEST, sealed.clone()).await;
    assert_eq!(status, 400);
    assert!(text(&body).contains("replayed"), "{}", text(&body));
    // A chunked request sent as a whole one does not open either.
    let (sealed, _) = chunked_get(&enclave, "/v2/models/magika");
    let (status, body) = post(OHTTP_REQUEST, sealed).await;
    assert_eq!(status, 400, "{}", text(&body));

    // Nothing of that disturbed the enclave.
    let meta = stack
        .client
        .request(&enclave, "GET", "/v2/models/magika", b"", 0)
        .await
        .unwrap();
    assert_eq!(meta.status, 200);
    stack.shutdown().await;
}
