"""Ranked lists: per prompt, its responses sorted best first (LiPO, TPO, Plackett-Luce)."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from prefkit import _core, stream
from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, check_nesting, plain_unless_views
from prefkit.pairs import _check_int


def _check_list_sizes(list_size: int | None, min_list_size: int, ties: str) -> None:
    _check_int("min_list_size", min_list_size, 1)
    if list_size is not None:
        _check_int("list_size", list_size, 1)
    if ties not in ("keep", "drop"):
        raise PrefkitError(f"ties must be 'drop' or 'keep', got {ties!r}")


def rank_lists(
    data: Any,
    *,
    prompt: str = "prompt",
    response: str = "response",
    score: str = "score",
    group: str | None = None,
    list_size: int | None = None,
    min_list_size: int = 2,
    ties: str = "keep",
    nan: str = "drop",
    views: bool = False,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    contiguous: bool | None = None,
) -> pa.Table:
    """Turn a long table of rated responses into one ranked list per prompt.

    Rows are grouped by ``group`` (or by the prompt value, text or chat messages); each group's
    valid responses are sorted by score, best first, stably (among equal scores the earlier row
    comes first). The exact rules are in ``docs/lists.md``.

    Parameters
    ----------
    data
        One row per response: pyarrow, polars, pandas, ``datasets.Dataset`` or any Arrow stream.
    prompt, response, score
        Column names; ``score`` is numeric (any integer or float type).
    group
        Column to group by instead of the prompt.
    list_size
        Keep at most the best ``list_size`` responses of a group; at least ``min_list_size``
        (a smaller one could never emit a list, and is an error).
    min_list_size
        Emit a list only when it has at least this many responses (after ``ties`` and
        ``list_size``).
    ties
        ``"keep"``: equal scores stay in the list (in input order); ``"drop"``: of equal scores
        only the first (earliest row) stays, so scores are strictly decreasing.
    nan
        ``"drop"`` rows whose score is null or NaN (counted), or ``"error"``.
    views
        ``True``: ``responses`` is ``list<string_view>`` whose views point into the input's
        buffers (no text is copied: fastest, least memory; pyarrow, polars and Parquet read it,
        pandas needs ``pk.materialize`` first; the prompt is a string_view too). Default: plain
        ``list<large_string>`` and ``large_string`` text (``docs/outputs.md``).
    out, memory_limit, contiguous
        Out-of-core execution (``docs/stream.md``): with a path, glob, folder,
        ``pyarrow.dataset.Dataset`` or one of these, the input is streamed; ``out`` is a new
        folder the result is written to as Parquet (a ``pyarrow.dataset.Dataset`` is returned),
        ``memory_limit`` (``"2GB"``) bounds each in-memory step (spilling to a temporary folder
        when groups are not contiguous), ``contiguous=True`` promises groups never reappear.

    Returns
    -------
    pyarrow.Table
        One row per list: ``prompt`` (of the best response's row), ``responses`` (list<string>),
        ``scores`` (list<float64>), ``rows`` (list<int64>, input rows), ``group_id`` (uint64,
        xxh3 of the key as in ``mine_pairs``); the row accounting in its metadata.

    Raises
    ------
    PrefkitError
        Missing or mistyped columns, NaN scores with ``nan="error"``, bad sizes.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({
    ...     "prompt": ["2+2?", "2+2?", "2+2?", "hi"],
    ...     "response": ["5", "4", "four", "hello"],
    ...     "score": [0.0, 1.0, 0.75, 1.0],
    ... })
    >>> lists = pk.rank_lists(data)
    >>> lists.select(["prompt", "responses", "scores", "rows"]).to_pylist()
    [{'prompt': '2+2?', 'responses': ['4', 'four', '5'], 'scores': [1.0, 0.75, 0.0], 'rows': [1, 2, 0]}]
    >>> pk.report_of(lists)["dropped"]
    {'group_too_small': 1}
    """
    _check_list_sizes(list_size, min_list_size, ties)
    if not isinstance(score, str):
        raise PrefkitError(f"score must be one column name, got {score!r}")
    parameters = {
        "prompt": prompt,
        "response": response,
        "score": score,
        "group": group,
        "list_size": list_size,
        "min_list_size": min_list_size,
        "ties": ties,
        "nan": nan,
        "views": bool(views),
    }
    if stream.is_streaming(data, out, memory_limit):
        return stream.run(
            rank_lists, "rank_lists", data, parameters, key=group or prompt,
            row_columns=("rows",), out=out, memory_limit=memory_limit, contiguous=contiguous,
        )
    table = as_table(data)
    check_nesting(table, [prompt], "rank_lists")
    result, accounting = _core.rank_lists(table, **parameters)
    result = plain_unless_views(as_table(result), views)
    return attach(result, "rank_lists", parameters, accounting, source=table)
