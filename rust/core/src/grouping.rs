//! Rows grouped by key.
//!
//! Rows are walked once in input order. A row whose key equals the previous row's joins its
//! group without hashing, so contiguous groups (the layout after `unnest`, or of any corpus
//! written prompt by prompt) cost one comparison per row and one hash per group. Other rows
//! are hashed with xxh3 and looked up; equal hashes are verified byte for byte, so a collision
//! never merges two keys. Large inputs are grouped in contiguous ranges, one per worker, and
//! merged.

use hashbrown::HashTable;
use rayon::prelude::*;

use crate::key::{key_id, KeyBytes};
use crate::parallel;

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

/// Rows per worker below which grouping stays on one thread.
const MIN_ROWS_PER_PART: usize = 1 << 14;

/// The groups of one contiguous range of rows, numbered locally in order of first row.
struct PartGroups {
    /// First row of the range.
    start: usize,
    /// Local group of each row of the range (`u32::MAX` for a null key).
    row_group: Vec<u32>,
    /// First row (global) and key id of each local group.
    first_rows: Vec<usize>,
    ids: Vec<u64>,
    null_keys: usize,
    /// The local groups by key id.
    index: HashTable<u32>,
}

impl PartGroups {
    /// The local group whose key is `key` (with id `id`), if this range has one.
    fn find(&self, keys: &KeyBytes<'_>, key: &[u8], id: u64) -> Option<u32> {
        self.index
            .find(id, |&g| {
                self.ids[g as usize] == id
                    && keys
                        .get(self.first_rows[g as usize])
                        .is_some_and(|k| same_bytes(k, key))
            })
            .copied()
    }

    /// The local group of `key` (with id `id`), added with first row `row` when new.
    fn find_or_insert(&mut self, keys: &KeyBytes<'_>, key: &[u8], id: u64, row: usize) -> u32 {
        if let Some(g) = self.find(keys, key, id) {
            return g;
        }
        let g = self.ids.len() as u32;
        self.ids.push(id);
        self.first_rows.push(row);
        let ids = &self.ids;
        self.index.insert_unique(id, g, |&g| ids[g as usize]);
        g
    }
}

/// Group the rows `range` of `keys`: one comparison per row with the previous key, one hash
/// per run of equal keys.
fn group_part(keys: &KeyBytes<'_>, range: std::ops::Range<usize>) -> PartGroups {
    let mut part = PartGroups {
        start: range.start,
        row_group: Vec::with_capacity(range.len()),
        first_rows: Vec::new(),
        ids: Vec::new(),
        null_keys: 0,
        index: HashTable::with_capacity(range.len() / 4),
    };
    let mut previous: Option<(&[u8], u32)> = None;
    for row in range {
        let Some(key) = keys.get(row) else {
            part.row_group.push(u32::MAX);
            part.null_keys += 1;
            previous = None;
            continue;
        };
        let group = match previous {
            Some((prev, g)) if same_bytes(prev, key) => g,
            _ => part.find_or_insert(keys, key, key_id(key), row),
        };
        part.row_group.push(group);
        previous = Some((key, group));
    }
    part
}

/// Group the rows of `keys` by equal key.
///
/// Large inputs are cut into one contiguous range per worker; each range is grouped on its
/// own, then each local group is looked up in the earlier ranges' tables (a lookup per local
/// group, not per row, spread over the workers), which keeps groups numbered by their first
/// row.
pub fn group_rows(keys: &KeyBytes<'_>) -> Groups {
    let n = keys.len();
    parallel::install(|| {
        let workers = rayon::current_num_threads()
            .min(n / MIN_ROWS_PER_PART)
            .max(1);
        let step = n.div_ceil(workers).max(1);
        let parts: Vec<PartGroups> = (0..workers)
            .into_par_iter()
            .map(|w| group_part(keys, (w * step).min(n)..((w + 1) * step).min(n)))
            .collect();

        // Merge: a local group whose key an earlier range holds joins the earliest such
        // range's group. The earlier ranges' tables are probed in parallel; numbering in range
        // order keeps groups numbered by their first row.
        let earlier: Vec<Vec<Option<(usize, u32)>>> = parts
            .par_iter()
            .enumerate()
            .map(|(p, part)| {
                part.ids
                    .par_iter()
                    .zip(&part.first_rows)
                    .with_min_len(1 << 12)
                    .map(|(&id, &row)| {
                        let key = keys.get(row).expect("a group's first row has a key");
                        parts[..p]
                            .iter()
                            .enumerate()
                            .find_map(|(q, other)| other.find(keys, key, id).map(|l| (q, l)))
                    })
                    .collect()
            })
            .collect();
        let mut ids = Vec::with_capacity(parts.iter().map(|p| p.ids.len()).sum());
        let mut global_of: Vec<Vec<u32>> = Vec::with_capacity(parts.len());
        for (part, earlier) in parts.iter().zip(&earlier) {
            let global = part
                .ids
                .iter()
                .zip(earlier)
                .map(|(&id, found)| match *found {
                    Some((q, l)) => global_of[q][l as usize],
                    None => {
                        ids.push(id);
                        (ids.len() - 1) as u32
                    }
                })
                .collect();
            global_of.push(global);
        }
        let null_keys = parts.iter().map(|p| p.null_keys).sum();
        let global_of: Vec<&[u32]> = global_of.iter().map(Vec::as_slice).collect();
        let (offsets, rows) = runs(&parts, &global_of, ids.len())
            .unwrap_or_else(|| counting_sort(&parts, &global_of, ids.len()));
        Groups {
            offsets,
            rows,
            ids,
            null_keys,
        }
    })
}

