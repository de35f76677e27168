//! Image bytes → `pixel_values` (NCHW f32), following the model's `preprocessor_config.json`
//! the way HuggingFace image processors do: convert to RGB, resize on 8-bit pixels with the
//! configured PIL filter, rescale by `rescale_factor`, normalize with `image_mean`/`image_std`.
//!
//! Decoding is bounded: the pixel count is checked from the header before any pixel is
//! decoded (decompression bombs), and the decoder's allocation is capped.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits, RgbImage};

use super::resample::{PilFilter, resize as pil_resize};
use ndarray::Array4;
use serde_json::Value;

use super::EngineError;

/// PIL resampling filters, by the integer codes HF configs use (`PILImageResampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleFilter {
    /// Code 0. Resized with the `image` crate's nearest neighbour, which may pick
    /// different pixels than PIL's; captioning models do not use it.
    Nearest,
    /// Codes 1–5, reproduced exactly (see [`super::resample`]).
    Pil(PilFilter),
}

impl ResampleFilter {
    fn from_pil_code(code: u64) -> Result<Self, String> {
        match code {
            0 => Ok(Self::Nearest),
            1 => Ok(Self::Pil(PilFilter::Lanczos)),
            2 => Ok(Self::Pil(PilFilter::Bilinear)),
            3 => Ok(Self::Pil(PilFilter::Bicubic)),
            4 => Ok(Self::Pil(PilFilter::Box)),
            5 => Ok(Self::Pil(PilFilter::Hamming)),
            other => Err(format!("unsupported resample filter code {other} (supported: 0 to 5)")),
        }
    }
}

/// The subset of an HF image processor config that captioning models use.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorSpec {
    pub width: u32,
    pub height: u32,
    pub do_resize: bool,
    pub resample: ResampleFilter,
    pub do_rescale: bool,
    pub rescale_factor: f32,
    pub do_normalize: bool,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ImageProcessorSpec {
    /// Reads `preprocessor_config.json`. Defaults follow HF's `BaseImageProcessor`.
    pub fn from_json(config: &Value) -> Result<Self, String> {
        let (width, height) = match config.get("size") {
            Some(Value::Number(n)) => {
                let side = n.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or("`size` must be a positive integer")?;
                (side, side)
            }
            Some(Value::Object(size)) => {
                let dim = |key: &str| size.get(key).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
                match (dim("width"), dim("height")) {
                    (Some(w), Some(h)) => (w, h),
                    _ => {
                        return Err("`size` must have `height` and `width` (shortest_edge resizing is not supported)"
                            .to_owned());
                    }
                }
            }
            _ => return Err("missing `size`".to_owned()),
        };
        if width == 0 || height == 0 {
            return Err("`size` must be positive".to_owned());
        }
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(true);
        let resample = match config.get("resample").and_then(Value::as_u64) {
            Some(code) => ResampleFilter::from_pil_code(code)?,
            None => ResampleFilter::Pil(PilFilter::Bilinear),
        };
        let rescale_factor = config.get("rescale_factor").and_then(Value::as_f64).unwrap_or(1.0 / 255.0) as f32;
        let triple = |key: &str, default: f32| -> Result<[f32; 3], String> {
            match config.get(key) {
                None | Some(Value::Null) => Ok([default; 3]),
                Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(f64::from(default)) as f32; 3]),
                Some(Value::Array(items)) if items.len() == 3 => {
                    let mut out = [0.0; 3];
                    for (slot, item) in out.iter_mut().zip(items) {
                        *slot = item.as_f64().ok_or(format!("`{key}` must hold numbers"))? as f32;
                    }
                    Ok(out)
                }
                Some(_) => Err(format!("`{key}` must be a number or a list of 3 numbers")),
            }
        };
        Ok(Self {
            width,
            height,
            do_resize: flag("do_resize"),
            resample,
            do_rescale: flag("do_rescale"),
            rescale_factor,
            do_normalize: flag("do_normalize"),
            mean: triple("image_mean", 0.5)?,
            std: triple("image_std", 0.5)?,
        })
    }
}

