//! Shadow traffic: a share of the routed caption requests is captioned once more by the shadow
//! variant after the answer is on its way, and the two captions are compared. It never delays
//! an answer: copies wait in their own bounded queue (a semaphore), and a copy that finds it
//! full is dropped and counted. This module decides and counts; the engine captions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::AppState;
use super::metrics::ShadowLabels;
use crate::config::ShadowConfig;
use crate::protocol::shadow::ShadowReport;

/// The shadow variant, its queue and its counts.
pub struct Shadow {
    pub model: String,
    pub share: f64,
    places: Arc<Semaphore>,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    agreed: AtomicU64,
    differed: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// One request to copy.
pub struct Copy {
    pub image: Bytes,
    pub max_new_tokens: Option<usize>,
    pub num_beams: Option<usize>,
    /// The caption the client got.
    pub answered: String,
}

impl Shadow {
    pub fn new(config: &ShadowConfig) -> Self {
        Self {
            model: config.model.to_string(),
            share: config.share.0,
            places: Arc::new(Semaphore::new(config.queue_capacity.get())),
            counts: Counts::default(),
        }
    }

    /// Whether this routed request gets a copy (a `share` of them, at random).
    pub fn wants_copy(&self) -> bool {
        self.share >= 1.0 || fastrand::f64() < self.share
    }

    /// Captions `copy` on the shadow variant in the background, or drops it when the queue is full.
    pub fn mirror(state: &Arc<AppState>, copy: Copy) {
        let Some(shadow) = &state.shadow else { return };
        let Ok(place) = Arc::clone(&shadow.places).try_acquire_owned() else {
            shadow.count(state, "dropped");
            return;
        };
        let Some(engine) = state.variants.get(&shadow.model).and_then(|v| v.engine.get()).cloned() else {
            shadow.count(state, "failed");
            return;
        };
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let _place = place;
            // Let the answer go out first.
            tokio::task::yield_now().await;
            let Some(shadow) = &state.shadow else { return };
            match engine.caption(copy.image, copy.max_new_tokens, copy.num_beams).await {
                Ok(caption) => {
                    state.metrics.observe_caption(
                        &shadow.model,
                        &caption.timings,
                        caption.token_ids.len(),
                        caption.batch_size,
                    );
                    let agreed = same_caption(&caption.text, &copy.answered);
                    shadow.count(&state, if agreed { "agreed" } else { "differed" });
                    if !agreed {
                        tracing::debug!(answered = %copy.answered, shadow = %caption.text, "shadow caption differs");
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, model = %shadow.model, "shadow caption failed");
                    shadow.count(&state, "failed");
                }
            }
        });
    }

    fn count(&self, state: &AppState, outcome: &'static str) {
        let counter = match outcome {
            "agreed" => &self.counts.agreed,
            "differed" => &self.counts.differed,
            "failed" => &self.counts.failed,
            _ => &self.counts.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        state.metrics.shadow_requests.get_or_create(&ShadowLabels { model: self.model.clone(), outcome }).inc();
    }

    pub fn report(&self) -> ShadowReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (agreed, differed) = (load(&self.counts.agreed), load(&self.counts.differed));
        let compared = agreed + differed;
        ShadowReport {
            model: self.model.clone(),
            share: self.share,
            agreed,
            differed,
            failed: load(&self.counts.failed),
            dropped: load(&self.counts.dropped),
            agreement: (compared > 0).then(|| agreed as f64 / compared as f64),
        }
    }
}

/// Two captions agree when their words are the same, case aside.
pub fn same_caption(a: &str, b: &str) -> bool {
    let words = |text: &str| text.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>();
    words(a) == words(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_agree_regardless_of_case_and_spacing() {
        assert!(same_caption("A red  circle", "a red circle "));
        assert!(!same_caption("a red circle", "a blue circle"));
    }
}
