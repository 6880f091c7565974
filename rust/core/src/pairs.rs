//! Chosen/rejected pair mining from rated responses (`pk.mine_pairs`).
//!
//! The exact rules (ranking, qualification, strategies, row accounting) are in docs/pairs.md
//! and mirrored in plain Python by tests/reference.py. Groups are mined in parallel, each into
//! its own list of pairs, and concatenated in group order, so the result does not depend on
//! the number of threads.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, UInt64Array};
use arrow_buffer::{NullBuffer, ScalarBuffer};
use arrow_schema::{Field, Schema};
use rayon::prelude::*;

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::grouping::{group_rows, GroupRows, Groups};
use crate::key::KeyColumn;
use crate::parallel;
use crate::table::{Column, Table};
use crate::text::{is_binary, is_text, BinaryColumn, TextColumn, Views};

/// How the pairs of a group are chosen among its ranked responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Highest vs lowest.
    BestVsWorst,
    /// Highest vs one drawn uniformly from the qualifying rest (seeded).
    BestVsRandom,
    /// Highest vs every qualifying other.
    BestVsAll,
    /// Every qualifying ordered pair.
    AllPairs,
    /// Neighbours in rank order.
    Adjacent,
    /// Each of the top k vs each of the bottom k.
    TopKVsBottomK,
}

impl Strategy {
    /// Names accepted by [`Strategy::parse`], in documentation order.
    pub const NAMES: [&'static str; 6] = [
        "best_vs_worst",
        "best_vs_random",
        "best_vs_all",
        "all_pairs",
        "adjacent",
        "top_k_vs_bottom_k",
    ];

    /// The strategy's name, as [`Strategy::parse`] takes it.
    pub fn name(self) -> &'static str {
        let index = match self {
            Strategy::BestVsWorst => 0,
            Strategy::BestVsRandom => 1,
            Strategy::BestVsAll => 2,
            Strategy::AllPairs => 3,
            Strategy::Adjacent => 4,
            Strategy::TopKVsBottomK => 5,
        };
        Self::NAMES[index]
    }

    /// The strategy called `name`.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "best_vs_worst" => Strategy::BestVsWorst,
            "best_vs_random" => Strategy::BestVsRandom,
            "best_vs_all" => Strategy::BestVsAll,
            "all_pairs" => Strategy::AllPairs,
            "adjacent" => Strategy::Adjacent,
            "top_k_vs_bottom_k" => Strategy::TopKVsBottomK,
            other => {
                return Err(Error::argument(
                    "strategy",
                    "one of best_vs_worst, best_vs_random, best_vs_all, all_pairs, adjacent, top_k_vs_bottom_k",
                    format!("'{other}'"),
                ))
            }
        })
    }
}

/// Whether equal scores may pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ties {
    /// Equal scores never pair.
    Drop,
    /// Equal scores pair with margin 0 (when `min_margin` is 0).
    Keep,
}

impl Ties {
    /// `"drop"` or `"keep"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "drop" => Ok(Ties::Drop),
            "keep" => Ok(Ties::Keep),
            other => Err(Error::argument(
                "ties",
                "'drop' or 'keep'",
                format!("'{other}'"),
            )),
        }
    }
}

/// What to do with a null or NaN score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanPolicy {
    /// Drop the row and count it.
    Drop,
    /// Fail naming the column and row.
    Error,
}

impl NanPolicy {
    /// `"drop"` or `"error"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "drop" => Ok(NanPolicy::Drop),
            "error" => Ok(NanPolicy::Error),
            other => Err(Error::argument(
                "nan",
                "'drop' or 'error'",
                format!("'{other}'"),
            )),
        }
    }
}

/// The arguments of [`mine_pairs`]; see `pk.mine_pairs` for their meaning.
#[derive(Debug, Clone)]
pub struct PairOptions {
    pub prompt: String,
    pub response: String,
    pub scores: Vec<String>,
    pub group: Option<String>,
    pub strategy: Strategy,
    pub k: usize,
    pub min_margin: f64,
    pub ties: Ties,
    pub nan: NanPolicy,
    pub max_pairs_per_prompt: Option<usize>,
    pub length_penalty: f64,
    pub seed: u64,
    pub carry: Vec<String>,
}

