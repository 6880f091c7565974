//! `mine_joint_pairs` across the boundary.

use prefkit_core::joint_pairs::{self, JointOptions, JointStrategy};
use prefkit_core::pairs::NanPolicy;
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;

use crate::errors::{accounting_dict, run_detached};

/// Mine joint pairs across prompts; see `prefkit.mine_joint_pairs`. Returns
/// `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (
    table, *, prompt, response, score, group, strategy, pairs_per_prompt, min_margin, nan,
    seed, carry
))]
#[allow(clippy::too_many_arguments)]
pub fn mine_joint_pairs<'py>(
    py: Python<'py>,
    table: PyTable,
    prompt: String,
    response: String,
    score: Vec<String>,
    group: Option<String>,
    strategy: String,
    pairs_per_prompt: usize,
    min_margin: f64,
    nan: String,
    seed: u64,
    carry: Vec<String>,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let (batches, schema) = table.into_inner();
    let table = Table::new(schema, batches);
    let (batch, accounting) = run_detached(py, move || {
        let options = JointOptions {
            prompt,
            response,
            scores: score,
            group,
            strategy: JointStrategy::parse(&strategy)?,
            pairs_per_prompt,
            min_margin,
            nan: NanPolicy::parse(&nan)?,
            seed,
            carry,
        };
        joint_pairs::mine_joint_pairs(&table, &options)
    })?;
    let schema = batch.schema();
    Ok((
        PyTable::try_new(vec![batch], schema)?,
        accounting_dict(py, &accounting)?,
    ))
}
