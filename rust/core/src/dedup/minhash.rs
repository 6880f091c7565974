//! MinHash sketches by one-permutation hashing with optimal densification.
//!
//! Classic MinHash hashes every shingle `num_perm` times. One-permutation hashing (OPH) hashes
//! it once: the hash's high bits pick one of `num_perm` bins and its low 32 bits compete for
//! that bin's minimum, so sketching costs one hash per shingle. Bins that no shingle reached
//! are filled by optimal densification (Shrivastava, ICML 2017): an empty bin copies the value
//! of the first non-empty bin found by a seeded probe sequence that depends only on the bin
//! and the attempt, so two documents with equal bins copy equally. The fraction of equal bins
//! of two sketches estimates the Jaccard similarity of their shingle sets, as accurately as
//! classic MinHash (tested below). Probing is bounded by [`PROBE_LIMIT`]; past it an empty
//! bin copies the next non-empty bin to its right (rotation densification, Shrivastava and
//! Li, ICML 2014), also a function of the bins alone.
//!
//! Sketches of all documents live in one flat `u32` buffer, `num_perm` values per document.

use rayon::prelude::*;

use super::exact::UnitValues;
use super::shingles::for_each_shingle;
use crate::dedup::lsh;
use crate::pairs::splitmix64;
use crate::parallel;

/// Probes an empty bin makes before it falls back to rotation. Optimal densification needs
/// `k / m` probes a bin on average when `m` of `k` bins are non-empty, so one shingle
/// sketched into 65536 bins took 65536² probes, 10 s a document (found by fuzz/ops.py). The
/// bound caps the work at 1024 probes a bin and is reached with probability
/// `(1 - m/k)^1024 < e^-16` whenever `k / m <= 64`: sketches of real text are unchanged.
const PROBE_LIMIT: u64 = 1024;

