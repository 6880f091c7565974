"""What every ``prefkit.ray`` operation needs: Ray itself, argument checks, shuffle buckets,
values broadcast to the workers, and results gathered on the driver."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit._errors import PrefkitError

#: The bucket column added for a shuffle.
BUCKET = "__prefkit_bucket"
#: Buckets per CPU of the cluster: enough to balance work, few enough to amortise each call.
BUCKETS_PER_CPU = 4


def _ray() -> Any:
    """The ``ray`` module with Ray Data, or a PrefkitError that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise PrefkitError(
            "prefkit.ray needs Ray Data: pip install 'prefkit[ray]' (or 'ray[data]')"
        ) from None
    return ray


def check_dataset(ds: Any, columns: Sequence[str | None]) -> list[str]:
    """Check that ``ds`` is a Ray Dataset holding ``columns`` (None entries are skipped);
    return its column names."""
    ray = _ray()
    if not isinstance(ds, ray.data.Dataset):
        raise PrefkitError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    names = ds.schema().names
    for name in columns:
        if name is not None and name not in names:
            raise PrefkitError(f"column '{name}' not found; the dataset has columns {names}")
    return names


def default_buckets(buckets: int | None) -> int:
    """``buckets``, or ``BUCKETS_PER_CPU`` per CPU of the running cluster."""
    if buckets is not None:
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise PrefkitError(f"buckets must be an integer >= 1 or None, got {buckets!r}")
        return buckets
    ray = _ray()
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(1, cpus * BUCKETS_PER_CPU)


def bucket_of(ids: np.ndarray, buckets: int) -> pa.Array:
    """The shuffle bucket (int64) of uint64 hashes."""
    return pa.array((ids % np.uint64(buckets)).astype(np.int64))


def by_bucket(ds: Any, buckets: int) -> Any:
    """``ds`` grouped by its ``BUCKET`` column (values ``0..buckets``): one hash partition per
    bucket, not Ray's default of 200, whose tasks cost more than small buckets' work."""
    return ds.groupby(BUCKET, num_partitions=buckets)


def row_numbers(batch: pa.Table, row: str) -> np.ndarray:
    """The int64 values of the row-number column, or a PrefkitError naming it."""
    column = batch.column(row)
    if not pa.types.is_integer(column.type) or column.null_count:
        raise PrefkitError(
            f"column '{row}' must hold the input row numbers (integers without nulls), got "
            f"{column.type}" + (f" with {column.null_count} nulls" if column.null_count else "")
        )
    return column.to_numpy().astype(np.int64, copy=False)


def gather(ds: Any, schema: pa.Schema) -> pa.Table:
    """All blocks of ``ds`` as one table on the driver (for results known to be small);
    ``schema`` is that of an empty result."""
    tables = [t for t in _ray().get(ds.to_arrow_refs()) if t.num_rows]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="permissive").select(schema.names)
