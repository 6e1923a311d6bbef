//! Image files: PNG/JPEG in, PNG out, and grids for looking at many samples at once.
//! Pixels are `[C, H, W]` floats in `[-1, 1]` inside aigc and 8-bit outside.

use std::path::Path;

use image::{DynamicImage, GrayImage, RgbImage};

use super::ImageShape;
use crate::{Error, Result};

/// Largest side accepted when reading an image (guards against decompression bombs).
const MAX_SIDE: u32 = 4096;

/// Reads a PNG or JPEG file as `shape.channels` channels; its size must match `shape`.
pub fn read_image(path: &Path, shape: &ImageShape) -> Result<Vec<f32>> {
    let data_err = |message: String| Error::Data {
        path: path.to_path_buf(),
        message,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io("opening", path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io("reading", path, e))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| data_err(format!("not a readable PNG/JPEG image: {e}")))?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(data_err(format!(
            "{w}x{h} is larger than the {MAX_SIDE}-pixel limit"
        )));
    }
    if (w as usize, h as usize) != (shape.width, shape.height) {
        return Err(data_err(format!(
            "image is {w}x{h} but the model expects {}x{}",
            shape.width, shape.height
        )));
    }
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::io("opening", path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io("reading", path, e))?
        .decode()
        .map_err(|e| data_err(format!("cannot decode image: {e}")))?;
    Ok(to_chw(&img, shape.channels))
}

/// `[C, H, W]` floats in `[-1, 1]` from a decoded image, converted to `channels`.
fn to_chw(img: &DynamicImage, channels: usize) -> Vec<f32> {
    let to_unit = |v: u8| v as f32 / 127.5 - 1.0;
    if channels == 1 {
        return img.to_luma8().into_raw().into_iter().map(to_unit).collect();
    }
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let n = (w * h) as usize;
    let mut out = vec![0.0; 3 * n];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = to_unit(px[c]);
        }
    }
    out
}

/// 8-bit pixels of `[C, H, W]` floats, clamped to `[-1, 1]`, interleaved (HWC) for writing.
pub fn to_bytes(pixels: &[f32], shape: &ImageShape) -> Vec<u8> {
    let n = shape.height * shape.width;
    let byte = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
    (0..n)
        .flat_map(|i| (0..shape.channels).map(move |c| (c, i)))
        .map(|(c, i)| byte(pixels[c * n + i]))
        .collect()
}

/// One `[C, H, W]` image of floats in `[-1, 1]` as an 8-bit image: grayscale for one
/// channel, RGB otherwise.
pub fn to_image(pixels: &[f32], shape: &ImageShape) -> DynamicImage {
    let (w, h) = (shape.width as u32, shape.height as u32);
    let bytes = to_bytes(pixels, shape);
    let image = match shape.channels {
        1 => GrayImage::from_raw(w, h, bytes).map(DynamicImage::ImageLuma8),
        _ => RgbImage::from_raw(w, h, bytes).map(DynamicImage::ImageRgb8),
    };
    image.expect("the buffer matches the shape")
}

/// Writes one image as PNG.
pub fn write_png(path: &Path, pixels: &[f32], shape: &ImageShape) -> Result<()> {
    to_image(pixels, shape).save(path).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        message: format!("cannot write PNG: {e}"),
    })
}

/// Tiles `images` (each `[C, H, W]`) into a grid `columns` wide with a 2-pixel border.
pub fn grid(images: &[Vec<f32>], shape: &ImageShape, columns: usize) -> (Vec<f32>, ImageShape) {
    let columns = columns.max(1);
    let rows = images.len().div_ceil(columns).max(1);
    let pad = 2;
    let (h, w) = (shape.height, shape.width);
    let out_shape = ImageShape {
        channels: shape.channels,
        height: rows * (h + pad) + pad,
        width: columns * (w + pad) + pad,
        patch_size: 1,
    };
    let mut out = vec![-1.0; out_shape.n_values()];
    for (k, img) in images.iter().enumerate() {
        let (top, left) = (
            pad + (k / columns) * (h + pad),
            pad + (k % columns) * (w + pad),
        );
        for c in 0..shape.channels {
            for y in 0..h {
                let src = &img[(c * h + y) * w..(c * h + y + 1) * w];
                let dst = (c * out_shape.height + top + y) * out_shape.width + left;
                out[dst..dst + w].copy_from_slice(src);
            }
        }
    }
    (out, out_shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_for_gray_and_rgb() {
        let dir = tempfile::tempdir().unwrap();
        for channels in [1, 3] {
            let shape = ImageShape {
                channels,
                height: 8,
                width: 12,
                patch_size: 4,
            };
            let pixels: Vec<f32> = (0..shape.n_values())
                .map(|i| (i % 255) as f32 / 127.5 - 1.0)
                .collect();
            let path = dir.path().join(format!("img{channels}.png"));
            write_png(&path, &pixels, &shape).unwrap();
            let back = read_image(&path, &shape).unwrap();
            let err = pixels
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1.0 / 127.0, "channels {channels}: {err}");
        }
    }

    #[test]
    fn wrong_size_and_broken_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let shape = ImageShape {
            channels: 1,
            height: 8,
            width: 8,
            patch_size: 4,
        };
        let path = dir.path().join("small.png");
        write_png(
            &path,
            &[0.0; 16],
            &ImageShape {
                height: 4,
                width: 4,
                ..shape
            },
        )
        .unwrap();
        let err = read_image(&path, &shape).unwrap_err().to_string();
        assert!(err.contains("4x4") && err.contains("8x8"), "{err}");
        let broken = dir.path().join("broken.png");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_image(&broken, &shape).is_err());
        let text = dir.path().join("text.png");
        std::fs::write(&text, "hello").unwrap();
        assert!(read_image(&text, &shape)
            .unwrap_err()
            .to_string()
            .contains("text.png"));
    }

    /// A PNG that claims to be 100,000 pixels square (a decompression bomb's header) is
    /// refused from its header, before any pixel is decoded.
    #[test]
    fn huge_images_are_refused_before_decoding() {
        let chunk = |png: &mut Vec<u8>, kind_and_data: &[u8]| {
            let mut crc = flate2::Crc::new();
            crc.update(kind_and_data);
            png.extend_from_slice(&(kind_and_data.len() as u32 - 4).to_be_bytes());
            png.extend_from_slice(kind_and_data);
            png.extend_from_slice(&crc.sum().to_be_bytes());
        };
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray, no interlace
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, &ihdr);
        chunk(&mut png, b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01"); // a few zlib bytes
        chunk(&mut png, b"IEND");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.png");
        std::fs::write(&path, png).unwrap();
        let shape = ImageShape {
            channels: 1,
            height: 28,
            width: 28,
            patch_size: 4,
        };
        let err = read_image(&path, &shape).unwrap_err().to_string();
        assert!(
            err.contains("100000x100000 is larger than the 4096-pixel limit"),
            "{err}"
        );
    }

    #[test]
    fn grid_places_images_in_rows() {
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
            patch_size: 1,
        };
        let images = vec![vec![1.0; 4], vec![0.5; 4], vec![0.0; 4]];
        let (g, gs) = grid(&images, &shape, 2);
        assert_eq!((gs.height, gs.width), (10, 10));
        assert_eq!(g[2 * 10 + 2], 1.0); // first image at (2, 2)
        assert_eq!(g[2 * 10 + 6], 0.5); // second at (2, 6)
        assert_eq!(g[6 * 10 + 2], 0.0); // third starts the second row
        assert_eq!(g[0], -1.0); // border
    }
}
