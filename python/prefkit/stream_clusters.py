"""Out-of-core clusters of rows: MinHash dedup and leak-free splits of inputs larger than memory.

``pk.dedup`` / ``pk.find_duplicates`` with ``method="minhash"`` and ``pk.split`` need, for every
row, the first row of its cluster. Given a path, a glob, a folder, a ``pyarrow.dataset.Dataset``
or a ``RecordBatchReader`` (or ``out=`` / ``memory_limit=``), and when the input does not fit
the budget, they come here and work in passes over the input and over hash-partitioned spill
files in a temporary folder (removed after success, failure or KeyboardInterrupt):

1. **Sketch.** Each batch goes to Rust (``_core.cluster_keys``): every row's exact identity
   (xxh3-128 of its prepared values) and, for rows that are the first of their value in the
   batch and have shingles, the LSH key of every band. Exact records ``(hash, row)`` are
   partitioned by hash, band records ``(band, key, row)`` by key, into LZ4 IPC files.
2. **Exact roots.** Per exact partition, rows with equal hashes get the first of them as their
   exact root (an int64 array of all rows stays in memory: 8 bytes per row).
3. **Candidates.** Per band partition, among rows that are their own exact root, the in-memory
   LSH candidate rule (``_core.lsh_candidates``: equal band and key, each row with the next 64
   of its bucket in row order).
4. **Verify.** The input is read again and only the candidate rows are sketched again, into a
   spill file of raw sketches; each candidate pair is verified against the threshold with
   positioned reads of that file (``_core.verify_pairs``), and the verified pairs are joined
   by union-find (``_core.union_roots``).
5. **Write.** The input is read a last time: dedup keeps rows that are their cluster's root
   (in input order), split sends whole clusters to one side (``_core.choose_test_clusters``).

Every step is the in-memory one on the same numbers, so the result equals the in-memory
result, order included (see ``docs/stream.md``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import report_of
from prefkit.stream import (
    BATCH_ROWS,
    DEFAULT_BUCKETS,
    ROW,
    WORKING_SET,
    Partitions,
    _numbered,
    _progress,
    _Sink,
    _Source,
    _take,
    open_source,
    oversized,
    parse_size,
    rereadable,
    spill_folder,
)

#: Bytes of one exact record: the hash's two halves, the row, and for split the group id.
EXACT_RECORD = 33
#: Bytes of one band record: band, key, row.
BAND_RECORD = 20
#: Record partitions are packed into chunks of ``budget / RECORD_SHARE`` bytes: sorting small
#: records holds several times their bytes (sort keys, permutations, Rust's tuples), more
#: than the ``WORKING_SET`` factor of the row-wise operations allows.
RECORD_SHARE = 2
#: Keys of the provenance that the result's own record carries (not the accounting).
_OWN = ("op", "prefkit_version", "parameters", "rows_out", "source", "streaming")


def _np(array: Any) -> np.ndarray:
    """A numpy view of an array returned by ``_core``."""
    return pa.array(array).to_numpy(zero_copy_only=False)


@dataclass
class Clusters:
    """Every row's cluster over the whole input (rows numbered as ``pk.read_table`` does)."""

    #: Rows in the input.
    rows: int
    #: For every row, the first row whose compared values equal its own.
    exact_root: np.ndarray
    #: For every row, the first row of its cluster (exact and near duplicates joined).
    root: np.ndarray
    #: Distinct non-null values of the unit column plus its null rows (split's ``groups_in``).
    units: int | None
    #: Spill partitions processed (chunks), and ``oversized`` counts.
    chunks: int
    report: dict


