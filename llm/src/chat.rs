//! Chat templates: a conversation rendered exactly as the model's Jinja
//! template says, with the conventions of Hugging Face `transformers` (which
//! wrote them): `trim_blocks` and `lstrip_blocks`, `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`, and
//! Python's string methods (`minijinja-contrib`'s pycompat).

use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::LlmError;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (the template decides what it accepts).
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat";

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts of those tokens.
    pub fn new(source: &str, bos_token: String, eos_token: String) -> Result<Self, LlmError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| {
                LlmError::Template(format!("the model's template does not compile: {e}"))
            })?;
        Ok(Self {
            env,
            bos_token,
            eos_token,
        })
    }

    /// Renders `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| LlmError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| LlmError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML, String::new(), "<|im_end|>".into()).unwrap()
    }

    #[test]
    fn renders_chatml_with_a_default_system_prompt() {
        let text = chatml()
            .render(&[Message::new("user", "hi")], true)
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let own_system = chatml()
            .render(
                &[
                    Message::new("system", "Be brief."),
                    Message::new("user", "hi"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(
            own_system,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn follows_transformers_conventions() {
        // trim_blocks and lstrip_blocks: block tags leave no whitespace behind.
        let t = ChatTemplate::new(
            "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content.strip() }}]{{ eos_token }}\n  {% endif %}\n{% endfor %}",
            "<s>".into(),
            "</s>".into(),
        )
        .unwrap();
        assert_eq!(
            t.render(
                &[Message::new("user", "  a  "), Message::new("system", "x")],
                false
            )
            .unwrap(),
            "[a]</s>\n"
        );
    }

    #[test]
    fn a_template_exception_is_an_error_with_its_message() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}",
            String::new(),
            String::new(),
        )
        .unwrap();
        let err = t
            .render(&[Message::new("assistant", "hello")], true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Conversations must start with a user message"),
            "{err}"
        );
    }

    #[test]
    fn a_broken_template_is_refused_at_load() {
        let err = ChatTemplate::new("{% for %}", String::new(), String::new())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not compile"), "{err}");
    }
}
