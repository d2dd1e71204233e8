//! The kokon enclave: the worker that runs inside the TEE.
//!
//! At start it measures itself (the sim's MRTD is SHA-384 of this binary),
//! starts its evidence backend, loads ONNX Runtime and the model, extends
//! RTMR3 with its serving configuration and model digest, generates its
//! keyset, and only then listens. It serves attestation bundles binding a
//! client nonce to its keys and model, and OHTTP-sealed KServe v2 requests
//! that only it can open.
//!
//! It must never write client plaintext anywhere but into a sealed response:
//! not to logs, not to error messages for the host, not to disk.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod batcher;
pub mod evidence;
pub mod gateway;
pub mod gpu;
pub mod inference;
pub mod keys;
pub mod metrics;
pub mod nvml;
pub mod parameters;
pub mod server;
pub mod sev_guest;
pub mod tdx_guest;
pub mod tsm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kokon_attestation::claims::ServingConfig;

use evidence::TeeKind;
use inference::Device;

/// Environment variable that (under `--tee sim` only) delays every inference,
/// in milliseconds: fault injection for tests that kill the enclave mid-request.
pub const SIM_FAULT_DELAY_ENV: &str = "KOKON_SIM_INFER_DELAY_MS";

/// Command-line arguments of `kokon-enclave`.
#[derive(Debug, Parser)]
#[command(
    name = "kokon-enclave",
    version,
    about = "kokon enclave: attested, sealed ONNX inference"
)]
pub struct Args {
    /// Unix socket to serve the host on (the process backend).
    #[arg(
        long,
        required_unless_present = "vsock_port",
        conflicts_with = "vsock_port"
    )]
    pub socket: Option<PathBuf>,
    /// vsock port to serve the host on (inside the worker VM).
    #[arg(long)]
    pub vsock_port: Option<u32>,
    /// The launch measurements the sim reports (JSON: `mrtd`, `rtmr0`,
    /// `rtmr1`, `rtmr2` in hex), as a development VM's host computes them
    /// for the image it boots. Without it the sim's MRTD is the enclave
    /// binary's SHA-384 and its RTMR0-2 are zero. Sim only.
    #[arg(long)]
    pub sim_launch: Option<PathBuf>,
    /// The ONNX model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The name the model is served under.
    #[arg(long, default_value = "magika")]
    pub model_name: String,
    /// ONNX Runtime shared library (libonnxruntime.so.1.x).
    #[arg(long, env = "KOKON_ORT_LIB")]
    pub ort_lib: PathBuf,
    /// Evidence backend: sim, tdx, snp or auto (hardware only, never sim).
    #[arg(long, default_value = "sim")]
    pub tee: TeeKind,
    /// configfs-tsm report directory (hardware backends).
    #[arg(long, default_value = tsm::DEFAULT_TSM_ROOT)]
    pub tsm_root: PathBuf,
    /// TDX guest sysfs directory, for RTMR3 extension.
    #[arg(long, default_value = tsm::DEFAULT_TDX_SYSFS)]
    pub tdx_sysfs: PathBuf,
    /// TDX guest device, used when configfs-tsm is absent (with --qgs).
    #[arg(long, default_value = tdx_guest::TDX_GUEST_DEVICE)]
    pub tdx_guest: PathBuf,
    /// The host's TDX Quote Generation Service, for TDREPORTs from
    /// --tdx-guest: vsock:PORT, vsock:CID:PORT or unix:PATH [default: the
    /// port in /etc/tdx-attest.conf].
    #[arg(long)]
    pub qgs: Option<tdx_guest::QgsAddress>,
    /// Also serve over attested TLS 1.3 on this address (certificate carries the evidence).
    #[arg(long)]
    pub ratls_listen: Option<std::net::SocketAddr>,
    /// SEV guest device, used when configfs-tsm is absent.
    #[arg(long, default_value = sev_guest::SEV_GUEST_DEVICE)]
    pub sev_guest: PathBuf,
    /// kokon's data directory (holds the sim root).
    #[arg(long, env = "KOKON_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Inference device.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// With --device cuda: `confidential` refuses GPUs that are not in
    /// confidential-computing mode (CC off, developer tools on, several
    /// GPUs without protected PCIe); `development` serves on them. Measured
    /// in the serving configuration.
    #[arg(long, default_value = "confidential")]
    pub gpu_mode: gpu::GpuMode,
    /// ONNX Runtime sessions to pool (parallel inferences).
    #[arg(long, default_value_t = 2)]
    pub sessions: usize,
    /// Largest batch accepted in one request.
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Most rows in one model run merging concurrent requests (1 to
    /// --max-batch) [default: --max-batch]; a single request of more rows
    /// runs alone.
    #[arg(long)]
    pub batch_max_rows: Option<usize>,
    /// Longest a request waits for others to merge with, in microseconds
    /// (0: run at once what is queued).
    #[arg(long, default_value_t = 500)]
    pub batch_delay_us: u64,
    /// Price of one unit (one inference) in nanotons, as receipts charge it.
    #[arg(long, default_value_t = 0)]
    pub price_nanoton_per_unit: u128,
    /// A text model directory (from scripts/llm/gguf_to_onnx.py) to serve
    /// behind the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models).
    #[arg(long)]
    pub llm: Option<PathBuf>,
    /// Most sequences the text model decodes together.
    #[arg(long, default_value_t = 8)]
    pub llm_max_batch: usize,
    /// Price of one prompt token in nanotons.
    #[arg(long, default_value_t = 0)]
    pub price_nanoton_per_prompt_token: u128,
    /// Price of one completion token in nanotons.
    #[arg(long, default_value_t = 0)]
    pub price_nanoton_per_completion_token: u128,
    /// CPUs to run on (comma-separated indices), as a TEE VM's dedicated vCPUs.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Exit (removing the socket) when stdin reaches end of file: the host
    /// holds the write end of this lifeline pipe, so the kernel closes it
    /// when the host dies, however it dies. Without it stdin is ignored.
    #[arg(long)]
    pub exit_with_host: bool,
}

