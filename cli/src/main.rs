//! `kokon`: run a host, attest an enclave, verify evidence, run private inference.
//!
//! Exit status: 0 success; 2 evidence or policy rejected (reasons on stderr);
//! 1 any other error.

#![forbid(unsafe_code)]

mod channel;
mod evidence;
mod local;
mod payment;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kokon_attestation::AttestationBundle;
use kokon_client::magika::{self, Classification, Magika, Prepared};
use kokon_client::{Client, ClientError, VerifiedEnclave};
use kokon_host::{EnclaveCommand, HostConfig, Limits};
use kokon_wire::kserve::{InferInput, InferRequest};

#[derive(Parser)]
#[command(
    name = "kokon",
    version,
    about = "Confidential inference: attested enclaves, sealed requests, signed receipts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host shim and its enclave.
    Host(HostArgs),
    /// Fetch and verify an enclave's attestation.
    Attest {
        /// The host's base URL.
        #[arg(long)]
        host: String,
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Save the verified bundle here.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a saved attestation bundle, or raw TDX/SNP evidence, offline.
    ///
    /// With --bundle (and --policy): the evidence, its binding of the claims
    /// and the policy; the nonce is not checked. With --evidence: the quote or
    /// report's signatures, chain and collateral; without --policy the
    /// evidence must also be UpToDate (TDX), exit 2 otherwise.
    Verify {
        /// A saved attestation bundle.
        #[arg(
            long,
            conflicts_with = "evidence",
            required_unless_present = "evidence"
        )]
        bundle: Option<PathBuf>,
        /// A raw TDX quote or SNP report (binary or hex).
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Format of --evidence when it is not detected: tdx-quote or snp-report.
        #[arg(long, requires = "evidence")]
        format: Option<String>,
        /// TDX collateral (JSON, as Intel PCS/PCCS or dcap-qvl's QuoteCollateralV3).
        #[arg(long, requires = "evidence")]
        collateral: Option<PathBuf>,
        /// SNP: the VCEK or VLEK certificate (DER or PEM).
        #[arg(long, requires = "evidence")]
        vcek: Option<PathBuf>,
        /// SNP: its CA chain (ASK or ASVK, then ARK; PEM); default the embedded ASK.
        #[arg(long, requires = "evidence")]
        chain: Option<PathBuf>,
        /// SNP: AMD's CRL for the product line (DER or PEM, from KDS .../crl).
        #[arg(long, requires = "evidence")]
        crl: Option<PathBuf>,
        /// The policy file (required with --bundle).
        #[arg(long, required_unless_present = "evidence")]
        policy: Option<PathBuf>,
        /// Verification time (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify the enclave, then classify a file privately.
    Infer {
        /// The host's base URL.
        #[arg(long)]
        host: String,
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Model name.
        #[arg(long, default_value = "magika")]
        model: String,
        /// The file to classify.
        #[arg(long)]
        file: PathBuf,
        /// Bill it to this payment channel (a `kokon channel open` file) and pay.
        #[arg(long)]
        channel: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Auditor tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The client's payment channel on TON.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// The whole story on this machine: host, enclave, attestation, private inference.
    Demo {
        /// Policy for the local sim enclave.
        #[arg(long, default_value = "policies/dev-sim.toml")]
        policy: PathBuf,
        /// Files to classify after the built-in sample.
        #[arg(long)]
        file: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Deploy, fund and open a channel from the client's wallet (v4r2).
    Open {
        /// The network file (endpoint, api_key).
        #[arg(long)]
        network: PathBuf,
        /// The host's channel key (hex).
        #[arg(long)]
        host_key: String,
        /// The host's payout address.
        #[arg(long)]
        host_address: String,
        /// Nanotons to lock.
        #[arg(long)]
        deposit: u128,
        /// Where to keep the channel (holds the client's key; mode 0600). The
        /// key is drawn once into OUT with the extension `.key`.
        #[arg(long)]
        out: PathBuf,
    },
    /// The channel's state: newest voucher (and its BOC), on-chain state.
    Status {
        /// The channel file.
        #[arg(long)]
        channel: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add to the deposit (the standard contract allows it only before init).
    Topup {
        /// The channel file.
        #[arg(long)]
        channel: PathBuf,
        /// Nanotons to add.
        #[arg(long)]
        amount: u128,
    },
    /// Close cooperatively with the host at the newest voucher.
    Close {
        /// The channel file.
        #[arg(long)]
        channel: PathBuf,
        /// The host's base URL.
        #[arg(long)]
        host: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Replay a TDX event log (CCEL), print each event, and compare with a quote's RTMRs.
    Eventlog {
        /// The event log (the CCEL table's log area, e.g. /sys/firmware/acpi/tables/data/CCEL).
        log: PathBuf,
        /// A quote of the same TD: exit 2 unless the replay reproduces its RTMR0-2.
        #[arg(long)]
        quote: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every field of a TDX quote, SNP report or attestation bundle with its meaning.
    Explain {
        /// The quote, report (binary or hex) or bundle (JSON).
        file: PathBuf,
        /// Format, when not detected: tdx-quote or snp-report.
        #[arg(long)]
        format: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Parser, Clone)]
struct HostArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Evidence backend of the enclave.
    #[arg(long, default_value = "sim")]
    tee: String,
    /// Inference device (cpu or cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The ONNX model (default $KOKON_MODEL).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The model's served name.
    #[arg(long, default_value = "magika")]
    model_name: String,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body: usize,
    /// Requests relayed at once.
    #[arg(long, default_value_t = 64)]
    max_concurrency: usize,
    /// Seconds allowed per request, once its body has arrived.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Seconds a client has to send a request body (every route).
    #[arg(long, default_value_t = 10)]
    body_timeout: u64,
    /// Attestations relayed at once (apart from inference).
    #[arg(long, default_value_t = 4)]
    max_attestations: usize,
    /// Attestations started per second (bursts up to as many).
    #[arg(long, default_value_t = 50)]
    attestations_per_second: u32,
    /// Open connections per peer address (0: no limit; behind a reverse proxy, raise it).
    #[arg(long, default_value_t = 256)]
    max_connections_per_peer: usize,
    /// Pin the enclave to these CPUs (comma-separated), as a TEE VM's dedicated vCPUs.
    #[arg(long)]
    enclave_cpus: Option<String>,
    /// Hardware TEEs: Intel PCS or PCCS base URL for TDX collateral.
    #[arg(long, default_value = kokon_host::collateral::INTEL_PCS)]
    pcs_url: String,
    /// Hardware TEEs: URL of the Intel SGX Root CA CRL.
    #[arg(long, default_value = kokon_host::collateral::INTEL_ROOT_CRL)]
    root_crl_url: String,
    /// Hardware TEEs: AMD KDS base URL for VCEKs.
    #[arg(long, default_value = kokon_host::collateral::AMD_KDS)]
    kds_url: String,
    /// SEV-SNP product line (milan, genoa, turin) for reports that do not name it.
    #[arg(long)]
    snp_product: Option<String>,
    /// Bill requests to the payment channels in this TOML file (see docs/billing.md).
    #[arg(long)]
    channels: Option<PathBuf>,
    /// Price of one inference in nanotons (the enclave's receipts charge it).
    #[arg(long, default_value_t = 0)]
    price_nanoton_per_unit: u128,
    /// Host tools instead of running the host.
    #[command(subcommand)]
    action: Option<HostAction>,
}

#[derive(Subcommand, Clone)]
enum HostAction {
    /// Claim what the channels owe: start an uncooperative close on each
    /// channel's newest voucher (from the host's v5r1 wallet), or finish
    /// them after the quarantine.
    Settle {
        /// The channels file (with host_key_file and each channel's address).
        #[arg(long)]
        channels: PathBuf,
        /// The network file.
        #[arg(long)]
        network: PathBuf,
        /// Finish closes whose quarantine has passed.
        #[arg(long)]
        finish: bool,
    },
}

fn host_config(args: &HostArgs) -> anyhow::Result<HostConfig> {
    match args.tee.as_str() {
        "sim" => {}
        "tdx" | "snp" | "auto" => {
            // The enclave acquires evidence through configfs-tsm or a guest
            // driver's device; fail before launching it when this machine has
            // none of them (never fall back to sim).
            let tsm = Path::new(kokon_wire::TSM_REPORT_ROOT);
            let sev_device = args.tee != "tdx" && Path::new(kokon_wire::SEV_GUEST_DEVICE).exists();
            let tdx_device = args.tee != "snp" && Path::new(kokon_wire::TDX_GUEST_DEVICE).exists();
            if !tsm.is_dir() && !sev_device && !tdx_device {
                anyhow::bail!(
                    "--tee {}: configfs-tsm not found at {} (needs a TDX or SEV-SNP guest with Linux 6.7+, or {} for SEV-SNP, or {} with the host's quoting service for TDX); kokon never falls back to sim",
                    args.tee,
                    tsm.display(),
                    kokon_wire::SEV_GUEST_DEVICE,
                    kokon_wire::TDX_GUEST_DEVICE
                );
            }
        }
        other => anyhow::bail!("--tee {other}: expected sim, tdx, snp or auto"),
    }
    let data_dir = local::data_dir();
    let model = match &args.model {
        Some(m) => m.clone(),
        None => local::env_path("KOKON_MODEL")?,
    };
    let ort_lib = local::env_path("KOKON_ORT_LIB")?;
    let run_dir = data_dir.join("run");
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let enclave = local::enclave_binary()?;
    if !enclave.is_file() {
        anyhow::bail!("enclave binary {} not found: build it with `cargo build --release` or set KOKON_ENCLAVE_BIN", enclave.display());
    }
    let path = |p: &Path| p.display().to_string();
    let pinning = args
        .enclave_cpus
        .iter()
        .flat_map(|cpus| ["--cpus".to_string(), cpus.clone()]);
    Ok(HostConfig {
        listen: args.listen,
        enclave: EnclaveCommand {
            program: enclave,
            args: vec![
                "--tee".into(),
                args.tee.clone(),
                "--device".into(),
                args.device.clone(),
                "--model".into(),
                path(&model),
                "--model-name".into(),
                args.model_name.clone(),
                "--ort-lib".into(),
                path(&ort_lib),
                "--data-dir".into(),
                path(&data_dir),
                "--price-nanoton-per-unit".into(),
                args.price_nanoton_per_unit.to_string(),
            ]
            .into_iter()
            .chain(pinning)
            .collect(),
            env: Vec::new(),
            socket: run_dir.join(format!("enclave-{}.sock", std::process::id())),
            startup_timeout: Duration::from_secs(60),
        },
        limits: Limits {
            max_body_bytes: args.max_body,
            max_concurrency: args.max_concurrency,
            request_timeout: Duration::from_secs(args.timeout),
            body_timeout: Duration::from_secs(args.body_timeout),
            max_attestations: args.max_attestations,
            attestations_per_second: args.attestations_per_second,
            max_connections_per_peer: args.max_connections_per_peer,
            ..Limits::default()
        },
        ledger: args
            .channels
            .as_deref()
            .map(|f| kokon_host::ledger::LedgerConfig::from_file(f, data_dir.join("vouchers")))
            .transpose()?,
        collateral: match args.tee.as_str() {
            // The sim PCS's collateral comes with the sim's bundles.
            "sim" => None,
            _ => Some(kokon_host::collateral::CollateralConfig {
                pcs_url: args.pcs_url.clone(),
                root_crl_url: args.root_crl_url.clone(),
                kds_url: args.kds_url.clone(),
                snp_product: args
                    .snp_product
                    .as_deref()
                    .map(|p| serde_json::from_value(serde_json::Value::String(p.into())))
                    .transpose()
                    .context("--snp-product: expected milan, genoa or turin")?,
                cache_dir: data_dir.join("collateral"),
            }),
        },
    })
}

fn parse_time(at: Option<&str>) -> anyhow::Result<i64> {
    match at {
        None => Ok(kokon_client::unix_now()),
        Some(s) => Ok(time::OffsetDateTime::parse(
            s,
            &time::format_description::well_known::Rfc3339,
        )
        .with_context(|| format!("--at {s:?} is not an RFC 3339 time"))?
        .unix_timestamp()),
    }
}

fn print_verified(e: &VerifiedEnclave, policy: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(e, policy)).unwrap_or_default()
        );
    } else {
        print!("{}", report::text(e, policy));
    }
}

