//! Near-duplicate clusters of 64-bit hashes: rows whose hashes differ in at most `threshold`
//! bits are joined, transitively (single linkage).
//!
//! Candidates come from multi-index hashing (Norouzi et al., 2012): the 64 bits are cut into
//! `bands`, and two hashes within `threshold` bits differ in at most `threshold / bands` bits
//! (the band's radius) of some band (pigeonhole). Rows whose band values lie within the
//! radius of each other are candidates, verified by a popcount. Few wide bands probe more
//! neighbouring values but compare far fewer candidates; [`plan`] picks the count of bands by
//! the expected work. Equal hashes are joined first, so bands are searched over distinct
//! hashes only.

use rayon::prelude::*;

use crate::dedup::clusters::UnionFind;
use crate::error::{Error, Result};
use crate::parallel;

/// The largest threshold: past 32 bits, bands of one or two bits put most hashes in one
/// bucket and the search is quadratic.
pub const MAX_THRESHOLD: u32 = 32;

/// The widest band searched with a radius: its buckets are indexed by a dense table of
/// `2^width` entries (4 MiB at 20 bits).
const MAX_INDEXED_WIDTH: u32 = 20;

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

/// `n` choose `k`, as a float (a cost estimate).
fn choose(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |c, i| c * f64::from(n - i) / f64::from(i + 1))
}

/// The count of bands for `distinct` hashes within `threshold` bits: the one of least
/// expected work, were the hashes uniform. Per band: sorting the hashes, indexing the band's
/// values (with a radius), probing the values within the radius of each occupied one (a
/// random read, counted as [`PROBE_COST`] comparisons) and comparing the hashes of the
/// buckets probed. Without a radius (`threshold + 1` bands) nothing is indexed; with one,
/// bands are at most [`MAX_INDEXED_WIDTH`] bits wide.
fn plan(distinct: usize, threshold: u32) -> u32 {
    /// A probe's cost in comparisons: measured, a probe (index, then bucket) misses the cache
    /// where a comparison reads hashes in sequence.
    const PROBE_COST: f64 = 8.0;
    let n = distinct as f64;
    let cost = |bands: u32| {
        let width = 64 / bands;
        let radius = threshold / bands;
        let values = 2f64.powi(width as i32);
        let probes: f64 = (0..=radius).map(|r| choose(width, r)).sum();
        let sort = n * n.max(2.0).log2();
        let index = if radius == 0 { 0.0 } else { values };
        let probing = PROBE_COST * n.min(values) * probes;
        let comparing = n * (n / values) * probes / 2.0;
        f64::from(bands) * (sort + index + probing + comparing)
    };
    (1..=threshold + 1)
        .filter(|&bands| bands == threshold + 1 || 64u32.div_ceil(bands) <= MAX_INDEXED_WIDTH)
        .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
        .unwrap_or(threshold + 1)
}

/// Every value of `width` bits with between 1 and `radius` bits set: the offsets of a band
/// value's neighbours.
fn neighbour_masks(width: u32, radius: u32) -> Vec<u64> {
    let mut masks = vec![0u64];
    for _ in 0..radius {
        let grown: Vec<u64> = masks
            .iter()
            .flat_map(|&m| {
                // Bits above the highest set one, so that each mask is built once.
                let from = 64 - m.leading_zeros();
                (from..width).map(move |bit| m | (1 << bit))
            })
            .collect();
        masks.extend(grown);
    }
    masks.sort_unstable();
    masks.dedup();
    masks.retain(|&m| m != 0);
    masks
}

