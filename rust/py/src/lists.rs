//! `rank_lists` and `order_curriculum` across the boundary.

use prefkit_core::curriculum::{self, CurriculumOptions, Order};
use prefkit_core::lists::{self, ListOptions, ListRules};
use prefkit_core::pairs::{NanPolicy, Ties};
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;

use crate::errors::{accounting_dict, run_detached};

/// Ranked lists; see `prefkit.rank_lists`. Returns `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (
    table, *, prompt, response, score, group, list_size, min_list_size, ties, nan, views
))]
#[allow(clippy::too_many_arguments)]
pub fn rank_lists<'py>(
    py: Python<'py>,
    table: PyTable,
    prompt: String,
    response: String,
    score: String,
    group: Option<String>,
    list_size: Option<usize>,
    min_list_size: usize,
    ties: String,
    nan: String,
    views: bool,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let (batches, schema, accounting) = run_detached(py, move || {
        let options = ListOptions {
            prompt,
            response,
            score,
            group,
            rules: ListRules {
                list_size,
                min_list_size,
                ties: Ties::parse(&ties)?,
            },
            nan: NanPolicy::parse(&nan)?,
            views,
        };
        lists::rank_lists(&table, &options)
    })?;
    Ok((
        PyTable::try_new(batches, schema)?,
        accounting_dict(py, &accounting)?,
    ))
}

/// Curriculum order; see `prefkit.order_curriculum`. Returns `(table, accounting)`: the rows
/// reordered plus `stage`.
#[pyfunction]
#[pyo3(signature = (table, *, by, order, stages, per_prompt, group, shuffle_within_stage, seed))]
#[allow(clippy::too_many_arguments)]
pub fn order_curriculum<'py>(
    py: Python<'py>,
    table: PyTable,
    by: String,
    order: String,
    stages: Option<usize>,
    per_prompt: bool,
    group: String,
    shuffle_within_stage: bool,
    seed: u64,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let (batch, accounting) = run_detached(py, move || {
        let options = CurriculumOptions {
            by,
            order: Order::parse(&order)?,
            stages,
            per_prompt,
            group,
            shuffle_within_stage,
            seed,
        };
        let (result, accounting) = curriculum::order_curriculum(&table, &options)?;
        Ok((curriculum::reorder(&table, &result)?, accounting))
    })?;
    let schema = batch.schema();
    Ok((
        PyTable::try_new(vec![batch], schema)?,
        accounting_dict(py, &accounting)?,
    ))
}
