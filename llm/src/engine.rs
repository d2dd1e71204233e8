//! The generation engine: one thread that owns the ONNX Runtime session and
//! schedules every request at the granularity of a model call (continuous
//! batching).
//!
//! Each iteration of its loop does at most two calls:
//!
//! 1. one *prefill chunk* (up to [`EngineOptions::prefill_chunk`] prompt
//!    tokens) of the request at the head of the queue, in its own batch-of-one
//!    key/value cache; when its prompt is done, its first token is sampled and
//!    it joins the running batch;
//! 2. one *decode step* of the running batch: every sequence gets one token,
//!    in a single call whose inputs are left-padded to the longest cache
//!    (attention mask 0 on padding, positions counted per sequence).
//!
//! So a long prompt delays the running streams by one chunk per step, never
//! by its whole prefill, and a long answer never holds up a new request: it
//! waits at most for a free place in the batch ([`EngineOptions::max_batch`]).
//! The caches stay ONNX Runtime values between steps, where the decoder
//! computes ([`EngineOptions::cache`]: on the GPU they never leave its
//! memory; each call binds them as inputs and the new caches as outputs on
//! the device, and only the logits come back to the host). They are copied
//! and re-laid out only when a sequence joins or leaves the batch.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::Tensor;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::model::TextModel;
use crate::sampling::{Sampler, Sampling};
use crate::text::{Detokenizer, StopMatcher};
use crate::LlmError;

/// How the engine schedules.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// Most prompt tokens prefilled in one call.
    pub prefill_chunk: usize,
    /// Where the key/value caches stay between calls: the memory of the
    /// device the session's execution provider computes on.
    pub cache: CacheDevice,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_batch: 8,
            prefill_chunk: 128,
            cache: CacheDevice::Cpu,
        }
    }
}

/// The memory the key/value caches live in between decoder calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheDevice {
    /// Host memory (the CPU execution provider).
    #[default]
    Cpu,
    /// The first GPU's memory (the CUDA execution provider on device 0).
    Cuda,
}

impl CacheDevice {
    fn memory(self) -> Result<MemoryInfo<'static>, String> {
        let device = match self {
            Self::Cpu => AllocationDevice::CPU,
            Self::Cuda => AllocationDevice::CUDA,
        };
        MemoryInfo::new(device, 0, AllocatorType::Device, MemoryType::Default)
            .map_err(|e| e.to_string())
    }
}

/// What the engine reports of its work, for metrics: sizes and timings
/// only, never a token. Called on the engine's thread: keep it cheap.
pub trait Observer: Send + Sync {
    /// One decoder call: `rows` sequences (a prefill chunk has one) of
    /// `tokens` new tokens in all, which took `elapsed`.
    fn model_call(&self, kind: CallKind, rows: usize, tokens: usize, elapsed: Duration);
    /// A request left the queue for its prefill after waiting `waited`.
    fn dequeued(&self, waited: Duration);
    /// Requests waiting for a place in the batch now.
    fn queue_depth(&self, depth: usize);
}

/// Which of the engine's calls an [`Observer`] is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A chunk of one request's prompt.
    Prefill,
    /// One token for every sequence in the running batch.
    Decode,
}

/// Reports nothing.
impl Observer for () {
    fn model_call(&self, _: CallKind, _: usize, _: usize, _: Duration) {}
    fn dequeued(&self, _: Duration) {}
    fn queue_depth(&self, _: usize) {}
}

/// One generation.
#[derive(Debug, Clone)]
pub struct Request {
    /// The prompt's tokens (a rendered conversation, tokenized).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// Generation ends before the first of these in its text.
    pub stop: Vec<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model's end-of-sequence token, or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// What a generation produces, in order: tokens, then one `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token and the text it releases (empty while a character or
    /// a possible stop sequence is incomplete, and for special tokens).
    Token {
        /// The token.
        id: u32,
        /// Released text.
        text: String,
    },
    /// The generation ended.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Text held back until the end (a partial stop sequence that never completed).
        text: String,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens, the end-of-sequence token included.
        completion_tokens: usize,
    },
    /// The model failed; the generation ended.
    Failed(String),
}

