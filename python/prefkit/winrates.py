"""Win-probability matrices: win rates (SPPO's P(y > pi)), Borda/Copeland, pairs and lists by
win rate, 3-cycles and agreement with a scalar score (``docs/winrates.md``).

The input is the wide form ``pk.score_pairwise`` writes: one row per prompt with ``responses``
(K texts), ``win_prob`` (K x K, ``win_prob[a][b]`` = P(response a beats response b)), ``rows``
(the input row of each response) and ``group_id``. Pairs and lists by win rate are
``pk.mine_pairs`` / ``pk.rank_lists`` run on the long form of :func:`win_rates`, so they follow
those operations' rules exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import attach, report_of
from prefkit.io import as_table, plain_unless_views
from prefkit.lists import rank_lists
from prefkit.pairs import mine_pairs


def _matrix_parameters(
    prompt: str,
    responses: str,
    win_prob: str,
    rows: str | None,
    group_id: str | None,
    scores: str | None,
    tolerance: float,
) -> dict:
    for argument, value in (("prompt", prompt), ("responses", responses), ("win_prob", win_prob)):
        if not isinstance(value, str):
            raise PrefkitError(f"{argument} must be a column name, got {value!r}")
    for argument, value in (("rows", rows), ("group_id", group_id), ("scores", scores)):
        if value is not None and not isinstance(value, str):
            raise PrefkitError(f"{argument} must be a column name or None, got {value!r}")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool):
        raise PrefkitError(f"tolerance must be a number >= 0, got {tolerance!r}")
    return {
        "prompt": prompt,
        "responses": responses,
        "win_prob": win_prob,
        "rows": rows,
        "group_id": group_id,
        "scores": scores,
        "tolerance": float(tolerance),
    }


def win_rates(
    matrices: Any,
    *,
    prompt: str = "prompt",
    responses: str = "responses",
    win_prob: str = "win_prob",
    rows: str | None = "rows",
    group_id: str | None = "group_id",
    scores: str | None = None,
    tolerance: float = 1e-6,
    views: bool = False,
) -> pa.Table:
    """Turn win-probability matrices into one row per response with its win rate and ranks.

    For the K responses of a prompt and ``P = win_prob``: ``win_rate`` is the mean of
    ``P[a][b]`` over the K - 1 others (SPPO's P(y > pi) with pi uniform over the samples),
    ``borda`` their sum, ``copeland`` the number of others ``a`` beats minus the number it
    loses to (``a`` beats ``b`` when ``P[a][b] > P[b][a]``, i.e. ``P[a][b] > 1/2``; ties count
    0) and ``rank`` its place by win rate (1 = best; equal win rates rank in list order).
    Formulas and papers: ``docs/winrates.md``.

    Parameters
    ----------
    matrices
        One row per prompt (pyarrow, polars, pandas or any Arrow stream): ``responses``
        (list of text), ``win_prob`` (list of lists of floats, K x K), ``rows`` (list of
        integers), ``group_id`` (integer). list and large_list, any string type.
    prompt, responses, win_prob
        Column names.
    rows
        Column of each response's input row; ``None``: the row is the response's position in
        the exploded table (``pa.compute.list_flatten(responses)``).
    group_id
        Column of the prompt's group id (unique per row); ``None``: computed from the prompt as
        ``pk.mine_pairs`` does (xxh3 of the key).
    scores
        Optional column of per-response scalar scores (list of floats aligned with
        ``responses``), passed through as ``score``.
    tolerance
        Largest accepted ``|P[a][b] + P[b][a] - 1|``; the diagonal is never read.
    views
        ``True``: text columns are string_view into the input's buffers (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        ``prompt, response, row, win_rate, borda, copeland, rank, group_id`` (+ ``score``),
        matrices in input order, responses in list order. Rows of prompts with fewer than 2
        responses are dropped and counted as ``group_too_small``; the accounting (in responses,
        plus ``matrices_in``, ``matrices_used``) is in the metadata (``pk.report_of``).

    Raises
    ------
    PrefkitError
        Missing or mistyped columns; a matrix that is not K x K, a null or NaN cell, a cell
        outside [0, 1], ``P[a][b] + P[b][a]`` off 1 by more than ``tolerance`` (the message
        names the column, the row and the cell (a, b)); null responses, rows or scores;
        duplicate group ids.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> matrices = pa.table({
    ...     "prompt": ["2+2?"],
    ...     "responses": [["4", "5", "four"]],
    ...     "win_prob": [[[0.5, 0.9, 0.6], [0.1, 0.5, 0.2], [0.4, 0.8, 0.5]]],
    ...     "rows": [[0, 1, 2]],
    ... })
    >>> long = pk.win_rates(matrices, group_id=None)
    >>> long.select(["response", "win_rate", "copeland", "rank"]).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'response': '4', 'win_rate': 0.75, 'copeland': 2, 'rank': 1},
     {'response': '5', 'win_rate': 0.15000000000000002, 'copeland': -2, 'rank': 3},
     {'response': 'four', 'win_rate': 0.6000000000000001, 'copeland': 0, 'rank': 2}]
    """
    parameters = _matrix_parameters(prompt, responses, win_prob, rows, group_id, scores, tolerance)
    parameters["views"] = views
    table = as_table(matrices, argument="matrices")
    result, accounting = _core.win_rates(table, **parameters)
    result = plain_unless_views(as_table(result), views)
    return attach(result, "win_rates", parameters, accounting, source=table)


def _back_to_input(
    result: pa.Table, long: pa.Table, columns: Mapping[str, str], op: str, parameters: dict
) -> pa.Table:
    """A ``mine_pairs`` / ``rank_lists`` result over the long form with its row columns
    (``columns``: result column -> how to map it) turned back into the matrices' terms: input
    rows (the long form's ``row``) and the matrices' own ``group_id`` instead of the long
    form's row numbers and the id of the group column."""
    input_rows = long.column("row").combine_chunks()
    for name, kind in columns.items():
        column = result.column(name).combine_chunks()
        if kind == "list":
            mapped = pa.ListArray.from_arrays(
                column.offsets, input_rows.take(column.values.cast(pa.int64()))
            )
            first = pc.list_element(column, 0)
        else:
            mapped = input_rows.take(column)
            first = column
        result = result.set_column(result.schema.get_field_index(name), name, mapped)
    ids = long.column("group_id").combine_chunks().take(first)
    result = result.set_column(result.schema.get_field_index("group_id"), "group_id", ids)
    inner, outer = report_of(result), report_of(long)
    accounting = {
        "rows_in": outer["rows_in"],
        "rows_used": inner["rows_used"],
        "dropped": _merged(outer["dropped"], inner["dropped"]),
        "matrices_in": outer["matrices_in"],
        **{k: v for k, v in inner.items() if k not in _RECORD_KEYS},
    }
    return attach(result, op, parameters, accounting, source=long)


_RECORD_KEYS = {"op", "prefkit_version", "parameters", "rows_in", "rows_used", "rows_out",
                "dropped", "source"}


def _merged(first: Mapping[str, int], second: Mapping[str, int]) -> dict:
    merged = dict(first)
    for reason, count in second.items():
        merged[reason] = merged.get(reason, 0) + count
    return merged


def win_rate_pairs(
    matrices: Any,
    *,
    prompt: str = "prompt",
    responses: str = "responses",
    win_prob: str = "win_prob",
    rows: str | None = "rows",
    group_id: str | None = "group_id",
    scores: str | None = None,
    tolerance: float = 1e-6,
    strategy: str = "best_vs_worst",
    views: bool = False,
    **options: Any,
) -> pa.Table:
    """Mine chosen/rejected pairs by win rate from win-probability matrices.

    Exactly ``pk.mine_pairs(pk.win_rates(matrices, ...), score="win_rate", group="group_id",
    strategy=strategy, **options)``, with ``chosen_row`` / ``rejected_row`` mapped back to the
    responses' input rows (``rows``) and ``group_id`` to the matrices' own: every rule of
    ``mine_pairs`` (strategies, ``min_margin``, ``ties``, ``max_pairs_per_prompt``, ``k``,
    ``seed``...) applies to win rates, and ``margin`` is a difference of win rates.

    Parameters
    ----------
    matrices, prompt, responses, win_prob, rows, group_id, scores, tolerance
        As in :func:`win_rates`.
    strategy
        A ``mine_pairs`` strategy (``best_vs_worst``, ``all_pairs``, ...).
    views
        As in :func:`win_rates`.
    **options
        Further ``mine_pairs`` keywords: ``k``, ``min_margin``, ``ties``,
        ``max_pairs_per_prompt``, ``length_penalty``, ``seed``, ``carry`` (columns of the
        long form, e.g. ``("copeland", "score")``).

    Returns
    -------
    pyarrow.Table
        ``mine_pairs``' columns; the accounting (in responses: ``group_too_small`` from
        :func:`win_rates`, then ``mine_pairs``' drops) in its metadata.

    Raises
    ------
    PrefkitError
        As :func:`win_rates` and ``mine_pairs``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> matrices = pa.table({
    ...     "prompt": ["2+2?"],
    ...     "responses": [["4", "5", "four"]],
    ...     "win_prob": [[[0.5, 0.9, 0.6], [0.1, 0.5, 0.2], [0.4, 0.8, 0.5]]],
    ...     "rows": [[10, 11, 12]],
    ...     "group_id": pa.array([7], pa.uint64()),
    ... })
    >>> pairs = pk.win_rate_pairs(matrices)
    >>> pairs.select(["chosen", "rejected", "chosen_row", "rejected_row", "group_id"]).to_pylist()
    [{'chosen': '4', 'rejected': '5', 'chosen_row': 10, 'rejected_row': 11, 'group_id': 7}]
    """
    unknown = set(options) - _PAIR_OPTIONS
    if unknown:
        raise PrefkitError(
            f"win_rate_pairs got unexpected keywords {sorted(unknown)}; the mine_pairs "
            f"options it takes are {sorted(_PAIR_OPTIONS)}"
        )
    # The long form only feeds mine_pairs: as views, its text is copied once, into the pairs.
    long = win_rates(
        matrices, prompt=prompt, responses=responses, win_prob=win_prob, rows=rows,
        group_id=group_id, scores=scores, tolerance=tolerance, views=True,
    )
    pairs = mine_pairs(
        long, prompt="prompt", response="response", score="win_rate", group="group_id",
        strategy=strategy, views=views, **options,
    )
    parameters = {
        **report_of(long)["parameters"],
        "views": views,
        "strategy": strategy,
        **{k: (list(v) if k == "carry" else v) for k, v in options.items()},
    }
    return _back_to_input(
        pairs, long, {"chosen_row": "row", "rejected_row": "row"}, "win_rate_pairs", parameters
    )


_PAIR_OPTIONS = {"k", "min_margin", "ties", "max_pairs_per_prompt", "length_penalty", "seed",
                 "carry"}


def win_rate_lists(
    matrices: Any,
    *,
    prompt: str = "prompt",
    responses: str = "responses",
    win_prob: str = "win_prob",
    rows: str | None = "rows",
    group_id: str | None = "group_id",
    tolerance: float = 1e-6,
    list_size: int | None = None,
    min_list_size: int = 2,
    ties: str = "keep",
    views: bool = False,
) -> pa.Table:
    """Rank each prompt's responses by win rate, best first, as ``pk.rank_lists`` does.

    Exactly ``pk.rank_lists(pk.win_rates(matrices, ...), score="win_rate", group="group_id",
    ...)``, with ``rows`` mapped back to the responses' input rows and ``group_id`` to the
    matrices' own; ``scores`` holds the win rates.

    Parameters
    ----------
    matrices, prompt, responses, win_prob, rows, group_id, tolerance, views
        As in :func:`win_rates`.
    list_size, min_list_size, ties
        As in ``pk.rank_lists`` (``ties="drop"`` keeps one response of equal win rates).

    Returns
    -------
    pyarrow.Table
        ``prompt, responses, scores, rows, group_id``, one row per prompt.

    Raises
    ------
    PrefkitError
        As :func:`win_rates` and ``pk.rank_lists``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> matrices = pa.table({
    ...     "prompt": ["2+2?"],
    ...     "responses": [["4", "5", "four"]],
    ...     "win_prob": [[[0.5, 0.9, 0.6], [0.1, 0.5, 0.2], [0.4, 0.8, 0.5]]],
    ...     "rows": [[10, 11, 12]],
    ... })
    >>> lists = pk.win_rate_lists(matrices, group_id=None)
    >>> lists.select(["responses", "rows"]).to_pylist()
    [{'responses': ['4', 'four', '5'], 'rows': [10, 12, 11]}]
    """
    long = win_rates(  # views: the text is copied once, into the lists (win_rate_pairs)
        matrices, prompt=prompt, responses=responses, win_prob=win_prob, rows=rows,
        group_id=group_id, tolerance=tolerance, views=True,
    )
    lists = rank_lists(
        long, prompt="prompt", response="response", score="win_rate", group="group_id",
        list_size=list_size, min_list_size=min_list_size, ties=ties, views=views,
    )
    parameters = {
        **report_of(long)["parameters"],
        "views": views,
        "list_size": list_size,
        "min_list_size": min_list_size,
        "ties": ties,
    }
    return _back_to_input(lists, long, {"rows": "list"}, "win_rate_lists", parameters)


def intransitivity(
    matrices: Any,
    *,
    prompt: str = "prompt",
    responses: str = "responses",
    win_prob: str = "win_prob",
    group_id: str | None = "group_id",
    scores: str | None = None,
    tolerance: float = 1e-6,
) -> pa.Table:
    """Count the preference cycles of each prompt's matrix, and its agreement with scores.

    A 3-cycle is a triple with ``a`` beating ``b``, ``b`` beating ``c`` and ``c`` beating
    ``a`` (strictly: ``P[x][y] > P[y][x]``); a judge that a scalar reward could explain has
    none. With ``scores`` (per-response scalar scores, e.g. a reward model's), each unordered
    pair also votes: the judge and the scores agree when they prefer the same response; pairs
    where either is indifferent are ties, counted apart (``docs/winrates.md``).

    Parameters
    ----------
    matrices, prompt, responses, win_prob, group_id, tolerance
        As in :func:`win_rates`.
    scores
        Optional column of per-response scores (list of floats aligned with ``responses``).

    Returns
    -------
    pyarrow.Table
        One row per prompt with K >= 2: ``prompt, group_id, responses_count, cycles, triads``
        (K choose 3) and, with ``scores``, ``agreement`` (agreed / (agreed + disagreed), null
        when every pair ties), ``agreed_pairs, disagreed_pairs, tied_pairs``.

    Raises
    ------
    PrefkitError
        As :func:`win_rates`.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> rock_paper_scissors = [[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]]
    >>> matrices = pa.table({
    ...     "prompt": ["play"],
    ...     "responses": [["rock", "paper", "scissors"]],
    ...     "win_prob": [rock_paper_scissors],
    ...     "scores": [[3.0, 2.0, 1.0]],
    ... })
    >>> stats = pk.intransitivity(matrices, group_id=None, scores="scores")
    >>> stats.select(["cycles", "triads", "agreed_pairs", "disagreed_pairs"]).to_pylist()
    [{'cycles': 1, 'triads': 1, 'agreed_pairs': 2, 'disagreed_pairs': 1}]
    """
    parameters = _matrix_parameters(prompt, responses, win_prob, None, group_id, scores, tolerance)
    del parameters["rows"]
    table = as_table(matrices, argument="matrices")
    result, accounting = _core.intransitivity(table, rows=None, **parameters)
    result = plain_unless_views(as_table(result), False)
    return attach(result, "intransitivity", parameters, accounting, source=table)
