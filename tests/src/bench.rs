//! `kokon-bench`: the cost of confidentiality.
//!
//! In one run, on the same model, session options and input row, it
//! interleaves (a) bare `session.run` in this process and (b) a full
//! confidential inference: seal to the attested key, HTTP relay through the
//! host, Unix-socket hop, open, validate, run, receipt, seal, open, verify.
//! It prints p50/p99 of each and their ratio, where the confidential path's
//! time goes (phases), bare `session.run` latency and rows/s at batch 1, 16,
//! 64 and 256, confidential throughput with 1, 16 and 64 concurrent clients
//! (which the enclave's dynamic batching merges) and, at 64, its ratio to
//! bare throughput at batch 64, the protocol floor (the same clients and
//! enclave serving a model that does next to nothing: what sealing, relay,
//! receipts and the enclave's queue cost and carry on their own), the
//! latency of verifying real TDX and SNP evidence against the `dcap-qvl` and
//! `sev` crates on the same inputs, billing throughput, and text generation
//! (time to first token and decode rate with 1 and 8 streams, confidential
//! against the bare engine and the bare engine against llama.cpp; see
//! `llm_bench`). It ends with `e2e_p50_ratio=<x>`,
//! `llm_decode_ratio=<x>` (confidential decode rate over bare, the lower of
//! the two concurrency levels) and `llm_vs_llamacpp=<x>` (the bare engine's
//! single-stream decode rate over llama.cpp's). Between them it boots the
//! worker VM (`vm_bench`): boot-to-ready time and the confidential latency
//! through the VM beside the process backend's (`vm_vs_process_p50_ratio`).
//!
//! The two are measured in alternating blocks of 50 rather than sample by
//! sample: the bench process and the enclave process each hold a copy of the
//! model, and alternating every few milliseconds makes each evict the
//! other's weights from the shared CPU caches, a cost a deployed enclave
//! (alone on its cores) does not pay. Blocks keep both under the same
//! conditions over the whole run while measuring each warm.
//!
//! `KOKON_BENCH_DEVICE=cuda` runs the magika figures on ONNX Runtime's CUDA
//! execution provider (the enclave with `--device cuda`, the bare session
//! set up as the enclave sets up its own) and the text model's on the GPU
//! and on the CPU; it needs binaries built with `--features
//! kokon-tests/cuda`; on CUDA the confidential throughput passes run
//! twice, the second after each session has seen every batch size merging
//! gave, so that a cost paid once per input shape shows. The default is
//! `cpu`. `kokon-bench gpu` (what `just bench-gpu` runs) measures magika and the text model alone, without the
//! VM, verification and billing figures; `kokon-bench magika` magika's
//! alone; `kokon-bench floor` the protocol floor alone.
//! `KOKON_BENCH_BATCH_DELAY_US` sets the enclave's `--batch-delay-us` for
//! magika and the floor.

mod billing_bench;
mod llm_bench;
mod verification;
mod vm_bench;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kokon_client::magika::Prepared;
use kokon_client::VerifiedEnclave;
use kokon_tests::{magika_request, Env, Options, Stack};
use kokon_wire::kserve::InferRequest;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

const SAMPLES: usize = 400;
const BLOCK: usize = 50;
const WARMUP: usize = 30;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(4);
/// The environment variable choosing the magika figures' device.
/// Batch sizes of the bare throughput figures.
const BARE_BATCHES: [usize; 4] = [1, 16, 64, 256];
/// The enclave's `--batch-delay-us` for the magika figures (its default when unset).
const BATCH_DELAY_ENV: &str = "KOKON_BENCH_BATCH_DELAY_US";
/// Concurrent clients whose confidential throughput is compared with bare
/// throughput at the same batch size.
const RATIO_CLIENTS: usize = 64;
/// Concurrent clients of the confidential throughput figures.
const CLIENTS: [usize; 3] = [1, 16, RATIO_CLIENTS];

