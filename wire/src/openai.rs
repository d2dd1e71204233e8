//! The OpenAI API's messages, as clients and SDKs send and expect them
//! inside the OHTTP envelope: chat completions and (legacy) completions,
//! whole and streamed as Server-Sent Events, the model list, and OpenAI's
//! error object.
//!
//! Parsing is strict where OpenAI's is: an unknown field is a 400 that names
//! it, and a known parameter kokon does not implement (`n` > 1, penalties,
//! tools, log probabilities...) is refused by name rather than ignored, so a
//! client never gets an answer computed differently from what it asked.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/chat/completions`.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// `POST /v1/completions`.
pub const COMPLETIONS_PATH: &str = "/v1/completions";
/// `GET /v1/models`.
pub const MODELS_PATH: &str = "/v1/models";
/// The content type of a streamed answer.
pub const EVENT_STREAM: &str = "text/event-stream";
/// Most stop sequences per request (OpenAI's limit).
pub const MAX_STOP_SEQUENCES: usize = 4;

/// OpenAI's error object: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ApiError,
}

/// What went wrong, in OpenAI's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// For a person.
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `server_error`...
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault, when one is.
    pub param: Option<String>,
    /// A stable code (`model_not_found`, `context_length_exceeded`...), when one applies.
    pub code: Option<String>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            message: message.into(),
            kind: "invalid_request_error".into(),
            param: param.map(String::from),
            code: None,
        }
    }

    /// A `not_found_error` (an unknown route, no text model).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: "not_found_error".into(),
            param: None,
            code: None,
        }
    }

    /// A `server_error`: the server's fault, not the request's.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: "server_error".into(),
            param: None,
            code: None,
        }
    }

    /// The HTTP status that carries it: 404 for what does not exist, 400
    /// for the rest of the client's mistakes, 500 for the server's.
    pub fn status(&self) -> u16 {
        match (self.kind.as_str(), self.code.as_deref()) {
            ("not_found_error", _) | (_, Some("model_not_found")) => 404,
            ("invalid_request_error", _) => 400,
            _ => 500,
        }
    }

    /// With a code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The body that carries it.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorResponse {
            error: self.clone(),
        })
        .unwrap_or_default()
    }
}

/// A chat message as clients send it: content is a string or an array of
/// text parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// The text, or its parts.
    pub content: MessageContent,
    /// An optional participant name (accepted, not used by the templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Message content: a string or `[{"type": "text", "text": ...}]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (only text parts are supported).
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// Must be `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub text: Option<String>,
}

impl ChatMessage {
    /// A text message from `role`.
    pub fn text_from(role: &str, text: &str) -> Self {
        Self {
            role: role.into(),
            content: MessageContent::Text(text.into()),
            name: None,
        }
    }

    /// The message's text; non-text parts are refused.
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            MessageContent::Text(t) => Ok(t.clone()),
            MessageContent::Parts(parts) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    (kind, _) => Err(ApiError::invalid(
                        format!("content part of type {kind:?} is not supported: this model reads text parts only"),
                        Some("messages"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|t| t.concat()),
        }
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Up to four.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences, checked against OpenAI's limit.
    pub fn sequences(stop: &Option<Stop>) -> Result<Vec<String>, ApiError> {
        let list = match stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if list.len() > MAX_STOP_SEQUENCES {
            return Err(ApiError::invalid(
                format!(
                    "stop has {} sequences; at most {MAX_STOP_SEQUENCES} are allowed",
                    list.len()
                ),
                Some("stop"),
            ));
        }
        Ok(list)
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the usage (and no choices).
    #[serde(default)]
    pub include_usage: bool,
}

/// The generation parameters both endpoints share.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationParams {
    /// Most tokens to generate (None: what the context leaves).
    pub max_tokens: Option<u64>,
    /// Sampling temperature (OpenAI's default is 1).
    pub temperature: f32,
    /// Nucleus sampling mass (default 1).
    pub top_p: f32,
    /// Reproducible sampling.
    pub seed: Option<u64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Stream as Server-Sent Events.
    pub stream: bool,
    /// Streaming options.
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    /// The model's name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Deprecated name of `max_completion_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling, (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Stream the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Choices to generate (only 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// An end-user identifier (accepted; never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Not implemented: refused when set to anything but its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Not implemented: refused when set to anything but its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Not implemented: refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Not implemented: refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    /// Not implemented: refused unless `{"type": "text"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
}

/// `POST /v1/completions` (legacy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// The model's name.
    pub model: String,
    /// The prompt: a string, or a list of one string.
    pub prompt: Prompt,
    /// Most tokens to generate (OpenAI's default is 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling, (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Stream the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Choices to generate (only 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// An end-user identifier (accepted; never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Not implemented: refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Not implemented: refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// Not implemented: refused when set to anything but its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Not implemented: refused when set to anything but its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
}

