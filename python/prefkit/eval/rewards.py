"""Reward-model accuracy on preference pairs, with bootstrap intervals and diagnostics.

The formulas are in ``docs/eval.md``. Models are scored with ``pk.score_pairs`` (prefkit's
length-bucketed scoring engine); everything after that is column arithmetic in numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.eval.sections import rewardbench_score, rewardbench_sections
from prefkit.io import as_table

#: The columns of the ``evaluate_rewards`` result, in order.
RESULT_SCHEMA = pa.schema(
    [
        ("model", pa.large_string()),
        ("subset", pa.large_string()),
        ("pairs", pa.int64()),
        ("dropped", pa.int64()),
        ("wins", pa.int64()),
        ("ties", pa.int64()),
        ("accuracy", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
    ]
)

_TIE_VALUE = {"half": 0.5, "zero": 0.0}


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _is_column_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
    )


def _pair_name(columns: tuple[str, str]) -> str:
    """``("score_chosen_armo", "score_rejected_armo")`` -> ``"armo"``; else the chosen column."""
    c, r = columns
    if c.startswith("score_chosen_") and r == "score_rejected_" + c[len("score_chosen_"):]:
        return c[len("score_chosen_"):]
    return c


def _sources(model_or_scores: Any) -> list[tuple[str, Any]]:
    """``[(name, (chosen_col, rejected_col) | model)]`` in the caller's order."""
    if isinstance(model_or_scores, Mapping):
        items = [(str(k), v) for k, v in model_or_scores.items()]
        if not items:
            raise PrefkitError("model_or_scores must name at least one model or score columns")
        return items
    if _is_column_pair(model_or_scores):
        return [(_pair_name(model_or_scores), model_or_scores)]
    if isinstance(model_or_scores, list):
        if not model_or_scores or not all(_is_column_pair(v) for v in model_or_scores):
            raise PrefkitError(
                "a list in model_or_scores must hold (chosen_column, rejected_column) tuples; "
                "give several models as a dict name -> model"
            )
        names = [_pair_name(v) for v in model_or_scores]
        return list(zip(names, model_or_scores))
    if isinstance(model_or_scores, (str, Path)):
        return [(Path(str(model_or_scores)).name or str(model_or_scores), model_or_scores)]
    if model_or_scores is None:
        raise PrefkitError("model_or_scores is required: a model, a dict of models or columns")
    config = getattr(model_or_scores, "config", None)
    name = getattr(config, "_name_or_path", None) or type(model_or_scores).__name__
    return [(Path(str(name)).name or "model", model_or_scores)]


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 (NaN stays NaN) and a null mask, or an error naming it."""
    if name not in table.column_names:
        raise PrefkitError(f"column '{name}' not found; the table has columns {table.column_names}")
    column = table.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise PrefkitError(
            f"score column '{name}' must be numeric (an integer or float type), got {column.type}"
        )
    return column


def _values_and_nulls(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(
        column.cast(pa.float64()).fill_null(0.0).to_numpy(), dtype=np.float64
    ).copy()
    return values, nulls


def _subset_labels(table: pa.Table, subset: str | None) -> np.ndarray | None:
    """The subset column as an array of Python strings, or an error naming it."""
    if subset is None:
        return None
    if not isinstance(subset, str):
        raise PrefkitError(f"subset must be a column name or None, got {subset!r}")
    if subset not in table.column_names:
        raise PrefkitError(
            f"subset column '{subset}' not found; the table has columns {table.column_names}"
        )
    column = table.column(subset)
    dtype = column.type
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    allowed = (
        pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype) or pa.types.is_integer(dtype)
        or pa.types.is_boolean(dtype)
    )
    if not allowed:
        raise PrefkitError(
            f"subset column '{subset}' must hold text, integers or booleans, got {column.type}"
        )
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise PrefkitError(f"subset column '{subset}' has a null at row {row}")
    values = column.to_pylist()
    return np.array([str(v) for v in values], dtype=object)


def _char_lengths(table: pa.Table, name: str) -> tuple[np.ndarray | None, str | None]:
    """Characters per row of a text or chat-messages column (NaN for null), or why not."""
    if name not in table.column_names:
        return None, f"no column '{name}'"
    column = table.column(name)
    dtype = column.type
    if pa.types.is_dictionary(dtype):
        column = column.cast(dtype.value_type)
        dtype = column.type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(
        dtype
    ):
        if pa.types.is_string_view(dtype):
            column = column.cast(pa.large_string())
        lengths = pc.utf8_length(column).cast(pa.float64()).fill_null(math.nan)
        return np.asarray(lengths.to_numpy(), dtype=np.float64), None
    is_list = pa.types.is_list(dtype) or pa.types.is_large_list(dtype)
    if is_list and pa.types.is_struct(dtype.value_type):
        fields = [dtype.value_type.field(i).name for i in range(dtype.value_type.num_fields)]
        if "content" in fields:
            array = column.combine_chunks()
            n = len(array)
            flat = pc.list_flatten(array)
            parents = np.asarray(pc.list_parent_indices(array).to_numpy(), dtype=np.int64)
            content = pc.struct_field(flat, "content")
            if pa.types.is_string_view(content.type):
                content = content.cast(pa.large_string())
            chars = np.asarray(
                pc.utf8_length(content).cast(pa.float64()).fill_null(0.0).to_numpy(),
                dtype=np.float64,
            )
            lengths = np.bincount(parents, weights=chars, minlength=n).astype(np.float64)
            nulls = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            lengths[nulls] = math.nan
            return lengths, None
    return None, f"column '{name}' is {column.type}, not text or chat messages"


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def _percentile(sorted_values: np.ndarray, q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of sorted values."""
    return float(np.quantile(sorted_values, q))


