//! Locality-sensitive hashing over MinHash sketches: candidate pairs, verified afterwards.
//!
//! A sketch of `num_perm` values is cut into `bands` bands of `rows` values; two documents
//! become a candidate pair when all values of some band agree, which happens with probability
//! `1 - (1 - s^rows)^bands` for Jaccard similarity `s`. Every candidate is then verified with
//! the sketch estimate against the threshold, so false candidates only cost time: bands and
//! rows are chosen to favour recall.

use std::sync::Mutex;

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

/// `(num_perm, threshold bits)`: what [`choose_bands`] remembers its answers by.
type BandsKey = (usize, u64);

/// Bands and rows (`bands * rows <= num_perm`) for `threshold`: the pair minimising
/// `0.1 * P(candidate | s < t)` area + `0.9 * P(missed | s >= t)` area. For 128 values this
/// gives 32x4 at 0.5, 20x6 at 0.7, 14x9 at 0.8 (datatrove's default) and 8x16 at 0.9.
pub fn choose_bands(num_perm: usize, threshold: f64) -> (usize, usize) {
    // The search takes ~2 ms, 5% of deduplicating 10k documents: remember its answers.
    static CHOSEN: Mutex<Vec<(BandsKey, (usize, usize))>> = Mutex::new(Vec::new());
    let key = (num_perm, threshold.to_bits());
    let known = |chosen: &Vec<_>| chosen.iter().find(|(k, _)| *k == key).map(|&(_, c)| c);
    if let Some(chosen) = known(&CHOSEN.lock().unwrap_or_else(|e| e.into_inner())) {
        return chosen;
    }
    let chosen = search_bands(num_perm, threshold);
    CHOSEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, chosen));
    chosen
}

/// The search of [`choose_bands`], over every `bands x rows <= num_perm`.
fn search_bands(num_perm: usize, threshold: f64) -> (usize, usize) {
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

/// Bands and rows for `threshold`: `bands` given, or chosen by [`choose_bands`].
pub fn layout(num_perm: usize, threshold: f64, bands: Option<usize>) -> Result<(usize, usize)> {
    match bands {
        Some(bands) => bands_given(num_perm, bands),
        None => Ok(choose_bands(num_perm, threshold)),
    }
}

/// The LSH key of band `band` (`rows` values) of a sketch: equal bands give equal keys, and
/// the band number is mixed in so that equal values in different bands do not.
#[inline]
pub fn band_key(sketch: &[u32], band: usize, rows: usize) -> u64 {
    sketch[band * rows..(band + 1) * rows]
        .iter()
        .fold(band as u64, |h, &v| splitmix64(h ^ v as u64))
}

/// Candidate pairs of a sorted list of `(bucket, document)`: within each run of equal
/// buckets, every document with each of the next [`BUCKET_WINDOW`] ones.
fn bucket_pairs<K: PartialEq, D: Copy>(sorted: &[(K, D)], pairs: &mut Vec<(D, D)>) {
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start + 1;
        while end < sorted.len() && sorted[end].0 == sorted[start].0 {
            end += 1;
        }
        for i in start..end {
            for j in i + 1..end.min(i + 1 + BUCKET_WINDOW) {
                pairs.push((sorted[i].1, sorted[j].1));
            }
        }
        start = end;
    }
}

/// Estimated Jaccard similarity of two sketches: the fraction of equal bins.
#[inline]
pub fn similarity(a: &[u32], b: &[u32]) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len() as f64
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
                    .map(|d| (band_key(sigs.of(d), band, rows), d as u32))
                    .collect();
                keys.sort_unstable();
                let mut pairs = Vec::new();
                bucket_pairs(&keys, &mut pairs);
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

/// Candidate pairs `(a, b)`, `a < b`, sorted and distinct, among band keys given as
/// `((band, key), document)`: the pairs [`similar_pairs`] would verify, for documents
/// numbered in input order (global row numbers), when all the records of a key are at hand
/// (one hash partition of an out-of-core run).
pub fn candidate_pairs(mut records: Vec<((u32, u64), u64)>) -> Vec<(u64, u64)> {
    parallel::install(|| records.par_sort_unstable());
    let mut pairs = Vec::new();
    bucket_pairs(&records, &mut pairs);
    parallel::install(|| pairs.par_sort_unstable());
    pairs.dedup();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::exact::UnitValues;

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
        let texts = [UnitValues::Borrowed(vec![
            Some("a b c d e f g h i j"),
            Some("x y z"),
            Some("a b c d e f g h i j"),
            None,
        ])];
        let sigs = Signatures::build(&texts, &[0, 1, 2, 3], 2, 32, 0);
        assert_eq!(similar_pairs(&sigs, 8, 4, 0.8), vec![(0, 2)]);
    }

    #[test]
    fn candidate_pairs_window_runs_of_equal_band_and_key() {
        let records = vec![
            ((0, 7), 5),
            ((1, 7), 2),
            ((0, 7), 1),
            ((0, 8), 3),
            ((1, 7), 5),
            ((0, 7), 9),
        ];
        assert_eq!(
            candidate_pairs(records),
            vec![(1, 5), (1, 9), (2, 5), (5, 9)]
        );
    }
}
