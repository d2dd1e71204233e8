#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The text model: its conversion is deterministic, its ONNX logits agree with
//! an independent numpy forward pass, and kokon's engine (Rust chat template,
//! tokenizer, KV-cache decoding, continuous batching) reproduces the committed
//! greedy references (Jinja2 + llama.cpp's tokenizer + numpy) token for token.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use kokon_llm::chat::Message;
use kokon_llm::sampling::Sampling;
use kokon_llm::{Engine, Event, FinishReason, LlmError, Request, TextModel};
use kokon_tests::text::{
    assert_all_references_batched, assert_reference, collect, greedy, ids, references,
};
use kokon_tests::{repo_root, Env};
use serde_json::Value;

/// One engine for the whole file (loading it takes seconds), on the CPU.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let env = Env::load();
        let ort = ort::init_from(&env.ort_lib)
            .unwrap()
            .with_name("kokon-llm-test")
            .build()
            .unwrap();
        let engine = kokon_tests::text::start_engine(
            &env,
            &ort,
            kokon_enclave::inference::Device::Cpu,
            kokon_llm::CacheDevice::Cpu,
        );
        std::mem::forget(ort); // the environment lives as long as the process
        engine
    })
}

fn messages(case: &Value) -> Vec<Message> {
    serde_json::from_value(case["messages"].clone()).unwrap()
}

#[test]
fn the_template_and_tokenizer_match_jinja2_and_llama_cpp() {
    let model = engine().model();
    let refs = references();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "at least 20 reference conversations");
    for (n, case) in cases.iter().enumerate() {
        let text = model.template.render(&messages(case), true).unwrap();
        assert_eq!(text, case["prompt_text"].as_str().unwrap(), "case {n}");
        assert_eq!(
            model.prompt_tokens(&text).unwrap(),
            ids(&case["prompt_tokens"]),
            "case {n}: {text:?}"
        );
    }
}

#[test]
fn greedy_decoding_matches_the_references_one_at_a_time_and_batched() {
    let refs = references();
    let cases = refs["cases"].as_array().unwrap();
    let count = refs["tokens"].as_u64().unwrap() as usize;
    let eos = engine().model().config.eos_token_id;
    // Alone: prefill in chunks of 16, then decode with the cache.
    for (n, case) in cases.iter().enumerate().take(2) {
        let prompt = ids(&case["prompt_tokens"]);
        let got = collect(engine().submit(greedy(prompt, count)).unwrap());
        assert_reference(n, case, &got, eos);
    }
    // All at once: more requests than batch places, joining and leaving the
    // batch at different lengths.
    assert_all_references_batched(engine());
}

#[test]
fn stops_max_tokens_and_seeds_behave() {
    let refs = references();
    let case = &refs["cases"][7]; // "Who wrote Romeo and Juliet?"
    let prompt = ids(&case["prompt_tokens"]);
    let completion = case["completion"].as_str().unwrap();
    // max_tokens ends with "length" after exactly that many tokens.
    let got = collect(engine().submit(greedy(prompt.clone(), 3)).unwrap());
    assert_eq!(
        (got.tokens.len(), got.reason, got.completion_tokens),
        (3, Some(FinishReason::Length), 3)
    );
    // A stop sequence cuts the text before it.
    let stop = "Shakespeare";
    let got = collect(
        engine()
            .submit(Request {
                stop: vec![stop.into()],
                ..greedy(prompt.clone(), 32)
            })
            .unwrap(),
    );
    assert_eq!(got.reason, Some(FinishReason::Stop));
    assert_eq!(got.text, completion[..completion.find(stop).unwrap()]);
    // A seed makes sampling reproducible; different seeds differ.
    let sampled = |seed| {
        collect(
            engine()
                .submit(Request {
                    sampling: Sampling {
                        temperature: 1.0,
                        top_p: 0.95,
                        seed: Some(seed),
                    },
                    ..greedy(prompt.clone(), 24)
                })
                .unwrap(),
        )
        .tokens
    };
    assert_eq!(sampled(1), sampled(1));
    assert_ne!(sampled(1), sampled(2));
}

