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

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod collateral;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod relay;
pub mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

pub use supervisor::{EnclaveCommand, EnclaveState};

/// Bounds on each request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Requests relayed at once.
    pub max_concurrency: usize,
    /// Time allowed for one relayed request.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_concurrency: 64,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything the host needs to run.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How to launch the enclave.
    pub enclave: EnclaveCommand,
    /// Request limits.
    pub limits: Limits,
    /// Where to fetch TDX/SNP collateral for hardware bundles (none: relay as is).
    pub collateral: Option<collateral::CollateralConfig>,
    /// Payment channels to bill (none: requests are free).
    pub ledger: Option<ledger::LedgerConfig>,
}

/// A running host.
pub struct RunningHost {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Live enclave state.
    pub state: Arc<EnclaveState>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
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
        let _ = self.supervisor.await;
    }
}

/// Binds, starts the enclave supervisor and the HTTP front.
pub async fn start(config: HostConfig) -> anyhow::Result<RunningHost> {
    let listener = TcpListener::bind(config.listen).await?;
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
    let front = Arc::new(http::Front {
        relay: relay::Relay::new(config.enclave.socket.clone(), state.clone()),
        state: state.clone(),
        metrics,
        slots: Semaphore::new(config.limits.max_concurrency),
        limits: config.limits,
        collateral: config
            .collateral
            .map(collateral::CollateralService::new)
            .transpose()?,
        ledger: config
            .ledger
            .as_ref()
            .map(ledger::Ledger::open)
            .transpose()?,
    });
    let server = tokio::spawn(serve(listener, front, stop_rx));
    tracing::info!(%addr, "host listening");
    Ok(RunningHost {
        addr,
        state,
        stop,
        server,
        supervisor,
    })
}

async fn serve(listener: TcpListener, front: Arc<http::Front>, mut stop: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let front = front.clone();
                let conn = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| front.clone().handle(req)));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
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
