//! Ranked lists for listwise training (`pk.rank_lists`): per prompt, its responses sorted best
//! first, with their scores and source rows.
//!
//! The exact rules are in docs/lists.md and mirrored by tests/reference.py. [`ListRules`] (ties,
//! list size, minimum size) is shared with `tree_lists`, and so are [`string_lists`] and
//! [`string_list_of`], which build the `list<large_string>` columns.

use std::mem::MaybeUninit;
use std::sync::Arc;

use arrow_array::builder::LargeStringBuilder;
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, LargeStringArray, ListArray, RecordBatch, UInt64Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::grouping::group_rows;
use crate::key::KeyColumn;
use crate::pairs::{check_no_nan, rank, NanPolicy, Ties};
use crate::parallel;
use crate::prefetch::prefetch_element;
use crate::table::{Column, Table};
use crate::text::{is_text, TextColumn, ViewRenumbering, GATHER_PREFETCH_ROWS};

/// How a ranked list is cut: ties, maximum and minimum size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRules {
    /// Keep at most this many items, the best ones.
    pub list_size: Option<usize>,
    /// A list with fewer items (after ties and `list_size`) is not emitted.
    pub min_list_size: usize,
    /// `Keep`: equal scores stay; `Drop`: of equal scores only the first (earliest) stays.
    pub ties: Ties,
}

impl ListRules {
    /// Check the sizes: `min_list_size >= 1`, `list_size >= max(1, min_list_size)`.
    pub fn validate(&self) -> Result<()> {
        if self.min_list_size < 1 {
            return Err(Error::argument(
                "min_list_size",
                "an integer >= 1",
                self.min_list_size,
            ));
        }
        if let Some(size) = self.list_size {
            if size < self.min_list_size {
                return Err(Error::argument(
                    "list_size",
                    "an integer >= min_list_size",
                    size,
                ));
            }
        }
        Ok(())
    }

    /// Cut `list` (best first, from [`rank`]) in place and account for every item: kept ones
    /// are used, the others dropped as `tie`, `beyond_list_size` or `group_too_small`.
    /// Returns whether a list is emitted (else `list` is left empty; the caller counts
    /// `lists_out`).
    pub fn cut(&self, list: &mut Vec<(f64, usize)>, accounting: &mut Accounting) -> bool {
        let mut kept = list.len();
        if self.ties == Ties::Drop {
            // Keep the first of each run of equal scores.
            kept = 0;
            for i in 0..list.len() {
                if kept == 0 || list[kept - 1].0 != list[i].0 {
                    list[kept] = list[i];
                    kept += 1;
                }
            }
            if kept < list.len() {
                accounting.drop_rows("tie", list.len() - kept);
            }
        }
        if let Some(size) = self.list_size {
            if kept > size {
                accounting.drop_rows("beyond_list_size", kept - size);
                kept = size;
            }
        }
        if kept < self.min_list_size {
            accounting.drop_rows("group_too_small", kept);
            list.clear();
            return false;
        }
        list.truncate(kept);
        accounting.rows_used += kept;
        true
    }
}

/// The arguments of [`rank_lists`]; see `pk.rank_lists` for their meaning.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub prompt: String,
    pub response: String,
    pub score: String,
    pub group: Option<String>,
    pub rules: ListRules,
    pub nan: NanPolicy,
    /// `responses` as `list<string_view>` sharing the input's buffers instead of
    /// `list<string>` (no text copied; pandas cannot convert it, `pk.materialize` can).
    pub views: bool,
}

/// Groups ranked and built into one output batch by one task. A batch holds at most this many
/// lists, so its text stays far under the 2 GiB a `list<string>` can address, and there are
/// enough batches to keep every core busy.
const GROUPS_PER_BATCH: usize = 1 << 13;

/// How many groups ahead of the one being ranked to prefetch the rows of ([`crate::prefetch`]).
const PREFETCH_GROUPS: usize = 4;

