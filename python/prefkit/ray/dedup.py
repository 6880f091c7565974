"""Deduplication, decontamination and leak-free splits over a ``ray.data.Dataset``.

Clustering (``dedup``, ``find_duplicates``, ``split``) runs the steps of the single-process
path as Ray stages, with the Rust pieces that out-of-core dedup uses (``prefkit_core::dedup::
chunked``), so the clusters are the same:

1. ``map_batches``: per block, the xxh3-128 identity of every row's prepared (normalised)
   values and, for MinHash, the LSH band keys of the first row of each value in the block
   (``_core.cluster_keys``).
2. Shuffle by identity (``groupby`` on a bucket of it, ``map_groups``): equal values meet, and
   each row gets its exact cluster's first row (by the ``row`` column) and size. Exact dedup
   ends here.
3. MinHash: the band keys of every value's first row are shuffled by key; each bucket lists
   its candidate pairs (``_core.lsh_candidates``: documents in a band bucket ordered by row,
   each with the next 64, as in memory). The candidates come to the driver.
4. The driver fetches the sketches of the candidates' rows (recomputed on the workers by a
   filtering ``map_batches``), verifies every pair against the threshold
   (``_core.verify_pairs``) and joins the verified ones by union-find (``_core.union_roots``).
   The driver holds the candidate pairs and their rows' sketches (``num_perm`` uint32 each):
   memory grows with the near-duplicates found, not with the corpus.
5. ``map_batches``: every row gets its cluster (the first row of its exact cluster's
   component), broadcast from the driver.

MinHash (and ``split``) reads the shuffled rows of step 2 several times, so they are
materialised in the object store (which Ray spills to disk when it is full).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit.dedup import _dedup_arguments, _reference_table, _split_parameters
from prefkit.io import materialize
from prefkit.ray._common import (
    BUCKET,
    _ray,
    bucket_of,
    by_bucket,
    check_dataset,
    default_buckets,
    gather,
    row_numbers,
)

_HIGH, _LOW = "__prefkit_exact_high", "__prefkit_exact_low"
_SKETCHED, _BANDS = "__prefkit_sketched", "__prefkit_bands"
#: First row and size of a row's exact cluster; first row of its cluster; whether that
#: cluster has more than one row.
_ROOT, _SIZE = "__prefkit_root", "__prefkit_size"
_CLUSTER, _SHARED = "__prefkit_cluster", "__prefkit_shared"
#: With ``group``: the first row of a row's unit, and the compared columns' own values (the
#: compared columns hold the unit's first row's values while clustering).
_UNIT, _ORIGINAL = "__prefkit_unit", "__prefkit_original_"
_HELPERS = (_ROOT, _SIZE, _CLUSTER, _SHARED, _UNIT)

_PAIRS = pa.schema([("a", pa.int64()), ("b", pa.int64())])


def _shared(value: Any) -> Callable[[], Any]:
    """Put ``value`` in the object store once; the returned function reads it on a worker."""
    ray = _ray()
    ref = ray.put(value)
    return lambda: ray.get(ref)


def _units(ds: Any, row: str, arguments: dict, buckets: int) -> Any:
    """Step 0 with ``group``: rows shuffled by their group key, so a unit (the rows sharing a
    group value, or a row with a null one) is in one bucket; each row gets its unit's first
    row (``_UNIT``), and the compared columns take that row's values (their own are kept in
    ``_ORIGINAL`` columns), so that a unit clusters as its first row, as in memory."""
    group, columns = arguments["group"], arguments["columns"]
    # Equal raw values, as pk.dedup groups rows (a null group value is a unit alone).
    same = {**arguments, "columns": [group], "group": None, "method": "exact"}
    same["normalize"] = False

    def add_bucket(batch: pa.Table) -> pa.Table:
        ids = pa.array(_core.key_ids(batch, group)).fill_null(0).to_numpy()
        return batch.append_column(BUCKET, bucket_of(ids, buckets))

    def units(batch: pa.Table) -> pa.Table:
        batch = batch.drop_columns([BUCKET]).sort_by(row)
        first = np.arange(batch.num_rows)
        found, clusters = _core.find_duplicates(batch, **same)
        first[pa.array(found).to_numpy()] = pa.array(clusters).to_numpy()
        alone = batch.column(group).is_null().to_numpy(zero_copy_only=False)
        first[alone] = np.flatnonzero(alone)
        taken = pa.array(first)
        for i, name in enumerate(columns):
            own = batch.column(name)
            batch = batch.set_column(batch.schema.get_field_index(name), name, own.take(taken))
            batch = batch.append_column(f"{_ORIGINAL}{i}", own)
        return batch.append_column(_UNIT, pa.array(row_numbers(batch, row)[first]))

    return by_bucket(ds.map_batches(add_bucket, batch_format="pyarrow"), buckets).map_groups(
        units, batch_format="pyarrow"
    )


def _unit_of(batch: pa.Table, row: str) -> np.ndarray:
    """The first row of every row's unit (its own row without ``group``)."""
    if _UNIT in batch.column_names:
        return batch.column(_UNIT).to_numpy()
    return row_numbers(batch, row)


