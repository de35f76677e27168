//! Pictures for the drift traffic generator: scenes like the bundled model's training world
//! (`tools/draw_scenes.py`: a light uniform background, one or two circles, squares or
//! triangles in six jittered colours, small or large, anti-aliased) and four shifts of it —
//! dark backgrounds, one colour only, sensor noise, photo-like textures behind the shapes.
//! Each picture is a function of its seed. Pure: no I/O.

use image::{ImageFormat, RgbImage};
use serde::{Deserialize, Serialize};

use crate::stats::bootstrap::SplitMix64;

/// Side of the square canvas, in pixels (as the training scenes).
pub const CANVAS: u32 = 128;
/// Sub-pixels per side when anti-aliasing.
const SUPERSAMPLE: u32 = 4;
/// The training world's colours (each channel jittered by up to ±20).
const COLOURS: [[f32; 3]; 6] = [
    [220.0, 40.0, 40.0],  // red
    [40.0, 170.0, 60.0],  // green
    [40.0, 80.0, 220.0],  // blue
    [235.0, 200.0, 30.0], // yellow
    [140.0, 60.0, 180.0], // purple
    [245.0, 130.0, 30.0], // orange
];
const COLOUR_JITTER: f64 = 20.0;
/// Bounding-box side as a share of the canvas: small, large.
const SIZES: [(f64, f64); 2] = [(0.18, 0.28), (0.38, 0.50)];
/// Standard deviation of the added noise, per channel (0..255).
const NOISE_SIGMA: f64 = 40.0;

/// What the traffic looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Shift {
    /// The training distribution.
    Stable,
    /// Backgrounds near black (each channel 0–55 instead of 200–255).
    Dark,
    /// Every shape red.
    OneColour,
    /// Gaussian noise (σ 40 of 255) on every channel of every pixel.
    Noise,
    /// A photo-like texture (grass, sand, bark, stone) instead of the plain background.
    Texture,
}

impl Shift {
    pub fn name(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Dark => "dark",
            Self::OneColour => "one-colour",
            Self::Noise => "noise",
            Self::Texture => "texture",
        }
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Circle,
    Square,
    /// Equilateral, pointing up.
    Triangle,
}

struct Object {
    shape: Shape,
    rgb: [f32; 3],
    centre: (f64, f64),
    /// Bounding box (width, height) in pixels.
    extent: (f64, f64),
}

impl Object {
    fn random(rng: &mut SplitMix64, shift: Shift) -> Self {
        let shape = [Shape::Circle, Shape::Square, Shape::Triangle][pick(rng, 3)];
        let colour = if shift == Shift::OneColour { COLOURS[0] } else { COLOURS[pick(rng, COLOURS.len())] };
        let rgb =
            colour.map(|c| (f64::from(c) + (rng.next_f64() * 2.0 - 1.0) * COLOUR_JITTER).clamp(0.0, 255.0) as f32);
        let (low, high) = SIZES[pick(rng, 2)];
        let side = (low + (high - low) * rng.next_f64()) * f64::from(CANVAS);
        let height = if matches!(shape, Shape::Triangle) { side * 3f64.sqrt() / 2.0 } else { side };
        let mut object = Self { shape, rgb, centre: (0.0, 0.0), extent: (side, height) };
        object.place(rng);
        object
    }

    /// A random centre that keeps the object 1 px inside the canvas.
    fn place(&mut self, rng: &mut SplitMix64) {
        let canvas = f64::from(CANVAS);
        let along =
            |rng: &mut SplitMix64, size: f64| size / 2.0 + 1.0 + rng.next_f64() * (canvas - size - 2.0).max(0.0);
        self.centre = (along(rng, self.extent.0), along(rng, self.extent.1));
    }

    fn bounds(&self) -> (f64, f64, f64, f64) {
        let (x, y) = self.centre;
        let (w, h) = self.extent;
        (x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0)
    }

    /// Whether two objects' boxes are 2 px apart and one is clearly beside or above the other
    /// (the training world's rule: the dominant axis differs 1.5× more than the other).
    fn apart_from(&self, other: &Self) -> bool {
        let (a, b) = (self.bounds(), other.bounds());
        let gap = 2.0;
        let separate = a.2 + gap <= b.0 || b.2 + gap <= a.0 || a.3 + gap <= b.1 || b.3 + gap <= a.1;
        let (dx, dy) = ((self.centre.0 - other.centre.0).abs(), (self.centre.1 - other.centre.1).abs());
        separate && (dx >= 1.5 * dy || dy >= 1.5 * dx)
    }