/// The events of one generation. Dropping it cancels the generation.
pub struct Stream {
    events: UnboundedReceiver<Event>,
}

impl Stream {
    /// The next event; `None` once the generation has ended.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event, blocking the thread (not for async contexts).
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.events.blocking_recv()
    }
}

struct Job {
    request: Request,
    events: UnboundedSender<Event>,
}

/// A running engine: submit requests from any thread.
pub struct Engine {
    model: Arc<TextModel>,
    jobs: mpsc::Sender<Job>,
}

impl Engine {
    /// Loads the model's decoder with `builder` (which sets the execution
    /// provider) and starts the engine's thread, which reports its work to
    /// `observer`.
    pub fn start(
        model: Arc<TextModel>,
        builder: SessionBuilder,
        options: EngineOptions,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, LlmError> {
        let path = model.onnx_path();
        let error = |reason: String| LlmError::Model {
            path: path.display().to_string(),
            reason,
        };
        let mut builder = builder;
        let session = builder
            .commit_from_file(&path)
            .map_err(|e| error(e.to_string()))?;
        check_signature(&session, &model).map_err(error)?;
        let cache_memory = options.cache.memory().map_err(error)?;
        let host_memory = CacheDevice::Cpu.memory().map_err(error)?;
        let (jobs, receiver) = mpsc::channel();
        let scheduler = Scheduler {
            session,
            model: model.clone(),
            options: EngineOptions {
                max_batch: options.max_batch.max(1),
                prefill_chunk: options.prefill_chunk.max(1),
                cache: options.cache,
            },
            cache_memory,
            host_memory,
            batch: Batch::default(),
            queue: VecDeque::new(),
            prefill: None,
            observer,
        };
        std::thread::Builder::new()
            .name("kokon-llm".into())
            .spawn(move || scheduler.run(receiver))
            .map_err(|e| error(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { model, jobs })
    }

    /// The model served.
    pub fn model(&self) -> &TextModel {
        &self.model
    }

    /// Checks `request` and queues it.
    pub fn submit(&self, request: Request) -> Result<Stream, LlmError> {
        let config = &self.model.config;
        request.sampling.validate()?;
        if request.prompt.is_empty() {
            return Err(LlmError::BadParameter("the prompt is empty".into()));
        }
        if request.max_tokens == 0 {
            return Err(LlmError::BadParameter(
                "max_tokens must be at least 1".into(),
            ));
        }
        if let Some(bad) = request.prompt.iter().find(|t| **t as usize >= config.vocab) {
            return Err(LlmError::BadParameter(format!(
                "token {bad} is outside the vocabulary of {}",
                config.vocab
            )));
        }
        if request.prompt.len().saturating_add(request.max_tokens) > config.context {
            return Err(LlmError::ContextTooLong {
                prompt: request.prompt.len(),
                max_tokens: request.max_tokens,
                context: config.context,
            });
        }
        let (events, receiver) = unbounded_channel();
        self.jobs
            .send(Job { request, events })
            .map_err(|_| LlmError::Stopped)?;
        Ok(Stream { events: receiver })
    }
}

fn key_name(layer: usize, value: bool) -> String {
    format!(
        "past_key_values.{layer}.{}",
        if value { "value" } else { "key" }
    )
}

fn present_name(layer: usize, value: bool) -> String {
    format!("present.{layer}.{}", if value { "value" } else { "key" })
}

/// The decoder must have exactly the inputs and outputs the engine feeds.
fn check_signature(session: &Session, model: &TextModel) -> Result<(), String> {
    let mut inputs = vec![
        "input_ids".to_string(),
        "attention_mask".into(),
        "position_ids".into(),
    ];
    let mut outputs = vec!["logits".to_string()];
    for layer in 0..model.config.layers {
        for value in [false, true] {
            inputs.push(key_name(layer, value));
            outputs.push(present_name(layer, value));
        }
    }
    let found_inputs: Vec<String> = session.inputs().iter().map(|i| i.name().into()).collect();
    let found_outputs: Vec<String> = session.outputs().iter().map(|o| o.name().into()).collect();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    if sorted(found_inputs.clone()) != sorted(inputs.clone()) {
        return Err(format!(
            "decoder inputs are {found_inputs:?}; expected {inputs:?} for {} layers",
            model.config.layers
        ));
    }
    if sorted(found_outputs.clone()) != sorted(outputs.clone()) {
        return Err(format!(
            "decoder outputs are {found_outputs:?}; expected {outputs:?}"
        ));
    }
    Ok(())
}

/// One generation in the engine.
struct Sequence {
    prompt: Vec<i64>,
    /// Tokens in its key/value cache.
    cached: usize,
    /// The token the next decode step feeds.
    next: i64,
    generated: usize,
    max_tokens: usize,
    sampler: Sampler,
    detokenizer: Detokenizer,
    stops: StopMatcher,
    events: UnboundedSender<Event>,
    queued_at: Instant,
}

impl Sequence {
    fn new(job: Job) -> Self {
        Self {
            prompt: job.request.prompt.iter().map(|&t| i64::from(t)).collect(),
            cached: 0,
            next: 0,
            generated: 0,
            max_tokens: job.request.max_tokens,
            sampler: Sampler::new(job.request.sampling),
            detokenizer: Detokenizer::default(),
            stops: StopMatcher::new(&job.request.stop),
            events: job.events,
            queued_at: Instant::now(),
        }
    }

    fn cancelled(&self) -> bool {
        self.events.is_closed()
    }

    /// Samples the next token from `logits` and reports it; `false` when the
    /// generation has ended.
    fn accept(&mut self, model: &TextModel, logits: &[f32]) -> bool {
        let id = self.sampler.next(logits);
        self.generated += 1;
        self.next = i64::from(id);
        let eos = id == model.config.eos_token_id;
        let piece = if eos {
            String::new()
        } else {
            match self.detokenizer.push(&model.tokenizer, id) {
                Ok(piece) => piece,
                Err(e) => {
                    let _ = self.events.send(Event::Failed(e.to_string()));
                    return false;
                }
            }
        };
        let (text, stopped) = self.stops.push(&piece);
        let _ = self.events.send(Event::Token { id, text });
        let reason = if eos || stopped {
            FinishReason::Stop
        } else if self.generated >= self.max_tokens {
            FinishReason::Length
        } else {
            return true;
        };
        let _ = self.events.send(Event::Finished {
            reason,
            text: if stopped {
                String::new()
            } else {
                self.stops.finish()
            },
            prompt_tokens: self.prompt.len(),
            completion_tokens: self.generated,
        });
        false
    }
}

/// The running batch: its sequences and their caches, left-padded to `width`.
#[derive(Default)]
struct Batch {
    rows: Vec<Sequence>,
    /// Per layer, key then value: `[rows, kv_heads, width, head_dim]`.
    cache: Vec<Cache>,
    width: usize,
}

/// A request being prefilled, with its own cache.
struct Prefill {
    sequence: Sequence,
    cache: Vec<Cache>,
}

/// One layer's key or value cache, in [`EngineOptions::cache`]'s memory.
type Cache = Tensor<f32>;

struct Scheduler {
    session: Session,
    model: Arc<TextModel>,
    options: EngineOptions,
    /// Where the caches the decoder returns are put.
    cache_memory: MemoryInfo<'static>,
    /// Where the logits are put.
    host_memory: MemoryInfo<'static>,
    batch: Batch,
    queue: VecDeque<Sequence>,
    prefill: Option<Prefill>,
    observer: Arc<dyn Observer>,
}

/// The inputs of one decoder call.
struct Call {
    kind: CallKind,
    ids: Vec<i64>,
    positions: Vec<i64>,
    mask: Vec<i64>,
    rows: usize,
    seq: usize,
    total: usize,
}

impl Scheduler {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            if self.batch.rows.is_empty() && self.prefill.is_none() && self.queue.is_empty() {
                match jobs.recv() {
                    Ok(job) => self.queue.push_back(Sequence::new(job)),
                    Err(_) => return, // the engine was dropped
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.queue.push_back(Sequence::new(job));
            }
            self.queue.retain(|s| !s.cancelled());
            if self.prefill.is_none() && self.batch.rows.len() < self.options.max_batch {
                if let Some(sequence) = self.queue.pop_front() {
                    self.observer.dequeued(sequence.queued_at.elapsed());
                    match self.empty_cache() {
                        Ok(cache) => self.prefill = Some(Prefill { sequence, cache }),
                        Err(e) => {
                            let _ = sequence.events.send(Event::Failed(e));
                        }
                    }
                }
            }
            self.observer.queue_depth(self.queue.len());
            if let Some(prefill) = self.prefill.take() {
                self.prefill = self.prefill_chunk(prefill);
            }
            if !self.batch.rows.is_empty() {
                self.decode_step();
            }
        }
    }

    fn dims(&self) -> (usize, usize, usize) {
        let c = &self.model.config;
        (c.layers, c.kv_heads, c.head_dim)
    }

    fn empty_cache(&self) -> Result<Vec<Cache>, String> {
        let (layers, heads, dim) = self.dims();
        (0..2 * layers)
            .map(|_| cache_tensor(1, heads, 0, dim, Vec::new()))
            .collect()
    }

    /// Runs the decoder; returns the logits (`rows * vocab`, in host
    /// memory) and the new caches (in the caches' memory).
    fn call(&mut self, call: Call, cache: Vec<Cache>) -> Result<(Vec<f32>, Vec<Cache>), String> {
        let (layers, _, _) = self.dims();
        let err = |e: ort::Error| e.to_string();
        let mut binding = self.session.create_binding().map_err(err)?;
        let ids = Tensor::from_array(([call.rows, call.seq], call.ids)).map_err(err)?;
        let positions = Tensor::from_array(([call.rows, call.seq], call.positions)).map_err(err)?;
        let mask = Tensor::from_array(([call.rows, call.total], call.mask)).map_err(err)?;
        binding.bind_input("input_ids", &ids).map_err(err)?;
        binding
            .bind_input("position_ids", &positions)
            .map_err(err)?;
        binding.bind_input("attention_mask", &mask).map_err(err)?;
        for (i, value) in cache.iter().enumerate() {
            binding
                .bind_input(key_name(i / 2, i % 2 == 1), value)
                .map_err(err)?;
        }
        binding
            .bind_output_to_device("logits", &self.host_memory)
            .map_err(err)?;
        for i in 0..2 * layers {
            binding
                .bind_output_to_device(present_name(i / 2, i % 2 == 1), &self.cache_memory)
                .map_err(err)?;
        }
        let (kind, rows, tokens) = (call.kind, call.rows, call.rows * call.seq);
        let started = Instant::now();
        let mut outputs = self.session.run_binding(&binding).map_err(err)?;
        self.observer
            .model_call(kind, rows, tokens, started.elapsed());
        let logits = outputs
            .get("logits")
            .ok_or("the decoder returned no logits")?
            .try_extract_tensor::<f32>()
            .map_err(err)?
            .1
            .to_vec();
        let vocab = self.model.config.vocab;
        if logits.len() != call.rows * vocab {
            return Err(format!(
                "the decoder returned {} logits for {} rows of {vocab}",
                logits.len(),
                call.rows
            ));
        }
        let cache = (0..2 * layers)
            .map(|i| {
                let name = present_name(i / 2, i % 2 == 1);
                outputs
                    .remove(name.as_str())
                    .ok_or_else(|| format!("the decoder returned no {name}"))?
                    .downcast::<ort::value::TensorValueType<f32>>()
                    .map_err(|e| format!("{name}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((logits, cache))
    }

    /// One chunk of `prefill`'s prompt; returns it if its prompt is not done.
    fn prefill_chunk(&mut self, mut prefill: Prefill) -> Option<Prefill> {
        if prefill.sequence.cancelled() {
            return None;
        }
        let start = prefill.sequence.cached;
        let end = prefill
            .sequence
            .prompt
            .len()
            .min(start + self.options.prefill_chunk);
        let ids = prefill
            .sequence
            .prompt
            .get(start..end)
            .unwrap_or_default()
            .to_vec();
        let call = Call {
            kind: CallKind::Prefill,
            seq: ids.len(),
            ids,
            positions: (start as i64..end as i64).collect(),
            mask: vec![1; end],
            rows: 1,
            total: end,
        };
        let cache = std::mem::take(&mut prefill.cache);
        let (logits, cache) = match self.call(call, cache) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, "prefill failed");
                let _ = prefill.sequence.events.send(Event::Failed(e));
                return None;
            }
        };
        prefill.sequence.cached = end;
        prefill.cache = cache;
        if end < prefill.sequence.prompt.len() {
            return Some(prefill);
        }
        let model = self.model.clone();
        if prefill.sequence.accept(&model, &logits) {
            self.join(prefill);
        }
        None
    }

    /// Adds a prefilled sequence to the running batch.
    fn join(&mut self, prefill: Prefill) {
        let (_, heads, dim) = self.dims();
        let width = self.batch.width.max(prefill.sequence.cached);
        let old = std::mem::take(&mut self.batch.cache);
        let rows = self.batch.rows.len();
        let result = if rows == 0 {
            Ok(prefill.cache)
        } else {
            old.into_iter()
                .zip(prefill.cache)
                .map(|(batch, single)| {
                    let (batch, single) = (on_host(batch)?, on_host(single)?);
                    let (batch, single) = (extract(&batch)?, extract(&single)?);
                    let mut parts = row_slices(batch, rows, heads, self.batch.width, dim);
                    parts.push((single, prefill.sequence.cached));
                    cache_tensor(
                        rows + 1,
                        heads,
                        width,
                        dim,
                        assemble(&parts, heads, dim, width),
                    )
                })
                .collect()
        };
        match result {
            Ok(cache) => {
                self.batch.cache = cache;
                self.batch.width = width;
                self.batch.rows.push(prefill.sequence);
            }
            Err(e) => self.fail_batch(e, Some(prefill.sequence)),
        }
    }

    fn decode_step(&mut self) {
        let rows = self.batch.rows.len();
        let width = self.batch.width;
        let total = width + 1;
        let mut mask = Vec::with_capacity(rows * total);
        for row in &self.batch.rows {
            mask.extend(std::iter::repeat_n(0, total - row.cached - 1));
            mask.extend(std::iter::repeat_n(1, row.cached + 1));
        }
        let call = Call {
            kind: CallKind::Decode,
            ids: self.batch.rows.iter().map(|r| r.next).collect(),
            positions: self.batch.rows.iter().map(|r| r.cached as i64).collect(),
            mask,
            rows,
            seq: 1,
            total,
        };
        let cache = std::mem::take(&mut self.batch.cache);
        let (logits, cache) = match self.call(call, cache) {
            Ok(out) => out,
            Err(e) => return self.fail_batch(e, None),
        };
        self.batch.cache = cache;
        self.batch.width = total;
        let model = self.model.clone();
        let vocab = model.config.vocab;
        let mut alive = Vec::with_capacity(rows);
        for (i, row) in self.batch.rows.iter_mut().enumerate() {
            row.cached += 1;
            let row_logits = logits.get(i * vocab..(i + 1) * vocab).unwrap_or_default();
            alive.push(!row.cancelled() && row.accept(&model, row_logits));
        }
        if alive.iter().any(|a| !a) {
            self.keep(&alive);
        }
    }

    /// Keeps the rows marked alive and trims the padding no row needs.
    fn keep(&mut self, alive: &[bool]) {
        let (_, heads, dim) = self.dims();
        let rows = self.batch.rows.len();
        let old_width = self.batch.width;
        let kept: Vec<usize> = (0..rows).filter(|&i| alive.get(i) == Some(&true)).collect();
        let width = kept
            .iter()
            .filter_map(|&i| self.batch.rows.get(i).map(|r| r.cached))
            .max()
            .unwrap_or(0);
        let old = std::mem::take(&mut self.batch.cache);
        let result: Result<Vec<Cache>, String> = if kept.is_empty() {
            Ok(Vec::new())
        } else {
            old.into_iter()
                .map(|value| {
                    let value = on_host(value)?;
                    let data = extract(&value)?;
                    let all = row_slices(data, rows, heads, old_width, dim);
                    let parts: Vec<(&[f32], usize)> =
                        kept.iter().filter_map(|&i| all.get(i).copied()).collect();
                    cache_tensor(
                        kept.len(),
                        heads,
                        width,
                        dim,
                        assemble(&parts, heads, dim, width),
                    )
                })
                .collect()
        };
        let mut index = 0;
        self.batch.rows.retain(|_| {
            index += 1;
            alive.get(index - 1) == Some(&true)
        });
        match result {
            Ok(cache) => {
                self.batch.cache = cache;
                self.batch.width = width;
            }
            Err(e) => self.fail_batch(e, None),
        }
    }

    /// Ends every running sequence (and `extra`) with `error`.
    fn fail_batch(&mut self, error: String, extra: Option<Sequence>) {
        tracing::warn!(%error, rows = self.batch.rows.len(), "decode step failed");
        for row in self.batch.rows.drain(..).chain(extra) {
            let _ = row.events.send(Event::Failed(error.clone()));
        }
        self.batch = Batch::default();
    }
}

fn extract(value: &Cache) -> Result<&[f32], String> {
    value
        .try_extract_tensor::<f32>()
        .map(|(_, data)| data)
        .map_err(|e| e.to_string())
}

/// `value` in host memory: itself when it is there, else a copy from the
/// device (only when a sequence joins or leaves the batch).
fn on_host(value: Cache) -> Result<Cache, String> {
    if value.memory_info().is_cpu_accessible() {
        return Ok(value);
    }
    value
        .to(AllocationDevice::CPU, 0)
        .map_err(|e| format!("copying a key/value cache to the host: {e}"))
}

/// A cache in host memory; the next call binds it as an input, which puts
/// it on the device.
fn cache_tensor(
    rows: usize,
    heads: usize,
    width: usize,
    dim: usize,
    data: Vec<f32>,
) -> Result<Cache, String> {
    Tensor::from_array(([rows, heads, width, dim], data)).map_err(|e| e.to_string())
}

/// Each row's `[heads, width, dim]` slice of a `[rows, heads, width, dim]` cache.
fn row_slices(
    data: &[f32],
    rows: usize,
    heads: usize,
    width: usize,
    dim: usize,
) -> Vec<(&[f32], usize)> {
    let size = heads * width * dim;
    (0..rows)
        .map(|r| {
            (
                data.get(r * size..(r + 1) * size).unwrap_or_default(),
                width,
            )
        })
        .collect()
}

/// A `[parts, heads, width, dim]` cache from per-row `[heads, own width, dim]`
/// caches, each right-aligned: padded with zeros on the left, or with its
/// leading (padding) columns dropped when it is wider.
fn assemble(parts: &[(&[f32], usize)], heads: usize, dim: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; parts.len() * heads * width * dim];
    for (r, (data, own)) in parts.iter().enumerate() {
        for h in 0..heads {
            let keep = (*own).min(width);
            let src_start = (h * own + (own - keep)) * dim;
            let dst_start = ((r * heads + h) * width + (width - keep)) * dim;
            if let (Some(dst), Some(src)) = (
                out.get_mut(dst_start..dst_start + keep * dim),
                data.get(src_start..src_start + keep * dim),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::assemble;

    #[test]
    fn rows_are_right_aligned_padded_or_trimmed() {
        // Two heads, dim 1: row a has width 2, row b width 3.
        let a = [1.0, 2.0, 10.0, 20.0];
        let b = [0.0, 3.0, 4.0, 0.0, 30.0, 40.0];
        let out = assemble(&[(&a, 2), (&b, 3)], 2, 1, 2);
        assert_eq!(out, vec![1.0, 2.0, 10.0, 20.0, 3.0, 4.0, 30.0, 40.0]);
        let out = assemble(&[(&a, 2)], 2, 1, 4);
        assert_eq!(out, vec![0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 10.0, 20.0]);
    }
}
