"""Pair mining: chosen/rejected pairs from rated responses, and the long form they come from."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from prefkit import _core, stream
from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, check_nesting, plain_unless_views, without_views

STRATEGIES = (
    "best_vs_worst",
    "best_vs_random",
    "best_vs_all",
    "all_pairs",
    "adjacent",
    "top_k_vs_bottom_k",
)


def _names(value: str | Sequence[str], argument: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise PrefkitError(f"{argument} must be a column name or a list of them, got {value!r}")
    return names


def _check_number(argument: str, value: Any) -> None:
    """A float argument must be an int or a float (not a bool, None or a string, which the
    binding would reject with a ``TypeError``; found by fuzz/ops.py)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise PrefkitError(f"{argument} must be a number, got {value!r}")


def _check_int(argument: str, value: Any, low: int, high: int | None = None) -> None:
    """Integers cross into Rust as unsigned 64-bit: reject what would not fit with a clear
    message (a larger one raised ``OverflowError`` from the binding; found by fuzz/ops.py)."""
    fits = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not fits or value > (2**64 - 1 if high is None else high):
        bound = f"in [{low}, 2**64)" if high is None else f"in [{low}, {high}]"
        raise PrefkitError(f"{argument} must be an integer {bound}, got {value!r}")


def mine_pairs(
    data: Any,
    *,
    prompt: str = "prompt",
    response: str = "response",
    score: str | Sequence[str] = "score",
    group: str | None = None,
    strategy: str = "best_vs_worst",
    k: int = 1,
    min_margin: float = 0.0,
    ties: str = "drop",
    nan: str = "drop",
    max_pairs_per_prompt: int | None = None,
    length_penalty: float = 0.0,
    seed: int = 0,
    carry: Sequence[str] = (),
    views: bool = False,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    contiguous: bool | None = None,
) -> pa.Table:
    """Mine chosen/rejected pairs from a long table of rated responses.

    Rows are grouped by ``group`` (or by the prompt value, text or chat messages), ranked by
    score (stable: the earlier row wins a tie) and paired by ``strategy``. The exact rules are in
    ``docs/pairs.md``.

    Parameters
    ----------
    data
        One row per response: pyarrow, polars, pandas, ``datasets.Dataset`` or any Arrow stream.
    prompt, response
        Column names. ``prompt`` may be text or chat messages (``list<struct<role, content>>``).
    score
        A numeric column, or a list of them (several reward models): the score is their mean and
        each pair also gets ``agreement`` and ``margin_std``.
    group
        Column to group by instead of the prompt (e.g. a prompt id).
    strategy
        ``best_vs_worst``, ``best_vs_random``, ``best_vs_all``, ``all_pairs``, ``adjacent`` or
        ``top_k_vs_bottom_k``.
    k
        How many of the top and of the bottom responses pair up in ``top_k_vs_bottom_k``.
    min_margin
        A pair needs ``margin > min_margin``.
    ties
        ``"drop"``: equal scores never pair; ``"keep"``: they pair with margin 0.
    nan
        ``"drop"`` rows whose score is null or NaN (counted), or ``"error"``.
    max_pairs_per_prompt
        Keep at most this many pairs per group, those with the largest margins.
    length_penalty
        Rank by ``score - length_penalty * len(response)`` (characters).
    seed
        Seed of ``best_vs_random``; the same seed gives the same pairs.
    carry
        Further columns copied from the chosen row.
    views
        ``False`` (default): text columns are plain ``large_string``, which every pyarrow
        compute function, pandas, polars, ``datasets`` and DuckDB take. ``True``: they are
        ``string_view`` arrays pointing into the input's buffers (no text copied; the fastest,
        but pyarrow has no ``take``/``filter``/``sort_by``/join kernels for them). See
        ``docs/outputs.md``.
    out, memory_limit, contiguous
        Out-of-core execution (``docs/stream.md``): with a path, glob, folder,
        ``pyarrow.dataset.Dataset`` or one of these, the input is streamed; ``out`` is a new
        folder the result is written to as Parquet (a ``pyarrow.dataset.Dataset`` is returned),
        ``memory_limit`` (``"2GB"``) bounds each in-memory step (spilling to a temporary folder
        when groups are not contiguous), ``contiguous=True`` promises groups never reappear.

    Returns
    -------
    pyarrow.Table
        ``prompt, chosen, rejected, score_chosen, score_rejected, margin, group_id, chosen_row,
        rejected_row`` (+ ``agreement, margin_std`` with several scores, + ``carry``), with the
        row accounting in its metadata (``pk.report_of``).

    Raises
    ------
    PrefkitError
        Missing or mistyped columns, NaN scores with ``nan="error"``, bad arguments.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({
    ...     "prompt": ["2+2?", "2+2?", "2+2?"],
    ...     "response": ["4", "5", "four"],
    ...     "score": [1.0, 0.0, 0.75],
    ... })
    >>> pairs = pk.mine_pairs(data, strategy="best_vs_all")
    >>> pairs.select(["chosen", "rejected", "margin"]).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'chosen': '4', 'rejected': 'four', 'margin': 0.25},
     {'chosen': '4', 'rejected': '5', 'margin': 1.0}]
    >>> pk.report_of(pairs)["dropped"]
    {}
    """
    scores = _names(score, "score")
    carry = _names(carry, "carry") if carry else []
    for argument, value in (("strategy", strategy), ("ties", ties), ("nan", nan)):
        if not isinstance(value, str):
            raise PrefkitError(f"{argument} must be a string, got {value!r}")
    _check_number("min_margin", min_margin)
    _check_number("length_penalty", length_penalty)
    _check_int("k", k, 1)
    _check_int("seed", seed, 0, 2**64 - 1)
    if max_pairs_per_prompt is not None:
        _check_int("max_pairs_per_prompt", max_pairs_per_prompt, 1)
    parameters = {
        "prompt": prompt,
        "response": response,
        "score": scores,
        "group": group,
        "strategy": strategy,
        "k": k,
        "min_margin": float(min_margin),
        "ties": ties,
        "nan": nan,
        "max_pairs_per_prompt": max_pairs_per_prompt,
        "length_penalty": float(length_penalty),
        "seed": seed,
        "carry": carry,
        "views": views,
    }
    if stream.is_streaming(data, out, memory_limit):
        return stream.run(
            mine_pairs, "mine_pairs", data, parameters, key=group or prompt,
            row_columns=("chosen_row", "rejected_row"), out=out, memory_limit=memory_limit,
            contiguous=contiguous,
        )
    table = as_table(data)
    check_nesting(table, [prompt, *carry], "mine_pairs")
    result, accounting = _core.mine_pairs(table, **without_views(parameters))
    result = plain_unless_views(as_table(result), views)
    return attach(result, "mine_pairs", parameters, accounting, source=table)


