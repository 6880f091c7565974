//! `split_prompt` across the boundary.

use prefkit_core::split_prompt::{self as split, SplitOptions, Unsplittable};
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;

use crate::errors::{accounting_dict, run_detached};

/// Split full conversations; see `prefkit.split_prompt`. Returns `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (table, *, chosen, rejected, boundary, unsplittable))]
pub fn split_prompt<'py>(
    py: Python<'py>,
    table: PyTable,
    chosen: String,
    rejected: String,
    boundary: Option<String>,
    unsplittable: String,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let (batch, accounting) = run_detached(py, move || {
        let options = SplitOptions {
            chosen,
            rejected,
            boundary,
            unsplittable: Unsplittable::parse(&unsplittable)?,
        };
        split::split_prompt(&table, &options)
    })?;
    let schema = batch.schema();
    Ok((
        PyTable::try_new(vec![batch], schema)?,
        accounting_dict(py, &accounting)?,
    ))
}
