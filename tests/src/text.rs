//! The text model's committed greedy references
//! (`llm/tests/data/smollm2-135m-instruct-greedy.json`, made by
//! `scripts/llm/make_references.py` with Jinja2, llama.cpp's tokenizer and a
//! numpy forward pass) and what checks a generation against them.

// Indexing a serde_json `Value` by key gives `Null` for a missing key: it cannot panic.
#![allow(clippy::indexing_slicing)]

use std::sync::Arc;

use kokon_llm::sampling::Sampling;
use kokon_llm::{Engine, EngineOptions, Event, FinishReason, Request, Stream, TextModel};
use serde_json::Value;

use crate::{repo_root, Env};

/// The references: `cases` (each with `messages`, `prompt_text`,
/// `prompt_tokens`, `greedy_tokens`, `completion`) and `tokens`, how many
/// tokens each was decoded for.
pub fn references() -> Value {
    let path = repo_root().join("llm/tests/data/smollm2-135m-instruct-greedy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of token ids.
pub fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// A generation run to its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The tokens, in order.
    pub tokens: Vec<u32>,
    /// The text streamed, the final piece included.
    pub text: String,
    /// Why it ended.
    pub reason: Option<FinishReason>,
    /// The completion tokens the engine counted.
    pub completion_tokens: usize,
}

/// Runs `stream` to its end; fails the test if the generation fails.
pub fn collect(mut stream: Stream) -> Generated {
    let mut out = Generated {
        tokens: Vec::new(),
        text: String::new(),
        reason: None,
        completion_tokens: 0,
    };
    while let Some(event) = stream.blocking_next() {
        match event {
            Event::Token { id, text } => {
                out.tokens.push(id);
                out.text.push_str(&text);
            }
            Event::Finished {
                reason,
                text,
                completion_tokens,
                ..
            } => {
                out.text.push_str(&text);
                out.reason = Some(reason);
                out.completion_tokens = completion_tokens;
            }
            Event::Failed(e) => panic!("generation failed: {e}"),
        }
    }
    out
}

/// A greedy request for `max_tokens` after `prompt`.
pub fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        prompt,
        max_tokens,
        sampling: Sampling::default(),
        stop: Vec::new(),
    }
}

/// Asserts that `got` is reference case `case` (number `n`): its tokens,
/// text, count and finish reason (`stop` when the reference ends in EOS).
pub fn assert_reference(n: usize, case: &Value, got: &Generated, eos: u32) {
    let expected = ids(&case["greedy_tokens"]);
    assert_eq!(got.tokens, expected, "case {n}: {:?}", case["completion"]);
    assert_eq!(
        Some(got.text.as_str()),
        case["completion"].as_str(),
        "case {n}"
    );
    assert_eq!(got.completion_tokens, expected.len(), "case {n}");
    let want = if expected.last() == Some(&eos) {
        FinishReason::Stop
    } else {
        FinishReason::Length
    };
    assert_eq!(got.reason, Some(want), "case {n}");
}

/// Submits every reference case at once to `engine` (more requests than
/// batch places, joining and leaving at different lengths) and checks each
/// against its reference.
pub fn assert_all_references_batched(engine: &'static Engine) {
    let refs = references();
    let cases = refs["cases"].as_array().cloned().unwrap_or_default();
    assert!(cases.len() >= 20, "at least 20 reference conversations");
    let count = refs["tokens"].as_u64().unwrap_or(0) as usize;
    let handles: Vec<_> = cases
        .iter()
        .map(|c| {
            let stream = engine
                .submit(greedy(ids(&c["prompt_tokens"]), count))
                .unwrap_or_else(|e| panic!("{e}"));
            std::thread::spawn(move || collect(stream))
        })
        .collect();
    let eos = engine.model().config.eos_token_id;
    for (n, (case, handle)) in cases.iter().zip(handles).enumerate() {
        let got = handle
            .join()
            .unwrap_or_else(|_| panic!("case {n} panicked"));
        assert_reference(n, case, &got, eos);
    }
}

/// Starts the default text model's engine with `ort` on `device`, its
/// key/value caches in `cache`'s memory, decoding up to 8 sequences
/// together and prefilling in chunks of 16 tokens.
pub fn start_engine(
    env: &Env,
    ort: &ort::environment::Environment,
    device: kokon_enclave::inference::Device,
    cache: kokon_llm::CacheDevice,
) -> Engine {
    let builder = ort::session::Session::builder(ort).unwrap_or_else(|e| panic!("{e}"));
    let builder = device.configure(builder).unwrap_or_else(|e| panic!("{e}"));
    let model = Arc::new(TextModel::load(&env.llm_dir).unwrap_or_else(|e| panic!("{e}")));
    Engine::start(
        model,
        builder,
        EngineOptions {
            max_batch: 8,
            prefill_chunk: 16,
            cache,
        },
        Arc::new(()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
