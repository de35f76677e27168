//! Image resizing that reproduces Pillow's `Image.resize` bit for bit on 8-bit RGB.
//!
//! HuggingFace image processors resize with PIL, and small captioning models can change
//! their output when a single pixel is one level off, so "close" is not enough. This is
//! Pillow's convolution resampler (`libImaging/Resample.c`): separable passes, horizontal
//! first, each clipped to 8 bits; filter weights computed in f64, normalized per output
//! pixel, then turned into fixed point with 22 fractional bits and rounded half away from
//! zero; accumulation starts at one half for rounding.

use image::RgbImage;

/// Pillow's resampling filters (HF's `PILImageResampling` codes 1–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilFilter {
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

impl PilFilter {
    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point weights of one output pixel: the first input index and the weights.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for one axis.
fn taps(in_size: usize, out_size: usize, filter: PilFilter) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inverse = 1.0 / filter_scale;
    (0..out_size)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            // `(int)` in C truncates toward zero; so does `as`.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
            let raw: Vec<f64> = (min..max).map(|x| filter.weight((x as f64 - center + 0.5) * inverse)).collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|w| {
                    let w = if total == 0.0 { *w } else { w / total };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Taps { start: min, weights }
        })
        .collect()
}

fn clip8(accumulator: i64) -> u8 {
    (accumulator >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One separable pass over interleaved RGB bytes: `lines` lines of `taps.len()` output
/// pixels; `source_index(line, tap_position)` gives the byte offset of an input pixel.
fn pass(
    taps: &[Taps],
    lines: usize,
    source: &[u8],
    source_index: impl Fn(usize, usize) -> usize,
    out: &mut [u8],
    out_index: impl Fn(usize, usize) -> usize,
) {
    let half = 1i64 << (PRECISION_BITS - 1);
    for line in 0..lines {
        for (position, tap) in taps.iter().enumerate() {
            let mut sums = [half; 3];
            for (offset, weight) in tap.weights.iter().enumerate() {
                let at = source_index(line, tap.start + offset);
                let weight = i64::from(*weight);
                for (channel, sum) in sums.iter_mut().enumerate() {
                    *sum += i64::from(source[at + channel]) * weight;
                }
            }
            let at = out_index(line, position);
            for (channel, sum) in sums.into_iter().enumerate() {
                out[at + channel] = clip8(sum);
            }
        }
    }
}

/// Resizes like `PIL.Image.resize((width, height), filter)` on an RGB image.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: PilFilter) -> RgbImage {
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (out_width, out_height) = (width as usize, height as usize);
    // Horizontal pass first, as Pillow does (its 8-bit rounding between passes matters).
    let horizontal: Vec<u8> = if out_width == in_width {
        image.as_raw().clone()
    } else {
        let taps = taps(in_width, out_width, filter);
        let mut out = vec![0u8; out_width * in_height * 3];
        pass(&taps, in_height, image.as_raw(), |y, x| (y * in_width + x) * 3, &mut out, |y, x| (y * out_width + x) * 3);
        out
    };
    let vertical = if out_height == in_height {
        horizontal
    } else {
        let taps = taps(in_height, out_height, filter);
        let mut out = vec![0u8; out_width * out_height * 3];
        pass(&taps, out_width, &horizontal, |x, y| (y * out_width + x) * 3, &mut out, |x, y| (y * out_width + x) * 3);
        out
    };
    // The buffer has exactly width × height × 3 bytes by construction.
    RgbImage::from_raw(width, height, vertical).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let image = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 60, 7]));
        assert_eq!(resize(&image, 5, 4, PilFilter::Bicubic), image);
    }

    #[test]
    fn uniform_image_stays_uniform() {
        let image = RgbImage::from_pixel(37, 23, image::Rgb([12, 200, 99]));
        for filter in [PilFilter::Box, PilFilter::Bilinear, PilFilter::Hamming, PilFilter::Bicubic, PilFilter::Lanczos]
        {
            let resized = resize(&image, 16, 30, filter);
            assert!(resized.pixels().all(|p| p.0 == [12, 200, 99]), "{filter:?}");
        }
    }

    #[test]
    fn halving_with_bilinear_averages_pairs() {
        // Downscaling 4 → 2 with bilinear: the filter widens to 2 source pixels each side,
        // clipped at the border and renormalized (3/7, 3/7, 1/7). Pillow 12 gives 55 and 201.
        let image = RgbImage::from_fn(4, 1, |x, _| {
            let v = [0u8, 64, 192, 255][x as usize];
            image::Rgb([v, v, v])
        });
        let resized = resize(&image, 2, 1, PilFilter::Bilinear);
        assert_eq!(resized.get_pixel(0, 0).0[0], 55);
        assert_eq!(resized.get_pixel(1, 0).0[0], 201);
    }
}