impl PairOptions {
    /// `pk.mine_pairs`' defaults with the given strategy: columns `prompt`, `response` and
    /// `score`, grouped by prompt, `k = 1`, no margin, ties and NaN scores dropped, no cap,
    /// no length penalty, seed 0, nothing carried.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            prompt: "prompt".into(),
            response: "response".into(),
            scores: vec!["score".into()],
            group: None,
            strategy,
            k: 1,
            min_margin: 0.0,
            ties: Ties::Drop,
            nan: NanPolicy::Drop,
            max_pairs_per_prompt: None,
            length_penalty: 0.0,
            seed: 0,
            carry: vec![],
        }
    }

    /// The pair selection these options describe.
    pub fn selection(&self) -> Selection {
        Selection {
            strategy: self.strategy,
            k: self.k,
            min_margin: self.min_margin,
            ties: self.ties,
            max_pairs: self.max_pairs_per_prompt,
            seed: self.seed,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.min_margin >= 0.0 && self.min_margin.is_finite()) {
            return Err(Error::argument(
                "min_margin",
                "a finite number >= 0",
                self.min_margin,
            ));
        }
        if self.k < 1 {
            return Err(Error::argument("k", "an integer >= 1", self.k));
        }
        if self.max_pairs_per_prompt == Some(0) {
            return Err(Error::argument(
                "max_pairs_per_prompt",
                "an integer >= 1",
                0,
            ));
        }
        if !self.length_penalty.is_finite() {
            return Err(Error::argument(
                "length_penalty",
                "a finite number",
                self.length_penalty,
            ));
        }
        if self.scores.is_empty() {
            return Err(Error::argument("score", "at least one column", "none"));
        }
        Ok(())
    }
}

/// One mined pair, by input row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pair {
    chosen: usize,
    rejected: usize,
    margin: f64,
    group: usize,
}

/// The per-row inputs of mining, resolved from the table once.
struct Rows<'a> {
    /// Effective score: ensemble score minus the length penalty; NaN for unusable scores.
    effective: &'a [f64],
    /// Whether the response is not null.
    has_response: &'a [bool],
}

/// The response column: text, or bytes (images, `pk.image_pairs`) whose pairs are
/// binary_view arrays sharing the input's buffers.
enum Responses {
    Text(TextColumn),
    Bytes(BinaryColumn),
}

impl Responses {
    fn new(column: &Column) -> Result<Self> {
        if is_binary(column.decoded()?.field.data_type()) {
            Ok(Responses::Bytes(BinaryColumn::new(column)?))
        } else {
            Ok(Responses::Text(TextColumn::new(column)?))
        }
    }

    /// The text, for the length penalty (which has no meaning for bytes).
    fn text(&self, options: &PairOptions) -> Result<&TextColumn> {
        match self {
            Responses::Text(text) => Ok(text),
            Responses::Bytes(_) => Err(Error::argument(
                "length_penalty",
                "0 when the response column holds bytes",
                options.length_penalty,
            )),
        }
    }

    fn valid(&self) -> Vec<bool> {
        match self {
            Responses::Text(text) => text.valid(),
            Responses::Bytes(bytes) => bytes.valid(),
        }
    }

    fn views(&self) -> Views {
        match self {
            Responses::Text(text) => text.views(),
            Responses::Bytes(bytes) => bytes.views(),
        }
    }

    /// The result column of `values` (views of valid rows of `views`).
    fn array(&self, views: &Views, values: Vec<u128>) -> ArrayRef {
        match self {
            Responses::Text(_) => Arc::new(views.array(values, None)),
            Responses::Bytes(_) => Arc::new(views.binary_array(values, None)),
        }
    }
}

