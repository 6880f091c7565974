//! Rows grouped by key.
//!
//! Rows are walked once in input order. A row whose key equals the previous row's joins its
//! group without hashing, so contiguous groups (the layout after `unnest`, or of any corpus
//! written prompt by prompt) cost one comparison per row and one hash per group. Other rows
//! are hashed with xxh3 and looked up; equal hashes are verified byte for byte, so a collision
//! never merges two keys.

use hashbrown::HashTable;

use crate::key::{key_id, KeyBytes};

/// Groups of rows. Group `g` holds `rows[offsets[g]..offsets[g + 1]]`, in input order; groups
/// are numbered in order of their first row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    /// Start of each group in `rows`, plus one final end.
    pub offsets: Vec<usize>,
    /// Row numbers, grouped.
    pub rows: Vec<usize>,
    /// Stable id of each group's key (xxh3-64 of its canonical bytes).
    pub ids: Vec<u64>,
    /// Rows whose key is null; they belong to no group.
    pub null_keys: usize,
}

impl Groups {
    /// Number of groups.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rows of group `g`.
    pub fn rows_of(&self, g: usize) -> &[usize] {
        &self.rows[self.offsets[g]..self.offsets[g + 1]]
    }
}

/// Byte equality that skips the comparison when both sides are the same memory: repeated
/// prompts in polars share one string, so their views point at the same bytes.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

/// Group the rows of `keys` by equal key.
pub fn group_rows(keys: &KeyBytes<'_>) -> Groups {
    let n = keys.len();
    // Most corpora have several responses per prompt; a quarter of the rows avoids most
    // rehashing without reserving much for them.
    let mut index: HashTable<u32> = HashTable::with_capacity(n / 4);
    let mut first_rows: Vec<usize> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut row_group: Vec<u32> = Vec::with_capacity(n);
    let mut counts: Vec<usize> = Vec::new();
    let mut previous: Option<(&[u8], u32)> = None;
    let mut null_keys = 0;
    for row in 0..n {
        let Some(key) = keys.get(row) else {
            row_group.push(u32::MAX);
            null_keys += 1;
            previous = None;
            continue;
        };
        let group = match previous {
            Some((prev, g)) if same_bytes(prev, key) => g,
            _ => {
                let id = key_id(key);
                let found = index.find(id, |&g| {
                    keys.get(first_rows[g as usize])
                        .is_some_and(|k| same_bytes(k, key))
                });
                match found {
                    Some(&g) => g,
                    None => {
                        let g = ids.len() as u32;
                        ids.push(id);
                        first_rows.push(row);
                        counts.push(0);
                        index.insert_unique(id, g, |&g| ids[g as usize]);
                        g
                    }
                }
            }
        };
        counts[group as usize] += 1;
        row_group.push(group);
        previous = Some((key, group));
    }
    // Counting sort by group keeps input order inside each group.
    let mut offsets = Vec::with_capacity(ids.len() + 1);
    let mut total = 0;
    for &c in &counts {
        offsets.push(total);
        total += c;
    }
    offsets.push(total);
    let mut fill = offsets[..ids.len()].to_vec();
    let mut rows = vec![0; total];
    for (row, &g) in row_group.iter().enumerate() {
        if g != u32::MAX {
            rows[fill[g as usize]] = row;
            fill[g as usize] += 1;
        }
    }
    Groups {
        offsets,
        rows,
        ids,
        null_keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups_of(keys: &[Option<&'static str>]) -> Groups {
        group_rows(&KeyBytes::Text(keys.to_vec()))
    }

    #[test]
    fn contiguous_and_shuffled_groups_agree_on_membership() {
        let g = groups_of(&[Some("a"), Some("b"), Some("a"), None, Some("b"), Some("c")]);
        assert_eq!(g.len(), 3);
        assert_eq!(g.rows_of(0), &[0, 2]);
        assert_eq!(g.rows_of(1), &[1, 4]);
        assert_eq!(g.rows_of(2), &[5]);
        assert_eq!(g.null_keys, 1);
        assert_eq!(g.ids[0], key_id(b"a"));
    }

    #[test]
    fn a_null_between_equal_keys_does_not_split_the_group() {
        let g = groups_of(&[Some("a"), None, Some("a")]);
        assert_eq!(g.len(), 1);
        assert_eq!(g.rows_of(0), &[0, 2]);
    }

    #[test]
    fn empty_input_has_no_groups() {
        let g = groups_of(&[]);
        assert!(g.is_empty());
        assert_eq!(g.offsets, vec![0]);
    }
}
