//! Pairwise win-probability matrices (one K x K matrix of P(a beats b) per prompt).
//!
//! The input is the wide form a pairwise judge writes (`pk.score_pairwise`): one row per prompt
//! with its `responses` (K texts), `win_prob` (K x K), the input `rows` of the responses and a
//! `group_id`. [`win_rates`] turns it into the long form, one row per response with its win rate
//! against the others (SPPO's P(y > pi)), Borda and Copeland scores and rank; [`intransitivity`]
//! gives per prompt the number of 3-cycles and, with scores, the agreement of the judge with
//! them. The formulas are in docs/winrates.md and mirrored by tests/reference.py.
//!
//! Pairs and lists by win rate are not mined here: the Python layer runs `mine_pairs` and
//! `rank_lists` on the long form, so there is one implementation of their rules.
//!
//! "a beats b" is `P[a][b] > P[b][a]`: on a matrix with `P[b][a] = 1 - P[a][b]` that is
//! `P[a][b] > 1/2`, and on one consistent only within the tolerance it stays antisymmetric (a
//! pair is never a win for both sides), so Copeland scores, cycles and agreement are well
//! defined.

use std::cmp::Ordering::Equal;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, UInt64Array};
use arrow_buffer::ScalarBuffer;
use arrow_cast::cast;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use hashbrown::HashMap;
use rayon::prelude::*;

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::key::key_ids;
use crate::parallel;
use crate::table::{type_name, Column, Table};
use crate::text::{is_text, TextColumn, Views};

/// The columns of a win-matrix table and the consistency tolerance; see `pk.win_rates`.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    pub prompt: String,
    /// `list<text>`: the K responses of the prompt.
    pub responses: String,
    /// `list<list<float>>`: K x K, `win_prob[a][b]` = P(response a beats response b).
    pub win_prob: String,
    /// `list<integer>`: the input row of each response; None: its position in the exploded
    /// table (the matrices' responses numbered in order from 0).
    pub rows: Option<String>,
    /// Integer: the prompt's group id; None: xxh3 of the prompt as `mine_pairs` computes it.
    pub group_id: Option<String>,
    /// `list<float>`: a scalar score per response (passed through, compared for agreement).
    pub scores: Option<String>,
    /// Largest accepted `|P[a][b] + P[b][a] - 1|`.
    pub tolerance: f64,
}

/// Matrices processed by one task into one result batch: enough tasks to keep every core busy,
/// few enough that a batch's overhead (its arrays, exported one by one to Python) is amortised.
const MATRICES_PER_BATCH: usize = 1 << 12;

/// The long form: one row per response of every matrix with K >= 2 (in matrix order, responses
/// in list order), `prompt, response, row, win_rate, borda, copeland, rank, group_id` and, with
/// `scores`, `score`. With `views`, `response` is string_view into the input's buffers, else
/// `large_string`; a text prompt is string_view either way (the Python layer materialises it).
///
/// Returns the batches, their schema and the accounting of the responses.
pub fn win_rates(
    table: &Table,
    options: &MatrixOptions,
    views: bool,
) -> Result<(Vec<RecordBatch>, SchemaRef, Accounting)> {
    let matrices = Matrices::read(table, options)?;
    let prompt = Prompts::new(table.column(&options.prompt)?)?;
    let response_type = if views {
        DataType::Utf8View
    } else {
        DataType::LargeUtf8
    };
    let mut fields = vec![
        Field::new("prompt", prompt.data_type(), true),
        Field::new("response", response_type, false),
        Field::new("row", DataType::Int64, false),
        Field::new("win_rate", DataType::Float64, false),
        Field::new("borda", DataType::Float64, false),
        Field::new("copeland", DataType::Int64, false),
        Field::new("rank", DataType::Int64, false),
        Field::new("group_id", DataType::UInt64, false),
    ];
    if options.scores.is_some() {
        fields.push(Field::new("score", DataType::Float64, false));
    }
    let schema = Arc::new(Schema::new(fields));
    let batches = per_batch(matrices.len(), |range| {
        let mut out = LongColumns::default();
        let mut dense = Vec::new();
        let mut stats = Vec::new();
        for m in range {
            let k = matrices.load(m, &mut dense)?;
            if k < 2 {
                continue;
            }
            response_stats(&dense, k, &mut stats);
            let items = matrices.responses.bounds[m].0;
            for (a, stat) in stats.iter().enumerate() {
                out.prompt_rows.push(m);
                out.items.push(items + a);
                out.rows.push(matrices.row(m, a));
                out.win_rate.push(stat.win_rate);
                out.borda.push(stat.borda);
                out.copeland.push(stat.copeland);
                out.rank.push(stat.rank);
                out.group_id.push(matrices.group_ids[m]);
                if let Some(score) = matrices.score(m, a) {
                    out.score.push(score);
                }
            }
        }
        if out.items.is_empty() {
            return Ok(None);
        }
        let text = &matrices.text;
        let response: ArrayRef = if views {
            Arc::new(text.gather(out.items.iter().copied()))
        } else {
            Arc::new(text.gather_copy(out.items.iter().copied()))
        };
        let mut columns: Vec<ArrayRef> = vec![
            prompt.take(&out.prompt_rows)?,
            response,
            Arc::new(Int64Array::from(out.rows)),
            Arc::new(Float64Array::from(out.win_rate)),
            Arc::new(Float64Array::from(out.borda)),
            Arc::new(Int64Array::from(out.copeland)),
            Arc::new(Int64Array::from(out.rank)),
            Arc::new(UInt64Array::from(out.group_id)),
        ];
        if options.scores.is_some() {
            columns.push(Arc::new(Float64Array::from(out.score)));
        }
        Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
    })?;
    let batches: Vec<RecordBatch> = batches.into_iter().flatten().collect();
    let mut accounting = matrices.accounting();
    accounting.counts.insert(
        "responses_out",
        batches.iter().map(RecordBatch::num_rows).sum(),
    );
    Ok((batches, schema, accounting))
}

