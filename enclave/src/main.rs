//! `kokon-enclave`: the worker process the host shim launches.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOKON_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = kokon_enclave::Args::parse();
    let run = || -> anyhow::Result<()> {
        if args.exit_with_host {
            kokon_enclave::watch_lifeline(args.socket.clone())
                .map_err(|e| anyhow::anyhow!("watching the lifeline (stdin): {e}"))?;
        }
        kokon_enclave::pin_to_cpus(&args.cpus)?;
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(kokon_enclave::run(args))
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("enclave failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