/// splitmix64: a small, well-mixed, reproducible generator step (docs/pairs.md).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mine chosen/rejected pairs from `table`, one row per rated response.
///
/// Returns the pairs as one record batch (columns as in docs/pairs.md) and the accounting of
/// every input row.
pub fn mine_pairs(table: &Table, options: &PairOptions) -> Result<(RecordBatch, Accounting)> {
    options.validate()?;
    let prompt = table.column(&options.prompt)?;
    let response = Responses::new(&table.column(&options.response)?)?;
    let score_columns = options
        .scores
        .iter()
        .map(|name| table.column(name))
        .collect::<Result<Vec<_>>>()?;
    let key_column = match &options.group {
        Some(name) => KeyColumn::new(&table.column(name)?)?,
        None => KeyColumn::new(&prompt)?,
    };
    let carry = options
        .carry
        .iter()
        .map(|name| table.column(name))
        .collect::<Result<Vec<_>>>()?;
    let reserved = result_columns(options.scores.len() > 1);
    for column in &carry {
        if reserved.contains(&column.name()) {
            return Err(Error::DuplicateColumn(column.name().to_string()));
        }
    }

    let per_column = score_columns
        .iter()
        .map(Column::to_f64)
        .collect::<Result<Vec<_>>>()?;
    if options.nan == NanPolicy::Error {
        check_no_nan(&score_columns, &per_column)?;
    }
    let score = ensemble(&per_column);
    let has_response = response.valid();
    let effective: ScalarBuffer<f64> = if options.length_penalty == 0.0 {
        score.clone()
    } else {
        score
            .iter()
            .zip(response.text(options)?.strs())
            .map(|(s, r)| s - options.length_penalty * r.map_or(0, |r| r.chars().count()) as f64)
            .collect()
    };
    let rows = Rows {
        effective: &effective,
        has_response: &has_response,
    };

    let selection = options.selection();
    let keys = key_column.bytes();
    let groups = group_rows(&keys);
    check_result_fits(&groups, &selection, available_memory())?;
    let (pairs, mut accounting) = parallel::install(|| {
        let chunk = 256;
        let parts: Vec<(Vec<Pair>, Accounting)> = (0..groups.len())
            .into_par_iter()
            .chunks(chunk)
            .map(|group_ids| {
                let mut pairs = Vec::new();
                let mut accounting = Accounting::default();
                let mut scratch = Scratch::default();
                for g in group_ids {
                    mine_group(
                        g,
                        groups.rows_of(g),
                        groups.ids[g],
                        &rows,
                        &selection,
                        &mut scratch,
                        &mut pairs,
                        &mut accounting,
                    );
                }
                (pairs, accounting)
            })
            .collect();
        // The per-worker lists stay as they are: columns are filled from them directly,
        // without first copying every pair into one list.
        let mut pairs = Vec::with_capacity(parts.len());
        let mut accounting = Accounting::default();
        for (part, part_accounting) in parts {
            pairs.push(part);
            accounting.merge(&part_accounting);
        }
        (pairs, accounting)
    });
    let total: usize = pairs.iter().map(Vec::len).sum();
    accounting.rows_in = table.num_rows();
    accounting.drop_rows("null_key", groups.null_keys);
    accounting.counts.insert("groups_in", groups.len());
    accounting.counts.entry("groups_with_pairs").or_insert(0);
    accounting.counts.insert("pairs_out", total);
    debug_assert_eq!(accounting.rows_accounted(), accounting.rows_in);

    let batch = parallel::install(|| {
        build_batch(
            &pairs,
            &prompt,
            &response,
            &score,
            &per_column,
            &groups.ids,
            &carry,
        )
    })?;
    Ok((batch, accounting))
}

/// Bytes one mined pair takes at the least: its selection while mining, then its row of the
/// result without text (three scores, a group id, two row numbers, three 16-byte views).
const PAIR_BYTES: u128 = (std::mem::size_of::<Selected>() + 3 * 8 + 8 + 2 * 8 + 3 * 16) as u128;

impl Selection {
    /// The most candidate pairs this selection considers in a list of `n` (before margins
    /// and caps): all of them are held while the list is mined.
    pub fn candidates(&self, n: usize) -> u128 {
        let n = n as u128;
        if n < 2 {
            return 0;
        }
        match self.strategy {
            Strategy::BestVsWorst => 1,
            Strategy::BestVsAll | Strategy::BestVsRandom | Strategy::Adjacent => n - 1,
            Strategy::AllPairs => n * (n - 1) / 2,
            Strategy::TopKVsBottomK => {
                let m = (self.k as u128).min(n / 2);
                m * m
            }
        }
    }
}

/// Refuse, before any pair is made, a result that cannot fit in `available` bytes (None: no
/// check): all_pairs over one prompt of a million responses asks for 5 * 10^11 pairs, which
/// would otherwise be allocated until the process is killed. The estimate counts no text, so
/// a result it lets through may still not fit, but one it refuses never would.
fn check_result_fits(groups: &Groups, selection: &Selection, available: Option<u64>) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let (mut total, mut largest, mut largest_group) = (0u128, 0u128, 0);
    for g in 0..groups.len() {
        let candidates = selection.candidates(groups.offsets[g + 1] - groups.offsets[g]);
        total += selection
            .max_pairs
            .map_or(candidates, |cap| candidates.min(cap as u128));
        if candidates > largest {
            (largest, largest_group) = (candidates, g);
        }
    }
    // Mining holds a group's candidates at once, and the result holds every kept pair.
    let needed = (total * PAIR_BYTES).max(largest * std::mem::size_of::<Selected>() as u128);
    if needed <= available as u128 {
        return Ok(());
    }
    let size = groups.offsets[largest_group + 1] - groups.offsets[largest_group];
    Err(Error::ResultTooLarge(format!(
        "strategy {} would mine up to {total} pairs (its largest group has {size} responses: \
         {largest} candidate pairs), at least {:.1} GB without their text, more than the {:.1} \
         GB of memory available; pass max_pairs_per_prompt, choose a strategy with fewer pairs \
         (best_vs_all, top_k_vs_bottom_k) or split the group",
        selection.strategy.name(),
        needed as f64 / 1e9,
        available as f64 / 1e9,
    )))
}

/// The memory this process may still allocate: the kernel's MemAvailable, or less under a
/// cgroup limit; None where neither can be read (then nothing is refused).
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let system = kib * 1024;
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    // cgroup v2: "max" (no limit) does not parse and leaves the system figure.
    match (read("memory.max"), read("memory.current")) {
        (Some(limit), Some(used)) => Some(system.min(limit.saturating_sub(used))),
        _ => Some(system),
    }
}

