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
//!
//! The configuration comes from the attested enclave with the model's
//! metadata ([`Magika::from_metadata`] of [`crate::Client::model_metadata`]),
//! so a client needs no local Magika:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use kokon_client::magika::{self, Magika, Prepared};
//! use kokon_client::{local, Client};
//!
//! let client = Client::new("http://127.0.0.1:8443");
//! let enclave = client.attest(&local::dev_policy()?).await?;
//! let magika = Magika::from_metadata(&client.model_metadata(&enclave).await?)?;
//! let label = match magika.prepare_file("README.md".as_ref())? {
//!     Prepared::Decided(decided) => decided,
//!     Prepared::Features(row) => {
//!         let (response, _receipt) = client.infer(&enclave, &magika::request(&[row])).await?;
//!         let scores = response
//!             .outputs
//!             .iter()
//!             .find(|o| o.name == magika::OUTPUT)
//!             .and_then(|o| o.f32_data())
//!             .ok_or("no scores")?;
//!         magika.classify(&scores)?
//!     }
//! };
//! println!("{}", label.output);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::Path;

use kokon_wire::kserve::{InferInput, InferRequest, ModelMetadata};
use serde::Deserialize;

/// The inference request for Magika's `rows` (each [`Magika::row_len`]
/// long, from [`Magika::prepare`]): one [`INPUT`] tensor of INT32, shape
/// `[rows, row_len]`, in binary (the binary tensor data extension), and
/// every output asked for in binary (`binary_data_output`).
/// [`crate::Client::infer`] decodes the binary scores, so
/// [`kokon_wire::kserve::InferTensor::f32_data`] reads them as it reads JSON
/// numbers.
///
/// ```
/// use kokon_client::magika;
/// use kokon_wire::kserve::Encoding;
///
/// let request = magika::request(&[vec![256; 8], vec![1; 8]]);
/// assert_eq!(request.inputs[0].shape, [2, 8]);
/// assert_eq!(request.inputs[0].data.encoding(), Encoding::Binary);
/// assert_eq!(request.output_encoding(magika::OUTPUT), Encoding::Binary);
/// ```
pub fn request<R: AsRef<[i32]>>(rows: &[R]) -> InferRequest {
    let width = rows.first().map(|r| r.as_ref().len()).unwrap_or(0);
    let flat: Vec<i32> = rows.iter().flat_map(|r| r.as_ref()).copied().collect();
    InferRequest {
        inputs: vec![InferInput::int32(
            INPUT,
            vec![
                i64::try_from(rows.len()).unwrap_or(i64::MAX),
                i64::try_from(width).unwrap_or(i64::MAX),
            ],
            &flat,
        )],
        binary_output: true,
        ..InferRequest::default()
    }
}

/// The model's input tensor name: the rows [`Magika::prepare`] makes go in
/// it (`INT32`, shape `[rows, row_len]`).
///
/// ```
/// use kokon_client::magika;
/// use kokon_wire::kserve::InferInput;
///
/// let row = vec![256; 8];
/// let input = InferInput::int32(magika::INPUT, vec![1, row.len() as i64], &row);
/// assert_eq!(input.name, "bytes");
/// ```
pub const INPUT: &str = "bytes";
/// The model's output tensor name: its scores, one row of
/// [`Magika::label_count`] per input row, for [`Magika::classify`].
///
/// ```
/// assert_eq!(kokon_client::magika::OUTPUT, "target_label");
/// ```
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

/// Magika's model configuration and content-type knowledge base: what
/// turns a file into the model's input row ([`Magika::prepare`]) and the
/// model's scores into a label ([`Magika::classify`]).
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
/// use kokon_client::magika::Prepared;
///
/// let Prepared::Features(row) = magika.prepare(b"%PDF-1.7 %%EOF") else {
///     panic!("long enough for the model");
/// };
/// assert_eq!(row.len(), magika.row_len());
/// // The model's scores for the row (pdf, python, randomtxt):
/// let scores = [0.97, 0.02, 0.01];
/// assert_eq!(magika.classify(&scores).unwrap().output, "pdf");
/// ```
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

/// A classification, as Magika reports it: from [`Magika::classify`], or
/// decided without the model ([`Prepared::Decided`]).
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
/// let c = magika.classify(&[0.1, 0.8, 0.1]).unwrap();
/// // The model says python, but not surely enough for python's threshold:
/// // a text file.
/// assert_eq!((c.dl.as_str(), c.output.as_str()), ("python", "txt"));
/// assert!((c.score - 0.8).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Classification {
    /// The model's raw label (`undefined` when the model was not run).
    pub dl: String,
    /// The final label.
    pub output: String,
    /// The model's score for `dl` (1.0 when the model was not run).
    pub score: f64,
}

