//! `kokon chat`: verify the enclave, then talk to its text model privately.
//! Each answer comes with its verified per-token receipt (on stderr, so the
//! answer alone can be piped).

use std::io::{BufRead, Write};

use kokon_client::{Client, VerifiedEnclave};
use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};

use crate::args::ChatArgs;
use crate::local;

/// `kokon chat`.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let policy = local::load_policy(&args.policy)?;
    let client = Client::new(&args.host);
    let enclave = client.attest(&policy).await?;
    let Some(text) = &enclave.evidence.claims.text_model else {
        anyhow::bail!("the attested enclave serves no text model (its host runs without --llm)");
    };
    let model = args.model.clone().unwrap_or_else(|| text.name.clone());
    eprintln!(
        "attested: {} sha256:{}… under policy {:?}",
        text.name,
        &hex::encode(text.digest)[..16],
        policy.name
    );
    let mut conversation: Vec<ChatMessage> =
        args.system.iter().map(|s| message("system", s)).collect();
    match &args.prompt {
        Some(prompt) => {
            conversation.push(message("user", prompt));
            let answer = ask(&client, &enclave, &args, &model, &conversation).await?;
            println!("{answer}");
        }
        None => {
            let stdin = std::io::stdin();
            loop {
                eprint!("> ");
                std::io::stderr().flush().ok();
                let mut line = String::new();
                if stdin.lock().read_line(&mut line)? == 0 {
                    break;
                }
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                conversation.push(message("user", line));
                let answer = ask(&client, &enclave, &args, &model, &conversation).await?;
                println!("{answer}");
                conversation.push(message("assistant", &answer));
            }
        }
    }
    Ok(())
}

fn message(role: &str, text: &str) -> ChatMessage {
    ChatMessage::text_from(role, text)
}

/// One sealed chat completion; prints its receipt to stderr.
async fn ask(
    client: &Client,
    enclave: &VerifiedEnclave,
    args: &ChatArgs,
    model: &str,
    conversation: &[ChatMessage],
) -> anyhow::Result<String> {
    let request = ChatCompletionRequest {
        max_tokens: Some(args.max_tokens),
        temperature: Some(args.temperature),
        seed: args.seed,
        ..ChatCompletionRequest::new(model, conversation.to_vec())
    };
    let (answer, receipt) = client.chat_completion(enclave, &request).await?;
    let r = &receipt.receipt;
    eprintln!(
        "receipt verified: seq {} · {} prompt + {} completion tokens · {} nanotons",
        r.sequence, r.units, r.output_units, r.amount
    );
    let content = answer
        .choices
        .into_iter()
        .next()
        .map(|c| c.message.content)
        .unwrap_or_default();
    Ok(content)
}