/// One bare `session.run` over `rows` rows (`flat`, row-major), timed.
fn bare_run(session: &mut Session, flat: &[i32], rows: usize) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let input = Tensor::from_array((vec![rows, flat.len() / rows.max(1)], flat.to_vec()))?;
    let out = session.run(ort::inputs!["bytes" => input])?;
    let (_, scores) = out
        .get("target_label")
        .ok_or_else(|| anyhow::anyhow!("no output"))?
        .try_extract_tensor::<f32>()?;
    std::hint::black_box(scores);
    Ok(t.elapsed())
}

/// p50 latency and rows/s of bare `session.run` over `batch` copies of `row`.
fn bare_batch(session: &mut Session, row: &[i32], batch: usize) -> anyhow::Result<(Duration, f64)> {
    let flat: Vec<i32> = std::iter::repeat_n(row, batch).flatten().copied().collect();
    let mut run = || bare_run(session, &flat, batch);
    for _ in 0..5 {
        run()?;
    }
    let (mut times, started) = (Vec::new(), Instant::now());
    while times.len() < SAMPLES / 2 && started.elapsed() < THROUGHPUT_WINDOW / 2 {
        times.push(run()?);
    }
    let total: Duration = times.iter().sum();
    let rows_per_s = (times.len() * batch) as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE);
    times.sort();
    Ok((percentile(&times, 0.5), rows_per_s))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// With two or more CPUs, the machine is split in two: the enclave gets
/// the upper half to itself, as a TEE VM gets dedicated vCPUs; the client,
/// the host and the bare baselines share the lower half (on two CPUs: one
/// each). Returns the CPUs the bench process keeps and the enclave's.
fn pin() -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if n < 2 {
        return Ok(((0..n).collect(), Vec::new()));
    }
    let ours: Vec<usize> = (0..n - n / 2).collect();
    kokon_enclave::pin_to_cpus(&ours)?;
    Ok((ours, (n - n / 2..n).collect()))
}

/// The enclave's arguments in every figure: its CPUs, the device and, when
/// [`BATCH_DELAY_ENV`] asks for one, its queueing delay for merging
/// requests (else its default).
fn enclave_args(cpus: &[usize], device: kokon_enclave::inference::Device) -> Vec<String> {
    let mut args = cpus_args(cpus);
    args.extend(kokon_tests::gpu::device_args(device));
    if let Ok(us) = std::env::var(BATCH_DELAY_ENV) {
        args.extend(["--batch-delay-us".into(), us]);
    }
    args
}

/// The enclave's `--cpus` argument for `cpus` (none when empty).
fn cpus_args(cpus: &[usize]) -> Vec<String> {
    if cpus.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
    vec!["--cpus".into(), list.join(",")]
}

fn main() -> anyhow::Result<()> {
    // `kokon-bench verification`: only the evidence verification figures.
    let only = std::env::args().nth(1);
    match only.as_deref() {
        Some("verification") => return verification::run(),
        Some("billing") => return billing_bench::run(),
        Some("vm") => {
            // `kokon-bench vm`: only the worker VM's figures.
            return tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(vm_only());
        }
        _ => {}
    }
    let (cpus, enclave_cpus) = pin()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if only.as_deref() == Some("floor") {
        // `kokon-bench floor`: only the protocol floor.
        let device = kokon_tests::gpu::bench_device().map_err(anyhow::Error::msg)?;
        return runtime.block_on(floor(enclave_args(&enclave_cpus, device)));
    }
    if only.as_deref() == Some("llm") {
        // `kokon-bench llm`: only the text-generation figures.
        return runtime.block_on(async {
            let env = Env::load();
            let ort_env = ort::init_from(&env.ort_lib)?
                .with_name("kokon-bench")
                .build()?;
            let ratios = llm_bench::run(&env, &ort_env, &cpus, &enclave_cpus).await?;
            print_llm_ratios(ratios);
            Ok(())
        });
    }
    let parts = match only.as_deref() {
        Some("gpu") => Parts::Models,
        Some("magika") => Parts::Magika,
        _ => Parts::All,
    };
    runtime.block_on(bench(cpus, enclave_cpus, parts))
}

