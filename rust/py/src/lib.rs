//! `prefkit._core`: the Python binding of prefkit-core.
//!
//! Glue only: convert Arrow data across the PyCapsule interface (pyo3-arrow), release the GIL
//! around the Rust work, and turn every core error, and any panic, into `PrefkitError`.

mod batching;
mod chunked;
mod dedup;
mod errors;
mod images;
mod joint_pairs;
mod jsonl;
mod lists;
mod pairs;
mod pieces;
mod ragged;
mod split_prompt;
mod table;
mod trees;
mod winrates;

use pyo3::prelude::*;

// Results of millions of rows allocate hundreds of MB per call; the system allocator hands
// such blocks back to the OS and page-faults them in again on the next call, which cost more
// than the mining itself. mimalloc keeps and reuses them. It is built without transparent
// huge pages (Cargo feature `no_thp`): each first touch of a huge page zeroes 2 MB, most of
// it unused, which made the first call in a process 2-4x slower than the next ones.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads of prefkit's pool in this process: `PREFKIT_NUM_THREADS`, or the cores it may use
/// capped by its cgroup's CPU quota.
#[pyfunction]
fn num_threads() -> usize {
    prefkit_core::parallel::num_threads()
}

/// The native module behind `prefkit`; use the functions of the `prefkit` package instead.
#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(batching::plan_batches, module)?)?;
    module.add_function(wrap_pyfunction!(pairs::mine_pairs, module)?)?;
    module.add_function(wrap_pyfunction!(joint_pairs::mine_joint_pairs, module)?)?;
    module.add_function(wrap_pyfunction!(lists::rank_lists, module)?)?;
    module.add_function(wrap_pyfunction!(lists::order_curriculum, module)?)?;
    module.add_function(wrap_pyfunction!(trees::build_trees, module)?)?;
    module.add_function(wrap_pyfunction!(trees::tree_pairs, module)?)?;
    module.add_function(wrap_pyfunction!(trees::tree_lists, module)?)?;
    module.add_function(wrap_pyfunction!(dedup::dedup_rows, module)?)?;
    module.add_function(wrap_pyfunction!(dedup::find_duplicates, module)?)?;
    module.add_function(wrap_pyfunction!(dedup::find_contamination, module)?)?;
    module.add_function(wrap_pyfunction!(dedup::split_rows, module)?)?;
    module.add_function(wrap_pyfunction!(dedup::normalize_text, module)?)?;
    module.add_function(wrap_pyfunction!(chunked::cluster_keys, module)?)?;
    module.add_function(wrap_pyfunction!(chunked::signatures, module)?)?;
    module.add_function(wrap_pyfunction!(chunked::lsh_candidates, module)?)?;
    module.add_function(wrap_pyfunction!(chunked::verify_pairs, module)?)?;
    module.add_function(wrap_pyfunction!(chunked::union_roots, module)?)?;
    module.add_function(wrap_pyfunction!(chunked::choose_test_clusters, module)?)?;
    module.add_function(wrap_pyfunction!(table::take, module)?)?;
    module.add_function(wrap_pyfunction!(table::plain_text, module)?)?;
    module.add_function(wrap_pyfunction!(split_prompt::split_prompt, module)?)?;
    module.add_function(wrap_pyfunction!(table::text_lengths, module)?)?;
    module.add_function(wrap_pyfunction!(table::key_ids, module)?)?;
    module.add_function(wrap_pyfunction!(pieces::split_pieces, module)?)?;
    module.add_function(wrap_pyfunction!(ragged::take_ragged, module)?)?;
    module.add_function(wrap_pyfunction!(jsonl::first_null_line, module)?)?;
    module.add_function(wrap_pyfunction!(num_threads, module)?)?;
    winrates::register(module)?;
    images::register(module)?;
    Ok(())
}
