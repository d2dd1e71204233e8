//! `kokon demo`: the whole story on one machine (sim TEE, CPU, the local TON
//! sandbox of `demo/ton-sandbox`).

mod payment;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use kokon_client::magika::Prepared;
use kokon_client::{Client, VerifiedEnclave};
use kokon_wire::openai::{ChatCompletionRequest, ChatMessage};

use crate::args::HostArgs;
use crate::infer::{classify, load_magika};
use crate::{attest, host, local};

/// The development policy for worker VMs, filled in with an image's measurements.
const DEV_VM_POLICY: &str = "policies/dev-vm.toml";
const SAMPLE_NAME: &str = "built-in sample (a Python script)";
const QUESTION: &str = "In one sentence, what is a confidential computing enclave?";
const SAMPLE: &[u8] = b"#!/usr/bin/env python3\n\"\"\"Count words in the files given on the command line.\"\"\"\nimport sys\nfrom collections import Counter\n\n\ndef main(paths):\n    counts = Counter()\n    for path in paths:\n        with open(path, encoding=\"utf-8\") as f:\n            for line in f:\n                counts.update(line.split())\n    for word, n in counts.most_common(10):\n        print(f\"{n:6d} {word}\")\n\n\nif __name__ == \"__main__\":\n    main(sys.argv[1:])\n";

/// `kokon demo`: a payment channel on the local TON sandbox, a host with a
/// sim enclave, attestation, private classifications paid by vouchers, and
/// the settlement on chain.
pub async fn run(
    policy_path: &Path,
    files: &[PathBuf],
    vm: Option<&Path>,
    accel: Option<&str>,
) -> anyhow::Result<()> {
    if !policy_path.is_file() {
        anyhow::bail!(
            "kokon demo runs in the kokon checkout (it reads {} and the files it classifies from there): cd into it, or run `just demo`",
            policy_path.display()
        );
    }
    let step = |n: u32, title: &str| println!("\n[{n}] {title}");
    println!("kokon demo: private inference end to end (sim TEE, CPU), paid over a TON payment channel (local sandbox)");
    step(
        1,
        "client opens a payment channel to the host on a local TON sandbox (the real TVM)",
    );
    let mut channel = payment::DemoChannel::open(&local::env_path("KOKON_TON_BRIDGE")?)?;
    println!(
        "  channel {} at {} holds {} nanotons of the client's; price {} nanotons per inference, {} / {} per prompt / completion token",
        channel.params.channel_id,
        channel.address,
        payment::DEMO_DEPOSIT,
        payment::DEMO_PRICE,
        payment::DEMO_PROMPT_TOKEN_PRICE,
        payment::DEMO_COMPLETION_TOKEN_PRICE
    );
    let dir = local::data_dir()
        .join("demo")
        .join(std::process::id().to_string());
    let channels = channel.channels_file(&dir)?;
    // In the worker VM, the policy pins the image's measurements.
    let vm_policy;
    let policy_path = match vm {
        Some(image) => {
            vm_policy = dir.join("dev-vm.toml");
            std::fs::write(
                &vm_policy,
                crate::vm::measured_policy(image, Path::new(DEV_VM_POLICY))?,
            )
            .with_context(|| format!("writing {}", vm_policy.display()))?;
            println!("  the development VM policy pins the image's MRTD, RTMR1 and RTMR2 (kokon audit measure --tee tdx)");
            vm_policy.as_path()
        }
        None => policy_path,
    };
    step(
        2,
        if vm.is_some() {
            "host shim boots the worker VM (QEMU) and the enclave inside it"
        } else {
            "host shim starts and launches the enclave"
        },
    );
    let t = Instant::now();
    let mut args = vec![
        "host".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--price-nanoton-per-unit".into(),
        payment::DEMO_PRICE.to_string(),
        "--llm".into(),
        local::env_path("KOKON_LLM_DIR")?.display().to_string(),
        "--price-nanoton-per-prompt-token".into(),
        payment::DEMO_PROMPT_TOKEN_PRICE.to_string(),
        "--price-nanoton-per-completion-token".into(),
        payment::DEMO_COMPLETION_TOKEN_PRICE.to_string(),
        "--channels".into(),
        channels.display().to_string(),
    ];
    if let Some(image) = vm {
        args.extend(["--backend", "qemu", "--tee", "none", "--image"].map(String::from));
        args.push(image.display().to_string());
        args.extend(
            accel
                .map(|a| ["--accel".to_string(), a.to_string()])
                .into_iter()
                .flatten(),
        );
    }
    let config = host::config(&HostArgs::parse_from(args))?;
    let patience = config.enclave.startup_timeout();
    let host = kokon_host::start(config).await?;
    host.wait_ready(patience).await?;
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
    let client = local::client(base)?;
    let policy = local::load_policy(policy_path)?;
    step(
        3,
        &format!(
            "client fetches evidence with a fresh nonce and verifies it against {}",
            policy_path.display()
        ),
    );
    let t = Instant::now();
    let (enclave, report) = attest::conclude(
        client.examine(&policy).await,
        &policy,
        kokon_client::unix_now(),
        None,
    )?;
    let enclave = enclave.with_channel(channel.params.channel_id, channel.client_key());
    print!("{}", report.text());
    println!("  verified in {:.1?}", t.elapsed());
    let magika = load_magika(&client, &enclave).await?;
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
                    "  {} bytes of KServe request (binary tensors), end to end in {:.1?}",
                    c.sealed_bytes, c.elapsed
                );
            }
        }
    }
    if enclave.evidence.claims.text_model.is_none() {
        println!("\n  (this enclave serves no text model: the demo's worker VM image carries magika only; `kokon image build --llm DIR` puts a text model on an image's dm-verity data disk)");
        return Ok(n);
    }
    n += 1;
    step(n, "ask the private text model a question, and pay for it");
    chat(&client, &enclave, channel).await?;
    Ok(n)
}

