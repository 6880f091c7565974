//! Batch plans: which rows go together in a training or scoring batch (`pk.plan_batches`).
//!
//! Rows are sorted by length (stably) and cut greedily into batches that stay under a token
//! budget, so that rows of similar length share a batch and little compute goes to padding.
//! The order of whole batches is then shuffled with a seeded generator: every batch keeps
//! its similar lengths, and training still sees lengths in random order.

use crate::error::{Error, Result};
use crate::pairs::splitmix64;

/// How a batch's cost is counted against the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Padded to its longest row: cost = rows x longest.
    Padded,
    /// Packed without padding: cost = sum of lengths.
    Packed,
}

/// A plan: batch `b` holds `rows[offsets[b]..offsets[b + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Row numbers, batch after batch.
    pub rows: Vec<u64>,
    /// Start of each batch in `rows`, plus one final end.
    pub offsets: Vec<u64>,
}

/// Plan batches of rows with token counts `lengths` under `max_tokens` per batch.
///
/// A row longer than the budget gets a batch of its own (it cannot be split here). With
/// `shuffle`, whole batches are put in a seeded random order (Fisher-Yates on splitmix64);
/// otherwise they come shortest first.
pub fn plan_batches(
    lengths: &[u64],
    max_tokens: u64,
    layout: Layout,
    shuffle: bool,
    seed: u64,
) -> Result<BatchPlan> {
    if max_tokens == 0 {
        return Err(Error::argument("max_tokens", "an integer >= 1", 0));
    }
    let mut order: Vec<u64> = (0..lengths.len() as u64).collect();
    order.sort_by_key(|&row| lengths[row as usize]);

    let mut bounds: Vec<(usize, usize)> = Vec::new();
    let (mut start, mut longest, mut total) = (0usize, 0u64, 0u64);
    for (position, &row) in order.iter().enumerate() {
        let length = lengths[row as usize];
        let count = (position - start) as u64 + 1;
        let cost = match layout {
            Layout::Padded => count * longest.max(length),
            Layout::Packed => total + length,
        };
        if position > start && cost > max_tokens {
            bounds.push((start, position));
            start = position;
            longest = 0;
            total = 0;
        }
        longest = longest.max(length);
        total += length;
    }
    if start < order.len() {
        bounds.push((start, order.len()));
    }

    if shuffle {
        let mut state = seed;
        for i in (1..bounds.len()).rev() {
            state = splitmix64(state);
            let j = ((state as u128 * (i as u128 + 1)) >> 64) as usize;
            bounds.swap(i, j);
        }
    }
    let mut rows = Vec::with_capacity(order.len());
    let mut offsets = Vec::with_capacity(bounds.len() + 1);
    offsets.push(0);
    for (s, e) in bounds {
        rows.extend_from_slice(&order[s..e]);
        offsets.push(rows.len() as u64);
    }
    Ok(BatchPlan { rows, offsets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(plan: &BatchPlan) -> Vec<Vec<u64>> {
        plan.offsets
            .windows(2)
            .map(|w| plan.rows[w[0] as usize..w[1] as usize].to_vec())
            .collect()
    }

    #[test]
    fn padded_batches_respect_the_budget_and_sort_by_length() {
        let lengths = [5, 1, 4, 2, 3, 10];
        let plan = plan_batches(&lengths, 8, Layout::Padded, false, 0).unwrap();
        assert_eq!(
            batches(&plan),
            vec![vec![1, 3], vec![4, 2], vec![0], vec![5]]
        );
    }

    #[test]
    fn packed_batches_count_real_tokens() {
        let lengths = [5, 1, 4, 2, 3];
        let plan = plan_batches(&lengths, 6, Layout::Packed, false, 0).unwrap();
        assert_eq!(batches(&plan), vec![vec![1, 3, 4], vec![2], vec![0]]);
    }

    #[test]
    fn shuffling_moves_whole_batches_and_is_seeded() {
        let lengths: Vec<u64> = (0..100).map(|i| (i * 37 % 50) + 1).collect();
        let sorted = batches(&plan_batches(&lengths, 64, Layout::Padded, false, 0).unwrap());
        let a = batches(&plan_batches(&lengths, 64, Layout::Padded, true, 3).unwrap());
        let b = batches(&plan_batches(&lengths, 64, Layout::Padded, true, 3).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, sorted);
        let mut a_sorted = a.clone();
        a_sorted.sort();
        let mut expected = sorted.clone();
        expected.sort();
        assert_eq!(a_sorted, expected);
    }

    #[test]
    fn zero_budget_is_an_error() {
        assert!(plan_batches(&[1], 0, Layout::Padded, false, 0).is_err());
    }
}
