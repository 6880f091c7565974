"""Deduplication, decontamination and leak-free train/test splits of preference data.

The rules (normalisation, shingles, MinHash-LSH, clusters, row accounting) are in
``docs/dedup.md``; the work is done by the Rust core.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core, stream, stream_clusters
from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, check_nesting, plain_unless_views
from prefkit.pairs import _check_int, _names

METHODS = ("exact", "minhash")


def normalize_text(text: str) -> str:
    """Normalise one text exactly as dedup, decontamination and split do.

    NFKC, then lowercase, then every punctuation or symbol character (Unicode categories
    ``P*`` and ``S*``) removed, then whitespace runs collapsed into one space, none at the ends.

    Examples
    --------
    >>> import prefkit as pk
    >>> pk.normalize_text("  Ｈｅｌｌｏ,\\tWORLD!  It's $5 ")
    'hello world its 5'
    """
    if not isinstance(text, str):
        raise PrefkitError(f"text must be a str, got {type(text).__name__}")
    try:
        text.encode()
    except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 for Rust (fuzz/ops.py)
        raise PrefkitError(
            f"text is not valid Unicode: {error.reason} at position {error.start}"
        ) from None
    return _core.normalize_text(text)


def _dedup_arguments(
    columns, method, normalize, ngram, num_perm, threshold, bands, seed, group
) -> dict:
    if method not in METHODS:
        raise PrefkitError(f"method must be 'exact' or 'minhash', got {method!r}")
    _check_int("ngram", ngram, 1)
    _check_int("num_perm", num_perm, 1, 2**16)
    _check_int("seed", seed, 0, 2**64 - 1)
    if bands is not None:
        _check_int("bands", bands, 1, num_perm)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (0 < threshold <= 1)
    ):
        raise PrefkitError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if group is not None and not isinstance(group, str):
        raise PrefkitError(f"group must be a column name or None, got {group!r}")
    return {
        "columns": _names(columns, "columns"),
        "group": group,
        "method": method,
        "normalize": bool(normalize),
        "ngram": ngram,
        "num_perm": num_perm,
        "threshold": float(threshold),
        "bands": bands,
        "seed": seed,
    }


def dedup(
    data: Any,
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
    views: bool = False,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    contiguous: bool | None = None,
) -> pa.Table:
    """Drop duplicate rows, keeping the first row of every duplicate cluster in input order.

    Parameters
    ----------
    data
        A table: pyarrow, polars, pandas, ``datasets.Dataset`` or any Arrow stream.
    columns
        The compared column, or several (a pair: ``["prompt", "chosen", "rejected"]``), compared
        as a tuple. Text or chat messages for ``minhash`` (a conversation is compared as its
        ``role: content`` lines, ``docs/dedup.md``); ``exact`` also compares integers and any
        chat messages by value.
    method
        ``"exact"``: equal values. ``"minhash"``: MinHash-LSH near-duplicates, whose estimated
        Jaccard similarity of word ``ngram``-grams is at least ``threshold`` (exact duplicates
        are found too).
    normalize
        Compare normalised text (``pk.normalize_text``: NFKC, lowercase, punctuation and symbols
        removed, whitespace collapsed). With ``False``, exact compares the raw text and minhash
        only splits words on whitespace.
    ngram, num_perm, threshold, bands, seed
        MinHash: words per shingle, sketch size (at most ``2**16``), similarity threshold,
        LSH bands (at most ``num_perm``; ``None`` chooses bands x rows for the threshold,
        favouring recall; candidates are verified against the threshold) and the hash seed
        (the same seed gives the same result). They are checked whatever the method.
    group
        Keep or drop rows by group: rows sharing this column's value (e.g. ``"prompt"`` in a
        long table, one row per response) form one unit judged by its first row's values,
        and all of a unit's rows stay or go together. ``None``: every row is judged alone.
    views
        ``True``: text columns come back as string_view arrays sharing the input's buffers (no
        text copied); default: every column keeps its type, string_view becoming plain
        ``large_string`` (``docs/outputs.md``).
    out, memory_limit, contiguous
        Out-of-core dedup without ``group`` (``docs/stream.md``): with a path, glob, folder,
        ``pyarrow.dataset.Dataset``, ``RecordBatchReader`` or one of these, ``out`` is a new
        folder for the Parquet result and ``memory_limit`` (``"2GB"``) bounds each in-memory
        step. ``exact``: rows are partitioned by the key id of their (normalised) values (kept
        rows come partition by partition). ``minhash``: signatures and LSH band keys are
        hash-partitioned into spill files, candidates verified, clusters joined over all rows
        (8-16 bytes per row in memory); kept rows come in input order, exactly the in-memory
        result. ``contiguous`` applies to exact only.

    Returns
    -------
    pyarrow.Table
        The kept rows, in input order, all columns (types as ``views`` says). Its metadata
        (``pk.report_of``) counts the
        dropped rows by reason: ``duplicate`` (equal to the kept row's values) and
        ``near_duplicate``.

    Raises
    ------
    PrefkitError
        Missing or mistyped columns, bad arguments.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["Hi there!", "hi there", "Bye"], "score": [1, 2, 3]})
    >>> pk.dedup(data).column("score").to_pylist()
    [1, 3]
    >>> pk.report_of(pk.dedup(data))["dropped"]
    {'duplicate': 1}

    Whole prompt groups of a long table are kept or dropped together:

    >>> long = pa.table({"prompt": ["Q?", "Q?", "q", "q"], "response": ["a", "b", "c", "d"]})
    >>> pk.dedup(long, group="prompt").column("response").to_pylist()
    ['a', 'b']
    """
    arguments = _dedup_arguments(
        columns, method, normalize, ngram, num_perm, threshold, bands, seed, group
    )
    if stream.is_streaming(data, out, memory_limit) and method == "minhash":
        return stream_clusters.dedup(dedup, "dedup", data, arguments, out, memory_limit)
    if stream.is_streaming(data, out, memory_limit):
        return _stream_exact(dedup, "dedup", data, arguments, (), out, memory_limit, contiguous)
    table = as_table(data)
    # The kept rows come back whole: every column must be able to.
    check_nesting(table, table.column_names, "dedup")
    kept, accounting = _core.dedup_rows(table, **arguments)
    result = plain_unless_views(pa.table(_core.take(table, kept, views=views)), views)
    return attach(result, "dedup", arguments, accounting, source=table)


def find_duplicates(
    data: Any,
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
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    contiguous: bool | None = None,
) -> pa.Table:
    """Rows that belong to a duplicate cluster, and the cluster each belongs to.

    Takes the same arguments as ``pk.dedup`` (``out``, ``memory_limit``,
    ``contiguous``: streaming exact or MinHash dedup, row numbers of the whole input). Without ``group``, dedup drops exactly the rows
    listed here whose ``row`` differs from their ``cluster``; with ``group``, it keeps every row
    of the cluster's first unit.

    Returns
    -------
    pyarrow.Table
        ``row`` (int64, ascending) for every row of a cluster with more than one member, and
        ``cluster`` (int64): the row of the cluster's first member.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["a b", "c", "A, b!", "a b"]})
    >>> pk.find_duplicates(data).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'row': 0, 'cluster': 0}, {'row': 2, 'cluster': 0}, {'row': 3, 'cluster': 0}]
    """
    arguments = _dedup_arguments(
        columns, method, normalize, ngram, num_perm, threshold, bands, seed, group
    )
    if stream.is_streaming(data, out, memory_limit) and method == "minhash":
        return stream_clusters.dedup(
            find_duplicates, "find_duplicates", data, arguments, out, memory_limit
        )
    if stream.is_streaming(data, out, memory_limit):
        return _stream_exact(
            find_duplicates,
            "find_duplicates",
            data,
            arguments,
            ("row", "cluster"),
            out,
            memory_limit,
            contiguous,
        )
    table = as_table(data)
    rows, clusters = _core.find_duplicates(table, **arguments)
    result = pa.table({"row": pa.array(rows), "cluster": pa.array(clusters)})
    accounting = {"rows_in": table.num_rows, "rows_in_clusters": result.num_rows}
    return attach(result, "find_duplicates", arguments, accounting, source=table)


def _stream_exact(op, name, data, arguments, row_columns, out, memory_limit, contiguous):
    """Exact dedup out of core: rows are partitioned by the key id of their (normalised)
    ``columns``, so every duplicate cluster lies in one partition, whose first row in input
    order is the global first (docs/stream.md)."""
    if arguments["group"] is not None:
        raise PrefkitError(
            f"{name} streams without group only; grouped dedup needs the whole input: read it "
            "with pk.read_table first"
        )
    columns, normalize = arguments["columns"], arguments["normalize"]

    def key_ids(batch: pa.RecordBatch) -> pa.Array:
        values = []
        for column in columns:
            if column not in batch.schema.names:
                raise PrefkitError(
                    f"column '{column}' not found; the table has columns {batch.schema.names}"
                )
            array = batch.column(column)
            if normalize:
                if (
                    not pa.types.is_string(array.type)
                    and not pa.types.is_large_string(array.type)
                    and not pa.types.is_string_view(array.type)
                ):
                    raise PrefkitError(
                        f"streaming {name} with normalize=True needs text in column "
                        f"'{column}', got {array.type}"
                    )
                array = pa.array(
                    [None if v is None else _core.normalize_text(v) for v in array.to_pylist()],
                    pa.string(),
                )
            values.append(array)
        # The key of a row is the struct of its values; key_ids hashes it as mine_pairs does.
        key = pa.StructArray.from_arrays(values, names=[f"c{i}" for i in range(len(values))])
        return _core.key_ids(pa.table({"key": key}), "key")

    return stream.run(
        op,
        name,
        data,
        arguments,
        key=lambda schema: key_ids,
        row_columns=row_columns,
        out=out,
        memory_limit=memory_limit,
        contiguous=contiguous,
    )


def _take(table: pa.Table, mask: np.ndarray, views: bool) -> pa.Table:
    """The rows of ``table`` where ``mask`` is true (string_view columns included), text as
    ``views`` says."""
    rows = pa.array(np.flatnonzero(mask), pa.int64())
    return plain_unless_views(pa.table(_core.take(table, rows, views=views)), views)


def _reference_table(reference: Any, column: str) -> pa.Table:
    if isinstance(reference, (list, tuple)):
        if not all(text is None or isinstance(text, str) for text in reference):
            raise PrefkitError("reference must be a table or a list of strings")
        return pa.table({column: pa.array(reference, pa.string())})
    return as_table(reference, argument="reference")


def _contamination(data, reference, column, reference_column, ngram, normalize):
    table = as_table(data)
    reference_column = column if reference_column is None else reference_column
    references = _reference_table(reference, reference_column)
    _check_int("ngram", ngram, 1)
    parameters = {
        "column": column,
        "reference_column": reference_column,
        "ngram": ngram,
        "normalize": bool(normalize),
    }
    rows, matched, accounting = _core.find_contamination(table, references, **parameters)
    return (
        table,
        pa.table({"row": pa.array(rows), "reference_rows": pa.array(matched)}),
        (
            parameters,
            accounting,
        ),
    )


def _merge_contamination():
    """Adds chunk records of find_contamination/decontaminate: the reference counts are not
    sums over chunks (the same reference each time; its matched rows are a union)."""
    matched: set[int] = set()

    def merge(total: dict, part: dict, result: pa.Table) -> None:
        part = dict(part)
        references = part.pop("reference_rows", None)
        part.pop("reference_rows_matched", None)
        stream.merge_records(total, part)
        total["reference_rows"] = references
        if "contaminated_rows" in part:
            matched.update(r for entry in part["contaminated_rows"] for r in entry[1])
        else:
            matched.update(result.column("reference_rows").combine_chunks().values.to_pylist())
        total["reference_rows_matched"] = len(matched)

    return merge


def find_contamination(
    data: Any,
    reference: Any,
    *,
    column: str = "prompt",
    reference_column: str | None = None,
    ngram: int = 13,
    normalize: bool = True,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
) -> pa.Table:
    """Rows of ``data`` that share a word n-gram with a reference row, and which ones.

    Both texts are normalised (``pk.normalize_text``) and split into words. A reference row
    contributes its word ``ngram``-grams, or its whole word sequence when it is shorter; a data
    row matches it when it contains one of them as consecutive words.

    Parameters
    ----------
    data
        The table to check.
    reference
        A table (e.g. benchmark prompts) or a list of strings.
    column, reference_column
        The text (or chat-message) columns; ``reference_column`` defaults to ``column``.
    ngram
        Words per n-gram (13, as in the GPT-3 and open-instruct decontamination).
    normalize
        ``False`` compares raw words (split on whitespace).
    out, memory_limit
        Out-of-core execution (``docs/stream.md``): with a path, glob, folder,
        ``pyarrow.dataset.Dataset`` or one of these, the input is checked chunk by chunk
        (``memory_limit``, e.g. ``"2GB"``, bounds a chunk) and ``out`` is a new folder the
        result is written to as Parquet. Row numbers refer to the whole input.

    Returns
    -------
    pyarrow.Table
        ``row`` (int64) of every contaminated data row and ``reference_rows``
        (``list<int64>``, ascending): the reference rows it matched.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["Q: What is 2 + 2? Answer briefly.", "Tell a joke"]})
    >>> pk.find_contamination(data, ["what is 2 + 2"], ngram=13).to_pylist()
    [{'row': 0, 'reference_rows': [0]}]
    """
    if stream.is_streaming(data, out, memory_limit):
        return _stream_contamination(
            find_contamination,
            data,
            reference,
            column,
            reference_column,
            ngram,
            normalize,
            out,
            memory_limit,
        )
    table, found, (parameters, accounting) = _contamination(
        data, reference, column, reference_column, ngram, normalize
    )
    return attach(found, "find_contamination", parameters, accounting, source=table)


def _stream_contamination(
    operation, data, reference, column, reference_column, ngram, normalize, out, memory_limit
):
    """Run ``find_contamination`` or ``decontaminate`` out of core: row-wise, chunks of the
    input are checked one by one against the whole reference."""
    found_rows = operation is find_contamination
    return stream.run(
        operation,
        operation.__name__,
        data,
        {
            "reference": _reference_table(
                reference, column if reference_column is None else reference_column
            ),
            "column": column,
            "reference_column": reference_column,
            "ngram": ngram,
            "normalize": normalize,
        },
        key=None,
        merge=_merge_contamination(),
        row_columns=("row",) if found_rows else (),
        record_rows=() if found_rows else ("contaminated_rows",),
        out=out,
        memory_limit=memory_limit,
    )


def decontaminate(
    data: Any,
    reference: Any,
    *,
    column: str = "prompt",
    reference_column: str | None = None,
    ngram: int = 13,
    normalize: bool = True,
    views: bool = False,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
) -> pa.Table:
    """Drop rows that share a word n-gram with any reference row (e.g. benchmark prompts).

    Matching is that of ``pk.find_contamination``; takes the same arguments, and ``views`` as
    ``pk.dedup`` does.

    Returns
    -------
    pyarrow.Table
        The other rows, in input order (column types as in ``pk.dedup``). Its
        metadata (``pk.report_of``) counts the dropped
        rows as ``contaminated``, and under ``contaminated_rows`` lists every dropped row with
        the reference rows it matched: ``[[row, [reference_row, ...]], ...]``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["Q: What is 2 + 2? Answer briefly.", "Tell a joke"]})
    >>> clean = pk.decontaminate(data, ["what is 2 + 2"])
    >>> clean.column("prompt").to_pylist()
    ['Tell a joke']
    >>> pk.report_of(clean)["contaminated_rows"]
    [[0, [0]]]
    """
    if stream.is_streaming(data, out, memory_limit):
        return _stream_contamination(
            decontaminate,
            data,
            reference,
            column,
            reference_column,
            ngram,
            normalize,
            out,
            memory_limit,
        )
    table, found, (parameters, accounting) = _contamination(
        data, reference, column, reference_column, ngram, normalize
    )
    keep = np.ones(table.num_rows, dtype=bool)
    keep[found.column("row").to_numpy()] = False
    result = _take(table, keep, views)
    accounting = dict(accounting)
    accounting["contaminated_rows"] = [
        [record["row"], record["reference_rows"]] for record in found.to_pylist()
    ]
    return attach(result, "decontaminate", parameters, accounting, source=table)


def _split_parameters(
    test_size, rows, group, seed, near_duplicates, ngram, num_perm, threshold
) -> dict:
    """Checked arguments of ``split`` and, when ``rows`` is known, ``test_rows``."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise PrefkitError(
            f"test_size must be a fraction in (0, 1) or a row count, got {test_size!r}"
        )
    if isinstance(test_size, float) and not 0 < test_size < 1:
        raise PrefkitError(
            f"test_size must be a fraction in (0, 1) or a row count, got {test_size!r}"
        )
    if isinstance(test_size, float):
        test_rows = None if rows is None else math.ceil(test_size * rows)
    else:
        _check_int("test_size", test_size, 0, rows)
        test_rows = test_size
    _check_int("seed", seed, 0, 2**64 - 1)
    _check_int("ngram", ngram, 1)
    _check_int("num_perm", num_perm, 1, 2**16)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0 < threshold <= 1):
        raise PrefkitError(f"threshold must be a number in (0, 1], got {threshold!r}")
    return {
        "group": group,
        "test_rows": test_rows,
        "seed": seed,
        "near_duplicates": bool(near_duplicates),
        "ngram": ngram,
        "num_perm": num_perm,
        "threshold": float(threshold),
        "test_size": test_size,
    }