/// One private chat completion, streamed as the model writes it, its
/// per-token receipt and its payment.
async fn chat(
    client: &Client,
    enclave: &VerifiedEnclave,
    channel: &mut payment::DemoChannel,
) -> anyhow::Result<()> {
    let Some(text) = &enclave.evidence.claims.text_model else {
        anyhow::bail!("the attested enclave serves no text model");
    };
    let request = ChatCompletionRequest {
        temperature: Some(0.0),
        max_tokens: Some(40),
        ..ChatCompletionRequest::new(&text.name, vec![ChatMessage::text_from("user", QUESTION)])
    };
    println!("  you: {QUESTION}");
    print!("  {}: ", text.name);
    let t = Instant::now();
    let mut stream = client.stream_chat(enclave, &request).await?;
    let mut first_token = None;
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await? {
        let piece = chunk
            .choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
            .unwrap_or_default();
        if !piece.is_empty() {
            first_token.get_or_insert_with(|| t.elapsed());
            std::io::Write::write_all(&mut out, piece.as_bytes())?;
            std::io::Write::flush(&mut out)?;
        }
    }
    println!();
    let elapsed = t.elapsed();
    let r = stream
        .receipt()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the stream ended without a receipt"))?;
    println!(
        "  receipt verified: seq {} · {} prompt tokens × {} + {} completion tokens × {} = {} nanotons, model sha256:{}…",
        r.receipt.sequence,
        r.receipt.units,
        r.receipt.price_per_unit,
        r.receipt.output_units,
        r.receipt.price_per_output_unit,
        r.receipt.amount,
        &hex::encode(r.receipt.model_digest)[..16],
    );
    let paid = channel.pay(client, &r).await?;
    println!(
        "  voucher seqno {} sent to the host, which now counts {paid} nanotons paid; streamed through the host, first token after {:.0?}, all in {elapsed:.1?}",
        channel.payer.state().seqno,
        first_token.unwrap_or_default()
    );
    Ok(())
}
