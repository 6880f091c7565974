"""Preference strength from several reward models, pair filtering, and length bias.

Column arithmetic over whole columns (numpy), no per-row Python. The rules are in
``docs/strength.md``; the recipe is from *Secrets of RLHF II* (several reward models, per pair
the mean and standard deviation of their margins; drop or flip pairs by strength).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import attach, report_of
from prefkit.io import as_table, plain_unless_views

#: The columns ``preference_strength`` adds (or replaces).
STRENGTH_COLUMNS = ("strength_mean", "strength_std", "agreement")


def _require(table: pa.Table, name: str, hint: str = "") -> pa.ChunkedArray:
    if name not in table.column_names:
        raise PrefkitError(
            f"column '{name}' not found; the table has columns {table.column_names}{hint}"
        )
    return table.column(name)


def _floats(table: pa.Table, name: str, hint: str = "") -> np.ndarray:
    """A numeric column as float64 with NaN for nulls, or a PrefkitError naming it."""
    column = _require(table, name, hint)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise PrefkitError(
            f"column '{name}' must be numeric (an integer or float type), got {column.type}"
        )
    values = column.cast(pa.float64()).to_numpy()
    return np.array(values, dtype=np.float64, copy=True)


def _names(value: str | Sequence[str], argument: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise PrefkitError(f"{argument} must be a column name or a list of them, got {value!r}")
    return names


def _set(table: pa.Table, name: str, values: Any) -> pa.Table:
    """Replace column ``name`` (in place) or append it."""
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def _strength(table: pa.Table, chosen: list[str], rejected: list[str]):
    """Per-pair (mean, population std, agreement) of the per-model margins; NaN where any
    score is null or NaN."""
    margins = np.stack([_floats(table, c) - _floats(table, r) for c, r in zip(chosen, rejected)])
    with np.errstate(invalid="ignore"):
        bad = np.isnan(margins).any(axis=0)
        mean = margins.mean(axis=0)
        std = np.sqrt(((margins - mean) ** 2).mean(axis=0))
        agreement = (margins > 0).mean(axis=0)
    mean[bad] = np.nan
    std[bad] = np.nan
    agreement[bad] = np.nan
    return mean, std, agreement


def preference_strength(
    pairs: Any,
    *,
    chosen_scores: str | Sequence[str],
    rejected_scores: str | Sequence[str],
    views: bool = False,
) -> pa.Table:
    """Add the preference strength of every pair as judged by several reward models.

    For reward model ``m`` the margin of a pair is ``chosen_scores[m] - rejected_scores[m]``.
    Three columns are added (replaced when present): ``strength_mean`` (mean margin),
    ``strength_std`` (population standard deviation of the margins) and ``agreement`` (share
    of models whose margin is > 0). A null or NaN score makes all three NaN for that pair.

    Parameters
    ----------
    pairs
        A pair table, one row per pair, with one score column per side and reward model.
    chosen_scores, rejected_scores
        Numeric columns, in the same model order: ``chosen_scores[m]`` and
        ``rejected_scores[m]`` are model ``m``'s scores of the two responses.
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The same rows with ``strength_mean, strength_std, agreement`` (float64); provenance
        counts ``nan_strength`` and ``disagreeing`` (``strength_mean < 0``) pairs.

    Raises
    ------
    PrefkitError
        Missing or non-numeric columns, or lists of different lengths.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> pairs = pa.table({"chosen": ["a", "b"], "rejected": ["x", "y"],
    ...                   "rm1_c": [1.0, 0.0], "rm1_r": [0.0, 1.0],
    ...                   "rm2_c": [3.0, 0.5], "rm2_r": [1.0, 0.0]})
    >>> out = pk.preference_strength(pairs, chosen_scores=["rm1_c", "rm2_c"],
    ...                              rejected_scores=["rm1_r", "rm2_r"])
    >>> out.select(["strength_mean", "strength_std", "agreement"]).to_pylist()
    [{'strength_mean': 1.5, 'strength_std': 0.5, 'agreement': 1.0}, \
{'strength_mean': -0.25, 'strength_std': 0.75, 'agreement': 0.5}]
    """
    table = as_table(pairs)
    chosen = _names(chosen_scores, "chosen_scores")
    rejected = _names(rejected_scores, "rejected_scores")
    if len(chosen) != len(rejected):
        raise PrefkitError(
            f"chosen_scores and rejected_scores must list the same number of columns (one per "
            f"reward model), got {len(chosen)} and {len(rejected)}"
        )
    mean, std, agreement = _strength(table, chosen, rejected)
    result = table
    for name, values in zip(STRENGTH_COLUMNS, (mean, std, agreement)):
        result = _set(result, name, pa.array(values, pa.float64()))
    with np.errstate(invalid="ignore"):
        accounting = {
            "rows_in": table.num_rows,
            "rows_used": table.num_rows,
            "dropped": {},
            "nan_strength": int(np.isnan(mean).sum()),
            "disagreeing": int((mean < 0).sum()),
        }
    parameters = {"chosen_scores": chosen, "rejected_scores": rejected}
    result = plain_unless_views(result, views)
    return attach(result, "preference_strength", parameters, accounting, source=table)


def _strength_columns(table: pa.Table) -> tuple[list[str], list[str]] | None:
    """The reward-model score columns of the latest ``preference_strength`` in the table's
    history, when they are all still in the table."""
    record = report_of(table)
    while record:
        if record.get("op") == "preference_strength":
            parameters = record.get("parameters", {})
            chosen = list(parameters.get("chosen_scores", []))
            rejected = list(parameters.get("rejected_scores", []))
            if chosen and all(c in table.column_names for c in chosen + rejected):
                return chosen, rejected
            return None
        record = record.get("source")
    return None


def _swap_pairs(table: pa.Table, extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Column pairs that trade places when a pair flips: names that differ only by
    ``chosen`` <-> ``rejected`` (``chosen``/``rejected``, ``score_chosen``/``score_rejected``,
    ``chosen_row``/``rejected_row``...), plus ``extra``."""
    names = table.column_names
    swaps = []
    for name in names:
        if "chosen" in name:
            other = name.replace("chosen", "rejected")
            if other in names and other != name:
                swaps.append((name, other))
    for a, b in extra:
        if (a, b) not in swaps and (b, a) not in swaps:
            swaps.append((a, b))
    return swaps


