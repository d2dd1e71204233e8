//! `kokon`: run a host, attest an enclave, verify evidence, run private inference.
//!
//! Exit status: 0 success; 2 evidence or policy rejected (reasons on stderr);
//! 1 any other error.

#![forbid(unsafe_code)]

mod args;
mod attest;
mod channel;
mod chat;
mod demo;
mod evidence;
mod host;
mod infer;
mod local;
mod proxy;
mod report;
mod tensor;
mod vm;

use std::process::ExitCode;

use clap::Parser;
use kokon_client::ClientError;

use args::{AuditCommand, Cli, Command, HostAction, ImageCommand};

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(ca) = &cli.ca {
        local::trust_ca(ca)?;
    }
    match cli.command {
        Command::Host(args) => match &args.action {
            Some(HostAction::Settle {
                channels,
                network,
                finish,
            }) => host::settle(channels, network, *finish).await,
            None => host::run(host::config(&args)?).await,
        },
        Command::Attest {
            host,
            policy,
            save,
            json,
            report,
        } => attest::attest(&host, &policy, save, json, report.as_deref()).await,
        Command::Verify(args) => attest::verify(*args).await,
        Command::Channel(cmd) => channel::run(cmd).await,
        Command::Audit(AuditCommand::Explain { file, format, json }) => {
            evidence::explain(&file, format.as_deref(), json)
        }
        Command::Audit(AuditCommand::Eventlog { log, quote, json }) => {
            evidence::eventlog(&log, quote.as_deref(), json)
        }
        Command::Audit(AuditCommand::Measure {
            image,
            tee,
            vcpus,
            vcpu_type,
            policy_snippet,
            into,
            json,
        }) => vm::measure(
            &image,
            &tee,
            vcpus,
            vcpu_type.as_deref(),
            policy_snippet,
            into.as_deref(),
            json,
        ),
        Command::Image(ImageCommand::Build(args)) => vm::build(&args),
        Command::Image(ImageCommand::Lock { lock }) => vm::lock(lock.as_deref()),
        Command::Infer(args) => infer::run(args).await,
        Command::Chat(args) => chat::run(args).await,
        Command::Proxy(args) => proxy::run(args).await,
        Command::Demo {
            policy,
            file,
            vm,
            accel,
        } => demo::run(&policy, &file, vm.as_deref(), accel.as_deref()).await,
        Command::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "kokon", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cli = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cli).render(&mut std::io::stdout())?;
            Ok(())
        }
    }
}

/// An error and its causes, each said once: errors that already show their
/// cause in their own message (most of ours) are not followed by it again.
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Any other error for tools: what kind of failure (the transport, the
/// host's answer, the enclave's sealed answer, a receipt, the protocol, or
/// anything else), its HTTP status when there is one, and the message.
fn error_json(e: &anyhow::Error) -> serde_json::Value {
    let (kind, status) = match e.downcast_ref::<ClientError>() {
        Some(ClientError::Transport(_)) => ("transport", None),
        Some(ClientError::Host { status, .. }) => ("host", Some(*status)),
        Some(ClientError::Enclave { status, .. }) => ("enclave", Some(*status)),
        Some(ClientError::Receipt(_)) => ("receipt", None),
        Some(ClientError::Seal(_) | ClientError::Protocol(_)) => ("protocol", None),
        _ => ("error", None),
    };
    serde_json::json!({ "verdict": "error", "kind": kind, "status": status, "error": render(e) })
}

/// A rejection for tools: the verdict and each failed check.
fn rejection_json(e: &ClientError) -> serde_json::Value {
    serde_json::json!({ "verdict": "rejected", "failures": report::failures(e) })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match host::expand_config(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {}", render(&e));
            return ExitCode::from(1);
        }
    };
    let cli = Cli::parse_from(args);
    // KOKON_LOG, else RUST_LOG, else: a server logs its requests (info), a
    // command only its warnings.
    let default_level = match &cli.command {
        Command::Host(args) if args.action.is_none() => "info",
        Command::Proxy(_) => "info",
        _ => "warn",
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOKON_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| default_level.into()),
        );
    match cli.log_format {
        args::LogFormat::Text => logs.init(),
        args::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let json = match &cli.command {
        Command::Verify(args) => args.json,
        other => matches!(
            other,
            Command::Attest { json: true, .. } | Command::Infer(args::InferArgs { json: true, .. })
        ),
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render(&e));
            if let Some(ClientError::Evidence(kokon_attestation::Error::UntrustedRoot {
                expected,
                ..
            })) = e.downcast_ref::<ClientError>()
            {
                if expected.contains(kokon_attestation::sim::SIM_ROOT) {
                    eprintln!(
                        "hint: the policy's sim-local root was read from {}; an enclave started with another KOKON_DATA_DIR has its own root",
                        local::sim_root_file(&local::data_dir()).display()
                    );
                }
            }
            let rejection = e.downcast_ref::<ClientError>().filter(|c| c.is_rejection());
            if json {
                let out = match rejection {
                    Some(rejection) => rejection_json(rejection),
                    None => error_json(&e),
                };
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            }
            ExitCode::from(if rejection.is_some() { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once() {
        let inner = kokon_attestation::Error::Bundle("quote header".into());
        let e = anyhow::Error::from(ClientError::from(inner));
        let text = render(&e);
        assert_eq!(text.matches("quote header").count(), 1, "{text}");
        assert!(text.starts_with("evidence rejected: "), "{text}");
        let e = anyhow::anyhow!("reading x.toml").context("loading the policy");
        assert_eq!(render(&e), "loading the policy: reading x.toml");
    }
}
