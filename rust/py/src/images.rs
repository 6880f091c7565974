//! Bindings of `prefkit_core::images`.

use pyo3::prelude::*;

/// Adds this module's functions to `prefkit._core`.
pub fn register(_module: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