/// Confidential requests/s and p50 latency of `clients` clients, each
/// sending `request` again as soon as it has the answer, for
/// [`THROUGHPUT_WINDOW`]; fails if any request fails.
async fn throughput(
    stack: &Stack,
    enclave: &Arc<VerifiedEnclave>,
    request: &InferRequest,
    clients: usize,
) -> anyhow::Result<(f64, Duration)> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + THROUGHPUT_WINDOW;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, enclave, request) = (stack.client.clone(), enclave.clone(), request.clone());
        let (done, failed) = (done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.infer(&enclave, &request).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await?);
    }
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(
        failed == 0,
        "{failed} requests failed under {clients} concurrent clients"
    );
    times.sort();
    let rps = done.load(Ordering::Relaxed) as f64 / THROUGHPUT_WINDOW.as_secs_f64();
    Ok((rps, percentile(&times, 0.5)))
}

/// The confidential path's own cost and capacity: the same clients and
/// enclave set-up as magika's figures, serving a model that does next to
/// nothing ([`kokon_tests::trivial_model`]), so that what is left is
/// sealing, relay, opening, receipts and the enclave's queue.
async fn floor(enclave_args: Vec<String>) -> anyhow::Result<()> {
    let env = Env::load();
    let dir = tempfile::tempdir()?;
    let model = kokon_tests::trivial_model(&env, dir.path());
    let policy = kokon_tests::dev_policy_allowing(kokon_tests::TRIVIAL_MODEL, &model);
    let stack = Stack::start(Options {
        enclave_args,
        model: Some((model, kokon_tests::TRIVIAL_MODEL.into())),
        ..Options::default()
    })
    .await;
    let enclave = Arc::new(stack.client.attest(&stack.policy(&policy)).await?);
    let request = kokon_tests::trivial_request(&[7; 2048]);
    println!("protocol floor: a model that does next to nothing (one ReduceMax over 1 x 2048 int32), the same enclave set-up");
    for clients in CLIENTS {
        let (rps, p50) = throughput(&stack, &enclave, &request, clients).await?;
        println!(
            "  {clients:>2} concurrent client(s): {rps:8.1} requests/s   p50 {:7.3} ms",
            ms(p50)
        );
    }
    stack.shutdown().await;
    Ok(())
}

/// The worker VM's figures beside a short process-backend baseline.
async fn vm_only() -> anyhow::Result<()> {
    let env = Env::load();
    let sample = std::fs::read(kokon_tests::repo_root().join("attestation/src/tdx/quote.rs"))?;
    let Prepared::Features(row) = env.magika().prepare(&sample) else {
        anyhow::bail!("sample too small")
    };
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    let request = magika_request(std::slice::from_ref(&row));
    let mut times = Vec::new();
    for i in 0..SAMPLES / 4 + WARMUP {
        let t = Instant::now();
        stack.client.infer(&enclave, &request).await?;
        if i >= WARMUP {
            times.push(t.elapsed());
        }
    }
    times.sort();
    stack.shutdown().await;
    vm_bench::run(&env, &row, percentile(&times, 0.5)).await
}

fn print_llm_ratios(ratios: llm_bench::Ratios) {
    println!("llm_decode_ratio={:.3}", ratios.decode);
    if let Some(cuda) = ratios.decode_cuda {
        println!("llm_decode_ratio_cuda={cuda:.3}");
    }
    match ratios.vs_llamacpp {
        Some(peer) => println!("llm_vs_llamacpp={peer:.3}"),
        None => println!("llm_vs_llamacpp=skipped"),
    }
}