/// Per prompt with K >= 2: `prompt, group_id, responses_count, cycles` (3-cycles a > b > c > a),
/// `triads` (K choose 3) and, with `scores`, `agreement` (fraction of the untied pairs where
/// the judge and the scores prefer the same response; null when none is untied),
/// `agreed_pairs, disagreed_pairs, tied_pairs`.
pub fn intransitivity(
    table: &Table,
    options: &MatrixOptions,
) -> Result<(Vec<RecordBatch>, SchemaRef, Accounting)> {
    let matrices = Matrices::read(table, options)?;
    let prompt = Prompts::new(table.column(&options.prompt)?)?;
    let mut fields = vec![
        Field::new("prompt", prompt.data_type(), true),
        Field::new("group_id", DataType::UInt64, false),
        Field::new("responses_count", DataType::Int64, false),
        Field::new("cycles", DataType::Int64, false),
        Field::new("triads", DataType::Int64, false),
    ];
    if options.scores.is_some() {
        fields.extend([
            Field::new("agreement", DataType::Float64, true),
            Field::new("agreed_pairs", DataType::Int64, false),
            Field::new("disagreed_pairs", DataType::Int64, false),
            Field::new("tied_pairs", DataType::Int64, false),
        ]);
    }
    let schema = Arc::new(Schema::new(fields));
    let batches = per_batch(matrices.len(), |range| {
        let mut kept = Vec::new();
        let (mut ids, mut counts, mut cycles, mut triads) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut agreement, mut agreed, mut disagreed, mut tied) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut dense = Vec::new();
        let mut scores = Vec::new();
        for m in range {
            let k = matrices.load(m, &mut dense)?;
            if k < 2 {
                continue;
            }
            kept.push(m);
            ids.push(matrices.group_ids[m]);
            counts.push(k as i64);
            cycles.push(three_cycles(&dense, k) as i64);
            triads.push((k * (k - 1) * (k - 2) / 6) as i64);
            if options.scores.is_some() {
                scores.clear();
                scores.extend((0..k).filter_map(|a| matrices.score(m, a)));
                let votes = agreement_of(&dense, k, &scores);
                let untied = votes.agreed + votes.disagreed;
                agreement.push((untied > 0).then(|| votes.agreed as f64 / untied as f64));
                agreed.push(votes.agreed as i64);
                disagreed.push(votes.disagreed as i64);
                tied.push(votes.tied as i64);
            }
        }
        if kept.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = vec![
            prompt.take(&kept)?,
            Arc::new(UInt64Array::from(ids)),
            Arc::new(Int64Array::from(counts)),
            Arc::new(Int64Array::from(cycles)),
            Arc::new(Int64Array::from(triads)),
        ];
        if options.scores.is_some() {
            columns.extend([
                Arc::new(Float64Array::from(agreement)) as ArrayRef,
                Arc::new(Int64Array::from(agreed)),
                Arc::new(Int64Array::from(disagreed)),
                Arc::new(Int64Array::from(tied)),
            ]);
        }
        Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
    })?;
    let batches: Vec<RecordBatch> = batches.into_iter().flatten().collect();
    let mut accounting = matrices.accounting();
    accounting.counts.insert(
        "matrices_out",
        batches.iter().map(RecordBatch::num_rows).sum(),
    );
    Ok((batches, schema, accounting))
}

