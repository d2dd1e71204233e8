//! The enclave's inference metrics, which the host scrapes over the frame
//! link ([`kokon_wire::Request::Metrics`]) and serves in its `/metrics`.
//!
//! Only sizes and timings of the enclave's own work, labelled by model and
//! call: how long requests waited for the model, how many waited, how many
//! rows or sequences each model call ran, how many requests a KServe call
//! merged and how long it took, and how many tokens the text model processed. Nothing derived from a request's
//! content beyond what the host already sees (its size and timing).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A model and one kind of call to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The model's served name.
    pub model: String,
    /// `run` (a KServe inference), `prefill` (a chunk of a prompt) or
    /// `decode` (one token for each running sequence).
    pub call: String,
}

/// A model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    /// The model's served name.
    pub model: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// Every metric of the enclave.
pub struct Metrics {
    registry: Registry,
    call_seconds: Histograms<CallLabels>,
    batch_size: Histograms<CallLabels>,
    run_requests: Histograms<ModelLabel>,
    tokens: Family<CallLabels, Counter>,
    queue_seconds: Histograms<ModelLabel>,
    queue_depth: Family<ModelLabel, Gauge>,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("kokon_enclave");
        let call_seconds: Histograms<CallLabels> = Family::new_with_constructor(seconds);
        let batch_size: Histograms<CallLabels> = Family::new_with_constructor(sizes);
        let run_requests: Histograms<ModelLabel> = Family::new_with_constructor(sizes);
        let tokens = Family::<CallLabels, Counter>::default();
        let queue_seconds: Histograms<ModelLabel> = Family::new_with_constructor(seconds);
        let queue_depth = Family::<ModelLabel, Gauge>::default();
        registry.register(
            "model_call_duration_seconds",
            "Time of one model call (ONNX Runtime run), by model and call",
            call_seconds.clone(),
        );
        registry.register(
            "batch_size",
            "Rows (KServe) or sequences (text) in one model call",
            batch_size.clone(),
        );
        registry.register(
            "run_requests",
            "KServe requests merged into one model call (dynamic batching)",
            run_requests.clone(),
        );
        registry.register(
            "processed_tokens",
            "Tokens the text model processed, by call (prompt tokens in prefill, generated in decode)",
            tokens.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time a request waited before the model took it up",
            queue_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for the model now",
            queue_depth.clone(),
        );
        Arc::new(Self {
            registry,
            call_seconds,
            batch_size,
            run_requests,
            tokens,
            queue_seconds,
            queue_depth,
        })
    }

    /// The metrics of `model` (its queue shown from the start, empty).
    pub fn model(self: &Arc<Self>, model: &str) -> ModelMetrics {
        let m = ModelMetrics {
            metrics: self.clone(),
            model: model.into(),
        };
        let _ = self.queue_depth.get_or_create(&m.label());
        let _ = self.queue_seconds.get_or_create(&m.label());
        m
    }

    /// The OpenMetrics text exposition (ending in `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The metrics of one model: what its runs and its text engine report.
#[derive(Clone)]
pub struct ModelMetrics {
    metrics: Arc<Metrics>,
    model: String,
}

impl ModelMetrics {
    fn call(&self, call: &str) -> CallLabels {
        CallLabels {
            model: self.model.clone(),
            call: call.into(),
        }
    }

    fn label(&self) -> ModelLabel {
        ModelLabel {
            model: self.model.clone(),
        }
    }

    /// A KServe run of `rows` rows, merging `requests` requests, took `elapsed`.
    pub fn run(&self, rows: usize, requests: usize, elapsed: Duration) {
        self.observe_call("run", rows, elapsed);
        self.metrics
            .run_requests
            .get_or_create(&self.label())
            .observe(requests as f64);
    }

    fn observe_call(&self, call: &str, rows: usize, elapsed: Duration) {
        let labels = self.call(call);
        self.metrics
            .call_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.metrics
            .batch_size
            .get_or_create(&labels)
            .observe(rows as f64);
    }

    fn dequeued_after(&self, waited: Duration) {
        self.metrics
            .queue_seconds
            .get_or_create(&self.label())
            .observe(waited.as_secs_f64());
    }

    /// A request waits for the model (until [`Waiting`] is dropped).
    pub fn waiting(&self) -> Waiting {
        let depth = self
            .metrics
            .queue_depth
            .get_or_create(&self.label())
            .clone();
        depth.inc();
        Waiting {
            depth,
            metrics: self.clone(),
            since: std::time::Instant::now(),
        }
    }
}

/// A request waiting for the model: counted in the queue depth while it
/// lives; [`Waiting::done`] records how long it waited.
pub struct Waiting {
    depth: Gauge,
    metrics: ModelMetrics,
    since: std::time::Instant,
}

impl Waiting {
    /// The model took the request up.
    pub fn done(self) {
        self.metrics.dequeued_after(self.since.elapsed());
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.depth.dec();
    }
}

impl kokon_llm::Observer for ModelMetrics {
    fn model_call(&self, kind: kokon_llm::CallKind, rows: usize, tokens: usize, elapsed: Duration) {
        let call = match kind {
            kokon_llm::CallKind::Prefill => "prefill",
            kokon_llm::CallKind::Decode => "decode",
        };
        self.observe_call(call, rows, elapsed);
        self.metrics
            .tokens
            .get_or_create(&self.call(call))
            .inc_by(tokens as u64);
    }

    fn dequeued(&self, waited: Duration) {
        self.dequeued_after(waited);
    }

    fn queue_depth(&self, depth: usize) {
        self.metrics
            .queue_depth
            .get_or_create(&self.label())
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kokon_llm::Observer;

    #[test]
    fn runs_waits_and_engine_calls_are_exposed_by_model_and_call() {
        let metrics = Metrics::new();
        let magika = metrics.model("magika");
        let waiting = magika.waiting();
        assert!(metrics
            .render()
            .contains("kokon_enclave_queue_depth{model=\"magika\"} 1"));
        waiting.done();
        magika.run(16, 3, Duration::from_millis(3));
        let text = metrics.model("smollm2");
        text.model_call(kokon_llm::CallKind::Decode, 4, 4, Duration::from_millis(20));
        text.model_call(
            kokon_llm::CallKind::Prefill,
            1,
            100,
            Duration::from_millis(50),
        );
        text.queue_depth(2);
        let out = metrics.render();
        for line in [
            "kokon_enclave_queue_depth{model=\"magika\"} 0",
            "kokon_enclave_queue_wait_seconds_count{model=\"magika\"} 1",
            "kokon_enclave_batch_size_sum{model=\"magika\",call=\"run\"} 16.0",
            "kokon_enclave_model_call_duration_seconds_count{model=\"magika\",call=\"run\"} 1",
            "kokon_enclave_run_requests_sum{model=\"magika\"} 3.0",
            "kokon_enclave_batch_size_sum{model=\"smollm2\",call=\"decode\"} 4.0",
            "kokon_enclave_processed_tokens_total{model=\"smollm2\",call=\"prefill\"} 100",
            "kokon_enclave_queue_depth{model=\"smollm2\"} 2",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
        assert!(out.ends_with("# EOF\n"));
    }
}