/// One row per group: its valid responses sorted best first, as docs/lists.md describes.
///
/// Returns the result batches (at most [`GROUPS_PER_BATCH`] lists each, built in parallel),
/// their schema, and the accounting of every input row.
pub fn rank_lists(
    table: &Table,
    options: &ListOptions,
) -> Result<(Vec<RecordBatch>, SchemaRef, Accounting)> {
    options.rules.validate()?;
    let prompt = table.column(&options.prompt)?;
    let response = TextColumn::new(&table.column(&options.response)?)?.views();
    let score_column = table.column(&options.score)?;
    let key_column = match &options.group {
        Some(name) => KeyColumn::new(&table.column(name)?)?,
        None => KeyColumn::new(&prompt)?,
    };
    let score = score_column.to_f64()?;
    if options.nan == NanPolicy::Error {
        check_no_nan(
            std::slice::from_ref(&score_column),
            std::slice::from_ref(&score),
        )?;
    }
    let keys = key_column.bytes();
    let groups = group_rows(&keys);
    let prompt_views = is_text(prompt.field.data_type())
        .then(|| TextColumn::new(&prompt).map(|t| t.views()))
        .transpose()?;
    let schema = list_schema(&prompt, prompt_views.is_some(), options.views);

    // Each task ranks a range of groups into its batch: no pass over a merged list of every
    // item, and the text copy (the bulk of the work without `views`) is spread over the cores.
    //
    // The items of all lists (score, input row and, with `views`, the response's view) go into
    // one allocation per column, made here on the calling thread, each task filling the
    // stretch of its groups' rows; the batches' arrays are slices of them. Memory allocated by
    // one thread and freed by one (Python's, when the table is dropped) is reused by the next
    // call, whereas allocations spread over the pool's threads grow each thread's heap over
    // the first calls, and fresh memory costs a page fault per 4 KB on first touch, about as
    // much as the ranking itself.
    let batch_starts: Vec<usize> = (0..groups.len()).step_by(GROUPS_PER_BATCH).collect();
    let batch_end = |start: usize| (start + GROUPS_PER_BATCH).min(groups.len());
    let bounds: Vec<usize> = batch_starts
        .iter()
        .map(|&start| groups.offsets[start])
        .chain([groups.offsets[groups.len()]])
        .collect();
    let items = groups.offsets[groups.len()];
    let mut scores: Vec<f64> = Vec::with_capacity(items);
    let mut rows: Vec<i64> = Vec::with_capacity(items);
    let mut views: Vec<u128> = Vec::with_capacity(if options.views { items } else { 0 });
    let tasks: Vec<_> = batch_starts
        .iter()
        .zip(stretches(scores.spare_capacity_mut(), &bounds))
        .zip(stretches(rows.spare_capacity_mut(), &bounds))
        .zip(stretches(views.spare_capacity_mut(), &bounds))
        .map(|(((&start, scores), rows), views)| (start, scores, rows, views))
        .collect();
    let parts = parallel::install(|| {
        tasks
            .into_par_iter()
            .map(|(start, score_slots, row_slots, view_slots)| {
                let end = batch_end(start);
                let mut accounting = Accounting::default();
                let mut count = 0;
                let mut offsets = Vec::with_capacity(end - start + 1);
                offsets.push(0);
                let mut best = Vec::with_capacity(end - start);
                let mut list_groups = Vec::with_capacity(end - start);
                let mut list = Vec::new();
                for g in start..end {
                    if g + PREFETCH_GROUPS < end {
                        for row in groups.rows_of(g + PREFETCH_GROUPS) {
                            response.prefetch_validity(row);
                            prefetch_element(&score, row);
                        }
                    }
                    list.clear();
                    for row in groups.rows_of(g) {
                        if !response.is_valid(row) {
                            accounting.drop_rows("null_response", 1);
                        } else if score[row].is_nan() {
                            accounting.drop_rows("nan_score", 1);
                        } else {
                            list.push((score[row], row));
                        }
                    }
                    rank(&mut list);
                    if !options.rules.cut(&mut list, &mut accounting) {
                        continue;
                    }
                    for &(score, row) in &list {
                        score_slots[count].write(score);
                        row_slots[count].write(row as i64);
                        count += 1;
                    }
                    best.push(list[0].1);
                    offsets.push(count);
                    list_groups.push(g);
                }
                // SAFETY: the first `count` slots were written in the loop above.
                let listed: &[i64] =
                    unsafe { std::slice::from_raw_parts(row_slots.as_ptr().cast(), count) };
                let responses = if options.views {
                    let mut renumbering = ViewRenumbering::new(&response);
                    let mut ahead = listed.iter().skip(GATHER_PREFETCH_ROWS);
                    for (slot, &row) in view_slots.iter_mut().zip(listed) {
                        if let Some(&row) = ahead.next() {
                            response.prefetch_row(row as usize);
                        }
                        slot.write(renumbering.view(row as usize));
                    }
                    Responses::Views(renumbering)
                } else {
                    Responses::Copied(response.gather_copy(listed.iter().map(|&row| row as usize)))
                };
                // Slots of rows dropped stay out of every list; they are zeroed so that the
                // whole allocation is initialised.
                for slot in &mut score_slots[count..] {
                    slot.write(0.0);
                }
                for slot in &mut row_slots[count..] {
                    slot.write(0);
                }
                for slot in view_slots.iter_mut().skip(count) {
                    slot.write(0);
                }
                if list_groups.is_empty() {
                    return Ok((None, accounting));
                }
                let prompt_values: ArrayRef = match &prompt_views {
                    Some(views) => Arc::new(views.gather(best.iter().copied())),
                    None => prompt.take(&best)?,
                };
                let ids = UInt64Array::from_iter_values(list_groups.iter().map(|&g| groups.ids[g]));
                let lists = BatchLists {
                    offsets,
                    prompt: prompt_values,
                    responses,
                    group_ids: Arc::new(ids),
                };
                Ok((Some(lists), accounting))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    // SAFETY: the stretches cover the first `items` slots of each column (of `views` when
    // `options.views`, else it is empty), and every task initialised its whole stretch.
    unsafe {
        scores.set_len(items);
        rows.set_len(items);
        views.set_len(if options.views { items } else { 0 });
    }
    let (scores, rows, views) = (
        ScalarBuffer::from(scores),
        ScalarBuffer::from(rows),
        ScalarBuffer::from(views),
    );
    let mut accounting = Accounting::default();
    let mut batches = Vec::with_capacity(parts.len());
    for ((lists, part), &at) in parts.into_iter().zip(&bounds) {
        accounting.merge(&part);
        let Some(lists) = lists else { continue };
        let len = *lists.offsets.last().expect("offsets start at 0");
        let responses = match lists.responses {
            Responses::Views(renumbering) => list_of(
                &lists.offsets,
                Arc::new(renumbering.array(views.slice(at, len), None)),
            )?,
            Responses::Copied(texts) => string_list_of(&lists.offsets, texts)?,
        };
        let scores = Float64Array::new(scores.slice(at, len), None);
        let rows = Int64Array::new(rows.slice(at, len), None);
        let columns: Vec<ArrayRef> = vec![
            lists.prompt,
            Arc::new(responses),
            Arc::new(list_of(&lists.offsets, Arc::new(scores))?),
            Arc::new(list_of(&lists.offsets, Arc::new(rows))?),
            lists.group_ids,
        ];
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    accounting.rows_in = table.num_rows();
    accounting.drop_rows("null_key", groups.null_keys);
    accounting.counts.insert("groups_in", groups.len());
    accounting
        .counts
        .insert("lists_out", batches.iter().map(RecordBatch::num_rows).sum());
    debug_assert_eq!(accounting.rows_accounted(), accounting.rows_in);
    Ok((batches, schema, accounting))
}

/// One batch's lists, made by a task of [`rank_lists`] but for the arrays over the shared
/// item columns.
struct BatchLists<'a> {
    /// Start of each list in the batch's items, plus one final end.
    offsets: Vec<usize>,
    prompt: ArrayRef,
    responses: Responses<'a>,
    group_ids: ArrayRef,
}

/// The responses of one batch's lists.
enum Responses<'a> {
    /// Their views are in the shared column, pointing into these buffers.
    Views(ViewRenumbering<'a>),
    /// Their text, copied.
    Copied(LargeStringArray),
}

/// `slots` cut into consecutive stretches, one of `bounds[i + 1] - bounds[i]` slots for each
/// `i` (empty ones when `slots` is).
fn stretches<'s, T>(
    mut slots: &'s mut [MaybeUninit<T>],
    bounds: &[usize],
) -> Vec<&'s mut [MaybeUninit<T>]> {
    bounds
        .windows(2)
        .map(|bound| {
            let len = (bound[1] - bound[0]).min(slots.len());
            let (stretch, rest) = std::mem::take(&mut slots).split_at_mut(len);
            slots = rest;
            stretch
        })
        .collect()
}

/// The schema of `rank_lists`' result: `prompt` as string_view when it is text (`views_prompt`),
/// `responses` as `list<string_view>` with `views`, else `list<large_string>`.
fn list_schema(prompt: &Column, views_prompt: bool, views: bool) -> SchemaRef {
    let prompt_type = if views_prompt {
        DataType::Utf8View
    } else {
        prompt.field.data_type().clone()
    };
    let responses_type = if views {
        list_type(DataType::Utf8View)
    } else {
        string_list_type()
    };
    Arc::new(Schema::new(vec![
        Field::new("prompt", prompt_type, true),
        Field::new("responses", responses_type, false),
        Field::new("scores", list_type(DataType::Float64), false),
        Field::new("rows", list_type(DataType::Int64), false),
        Field::new("group_id", DataType::UInt64, false),
    ]))
}

/// `list<item>` with non-null items.
pub fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

/// `list<large_string>` whose items may be null (a null step in a prefix): large_string
/// because a result's text passes 2 GiB (see [`crate::plain`]).
pub fn string_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::LargeUtf8, true)))
}