/// The long form's columns of one batch, filled response by response.
#[derive(Default)]
struct LongColumns {
    prompt_rows: Vec<usize>,
    items: Vec<usize>,
    rows: Vec<i64>,
    win_rate: Vec<f64>,
    borda: Vec<f64>,
    copeland: Vec<i64>,
    rank: Vec<i64>,
    group_id: Vec<u64>,
    score: Vec<f64>,
}

/// `work` on consecutive ranges of [`MATRICES_PER_BATCH`] matrices, in parallel; the results in
/// order, or the error of the earliest range that failed (so the error names the first bad row
/// however the work was scheduled).
fn per_batch<T: Send>(n: usize, work: impl Fn(Range<usize>) -> Result<T> + Sync) -> Result<Vec<T>> {
    let starts: Vec<usize> = (0..n).step_by(MATRICES_PER_BATCH).collect();
    let results: Vec<Result<T>> = parallel::install(|| {
        starts
            .par_iter()
            .map(|&start| work(start..(start + MATRICES_PER_BATCH).min(n)))
            .collect()
    });
    results.into_iter().collect()
}

/// The scores of one response against the others of its matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ResponseStats {
    win_rate: f64,
    borda: f64,
    copeland: i64,
    rank: i64,
}

/// Win rate (mean of P[a][b] over b != a), Borda (their sum, in order of b), Copeland (others
/// beaten minus others lost to) and rank (1 = highest win rate; equal win rates rank in list
/// order) of every response of the K x K row-major matrix `p` (K >= 2).
fn response_stats(p: &[f64], k: usize, out: &mut Vec<ResponseStats>) {
    out.clear();
    for a in 0..k {
        let mut borda = 0.0;
        let mut copeland = 0;
        for b in (0..k).filter(|&b| b != a) {
            borda += p[a * k + b];
            copeland += i64::from(beats(p, k, a, b)) - i64::from(beats(p, k, b, a));
        }
        out.push(ResponseStats {
            win_rate: borda / (k - 1) as f64,
            borda,
            copeland,
            rank: 0,
        });
    }
    let mut order: Vec<usize> = (0..k).collect();
    // A stable sort: equal win rates keep list order. Win rates are never NaN (cells are
    // validated).
    order.sort_by(|&a, &b| {
        out[b]
            .win_rate
            .partial_cmp(&out[a].win_rate)
            .unwrap_or(Equal)
    });
    for (position, &a) in order.iter().enumerate() {
        out[a].rank = position as i64 + 1;
    }
}

/// Whether response `a` beats `b` in `p` (see the module's documentation).
#[inline]
fn beats(p: &[f64], k: usize, a: usize, b: usize) -> bool {
    p[a * k + b] > p[b * k + a]
}

/// The number of 3-cycles (a beats b, b beats c, c beats a) of the matrix: for every edge
/// a -> b, the c with b -> c and c -> a, found as one AND of bitsets; each cycle is met once
/// per edge, three times in all. O(K^3 / 64) instead of O(K^3) for the triads.
fn three_cycles(p: &[f64], k: usize) -> usize {
    let words = k.div_ceil(64);
    let mut beaten = vec![0u64; k * words]; // beaten[a]: the c that a beats
    let mut beaten_by = vec![0u64; k * words]; // beaten_by[a]: the c that beat a
    for a in 0..k {
        for c in 0..k {
            if a != c && beats(p, k, a, c) {
                beaten[a * words + c / 64] |= 1 << (c % 64);
                beaten_by[c * words + a / 64] |= 1 << (a % 64);
            }
        }
    }
    let mut met = 0;
    for a in 0..k {
        for b in (0..k).filter(|&b| a != b && beats(p, k, a, b)) {
            let next = &beaten[b * words..(b + 1) * words];
            let back = &beaten_by[a * words..(a + 1) * words];
            met += next
                .iter()
                .zip(back)
                .map(|(x, y)| (x & y).count_ones() as usize)
                .sum::<usize>();
        }
    }
    met / 3
}

/// How the judge's preferences compare with scalar scores over the unordered pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Votes {
    agreed: usize,
    disagreed: usize,
    /// The judge has no preference (P[a][b] = P[b][a]) or the scores are equal.
    tied: usize,
}

