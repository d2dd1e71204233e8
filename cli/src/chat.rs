//! `kokon chat`: verify the enclave, then talk to its text model privately.
//! Each answer is streamed to the terminal as the model writes it, and ends
//! with its verified per-token receipt (on stderr, so the answer alone can
//! be piped); with `--channel`, each receipt is paid.

use std::io::{BufRead, Write};

use kokon_client::{Client, VerifiedEnclave};
use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};

use crate::args::ChatArgs;
use crate::channel::Paying;
use crate::local;

/// `kokon chat`.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let policy = local::load_policy(&args.policy)?;
    let client = local::client(&args.host)?;
    let mut enclave = client.attest(&policy).await?;
    let mut paying = match &args.channel {
        Some(path) => {
            let paying = Paying::open(path, &client).await?;
            enclave = paying.bill(enclave)?;
            Some(paying)
        }
        None => None,
    };
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
            ask(&client, &enclave, &args, &model, &conversation, &mut paying).await?;
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
                let answer =
                    ask(&client, &enclave, &args, &model, &conversation, &mut paying).await?;
                conversation.push(message("assistant", &answer));
            }
        }
    }
    Ok(())
}

fn message(role: &str, text: &str) -> ChatMessage {
    ChatMessage::text_from(role, text)
}

/// One sealed chat completion, streamed to stdout as it comes; prints its
/// receipt to stderr and pays it. Returns the whole answer.
async fn ask(
    client: &Client,
    enclave: &VerifiedEnclave,
    args: &ChatArgs,
    model: &str,
    conversation: &[ChatMessage],
    paying: &mut Option<Paying>,
) -> anyhow::Result<String> {
    let request = ChatCompletionRequest {
        max_tokens: Some(args.max_tokens),
        temperature: Some(args.temperature),
        seed: args.seed,
        ..ChatCompletionRequest::new(model, conversation.to_vec())
    };
    let mut stream = client.stream_chat(enclave, &request).await?;
    let mut answer = String::new();
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await? {
        let piece = chunk
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.delta.content)
            .unwrap_or_default();
        out.write_all(piece.as_bytes())?;
        out.flush()?;
        answer.push_str(&piece);
    }
    writeln!(out)?;
    let receipt = stream
        .receipt()
        .ok_or_else(|| anyhow::anyhow!("the stream ended without a receipt"))?;
    let r = &receipt.receipt;
    eprintln!(
        "receipt verified: seq {} · {} prompt + {} completion tokens · {} nanotons",
        r.sequence, r.units, r.output_units, r.amount
    );
    if let Some(paying) = paying {
        paying.pay(client, r.amount).await?;
        eprintln!("paid {} nanotons on the channel", r.amount);
    }
    Ok(answer)
}
