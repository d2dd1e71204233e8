//! Text generation: time to first token and decode throughput with 1 and 8
//! concurrent streams, confidential (sealed, through the host, chunked
//! OHTTP, receipts verified) against the bare engine in this process on the
//! same model, prompts and greedy decoding, and the bare engine against
//! llama.cpp (llama-cpp-python) on the same GGUF file as a peer.
//!
//! The two kokon paths run in alternating rounds, each on one CPU of its
//! own when there are two or more (the enclave on the last, as a TEE VM
//! gets dedicated vCPUs; the bare engine on the others), and llama.cpp on
//! the bare engine's CPUs. The decode rate of a run is the tokens generated
//! after each stream's first, over the time from the first stream's first
//! token to the last stream's end: the batch's aggregate throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kokon_enclave::inference::Device;
use kokon_llm::openai::Endpoint;
use kokon_tests::{Env, Options, Stack};
use kokon_wire::openai::{ChatCompletionChunk, ChatCompletionRequest, ChatMessage, SseDecoder};

const MODEL: &str = "smollm2-135m-instruct";
const MAX_TOKENS: u64 = 48;
const ROUNDS: usize = 3;
const PROMPTS: [&str; 8] = [
    "Tell me a story about a dragon who learns to fly.",
    "Explain why the sky is blue.",
    "Write a short poem about the sea.",
    "What are the benefits of regular exercise?",
    "Describe how a bicycle works.",
    "Give me three tips for learning a new language.",
    "What is photosynthesis?",
    "Describe a busy market in the morning.",
];

/// One stream's timing.
struct Timing {
    start: Instant,
    first: Instant,
    end: Instant,
    tokens: u64,
}

/// A run of concurrent streams: median time to first token, and the
/// aggregate decode rate.
#[derive(Clone, Copy)]
struct Figures {
    ttft: Duration,
    decode_tok_s: f64,
}

fn figures(timings: &[Timing]) -> anyhow::Result<Figures> {
    let mut ttfts: Vec<Duration> = timings.iter().map(|t| t.first - t.start).collect();
    ttfts.sort();
    let first = timings.iter().map(|t| t.first).min();
    let end = timings.iter().map(|t| t.end).max();
    let (Some(first), Some(end)) = (first, end) else {
        anyhow::bail!("no streams");
    };
    let decoded: u64 = timings.iter().map(|t| t.tokens.saturating_sub(1)).sum();
    Ok(Figures {
        ttft: ttfts.get(ttfts.len() / 2).copied().unwrap_or_default(),
        decode_tok_s: decoded as f64 / (end - first).as_secs_f64(),
    })
}

fn request(prompt: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        temperature: Some(0.0),
        max_tokens: Some(MAX_TOKENS),
        ..ChatCompletionRequest::new(MODEL, vec![ChatMessage::text_from("user", prompt)])
    }
}

fn has_content(chunk: &ChatCompletionChunk) -> bool {
    chunk
        .choices
        .first()
        .and_then(|c| c.delta.content.as_deref())
        .is_some_and(|c| !c.is_empty())
}

/// One stream on the bare engine: the enclave's OpenAI layer, no crypto,
/// no transport.
async fn bare_stream(engine: Arc<kokon_llm::Engine>, prompt: &str) -> anyhow::Result<Timing> {
    let mut body = request(prompt);
    body.stream = Some(true);
    body.stream_options = Some(kokon_wire::openai::StreamOptions {
        include_usage: true,
    });
    let body = serde_json::to_vec(&body)?;
    let start = Instant::now();
    let mut generation = kokon_llm::openai::start(&engine, Endpoint::Chat, &body, "bench", 0)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let (mut first, mut tokens, mut sse) = (None, 0, SseDecoder::default());
    while let Some((event, usage)) = generation.next_event().await {
        for data in sse.push(&event).map_err(anyhow::Error::msg)? {
            let chunk = serde_json::from_str::<ChatCompletionChunk>(&data);
            if first.is_none() && chunk.is_ok_and(|c| has_content(&c)) {
                first = Some(Instant::now());
            }
        }
        if let Some(u) = usage {
            tokens = u.completion_tokens;
        }
    }
    let first = first.ok_or_else(|| anyhow::anyhow!("the bare stream produced no text"))?;
    Ok(Timing {
        start,
        first,
        end: Instant::now(),
        tokens,
    })
}

