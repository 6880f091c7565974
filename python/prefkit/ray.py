"""prefkit on Ray Data: the group-wise operations over a ``ray.data.Dataset`` (``prefkit[ray]``).

Rows are shuffled by a bucket of their group key id (the xxh3 ``group_id``, from
``_core.key_ids``: the same key as the single-process operations, so text and chat-message keys
both work) with ``groupby(...).map_groups(..., batch_format="pyarrow")``; each bucket holds
whole groups and runs prefkit's in-memory operation (the Rust core) on a worker.

A Ray Dataset has no global row numbers, so give the operations a ``row`` column (int64, the
input order, e.g. written by the producer): rows are put back in that order inside a bucket
(ties rank by input order, as in memory) and ``chosen_row``/``rejected_row``/``rows`` hold its
values. Without ``row`` those columns are dropped and ties rank in Ray's order. Text columns of
the result are plain strings (Ray concatenates and serialises blocks). The per-bucket
provenance is not summed (Ray keeps no table metadata): count rows on the result.

Examples
--------
>>> import ray, prefkit.ray as pkr  # doctest: +SKIP
>>> ds = ray.data.read_parquet("data/")  # doctest: +SKIP
>>> pairs = pkr.mine_pairs(ds, row="row", strategy="all_pairs")  # doctest: +SKIP
>>> pairs.write_parquet("pairs/")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit.io import materialize

#: The bucket column added for the shuffle.
BUCKET = "__prefkit_bucket"
#: Buckets per CPU of the cluster: enough to balance work, few enough to amortise each call.
BUCKETS_PER_CPU = 4


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise PrefkitError(
            "prefkit.ray needs Ray Data: pip install 'prefkit[ray]' (or 'ray[data]')"
        ) from None
    return ray


def _groupwise(
    op: Callable[..., pa.Table],
    ds: Any,
    key: str | Callable[[pa.Schema], str],
    parameters: dict,
    row: str | None,
    row_columns: Sequence[str],
    buckets: int | None,
) -> Any:
    ray = _ray()
    if not isinstance(ds, ray.data.Dataset):
        raise PrefkitError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    if buckets is None:
        cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
        buckets = max(1, cpus * BUCKETS_PER_CPU)
    names = ds.schema().names
    column = key(pa.schema([(n, pa.null()) for n in names])) if callable(key) else key
    for name in (column, row):
        if name is not None and name not in names:
            raise PrefkitError(f"column '{name}' not found; the dataset has columns {names}")

    def add_bucket(batch: pa.Table) -> pa.Table:
        ids = pa.array(_core.key_ids(batch, column))
        # A null key is no group: bucket 0 drops (and counts) it like any other row.
        values = ids.fill_null(0).to_numpy() % np.uint64(buckets)
        return batch.append_column(BUCKET, pa.array(values.astype(np.int64)))

    def run(batch: pa.Table) -> pa.Table:
        batch = batch.drop_columns([BUCKET])
        if row is not None:
            # The shuffle does not keep the input order; ties rank by it.
            batch = batch.sort_by(row)
        result = op(batch, **parameters)
        result = result.replace_schema_metadata(None)
        for name in row_columns:
            index = result.schema.get_field_index(name)
            if index < 0:
                continue
            if row is None:
                result = result.remove_column(index)
                continue
            rows = batch.column(row).combine_chunks()
            values = result.column(index).combine_chunks()
            if pa.types.is_list(values.type):
                values = pa.ListArray.from_arrays(values.offsets, rows.take(values.values))
            else:
                values = rows.take(values)
            result = result.set_column(index, name, values)
        return materialize(result)

    return (
        ds.map_batches(add_bucket, batch_format="pyarrow")
        .groupby(BUCKET)
        .map_groups(run, batch_format="pyarrow")
    )


def mine_pairs(
    ds: Any, *, row: str | None = None, buckets: int | None = None, **options: Any
) -> Any:
    """``pk.mine_pairs`` over a Ray Dataset; ``options`` are those of ``pk.mine_pairs``.

    Parameters
    ----------
    ds
        A ``ray.data.Dataset``, one row per response.
    row
        An int64 column of input row numbers (order of ties; ``chosen_row``/``rejected_row``
        take its values). None: those columns are dropped.
    buckets
        Shuffle buckets; default 4 per CPU of the cluster.

    Returns
    -------
    ray.data.Dataset
        The pairs (lazy: write or collect it), the same rows as ``pk.mine_pairs``.
    """
    from prefkit.pairs import mine_pairs as op

    key = options.get("group") or options.get("prompt", "prompt")
    return _groupwise(op, ds, key, options, row, ("chosen_row", "rejected_row"), buckets)


def rank_lists(
    ds: Any, *, row: str | None = None, buckets: int | None = None, **options: Any
) -> Any:
    """``pk.rank_lists`` over a Ray Dataset (``row``, ``buckets``: as in ``mine_pairs``)."""
    from prefkit.lists import rank_lists as op

    key = options.get("group") or options.get("prompt", "prompt")
    return _groupwise(op, ds, key, options, row, ("rows",), buckets)


def build_trees(
    ds: Any, *, row: str | None = None, buckets: int | None = None, **options: Any
) -> Any:
    """``pk.build_trees`` over a Ray Dataset (``row``, ``buckets``: as in ``mine_pairs``)."""
    from prefkit.trees import build_trees as op

    key = options.get("group") or options.get("prompt", "prompt")
    return _groupwise(op, ds, key, options, row, (), buckets)


def order_curriculum(
    ds: Any, *, row: str | None = None, buckets: int | None = None, **options: Any
) -> Any:
    """``pk.order_curriculum(per_prompt=True)`` over a Ray Dataset: every row gets its stage;
    rows are ordered by stage within each bucket, not globally."""
    from prefkit.curriculum import order_curriculum as op

    if not options.get("per_prompt"):
        raise PrefkitError("prefkit.ray.order_curriculum needs per_prompt=True")
    group = options.get("group")

    def key(schema: pa.Schema) -> str:
        return group or ("group_id" if "group_id" in schema.names else "prompt")

    return _groupwise(op, ds, key, options, row, (), buckets)
