//! `make bench-drift`: what profiling a request for drift costs, against decoding its image
//! (the server profiles the pixels it has just decoded). Median of 300 runs per size, this
//! machine; the target is < 0.2 ms per request. Also the pooled encoder embedding: the mean
//! over positions of the encoder's output and its projection to 32 numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use capwatch::drift::embedding::project;
use capwatch::drift::profile::{CaptionProfile, ImageProfile};
use capwatch::engine::captioner::mean_over_positions;
use capwatch::engine::preprocess::{DecodeLimits, decode_image};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(runs: usize, mut work: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                work();
                started.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let limits = DecodeLimits { max_pixels: 40_000_000 };
    println!("| image | decode | image profile | caption profile | profile / decode |");
    println!("|---|---|---|---|---|");
    for (width, height) in [(128, 128), (640, 480), (1920, 1080)] {
        let picture =
            image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(picture)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let decoded = decode_image(&jpeg, limits).unwrap();
        let decode = time(300, || drop(decode_image(&jpeg, limits).unwrap()));
        let profile = time(300, || drop(std::hint::black_box(ImageProfile::of(&decoded, &jpeg[..16]))));
        let caption = time(300, || {
            drop(std::hint::black_box(CaptionProfile::of("a small red circle above a large blue square", 11)))
        });
        println!(
            "| {width}×{height} JPEG | {:.3} ms | {:.3} ms | {:.4} ms | {:.1} % |",
            decode.as_secs_f64() * 1e3,
            profile.as_secs_f64() * 1e3,
            caption.as_secs_f64() * 1e3,
            profile.as_secs_f64() / decode.as_secs_f64() * 100.0
        );
    }
    println!();
    println!("| encoder output | pool over positions + project to 32 |");
    println!("|---|---|");
    // The bundled model (8×8 patches + CLS, 128 wide), ViT-base (197 × 768), BLIP-base (577 × 768).
    for (name, seq, hidden) in
        [("bundled 65×128", 65, 128), ("ViT-GPT2 197×768", 197, 768), ("BLIP-base 577×768", 577, 768)]
    {
        let values: Vec<f32> = (0..seq * hidden).map(|i| (i % 97) as f32 / 97.0).collect();
        let pooled = time(300, || {
            let pooled = mean_over_positions(&values, seq, hidden);
            drop(std::hint::black_box(project(&pooled[0])));
        });
        println!("| {name} | {:.3} ms |", pooled.as_secs_f64() * 1e3);
    }
}