/// Pairs `(a, b)` (indices into `hashes`, `a < b`) within `threshold` bits whose values of
/// one band (bits `bits`) are within `radius` bits: the hashes sorted by band value, each
/// bucket's members compared pairwise and with the members of its neighbours' buckets.
fn band_pairs(hashes: &[u64], bits: (u32, u32), radius: u32, threshold: u32) -> Vec<(u32, u32)> {
    let mut keyed: Vec<(u64, u32)> = hashes
        .iter()
        .enumerate()
        .map(|(i, &h)| (band_value(h, bits), i as u32))
        .collect();
    keyed.par_sort_unstable();
    // The full hashes in bucket order, so that comparisons read memory in sequence.
    let sorted: Vec<u64> = keyed.iter().map(|&(_, i)| hashes[i as usize]).collect();
    let mut buckets = Vec::new();
    let mut start = 0;
    for i in 1..=keyed.len() {
        if i == keyed.len() || keyed[i].0 != keyed[start].0 {
            buckets.push((keyed[start].0, start..i));
            start = i;
        }
    }
    // Bucket of each band value (its start and end in `keyed`), for the neighbour probes.
    let (masks, index) = if radius == 0 {
        (Vec::new(), Vec::new())
    } else {
        let width = bits.1 - bits.0;
        let mut index = vec![0u32; (1usize << width) + 1];
        for &(value, ref range) in &buckets {
            index[value as usize] = range.start as u32;
            index[value as usize + 1] = range.end as u32;
        }
        (neighbour_masks(width, radius), index)
    };
    let bucket = |value: u64| {
        let (start, end) = (index[value as usize], index[value as usize + 1]);
        // An empty value's entries are stale or zero: only a run starting there is real.
        let found = end > start && keyed[start as usize].0 == value;
        found.then_some(start as usize..end as usize)
    };
    let near = |pairs: &mut Vec<(u32, u32)>, a: usize, b: usize| {
        if (sorted[a] ^ sorted[b]).count_ones() <= threshold {
            let (a, b) = (keyed[a].1, keyed[b].1);
            pairs.push((a.min(b), a.max(b)));
        }
    };
    let per_thread: Vec<Vec<(u32, u32)>> = buckets
        .into_par_iter()
        .fold(Vec::new, |mut pairs, (value, members)| {
            for a in members.clone() {
                for b in a + 1..members.end {
                    near(&mut pairs, a, b);
                }
            }
            for &mask in &masks {
                // Each pair of buckets once: from the lower value.
                if value ^ mask < value {
                    continue;
                }
                if let Some(other) = bucket(value ^ mask) {
                    for b in other {
                        for a in members.clone() {
                            near(&mut pairs, a, b);
                        }
                    }
                }
            }
            pairs
        })
        .collect();
    per_thread.concat()
}

/// For every row, the first row of its cluster: rows with `valid` hashes whose hashes lie
/// within `threshold` bits of each other, transitively; other rows are alone.
pub fn hamming_roots(hashes: &[u64], valid: &[bool], threshold: u32) -> Result<Vec<u32>> {
    roots_with_bands(hashes, valid, threshold, None)
}

/// [`hamming_roots`] over `bands` bands (`None`: the [`plan`]'s), at most `threshold + 1`.
fn roots_with_bands(
    hashes: &[u64],
    valid: &[bool],
    threshold: u32,
    bands: Option<u32>,
) -> Result<Vec<u32>> {
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
        let bands = bands.unwrap_or_else(|| plan(distinct.len(), threshold));
        let radius = threshold / bands;
        let pairs: Vec<Vec<(u32, u32)>> = parallel::install(|| {
            (0..bands)
                .into_par_iter()
                .map(|band| band_pairs(&distinct, band_bits(band, bands), radius, threshold))
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
            let expected = brute_force(&hashes, &valid, threshold);
            prop_assert_eq!(&hamming_roots(&hashes, &valid, threshold).unwrap(), &expected);
            // Every count of bands, from the widest indexed ones (with a radius) to
            // `threshold + 1` (none), finds the same clusters.
            for bands in 4..=threshold + 1 {
                prop_assert_eq!(
                    &roots_with_bands(&hashes, &valid, threshold, Some(bands)).unwrap(),
                    &expected,
                    "bands {}", bands
                );
            }
        }
    }

    #[test]
    fn many_hashes_are_searched_with_wide_bands_and_a_radius() {
        assert_eq!(plan(10, 8), 9);
        let bands = plan(100_000, 8);
        assert!(bands < 9 && 8 / bands >= 1, "{bands}");
        assert_eq!(neighbour_masks(4, 2).len(), 4 + 6);
        assert!(neighbour_masks(13, 1)
            .iter()
            .all(|m| m.count_ones() == 1 && *m < 1 << 13));
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