fn agreement_of(p: &[f64], k: usize, scores: &[f64]) -> Votes {
    let mut votes = Votes::default();
    for a in 0..k {
        for b in a + 1..k {
            // Neither is NaN (validated); partial_cmp, unlike total_cmp, has -0 == 0.
            let judge = p[a * k + b].partial_cmp(&p[b * k + a]).unwrap_or(Equal);
            let score = scores[a].partial_cmp(&scores[b]).unwrap_or(Equal);
            if judge.is_eq() || score.is_eq() {
                votes.tied += 1;
            } else if judge == score {
                votes.agreed += 1;
            } else {
                votes.disagreed += 1;
            }
        }
    }
    votes
}

/// A list (or large_list) column flattened over its chunks: row `r` holds items
/// `bounds[r].0..bounds[r].1` of `items`, one column of every chunk's child array (whole, as
/// sliced lists keep it, so bounds are global positions in it).
struct Lists {
    name: String,
    bounds: Vec<(usize, usize)>,
    /// Whether each row is not null; None when no chunk has nulls.
    valid: Option<Vec<bool>>,
    items: Column,
}

impl Lists {
    /// `column` read as lists, or an error naming it, `expected` and its type.
    fn new(column: &Column, expected: &'static str) -> Result<Self> {
        let wrong_type = || Error::ColumnType {
            column: column.name().to_string(),
            expected,
            actual: type_name(column.field.data_type()),
        };
        let item_field = match column.field.data_type() {
            DataType::List(field) | DataType::LargeList(field) => field.clone(),
            _ => return Err(wrong_type()),
        };
        let rows = column.chunks.iter().map(|c| c.len()).sum();
        let mut bounds = Vec::with_capacity(rows);
        let mut chunks = Vec::with_capacity(column.chunks.len());
        let mut base = 0;
        for chunk in &column.chunks {
            let values = match chunk.data_type() {
                DataType::List(_) => {
                    let lists = chunk.as_list::<i32>();
                    bounds.extend(
                        lists
                            .value_offsets()
                            .windows(2)
                            .map(|w| (base + w[0] as usize, base + w[1] as usize)),
                    );
                    lists.values().clone()
                }
                DataType::LargeList(_) => {
                    let lists = chunk.as_list::<i64>();
                    bounds.extend(
                        lists
                            .value_offsets()
                            .windows(2)
                            .map(|w| (base + w[0] as usize, base + w[1] as usize)),
                    );
                    lists.values().clone()
                }
                _ => return Err(wrong_type()),
            };
            base += values.len();
            chunks.push(values);
        }
        let valid = column.chunks.iter().any(|c| c.null_count() > 0).then(|| {
            let mut valid = Vec::with_capacity(rows);
            for chunk in &column.chunks {
                match chunk.nulls() {
                    Some(nulls) => valid.extend(nulls.iter()),
                    None => valid.extend(std::iter::repeat_n(true, chunk.len())),
                }
            }
            valid
        });
        let items = Column {
            field: Arc::new(item_field.as_ref().clone().with_name(column.name())),
            chunks,
        };
        Ok(Lists {
            name: column.name().to_string(),
            bounds,
            valid,
            items,
        })
    }

    fn is_valid(&self, row: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v[row])
    }

    fn len(&self, row: usize) -> usize {
        self.bounds[row].1 - self.bounds[row].0
    }

    /// The items of `row`, checked to be `k` of them: else an error naming the column, what
    /// the row holds and `what` it should hold.
    fn check_row(&self, row: usize, k: usize, what: &'static str) -> Result<Range<usize>> {
        if !self.is_valid(row) {
            return Err(self.error(what, format!("a null at row {row}")));
        }
        if self.len(row) != k {
            return Err(self.error(
                what,
                format!("{} items for {k} responses at row {row}", self.len(row)),
            ));
        }
        Ok(self.bounds[row].0..self.bounds[row].1)
    }

    fn error(&self, expected: &'static str, actual: String) -> Error {
        Error::ColumnType {
            column: self.name.clone(),
            expected,
            actual,
        }
    }
}

/// The values of a column of integers as i64 (None for null), any integer type.
fn int_items(column: &Column, expected: &'static str) -> Result<Vec<Option<i64>>> {
    if !column.field.data_type().is_integer() {
        return Err(Error::ColumnType {
            column: column.name().to_string(),
            expected,
            actual: type_name(column.field.data_type()),
        });
    }
    let mut out = Vec::with_capacity(column.chunks.iter().map(|c| c.len()).sum());
    for chunk in &column.chunks {
        let ints = cast(chunk, &DataType::Int64)?;
        out.extend(ints.as_primitive::<Int64Type>().iter());
    }
    Ok(out)
}

