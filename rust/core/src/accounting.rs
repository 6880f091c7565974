//! Row accounting: every input row is either used or dropped for one named reason.

use std::collections::BTreeMap;

/// What an operation did with its input rows, written into the result's provenance metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Rows in the input.
    pub rows_in: usize,
    /// Rows that contributed to the output.
    pub rows_used: usize,
    /// Rows that did not, by reason; `rows_used + sum(dropped) == rows_in`.
    pub dropped: BTreeMap<&'static str, usize>,
    /// Operation-specific counts (groups, pairs...).
    pub counts: BTreeMap<&'static str, usize>,
}

impl Accounting {
    /// Count `n` rows dropped for `reason`; zero counts are not recorded.
    pub fn drop_rows(&mut self, reason: &'static str, n: usize) {
        if n > 0 {
            *self.dropped.entry(reason).or_default() += n;
        }
    }

    /// Add another partial accounting (e.g. of one worker's groups) into this one.
    pub fn merge(&mut self, other: &Accounting) {
        self.rows_in += other.rows_in;
        self.rows_used += other.rows_used;
        for (reason, n) in &other.dropped {
            self.drop_rows(reason, *n);
        }
        for (name, n) in &other.counts {
            *self.counts.entry(name).or_default() += n;
        }
    }

    /// Rows accounted for: used plus dropped.
    pub fn rows_accounted(&self) -> usize {
        self.rows_used + self.dropped.values().sum::<usize>()
    }
}