def _flip(table: pa.Table, flip: np.ndarray) -> pa.Table:
    """Swap chosen and rejected (and every paired column) in the rows where ``flip``."""
    n = table.num_rows
    known = _strength_columns(table)
    swaps = _swap_pairs(table, list(zip(*known)) if known else [])
    # Row i of a swapped column comes from its partner (row n + i of [column; partner]).
    index = np.arange(n, dtype=np.int64)
    index[flip] += n
    index = pa.array(index, pa.int64())
    for a, b in swaps:
        column_a, column_b = table.column(a), table.column(b)
        if column_a.type != column_b.type:
            raise PrefkitError(
                f"columns '{a}' and '{b}' must have the same type to be swapped, got "
                f"{column_a.type} and {column_b.type}"
            )
        stacked_a = pa.table({"x": pa.chunked_array(column_a.chunks + column_b.chunks, column_a.type)})
        stacked_b = pa.table({"x": pa.chunked_array(column_b.chunks + column_a.chunks, column_b.type)})
        new_a = as_table(_core.take(stacked_a, index)).column("x")
        new_b = as_table(_core.take(stacked_b, index)).column("x")
        table = _set(_set(table, a, new_a), b, new_b)
    mask = pa.array(flip, pa.bool_())
    for name in ("margin", "strength_mean"):
        if name in table.column_names:
            _floats(table, name)  # numeric, or an error naming the column
            values = table.column(name).combine_chunks()
            table = _set(table, name, pc.if_else(mask, pc.negate(values), values))
    if known:
        # Exact: recompute from the swapped per-model scores.
        mean, std, agreement = _strength(table, *known)
        for name, values in zip(STRENGTH_COLUMNS, (mean, std, agreement)):
            table = _set(table, name, pa.array(values, pa.float64()))
    elif "agreement" in table.column_names:
        # Without the per-model scores: models that preferred the old chosen now disagree.
        # Exact unless a model scored the pair as a tie (margin 0 counts for neither side).
        _floats(table, "agreement")
        values = table.column("agreement").combine_chunks()
        table = _set(table, "agreement", pc.if_else(mask, pc.subtract(1.0, values), values))
    return table


def take_rows(table: pa.Table, rows: Any) -> pa.Table:
    """Rows ``rows`` (row numbers, in that order) of ``table``, any column type included
    (string_view text is gathered, not copied); schema metadata is kept."""
    result = as_table(_core.take(table, pa.array(np.asarray(rows, np.int64), pa.int64())))
    return result.replace_schema_metadata(table.schema.metadata)