/// What pre-processing decided: a label already, or the row the model
/// must score.
///
/// ```
/// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
/// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
/// use kokon_client::magika::Prepared;
///
/// for content in [&b""[..], b"ab", b"%PDF-1.7 %%EOF"] {
///     match magika.prepare(content) {
///         Prepared::Decided(c) => println!("{} without the model", c.output),
///         Prepared::Features(row) => println!("the model scores {row:?}"),
///     }
/// }
/// ```
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
    /// Loads the configuration from an installed `magika` Python package
    /// directory (its `models/standard_v3_3/config.min.json` and
    /// `config/content_types_kb.min.json`).
    ///
    /// # Errors
    ///
    /// A message naming the file that cannot be read or parsed, or saying
    /// the configuration is one this port does not support.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kokon_client::{local, magika::Magika};
    ///
    /// // The package `just setup` installed.
    /// let magika = Magika::load(&local::setup_path("KOKON_MAGIKA_DIR")?)?;
    /// assert_eq!(magika.block_size(), 4096);
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Errors
    ///
    /// A message saying what is missing (`parameters.magika`, `config`,
    /// `content_types_kb`) or unreadable, or that the configuration is one
    /// this port does not support.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> Result<(), String> {
    /// use kokon_client::magika::Magika;
    ///
    /// # let metadata = offline::magika_metadata();
    /// // let metadata = client.model_metadata(&enclave).await?;
    /// let magika = Magika::from_metadata(&metadata)?;
    /// assert_eq!(magika.label_count(), 3);
    ///
    /// let bare = kokon_wire::kserve::ModelMetadata { parameters: None, ..metadata };
    /// let why = Magika::from_metadata(&bare).unwrap_err();
    /// assert!(why.contains("parameters.magika"), "{why}");
    /// # Ok(()) }
    /// ```
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

    /// Width of one input row: the bytes from the file's beginning and from
    /// its end the model reads.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
    /// assert_eq!(magika.row_len(), 4 + 4);
    /// ```
    pub fn row_len(&self) -> usize {
        self.beg_size + self.end_size
    }

    /// How many bytes to read from each end of a file (for
    /// [`Magika::prepare_parts`]).
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
    /// let file_size = 1_000_000;
    /// let read = magika.block_size().min(file_size);
    /// assert_eq!(read, 16);
    /// ```
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Number of labels the model scores: the length of a row of scores
    /// [`Magika::classify`] takes.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
    /// assert_eq!(magika.label_count(), 3);
    /// assert!(magika.classify(&vec![0.0; magika.label_count() + 1]).is_err());
    /// ```
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

    /// Pre-processes a whole file's content (only its first and last
    /// [`Magika::block_size`] bytes count).
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
    /// use kokon_client::magika::Prepared;
    ///
    /// let row = b"%PDF%EOF".map(i32::from).to_vec();
    /// assert_eq!(magika.prepare(b"%PDF-1.7 %%EOF"), Prepared::Features(row));
    /// // Too short for the model: text if it is UTF-8.
    /// let Prepared::Decided(c) = magika.prepare(b"ab") else { panic!() };
    /// assert_eq!(c.output, "txt");
    /// ```
    pub fn prepare(&self, content: &[u8]) -> Prepared {
        let n = content.len().min(self.block_size);
        let head = content.get(..n).unwrap_or(content);
        let tail = content.get(content.len() - n..).unwrap_or(content);
        self.prepare_parts(content.len(), head, tail)
    }

    /// Pre-processes a file of `size` bytes given its first and last
    /// `min(block_size, size)` bytes: for content that is not at hand
    /// whole.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
    /// let head = *b"%PDF-1.7\n1 0 obj"; // block_size (16) bytes from each end
    /// let tail = *b"\nstartxref\n%%EOF";
    /// let whole = [&head[..], &[b'x'; 1000], &tail[..]].concat();
    /// assert_eq!(magika.prepare_parts(whole.len(), &head, &tail), magika.prepare(&whole));
    /// ```
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
    ///
    /// # Errors
    ///
    /// The I/O error when the file cannot be opened or read.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # fn main() -> std::io::Result<()> {
    /// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
    /// let file = std::env::temp_dir().join(format!("kokon-doc-magika-{}", std::process::id()));
    /// std::fs::write(&file, b"%PDF-1.7 %%EOF")?;
    /// assert_eq!(magika.prepare_file(&file)?, magika.prepare(b"%PDF-1.7 %%EOF"));
    /// # std::fs::remove_file(&file)?;
    /// # Ok(()) }
    /// ```
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

    /// Turns one row of model scores into a classification: the best
    /// label, overwritten as Magika's map says, and `txt` or `unknown`
    /// when its score is under the label's threshold.
    ///
    /// # Errors
    ///
    /// A message when there are not [`Magika::label_count`] scores.
    ///
    /// ```
    /// # mod offline { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doctests/offline.rs")); }
    /// # let magika = offline::magika(); // rows of 4 + 4 bytes; labels pdf, python, randomtxt
    /// let label = |scores: &[f32]| magika.classify(scores).unwrap().output;
    /// assert_eq!(label(&[0.9, 0.05, 0.05]), "pdf");
    /// assert_eq!(label(&[0.4, 0.3, 0.3]), "unknown", "unsure, and pdf is binary");
    /// assert_eq!(label(&[0.0, 0.0, 1.0]), "txt", "randomtxt is reported as txt");
    /// assert!(magika.classify(&[1.0]).is_err());
    /// ```
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
            labels: vec!["pdf".into(), "python".into(), "randomtxt".into()],
            thresholds: [("python".to_string(), 0.9)].into_iter().collect(),
            overwrite_map: [("randomtxt".to_string(), "txt".to_string())]
                .into_iter()
                .collect(),
            is_text: [
                ("pdf".to_string(), false),
                ("python".to_string(), true),
                ("txt".to_string(), true),
            ]
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
        // The toy configuration the doctests use, as the enclave serves it.
        let toy_json: serde_json::Value =
            serde_json::from_str(include_str!("../doctests/magika-toy.json")).unwrap();
        let served = metadata(serde_json::json!({ "magika": toy_json }));
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
        assert_eq!(m.classify(&[0.6, 0.3, 0.1]).unwrap().output, "pdf");
        assert_eq!(
            m.classify(&[0.4, 0.3, 0.3]).unwrap().output,
            "unknown",
            "below the medium threshold, binary"
        );
        assert_eq!(
            m.classify(&[0.0, 0.8, 0.2]).unwrap().output,
            "txt",
            "below python's own threshold, text"
        );
        assert_eq!(
            m.classify(&[0.0, 0.0, 1.0]).unwrap().output,
            "txt",
            "overwrite map"
        );
        assert!(m.classify(&[1.0]).is_err());
    }
}