    fn covers(&self, x: f64, y: f64) -> bool {
        let (cx, cy) = self.centre;
        let (w, h) = self.extent;
        match self.shape {
            Shape::Circle => (x - cx).powi(2) + (y - cy).powi(2) <= (w / 2.0).powi(2),
            Shape::Square => (x - cx).abs() <= w / 2.0 && (y - cy).abs() <= h / 2.0,
            Shape::Triangle => {
                let from_top = y - (cy - h / 2.0);
                (0.0..=h).contains(&from_top) && (x - cx).abs() <= from_top / h * w / 2.0
            }
        }
    }
}

fn pick(rng: &mut SplitMix64, choices: usize) -> usize {
    (rng.next_u64() % choices as u64) as usize
}

/// The background, a colour per pixel.
enum Background {
    Plain([f32; 3]),
    /// Value noise over four octaves, blended between two colours.
    Texture {
        lattice: Vec<f32>,
        dark: [f32; 3],
        light: [f32; 3],
    },
}

/// Cells per side of the coarsest texture octave.
const LATTICE: usize = 64;
/// Dark and light ends of the textures: grass, sand, bark, stone.
const TEXTURES: [([f32; 3], [f32; 3]); 4] = [
    ([40.0, 80.0, 25.0], [140.0, 175.0, 80.0]),
    ([170.0, 140.0, 95.0], [235.0, 215.0, 170.0]),
    ([60.0, 40.0, 25.0], [150.0, 110.0, 70.0]),
    ([90.0, 90.0, 95.0], [190.0, 190.0, 185.0]),
];

impl Background {
    fn random(rng: &mut SplitMix64, shift: Shift) -> Self {
        let channel = |rng: &mut SplitMix64, low: f64| (low + 55.0 * rng.next_f64()) as f32;
        match shift {
            Shift::Dark => Self::Plain([(); 3].map(|()| channel(rng, 0.0))),
            Shift::Texture => {
                let (dark, light) = TEXTURES[pick(rng, TEXTURES.len())];
                let lattice = (0..LATTICE * LATTICE).map(|_| rng.next_f64() as f32).collect();
                Self::Texture { lattice, dark, light }
            }
            _ => Self::Plain([(); 3].map(|()| channel(rng, 200.0))),
        }
    }

    fn at(&self, x: f64, y: f64) -> [f32; 3] {
        match self {
            Self::Plain(rgb) => *rgb,
            Self::Texture { lattice, dark, light } => {
                // Octaves of 4, 8, 16 and 32 cells across the canvas, halving in weight.
                let (mut value, mut weight, mut total) = (0.0f32, 1.0f32, 0.0f32);
                for cells in [4.0, 8.0, 16.0, 32.0] {
                    value +=
                        weight * smooth_noise(lattice, x * cells / f64::from(CANVAS), y * cells / f64::from(CANVAS));
                    total += weight;
                    weight *= 0.5;
                }
                let t = value / total;
                [0, 1, 2].map(|c| dark[c] + (light[c] - dark[c]) * t)
            }
        }
    }
}

/// Bilinear value noise on the lattice (wrapping), 0..1.
fn smooth_noise(lattice: &[f32], x: f64, y: f64) -> f32 {
    let at = |i: i64, j: i64| {
        lattice[(j.rem_euclid(LATTICE as i64) as usize) * LATTICE + i.rem_euclid(LATTICE as i64) as usize]
    };
    let (i, j) = (x.floor() as i64, y.floor() as i64);
    let (fx, fy) = ((x - x.floor()) as f32, (y - y.floor()) as f32);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let top = at(i, j) + (at(i + 1, j) - at(i, j)) * sx;
    let bottom = at(i, j + 1) + (at(i + 1, j + 1) - at(i, j + 1)) * sx;
    top + (bottom - top) * sy
}