/// The floats of a list column's items (NaN for null), or an error naming the outer column.
fn float_items(lists: &Lists, expected: &'static str) -> Result<ScalarBuffer<f64>> {
    let data_type = lists.items.field.data_type();
    if !(data_type.is_floating() || data_type.is_integer()) {
        return Err(lists.error(expected, format!("items of type {}", type_name(data_type))));
    }
    lists.items.to_f64()
}

/// The matrices of a table, read (not yet validated: [`Matrices::load`] checks each one).
struct Matrices {
    responses: Lists,
    /// Views of every response (the items of `responses`).
    text: Views,
    /// `win_prob`: row `m` lists the K matrix rows of matrix `m`, items of `cells`.
    win: Lists,
    /// The matrix rows: each lists K cells, items of `p`.
    cells: Lists,
    p: ScalarBuffer<f64>,
    rows: Option<(Lists, Vec<Option<i64>>)>,
    scores: Option<(Lists, ScalarBuffer<f64>)>,
    group_ids: Vec<u64>,
    /// Position of each matrix's first response in the exploded table, plus one final end.
    first: Vec<usize>,
    tolerance: f64,
}

const RESPONSES: &str = "a list of non-null text per row (list<string>, large_list<large_string>, \
                         list<string_view>...)";
const WIN_PROB: &str = "a K x K matrix (list<list<double>>) of probabilities in [0, 1] per row, \
                        K = the number of responses, with P[a][b] + P[b][a] = 1";
const ROWS: &str = "a list of one non-null input row (an integer) per response";
const SCORES: &str = "a list of one non-NaN score (a number) per response";
const GROUP_ID: &str = "a non-null unsigned integer per row, unique (one row per prompt)";

impl Matrices {
    fn read(table: &Table, options: &MatrixOptions) -> Result<Self> {
        if !(options.tolerance >= 0.0 && options.tolerance.is_finite()) {
            return Err(Error::argument(
                "tolerance",
                "a finite number >= 0",
                options.tolerance,
            ));
        }
        let responses = Lists::new(&table.column(&options.responses)?, RESPONSES)?;
        if !is_text(responses.items.field.data_type()) {
            return Err(responses.error(
                RESPONSES,
                format!(
                    "items of type {}",
                    type_name(responses.items.field.data_type())
                ),
            ));
        }
        let text = TextColumn::new(&responses.items)?.views();
        let win = Lists::new(&table.column(&options.win_prob)?, WIN_PROB)?;
        let cells = Lists::new(&win.items, WIN_PROB)?;
        let p = float_items(&cells, WIN_PROB)?;
        let rows = match &options.rows {
            Some(name) => {
                let lists = Lists::new(&table.column(name)?, ROWS)?;
                let values = int_items(&lists.items, ROWS)?;
                Some((lists, values))
            }
            None => None,
        };
        let scores = match &options.scores {
            Some(name) => {
                let lists = Lists::new(&table.column(name)?, SCORES)?;
                let values = float_items(&lists, SCORES)?;
                Some((lists, values))
            }
            None => None,
        };
        let n = responses.bounds.len();
        let group_ids = match &options.group_id {
            Some(name) => given_group_ids(&table.column(name)?)?,
            None => prompt_group_ids(&table.column(&options.prompt)?)?,
        };
        check_unique(
            &group_ids,
            options.group_id.as_deref().unwrap_or("group_id"),
        )?;
        let mut first = Vec::with_capacity(n + 1);
        first.push(0);
        for m in 0..n {
            first.push(first[m] + responses.len(m));
        }
        Ok(Matrices {
            responses,
            text,
            win,
            cells,
            p,
            rows,
            scores,
            group_ids,
            first,
            tolerance: options.tolerance,
        })
    }

    /// Number of matrices (input rows).
    fn len(&self) -> usize {
        self.group_ids.len()
    }

