"""The group-wise operations (``mine_pairs``, ``rank_lists``, ``build_trees``,
``order_curriculum(per_prompt=True)``) over a ``ray.data.Dataset``.

Rows are shuffled by a bucket of their group key id (the xxh3 ``group_id``, from
``_core.key_ids``: the same key as the single-process operations, so text and chat-message keys
both work) with ``groupby(...).map_groups(..., batch_format="pyarrow")``; each bucket holds
whole groups and runs prefkit's in-memory operation (the Rust core) on a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit.io import materialize
from prefkit.ray._common import BUCKET, bucket_of, by_bucket, check_dataset, default_buckets


def _groupwise(
    op: Callable[..., pa.Table],
    ds: Any,
    key: str | Callable[[pa.Schema], str],
    parameters: dict,
    row: str | None,
    row_columns: Sequence[str],
    buckets: int | None,
) -> Any:
    names = check_dataset(ds, ())
    buckets = default_buckets(buckets)
    column = key(pa.schema([(n, pa.null()) for n in names])) if callable(key) else key
    check_dataset(ds, (column, row))

    def add_bucket(batch: pa.Table) -> pa.Table:
        ids = pa.array(_core.key_ids(batch, column))
        # A null key is no group: bucket 0 drops (and counts) it like any other row.
        return batch.append_column(BUCKET, bucket_of(ids.fill_null(0).to_numpy(), buckets))

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

    return by_bucket(ds.map_batches(add_bucket, batch_format="pyarrow"), buckets).map_groups(
        run, batch_format="pyarrow"
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
