//! The worker VM's figures: boot-to-ready time (QEMU start to the enclave
//! inside answering), and the confidential end-to-end latency through the
//! VM next to the process backend's, measured in the same run on the same
//! request.
//!
//! The VM runs under KVM when KVM runs its firmware here, else under TCG
//! (`KOKON_BENCH_VM_ACCEL=kvm|tcg` forces one; the figures name it): the
//! machines kokon is benchmarked on here have a nested KVM that cannot run
//! OVMF (see tests/tests/vm.rs), so their TCG figures say what emulation
//! costs, not what a TDX or SNP guest costs.

use std::time::{Duration, Instant};

use kokon_client::Client;
use kokon_policies::Policy;
use kokon_tests::vm::{build_image, measured_policy, spawn_host};
use kokon_tests::{magika_request, Env};

use super::{ms, percentile};

/// Sequential inferences timed through the VM (few: under TCG each takes
/// seconds).
const VM_SAMPLES: usize = 20;
const VM_WARMUP: usize = 2;

/// Boots the worker VM from a freshly built image, times its boot and
/// `VM_SAMPLES` inferences of `row`, and prints them beside `process_p50`.
pub async fn run(env: &Env, row: &[i32], process_p50: Duration) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let image = data.path().join("image");
    build_image(env, data.path(), &image, 0, &[])?;
    let policy_text = measured_policy(env, data.path(), &image)?;
    let accel = kokon_tests::vm::accel("KOKON_BENCH_VM_ACCEL", &image);
    let port = kokon_tests::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = data.path().join("host.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut host = spawn_host(env, data.path(), &image, port, Some(&accel), log)?;
    let deadline = started + Duration::from_secs(600);
    while kokon_tests::try_http_get(&base, "/healthz")
        .await
        .map(|r| r.0)
        != Some(200)
    {
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = host.try_wait()? {
            anyhow::bail!("the VM's host exited ({status}):\n{}", log());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the VM did not come up in 600 s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let boot = started.elapsed();
    let policy = Policy::from_toml(&policy_text, &env.local_references(data.path()))?;
    let client = Client::new(&base);
    let enclave = client.attest(&policy).await?;
    let request = magika_request(&[row.to_vec()]);
    let mut times = Vec::with_capacity(VM_SAMPLES);
    for i in 0..VM_SAMPLES + VM_WARMUP {
        let t = Instant::now();
        client.infer(&enclave, &request).await?;
        if i >= VM_WARMUP {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let vm_p50 = percentile(&times, 0.5);
    println!(
        "worker VM ({accel}, QEMU, the image's vCPUs and memory; development VM, sim evidence)"
    );
    println!(
        "  boot to ready         {:7.2} s    (QEMU start, OVMF, kernel, init, enclave up)",
        boot.as_secs_f64()
    );
    println!(
        "  confidential e2e      p50 {:7.3} ms   p99 {:7.3} ms   ({VM_SAMPLES} sequential)",
        ms(vm_p50),
        ms(percentile(&times, 0.99))
    );
    println!(
        "  process backend       p50 {:7.3} ms   (the same request, this run)",
        ms(process_p50)
    );
    println!(
        "vm_vs_process_p50_ratio={:.3}",
        vm_p50.as_secs_f64() / process_p50.as_secs_f64()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id().unwrap_or(0) as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let _ = tokio::time::timeout(Duration::from_secs(60), host.wait()).await;
    Ok(())
}
