//! `kokon-soak`: the soak (see `kokon_tests::soak`) from the command line.
//! `kokon-soak [SECONDS] [CLIENTS]` (default 180 s, 64 clients); exits 1 on
//! any lost voucher, double charge or unpaid request served.

use std::time::Duration;

use kokon_tests::soak::{run, SoakConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let seconds = args.next().and_then(|a| a.parse().ok()).unwrap_or(180u64);
    let clients = args.next().and_then(|a| a.parse().ok()).unwrap_or(64usize);
    let config = SoakConfig {
        duration: Duration::from_secs(seconds),
        clients,
        kills: (seconds / 30).max(3) as usize,
        drippers_per_route: 32,
        flooders: 32,
    };
    println!("soak: {config:?} on loopback");
    let report = run(config).await;
    println!("{}", report.error_kinds());
    println!("{}", report.line());
    if report.clean() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