/// A completion prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One prompt.
    Text(String),
    /// A batch of prompts (only one is supported).
    Batch(Vec<String>),
}

/// OpenAI's legacy completions default to 16 tokens.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u64 = 16;

fn unsupported(param: &str, why: &str) -> ApiError {
    ApiError::invalid(
        format!("{param} is not supported by this server: {why}"),
        Some(param),
    )
}

fn common(
    n: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    penalties: [(&str, Option<f32>); 2],
) -> Result<(f32, f32), ApiError> {
    if n.is_some_and(|n| n != 1) {
        return Err(unsupported("n", "one choice per request"));
    }
    for (name, value) in penalties {
        if value.is_some_and(|v| v != 0.0) {
            return Err(unsupported(
                name,
                "sampling uses temperature, top_p and seed only",
            ));
        }
    }
    let temperature = temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("temperature must be between 0 and 2, got {temperature}"),
            Some("temperature"),
        ));
    }
    let top_p = top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            format!("top_p must be greater than 0 and at most 1, got {top_p}"),
            Some("top_p"),
        ));
    }
    Ok((temperature, top_p))
}

fn max_tokens(value: Option<u64>, param: &str) -> Result<Option<u64>, ApiError> {
    match value {
        Some(0) => Err(ApiError::invalid(
            format!("{param} must be at least 1"),
            Some(param),
        )),
        other => Ok(other),
    }
}

impl ChatCompletionRequest {
    /// A request for `model` on `messages`, every parameter at its default.
    pub fn new(model: &str, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            max_tokens: None,
            max_completion_tokens: None,
            temperature: None,
            top_p: None,
            seed: None,
            stop: None,
            stream: None,
            stream_options: None,
            n: None,
            user: None,
            frequency_penalty: None,
            presence_penalty: None,
            logprobs: None,
            tools: None,
            response_format: None,
        }
    }

    /// Parses a request body, with OpenAI's errors.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("invalid chat completion request: {e}"), None))
    }

    /// The generation parameters, checked.
    pub fn params(&self) -> Result<GenerationParams, ApiError> {
        let (temperature, top_p) = common(
            self.n,
            self.temperature,
            self.top_p,
            [
                ("frequency_penalty", self.frequency_penalty),
                ("presence_penalty", self.presence_penalty),
            ],
        )?;
        if self.logprobs == Some(true) {
            return Err(unsupported(
                "logprobs",
                "log probabilities are not returned",
            ));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(unsupported("tools", "this model does not call tools"));
        }
        if let Some(format) = &self.response_format {
            if format.get("type").and_then(Value::as_str) != Some("text") {
                return Err(unsupported("response_format", "only {\"type\": \"text\"}"));
            }
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages must not be empty",
                Some("messages"),
            ));
        }
        let max = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => max_tokens(Some(m), "max_completion_tokens")?,
            (None, m) => max_tokens(m, "max_tokens")?,
        };
        Ok(GenerationParams {
            max_tokens: max,
            temperature,
            top_p,
            seed: self.seed,
            stop: Stop::sequences(&self.stop)?,
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
        })
    }
}

impl CompletionRequest {
    /// A request for `model` on `prompt`, every parameter at its default.
    pub fn new(model: &str, prompt: &str) -> Self {
        Self {
            model: model.into(),
            prompt: Prompt::Text(prompt.into()),
            max_tokens: None,
            temperature: None,
            top_p: None,
            seed: None,
            stop: None,
            stream: None,
            stream_options: None,
            n: None,
            user: None,
            echo: None,
            logprobs: None,
            frequency_penalty: None,
            presence_penalty: None,
        }
    }