/// The outcome of one private classification.
struct Classified {
    result: Classification,
    receipt: Option<kokon_billing::SignedReceipt>,
    sealed_bytes: usize,
    elapsed: Duration,
}

async fn classify(
    client: &Client,
    enclave: &VerifiedEnclave,
    magika: &Magika,
    prepared: Prepared,
) -> Result<Classified, ClientError> {
    let started = Instant::now();
    let row = match prepared {
        Prepared::Decided(result) => {
            return Ok(Classified {
                result,
                receipt: None,
                sealed_bytes: 0,
                elapsed: started.elapsed(),
            })
        }
        Prepared::Features(row) => row,
    };
    let request = InferRequest {
        id: None,
        inputs: vec![InferInput::int32(
            magika::INPUT,
            vec![1, row.len() as i64],
            &row,
        )],
        outputs: None,
        parameters: None,
    };
    let sealed_bytes = serde_json::to_vec(&request).map(|b| b.len()).unwrap_or(0);
    let (response, receipt) = client.infer(enclave, &request).await?;
    let scores = response
        .outputs
        .iter()
        .find(|o| o.name == magika::OUTPUT)
        .and_then(|o| o.f32_data())
        .ok_or_else(|| {
            ClientError::Protocol(format!("response has no numeric {} output", magika::OUTPUT))
        })?;
    let result = magika.classify(&scores).map_err(ClientError::Protocol)?;
    Ok(Classified {
        result,
        receipt: Some(receipt),
        sealed_bytes,
        elapsed: started.elapsed(),
    })
}

