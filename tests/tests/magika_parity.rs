#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! kokon's Magika pipeline (Rust pre-processing, the model in the enclave
//! behind OHTTP, Rust post-processing) gives the same labels as Python
//! `magika` 1.0.3 on the same files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kokon_client::magika::{Classification, Prepared};
use kokon_tests::{magika_request, magika_request_json, repo_root, Env, Options, Stack};
use kokon_wire::kserve::Encoding;

fn corpus(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect()
    };
    let long_text = "The quick brown fox jumps over the lazy dog. ".repeat(300);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("tiny.txt", b"abc".to_vec()),
        ("tiny.bin", vec![0xff, 0xfe, 0x00, 0x81, 0x90]),
        ("spaces", vec![b' '; 100]),
        ("short_after_strip", b"\n\n   \x0b\x0c hi  \n\n\t".to_vec()),
        ("script.py", b"#!/usr/bin/env python3\nimport json\n\nclass Config:\n    def __init__(self, path):\n        with open(path) as f:\n            self.data = json.load(f)\n\n    def get(self, key, default=None):\n        return self.data.get(key, default)\n".to_vec()),
        ("main.c", b"#include <stdio.h>\n#include <stdlib.h>\n\nint main(int argc, char **argv) {\n    for (int i = 1; i < argc; i++) {\n        printf(\"%s\\n\", argv[i]);\n    }\n    return EXIT_SUCCESS;\n}\n".to_vec()),
        ("data.json", br#"{"name": "kokon", "version": "0.1.0", "features": ["attestation", "ohttp", "receipts"], "limits": {"body": 1048576, "concurrency": 64}}"#.to_vec()),
        ("page.html", b"<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>kokon</title></head>\n<body>\n<h1>Private inference</h1>\n<p>The host sees only ciphertext.</p>\n</body>\n</html>\n".to_vec()),
        ("config.yaml", b"server:\n  listen: 127.0.0.1:8443\n  limits:\n    body: 1048576\n    concurrency: 64\nenclave:\n  tee: sim\n  device: cpu\n".to_vec()),
        ("table.csv", b"id,name,score,passed\n1,alice,0.93,true\n2,bob,0.71,false\n3,carol,0.88,true\n4,dave,0.65,false\n".to_vec()),
        ("run.sh", b"#!/bin/bash\nset -euo pipefail\nfor f in \"$@\"; do\n  if [ -f \"$f\" ]; then\n    wc -l \"$f\"\n  fi\ndone\n".to_vec()),
        ("app.js", b"const express = require('express');\nconst app = express();\napp.get('/', (req, res) => {\n  res.send('hello');\n});\napp.listen(3000, () => console.log('listening'));\n".to_vec()),
        ("notes.md", b"# kokon\n\n## Quick start\n\n```\njust demo\n```\n\n- attestation\n- sealed requests\n- receipts\n".to_vec()),
        ("long.txt", long_text.into_bytes()),
        ("random.bin", random(10_000)),
        ("png", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec(), random(3000)].concat()),
        ("pdf", [b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n".to_vec(), random(2000), b"\n%%EOF\n".to_vec()].concat()),
        ("zip", [b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec(), random(5000)].concat()),
        ("utf16.txt", "Hello, world! This is UTF-16 text for the classifier.".encode_utf16().flat_map(|u| u.to_le_bytes()).collect()),
    ];
    let mut paths: Vec<PathBuf> = files
        .into_iter()
        .map(|(name, content)| {
            let p = dir.join(name);
            std::fs::write(&p, content).unwrap();
            p
        })
        .collect();
    for rel in [
        "Cargo.toml",
        "Cargo.lock",
        "policies/dev-sim.toml",
        "scripts/setup.sh",
        "attestation/src/tdx/quote.rs",
        ".gitignore",
        "attestation/roots/intel_sgx_root_ca.pem",
    ] {
        paths.push(repo_root().join(rel));
    }
    paths
}

fn python_labels(env: &Env, files: &[PathBuf]) -> BTreeMap<String, (String, String, f64)> {
    let script = "import json, sys\nfrom pathlib import Path\nfrom magika import Magika\nm = Magika()\nout = {}\nfor p in sys.argv[1:]:\n    r = m.identify_path(Path(p))\n    out[p] = [r.prediction.dl.label.value, r.prediction.output.label.value, r.prediction.score]\nprint(json.dumps(out))\n";
    let args = ["-c".as_ref(), script.as_ref()]
        .into_iter()
        .chain(files.iter().map(|f| f.as_os_str()));
    serde_json::from_slice(&env.python_ok(args)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_equal_python_magika() {
    let stack = Stack::start(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let expected = python_labels(&stack.env, &files);
    let magika = stack.env.magika();
    let enclave = stack.attest().await;

    let prepared: Vec<Prepared> = files
        .iter()
        .map(|f| magika.prepare_file(f).unwrap())
        .collect();
    let rows: Vec<Vec<i32>> = prepared
        .iter()
        .filter_map(|p| {
            if let Prepared::Features(r) = p {
                Some(r.clone())
            } else {
                None
            }
        })
        .collect();
    assert!(
        rows.len() >= 20,
        "most of the corpus goes through the model"
    );
    let (response, receipt) = stack
        .client
        .infer(&enclave, &magika_request(&rows))
        .await
        .unwrap();
    assert_eq!(
        receipt.receipt.units,
        rows.len() as u64,
        "one unit per row of the batch"
    );
    let scores = response.outputs[0].f32_data().unwrap();
    // The SDK's request sends the rows in binary and gets the scores in
    // binary; the same rows as JSON numbers get them as JSON numbers, the
    // same scores and so the same labels.
    assert_eq!(response.outputs[0].data.encoding(), Encoding::Binary);
    let (json_response, json_receipt) = stack
        .client
        .infer(&enclave, &magika_request_json(&rows))
        .await
        .unwrap();
    assert_eq!(json_response.outputs[0].data.encoding(), Encoding::Json);
    assert_eq!(json_response.outputs[0].shape, response.outputs[0].shape);
    assert_eq!(json_receipt.receipt.units, rows.len() as u64);
    let json_scores = json_response.outputs[0].f32_data().unwrap();
    assert_eq!(json_scores, scores, "binary and JSON scores are the same");
    let labels = |scores: &[f32]| {
        scores
            .chunks(magika.label_count())
            .map(|s| magika.classify(s).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&json_scores), labels(&scores));
    let mut model_results = scores
        .chunks(magika.label_count())
        .map(|s| magika.classify(s).unwrap());

    let mut mismatches = Vec::new();
    for (file, prep) in files.iter().zip(prepared) {
        let ours: Classification = match prep {
            Prepared::Decided(c) => c,
            Prepared::Features(_) => model_results.next().unwrap(),
        };
        let (dl, output, score) = &expected[&file.display().to_string()];
        if (&ours.dl, &ours.output) != (dl, output) || (ours.score - score).abs() > 1e-3 {
            mismatches.push(format!(
                "{}: kokon {}/{} {:.6}, python {dl}/{output} {score:.6}",
                file.display(),
                ours.dl,
                ours.output,
                ours.score
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "label mismatches:\n{}",
        mismatches.join("\n")
    );
    stack.shutdown().await;
}
