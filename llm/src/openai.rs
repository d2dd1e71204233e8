//! The OpenAI API over the engine: a request body in, a whole answer or a
//! stream of Server-Sent Events out, usage always counted, every refusal in
//! OpenAI's error object. Transport-free: the enclave's gateway seals what
//! this produces.

use kokon_wire::openai::{
    sse_event, ApiError, AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk,
    ChatCompletionRequest, ChunkChoice, Completion, CompletionChoice, CompletionRequest, Delta,
    GenerationParams, ModelCard, ModelList, Usage, SSE_DONE,
};

use crate::chat::Message;
use crate::engine::{Engine, Event, FinishReason, Request, Stream};
use crate::sampling::Sampling;
use crate::LlmError;

impl From<LlmError> for ApiError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::ContextTooLong { .. } => ApiError::invalid(e.to_string(), Some("messages"))
                .with_code("context_length_exceeded"),
            LlmError::BadParameter(m) => ApiError::invalid(m, None),
            LlmError::Template(m) => ApiError::invalid(m, Some("messages")),
            other => ApiError::server(other.to_string()),
        }
    }
}

/// Which endpoint a generation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

/// A generation under way, answered whole or streamed.
pub struct Generation {
    endpoint: Endpoint,
    id: String,
    created: i64,
    model: String,
    prompt_tokens: usize,
    include_usage: bool,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Most tokens it may generate (what credit must cover).
    pub max_tokens: usize,
    events: Stream,
    state: StreamState,
    generated: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Start,
    Content,
    Done,
    Ended,
}

/// The model list for `GET /v1/models`.
pub fn models(engine: &Engine, created: i64) -> ModelList {
    ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: engine.model().config.name.clone(),
            object: "model".into(),
            created,
            owned_by: "kokon".into(),
        }],
    }
}

fn check_model(engine: &Engine, asked: &str) -> Result<(), ApiError> {
    let served = &engine.model().config.name;
    if asked != served {
        return Err(ApiError {
            message: format!(
                "the model {asked:?} does not exist here; this enclave serves {served:?}"
            ),
            kind: "invalid_request_error".into(),
            param: Some("model".into()),
            code: Some("model_not_found".into()),
        });
    }
    Ok(())
}

/// Starts a generation for a `POST /v1/chat/completions` or
/// `/v1/completions` body. `id` is the answer's unique id (random).
pub fn start(
    engine: &Engine,
    endpoint: Endpoint,
    body: &[u8],
    id: &str,
    created: i64,
) -> Result<Generation, ApiError> {
    let model = engine.model();
    let (asked, params, prompt) = match endpoint {
        Endpoint::Chat => {
            let request = ChatCompletionRequest::parse(body)?;
            let params = request.params()?;
            let messages = request
                .messages
                .iter()
                .map(|m| Ok(Message::new(&m.role, &m.text()?)))
                .collect::<Result<Vec<_>, ApiError>>()?;
            let text = model.template.render(&messages, true)?;
            (request.model, params, text)
        }
        Endpoint::Completion => {
            let request = CompletionRequest::parse(body)?;
            let params = request.params()?;
            let text = request.prompt_text()?.to_string();
            (request.model, params, text)
        }
    };
    check_model(engine, &asked)?;
    let tokens = model.prompt_tokens(&prompt)?;
    let max_tokens = resolve_max_tokens(&params, tokens.len(), model.config.context)?;
    let prompt_tokens = tokens.len();
    let events = engine.submit(Request {
        prompt: tokens,
        max_tokens,
        sampling: Sampling {
            temperature: params.temperature,
            top_p: params.top_p,
            seed: params.seed,
        },
        stop: params.stop.clone(),
    })?;
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    Ok(Generation {
        endpoint,
        id: format!("{prefix}-{id}"),
        created,
        model: model.config.name.clone(),
        prompt_tokens,
        include_usage: params.include_usage,
        stream: params.stream,
        max_tokens,
        events,
        state: StreamState::Start,
        generated: 0,
    })
}

/// `max_tokens` as asked, or all the context leaves.
fn resolve_max_tokens(
    params: &GenerationParams,
    prompt: usize,
    context: usize,
) -> Result<usize, ApiError> {
    let left = context.saturating_sub(prompt);
    match params.max_tokens {
        Some(asked) => Ok(usize::try_from(asked).unwrap_or(usize::MAX)),
        None if left > 0 => Ok(left),
        None => Err(LlmError::ContextTooLong {
            prompt,
            max_tokens: 1,
            context,
        }
        .into()),
    }
}

fn reason_text(reason: FinishReason) -> String {
    match reason {
        FinishReason::Stop => "stop".into(),
        FinishReason::Length => "length".into(),
    }
}