fn load_magika() -> anyhow::Result<Magika> {
    Magika::load(&local::env_path("KOKON_MAGIKA_DIR")?).map_err(anyhow::Error::msg)
}

const SAMPLE_NAME: &str = "built-in sample (a Python script)";
const SAMPLE: &[u8] = b"#!/usr/bin/env python3\n\"\"\"Count words in the files given on the command line.\"\"\"\nimport sys\nfrom collections import Counter\n\n\ndef main(paths):\n    counts = Counter()\n    for path in paths:\n        with open(path, encoding=\"utf-8\") as f:\n            for line in f:\n                counts.update(line.split())\n    for word, n in counts.most_common(10):\n        print(f\"{n:6d} {word}\")\n\n\nif __name__ == \"__main__\":\n    main(sys.argv[1:])\n";

async fn demo(policy_path: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let step = |n: u32, title: &str| println!("\n[{n}] {title}");
    println!("kokon demo: private inference end to end (sim TEE, CPU), paid over a TON payment channel (local sandbox)");
    step(
        1,
        "client opens a payment channel to the host on a local TON sandbox (the real TVM)",
    );
    let mut channel = payment::DemoChannel::open(&local::env_path("KOKON_TON_BRIDGE")?)?;
    println!(
        "  channel {} at {} holds {} nanotons of the client's; price {} nanotons per inference",
        channel.params.channel_id,
        channel.address,
        payment::DEMO_DEPOSIT,
        payment::DEMO_PRICE
    );
    let dir = local::data_dir()
        .join("demo")
        .join(std::process::id().to_string());
    let channels = channel.channels_file(&dir)?;
    step(2, "host shim starts and launches the enclave");
    let t = Instant::now();
    let args = HostArgs::parse_from([
        "host".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--price-nanoton-per-unit".into(),
        payment::DEMO_PRICE.to_string(),
        "--channels".into(),
        channels.display().to_string(),
    ]);
    let host = kokon_host::start(host_config(&args)?).await?;
    host.wait_ready(Duration::from_secs(90)).await?;
    println!(
        "  host listening on http://{} ; enclave pid {} ready in {:.0?}",
        host.addr,
        host.state.pid.load(std::sync::atomic::Ordering::Relaxed),
        t.elapsed()
    );
    let base = format!("http://{}", host.addr);
    let result = demo_client(&base, policy_path, files, &step, &mut channel).await;
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let last = result?;
    step(
        last + 1,
        "client and host settle: cooperative close on chain",
    );
    let settled = channel.settle()?;
    println!(
        "  the contract paid the host {} nanotons (the sum of the receipts) and returned {} to the client; host and enclave stopped",
        settled.to_host, settled.to_client
    );
    anyhow::ensure!(
        settled.to_host == channel.payer.state().sent,
        "the host was paid {} but the vouchers say {}",
        settled.to_host,
        channel.payer.state().sent
    );
    println!(
        "settled_nanoton={} receipts={}",
        settled.to_host, channel.receipts
    );
    Ok(())
}