    /// Validate matrix `m` and copy it into `dense` (K x K, row-major); returns K. Errors name
    /// the column, the row and, for a cell, its (a, b).
    fn load(&self, m: usize, dense: &mut Vec<f64>) -> Result<usize> {
        if !self.responses.is_valid(m) {
            return Err(self
                .responses
                .error(RESPONSES, format!("a null at row {m}")));
        }
        let items = self.responses.bounds[m].0..self.responses.bounds[m].1;
        let k = items.len();
        if let Some(item) = items.clone().find(|&i| !self.text.is_valid(i)) {
            return Err(self.responses.error(
                RESPONSES,
                format!("a null response at row {m} (item {})", item - items.start),
            ));
        }
        if let Some((lists, values)) = &self.rows {
            let range = lists.check_row(m, k, ROWS)?;
            if let Some(a) = range.clone().position(|i| values[i].is_none()) {
                return Err(lists.error(ROWS, format!("a null at row {m} (item {a})")));
            }
        }
        if let Some((lists, values)) = &self.scores {
            let range = lists.check_row(m, k, SCORES)?;
            if let Some(a) = range.clone().position(|i| values[i].is_nan()) {
                return Err(lists.error(SCORES, format!("a null or NaN at row {m} (item {a})")));
            }
        }
        let matrix_rows = self.win.check_row(m, k, WIN_PROB)?;
        dense.clear();
        for (a, matrix_row) in matrix_rows.enumerate() {
            if !self.cells.is_valid(matrix_row) || self.cells.len(matrix_row) != k {
                let got = if self.cells.is_valid(matrix_row) {
                    format!("{} cells", self.cells.len(matrix_row))
                } else {
                    "null".to_string()
                };
                return Err(self.win.error(
                    WIN_PROB,
                    format!("matrix row {a} {got} for {k} responses at row {m}"),
                ));
            }
            let (start, end) = self.cells.bounds[matrix_row];
            dense.extend_from_slice(&self.p[start..end]);
        }
        for a in 0..k {
            for b in 0..k {
                let value = dense[a * k + b];
                if a == b {
                    // The diagonal is never read (a response against itself).
                    continue;
                }
                if !(0.0..=1.0).contains(&value) {
                    let value = if value.is_nan() {
                        "a null or NaN".to_string()
                    } else {
                        value.to_string()
                    };
                    return Err(self
                        .win
                        .error(WIN_PROB, format!("{value} at row {m}, cell ({a}, {b})")));
                }
                let reverse = dense[b * k + a];
                if a < b && (0.0..=1.0).contains(&reverse) {
                    let excess = (value + reverse - 1.0).abs();
                    if excess > self.tolerance {
                        return Err(self.win.error(
                            WIN_PROB,
                            format!(
                                "P[{a}][{b}] + P[{b}][{a}] = {value} + {reverse} (off 1 by {excess}, \
                                 more than tolerance={}) at row {m}, cell ({a}, {b})",
                                self.tolerance
                            ),
                        ));
                    }
                }
            }
        }
        Ok(k)
    }

    /// The input row of response `a` of matrix `m` (validated by [`Matrices::load`]).
    fn row(&self, m: usize, a: usize) -> i64 {
        match &self.rows {
            Some((lists, values)) => values[lists.bounds[m].0 + a].expect("validated"),
            None => (self.first[m] + a) as i64,
        }
    }

    /// The score of response `a` of matrix `m`, when scores are given.
    fn score(&self, m: usize, a: usize) -> Option<f64> {
        let (lists, values) = self.scores.as_ref()?;
        Some(values[lists.bounds[m].0 + a])
    }

    /// Responses in, used (in matrices with K >= 2) and dropped as `group_too_small`; the
    /// number of matrices in and used.
    fn accounting(&self) -> Accounting {
        let mut accounting = Accounting {
            rows_in: self.first[self.len()],
            ..Accounting::default()
        };
        let mut used = 0;
        for m in 0..self.len() {
            let k = self.responses.len(m);
            if k < 2 {
                accounting.drop_rows("group_too_small", k);
            } else {
                accounting.rows_used += k;
                used += 1;
            }
        }
        accounting.counts.insert("matrices_in", self.len());
        accounting.counts.insert("matrices_used", used);
        accounting
    }
}

/// The group ids of a given column: any integer type, non-negative and non-null.
fn given_group_ids(column: &Column) -> Result<Vec<u64>> {
    let wrong = |actual: String| Error::ColumnType {
        column: column.name().to_string(),
        expected: GROUP_ID,
        actual,
    };
    if !column.field.data_type().is_integer() {
        return Err(wrong(type_name(column.field.data_type())));
    }
    let mut ids = Vec::with_capacity(column.chunks.iter().map(|c| c.len()).sum());
    for chunk in &column.chunks {
        let unsigned = cast(chunk, &DataType::UInt64)?;
        for (i, id) in unsigned.as_primitive::<UInt64Type>().iter().enumerate() {
            match id {
                Some(id) => ids.push(id),
                None => {
                    let row = ids.len();
                    let what = if chunk.is_null(i) { "null" } else { "negative" };
                    return Err(wrong(format!("a {what} value at row {row}")));
                }
            }
        }
    }
    Ok(ids)
}

