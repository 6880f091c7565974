"""Curriculum ordering: pairs reordered from easy to hard, each with a training stage."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core, stream
from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, plain_unless_views
from prefkit.pairs import _check_int

ORDERS = ("easy_to_hard", "hard_to_easy")


def order_curriculum(
    pairs: Any,
    *,
    by: str = "margin",
    order: str = "easy_to_hard",
    stages: int | None = None,
    per_prompt: bool = False,
    group: str | None = None,
    shuffle_within_stage: bool = True,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    contiguous: bool | None = None,
    views: bool = False,
) -> pa.Table:
    """Reorder pairs into a curriculum and label each with its stage.

    The result holds the same rows (none is dropped), sorted by stage, plus an int32 ``stage``
    column. The exact rules are in ``docs/curriculum.md``.

    Parameters
    ----------
    pairs
        Any table with a numeric ``by`` column, e.g. the result of ``pk.mine_pairs``.
    by
        The column that measures how easy a row is: a larger value is easier (the margin of a
        pair). Null and NaN values are the hardest, last in either order.
    order
        ``"easy_to_hard"`` (larger ``by`` first) or ``"hard_to_easy"``.
    stages
        Global mode: cut the ordered rows into this many stages of equal count (sizes differ by
        at most one; default 1). ``per_prompt``: ranks from ``stages - 1`` on share the last
        stage (default: no cap, one stage per rank). At most ``2**31 - 1`` (stage numbers
        are int32).
    per_prompt
        Curry-DPO: a row's stage is its rank by ``by`` inside its group (0 = the easiest pair,
        best-vs-worst), so stage ``s`` holds the ``s``-th easiest pair of every prompt.
    group
        Grouping column of ``per_prompt``; default ``group_id`` when present, else ``prompt``.
        A row with a null key is a group of its own (stage 0).
    shuffle_within_stage
        Shuffle the rows of each stage (seeded, deterministic); ``False`` keeps them in ``by``
        order. With one stage and shuffling, the result is a seeded shuffle.
    seed
        Seed of the shuffle.
    out, memory_limit, contiguous
        Out-of-core execution of ``per_prompt=True`` (``docs/stream.md``): with a path, glob,
        folder, ``pyarrow.dataset.Dataset`` or one of these, the input is streamed by group;
        ``out`` is a new folder the result is written to as Parquet, ``memory_limit``
        (``"2GB"``) bounds each in-memory step, ``contiguous=True`` promises groups never
        reappear. Every row gets the stage of the in-memory call; the rows are ordered by stage
        within each chunk, not globally.
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The input rows, reordered, plus ``stage`` (int32, non-decreasing); the metadata record
        holds ``stage_sizes``.

    Raises
    ------
    PrefkitError
        Missing or non-numeric ``by`` column, a ``stage`` column already present, bad arguments.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> pairs = pa.table({
    ...     "prompt": ["p", "p", "p", "q", "q"],
    ...     "margin": [3.0, 1.0, 2.0, 0.5, 4.0],
    ... })
    >>> out = pk.order_curriculum(pairs, stages=2, shuffle_within_stage=False)
    >>> out.column("margin").to_pylist(), out.column("stage").to_pylist()
    ([4.0, 3.0, 2.0, 1.0, 0.5], [0, 0, 0, 1, 1])
    >>> curry = pk.order_curriculum(pairs, per_prompt=True, shuffle_within_stage=False)
    >>> curry.select(["prompt", "margin", "stage"]).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'prompt': 'q', 'margin': 4.0, 'stage': 0}, {'prompt': 'p', 'margin': 3.0, 'stage': 0},
     {'prompt': 'p', 'margin': 2.0, 'stage': 1}, {'prompt': 'q', 'margin': 0.5, 'stage': 1},
     {'prompt': 'p', 'margin': 1.0, 'stage': 2}]
    """
    if order not in ORDERS:
        raise PrefkitError(f"order must be 'easy_to_hard' or 'hard_to_easy', got {order!r}")
    if stages is not None:
        _check_int("stages", stages, 1, 2**31 - 1)
    _check_int("seed", seed, 0, 2**64 - 1)
    if stream.is_streaming(pairs, out, memory_limit):
        if not per_prompt:
            raise PrefkitError(
                "order_curriculum streams with per_prompt=True only: the global order needs "
                "every row at once; read the pairs into memory (pk.read_table) instead"
            )
        parameters = {
            "by": by,
            "order": order,
            "stages": stages,
            "per_prompt": True,
            "group": group,
            "shuffle_within_stage": shuffle_within_stage,
            "seed": seed,
        }
        return stream.run(
            order_curriculum, "order_curriculum", pairs, parameters,
            key=lambda schema: group or ("group_id" if "group_id" in schema.names else "prompt"),
            out=out, memory_limit=memory_limit, contiguous=contiguous,
        )
    table = as_table(pairs)
    if "stage" in table.column_names:
        raise PrefkitError(
            "column 'stage' is both a result column and an input column; rename or drop it first"
        )
    if group is None:
        group = "group_id" if "group_id" in table.column_names else "prompt"
    parameters = {
        "by": by,
        "order": order,
        "stages": stages,
        "per_prompt": bool(per_prompt),
        "group": group,
        "shuffle_within_stage": bool(shuffle_within_stage),
        "seed": seed,
    }
    result, accounting = _core.order_curriculum(table, **parameters)
    result = as_table(result)
    stage = result.column("stage").to_numpy()
    sizes = np.bincount(stage) if len(stage) else np.array([], dtype=np.int64)
    accounting = dict(accounting)
    accounting["stage_sizes"] = [int(s) for s in sizes]
    if not per_prompt:
        parameters.pop("group")
    result = plain_unless_views(result, views)
    return attach(result, "order_curriculum", parameters, accounting, source=table)