/// The client's part of the demo; returns the number of the last step shown.
async fn demo_client(
    base: &str,
    policy_path: &Path,
    files: &[PathBuf],
    step: &impl Fn(u32, &str),
    channel: &mut payment::DemoChannel,
) -> anyhow::Result<u32> {
    let client = Client::new(base);
    let policy = local::load_policy(policy_path)?;
    step(
        3,
        &format!(
            "client fetches evidence with a fresh nonce and verifies it against {}",
            policy_path.display()
        ),
    );
    let t = Instant::now();
    let enclave = client
        .attest(&policy)
        .await?
        .with_channel(channel.params.channel_id, channel.client_key());
    print!("{}", report::text(&enclave, &policy.name));
    println!("  verified in {:.1?}", t.elapsed());
    let magika = load_magika()?;
    let mut inputs: Vec<(String, Prepared)> = vec![(SAMPLE_NAME.into(), magika.prepare(SAMPLE))];
    for f in files {
        let prepared = magika
            .prepare_file(f)
            .with_context(|| format!("reading {}", f.display()))?;
        inputs.push((f.display().to_string(), prepared));
    }
    let mut n = 3;
    for (name, prepared) in inputs {
        n += 1;
        step(n, &format!("classify {name} privately, and pay for it"));
        let c = classify(&client, &enclave, &magika, prepared).await?;
        match &c.receipt {
            None => println!(
                "  decided locally (too small for the model): {}",
                c.result.output
            ),
            Some(r) => {
                println!("  request sealed to the attested key (HPKE X25519/AES-256-GCM); the host relayed only ciphertext");
                println!(
                    "  result: {} (model label {}, score {:.3})",
                    c.result.output, c.result.dl, c.result.score
                );
                println!(
                    "  receipt verified: seq {} units {} charged {} nanotons, model sha256:{}… signed by ed25519:{}…",
                    r.receipt.sequence,
                    r.receipt.units,
                    r.receipt.amount,
                    &hex::encode(r.receipt.model_digest)[..16],
                    &hex::encode(enclave.evidence.claims.receipt_key)[..16]
                );
                let paid = channel.pay(&client, r).await?;
                println!(
                    "  voucher seqno {} sent to the host, which now counts {paid} nanotons paid",
                    channel.payer.state().seqno
                );
                println!(
                    "  {} bytes of tensor JSON, end to end in {:.1?}",
                    c.sealed_bytes, c.elapsed
                );
            }
        }
    }
    Ok(n)
}

