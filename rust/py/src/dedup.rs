//! Deduplication, decontamination and splits across the boundary.

use std::sync::Arc;

use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, Int64Array, ListArray};
use prefkit_core::dedup::decontaminate;
use prefkit_core::dedup::{self, DedupOptions, Method};
use prefkit_core::normalize::normalize;
use prefkit_core::split::{self, SplitOptions};
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::{PyArray, PyTable};

use crate::errors::{accounting_dict, run_detached};

pub(crate) fn core_table(table: PyTable) -> Table {
    let (batches, schema) = table.into_inner();
    Table::new(schema, batches)
}

fn int64(values: Vec<u64>) -> PyArray {
    let array = Int64Array::from_iter_values(values.into_iter().map(|v| v as i64));
    PyArray::from_array_ref(Arc::new(array))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn options(
    columns: Vec<String>,
    group: Option<String>,
    method: &str,
    normalize: bool,
    ngram: usize,
    num_perm: usize,
    threshold: f64,
    bands: Option<usize>,
    seed: u64,
) -> prefkit_core::Result<DedupOptions> {
    Ok(DedupOptions {
        columns,
        group,
        method: Method::parse(method)?,
        normalize,
        ngram,
        num_perm,
        threshold,
        bands,
        seed,
    })
}

/// Rows kept by dedup; see `prefkit.dedup`. Returns `(rows, accounting)`.
#[pyfunction]
#[pyo3(signature = (table, *, columns, group, method, normalize, ngram, num_perm, threshold, bands, seed))]
#[allow(clippy::too_many_arguments)]
pub fn dedup_rows<'py>(
    py: Python<'py>,
    table: PyTable,
    columns: Vec<String>,
    group: Option<String>,
    method: String,
    normalize: bool,
    ngram: usize,
    num_perm: usize,
    threshold: f64,
    bands: Option<usize>,
    seed: u64,
) -> PyResult<(PyArray, Bound<'py, PyDict>)> {
    let table = core_table(table);
    let (kept, accounting) = run_detached(py, move || {
        let o = options(
            columns, group, &method, normalize, ngram, num_perm, threshold, bands, seed,
        )?;
        dedup::dedup(&table, &o)
    })?;
    Ok((int64(kept), accounting_dict(py, &accounting)?))
}

/// Rows in duplicate clusters; see `prefkit.find_duplicates`. Returns `(rows, clusters)`.
#[pyfunction]
#[pyo3(signature = (table, *, columns, group, method, normalize, ngram, num_perm, threshold, bands, seed))]
#[allow(clippy::too_many_arguments)]
pub fn find_duplicates(
    py: Python<'_>,
    table: PyTable,
    columns: Vec<String>,
    group: Option<String>,
    method: String,
    normalize: bool,
    ngram: usize,
    num_perm: usize,
    threshold: f64,
    bands: Option<usize>,
    seed: u64,
) -> PyResult<(PyArray, PyArray)> {
    let table = core_table(table);
    let (rows, clusters) = run_detached(py, move || {
        let o = options(
            columns, group, &method, normalize, ngram, num_perm, threshold, bands, seed,
        )?;
        dedup::find_duplicates(&table, &o)
    })?;
    Ok((int64(rows), int64(clusters)))
}

/// Contaminated rows; see `prefkit.find_contamination`. Returns
/// `(rows, reference_rows, accounting)`.
#[pyfunction]
#[pyo3(signature = (table, reference, *, column, reference_column, ngram, normalize))]
pub fn find_contamination<'py>(
    py: Python<'py>,
    table: PyTable,
    reference: PyTable,
    column: String,
    reference_column: String,
    ngram: usize,
    normalize: bool,
) -> PyResult<(PyArray, PyArray, Bound<'py, PyDict>)> {
    let (table, reference) = (core_table(table), core_table(reference));
    let (found, accounting) = run_detached(py, move || {
        decontaminate::find_contamination(
            &table,
            &column,
            &reference,
            &reference_column,
            ngram,
            normalize,
        )
    })?;
    let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(
        found
            .references
            .iter()
            .map(|refs| Some(refs.iter().map(|&r| Some(r as i64)))),
    );
    Ok((
        int64(found.rows),
        PyArray::from_array_ref(Arc::new(lists)),
        accounting_dict(py, &accounting)?,
    ))
}

/// Which rows go to the test side; see `prefkit.split`. Returns `(is_test, accounting)`.
#[pyfunction]
#[pyo3(signature = (table, *, group, test_rows, seed, near_duplicates, ngram, num_perm, threshold))]
#[allow(clippy::too_many_arguments)]
pub fn split_rows<'py>(
    py: Python<'py>,
    table: PyTable,
    group: String,
    test_rows: usize,
    seed: u64,
    near_duplicates: bool,
    ngram: usize,
    num_perm: usize,
    threshold: f64,
) -> PyResult<(PyArray, Bound<'py, PyDict>)> {
    let table = core_table(table);
    let (is_test, accounting) = run_detached(py, move || {
        split::split(
            &table,
            &SplitOptions {
                group,
                test_rows,
                seed,
                near_duplicates,
                ngram,
                num_perm,
                threshold,
            },
        )
    })?;
    let mask = Arc::new(BooleanArray::from(is_test));
    Ok((
        PyArray::from_array_ref(mask),
        accounting_dict(py, &accounting)?,
    ))
}

/// One text normalised as dedup does; see `prefkit.normalize_text`.
#[pyfunction]
pub fn normalize_text(text: &str) -> String {
    normalize(text)
}
