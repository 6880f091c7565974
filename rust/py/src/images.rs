//! Image bytes (PNG, JPEG, WebP): content hashes and perceptual hashes for dedup.
//! Bindings of `prefkit_core::images`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, UInt64Array, UInt8Array};
use prefkit_core::images::{self, Bad, HashOptions, Method, Status};
use prefkit_core::text::{BinaryColumn, Views};
use prefkit_core::Error;
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyTable};

use crate::chunked::values;
use crate::dedup::core_table;
use crate::errors::run_detached;

/// Adds this module's functions to `prefkit._core`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(image_hashes, module)?)?;
    module.add_function(wrap_pyfunction!(hamming_clusters, module)?)?;
    module.add_function(wrap_pyfunction!(gather_images, module)?)?;
    Ok(())
}

fn array(values: impl Array + 'static) -> PyArray {
    PyArray::from_array_ref(Arc::new(values))
}

/// Hashes of an image column; see `prefkit.image_hashes`. Returns `(hash, content, status)`:
/// uint64 arrays (null where not hashed) and uint8 status (0 hashed, 1 null, 2 bad).
#[pyfunction]
#[pyo3(signature = (table, *, column, method, paths, bad))]
pub fn image_hashes(
    py: Python<'_>,
    table: PyTable,
    column: String,
    method: String,
    paths: Option<bool>,
    bad: String,
) -> PyResult<(PyArray, PyArray, PyArray)> {
    let table = core_table(table);
    let hashes = run_detached(py, move || {
        let options = HashOptions {
            column,
            method: Method::parse(&method)?,
            paths,
            bad: Bad::parse(&bad)?,
        };
        images::hash_images(&table, &options)
    })?;
    let hashed = |values: &[u64]| {
        UInt64Array::from_iter(
            values
                .iter()
                .zip(&hashes.status)
                .map(|(&v, &s)| (s == Status::Hashed).then_some(v)),
        )
    };
    let status = UInt8Array::from_iter_values(hashes.status.iter().map(|s| match s {
        Status::Hashed => 0,
        Status::Null => 1,
        Status::Bad => 2,
    }));
    Ok((
        array(hashed(&hashes.hash)),
        array(hashed(&hashes.content)),
        array(status),
    ))
}

/// For every row, the first row of its cluster of hashes within `threshold` bits (int64);
/// null hashes are alone. See `prefkit.find_image_duplicates`.
#[pyfunction]
pub fn hamming_clusters(py: Python<'_>, hashes: PyArray, threshold: u32) -> PyResult<PyArray> {
    let roots = run_detached(py, move || {
        let array = hashes.array();
        let hashes = array
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| Error::ColumnType {
                column: "hashes".to_string(),
                expected: "uint64",
                actual: array.data_type().to_string(),
            })?;
        let valid: Vec<bool> = (0..hashes.len()).map(|i| hashes.is_valid(i)).collect();
        images::hamming_roots(hashes.values(), &valid, threshold)
    })?;
    Ok(array(arrow_array::Int64Array::from_iter_values(
        roots.into_iter().map(i64::from),
    )))
}

/// Entry `i` is row `rows[i]` of column `columns[which[i]]`, as a binary_view array sharing
/// the input's buffers (no bytes copied). See `prefkit.image_pairs`.
#[pyfunction]
#[pyo3(signature = (table, *, columns, which, rows))]
pub fn gather_images(
    py: Python<'_>,
    table: PyTable,
    columns: Vec<String>,
    which: PyArray,
    rows: PyArray,
) -> PyResult<PyArray> {
    let table = core_table(table);
    let gathered = run_detached(py, move || {
        let n = table.num_rows();
        let parts = columns
            .iter()
            .map(|name| Ok(BinaryColumn::new(&table.column(name)?)?.views()))
            .collect::<Result<Vec<_>, Error>>()?;
        let which = values::<arrow_array::types::Int64Type>(&which, "which", "int64")?;
        let rows = values::<arrow_array::types::Int64Type>(&rows, "rows", "int64")?;
        let picks = which
            .iter()
            .zip(rows)
            .map(|(&c, &r)| {
                let ok = (0..parts.len() as i64).contains(&c) && (0..n as i64).contains(&r);
                ok.then(|| c as usize * n + r as usize)
                    .ok_or_else(|| Error::argument("rows", "row numbers of the table", r))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Views::concat(&parts).gather_binary(&picks))
    })?;
    Ok(array(gathered))
}
