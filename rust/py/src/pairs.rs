//! `mine_pairs` across the boundary.

use prefkit_core::pairs::{self, NanPolicy, PairOptions, Strategy, Ties};
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;

use crate::errors::{accounting_dict, run_detached};

/// Mine pairs; see `prefkit.mine_pairs`. Returns `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (
    table, *, prompt, response, score, group, strategy, k, min_margin, ties, nan,
    max_pairs_per_prompt, length_penalty, seed, carry
))]
#[allow(clippy::too_many_arguments)]
pub fn mine_pairs<'py>(
    py: Python<'py>,
    table: PyTable,
    prompt: String,
    response: String,
    score: Vec<String>,
    group: Option<String>,
    strategy: String,
    k: usize,
    min_margin: f64,
    ties: String,
    nan: String,
    max_pairs_per_prompt: Option<usize>,
    length_penalty: f64,
    seed: u64,
    carry: Vec<String>,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let (batch, accounting) = run_detached(py, move || {
        let options = PairOptions {
            prompt,
            response,
            scores: score,
            group,
            strategy: Strategy::parse(&strategy)?,
            k,
            min_margin,
            ties: Ties::parse(&ties)?,
            nan: NanPolicy::parse(&nan)?,
            max_pairs_per_prompt,
            length_penalty,
            seed,
            carry,
        };
        pairs::mine_pairs(&table, &options)
    })?;
    let schema = batch.schema();
    Ok((
        PyTable::try_new(vec![batch], schema)?,
        accounting_dict(py, &accounting)?,
    ))
}