impl Args {
    /// The dynamic batching asked for: `--batch-max-rows` (default
    /// `--max-batch`, and at most it) and `--batch-delay-us`.
    pub fn batching(&self) -> anyhow::Result<batcher::Batching> {
        let max_rows = self.batch_max_rows.unwrap_or(self.max_batch);
        anyhow::ensure!(
            (1..=self.max_batch).contains(&max_rows),
            "--batch-max-rows {max_rows} is out of range: expected 1 to --max-batch ({})",
            self.max_batch
        );
        Ok(batcher::Batching {
            max_rows,
            delay: Duration::from_micros(self.batch_delay_us),
        })
    }
}

/// Watches the lifeline (stdin) on a thread of its own, from before the
/// enclave starts loading: when it reaches end of file (or fails), the host
/// is gone, and the process removes the socket it bound, if still its own,
/// and exits at once. The host never writes to it; anything read is ignored.
pub fn watch_lifeline(socket: Option<PathBuf>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("lifeline".into())
        .spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if let Some(socket) = &socket {
                server::remove_own_socket(socket);
            }
            // The reader of stderr is most likely gone with the host: a
            // failed write must not stop the exit (`tracing` would panic
            // reporting it), so write directly and ignore the outcome.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "kokon-enclave: the lifeline (stdin) closed: the host is gone; exiting"
            );
            std::process::exit(0)
        })
        .map(drop)
}

