//! What a client needs beside a model's tensors, served with the model's
//! metadata (`GET /v2/models/{name}`, inside OHTTP) so that a client needs
//! nothing installed but kokon.
//!
//! For Magika that is its pre- and post-processing configuration: how many
//! bytes to read from each end of a file, the padding token, the labels, the
//! thresholds and the content-type knowledge base. The enclave reads them
//! from the files the model came with and measures each file into its
//! serving configuration (and so into RTMR3 and `config_digest`): a host
//! that swapped a threshold or a label would change what clients attest.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest parameter file read (Magika's are 2 KB and 45 KB).
pub const MAX_PARAMETER_FILE: u64 = 1 << 20;

/// One file the parameters were read from, as measured.
pub use kokon_attestation::claims::MeasuredFile;

/// A model's client-side parameters and the files they came from.
#[derive(Debug, Clone, Default)]
pub struct ModelParameters {
    /// Served as the metadata's `parameters`.
    pub value: Map<String, Value>,
    /// Measured into the serving configuration.
    pub files: Vec<MeasuredFile>,
}

/// The parameters of the model at `model`: Magika's processing
/// configuration when the model lies in an installed `magika` package
/// (`models/<version>/model.onnx` with `config.min.json` beside it and
/// `config/content_types_kb.min.json` two levels up), none otherwise. A
/// package with one file but not the other, or with a file that is not JSON,
/// is an error: the enclave would serve a model clients cannot use.
pub fn for_model(model: &Path) -> anyhow::Result<ModelParameters> {
    let dir = model.parent().unwrap_or(Path::new("."));
    let config = dir.join("config.min.json");
    if !config.exists() {
        return Ok(ModelParameters::default());
    }
    let kb = dir
        .parent()
        .and_then(Path::parent)
        .map(|package| package.join("config").join("content_types_kb.min.json"))
        .unwrap_or_else(|| PathBuf::from("config/content_types_kb.min.json"));
    let mut magika = ModelParameters::default();
    for (name, path) in [("config", config), ("content_types_kb", kb)] {
        let (value, sha256) = read_json(&path).with_context(|| {
            format!(
                "Magika's {name} for the model {} (expected at {})",
                model.display(),
                path.display()
            )
        })?;
        magika.value.insert(name.into(), value);
        magika.files.push(MeasuredFile {
            name: format!("magika.{name}"),
            sha256,
        });
    }
    Ok(ModelParameters {
        value: Map::from_iter([("magika".to_string(), Value::Object(magika.value))]),
        files: magika.files,
    })
}

fn read_json(path: &Path) -> anyhow::Result<(Value, String)> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_PARAMETER_FILE {
        anyhow::bail!("{size} bytes, more than the {MAX_PARAMETER_FILE} allowed");
    }
    let bytes = std::fs::read(path)?;
    let value = serde_json::from_slice(&bytes).context("not JSON")?;
    Ok((value, hex::encode(Sha256::digest(&bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(config: &str, kb: Option<&str>) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let models = root.path().join("models/standard_v3_3");
        std::fs::create_dir_all(&models).unwrap();
        std::fs::create_dir_all(root.path().join("config")).unwrap();
        std::fs::write(models.join("config.min.json"), config).unwrap();
        if let Some(kb) = kb {
            std::fs::write(root.path().join("config/content_types_kb.min.json"), kb).unwrap();
        }
        let model = models.join("model.onnx");
        (root, model)
    }

    #[test]
    fn a_magika_package_gives_both_files_measured() {
        let (_root, model) = package(r#"{"beg_size":1024}"#, Some(r#"{"txt":{"is_text":true}}"#));
        let p = for_model(&model).unwrap();
        assert_eq!(p.value["magika"]["config"]["beg_size"], 1024);
        assert_eq!(
            p.value["magika"]["content_types_kb"]["txt"]["is_text"],
            true
        );
        let names: Vec<_> = p.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["magika.config", "magika.content_types_kb"]);
        assert_eq!(
            p.files[0].sha256,
            hex::encode(Sha256::digest(br#"{"beg_size":1024}"#))
        );
    }

    #[test]
    fn a_changed_threshold_changes_the_measurement() {
        let (_a, model_a) = package(r#"{"t":0.5}"#, Some("{}"));
        let (_b, model_b) = package(r#"{"t":0.1}"#, Some("{}"));
        assert_ne!(
            for_model(&model_a).unwrap().files,
            for_model(&model_b).unwrap().files
        );
    }

    #[test]
    fn a_model_without_a_config_has_no_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let p = for_model(&dir.path().join("model.onnx")).unwrap();
        assert!(p.value.is_empty() && p.files.is_empty());
    }

    #[test]
    fn a_half_package_or_bad_json_fails_naming_the_file() {
        let (_root, model) = package("{}", None);
        let e = format!("{:#}", for_model(&model).unwrap_err());
        assert!(e.contains("content_types_kb.min.json"), "{e}");
        let (_root, model) = package("{not json", Some("{}"));
        let e = format!("{:#}", for_model(&model).unwrap_err());
        assert!(
            e.contains("config.min.json") && e.contains("not JSON"),
            "{e}"
        );
    }
}
