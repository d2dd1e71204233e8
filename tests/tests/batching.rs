#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Dynamic batching in the enclave: concurrent KServe requests are merged
//! into one ONNX Runtime run (`--batch-max-rows`, `--batch-delay-us`), each
//! gets the scores it gets alone and is billed its own rows, no merged run
//! exceeds the row bound, a bad request fails alone, and the settings are in
//! the attested serving configuration.

use kokon_tests::{magika_request, Env, Options, Stack};

const MAX_ROWS: u64 = 4;
const DELAY_US: u64 = 200_000;

/// A metric's value in the host's `/metrics` (which carries the enclave's).
async fn sample(stack: &Stack, name: &str, labels: &[&str]) -> f64 {
    let (_, metrics) = kokon_tests::http_get(&stack.base, "/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} {labels:?} missing from\n{metrics}"))
}

/// Runs, requests, runs of at most `MAX_ROWS` rows, and rows, so far.
async fn counts(stack: &Stack) -> [f64; 4] {
    let run = ["model=\"magika\"", "call=\"run\""];
    let le = format!("le=\"{MAX_ROWS}.0\"");
    [
        sample(stack, "kokon_enclave_run_requests_count", &run[..1]).await,
        sample(stack, "kokon_enclave_run_requests_sum", &run[..1]).await,
        sample(
            stack,
            "kokon_enclave_batch_size_bucket",
            &[run[0], run[1], le.as_str()],
        )
        .await,
        sample(stack, "kokon_enclave_batch_size_sum", &run).await,
    ]
}