/// The group ids `mine_pairs` gives the prompts (xxh3 of the key); a null prompt is an error.
fn prompt_group_ids(column: &Column) -> Result<Vec<u64>> {
    key_ids(column)?
        .into_iter()
        .enumerate()
        .map(|(row, id)| {
            id.ok_or_else(|| Error::ColumnType {
                column: column.name().to_string(),
                expected: "non-null (its group id is computed from it: group_id=None)",
                actual: format!("a null at row {row}"),
            })
        })
        .collect()
}

fn check_unique(ids: &[u64], column: &str) -> Result<()> {
    let mut seen = HashMap::with_capacity(ids.len());
    for (row, &id) in ids.iter().enumerate() {
        if let Some(first) = seen.insert(id, row) {
            return Err(Error::ColumnType {
                column: column.to_string(),
                expected: GROUP_ID,
                actual: format!("{id} at rows {first} and {row}"),
            });
        }
    }
    Ok(())
}

/// The prompt column, gathered per result row: text as string_view into the input's buffers,
/// anything else (chat messages) taken as it is.
struct Prompts {
    column: Column,
    views: Option<Views>,
}

impl Prompts {
    fn new(column: Column) -> Result<Self> {
        let views = is_text(column.field.data_type())
            .then(|| TextColumn::new(&column).map(|t| t.views()))
            .transpose()?;
        Ok(Prompts { column, views })
    }

    fn data_type(&self) -> DataType {
        match self.views {
            Some(_) => DataType::Utf8View,
            None => self.column.field.data_type().clone(),
        }
    }