/// One confidential stream: sealed, relayed, opened, receipt verified.
async fn confidential_stream(
    client: kokon_client::Client,
    enclave: Arc<kokon_client::VerifiedEnclave>,
    prompt: &str,
) -> anyhow::Result<Timing> {
    let start = Instant::now();
    let mut stream = client.stream_chat(&enclave, &request(prompt)).await?;
    let mut first = None;
    while let Some(chunk) = stream.next().await? {
        if first.is_none() && has_content(&chunk) {
            first = Some(Instant::now());
        }
    }
    let end = Instant::now();
    anyhow::ensure!(stream.receipt().is_some(), "no verified receipt");
    let tokens = stream.usage().map(|u| u.completion_tokens).unwrap_or(0);
    let first = first.ok_or_else(|| anyhow::anyhow!("the stream produced no text"))?;
    Ok(Timing {
        start,
        first,
        end,
        tokens,
    })
}

/// Runs `streams` concurrent streams of `one` over the prompts.
async fn run_streams<F, Fut>(streams: usize, one: F) -> anyhow::Result<Figures>
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Timing>> + Send + 'static,
{
    let tasks: Vec<_> = PROMPTS
        .iter()
        .take(streams)
        .map(|p| tokio::spawn(one(p)))
        .collect();
    let mut timings = Vec::with_capacity(streams);
    for t in tasks {
        timings.push(t.await??);
    }
    figures(&timings)
}

fn median(mut v: Vec<Figures>) -> Figures {
    v.sort_by(|a, b| a.decode_tok_s.total_cmp(&b.decode_tok_s));
    let mid = v.get(v.len() / 2).copied().unwrap_or(Figures {
        ttft: Duration::ZERO,
        decode_tok_s: 0.0,
    });
    let mut ttfts: Vec<Duration> = v.iter().map(|f| f.ttft).collect();
    ttfts.sort();
    Figures {
        ttft: ttfts.get(ttfts.len() / 2).copied().unwrap_or_default(),
        ..mid
    }
}

/// llama.cpp on the same GGUF, conversations and CPUs, one stream at a time.
fn llamacpp(env: &Env, cpus: &[usize]) -> anyhow::Result<(Figures, String)> {
    let prompts = tempfile::NamedTempFile::new()?;
    let conversations: Vec<_> = PROMPTS
        .iter()
        .map(|p| serde_json::json!([{"role": "user", "content": p}]))
        .collect();
    std::fs::write(prompts.path(), serde_json::to_vec(&conversations)?)?;
    let cpus: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
    let out = std::process::Command::new(&env.python)
        .arg(kokon_tests::repo_root().join("scripts/llm/llamacpp_bench.py"))
        .arg(&env.llm_gguf)
        .arg(prompts.path())
        .args([MAX_TOKENS.to_string(), ROUNDS.to_string(), cpus.join(",")])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "llama.cpp (run `bash scripts/setup.sh bench` to install llama-cpp-python): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let number = |key: &str| {
        result
            .get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| anyhow::anyhow!("llama.cpp bench: no {key} in {result}"))
    };
    let version = result
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    Ok((
        Figures {
            ttft: Duration::from_secs_f64(number("ttft_ms")? / 1e3),
            decode_tok_s: number("decode_tok_s")?,
        },
        version,
    ))
}

/// The text-generation ratios of a run.
pub struct Ratios {
    /// Confidential decode rate over the bare engine's on the CPU, the lower
    /// of the two concurrency levels (the target holds for both).
    pub decode: f64,
    /// The same on the GPU, when the run had one.
    pub decode_cuda: Option<f64>,
    /// The bare engine's single-stream CPU decode rate over llama.cpp's;
    /// `None` when `KOKON_BENCH_SKIP_LLAMACPP` is set (a GPU machine
    /// without llama-cpp-python).
    pub vs_llamacpp: Option<f64>,
}

/// Skips the llama.cpp peer when set.
pub const SKIP_LLAMACPP_ENV: &str = "KOKON_BENCH_SKIP_LLAMACPP";