impl Generation {
    /// Prompt tokens.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Tokens generated so far (what a stream cut off early is billed).
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Runs to the end; returns the whole answer's JSON and its usage.
    pub async fn whole(mut self) -> Result<(Vec<u8>, Usage), ApiError> {
        let mut text = String::new();
        loop {
            match self.events.next().await {
                Some(Event::Token { text: piece, .. }) => text.push_str(&piece),
                Some(Event::Finished {
                    reason,
                    text: tail,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    text.push_str(&tail);
                    let usage = Usage::new(prompt_tokens as u64, completion_tokens as u64);
                    let body = match self.endpoint {
                        Endpoint::Chat => serde_json::to_vec(&ChatCompletion {
                            id: self.id,
                            object: "chat.completion".into(),
                            created: self.created,
                            model: self.model,
                            choices: vec![ChatChoice {
                                index: 0,
                                message: AssistantMessage {
                                    role: "assistant".into(),
                                    content: text,
                                },
                                finish_reason: reason_text(reason),
                                logprobs: None,
                            }],
                            usage,
                        }),
                        Endpoint::Completion => serde_json::to_vec(&self.completion(
                            text,
                            Some(reason_text(reason)),
                            Some(usage),
                        )),
                    };
                    return body
                        .map(|b| (b, usage))
                        .map_err(|e| ApiError::server(e.to_string()));
                }
                Some(Event::Failed(e)) => return Err(ApiError::server(e)),
                None => return Err(ApiError::server("the generation ended without an answer")),
            }
        }
    }

    fn completion(&self, text: String, finish: Option<String>, usage: Option<Usage>) -> Completion {
        Completion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![CompletionChoice {
                index: 0,
                text,
                finish_reason: finish,
                logprobs: None,
            }],
            usage,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<String>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
                logprobs: None,
            }],
            usage: None,
        }
    }

    /// The next Server-Sent Event of a streamed answer (`None` after
    /// `data: [DONE]`), and the usage once known (with the last content
    /// event). A failure mid-stream is an event carrying OpenAI's error
    /// object, then the end.
    pub async fn next_event(&mut self) -> Option<(Vec<u8>, Option<Usage>)> {
        match self.state {
            StreamState::Start if self.endpoint == Endpoint::Chat => {
                self.state = StreamState::Content;
                let delta = Delta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                };
                return Some((sse_event(&self.chunk(delta, None)), None));
            }
            StreamState::Start => self.state = StreamState::Content,
            StreamState::Content => {}
            StreamState::Done => {
                self.state = StreamState::Ended;
                return Some((SSE_DONE.to_vec(), None));
            }
            StreamState::Ended => return None,
        }
        loop {
            let event = self.events.next().await;
            if let Some(Event::Token { .. }) = event {
                self.generated += 1;
            }
            match event {
                Some(Event::Token { text, .. }) if text.is_empty() => continue,
                Some(Event::Token { text, .. }) => {
                    let event = match self.endpoint {
                        Endpoint::Chat => sse_event(&self.chunk(
                            Delta {
                                role: None,
                                content: Some(text),
                            },
                            None,
                        )),
                        Endpoint::Completion => sse_event(&self.completion(text, None, None)),
                    };
                    return Some((event, None));
                }
                Some(Event::Finished {
                    reason,
                    text,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    let usage = Usage::new(prompt_tokens as u64, completion_tokens as u64);
                    let finish = Some(reason_text(reason));
                    let mut event = match self.endpoint {
                        Endpoint::Chat => {
                            let content = (!text.is_empty()).then_some(text);
                            sse_event(&self.chunk(
                                Delta {
                                    role: None,
                                    content,
                                },
                                finish,
                            ))
                        }
                        Endpoint::Completion => sse_event(&self.completion(text, finish, None)),
                    };
                    if self.include_usage {
                        event.extend(match self.endpoint {
                            Endpoint::Chat => sse_event(&ChatCompletionChunk {
                                choices: Vec::new(),
                                usage: Some(usage),
                                ..self.chunk(Delta::default(), None)
                            }),
                            Endpoint::Completion => sse_event(&Completion {
                                choices: Vec::new(),
                                usage: Some(usage),
                                ..self.completion(String::new(), None, None)
                            }),
                        });
                    }
                    self.state = StreamState::Done;
                    return Some((event, Some(usage)));
                }
                Some(Event::Failed(e)) => {
                    self.state = StreamState::Done;
                    return Some((
                        sse_event(&kokon_wire::openai::ErrorResponse {
                            error: ApiError::server(e),
                        }),
                        None,
                    ));
                }
                None => {
                    self.state = StreamState::Ended;
                    return None;
                }
            }
        }
    }
}
