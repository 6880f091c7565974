//! `prefkit._core`: the Python binding of prefkit-core.
//!
//! Glue only: convert Arrow data across the PyCapsule interface (pyo3-arrow), release the GIL
//! around the Rust work, and turn every core error, and any panic, into `PrefkitError`.

mod batching;
mod errors;
mod pairs;

use pyo3::prelude::*;

/// The native module behind `prefkit`; use the functions of the `prefkit` package instead.
#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(batching::plan_batches, module)?)?;
    module.add_function(wrap_pyfunction!(pairs::mine_pairs, module)?)?;
    Ok(())
}
