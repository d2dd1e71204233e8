#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Larger tensors, as JSON and as KServe binary tensor data, end to end: a
//! model with a 1×3×224×224 FP32 input (each channel's mean, generated at
//! test time with the `onnx` package) served through host and enclave, fed a
//! random image by the client library and by `kokon infer --input`; bodies
//! the enclave must refuse, and the host's body limit.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use kokon_client::{ClientError, VerifiedEnclave};
use kokon_host::{HostConfig, Limits, DEFAULT_MAX_BODY_BYTES};
use kokon_tests::{dev_policy_allowing, repo_root, Env, Options, Rng, Stack};
use kokon_wire::kserve::{
    Encoding, InferRequest, InferResponse, InferTensor, TensorData, BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODEL: &str = "channel-mean";
const TILED: &str = "tiled";
const SIDE: usize = 224;
const PLANE: usize = SIDE * SIDE;
const IMAGE: [i64; 4] = [1, 3, SIDE as i64, SIDE as i64];

/// Writes a model with input `image` FP32 [N, 3, 224, 224]: for
/// [`MODEL`], output `means` FP32 [N, 3], the mean of each channel
/// (ReduceMean over H and W); for [`TILED`], output `tiled` FP32 [N, 18,
/// 224, 224], the image six times over.
fn model(env: &Env, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.onnx"));
    let script = r#"
import sys, onnx
from onnx import helper, TensorProto
image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 224, 224])
if sys.argv[2] == "mean":
    out = helper.make_tensor_value_info("means", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0)]
    inits = []
else:
    out = helper.make_tensor_value_info("tiled", TensorProto.FLOAT, ["N", 18, 224, 224])
    nodes = [helper.make_node("Tile", ["image", "repeats"], ["tiled"])]
    inits = [helper.make_tensor("repeats", TensorProto.INT64, [4], [1, 6, 1, 1])]
graph = helper.make_graph(nodes, "kokon_test", [image], [out], initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kokon-tests")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
"#;
    let kind = if name == MODEL { "mean" } else { "tile" };
    env.python_ok([
        OsStr::new("-c"),
        script.as_ref(),
        path.as_ref(),
        kind.as_ref(),
    ]);
    path
}

/// A stack serving the model `name`, its model directory, and the policy
/// that accepts it.
async fn model_stack(name: &str) -> (Stack, tempfile::TempDir, String) {
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    let model = model(&env, dir.path(), name);
    let policy = dev_policy_allowing(name, &model);
    let stack = Stack::start(Options {
        model: Some((model, name.into())),
        ..Options::default()
    })
    .await;
    (stack, dir, policy)
}

async fn attest(stack: &Stack, policy: &str) -> VerifiedEnclave {
    stack.client.attest(&stack.policy(policy)).await.unwrap()
}