def split(
    data: Any,
    *,
    test_size: float,
    group: str = "prompt",
    seed: int = 0,
    near_duplicates: bool = False,
    ngram: int = 5,
    num_perm: int = 128,
    threshold: float = 0.8,
    views: bool = False,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Split rows into train and test so that no prompt lands on both sides.

    Rows sharing the ``group`` value (equal after normalisation) form one cluster; with
    ``near_duplicates=True`` clusters whose MinHash similarity reaches ``threshold`` merge
    too. Clusters are shuffled with ``seed`` and moved to the test side whole while they fit
    in its budget of rows, so the test side may hold slightly fewer rows than asked.

    Parameters
    ----------
    data
        A long or pair table; or, out of core, a path, glob, folder,
        ``pyarrow.dataset.Dataset`` or ``RecordBatchReader``.
    test_size
        A fraction of the rows in (0, 1) (rounded up, as ``datasets.train_test_split`` does)
        or a number of rows.
    group
        The column no value of which may appear on both sides (text, integers or chat
        messages).
    seed
        Seed of the shuffle; the same seed gives the same split.
    near_duplicates, ngram, num_perm, threshold
        Also keep near-duplicate prompts on one side; MinHash parameters as in ``pk.dedup``.
    views
        ``True``: text columns come back as string_view arrays sharing the input's buffers (no
        text copied); default: every column keeps its type, string_view becoming plain
        ``large_string`` (``docs/outputs.md``).
    out, memory_limit
        Out of core (``docs/stream.md``): ``out`` is a new or empty folder; the sides are
        written as Parquet datasets ``out/train/`` and ``out/test/`` and returned as two
        ``pyarrow.dataset.Dataset``. ``memory_limit`` (``"2GB"``) bounds each in-memory step:
        a larger input is clustered from spill files (exact hashes and MinHash band keys,
        hash-partitioned) and read three times; the split is the in-memory one.

    Returns
    -------
    (pyarrow.Table, pyarrow.Table)
        ``(train, test)``, each in input order (column types as in ``pk.dedup``), like
        ``datasets``' ``train_test_split`` (which returns them under the keys ``"train"`` and
        ``"test"``); two Datasets with ``out``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["a", "a", "b", "b", "c", "c"], "response": list("uvwxyz")})
    >>> train, test = pk.split(data, test_size=2, seed=0)
    >>> train.num_rows, test.num_rows
    (4, 2)
    >>> set(train.column("prompt").to_pylist()) & set(test.column("prompt").to_pylist())
    set()

    Out of core, into ``parts/train/`` and ``parts/test/``:

    >>> import tempfile, os
    >>> parts = os.path.join(tempfile.mkdtemp(), "parts")
    >>> train, test = pk.split(data, test_size=2, out=parts, memory_limit="1KB")
    >>> train.count_rows(), test.count_rows(), sorted(os.listdir(parts))
    (4, 2, ['test', 'train'])
    """
    arguments = {
        "test_size": test_size,
        "group": group,
        "seed": seed,
        "near_duplicates": near_duplicates,
        "ngram": ngram,
        "num_perm": num_perm,
        "threshold": threshold,
    }
    if stream.is_streaming(data, out, memory_limit):
        _split_parameters(rows=None, **arguments)
        return stream_clusters.split(
            split,
            data,
            lambda rows: _split_parameters(rows=rows, **arguments),
            arguments,
            out,
            memory_limit,
        )
    table = as_table(data)
    parameters = _split_parameters(rows=table.num_rows, **arguments)
    core = {k: v for k, v in parameters.items() if k != "test_size"}
    is_test, accounting = _core.split_rows(table, **core)
    is_test = pa.array(is_test).to_numpy(zero_copy_only=False)
    train = attach(
        _take(table, ~is_test, views),
        "split",
        parameters,
        {**accounting, "part": "train"},
        source=table,
    )
    test = attach(
        _take(table, is_test, views), "split", parameters, {**accounting, "part": "test"}, source=table
    )
    return train, test
