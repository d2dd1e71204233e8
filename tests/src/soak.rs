//! The soak: a billing host under everything at once, for a bounded time,
//! on loopback only. Paying clients (one channel each) make private
//! inferences and pay for each verified receipt; the enclave is killed
//! several times; slow clients drip bodies on the inference and voucher
//! routes; an attestation flood runs; and an attacker keeps trying to be
//! served without paying. At the end every client delivers its newest
//! voucher and the books are compared:
//!
//! - `lost_vouchers`: channels whose newest voucher the host does not hold;
//! - `double_charges`: channels the host charged more than the client's
//!   verified receipts add up to;
//! - `unpaid_served`: attacker requests that were served.
//!
//! Errors (requests refused or failed while the enclave restarts) are
//! counted, not fatal: what must never happen is a loss.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use kokon_client::{Client, PayerProof};
use kokon_host::ledger::LedgerConfig;
use kokon_ton::voucher::Payer;

use crate::{magika_request, Options, Stack, DEV_POLICY};

/// Price of one inference in the soak, nanotons.
const PRICE: u128 = 1_000;
/// Each client's deposit: far more than it can spend.
const DEPOSIT: u128 = 1_000_000_000;

/// How hard and how long to soak.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long the load runs.
    pub duration: Duration,
    /// Concurrent paying clients (one channel each).
    pub clients: usize,
    /// Times the enclave is killed (SIGKILL), evenly spread.
    pub kills: usize,
    /// Dripping uploads held on each of `/v1/ohttp` and `/v1/voucher`.
    pub drippers_per_route: usize,
    /// Connections flooding `/v1/attestation`.
    pub flooders: usize,
}

/// What the soak counted.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Private inferences served with a verified receipt.
    pub requests: u64,
    /// Requests that failed (mostly while the enclave restarted).
    pub errors: u64,
    /// The failures by kind (`attest 429`, `infer 502`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Channels whose newest voucher the host did not hold at the end.
    pub lost_vouchers: u64,
    /// Channels charged more than their verified receipts.
    pub double_charges: u64,
    /// Channels charged less than their verified receipts (the host's loss).
    pub undercharges: u64,
    /// Attacker requests served.
    pub unpaid_served: u64,
    /// Attacker requests refused.
    pub unpaid_refused: u64,
    /// Times the enclave was killed.
    pub enclave_kills: u64,
    /// After each kill, milliseconds until an inference was served again.
    pub recovery_ms: Vec<u64>,
    /// Attestations the flood got, and refusals.
    pub flood_ok: u64,
    /// Attestation requests of the flood refused.
    pub flood_refused: u64,
    /// Dripping uploads the host cut off.
    pub drips_cut: u64,
    /// The load's duration.
    pub elapsed: Duration,
}

impl SoakReport {
    /// True when nothing was lost, double-charged or served unpaid.
    pub fn clean(&self) -> bool {
        self.lost_vouchers == 0 && self.double_charges == 0 && self.unpaid_served == 0
    }

    /// The failures by kind, on one line.
    pub fn error_kinds(&self) -> String {
        let kinds: Vec<String> = self
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        format!("soak errors by kind: {}", kinds.join(", "))
    }

    /// The closing line.
    pub fn line(&self) -> String {
        format!(
            "soak: requests={} errors={} lost_vouchers={} double_charges={} unpaid_served={} undercharges={} enclave_kills={} recovery_ms={:?} unpaid_refused={} flood_ok={} flood_refused={} drips_cut={} seconds={:.0} rate={:.1}/s",
            self.requests,
            self.errors,
            self.lost_vouchers,
            self.double_charges,
            self.unpaid_served,
            self.undercharges,
            self.enclave_kills,
            self.recovery_ms,
            self.unpaid_refused,
            self.flood_ok,
            self.flood_refused,
            self.drips_cut,
            self.elapsed.as_secs_f64(),
            self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9),
        )
    }
}

fn key(i: usize) -> SigningKey {
    let mut seed = [0x5a; 32];
    for (d, s) in seed.iter_mut().zip((i as u64).to_be_bytes()) {
        *d = s;
    }
    SigningKey::from_bytes(&seed)
}

fn channel_id(i: usize) -> u128 {
    1_000 + i as u128
}

