//! Image bytes decoded into an 8-bit grey plane, as Pillow's `Image.convert("L")` makes it.
//!
//! Pillow's luma is ITU-R 601-2 in 16-bit fixed point, `(19595 R + 38470 G + 7471 B + 2^15)
//! >> 16` (alpha ignored); the `image` crate's own `to_luma8` uses other (Rec. 709) weights, so
//! the conversion is done here. Images of 16 bits per channel or float are first reduced to
//! 8-bit RGB by the `image` crate (Pillow reads some of these differently: docs/images.md).

use std::io::Cursor;

use image::{DynamicImage, ImageReader};

/// A decoded grey image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grey {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` luma values.
    pub pixels: Vec<u8>,
}

/// Pillow's `L24` luma of one RGB pixel.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// The luma of every `CHANNELS`-byte pixel (RGB or RGBA), written into place in blocks of a
/// fixed number of pixels, which the compiler unrolls (pushed pixel by pixel onto a vector,
/// it was a twelfth of pHash's time).
fn from_rgb<const CHANNELS: usize>(pixels: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 16;
    let (pixels, _) = pixels.as_chunks::<CHANNELS>();
    let mut grey = vec![0u8; pixels.len()];
    let mut out_blocks = grey.chunks_exact_mut(BLOCK);
    let mut in_blocks = pixels.chunks_exact(BLOCK);
    for (out, block) in (&mut out_blocks).zip(&mut in_blocks) {
        for (value, p) in out.iter_mut().zip(block) {
            *value = luma(p[0], p[1], p[2]);
        }
    }
    for (value, p) in out_blocks
        .into_remainder()
        .iter_mut()
        .zip(in_blocks.remainder())
    {
        *value = luma(p[0], p[1], p[2]);
    }
    grey
}

/// Decode PNG, JPEG or WebP bytes (the format is read from the bytes) into grey pixels.
/// The `image` crate's default limits apply (e.g. 512 MiB per allocation), so a hostile
/// header cannot ask for unbounded memory. The error says why the bytes are not an image.
pub fn decode(bytes: &[u8]) -> Result<Grey, String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    if reader.format().is_none() {
        return Err("not a PNG, JPEG or WebP image (unknown format)".to_string());
    }
    let image = reader
        .decode()
        .map_err(|e| format!("cannot decode the image: {e}"))?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    if width == 0 || height == 0 {
        return Err("the image is empty (0 pixels)".to_string());
    }
    let pixels = match image {
        DynamicImage::ImageLuma8(g) => g.into_raw(),
        DynamicImage::ImageLumaA8(g) => g.into_raw().chunks_exact(2).map(|p| p[0]).collect(),
        DynamicImage::ImageRgb8(rgb) => from_rgb::<3>(rgb.as_raw()),
        DynamicImage::ImageRgba8(rgba) => from_rgb::<4>(rgba.as_raw()),
        other => from_rgb::<3>(other.to_rgb8().as_raw()),
    };
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, RgbImage};

    #[test]
    fn rgb_png_decodes_to_pillow_luma() {
        let image = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 100, y as u8 * 200, 7]));
        let mut png = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let grey = decode(&png).unwrap();
        assert_eq!((grey.width, grey.height), (3, 2));
        assert_eq!(grey.pixels[0], luma(0, 0, 7));
        assert_eq!(grey.pixels[5], luma(200, 200, 7));
        // Pillow: L of pure red, green and blue.
        assert_eq!(
            (luma(255, 0, 0), luma(0, 255, 0), luma(0, 0, 255)),
            (76, 150, 29)
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"not an image")
            .unwrap_err()
            .contains("unknown format"));
        assert!(decode(b"\x89PNG\r\n\x1a\n broken").is_err());
    }
}
