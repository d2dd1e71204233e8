//! A text model's files: configuration, tokenizer, chat template, digest.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::chat::ChatTemplate;
use crate::text::Tokenizer;
use crate::LlmError;

/// The files of a text model directory, in the order they are digested.
pub const MODEL_FILES: [&str; 3] = ["model.onnx", "tokenizer.json", "kokon-llm.json"];

/// Domain separation of the model digest.
const DIGEST_LABEL: &[u8] = b"kokon text model v1";

/// `kokon-llm.json`: what the engine needs besides the decoder and tokenizer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name the model is served under.
    pub name: String,
    /// The GGUF architecture it was converted from.
    pub architecture: String,
    /// Decoder layers (each has a key and a value cache input).
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Vocabulary size (the length of the logits).
    pub vocab: usize,
    /// Context length: prompt and completion together.
    pub context: usize,
    /// Beginning-of-sequence token, when the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token: generation stops when it is sampled.
    pub eos_token_id: u32,
    /// Whether prompts start with the BOS token (the template may add it itself).
    pub add_bos: bool,
    /// The GGUF's Jinja chat template, verbatim.
    pub chat_template: String,
}

/// A loaded text model (everything but the ONNX Runtime session).
pub struct TextModel {
    /// Where its files are.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: ModelConfig,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template.
    pub template: ChatTemplate,
    digest: [u8; 32],
}

impl TextModel {
    /// Loads the model directory `dir` and digests its files.
    pub fn load(dir: &Path) -> Result<Self, LlmError> {
        let error = |path: &Path, reason: String| LlmError::Model {
            path: path.display().to_string(),
            reason,
        };
        let mut digest = Sha256::new();
        digest.update(DIGEST_LABEL);
        for file in MODEL_FILES {
            let path = dir.join(file);
            let mut hasher = Sha256::new();
            let mut reader = std::fs::File::open(&path).map_err(|e| {
                error(
                    &path,
                    format!("{e} (`just setup` converts the default model into .cache/models/)"),
                )
            })?;
            std::io::copy(&mut reader, &mut hasher).map_err(|e| error(&path, e.to_string()))?;
            digest.update(hasher.finalize());
        }
        let config_path = dir.join("kokon-llm.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| error(&config_path, e.to_string()))?;
        let config: ModelConfig =
            serde_json::from_str(&text).map_err(|e| error(&config_path, e.to_string()))?;
        if config.kv_heads == 0 || config.heads % config.kv_heads != 0 || config.head_dim == 0 {
            return Err(error(
                &config_path,
                format!(
                    "{} query heads cannot share {} key/value heads of size {}",
                    config.heads, config.kv_heads, config.head_dim
                ),
            ));
        }
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        if tokenizer.vocab_size() > config.vocab {
            return Err(error(
                &config_path,
                format!(
                    "the tokenizer has {} tokens, the decoder's vocabulary {}",
                    tokenizer.vocab_size(),
                    config.vocab
                ),
            ));
        }
        let name_of = |id: Option<u32>| id.and_then(|id| tokenizer.token(id)).unwrap_or_default();
        let template = ChatTemplate::new(
            &config.chat_template,
            name_of(config.bos_token_id),
            name_of(Some(config.eos_token_id)),
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            template,
            digest: digest.finalize().into(),
        })
    }

    /// The model's digest: SHA-256 over a label and the SHA-256 of each of
    /// [`MODEL_FILES`] in order. What clients pin and claims carry.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The decoder's path.
    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join("model.onnx")
    }

    /// The prompt tokens of a rendered conversation (with BOS when the model
    /// adds one).
    pub fn prompt_tokens(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut tokens = Vec::new();
        if self.config.add_bos {
            tokens.extend(self.config.bos_token_id);
        }
        tokens.extend(self.tokenizer.encode(text)?);
        Ok(tokens)
    }
}
