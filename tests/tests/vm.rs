#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The worker VM end to end: `kokon image build` assembles the real guest
//! image from the pinned Debian packages, `kokon audit measure` recomputes
//! its TDX measurements into a development policy, and `kokon host
//! --backend qemu --tee none` boots it under QEMU: KVM when KVM runs the
//! image's firmware here, TCG otherwise, as `kokon host` chooses
//! (`KOKON_TEST_VM_ACCEL=kvm|tcg` forces one). The nested KVM of the
//! machines CI runs on opens /dev/kvm but cannot run OVMF ("KVM internal
//! error ... emulation failure" at its first x87 instruction), so there the
//! test runs under TCG. The client attests it with that policy (so the
//! development VM's evidence carries the image's real measurements), a
//! different image's policy rejects it, private inferences run through it,
//! among them a chat completion from the text model the image carries on
//! its dm-verity data disk,
//! the VM is killed while requests are in flight and the host boots a new
//! one that serves the next request, SIGTERM powers it off, a SIGKILLed
//! host takes its VM down with it, and a marker the client sent appears in
//! neither the host's output nor the guest's console (which the host's
//! output carries).

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kokon_client::magika::Prepared;
use kokon_client::{Client, ClientError, VerifiedEnclave};
use kokon_policies::Policy;
use kokon_tests::vm::{build_image, measured_policy, spawn_host};
use kokon_tests::{magika_request, Env};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// QEMU processes whose parent is `host`.
fn qemu_children(host: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            comm.contains("qemu-system")
                && rest.split_whitespace().nth(1) == Some(&host.to_string())
        })
        .collect()
}

/// Whether `pid` runs (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(") ")?;
            rest.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn row(env: &Env, content: &[u8]) -> Vec<i32> {
    match env.magika().prepare(content) {
        Prepared::Features(row) => row,
        Prepared::Decided(c) => panic!("sample too small: {c:?}"),
    }
}