def unnest(
    data: Any,
    *,
    prompt: str = "prompt",
    completions: str = "completions",
    response: str = "response",
    score: str | Sequence[str] = "score",
    views: bool = False,
) -> pa.Table:
    """Turn nested rows (one prompt, a list of completion structs) into the long form.

    UltraFeedback-style rows hold ``completions: list<struct<response, score, ...>>``. The
    result has one row per completion: the row's other columns repeated, then the struct's
    fields as columns (``response`` and ``score`` named as their fields), and
    ``completion_index`` (int32, position in the list) and ``source_row`` (int64). Rows of one
    prompt stay contiguous, which is ``mine_pairs``'s fast path.

    Rows whose list is null or empty produce nothing and are counted (``null_completions``,
    ``empty_completions``) in the metadata. Text comes back plain (``large_string`` for
    string_view input) unless ``views=True`` (``docs/outputs.md``).

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> nested = pa.table({
    ...     "prompt": ["hi"],
    ...     "completions": [[{"response": "hello", "score": 4.0}, {"response": "yo", "score": 2.0}]],
    ... })
    >>> pk.unnest(nested).column_names
    ['prompt', 'response', 'score', 'completion_index', 'source_row']
    """
    table = as_table(data)
    scores = _names(score, "score")
    for name in (prompt, completions):
        if name not in table.column_names:
            raise PrefkitError(
                f"column '{name}' not found; the table has columns {table.column_names}"
            )
    lists = table.column(completions)
    list_type = lists.type
    if not (pa.types.is_list(list_type) or pa.types.is_large_list(list_type)) or not (
        pa.types.is_struct(list_type.value_type)
    ):
        raise PrefkitError(f"column '{completions}' must be list<struct<...>>, got {list_type}")
    fields = [f.name for f in list_type.value_type]
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise PrefkitError(
            f"column '{completions}' has structs with the field(s) {twice} more than once; "
            f"a field name must be unique to become a column"
        )
    for name in [response, *scores]:
        if name not in fields:
            raise PrefkitError(
                f"field '{name}' not found in column '{completions}'; its structs have fields "
                f"{fields}"
            )
    lists = lists.combine_chunks() if lists.num_chunks != 1 else lists.chunk(0)
    parents = pc.list_parent_indices(lists)
    flat = pc.list_flatten(lists)
    lengths = pc.list_value_length(lists)
    # Position of each completion in its list: a running index minus its list's start.
    starts = pc.subtract(pc.cumulative_sum(pc.fill_null(lengths, 0)), pc.fill_null(lengths, 0))
    position = pc.subtract(pa.array(range(len(flat)), pa.int64()), pc.take(starts, parents))
    others = [c for c in table.column_names if c != completions]
    # Through prefkit's take: pyarrow has no take kernel for string_view (polars' text).
    repeated = as_table(_core.take(table.select(others), parents.cast(pa.int64()), views=views))
    columns = {c: repeated.column(c) for c in others}
    ordered = [response, *scores] + [f for f in fields if f not in (response, *scores)]
    for name in ordered:
        if name in columns:
            raise PrefkitError(
                f"field '{name}' of '{completions}' clashes with the column of the same name"
            )
        columns[name] = pc.struct_field(flat, name)
    columns["completion_index"] = position.cast(pa.int32())
    columns["source_row"] = parents.cast(pa.int64())
    result = plain_unless_views(pa.table(columns), views)
    null_lists = lists.null_count
    empty_lists = pc.sum(pc.equal(lengths, 0)).as_py() or 0
    accounting = {
        "rows_in": table.num_rows,
        "rows_used": table.num_rows - null_lists - empty_lists,
        "dropped": {
            reason: count
            for reason, count in (
                ("null_completions", null_lists),
                ("empty_completions", empty_lists),
            )
            if count
        },
    }
    parameters = {
        "prompt": prompt,
        "completions": completions,
        "response": response,
        "score": scores,
        "views": views,
    }
    return attach(result, "unnest", parameters, accounting, source=table)


