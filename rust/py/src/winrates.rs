//! Pairwise win-probability matrices (one K x K matrix of P(a beats b) per prompt).
//! Bindings of `prefkit_core::winrates`.

use prefkit_core::winrates::{self, MatrixOptions};
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;

use crate::errors::{accounting_dict, run_detached};

/// Adds this module's functions to `prefkit._core`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(win_rates, module)?)?;
    module.add_function(wrap_pyfunction!(intransitivity, module)?)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn options(
    prompt: String,
    responses: String,
    win_prob: String,
    rows: Option<String>,
    group_id: Option<String>,
    scores: Option<String>,
    tolerance: f64,
) -> MatrixOptions {
    MatrixOptions {
        prompt,
        responses,
        win_prob,
        rows,
        group_id,
        scores,
        tolerance,
    }
}

/// The long form of win matrices; see `prefkit.win_rates`. Returns `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (
    table, *, prompt, responses, win_prob, rows, group_id, scores, tolerance, views
))]
#[allow(clippy::too_many_arguments)]
pub fn win_rates<'py>(
    py: Python<'py>,
    table: PyTable,
    prompt: String,
    responses: String,
    win_prob: String,
    rows: Option<String>,
    group_id: Option<String>,
    scores: Option<String>,
    tolerance: f64,
    views: bool,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let options = options(
        prompt, responses, win_prob, rows, group_id, scores, tolerance,
    );
    let (batches, schema, accounting) =
        run_detached(py, move || winrates::win_rates(&table, &options, views))?;
    Ok((
        PyTable::try_new(batches, schema)?,
        accounting_dict(py, &accounting)?,
    ))
}

/// 3-cycles and agreement per matrix; see `prefkit.intransitivity`. Returns
/// `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (
    table, *, prompt, responses, win_prob, rows, group_id, scores, tolerance
))]
#[allow(clippy::too_many_arguments)]
pub fn intransitivity<'py>(
    py: Python<'py>,
    table: PyTable,
    prompt: String,
    responses: String,
    win_prob: String,
    rows: Option<String>,
    group_id: Option<String>,
    scores: Option<String>,
    tolerance: f64,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let options = options(
        prompt, responses, win_prob, rows, group_id, scores, tolerance,
    );
    let (batches, schema, accounting) =
        run_detached(py, move || winrates::intransitivity(&table, &options))?;
    Ok((
        PyTable::try_new(batches, schema)?,
        accounting_dict(py, &accounting)?,
    ))
}
