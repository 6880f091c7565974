//! Leak-free train/test splits (`pk.split`).
//!
//! Rows are clustered like deduplication clusters them, with the `group` column as both the
//! unit and the compared value: rows sharing a group value are one unit, units whose values
//! are equal after normalisation (and, with `near_duplicates`, whose MinHash similarity
//! reaches the threshold) join one cluster. Whole clusters are then shuffled with a seeded
//! generator and moved to the test side while they fit in its row budget, so no prompt, and
//! no near-duplicate of one, lands on both sides.

use crate::accounting::Accounting;
use crate::dedup::{cluster, DedupOptions, Method};
use crate::error::{Error, Result};
use crate::pairs::splitmix64;
use crate::table::Table;

/// The arguments of [`split`]; see `pk.split`.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    /// Column whose value no two sides may share (e.g. the prompt).
    pub group: String,
    /// Rows wanted on the test side.
    pub test_rows: usize,
    /// Seed of the shuffle (and of the sketches).
    pub seed: u64,
    /// Also keep near-duplicate groups on one side.
    pub near_duplicates: bool,
    /// Words per shingle for near-duplicates.
    pub ngram: usize,
    /// Sketch size for near-duplicates.
    pub num_perm: usize,
    /// Similarity at or above which groups are near-duplicates.
    pub threshold: f64,
}

/// For every row, whether it goes to the test side ([`choose_test`]); and the accounting.
pub fn split(table: &Table, options: &SplitOptions) -> Result<(Vec<bool>, Accounting)> {
    let n = table.num_rows();
    if options.test_rows > n {
        return Err(Error::argument(
            "test_size",
            "at most the number of rows",
            options.test_rows,
        ));
    }
    let clustering = cluster(
        table,
        &DedupOptions {
            columns: vec![options.group.clone()],
            group: Some(options.group.clone()),
            method: if options.near_duplicates {
                Method::MinHash
            } else {
                Method::Exact
            },
            normalize: true,
            ngram: options.ngram,
            num_perm: options.num_perm,
            threshold: options.threshold,
            bands: None,
            seed: options.seed,
        },
    )?;
    let units = &clustering.units;
    let mut size = vec![0usize; units.len()];
    for (u, &r) in clustering.root.iter().enumerate() {
        size[r as usize] += units.rows_of(u).len();
    }
    let roots: Vec<usize> = (0..units.len())
        .filter(|&u| size[u] > 0 && clustering.root[u] as usize == u)
        .collect();
    let sizes: Vec<usize> = roots.iter().map(|&r| size[r]).collect();
    let (chosen, test_rows) = choose_test(&sizes, options.test_rows, options.seed);
    let mut to_test = vec![false; units.len()];
    for (&r, chosen) in roots.iter().zip(chosen) {
        to_test[r] = chosen;
    }
    let mut is_test = vec![false; n];
    for (u, &r) in clustering.root.iter().enumerate() {
        if to_test[r as usize] {
            units.rows_of(u).iter().for_each(|&row| is_test[row] = true);
        }
    }
    let mut accounting = Accounting {
        rows_in: n,
        rows_used: n,
        ..Default::default()
    };
    accounting.counts.insert("train_rows", n - test_rows);
    accounting.counts.insert("test_rows", test_rows);
    accounting.counts.insert("groups_in", units.len());
    accounting.counts.insert("clusters", roots.len());
    Ok((is_test, accounting))
}

/// Which clusters go to the test side, and its rows: `sizes` are the clusters' row counts in
/// order of their first row. Clusters are visited in a seeded random order (splitmix64
/// Fisher-Yates); each goes to the test side when it fits in the remaining budget of
/// `test_rows`. If none fits, the first one visited goes there, so that a positive budget
/// never gives an empty test side. Out-of-core splits (`prefkit.stream`) call this too.
pub fn choose_test(sizes: &[usize], test_rows: usize, seed: u64) -> (Vec<bool>, usize) {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    let mut state = seed;
    for i in (1..order.len()).rev() {
        state = splitmix64(state);
        let j = ((state as u128 * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    let mut chosen = vec![false; sizes.len()];
    let mut taken = 0;
    for &c in &order {
        if taken + sizes[c] <= test_rows {
            chosen[c] = true;
            taken += sizes[c];
        }
    }
    if taken == 0 && test_rows > 0 {
        if let Some(&c) = order.first() {
            chosen[c] = true;
            taken = sizes[c];
        }
    }
    (chosen, taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};

    #[test]
    fn equal_prompts_stay_on_one_side_and_the_budget_holds() {
        let prompts: Vec<String> = (0..40).map(|i| format!("Prompt {}", i % 10)).collect();
        let values: Vec<Option<&str>> = prompts.iter().map(|p| Some(p.as_str())).collect();
        let batch = RecordBatch::try_from_iter([(
            "prompt",
            Arc::new(StringArray::from(values)) as ArrayRef,
        )])
        .unwrap();
        let table = Table::new(batch.schema(), vec![batch]);
        let options = SplitOptions {
            group: "prompt".into(),
            test_rows: 8,
            seed: 1,
            near_duplicates: false,
            ngram: 5,
            num_perm: 64,
            threshold: 0.8,
        };
        let (is_test, acc) = split(&table, &options).unwrap();
        assert_eq!(is_test.iter().filter(|&&t| t).count(), 8);
        for a in 0..40 {
            for b in 0..40 {
                if prompts[a] == prompts[b] {
                    assert_eq!(is_test[a], is_test[b]);
                }
            }
        }
        assert_eq!(acc.counts["clusters"], 10);
        assert_eq!(split(&table, &options).unwrap().0, is_test);
    }
}