fn result_columns(several_scores: bool) -> Vec<&'static str> {
    let mut names = vec![
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "margin",
        "group_id",
        "chosen_row",
        "rejected_row",
    ];
    if several_scores {
        names.extend(["agreement", "margin_std"]);
    }
    names
}

/// Fail on the first row (in input order) with a null or NaN score, naming its column.
pub(crate) fn check_no_nan(columns: &[Column], values: &[ScalarBuffer<f64>]) -> Result<()> {
    let rows = values.first().map_or(0, |v| v.len());
    for row in 0..rows {
        for (column, values) in columns.iter().zip(values) {
            if values[row].is_nan() {
                return Err(Error::NanScore {
                    column: column.name().to_string(),
                    row,
                });
            }
        }
    }
    Ok(())
}

/// The mean of several score columns; NaN where any of them is.
pub(crate) fn ensemble(columns: &[ScalarBuffer<f64>]) -> ScalarBuffer<f64> {
    if columns.len() == 1 {
        return columns[0].clone();
    }
    let n = columns.len() as f64;
    (0..columns[0].len())
        .map(|row| columns.iter().map(|c| c[row]).sum::<f64>() / n)
        .collect()
}

/// Buffers reused from one group to the next, so that mining allocates per worker, not per
/// group.
#[derive(Default)]
struct Scratch {
    ranked: Vec<(f64, usize)>,
    selected: Vec<Selected>,
}

/// Mine one group into `out` and account for its rows.
#[allow(clippy::too_many_arguments)]
fn mine_group(
    group: usize,
    members: GroupRows<'_>,
    group_id: u64,
    rows: &Rows<'_>,
    selection: &Selection,
    scratch: &mut Scratch,
    out: &mut Vec<Pair>,
    accounting: &mut Accounting,
) {
    let e = rows.effective;
    let ranked = &mut scratch.ranked;
    ranked.clear();
    for row in members {
        if !rows.has_response[row] {
            accounting.drop_rows("null_response", 1);
        } else if e[row].is_nan() {
            accounting.drop_rows("nan_score", 1);
        } else {
            ranked.push((e[row], row));
        }
    }
    if selection.strategy == Strategy::BestVsWorst {
        // Only the two ends of the ranking matter: one scan instead of a sort.
        rank_extremes(ranked);
    } else {
        rank(ranked);
    }
    scratch.selected.clear();
    mine_ranked(
        ranked,
        selection,
        group_id,
        &mut scratch.selected,
        accounting,
    );
    out.extend(scratch.selected.iter().map(|s| Pair {
        chosen: s.chosen,
        rejected: s.rejected,
        margin: s.margin,
        group,
    }));
}

/// Put the item [`rank`] would place first at the front and the one it would place last at
/// the back (the first of the highest scores, the last of the lowest); the middle stays
/// unordered. Enough for `best_vs_worst`, in one pass.
fn rank_extremes(items: &mut [(f64, usize)]) {
    let n = items.len();
    if n < 2 {
        return;
    }
    let (mut best, mut worst) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        if item.0 > items[best].0 {
            best = i;
        }
        if item.0 <= items[worst].0 {
            worst = i;
        }
    }
    items.swap(0, best);
    let worst = if worst == 0 { best } else { worst };
    items.swap(n - 1, worst);
}

/// How pairs are selected from one ranked list (a prompt's responses, a node's children): the
/// strategy and the qualification rules of docs/pairs.md, shared by `mine_pairs` and
/// `tree_pairs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// Which pairs of the ranked list are candidates.
    pub strategy: Strategy,
    /// The k of [`Strategy::TopKVsBottomK`].
    pub k: usize,
    /// A pair needs `margin > min_margin` (or a kept tie).
    pub min_margin: f64,
    /// Whether equal scores may pair (with margin 0, when `min_margin` is 0).
    pub ties: Ties,
    /// Keep at most this many pairs per list, the largest margins.
    pub max_pairs: Option<usize>,
    /// Seed of [`Strategy::BestVsRandom`].
    pub seed: u64,
}

/// One pair selected from a ranked list, by the ids the caller ranked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selected {
    /// Id of the better item.
    pub chosen: usize,
    /// Id of the worse item.
    pub rejected: usize,
    /// Difference of their scores (0 for a kept tie).
    pub margin: f64,
    /// Position of the chosen item in the ranked list.
    pub chosen_rank: usize,
    /// Position of the rejected item in the ranked list.
    pub rejected_rank: usize,
}

