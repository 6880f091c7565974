//! Locality-sensitive hashing over MinHash sketches: candidate pairs, verified afterwards.
//!
//! A sketch of `num_perm` values is cut into `bands` bands of `rows` values; two documents
//! become a candidate pair when all values of some band agree, which happens with probability
//! `1 - (1 - s^rows)^bands` for Jaccard similarity `s`. Every candidate is then verified with
//! the sketch estimate against the threshold, so false candidates only cost time: bands and
//! rows are chosen to favour recall.

use rayon::prelude::*;

use crate::dedup::minhash::Signatures;
use crate::error::{Error, Result};
use crate::pairs::splitmix64;
use crate::parallel;

/// Weight of missed pairs (false negatives) against spurious candidates when choosing bands.
const MISS_WEIGHT: f64 = 0.9;
/// In a bucket, each document is compared with at most this many of the next ones (a bucket of
/// near-identical documents stays connected through its neighbours, at linear cost).
const BUCKET_WINDOW: usize = 64;

/// Probability that two documents of similarity `s` share a band.
fn collision(s: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

/// Area under `f` on `[lo, hi]` by the trapezoid rule.
fn area(lo: f64, hi: f64, f: impl Fn(f64) -> f64) -> f64 {
    const STEPS: usize = 200;
    let h = (hi - lo) / STEPS as f64;
    (0..=STEPS)
        .map(|i| {
            let w = if i == 0 || i == STEPS { 0.5 } else { 1.0 };
            w * f(lo + i as f64 * h)
        })
        .sum::<f64>()
        * h
}

/// Bands and rows (`bands * rows <= num_perm`) for `threshold`: the pair minimising
/// `0.1 * P(candidate | s < t)` area + `0.9 * P(missed | s >= t)` area. For 128 values this
/// gives 32x4 at 0.5, 20x6 at 0.7, 14x9 at 0.8 (datatrove's default) and 8x16 at 0.9.
pub fn choose_bands(num_perm: usize, threshold: f64) -> (usize, usize) {
    let mut best = (f64::INFINITY, 1, num_perm);
    for bands in 1..=num_perm {
        for rows in 1..=num_perm / bands {
            let spurious = area(0.0, threshold, |s| collision(s, bands, rows));
            let missed = area(threshold, 1.0, |s| 1.0 - collision(s, bands, rows));
            let cost = (1.0 - MISS_WEIGHT) * spurious + MISS_WEIGHT * missed;
            if cost < best.0 {
                best = (cost, bands, rows);
            }
        }
    }
    (best.1, best.2)
}

/// Bands and rows for a requested number of bands (rows = num_perm / bands).
pub fn bands_given(num_perm: usize, bands: usize) -> Result<(usize, usize)> {
    if bands == 0 || bands > num_perm {
        return Err(Error::argument(
            "bands",
            "None or an integer in [1, num_perm]",
            bands,
        ));
    }
    Ok((bands, num_perm / bands))
}

/// Pairs `(a, b)`, `a < b`, of documents that share a band and whose estimated similarity is
/// at least `threshold`, sorted. Documents without a sketch take no part.
pub fn similar_pairs(
    sigs: &Signatures,
    bands: usize,
    rows: usize,
    threshold: f64,
) -> Vec<(u32, u32)> {
    parallel::install(|| {
        let mut candidates: Vec<(u32, u32)> = (0..bands)
            .into_par_iter()
            .flat_map_iter(|band| {
                let mut keys: Vec<(u64, u32)> = (0..sigs.len())
                    .filter(|&d| sigs.present[d])
                    .map(|d| {
                        let values = &sigs.of(d)[band * rows..(band + 1) * rows];
                        let key = values
                            .iter()
                            .fold(band as u64, |h, &v| splitmix64(h ^ v as u64));
                        (key, d as u32)
                    })
                    .collect();
                keys.sort_unstable();
                let mut pairs = Vec::new();
                let mut start = 0;
                while start < keys.len() {
                    let mut end = start + 1;
                    while end < keys.len() && keys[end].0 == keys[start].0 {
                        end += 1;
                    }
                    for i in start..end {
                        for j in i + 1..end.min(i + 1 + BUCKET_WINDOW) {
                            pairs.push((keys[i].1, keys[j].1));
                        }
                    }
                    start = end;
                }
                pairs
            })
            .collect();
        candidates.par_sort_unstable();
        candidates.dedup();
        candidates
            .into_par_iter()
            .filter(|&(a, b)| sigs.similarity(a as usize, b as usize) >= threshold)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_favour_recall_at_the_threshold() {
        assert_eq!(choose_bands(128, 0.8), (14, 9));
        let (b, r) = choose_bands(128, 0.8);
        assert!(collision(0.9, b, r) > 0.99);
        assert!(b * r <= 128);
        assert_eq!(bands_given(128, 16).unwrap(), (16, 8));
        assert!(bands_given(128, 0).is_err());
    }

    #[test]
    fn only_verified_candidates_are_returned() {
        let texts: Vec<Vec<Option<&str>>> = vec![
            vec![Some("a b c d e f g h i j")],
            vec![Some("x y z")],
            vec![Some("a b c d e f g h i j")],
            vec![None],
        ];
        let sigs = Signatures::build(&texts, 2, 32, 0);
        assert_eq!(similar_pairs(&sigs, 8, 4, 0.8), vec![(0, 2)]);
    }
}
