#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! End to end on loopback: host + enclave + client, through the real code paths.

use std::time::Duration;

use kokon_client::magika::Prepared;
use kokon_client::ClientError;
use kokon_host::Limits;
use kokon_tests::{magika_request, magika_request_json, Options, Stack, PRODUCTION_POLICY};
use kokon_wire::kserve::Encoding;

fn row(stack: &Stack, content: &[u8]) -> Vec<i32> {
    match stack.env.magika().prepare(content) {
        Prepared::Features(row) => row,
        Prepared::Decided(c) => panic!("sample too small for the model: {c:?}"),
    }
}

const PYTHON: &[u8] = b"import os\nimport sys\n\ndef main():\n    for name in sorted(os.listdir(sys.argv[1])):\n        print(name)\n\nif __name__ == '__main__':\n    main()\n";

#[tokio::test(flavor = "multi_thread")]
async fn one_private_inference_end_to_end() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    assert_eq!(enclave.bundle.backend, "sim");
    assert_eq!(
        enclave.evidence.td().unwrap().mr_td,
        stack.env.enclave_mrtd(),
        "MRTD is the measurement of the enclave binary"
    );
    // The bundle shows the serving configuration its config_digest commits
    // to (the client checked the digest), Magika's measured files included.
    let config = enclave.evidence.serving_config.as_ref().unwrap();
    assert_eq!(config.digest(), enclave.evidence.claims.config_digest);
    assert_eq!(
        (config.model_name.as_str(), config.device.as_str()),
        ("magika", "cpu")
    );
    assert!(
        config
            .model_parameter_files
            .iter()
            .any(|f| f.name.starts_with("magika.") && f.sha256.len() == 64),
        "{config:?}"
    );
    let (response, receipt) = stack
        .client
        .infer(&enclave, &magika_request(&[row(&stack, PYTHON)]))
        .await
        .unwrap();
    let scores = response.outputs[0].f32_data().unwrap();
    assert_eq!(response.outputs[0].shape, vec![1, 214]);
    assert_eq!(
        response.outputs[0].data.encoding(),
        Encoding::Binary,
        "the SDK asks for binary scores"
    );
    let label = stack.env.magika().classify(&scores).unwrap();
    assert_eq!(label.output, "python");
    assert_eq!((receipt.receipt.units, receipt.receipt.sequence), (1, 1));
    // A batch of three is three units, and receipts keep counting.
    let (response, receipt) = stack
        .client
        .infer(
            &enclave,
            &magika_request(&[
                row(&stack, PYTHON),
                row(&stack, PYTHON),
                row(&stack, PYTHON),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(response.outputs[0].shape, vec![3, 214]);
    assert_eq!((receipt.receipt.units, receipt.receipt.sequence), (3, 2));
    // Model metadata is served sealed too, with Magika's processing
    // configuration: a client needs no local package.
    let meta = stack.client.model_metadata(&enclave).await.unwrap();
    assert_eq!(meta.inputs[0].name, "bytes");
    assert_eq!(meta.inputs[0].shape, vec![-1, 2048]);
    assert_eq!(
        kokon_client::magika::Magika::from_metadata(&meta).unwrap(),
        stack.env.magika(),
        "the served configuration is the package's"
    );
    stack.shutdown().await;
}

/// An external KServe client's JSON request (JSON numbers in, JSON numbers
/// asked for) is served as the SDK's binary one is: the same scores, and a
/// receipt for the bytes that client sealed.
#[tokio::test(flavor = "multi_thread")]
async fn a_json_request_is_served_like_a_binary_one() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    let rows = [row(&stack, PYTHON)];
    let binary = magika_request(&rows);
    let json = magika_request_json(&rows);
    assert_eq!(binary.inputs[0].data.encoding(), Encoding::Binary);
    assert_eq!(json.inputs[0].data.encoding(), Encoding::Json);
    let (from_binary, _) = stack.client.infer(&enclave, &binary).await.unwrap();
    let (from_client, _) = stack.client.infer(&enclave, &json).await.unwrap();
    assert_eq!(from_binary.outputs[0].data.encoding(), Encoding::Binary);
    assert_eq!(from_client.outputs[0].data.encoding(), Encoding::Json);
    // Sealed by hand as a JSON body, as a client without the SDK's KServe
    // encoder would.
    let sealed = enclave
        .seal(
            "POST",
            "/v2/models/magika/infer",
            &serde_json::to_vec(&json).unwrap(),
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let answer = stack.client.send(&sealed.bytes).await.unwrap();
    let opened = enclave.open(sealed, &answer).unwrap();
    assert_eq!(opened.receipt.receipt.units, 1);
    let by_hand = opened.infer_response().unwrap();
    assert_eq!(by_hand.outputs[0].data.encoding(), Encoding::Json);
    let scores = from_binary.outputs[0].f32_data().unwrap();
    for other in [&from_client, &by_hand] {
        assert_eq!(other.outputs[0].f32_data().unwrap(), scores);
    }
    let label = stack.env.magika().classify(&scores).unwrap();
    assert_eq!(label.output, "python");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_evidence_byte_is_rejected() {
    let stack = Stack::start(Options::default()).await;
    let nonce = [7u8; 32];
    let policy = stack.dev_policy();
    let bundle = stack.client.fetch_bundle(&nonce).await.unwrap();
    assert!(kokon_client::verify(
        bundle.clone(),
        &policy,
        Some(&nonce),
        kokon_client::unix_now()
    )
    .is_ok());
    for offset in [100, 700, 2000] {
        let mut b = bundle.clone();
        b.evidence.data[offset] ^= 1;
        let err =
            kokon_client::verify(b, &policy, Some(&nonce), kokon_client::unix_now()).unwrap_err();
        assert!(
            matches!(err, ClientError::Evidence(_)) && err.is_rejection(),
            "offset {offset}: {err}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sim_evidence_is_rejected_by_the_production_policy() {
    let stack = Stack::start(Options::default()).await;
    let production = stack.policy(PRODUCTION_POLICY);
    let err = stack.client.attest(&production).await.unwrap_err();
    assert!(err.is_rejection(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("intel-sgx-root") && msg.contains("kokon simulated TEE root"),
        "{msg}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_model_digest_is_rejected() {
    let stack = Stack::start(Options::default()).await;
    let text = kokon_tests::DEV_POLICY.replace(
        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        &"ab".repeat(32),
    );
    let err = stack.client.attest(&stack.policy(&text)).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        err.is_rejection()
            && msg.contains("model")
            && msg.contains(&"ab".repeat(32))
            && msg.contains("fe2d2eb4"),
        "{msg}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_nonce_is_rejected() {
    let stack = Stack::start(Options::default()).await;
    let policy = stack.dev_policy();
    let old = stack.client.fetch_bundle(&[1u8; 32]).await.unwrap();
    // The host replays an earlier bundle in answer to a new nonce.
    let err = kokon_client::verify(
        old.clone(),
        &policy,
        Some(&[2u8; 32]),
        kokon_client::unix_now(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Nonce { .. }) && err.is_rejection(),
        "{err}"
    );
    // And an old bundle is stale under the policy's age limit even offline.
    let err = kokon_client::verify(old, &policy, None, kokon_client::unix_now() + 301).unwrap_err();
    assert!(err.to_string().contains("evidence age"), "{err}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_ciphertext_is_rejected_both_ways() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    let body = serde_json::to_vec(&magika_request_json(&[row(&stack, PYTHON)])).unwrap();
    let mut sealed = enclave
        .seal(
            "POST",
            "/v2/models/magika/infer",
            &body,
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let last = sealed.bytes.len() - 1;
    sealed.bytes[last] ^= 1;
    let err = stack.client.send(&sealed.bytes).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 400, message } if message.contains("cannot open the OHTTP request")),
        "{err}"
    );
    // A response altered on its way back is refused by the client.
    let sealed = enclave
        .seal(
            "POST",
            "/v2/models/magika/infer",
            &body,
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let mut response = stack.client.send(&sealed.bytes).await.unwrap();
    response[40] ^= 1;
    assert!(matches!(
        enclave.open(sealed, &response),
        Err(ClientError::Seal(_))
    ));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_request_is_refused() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    let body = serde_json::to_vec(&magika_request_json(&[row(&stack, PYTHON)])).unwrap();
    let sealed = enclave
        .seal(
            "POST",
            "/v2/models/magika/infer",
            &body,
            1,
            kokon_client::unix_now(),
        )
        .unwrap();
    let first = stack.client.send(&sealed.bytes).await.unwrap();
    let err = stack.client.send(&sealed.bytes).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 400, message } if message.contains("replayed")),
        "{err}"
    );
    // The original answer still opens, and its receipt is the only one issued.
    let opened = enclave.open(sealed, &first).unwrap();
    assert_eq!(opened.receipt.receipt.sequence, 1);
    let (_, next) = stack
        .client
        .infer(&enclave, &magika_request(&[row(&stack, PYTHON)]))
        .await
        .unwrap();
    assert_eq!(
        next.receipt.sequence, 2,
        "the replay was not served or billed"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_gets_413_and_the_enclave_keeps_serving() {
    let stack = Stack::start(Options {
        limits: Some(Limits {
            max_body_bytes: 64 * 1024,
            ..Limits::default()
        }),
        ..Options::default()
    })
    .await;
    let enclave = stack.attest().await;
    let err = stack.client.send(&vec![0u8; 65 * 1024]).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 413, message } if message.contains("65536")),
        "{err}"
    );
    assert!(stack
        .client
        .infer(&enclave, &magika_request(&[row(&stack, PYTHON)]))
        .await
        .is_ok());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_and_wrong_tensors_get_400_and_the_enclave_keeps_serving() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    let opened = stack
        .client
        .request(
            &enclave,
            "POST",
            "/v2/models/magika/infer",
            b"{\"inputs\": [",
            1,
        )
        .await
        .unwrap();
    assert_eq!(opened.status, 400);
    assert!(String::from_utf8_lossy(&opened.body).contains("malformed inference request JSON"));
    assert_eq!(opened.receipt.receipt.units, 0, "errors are not billed");

    let good = row(&stack, PYTHON);
    let signature = "expected inputs [bytes INT32 [-1, 2048]]";
    // JSON numbers, as an external KServe client sends them: the enclave
    // checks them against the model's signature.
    let mut wrong_name = magika_request_json(std::slice::from_ref(&good));
    wrong_name.inputs[0].name = "input".into();
    let mut wrong_shape = magika_request_json(std::slice::from_ref(&good));
    wrong_shape.inputs[0].shape = vec![1, 1024, 2];
    let mut wrong_len = magika_request_json(std::slice::from_ref(&good));
    wrong_len.inputs[0].shape = vec![1, 1024];
    let mut wrong_dtype = magika_request_json(std::slice::from_ref(&good));
    wrong_dtype.inputs[0].datatype = kokon_wire::kserve::Datatype::Fp32;
    let mut out_of_range = magika_request_json(std::slice::from_ref(&good));
    if let kokon_wire::kserve::TensorData::Json(data) = &mut out_of_range.inputs[0].data {
        data[0] = serde_json::Number::from(1i64 << 40);
    }
    for (what, request) in [
        ("name", wrong_name),
        ("shape", wrong_shape),
        ("length", wrong_len),
        ("dtype", wrong_dtype),
        ("range", out_of_range),
    ] {
        match stack.client.infer(&enclave, &request).await {
            Err(ClientError::Enclave {
                status: 400,
                message,
            }) => assert!(message.contains(signature), "{what}: {message}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let too_big = magika_request(&vec![good.clone(); 65]);
    assert!(matches!(
        stack.client.infer(&enclave, &too_big).await,
        Err(ClientError::Enclave { status: 400, .. })
    ));
    let (_, receipt) = stack
        .client
        .infer(&enclave, &magika_request(&[good]))
        .await
        .unwrap();
    assert_eq!(receipt.receipt.units, 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_enclave_killed_mid_request_is_restarted_and_serves_again() {
    let delay = ("KOKON_SIM_INFER_DELAY_MS".to_string(), "1500".to_string());
    let stack = Stack::start(Options {
        enclave_env: vec![delay],
        ..Options::default()
    })
    .await;
    let enclave = stack.attest().await;
    let pid = stack
        .host
        .state
        .pid
        .load(std::sync::atomic::Ordering::Relaxed);
    let client = stack.client.clone();
    let request = magika_request(&[row(&stack, PYTHON)]);
    let in_flight = tokio::spawn(async move { client.infer(&enclave, &request).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 502, message } if message.contains("closed the connection")),
        "{err}"
    );
    // The host restarts it; the client re-attests (new keys) and is served.
    stack
        .host
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stack
        .host
        .state
        .restarts
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
        || !stack
            .host
            .state
            .up
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "enclave not restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let enclave = stack.attest().await;
    let (_, receipt) = stack
        .client
        .infer(&enclave, &magika_request(&[row(&stack, PYTHON)]))
        .await
        .unwrap();
    assert_eq!(
        receipt.receipt.sequence, 1,
        "a fresh enclave with a fresh receipt key"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_report_the_enclave() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    stack
        .client
        .infer(&enclave, &magika_request(&[row(&stack, PYTHON)]))
        .await
        .unwrap();
    let (status, health) = kokon_tests::http_get(&stack.base, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"up\":true"), "{health}");
    let (_, metrics) = kokon_tests::http_get(&stack.base, "/metrics").await;
    assert!(metrics.contains("kokon_host_enclave_up 1"), "{metrics}");
    assert!(
        metrics.contains("kokon_host_requests_total{route=\"/v1/ohttp\",status=\"200\"} 1"),
        "{metrics}"
    );
    // Both formats parse with the Prometheus Python client's own parsers,
    // each under its media type, with the host's, build and process metrics.
    for (accept, format, media_type) in [
        ("text/plain", "prometheus", "text/plain; version=0.0.4"),
        (
            "application/openmetrics-text; version=1.0.0",
            "openmetrics",
            "application/openmetrics-text; version=1.0.0",
        ),
    ] {
        let (status, content_type, text) =
            kokon_tests::http_get_accepting(&stack.base, "/metrics", accept).await;
        assert_eq!(status, 200);
        assert!(content_type.starts_with(media_type), "{content_type}");
        let mut parser = std::process::Command::new(&stack.env.python)
            .arg(kokon_tests::repo_root().join("tests/python/parse_metrics.py"))
            .arg(format)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        parser
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = parser.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{format}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(families["kokon_host_requests"], "counter", "{families}");
        assert_eq!(
            families["kokon_host_request_duration_seconds"], "histogram",
            "{families}"
        );
        assert_eq!(families["kokon_host_build"], "gauge", "{families}");
        assert_eq!(
            families["process_resident_memory_bytes"], "gauge",
            "{families}"
        );
        // The enclave's inference metrics, scraped over the frame link.
        for (family, kind) in [
            ("kokon_enclave_model_call_duration_seconds", "histogram"),
            ("kokon_enclave_batch_size", "histogram"),
            ("kokon_enclave_queue_wait_seconds", "histogram"),
            ("kokon_enclave_queue_depth", "gauge"),
        ] {
            assert_eq!(families[family], kind, "{family}: {families}");
        }
    }
    assert!(
        metrics.contains("kokon_enclave_batch_size_count{model=\"magika\",call=\"run\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kokon_enclave_batch_size_sum{model=\"magika\",call=\"run\"} 1.0"),
        "{metrics}"
    );
    let (_, _, text) = kokon_tests::http_get_accepting(&stack.base, "/metrics", "*/*").await;
    assert!(text.contains("kokon_host_build{version=\""), "{text}");
    let rss: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("process_resident_memory_bytes ")?
                .parse()
                .ok()
        })
        .unwrap();
    assert!(rss > 1e6, "{rss}");
    let (status, _) = kokon_tests::http_get(&stack.base, "/nope").await;
    assert_eq!(status, 404);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_be_served_on_a_listener_of_their_own() {
    let stack = Stack::start(Options {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Options::default()
    })
    .await;
    let metrics_base = format!("http://{}", stack.host.metrics_addr.unwrap());
    let (status, body) = kokon_tests::http_get(&stack.base, "/metrics").await;
    assert_eq!(status, 404, "not on the public listener: {body}");
    assert!(!body.contains("/metrics"), "{body}");
    let (status, metrics) = kokon_tests::http_get(&metrics_base, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("kokon_host_enclave_up 1"), "{metrics}");
    assert!(
        metrics.contains("kokon_enclave_queue_depth{model=\"magika\"} 0"),
        "the enclave's metrics are there before any request: {metrics}"
    );
    for route in ["/healthz", "/v1/attestation"] {
        let (status, body) = kokon_tests::http_get(&metrics_base, route).await;
        assert_eq!(status, 404, "{route} on the metrics listener: {body}");
    }
    let (status, _) = kokon_tests::http_get(&stack.base, "/healthz").await;
    assert_eq!(status, 200);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nonces_outside_16_to_64_bytes_are_refused() {
    let stack = Stack::start(Options::default()).await;
    for len in [0usize, 8, 15, 65] {
        let err = stack
            .client
            .fetch_bundle(&vec![1u8; len])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Host { status: 400, message } if message.contains("expected 16 to 64 bytes")),
            "{len}: {err}"
        );
    }
    for len in [16usize, 64] {
        assert_eq!(
            stack
                .client
                .fetch_bundle(&vec![1u8; len])
                .await
                .unwrap()
                .claims
                .nonce
                .len(),
            len
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_and_time_limits_answer_503_and_504() {
    let delay = ("KOKON_SIM_INFER_DELAY_MS".to_string(), "1500".to_string());
    let limits = Limits {
        max_concurrency: 1,
        request_timeout: Duration::from_millis(1000),
        ..Limits::default()
    };
    let stack = Stack::start(Options {
        enclave_env: vec![delay],
        limits: Some(limits),
        ..Options::default()
    })
    .await;
    let enclave = std::sync::Arc::new(stack.attest().await);
    let request = magika_request(&[row(&stack, PYTHON)]);
    let (client, e, r) = (stack.client.clone(), enclave.clone(), request.clone());
    let slow = tokio::spawn(async move { client.infer(&e, &r).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = stack.client.infer(&enclave, &request).await.unwrap_err();
    assert!(
        matches!(&busy, ClientError::Host { status: 503, message } if message.contains("slots are busy")),
        "{busy}"
    );
    let timed_out = slow.await.unwrap().unwrap_err();
    assert!(
        matches!(&timed_out, ClientError::Host { status: 504, .. }),
        "{timed_out}"
    );
    stack.shutdown().await;
}

#[test]
fn a_missing_onnx_runtime_is_a_clear_error_not_a_panic() {
    let env = kokon_tests::Env::load();
    let data = tempfile::tempdir().unwrap();
    let not_a_library = data.path().join("libonnxruntime.so.1.99.0");
    std::fs::write(&not_a_library, b"not a shared library").unwrap();
    for lib in [data.path().join("missing.so"), not_a_library] {
        let out = std::process::Command::new(&env.enclave_bin)
            .args([
                "--socket",
                &data.path().join("s.sock").display().to_string(),
                "--model",
                &env.model.display().to_string(),
            ])
            .args([
                "--data-dir",
                &data.path().display().to_string(),
                "--ort-lib",
                &lib.display().to_string(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("cannot load ONNX Runtime")
                && stderr.contains("just setup")
                && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

/// Seals a hand-built Binary HTTP request, so tests can set what the client library would not.
fn seal_raw(
    enclave: &kokon_client::VerifiedEnclave,
    message: &bhttp::Message,
) -> (Vec<u8>, kokon_seal::ClientContext) {
    let mut encoded = Vec::new();
    message
        .write_bhttp(bhttp::Mode::KnownLength, &mut encoded)
        .unwrap();
    kokon_seal::encapsulate(&enclave.key_config, &encoded).unwrap()
}

fn request_at(sent_at: Option<i64>) -> bhttp::Message {
    let mut m = bhttp::Message::request(
        b"GET".to_vec(),
        b"https".to_vec(),
        b"kokon.enclave".to_vec(),
        b"/v2/models/magika".to_vec(),
    );
    if let Some(t) = sent_at {
        m.put_header(kokon_wire::SENT_AT_HEADER, t.to_string());
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_outside_the_freshness_window_are_refused() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    let now = kokon_client::unix_now();
    for sent_at in [Some(now - 300), Some(now + 300), None] {
        let (sealed, _) = seal_raw(&enclave, &request_at(sent_at));
        let err = stack.client.send(&sealed).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Host { status: 400, message } if message.contains("freshness window")),
            "{sent_at:?}: {err}"
        );
    }
    let (sealed, ctx) = seal_raw(&enclave, &request_at(Some(now)));
    assert!(
        ctx.decapsulate(&stack.client.send(&sealed).await.unwrap())
            .is_ok(),
        "a fresh one is served"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_garbage_and_unknown_routes_get_sealed_errors() {
    let stack = Stack::start(Options::default()).await;
    let enclave = stack.attest().await;
    // Correctly sealed, but not Binary HTTP inside.
    let (sealed, ctx) =
        kokon_seal::encapsulate(&enclave.key_config, b"\xff\xfe not binary http").unwrap();
    let response = ctx
        .decapsulate(&stack.client.send(&sealed).await.unwrap())
        .unwrap();
    let message =
        bhttp::Message::read_bhttp(&mut std::io::Cursor::new(response.as_slice())).unwrap();
    assert_eq!(message.control().status().map(u16::from), Some(400));
    // Unknown model and unknown route.
    for path in ["/v2/models/llama/infer", "/admin"] {
        let opened = stack
            .client
            .request(&enclave, "GET", path, b"", 0)
            .await
            .unwrap();
        assert_eq!(opened.status, 404, "{path}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_wants_the_ohttp_media_type() {
    let stack = Stack::start(Options::default()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(format!("{}/v1/ohttp", stack.base))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_out_of_date_platform_tcb_is_rejected_with_the_status_found() {
    let status = ("KOKON_SIM_TCB_STATUS".to_string(), "OutOfDate".to_string());
    let stack = Stack::start(Options {
        enclave_env: vec![status],
        ..Options::default()
    })
    .await;
    let err = stack.client.attest(&stack.dev_policy()).await.unwrap_err();
    match &err {
        ClientError::Policy(r) => {
            assert_eq!(r.failures.len(), 1, "{r}");
            assert_eq!(r.failures[0].check, "TCB status");
            assert!(r.failures[0].found.starts_with("OutOfDate"), "{r}");
        }
        other => panic!("expected a policy rejection, got {other}"),
    }
    stack.shutdown().await;
}