/// Sort `(score, id)` items best first, stably: among equal scores the earlier item stays
/// first. Scores must not be NaN.
pub fn rank(items: &mut [(f64, usize)]) {
    let n = items.len();
    if n <= 1 {
        // Nothing to order.
    } else if n <= NETWORK_LIST {
        rank_by_network(items);
    } else if n <= SHORT_LIST {
        // Lists are mostly short (a prompt's responses, a node's children), where an insertion
        // sort with a plain comparison is a quarter faster than the library's stable sort.
        // Only a strictly better item moves ahead, so equal scores keep their order.
        for i in 1..n {
            let item = items[i];
            let mut j = i;
            while j > 0 && items[j - 1].0 < item.0 {
                items[j] = items[j - 1];
                j -= 1;
            }
            items[j] = item;
        }
    } else {
        items.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .expect("NaN scores are removed before ranking")
        });
    }
}

/// Lists up to this long are ranked by a sorting network.
const NETWORK_LIST: usize = 8;

/// Lists up to this long are ranked by insertion sort.
const SHORT_LIST: usize = 24;

/// [`rank`] for up to [`NETWORK_LIST`] items, without a branch on the scores: random tied
/// scores make an insertion sort mispredict about every other comparison, and this is 2.5x
/// faster on 8 items. Each key holds the score's descending order in its high half and the
/// item's position in its low half, so equal scores keep their order and padding goes last.
fn rank_by_network(items: &mut [(f64, usize)]) {
    let mut keys = [u128::MAX; NETWORK_LIST];
    for (position, (key, item)) in keys.iter_mut().zip(items.iter()).enumerate() {
        *key = (u128::from(descending_bits(item.0)) << 64) | position as u128;
    }
    // The 19 compare-exchanges that sort 8 keys (Knuth, TAOCP 5.3.4), written out: a loop
    // over them is not unrolled, and the keys then go through memory (half the speed).
    macro_rules! exchange {
        ($(($i:literal, $j:literal)),*) => {$(
            let (a, b) = (keys[$i], keys[$j]);
            keys[$i] = a.min(b);
            keys[$j] = a.max(b);
        )*};
    }
    #[rustfmt::skip]
    exchange!(
        (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3),
        (4, 5), (6, 7), (2, 4), (3, 5), (1, 4), (3, 6), (1, 2), (3, 4), (5, 6)
    );
    let original: [(f64, usize); NETWORK_LIST] =
        std::array::from_fn(|i| items.get(i).copied().unwrap_or((0.0, 0)));
    for (item, key) in items.iter_mut().zip(keys) {
        *item = original[key as u64 as usize];
    }
}

/// Bits of `score` whose unsigned order is the descending order of scores; -0.0 and 0.0 get
/// the same bits, as they compare equal.
fn descending_bits(score: f64) -> u64 {
    let bits = (score + 0.0).to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    !ascending
}

/// Mine one ranked list (from [`rank`]) into `out` and account for its items.
///
/// Every item of `ranked` is counted exactly once in `accounting`: used (in at least one pair),
/// or dropped as `group_too_small` (fewer than 2 items), `tie` (no pair, all scores equal),
/// `below_margin` (no pair otherwise) or `not_selected`. `draw_key` (the group id, a node id)
/// seeds `best_vs_random` together with `selection.seed`.
pub fn mine_ranked(
    ranked: &[(f64, usize)],
    selection: &Selection,
    draw_key: u64,
    out: &mut Vec<Selected>,
    accounting: &mut Accounting,
) {
    let n = ranked.len();
    if n < 2 {
        accounting.drop_rows("group_too_small", n);
        return;
    }
    let keep_ties = selection.ties == Ties::Keep && selection.min_margin == 0.0;
    let start = out.len();
    let mut emit = |i: usize, j: usize| {
        let ((e_a, a), (e_b, b)) = (ranked[i], ranked[j]);
        // A kept tie has margin 0, also between two equal infinities.
        let margin = if e_a == e_b { 0.0 } else { e_a - e_b };
        if margin > selection.min_margin || (keep_ties && e_a == e_b) {
            out.push(Selected {
                chosen: a,
                rejected: b,
                margin,
                chosen_rank: i,
                rejected_rank: j,
            });
        }
    };
    match selection.strategy {
        Strategy::BestVsWorst => emit(0, n - 1),
        Strategy::BestVsAll | Strategy::BestVsRandom => (1..n).for_each(|j| emit(0, j)),
        Strategy::AllPairs => {
            for i in 0..n {
                for j in i + 1..n {
                    emit(i, j);
                }
            }
        }
        Strategy::Adjacent => (0..n - 1).for_each(|i| emit(i, i + 1)),
        Strategy::TopKVsBottomK => {
            let m = selection.k.min(n / 2);
            for i in 0..m {
                for j in n - m..n {
                    emit(i, j);
                }
            }
        }
    }
    if selection.strategy == Strategy::BestVsRandom {
        // Every candidate was emitted; keep the drawn one.
        let candidates = out.len() - start;
        if candidates > 0 {
            let x = splitmix64(selection.seed ^ draw_key);
            let pick = ((x as u128 * candidates as u128) >> 64) as usize;
            let drawn = out[start + pick];
            out.truncate(start);
            out.push(drawn);
        }
    }
    if let Some(cap) = selection.max_pairs {
        keep_largest_margins(out, start, cap, accounting);
    }

    let produced = &out[start..];
    if produced.is_empty() {
        let all_equal = ranked.iter().all(|&(e, _)| e == ranked[0].0);
        accounting.drop_rows(if all_equal { "tie" } else { "below_margin" }, n);
        return;
    }
    *accounting.counts.entry("groups_with_pairs").or_default() += 1;
    let used = count_used(produced, n);
    accounting.rows_used += used;
    accounting.drop_rows("not_selected", n - used);
}

