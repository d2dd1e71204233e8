//! `kokon-enclave`: the worker process the host shim launches.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOKON_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match kokon_enclave::run(kokon_enclave::Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("enclave failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