/// Offsets and rows of the groups when each is one run of rows (nulls aside; the layout of
/// a long table written prompt by prompt): the rows in input order, cut where the group
/// changes. None when some group comes back after another one.
fn runs(
    parts: &[PartGroups],
    global_of: &[&[u32]],
    groups: usize,
) -> Option<(Vec<usize>, Vec<usize>)> {
    // Each range writes its non-null rows into its own slice of the result and notes where
    // its runs start (within the slice) and their global group.
    let total: usize = parts.iter().map(|p| p.row_group.len() - p.null_keys).sum();
    let mut rows = vec![0usize; total];
    let mut slices = Vec::with_capacity(parts.len());
    let mut rest = rows.as_mut_slice();
    for part in parts {
        let (mine, others) = rest.split_at_mut(part.row_group.len() - part.null_keys);
        slices.push(mine);
        rest = others;
    }
    let starts: Vec<Vec<(usize, u32)>> = parts
        .par_iter()
        .zip(global_of)
        .zip(slices)
        .map(|((part, global), out)| {
            let mut starts = Vec::with_capacity(global.len());
            let mut previous = u32::MAX;
            let mut k = 0;
            for (i, &g) in part.row_group.iter().enumerate() {
                if g == u32::MAX {
                    continue;
                }
                if g != previous {
                    starts.push((k, global[g as usize]));
                    previous = g;
                }
                out[k] = part.start + i;
                k += 1;
            }
            starts
        })
        .collect();
    let mut offsets = Vec::with_capacity(groups + 1);
    let mut base = 0;
    for (part, starts) in parts.iter().zip(starts) {
        for (start, g) in starts {
            // A group continued from the previous range is the same run; any other group
            // must be the next one in order of first row, else it came back.
            if g as usize + 1 == offsets.len() {
                continue;
            }
            if g as usize != offsets.len() {
                return None;
            }
            offsets.push(base + start);
        }
        base += part.row_group.len() - part.null_keys;
    }
    offsets.push(total);
    Some((offsets, rows))
}

/// Offsets and rows of `groups` groups by a counting sort of every range's rows by global
/// group, which keeps input order inside each group.
fn counting_sort(
    parts: &[PartGroups],
    global_of: &[&[u32]],
    groups: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut counts = vec![0usize; groups];
    for (part, global) in parts.iter().zip(global_of) {
        for &g in &part.row_group {
            if g != u32::MAX {
                counts[global[g as usize] as usize] += 1;
            }
        }
    }
    let mut offsets = Vec::with_capacity(groups + 1);
    let mut total = 0;
    for &c in &counts {
        offsets.push(total);
        total += c;
    }
    offsets.push(total);
    let mut fill = offsets[..groups].to_vec();
    let mut rows = vec![0; total];
    for (part, global) in parts.iter().zip(global_of) {
        for (i, &g) in part.row_group.iter().enumerate() {
            if g != u32::MAX {
                let g = global[g as usize] as usize;
                rows[fill[g]] = part.start + i;
                fill[g] += 1;
            }
        }
    }
    (offsets, rows)
}

