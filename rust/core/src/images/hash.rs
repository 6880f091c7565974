//! The hashes of one image: xxh3-64 of its bytes, and dHash and pHash (64 bits) of its grey
//! pixels as the `imagehash` package defines them.
//!
//! Bit order: the 8 x 8 bits in row-major order, the first as the most significant bit, so
//! that a hash equals `int(str(imagehash.phash(image)), 16)`.

use std::sync::OnceLock;

use super::grey::Grey;
use super::resample::resize;

/// xxh3-64 (seed 0) of the image's bytes: equal bytes, equal hash.
pub fn content_hash(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// dHash: the image resized to 9 x 8 (Lanczos), then bit `(y, x)` is whether pixel
/// `(y, x + 1)` is brighter than pixel `(y, x)`.
pub fn dhash(grey: &Grey) -> u64 {
    let thumb = resize(&grey.pixels, grey.width, grey.height, 9, 8);
    let mut hash = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let bit = thumb[y * 9 + x + 1] > thumb[y * 9 + x];
            hash = (hash << 1) | u64::from(bit);
        }
    }
    hash
}

/// Side of pHash's thumbnail (`hash_size * highfreq_factor` = 8 * 4).
const THUMB: usize = 32;

/// `cos(pi k (2n + 1) / 64)` for the 8 lowest frequencies `k` and the 32 samples `n`: the
/// DCT-II basis (scipy's unnormalised DCT is twice this, which no comparison sees).
fn basis() -> &'static [[f64; THUMB]; 8] {
    static BASIS: OnceLock<[[f64; THUMB]; 8]> = OnceLock::new();
    BASIS.get_or_init(|| {
        let mut basis = [[0.0; THUMB]; 8];
        for (k, row) in basis.iter_mut().enumerate() {
            for (n, value) in row.iter_mut().enumerate() {
                *value = (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64
                    / (2 * THUMB) as f64)
                    .cos();
            }
        }
        basis
    })
}

/// pHash: the image resized to 32 x 32 (Lanczos), its 2-D DCT-II (along columns, then rows),
/// and bit `(k, l)` of the 8 x 8 lowest frequencies is whether that coefficient exceeds their
/// median (the mean of the middle two of the 64).
pub fn phash(grey: &Grey) -> u64 {
    let thumb = resize(&grey.pixels, grey.width, grey.height, THUMB, THUMB);
    // Converted once, not once per frequency.
    let mut pixels = [0.0f64; THUMB * THUMB];
    for (value, &p) in pixels.iter_mut().zip(&thumb) {
        *value = f64::from(p);
    }
    let basis = basis();
    // Along axis 0 (down each column), the 8 lowest frequencies only.
    let mut columns = [[0.0f64; THUMB]; 8];
    for (k, out) in columns.iter_mut().enumerate() {
        for (row, &c) in pixels.chunks_exact(THUMB).zip(&basis[k]) {
            for (o, &p) in out.iter_mut().zip(row) {
                *o += p * c;
            }
        }
    }
    // Then along axis 1 (across each row).
    let mut low = [0.0f64; 64];
    for k in 0..8 {
        for l in 0..8 {
            low[k * 8 + l] = columns[k].iter().zip(&basis[l]).map(|(a, b)| a * b).sum();
        }
    }
    let mut sorted = low;
    let (lower, &mut upper_middle, _) = sorted.select_nth_unstable_by(32, f64::total_cmp);
    let lower_middle = lower
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper_middle);
    let median = (lower_middle + upper_middle) / 2.0;
    low.iter()
        .fold(0u64, |hash, &v| (hash << 1) | u64::from(v > median))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> Grey {
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Grey {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn a_left_to_right_ramp_has_all_dhash_bits_set() {
        let ramp = grey(90, 80, |x, _| (x * 2) as u8);
        assert_eq!(dhash(&ramp), u64::MAX);
        let flat = grey(90, 80, |_, _| 9);
        assert_eq!(dhash(&flat), 0);
    }

    /// A smooth pattern over the unit square, sampled at `size` pixels a side, plus `light`.
    fn pattern(size: usize, light: f64) -> Grey {
        grey(size, size, |x, y| {
            let (u, v) = (x as f64 / size as f64, y as f64 / size as f64);
            (100.0 + 60.0 * (7.0 * u).sin() * (4.0 * v + 1.0).cos() + 40.0 * u * v + light) as u8
        })
    }

    #[test]
    fn phash_sees_structure_not_scale_or_brightness() {
        let image = pattern(64, 0.0);
        // Sampled twice as finely, the thumbnail differs by rounding: 4 bits flip.
        assert!((phash(&image) ^ phash(&pattern(128, 0.0))).count_ones() <= 4);
        assert!((phash(&image) ^ phash(&pattern(64, 12.0))).count_ones() <= 2);
        let other = grey(64, 64, |x, y| ((x * y) % 251) as u8);
        assert!((phash(&image) ^ phash(&other)).count_ones() > 10);
    }

    #[test]
    fn content_hash_is_xxh3() {
        assert_eq!(content_hash(b""), 0x2D06800538D394C2);
    }
}
