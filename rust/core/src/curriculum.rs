//! Curriculum ordering of pairs (`pk.order_curriculum`): the same rows, reordered, each with a
//! training stage.
//!
//! The exact rules are in docs/curriculum.md and mirrored by tests/reference.py. The result is
//! a permutation of the input rows plus a stage per output row; the binding gathers the rows.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema};

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::grouping::group_rows;
use crate::key::KeyColumn;
use crate::pairs::splitmix64;
use crate::parallel;
use crate::table::Table;

/// Which end of `by` comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Larger `by` first (a larger margin is an easier pair).
    EasyToHard,
    /// Smaller `by` first.
    HardToEasy,
}

impl Order {
    /// `"easy_to_hard"` or `"hard_to_easy"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "easy_to_hard" => Ok(Order::EasyToHard),
            "hard_to_easy" => Ok(Order::HardToEasy),
            other => Err(Error::argument(
                "order",
                "'easy_to_hard' or 'hard_to_easy'",
                format!("'{other}'"),
            )),
        }
    }
}

/// The arguments of [`order_curriculum`]; see `pk.order_curriculum`.
#[derive(Debug, Clone)]
pub struct CurriculumOptions {
    /// Numeric column that measures ease.
    pub by: String,
    pub order: Order,
    /// Number of stages; `None`: 1 globally, one stage per rank with `per_prompt`.
    pub stages: Option<usize>,
    /// Curry-DPO: a row's stage is its rank inside its group.
    pub per_prompt: bool,
    /// The grouping column of `per_prompt`.
    pub group: String,
    pub shuffle_within_stage: bool,
    pub seed: u64,
}

/// The curriculum: output row `i` is input row `rows[i]`, in stage `stages[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Curriculum {
    /// Input row of each output row.
    pub rows: Vec<usize>,
    /// Stage of each output row (non-decreasing).
    pub stages: Vec<i32>,
}

/// The shuffle key of a row: `splitmix64(splitmix64(seed) ^ row)`.
pub fn shuffle_key(seed: u64, row: usize) -> u64 {
    splitmix64(splitmix64(seed) ^ row as u64)
}

/// The rows of `table` in curriculum order, all its columns gathered (string_view text keeps
/// sharing the input's buffers), plus the int32 `stage` column.
pub fn reorder(table: &Table, curriculum: &Curriculum) -> Result<RecordBatch> {
    let schema = table.schema();
    if schema.index_of("stage").is_ok() {
        return Err(Error::DuplicateColumn("stage".to_string()));
    }
    let rows = table.take(&curriculum.rows, false)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("stage", DataType::Int32, false));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(Int32Array::from(curriculum.stages.clone())) as ArrayRef);
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(curriculum.rows.len())),
    )?)
}

