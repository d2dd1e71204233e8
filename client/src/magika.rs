//! Magika (standard_v3_3) pre- and post-processing, ported from the Python
//! package's `magika.py` (v1.0.3) so that kokon's labels equal Magika's.
//!
//! Pre-processing: read up to `block_size` bytes from each end, strip ASCII
//! whitespace (Python's `bytes.strip` set, which includes \x0b), take
//! `beg_size` leading and `end_size` trailing bytes, and pad with the
//! padding token (after the beginning, before the end). Files under
//! `min_file_size_for_dl`, or whose stripped beginning is that short, are
//! decided without the model: `txt` if they decode as UTF-8, else `unknown`;
//! an empty file is `empty`.
//!
//! Post-processing (high-confidence mode, Magika's default): argmax label;
//! the overwrite map; then if the score is below the label's threshold (or
//! the medium threshold), fall back to `txt` or `unknown` by the label's
//! `is_text`.

use std::collections::HashMap;
use std::path::Path;

use kokon_wire::kserve::ModelMetadata;
use serde::Deserialize;

/// The model's input tensor name.
pub const INPUT: &str = "bytes";
/// The model's output tensor name.
pub const OUTPUT: &str = "target_label";

#[derive(Debug, Deserialize)]
struct ModelConfigFile {
    beg_size: usize,
    mid_size: usize,
    end_size: usize,
    use_inputs_at_offsets: bool,
    medium_confidence_threshold: f64,
    min_file_size_for_dl: usize,
    padding_token: i32,
    block_size: usize,
    target_labels_space: Vec<String>,
    thresholds: HashMap<String, f64>,
    overwrite_map: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct ContentTypeInfo {
    is_text: bool,
}

/// Magika's model configuration and content-type knowledge base.
#[derive(Debug, Clone, PartialEq)]
pub struct Magika {
    beg_size: usize,
    end_size: usize,
    block_size: usize,
    padding_token: i32,
    min_file_size_for_dl: usize,
    medium_confidence_threshold: f64,
    labels: Vec<String>,
    thresholds: HashMap<String, f64>,
    overwrite_map: HashMap<String, String>,
    is_text: HashMap<String, bool>,
}

/// A classification, as Magika reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Classification {
    /// The model's raw label (`undefined` when the model was not run).
    pub dl: String,
    /// The final label.
    pub output: String,
    /// The model's score for `dl` (1.0 when the model was not run).
    pub score: f64,
}

/// What pre-processing decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Decided without the model.
    Decided(Classification),
    /// The model's input row (`beg_size + end_size` integers).
    Features(Vec<i32>),
}

