//! Prometheus metrics of the host. Labels carry routes and status codes only,
//! never anything derived from request content.
//!
//! `/metrics` answers in the OpenMetrics text format (1.0.0) to a scraper
//! that asks for it (`Accept: application/openmetrics-text`), and in the
//! Prometheus text format (0.0.4) otherwise ([`Metrics::render_for`]).
//! Besides the host's own metrics it exposes `kokon_host_build_info` and
//! the process's CPU time, resident memory, open descriptors and start time
//! (`process_*`, the names Prometheus client libraries use).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a served HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route, e.g. "/v1/ohttp".
    pub route: String,
    /// The HTTP status code, or `client_closed` when the client went away
    /// before the answer.
    pub status: String,
}

/// The route of a request, e.g. "/v1/ohttp".
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route.
    pub route: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    /// The process metrics, under their conventional unprefixed names.
    process_registry: Registry,
    /// Requests served, by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds, by route.
    pub latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// Failed accepts (descriptors exhausted, say).
    pub accept_errors: Counter,
    /// Connections closed at once because the host or the peer was at its limit.
    pub connections_refused: Counter,
    /// Bytes relayed to the enclave.
    pub bytes_to_enclave: Counter,
    /// Bytes relayed from the enclave.
    pub bytes_from_enclave: Counter,
    /// 1 when the enclave is up.
    pub enclave_up: Gauge,
    /// Enclave restarts.
    pub enclave_restarts: Counter,
    /// Requests in flight.
    pub in_flight: Gauge,
    process: ProcessMetrics,
}

/// The process's own figures, read from `/proc` at each scrape.
#[derive(Clone, Default)]
struct ProcessMetrics {
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
    start_time_seconds: Gauge,
}

impl ProcessMetrics {
    fn refresh(&self) {
        // Field 14 and 15 of /proc/self/stat: user and system time in clock
        // ticks (100 a second on Linux); field 22: start time in ticks
        // since boot.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| -> f64 {
            fields
                .get(n - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        const TICKS: f64 = 100.0;
        self.cpu_seconds.set((field(14) + field(15)) / TICKS);
        let boot = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        self.start_time_seconds
            .set((boot + field(22) / TICKS) as i64);
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        self.resident_bytes.set(pages.saturating_mul(4096));
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as i64)
            .unwrap_or(0);
        self.open_fds.set(fds);
    }
}

