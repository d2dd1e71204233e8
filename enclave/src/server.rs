//! The enclave's side of the host link: one frame in, one frame out, per
//! connection. Attestation requests get a fresh bundle binding the client's
//! nonce; OHTTP requests go to the gateway on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kokon_attestation::claims::{ModelClaim, ServingConfig};
use kokon_attestation::{AttestationBundle, Claims, GpuEvidence};
use kokon_wire::{Request, Response, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;

use crate::evidence::Backend;
use crate::gateway::{unix_now, Gateway, Outcome};
use crate::gpu::Gpus;

/// An idle connection is closed after this long. The host stops reusing its
/// idle connections well before ([`kokon_wire::HOST_IDLE_REUSE`]).
pub use kokon_wire::ENCLAVE_IDLE_TIMEOUT as IDLE_TIMEOUT;
/// Shortest and longest accepted client nonce.
pub use kokon_wire::NONCE_LEN;

/// Everything the enclave serves with.
pub struct Enclave {
    /// The OHTTP gateway (keys, model, replay state).
    pub gateway: Gateway,
    /// The evidence backend.
    pub backend: Backend,
    /// The serving configuration, handed out in every bundle.
    pub serving_config: ServingConfig,
    /// Its SHA-256, the claims' `config_digest`.
    pub config_digest: [u8; 32],
    /// Inference metrics, for the host's `/metrics`.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The GPUs, checked (`--device cuda`); `None` on the CPU.
    pub gpus: Option<Gpus>,
}

impl Enclave {
    /// The claims for a given nonce, as of now, without GPU evidence or
    /// state (see [`bundle`]).
    pub fn claims(&self, nonce: Vec<u8>) -> Claims {
        let model = self.gateway.model();
        Claims {
            kokon_version: env!("CARGO_PKG_VERSION").into(),
            ohttp_key_config: self.gateway.keys().ohttp_key_config.clone(),
            receipt_key: self.gateway.keys().receipts.public_key(),
            model_name: model.name().into(),
            model_digest: model.digest(),
            text_model: self.gateway.text().map(|t| ModelClaim {
                name: t.engine.model().config.name.clone(),
                digest: t.engine.model().digest(),
            }),
            config_digest: self.config_digest,
            runtime: model.runtime().into(),
            nonce,
            issued_at: unix_now(),
            gpus: Vec::new(),
            gpu_cc: None,
        }
    }

    fn attest(&self, nonce: Vec<u8>) -> Response {
        if !NONCE_LEN.contains(&nonce.len()) {
            return Response::Rejected(format!(
                "nonce of {} bytes; expected {} to {} bytes",
                nonce.len(),
                NONCE_LEN.start(),
                NONCE_LEN.end()
            ));
        }
        match bundle(
            &self.backend,
            self.gpus.as_ref(),
            &self.serving_config,
            self.claims(nonce),
        ) {
            Ok(bundle) => Response::Bundle(bundle.to_json()),
            Err(e) => Response::Failed(format!("{e:#}")),
        }
    }

    fn health(&self) -> Response {
        let model = self.gateway.model();
        Response::Health(
            serde_json::json!({
                "ready": true,
                "backend": self.backend.name(),
                "model": model.name(),
                "model_digest": hex::encode(model.digest()),
                "pid": std::process::id(),
            })
            .to_string()
            .into_bytes(),
        )
    }
}

/// The bundle answering `claims` (for the client's nonce, without GPU
/// evidence): with GPUs, each GPU's evidence for that nonce goes into the
/// bundle and its digest, with the GPUs' CC state, into the claims, before
/// `backend` signs them; the serving configuration comes along.
pub fn bundle(
    backend: &Backend,
    gpus: Option<&Gpus>,
    serving_config: &ServingConfig,
    mut claims: Claims,
) -> anyhow::Result<AttestationBundle> {
    let mut gpu_evidence = Vec::new();
    if let Some(gpus) = gpus {
        let (evidence, state) = gpus
            .attest(&claims.nonce, unix_now())
            .context("GPU evidence")?;
        claims.gpus = evidence.iter().map(GpuEvidence::claim).collect();
        claims.gpu_cc = Some(state);
        gpu_evidence = evidence;
    }
    let evidence = backend
        .evidence(claims.report_data())
        .with_context(|| format!("evidence backend {}", backend.name()))?;
    Ok(AttestationBundle {
        version: kokon_attestation::bundle::BUNDLE_VERSION,
        backend: backend.name().into(),
        evidence,
        claims,
        serving_config: Some(serving_config.clone()),
        gpu_evidence,
        // NVIDIA's RIMs are the host's to add: the enclave has no network.
        gpu_rims: Default::default(),
    })
}

/// Serves requests on one connection, in turn, until the host closes it or
/// leaves it idle for [`IDLE_TIMEOUT`].
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(enclave: Arc<Enclave>, mut stream: S) {
    loop {
        let request = match tokio::time::timeout(IDLE_TIMEOUT, Request::read(&mut stream)).await {
            Ok(Ok(r)) => r,
            Ok(Err(WireError::Closed)) | Err(_) => return,
            Ok(Err(e)) => {
                let _ = Response::Rejected(format!("bad frame: {e}"))
                    .write(&mut stream)
                    .await;
                return;
            }
        };
        let response = match request {
            Request::OhttpStream { channel, request } => {
                // A stream's connection is not reused: the host may have
                // sent a cancellation just as the stream ended.
                let _ = serve_stream(&enclave, &mut stream, channel, &request).await;
                return;
            }
            // Stray stream controls (a stream that already ended): nothing to do.
            Request::Proceed | Request::Cancel => continue,
            // Evidence blocks on the kernel or the host's quoting service
            // (seconds, at worst): off the async workers' hands.
            Request::Attest { nonce } => tokio::task::block_in_place(|| enclave.attest(nonce)),
            Request::Health => enclave.health(),
            Request::Metrics => Response::Metrics(enclave.metrics.render()),
            // Inference blocks for milliseconds: run it in place (the runtime
            // moves this worker's other tasks away) rather than hopping to the
            // blocking pool and back, which costs two thread wake-ups.
            Request::Ohttp { channel, request } => {
                match tokio::task::block_in_place(|| {
                    enclave.gateway.handle(&request, channel, unix_now())
                }) {
                    Outcome::Sealed(b) => Response::Ohttp(b),
                    Outcome::Billed { sealed, receipt } => Response::Billed { sealed, receipt },
                    Outcome::Rejected(m) => Response::Rejected(m),
                }
            }
        };
        if response.write(&mut stream).await.is_err() {
            return;
        }
    }
}

/// Serves one chunked OHTTP request (see [`Request::OhttpStream`]): opens
/// it, announces its most possible charge, waits for the host's go-ahead,
/// then relays each sealed chunk as it is produced until the answer is
/// complete or the host cancels, and ends with the receipt.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    enclave: &Enclave,
    stream: &mut S,
    channel: u128,
    request: &[u8],
) -> Result<(), WireError> {
    let opened =
        tokio::task::block_in_place(|| enclave.gateway.open_stream(request, channel, unix_now()));
    let mut answer = match opened {
        Ok(answer) => answer,
        Err(message) => return Response::Rejected(message).write(stream).await,
    };
    Response::StreamStart {
        max_charge: answer.max_charge(),
    }
    .write(stream)
    .await?;
    match tokio::time::timeout(IDLE_TIMEOUT, Request::read(stream)).await {
        Ok(Ok(Request::Proceed)) => {}
        // Anything else (refused credit, a closed link): dropped unbilled.
        _ => return Ok(()),
    }
    let (mut from_host, mut to_host) = tokio::io::split(stream);
    let cancelled = Request::read(&mut from_host);
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            // A Cancel, any other frame or a closed link: stop generating.
            _ = &mut cancelled => break,
            next = answer.next() => match next {
                Ok(Some(sealed)) => Response::StreamChunk(sealed).write(&mut to_host).await?,
                Ok(None) => break,
                Err(message) => return Response::Failed(message).write(&mut to_host).await,
            },
        }
    }
    match answer.end(unix_now()) {
        Ok((sealed, receipt)) => {
            Response::StreamEnd { sealed, receipt }
                .write(&mut to_host)
                .await
        }
        Err(message) => Response::Failed(message).write(&mut to_host).await,
    }
}