class _Pairs:
    """Candidate pairs of global rows, held in memory up to ``budget`` bytes, then spilled as
    runs of an IPC file."""

    def __init__(self, folder: str, budget: int | None) -> None:
        self.folder = folder
        self.budget = budget
        self.held: list[tuple[np.ndarray, np.ndarray]] = []
        self.held_bytes = 0
        self.runs: list[str] = []
        self.rows: list[np.ndarray] = []

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if len(a) == 0:
            return
        self.held.append((a, b))
        self.rows.append(np.unique(np.concatenate([a, b])))
        self.held_bytes += a.nbytes + b.nbytes
        if self.budget is not None and self.held_bytes > self.budget:
            from pyarrow import feather

            path = os.path.join(self.folder, f"pairs-{len(self.runs):05d}.arrow")
            a, b = (np.concatenate(side) for side in zip(*self.held))
            feather.write_feather(pa.table({"a": a, "b": b}), path, compression="lz4")
            self.runs.append(path)
            self.held, self.held_bytes = [], 0

    def candidates(self) -> np.ndarray:
        """Every row of a candidate pair, ascending."""
        if not self.rows:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(self.rows))

    def batches(self):
        """The pairs, run by run, each run sorted and distinct."""
        from pyarrow import feather

        runs = [feather.read_table(path, memory_map=False) for path in self.runs]
        sources = [(t.column("a").to_numpy(), t.column("b").to_numpy()) for t in runs]
        if self.held:
            sources.append(tuple(np.concatenate(side) for side in zip(*self.held)))
        for a, b in sources:
            order = np.lexsort((b, a))
            a, b = a[order], b[order]
            distinct = np.ones(len(a), dtype=bool)
            distinct[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
            yield a[distinct], b[distinct]


def _buckets(source: _Source, record_bytes: int, budget: int | None) -> int:
    """Spill buckets for records of ``record_bytes`` per row: one per ``budget`` bytes."""
    if source.rows is None or budget is None:
        return DEFAULT_BUCKETS
    # Half the budget per bucket: hashing is uneven, and packing joins small buckets again.
    return max(1, math.ceil(source.rows * record_bytes / (budget / 2)))


def find_clusters(
    source: _Source,
    spill: str,
    options: dict,
    budget: int | None,
    name: str,
    unit: str | None = None,
) -> Clusters:
    """Passes 1 to 4 of the module docstring: every row's cluster.

    ``options`` are ``_core.cluster_keys``'s (``columns``, ``method``, ``normalize``,
    ``ngram``, ``num_perm``, ``threshold``, ``bands``, ``seed``); ``unit`` a column whose
    distinct values are counted (split's groups).
    """
    minhash = options["method"] == "minhash"
    budget = budget // RECORD_SHARE if budget is not None else None
    rows = 0
    with ExitStack() as files:
        exact = files.enter_context(
            Partitions(spill, "exact", _buckets(source, EXACT_RECORD, budget))
        )
        bands: Partitions | None = None
        with _progress(source.rows, f"prefkit {name} (sketching)") as bar:
            for batch in _numbered(source.open(), bar):
                table = pa.Table.from_batches([batch])
                high, low, sketched, keys, width = _core.cluster_keys(table, **options)
                row = batch.column(ROW).to_numpy()
                rows += len(row)
                low = _np(low)
                records = {"high": _np(high), "low": low, "row": row}
                if unit is not None:
                    records["unit"] = pa.array(_core.key_ids(table, unit))
                exact.write(pa.table(records), (low % np.uint64(exact.buckets)).astype(np.int64))
                if not minhash:
                    continue
                if bands is None:
                    bands = files.enter_context(
                        Partitions(spill, "bands", _buckets(source, BAND_RECORD * width, budget))
                    )
                sketched = _np(sketched)
                keys = _np(keys).reshape(len(row), width)[sketched].ravel()
                count = int(sketched.sum())
                band_records = pa.table(
                    {
                        "band": np.tile(np.arange(width, dtype=np.uint32), count),
                        "key": keys,
                        "row": np.repeat(row[sketched], width),
                    }
                )
                bucket = (keys % np.uint64(bands.buckets)).astype(np.int64)
                bands.write(band_records, bucket)
    exact_root, units, chunks, report = _exact_roots(exact, rows, budget, name, unit is not None)
    root = exact_root
    if bands is not None:
        pairs, band_chunks, band_report = _candidates(bands, exact_root, spill, budget, name)
        chunks += band_chunks
        report = {**band_report, **report}
        root = _verify(source, pairs, exact_root, spill, options, name)
    return Clusters(rows, exact_root, root, units, chunks, report)


def _exact_roots(
    exact: Partitions, rows: int, budget: int | None, name: str, count_units: bool
) -> tuple[np.ndarray, int | None, int, dict]:
    """Pass 2: the first row of every row's exact value, partition by partition."""
    exact_root = np.empty(rows, dtype=np.int64)
    units = 0 if count_units else None
    chunks = exact.chunks(budget)
    report = oversized(chunks, exact.sizes, budget, f"{name} exact")
    for chunk in chunks:
        table = exact.read(chunk)
        high, low, row = (table.column(c).to_numpy() for c in ("high", "low", "row"))
        order = np.lexsort((row, low, high))
        high, low, row = high[order], low[order], row[order]
        first = np.ones(len(row), dtype=bool)
        first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
        exact_root[row] = row[first][np.cumsum(first) - 1]
        if units is not None:
            # Equal group values have equal hashes, so each lies in one partition.
            ids = table.column("unit")
            valid = ids.is_valid().to_numpy(zero_copy_only=False)
            units += int((~valid).sum()) + np.unique(ids.fill_null(0).to_numpy()[valid]).size
    return exact_root, units, len(chunks), report


def _candidates(
    bands: Partitions, exact_root: np.ndarray, spill: str, budget: int | None, name: str
) -> tuple[_Pairs, int, dict]:
    """Pass 3: candidate pairs, band partition by band partition."""
    pairs = _Pairs(spill, budget)
    chunks = bands.chunks(budget)
    report = oversized(chunks, bands.sizes, budget, f"{name} band")
    with _progress(len(chunks), f"prefkit {name} (LSH partitions)", unit="chunk") as bar:
        for chunk in chunks:
            table = bands.read(chunk)
            row = table.column("row").to_numpy()
            first = exact_root[row] == row
            a, b = _core.lsh_candidates(
                pa.array(table.column("band").to_numpy()[first]),
                pa.array(table.column("key").to_numpy()[first]),
                pa.array(row[first]),
            )
            pairs.add(_np(a), _np(b))
            bar.update(1)
    return pairs, len(chunks), {f"band_{k}": v for k, v in report.items()}


def _verify(
    source: _Source,
    pairs: _Pairs,
    exact_root: np.ndarray,
    spill: str,
    options: dict,
    name: str,
) -> np.ndarray:
    """Pass 4: sketch the candidate rows again into a spill file, verify the candidate pairs,
    join the verified ones; returns every row's cluster root."""
    candidates = pairs.candidates()
    m = len(candidates)
    if m == 0:
        return exact_root
    path = os.path.join(spill, "signatures.u32")
    sketch = {k: options[k] for k in ("columns", "normalize", "ngram", "num_perm", "seed")}
    with open(path, "wb") as handle, _progress(source.rows, f"prefkit {name} (verifying)") as bar:
        for batch in _numbered(source.open(), bar):
            row = batch.column(ROW).to_numpy()
            at = np.minimum(np.searchsorted(candidates, row), m - 1)
            hit = np.flatnonzero(candidates[at] == row)
            if len(hit):
                sigs = _np(_core.signatures(_take(batch, hit), **sketch))
                sigs.astype("<u4", copy=False).tofile(handle)
    joined_a, joined_b = [], []
    for a, b in pairs.batches():
        a, b = np.searchsorted(candidates, a), np.searchsorted(candidates, b)
        similar = _np(
            _core.verify_pairs(
                path, options["num_perm"], pa.array(a), pa.array(b), options["threshold"]
            )
        )
        joined_a.append(a[similar])
        joined_b.append(b[similar])
    roots = _np(
        _core.union_roots(m, pa.array(np.concatenate(joined_a)), pa.array(np.concatenate(joined_b)))
    )
    near = candidates[roots]
    root = exact_root.copy()
    at = np.minimum(np.searchsorted(candidates, exact_root), m - 1)
    hit = candidates[at] == exact_root
    root[hit] = near[at[hit]]
    return root


def _fits(source: _Source, budget: int | None) -> bool:
    return budget is None or (source.nbytes is not None and source.nbytes <= budget)


def _whole(source: _Source) -> pa.Table:
    """The whole input as one table, files cast to the first one's schema."""
    with _progress(source.rows, "prefkit reading") as bar:
        batches = list(_numbered(source.open(), bar))
    if not batches:
        raise PrefkitError("the input has no rows and no batches")
    return pa.Table.from_batches(batches).drop_columns([ROW])


def _accounting(result: pa.Table) -> dict:
    return {k: v for k, v in report_of(result).items() if k not in _OWN}


def _streaming(mode: str, limit: int | None, clusters: Clusters | None) -> dict:
    if clusters is None:
        return {"mode": mode, "memory_limit": limit, "chunks": None}
    return {"mode": mode, "memory_limit": limit, "chunks": clusters.chunks, **clusters.report}


def _run(data: Any, memory_limit: Any, sinks: list[_Sink], work: Callable) -> Any:
    """Open the input, run ``work(source, spill, limit, budget)`` inside a spill folder that
    is always removed, and discard partial outputs on any error (KeyboardInterrupt too)."""
    limit = parse_size(memory_limit) if memory_limit is not None else None
    budget = limit // WORKING_SET if limit is not None else None
    try:
        with spill_folder() as spill:
            source = open_source(data)
            for sink in sinks:
                sink.skipped = source.skipped
            if not _fits(source, budget):
                source = rereadable(source, spill)
            return work(source, spill, limit, budget)
    except BaseException:
        for sink in sinks:
            sink.discard()
        raise


def dedup(op: Callable, name: str, data: Any, arguments: dict, out: Any, memory_limit: Any) -> Any:
    """Streaming ``dedup`` / ``find_duplicates`` (``op``, the in-memory function) with
    ``method="minhash"``: kept rows in input order, or ``row, cluster`` ascending.

    Raises
    ------
    PrefkitError
        With ``group`` (units of several rows do not stream).
    """
    if arguments["group"] is not None:
        raise PrefkitError(
            f"{name} with method='minhash' streams without group only; read the input with "
            "pk.read_table and call it in memory, or dedup without group"
        )
    sink = _Sink(out)

    def work(source: _Source, spill: str, limit: int | None, budget: int | None) -> Any:
        if _fits(source, budget):
            result = op(_whole(source), **arguments)
            sink.add(result)
            record = {**_accounting(result), "streaming": _streaming("in_memory", limit, None)}
            return sink.finish(name, arguments, record)
        options = {k: v for k, v in arguments.items() if k != "group"}
        clusters = find_clusters(source, spill, options, budget, name)
        n = clusters.rows
        itself = clusters.root == np.arange(n)
        record: dict = {"rows_in": n}
        if name == "find_duplicates":
            members = ~itself
            members[np.unique(clusters.root[~itself])] = True
            rows = np.flatnonzero(members)
            for start in range(0, max(len(rows), 1), BATCH_ROWS * 16):
                part = rows[start : start + BATCH_ROWS * 16]
                sink.add(pa.table({"row": part, "cluster": clusters.root[part]}))
            record["rows_in_clusters"] = len(rows)
        else:
            _write_kept(source, sink, itself, name)
            exact = clusters.exact_root == clusters.root
            dropped = {
                "duplicate": int((~itself & exact).sum()),
                "near_duplicate": int((~itself & ~exact).sum()),
            }
            record["rows_used"] = int(itself.sum())
            record["dropped"] = {k: v for k, v in dropped.items() if v}
            record["duplicate_clusters"] = int(np.unique(clusters.root[~itself]).size)
        record["streaming"] = _streaming("partitioned", limit, clusters)
        return sink.finish(name, arguments, record)

    return _run(data, memory_limit, [sink], work)


def _write_kept(source: _Source, sink: _Sink, kept: np.ndarray, name: str) -> None:
    """Pass 5 of dedup: the rows where ``kept`` (by global row), in input order."""
    with _progress(source.rows, f"prefkit {name} (writing)") as bar:
        for batch in _numbered(source.open(), bar):
            row = batch.column(ROW).to_numpy()
            sink.add(_take(batch, np.flatnonzero(kept[row])).drop_columns([ROW]))


def split(
    op: Callable,
    data: Any,
    parameters: Callable[[int], dict],
    arguments: dict,
    out: Any,
    memory_limit: Any,
) -> tuple[Any, Any]:
    """Streaming ``split`` (``op``, the in-memory function, called with ``arguments``):
    ``(train, test)`` in input order, tables or, with ``out``, Datasets under ``out/train``
    and ``out/test``. ``parameters(rows)`` gives the provenance parameters (with
    ``test_rows``) once the number of rows is known, and checks ``test_size`` against it."""
    if out is not None:
        folder = _Sink(out).out  # a new or empty folder, checked once for both sides
        sinks = [_Sink(folder / "train"), _Sink(folder / "test")]
    else:
        sinks = [_Sink(None), _Sink(None)]

    def work(source: _Source, spill: str, limit: int | None, budget: int | None) -> Any:
        if _fits(source, budget):
            parts = op(_whole(source), **arguments)
            streaming = _streaming("in_memory", limit, None)
            results = []
            for sink, part in zip(sinks, parts):
                sink.add(part)
                record = {**_accounting(part), "streaming": streaming}
                results.append(sink.finish("split", report_of(part)["parameters"], record))
            return tuple(results)
        group, near = arguments["group"], arguments["near_duplicates"]
        options = {
            "columns": [group],
            "method": "minhash" if near else "exact",
            "normalize": True,
            "ngram": arguments["ngram"],
            "num_perm": arguments["num_perm"],
            "threshold": float(arguments["threshold"]),
            "bands": None,
            "seed": arguments["seed"],
        }
        clusters = find_clusters(source, spill, options, budget, "split", unit=group)
        n = clusters.rows
        chosen_parameters = parameters(n)
        roots, sizes = np.unique(clusters.root, return_counts=True)
        chosen, test_rows = _core.choose_test_clusters(
            pa.array(sizes.astype(np.int64)), chosen_parameters["test_rows"], arguments["seed"]
        )
        is_test = _np(chosen)[np.searchsorted(roots, clusters.root)]
        with _progress(source.rows, "prefkit split (writing)") as bar:
            for batch in _numbered(source.open(), bar):
                side = is_test[batch.column(ROW).to_numpy()]
                for sink, rows in zip(sinks, (~side, side)):
                    sink.add(_take(batch, np.flatnonzero(rows)).drop_columns([ROW]))
        accounting = {
            "rows_in": n,
            "rows_used": n,
            "dropped": {},
            "train_rows": n - test_rows,
            "test_rows": test_rows,
            "groups_in": clusters.units,
            "clusters": len(roots),
            "streaming": _streaming("partitioned", limit, clusters),
        }
        return tuple(
            sink.finish("split", chosen_parameters, {**accounting, "part": part})
            for sink, part in zip(sinks, ("train", "test"))
        )

    return _run(data, memory_limit, sinks, work)