/// A list array over `values`: list `l` holds `values[offsets[l]..offsets[l + 1]]`.
pub fn list_of(offsets: &[usize], values: ArrayRef) -> Result<ListArray> {
    let offsets = i32_offsets(offsets)?;
    let field = Arc::new(Field::new("item", values.data_type().clone(), false));
    Ok(ListArray::try_new(field, offsets, values, None)?)
}

/// A `list<large_string>` array: list `l` holds the next `offsets[l + 1] - offsets[l]` of
/// `texts` (`count` in all), copied into one string buffer.
pub fn string_lists<'a>(
    offsets: &[usize],
    texts: impl Iterator<Item = Option<&'a str>> + Clone,
    count: usize,
) -> Result<ListArray> {
    let bytes: usize = texts.clone().map(|t| t.map_or(0, str::len)).sum();
    let mut builder = LargeStringBuilder::with_capacity(count, bytes);
    for text in texts {
        builder.append_option(text);
    }
    string_list_of(offsets, builder.finish())
}

/// A `list<large_string>` array (items may be null) over `values`: list `l` holds
/// `values[offsets[l]..offsets[l + 1]]`.
pub fn string_list_of(offsets: &[usize], values: LargeStringArray) -> Result<ListArray> {
    let field = match string_list_type() {
        DataType::List(field) => field,
        _ => unreachable!(),
    };
    Ok(ListArray::try_new(
        field,
        i32_offsets(offsets)?,
        Arc::new(values),
        None::<NullBuffer>,
    )?)
}

