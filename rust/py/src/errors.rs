//! Core errors and panics become `prefkit.PrefkitError`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use prefkit_core::Accounting;
use prefkit_core::Error;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A `PrefkitError` (the one exception class, defined in Python) with `message`.
pub fn prefkit_error(py: Python<'_>, message: String) -> PyErr {
    match py
        .import("prefkit._errors")
        .and_then(|m| m.getattr("PrefkitError"))
    {
        Ok(class) => PyErr::from_value(
            class
                .call1((message.clone(),))
                .unwrap_or_else(|err| err.into_value(py).into_bound(py).into_any()),
        ),
        Err(err) => err,
    }
}

/// Run `work` without the GIL; its error or panic comes back as `PrefkitError`.
pub fn run_detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(work)));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(prefkit_error(py, error.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(prefkit_error(
                py,
                format!("internal error in prefkit (please report it): {what}"),
            ))
        }
    }
}

/// The accounting as a Python dict: rows_in, rows_used, dropped {reason: n}, and counts.
pub fn accounting_dict<'py>(
    py: Python<'py>,
    accounting: &Accounting,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("rows_in", accounting.rows_in)?;
    dict.set_item("rows_used", accounting.rows_used)?;
    let dropped = PyDict::new(py);
    for (reason, n) in &accounting.dropped {
        dropped.set_item(*reason, *n)?;
    }
    dict.set_item("dropped", dropped)?;
    for (name, n) in &accounting.counts {
        dict.set_item(*name, *n)?;
    }
    Ok(dict)
}
