#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! kokon on an NVIDIA GPU: magika and the text model on ONNX Runtime's CUDA
//! execution provider answer as they do on the CPU, in process and through
//! the confidential path. Each test runs where `kokon_tests::gpu` finds a
//! GPU and a CUDA build, and otherwise says why and passes without running:
//! `cargo test -p kokon-tests --features cuda --test gpu` on a GPU machine,
//! with `KOKON_ORT_LIB` naming onnxruntime-gpu's library (`just setup-gpu`).

use std::sync::OnceLock;

use kokon_enclave::inference::Device;
use kokon_llm::{CacheDevice, Engine};
use kokon_tests::text::{assert_all_references_batched, references};
use kokon_tests::{gpu, magika_request, Env, Stack};

/// The ONNX Runtime environment of this test process (one per process).
fn ort_env() -> &'static ort::environment::Environment {
    static ORT: OnceLock<ort::environment::Environment> = OnceLock::new();
    ORT.get_or_init(|| {
        ort::init_from(&Env::load().ort_lib)
            .unwrap()
            .with_name("kokon-gpu-test")
            .build()
            .unwrap()
    })
}

/// The text model's engine on the GPU with its caches in `cache`'s memory.
fn start_on_cuda(cache: CacheDevice) -> Engine {
    kokon_tests::text::start_engine(&Env::load(), ort_env(), Device::Cuda, cache)
}

/// The text model's engine on the GPU, its caches in the GPU's memory (as
/// the enclave runs it), for the whole file.
fn cuda_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| start_on_cuda(Device::Cuda.cache()))
}

#[test]
fn the_text_model_on_cuda_reproduces_the_greedy_references() {
    if gpu::skip("the_text_model_on_cuda_reproduces_the_greedy_references") {
        return;
    }
    // Every reference at once: 20+ prompts, 32 tokens each, continuous
    // batching of up to 8 sequences, the key/value caches kept in the GPU's
    // memory between steps and copied out only when the batch changes.
    assert_all_references_batched(cuda_engine());
}

#[test]
fn the_text_model_on_cuda_with_its_caches_in_host_memory_gives_the_same_tokens() {
    if gpu::skip("the_text_model_on_cuda_with_its_caches_in_host_memory_gives_the_same_tokens") {
        return;
    }
    // The caches copied to the host after each call and back before the next:
    // the layout the device-resident caches avoid gives the same answers.
    let engine: &'static Engine = Box::leak(Box::new(start_on_cuda(CacheDevice::Cpu)));
    assert_all_references_batched(engine);
}

/// A stack whose enclave runs on `device`, serving magika and the text model.
async fn stack_on(device: Device) -> Stack {
    let mut options = kokon_tests::text_options(0, 0);
    options.enclave_args.extend(gpu::device_args(device));
    Stack::start(options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn magika_through_the_enclave_on_cuda_scores_as_on_the_cpu() {
    if gpu::skip("magika_through_the_enclave_on_cuda_scores_as_on_the_cpu") {
        return;
    }
    let env = Env::load();
    let root = kokon_tests::repo_root();
    let rows: Vec<Vec<i32>> = [
        "attestation/src/tdx/quote.rs",
        "README.md",
        "justfile",
        "Cargo.lock",
    ]
    .iter()
    .map(|f| env.feature_row(&std::fs::read(root.join(f)).unwrap()))
    .collect();
    let mut scores = Vec::new();
    for device in [Device::Cpu, Device::Cuda] {
        let stack = stack_on(device).await;
        let enclave = stack.attest().await;
        assert!(
            enclave.evidence.claims.runtime.ends_with(device.as_str()),
            "{}",
            enclave.evidence.claims.runtime
        );
        let (response, receipt) = stack
            .client
            .infer(&enclave, &magika_request(&rows))
            .await
            .unwrap();
        assert_eq!(receipt.receipt.units, rows.len() as u64);
        scores.push(response.outputs[0].f32_data().unwrap());
        stack.shutdown().await;
    }
    let (cpu, cuda) = (&scores[0], &scores[1]);
    assert_eq!(cpu.len(), cuda.len());
    let worst = cpu
        .iter()
        .zip(cuda)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("magika CPU vs CUDA: largest score difference {worst:e}");
    assert!(worst < 1e-4, "CUDA scores differ from the CPU's by {worst}");
    let label = |s: &[f32]| -> Vec<usize> {
        s.chunks(s.len() / rows.len())
            .map(|row| {
                row.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            })
            .collect()
    };
    assert_eq!(label(cpu), label(cuda));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_chat_on_cuda_streams_the_reference_answer() {
    if gpu::skip("a_private_chat_on_cuda_streams_the_reference_answer") {
        return;
    }
    let refs = references();
    let case = &refs["cases"][0];
    let stack = stack_on(Device::Cuda).await;
    let enclave = stack.attest().await;
    let request: kokon_wire::openai::ChatCompletionRequest =
        serde_json::from_value(serde_json::json!({
            "model": "smollm2-135m-instruct",
            "messages": case["messages"],
            "temperature": 0,
            "max_tokens": refs["tokens"],
        }))
        .unwrap();
    let mut stream = stack.client.stream_chat(&enclave, &request).await.unwrap();
    let (mut text, mut chunks) = (String::new(), 0);
    while let Some(chunk) = stream.next().await.unwrap() {
        if let Some(piece) = chunk
            .choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
        {
            text.push_str(piece);
            chunks += 1;
        }
    }
    assert_eq!(Some(text.as_str()), case["completion"].as_str());
    assert!(chunks > 5, "{chunks} chunks");
    let usage = stream.usage().unwrap();
    assert_eq!(
        stream.receipt().unwrap().receipt.output_units,
        usage.completion_tokens
    );
    stack.shutdown().await;
}