#[test]
fn requests_that_cannot_fit_are_refused_and_the_engine_keeps_serving() {
    let context = engine().model().config.context;
    let err = engine().submit(greedy(vec![1; context], 1)).err().unwrap();
    assert!(matches!(err, LlmError::ContextTooLong { .. }), "{err}");
    assert!(err.to_string().contains(&context.to_string()), "{err}");
    for bad in [
        greedy(vec![], 4),
        greedy(vec![1], 0),
        greedy(vec![u32::MAX], 1),
    ] {
        assert!(engine().submit(bad).is_err());
    }
    let err = engine()
        .submit(Request {
            sampling: Sampling {
                temperature: 3.0,
                ..Sampling::default()
            },
            ..greedy(vec![1], 1)
        })
        .err()
        .unwrap();
    assert!(err.to_string().contains("temperature"), "{err}");
    let got = collect(engine().submit(greedy(vec![1, 2, 3], 2)).unwrap());
    assert_eq!(got.tokens.len(), 2);
}

#[test]
fn a_dropped_stream_is_cancelled_without_disturbing_the_others() {
    let refs = references();
    let prompt = ids(&refs["cases"][1]["prompt_tokens"]);
    let expected = ids(&refs["cases"][1]["greedy_tokens"]);
    let mut abandoned = engine().submit(greedy(prompt.clone(), 500)).unwrap();
    assert!(matches!(
        abandoned.blocking_next(),
        Some(Event::Token { .. })
    ));
    let kept = engine().submit(greedy(prompt, expected.len())).unwrap();
    drop(abandoned);
    assert_eq!(collect(kept).tokens, expected);
}

fn python(env: &Env, args: &[&Path]) -> std::process::Output {
    let mut command = Command::new(&env.python);
    for a in args {
        command.arg(a);
    }
    command.output().unwrap()
}

#[test]
fn the_onnx_logits_agree_with_an_independent_forward_pass() {
    let env = Env::load();
    let scripts = repo_root().join("scripts/llm");
    let refs = repo_root().join("llm/tests/data/smollm2-135m-instruct-greedy.json");
    let out = python(
        &env,
        &[
            &scripts.join("check_logits.py"),
            &env.llm_gguf,
            &env.llm_dir,
            &refs,
        ],
    );
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("agree"), "{report}");
}

#[test]
fn the_conversion_is_deterministic() {
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    env.python_ok([
        repo_root().join("scripts/llm/gguf_to_onnx.py").as_os_str(),
        env.llm_gguf.as_os_str(),
        dir.path().as_os_str(),
        "--name".as_ref(),
        "smollm2-135m-instruct".as_ref(),
    ]);
    let again = TextModel::load(dir.path()).unwrap();
    let setup = TextModel::load(&env.llm_dir).unwrap();
    assert_eq!(hex::encode(again.digest()), hex::encode(setup.digest()));
}

mod openai_api {
    use super::*;
    use kokon_llm::openai::{self, Endpoint};
    use kokon_wire::openai::{ChatCompletion, Completion};

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn chat_body(case: &Value, extra: &str) -> String {
        format!(
            r#"{{"model":"smollm2-135m-instruct","messages":{},"temperature":0,"max_tokens":32{extra}}}"#,
            case["messages"]
        )
    }

    /// The data of each event of a streamed answer, `[DONE]` included.
    fn stream_events(generation: &mut openai::Generation) -> Vec<String> {
        block_on(async {
            let mut out = Vec::new();
            while let Some((event, _)) = generation.next_event().await {
                let text = String::from_utf8(event).unwrap();
                for part in text.split_terminator("\n\n") {
                    out.push(part.strip_prefix("data: ").unwrap().to_string());
                }
            }
            out
        })
    }