/// How many of the `n` ranked items appear in at least one of `pairs`.
fn count_used(pairs: &[Selected], n: usize) -> usize {
    if n <= 128 {
        // The usual case: a bit set in one register.
        let mut used = 0u128;
        for p in pairs {
            used |= (1u128 << p.chosen_rank) | (1u128 << p.rejected_rank);
        }
        return used.count_ones() as usize;
    }
    let mut used = vec![false; n];
    for p in pairs {
        used[p.chosen_rank] = true;
        used[p.rejected_rank] = true;
    }
    used.iter().filter(|&&u| u).count()
}

/// Keep the `cap` largest-margin pairs of `out[start..]` (the earlier one wins equal margins),
/// in their generation order.
fn keep_largest_margins(
    out: &mut Vec<Selected>,
    start: usize,
    cap: usize,
    accounting: &mut Accounting,
) {
    let produced = out.len() - start;
    if produced <= cap {
        return;
    }
    let mut order: Vec<usize> = (0..produced).collect();
    order.sort_by(|&i, &j| {
        out[start + j]
            .margin
            .partial_cmp(&out[start + i].margin)
            .expect("qualifying margins are never NaN")
    });
    let mut keep = vec![false; produced];
    order[..cap].iter().for_each(|&i| keep[i] = true);
    let mut index = 0;
    out.retain(|_| {
        let position = index;
        index += 1;
        position < start || keep[position - start]
    });
    *accounting.counts.entry("pairs_capped").or_default() += produced - cap;
}

/// One result column, built on its own worker.
type ColumnJob<'a> = Box<dyn Fn() -> Result<ArrayRef> + Send + Sync + 'a>;

/// One value per pair, in output order, filled in parallel from the per-worker pair lists.
fn per_pair<T: Copy + Default + Send + Sync>(
    parts: &[Vec<Pair>],
    value: impl Fn(&Pair) -> T + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); parts.iter().map(Vec::len).sum()];
    let mut slices = Vec::with_capacity(parts.len());
    let mut rest = out.as_mut_slice();
    for part in parts {
        let (head, tail) = rest.split_at_mut(part.len());
        slices.push(head);
        rest = tail;
    }
    slices
        .into_par_iter()
        .zip(parts.par_iter())
        .for_each(|(slice, part)| {
            for (slot, pair) in slice.iter_mut().zip(part) {
                *slot = value(pair);
            }
        });
    out
}