/// Order the rows of `table` into a curriculum; every row is kept.
pub fn order_curriculum(
    table: &Table,
    options: &CurriculumOptions,
) -> Result<(Curriculum, Accounting)> {
    if options.stages == Some(0) {
        return Err(Error::argument("stages", "an integer >= 1", 0));
    }
    let values = table.column(&options.by)?.to_f64()?;
    let n = values.len();
    // Ease order: NaN (and null) last, then larger (easy_to_hard) or smaller first, then row.
    let ease = |a: usize, b: usize| -> Ordering {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => match options.order {
                Order::EasyToHard => y.partial_cmp(&x).unwrap(),
                Order::HardToEasy => x.partial_cmp(&y).unwrap(),
            },
        }
        .then(a.cmp(&b))
    };
    let mut stage = vec![0i32; n];
    let key_column = if options.per_prompt {
        Some(KeyColumn::new(&table.column(&options.group)?)?)
    } else {
        None
    };
    let mut counts = std::collections::BTreeMap::new();
    parallel::install(|| {
        use rayon::prelude::*;
        match &key_column {
            None => {
                let stages = options.stages.unwrap_or(1) as u128;
                let mut order: Vec<usize> = (0..n).collect();
                order.par_sort_by(|&a, &b| ease(a, b));
                for (position, &row) in order.iter().enumerate() {
                    stage[row] = (position as u128 * stages / n as u128) as i32;
                }
            }
            Some(keys) => {
                let keys = keys.bytes();
                let groups = group_rows(&keys);
                let cap = options.stages.map_or(usize::MAX, |s| s - 1);
                let ranks: Vec<Vec<(usize, i32)>> = (0..groups.len())
                    .into_par_iter()
                    .map(|g| {
                        let mut members = groups.rows_of(g).collect::<Vec<_>>();
                        members.sort_by(|&a, &b| ease(a, b));
                        members
                            .into_iter()
                            .enumerate()
                            .map(|(rank, row)| (row, rank.min(cap).min(i32::MAX as usize) as i32))
                            .collect()
                    })
                    .collect();
                for group in ranks {
                    for (row, s) in group {
                        stage[row] = s;
                    }
                }
                // A null key is a group of its own: rank 0.
                counts.insert("null_key_groups", groups.null_keys);
                counts.insert("groups_in", groups.len());
            }
        }
    });
    let mut rows: Vec<usize> = (0..n).collect();
    parallel::install(|| {
        use rayon::prelude::*;
        if options.shuffle_within_stage {
            let keys: Vec<u64> = (0..n).map(|r| shuffle_key(options.seed, r)).collect();
            rows.par_sort_by(|&a, &b| {
                stage[a]
                    .cmp(&stage[b])
                    .then(keys[a].cmp(&keys[b]))
                    .then(a.cmp(&b))
            });
        } else {
            rows.par_sort_by(|&a, &b| stage[a].cmp(&stage[b]).then_with(|| ease(a, b)));
        }
    });
    let stages = rows.iter().map(|&r| stage[r]).collect();
    let mut accounting = Accounting {
        rows_in: n,
        rows_used: n,
        ..Accounting::default()
    };
    accounting.counts = counts;
    Ok((Curriculum { rows, stages }, accounting))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray};

    fn table() -> Table {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "prompt",
                Arc::new(StringArray::from(vec!["a", "a", "b", "a", "b", "b"])) as ArrayRef,
            ),
            (
                "margin",
                Arc::new(Float64Array::from(vec![1.0, 3.0, 2.0, f64::NAN, 0.5, 2.0])) as ArrayRef,
            ),
        ])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn options(per_prompt: bool, stages: Option<usize>, shuffle: bool) -> CurriculumOptions {
        CurriculumOptions {
            by: "margin".into(),
            order: Order::EasyToHard,
            stages,
            per_prompt,
            group: "prompt".into(),
            shuffle_within_stage: shuffle,
            seed: 0,
        }
    }

    #[test]
    fn global_stages_are_equal_count_cuts_of_the_ease_order() {
        let (c, accounting) = order_curriculum(&table(), &options(false, Some(2), false)).unwrap();
        assert_eq!(c.rows, vec![1, 2, 5, 0, 4, 3]);
        assert_eq!(c.stages, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(accounting.rows_used, 6);
        let mut reverse = options(false, Some(3), false);
        reverse.order = Order::HardToEasy;
        let (c, _) = order_curriculum(&table(), &reverse).unwrap();
        assert_eq!(c.rows, vec![4, 0, 2, 5, 1, 3]);
        assert_eq!(c.stages, vec![0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn per_prompt_stage_is_the_rank_inside_the_group() {
        let (c, _) = order_curriculum(&table(), &options(true, None, false)).unwrap();
        assert_eq!(c.rows, vec![1, 2, 5, 0, 4, 3]);
        assert_eq!(c.stages, vec![0, 0, 1, 1, 2, 2]);
        let (c, _) = order_curriculum(&table(), &options(true, Some(2), false)).unwrap();
        assert_eq!(c.stages, vec![0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn reorder_gathers_every_column() {
        let input = table();
        let (c, _) = order_curriculum(&input, &options(false, Some(2), false)).unwrap();
        let batch = reorder(&input, &c).unwrap();
        assert_eq!(batch.num_columns(), 3);
        let stage = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(stage.values().to_vec(), vec![0, 0, 0, 1, 1, 1]);
        let margin = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(margin.value(0), 3.0);
    }

    #[test]
    fn shuffle_is_seeded_and_keeps_stages() {
        let (a, _) = order_curriculum(&table(), &options(true, None, true)).unwrap();
        let (b, _) = order_curriculum(&table(), &options(true, None, true)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.stages, vec![0, 0, 1, 1, 2, 2]);
        assert!(order_curriculum(&table(), &options(false, Some(0), true)).is_err());
    }
}