/// One scene: one or two objects (half each), drawn with anti-aliasing.
pub fn draw(seed: u64, shift: Shift) -> RgbImage {
    let mut rng = SplitMix64::new(seed);
    let background = Background::random(&mut rng, shift);
    let mut objects = vec![Object::random(&mut rng, shift)];
    if rng.next_u64().is_multiple_of(2) {
        let mut second = Object::random(&mut rng, shift);
        // As the training world: try new places until the two stand clearly apart.
        for _ in 0..100 {
            if second.apart_from(&objects[0]) {
                objects.push(second);
                break;
            }
            second.place(&mut rng);
        }
    }
    let step = 1.0 / f64::from(SUPERSAMPLE);
    let mut image = RgbImage::from_fn(CANVAS, CANVAS, |px, py| {
        let (x0, y0) = (f64::from(px), f64::from(py));
        // Most pixels touch no object: one background sample (textures are smooth at a pixel).
        let touched = objects.iter().any(|o| {
            let (left, top, right, bottom) = o.bounds();
            x0 + 1.0 > left && x0 < right && y0 + 1.0 > top && y0 < bottom
        });
        if !touched {
            return image::Rgb(background.at(x0 + 0.5, y0 + 0.5).map(|c| c.round().clamp(0.0, 255.0) as u8));
        }
        let mut sum = [0.0f32; 3];
        for sy in 0..SUPERSAMPLE {
            for sx in 0..SUPERSAMPLE {
                let (x, y) =
                    (f64::from(px) + (f64::from(sx) + 0.5) * step, f64::from(py) + (f64::from(sy) + 0.5) * step);
                let rgb = objects.iter().rev().find(|o| o.covers(x, y)).map_or_else(|| background.at(x, y), |o| o.rgb);
                sum.iter_mut().zip(rgb).for_each(|(s, c)| *s += c);
            }
        }
        image::Rgb(sum.map(|s| (s / (SUPERSAMPLE * SUPERSAMPLE) as f32).round().clamp(0.0, 255.0) as u8))
    });
    if shift == Shift::Noise {
        for pixel in image.pixels_mut() {
            pixel.0 = pixel.0.map(|c| (f64::from(c) + rng.next_normal() * NOISE_SIGMA).round().clamp(0.0, 255.0) as u8);
        }
    }
    image
}

/// The scene for request `index` of a stream seeded `seed`, encoded as PNG or JPEG (half each,
/// as the training images were saved), with its content type.
pub fn encoded(seed: u64, index: u64, shift: Shift) -> Result<(Vec<u8>, &'static str), image::ImageError> {
    let scene_seed = SplitMix64::new(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    let image = draw(scene_seed, shift);
    let (format, content_type) =
        if scene_seed.is_multiple_of(2) { (ImageFormat::Png, "image/png") } else { (ImageFormat::Jpeg, "image/jpeg") };
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image).write_to(&mut bytes, format)?;
    Ok((bytes.into_inner(), content_type))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::drift::profile::ImageProfile;

    fn profile(seed: u64, shift: Shift) -> ImageProfile {
        let (bytes, _) = encoded(7, seed, shift).unwrap();
        let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
        ImageProfile::of(&image, &bytes[..16])
    }

    fn mean(shift: Shift, value: impl Fn(&ImageProfile) -> f64) -> f64 {
        (0..40).map(|seed| value(&profile(seed, shift))).sum::<f64>() / 40.0
    }

    #[test]
    fn scenes_are_fixed_by_their_seed_and_shifts_change_what_they_should() {
        assert_eq!(draw(5, Shift::Stable), draw(5, Shift::Stable));
        assert_ne!(draw(5, Shift::Stable), draw(6, Shift::Stable));
        let brightness = |p: &ImageProfile| p.brightness_mean;
        let contrast = |p: &ImageProfile| p.brightness_std;
        assert!(mean(Shift::Stable, brightness) > 0.7, "light backgrounds");
        assert!(mean(Shift::Dark, brightness) < 0.3, "dark backgrounds");
        assert!(mean(Shift::Noise, contrast) > mean(Shift::Stable, contrast));
        assert!(mean(Shift::Texture, brightness) < mean(Shift::Stable, brightness));
        // One colour only: every strongly coloured pixel (a shape's) is red.
        for seed in 0..20 {
            for pixel in draw(seed, Shift::OneColour).pixels() {
                let [r, g, b] = pixel.0;
                if r.max(g).max(b) - r.min(g).min(b) > 120 {
                    assert!(r > g && r > b, "{:?}", pixel.0);
                }
            }
        }
        let formats: Vec<String> = (0..20).map(|seed| profile(seed, Shift::Stable).format).collect();
        assert!(formats.contains(&"png".to_owned()) && formats.contains(&"jpeg".to_owned()));
    }
}
