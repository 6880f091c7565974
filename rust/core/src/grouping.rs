//! Rows grouped by key.
//!
//! Rows are walked once in input order and cut into runs of equal keys: a row whose key
//! equals the previous row's extends its run without hashing, so contiguous groups (the
//! layout after `unnest`, or of any corpus written prompt by prompt) cost one comparison per
//! row and one xxh3 per group. Bitsets of the hashes seen pick out the runs that may share a
//! key with another (in such a table: a few false positives, and nothing more to do); those
//! are bucketed on their hashes (a counting sort on the top bits: sequential passes instead of
//! a hash-table probe, a cache miss, per run) and matched in parallel, byte for byte, so a
//! collision never merges two keys. Keys stored once for many rows compare by location.

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
        row = keys.run_end(start, range.end);
        let key = keys.get(start).expect("a run starts on a row with a key");
        runs.push(Run {
            start,
            end: row,
            id: key_id(key),
        });
    }
    runs
}

/// For every run, the earliest run whose key equals its own (itself when none is earlier);
/// None when every run is the earliest of its key (no key comes back).
///
/// Only the runs whose id another run may share ([`runs_that_may_repeat`]: in a table written
/// prompt by prompt, a few false positives) are matched, by bucketing them on the top bits of
/// their ids (about one run per bucket, so a bucket holds the runs of one key and, rarely,
/// another) and comparing each run with the first run of every distinct key met so far in
/// its bucket.
fn earliest_equal_runs(keys: &KeyBytes<'_>, runs: &[Run]) -> Option<Vec<u32>> {
    let candidates = runs_that_may_repeat(runs);
    if candidates.is_empty() {
        return None;
    }
    let bits = usize::BITS - candidates.len().leading_zeros();
    let bucket = |id: u64| id.checked_shr(u64::BITS - bits).unwrap_or(0) as usize;
    let mut starts = vec![0u32; (1 << bits) + 1];
    for &r in &candidates {
        starts[bucket(runs[r as usize].id) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    // Candidates by bucket, each bucket in run order, with their ids and key locations (read
    // here in row order): matching inside a bucket then reads this array in order, and keys
    // stored once for many rows (polars' repeated prompts) are equal without a random read of
    // the runs, the keys or their bytes.
    let mut by_bucket = vec![Candidate::default(); candidates.len()];
    let mut fill = starts.clone();
    for &r in &candidates {
        let run = &runs[r as usize];
        let slot = &mut fill[bucket(run.id)];
        by_bucket[*slot as usize] = Candidate {
            id: run.id,
            run: r,
            location: keys.location(run.start),
        };
        *slot += 1;
    }
    // Buckets are independent, so workers take equal stretches of them (the ids are uniform).
    // In a shuffled table every key comes back: a million comparisons, each reading a key's
    // bytes at random.
    let buckets = starts.len() - 1;
    let matches: Vec<Vec<(u32, u32)>> = parallel::install(|| {
        let workers = rayon::current_num_threads()
            .min(candidates.len() / MIN_ROWS_PER_PART)
            .max(1);
        let step = buckets.div_ceil(workers);
        (0..workers)
            .into_par_iter()
            .map(|w| {
                let bucket_range = (w * step).min(buckets)..((w + 1) * step).min(buckets);
                matches_in(keys, runs, &by_bucket, &starts, bucket_range)
            })
            .collect()
    });
    if matches.iter().all(Vec::is_empty) {
        return None;
    }
    let mut earliest: Vec<u32> = (0..runs.len() as u32).collect();
    for (run, first) in matches.into_iter().flatten() {
        earliest[run as usize] = first;
    }
    Some(earliest)
}

/// How many candidates ahead of the one being matched to prefetch the key bytes of.
const PREFETCH_AHEAD: usize = 8;

/// `(run, earliest run with an equal key)` for the runs of `buckets` that have an earlier one.
fn matches_in(
    keys: &KeyBytes<'_>,
    runs: &[Run],
    by_bucket: &[Candidate],
    starts: &[u32],
    buckets: std::ops::Range<usize>,
) -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    let mut firsts: Vec<Candidate> = Vec::new();
    for b in buckets {
        let members = &by_bucket[starts[b] as usize..starts[b + 1] as usize];
        if members.len() < 2 {
            continue;
        }
        firsts.clear();
        for (i, member) in members.iter().enumerate() {
            // Comparisons read keys at random: start on the next bucket's while this one's run.
            if let Some(ahead) = by_bucket.get(starts[b] as usize + i + PREFETCH_AHEAD) {
                keys.prefetch(ahead.location);
            }
            let located = |c: &Candidate| (runs[c.run as usize].start, c.location);
            let same = |first: &&Candidate| {
                first.id == member.id && keys.same_located_key(located(first), located(member))
            };
            match firsts.iter().find(same) {
                Some(first) => found.push((member.run, first.run)),
                None => firsts.push(*member),
            }
        }
    }
    found
}

/// A run that may share its key with another ([`earliest_equal_runs`]).
#[derive(Debug, Clone, Copy, Default)]
struct Candidate {
    id: u64,
    run: u32,
    /// [`KeyBytes::location`] of the run's key.
    location: u128,
}

/// The runs whose id some other run may share, in run order: every run whose key comes back,
/// its first run included, and a few others.
///
/// Two bitsets of the ids seen so far, one indexed by their low bits and one by their high
/// bits (16 bits per run each, at most 1 MiB each: they stay in the core's cache), flag each
/// run whose bits are set in both: a repeat, or a false positive (at most one run in 256 up to
/// 2^19 runs; every candidate costs a read of its key's location later, at random). Most
/// tables have no repeat and few flags; a third bitset of the flagged ids then picks out every
/// run with one of them. Both are one pass over the runs.
fn runs_that_may_repeat(runs: &[Run]) -> Vec<u32> {
    let mut seen_low = IdBits::new(runs.len());
    let mut seen_high = IdBits::new(runs.len());
    let flagged: Vec<u64> = runs
        .iter()
        // `&`, not `&&`: both bits are set for every run.
        .filter(|run| seen_low.insert(run.id) & seen_high.insert(run.id.rotate_left(32)))
        .map(|run| run.id)
        .collect();
    if flagged.is_empty() {
        return Vec::new();
    }
    // Sparse (about 1024 bits per flagged id): the runs it picks by mistake each cost a
    // random read of a key's location, and it stays small where few runs are flagged.
    let mut repeated = IdBits::with_bits_per_id(flagged.len(), 1024);
    for &id in &flagged {
        repeated.insert(id);
    }
    (0..runs.len() as u32)
        .filter(|&r| repeated.contains(runs[r as usize].id))
        .collect()
}

/// A set of ids kept as one bit each, indexed by the ids' low bits: membership is exact for
/// ids inserted and a false positive at a rate of about inserted / size for others.
struct IdBits {
    words: Vec<u64>,
    mask: u64,
}

impl IdBits {
    /// About 16 bits per id expected ([`IdBits::with_bits_per_id`]).
    fn new(ids: usize) -> Self {
        Self::with_bits_per_id(ids, 16)
    }

    /// About `bits_per_id` bits per id expected, a power of two between 64 and 2^23 bits.
    fn with_bits_per_id(ids: usize, bits_per_id: usize) -> Self {
        let bits = ids
            .saturating_mul(bits_per_id)
            .next_power_of_two()
            .clamp(64, 1 << 23);
        IdBits {
            words: vec![0; bits / 64],
            mask: bits as u64 - 1,
        }
    }

    /// Sets the bit of `id`; whether it was already set.
    #[inline]
    fn insert(&mut self, id: u64) -> bool {
        let bit = id & self.mask;
        let word = &mut self.words[(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        let was_set = *word & mask != 0;
        *word |= mask;
        was_set
    }

    #[inline]
    fn contains(&self, id: u64) -> bool {
        let bit = id & self.mask;
        self.words[(bit / 64) as usize] & (1u64 << (bit % 64)) != 0
    }
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
    let keyed: usize = runs.iter().map(Run::len).sum();
    let Some(earliest) = earliest_equal_runs(keys, &runs) else {
        // Every run is a group of its own.
        let mut offsets = Vec::with_capacity(runs.len() + 1);
        offsets.push(0);
        offsets.extend(runs.iter().scan(0, |end, run| {
            *end += run.len();
            Some(*end)
        }));
        let rows = (keyed < n).then(|| runs.iter().flat_map(Run::rows).collect());
        return Groups {
            offsets,
            rows,
            ids: runs.iter().map(|run| run.id).collect(),
            null_keys: n - keyed,
        };
    };
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
    fn keys_that_never_come_back_are_groups_of_their_own() {
        let keys = [Some("a"), None, Some("b"), Some("b"), None, Some("c")];
        let g = groups_of(&keys);
        assert_eq!(members(&g), naive(&keys));
        assert_eq!(g.ids, [key_id(b"a"), key_id(b"b"), key_id(b"c")]);
        assert_eq!(g.null_keys, 2);
        let g = groups_of(&[Some("a"), Some("a"), Some("b")]);
        assert_eq!((g.offsets.as_slice(), g.rows), ([0, 2, 3].as_slice(), None));
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
    fn string_view_keys_stored_apart_or_shared_match_the_plain_grouping() {
        // A shuffled string_view column (enough candidates for several matching workers, with
        // prefetching) where a key's copies are mostly stored apart, so equal keys have
        // different views, and some are shared: the views are copied from an earlier row.
        use arrow_array::builder::StringViewBuilder;
        use arrow_array::Array;
        let names: Vec<String> = shuffled_names(120_000)
            .into_iter()
            .map(|k| k + " and enough text to be stored out of line")
            .collect();
        let keys = with_nulls(&names, 101, 7);
        let mut builder = StringViewBuilder::new().with_fixed_block_size(1 << 16);
        builder.extend(keys.iter().copied());
        let stored_apart = builder.finish();
        // Row r holds the key of row r - 30,011 (shuffled_names): every fifth one shares it.
        let mut views: Vec<u128> = stored_apart.views().to_vec();
        for row in (30_011..views.len()).step_by(5) {
            if stored_apart.is_valid(row) && stored_apart.is_valid(row - 30_011) {
                views[row] = views[row - 30_011];
            }
        }
        let array = arrow_array::StringViewArray::try_new(
            views.into(),
            stored_apart.data_buffers().to_vec(),
            stored_apart.nulls().cloned(),
        )
        .unwrap();
        let column = crate::table::Column {
            field: std::sync::Arc::new(arrow_schema::Field::new(
                "prompt",
                arrow_schema::DataType::Utf8View,
                true,
            )),
            chunks: vec![std::sync::Arc::new(array)],
        };
        let key_column = crate::key::KeyColumn::new(&column).unwrap();
        let view_keys = key_column.bytes();
        assert!(matches!(view_keys, KeyBytes::Views(_)));
        assert_eq!(members(&group_rows(&view_keys)), naive(&keys));
    }

    #[test]
    fn runs_flagged_as_repeating_cover_every_repeated_id() {
        let run = |id: u64| Run {
            start: 0,
            end: 1,
            id,
        };
        // 5 comes back; 7 + 2^40 has the low bits of 7 and, in a set this small, the same high
        // bits (a false positive); 9 is alone.
        let runs = [run(5), run(7), run(9), run(7 + (1 << 40)), run(5)];
        let flagged = runs_that_may_repeat(&runs);
        for r in [0, 3, 4] {
            assert!(flagged.contains(&r), "{r} in {flagged:?}");
        }
        assert!(!flagged.contains(&2));
        assert!(runs_that_may_repeat(&[run(1), run(2), run(3)]).is_empty());
        // The low bits alike, the high ones not: not flagged.
        assert!(runs_that_may_repeat(&[run(7), run(7 + (1 << 33))]).is_empty());
        let mut bits = IdBits::new(100);
        assert!(!bits.insert(42) && bits.insert(42) && bits.contains(42));
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
