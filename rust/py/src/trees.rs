//! `build_trees`, `tree_pairs` and `tree_lists` across the boundary.

use prefkit_core::lists::ListRules;
use prefkit_core::pairs::{Selection, Strategy, Ties};
use prefkit_core::trees::{self, BuildOptions, NodeColumns, TreeListOptions, TreePairOptions};
use prefkit_core::Table;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;

use crate::errors::{accounting_dict, run_detached};

fn table_of(table: PyTable) -> Table {
    let (batches, schema) = table.into_inner();
    Table::new(schema, batches)
}

/// Build tries; see `prefkit.build_trees`. Returns `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (table, *, prompt, steps, reward, group))]
pub fn build_trees<'py>(
    py: Python<'py>,
    table: PyTable,
    prompt: String,
    steps: String,
    reward: String,
    group: Option<String>,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let table = table_of(table);
    let (batches, accounting) = run_detached(py, move || {
        let options = BuildOptions {
            prompt,
            steps,
            reward,
            group,
        };
        trees::build_trees(&table, &options)
    })?;
    let schema = batches[0].schema();
    Ok((
        PyTable::try_new(batches, schema)?,
        accounting_dict(py, &accounting)?,
    ))
}

/// Sibling pairs; see `prefkit.tree_pairs`. `columns` is (tree, node, parent, step, value,
/// visits, prompt). Returns `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (
    table, *, columns, strategy, k, min_margin, ties, max_pairs_per_node, min_visits, seed
))]
#[allow(clippy::too_many_arguments)]
pub fn tree_pairs<'py>(
    py: Python<'py>,
    table: PyTable,
    columns: (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    ),
    strategy: String,
    k: usize,
    min_margin: f64,
    ties: String,
    max_pairs_per_node: Option<usize>,
    min_visits: f64,
    seed: u64,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let table = table_of(table);
    let (batch, accounting) = run_detached(py, move || {
        let options = TreePairOptions {
            columns: node_columns(columns),
            selection: Selection {
                strategy: Strategy::parse(&strategy)?,
                k,
                min_margin,
                ties: Ties::parse(&ties)?,
                max_pairs: max_pairs_per_node,
                seed,
            },
            min_visits,
        };
        trees::tree_pairs(&table, &options)
    })?;
    let schema = batch.schema();
    Ok((
        PyTable::try_new(vec![batch], schema)?,
        accounting_dict(py, &accounting)?,
    ))
}

/// Sibling lists; see `prefkit.tree_lists`. Returns `(table, accounting)`.
#[pyfunction]
#[pyo3(signature = (table, *, columns, list_size, min_list_size, ties, min_visits))]
#[allow(clippy::type_complexity)]
pub fn tree_lists<'py>(
    py: Python<'py>,
    table: PyTable,
    columns: (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    ),
    list_size: Option<usize>,
    min_list_size: usize,
    ties: String,
    min_visits: f64,
) -> PyResult<(PyTable, Bound<'py, PyDict>)> {
    let table = table_of(table);
    let (batch, accounting) = run_detached(py, move || {
        let options = TreeListOptions {
            columns: node_columns(columns),
            rules: ListRules {
                list_size,
                min_list_size,
                ties: Ties::parse(&ties)?,
            },
            min_visits,
        };
        trees::tree_lists(&table, &options)
    })?;
    let schema = batch.schema();
    Ok((
        PyTable::try_new(vec![batch], schema)?,
        accounting_dict(py, &accounting)?,
    ))
}

#[allow(clippy::type_complexity)]
fn node_columns(
    (tree, node, parent, step, value, visits, prompt): (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    ),
) -> NodeColumns {
    NodeColumns {
        tree,
        node,
        parent,
        step,
        value,
        visits,
        prompt,
    }
}
