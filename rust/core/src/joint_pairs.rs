//! Joint pairs across prompts (JPO, "Comparing Bad Apples to Good Oranges", arXiv 2404.00530):
//! a (prompt, response) chosen over a (prompt, response) of *another* prompt, mined from rated
//! single responses.
//!
//! Prompts are grouped by the grouping engine as for `mine_pairs`. Each draw matches every
//! prompt with a partner: a seeded random permutation of the prompts is read as a cycle, and
//! each prompt is paired with the next one, so partners always differ and every prompt is the
//! first side exactly once per draw. The strategy picks one response on each side (the rules
//! are in docs/joint_pairs.md); the higher-scored side is chosen when the margin exceeds
//! `min_margin`, otherwise the draw gives no pair (JPO discards ties).

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, UInt64Array};
use arrow_schema::{Field, Schema};
use hashbrown::HashSet;
use rayon::prelude::*;

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::grouping::group_rows;
use crate::key::KeyColumn;
use crate::pairs::{check_no_nan, ensemble, rank, splitmix64, NanPolicy};
use crate::parallel;
use crate::table::{Column, Table};
use crate::text::{is_text, TextColumn};

/// Which response of each side of a drawn prompt pair is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JointStrategy {
    /// The first prompt's best response against its partner's worst ("good oranges vs bad
    /// apples"): the joint pairs that conditional rankings imply most safely.
    BestVsWorst,
    /// One uniformly drawn response of each prompt, ordered by score (JPO's sampling of
    /// instruction-response pairs for joint annotation).
    Random,
}

impl JointStrategy {
    /// Parse the name used by the Python API.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "best_vs_worst" => Ok(Self::BestVsWorst),
            "random" => Ok(Self::Random),
            other => Err(Error::argument(
                "strategy",
                "one of 'best_vs_worst', 'random'",
                format!("'{other}'"),
            )),
        }
    }
}

/// The arguments of [`mine_joint_pairs`]; see `pk.mine_joint_pairs` for their meaning.
#[derive(Debug, Clone)]
pub struct JointOptions {
    pub prompt: String,
    pub response: String,
    pub scores: Vec<String>,
    pub group: Option<String>,
    pub strategy: JointStrategy,
    pub pairs_per_prompt: usize,
    pub min_margin: f64,
    pub nan: NanPolicy,
    pub seed: u64,
    pub carry: Vec<String>,
}

impl JointOptions {
    fn validate(&self) -> Result<()> {
        if !(self.min_margin >= 0.0 && self.min_margin.is_finite()) {
            return Err(Error::argument(
                "min_margin",
                "a finite number >= 0",
                self.min_margin,
            ));
        }
        if self.pairs_per_prompt < 1 {
            return Err(Error::argument(
                "pairs_per_prompt",
                "an integer >= 1",
                self.pairs_per_prompt,
            ));
        }
        if self.scores.is_empty() {
            return Err(Error::argument("score", "at least one column", "none"));
        }
        Ok(())
    }
}

/// One joint pair: input rows and groups of both sides.
#[derive(Debug, Clone, Copy, PartialEq)]
struct JointPair {
    chosen: usize,
    rejected: usize,
    chosen_group: usize,
    rejected_group: usize,
    margin: f64,
}

/// Output columns before the carried ones.
const RESULT_COLUMNS: [&str; 11] = [
    "prompt",
    "chosen",
    "rejected_prompt",
    "rejected",
    "score_chosen",
    "score_rejected",
    "margin",
    "group_id",
    "rejected_group_id",
    "chosen_row",
    "rejected_row",
];

/// A uniform integer in `0..n` from 64 random bits (Lemire's multiply-shift).
fn below(bits: u64, n: usize) -> usize {
    ((bits as u128 * n as u128) >> 64) as usize
}

/// The seeded permutation of `0..n` of draw `draw` (Fisher-Yates over a splitmix64 stream).
fn permutation(n: usize, seed: u64, draw: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = splitmix64(seed ^ splitmix64(draw));
    for i in (1..n).rev() {
        state = splitmix64(state);
        order.swap(i, below(state, i + 1));
    }
    order
}

