//! `kokon host`: the host shim's configuration, its run until a signal, and
//! `kokon host settle`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kokon_host::ledger::LedgerConfig;
use kokon_host::{EnclaveCommand, HostConfig, Limits};

use crate::args::HostArgs;
use crate::{channel, local};

/// The host's configuration from its arguments and what this machine has.
pub fn config(args: &HostArgs) -> anyhow::Result<HostConfig> {
    let data_dir = local::data_dir();
    let run_dir = data_dir.join("run");
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let enclave = match args.backend.as_str() {
        "process" => process(args, &data_dir, &run_dir)?,
        "qemu" => crate::vm::launch(args, &data_dir, &run_dir)?,
        other => anyhow::bail!("--backend {other}: expected process or qemu"),
    };
    Ok(HostConfig {
        listen: args.listen,
        enclave,
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
        ledger: args.channels.as_deref().map(ledger_config).transpose()?,
        metrics_listen: args.metrics_listen,
        tls: match (args.tls_listen, &args.tls_cert, &args.tls_key) {
            (Some(listen), Some(cert), Some(key)) => Some(kokon_host::tls::TlsConfig {
                listen,
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        collateral: match args.tee.as_str() {
            // The sim PCS's collateral comes with the sim's bundles.
            "sim" | "none" => None,
            _ => Some(args.sources.config(Some(data_dir.join("collateral")))?),
        },
    })
}

/// The enclave as a child process (`--backend process`).
fn process(args: &HostArgs, data_dir: &Path, run_dir: &Path) -> anyhow::Result<kokon_host::Launch> {
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
    let model = match &args.model {
        Some(m) => m.clone(),
        None => local::env_path("KOKON_MODEL")?,
    };
    let ort_lib = match &args.ort_lib {
        Some(lib) => lib.clone(),
        None => local::env_path("KOKON_ORT_LIB")?,
    };
    let enclave = local::enclave_binary()?;
    if !enclave.is_file() {
        anyhow::bail!("enclave binary {} not found: build it with `cargo build --release` or set KOKON_ENCLAVE_BIN", enclave.display());
    }
    let path = |p: &Path| p.display().to_string();
    let pinning = args
        .enclave_cpus
        .iter()
        .flat_map(|cpus| ["--cpus".to_string(), cpus.clone()]);
    let batching = [
        (
            "--batch-max-rows",
            args.batch_max_rows.map(|n| n.to_string()),
        ),
        (
            "--batch-delay-us",
            args.batch_delay_us.map(|n| n.to_string()),
        ),
    ]
    .into_iter()
    .filter_map(|(flag, value)| Some([flag.to_string(), value?]))
    .flatten();
    Ok(EnclaveCommand {
        program: enclave,
        args: vec![
            "--tee".into(),
            args.tee.clone(),
            "--device".into(),
            args.device.clone(),
            "--gpu-mode".into(),
            args.gpu_mode.clone(),
            "--model".into(),
            path(&model),
            "--model-name".into(),
            args.model_name.clone(),
            "--ort-lib".into(),
            path(&ort_lib),
            "--data-dir".into(),
            path(data_dir),
            "--price-nanoton-per-unit".into(),
            args.price_nanoton_per_unit.to_string(),
            "--price-nanoton-per-prompt-token".into(),
            args.price_nanoton_per_prompt_token.to_string(),
            "--price-nanoton-per-completion-token".into(),
            args.price_nanoton_per_completion_token.to_string(),
        ]
        .into_iter()
        .chain(
            args.llm
                .iter()
                .flat_map(|dir| ["--llm".to_string(), path(dir)]),
        )
        .chain(pinning)
        .chain(batching)
        .collect(),
        env: Vec::new(),
        socket: run_dir.join(format!("enclave-{}.sock", std::process::id())),
        startup_timeout: Duration::from_secs(60),
    }
    .into())
}

/// Runs the host until SIGTERM or Ctrl-C. Announces that it listens only
/// once the enclave is ready; when the enclave's first start fails, stops
/// and fails with the enclave's own last error lines instead of looping.
pub async fn run(config: HostConfig) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // The supervisor gives up on its own after this long: wait a little longer.
    let patience = config.enclave.startup_timeout() + Duration::from_secs(10);
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

/// The channels file `channels`, with the host's voucher files kept in the
/// data directory (the same for serving and for settling).
fn ledger_config(channels: &Path) -> anyhow::Result<LedgerConfig> {
    LedgerConfig::from_file(channels, local::data_dir().join("vouchers"))
}

/// `kokon host settle`: claims what each channel owes.
pub async fn settle(channels: &Path, network: &Path, finish: bool) -> anyhow::Result<()> {
    for line in channel::settle(&ledger_config(channels)?, network, finish).await? {
        println!("{line}");
    }
    Ok(())
}

/// `kokon host --config FILE ...`: the file's keys as flags, placed before
/// the command line's own (which therefore win). Other commands' arguments
/// pass through unchanged.
pub fn expand_config(args: Vec<std::ffi::OsString>) -> anyhow::Result<Vec<std::ffi::OsString>> {
    let Some(host) = args.iter().position(|a| a == "host") else {
        return Ok(args);
    };
    let Some(at) = args
        .iter()
        .position(|a| a == "--config")
        .filter(|at| *at > host)
    else {
        return Ok(args);
    };
    let Some(path) = args.get(at + 1).map(std::path::PathBuf::from) else {
        return Ok(args); // clap says what is missing
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the host configuration {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("parsing the host configuration {}", path.display()))?;
    let mut flags: Vec<std::ffi::OsString> = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        let values = match value {
            toml::Value::Boolean(true) => {
                flags.push(flag.into());
                continue;
            }
            toml::Value::Boolean(false) => continue,
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>(),
            other => scalar(&other).map(|v| vec![v]),
        }
        .with_context(|| format!("{}: {key}", path.display()))?;
        for v in values {
            flags.push(flag.clone().into());
            flags.push(v.into());
        }
    }
    let mut out: Vec<std::ffi::OsString> = args.iter().take(host + 1).cloned().collect();
    out.extend(flags);
    out.extend(args.into_iter().skip(host + 1));
    Ok(out)
}

/// A TOML scalar as a flag's value.
fn scalar(value: &toml::Value) -> anyhow::Result<String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => anyhow::bail!("expected a string, number or boolean, found {other}"),
    }
}
