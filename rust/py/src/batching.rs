//! `plan_batches` across the boundary.

use std::sync::Arc;

use arrow_array::{Array, UInt64Array};
use prefkit_core::batching::{self, Layout};
use prefkit_core::Error;
use pyo3::prelude::*;
use pyo3_arrow::PyArray;

use crate::errors::run_detached;

/// Plan token-budget batches; see `prefkit.plan_batches`. Returns `(rows, offsets)`.
#[pyfunction]
#[pyo3(signature = (lengths, *, max_tokens, packed, shuffle, seed))]
pub fn plan_batches(
    py: Python<'_>,
    lengths: PyArray,
    max_tokens: u64,
    packed: bool,
    shuffle: bool,
    seed: u64,
) -> PyResult<(PyArray, PyArray)> {
    let plan = run_detached(py, move || {
        let array = lengths.array();
        let lengths = array
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| Error::ColumnType {
                column: "lengths".to_string(),
                expected: "uint64",
                actual: array.data_type().to_string(),
            })?;
        let layout = if packed {
            Layout::Packed
        } else {
            Layout::Padded
        };
        batching::plan_batches(lengths.values(), max_tokens, layout, shuffle, seed)
    })?;
    let rows = Arc::new(UInt64Array::from(plan.rows));
    let offsets = Arc::new(UInt64Array::from(plan.offsets));
    Ok((
        PyArray::from_array_ref(rows),
        PyArray::from_array_ref(offsets),
    ))
}
