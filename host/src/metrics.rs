//! Prometheus metrics of the host. Labels carry routes and status codes only,
//! never anything derived from request content.

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
}

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
            registry: Registry::default(),
        };
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
        Self { registry, ..m }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