/// Restricts this process (and every thread it creates afterwards) to `cpus`.
/// Call before the async runtime starts, so that it sizes itself to them.
pub fn pin_to_cpus(cpus: &[usize]) -> anyhow::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let mut set = nix::sched::CpuSet::new();
    for cpu in cpus {
        set.set(*cpu)
            .map_err(|e| anyhow::anyhow!("--cpus {cpu}: {e}"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| anyhow::anyhow!("--cpus {cpus:?}: {e}"))
}

/// Starts the enclave and serves until told to stop.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let batching = args.batching()?;
    let now = gateway::unix_now();
    let sim_td = match (&args.sim_launch, args.tee) {
        (Some(path), TeeKind::Sim) => evidence::read_sim_launch(path)?.td(),
        (Some(_), tee) => anyhow::bail!("--sim-launch is for --tee sim only, not --tee {tee:?}"),
        (None, _) => {
            let exe = std::env::current_exe().context("locating the enclave binary")?;
            kokon_attestation::sim::SimTd {
                mr_td: evidence::measure_file(&exe)?,
                rtmr: [[0; 48]; 3],
                debug: false,
            }
        }
    };
    let mr_td = sim_td.mr_td;
    let paths = evidence::HardwarePaths {
        tsm_root: args.tsm_root.clone(),
        tdx_sysfs: args.tdx_sysfs.clone(),
        sev_guest: args.sev_guest.clone(),
        tdx_guest: args.tdx_guest.clone(),
        // Intel's configuration matters only to hardware TDX guests.
        qgs: match (&args.qgs, args.tee) {
            (Some(qgs), _) => Some(qgs.clone()),
            (None, TeeKind::Sim | TeeKind::Snp) => None,
            (None, TeeKind::Tdx | TeeKind::Auto) => {
                tdx_guest::qgs_from_conf(std::path::Path::new(tdx_guest::TDX_ATTEST_CONF))?
            }
        },
    };
    let mut backend = evidence::Backend::start(args.tee, &paths, &args.data_dir, sim_td, now)?;
    tracing::info!(backend = backend.name(), requested = ?args.tee, "evidence backend started");
    args.device.built().map_err(anyhow::Error::msg)?;
    // Before any model loads: a GPU in CC mode takes work only once ready.
    let gpus = nvml::start(args.device, args.gpu_mode, now)?;
    let env = inference::load_runtime(&args.ort_lib)?;
    let metrics = metrics::Metrics::new();
    let model = inference::Model::load(
        &env,
        &args.model,
        &args.model_name,
        args.device,
        args.sessions,
        args.max_batch,
        batching,
    )?
    .observed_by(metrics.model(&args.model_name));
    let text = match &args.llm {
        Some(dir) => Some(inference::load_text_model(
            &env,
            dir,
            args.device,
            args.llm_max_batch,
            &metrics,
        )?),
        None => None,
    };
    let text_name = text.as_ref().map(|e| e.model().config.name.clone());
    let text_digest = text.as_ref().map(|e| e.model().digest());
    let serving_config = ServingConfig {
        kokon_version: env!("CARGO_PKG_VERSION").into(),
        model_name: args.model_name.clone(),
        device: args.device.as_str().into(),
        max_batch: args.max_batch as u64,
        batch_max_rows: batching.max_rows as u64,
        batch_delay_us: args.batch_delay_us,
        freshness_window_secs: gateway::FRESHNESS_WINDOW_SECS,
        price_nanoton_per_unit: args.price_nanoton_per_unit,
        model_parameter_files: model.parameter_files().to_vec(),
        text_model_name: text_name,
        llm_max_batch: args.llm_max_batch as u64,
        price_nanoton_per_prompt_token: args.price_nanoton_per_prompt_token,
        price_nanoton_per_completion_token: args.price_nanoton_per_completion_token,
        gpu_mode: gpus.as_ref().map(|g| g.mode().as_str().into()),
    };
    let config_digest = serving_config.digest();
    for event in kokon_attestation::claims::rtmr3_events(
        &config_digest,
        &model.digest(),
        text_digest.as_ref(),
    ) {
        backend.extend_runtime_measurement(&event)?;
    }
    let fault_delay = match (
        args.tee,
        std::env::var(SIM_FAULT_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok()),
    ) {
        (TeeKind::Sim, Some(ms)) => Some(Duration::from_millis(ms)),
        _ => None,
    };
    let keys = keys::Keyset::generate()?;
    let price = kokon_billing::Price::per_unit(args.price_nanoton_per_unit);
    let text = text.map(|engine| gateway::TextService {
        engine,
        price: kokon_billing::Price {
            per_unit: args.price_nanoton_per_prompt_token,
            per_output_unit: args.price_nanoton_per_completion_token,
        },
        loaded_at: now,
    });
    tracing::info!(model = %args.model_name, model_digest = %hex::encode(model.digest()), mrtd = %hex::encode(mr_td), "enclave initialised");
    let enclave = Arc::new(server::Enclave {
        gateway: gateway::Gateway::new(keys, model, price, text, fault_delay),
        backend,
        serving_config,
        config_digest,
        metrics,
        gpus,
    });
    if let Some(addr) = args.ratls_listen {
        let enclave = enclave.clone();
        tokio::spawn(async move {
            if let Err(e) = server::serve_ratls(enclave, addr).await {
                tracing::error!(error = %format!("{e:#}"), "attested TLS listener stopped");
            }
        });
    }
    let listen = match (args.socket, args.vsock_port) {
        (Some(socket), _) => server::Listen::Unix(socket),
        (None, Some(port)) => server::Listen::Vsock(port),
        (None, None) => anyhow::bail!("give --socket PATH or --vsock-port PORT"),
    };
    server::serve(enclave, &listen).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let base = [
            "kokon-enclave",
            "--socket",
            "s",
            "--model",
            "m",
            "--ort-lib",
            "o",
        ];
        Args::parse_from(base.iter().chain(extra).chain(&["--data-dir", "d"]))
    }

    #[test]
    fn batching_defaults_to_the_request_limit_and_stays_within_it() {
        let b = args(&[]).batching().unwrap();
        assert_eq!((b.max_rows, b.delay), (64, Duration::from_micros(500)));
        let b = args(&["--max-batch", "8", "--batch-delay-us", "0"])
            .batching()
            .unwrap();
        assert_eq!((b.max_rows, b.delay), (8, Duration::ZERO));
        let b = args(&["--max-batch", "8", "--batch-max-rows", "3"])
            .batching()
            .unwrap();
        assert_eq!(b.max_rows, 3);
        for (extra, limit) in [
            (["--max-batch", "8", "--batch-max-rows", "9"], 8),
            (["--max-batch", "8", "--batch-max-rows", "0"], 8),
        ] {
            let e = args(&extra).batching().unwrap_err().to_string();
            assert!(
                e.contains(&format!("expected 1 to --max-batch ({limit})")),
                "{e}"
            );
        }
    }
}