/// Runs the host until SIGTERM or Ctrl-C. Announces that it listens only
/// once the enclave is ready; when the enclave's first start fails, stops
/// and fails with the enclave's own last error lines instead of looping.
async fn run_host(config: HostConfig) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // The supervisor gives up on its own after this long: wait a little longer.
    let patience = config.enclave.startup_timeout + Duration::from_secs(10);
    let host = kokon_host::start(config).await?;
    let ready = tokio::select! {
        ready = host.wait_ready(patience) => Some(ready),
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
    };
    match ready {
        Some(Err(e)) => {
            host.shutdown().await;
            return Err(e.context("the enclave did not start"));
        }
        Some(Ok(())) => {
            println!(
                "kokon host listening on http://{} (enclave pid {} ready)",
                host.addr,
                host.state.pid.load(std::sync::atomic::Ordering::Relaxed)
            );
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
            }
        }
        None => tracing::info!("stopped while the enclave was starting"),
    }
    host.shutdown().await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Host(HostArgs {
            action:
                Some(HostAction::Settle {
                    channels,
                    network,
                    finish,
                }),
            ..
        }) => {
            let ledger = kokon_host::ledger::LedgerConfig::from_file(
                &channels,
                local::data_dir().join("vouchers"),
            )?;
            for line in channel::settle(&ledger, &network, finish).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Host(args) => run_host(host_config(&args)?).await,
        Command::Attest {
            host,
            policy,
            save,
            json,
        } => {
            let p = local::load_policy(&policy)?;
            let enclave = Client::new(&host).attest(&p).await?;
            if let Some(path) = save {
                std::fs::write(&path, enclave.bundle.to_json())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            print_verified(&enclave, &p.name, json);
            Ok(())
        }
        Command::Verify {
            bundle,
            evidence,
            format,
            collateral,
            vcek,
            chain,
            crl,
            policy,
            at,
            json,
        } => {
            let p = policy.as_deref().map(local::load_policy).transpose()?;
            let now = parse_time(at.as_deref())?;
            if let Some(file) = evidence {
                let raw = evidence::RawEvidence {
                    file,
                    format,
                    collateral,
                    vcek,
                    chain,
                    crl,
                };
                let v = evidence::verify(&raw, p.as_ref(), now)?;
                let name = p.as_ref().map(|p| p.name.as_str());
                if json {
                    let out = evidence::report_json(&v, name);
                    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                } else {
                    print!("{}", evidence::report_text(&v, name));
                }
                return Ok(());
            }
            let (Some(bundle), Some(p)) = (bundle, p) else {
                anyhow::bail!("--bundle needs --policy");
            };
            let bytes =
                std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
            let b = AttestationBundle::from_json(&bytes).map_err(ClientError::from)?;
            let enclave = kokon_client::verify(b, &p, None, now)?;
            print_verified(&enclave, &p.name, json);
            Ok(())
        }
        Command::Channel(cmd) => match cmd {
            ChannelCommand::Open {
                network,
                host_key,
                host_address,
                deposit,
                out,
            } => {
                let f = channel::open(&network, &host_key, &host_address, deposit, &out).await?;
                println!(
                    "channel {} open at {} with {} nanotons; kept in {}",
                    f.channel_id,
                    f.channel_address,
                    f.deposit,
                    out.display()
                );
                Ok(())
            }
            ChannelCommand::Status {
                channel: path,
                json,
            } => {
                let v = channel::status(&channel::ChannelFile::load(&path)?).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    let field = |k: &str| v.get(k).cloned().unwrap_or_default();
                    println!(
                        "channel {} at {}: deposit {} nanotons, sent {} (voucher seqno {}), on-chain state {}",
                        field("channel_id"),
                        field("channel_address"),
                        field("deposit"),
                        field("sent"),
                        field("seqno"),
                        field("on_chain_state")
                    );
                }
                Ok(())
            }
            ChannelCommand::Topup {
                channel: path,
                amount: _,
            } => channel::topup(&channel::ChannelFile::load(&path)?).await,
            ChannelCommand::Close {
                channel: path,
                host,
            } => {
                let (to_host, to_client) =
                    channel::close(&channel::ChannelFile::load(&path)?, &host).await?;
                println!("closed: {to_host} nanotons to the host, {to_client} back to the client");
                Ok(())
            }
        },
        Command::Audit(AuditCommand::Explain { file, format, json }) => {
            evidence::explain(&file, format.as_deref(), json)
        }
        Command::Audit(AuditCommand::Eventlog { log, quote, json }) => {
            evidence::eventlog(&log, quote.as_deref(), json)
        }
        Command::Infer {
            host,
            policy,
            model,
            file,
            channel,
            json,
        } => {
            let p = local::load_policy(&policy)?;
            let client = Client::new(&host);
            let mut enclave = client.attest(&p).await?;
            let paying = match &channel {
                Some(path) => {
                    let f = channel::ChannelFile::load(path)?;
                    enclave = enclave.with_channel(f.id()?, f.key()?);
                    // A voucher that did not reach the host last time goes
                    // first (the host already holding it answers 409).
                    if let Some(saved) = &f.voucher {
                        let state = saved.state().map_err(anyhow::Error::msg)?;
                        match client.pay(&state).await {
                            Ok(_) | Err(ClientError::Host { status: 409, .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Some((path.clone(), f))
                }
                None => None,
            };
            if enclave.evidence.claims.model_name != model {
                anyhow::bail!(
                    "the attested enclave serves model {:?}, not {model:?}",
                    enclave.evidence.claims.model_name
                );
            }
            let magika = load_magika()?;
            let prepared = magika
                .prepare_file(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let c = classify(&client, &enclave, &magika, prepared).await?;
            // Paid only after the receipt verified; the voucher is saved
            // before it is handed over, so it is never lost. The result is
            // shown whatever happens to the payment.
            let mut voucher = None;
            if let (Some((path, mut f)), Some(r)) = (paying, &c.receipt) {
                let v = f.payer()?.pay(r.receipt.amount)?;
                f.voucher = Some(kokon_wire::billing::VoucherJson::from(&v));
                f.save(&path)?;
                voucher = Some((path, v));
            }
            if json {
                let out = serde_json::json!({
                    "file": file.display().to_string(),
                    "dl": c.result.dl, "output": c.result.output, "score": c.result.score,
                    "receipt": c.receipt,
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                println!(
                    "{}: {} (model label {}, score {:.3})",
                    file.display(),
                    c.result.output,
                    c.result.dl,
                    c.result.score
                );
                if let Some(r) = c.receipt {
                    println!(
                        "receipt verified: seq {} units {}",
                        r.receipt.sequence, r.receipt.units
                    );
                }
            }
            if let Some((path, v)) = voucher {
                client.pay(&v).await.map_err(|e| {
                    anyhow::anyhow!(
                        "the result above is yours, but its payment did not reach the host: {e}. The voucher (seqno {}) is saved in {}; the next `kokon infer --channel` sends a newer one that covers it",
                        v.body.seqno,
                        path.display()
                    )
                })?;
            }
            Ok(())
        }
        Command::Demo { policy, file } => demo(&policy, &file).await,
    }
}

/// A rejection for tools: the verdict and each failed check.
fn rejection_json(e: &ClientError) -> serde_json::Value {
    let failures: Vec<serde_json::Value> = match e {
        ClientError::Policy(r) => r
            .failures
            .iter()
            .map(
                |f| serde_json::json!({"check": f.check, "expected": f.expected, "found": f.found}),
            )
            .collect(),
        ClientError::Nonce { expected, found } => {
            vec![serde_json::json!({"check": "nonce", "expected": expected, "found": found})]
        }
        other => vec![serde_json::json!({"check": "evidence", "error": other.to_string()})],
    };
    serde_json::json!({ "verdict": "rejected", "failures": failures })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // KOKON_LOG, else RUST_LOG, else: a server logs its requests (info), a
    // command only its warnings.
    let default_level = match &cli.command {
        Command::Host(HostArgs { action: None, .. }) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOKON_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| default_level.into()),
        )
        .init();
    let json = matches!(
        &cli.command,
        Command::Attest { json: true, .. }
            | Command::Verify { json: true, .. }
            | Command::Infer { json: true, .. }
    );
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let rejection = e.downcast_ref::<ClientError>().filter(|c| c.is_rejection());
            if let (Some(rejection), true) = (rejection, json) {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rejection_json(rejection)).unwrap_or_default()
                );
            }
            ExitCode::from(if rejection.is_some() { 2 } else { 1 })
        }
    }
}
