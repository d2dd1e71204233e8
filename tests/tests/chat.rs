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
use kokon_wire::openai::{ChatCompletionRequest, ChatMessage, CompletionRequest, MessageContent};

const PROMPT_PRICE: u128 = 1000;
const COMPLETION_PRICE: u128 = 3000;

async fn stack() -> Stack {
    let env = kokon_tests::Env::load();
    Stack::start(Options {
        enclave_args: vec![
            "--llm".into(),
            env.llm_dir.display().to_string(),
            "--price-nanoton-per-prompt-token".into(),
            PROMPT_PRICE.to_string(),
            "--price-nanoton-per-completion-token".into(),
            COMPLETION_PRICE.to_string(),
        ],
        ..Options::default()
    })
    .await
}

fn chat(content: &str, max_tokens: u64) -> ChatCompletionRequest {
    ChatCompletionRequest {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..ChatCompletionRequest::new(
            "smollm2-135m-instruct",
            vec![ChatMessage::text_from("user", content)],
        )
    }
}

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
    assert_eq!(completion.usage.unwrap().completion_tokens, 5);
    assert_eq!(receipt.receipt.output_units, 5);
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