    fn take(&self, rows: &[usize]) -> Result<ArrayRef> {
        match &self.views {
            Some(views) => Ok(Arc::new(views.gather(rows.iter().copied()))),
            None => self.column.take(rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder};

    /// A K x K matrix from its upper triangle, `P[b][a] = 1 - P[a][b]`.
    fn consistent(k: usize, upper: &[f64]) -> Vec<f64> {
        let mut p = vec![0.5; k * k];
        let mut next = upper.iter();
        for a in 0..k {
            for b in a + 1..k {
                let v = *next.next().unwrap();
                p[a * k + b] = v;
                p[b * k + a] = 1.0 - v;
            }
        }
        p
    }

    /// One matrix row per prompt: its responses and its cells, row-major, `rows` x `rows`
    /// where `rows` is the square root of their number (not always the number of responses).
    fn table(matrices: &[(Vec<&str>, Vec<f64>)]) -> Table {
        let mut prompts = StringBuilder::new();
        let mut responses = ListBuilder::new(StringBuilder::new());
        let mut win = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
        for (m, (texts, p)) in matrices.iter().enumerate() {
            prompts.append_value(format!("prompt {m}"));
            for t in texts {
                responses.values().append_value(t);
            }
            responses.append(true);
            let side = (p.len() as f64).sqrt() as usize;
            for a in 0..side {
                for b in 0..side {
                    win.values().values().append_value(p[a * side + b]);
                }
                win.values().append(true);
            }
            win.append(true);
        }
        let batch = RecordBatch::try_from_iter(vec![
            ("prompt", Arc::new(prompts.finish()) as ArrayRef),
            ("responses", Arc::new(responses.finish()) as ArrayRef),
            ("win_prob", Arc::new(win.finish()) as ArrayRef),
        ])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn options() -> MatrixOptions {
        MatrixOptions {
            prompt: "prompt".into(),
            responses: "responses".into(),
            win_prob: "win_prob".into(),
            rows: None,
            group_id: None,
            scores: None,
            tolerance: 1e-6,
        }
    }

    #[test]
    fn stats_of_a_transitive_matrix() {
        // 0 beats 1 and 2, 1 beats 2.
        let p = consistent(3, &[0.75, 1.0, 0.5 + 0.25]);
        let mut stats = Vec::new();
        response_stats(&p, 3, &mut stats);
        assert_eq!(stats[0].borda, 1.75);
        assert_eq!(stats[0].win_rate, 0.875);
        assert_eq!(
            stats.iter().map(|s| s.copeland).collect::<Vec<_>>(),
            [2, 0, -2]
        );
        assert_eq!(stats.iter().map(|s| s.rank).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(three_cycles(&p, 3), 0);
    }

    #[test]
    fn cycles_of_rock_paper_scissors() {
        // 0 > 1 > 2 > 0, and a fourth response beaten by all: one 3-cycle of four triads.
        let p = consistent(4, &[0.9, 0.1, 1.0, 0.8, 1.0, 1.0]);
        assert_eq!(three_cycles(&p, 4), 1);
        let mut stats = Vec::new();
        response_stats(&p, 4, &mut stats);
        // Win rates 2/3, 1.9/3, 2.1/3 and 0.
        assert_eq!(
            stats.iter().map(|s| s.rank).collect::<Vec<_>>(),
            [2, 3, 1, 4]
        );
        assert_eq!(
            stats.iter().map(|s| s.copeland).collect::<Vec<_>>(),
            [1, 1, 1, -3]
        );
        // A tie (0.5) is neither a win nor a loss.
        let tied = consistent(3, &[0.5, 0.5, 0.5]);
        assert_eq!(three_cycles(&tied, 3), 0);
        response_stats(&tied, 3, &mut stats);
        assert!(stats.iter().all(|s| s.copeland == 0));
        assert_eq!(stats.iter().map(|s| s.rank).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn cycles_beyond_one_bitset_word() {
        // 71 responses on a circle, each beating the next 35: a regular tournament, whose
        // 3-cycles are C(71, 3) - 71 * C(35, 2).
        let k = 71;
        let mut p = vec![0.5; k * k];
        for a in 0..k {
            for step in 1..=35 {
                let b = (a + step) % k;
                p[a * k + b] = 1.0;
                p[b * k + a] = 0.0;
            }
        }
        assert_eq!(three_cycles(&p, k), 71 * 70 * 69 / 6 - 71 * 35 * 34 / 2);
    }

    #[test]
    fn agreement_counts_ties() {
        let p = consistent(3, &[0.75, 0.5, 0.25]);
        let votes = agreement_of(&p, 3, &[1.0, 0.0, 0.0]);
        // (0,1) agree, (0,2) judge tie, (1,2) score tie.
        assert_eq!(
            votes,
            Votes {
                agreed: 1,
                disagreed: 0,
                tied: 2
            }
        );
    }

    #[test]
    fn long_form_and_accounting() {
        let t = table(&[
            (vec!["a", "b"], consistent(2, &[0.25])),
            (vec!["solo"], vec![0.5]),
        ]);
        let (batches, _, accounting) = win_rates(&t, &options(), false).unwrap();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let rates = batch
            .column(3)
            .as_primitive::<arrow_array::types::Float64Type>();
        assert_eq!(rates.values().to_vec(), vec![0.25, 0.75]);
        let rows = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(rows.values().to_vec(), vec![0, 1]);
        assert_eq!(accounting.rows_in, 3);
        assert_eq!(accounting.dropped["group_too_small"], 1);
        assert_eq!(accounting.rows_accounted(), 3);
    }

    #[test]
    fn bad_matrices_name_the_row_and_cell() {
        let message = |matrices: &[(Vec<&str>, Vec<f64>)]| {
            win_rates(&table(matrices), &options(), false)
                .unwrap_err()
                .to_string()
        };
        let ok = (vec!["a", "b"], consistent(2, &[0.5]));
        let bad_range = (vec!["a", "b"], vec![0.5, 1.5, -0.5, 0.5]);
        let m = message(&[ok.clone(), bad_range]);
        assert!(m.contains("row 1, cell (0, 1)") && m.contains("1.5"), "{m}");
        let inconsistent = (vec!["a", "b"], vec![0.5, 0.7, 0.7, 0.5]);
        let m = message(&[ok.clone(), inconsistent]);
        assert!(
            m.contains("row 1, cell (0, 1)") && m.contains("tolerance"),
            "{m}"
        );
        let nan = (vec!["a", "b"], vec![0.5, f64::NAN, 0.5, 0.5]);
        assert!(message(&[nan]).contains("NaN at row 0, cell (0, 1)"));
        let short = (vec!["a", "b", "c"], consistent(2, &[0.5]));
        let m = message(&[short]);
        assert!(m.contains("'win_prob'") && m.contains("2 items for 3 responses at row 0"));
        let dup = table(&[ok.clone(), ok.clone()]);
        let mut by_id = options();
        by_id.prompt = "responses".into();
        let m = win_rates(&dup, &by_id, false).unwrap_err().to_string();
        assert!(m.contains("at rows 0 and 1"), "{m}");
        let mut loose = options();
        loose.tolerance = f64::NAN;
        assert!(win_rates(&table(&[ok]), &loose, false).is_err());
    }
}
