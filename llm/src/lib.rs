//! Text generation inside the enclave.
//!
//! A text model is a directory written by `scripts/llm/gguf_to_onnx.py` from a
//! GGUF file: `model.onnx` (a decoder with key/value-cache inputs and
//! outputs), `tokenizer.json` (the GGUF's byte-level BPE vocabulary) and
//! `kokon-llm.json` (shape, special tokens, the GGUF's Jinja chat template).
//! [`TextModel`] loads and digests those files; [`chat::ChatTemplate`] renders
//! conversations exactly as the template says; [`text`] tokenizes, turns
//! tokens back into text as they come and finds stop sequences;
//! [`sampling`] picks each next token (greedy, or temperature and top-p with
//! an optional seed); [`Engine`] runs the decoder with continuous batching:
//! each request's prompt is prefilled in chunks, then it joins the running
//! batch, where every step decodes one token for every sequence, and leaves it
//! when it ends, so a long answer never holds up a new one.
//!
//! Nothing here is specific to one model beyond its files.

pub mod chat;
pub mod engine;
pub mod model;
pub mod openai;
pub mod sampling;
pub mod text;

pub use engine::{
    CacheDevice, CallKind, Engine, EngineOptions, Event, FinishReason, Observer, Request, Stream,
};
pub use model::{ModelConfig, TextModel};

/// Why a text model could not be loaded or a generation could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// A model file is missing, unreadable or inconsistent.
    #[error("text model {path}: {reason}")]
    Model {
        /// The file or directory.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The chat template failed on these messages.
    #[error("chat template: {0}")]
    Template(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt and the requested completion do not fit the context.
    #[error("the prompt has {prompt} tokens and max_tokens is {max_tokens}: together they exceed the model's context of {context} tokens")]
    ContextTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Requested completion tokens.
        max_tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// A request parameter is out of range.
    #[error("{0}")]
    BadParameter(String),
    /// The engine has stopped (its thread ended).
    #[error("the generation engine has stopped")]
    Stopped,
}
