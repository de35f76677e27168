//! Caption quality: the share of expected keywords a caption contains.
//!
//! Matching is on whole words, case-insensitive, so `red` is found in "a red circle" but not
//! in "a reddish circle". Pure functions only; the prober decides what to do with a score.

/// Which expected keywords a caption contains, and which it misses.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordMatch {
    pub found: Vec<String>,
    pub missing: Vec<String>,
}

impl KeywordMatch {
    /// Share of expected keywords found, 0.0 to 1.0 (1.0 when nothing is expected).
    pub fn score(&self) -> f64 {
        let expected = self.found.len() + self.missing.len();
        if expected == 0 { 1.0 } else { self.found.len() as f64 / expected as f64 }
    }
}

/// Splits a caption into lowercase words (letters and digits; everything else separates).
fn words(caption: &str) -> Vec<String> {
    caption.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Checks `caption` for each keyword. A keyword of several words (`left of`) must appear as
/// that sequence of words.
pub fn match_keywords(caption: &str, keywords: &[String]) -> KeywordMatch {
    let caption_words = words(caption);
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for keyword in keywords {
        let wanted = words(keyword);
        let present =
            !wanted.is_empty() && caption_words.windows(wanted.len()).any(|window| window == wanted.as_slice());
        if present { found.push(keyword.clone()) } else { missing.push(keyword.clone()) }
    }
    KeywordMatch { found, missing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scores_share_of_keywords_found() {
        let result =
            match_keywords("a red circle left of a blue square", &keywords(&["red", "circle", "blue", "square"]));
        assert_eq!(result.score(), 1.0);
        let result = match_keywords("a red circle", &keywords(&["red", "circle", "blue", "square"]));
        assert_eq!(result.score(), 0.5);
        assert_eq!(result.missing, keywords(&["blue", "square"]));
    }

    #[test]
    fn matches_whole_words_case_insensitively() {
        let result = match_keywords("A Reddish CIRCLE.", &keywords(&["red", "circle"]));
        assert_eq!(result.found, keywords(&["circle"]));
        assert_eq!(result.missing, keywords(&["red"]));
    }

    #[test]
    fn multi_word_keywords_match_as_phrases() {
        let result = match_keywords("a red circle left of a blue square", &keywords(&["left of", "square above"]));
        assert_eq!(result.found, keywords(&["left of"]));
    }

    #[test]
    fn nothing_expected_scores_one_and_empty_caption_zero() {
        assert_eq!(match_keywords("anything", &[]).score(), 1.0);
        assert_eq!(match_keywords("", &keywords(&["red"])).score(), 0.0);
    }
}
