//! What drift detection keeps of one request: a few numbers about the image (brightness,
//! saturation, hue, size, format — the whylogs image profile) and about the caption (length in
//! tokens and words, its words, repeated word pairs). Cheap by construction: the image is read
//! on a grid of at most [`MAX_SAMPLES`] pixels, whatever its size. Pure: no I/O.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Pixels read per image at most (a grid over the whole image).
pub const MAX_SAMPLES: u32 = 4096;
/// Hue bins of 30°.
pub const HUE_BINS: usize = 12;
/// Below this saturation or value a pixel is grey: it has no hue worth counting.
const CHROMA_FLOOR: f32 = 0.1;

/// The image's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageProfile {
    /// Mean luma (Rec. 601), 0..1.
    pub brightness_mean: f64,
    /// Standard deviation of the luma: contrast.
    pub brightness_std: f64,
    /// Mean HSV saturation, 0..1.
    pub saturation_mean: f64,
    /// Sampled pixels per 30° hue bin (greys not counted).
    pub hue_counts: [u32; HUE_BINS],
    pub width: u32,
    pub height: u32,
    /// `png`, `jpeg`, `gif`, `webp`, `bmp`, `tiff` or `other`, from the first bytes.
    pub format: String,
}

impl ImageProfile {
    pub fn aspect(&self) -> f64 {
        f64::from(self.width) / f64::from(self.height.max(1))
    }

    /// Profiles `image`, whose encoded bytes began with `head`.
    pub fn of(image: &RgbImage, head: &[u8]) -> Self {
        let (width, height) = image.dimensions();
        let step =
            (((u64::from(width) * u64::from(height)) as f64 / f64::from(MAX_SAMPLES)).sqrt().ceil() as u32).max(1);
        let (mut sum, mut sum_squares, mut saturation_sum, mut samples) = (0.0f64, 0.0f64, 0.0f64, 0u32);
        let mut hue_counts = [0u32; HUE_BINS];
        for y in (step / 2..height).step_by(step as usize) {
            for x in (step / 2..width).step_by(step as usize) {
                let [r, g, b] = image.get_pixel(x, y).0.map(|c| f32::from(c) / 255.0);
                let luma = f64::from(0.299 * r + 0.587 * g + 0.114 * b);
                sum += luma;
                sum_squares += luma * luma;
                let (max, min) = (r.max(g).max(b), r.min(g).min(b));
                let saturation = if max > 0.0 { (max - min) / max } else { 0.0 };
                saturation_sum += f64::from(saturation);
                if saturation >= CHROMA_FLOOR && max >= CHROMA_FLOOR {
                    hue_counts[hue_bin(r, g, b, max, max - min)] += 1;
                }
                samples += 1;
            }
        }
        let n = f64::from(samples.max(1));
        let mean = sum / n;
        Self {
            brightness_mean: mean,
            brightness_std: (sum_squares / n - mean * mean).max(0.0).sqrt(),
            saturation_mean: saturation_sum / n,
            hue_counts,
            width,
            height,
            format: format_of(head).to_owned(),
        }
    }
}

/// The 30° bin of a pixel's HSV hue (`chroma` = max − min > 0).
fn hue_bin(r: f32, g: f32, b: f32, max: f32, chroma: f32) -> usize {
    let sector = if max == r {
        ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    };
    ((sector * 60.0 / 30.0) as usize).min(HUE_BINS - 1)
}

/// The image format from its magic bytes.
pub fn format_of(head: &[u8]) -> &'static str {
    match head {
        [0x89, b'P', b'N', b'G', ..] => "png",
        [0xFF, 0xD8, 0xFF, ..] => "jpeg",
        [b'G', b'I', b'F', b'8', ..] => "gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "webp",
        [b'B', b'M', ..] => "bmp",
        [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => "tiff",
        _ => "other",
    }
}

/// The caption's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptionProfile {
    /// Tokens generated (the stop token included).
    pub tokens: usize,
    /// Its words, lower-case, punctuation trimmed.
    pub words: Vec<String>,
    /// Word pairs that occur more than once ("a red a red": 1): the loops a degraded decoder writes.
    pub repeated_bigrams: usize,
}

impl CaptionProfile {
    pub fn of(text: &str, tokens: usize) -> Self {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        let mut pairs: Vec<(&str, &str)> = words.windows(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
        let total = pairs.len();
        pairs.sort_unstable();
        pairs.dedup();
        Self { tokens, repeated_bigrams: total - pairs.len(), words }
    }
}

/// One request as drift detection sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestProfile {
    pub image: ImageProfile,
    pub caption: CaptionProfile,
    /// The image's pooled encoder embedding, projected ([`super::embedding::project`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn brightness_saturation_and_hue_of_plain_colours() {
        let red = RgbImage::from_pixel(64, 48, image::Rgb([255, 0, 0]));
        let profile = ImageProfile::of(&red, b"\x89PNG\r\n");
        assert!((profile.brightness_mean - 0.299).abs() < 1e-6);
        assert!(profile.brightness_std < 1e-6);
        assert!((profile.saturation_mean - 1.0).abs() < 1e-9);
        assert_eq!(profile.hue_counts[0], profile.hue_counts.iter().sum::<u32>(), "all red: bin 0");
        assert_eq!((profile.width, profile.height, profile.format.as_str()), (64, 48, "png"));
        assert!((profile.aspect() - 64.0 / 48.0).abs() < 1e-12);

        let blue = ImageProfile::of(&RgbImage::from_pixel(8, 8, image::Rgb([0, 0, 255])), b"\xFF\xD8\xFF\xE0");
        assert_eq!(blue.hue_counts[8], 64, "240° is bin 8: {:?}", blue.hue_counts);
        assert_eq!(blue.format, "jpeg");
        let grey = ImageProfile::of(&RgbImage::from_pixel(8, 8, image::Rgb([128, 128, 128])), b"BM");
        assert_eq!(grey.hue_counts.iter().sum::<u32>(), 0, "greys have no hue");
        assert_eq!(grey.saturation_mean, 0.0);
    }

    #[test]
    fn a_large_image_is_read_on_a_grid() {
        let big = RgbImage::from_fn(4000, 3000, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 0]));
        let profile = ImageProfile::of(&big, b"");
        let sampled: u32 = profile.hue_counts.iter().sum::<u32>();
        assert!(sampled <= MAX_SAMPLES && sampled > 1000, "{sampled}");
        assert!(profile.brightness_std > 0.05);
        assert_eq!(profile.format, "other");
    }

    #[test]
    fn caption_words_and_loops() {
        let profile = CaptionProfile::of("A red circle, a red circle above a red circle.", 12);
        assert_eq!(profile.words.len(), 10);
        assert_eq!(profile.words[2], "circle");
        // "a red" ×3 and "red circle" ×3: two pairs repeated four times in all.
        assert_eq!(profile.repeated_bigrams, 4);
        assert_eq!(CaptionProfile::of("a small blue square", 5).repeated_bigrams, 0);
    }
}
