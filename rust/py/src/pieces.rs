//! `split_pieces` across the boundary.

use std::sync::Arc;

use arrow_array::{BooleanArray, Int64Array, UInt32Array};
use prefkit_core::pieces::{self, AddedTokens, Splitter};
use prefkit_core::text::TextColumn;
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyTable};

use crate::errors::run_detached;

/// Cut the text column `column` as a tokenizer's pre-tokenisation does (added tokens split off,
/// the rest cut with its regex `pattern`, NFC checked with `nfc`) and number the distinct
/// pieces. Returns `(distinct, ids, offsets, unsplit)`: the distinct pieces (string), every
/// text's piece numbers (uint32) and where they start (int64, one more than texts), and the
/// texts left to the tokenizer (bool).
#[pyfunction]
#[pyo3(signature = (table, column, *, pattern, added, added_normalized, avoided, nfc))]
#[allow(clippy::too_many_arguments)] // the keyword arguments of one Python call
pub fn split_pieces(
    py: Python<'_>,
    table: PyTable,
    column: String,
    pattern: String,
    added: Vec<String>,
    added_normalized: Vec<String>,
    avoided: Vec<String>,
    nfc: bool,
) -> PyResult<(PyArray, PyArray, PyArray, PyArray)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let out = run_detached(py, move || {
        let added = AddedTokens {
            raw: added,
            normalized: added_normalized,
            avoided,
        };
        let splitter = Splitter::new(&pattern, &added, nfc)?;
        pieces::split_pieces(&TextColumn::new(&table.column(&column)?)?, &splitter)
    })?;
    Ok((
        PyArray::from_array_ref(Arc::new(out.distinct)),
        PyArray::from_array_ref(Arc::new(UInt32Array::from(out.ids))),
        PyArray::from_array_ref(Arc::new(Int64Array::from(out.offsets))),
        PyArray::from_array_ref(Arc::new(BooleanArray::from(out.unsplit))),
    ))
}