def filter_pairs(
    pairs: Any,
    *,
    min_margin: float | None = None,
    min_agreement: float | None = None,
    max_strength_std: float | None = None,
    flip_disagreeing: bool = False,
    views: bool = False,
) -> pa.Table:
    """Drop weak or contested pairs, or flip the ones the reward models disagree with.

    First, with ``flip_disagreeing``, every pair whose ``strength_mean`` is < 0 (the reward
    models prefer the rejected response) is flipped: ``chosen``/``rejected`` and every column
    pair named alike (``score_chosen``/``score_rejected``, ``chosen_row``/``rejected_row``,
    the reward-model score columns given to ``preference_strength``) trade places, and
    ``margin`` and ``strength_mean`` change sign. Then each pair is kept when it passes every
    given test (a null or NaN value fails), else dropped for the first test it fails:

    - ``margin > min_margin`` (``below_margin``), as ``mine_pairs``'s ``min_margin``;
    - ``agreement >= min_agreement`` (``low_agreement``);
    - ``strength_std <= max_strength_std`` (``high_strength_std``); ``margin_std`` (from
      ``mine_pairs`` with several score columns) is used when there is no ``strength_std``.

    Parameters
    ----------
    pairs
        A pair table (``mine_pairs``, optionally ``preference_strength``).
    min_margin, min_agreement, max_strength_std
        Thresholds; ``None`` skips the test.
    flip_disagreeing
        Flip pairs with ``strength_mean < 0`` instead of keeping them as they are.
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The kept pairs, in input order; provenance: ``dropped`` by reason and ``flipped``.

    Raises
    ------
    PrefkitError
        A test's column is missing or not numeric.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> pairs = pa.table({"chosen": ["a", "b", "c"], "rejected": ["x", "y", "z"],
    ...                   "margin": [2.0, 0.5, 1.0], "strength_mean": [1.0, 0.2, -0.7],
    ...                   "strength_std": [0.1, 0.2, 0.3], "agreement": [1.0, 0.5, 0.0]})
    >>> out = pk.filter_pairs(pairs, min_agreement=0.6, flip_disagreeing=True)
    >>> out.select(["chosen", "rejected", "margin", "agreement"]).to_pylist()
    [{'chosen': 'a', 'rejected': 'x', 'margin': 2.0, 'agreement': 1.0}, \
{'chosen': 'z', 'rejected': 'c', 'margin': -1.0, 'agreement': 1.0}]
    >>> pk.report_of(out)["dropped"], pk.report_of(out)["flipped"]
    ({'low_agreement': 1}, 1)

    A flipped pair's ``margin`` (the original ensemble margin, negated) is negative, so
    ``min_margin`` drops it: after flipping, filter by the reward models' ``agreement`` and
    ``strength_std`` instead.
    """
    source = table = as_table(pairs)
    n = table.num_rows
    flipped = 0
    if flip_disagreeing:
        hint = "; run pk.preference_strength first"
        with np.errstate(invalid="ignore"):
            flip = _floats(table, "strength_mean", hint) < 0
        flipped = int(flip.sum())
        if flipped:
            table = _flip(table, flip)
    for argument, bound in (("min_margin", min_margin), ("min_agreement", min_agreement),
                            ("max_strength_std", max_strength_std)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
            raise PrefkitError(f"{argument} must be a number or None, got {bound!r}")
    reason = np.full(n, "", dtype=object)
    tests = []
    if min_margin is not None:
        tests.append(("below_margin", lambda: _floats(table, "margin") > min_margin))
    if min_agreement is not None:
        tests.append(("low_agreement", lambda: _floats(table, "agreement") >= min_agreement))
    if max_strength_std is not None:
        std = "strength_std" if "strength_std" in table.column_names else "margin_std"
        if std not in table.column_names:
            _require(table, "strength_std", "; run pk.preference_strength first")
        tests.append(("high_strength_std", lambda: _floats(table, std) <= max_strength_std))
    keep = np.ones(n, dtype=bool)
    for name, test in tests:
        with np.errstate(invalid="ignore"):
            passed = test()
        reason[keep & ~passed] = name
        keep &= passed
    dropped = {name: int((reason == name).sum()) for name, _ in tests}
    result = table if keep.all() else take_rows(table, np.flatnonzero(keep))
    accounting = {
        "rows_in": n,
        "rows_used": int(keep.sum()),
        "dropped": {k: v for k, v in dropped.items() if v},
        "flipped": flipped,
    }
    parameters = {
        "min_margin": min_margin,
        "min_agreement": min_agreement,
        "max_strength_std": max_strength_std,
        "flip_disagreeing": flip_disagreeing,
    }
    result = plain_unless_views(result, views)
    return attach(result, "filter_pairs", parameters, accounting, source=source)


def lengths(table: pa.Table, column: str) -> np.ndarray:
    """Length in characters of every row of a text or chat-message column (float64, NaN for
    null). Messages count the characters of their ``content`` fields."""
    values = _require(table, column)
    dtype = values.type
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        item = dtype.value_type
        if not (pa.types.is_struct(item) and item.get_field_index("content") >= 0):
            raise PrefkitError(
                f"column '{column}' must be text or chat messages (list<struct<role, content>>),"
                f" got {dtype}"
            )
        flat = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        parents = pc.list_parent_indices(flat).to_numpy()
        content = pc.struct_field(pc.list_flatten(flat), "content")
        counts = _text_lengths(pa.table({"content": content}), "content")
        per_row = np.bincount(parents, weights=np.nan_to_num(counts), minlength=len(flat))
        per_row = per_row.astype(np.float64)
        per_row[flat.is_null().to_numpy(zero_copy_only=False)] = np.nan
        return per_row
    return _text_lengths(table, column)


def _text_lengths(table: pa.Table, column: str) -> np.ndarray:
    array = pa.array(_core.text_lengths(table, column))
    return array.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _share(mask: np.ndarray, n: int) -> float | None:
    return float(mask.sum()) / n if n else None


def length_stats(
    pairs: Any, *, chosen: str = "chosen", rejected: str = "rejected", margin: str = "margin"
) -> dict:
    """Length bias of a pair table: is the chosen response just the longer one?

    Lengths are in characters (as ``mine_pairs``'s ``length_penalty``); chat messages count
    the characters of their ``content``. Pairs where either side is null are left out.

    Returns
    -------
    dict
        ``pairs`` (counted), ``chosen_longer``, ``rejected_longer``, ``same_length`` (shares of
        pairs), ``mean_chosen_length``, ``mean_rejected_length``, ``mean_length_ratio`` (mean
        of ``len(chosen) / len(rejected)`` over pairs with a non-empty rejected) and
        ``margin_length_correlation`` (Pearson correlation of ``margin`` with ``len(chosen) -
        len(rejected)`` over pairs with a finite margin; ``None`` without a ``margin`` column,
        with fewer than 2 such pairs, or when either side is constant). Shares and means are
        ``None`` when no pair counts.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> pairs = pa.table({"chosen": ["a long answer", "yes"], "rejected": ["no", "nope"],
    ...                   "margin": [2.0, 1.0]})
    >>> stats = pk.length_stats(pairs)
    >>> stats["chosen_longer"], stats["mean_length_ratio"], stats["margin_length_correlation"]
    (0.5, 3.625, 1.0)
    """
    table = as_table(pairs)
    c, r = lengths(table, chosen), lengths(table, rejected)
    ok = ~(np.isnan(c) | np.isnan(r))
    c, r = c[ok], r[ok]
    n = len(c)
    nonempty = r > 0
    stats: dict[str, Any] = {
        "pairs": n,
        "chosen_longer": _share(c > r, n),
        "rejected_longer": _share(c < r, n),
        "same_length": _share(c == r, n),
        "mean_chosen_length": float(c.mean()) if n else None,
        "mean_rejected_length": float(r.mean()) if n else None,
        "mean_length_ratio": float((c[nonempty] / r[nonempty]).mean()) if nonempty.any() else None,
        "margin_length_correlation": None,
    }
    if margin in table.column_names:
        m = _floats(table, margin)[ok]
        finite = np.isfinite(m)
        x, y = m[finite], (c - r)[finite]
        if len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
            # Pearson's r from centred sums; sqrt each sum so tiny ones do not underflow.
            dx, dy = x - x.mean(), y - y.mean()
            sxx, syy = float((dx * dx).sum()), float((dy * dy).sum())
            if sxx > 0 and syy > 0:
                corr = float((dx * dy).sum()) / (math.sqrt(sxx) * math.sqrt(syy))
                stats["margin_length_correlation"] = corr if math.isfinite(corr) else None
    return stats
