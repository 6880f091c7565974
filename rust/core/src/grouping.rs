//! Rows grouped by key.
//!
//! Rows are walked once in input order and cut into runs of equal keys: a row whose key
//! equals the previous row's extends its run without hashing, so contiguous groups (the
//! layout after `unnest`, or of any corpus written prompt by prompt) cost one comparison per
//! row and one xxh3 per group. Runs whose hashes are equal are then found by bucketing the
//! hashes (a counting sort on their top bits: sequential passes instead of a hash-table probe,
//! a cache miss, per run) and verified byte for byte, so a collision never merges two keys.

use hashbrown::HashTable;
use rayon::prelude::*;

use crate::key::{key_id, KeyBytes};
use crate::parallel;

/// Groups of rows, numbered in order of their first row; each group's rows are in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    /// Start of each group in the grouped rows, plus one final end.
    pub offsets: Vec<usize>,
    /// Row numbers, grouped: group `g` holds `rows[offsets[g]..offsets[g + 1]]`. None when
    /// the groups are runs that cover every row in order (no null key, no group coming back:
    /// a table written prompt by prompt), where group `g` is rows `offsets[g]..offsets[g + 1]`
    /// and a vector of every row number would only be written and read again.
    rows: Option<Vec<usize>>,
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

    /// The rows of group `g`, in input order.
    #[inline]
    pub fn rows_of(&self, g: usize) -> GroupRows<'_> {
        let bounds = self.offsets[g]..self.offsets[g + 1];
        match &self.rows {
            Some(rows) => GroupRows::Listed(rows[bounds].iter()),
            None => GroupRows::Run(bounds),
        }
    }
}

/// The rows of one group ([`Groups::rows_of`]).
#[derive(Debug, Clone)]
pub enum GroupRows<'a> {
    /// Row numbers.
    Listed(std::slice::Iter<'a, usize>),
    /// Consecutive rows.
    Run(std::ops::Range<usize>),
}

impl Iterator for GroupRows<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            GroupRows::Listed(rows) => rows.next().copied(),
            GroupRows::Run(rows) => rows.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            GroupRows::Listed(rows) => rows.size_hint(),
            GroupRows::Run(rows) => rows.size_hint(),
        }
    }
}

impl ExactSizeIterator for GroupRows<'_> {}

/// Rows per worker below which grouping stays on one thread.
const MIN_ROWS_PER_PART: usize = 1 << 14;

/// Consecutive rows with one key.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    /// The key's id ([`key_id`]).
    id: u64,
}