/// How often the attested TLS certificate (valid an hour) is renewed.
pub const RATLS_RENEW: Duration = Duration::from_secs(30 * 60);

impl Enclave {
    /// A TLS 1.3 server configuration whose certificate carries fresh
    /// evidence binding its key and this enclave's claims.
    pub fn ratls_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let cert = kokon_ratls::issue(
            self.claims(Vec::new()),
            |claims| {
                self.backend
                    .evidence(claims.report_data())
                    .map_err(|e| format!("{e:#}"))
            },
            Some(self.serving_config.clone()),
            self.backend.name(),
            unix_now(),
        )?;
        Ok(kokon_ratls::server_config(cert, None)?)
    }
}

/// Serves the same frames over attested TLS on `addr`: clients verify the
/// enclave in the handshake (see `kokon_ratls`) and need no host to relay.
pub async fn serve_ratls(enclave: Arc<Enclave>, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let config = Arc::new(std::sync::RwLock::new(Arc::new(enclave.ratls_config()?)));
    tracing::info!(%addr, "attested TLS listening");
    let renew = {
        let (enclave, config) = (enclave.clone(), config.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RATLS_RENEW).await;
                match tokio::task::block_in_place(|| enclave.ratls_config()) {
                    Ok(fresh) => {
                        if let Ok(mut c) = config.write() {
                            *c = Arc::new(fresh);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "renewing the attested TLS certificate failed")
                    }
                }
            }
        })
    };
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let Ok(current) = config.read().map(|c| c.clone()) else {
            renew.abort();
            anyhow::bail!("attested TLS configuration lock poisoned");
        };
        let enclave = enclave.clone();
        tokio::spawn(async move {
            match tokio_rustls::TlsAcceptor::from(current).accept(tcp).await {
                Ok(tls) => serve_connection(enclave, tls).await,
                Err(e) => tracing::info!(error = %e, "attested TLS handshake failed"),
            }
        });
    }
}