async fn wait_healthy(base: &str, log: &Path, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while kokon_tests::try_http_get(base, "/healthz")
        .await
        .map(|r| r.0)
        != Some(200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the VM's enclave did not come up within {within:?}; host log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const PYTHON: &[u8] = b"import os\nimport sys\n\ndef main():\n    for name in sorted(os.listdir(sys.argv[1])):\n        print(name)\n\nif __name__ == '__main__':\n    main()\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_vm_boots_attests_serves_and_survives_a_kill() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let image = data.path().join("image");
    let other_image = data.path().join("other-image");
    // The text model goes on the data disk; it needs more guest memory.
    let llm = [
        "--llm",
        env.llm_dir.to_str().unwrap(),
        "--memory-mib",
        "3072",
        "--price-nanoton-per-prompt-token",
        "2",
        "--price-nanoton-per-completion-token",
        "3",
    ];
    build_image(&env, data.path(), &image, 0, &llm).unwrap();
    // The same build with another price: another initrd, other measurements.
    build_image(&env, data.path(), &other_image, 7, &[]).unwrap();
    let policy_text = measured_policy(&env, data.path(), &image).unwrap();
    let other_policy_text = measured_policy(&env, data.path(), &other_image).unwrap();
    assert_ne!(policy_text, other_policy_text);

    let log_path = data.path().join("host.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = kokon_tests::free_port();
    // The host chooses KVM or TCG itself, unless told.
    let accel = std::env::var("KOKON_TEST_VM_ACCEL").ok();
    let mut host = spawn_host(&env, data.path(), &image, port, accel.as_deref(), log).unwrap();
    let host_pid = host.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &log_path, Duration::from_secs(600)).await;
    if accel.is_none() {
        let text = std::fs::read_to_string(&log_path).unwrap();
        let chose = ["using KVM", "using TCG"].map(|c| text.contains(c));
        assert!(
            chose.iter().filter(|c| **c).count() == 1,
            "the host's choice of KVM or TCG is not in its log:\n{text}"
        );
        eprintln!("the VM runs under {}", if chose[0] { "KVM" } else { "TCG" });
    }

    // The sim root the host handed the guest is this data directory's.
    let locals = env.local_references(data.path());
    let policy = Policy::from_toml(&policy_text, &locals).unwrap();
    let other_policy = Policy::from_toml(&other_policy_text, &locals).unwrap();
    let client = Client::new(&base);
    let enclave: Arc<VerifiedEnclave> = Arc::new(client.attest(&policy).await.unwrap());
    assert_eq!(enclave.bundle.backend, "sim");
    match client.attest(&other_policy).await {
        Err(ClientError::Policy(report)) => {
            let text = report.to_string();
            assert!(text.contains("RTMR2: expected one of"), "{text}");
        }
        other => panic!(
            "another image's policy accepted this VM: {:?}",
            other.map(|_| ())
        ),
    }

    // Private inferences, one carrying a marker in its ID (echoed, sealed)
    // and one whose (sealed) error names it.
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).unwrap();
    let marker = format!("KOKON-VM-CANARY-{}", hex::encode(raw));
    let mut request = magika_request(&[row(&env, PYTHON)]);
    request.id = Some(marker.clone());
    let (response, receipt) = client.infer(&enclave, &request).await.unwrap();
    assert_eq!(response.id.as_deref(), Some(marker.as_str()));
    assert_eq!(receipt.receipt.units, 1);
    // The text model, read by the guest from the data disk through dm-verity.
    let text = enclave.evidence.claims.text_model.clone().unwrap();
    assert_eq!(text.name, "smollm2-135m-instruct");
    let (answer, receipt) = client
        .chat_completion(
            &enclave,
            &kokon_tests::chat_request("What is the capital of France?", 8),
        )
        .await
        .unwrap();
    assert!(
        answer.choices[0]
            .message
            .content
            .starts_with("The capital of France"),
        "{:?}",
        answer.choices[0].message.content
    );
    let r = &receipt.receipt;
    assert_eq!(r.model_digest, text.digest);
    assert_eq!((r.price_per_unit, r.price_per_output_unit), (2, 3));
    assert_eq!(
        (r.units, r.output_units),
        (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    );
    let mut bad = magika_request(&[row(&env, PYTHON)]);
    bad.inputs[0].name = marker.clone();
    let err = client.infer(&enclave, &bad).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Enclave { status: 400, message } if message.contains(&marker)),
        "{err}"
    );

    // A request near the host's 8 MiB body limit crosses the vsock link
    // whole, host to guest (the AEAD tag covers every byte, so a lost or
    // reordered piece would fail to open, not name the input): about 6 MiB
    // of rows under an input name the model lacks, answered with a sealed
    // 400 naming it.
    let one = row(&env, PYTHON);
    let size = |request: &kokon_wire::kserve::InferRequest| request.encode().unwrap().body.len();
    let per_row = size(&magika_request(&[one.clone(), one.clone()]))
        - size(&magika_request(std::slice::from_ref(&one)));
    let rows = (6 << 20) / per_row;
    let mut big = magika_request(&vec![one; rows]);
    big.inputs[0].name = "no-such-input-in-a-big-request".into();
    let size = size(&big);
    assert!(size > 5 << 20, "{size} bytes");
    let err = client.infer(&enclave, &big).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Enclave { status: 400, message }
            if message.contains("no-such-input-in-a-big-request")),
        "a {size}-byte request: {err}"
    );

    // Kill the VM while clients keep requests in flight.
    let qemu = qemu_children(host_pid);
    assert_eq!(qemu.len(), 1, "one QEMU under the host: {qemu:?}");
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, enclave, failed, stop) = (
            client.clone(),
            enclave.clone(),
            failed.clone(),
            stop.clone(),
        );
        let request = magika_request(&[row(&env, PYTHON)]);
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if client.infer(&enclave, &request).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(
        failed.load(Ordering::Relaxed) >= 1,
        "no request was in flight when the VM died"
    );
    // The host boots a new VM: a new enclave, new keys, the same measurements.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let again = loop {
        if let Ok(enclave) = client.attest(&policy).await {
            break enclave;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new VM; host log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_ne!(
        again.bundle.claims.ohttp_key_config, enclave.bundle.claims.ohttp_key_config,
        "the new VM's enclave has new keys"
    );
    let new_qemu = qemu_children(host_pid);
    assert!(
        new_qemu.len() == 1 && new_qemu[0] != qemu[0],
        "{new_qemu:?}"
    );
    client
        .infer(&again, &magika_request(&[row(&env, PYTHON)]))
        .await
        .unwrap();

    // SIGTERM: the host powers the VM off and exits.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), host.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "host exit status {status:?}");
    assert!(qemu_children(host_pid).is_empty());

    // The VM dies with its host, however the host dies: SIGKILL a second host.
    let second_log = std::fs::File::create(data.path().join("second.log")).unwrap();
    let second_port = kokon_tests::free_port();
    let mut second = spawn_host(
        &env,
        data.path(),
        &image,
        second_port,
        accel.as_deref(),
        second_log,
    )
    .unwrap();
    let second_pid = second.id().unwrap();
    wait_healthy(
        &format!("http://127.0.0.1:{second_port}"),
        &data.path().join("second.log"),
        Duration::from_secs(600),
    )
    .await;
    let orphan = qemu_children(second_pid);
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    second.kill().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive(orphan[0]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "QEMU {} outlived its SIGKILLed host",
            orphan[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&logs);
    // The guest's console reached the host's log: the kernel's and the init's lines.
    assert!(
        text.contains("Linux version"),
        "no guest console in:\n{text}"
    );
    assert!(
        text.contains("kokon-init: evidence: sim with the host's launch measurements"),
        "{text}"
    );
    assert!(
        text.contains("powering off"),
        "no clean power-off in:\n{text}"
    );
    assert!(
        !contains(&logs, marker.as_bytes()),
        "marker in the host's output"
    );
    assert!(
        !contains(&logs, &marker.as_bytes()[16..]),
        "marker in the host's output"
    );
}

/// `kokon audit measure --tee snp` recomputes an image's SEV-SNP launch
/// digest as PyPI `sev-snp-measure` does from the same files: the image's
/// `OVMF.amdsev.fd` (Debian's AmdSevX64 build, with its kernel-hashes
/// table), kernel, initrd and command line, for several VM shapes. An image
/// whose SNP firmware reserves no hashes table is refused, by the auditor's
/// tool and by the host, naming the firmware it needs.
#[test]
fn an_images_snp_measurement_equals_sev_snp_measure() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let image = data.path().join("image");
    build_image(&env, data.path(), &image, 0, &[]).unwrap();
    let manifest = std::fs::read_to_string(image.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("/usr/share/ovmf/OVMF.amdsev.fd of the pinned ovmf-amdsev package"),
        "{manifest}"
    );
    let image_arg = image.display().to_string();
    for (vcpus, vcpu_type) in [
        ("1", "EPYC-v4"),
        ("2", "EPYC-v4"),
        ("4", "EPYC-Milan"),
        ("8", "EPYC-Genoa"),
    ] {
        let json = kokon_tests::vm::kokon(
            &env,
            data.path(),
            &[
                "audit",
                "measure",
                "--image",
                &image_arg,
                "--tee",
                "snp",
                "--vcpus",
                vcpus,
                "--vcpu-type",
                vcpu_type,
                "--json",
            ],
        )
        .unwrap();
        let ours: serde_json::Value = serde_json::from_str(&json).unwrap();
        let ours = ours["registers"][0]["value"].as_str().unwrap().to_string();
        let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
        let tool = kokon_tests::repo_root().join(".cache/venv/bin/sev-snp-measure");
        let out = std::process::Command::new(&tool)
            .args(["--mode", "snp", "--vcpus", vcpus, "--vcpu-type", vcpu_type])
            .arg("--ovmf")
            .arg(image.join("OVMF.amdsev.fd"))
            .arg("--kernel")
            .arg(image.join("vmlinuz"))
            .arg("--initrd")
            .arg(image.join("initrd.img"))
            .args([
                "--append",
                &cmdline,
                "--guest-features",
                "0x1",
                "--output-format",
                "hex",
            ])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (just setup installs it)", tool.display()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            ours,
            "{vcpus} x {vcpu_type}"
        );
    }
    // The generic OVMF (OvmfPkgX64) as the SNP firmware: measured direct
    // boot is impossible, and said so.
    let generic = image.join("OVMF.fd").display().to_string();
    let debian = data.path().join("generic-firmware-image");
    build_image(&env, data.path(), &debian, 0, &["--snp-firmware", &generic]).unwrap();
    let manifest = std::fs::read_to_string(debian.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("given to the build (--snp-firmware)"),
        "{manifest}"
    );
    let e = kokon_tests::vm::kokon(
        &env,
        data.path(),
        &[
            "audit",
            "measure",
            "--image",
            &debian.display().to_string(),
            "--tee",
            "snp",
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("AmdSevX64"), "{e}");
    // The error `kokon host --backend qemu --tee TEE --image IMAGE EXTRA...`
    // stops with, before QEMU.
    let host_refusal = |tee: &str, image: &Path, extra: &[&str]| {
        let image = image.display().to_string();
        let mut args = vec!["host", "--backend", "qemu", "--tee", tee, "--image", &image];
        args.extend_from_slice(extra);
        kokon_tests::vm::kokon(&env, data.path(), &args)
            .unwrap_err()
            .to_string()
    };
    // ... and the host refuses to launch it as an SEV-SNP guest, before QEMU.
    let e = host_refusal("snp", &debian, &[]);
    assert!(
        e.contains("cannot launch as an SEV-SNP guest") && e.contains("AmdSevX64"),
        "{e}"
    );
    // A GPU for an image without NVIDIA's driver is refused, before QEMU.
    let e = host_refusal("none", &image, &["--gpu", "0000:3b:00.0"]);
    assert!(
        e.contains("has no NVIDIA driver") && e.contains("kokon image build --gpu"),
        "{e}"
    );
}