fn i32_offsets(offsets: &[usize]) -> Result<OffsetBuffer<i32>> {
    let last = offsets.last().copied().unwrap_or(0);
    if last > i32::MAX as usize {
        return Err(Error::argument(
            "the items of one result batch",
            "fewer than 2^31",
            last,
        ));
    }
    let values: ScalarBuffer<i32> = offsets.iter().map(|&o| o as i32).collect();
    Ok(OffsetBuffer::new(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};

    fn table(prompts: &[&str], responses: &[Option<&str>], scores: &[f64]) -> Table {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "prompt",
                Arc::new(arrow_array::StringArray::from(prompts.to_vec())) as ArrayRef,
            ),
            (
                "response",
                Arc::new(arrow_array::StringArray::from(responses.to_vec())) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float64Array::from(scores.to_vec())) as ArrayRef,
            ),
        ])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn options(ties: Ties, list_size: Option<usize>, min_list_size: usize) -> ListOptions {
        ListOptions {
            prompt: "prompt".into(),
            response: "response".into(),
            score: "score".into(),
            group: None,
            rules: ListRules {
                list_size,
                min_list_size,
                ties,
            },
            nan: NanPolicy::Drop,
            views: false,
        }
    }

    fn sample() -> Table {
        table(
            &["a", "b", "a", "a", "b", "a", "c"],
            &[
                Some("w"),
                Some("x"),
                Some("y"),
                None,
                Some("z"),
                Some("v"),
                Some("u"),
            ],
            &[1.0, 0.5, 2.0, 3.0, f64::NAN, 1.0, 0.0],
        )
    }

    fn lists(batch: &RecordBatch) -> Vec<(Vec<String>, Vec<f64>, Vec<i64>)> {
        let responses = batch.column(1).as_list::<i32>();
        let scores = batch.column(2).as_list::<i32>();
        let rows = batch.column(3).as_list::<i32>();
        (0..batch.num_rows())
            .map(|i| {
                let r = responses.value(i);
                let r = r.as_string::<i64>();
                (
                    r.iter().map(|s| s.unwrap().to_string()).collect(),
                    scores
                        .value(i)
                        .as_primitive::<Float64Type>()
                        .values()
                        .to_vec(),
                    rows.value(i).as_primitive::<Int64Type>().values().to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn sorted_best_first_and_stable() {
        let (batches, _, accounting) =
            rank_lists(&sample(), &options(Ties::Keep, None, 2)).unwrap();
        assert_eq!(batches.len(), 1);
        let got = lists(&batches[0]);
        assert_eq!(
            got,
            vec![(
                vec!["y".to_string(), "w".into(), "v".into()],
                vec![2.0, 1.0, 1.0],
                vec![2, 0, 5]
            )]
        );
        assert_eq!(accounting.rows_used, 3);
        assert_eq!(accounting.dropped["null_response"], 1);
        assert_eq!(accounting.dropped["nan_score"], 1);
        assert_eq!(accounting.dropped["group_too_small"], 2);
        assert_eq!(accounting.rows_accounted(), 7);
    }

    #[test]
    fn dropped_ties_and_list_size() {
        let (batches, _, accounting) =
            rank_lists(&sample(), &options(Ties::Drop, None, 1)).unwrap();
        let got = lists(&batches[0]);
        assert_eq!(got[0].2, vec![2, 0]);
        assert_eq!(accounting.dropped["tie"], 1);
        let (batches, _, accounting) =
            rank_lists(&sample(), &options(Ties::Keep, Some(1), 1)).unwrap();
        assert_eq!(batches[0].num_rows(), 3);
        assert_eq!(accounting.dropped["beyond_list_size"], 2);
        assert!(batches[0].column(0).as_string_view().value(0) == "a");
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(rank_lists(&sample(), &options(Ties::Keep, Some(1), 2)).is_err());
        assert!(rank_lists(&sample(), &options(Ties::Keep, None, 0)).is_err());
        let mut strict = options(Ties::Keep, None, 2);
        strict.nan = NanPolicy::Error;
        let message = rank_lists(&sample(), &strict).unwrap_err().to_string();
        assert!(message.contains("row 4"), "{message}");
    }
}
