//! The kokon host shim: the untrusted side.
//!
//! It launches the enclave (a child process in development; a TDX or
//! SEV-SNP VM in production), keeps it running, and exposes it over HTTP. It
//! relays attestation bundles and OHTTP ciphertext without being able to
//! read or alter them undetected: the client verifies the evidence itself and
//! the ciphertext is sealed to a key only the enclave holds.
//!
//! It must never depend on the enclave's code, hold a key that opens client
//! traffic, or log anything but routes, sizes, statuses and timings.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod collateral;
pub mod http;
pub mod ledger;
pub mod link;
pub mod metrics;
pub mod qemu;
pub mod relay;
pub mod state;
pub mod supervisor;
pub mod tls;
pub mod vm;
pub mod vouchers;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use http::Routes;
pub use state::EnclaveState;
pub use supervisor::{EnclaveCommand, Launch};

/// The default limit on an inference request body (sealed): 8 MiB. It fits
/// a 1×3×224×224 FP32 image, an RGB picture at the usual input size of
/// vision models, in either KServe form: 602,112 bytes as binary tensor
/// data, and under 4 MB as JSON numbers (at most 24 characters each), with
/// room for a small batch.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Bounds on requests and connections: what keeps one client, or many slow
/// ones, from starving the rest.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest inference request body accepted (413 beyond; at most
    /// [`kokon_wire::MAX_SEALED_REQUEST`], what one frame carries to the enclave).
    pub max_body_bytes: usize,
    /// Inference requests relayed at once (a slot is taken only once the
    /// whole body has arrived).
    pub max_concurrency: usize,
    /// Time allowed for one relayed request, once its body has arrived.
    pub request_timeout: Duration,
    /// Time allowed for a client to send a request body (every route).
    pub body_timeout: Duration,
    /// Largest voucher body accepted.
    pub max_voucher_bytes: usize,
    /// Time allowed for a client to send a voucher body.
    pub voucher_timeout: Duration,
    /// Attestations relayed at once (separate from inference slots).
    pub max_attestations: usize,
    /// Attestations started per second, on average (bursts up to this many).
    pub attestations_per_second: u32,
    /// Open connections from one peer address (0: no limit).
    pub max_connections_per_peer: usize,
    /// Open connections in all.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrency: 64,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            max_voucher_bytes: 16 * 1024,
            voucher_timeout: Duration::from_secs(5),
            max_attestations: 4,
            attestations_per_second: 50,
            max_connections_per_peer: 256,
            max_connections: 4096,
        }
    }
}

/// Everything the host needs to run.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How to launch the enclave (a process, or the worker VM).
    pub enclave: Launch,
    /// Request limits.
    pub limits: Limits,
    /// Where to fetch TDX/SNP collateral for hardware bundles (none: relay as is).
    pub collateral: Option<collateral::CollateralConfig>,
    /// Payment channels to bill (none: requests are free).
    pub ledger: Option<ledger::LedgerConfig>,
    /// Also serve TLS (none: plain HTTP only, for loopback or behind a
    /// TLS-terminating proxy).
    pub tls: Option<tls::TlsConfig>,
    /// Serve `/metrics` on this address only, not beside the public routes
    /// (none: `/metrics` is one of the public routes).
    pub metrics_listen: Option<SocketAddr>,
}

/// A running host.
pub struct RunningHost {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The address it serves TLS on, if it does.
    pub tls_addr: Option<SocketAddr>,
    /// The address it serves `/metrics` on apart, if it does.
    pub metrics_addr: Option<SocketAddr>,
    /// Live enclave state.
    pub state: Arc<EnclaveState>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    tls_server: Option<JoinHandle<()>>,
    metrics_server: Option<JoinHandle<()>>,
    supervisor: JoinHandle<()>,
}

impl RunningHost {
    /// Waits until the enclave is up or `timeout` passes. Fails at once,
    /// with the enclave's last error lines, when its first start failed
    /// (the supervisor then does not restart it).
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.state.up.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(error) = self.state.start_error.get() {
                anyhow::bail!("{error}");
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the enclave did not become ready within {timeout:?} (see the enclave's log lines above)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish, and stops the enclave.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        for server in [self.tls_server, self.metrics_server].into_iter().flatten() {
            let _ = server.await;
        }
        let _ = self.supervisor.await;
    }
}

/// Descriptors kept aside from client connections: the enclave link's pool
/// and in-flight connections, files, outbound fetches.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft descriptor limit to the hard one, and caps client
/// connections below it, so the host never runs out of descriptors (and
/// never has to refuse its own enclave link, or spin on failed accepts).
fn connection_cap(limits: &Limits) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return limits.max_connections;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let room = soft.saturating_sub(RESERVED_DESCRIPTORS + limits.max_concurrency as u64);
    let cap = limits
        .max_connections
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1);
    if cap < limits.max_connections {
        tracing::warn!(
            descriptors = soft,
            connections = cap,
            "the descriptor limit allows fewer client connections than configured; raise `ulimit -n`"
        );
    }
    cap
}

