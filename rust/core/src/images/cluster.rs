//! Near-duplicate clusters of 64-bit hashes: rows whose hashes differ in at most `threshold`
//! bits are joined, transitively (single linkage).
//!
//! Candidates come from multi-index hashing: the 64 bits are cut into `threshold + 1` bands,
//! and two hashes within `threshold` bits agree on at least one whole band (pigeonhole). Rows
//! sharing a band value are candidates, verified by a popcount. Equal hashes are joined first,
//! so a band is searched over distinct hashes only.

use rayon::prelude::*;

use crate::dedup::clusters::UnionFind;
use crate::error::{Error, Result};
use crate::parallel;

/// The largest threshold: past 32 bits, bands of one or two bits put most hashes in one
/// bucket and the search is quadratic.
pub const MAX_THRESHOLD: u32 = 32;

/// Bit range `[start, end)` of band `band` of `bands` over 64 bits.
fn band_bits(band: u32, bands: u32) -> (u32, u32) {
    (band * 64 / bands, (band + 1) * 64 / bands)
}

fn band_value(hash: u64, (start, end): (u32, u32)) -> u64 {
    let width = end - start;
    (hash >> start)
        & if width == 64 {
            u64::MAX
        } else {
            (1 << width) - 1
        }
}

/// Pairs `(a, b)` (indices into `hashes`, `a < b`) within `threshold` bits, found through one
/// band: sorted by band value, each bucket's members compared pairwise.
fn band_pairs(hashes: &[u64], bits: (u32, u32), threshold: u32) -> Vec<(u32, u32)> {
    let mut keyed: Vec<(u64, u32)> = hashes
        .iter()
        .enumerate()
        .map(|(i, &h)| (band_value(h, bits), i as u32))
        .collect();
    keyed.par_sort_unstable();
    let mut buckets = Vec::new();
    let mut start = 0;
    for i in 1..=keyed.len() {
        if i == keyed.len() || keyed[i].0 != keyed[start].0 {
            if i - start > 1 {
                buckets.push(start..i);
            }
            start = i;
        }
    }
    buckets
        .into_par_iter()
        .flat_map_iter(|bucket| {
            let members = &keyed[bucket];
            members.iter().enumerate().flat_map(move |(i, &(_, a))| {
                members[i + 1..].iter().filter_map(move |&(_, b)| {
                    ((hashes[a as usize] ^ hashes[b as usize]).count_ones() <= threshold)
                        .then_some((a.min(b), a.max(b)))
                })
            })
        })
        .collect()
}

/// For every row, the first row of its cluster: rows with `valid` hashes whose hashes lie
/// within `threshold` bits of each other, transitively; other rows are alone.
pub fn hamming_roots(hashes: &[u64], valid: &[bool], threshold: u32) -> Result<Vec<u32>> {
    if threshold > MAX_THRESHOLD {
        return Err(Error::argument(
            "threshold",
            "an integer in [0, 32] (bits)",
            threshold,
        ));
    }
    if hashes.len() > u32::MAX as usize {
        return Err(Error::argument(
            "rows",
            "at most 2^32 - 1 images",
            hashes.len(),
        ));
    }
    let mut sets = UnionFind::new(hashes.len());
    // Equal hashes first: one representative (the first row) per distinct value.
    let mut order: Vec<(u64, u32)> = (0..hashes.len())
        .filter(|&r| valid[r])
        .map(|r| (hashes[r], r as u32))
        .collect();
    parallel::install(|| order.par_sort_unstable());
    let mut distinct: Vec<u64> = Vec::new();
    let mut representative: Vec<u32> = Vec::new();
    for (i, &(hash, row)) in order.iter().enumerate() {
        if i > 0 && order[i - 1].0 == hash {
            sets.union(*representative.last().expect("a run has a first row"), row);
        } else {
            distinct.push(hash);
            representative.push(row);
        }
    }
    if threshold > 0 {
        let bands = threshold + 1;
        let pairs: Vec<Vec<(u32, u32)>> = parallel::install(|| {
            (0..bands)
                .into_par_iter()
                .map(|band| band_pairs(&distinct, band_bits(band, bands), threshold))
                .collect()
        });
        for (a, b) in pairs.into_iter().flatten() {
            sets.union(representative[a as usize], representative[b as usize]);
        }
    }
    Ok(sets.roots())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every pair compared: the definition.
    fn brute_force(hashes: &[u64], valid: &[bool], threshold: u32) -> Vec<u32> {
        let mut sets = UnionFind::new(hashes.len());
        for a in 0..hashes.len() {
            for b in a + 1..hashes.len() {
                if valid[a] && valid[b] && (hashes[a] ^ hashes[b]).count_ones() <= threshold {
                    sets.union(a as u32, b as u32);
                }
            }
        }
        sets.roots()
    }

    proptest! {
        #[test]
        fn bands_find_every_pair_within_the_threshold(
            base in proptest::collection::vec(any::<u64>(), 1..6),
            flips in proptest::collection::vec((0usize..6, 0u32..64, 0u32..64), 0..60),
            invalid in proptest::collection::vec(any::<bool>(), 60),
            threshold in 0u32..12,
        ) {
            // Hashes near a few bases, so that clusters form.
            let hashes: Vec<u64> = flips
                .iter()
                .map(|&(b, i, j)| base[b % base.len()] ^ (1 << i) ^ (1 << (j % 7)))
                .collect();
            let valid: Vec<bool> = (0..hashes.len()).map(|i| !invalid[i] || i % 3 != 0).collect();
            prop_assert_eq!(
                hamming_roots(&hashes, &valid, threshold).unwrap(),
                brute_force(&hashes, &valid, threshold)
            );
        }
    }

    #[test]
    fn bands_cover_all_bits() {
        for bands in 1..=33 {
            let covered: u32 = (0..bands)
                .map(|b| band_bits(b, bands))
                .map(|(s, e)| e - s)
                .sum();
            assert_eq!(covered, 64);
        }
        assert!(hamming_roots(&[1], &[true], 33).is_err());
    }
}
