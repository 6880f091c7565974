//! Checks of JSON-lines bytes before pyarrow parses them. Binding of `prefkit_core::jsonl`.

use prefkit_core::jsonl;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;

use crate::errors::{prefkit_error, run_detached};

/// Byte offset of the first line of JSON-lines `data` (any C-contiguous bytes-like object,
/// e.g. a `pyarrow.Buffer`) whose first value is a top-level `null`, or None.
#[pyfunction]
pub fn first_null_line(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let data = PyUntypedBuffer::get(data)?;
    if !data.is_c_contiguous() {
        return Err(prefkit_error(
            py,
            "the JSON-lines bytes are not contiguous".into(),
        ));
    }
    // SAFETY: a C-contiguous buffer of `len_bytes()` bytes, held by its exporter until `data`
    // is dropped at the end of this call; it is only read.
    let bytes =
        unsafe { std::slice::from_raw_parts(data.buf_ptr() as *const u8, data.len_bytes()) };
    run_detached(py, || Ok(jsonl::first_null_line(bytes)))
}
