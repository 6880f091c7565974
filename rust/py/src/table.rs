//! Row gathering and text lengths across the boundary: any column type, string_view included
//! (pyarrow's `take`, `filter` and `utf8_length` have no string_view kernels).

use std::sync::Arc;

use arrow_array::{Array, Int64Array, UInt64Array};
use prefkit_core::text::TextColumn;
use prefkit_core::{key, Error, Table};
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyTable};

use crate::errors::run_detached;

/// The rows `rows` (int64 row numbers) of `table`, in that order, as a one-batch table; with
/// `views`, text columns as string_view arrays sharing the input's buffers.
#[pyfunction]
#[pyo3(signature = (table, rows, *, views=false))]
pub fn take(py: Python<'_>, table: PyTable, rows: PyArray, views: bool) -> PyResult<PyTable> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let batch = run_detached(py, move || {
        let array = rows.array();
        let rows =
            array
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| Error::ColumnType {
                    column: "rows".to_string(),
                    expected: "int64",
                    actual: array.data_type().to_string(),
                })?;
        let n = table.num_rows();
        let rows = rows
            .values()
            .iter()
            .map(|&r| {
                usize::try_from(r)
                    .ok()
                    .filter(|&r| r < n)
                    .ok_or_else(|| Error::argument("rows", "row numbers of the table", r))
            })
            .collect::<Result<Vec<usize>, Error>>()?;
        table.take(&rows, views)
    })?;
    let schema = batch.schema();
    PyTable::try_new(vec![batch], schema)
}

/// The length in characters of every row of the text column `column` (int64, null for null).
#[pyfunction]
pub fn text_lengths(py: Python<'_>, table: PyTable, column: String) -> PyResult<PyArray> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let lengths = run_detached(py, move || {
        let text = TextColumn::new(&table.column(&column)?)?;
        Ok(text.char_lengths())
    })?;
    let array = Int64Array::from_iter(lengths.into_iter().map(|n| n.map(|n| n as i64)));
    Ok(PyArray::from_array_ref(Arc::new(array)))
}

/// Every row's group key id (uint64, null for a null key): xxh3-64 of the key's canonical
/// bytes, the `group_id` of the row's group in `mine_pairs`, `rank_lists`, `build_trees`.
#[pyfunction]
pub fn key_ids(py: Python<'_>, table: PyTable, column: String) -> PyResult<PyArray> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let ids = run_detached(py, move || key::key_ids(&table.column(&column)?))?;
    Ok(PyArray::from_array_ref(Arc::new(UInt64Array::from(ids))))
}

/// `table` with every string_view (binary_view) column, at any depth, copied into
/// large_string (large_binary); other columns are shared. Metadata is kept.
#[pyfunction]
pub fn plain_text(py: Python<'_>, table: PyTable) -> PyResult<PyTable> {
    let (batches, schema) = table.into_inner();
    let (schema, batches) = run_detached(py, move || {
        prefkit_core::plain::plain_batches(&schema, &batches)
    })?;
    PyTable::try_new(batches, Arc::new(schema))
}
