//! Pillow's Lanczos resampling of an 8-bit grey image (`Image.resize(size, LANCZOS)`), as
//! Pillow's `libImaging/Resample.c` computes it, so that a thumbnail, and the hashes made
//! from it, are the ones the `imagehash` package computes.
//!
//! Two separable passes, horizontal then vertical, each rounding to 8 bits. The weights of an
//! output pixel are the Lanczos-3 kernel, stretched by the downscale factor (antialiasing),
//! over the input pixels whose centres lie within its support, normalised to sum to one and
//! then quantised to 22-bit fixed point, exactly as Pillow does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::rc::Rc;

use multiversion::multiversion;

/// Fixed-point fraction bits of the weights (Pillow: `32 - 8 - 2`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Support of the Lanczos-3 kernel.
const SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-SUPPORT..SUPPORT).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// The weights of one pass: output pixel `o` reads `len[o]` input pixels from `start[o]`,
/// with weights `weights[o * width..][..len[o]]`.
struct Weights {
    start: Vec<usize>,
    len: Vec<usize>,
    width: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for `input` pixels into
/// `output` pixels (the whole image: no crop box).
fn weights(input: usize, output: usize) -> Weights {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    let width = support.ceil() as usize * 2 + 1;
    let mut out = Weights {
        start: Vec::with_capacity(output),
        len: Vec::with_capacity(output),
        width,
        weights: vec![0; output * width],
    };
    let mut k = vec![0.0f64; width];
    for o in 0..output {
        let center = (o as f64 + 0.5) * scale;
        let inverse = 1.0 / filter_scale;
        // Pillow truncates `center -/+ support + 0.5` toward zero ((int) casts).
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, w) in k.iter_mut().enumerate().take(n) {
            *w = lanczos((x as f64 + xmin as f64 - center + 0.5) * inverse);
            total += *w;
        }
        let row = &mut out.weights[o * width..(o + 1) * width];
        for x in 0..n {
            let w = if total != 0.0 { k[x] / total } else { k[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            row[x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        out.start.push(xmin);
        out.len.push(n);
    }
    out
}

/// The weights of `input` pixels into `output`, computed once per thread: a corpus has few
/// distinct image sizes, and the kernel's `sin` calls were a seventh of pHash's time.
fn cached_weights(input: usize, output: usize) -> Rc<Weights> {
    /// Distinct sizes kept per thread; beyond it the cache starts over (a corpus of
    /// all-different sizes then costs what no cache would).
    const CAPACITY: usize = 256;
    thread_local! {
        static CACHE: RefCell<HashMap<(usize, usize), Rc<Weights>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache.get(&(input, output)) {
            return found.clone();
        }
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        let computed = Rc::new(weights(input, output));
        cache.insert((input, output), computed.clone());
        computed
    })
}

/// Pillow's `clip8`: a fixed-point sum back to a byte.
#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's rounding term, added to every fixed-point sum.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// `grey` (row-major, `width` x `height`) resized to `out_width` x `out_height` as Pillow's
/// `resize(..., Image.LANCZOS)` does on an "L" image. Sums are `i32`, as Pillow's 8-bit path
/// keeps them (255 times the weights' absolute sum, about 1.3 in 22-bit fixed point, fits).
///
/// Compiled also for AVX2, chosen at run time where the CPU has it: its 32-bit multiplies
/// make the passes 2.2 times as fast as baseline x86-64's (SSE2), which has none.
#[multiversion(targets("x86_64+avx2"))]
pub fn resize(
    grey: &[u8],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    debug_assert_eq!(grey.len(), width * height);
    let horizontal = cached_weights(width, out_width);
    let vertical = cached_weights(height, out_height);
    // Pillow only runs a pass whose size changes, and the horizontal one only over the input
    // rows that the vertical pass reads.
    let (first_row, last_row) = if out_height == height {
        (0, height)
    } else {
        let last = out_height - 1;
        (vertical.start[0], vertical.start[last] + vertical.len[last])
    };
    let rows = &grey[first_row * width..last_row * width];
    let temp = if out_width == width {
        rows.to_vec()
    } else {
        // The horizontal pass is the vertical one over the transposed rows: sums across
        // whole rows vectorise, where one dot product per pixel did not (twice as fast).
        let across = transpose(rows, last_row - first_row, width);
        transpose(
            &resize_columns(&across, last_row - first_row, &horizontal, 0),
            out_width,
            last_row - first_row,
        )
    };
    if out_height == height {
        return temp;
    }
    resize_columns(&temp, out_width, &vertical, first_row)
}

/// The vertical pass: `pixels` (row-major, `columns` wide, its first row being input row
/// `first_row` of `weights`) into `weights.start.len()` rows, row by row: each input row
/// scaled into a row of sums, contiguous, so it vectorises. Inlined into each of
/// [`resize`]'s compilations, so as to be compiled for its CPU features.
#[inline(always)]
fn resize_columns(pixels: &[u8], columns: usize, weights: &Weights, first_row: usize) -> Vec<u8> {
    let out_rows = weights.start.len();
    let mut out = Vec::with_capacity(columns * out_rows);
    let mut sums = vec![0i32; columns];
    for o in 0..out_rows {
        let (start, n) = (weights.start[o] - first_row, weights.len[o]);
        let w = &weights.weights[o * weights.width..][..n];
        sums.fill(HALF);
        for (y, &weight) in (start..start + n).zip(w) {
            let row = &pixels[y * columns..(y + 1) * columns];
            for (sum, &p) in sums.iter_mut().zip(row) {
                *sum += i32::from(p) * weight;
            }
        }
        out.extend(sums.iter().map(|&sum| clip8(sum)));
    }
    out
}

/// `pixels` (row-major, `rows` x `columns`) transposed (`columns` x `rows`).
#[inline(always)]
fn transpose(pixels: &[u8], rows: usize, columns: usize) -> Vec<u8> {
    let mut out = vec![0u8; pixels.len()];
    for (y, row) in pixels.chunks_exact(columns).enumerate() {
        for (x, &p) in row.iter().enumerate() {
            out[x * rows + y] = p;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat_and_weights_sum_to_one() {
        let grey = vec![200u8; 50 * 40];
        assert!(resize(&grey, 50, 40, 9, 8).iter().all(|&p| p == 200));
        let w = weights(64, 9);
        for o in 0..9 {
            let sum: i64 = w.weights[o * w.width..][..w.len[o]]
                .iter()
                .map(|&x| i64::from(x))
                .sum();
            assert!((sum - (1 << PRECISION_BITS)).abs() < 16, "{sum}");
        }
    }

    #[test]
    fn the_same_size_is_a_copy() {
        let grey: Vec<u8> = (0..=255).collect();
        assert_eq!(resize(&grey, 16, 16, 16, 16), grey);
    }
}