/// For every row, the first row (in input order) whose key equals its own; `u32::MAX` for a
/// null key. This is what exact dedup needs, without the groups' row lists.
///
/// Keys are hashed in parallel; then each worker owns the keys whose hash falls in its share
/// and walks all rows in order, looking up only its own: the workers' tables never share a
/// key, so there is nothing to merge, and each sees its rows in order, so the first is found
/// without sorting.
pub fn first_equal_rows(keys: &KeyBytes<'_>) -> Vec<u32> {
    let n = keys.len();
    parallel::install(|| {
        let hashes: Vec<u64> = (0..n)
            .into_par_iter()
            .with_min_len(1 << 12)
            .map(|row| keys.get(row).map_or(0, key_id))
            .collect();
        let workers = rayon::current_num_threads()
            .min(n / MIN_ROWS_PER_PART)
            .max(1);
        // The share of a hash is read from its middle bits: hashbrown takes the bucket from
        // the low bits and the tag from the top ones, which must stay spread within a share.
        let share = |h: u64| ((((h >> 24) & 0xffff_ffff) * workers as u64) >> 32) as usize;
        let repeats: Vec<Vec<(u32, u32)>> = (0..workers)
            .into_par_iter()
            .map(|w| {
                let mut index: HashTable<u32> = HashTable::with_capacity(n / workers + 1);
                let mut repeats = Vec::new();
                for (row, &h) in hashes.iter().enumerate() {
                    if share(h) != w {
                        continue;
                    }
                    let Some(key) = keys.get(row) else {
                        continue;
                    };
                    let first = index.find(h, |&e| {
                        hashes[e as usize] == h
                            && keys.get(e as usize).is_some_and(|k| same_bytes(k, key))
                    });
                    match first {
                        Some(&e) => repeats.push((row as u32, e)),
                        None => {
                            index.insert_unique(h, row as u32, |&e| hashes[e as usize]);
                        }
                    }
                }
                repeats
            })
            .collect();
        let mut first: Vec<u32> = (0..n as u32).collect();
        for (row, f) in first.iter_mut().enumerate() {
            if keys.get(row).is_none() {
                *f = u32::MAX;
            }
        }
        for (row, e) in repeats.into_iter().flatten() {
            first[row as usize] = e;
        }
        first
    })
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
    fn ranges_merge_into_the_sequential_grouping() {
        // Enough rows for several workers; keys recur across the range boundaries.
        let names: Vec<String> = (0..300_000u64)
            .map(|i| format!("k{}", (i * 7919) % 1000))
            .collect();
        let keys: Vec<Option<&str>> = names.iter().map(|s| Some(s.as_str())).collect();
        let parallel = group_rows(&KeyBytes::Text(keys.clone()));
        let sequential = group_part(&KeyBytes::Text(keys), 0..300_000);
        assert_eq!(parallel.len(), 1000);
        assert_eq!(parallel.ids, sequential.ids);
        for g in 0..parallel.len() {
            assert_eq!(parallel.rows_of(g)[0], sequential.first_rows[g]);
            assert!(parallel.rows_of(g).windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(parallel.rows.len(), 300_000);
    }

    /// Groups computed the plain way: a map from key to rows, numbered by first row.
    fn naive(keys: &[Option<&str>]) -> (Vec<usize>, Vec<usize>) {
        let mut order: Vec<&str> = Vec::new();
        let mut members: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        for (row, key) in keys.iter().enumerate() {
            if let Some(k) = key {
                members.entry(k).or_insert_with(|| {
                    order.push(k);
                    Vec::new()
                });
                members.get_mut(k).unwrap().push(row);
            }
        }
        let mut offsets = vec![0];
        let mut rows = Vec::new();
        for k in order {
            rows.extend(&members[k]);
            offsets.push(rows.len());
        }
        (offsets, rows)
    }

    #[test]
    fn runs_across_ranges_and_returning_keys_match_the_plain_grouping() {
        // Runs of 1 to 9 rows, so that runs straddle the ranges' boundaries, with nulls
        // inside and between runs; then the same with one key coming back at the end.
        let names: Vec<String> = (0..60_000u64).map(|i| format!("k{i}")).collect();
        let mut keys: Vec<Option<&str>> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            for j in 0..(i * 7 % 9 + 1) {
                keys.push(if (i + j) % 13 == 0 { None } else { Some(name) });
            }
        }
        for keys in [keys.clone(), [keys, vec![Some("k1")]].concat()] {
            let groups = group_rows(&KeyBytes::Text(keys.clone()));
            assert!(keys.len() > 4 * MIN_ROWS_PER_PART);
            assert_eq!((groups.offsets, groups.rows), naive(&keys));
        }
    }

    #[test]
    fn first_equal_rows_agree_with_the_groups() {
        // Enough rows for several workers, repeated keys and nulls.
        let names: Vec<String> = (0..100_000u64)
            .map(|i| format!("k{}", (i * 7919) % 30_011))
            .collect();
        let keys: Vec<Option<&str>> = names
            .iter()
            .enumerate()
            .map(|(i, s)| (i % 97 != 5).then_some(s.as_str()))
            .collect();
        let keys = KeyBytes::Text(keys);
        let first = first_equal_rows(&keys);
        let groups = group_rows(&keys);
        let mut expected = vec![u32::MAX; keys.len()];
        for g in 0..groups.len() {
            for &row in groups.rows_of(g) {
                expected[row] = groups.rows_of(g)[0] as u32;
            }
        }
        assert_eq!(first, expected);
    }

    #[test]
    fn empty_input_has_no_groups() {
        let g = groups_of(&[]);
        assert!(g.is_empty());
        assert_eq!(g.offsets, vec![0]);
    }
}
