//! OpenAI request bodies as the enclave decrypts them (`/v1/chat/completions`,
//! `/v1/completions`): parsing and parameter checks must refuse, never panic.
#![no_main]
use kokon_wire::openai::{ChatCompletionRequest, CompletionRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ChatCompletionRequest::parse(data) {
        let _ = request.params();
        for message in &request.messages {
            let _ = message.text();
        }
    }
    if let Ok(request) = CompletionRequest::parse(data) {
        let _ = request.params();
        let _ = request.prompt_text();
    }
});