/// Prints the text-generation figures, on the CPU and, when
/// [`kokon_tests::gpu::bench_devices`] includes it, on the GPU; `cpus` are
/// the bare engine's (and llama.cpp's) CPUs, `enclave_cpus` the enclave's.
pub async fn run(
    env: &Env,
    ort_env: &ort::environment::Environment,
    cpus: &[usize],
    enclave_cpus: &[usize],
) -> anyhow::Result<Ratios> {
    let mut ratios = Ratios {
        decode: 0.0,
        decode_cuda: None,
        vs_llamacpp: None,
    };
    let mut bare_one = 0.0;
    for device in kokon_tests::gpu::bench_devices().map_err(anyhow::Error::msg)? {
        let (decode, single) = on_device(env, ort_env, cpus, enclave_cpus, device).await?;
        match device {
            Device::Cpu => (ratios.decode, bare_one) = (decode, single),
            Device::Cuda => ratios.decode_cuda = Some(decode),
        }
    }
    if std::env::var_os(SKIP_LLAMACPP_ENV).is_some() {
        println!("  llama.cpp: skipped ({SKIP_LLAMACPP_ENV} is set)");
        return Ok(ratios);
    }
    let (peer, version) = llamacpp(env, cpus)?;
    println!(
        "  1 stream(s) llama.cpp     time to first token {:7.1} ms   decode {:7.1} tokens/s (llama-cpp-python {version}, Q4_1 GGUF, {} thread(s), CPU)",
        peer.ttft.as_secs_f64() * 1e3,
        peer.decode_tok_s,
        cpus.len()
    );
    ratios.vs_llamacpp = Some(bare_one / peer.decode_tok_s);
    Ok(ratios)
}

/// The figures on `device`: returns the lower confidential/bare decode
/// ratio of the two concurrency levels and the bare single-stream rate.
async fn on_device(
    env: &Env,
    ort_env: &ort::environment::Environment,
    cpus: &[usize],
    enclave_cpus: &[usize],
    device: Device,
) -> anyhow::Result<(f64, f64)> {
    let engine = Arc::new(kokon_enclave::inference::load_text_model(
        ort_env,
        &env.llm_dir,
        device,
        PROMPTS.len(),
        &kokon_enclave::metrics::Metrics::new(),
    )?);
    let mut enclave_args = vec![
        "--llm".to_string(),
        env.llm_dir.display().to_string(),
        "--llm-max-batch".to_string(),
        PROMPTS.len().to_string(),
    ];
    enclave_args.extend(kokon_tests::gpu::device_args(device));
    enclave_args.extend(crate::cpus_args(enclave_cpus));
    let stack = Stack::start(Options {
        enclave_args,
        ..Options::default()
    })
    .await;
    let enclave = Arc::new(stack.attest().await);
    let bare = |streams| {
        let engine = engine.clone();
        run_streams(streams, move |p| bare_stream(engine.clone(), p))
    };
    let confidential = |streams| {
        let (client, enclave) = (stack.client.clone(), enclave.clone());
        run_streams(streams, move |p| {
            confidential_stream(client.clone(), enclave.clone(), p)
        })
    };
    // Warm both (first runs allocate the caches).
    bare(PROMPTS.len()).await?;
    confidential(PROMPTS.len()).await?;
    println!(
        "text generation: {MODEL} (f32 ONNX, {}), greedy, {MAX_TOKENS} tokens per stream, median of {ROUNDS} alternating rounds; bare engine on CPUs {cpus:?}, enclave on CPUs {enclave_cpus:?}",
        device.as_str()
    );
    let mut ratios = Vec::new();
    let mut bare_one = 0.0;
    for streams in [1usize, PROMPTS.len()] {
        let (mut b, mut c) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            b.push(bare(streams).await?);
            c.push(confidential(streams).await?);
        }
        let (b, c) = (median(b), median(c));
        for (name, f) in [("bare engine ", b), ("confidential", c)] {
            println!(
                "  {streams} stream(s) {name}  time to first token {:7.1} ms   decode {:7.1} tokens/s",
                f.ttft.as_secs_f64() * 1e3,
                f.decode_tok_s
            );
        }
        ratios.push(c.decode_tok_s / b.decode_tok_s);
        if streams == 1 {
            bare_one = b.decode_tok_s;
        }
    }
    stack.shutdown().await;
    // The lower of the two concurrency levels: the target holds for both.
    Ok((ratios.into_iter().fold(f64::INFINITY, f64::min), bare_one))
}