/// One paying client: what it was served and what it signed.
struct Books {
    receipts: u128,
    served: u64,
    errors: BTreeMap<String, u64>,
    payer: Payer,
}

fn kind(step: &str, e: &kokon_client::ClientError) -> String {
    match e {
        kokon_client::ClientError::Host { status, .. } => format!("{step} {status}"),
        kokon_client::ClientError::Transport(_) => format!("{step} transport"),
        kokon_client::ClientError::Enclave { status, .. } => format!("{step} enclave {status}"),
        _ => format!("{step} other"),
    }
}

impl Books {
    fn failed(&mut self, step: &str, e: &kokon_client::ClientError) {
        *self.errors.entry(kind(step, e)).or_insert(0) += 1;
    }
}

async fn paying_client(
    stack_client: Client,
    policy: Arc<kokon_policies::Policy>,
    i: usize,
    request: kokon_wire::kserve::InferRequest,
    until: Instant,
    last_served: Arc<AtomicU64>,
) -> Books {
    let mut books = Books {
        receipts: 0,
        served: 0,
        errors: BTreeMap::new(),
        payer: Payer::new(key(i), channel_id(i), DEPOSIT, None),
    };
    let mut enclave = None;
    while Instant::now() < until {
        let Some(e) = enclave.as_ref() else {
            match stack_client.attest(&policy).await {
                Ok(e) => enclave = Some(e.with_channel(channel_id(i), key(i))),
                Err(e) => {
                    books.failed("attest", &e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            continue;
        };
        match stack_client.infer(e, &request).await {
            Ok((_, receipt)) => {
                books.served += 1;
                last_served.store(
                    until.saturating_duration_since(Instant::now()).as_millis() as u64,
                    Ordering::Relaxed,
                );
                books.receipts += receipt.receipt.amount;
                if let Ok(v) = books.payer.pay(receipt.receipt.amount) {
                    // Not delivered now: the next voucher covers it.
                    let _ = stack_client.pay(&v).await;
                }
            }
            Err(e @ kokon_client::ClientError::Host { status: 402, .. }) => {
                books.failed("infer", &e);
                if let Ok(v) = books.payer.resign() {
                    let _ = stack_client.pay(&v).await;
                }
            }
            Err(e) => {
                // The enclave may have restarted with new keys: attest again.
                books.failed("infer", &e);
                enclave = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    books
}

/// Keeps trying to be served without paying: no proof, a forged proof, a
/// proof for a channel whose key it does not hold.
async fn freeloader(
    client: Client,
    policy: Arc<kokon_policies::Policy>,
    request: kokon_wire::kserve::InferRequest,
    until: Instant,
) -> (u64, u64) {
    let (mut served, mut refused) = (0, 0);
    let thief = SigningKey::from_bytes(&[0xee; 32]);
    let mut round = 0u64;
    while Instant::now() < until {
        let Ok(enclave) = client.attest(&policy).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for _ in 0..10 {
            round += 1;
            let Ok(sealed) = enclave.seal_infer(&request, kokon_client::unix_now()) else {
                continue;
            };
            let victim = channel_id((round % 4) as usize);
            let headers: Vec<(&str, String)> = match round % 3 {
                0 => vec![(kokon_billing::CHANNEL_HEADER, victim.to_string())],
                1 => vec![(
                    kokon_billing::payer::PAYER_HEADER,
                    PayerProof::sign(&thief, victim, &sealed.bytes, kokon_client::unix_now())
                        .to_header(),
                )],
                _ => vec![(
                    kokon_billing::payer::PAYER_HEADER,
                    format!("{victim}:{}:{}", kokon_client::unix_now(), "ab".repeat(64)),
                )],
            };
            match client.send_with_headers(&sealed.bytes, &headers).await {
                Ok(_) => served += 1,
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (served, refused)
}

/// Runs the soak and reports what it counted.
pub async fn run(config: SoakConfig) -> SoakReport {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let channels = (0..config.clients)
        .map(|i| crate::channel_config(channel_id(i), &key(i), DEPOSIT, 3 * PRICE))
        .collect();
    let stack = Stack::start(Options {
        enclave_args: vec!["--price-nanoton-per-unit".into(), PRICE.to_string()],
        ledger: Some(LedgerConfig {
            channels,
            store: store.path().to_path_buf(),
            host_key_file: None,
        }),
        ..Options::default()
    })
    .await;
    let policy = Arc::new(stack.policy(DEV_POLICY));
    let row = stack.env.feature_row(include_bytes!("../../README.md"));
    let request = magika_request(&[row]);
    let started = Instant::now();
    let until = started + config.duration;

    let stop = Arc::new(AtomicBool::new(false));
    let counters: [Arc<AtomicU64>; 3] = Default::default();
    let mut background = Vec::new();
    for path in ["/v1/ohttp", "/v1/voucher"] {
        for _ in 0..config.drippers_per_route {
            background.push(tokio::spawn(crate::attack::drip(
                stack.host.addr,
                path,
                stop.clone(),
                counters[0].clone(),
            )));
        }
    }
    for _ in 0..config.flooders {
        background.push(tokio::spawn(crate::attack::flood_attestation(
            stack.base.clone(),
            stop.clone(),
            counters[1].clone(),
            counters[2].clone(),
        )));
    }
    // Milliseconds before the end at which the last inference was served.
    let last_served = Arc::new(AtomicU64::new(u64::MAX));
    let clients: Vec<_> = (0..config.clients)
        .map(|i| {
            tokio::spawn(paying_client(
                stack.client.clone(),
                policy.clone(),
                i,
                request.clone(),
                until,
                last_served.clone(),
            ))
        })
        .collect();
    let thief = tokio::spawn(freeloader(
        stack.client.clone(),
        policy.clone(),
        request.clone(),
        until,
    ));
    let mut report = SoakReport::default();
    let gap = config.duration / (config.kills as u32 + 1);
    for _ in 0..config.kills {
        tokio::time::sleep(gap).await;
        let pid = stack.host.state.pid.load(Ordering::Relaxed);
        if pid != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            report.enclave_kills += 1;
            // Recovery: from the kill to the first inference served by the
            // restarted enclave (answers already on their way do not count).
            let killed = Instant::now();
            while stack.host.state.pid.load(Ordering::Relaxed) == pid && killed.elapsed() < gap {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let before = until.saturating_duration_since(Instant::now()).as_millis() as u64;
            while last_served.load(Ordering::Relaxed) >= before
                && killed.elapsed() < gap
                && Instant::now() < until
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            report.recovery_ms.push(killed.elapsed().as_millis() as u64);
        }
    }
    let mut books = Vec::new();
    for c in clients {
        if let Ok(b) = c.await {
            books.push(b);
        }
    }
    report.elapsed = started.elapsed();
    if let Ok((served, refused)) = thief.await {
        report.unpaid_served = served;
        report.unpaid_refused = refused;
    }
    stop.store(true, Ordering::Relaxed);
    for b in background {
        let _ = b.await;
    }
    report.drips_cut = counters[0].load(Ordering::Relaxed);
    report.flood_ok = counters[1].load(Ordering::Relaxed);
    report.flood_refused = counters[2].load(Ordering::Relaxed);

    // Every client delivers its newest voucher, then the books are compared.
    let _ = stack.host.wait_ready(Duration::from_secs(60)).await;
    for (i, b) in books.iter().enumerate() {
        report.requests += b.served;
        for (k, n) in &b.errors {
            report.errors += n;
            *report.errors_by_kind.entry(k.clone()).or_insert(0) += n;
        }
        let id = channel_id(i);
        let mine = b.payer.state();
        let mut status = stack.client.channel_status(id).await.ok();
        if status.is_some_and(|(_, paid, _)| paid < mine.sent) {
            if let Ok(v) = b.payer.resign() {
                let _ = stack.client.pay(&v).await;
            }
            status = stack.client.channel_status(id).await.ok();
        }
        match status {
            Some((charged, paid, _)) => {
                if paid != mine.sent {
                    report.lost_vouchers += 1;
                }
                if charged > b.receipts {
                    report.double_charges += 1;
                }
                if charged < b.receipts {
                    report.undercharges += 1;
                }
            }
            None => report.lost_vouchers += 1,
        }
    }
    stack.shutdown().await;
    report
}