/// `n` random images' pixels, seeded.
fn random_pixels(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n * 3 * PLANE)
        .map(|i| {
            // Channel c's pixels in [c, c + 1): a channel mixed up shows.
            let channel = (i / PLANE % 3) as f32;
            channel + (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Each image's channel means, computed here in f64.
fn means(pixels: &[f32]) -> Vec<f64> {
    pixels
        .chunks(PLANE)
        .map(|plane| plane.iter().map(|v| f64::from(*v)).sum::<f64>() / PLANE as f64)
        .collect()
}

fn assert_close(found: &[f64], expected: &[f64]) {
    assert_eq!(found.len(), expected.len(), "{found:?} vs {expected:?}");
    for (f, e) in found.iter().zip(expected) {
        // ONNX Runtime sums 50,176 pixels in f32.
        assert!((f - e).abs() < 1e-4, "{found:?} vs {expected:?}");
    }
}

/// The first output's elements (FP32), widened.
fn answered(response: &InferResponse) -> Vec<f64> {
    let values = response.outputs[0].values::<f32>().unwrap();
    values.into_iter().map(f64::from).collect()
}

fn image_request(pixels: &[f32], batch: i64, encoding: Encoding) -> InferRequest {
    let mut shape = IMAGE.to_vec();
    shape[0] = batch;
    InferRequest {
        inputs: vec![InferTensor::new("image", shape, pixels, encoding).unwrap()],
        binary_output: encoding == Encoding::Binary,
        ..InferRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_tensor_goes_through_as_binary_data_and_as_json() {
    let (stack, _dir, policy) = model_stack(MODEL).await;
    let enclave = attest(&stack, &policy).await;
    let pixels = random_pixels(7, 1);
    let expected = means(&pixels);
    for encoding in [Encoding::Binary, Encoding::Json] {
        let request = image_request(&pixels, 1, encoding);
        let body = request.encode().unwrap().body.len();
        match encoding {
            Encoding::Binary => assert!(body > 602_112 && body < 603_000, "{body}"),
            // Beyond the host's old 1 MiB limit.
            Encoding::Json => assert!(body > 2 * 1024 * 1024, "{body}"),
        }
        let (response, receipt) = stack.client.infer(&enclave, &request).await.unwrap();
        assert_eq!(response.model_name, MODEL);
        let means = &response.outputs[0];
        assert_eq!(means.name, "means");
        assert_eq!(means.shape, vec![1, 3]);
        assert_eq!(means.data.encoding(), encoding, "outputs come as asked");
        assert_close(&answered(&response), &expected);
        assert_eq!(receipt.receipt.units, 1);
    }
    // A batch of two, in binary (4.8 MB), each image its own means; JSON
    // output for one output asked by name, binary for the rest.
    let pixels = random_pixels(8, 2);
    let mut request = image_request(&pixels, 2, Encoding::Binary);
    request.outputs = Some(vec![kokon_wire::kserve::RequestedOutput {
        name: "means".into(),
        binary: Some(false),
        parameters: None,
    }]);
    let (response, receipt) = stack.client.infer(&enclave, &request).await.unwrap();
    assert_eq!(response.outputs[0].shape, vec![2, 3]);
    assert_eq!(response.outputs[0].data.encoding(), Encoding::Json);
    assert_close(&answered(&response), &means(&pixels));
    assert_eq!(receipt.receipt.units, 2);
    stack.shutdown().await;
}

fn kokon(stack: &Stack, args: &[&str]) -> std::process::Output {
    Command::new(&stack.env.kokon_bin)
        .args(args)
        .current_dir(repo_root())
        .env("KOKON_DATA_DIR", stack.data.path())
        .env("KOKON_ENCLAVE_BIN", &stack.env.enclave_bin)
        .output()
        .unwrap()
}

/// The channel means `kokon infer --input ...` printed.
fn printed_means(out: &std::process::Output) -> Vec<f64> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["model_name"], MODEL);
    assert_eq!(printed["outputs"][0]["name"], "means");
    assert_eq!(printed["outputs"][0]["datatype"], "FP32");
    assert_eq!(printed["outputs"][0]["shape"], serde_json::json!([1, 3]));
    assert_eq!(printed["receipt"]["receipt"]["units"], 1);
    printed["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kokon_infer_sends_tensors_from_raw_and_json_files() {
    let (stack, dir, policy) = model_stack(MODEL).await;
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, &policy).unwrap();
    let pixels = random_pixels(9, 1);
    let expected = means(&pixels);
    let raw = dir.path().join("image.f32");
    std::fs::write(
        &raw,
        pixels
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let json = dir.path().join("image.json");
    let object =
        serde_json::json!({"name": "image", "shape": IMAGE, "datatype": "FP32", "data": pixels});
    std::fs::write(&json, serde_json::to_vec(&object).unwrap()).unwrap();
    let raw_input = format!("image={}:FP32:1x3x224x224", raw.display());
    let json_input = format!("image={}", json.display());
    let base = [
        "infer",
        "--host",
        &stack.base,
        "--policy",
        policy_file.to_str().unwrap(),
        "--model",
        MODEL,
    ];
    for (input, encoding) in [
        (&raw_input, "binary"),
        (&raw_input, "json"),
        (&json_input, "binary"),
        (&json_input, "json"),
    ] {
        let args: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--input", input, "--tensor-encoding", encoding])
            .collect();
        assert_close(&printed_means(&kokon(&stack, &args)), &expected);
    }
    // A raw file of the wrong size is refused before anything is sent.
    let short = format!("image={}:FP32:1x3x224x225", raw.display());
    let args: Vec<&str> = base.iter().copied().chain(["--input", &short]).collect();
    let out = kokon(&stack, &args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds 602112 bytes; shape 1x3x224x225 of FP32 needs 604800"),
        "{stderr}"
    );
    // A tensor the model does not take: the enclave's refusal names it.
    let tiny = dir.path().join("tiny.json");
    std::fs::write(&tiny, r#"{"shape":[1,3],"datatype":"FP32","data":[1,2,3]}"#).unwrap();
    let tiny = format!("image={}", tiny.display());
    let args: Vec<&str> = base.iter().copied().chain(["--input", &tiny]).collect();
    let out = kokon(&stack, &args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("enclave answered 400")
            && stderr.contains("expected inputs [image FP32 [-1, 3, 224, 224]]"),
        "{stderr}"
    );
    stack.shutdown().await;
}

/// Sends `body` with header `fields` to the model; the sealed answer's
/// status and error message.
async fn send_raw(
    stack: &Stack,
    enclave: &VerifiedEnclave,
    fields: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let opened = stack
        .client
        .request_with_fields(
            enclave,
            "POST",
            &format!("/v2/models/{MODEL}/infer"),
            fields,
            body,
            1,
        )
        .await
        .unwrap();
    let error = serde_json::from_slice::<kokon_wire::kserve::ErrorBody>(&opened.body)
        .map(|e| e.error)
        .unwrap_or_default();
    let units = u64::from(opened.status == 200);
    assert_eq!(
        opened.receipt.receipt.units, units,
        "refusals are not billed"
    );
    (opened.status, error)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_binary_bodies_get_400_naming_the_tensor_and_the_enclave_keeps_serving() {
    let (stack, _dir, policy) = model_stack(MODEL).await;
    let enclave = attest(&stack, &policy).await;
    let pixels = random_pixels(10, 1);
    let good = image_request(&pixels, 1, Encoding::Binary)
        .encode()
        .unwrap();
    let header_length = good.header_length.unwrap();
    let header = std::str::from_utf8(&good.body[..header_length])
        .unwrap()
        .to_string();
    let binary = &good.body[header_length..];
    let with = |header: &str, binary: &[u8]| {
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(binary);
        (header.len().to_string(), body)
    };
    let mismatch = with(&header.replace("602112", "602108"), &binary[..602_108]);
    let truncated = with(&header, &binary[..600_000]);
    let unknown = with(&header.replace("FP32", "FLOAT32"), binary);
    let trailing = with(&header, &[binary, &[0u8; 3]].concat());
    let beyond = (good.body.len() + 1).to_string();
    let beyond_message = format!(
        "{HEADER_LENGTH} is {beyond}, but the body has only {} bytes",
        good.body.len()
    );
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "size mismatch",
            mismatch.0,
            mismatch.1,
            "input \"image\": binary_data_size is 602108 bytes, but shape [1, 3, 224, 224] of FP32 needs 602112",
        ),
        (
            "truncated",
            truncated.0,
            truncated.1,
            "input \"image\": binary_data_size is 602112 bytes, but only 600000 bytes of binary data remain",
        ),
        (
            "unknown datatype",
            unknown.0,
            unknown.1,
            "input \"image\": unknown datatype \"FLOAT32\"",
        ),
        (
            "trailing bytes",
            trailing.0,
            trailing.1,
            "3 bytes of binary data follow the last binary tensor",
        ),
        (
            "header beyond the body",
            beyond.clone(),
            good.body.clone(),
            &beyond_message,
        ),
        (
            "header length not a number",
            "12ab".into(),
            good.body.clone(),
            "inference-header-content-length \"12ab\" is not a byte count",
        ),
        (
            "binary data without a header length",
            String::new(),
            good.body.clone(),
            "malformed inference request JSON",
        ),
    ];
    for (what, length, body, expected) in cases {
        let mut fields = vec![("content-type", BINARY_CONTENT_TYPE)];
        if !length.is_empty() {
            fields.push((HEADER_LENGTH, &length));
        }
        let (status, error) = send_raw(&stack, &enclave, &fields, &body).await;
        assert_eq!(status, 400, "{what}: {error}");
        assert!(error.contains(expected), "{what}: {error}");
    }
    // The field's name is matched without regard to case, as HTTP's are.
    let length = header_length.to_string();
    let (status, error) = send_raw(
        &stack,
        &enclave,
        &[("Inference-Header-Content-Length", &length)],
        &good.body,
    )
    .await;
    assert_eq!(status, 200, "{error}");
    // And the enclave still serves.
    let (response, _) = stack
        .client
        .infer(&enclave, &image_request(&pixels, 1, Encoding::Binary))
        .await
        .unwrap();
    assert_close(&answered(&response), &means(&pixels));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_just_over_the_limit_gets_413_and_the_host_keeps_serving() {
    let (stack, _dir, policy) = model_stack(MODEL).await;
    let enclave = attest(&stack, &policy).await;
    let err = stack
        .client
        .send(&vec![0u8; DEFAULT_MAX_BODY_BYTES + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 413, message } if message.contains(&format!("exceeds the {DEFAULT_MAX_BODY_BYTES}-byte limit"))),
        "{err}"
    );
    // A body of exactly the limit passes the host; the enclave refuses it
    // only because it is not sealed to its key.
    let err = stack
        .client
        .send(&vec![0u8; DEFAULT_MAX_BODY_BYTES])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Host { status: 400, message } if message.contains("cannot open the OHTTP request")),
        "{err}"
    );
    // A body of no declared length, sent in chunks, is read to the limit
    // and on: its sender gets the 413 too.
    let mut raw = tokio::net::TcpStream::connect(stack.host.addr)
        .await
        .unwrap();
    raw.write_all(b"POST /v1/ohttp HTTP/1.1\r\nhost: kokon\r\ncontent-type: message/ohttp-req\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
    let chunk = vec![0u8; 1 << 20];
    for piece in [&chunk[..]; 8].into_iter().chain([&chunk[..1]]) {
        raw.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        raw.write_all(piece).await.unwrap();
        raw.write_all(b"\r\n").await.unwrap();
    }
    raw.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 256];
    let n = raw.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let pixels = random_pixels(11, 1);
    let (response, _) = stack
        .client
        .infer(&enclave, &image_request(&pixels, 1, Encoding::Json))
        .await
        .unwrap();
    assert_close(&answered(&response), &means(&pixels));
    stack.shutdown().await;
}

#[tokio::test]
async fn a_body_limit_beyond_what_a_frame_carries_is_refused_at_start() {
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        enclave: kokon_host::EnclaveCommand {
            program: env.enclave_bin.clone(),
            args: Vec::new(),
            env: Vec::new(),
            socket: dir.path().join("enclave.sock"),
            startup_timeout: std::time::Duration::from_secs(1),
        }
        .into(),
        limits: Limits {
            max_body_bytes: kokon_wire::MAX_SEALED_REQUEST + 1,
            ..Limits::default()
        },
        collateral: None,
        ledger: None,
        tls: None,
        metrics_listen: None,
    };
    let e = kokon_host::start(config).await.err().unwrap().to_string();
    assert!(
        e.contains(&format!(
            "the request body limit of {} bytes exceeds the {} bytes one frame carries",
            kokon_wire::MAX_SEALED_REQUEST + 1,
            kokon_wire::MAX_SEALED_REQUEST
        )),
        "{e}"
    );
    // The default leaves room for a sealed 1x3x224x224 FP32 image as JSON.
    let json = image_request(&random_pixels(12, 1), 1, Encoding::Json);
    assert!(json.encode().unwrap().body.len() + 1024 < DEFAULT_MAX_BODY_BYTES);
    assert!(matches!(json.inputs[0].data, TensorData::Json(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_too_large_for_json_is_refused_with_advice_and_fits_in_binary() {
    let (stack, _dir, policy) = model_stack(TILED).await;
    let enclave = attest(&stack, &policy).await;
    let pixels = random_pixels(13, 1);
    // 903,168 floats: over 16 MB as JSON numbers, 3.6 MB in binary.
    let err = stack
        .client
        .infer(&enclave, &image_request(&pixels, 1, Encoding::Json))
        .await
        .unwrap_err();
    let limit = kokon_wire::MAX_RESPONSE_BODY;
    assert!(
        matches!(&err, ClientError::Enclave { status: 500, message }
            if message.contains(&format!("exceeds the {limit}-byte limit on answers")) && message.contains("binary_data_output")),
        "{err}"
    );
    let (response, receipt) = stack
        .client
        .infer(&enclave, &image_request(&pixels, 1, Encoding::Binary))
        .await
        .unwrap();
    let tiled = response.outputs[0].values::<f32>().unwrap();
    assert_eq!(response.outputs[0].shape, vec![1, 18, 224, 224]);
    assert_eq!(tiled.len(), 6 * pixels.len());
    assert!(tiled
        .chunks(pixels.len())
        .all(|copy| copy == pixels.as_slice()));
    assert_eq!(receipt.receipt.units, 1);
    stack.shutdown().await;
}