    #[test]
    fn a_whole_chat_answer_is_the_reference_with_its_usage() {
        let refs = references();
        let case = &refs["cases"][0];
        let generation = openai::start(
            engine(),
            Endpoint::Chat,
            chat_body(case, "").as_bytes(),
            "t1",
            1_700_000_000,
        )
        .unwrap();
        assert!(!generation.stream);
        let (body, usage) = block_on(generation.whole()).unwrap();
        let answer: ChatCompletion = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer.id, "chatcmpl-t1");
        assert_eq!(answer.object, "chat.completion");
        assert_eq!(answer.model, "smollm2-135m-instruct");
        assert_eq!(
            answer.choices[0].message.content,
            case["completion"].as_str().unwrap()
        );
        assert_eq!(answer.choices[0].finish_reason, "stop");
        assert_eq!(answer.usage, usage);
        assert_eq!(
            usage.prompt_tokens as usize,
            case["prompt_tokens"].as_array().unwrap().len()
        );
        assert_eq!(
            usage.completion_tokens as usize,
            case["greedy_tokens"].as_array().unwrap().len()
        );
    }

    #[test]
    fn a_streamed_chat_answer_is_role_deltas_finish_usage_done() {
        let refs = references();
        let case = &refs["cases"][1];
        let mut generation = openai::start(
            engine(),
            Endpoint::Chat,
            chat_body(
                case,
                r#","stream":true,"stream_options":{"include_usage":true}"#,
            )
            .as_bytes(),
            "t2",
            1,
        )
        .unwrap();
        assert!(generation.stream);
        let events = stream_events(&mut generation);
        assert_eq!(events.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, case["completion"].as_str().unwrap());
        let n = chunks.len();
        assert!(n > 5, "one event per token, not one blob: {n}");
        assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[n - 1]["choices"].as_array().unwrap().len(), 0);
        assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 32);
        assert!(chunks
            .iter()
            .all(|c| c["id"] == "chatcmpl-t2" && c["object"] == "chat.completion.chunk"));
        // Without include_usage there is no usage chunk.
        let mut plain = openai::start(
            engine(),
            Endpoint::Chat,
            chat_body(case, r#","stream":true,"max_tokens":3"#)
                .replace(r#""max_tokens":32,"#, "")
                .as_bytes(),
            "t3",
            1,
        )
        .unwrap();
        let events = stream_events(&mut plain);
        assert!(
            events.iter().all(|e| !e.contains("\"usage\"")),
            "{events:?}"
        );
    }

    #[test]
    fn legacy_completions_whole_and_streamed() {
        let body = br#"{"model":"smollm2-135m-instruct","prompt":"The capital of France is","temperature":0,"max_tokens":8}"#;
        let whole = openai::start(engine(), Endpoint::Completion, body, "c1", 1).unwrap();
        let (bytes, usage) = block_on(whole.whole()).unwrap();
        let answer: Completion = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer.object, "text_completion");
        assert_eq!(usage.completion_tokens, 8);
        let streamed_body = String::from_utf8(body.to_vec())
            .unwrap()
            .replace("}", r#","stream":true}"#);
        let mut streamed = openai::start(
            engine(),
            Endpoint::Completion,
            streamed_body.as_bytes(),
            "c2",
            1,
        )
        .unwrap();
        let events = stream_events(&mut streamed);
        let text: String = events
            .iter()
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter_map(|c| c["choices"][0]["text"].as_str().map(String::from))
            .collect();
        assert_eq!(text, answer.choices[0].text);
    }

    #[test]
    fn refusals_are_openai_error_objects_with_the_right_status() {
        let refs = references();
        let case = &refs["cases"][0];
        let err = |endpoint, body: &str| {
            openai::start(engine(), endpoint, body.as_bytes(), "x", 1)
                .err()
                .unwrap()
        };
        let unknown = err(
            Endpoint::Chat,
            &chat_body(case, "").replace("smollm2-135m-instruct", "gpt-4o"),
        );
        assert_eq!(
            (unknown.status(), unknown.code.as_deref()),
            (404, Some("model_not_found"))
        );
        assert!(unknown.message.contains("gpt-4o"), "{unknown:?}");
        let long = err(
            Endpoint::Completion,
            r#"{"model":"smollm2-135m-instruct","prompt":"hi","max_tokens":100000}"#,
        );
        assert_eq!(
            (long.status(), long.code.as_deref()),
            (400, Some("context_length_exceeded"))
        );
        assert!(long.message.contains("8192"), "{long:?}");
        let bad = err(Endpoint::Chat, "{");
        assert_eq!(bad.status(), 400);
        let bad = err(
            Endpoint::Chat,
            &chat_body(case, r#","temperature":9"#).replace(r#""temperature":0,"#, ""),
        );
        assert_eq!(bad.param.as_deref(), Some("temperature"));
        // And the engine still answers.
        let ok = openai::start(
            engine(),
            Endpoint::Chat,
            chat_body(case, "").as_bytes(),
            "y",
            1,
        )
        .unwrap();
        assert!(block_on(ok.whole()).is_ok());
    }

    #[test]
    fn the_model_list_names_the_served_model() {
        let list = openai::models(engine(), 5);
        assert_eq!(list.object, "list");
        assert_eq!(list.data.len(), 1);
        assert_eq!(list.data[0].id, "smollm2-135m-instruct");
    }
}