fn is_py_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl Magika {
    /// Loads the configuration from an installed `magika` Python package directory.
    pub fn load(package_dir: &Path) -> Result<Self, String> {
        let read = |rel: &str| {
            let p = package_dir.join(rel);
            std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let cfg = serde_json::from_slice(&read("models/standard_v3_3/config.min.json")?)
            .map_err(|e| format!("magika model config: {e}"))?;
        let kb = serde_json::from_slice(&read("config/content_types_kb.min.json")?)
            .map_err(|e| format!("magika content types: {e}"))?;
        Self::from_files(cfg, kb)
    }

    /// Takes the configuration from a model's metadata, as the attested
    /// enclave serves it (`parameters.magika`: `config` and
    /// `content_types_kb`), so that a client needs no local `magika`.
    pub fn from_metadata(metadata: &ModelMetadata) -> Result<Self, String> {
        let magika = metadata
            .parameters
            .as_ref()
            .and_then(|p| p.get("magika"))
            .ok_or_else(|| {
                format!(
                    "the enclave's metadata for model {:?} has no Magika configuration (parameters.magika)",
                    metadata.name
                )
            })?;
        let part = |name: &str| {
            magika
                .get(name)
                .cloned()
                .ok_or_else(|| format!("the enclave's Magika configuration has no {name:?}"))
        };
        let (cfg, kb) = (part("config")?, part("content_types_kb")?);
        let cfg = serde_json::from_value(cfg)
            .map_err(|e| format!("the enclave's Magika model config: {e}"))?;
        let kb = serde_json::from_value(kb)
            .map_err(|e| format!("the enclave's Magika content types: {e}"))?;
        Self::from_files(cfg, kb)
    }

    fn from_files(
        cfg: ModelConfigFile,
        kb: HashMap<String, ContentTypeInfo>,
    ) -> Result<Self, String> {
        if cfg.mid_size != 0
            || cfg.use_inputs_at_offsets
            || cfg.beg_size >= cfg.block_size
            || cfg.end_size >= cfg.block_size
            || cfg.min_file_size_for_dl == 0
        {
            return Err("unsupported magika model configuration (mid features or offsets)".into());
        }
        Ok(Self {
            beg_size: cfg.beg_size,
            end_size: cfg.end_size,
            block_size: cfg.block_size,
            padding_token: cfg.padding_token,
            min_file_size_for_dl: cfg.min_file_size_for_dl,
            medium_confidence_threshold: cfg.medium_confidence_threshold,
            labels: cfg.target_labels_space,
            thresholds: cfg.thresholds,
            overwrite_map: cfg.overwrite_map,
            is_text: kb.into_iter().map(|(k, v)| (k, v.is_text)).collect(),
        })
    }

    /// Width of one input row.
    pub fn row_len(&self) -> usize {
        self.beg_size + self.end_size
    }

    /// How many bytes to read from each end of a file.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Number of labels the model scores.
    pub fn label_count(&self) -> usize {
        self.labels.len()
    }

    fn decided(output: &str) -> Prepared {
        Prepared::Decided(Classification {
            dl: "undefined".into(),
            output: output.into(),
            score: 1.0,
        })
    }

    fn few_bytes(content: &[u8]) -> Prepared {
        Self::decided(if std::str::from_utf8(content).is_ok() {
            "txt"
        } else {
            "unknown"
        })
    }

    /// Pre-processes a whole file's content.
    pub fn prepare(&self, content: &[u8]) -> Prepared {
        let n = content.len().min(self.block_size);
        let head = content.get(..n).unwrap_or(content);
        let tail = content.get(content.len() - n..).unwrap_or(content);
        self.prepare_parts(content.len(), head, tail)
    }

    /// Pre-processes a file of `size` bytes given its first and last
    /// `min(block_size, size)` bytes.
    pub fn prepare_parts(&self, size: usize, head: &[u8], tail: &[u8]) -> Prepared {
        if size == 0 {
            return Self::decided("empty");
        }
        if size < self.min_file_size_for_dl {
            return Self::few_bytes(head);
        }
        let start = head
            .iter()
            .position(|b| !is_py_space(b))
            .unwrap_or(head.len());
        let beg_content = head.get(start..).unwrap_or_default();
        let end = tail
            .iter()
            .rposition(|b| !is_py_space(b))
            .map(|i| i + 1)
            .unwrap_or(0);
        let end_content = tail.get(..end).unwrap_or_default();

        let mut row = Vec::with_capacity(self.row_len());
        row.extend(
            beg_content
                .iter()
                .take(self.beg_size)
                .map(|b| i32::from(*b)),
        );
        row.resize(self.beg_size, self.padding_token);
        if row.get(self.min_file_size_for_dl - 1) == Some(&self.padding_token) {
            return Self::few_bytes(head);
        }
        let tail_bytes = end_content
            .get(end_content.len().saturating_sub(self.end_size)..)
            .unwrap_or_default();
        row.extend(std::iter::repeat_n(
            self.padding_token,
            self.end_size - tail_bytes.len(),
        ));
        row.extend(tail_bytes.iter().map(|b| i32::from(*b)));
        Prepared::Features(row)
    }

    /// Pre-processes a file, reading only its size and up to one block from each end.
    pub fn prepare_file(&self, path: &Path) -> std::io::Result<Prepared> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(path)?;
        let size = usize::try_from(f.metadata()?.len()).map_err(std::io::Error::other)?;
        let n = size.min(self.block_size);
        let mut head = vec![0; n];
        f.read_exact(&mut head)?;
        let mut tail = vec![0; n];
        f.seek(SeekFrom::Start((size - n) as u64))?;
        f.read_exact(&mut tail)?;
        Ok(self.prepare_parts(size, &head, &tail))
    }

    /// Turns one row of model scores into a classification.
    pub fn classify(&self, scores: &[f32]) -> Result<Classification, String> {
        if scores.len() != self.labels.len() {
            return Err(format!(
                "expected {} scores, found {}",
                self.labels.len(),
                scores.len()
            ));
        }
        let (index, score) =
            scores
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, s)| {
                    if *s > best.1 {
                        (i, *s)
                    } else {
                        best
                    }
                });
        let dl = self.labels.get(index).cloned().ok_or("no label")?;
        let score = f64::from(score);
        let mut output = self
            .overwrite_map
            .get(&dl)
            .cloned()
            .unwrap_or_else(|| dl.clone());
        let threshold = self
            .thresholds
            .get(&dl)
            .copied()
            .unwrap_or(self.medium_confidence_threshold);
        if score < threshold {
            output = if self.is_text.get(&output).copied().unwrap_or(false) {
                "txt".into()
            } else {
                "unknown".into()
            };
        }
        Ok(Classification { dl, output, score })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Magika {
        Magika {
            beg_size: 4,
            end_size: 4,
            block_size: 16,
            padding_token: 256,
            min_file_size_for_dl: 3,
            medium_confidence_threshold: 0.5,
            labels: vec!["a".into(), "b".into(), "randomtxt".into()],
            thresholds: [("b".to_string(), 0.9)].into_iter().collect(),
            overwrite_map: [("randomtxt".to_string(), "txt".to_string())]
                .into_iter()
                .collect(),
            is_text: [("b".to_string(), true), ("a".to_string(), false)]
                .into_iter()
                .collect(),
        }
    }

    fn metadata(parameters: serde_json::Value) -> ModelMetadata {
        ModelMetadata {
            name: "magika".into(),
            versions: vec![],
            platform: String::new(),
            inputs: vec![],
            outputs: vec![],
            parameters: parameters.as_object().cloned(),
        }
    }

    #[test]
    fn the_enclaves_configuration_is_read_from_the_metadata() {
        let config = serde_json::json!({
            "beg_size": 4, "mid_size": 0, "end_size": 4, "use_inputs_at_offsets": false,
            "medium_confidence_threshold": 0.5, "min_file_size_for_dl": 3,
            "padding_token": 256, "block_size": 16,
            "target_labels_space": ["a", "b", "randomtxt"],
            "thresholds": {"b": 0.9}, "overwrite_map": {"randomtxt": "txt"},
        });
        let kb = serde_json::json!({"a": {"is_text": false}, "b": {"is_text": true}});
        let served =
            metadata(serde_json::json!({"magika": {"config": config, "content_types_kb": kb}}));
        assert_eq!(Magika::from_metadata(&served).unwrap(), toy());
    }

    #[test]
    fn metadata_without_the_configuration_is_refused_saying_what_is_missing() {
        let e = Magika::from_metadata(&metadata(serde_json::Value::Null)).unwrap_err();
        assert!(
            e.contains("no Magika configuration (parameters.magika)"),
            "{e}"
        );
        let e = Magika::from_metadata(&metadata(serde_json::json!({"magika": {"config": {}}})))
            .unwrap_err();
        assert!(e.contains("no \"content_types_kb\""), "{e}");
        let bad =
            serde_json::json!({"magika": {"config": {"beg_size": "x"}, "content_types_kb": {}}});
        let e = Magika::from_metadata(&metadata(bad)).unwrap_err();
        assert!(e.contains("Magika model config"), "{e}");
    }

    #[test]
    fn features_strip_python_whitespace_and_pad() {
        let m = toy();
        assert_eq!(
            m.prepare(b"\x0b\t hello world \n"),
            Prepared::Features(vec![104, 101, 108, 108, 111, 114, 108, 100])
        );
        assert_eq!(
            m.prepare(b"  abcd"),
            Prepared::Features(vec![97, 98, 99, 100, 97, 98, 99, 100])
        );
        assert_eq!(
            m.prepare(b"abcde"),
            Prepared::Features(vec![97, 98, 99, 100, 98, 99, 100, 101])
        );
    }

    #[test]
    fn tiny_and_whitespace_files_skip_the_model() {
        let m = toy();
        assert_eq!(m.prepare(b""), Magika::decided("empty"));
        assert_eq!(m.prepare(b"ab"), Magika::decided("txt"));
        assert_eq!(m.prepare(b"\xff\xfe"), Magika::decided("unknown"));
        assert_eq!(
            m.prepare(b"     ab"),
            Magika::decided("txt"),
            "stripped beginning shorter than the minimum"
        );
    }

    #[test]
    fn thresholds_and_overwrites() {
        let m = toy();
        assert_eq!(m.classify(&[0.6, 0.3, 0.1]).unwrap().output, "a");
        assert_eq!(
            m.classify(&[0.4, 0.3, 0.3]).unwrap().output,
            "unknown",
            "below the medium threshold, binary"
        );
        assert_eq!(
            m.classify(&[0.0, 0.8, 0.2]).unwrap().output,
            "txt",
            "below b's own threshold, text"
        );
        assert_eq!(
            m.classify(&[0.0, 0.0, 1.0]).unwrap().output,
            "txt",
            "overwrite map"
        );
        assert!(m.classify(&[1.0]).is_err());
    }
}