def _bootstrap(wins: int, ties: int, n: int, tie_value: float, draws: int, seed: int):
    """95% percentile interval of the accuracy over ``draws`` resamples of the n pairs.

    Resampling n pairs with replacement only changes how many are wins, ties and losses, so a
    resample is one multinomial draw of (wins, ties, losses) with the observed shares: the same
    distribution as drawing pair indices, in O(draws) instead of O(draws x n). A fresh
    generator seeded with ``seed`` for every row keeps a row's interval independent of the
    other rows (and pairs the draws of two models on the same subset).
    """
    if n == 0 or draws == 0:
        return None, None
    rng = np.random.default_rng(seed)
    losses = n - wins - ties
    counts = rng.multinomial(n, [wins / n, ties / n, losses / n], size=draws)
    means = (counts[:, 0] + tie_value * counts[:, 1]) / n
    means.sort()
    return _percentile(means, 0.025), _percentile(means, 0.975)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _length_buckets(diff: np.ndarray, outcome: np.ndarray, buckets: int) -> list[dict]:
    """Accuracy per quantile bucket of ``diff`` (chars of chosen minus rejected).

    Edges are the ``buckets + 1`` quantiles of the differences, deduplicated; a bucket holds
    ``low <= diff < high`` (the last one also ``diff == high``).
    """
    keep = ~np.isnan(diff)
    diff, outcome = diff[keep], outcome[keep]
    if diff.size == 0:
        return []
    edges = np.unique(np.quantile(diff, np.linspace(0.0, 1.0, buckets + 1)))
    if edges.size == 1:
        return [{"low": float(edges[0]), "high": float(edges[0]), "pairs": int(diff.size),
                 "accuracy": float(outcome.mean()), "mean_length_diff": float(diff.mean())}]
    index = np.clip(np.searchsorted(edges, diff, side="right") - 1, 0, edges.size - 2)
    out = []
    for b in range(edges.size - 1):
        members = index == b
        count = int(members.sum())
        out.append({
            "low": float(edges[b]), "high": float(edges[b + 1]), "pairs": count,
            "accuracy": float(outcome[members].mean()) if count else None,
            "mean_length_diff": float(diff[members].mean()) if count else None,
        })
    return out