/// What a run of the bench measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parts {
    /// Everything (`kokon-bench`).
    All,
    /// Magika and the text model, on the devices
    /// [`kokon_tests::gpu::bench_devices`] names (`kokon-bench gpu`).
    Models,
    /// Magika alone (`kokon-bench magika`).
    Magika,
}

/// Magika's figures, then the rest that `parts` asks for.
async fn bench(cpus: Vec<usize>, enclave_cpus: Vec<usize>, parts: Parts) -> anyhow::Result<()> {
    let device = kokon_tests::gpu::bench_device().map_err(anyhow::Error::msg)?;
    let env = Env::load();
    let magika = env.magika();
    let sample = std::fs::read(kokon_tests::repo_root().join("attestation/src/tdx/quote.rs"))?;
    let Prepared::Features(row) = magika.prepare(&sample) else {
        anyhow::bail!("sample too small")
    };

    // Bare ONNX Runtime, configured exactly as the enclave configures each session.
    let ort_env = ort::init_from(&env.ort_lib)?
        .with_name("kokon-bench")
        .build()?;
    let mut session = Session::builder(&ort_env)
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| ort::Error::new(e.to_string()))
        })
        .and_then(|b| {
            b.with_intra_threads(1)
                .map_err(|e| ort::Error::new(e.to_string()))
        })
        .and_then(|b| device.configure(b).map_err(ort::Error::new))
        .and_then(|mut b| b.commit_from_file(&env.model))
        .map_err(|e| anyhow::anyhow!("bare session: {e}"))?;
    let mut bare = || bare_run(&mut session, &row, 1);

    // The enclave's own inference path (KServe validation, tensors, run, output), in process.
    let model = kokon_enclave::inference::Model::load(
        &ort_env,
        &env.model,
        "magika",
        device,
        1,
        64,
        kokon_enclave::batcher::Batching::default(),
    )?;
    let kserve_request = magika_request(std::slice::from_ref(&row));
    let mut model_t = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES + WARMUP {
        let t = Instant::now();
        let encoded = kserve_request.encode()?;
        let parsed =
            kokon_wire::kserve::InferRequest::decode(&encoded.body, encoded.header_length)?;
        let (response, _) = model.infer(&parsed)?;
        std::hint::black_box(response.encode()?);
        if i >= WARMUP {
            model_t.push(t.elapsed());
        }
    }
    model_t.sort();

    let enclave_args = enclave_args(&enclave_cpus, device);
    let batch_delay = std::env::var(BATCH_DELAY_ENV).ok();
    let enclave_args_for_floor = enclave_args.clone();
    let stack = Stack::start(Options {
        enclave_args,
        ..Options::default()
    })
    .await;
    let enclave = Arc::new(stack.attest().await);

    let request = magika_request(std::slice::from_ref(&row));

    for _ in 0..WARMUP {
        bare()?;
        stack.client.infer(&enclave, &request).await?;
    }
    let (mut bare_t, mut e2e_t) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for _ in 0..SAMPLES / BLOCK {
        for _ in 0..BLOCK {
            bare_t.push(bare()?);
        }
        for _ in 0..BLOCK {
            let t0 = Instant::now();
            let sealed = enclave.seal_infer(&request, kokon_client::unix_now())?;
            let t1 = Instant::now();
            let response = stack.client.send(&sealed.bytes).await?;
            let t2 = Instant::now();
            let opened = enclave.open(sealed, &response)?;
            let parsed = opened.infer_response()?;
            std::hint::black_box(parsed);
            let t3 = Instant::now();
            e2e_t.push(t3 - t0);
            for (slot, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                slot.push(d);
            }
        }
    }
    bare_t.sort();
    e2e_t.sort();
    let (b50, b99, e50, e99) = (
        percentile(&bare_t, 0.5),
        percentile(&bare_t, 0.99),
        percentile(&e2e_t, 0.5),
        percentile(&e2e_t, 0.99),
    );
    println!("model: magika standard_v3_3 (1 x 2048 int32), ONNX Runtime, device {}, {SAMPLES} samples each in alternating blocks of {BLOCK}; enclave on CPUs {enclave_cpus:?}, batch delay {} us", device.as_str(), batch_delay.as_deref().unwrap_or("(default)"));
    println!(
        "bare session.run      p50 {:7.3} ms   p99 {:7.3} ms",
        ms(b50),
        ms(b99)
    );
    println!("enclave path in-proc  p50 {:7.3} ms   (KServe decode (binary tensors), validate, run, encode; no crypto, no transport)", ms(percentile(&model_t, 0.5)));
    println!(
        "confidential e2e      p50 {:7.3} ms   p99 {:7.3} ms",
        ms(e50),
        ms(e99)
    );
    println!(
        "overhead              p50 {:7.3} ms",
        ms(e50.saturating_sub(b50))
    );
    let names = [
        "client: encode + seal",
        "host relay + enclave (open, infer, receipt, seal)",
        "client: open + verify receipt + parse",
    ];
    for (name, mut v) in names.into_iter().zip(phases) {
        v.sort();
        println!("  phase {name:<52} p50 {:7.3} ms", ms(percentile(&v, 0.5)));
    }

    let mut bare_rows_per_s = Vec::new();
    for batch in BARE_BATCHES {
        let (p50, rows_per_s) = bare_batch(&mut session, &row, batch)?;
        println!(
            "bare session.run, batch {batch:>3}: p50 {:7.3} ms   {rows_per_s:9.0} rows/s",
            ms(p50)
        );
        bare_rows_per_s.push((batch, rows_per_s));
    }

    let mut confidential = 0.0;
    for clients in CLIENTS {
        let (rps, _) = throughput(&stack, &enclave, &request, clients).await?;
        println!("throughput, {clients:>2} concurrent client(s): {rps:8.1} requests/s (enclave on CPUs of its own), 0 failed");
        if clients == RATIO_CLIENTS {
            confidential = rps;
        }
    }
    if device == kokon_enclave::inference::Device::Cuda {
        // Again, now that each session has seen the batch sizes merging
        // gives: a cost paid the first time a session sees a shape (the
        // CUDA provider's per-shape set-up) shows as the difference.
        for clients in CLIENTS {
            let (rps, p50) = throughput(&stack, &enclave, &request, clients).await?;
            println!(
                "throughput again (each batch size seen before), {clients:>2} client(s): {rps:8.1} requests/s   p50 {:7.3} ms",
                ms(p50)
            );
            if let (RATIO_CLIENTS, Some((batch, bare))) = (
                clients,
                bare_rows_per_s.iter().find(|(b, _)| *b == RATIO_CLIENTS),
            ) {
                println!(
                    "confidential throughput at {RATIO_CLIENTS} clients, again, against bare session.run at batch {batch}: {:.3}",
                    rps / bare
                );
            }
        }
    }
    if let Some((batch, bare)) = bare_rows_per_s.iter().find(|(b, _)| *b == RATIO_CLIENTS) {
        println!(
            "confidential throughput at {RATIO_CLIENTS} clients against bare session.run at batch {batch}: {:.3} ({confidential:.0} against {bare:.0} rows/s)",
            confidential / bare
        );
    }
    stack.shutdown().await;
    floor(enclave_args_for_floor).await?;
    let e2e_ratio = e50.as_secs_f64() / b50.as_secs_f64();
    if parts == Parts::Magika {
        println!("e2e_p50_ratio={e2e_ratio:.3}");
        return Ok(());
    }
    if parts == Parts::All {
        vm_bench::run(&env, &row, e50).await?;
        verification::run()?;
        billing_bench::run()?;
    }
    let ratios = llm_bench::run(&env, &ort_env, &cpus, &enclave_cpus).await?;
    println!("e2e_p50_ratio={e2e_ratio:.3}");
    print_llm_ratios(ratios);
    Ok(())
}