/// The shingle seed of column `column`: derived from `seed` and the column, so equal text in
/// different columns gives different shingles.
#[inline]
fn column_seed(seed: u64, column: usize) -> u64 {
    seed ^ (column as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One document's sketch in the making: shingle hashes are added one by one (no list of
/// them is kept), then [`Sketcher::finish`] densifies and writes the bins.
#[derive(Debug, Clone)]
pub struct Sketcher {
    /// Minimum low-32-bit value per bin so far, widened so that `u64::MAX` marks an empty
    /// bin: the update is a branch-free `min`.
    mins: Vec<u64>,
    seed: u64,
}

impl Sketcher {
    /// A sketcher of `num_perm` bins whose densification probes are seeded by `seed`.
    pub fn new(num_perm: usize, seed: u64) -> Self {
        Self {
            mins: vec![u64::MAX; num_perm],
            seed,
        }
    }

    /// Add one shingle hash: its high 32 bits pick the bin, its low 32 bits compete for it.
    #[inline]
    pub fn add(&mut self, hash: u64) {
        let bin = (((hash >> 32) * self.mins.len() as u64) >> 32) as usize;
        let slot = &mut self.mins[bin];
        *slot = (*slot).min(hash as u32 as u64);
    }

    /// Write the sketch of the hashes added since the last call into `out` (`num_perm`
    /// values) and start over. Returns false, leaving `out` unspecified, when none were added.
    pub fn finish(&mut self, out: &mut [u32]) -> bool {
        let k = self.mins.len() as u64;
        if self.mins.iter().all(|&m| m == u64::MAX) {
            return false;
        }
        let mut rotation: Option<Vec<u32>> = None;
        for (bin, value) in out.iter_mut().enumerate() {
            if self.mins[bin] != u64::MAX {
                *value = self.mins[bin] as u32;
                continue;
            }
            // An empty bin copies the first bin of its probe sequence that a shingle reached.
            let probed = (1..=PROBE_LIMIT).find_map(|attempt| {
                let probe = splitmix64(self.seed ^ ((bin as u64) << 32) ^ attempt);
                let source = ((probe as u32 as u64 * k) >> 32) as usize;
                (self.mins[source] != u64::MAX).then_some(self.mins[source] as u32)
            });
            *value =
                probed.unwrap_or_else(|| rotation.get_or_insert_with(|| self.next_filled())[bin]);
        }
        self.mins.fill(u64::MAX);
        true
    }

    /// For every bin, the value of the first non-empty bin at or after it, circularly
    /// (rotation densification); one backward pass, so the fallback costs O(num_perm).
    fn next_filled(&self) -> Vec<u32> {
        let mut next = vec![0u32; self.mins.len()];
        let mut carried = *self.mins.iter().find(|&&m| m != u64::MAX).unwrap_or(&0) as u32;
        for (bin, &min) in self.mins.iter().enumerate().rev() {
            if min != u64::MAX {
                carried = min as u32;
            }
            next[bin] = carried;
        }
        next
    }
}

/// The sketches of many documents: document `d` is `values[d * num_perm..(d + 1) * num_perm]`
/// when `present[d]` (a document without shingles has no sketch).
#[derive(Debug, Clone)]
pub struct Signatures {
    /// Values per document (bins).
    pub num_perm: usize,
    /// All sketches, back to back.
    pub values: Vec<u32>,
    /// Whether each document has a sketch.
    pub present: Vec<bool>,
}

impl Signatures {
    /// Sketch one document per unit of `units`: document `d` is unit `units[d]` of the
    /// compared columns `values` (its prepared texts, None for null); its shingles are the
    /// word `ngram`-grams of every column, hashed per column.
    pub fn build(
        values: &[UnitValues<'_>],
        units: &[u32],
        ngram: usize,
        num_perm: usize,
        seed: u64,
    ) -> Self {
        let mut sketches = vec![0u32; units.len() * num_perm];
        let mut present = vec![false; units.len()];
        parallel::install(|| {
            sketches
                .par_chunks_mut(num_perm * 256)
                .zip(present.par_chunks_mut(256))
                .zip(units.par_chunks(256))
                .for_each(|((sketches, present), units)| {
                    let mut sketcher = Sketcher::new(num_perm, seed);
                    let mut words = Vec::new();
                    for (d, &unit) in units.iter().enumerate() {
                        for (column, column_values) in values.iter().enumerate() {
                            if let Some(text) = column_values.text(unit as usize) {
                                let seed = column_seed(seed, column);
                                for_each_shingle(text, ngram, seed, &mut words, |h| {
                                    sketcher.add(h)
                                });
                            }
                        }
                        let out = &mut sketches[d * num_perm..(d + 1) * num_perm];
                        present[d] = sketcher.finish(out);
                    }
                })
        });
        Self {
            num_perm,
            values: sketches,
            present,
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    /// The sketch of document `d`.
    #[inline]
    pub fn of(&self, d: usize) -> &[u32] {
        &self.values[d * self.num_perm..(d + 1) * self.num_perm]
    }

    /// Estimated Jaccard similarity of documents `a` and `b`: the fraction of equal bins.
    #[inline]
    pub fn similarity(&self, a: usize, b: usize) -> f64 {
        lsh::similarity(self.of(a), self.of(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn sketch(hashes: &[u64], seed: u64, out: &mut [u32]) -> bool {
        let mut sketcher = Sketcher::new(out.len(), seed);
        hashes.iter().for_each(|&h| sketcher.add(h));
        sketcher.finish(out)
    }

    /// A document of `len` words drawn from a vocabulary of 5000 by a seeded generator.
    fn words(state: &mut u64, len: usize) -> Vec<String> {
        (0..len)
            .map(|_| {
                *state = splitmix64(*state);
                format!("w{}", *state % 5000)
            })
            .collect()
    }

    fn shingles(doc: &[String]) -> HashSet<u64> {
        let mut out = HashSet::new();
        for_each_shingle(&doc.join(" "), 5, 0, &mut Vec::new(), |h| {
            out.insert(h);
        });
        out
    }

    fn classic(set: &HashSet<u64>, k: usize) -> Vec<u64> {
        (0..k as u64)
            .map(|i| {
                let salt = splitmix64(i + 1);
                set.iter().map(|&h| splitmix64(h ^ salt)).min().unwrap()
            })
            .collect()
    }

    #[test]
    fn oph_estimates_jaccard_as_well_as_classic_minhash() {
        let (k, mut state) = (128, 7u64);
        let (mut err_oph, mut err_classic, mut pairs) = (0.0, 0.0, 0);
        for trial in 0..300 {
            let a = words(&mut state, 200);
            let mut b = a.clone();
            let edits = 1 + trial % 25; // true Jaccard from about 0.97 down to 0.4
            for _ in 0..edits {
                state = splitmix64(state);
                let at = (state % 200) as usize;
                b[at] = words(&mut state, 1).pop().unwrap();
            }
            let (sa, sb) = (shingles(&a), shingles(&b));
            let truth = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
            let (ha, hb): (Vec<u64>, Vec<u64>) =
                (sa.iter().copied().collect(), sb.iter().copied().collect());
            let (mut oa, mut ob) = (vec![0u32; k], vec![0u32; k]);
            assert!(sketch(&ha, 3, &mut oa));
            assert!(sketch(&hb, 3, &mut ob));
            let oph = oa.iter().zip(&ob).filter(|(x, y)| x == y).count() as f64 / k as f64;
            let (ca, cb) = (classic(&sa, k), classic(&sb, k));
            let cls = ca.iter().zip(&cb).filter(|(x, y)| x == y).count() as f64 / k as f64;
            err_oph += (oph - truth).abs();
            err_classic += (cls - truth).abs();
            pairs += 1;
        }
        let (err_oph, err_classic) = (err_oph / pairs as f64, err_classic / pairs as f64);
        assert!(err_oph < 0.05, "OPH mean abs error {err_oph}");
        assert!(
            err_oph <= 1.25 * err_classic,
            "OPH {err_oph} vs classic {err_classic}"
        );
    }

    #[test]
    fn identical_sets_have_identical_sketches_and_short_documents_densify() {
        let hashes = [1u64 << 40, 99u64 << 50];
        let (mut a, mut b) = (vec![0u32; 64], vec![0u32; 64]);
        assert!(sketch(&hashes, 1, &mut a));
        assert!(sketch(&[hashes[1], hashes[0]], 1, &mut b));
        assert_eq!(a, b);
        assert!(!sketch(&[], 1, &mut a));
    }

    #[test]
    fn sparse_sketches_fall_back_to_rotation_and_stay_a_function_of_the_set() {
        // Two shingles in 65536 bins: nearly every bin exhausts its probes. (The work is
        // bounded by PROBE_LIMIT, not timed here: the fuzz regression input
        // minhash-sparse-densification-slow.bin fails on a hang.)
        let hashes = [7u64 << 40 | 11, 3u64 << 60 | 5];
        let (mut a, mut b) = (vec![0u32; 1 << 16], vec![0u32; 1 << 16]);
        assert!(sketch(&hashes, 2, &mut a));
        assert!(sketch(&[hashes[1], hashes[0]], 2, &mut b));
        assert_eq!(a, b);
        assert!(
            a.iter().all(|&v| v == 11 || v == 5),
            "only the two minima are copied"
        );
        assert!(a.contains(&11) && a.contains(&5));
    }

    #[test]
    fn signatures_are_flat_and_missing_text_has_no_sketch() {
        let texts = [UnitValues::Borrowed(vec![
            Some("a b c"),
            None,
            Some(""),
            Some("a b c"),
        ])];
        let sigs = Signatures::build(&texts, &[0, 1, 2, 3], 2, 16, 0);
        assert_eq!(sigs.values.len(), 4 * 16);
        assert_eq!(sigs.present, vec![true, false, false, true]);
        assert_eq!(sigs.similarity(0, 3), 1.0);
    }
}