def _calibration(margin: np.ndarray, outcome: np.ndarray, buckets: int) -> dict:
    """Mean predicted P(chosen) = sigmoid(margin) against observed accuracy, per equal-width
    bucket of the predicted probability over [0, 1], and the expected calibration error."""
    predicted = _sigmoid(margin)
    index = np.minimum((predicted * buckets).astype(np.int64), buckets - 1)
    rows = []
    ece = 0.0
    n = predicted.size
    for b in range(buckets):
        members = index == b
        count = int(members.sum())
        row = {"low": b / buckets, "high": (b + 1) / buckets, "pairs": count,
               "mean_predicted": None, "accuracy": None}
        if count:
            row["mean_predicted"] = float(predicted[members].mean())
            row["accuracy"] = float(outcome[members].mean())
            ece += count / n * abs(row["accuracy"] - row["mean_predicted"])
        rows.append(row)
    return {"buckets": rows, "ece": float(ece) if n else None}


# --------------------------------------------------------------------------------------------
# The op
# --------------------------------------------------------------------------------------------


def evaluate_rewards(
    pairs: Any,
    model_or_scores: Any,
    *,
    subset: str | None = None,
    chosen: str = "chosen",
    rejected: str = "rejected",
    prompt: str | None = "prompt",
    ties: str = "half",
    bootstrap: int = 1000,
    seed: int = 0,
    length_buckets: int = 5,
    margin_buckets: int = 10,
    sections: str | None = None,
    tokenizer: Any = None,
    **options: Any,
) -> pa.Table:
    """Reward-model accuracy on preference pairs, per subset and overall, with 95% intervals.

    A pair scores 1 when the chosen response's score is above the rejected one's, 0.5 on a tie
    (``ties="half"``; ``ties="zero"`` counts a tie as wrong, as the ``rewardbench`` package
    does) and 0 otherwise; accuracy is the mean over pairs. A pair whose chosen or rejected
    score is null, NaN or infinite is dropped and counted by reason (``null_score``,
    ``nan_score``, ``infinite_score``). Intervals are seeded bootstrap percentile intervals
    (2.5% and 97.5% of ``bootstrap`` resamples of the row's pairs). ``docs/eval.md`` has the
    formulas and sources.

    Parameters
    ----------
    pairs
        One row per pair (pyarrow, polars, pandas, ``datasets``...).
    model_or_scores
        What gives the scores:

        - a reward model (folder path or loaded model, as in ``pk.score``): scored with
          ``pk.score_pairs``;
        - a dict ``name -> model`` (or ``name -> (chosen_col, rejected_col)``): one result per
          entry, and the agreement between them in the report;
        - already-scored columns: a tuple ``("score_chosen", "score_rejected")`` or a list of
          such tuples (``("score_chosen_armo", "score_rejected_armo")`` is named ``armo``).
    subset
        A column (text, integers or booleans; no nulls) naming each pair's subset: one row per
        subset is added to the overall row.
    chosen, rejected, prompt
        The text (or chat-message) columns scored by a model; ``chosen`` and ``rejected`` also
        give the length differences of the diagnostics. ``prompt=None`` scores responses alone.
    ties
        ``"half"`` (default): a tie counts 0.5; ``"zero"``: a tie counts 0.
    bootstrap
        Resamples per interval; 0 gives no intervals (null ``ci_low``/``ci_high``).
    seed
        Seed of the bootstrap generator (the same for every row).
    length_buckets
        Number of quantile buckets of chars(chosen) - chars(rejected) in the report.
    margin_buckets
        Number of equal-width buckets of sigmoid(margin) in the report's calibration.
    sections
        ``"rewardbench"``: also report RewardBench's section scores (Chat, Chat Hard, Safety,
        Reasoning; ``prefkit.eval.rewardbench_sections``) from the per-subset accuracies.
    tokenizer
        As in ``pk.score_pairs`` (a dict ``name -> tokenizer`` for several loaded models).
    **options
        Passed to ``pk.score_pairs`` (``max_tokens_per_batch``, ``chat_template``, ``device``,
        ``dtype``, ``max_length``, ``progress``, ``checkpoint``).

    Returns
    -------
    pyarrow.Table
        For each model, its overall row (``subset`` null) and then one row per subset in
        sorted order: ``model, subset, pairs`` (pairs used), ``dropped``, ``wins``, ``ties``,
        ``accuracy``, ``ci_low``, ``ci_high`` (null when a subset has no usable pair).
        ``pk.report_of(result)`` holds, per model, the dropped pairs by reason, accuracy by
        length-difference bucket (``length_buckets``), calibration by margin bucket
        (``calibration``: mean sigmoid(margin) against observed accuracy, and its expected
        calibration error), the scoring counts when a model was run, and, for several models,
        ``agreement``: for each two models, the share of pairs both scored on which they pick
        the same side (chosen, rejected or a tie).

    Raises
    ------
    PrefkitError
        A missing or non-numeric score column, a bad subset column or a bad argument; the
        message names the column.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> pairs = pa.table({
    ...     "chosen": ["4", "Paris", "blue", "yes"], "rejected": ["5", "Lyon", "red", "no"],
    ...     "score_chosen": [1.0, 2.0, 0.0, 3.0], "score_rejected": [0.0, 2.0, 1.0, 1.0],
    ...     "subset": ["math", "geo", "geo", "math"],
    ... })
    >>> result = pk.evaluate_rewards(pairs, ("score_chosen", "score_rejected"), subset="subset")
    >>> result.column("subset").to_pylist(), result.column("accuracy").to_pylist()
    ([None, 'geo', 'math'], [0.625, 0.25, 1.0])
    >>> pk.report_of(result)["models"]["score_chosen"]["dropped"]
    {}
    """
    table = as_table(pairs, argument="pairs")
    if ties not in _TIE_VALUE:
        raise PrefkitError(f"ties must be 'half' or 'zero', got {ties!r}")
    tie_value = _TIE_VALUE[ties]
    for label, value, low in (("bootstrap", bootstrap, 0), ("length_buckets", length_buckets, 1),
                              ("margin_buckets", margin_buckets, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise PrefkitError(f"{label} must be an integer >= {low}, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise PrefkitError(f"seed must be a non-negative integer, got {seed!r}")
    if sections not in (None, "rewardbench"):
        raise PrefkitError(f"sections must be None or 'rewardbench', got {sections!r}")
    if sections is not None and subset is None:
        raise PrefkitError("sections='rewardbench' needs subset= (the column of subset names)")

    sources = _sources(model_or_scores)
    names = [name for name, _ in sources]
    if len(set(names)) != len(names):
        raise PrefkitError(f"model names must be unique, got {names}")
    labels = _subset_labels(table, subset)
    n = table.num_rows

    # Score every model entry in one score_pairs call (each model one batch plan over 2 x n).
    models = {name: src for name, src in sources if not _is_column_pair(src)}
    scoring: dict[str, dict] = {}
    scored = None
    if models:
        from prefkit.scoring import score_pairs

        for forbidden in ("model", "pairs", "views"):
            if forbidden in options:
                raise PrefkitError(f"evaluate_rewards sets '{forbidden}' itself")
        scored = score_pairs(
            table, models, tokenizer=tokenizer, prompt=prompt, chosen=chosen, rejected=rejected,
            **options,
        )
        scoring = _report_models(scored)
    elif options:
        raise PrefkitError(
            f"options {sorted(options)} are for scoring a model; model_or_scores names columns"
        )

    lengths_c, why_c = _char_lengths(table, chosen)
    lengths_r, why_r = _char_lengths(table, rejected)
    length_diff = None if lengths_c is None or lengths_r is None else lengths_c - lengths_r
    length_note = why_c or why_r

    rows: list[dict] = []
    per_model: dict[str, dict] = {}
    sides: dict[str, np.ndarray] = {}
    valid_masks: dict[str, np.ndarray] = {}
    groups = [] if labels is None else sorted(set(labels.tolist()))
    for name, src in sources:
        if _is_column_pair(src):
            c_values, c_nulls = _values_and_nulls(_floats(table, src[0]))
            r_values, r_nulls = _values_and_nulls(_floats(table, src[1]))
        else:
            c_values, c_nulls = _values_and_nulls(scored.column(f"score_chosen_{name}"))
            r_values, r_nulls = _values_and_nulls(scored.column(f"score_rejected_{name}"))
        null = c_nulls | r_nulls
        nan = ~null & (np.isnan(c_values) | np.isnan(r_values))
        inf = ~null & ~nan & (np.isinf(c_values) | np.isinf(r_values))
        valid = ~(null | nan | inf)
        dropped = {reason: int(mask.sum()) for reason, mask in
                   (("null_score", null), ("nan_score", nan), ("infinite_score", inf))
                   if mask.any()}
        with np.errstate(invalid="ignore"):
            side = np.sign(c_values - r_values)
        outcome = np.where(side > 0, 1.0, np.where(side == 0, tie_value, 0.0))
        sides[name] = side
        valid_masks[name] = valid

        def add_row(mask: np.ndarray, group: str | None, name: str = name,
                    side: np.ndarray = side, valid: np.ndarray = valid) -> dict:
            used = mask & valid
            count = int(used.sum())
            wins = int((side[used] > 0).sum())
            tied = int((side[used] == 0).sum())
            accuracy = (wins + tie_value * tied) / count if count else None
            low, high = _bootstrap(wins, tied, count, tie_value, int(bootstrap), int(seed))
            row = {"model": name, "subset": group, "pairs": count,
                   "dropped": int(mask.sum()) - count, "wins": wins, "ties": tied,
                   "accuracy": accuracy, "ci_low": low, "ci_high": high}
            rows.append(row)
            return row

        add_row(np.ones(n, dtype=bool), None)
        by_subset = {}
        for group in groups:
            by_subset[group] = add_row(labels == group, group)["accuracy"]

        margin = c_values[valid] - r_values[valid]
        info: dict[str, Any] = {
            "columns": list(src) if _is_column_pair(src) else
            [f"score_chosen_{name}", f"score_rejected_{name}"],
            "pairs": int(valid.sum()),
            "dropped": dropped,
            "calibration": _calibration(margin, outcome[valid], int(margin_buckets)),
            "length_buckets": None if length_diff is None else
            _length_buckets(length_diff[valid], outcome[valid], int(length_buckets)),
        }
        if name in scoring:
            info["scoring"] = scoring[name]
        if sections == "rewardbench":
            present = {g: a for g, a in by_subset.items() if a is not None}
            info["sections"] = rewardbench_sections(present)
            # The leaderboard's score adds the prior sets (NaN, absent, becomes null).
            info["rewardbench_score"] = {
                key: None if math.isnan(value) else value
                for key, value in rewardbench_score(present).items()
            }
        per_model[name] = info

    agreement = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = valid_masks[a] & valid_masks[b]
            count = int(both.sum())
            same = int((sides[a][both] == sides[b][both]).sum())
            agreement.append({"a": a, "b": b, "pairs": count,
                              "agreement": same / count if count else None})

    result = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
    parameters = {
        "subset": subset, "chosen": chosen, "rejected": rejected, "prompt": prompt,
        "ties": ties, "bootstrap": int(bootstrap), "seed": int(seed),
        "length_buckets": int(length_buckets), "margin_buckets": int(margin_buckets),
        "sections": sections, "models": names,
        **{k: v for k, v in options.items() if k != "progress"},
    }
    if len(names) == 1:
        top_dropped = per_model[names[0]]["dropped"]
    else:
        top_dropped = {f"{reason} ({name})": count for name in names
                       for reason, count in per_model[name]["dropped"].items()}
    accounting = {"rows_in": n, "dropped": top_dropped, "models": per_model,
                  "agreement": agreement}
    if length_diff is None:
        accounting["length_buckets_skipped"] = length_note
    return attach(result, "evaluate_rewards", parameters, accounting)


def _report_models(scored: pa.Table) -> dict[str, dict]:
    from prefkit._provenance import report_of

    return dict(report_of(scored).get("models", {}))


__all__ = ["evaluate_rewards"]
