//! Tokens and text: the tokenizer, incremental detokenization (a token may
//! hold half a UTF-8 character) and stop sequences (text that could still
//! become one is held back).

use std::path::Path;

use crate::LlmError;

/// The model's tokenizer (Hugging Face `tokenizers`).
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, LlmError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| LlmError::Model {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self { inner })
    }

    /// The tokens of `text`; special tokens written in it (such as
    /// `<|im_start|>` from a chat template) are recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// The text of `ids`, without special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    /// The vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The text of one token as the vocabulary spells it.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Turns tokens into text as they are generated. Byte-level BPE splits
/// characters across tokens: text is released only once it decodes without a
/// dangling partial character.
#[derive(Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    /// Start of the window decoded for context (so spacing is right).
    prefix: usize,
    /// End of the text already released.
    read: usize,
}

impl Detokenizer {
    /// Adds a token; returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, LlmError> {
        self.ids.push(id);
        let window = self.ids.get(self.prefix..).unwrap_or_default();
        let read = self.ids.get(self.prefix..self.read).unwrap_or_default();
        let before = tokenizer.decode(read)?;
        let now = tokenizer.decode(window)?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            let new = now.get(before.len()..).unwrap_or_default().to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            return Ok(new);
        }
        Ok(String::new())
    }
}

/// Finds the earliest stop sequence in generated text.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// Stops at any of `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds generated text; returns what can be released and whether a stop
    /// sequence was found (the text before it is released, the rest dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = found {
            let out = self.held.get(..at).unwrap_or_default().to_string();
            self.held.clear();
            return (out, true);
        }
        // Hold back the longest tail that could still grow into a stop.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = self.held.get(i..).unwrap_or_default();
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held.get(..keep).unwrap_or_default().to_string();
        self.held.drain(..keep);
        (out, false)
    }

    /// The text still held back, released when generation ends without a stop.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_cut_the_text_and_hold_back_what_could_become_one() {
        let mut m = StopMatcher::new(&["\n\nUser:".into(), "END".into()]);
        assert_eq!(m.push("Hello"), ("Hello".into(), false));
        assert_eq!(m.push(" wor"), (" wor".into(), false));
        assert_eq!(m.push("ld\n"), ("ld".into(), false));
        assert_eq!(m.push("\nUs"), (String::new(), false));
        assert_eq!(m.push("er: hi"), (String::new(), true));
        let mut m = StopMatcher::new(&["END".into()]);
        assert_eq!(m.push("the EN"), ("the ".into(), false));
        assert_eq!(m.push("d"), ("ENd".into(), false));
        assert_eq!(m.push("xEN"), ("x".into(), false));
        assert_eq!(m.finish(), "EN");
        // Multi-byte text is cut on character boundaries.
        let mut m = StopMatcher::new(&["é!".into()]);
        assert_eq!(m.push("café"), ("caf".into(), false));
        assert_eq!(m.push("!"), (String::new(), true));
    }

    #[test]
    fn without_stops_everything_passes() {
        let mut m = StopMatcher::new(&[String::new()]);
        assert_eq!(m.push("abc"), ("abc".into(), false));
        assert_eq!(m.finish(), "");
    }
}