/// The OpenMetrics media type a scraper asks for.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format's media type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kokon_host");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let m = Self {
            requests: requests.clone(),
            latency: latency.clone(),
            bytes_to_enclave: Counter::default(),
            bytes_from_enclave: Counter::default(),
            enclave_up: Gauge::default(),
            enclave_restarts: Counter::default(),
            in_flight: Gauge::default(),
            accept_errors: Counter::default(),
            connections_refused: Counter::default(),
            process: ProcessMetrics::default(),
            registry: Registry::default(),
            process_registry: Registry::default(),
        };
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info
            .get_or_create(&vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )])
            .set(1);
        registry.register("build", "The host's version (always 1)", build_info);
        registry.register("requests", "HTTP requests served", requests);
        registry.register("request_duration_seconds", "HTTP request latency", latency);
        registry.register(
            "relayed_to_enclave_bytes",
            "Bytes relayed to the enclave",
            m.bytes_to_enclave.clone(),
        );
        registry.register(
            "relayed_from_enclave_bytes",
            "Bytes relayed from the enclave",
            m.bytes_from_enclave.clone(),
        );
        registry.register(
            "enclave_up",
            "Whether the enclave is serving",
            m.enclave_up.clone(),
        );
        registry.register(
            "enclave_restarts",
            "Enclave restarts",
            m.enclave_restarts.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts of connections",
            m.accept_errors.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once at the host's or the peer's connection limit",
            m.connections_refused.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being served",
            m.in_flight.clone(),
        );
        let mut process = Registry::default();
        process.register(
            "process_cpu_seconds",
            "CPU time of the host process (user and system)",
            m.process.cpu_seconds.clone(),
        );
        process.register(
            "process_resident_memory_bytes",
            "Resident memory of the host process",
            m.process.resident_bytes.clone(),
        );
        process.register(
            "process_open_fds",
            "Open file descriptors of the host process",
            m.process.open_fds.clone(),
        );
        process.register(
            "process_start_time_seconds",
            "Start time of the host process (Unix seconds)",
            m.process.start_time_seconds.clone(),
        );
        Self {
            registry,
            process_registry: process,
            ..m
        }
    }

    /// The OpenMetrics text format, with the enclave's metrics (its own
    /// OpenMetrics exposition, [`kokon_wire::Response::Metrics`]) when given.
    pub fn render(&self, enclave: Option<&str>) -> String {
        self.process.refresh();
        let mut out = String::new();
        let _ = encode(&mut out, &self.process_registry);
        // One exposition: every part's end marker goes but the last.
        strip_eof(&mut out);
        if let Some(enclave) = enclave.filter(|e| e.len() <= MAX_ENCLAVE_METRICS) {
            for line in enclave.lines().filter(|l| *l != "# EOF") {
                out.push_str(line);
                out.push('\n');
            }
        }
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The exposition for a scrape with this `Accept` header, and its media
    /// type: OpenMetrics when asked for, else the Prometheus text format.
    pub fn render_for(&self, accept: &str, enclave: Option<&str>) -> (String, &'static str) {
        let text = self.render(enclave);
        if accept.contains("application/openmetrics-text") {
            (text, OPENMETRICS)
        } else {
            (prometheus_text(&text), PROMETHEUS_TEXT)
        }
    }
}

/// Largest enclave exposition included in a scrape.
pub const MAX_ENCLAVE_METRICS: usize = 1 << 20;

fn strip_eof(out: &mut String) {
    if let Some(body) = out.strip_suffix("# EOF\n") {
        out.truncate(body.len());
    }
}

/// OpenMetrics text as the Prometheus 0.0.4 format: no `# EOF` or `# UNIT`
/// lines, and a counter's `HELP`/`TYPE` name carrying the `_total` of its
/// samples (0.0.4 has no metric families apart from their samples).
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_format_names_counters_by_their_samples() {
        let m = Metrics::new();
        m.bytes_to_enclave.inc_by(3);
        let (text, media_type) = m.render_for("text/plain", None);
        assert_eq!(media_type, PROMETHEUS_TEXT);
        assert!(
            text.contains("# TYPE kokon_host_relayed_to_enclave_bytes_total counter"),
            "{text}"
        );
        assert!(
            text.contains("kokon_host_relayed_to_enclave_bytes_total 3"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        let (text, media_type) = m.render_for("application/openmetrics-text;version=1.0.0", None);
        assert_eq!(media_type, OPENMETRICS);
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_enclaves_metrics_join_the_scrape_as_one_exposition() {
        let m = Metrics::new();
        let enclave = "# HELP kokon_enclave_processed_tokens Tokens.\n# TYPE kokon_enclave_processed_tokens counter\nkokon_enclave_processed_tokens_total{model=\"m\",call=\"decode\"} 7\n# EOF\n";
        let (text, _) = m.render_for("application/openmetrics-text", Some(enclave));
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("kokon_enclave_processed_tokens_total{model=\"m\",call=\"decode\"} 7")
        );
        let (text, _) = m.render_for("text/plain", Some(enclave));
        assert!(
            text.contains("# TYPE kokon_enclave_processed_tokens_total counter"),
            "{text}"
        );
        let huge = "x".repeat(MAX_ENCLAVE_METRICS + 1);
        let (text, _) = m.render_for("text/plain", Some(&huge));
        assert!(
            !text.contains("xxxx"),
            "an oversized exposition is left out"
        );
    }
}
