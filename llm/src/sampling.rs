//! Choosing the next token from logits: greedy, or sampled with temperature
//! and nucleus (top-p) filtering from a ChaCha stream that a seed makes
//! reproducible.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::LlmError;

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token (greedy); above, logits are divided by it.
    pub temperature: f32,
    /// Sample only from the most likely tokens whose probabilities add up to
    /// this (1 = all).
    pub top_p: f32,
    /// Makes sampling reproducible; fresh randomness when absent.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
        }
    }
}

impl Sampling {
    /// Checks the ranges OpenAI's API allows (temperature 0..=2, top_p in (0, 1]).
    pub fn validate(&self) -> Result<(), LlmError> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(LlmError::BadParameter(format!(
                "temperature must be between 0 and 2, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(LlmError::BadParameter(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// The sampler of one sequence.
pub struct Sampler {
    sampling: Sampling,
    rng: ChaCha20Rng,
}

impl Sampler {
    /// A sampler for `sampling`.
    pub fn new(sampling: Sampling) -> Self {
        let rng = match sampling.seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_entropy(),
        };
        Self { sampling, rng }
    }

    /// The next token for `logits`.
    pub fn next(&mut self, logits: &[f32]) -> u32 {
        if self.sampling.temperature <= 0.0 {
            return argmax(logits);
        }
        let inverse = 1.0 / self.sampling.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) * inverse).exp()))
            .collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f32 = candidates.iter().map(|c| c.1).sum();
        let mut kept = 0.0;
        let mut cut = candidates.len();
        for (i, c) in candidates.iter().enumerate() {
            kept += c.1;
            if kept >= self.sampling.top_p * total {
                cut = i + 1;
                break;
            }
        }
        candidates.truncate(cut);
        // A uniform draw in [0, kept) over the kept candidates' mass.
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut target = unit as f32 * kept;
        for (id, weight) in &candidates {
            if target < *weight {
                return *id;
            }
            target -= weight;
        }
        candidates
            .last()
            .map(|c| c.0)
            .unwrap_or_else(|| argmax(logits))
    }
}

/// The index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits.get(best).copied().unwrap_or(f32::NEG_INFINITY) {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_first_maximum() {
        let mut s = Sampler::new(Sampling::default());
        assert_eq!(s.next(&[0.1, 3.0, -1.0, 3.0]), 1);
    }

    #[test]
    fn a_seed_makes_sampling_reproducible_and_top_p_limits_the_choice() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32) * 0.1).collect();
        let draw = |seed, top_p| {
            let mut s = Sampler::new(Sampling {
                temperature: 1.0,
                top_p,
                seed: Some(seed),
            });
            (0..200).map(|_| s.next(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 1.0), draw(7, 1.0));
        assert_ne!(draw(7, 1.0), draw(8, 1.0));
        let all = draw(7, 1.0);
        assert!(all.iter().any(|&t| t < 25), "full distribution is sampled");
        // The top 10% of the mass here is within the last handful of tokens.
        assert!(draw(7, 0.1).iter().all(|&t| t >= 44), "{:?}", draw(7, 0.1));
        // A tiny top_p is greedy.
        assert!(draw(3, 1e-6).iter().all(|&t| t == 49));
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        for (t, p) in [
            (-0.1, 1.0),
            (2.5, 1.0),
            (1.0, 0.0),
            (1.0, 1.5),
            (f32::NAN, 1.0),
        ] {
            let s = Sampling {
                temperature: t,
                top_p: p,
                seed: None,
            };
            assert!(s.validate().is_err(), "{t} {p}");
        }
        assert!(Sampling::default().validate().is_ok());
    }
}