def _exact(ds: Any, row: str, arguments: dict, buckets: int) -> Any:
    """Steps 1 and 2: every row with its exact cluster's first row and size (in units)."""
    keys = {name: value for name, value in arguments.items() if name != "group"}
    minhash = arguments["method"] == "minhash"

    def add_keys(batch: pa.Table) -> pa.Table:
        rows = row_numbers(batch, row)
        if (np.diff(rows) < 0).any():
            # cluster_keys sketches the first row of each value in the batch, which must be
            # its first in input order; Ray bundles blocks in the order they arrive.
            batch = batch.take(pa.array(np.argsort(rows, kind="stable")))
        high, low, sketched, band_keys, bands = _core.cluster_keys(batch, **keys)
        low = pa.array(low)
        batch = batch.append_column(_HIGH, pa.array(high)).append_column(_LOW, low)
        if minhash:
            keys_of_rows = pa.FixedSizeListArray.from_arrays(pa.array(band_keys), bands)
            batch = batch.append_column(_SKETCHED, pa.array(sketched))
            batch = batch.append_column(_BANDS, keys_of_rows)
        return batch.append_column(BUCKET, bucket_of(low.to_numpy(), buckets))

    def roots(batch: pa.Table) -> pa.Table:
        batch = batch.sort_by([(_HIGH, "ascending"), (_LOW, "ascending"), (row, "ascending")])
        high, low = batch.column(_HIGH).to_numpy(), batch.column(_LOW).to_numpy()
        rows = row_numbers(batch, row)
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
        starts = np.flatnonzero(first)
        run = np.cumsum(first) - 1
        # Units, not rows, decide whether a cluster is shared (one unit per row without group).
        firsts_of_units = _unit_of(batch, row) == rows
        sizes = np.bincount(run, weights=firsts_of_units, minlength=len(starts)).astype(np.int64)
        batch = batch.drop_columns([_HIGH, _LOW, BUCKET])
        batch = batch.append_column(_ROOT, pa.array(rows[starts][run]))
        return batch.append_column(_SIZE, pa.array(sizes[run]))

    return by_bucket(ds.map_batches(add_keys, batch_format="pyarrow"), buckets).map_groups(
        roots, batch_format="pyarrow"
    )


def _candidates(exact: Any, row: str, buckets: int) -> np.ndarray:
    """Step 3: the distinct candidate pairs ``[[a, b], ...]`` (rows, ``a < b``), sorted."""

    def band_records(batch: pa.Table) -> pa.Table:
        rows = row_numbers(batch, row)
        sketched = batch.column(_SKETCHED).to_numpy(zero_copy_only=False)
        first = sketched & (batch.column(_ROOT).to_numpy() == rows)
        bands = batch.schema.field(_BANDS).type.list_size
        keys = batch.column(_BANDS).combine_chunks().filter(pa.array(first)).flatten()
        keys = keys.to_numpy()
        return pa.table(
            {
                "band": np.tile(np.arange(bands, dtype=np.uint32), int(first.sum())),
                "key": keys,
                "row": np.repeat(rows[first], bands),
                BUCKET: bucket_of(keys, buckets),
            }
        )

    def candidates(batch: pa.Table) -> pa.Table:
        columns = [batch.column(name).combine_chunks() for name in ("band", "key", "row")]
        a, b = _core.lsh_candidates(*columns)
        return pa.table({"a": pa.array(a), "b": pa.array(b)})

    pairs = gather(
        by_bucket(exact.map_batches(band_records, batch_format="pyarrow"), buckets).map_groups(
            candidates, batch_format="pyarrow"
        ),
        _PAIRS,
    )
    # A pair sharing several bands may come from several buckets.
    stacked = np.stack([pairs.column("a").to_numpy(), pairs.column("b").to_numpy()], axis=1)
    return np.unique(stacked.reshape(-1, 2), axis=0)


