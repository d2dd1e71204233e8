#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Private text generation end to end: a host launches the enclave with the
//! text model; the client attests it (the text model's digest is in the
//! claims, measured into RTMR3 and pinned by the policy), sends OpenAI API
//! requests sealed to it, and checks per-token receipts.

use kokon_client::ClientError;
use kokon_tests::{Options, Stack, DEV_POLICY};
use kokon_wire::openai::{ChatMessage, CompletionRequest, MessageContent};

const PROMPT_PRICE: u128 = 1000;
const COMPLETION_PRICE: u128 = 3000;

async fn stack() -> Stack {
    Stack::start(kokon_tests::text_options(PROMPT_PRICE, COMPLETION_PRICE)).await
}

use kokon_tests::chat_request as chat;

#[tokio::test(flavor = "multi_thread")]
async fn a_private_chat_completion_with_a_per_token_receipt() {
    let stack = stack().await;
    let enclave = stack.attest().await;
    let text = enclave.evidence.claims.text_model.clone().unwrap();
    assert_eq!(text.name, "smollm2-135m-instruct");
    let (answer, receipt) = stack
        .client
        .chat_completion(&enclave, &chat("What is the capital of France?", 32))
        .await
        .unwrap();
    assert_eq!(
        answer.choices[0].message.content,
        "The capital of France is Paris."
    );
    let r = &receipt.receipt;
    assert_eq!(r.model_digest, text.digest);
    assert_eq!(
        (r.units, r.output_units),
        (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    );
    assert_eq!(
        (r.price_per_unit, r.price_per_output_unit),
        (PROMPT_PRICE, COMPLETION_PRICE)
    );
    assert_eq!(
        r.amount,
        u128::from(r.units) * PROMPT_PRICE + u128::from(r.output_units) * COMPLETION_PRICE
    );
    // The legacy completions endpoint and the model list.
    let request = CompletionRequest {
        max_tokens: Some(5),
        temperature: Some(0.0),
        ..CompletionRequest::new("smollm2-135m-instruct", "The capital of France is")
    };
    let (completion, receipt) = stack.client.completion(&enclave, &request).await.unwrap();
    let usage = completion.usage.unwrap();
    assert_eq!(usage.completion_tokens, 5);
    assert_eq!(receipt.receipt.output_units, 5);
    // The enclave's engine reports its work to the host's /metrics: every
    // prompt token prefilled, decode steps and their batch sizes.
    let (_, metrics) = kokon_tests::http_get(&stack.base, "/metrics").await;
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    let model = "model=\"smollm2-135m-instruct\"";
    assert_eq!(
        sample(&format!(
            "kokon_enclave_processed_tokens_total{{{model},call=\"prefill\"}}"
        )),
        (answer.usage.prompt_tokens + usage.prompt_tokens) as f64
    );
    assert!(
        sample(&format!(
            "kokon_enclave_batch_size_count{{{model},call=\"decode\"}}"
        )) >= 4.0
    );
    assert_eq!(
        sample(&format!(
            "kokon_enclave_queue_wait_seconds_count{{{model}}}"
        )),
        2.0
    );
    let models = stack.client.models(&enclave).await.unwrap();
    assert_eq!(models.data[0].id, "smollm2-135m-instruct");
    // The classifier keeps working beside it.
    let meta = stack
        .client
        .request(&enclave, "GET", "/v2/models/magika", b"", 0)
        .await
        .unwrap();
    assert_eq!(meta.status, 200);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_errors_reach_the_client_and_the_enclave_keeps_serving() {
    let stack = stack().await;
    let enclave = stack.attest().await;
    let mut unknown = chat("hi", 4);
    unknown.model = "gpt-4o".into();
    match stack.client.chat_completion(&enclave, &unknown).await {
        Err(ClientError::Enclave { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("gpt-4o"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let too_long = chat("hi", 100_000);
    match stack.client.chat_completion(&enclave, &too_long).await {
        Err(ClientError::Enclave { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("context"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut bad = chat("hi", 4);
    bad.messages.push(ChatMessage {
        role: "user".into(),
        content: MessageContent::Parts(vec![kokon_wire::openai::ContentPart {
            kind: "image_url".into(),
            text: None,
        }]),
        name: None,
    });
    match stack.client.chat_completion(&enclave, &bad).await {
        Err(ClientError::Enclave { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("image_url"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // An unknown route of the OpenAI API is a 404, not a server error.
    match stack
        .client
        .text_request(&enclave, "GET", "/v1/embeddings", b"")
        .await
    {
        Err(ClientError::Enclave { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("/v1/chat/completions"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Invalid JSON, sent as raw bytes.
    match stack
        .client
        .text_request(&enclave, "POST", "/v1/chat/completions", b"{not json")
        .await
    {
        Err(ClientError::Enclave { status, .. }) => assert_eq!(status, 400),
        other => panic!("{other:?}"),
    }
    let (answer, _) = stack
        .client
        .chat_completion(&enclave, &chat("hi", 4))
        .await
        .unwrap();
    assert_eq!(answer.usage.completion_tokens, 4);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_does_not_pin_the_text_model_refuses_the_enclave() {
    let stack = stack().await;
    // The development policy without the text model's entry.
    let cut = DEV_POLICY
        .find("[[models.allowed]]\n# SmolLM2")
        .expect("the dev policy pins the text model");
    let policy = stack.policy(&DEV_POLICY[..cut]);
    let err = stack
        .client
        .attest(&policy)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("text model"), "{err}");
    assert!(err.contains("smollm2-135m-instruct"), "{err}");
    // A client whose policy allows no token price refuses a priced receipt.
    let cheap = DEV_POLICY.replace(
        "max_nanoton_per_completion_token = 3000",
        "max_nanoton_per_completion_token = 2999",
    );
    let enclave = stack.client.attest(&stack.policy(&cheap)).await.unwrap();
    let err = stack
        .client
        .chat_completion(&enclave, &chat("hi", 2))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("price per output unit"), "{err}");
    stack.shutdown().await;
}

fn kokon(stack: &Stack, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(&stack.env.kokon_bin)
        .args(args)
        .current_dir(kokon_tests::repo_root())
        .env("KOKON_DATA_DIR", stack.data.path())
        .env("KOKON_ENCLAVE_BIN", &stack.env.enclave_bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kokon_chat_answers_once_or_in_a_conversation() {
    let stack = stack().await;
    let base = stack.base.clone();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "chat",
            "--host",
            base.as_str(),
            "--policy",
            "policies/dev-sim.toml",
            "--temperature",
            "0",
            "--max-tokens",
            "24",
        ];
        a.extend_from_slice(extra);
        a
    };
    let out = kokon(&stack, &args(&["What is the capital of France?"]), "");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "The capital of France is Paris.");
    assert!(
        stderr.contains("attested: smollm2-135m-instruct"),
        "{stderr}"
    );
    assert!(stderr.contains("receipt verified"), "{stderr}");
    // Interactive: one question per line, the conversation kept.
    let out = kokon(&stack, &args(&[]), "My name is Ada.\n\nWhat is my name?\n");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("receipt verified").count(), 2, "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Ada"),
        "the second answer saw the first exchange: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stack.shutdown().await;
    // An enclave without a text model: a clear error.
    let plain = Stack::start(Options::default()).await;
    let base = plain.base.clone();
    let out = kokon(
        &plain,
        &[
            "chat",
            "--host",
            &base,
            "--policy",
            "policies/dev-sim.toml",
            "hi",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("serves no text model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plain.shutdown().await;
}