def split_prompt(
    data: Any,
    *,
    chosen: str = "chosen",
    rejected: str = "rejected",
    boundary: str | None = None,
    unsplittable: str = "drop",
    views: bool = False,
) -> pa.Table:
    r"""Split full conversations (HH-style) into ``prompt, chosen, rejected``.

    Each row holds the whole chosen and the whole rejected conversation; the prompt is what they
    share and the completions are the rest. Text and chat messages are both accepted (the two
    columns must be of the same kind). The exact rules are in ``docs/split_prompt.md``.

    - Text: the prompt is the longest common prefix (on a character boundary). With
      ``boundary`` (e.g. ``"\n\nAssistant:"``) it is cut back to the end of the last occurrence
      of ``boundary`` inside the shared prefix, so the prompt ends with the boundary and a
      completion that starts with the same words as the other one is not cut in the middle.
    - Chat messages (``list<struct<role, content, ...>>``): the prompt is the leading messages
      both conversations share (every field equal). With ``boundary`` (a role, e.g. ``"user"``)
      it is cut back to end with the last shared message of that role.

    Rows that cannot be split are dropped and counted by reason (``null_conversation``,
    ``identical``, ``no_shared_prompt``, ``empty_completion``), or raise with
    ``unsplittable="error"``.

    Parameters
    ----------
    data
        A table with the two conversation columns; other columns are kept (after
        ``prompt, chosen, rejected``).
    chosen, rejected
        The conversation columns: text (string, large_string, string_view) or chat messages.
    boundary
        Text: a separator that must end the prompt. Messages: the role of the prompt's last
        message. ``None``: the whole shared part is the prompt.
    unsplittable
        ``"drop"`` (count) or ``"error"`` (raise naming the row) for rows that cannot be split.
    views
        ``True``: text columns are string_view slices of the input's strings (no text is
        copied); default: plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        ``prompt, chosen, rejected`` then the input's other columns. Messages are lists of
        message structs (their text plain unless ``views=True``).

    Raises
    ------
    PrefkitError
        Missing or mistyped columns, an input column named ``prompt`` (or ``chosen`` /
        ``rejected`` besides the conversation columns), an empty ``boundary``, or an unsplittable
        row with ``unsplittable="error"``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> hh = pa.table({
    ...     "chosen": ["\n\nHuman: Hi!\n\nAssistant: Hello, how can I help?"],
    ...     "rejected": ["\n\nHuman: Hi!\n\nAssistant: Hello. Go away."],
    ... })
    >>> pk.split_prompt(hh, boundary="\n\nAssistant:").to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'prompt': '\n\nHuman: Hi!\n\nAssistant:', 'chosen': ' Hello, how can I help?',
      'rejected': ' Hello. Go away.'}]
    >>> chat = pa.table({
    ...     "chosen": [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]],
    ...     "rejected": [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]],
    ... })
    >>> pk.split_prompt(chat).column("rejected").to_pylist()
    [[{'role': 'assistant', 'content': '5'}]]
    """
    table = as_table(data)
    parameters = {
        "chosen": chosen,
        "rejected": rejected,
        "boundary": boundary,
        "unsplittable": unsplittable,
        "views": views,
    }
    result, accounting = _core.split_prompt(table, **without_views(parameters))
    result = plain_unless_views(as_table(result), views)
    return attach(result, "split_prompt", parameters, accounting, source=table)