def _near(exact: Any, row: str, arguments: dict, buckets: int) -> tuple:
    """Steps 3 and 4: ``(rows, roots, linked)``, sorted by row: the rows of candidate pairs,
    the first row of their component of verified pairs, and whether they have a verified
    pair."""
    pairs = _candidates(exact, row, buckets)
    rows = np.unique(pairs)
    if not len(rows):
        return rows, rows, np.zeros(0, dtype=bool)
    wanted = _shared(rows)
    num_perm = arguments["num_perm"]
    sketch_arguments = {
        name: arguments[name] for name in ("columns", "normalize", "ngram", "num_perm", "seed")
    }

    def sketches(batch: pa.Table) -> pa.Table:
        keep = np.isin(row_numbers(batch, row), wanted())
        part = batch.filter(pa.array(keep))
        values = pa.array(_core.signatures(part, **sketch_arguments))
        return pa.table(
            {
                "row": row_numbers(part, row),
                "sketch": pa.FixedSizeListArray.from_arrays(values, num_perm),
            }
        )

    schema = pa.schema([("row", pa.int64()), ("sketch", pa.list_(pa.uint32(), num_perm))])
    found = gather(exact.map_batches(sketches, batch_format="pyarrow"), schema).sort_by("row")
    if found.num_rows != len(rows):
        raise PrefkitError(f"column '{row}' must hold unique row numbers; some repeat")
    a, b = np.searchsorted(rows, pairs[:, 0]), np.searchsorted(rows, pairs[:, 1])
    with tempfile.TemporaryDirectory(prefix="prefkit-ray-") as folder:
        # verify_pairs reads sketch i at byte i * num_perm * 4 of a file, as the streaming
        # path spills them.
        path = os.path.join(folder, "sketches")
        values = found.column("sketch").combine_chunks().flatten().to_numpy()
        values.astype("<u4").tofile(path)
        similar = pa.array(
            _core.verify_pairs(path, num_perm, pa.array(a), pa.array(b), arguments["threshold"])
        ).to_numpy(zero_copy_only=False)
    a, b = a[similar], b[similar]
    roots = pa.array(_core.union_roots(len(rows), pa.array(a), pa.array(b))).to_numpy()
    linked = np.zeros(len(rows), dtype=bool)
    linked[a] = linked[b] = True
    return rows, rows[roots], linked


def _clusters(ds: Any, row: str, arguments: dict, buckets: int | None, reused: bool) -> Any:
    """Every row of ``ds`` with its exact cluster (``_ROOT``, ``_SIZE``), its cluster
    (``_CLUSTER``) and whether the cluster has several rows (``_SHARED``). ``reused``: the
    result is read more than once (materialise the shuffle)."""
    check_dataset(ds, [*arguments["columns"], arguments["group"], row])
    buckets = default_buckets(buckets)
    if arguments["group"] is not None:
        ds = _units(ds, row, arguments, buckets)
    exact = _exact(ds, row, arguments, buckets)
    near = None
    if arguments["method"] == "minhash":
        exact = exact.materialize()
        near = _shared(_near(exact, row, arguments, buckets))
    elif reused:
        exact = exact.materialize()

    def label(batch: pa.Table) -> pa.Table:
        root = batch.column(_ROOT).to_numpy()
        cluster, shared = root.copy(), batch.column(_SIZE).to_numpy() > 1
        if near is not None:
            rows, roots, linked = near()
            if len(rows):
                at = np.minimum(np.searchsorted(rows, root), len(rows) - 1)
                hit = rows[at] == root
                cluster[hit] = roots[at[hit]]
                shared |= hit & linked[at]
        for name in (_BANDS, _SKETCHED):
            if name in batch.column_names:
                batch = batch.drop_columns([name])
        batch = batch.append_column(_CLUSTER, pa.array(cluster))
        return batch.append_column(_SHARED, pa.array(shared))

    return exact.map_batches(label, batch_format="pyarrow")


