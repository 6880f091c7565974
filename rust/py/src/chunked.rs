//! The pieces of out-of-core MinHash dedup and split (`prefkit.stream_clusters`) across the
//! boundary; see `prefkit_core::dedup::chunked`.

use std::fs::File;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrowPrimitiveType, BooleanArray, Int64Array, UInt32Array, UInt64Array};
use prefkit_core::dedup::chunked;
use prefkit_core::dedup::clusters::UnionFind;
use prefkit_core::dedup::lsh;
use prefkit_core::split::choose_test;
use prefkit_core::Error;
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyTable};

use crate::dedup::{core_table, options};
use crate::errors::run_detached;

/// The values of a primitive array without nulls, or an error naming `name`.
pub(crate) fn values<'a, T: ArrowPrimitiveType>(
    array: &'a PyArray,
    name: &str,
    expected: &'static str,
) -> Result<&'a [T::Native], Error> {
    let array = array.array();
    match array.as_primitive_opt::<T>() {
        Some(values) if values.null_count() == 0 => Ok(values.values()),
        _ => Err(Error::ColumnType {
            column: name.to_string(),
            expected,
            actual: array.data_type().to_string(),
        }),
    }
}

fn array(values: impl Array + 'static) -> PyArray {
    PyArray::from_array_ref(Arc::new(values))
}

/// Per row of a chunk: the exact identity of its values (xxh3-128 as two uint64 halves),
/// whether it was sketched, and its LSH band keys (uint64, `bands` per row, row-major).
/// Returns `(exact_high, exact_low, sketched, band_keys, bands)`.
#[pyfunction]
#[pyo3(signature = (table, *, columns, method, normalize, ngram, num_perm, threshold, bands, seed))]
#[allow(clippy::too_many_arguments)]
pub fn cluster_keys(
    py: Python<'_>,
    table: PyTable,
    columns: Vec<String>,
    method: String,
    normalize: bool,
    ngram: usize,
    num_perm: usize,
    threshold: f64,
    bands: Option<usize>,
    seed: u64,
) -> PyResult<(PyArray, PyArray, PyArray, PyArray, usize)> {
    let table = core_table(table);
    let keys = run_detached(py, move || {
        let o = options(
            columns, None, &method, normalize, ngram, num_perm, threshold, bands, seed,
        )?;
        chunked::chunk_keys(&table, &o)
    })?;
    let high = UInt64Array::from_iter_values(keys.exact.iter().map(|&h| (h >> 64) as u64));
    let low = UInt64Array::from_iter_values(keys.exact.iter().map(|&h| h as u64));
    Ok((
        array(high),
        array(low),
        array(BooleanArray::from(keys.sketched)),
        array(UInt64Array::from(keys.band_keys)),
        keys.bands,
    ))
}

/// The MinHash sketches of every row (uint32, `num_perm` per row, row-major).
#[pyfunction]
#[pyo3(signature = (table, *, columns, normalize, ngram, num_perm, seed))]
pub fn signatures(
    py: Python<'_>,
    table: PyTable,
    columns: Vec<String>,
    normalize: bool,
    ngram: usize,
    num_perm: usize,
    seed: u64,
) -> PyResult<PyArray> {
    let table = core_table(table);
    let sigs = run_detached(py, move || {
        let o = options(
            columns, None, "minhash", normalize, ngram, num_perm, 1.0, None, seed,
        )?;
        chunked::chunk_signatures(&table, &o)
    })?;
    Ok(array(UInt32Array::from(sigs.values)))
}

/// Candidate pairs `(a, b)` (int64 rows, `a < b`, sorted, distinct) among the band keys of one
/// spill partition: `band` (uint32), `key` (uint64), `row` (int64).
#[pyfunction]
pub fn lsh_candidates(
    py: Python<'_>,
    band: PyArray,
    key: PyArray,
    row: PyArray,
) -> PyResult<(PyArray, PyArray)> {
    let pairs = run_detached(py, move || {
        let band = values::<UInt32Type>(&band, "band", "uint32 without nulls")?;
        let key = values::<UInt64Type>(&key, "key", "uint64 without nulls")?;
        let row = values::<Int64Type>(&row, "row", "int64 without nulls")?;
        let records = band
            .iter()
            .zip(key)
            .zip(row)
            .map(|((&b, &k), &r)| ((b, k), r as u64))
            .collect();
        Ok(lsh::candidate_pairs(records))
    })?;
    let (a, b): (Vec<i64>, Vec<i64>) = pairs.iter().map(|&(a, b)| (a as i64, b as i64)).unzip();
    Ok((array(Int64Array::from(a)), array(Int64Array::from(b))))
}

/// Whether each pair of sketches `(a[i], b[i])` (int64 indices into the sketch file at
/// `path`, `num_perm` little-endian uint32 values each) reaches `threshold`.
#[pyfunction]
pub fn verify_pairs(
    py: Python<'_>,
    path: String,
    num_perm: usize,
    a: PyArray,
    b: PyArray,
    threshold: f64,
) -> PyResult<PyArray> {
    let similar = run_detached(py, move || {
        let a = values::<Int64Type>(&a, "a", "int64 without nulls")?;
        let b = values::<Int64Type>(&b, "b", "int64 without nulls")?;
        let pairs: Vec<(u64, u64)> = a
            .iter()
            .zip(b)
            .map(|(&a, &b)| (a as u64, b as u64))
            .collect();
        chunked::verify_spilled(&File::open(&path)?, num_perm, &pairs, threshold)
    })?;
    Ok(array(BooleanArray::from(similar)))
}

/// The root of every item `0..n` (int64) after joining each pair `(a[i], b[i])`: the
/// smallest item of its set.
#[pyfunction]
pub fn union_roots(py: Python<'_>, n: usize, a: PyArray, b: PyArray) -> PyResult<PyArray> {
    let roots = run_detached(py, move || {
        if n > u32::MAX as usize {
            return Err(Error::argument("n", "at most 2^32 - 1 items", n));
        }
        let a = values::<Int64Type>(&a, "a", "int64 without nulls")?;
        let b = values::<Int64Type>(&b, "b", "int64 without nulls")?;
        let mut sets = UnionFind::new(n);
        for (&x, &y) in a.iter().zip(b) {
            if x < 0 || y < 0 || x as usize >= n || y as usize >= n {
                return Err(Error::argument(
                    "pairs",
                    "items in [0, n)",
                    format!("({x}, {y})"),
                ));
            }
            sets.union(x as u32, y as u32);
        }
        Ok(sets.roots())
    })?;
    Ok(array(Int64Array::from_iter_values(
        roots.into_iter().map(i64::from),
    )))
}

/// Which clusters (row counts `sizes`, int64, in order of first row) go to the test side of
/// a split, and its rows; see `prefkit.split`. Returns `(chosen, test_rows)`.
#[pyfunction]
pub fn choose_test_clusters(
    py: Python<'_>,
    sizes: PyArray,
    test_rows: usize,
    seed: u64,
) -> PyResult<(PyArray, usize)> {
    let (chosen, rows) = run_detached(py, move || {
        let sizes = values::<Int64Type>(&sizes, "sizes", "int64 without nulls")?;
        let sizes: Vec<usize> = sizes.iter().map(|&s| s.max(0) as usize).collect();
        Ok(choose_test(&sizes, test_rows, seed))
    })?;
    Ok((array(BooleanArray::from(chosen)), rows))
}