    /// Parses a request body, with OpenAI's errors.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("invalid completion request: {e}"), None))
    }

    /// The prompt text.
    pub fn prompt_text(&self) -> Result<&str, ApiError> {
        match &self.prompt {
            Prompt::Text(t) => Ok(t),
            Prompt::Batch(v) => match v.as_slice() {
                [one] => Ok(one),
                _ => Err(unsupported(
                    "prompt",
                    "one prompt per request (a list of exactly one string)",
                )),
            },
        }
    }

    /// The generation parameters, checked.
    pub fn params(&self) -> Result<GenerationParams, ApiError> {
        let (temperature, top_p) = common(
            self.n,
            self.temperature,
            self.top_p,
            [
                ("frequency_penalty", self.frequency_penalty),
                ("presence_penalty", self.presence_penalty),
            ],
        )?;
        if self.echo == Some(true) {
            return Err(unsupported("echo", "the prompt is not echoed"));
        }
        if self.logprobs.is_some() {
            return Err(unsupported(
                "logprobs",
                "log probabilities are not returned",
            ));
        }
        Ok(GenerationParams {
            max_tokens: Some(
                max_tokens(self.max_tokens, "max_tokens")?
                    .unwrap_or(COMPLETIONS_DEFAULT_MAX_TOKENS),
            ),
            temperature,
            top_p,
            seed: self.seed,
            stop: Stop::sequences(&self.stop)?,
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
        })
    }
}

/// Token counts, in every answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage of `prompt` and `completion` tokens.
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
        }
    }
}

/// The assistant's message in a whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: String,
    /// The generated text.
    pub content: String,
}

/// One choice of a whole chat answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: AssistantMessage,
    /// `stop` or `length`.
    pub finish_reason: String,
    /// Always null.
    pub logprobs: Option<Value>,
}

/// A whole chat answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model's name.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// The change a stream chunk brings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant`, in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a stream chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What changed.
    pub delta: Delta,
    /// Set in the last content chunk.
    pub finish_reason: Option<String>,
    /// Always null.
    pub logprobs: Option<Value>,
}

/// A chunk of a streamed chat answer (`data:` of one Server-Sent Event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same for every chunk of a stream.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model's name.
    pub model: String,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Token counts: only in the last chunk, when `include_usage` asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One choice of a legacy completion (whole or chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// Always 0.
    pub index: u32,
    /// The generated text (or its new part, streamed).
    pub text: String,
    /// `stop` or `length` at the end; null in the chunks before.
    pub finish_reason: Option<String>,
    /// Always null.
    pub logprobs: Option<Value>,
}

