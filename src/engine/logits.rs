//! The logits processors of transformers' greedy `generate()` that a model's generation
//! settings can switch on, applied to one row's next-token scores exactly as
//! `GenerationMixin._get_logits_processor` orders and computes them (transformers 4.57.6):
//! repetition penalty, no-repeat n-grams, bad words, minimum length, minimum new tokens,
//! forced BOS, forced EOS, suppressed tokens and tokens suppressed at the start.
//!
//! `tokens` is a row's whole sequence so far (the start token included, as `input_ids` in
//! transformers), `max_length` the total length it may reach (prompt + new tokens).

use std::collections::HashSet;

/// The settings, each at its no-op value when unused.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogitsRules {
    /// `repetition_penalty` (1.0: off).
    pub repetition_penalty: Option<f32>,
    /// `no_repeat_ngram_size` (0: off).
    pub no_repeat_ngram_size: usize,
    /// `bad_words_ids`, without single-token entries that are a stop token (as transformers).
    pub bad_words_ids: Vec<Vec<i64>>,
    /// `min_length`: a total length, prompt included; the stop tokens are banned below it.
    pub min_length: usize,
    /// `min_new_tokens`: the stop tokens are banned until this many tokens were generated.
    pub min_new_tokens: usize,
    pub forced_bos_token_id: Option<i64>,
    pub forced_eos_token_ids: Vec<i64>,
    pub suppress_tokens: Vec<i64>,
    pub begin_suppress_tokens: Vec<i64>,
    /// The sequence length at which `begin_suppress_tokens` apply.
    pub begin_index: usize,
    /// The stop tokens (`eos_token_id`; BLIP's `sep_token_id`).
    pub stop_ids: Vec<i64>,
    /// The prompt length (`min_new_tokens` counts from here).
    pub prompt_len: usize,
}

impl LogitsRules {
    /// Whether any rule is on (else plain argmax, no copy of the scores).
    pub fn is_active(&self) -> bool {
        self.repetition_penalty.is_some()
            || self.no_repeat_ngram_size > 0
            || !self.bad_words_ids.is_empty()
            || self.min_length > 0
            || self.min_new_tokens > 0
            || self.forced_bos_token_id.is_some()
            || !self.forced_eos_token_ids.is_empty()
            || !self.suppress_tokens.is_empty()
            || !self.begin_suppress_tokens.is_empty()
    }

    /// Applies every rule to `scores` (one row's logits over the vocabulary).
    pub fn apply(&self, scores: &mut [f32], tokens: &[i64], max_length: usize) {
        let cur_len = tokens.len();
        let ban = |scores: &mut [f32], id: i64| {
            if let Some(score) = usize::try_from(id).ok().and_then(|i| scores.get_mut(i)) {
                *score = f32::NEG_INFINITY;
            }
        };
        if let Some(penalty) = self.repetition_penalty {
            let seen: HashSet<i64> = tokens.iter().copied().collect();
            for id in seen {
                if let Some(score) = usize::try_from(id).ok().and_then(|i| scores.get_mut(i)) {
                    *score = if *score < 0.0 { *score * penalty } else { *score / penalty };
                }
            }
        }
        if self.no_repeat_ngram_size > 0 {
            for id in banned_ngram_tokens(tokens, self.no_repeat_ngram_size) {
                ban(scores, id);
            }
        }
        for words in &self.bad_words_ids {
            if let Some((last, prefix)) = words.split_last()
                && tokens.ends_with(prefix)
            {
                ban(scores, *last);
            }
        }
        if cur_len < self.min_length {
            for &id in &self.stop_ids {
                ban(scores, id);
            }
        }
        if cur_len.saturating_sub(self.prompt_len) < self.min_new_tokens {
            for &id in &self.stop_ids {
                ban(scores, id);
            }
        }
        if let Some(bos) = self.forced_bos_token_id
            && cur_len == 1
        {
            force(scores, &[bos]);
        }
        if !self.forced_eos_token_ids.is_empty() && cur_len + 1 == max_length {
            force(scores, &self.forced_eos_token_ids);
        }
        for &id in &self.suppress_tokens {
            ban(scores, id);
        }
        if cur_len == self.begin_index {
            for &id in &self.begin_suppress_tokens {
                ban(scores, id);
            }
        }
    }
}

/// Every score −∞ except `ids`, which become 0.
fn force(scores: &mut [f32], ids: &[i64]) {
    scores.fill(f32::NEG_INFINITY);
    for &id in ids {
        if let Some(score) = usize::try_from(id).ok().and_then(|i| scores.get_mut(i)) {
            *score = 0.0;
        }
    }
}

/// Tokens that would repeat an n-gram of `tokens` (`NoRepeatNGramLogitsProcessor`).
fn banned_ngram_tokens(tokens: &[i64], n: usize) -> Vec<i64> {
    if tokens.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &tokens[tokens.len() + 1 - n..];
    tokens.windows(n).filter(|gram| &gram[..n - 1] == prefix).map(|gram| gram[n - 1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LogitsRules {
        LogitsRules { stop_ids: vec![0], prompt_len: 1, begin_index: 1, ..LogitsRules::default() }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_scores_once() {
        let rules = LogitsRules { repetition_penalty: Some(2.0), ..rules() };
        let mut scores = vec![1.0, -1.0, 4.0, 3.0];
        rules.apply(&mut scores, &[1, 2, 2], 100);
        assert_eq!(scores, vec![1.0, -2.0, 2.0, 3.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_what_followed_the_last_tokens() {
        assert_eq!(banned_ngram_tokens(&[5, 6, 7, 5, 6], 3), vec![7]);
        assert_eq!(banned_ngram_tokens(&[5, 6, 5], 2), vec![6]);
        assert!(banned_ngram_tokens(&[5], 3).is_empty());
    }

    #[test]
    fn lengths_forced_tokens_and_suppression() {
        let mixed = LogitsRules {
            min_new_tokens: 2,
            bad_words_ids: vec![vec![3], vec![1, 2]],
            suppress_tokens: vec![1],
            begin_suppress_tokens: vec![2],
            ..rules()
        };
        let mut scores = vec![5.0; 4];
        mixed.apply(&mut scores, &[9], 100);
        assert_eq!(scores, vec![f32::NEG_INFINITY; 4], "stop (min), 1 (suppressed), 2 (begin), 3 (bad)");
        let mut scores = vec![5.0; 4];
        mixed.apply(&mut scores, &[9, 4, 1], 100);
        assert_eq!(scores, vec![5.0, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY]);
        let forced = LogitsRules { forced_eos_token_ids: vec![0], forced_bos_token_id: Some(2), ..rules() };
        let mut scores = vec![5.0; 4];
        forced.apply(&mut scores, &[9], 100);
        assert_eq!(scores, vec![f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
        let mut scores = vec![5.0; 4];
        forced.apply(&mut scores, &[9, 1, 1], 4);
        assert_eq!(scores, vec![0.0, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY]);
    }
}