fn rows(env: &Env, n: usize, seed: usize) -> Vec<Vec<i32>> {
    (0..n)
        .map(|i| {
            let text = format!(
                "{} line {}\n",
                "fn main() { println!(\"kokon\"); }",
                seed * 100 + i
            )
            .repeat(20 + seed + i);
            env.feature_row(text.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_merged_bounded_and_answered_as_alone() {
    let stack = Stack::start(Options {
        enclave_args: [
            "--sessions",
            "1",
            "--batch-max-rows",
            &MAX_ROWS.to_string(),
            "--batch-delay-us",
            &DELAY_US.to_string(),
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    })
    .await;
    let enclave = std::sync::Arc::new(stack.attest().await);

    // The batch settings are in the attested serving configuration.
    let config = enclave.bundle.serving_config.clone().unwrap();
    assert_eq!(
        (config.batch_max_rows, config.batch_delay_us),
        (MAX_ROWS, DELAY_US)
    );
    assert_eq!(config.digest(), enclave.evidence.claims.config_digest);

    // Twelve requests of 1 or 2 rows and one of 6 rows (more than a merged
    // run holds: it runs alone), each first alone, one after another.
    let mut requests: Vec<Vec<Vec<i32>>> =
        (0..12).map(|i| rows(&stack.env, 1 + i % 2, i)).collect();
    requests.push(rows(&stack.env, 6, 99));
    let mut alone = Vec::new();
    for r in &requests {
        let (response, _) = stack
            .client
            .infer(&enclave, &magika_request(r))
            .await
            .unwrap();
        alone.push(response.outputs[0].f32_data().unwrap());
    }
    let before = counts(&stack).await;
    assert_eq!(
        before[0],
        requests.len() as f64,
        "each ran alone: {before:?}"
    );

    // Now all at once, with bad requests (rows of the wrong width) among them.
    let mut tasks = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let (client, to, request) = (stack.client.clone(), enclave.clone(), magika_request(r));
        tasks.push(tokio::spawn(async move {
            (i, client.infer(&to, &request).await)
        }));
        if i % 4 == 0 {
            let (client, to) = (stack.client.clone(), enclave.clone());
            tasks.push(tokio::spawn(async move {
                let bad = magika_request(&[vec![7; 100]]);
                (usize::MAX, client.infer(&to, &bad).await)
            }));
        }
    }
    let mut bad = 0;
    for task in tasks {
        match task.await.unwrap() {
            (usize::MAX, answer) => {
                let e = answer.unwrap_err().to_string();
                assert!(e.contains("[1, 100]") && e.contains("2048"), "{e}");
                bad += 1;
            }
            (i, answer) => {
                let (response, receipt) = answer.unwrap();
                // Each request is billed its own rows.
                assert_eq!(receipt.receipt.units, requests[i].len() as u64);
                let scores = response.outputs[0].f32_data().unwrap();
                assert_eq!(response.outputs[0].shape, [requests[i].len() as i64, 214]);
                assert_eq!(scores.len(), alone[i].len());
                // Batched or alone, each row gets the same scores, up to
                // rounding: ONNX Runtime's kernels for one row and for many
                // sum in different orders (about 1e-5 apart on a CPU). Each
                // row's best label is the same.
                let worst = scores
                    .iter()
                    .zip(&alone[i])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-4, "request {i}: scores differ by {worst}");
                let best = |s: &[f32]| -> Vec<usize> {
                    s.chunks(214)
                        .map(|row| {
                            (0..row.len())
                                .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                                .unwrap()
                        })
                        .collect()
                };
                assert_eq!(best(&scores), best(&alone[i]), "request {i}");
            }
        }
    }
    assert_eq!(bad, 4);

    let after = counts(&stack).await;
    let [runs, merged, small, rows] = std::array::from_fn(|k| after[k] - before[k]);
    let all_rows: usize = requests.iter().map(Vec::len).sum();
    assert_eq!(merged, requests.len() as f64, "{before:?} {after:?}");
    assert_eq!(rows, all_rows as f64);
    // Merged: fewer runs than requests...
    assert!(runs < merged, "{runs} runs for {merged} requests");
    // ...and every run within the bound but the 6-row request's, alone.
    assert_eq!(small, runs - 1.0, "{before:?} {after:?}");
    stack.shutdown().await;
}

#[test]
fn a_row_bound_beyond_the_request_limit_is_refused_at_start() {
    let env = Env::load();
    let data = tempfile::tempdir().unwrap();
    for (max_rows, max_batch) in [("65", "64"), ("0", "64"), ("9", "8")] {
        let out = std::process::Command::new(&env.enclave_bin)
            .args(["--socket", &data.path().join("s").display().to_string()])
            .args(["--model", &env.model.display().to_string()])
            .args(["--ort-lib", &env.ort_lib.display().to_string()])
            .args(["--data-dir", &data.path().display().to_string()])
            .args(["--max-batch", max_batch, "--batch-max-rows", max_rows])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "--batch-max-rows {max_rows} is out of range: expected 1 to --max-batch ({max_batch})"
            )),
            "{stderr}"
        );
    }
}

/// One client sending its requests back to back, each once it has the
/// last answer, never waits for the batch delay: its requests come less
/// than the delay apart, but with nothing else queued or running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_client_sending_back_to_back_never_waits_for_the_delay() {
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    let model = kokon_tests::trivial_model(&env, dir.path());
    let policy = kokon_tests::dev_policy_allowing(kokon_tests::TRIVIAL_MODEL, &model);
    let stack = Stack::start(Options {
        model: Some((model, kokon_tests::TRIVIAL_MODEL.into())),
        // A second's delay: twenty requests held for it (every other one,
        // as the batcher before this test did) take ten seconds or more.
        enclave_args: vec!["--batch-delay-us".into(), "1000000".into()],
        ..Options::default()
    })
    .await;
    let enclave = stack.client.attest(&stack.policy(&policy)).await.unwrap();
    let started = std::time::Instant::now();
    for k in 0..20 {
        let row: Vec<i32> = (0..2048).map(|i| (i * 7 + k) % 1000 - 500).collect();
        let request = kokon_tests::trivial_request(&row);
        let (response, _) = stack.client.infer(&enclave, &request).await.unwrap();
        let max = response.outputs[0].values::<i32>().unwrap();
        assert_eq!(max, [*row.iter().max().unwrap()]);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(6),
        "twenty back-to-back requests took {elapsed:?}: held for the batch delay"
    );
    stack.shutdown().await;
}