/// A missing image is a clear error naming the fix.
#[test]
fn a_missing_image_says_how_to_build_one() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&env.kokon_bin)
        .args([
            "host",
            "--backend",
            "qemu",
            "--tee",
            "none",
            "--image",
            data.path().join("nowhere").to_str().unwrap(),
        ])
        .env("KOKON_DATA_DIR", data.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(stderr.contains("kokon image build"), "{stderr}");
}

/// `kokon audit measure` checks an image's data disk against the measured
/// command line, block by block, and lists its files; a disk with one byte
/// altered is refused, naming the block.
#[test]
fn the_auditor_checks_the_data_disk_against_the_measured_command_line() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    // A text model directory as far as the image builder looks.
    let llm = data.path().join("llm");
    std::fs::create_dir_all(&llm).unwrap();
    std::fs::write(llm.join("kokon-llm.json"), b"{}").unwrap();
    let weights: Vec<u8> = (0..100_000u32).flat_map(u32::to_le_bytes).collect();
    std::fs::write(llm.join("model.onnx"), &weights).unwrap();
    let image = data.path().join("image");
    build_image(
        &env,
        data.path(),
        &image,
        0,
        &["--llm", llm.to_str().unwrap()],
    )
    .unwrap();
    let image_arg = image.display().to_string();
    let measure = |json: bool| {
        let mut args = vec!["audit", "measure", "--image", &image_arg, "--tee", "tdx"];
        if json {
            args.push("--json");
        }
        kokon_tests::vm::kokon(&env, data.path(), &args)
    };
    let out: serde_json::Value = serde_json::from_str(&measure(true).unwrap()).unwrap();
    let disk = &out["data_disk"];
    assert_eq!(disk["checked"], true, "{out}");
    let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
    assert!(
        cmdline.contains("kokon.data=") && cmdline.contains(disk["root_hash"].as_str().unwrap()),
        "{cmdline}"
    );
    let files: Vec<&str> = disk["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["/data/llm/kokon-llm.json", "/data/llm/model.onnx"]);
    assert!(measure(false).unwrap().contains("it matches"));

    let disk_file = image.join("data.img");
    let mut bytes = std::fs::read(&disk_file).unwrap();
    let at = bytes
        .windows(8)
        .position(|w| w == [0x50, 0xc3, 0, 0, 0x51, 0xc3, 0, 0])
        .expect("the words 50000, 50001 are on the disk");
    bytes[at] ^= 1;
    std::fs::write(&disk_file, &bytes).unwrap();
    let err = measure(false).unwrap_err().to_string();
    assert!(
        err.contains("does not match the command line's dm-verity parameters")
            && err.contains("data block"),
        "{err}"
    );
}
