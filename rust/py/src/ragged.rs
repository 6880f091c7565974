//! `take_ragged` across the boundary.

use std::sync::Arc;

use arrow_array::{Array, Int32Array, Int64Array};
use prefkit_core::{ragged, Error};
use pyo3::prelude::*;
use pyo3_arrow::PyArray;

use crate::errors::run_detached;

/// The values of an Arrow array of `expected` type, or an error naming `name`.
fn values_of<'a, A: Array + 'static>(
    array: &'a dyn Array,
    name: &str,
    expected: &'static str,
) -> Result<&'a A, Error> {
    array
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| Error::ColumnType {
            column: name.to_string(),
            expected,
            actual: array.data_type().to_string(),
        })
}

/// Rows `indices` (int64) of the ragged array `values` (int32) / `offsets` (int64, rows + 1).
/// Returns `(values, offsets)`.
#[pyfunction]
pub fn take_ragged(
    py: Python<'_>,
    values: PyArray,
    offsets: PyArray,
    indices: PyArray,
) -> PyResult<(PyArray, PyArray)> {
    let (out, out_offsets) = run_detached(py, move || {
        let values = values_of::<Int32Array>(values.array().as_ref(), "values", "int32")?;
        let offsets = values_of::<Int64Array>(offsets.array().as_ref(), "offsets", "int64")?;
        let indices = values_of::<Int64Array>(indices.array().as_ref(), "indices", "int64")?;
        ragged::take(values.values(), offsets.values(), indices.values())
    })?;
    Ok((
        PyArray::from_array_ref(Arc::new(Int32Array::from(out))),
        PyArray::from_array_ref(Arc::new(Int64Array::from(out_offsets))),
    ))
}
