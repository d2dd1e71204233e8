//! A streamed private chat completion with the client library: attest the
//! enclave behind a host, ask its text model a question sealed to the
//! attested key as chunked OHTTP, print the answer as the model writes it
//! (each chunk sealed in the enclave and relayed by the host as it comes),
//! then the receipt, verified over everything printed.
//!
//! ```text
//! cargo run -p kokon-client --example chat_stream -- http://127.0.0.1:8443 policies/production-tdx.toml "Why is the sky blue?"
//! ```

use std::io::Write;

use kokon_client::Client;
use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(host), Some(policy), Some(question)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: chat_stream HOST_URL POLICY_FILE QUESTION");
        std::process::exit(64);
    };
    let policy = kokon_policies::Policy::from_toml(
        &std::fs::read_to_string(&policy)?,
        &kokon_policies::LocalReferences::default(),
    )?;
    let client = Client::new(&host);
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
        max_tokens: Some(128),
        ..ChatCompletionRequest::new(&model, vec![ChatMessage::text_from("user", &question)])
    };
    let mut stream = client.stream_chat(&enclave, &request).await?;
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await? {
        if let Some(text) = chunk
            .choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
        {
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    writeln!(out)?;
    // The stream reports its end only after the receipt in its trailer
    // verified: signature, digest of every byte printed, token counts, prices.
    if let Some(receipt) = stream.receipt() {
        let r = &receipt.receipt;
        eprintln!(
            "{} prompt + {} completion tokens, {} nanotons (receipt {})",
            r.units, r.output_units, r.amount, r.sequence
        );
    }
    Ok(())
}
