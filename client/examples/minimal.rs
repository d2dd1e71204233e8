//! The smallest private inference: attest the enclave behind a local host
//! under the development policy, ask its text model one question sealed to
//! the attested key, and print the answer with its verified receipt.
//!
//! ```text
//! kokon host --llm .cache/models/smollm2-135m-instruct &    # in the kokon checkout
//! cargo run -p kokon-client --example minimal -- http://127.0.0.1:8443
//! ```

use kokon_client::{local, session::Session, Client};
use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};

#[tokio::main]
async fn main() -> Result<(), kokon_client::ClientError> {
    let host = std::env::args()
        .nth(1)
        .unwrap_or("http://127.0.0.1:8443".into());
    // Attested (evidence, measurements, models, prices) before anything is sent.
    let session = Session::open(Client::new(&host), local::dev_policy()?).await?;
    let question = ChatMessage::text_from("user", "Why is the sky blue?");
    let request = ChatCompletionRequest::new("smollm2-135m-instruct", vec![question]);
    // Sealed to the attested key; the receipt is verified before this returns.
    let (answer, receipt) = session.chat_completion(&request).await?;
    for choice in answer.choices {
        println!("{}", choice.message.content);
    }
    println!(
        "receipt {}: {} nanotons",
        receipt.receipt.sequence, receipt.receipt.amount
    );
    Ok(())
}