/// Limits applied while decoding untrusted images.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Width × height allowed, checked from the header before decoding.
    pub max_pixels: usize,
}

/// Decodes image bytes into 8-bit RGB (alpha dropped, as PIL's `convert("RGB")` does).
/// Animated images give their first frame.
pub fn decode_image(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage, EngineError> {
    if bytes.is_empty() {
        return Err(EngineError::EmptyImage);
    }
    let format = image::guess_format(bytes).map_err(|_| EngineError::UnsupportedImageFormat)?;
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    ) {
        return Err(EngineError::UnsupportedImageFormat);
    }
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| EngineError::InvalidImage(e.to_string()))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels as u64 {
        return Err(EngineError::ImageTooLarge { width, height, max_pixels: limits.max_pixels });
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(EngineError::InvalidImage(
            "the JPEG is cut short (no end-of-image marker after its last scan)".to_owned(),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decode_limits = Limits::default();
    // 8 bytes per pixel covers RGBA16, plus room for the decoder's own buffers.
    decode_limits.max_alloc = Some((limits.max_pixels as u64).saturating_mul(8).saturating_add(64 << 20));
    reader.limits(decode_limits);
    let decoded = reader.decode().map_err(|e| EngineError::InvalidImage(e.to_string()))?;
    Ok(decoded.to_rgb8())
}

/// Whether a JPEG's last scan is followed by its end-of-image marker (`FF D9`). Inside a scan
/// every `FF` byte is followed by `00` or a restart marker, so an `FF D9` after the last
/// start-of-scan (`FF DA`) is the real end. A file cut short has none: the JPEG decoder that
/// `image` uses then fills the missing rows and the model captions half a picture, where PIL
/// refuses the file ("image file is truncated").
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(last_scan) = bytes.windows(2).rposition(|pair| pair == [0xFF, 0xDA]) else { return false };
    bytes[last_scan..].windows(2).any(|pair| pair == [0xFF, 0xD9])
}

/// Resizes and normalizes an RGB image into a `[1, 3, H, W]` tensor.
pub fn to_pixel_values(image: &RgbImage, spec: &ImageProcessorSpec) -> Array4<f32> {
    let resized;
    let source = if spec.do_resize && (image.width(), image.height()) != (spec.width, spec.height) {
        resized = match spec.resample {
            ResampleFilter::Pil(filter) => pil_resize(image, spec.width, spec.height, filter),
            ResampleFilter::Nearest => image::imageops::resize(image, spec.width, spec.height, FilterType::Nearest),
        };
        &resized
    } else {
        image
    };
    let (width, height) = (source.width() as usize, source.height() as usize);
    let scale = if spec.do_rescale { spec.rescale_factor } else { 1.0 };
    let plane = width * height;
    let mut values = vec![0.0f32; 3 * plane];
    for (index, pixel) in source.as_raw().chunks_exact(3).enumerate() {
        for channel in 0..3 {
            let mut value = f32::from(pixel[channel]) * scale;
            if spec.do_normalize {
                value = (value - spec.mean[channel]) / spec.std[channel];
            }
            values[channel * plane + index] = value;
        }
    }
    // `values` holds exactly 3 × height × width numbers, so the shape always fits.
    Array4::from_shape_vec((1, 3, height, width), values).unwrap_or_else(|_| Array4::zeros((1, 3, height, width)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vit_spec() -> ImageProcessorSpec {
        ImageProcessorSpec::from_json(&json!({
            "size": {"height": 4, "width": 4}, "resample": 2,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 0.00392156862745098
        }))
        .unwrap()
    }

    fn png_bytes(image: &image::DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn reads_vit_and_blip_configs() {
        let spec = vit_spec();
        assert_eq!((spec.width, spec.height, spec.resample), (4, 4, ResampleFilter::Pil(PilFilter::Bilinear)));
        let blip = ImageProcessorSpec::from_json(&json!({"size": {"height": 384, "width": 384}, "resample": 3,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}))
        .unwrap();
        assert_eq!(blip.resample, ResampleFilter::Pil(PilFilter::Bicubic));
        assert!((blip.mean[0] - 0.481_454_66).abs() < 1e-7);
        assert!(ImageProcessorSpec::from_json(&json!({"size": {"shortest_edge": 224}})).is_err());
        assert!(ImageProcessorSpec::from_json(&json!({})).is_err());
    }

    #[test]
    fn normalizes_to_minus_one_one() {
        let white = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 255]));
        let tensor = to_pixel_values(&white, &vit_spec());
        assert_eq!(tensor.shape(), &[1, 3, 4, 4]);
        assert!((tensor[[0, 0, 0, 0]] - 1.0).abs() < 1e-6);
        assert!((tensor[[0, 1, 3, 3]] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn resizes_to_configured_size() {
        let image = RgbImage::from_pixel(17, 9, image::Rgb([10, 20, 30]));
        let tensor = to_pixel_values(&image, &vit_spec());
        assert_eq!(tensor.shape(), &[1, 3, 4, 4]);
    }

    #[test]
    fn rejects_empty_garbage_and_truncated() {
        let limits = DecodeLimits { max_pixels: 1_000_000 };
        assert!(matches!(decode_image(b"", limits), Err(EngineError::EmptyImage)));
        assert!(matches!(decode_image(b"hello world, not an image", limits), Err(EngineError::UnsupportedImageFormat)));
        let bytes = png_bytes(&image::DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3]))));
        let truncated = &bytes[..bytes.len() / 2];
        assert!(matches!(decode_image(truncated, limits), Err(EngineError::InvalidImage(_))));
    }

    #[test]
    fn rejects_jpegs_cut_short_that_the_decoder_would_fill_in() {
        let limits = DecodeLimits { max_pixels: 1_000_000 };
        // A test image the soak test found: cut at a third, `image` decoded it (grey below the cut).
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test_images/a_blue_circle_left_of_a_blue_triangle.jpg"
        ))
        .unwrap();
        assert!(decode_image(&bytes, limits).is_ok());
        for cut in [bytes.len() / 3, bytes.len() - 2] {
            let err = decode_image(&bytes[..cut], limits).unwrap_err();
            assert!(matches!(&err, EngineError::InvalidImage(why) if why.contains("cut short")), "{cut}: {err:?}");
        }
        // Bytes after the end marker (some cameras append data) are fine.
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&[0u8; 64]);
        assert!(decode_image(&trailing, limits).is_ok());
        // Without the check the decoder accepts the cut file: the test guards a real gap.
        let reader = ImageReader::with_format(Cursor::new(&bytes[..bytes.len() / 3]), ImageFormat::Jpeg);
        assert!(reader.decode().is_ok());
    }

    #[test]
    fn rejects_images_over_pixel_limit_before_decoding() {
        let bytes = png_bytes(&image::DynamicImage::ImageRgb8(RgbImage::new(100, 100)));
        let err = decode_image(&bytes, DecodeLimits { max_pixels: 9_999 }).unwrap_err();
        assert!(matches!(err, EngineError::ImageTooLarge { width: 100, height: 100, .. }), "{err:?}");
    }

    #[test]
    fn converts_gray_alpha_and_sixteen_bit_to_rgb() {
        let limits = DecodeLimits { max_pixels: 1_000_000 };
        let gray = image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([200])));
        let rgb = decode_image(&png_bytes(&gray), limits).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [200, 200, 200]);
        let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(2, 2, image::Rgba([9, 8, 7, 0])));
        assert_eq!(decode_image(&png_bytes(&rgba), limits).unwrap().get_pixel(1, 1).0, [9, 8, 7]);
        let deep =
            image::DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(2, 2, image::Rgb([65535u16, 0, 32768])));
        assert_eq!(decode_image(&png_bytes(&deep), limits).unwrap().get_pixel(0, 0).0, [255, 0, 128]);
    }
}