def _rows_where(
    clustered: Any, columns: Sequence[str], keep: Callable[[pa.Table], np.ndarray]
) -> Any:
    """The rows of a clustered dataset where ``keep(batch)``, without the helper columns;
    ``columns``: the compared ones."""

    def select(batch: pa.Table) -> pa.Table:
        batch = batch.filter(pa.array(keep(batch)))
        originals = [name for name in batch.column_names if name.startswith(_ORIGINAL)]
        for name in originals:
            # Back to the compared columns' own values (the column order is kept).
            compared = columns[int(name[len(_ORIGINAL) :])]
            index = batch.schema.get_field_index(compared)
            batch = batch.set_column(index, compared, batch.column(name))
        helpers = [name for name in (*_HELPERS, *originals) if name in batch.column_names]
        return materialize(batch.drop_columns(helpers))

    return clustered.map_batches(select, batch_format="pyarrow")


def dedup(
    ds: Any,
    *,
    columns: str | Sequence[str] = "prompt",
    method: str = "exact",
    normalize: bool = True,
    ngram: int = 5,
    num_perm: int = 128,
    threshold: float = 0.8,
    bands: int | None = None,
    seed: int = 0,
    group: str | None = None,
    row: str = "row",
    buckets: int | None = None,
) -> Any:
    """``pk.dedup`` over a Ray Dataset: the first row of every duplicate cluster is kept.

    The arguments are those of ``pk.dedup`` (without ``out``, ``memory_limit``,
    ``contiguous``), plus:

    Parameters
    ----------
    ds
        A ``ray.data.Dataset``.
    row
        An integer column of unique input row numbers: "first" means the smallest ``row``
        (as in memory, where it is the input order).
    buckets
        Shuffle buckets; default 4 per CPU of the cluster.

    With ``group``, a first shuffle by group key gathers every unit (the rows sharing a
    group value) and gives all its rows the values of its first row; a unit is then kept or
    dropped whole, as in memory.

    Returns
    -------
    ray.data.Dataset
        The kept rows (lazy), the same rows as ``pk.dedup`` keeps, in no particular order
        (sort by ``row`` for the input order); text as plain strings.

    Examples
    --------
    >>> import ray, prefkit.ray as pkr  # doctest: +SKIP
    >>> ds = ray.data.read_parquet("pairs/")  # with an int64 "row" column  # doctest: +SKIP
    >>> pkr.dedup(ds, columns="prompt", method="minhash").write_parquet("unique/")  # doctest: +SKIP
    """
    arguments = _dedup_arguments(
        columns, method, normalize, ngram, num_perm, threshold, bands, seed, group
    )
    clustered = _clusters(ds, row, arguments, buckets, reused=False)
    return _rows_where(
        clustered,
        arguments["columns"],
        lambda b: b.column(_CLUSTER).to_numpy() == _unit_of(b, row),
    )


def find_duplicates(
    ds: Any,
    *,
    columns: str | Sequence[str] = "prompt",
    method: str = "exact",
    normalize: bool = True,
    ngram: int = 5,
    num_perm: int = 128,
    threshold: float = 0.8,
    bands: int | None = None,
    seed: int = 0,
    group: str | None = None,
    row: str = "row",
    buckets: int | None = None,
) -> Any:
    """``pk.find_duplicates`` over a Ray Dataset (arguments as in ``prefkit.ray.dedup``).

    Returns
    -------
    ray.data.Dataset
        ``row`` and ``cluster`` (int64, the ``row`` of the cluster's first member) for every
        row of a cluster with more than one member, in no particular order.

    Examples
    --------
    >>> pairs = pkr.find_duplicates(ds, method="minhash", threshold=0.7)  # doctest: +SKIP
    >>> pairs.sort("row").take(2)  # doctest: +SKIP
    [{'row': 0, 'cluster': 0}, {'row': 17, 'cluster': 0}]
    """
    arguments = _dedup_arguments(
        columns, method, normalize, ngram, num_perm, threshold, bands, seed, group
    )
    clustered = _clusters(ds, row, arguments, buckets, reused=False)

    def pairs(batch: pa.Table) -> pa.Table:
        shared = batch.filter(batch.column(_SHARED))
        return pa.table(
            {"row": row_numbers(shared, row), "cluster": shared.column(_CLUSTER).combine_chunks()}
        )

    return clustered.map_batches(pairs, batch_format="pyarrow")


