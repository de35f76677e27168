//! The model variants one server serves side by side, and which one answers a request: the one
//! named (`?model=NAME` or `X-Capwatch-Model`), else the same one for the same `X-Capwatch-Key`
//! (a hash of the key picks a point on the weights), else a weighted random one.
//! Each variant's engine is loaded once, in the background; this module only holds and picks.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::config::VariantRoute;
use crate::engine::Engine;

/// Header naming the variant a request wants.
pub const MODEL_HEADER: &str = "x-capwatch-model";
/// Header whose value keeps a client on one variant (sticky routing).
pub const KEY_HEADER: &str = "x-capwatch-key";

/// One variant and its engine once loaded.
pub struct Variant {
    pub name: String,
    pub dir: PathBuf,
    pub weight: u32,
    pub engine: OnceLock<Engine>,
}

/// How a request came to its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// The request named it.
    Explicit,
    /// Its `X-Capwatch-Key` maps to it.
    Sticky,
    /// Weighted random.
    Weighted,
}

/// The variants in config order.
pub struct Variants {
    list: Vec<Variant>,
    total_weight: u64,
}

impl Variants {
    pub fn new(routes: Vec<VariantRoute>) -> Self {
        let total_weight = routes.iter().map(|r| u64::from(r.weight)).sum();
        let list = routes
            .into_iter()
            .map(|r| Variant { name: r.name, dir: r.dir, weight: r.weight, engine: OnceLock::new() })
            .collect();
        Self { list, total_weight }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Variant> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Variant> {
        self.list.iter().find(|v| v.name == name)
    }

    /// Every variant's name, in order.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|v| v.name.as_str()).collect()
    }

    /// Whether every variant is loaded.
    pub fn all_loaded(&self) -> bool {
        self.list.iter().all(|v| v.engine.get().is_some())
    }

    /// The variant for a request: `named` if given (None if no variant has that name), else
    /// the one `key` hashes to, else a weighted random one.
    pub fn choose(&self, named: Option<&str>, key: Option<&str>) -> Option<(&Variant, Routed)> {
        if let Some(name) = named {
            return self.get(name).map(|v| (v, Routed::Explicit));
        }
        if self.list.len() == 1 {
            return self.list.first().map(|v| (v, Routed::Weighted));
        }
        match key {
            Some(key) => self.at_point(fnv1a(key.as_bytes()) % self.total_weight.max(1)).map(|v| (v, Routed::Sticky)),
            None => self.at_point(fastrand::u64(0..self.total_weight.max(1))).map(|v| (v, Routed::Weighted)),
        }
    }

    /// The variant whose stretch of `[0, total weight)` holds `point`.
    fn at_point(&self, mut point: u64) -> Option<&Variant> {
        for variant in &self.list {
            let weight = u64::from(variant.weight);
            if point < weight {
                return Some(variant);
            }
            point -= weight;
        }
        self.list.iter().find(|v| v.weight > 0)
    }
}

/// FNV-1a, 64 bits: stable across processes and versions (std's hasher promises neither), so a
/// key keeps its variant across restarts and replicas with the same weights.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variants(weights: &[(&str, u32)]) -> Variants {
        Variants::new(
            weights
                .iter()
                .map(|(name, weight)| VariantRoute {
                    name: (*name).to_owned(),
                    dir: PathBuf::from(name),
                    weight: *weight,
                })
                .collect(),
        )
    }

    #[test]
    fn weights_split_random_traffic() {
        let variants = variants(&[("a", 90), ("b", 10), ("shadow", 0)]);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let (variant, routed) = variants.choose(None, None).unwrap();
            assert_eq!(routed, Routed::Weighted);
            *counts.entry(variant.name.clone()).or_insert(0) += 1;
        }
        let b = counts.get("b").copied().unwrap_or(0);
        assert!((1700..2300).contains(&b), "b got {b} of 20000, expected about 2000");
        assert_eq!(counts.get("shadow"), None, "weight 0 is never routed at random");
    }

    #[test]
    fn a_key_always_gets_the_same_variant_and_keys_spread_by_weight() {
        let variants = variants(&[("a", 50), ("b", 50)]);
        let first = variants.choose(None, Some("user-42")).unwrap().0.name.clone();
        for _ in 0..100 {
            let (variant, routed) = variants.choose(None, Some("user-42")).unwrap();
            assert_eq!((variant.name.as_str(), routed), (first.as_str(), Routed::Sticky));
        }
        let on_b =
            (0..2000).filter(|i| variants.choose(None, Some(&format!("user-{i}"))).unwrap().0.name == "b").count();
        assert!((850..1150).contains(&on_b), "{on_b} of 2000 keys on b");
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c, "the published FNV-1a value of `a`");
    }

    #[test]
    fn a_named_variant_wins_and_an_unknown_name_is_none() {
        let variants = variants(&[("a", 1), ("b", 0)]);
        let (variant, routed) = variants.choose(Some("b"), Some("key")).unwrap();
        assert_eq!((variant.name.as_str(), routed), ("b", Routed::Explicit));
        assert!(variants.choose(Some("c"), None).is_none());
    }
}