/// Binds, starts the enclave supervisor and the HTTP front.
pub async fn start(mut config: HostConfig) -> anyhow::Result<RunningHost> {
    if config.limits.max_body_bytes > kokon_wire::MAX_SEALED_REQUEST {
        anyhow::bail!(
            "the request body limit of {} bytes exceeds the {} bytes one frame carries to the enclave",
            config.limits.max_body_bytes,
            kokon_wire::MAX_SEALED_REQUEST
        );
    }
    config.limits.max_connections = connection_cap(&config.limits);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(metrics::Metrics::new());
    let state = Arc::new(EnclaveState::default());
    let (stop, stop_rx) = watch::channel(false);
    let supervisor = tokio::spawn(supervisor::supervise(
        config.enclave.clone(),
        state.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let front = Arc::new(http::Front::new(
        relay::Relay::new(config.enclave.link(), state.clone()),
        state.clone(),
        metrics,
        config.limits,
        config
            .collateral
            .map(collateral::CollateralService::new)
            .transpose()?,
        config
            .ledger
            .as_ref()
            .map(ledger::Ledger::open)
            .transpose()?,
        if metrics_addr.is_some() {
            Routes::Public
        } else {
            Routes::All
        },
    ));
    let tls = match &config.tls {
        Some(t) => {
            let files = Arc::new(tls::TlsFiles::open(&t.cert, &t.key)?);
            let listener = TcpListener::bind(t.listen)
                .await
                .with_context(|| format!("listening for TLS on {}", t.listen))?;
            Some((listener, files))
        }
        None => None,
    };
    let tls_addr = match &tls {
        Some((listener, _)) => Some(listener.local_addr()?),
        None => None,
    };
    // One connection table for both listeners: the limits are the host's.
    let connections = Arc::new(Mutex::new(Connections::default()));
    let tls_server = tls.map(|(listener, files)| {
        tokio::spawn(serve(
            listener,
            Some(files),
            Served {
                front: front.clone(),
                routes: front.routes(),
            },
            connections.clone(),
            stop_rx.clone(),
        ))
    });
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(serve(
            listener,
            None,
            Served {
                front: front.clone(),
                routes: Routes::Metrics,
            },
            connections.clone(),
            stop_rx.clone(),
        ))
    });
    let routes = front.routes();
    let server = tokio::spawn(serve(
        listener,
        None,
        Served { front, routes },
        connections,
        stop_rx,
    ));
    tracing::info!(%addr, "host listening");
    if let Some(tls_addr) = tls_addr {
        tracing::info!(%tls_addr, "host listening for TLS");
    }
    if let Some(metrics_addr) = metrics_addr {
        tracing::info!(%metrics_addr, "host serving /metrics");
    }
    Ok(RunningHost {
        addr,
        tls_addr,
        metrics_addr,
        metrics_server,
        tls_server,
        state,
        stop,
        server,
        supervisor,
    })
}

/// Open connections, in all and per peer address.
#[derive(Default)]
struct Connections {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// One open connection; dropping it frees its place.
struct ConnectionSlot {
    table: Arc<Mutex<Connections>>,
    peer: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.total = t.total.saturating_sub(1);
            if let Some(n) = t.per_peer.get_mut(&self.peer) {
                *n -= 1;
                if *n == 0 {
                    t.per_peer.remove(&self.peer);
                }
            }
        }
    }
}

/// Takes a place for a connection from `peer`, or `None` when the host or
/// that peer is at its limit.
fn open_connection(
    table: &Arc<Mutex<Connections>>,
    peer: IpAddr,
    limits: &Limits,
) -> Option<ConnectionSlot> {
    let mut t = table.lock().ok()?;
    let mine = t.per_peer.get(&peer).copied().unwrap_or(0);
    if t.total >= limits.max_connections
        || (limits.max_connections_per_peer != 0 && mine >= limits.max_connections_per_peer)
    {
        return None;
    }
    t.total += 1;
    t.per_peer.insert(peer, mine + 1);
    Some(ConnectionSlot {
        table: table.clone(),
        peer,
    })
}

/// Most time a client has to send its request head, and to finish a TLS
/// handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The front and the routes one listener serves of it.
#[derive(Clone)]
struct Served {
    front: Arc<http::Front>,
    routes: Routes,
}

/// An HTTP/1 connection on `io` served by `served`, its head bounded in time.
fn http_connection<I>(
    io: I,
    served: Served,
) -> impl hyper_util::server::graceful::GracefulConnection
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(
            TokioIo::new(io),
            service_fn(move |req| served.front.clone().handle(req, served.routes)),
        )
}

/// Waits after failed accepts (out of descriptors, say), doubling up to a second.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Serves HTTP on `listener`, over TLS when `tls` is given, until `stop`.
async fn serve(
    listener: TcpListener,
    tls: Option<Arc<tls::TlsFiles>>,
    served: Served,
    connections: Arc<Mutex<Connections>>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => {
                        backoff = ACCEPT_BACKOFF.0;
                        a
                    }
                    Err(e) => {
                        // Spinning on EMFILE would starve every connection
                        // already open: wait, then try again.
                        tracing::warn!(error = %e, delay_ms = backoff.as_millis() as u64, "accept failed");
                        served.front.metrics.accept_errors.inc();
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.changed() => break,
                        }
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                        continue;
                    }
                };
                let Some(slot) = open_connection(&connections, peer.ip(), &served.front.limits) else {
                    served.front.metrics.connections_refused.inc();
                    tracing::debug!(peer = %peer.ip(), "connection limit reached; closing");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let served = served.clone();
                let Some(tls) = &tls else {
                    let conn = graceful.watch(http_connection(stream, served));
                    tokio::spawn(async move {
                        let _ = conn.await;
                        drop(slot);
                    });
                    continue;
                };
                let Some(config) = tls.config() else {
                    continue;
                };
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // The handshake is bounded like a request head.
                    let accepted = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        tokio_rustls::TlsAcceptor::from(config).accept(stream),
                    )
                    .await;
                    match accepted {
                        Ok(Ok(stream)) => {
                            let _ = watcher.watch(http_connection(stream, served)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within 30 s");
    }
}

/// Runs until SIGTERM or Ctrl-C, then shuts down cleanly.
pub async fn run_until_signal(config: HostConfig) -> anyhow::Result<()> {
    let host = start(config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
    }
    host.shutdown().await;
    Ok(())
}