/// Device and inode of the socket this process bound, so that it removes
/// only its own (a new enclave may already serve on the same path).
static BOUND_SOCKET: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Removes `socket` if it is the one this process bound.
pub fn remove_own_socket(socket: &Path) {
    if let (Some(bound), Some(now)) = (BOUND_SOCKET.get(), identity(socket)) {
        if *bound == now {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// Serves each connection `accept` yields on a task of its own, until
/// SIGTERM (`term`) or SIGINT.
async fn accept_until_stopped<S, F, A>(
    enclave: &Arc<Enclave>,
    term: &mut tokio::signal::unix::Signal,
    mut accept: A,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = std::io::Result<S>>,
    A: FnMut() -> F,
{
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok(stream) => { tokio::spawn(serve_connection(enclave.clone(), stream)); }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
}

/// The largest write handed to a vsock socket at once.
///
/// Linux's virtio-vsock driver turns each write into packets of up to 64
/// KiB, which the guest may place in several descriptors; the vhost-user
/// vsock daemon kokon uses where the kernel has no vhost-vsock
/// (`vhost-device-vsock` 0.3, with `virtio-vsock` 0.10) drops a packet whose
/// data spans more than one descriptor, and the connection stalls. Writes of
/// one page never do.
const MAX_VSOCK_WRITE: usize = 4096;

/// A stream whose writes are at most [`MAX_VSOCK_WRITE`] bytes each.
struct SmallWrites<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for SmallWrites<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SmallWrites<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = buf.len().min(MAX_VSOCK_WRITE);
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf.get(..n).unwrap_or(buf))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Where the enclave serves the host.
#[derive(Debug, Clone)]
pub enum Listen {
    /// A Unix socket: the process backend.
    Unix(PathBuf),
    /// A vsock port, any CID: inside the worker VM, where the host reaches
    /// it through the VM's vsock device.
    Vsock(u32),
}

/// Serves the host until SIGTERM or SIGINT.
pub async fn serve(enclave: Arc<Enclave>, listen: &Listen) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    match listen {
        Listen::Unix(socket) => {
            let _ = std::fs::remove_file(socket);
            let listener = UnixListener::bind(socket)
                .with_context(|| format!("binding the host socket {}", socket.display()))?;
            if let Some(id) = identity(socket) {
                let _ = BOUND_SOCKET.set(id);
            }
            tracing::info!(socket = %socket.display(), backend = enclave.backend.name(), "enclave ready");
            accept_until_stopped(&enclave, &mut term, || async {
                listener.accept().await.map(|(stream, _)| stream)
            })
            .await;
            remove_own_socket(socket);
        }
        Listen::Vsock(port) => {
            let address = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, *port);
            let listener = tokio_vsock::VsockListener::bind(address)
                .with_context(|| format!("binding vsock port {port}"))?;
            tracing::info!(
                vsock_port = port,
                backend = enclave.backend.name(),
                "enclave ready"
            );
            accept_until_stopped(&enclave, &mut term, || async {
                listener
                    .accept()
                    .await
                    .map(|(stream, _)| SmallWrites(stream))
            })
            .await;
        }
    }
    tracing::info!("enclave stopping");
    Ok(())
}