def split(
    ds: Any,
    *,
    test_size: float,
    group: str = "prompt",
    seed: int = 0,
    near_duplicates: bool = False,
    ngram: int = 5,
    num_perm: int = 128,
    threshold: float = 0.8,
    row: str = "row",
    buckets: int | None = None,
) -> tuple[Any, Any]:
    """``pk.split`` over a Ray Dataset: the same train and test rows.

    Rows are clustered as ``pk.split`` clusters them (equal normalised ``group`` values, and
    with ``near_duplicates`` MinHash near-duplicates), the cluster sizes come to the driver
    (one number per distinct ``group`` value), which picks the test clusters exactly as the
    single-process split does; the rows are then sent to their side.

    Parameters
    ----------
    ds
        A ``ray.data.Dataset``.
    test_size, group, seed, near_duplicates, ngram, num_perm, threshold
        As in ``pk.split``.
    row, buckets
        As in ``prefkit.ray.dedup``.

    Returns
    -------
    (ray.data.Dataset, ray.data.Dataset)
        ``(train, test)``, in no particular order.

    Examples
    --------
    >>> train, test = pkr.split(ds, test_size=0.1, seed=1)  # doctest: +SKIP
    >>> train.write_parquet("train/"); test.write_parquet("test/")  # doctest: +SKIP
    """
    check_dataset(ds, (group, row))
    arguments = {
        "test_size": test_size,
        "group": group,
        "seed": seed,
        "near_duplicates": near_duplicates,
        "ngram": ngram,
        "num_perm": num_perm,
        "threshold": threshold,
    }
    # Checked before any work; the row count of a fraction is known after the clustering.
    _split_parameters(rows=None, **arguments)
    method = "minhash" if near_duplicates else "exact"
    clustering = _dedup_arguments(group, method, True, ngram, num_perm, threshold, None, seed, None)
    clustered = _clusters(ds, row, clustering, buckets, reused=True)

    def firsts(batch: pa.Table) -> pa.Table:
        first = batch.column(_ROOT).to_numpy() == row_numbers(batch, row)
        return batch.filter(pa.array(first)).select([_CLUSTER, _SIZE])

    schema = pa.schema([(_CLUSTER, pa.int64()), (_SIZE, pa.int64())])
    exact = gather(clustered.map_batches(firsts, batch_format="pyarrow"), schema)
    rows = int(exact.column(_SIZE).to_numpy().sum())
    parameters = _split_parameters(rows=rows, **arguments)
    # Clusters in order of their first row, as pk.split orders them.
    clusters, which = np.unique(exact.column(_CLUSTER).to_numpy(), return_inverse=True)
    sizes = np.bincount(which, weights=exact.column(_SIZE).to_numpy(), minlength=len(clusters))
    chosen, _ = _core.choose_test_clusters(
        pa.array(sizes.astype(np.int64)), parameters["test_rows"], seed
    )
    test_clusters = _shared(clusters[pa.array(chosen).to_numpy(zero_copy_only=False)])

    def is_test(batch: pa.Table) -> np.ndarray:
        return np.isin(batch.column(_CLUSTER).to_numpy(), test_clusters())

    return (
        _rows_where(clustered, [group], lambda b: ~is_test(b)),
        _rows_where(clustered, [group], is_test),
    )


def decontaminate(
    ds: Any,
    reference: Any,
    *,
    column: str = "prompt",
    reference_column: str | None = None,
    ngram: int = 13,
    normalize: bool = True,
) -> Any:
    """``pk.decontaminate`` over a Ray Dataset: row-wise, each block checked against the
    whole reference (put in the object store once and read by every task).

    Parameters
    ----------
    ds
        A ``ray.data.Dataset``.
    reference, column, reference_column, ngram, normalize
        As in ``pk.decontaminate``.

    Returns
    -------
    ray.data.Dataset
        The rows that share no n-gram with the reference (lazy), text as plain strings. The
        per-block report of dropped rows is not kept.

    Examples
    --------
    >>> clean = pkr.decontaminate(ds, ["what is 2 + 2"], ngram=13)  # doctest: +SKIP
    """
    from prefkit.dedup import decontaminate as op
    from prefkit.pairs import _check_int

    check_dataset(ds, (column,))
    _check_int("ngram", ngram, 1)
    reference_column = column if reference_column is None else reference_column
    shared = _shared(_reference_table(reference, reference_column))
    options = {
        "column": column,
        "reference_column": reference_column,
        "ngram": ngram,
        "normalize": normalize,
    }

    def clean(batch: pa.Table) -> pa.Table:
        return materialize(op(batch, shared(), **options).replace_schema_metadata(None))

    return ds.map_batches(clean, batch_format="pyarrow")
