//! `take_ragged` across the boundary.

use std::sync::Arc;

use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Int32Array, Int64Array};
use prefkit_core::ragged;
use pyo3::prelude::*;
use pyo3_arrow::PyArray;

use crate::chunked;
use crate::errors::run_detached;

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
        let values = chunked::values::<Int32Type>(&values, "values", "int32 without nulls")?;
        let offsets = chunked::values::<Int64Type>(&offsets, "offsets", "int64 without nulls")?;
        let indices = chunked::values::<Int64Type>(&indices, "indices", "int64 without nulls")?;
        ragged::take(values, offsets, indices)
    })?;
    Ok((
        PyArray::from_array_ref(Arc::new(Int32Array::from(out))),
        PyArray::from_array_ref(Arc::new(Int64Array::from(out_offsets))),
    ))
}