/// Mine joint pairs from `table`, one row per rated response.
///
/// Returns the pairs as one record batch (columns in docs/joint_pairs.md) and the accounting of
/// every input row: used, `null_key`, `null_response`, `nan_score`, `too_few_prompts` (fewer
/// than two prompts have a usable response) or `not_selected`.
pub fn mine_joint_pairs(
    table: &Table,
    options: &JointOptions,
) -> Result<(RecordBatch, Accounting)> {
    options.validate()?;
    let prompt = table.column(&options.prompt)?;
    let response = TextColumn::new(&table.column(&options.response)?)?;
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
    for column in &carry {
        if RESULT_COLUMNS.contains(&column.name()) {
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

    let keys = key_column.bytes();
    let groups = group_rows(&keys);
    let mut accounting = Accounting {
        rows_in: table.num_rows(),
        ..Accounting::default()
    };
    accounting.drop_rows("null_key", groups.null_keys);

    // Each group's usable responses, best first (stable: the earlier row wins a tie).
    let ranked: Vec<(usize, Vec<(f64, usize)>)> = parallel::install(|| {
        (0..groups.len())
            .into_par_iter()
            .map(|g| {
                let mut items: Vec<(f64, usize)> = groups
                    .rows_of(g)
                    .filter(|&row| has_response[row] && !score[row].is_nan())
                    .map(|row| (score[row], row))
                    .collect();
                rank(&mut items);
                (g, items)
            })
            .collect()
    });
    for (g, (_, usable)) in ranked.iter().enumerate() {
        let members = groups.rows_of(g).count();
        let nulls = groups.rows_of(g).filter(|&row| !has_response[row]).count();
        accounting.drop_rows("null_response", nulls);
        accounting.drop_rows("nan_score", members - nulls - usable.len());
    }
    let sides: Vec<&(usize, Vec<(f64, usize)>)> = ranked
        .iter()
        .filter(|(_, items)| !items.is_empty())
        .collect();
    accounting.counts.insert("groups_in", groups.len());
    let usable_rows: usize = sides.iter().map(|(_, items)| items.len()).sum();
    if sides.len() < 2 {
        accounting.drop_rows("too_few_prompts", usable_rows);
        accounting.counts.insert("pairs_out", 0);
        let batch = build_batch(&[], &prompt, &response, &score, &groups.ids, &carry)?;
        return Ok((batch, accounting));
    }

    let draw_pair = |first: &(usize, Vec<(f64, usize)>),
                     second: &(usize, Vec<(f64, usize)>),
                     bits: u64|
     -> Option<JointPair> {
        let (a, b) = match options.strategy {
            JointStrategy::BestVsWorst => (first.1[0], second.1[second.1.len() - 1]),
            JointStrategy::Random => (
                first.1[below(bits, first.1.len())],
                second.1[below(splitmix64(bits), second.1.len())],
            ),
        };
        let ((chosen, chosen_group), (rejected, rejected_group)) = if a.0 >= b.0 {
            ((a, first.0), (b, second.0))
        } else {
            ((b, second.0), (a, first.0))
        };
        // Equal scores (also two equal infinities) have margin 0: never a pair.
        let margin = if chosen.0 == rejected.0 {
            0.0
        } else {
            chosen.0 - rejected.0
        };
        (margin > options.min_margin).then_some(JointPair {
            chosen: chosen.1,
            rejected: rejected.1,
            chosen_group,
            rejected_group,
            margin,
        })
    };
    let n = sides.len();
    let mut pairs: Vec<JointPair> = Vec::new();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut no_pair = 0usize;
    let mut repeated = 0usize;
    for draw in 0..options.pairs_per_prompt as u64 {
        let order = permutation(n, options.seed, draw);
        let drawn: Vec<Option<JointPair>> = parallel::install(|| {
            (0..n)
                .into_par_iter()
                .map(|i| {
                    let (first, second) = (sides[order[i]], sides[order[(i + 1) % n]]);
                    let bits = splitmix64(options.seed ^ groups.ids[first.0] ^ splitmix64(!draw));
                    draw_pair(first, second, bits)
                })
                .collect()
        });
        for pair in drawn {
            match pair {
                None => no_pair += 1,
                Some(p) if seen.insert((p.chosen, p.rejected)) => pairs.push(p),
                Some(_) => repeated += 1,
            }
        }
    }
    let used: HashSet<usize> = pairs.iter().flat_map(|p| [p.chosen, p.rejected]).collect();
    accounting.rows_used = used.len();
    accounting.drop_rows("not_selected", usable_rows - used.len());
    accounting
        .counts
        .insert("draws", n * options.pairs_per_prompt);
    accounting.counts.insert("draws_without_pair", no_pair);
    accounting.counts.insert("draws_repeated", repeated);
    accounting.counts.insert("pairs_out", pairs.len());
    debug_assert_eq!(accounting.rows_accounted(), accounting.rows_in);

    let batch = build_batch(&pairs, &prompt, &response, &score, &groups.ids, &carry)?;
    Ok((batch, accounting))
}

/// The text of `rows` of a prompt or response column: views into the input for text, a
/// gather for chat messages and other types.
fn gather(column: &Column, rows: &[usize]) -> Result<ArrayRef> {
    if is_text(column.field.data_type()) {
        let views = TextColumn::new(column)?.views();
        Ok(Arc::new(views.gather(rows.iter().copied())))
    } else {
        column.take(rows)
    }
}

/// The result batch: columns as in docs/joint_pairs.md, then `carry` from the chosen row.
fn build_batch(
    pairs: &[JointPair],
    prompt: &Column,
    response: &TextColumn,
    score: &[f64],
    group_ids: &[u64],
    carry: &[Column],
) -> Result<RecordBatch> {
    let chosen: Vec<usize> = pairs.iter().map(|p| p.chosen).collect();
    let rejected: Vec<usize> = pairs.iter().map(|p| p.rejected).collect();
    let responses = response.views();
    let f64s = |rows: &[usize]| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|&r| score[r]),
        ))
    };
    let ids = |group: fn(&JointPair) -> usize| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(
            pairs.iter().map(|p| group_ids[group(p)]),
        ))
    };
    let i64s = |rows: &[usize]| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|&r| r as i64)))
    };
    let mut arrays: Vec<ArrayRef> = vec![
        gather(prompt, &chosen)?,
        Arc::new(responses.gather(chosen.iter().copied())),
        gather(prompt, &rejected)?,
        Arc::new(responses.gather(rejected.iter().copied())),
        f64s(&chosen),
        f64s(&rejected),
        Arc::new(Float64Array::from_iter_values(
            pairs.iter().map(|p| p.margin),
        )),
        ids(|p| p.chosen_group),
        ids(|p| p.rejected_group),
        i64s(&chosen),
        i64s(&rejected),
    ];
    let mut fields: Vec<Field> = RESULT_COLUMNS
        .iter()
        .zip(&arrays)
        .map(|(name, array)| {
            let nullable = matches!(*name, "prompt" | "rejected_prompt");
            Field::new(*name, array.data_type().clone(), nullable)
        })
        .collect();
    for column in carry {
        let array = column.take(&chosen)?;
        fields.push(Field::new(column.name(), array.data_type().clone(), true));
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::StringArray;

    fn table(prompts: &[&str], responses: &[&str], scores: &[f64]) -> Table {
        let batch = RecordBatch::try_from_iter([
            (
                "prompt",
                Arc::new(StringArray::from(prompts.to_vec())) as ArrayRef,
            ),
            (
                "response",
                Arc::new(StringArray::from(responses.to_vec())) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float64Array::from(scores.to_vec())) as ArrayRef,
            ),
        ])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn options(strategy: JointStrategy) -> JointOptions {
        JointOptions {
            prompt: "prompt".into(),
            response: "response".into(),
            scores: vec!["score".into()],
            group: None,
            strategy,
            pairs_per_prompt: 1,
            min_margin: 0.0,
            nan: NanPolicy::Drop,
            seed: 0,
            carry: vec![],
        }
    }

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = permutation(50, 7, 0);
        assert_eq!(a, permutation(50, 7, 0));
        assert_ne!(a, permutation(50, 7, 1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn best_vs_worst_pairs_across_prompts_only() {
        let t = table(
            &["a", "a", "b", "b", "c"],
            &["a1", "a2", "b1", "b2", "c1"],
            &[5.0, 1.0, 4.0, 0.0, 3.0],
        );
        let (batch, accounting) =
            mine_joint_pairs(&t, &options(JointStrategy::BestVsWorst)).unwrap();
        let prompts = batch.column(0).as_string_view();
        let rejected_prompts = batch.column(2).as_string_view();
        assert_eq!(batch.num_rows(), 3);
        for i in 0..batch.num_rows() {
            assert_ne!(prompts.value(i), rejected_prompts.value(i));
        }
        assert_eq!(accounting.rows_accounted(), 5);
        assert!(accounting.rows_used >= 3);
    }

    #[test]
    fn one_prompt_gives_no_pairs_and_counts_its_rows() {
        let t = table(&["a", "a"], &["x", "y"], &[1.0, f64::NAN]);
        let (batch, accounting) = mine_joint_pairs(&t, &options(JointStrategy::Random)).unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(accounting.dropped["too_few_prompts"], 1);
        assert_eq!(accounting.dropped["nan_score"], 1);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(JointStrategy::parse("all_pairs").is_err());
        let mut o = options(JointStrategy::Random);
        o.pairs_per_prompt = 0;
        let t = table(&["a"], &["x"], &[1.0]);
        assert!(mine_joint_pairs(&t, &o).is_err());
    }
}
