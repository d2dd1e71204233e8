//! A private chat completion with the client library: attest the enclave
//! behind a host against a policy, ask its text model a question sealed to
//! the attested key, and check the answer's per-token receipt.
//!
//! ```text
//! cargo run -p kokon-client --example chat -- http://127.0.0.1:8443 policies/production-tdx.toml "Why is the sky blue?"
//! ```
//!
//! The policy's references must be literal (as in `policies/production-*.toml`);
//! the dev policy's `sim-local` and `local-enclave-build` name values of the
//! machine that built the enclave, which `kokon chat` resolves.

use kokon_client::Client;
use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(host), Some(policy), Some(question)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: chat HOST_URL POLICY_FILE QUESTION");
        std::process::exit(64);
    };
    let policy = kokon_policies::Policy::from_toml(
        &std::fs::read_to_string(&policy)?,
        &kokon_policies::LocalReferences::default(),
    )?;
    let client = Client::new(&host);
    // Evidence, nonce, measurements, models and prices: all checked here.
    let enclave = client.attest(&policy).await?;
    let model = enclave
        .evidence
        .claims
        .text_model
        .as_ref()
        .ok_or("the enclave serves no text model")?
        .name
        .clone();
    let request = ChatCompletionRequest {
        max_tokens: Some(64),
        temperature: Some(0.0),
        ..ChatCompletionRequest::new(&model, vec![ChatMessage::text_from("user", &question)])
    };
    // Sealed to the attested key; the host relays ciphertext only. The
    // receipt is verified (signature, digests, token counts, prices)
    // before this returns.
    let (answer, receipt) = client.chat_completion(&enclave, &request).await?;
    for choice in &answer.choices {
        println!("{}", choice.message.content);
    }
    let r = &receipt.receipt;
    eprintln!(
        "{} prompt + {} completion tokens, {} nanotons (receipt {} signed by the attested key)",
        r.units, r.output_units, r.amount, r.sequence
    );
    Ok(())
}
