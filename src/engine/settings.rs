//! Settings that several engine stages share, with no logic of their own: how a caption is
//! searched ([`BeamSettings`], [`EarlyStopping`]) and the attention geometry a model's config
//! declares ([`AttentionShape`]). Read by the model directory, the decoder and the searches.

/// `early_stopping`: when a beam search may stop before every beam is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `false` (the default): stop when the best running beam, scored at its current
    /// length, cannot beat the worst finished one.
    Heuristic,
    /// `true`: stop as soon as `num_beams` hypotheses are finished.
    Early,
    /// `"never"`: like `false`, but with a positive length penalty the running beam is scored
    /// at the longest length it could reach (the canonical beam search).
    Never,
}

impl EarlyStopping {
    /// As the configs write it: `true`, `false` or `"never"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Heuristic => "false",
            Self::Early => "true",
            Self::Never => "never",
        }
    }
}

/// The beam-search settings of a caption.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamSettings {
    /// 1: greedy decoding.
    pub num_beams: usize,
    /// Finished hypotheses are scored `sum of log-probs / new_tokens ^ length_penalty`.
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
}

impl Default for BeamSettings {
    fn default() -> Self {
        Self { num_beams: 1, length_penalty: 1.0, early_stopping: EarlyStopping::Heuristic }
    }
}

/// Attention geometry from config.json, used where the ONNX graph declares symbolic dims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub num_heads: usize,
    pub head_dim: usize,
}