/// The result batch: columns as documented in docs/pairs.md, built in parallel (each is an
/// independent gather over the pairs).
fn build_batch(
    parts: &[Vec<Pair>],
    prompt: &Column,
    response: &Responses,
    score: &[f64],
    per_column: &[ScalarBuffer<f64>],
    group_ids: &[u64],
    carry: &[Column],
) -> Result<RecordBatch> {
    let responses = response.views();
    let responses = &responses;
    let f64s = |values: Vec<f64>| -> Result<ArrayRef> { Ok(Arc::new(Float64Array::from(values))) };
    let i64s = |values: Vec<i64>| -> Result<ArrayRef> { Ok(Arc::new(Int64Array::from(values))) };
    // Row numbers of the chosen side, for the columns gathered by arrow's kernels.
    let chosen_rows = || per_pair(parts, |p| p.chosen);
    let mut jobs: Vec<(&str, bool, ColumnJob<'_>)> = vec![
        (
            "prompt",
            true,
            Box::new(move || {
                if is_text(prompt.field.data_type()) {
                    let views = TextColumn::new(prompt)?.views();
                    let values = per_pair(parts, |p| views.view(p.chosen));
                    let nulls = views
                        .has_nulls()
                        .then(|| NullBuffer::from(per_pair(parts, |p| views.is_valid(p.chosen))));
                    Ok(Arc::new(views.array(values, nulls)) as ArrayRef)
                } else {
                    prompt.take(&chosen_rows())
                }
            }),
        ),
        (
            "chosen",
            false,
            Box::new(move || {
                let values = per_pair(parts, |p| responses.view(p.chosen));
                Ok(response.array(responses, values))
            }),
        ),
        (
            "rejected",
            false,
            Box::new(move || {
                let values = per_pair(parts, |p| responses.view(p.rejected));
                Ok(response.array(responses, values))
            }),
        ),
        (
            "score_chosen",
            false,
            Box::new(move || f64s(per_pair(parts, |p| score[p.chosen]))),
        ),
        (
            "score_rejected",
            false,
            Box::new(move || f64s(per_pair(parts, |p| score[p.rejected]))),
        ),
        (
            "margin",
            false,
            Box::new(move || f64s(per_pair(parts, |p| p.margin))),
        ),
        (
            "group_id",
            false,
            Box::new(move || {
                Ok(
                    Arc::new(UInt64Array::from(per_pair(parts, |p| group_ids[p.group])))
                        as ArrayRef,
                )
            }),
        ),
        (
            "chosen_row",
            false,
            Box::new(move || i64s(per_pair(parts, |p| p.chosen as i64))),
        ),
        (
            "rejected_row",
            false,
            Box::new(move || i64s(per_pair(parts, |p| p.rejected as i64))),
        ),
    ];
    if per_column.len() > 1 {
        let strength_of = move |pick: fn((f64, f64)) -> f64| -> ColumnJob<'_> {
            Box::new(move || {
                f64s(per_pair(parts, |p| {
                    pick(strength(per_column, p.chosen, p.rejected))
                }))
            })
        };
        jobs.push(("agreement", false, strength_of(|s| s.0)));
        jobs.push(("margin_std", false, strength_of(|s| s.1)));
    }
    for column in carry {
        jobs.push((
            column.name(),
            true,
            Box::new(move || column.take(&chosen_rows())),
        ));
    }
    let arrays = jobs
        .par_iter()
        .map(|(_, _, job)| job())
        .collect::<Result<Vec<_>>>()?;
    let fields: Vec<Field> = jobs
        .iter()
        .zip(&arrays)
        .map(|((name, nullable, _), array)| Field::new(*name, array.data_type().clone(), *nullable))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Agreement (share of score columns preferring the chosen row) and the population standard