/// A legacy completion, whole or one chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// `cmpl-...`.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model's name.
    pub model: String,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (whole answers; the last chunk when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One model in `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Its name.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix seconds (when the enclave loaded it).
    pub created: i64,
    /// Who serves it.
    pub owned_by: String,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelCard>,
}

/// One Server-Sent Event carrying `value` as JSON.
pub fn sse_event(value: &impl Serialize) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend(serde_json::to_vec(value).unwrap_or_default());
    out.extend(b"\n\n");
    out
}

/// The event that ends a stream.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// The data of the event that ends a stream.
pub const DONE_DATA: &str = "[DONE]";

/// Most bytes of one Server-Sent Event.
pub const MAX_SSE_EVENT: usize = 1 << 20;

/// Splits Server-Sent Events as their bytes arrive, in any split, and
/// yields each event's data (its `data:` lines joined). Comments and other
/// fields are skipped; an event over [`MAX_SSE_EVENT`] or not UTF-8 is an
/// error.
#[derive(Debug, Default)]
pub struct SseDecoder {
    pending: Vec<u8>,
}

impl SseDecoder {
    /// Feeds bytes; returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            let text = std::str::from_utf8(event.get(..end).unwrap_or_default())
                .map_err(|_| "a Server-Sent Event is not UTF-8".to_string())?;
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        if self.pending.len() > MAX_SSE_EVENT {
            return Err(format!("a Server-Sent Event exceeds {MAX_SSE_EVENT} bytes"));
        }
        Ok(events)
    }

    /// The end of the stream: an error when it stopped inside an event.
    pub fn finish(&self) -> Result<(), String> {
        if self.pending.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            Err("the event stream ended inside an event".into())
        }
    }
}

/// The `data` of one Server-Sent Event, framed (the inverse of
/// [`SseDecoder`] for one-line data).
pub fn sse_data(data: &str) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

#[cfg(test)]
mod sse_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_are_split_in_any_split_and_bounded() {
        let stream =
            b": comment\n\ndata: {\"a\":1}\n\nevent: x\ndata: one\ndata:two\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut d = SseDecoder::default();
            let mut events = d.push(&stream[..cut]).unwrap();
            events.extend(d.push(&stream[cut..]).unwrap());
            d.finish().unwrap();
            assert_eq!(events, ["{\"a\":1}", "one\ntwo", DONE_DATA]);
        }
        let mut d = SseDecoder::default();
        assert!(d.push(b"data: x").unwrap().is_empty());
        assert!(d.finish().unwrap_err().contains("inside an event"));
        assert!(d
            .push(&vec![b'a'; MAX_SSE_EVENT + 1])
            .unwrap_err()
            .contains("exceeds"));
        assert!(SseDecoder::default()
            .push(b"data: \xff\n\n")
            .unwrap_err()
            .contains("UTF-8"));
        assert_eq!(SseDecoder::default().push(&sse_data("{}")).unwrap(), ["{}"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(json: &str) -> Result<GenerationParams, ApiError> {
        ChatCompletionRequest::parse(json.as_bytes())?.params()
    }

    #[test]
    fn a_chat_request_parses_with_openai_defaults() {
        let p = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(
            p,
            GenerationParams {
                max_tokens: None,
                temperature: 1.0,
                top_p: 1.0,
                seed: None,
                stop: vec![],
                stream: false,
                include_usage: false,
            }
        );
        let p = chat(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
            "max_tokens":5,"max_completion_tokens":7,"temperature":0,"top_p":0.5,"seed":3,"stop":"\n",
            "stream":true,"stream_options":{"include_usage":true},"n":1,"user":"u","frequency_penalty":0}"#)
        .unwrap();
        assert_eq!(p.max_tokens, Some(7), "max_completion_tokens wins");
        assert_eq!((p.temperature, p.top_p, p.seed), (0.0, 0.5, Some(3)));
        assert_eq!(p.stop, vec!["\n".to_string()]);
        assert!(p.stream && p.include_usage);
        let r = ChatCompletionRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].text().unwrap(), "ab");
    }

    #[test]
    fn every_refusal_names_its_parameter() {
        let base = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
        for (extra, param, needle) in [
            (r#""n":2"#, Some("n"), "n is not supported"),
            (
                r#""temperature":2.5"#,
                Some("temperature"),
                "between 0 and 2",
            ),
            (r#""top_p":0"#, Some("top_p"), "greater than 0"),
            (r#""max_tokens":0"#, Some("max_tokens"), "at least 1"),
            (
                r#""presence_penalty":0.5"#,
                Some("presence_penalty"),
                "not supported",
            ),
            (r#""logprobs":true"#, Some("logprobs"), "not supported"),
            (
                r#""tools":[{"type":"function"}]"#,
                Some("tools"),
                "not supported",
            ),
            (
                r#""response_format":{"type":"json_object"}"#,
                Some("response_format"),
                "not supported",
            ),
            (r#""stop":["a","b","c","d","e"]"#, Some("stop"), "at most 4"),
            (r#""bogus":1"#, None, "unknown field `bogus`"),
        ] {
            let err = chat(&format!("{{{base},{extra}}}")).unwrap_err();
            assert_eq!(err.param.as_deref(), param, "{extra}: {err:?}");
            assert!(err.message.contains(needle), "{extra}: {}", err.message);
            assert_eq!(err.kind, "invalid_request_error");
        }
        let err = chat(r#"{"model":"m","messages":[]}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
        let err = chat("{not json").unwrap_err();
        assert!(
            err.message.starts_with("invalid chat completion request"),
            "{err:?}"
        );
        let image = ChatCompletionRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
        );
        assert!(image.is_err() || image.unwrap().messages[0].text().is_err());
    }

    #[test]
    fn completions_default_to_16_tokens_and_one_prompt() {
        let r = CompletionRequest::parse(br#"{"model":"m","prompt":"Once"}"#).unwrap();
        assert_eq!(r.params().unwrap().max_tokens, Some(16));
        assert_eq!(r.prompt_text().unwrap(), "Once");
        let r = CompletionRequest::parse(br#"{"model":"m","prompt":["a","b"]}"#).unwrap();
        assert_eq!(
            r.prompt_text().unwrap_err().param.as_deref(),
            Some("prompt")
        );
        let r = CompletionRequest::parse(br#"{"model":"m","prompt":"a","echo":true}"#).unwrap();
        assert_eq!(r.params().unwrap_err().param.as_deref(), Some("echo"));
    }

    #[test]
    fn events_are_server_sent_events() {
        let usage = Usage::new(3, 4);
        assert_eq!(usage.total_tokens, 7);
        let event = sse_event(&usage);
        assert_eq!(
            event,
            b"data: {\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}\n\n"
        );
        assert_eq!(ApiError::invalid("bad", None).status(), 400);
        assert_eq!(
            ApiError::invalid("m", Some("model"))
                .with_code("model_not_found")
                .status(),
            404
        );
        assert_eq!(ApiError::not_found("route").status(), 404);
        assert_eq!(ApiError::server("oops").status(), 500);
        let body = ApiError::invalid("bad", Some("x")).with_code("c").body();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": "c"}})
        );
    }
}