impl Run {
    fn rows(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// The runs of rows with a key in `range`, in order: one comparison per row with the
/// previous row's key, one hash per run.
fn runs_of(keys: &KeyBytes<'_>, range: std::ops::Range<usize>) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut row = range.start;
    while row < range.end {
        if !keys.is_valid(row) {
            row += 1;
            continue;
        }
        let start = row;
        row += 1;
        while row < range.end && keys.is_valid(row) && keys.same_key(row - 1, row) {
            row += 1;
        }
        let key = keys.get(start).expect("a run starts on a row with a key");
        runs.push(Run {
            start,
            end: row,
            id: key_id(key),
        });
    }
    runs
}

/// For every run, the earliest run whose key equals its own (itself when none is earlier).
///
/// Runs are bucketed by the top bits of their ids (about one run per bucket, so a bucket holds
/// the runs of one key and, rarely, another), and within a bucket each run is compared with
/// the first run of every distinct key met so far in it.
fn earliest_equal_runs(keys: &KeyBytes<'_>, runs: &[Run]) -> Vec<u32> {
    let bits = usize::BITS - runs.len().leading_zeros();
    let bucket = |id: u64| id.checked_shr(u64::BITS - bits).unwrap_or(0) as usize;
    let mut starts = vec![0u32; (1 << bits) + 1];
    for run in runs {
        starts[bucket(run.id) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    // Runs by bucket, each bucket in run order, with their ids: comparing ids inside a bucket
    // then reads this array in order instead of the runs at random.
    let mut by_bucket = vec![(0u64, 0u32); runs.len()];
    let mut fill = starts.clone();
    for (r, run) in runs.iter().enumerate() {
        let slot = &mut fill[bucket(run.id)];
        by_bucket[*slot as usize] = (run.id, r as u32);
        *slot += 1;
    }
    let mut earliest: Vec<u32> = (0..runs.len() as u32).collect();
    let mut firsts: Vec<(u64, u32)> = Vec::new();
    for bounds in starts.windows(2) {
        let members = &by_bucket[bounds[0] as usize..bounds[1] as usize];
        if members.len() < 2 {
            continue;
        }
        firsts.clear();
        for &(id, r) in members {
            let start = runs[r as usize].start;
            let same = |&&(first_id, f): &&(u64, u32)| {
                first_id == id && keys.same_key(runs[f as usize].start, start)
            };
            match firsts.iter().find(same) {
                Some(&(_, f)) => earliest[r as usize] = f,
                None => firsts.push((id, r)),
            }
        }
    }
    earliest
}

/// Group the rows of `keys` by equal key.
///
/// Runs are found in contiguous ranges of rows, one per worker; a run cut by a range boundary
/// is two runs of one key, joined like any key that comes back.
pub fn group_rows(keys: &KeyBytes<'_>) -> Groups {
    let n = keys.len();
    let runs: Vec<Run> = parallel::install(|| {
        let workers = rayon::current_num_threads()
            .min(n / MIN_ROWS_PER_PART)
            .max(1);
        let step = n.div_ceil(workers).max(1);
        let parts: Vec<Vec<Run>> = (0..workers)
            .into_par_iter()
            .map(|w| runs_of(keys, (w * step).min(n)..((w + 1) * step).min(n)))
            .collect();
        parts.concat()
    });
    let earliest = earliest_equal_runs(keys, &runs);
    // Groups are numbered by their first run, which is in row order.
    let mut ids = Vec::new();
    let mut group_of_run: Vec<u32> = Vec::with_capacity(runs.len());
    for (r, run) in runs.iter().enumerate() {
        let first = earliest[r] as usize;
        let group = if first == r {
            ids.push(run.id);
            ids.len() as u32 - 1
        } else {
            group_of_run[first]
        };
        group_of_run.push(group);
    }
    let keyed: usize = runs.iter().map(Run::len).sum();
    let (offsets, rows) = match run_offsets(&runs, &group_of_run, ids.len()) {
        Some(offsets) if keyed == n => (offsets, None),
        Some(offsets) => {
            let mut rows = Vec::with_capacity(keyed);
            rows.extend(runs.iter().flat_map(Run::rows));
            (offsets, Some(rows))
        }
        None => {
            let (offsets, rows) = counting_sort(&runs, &group_of_run, ids.len());
            (offsets, Some(rows))
        }
    };
    Groups {
        offsets,
        rows,
        ids,
        null_keys: n - keyed,
    }
}

/// Offsets of the groups when each is one stretch of runs (nulls aside; the layout of a long
/// table written prompt by prompt), over the rows with a key in input order. None when some
/// group comes back after another one.
fn run_offsets(runs: &[Run], group_of_run: &[u32], groups: usize) -> Option<Vec<usize>> {
    let mut offsets = Vec::with_capacity(groups + 1);
    let mut keyed = 0;
    for (run, &g) in runs.iter().zip(group_of_run) {
        let g = g as usize;
        // The group of the previous run (across a null or a range boundary) goes on; any
        // other group must be the next one in order of first row, else it came back.
        if g + 1 != offsets.len() {
            if g != offsets.len() {
                return None;
            }
            offsets.push(keyed);
        }
        keyed += run.len();
    }
    offsets.push(keyed);
    Some(offsets)
}

/// Offsets and rows of `groups` groups by a counting sort of the runs by group, which keeps
/// input order inside each group.
fn counting_sort(runs: &[Run], group_of_run: &[u32], groups: usize) -> (Vec<usize>, Vec<usize>) {
    let mut counts = vec![0usize; groups];
    for (run, &g) in runs.iter().zip(group_of_run) {
        counts[g as usize] += run.len();
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
    for (run, &g) in runs.iter().zip(group_of_run) {
        let at = &mut fill[g as usize];
        for (slot, row) in rows[*at..].iter_mut().zip(run.rows()) {
            *slot = row;
        }
        *at += run.len();
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
                    if !keys.is_valid(row) {
                        continue;
                    }
                    let first = index.find(h, |&e| {
                        hashes[e as usize] == h && keys.same_key(e as usize, row)
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
            if !keys.is_valid(row) {
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

    /// Offsets and every group's rows, one after the other.
    fn members(groups: &Groups) -> (Vec<usize>, Vec<usize>) {
        let rows = (0..groups.len()).flat_map(|g| groups.rows_of(g)).collect();
        (groups.offsets.clone(), rows)
    }

    fn rows(groups: &Groups, g: usize) -> Vec<usize> {
        groups.rows_of(g).collect()
    }

    #[test]
    fn contiguous_and_shuffled_groups_agree_on_membership() {
        let g = groups_of(&[Some("a"), Some("b"), Some("a"), None, Some("b"), Some("c")]);
        assert_eq!(g.len(), 3);
        assert_eq!(rows(&g, 0), [0, 2]);
        assert_eq!(rows(&g, 1), [1, 4]);
        assert_eq!(rows(&g, 2), [5]);
        assert_eq!(g.null_keys, 1);
        assert_eq!(g.ids[0], key_id(b"a"));
    }

    #[test]
    fn a_null_between_equal_keys_does_not_split_the_group() {
        let g = groups_of(&[Some("a"), None, Some("a")]);
        assert_eq!(g.len(), 1);
        assert_eq!(rows(&g, 0), [0, 2]);
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
        // inside and between runs; the same without nulls (groups that are runs of every
        // row, kept implicit); then with one key coming back at the end.
        let names: Vec<String> = (0..60_000u64).map(|i| format!("k{i}")).collect();
        let mut keys: Vec<Option<&str>> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            for j in 0..(i * 7 % 9 + 1) {
                keys.push(if (i + j) % 13 == 0 { None } else { Some(name) });
            }
        }
        let keyed: Vec<Option<&str>> = keys.iter().copied().filter(Option::is_some).collect();
        assert!(group_rows(&KeyBytes::Text(keyed.clone())).rows.is_none());
        for keys in [keys.clone(), keyed, [keys, vec![Some("k1")]].concat()] {
            let groups = group_rows(&KeyBytes::Text(keys.clone()));
            assert!(keys.len() > 4 * MIN_ROWS_PER_PART);
            assert_eq!(members(&groups), naive(&keys));
        }
    }

    /// `rows` keys out of 30,011, no two consecutive ones equal.
    fn shuffled_names(rows: u64) -> Vec<String> {
        (0..rows)
            .map(|i| format!("k{}", (i * 7919) % 30_011))
            .collect()
    }

    /// `names` as keys, with a null at every row `i` where `i % every == at`.
    fn with_nulls(names: &[String], every: usize, at: usize) -> Vec<Option<&str>> {
        names
            .iter()
            .enumerate()
            .map(|(i, s)| (i % every != at).then_some(s.as_str()))
            .collect()
    }

    #[test]
    fn shuffled_keys_sharing_buckets_match_the_plain_grouping() {
        // Enough rows for several workers; 30,011 keys in about 300k runs, so that many
        // buckets hold runs of two keys, with nulls between them.
        let names = shuffled_names(300_000);
        let keys = with_nulls(&names, 89, 3);
        let groups = group_rows(&KeyBytes::Text(keys.clone()));
        assert_eq!(groups.len(), 30_011);
        assert_eq!(
            groups.null_keys,
            keys.iter().filter(|k| k.is_none()).count()
        );
        for (g, id) in groups.ids.iter().enumerate() {
            assert_eq!(*id, key_id(names[rows(&groups, g)[0]].as_bytes()));
        }
        assert_eq!(members(&groups), naive(&keys));
    }

    #[test]
    fn first_equal_rows_agree_with_the_groups() {
        // Enough rows for several workers, repeated keys and nulls.
        let names = shuffled_names(100_000);
        let keys = KeyBytes::Text(with_nulls(&names, 97, 5));
        let first = first_equal_rows(&keys);
        let groups = group_rows(&keys);
        let mut expected = vec![u32::MAX; keys.len()];
        for g in 0..groups.len() {
            for row in groups.rows_of(g) {
                expected[row] = rows(&groups, g)[0] as u32;
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