/// deviation of the per-column margins.
fn strength(per_column: &[ScalarBuffer<f64>], chosen: usize, rejected: usize) -> (f64, f64) {
    let n = per_column.len() as f64;
    let margins: Vec<f64> = per_column.iter().map(|c| c[chosen] - c[rejected]).collect();
    let agree = margins.iter().filter(|&&m| m > 0.0).count() as f64 / n;
    let mean = margins.iter().sum::<f64>() / n;
    let variance = margins.iter().map(|m| (m - mean) * (m - mean)).sum::<f64>() / n;
    (agree, variance.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::{Float64Array, StringArray, StringViewArray};

    #[test]
    fn rank_is_a_stable_descending_sort_for_short_and_long_lists() {
        let mut state = 7u64;
        for len in (0..=NETWORK_LIST + 1).chain([SHORT_LIST, SHORT_LIST + 1, 100]) {
            for _ in 0..50 {
                // Few distinct scores, so that ties abound; -0.0 equals 0.0.
                let items: Vec<(f64, usize)> = (0..len)
                    .map(|i| {
                        state = splitmix64(state);
                        let score = [f64::NEG_INFINITY, -1.0, -0.0, 0.0, 0.5, 2.0, f64::INFINITY]
                            [(state % 7) as usize];
                        (score, i)
                    })
                    .collect();
                let mut expected = items.clone();
                expected.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
                let mut ranked = items;
                rank(&mut ranked);
                let ids = |v: &[(f64, usize)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
                assert_eq!(ids(&ranked), ids(&expected), "length {len}");
            }
        }
    }

    fn table(prompts: &[&str], responses: &[&str], scores: &[f64]) -> Table {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "prompt",
                Arc::new(StringArray::from(prompts.to_vec())) as ArrayRef,
            ),
            (
                "response",
                Arc::new(StringViewArray::from(responses.to_vec())) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float64Array::from(scores.to_vec())) as ArrayRef,
            ),
        ])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn rows(batch: &RecordBatch) -> Vec<(i64, i64)> {
        let c = batch
            .column_by_name("chosen_row")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        let r = batch
            .column_by_name("rejected_row")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        c.values()
            .iter()
            .copied()
            .zip(r.values().iter().copied())
            .collect()
    }

    fn sample() -> Table {
        // Group "a" is split by a "b" row; its scores tie at 2.0 (rows 0 and 3).
        table(
            &["a", "a", "b", "a", "b", "a"],
            &["w", "x", "long response text", "y", "z", "v"],
            &[2.0, 1.0, 0.5, 2.0, f64::NAN, 3.0],
        )
    }

    #[test]
    fn best_vs_worst_pairs_the_extremes_of_each_group() {
        let (batch, accounting) =
            mine_pairs(&sample(), &PairOptions::new(Strategy::BestVsWorst)).unwrap();
        assert_eq!(rows(&batch), vec![(5, 1)]);
        assert_eq!(accounting.rows_in, 6);
        assert_eq!(accounting.rows_used, 2);
        assert_eq!(accounting.dropped["not_selected"], 2);
        assert_eq!(accounting.dropped["nan_score"], 1);
        assert_eq!(accounting.dropped["group_too_small"], 1);
        assert_eq!(accounting.rows_accounted(), 6);
    }

    #[test]
    fn all_pairs_skips_ties_unless_kept() {
        let (batch, _) = mine_pairs(&sample(), &PairOptions::new(Strategy::AllPairs)).unwrap();
        assert_eq!(rows(&batch), vec![(5, 0), (5, 3), (5, 1), (0, 1), (3, 1)]);
        let mut keep = PairOptions::new(Strategy::AllPairs);
        keep.ties = Ties::Keep;
        let (batch, _) = mine_pairs(&sample(), &keep).unwrap();
        assert_eq!(
            rows(&batch),
            vec![(5, 0), (5, 3), (5, 1), (0, 3), (0, 1), (3, 1)]
        );
    }

    #[test]
    fn margins_cap_and_adjacent() {
        let mut capped = PairOptions::new(Strategy::AllPairs);
        capped.max_pairs_per_prompt = Some(2);
        let (batch, accounting) = mine_pairs(&sample(), &capped).unwrap();
        // Largest margins: (5,1)=2.0, then (5,0)=1.0 (earlier than (5,3)); generation order.
        assert_eq!(rows(&batch), vec![(5, 0), (5, 1)]);
        assert_eq!(accounting.counts["pairs_capped"], 3);
        let (batch, _) = mine_pairs(&sample(), &PairOptions::new(Strategy::Adjacent)).unwrap();
        assert_eq!(rows(&batch), vec![(5, 0), (3, 1)]);
    }

    #[test]
    fn best_vs_random_is_seeded() {
        let mut random = PairOptions::new(Strategy::BestVsRandom);
        let draws: Vec<_> = (0..8)
            .map(|seed| {
                random.seed = seed;
                rows(&mine_pairs(&sample(), &random).unwrap().0)
            })
            .collect();
        assert!(draws.iter().all(|d| d.len() == 1 && d[0].0 == 5));
        random.seed = 3;
        assert_eq!(rows(&mine_pairs(&sample(), &random).unwrap().0), draws[3]);
        assert!(
            draws.iter().any(|d| d != &draws[0]),
            "every seed drew the same row"
        );
    }

    #[test]
    fn text_is_shared_not_copied() {
        let input = sample();
        let (batch, _) = mine_pairs(&input, &PairOptions::new(Strategy::BestVsAll)).unwrap();
        let chosen = batch.column_by_name("chosen").unwrap().as_string_view();
        assert_eq!(chosen.value(0), "v");
        let rejected = batch.column_by_name("rejected").unwrap().as_string_view();
        assert_eq!(
            rejected.iter().flatten().collect::<Vec<_>>(),
            vec!["w", "y", "x"]
        );
    }

    #[test]
    fn nan_error_names_column_and_row() {
        let mut strict = PairOptions::new(Strategy::BestVsWorst);
        strict.nan = NanPolicy::Error;
        let message = mine_pairs(&sample(), &strict).unwrap_err().to_string();
        assert!(
            message.contains("'score'") && message.contains("row 4"),
            "{message}"
        );
    }

    #[test]
    fn a_result_that_cannot_fit_is_refused_before_mining() {
        let n = 200_000;
        let prompts = vec!["one prompt"; n];
        let responses: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let responses: Vec<&str> = responses.iter().map(String::as_str).collect();
        let scores: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let table = table(&prompts, &responses, &scores);
        let groups = group_rows(
            &KeyColumn::new(&table.column("prompt").unwrap())
                .unwrap()
                .bytes(),
        );
        let selection = PairOptions::new(Strategy::AllPairs).selection();
        let error = check_result_fits(&groups, &selection, Some(16 << 30)).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("all_pairs") && message.contains("200000 responses"),
            "{message}"
        );
        assert!(message.contains("19999900000 candidate pairs"), "{message}");
        // The same group under a linear strategy, a cap, or no known limit passes.
        let linear = PairOptions::new(Strategy::BestVsAll).selection();
        assert!(check_result_fits(&groups, &linear, Some(16 << 30)).is_ok());
        assert!(check_result_fits(&groups, &selection, None).is_ok());
        assert_eq!(selection.candidates(4), 6);
        let mut top = PairOptions::new(Strategy::TopKVsBottomK).selection();
        top.k = 3;
        assert_eq!(top.candidates(5), 4);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Strategy::parse("best").is_err());
        let mut negative = PairOptions::new(Strategy::BestVsWorst);
        negative.min_margin = -1.0;
        assert!(mine_pairs(&sample(), &negative).is_err());
    }
}
