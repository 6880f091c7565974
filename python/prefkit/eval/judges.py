"""LLM-as-a-judge biases: position bias and self-preference, with bootstrap intervals.

A pairwise judge sees two responses ``a`` and ``b`` to the same prompt. It is asked twice,
once with ``a`` in the first position (order AB) and once with ``b`` first (order BA), and
returns for each order a value for "the first-shown response wins" (a probability ``P(first
wins)``, or any score where above ``center`` means the first one wins). From these:

- *position consistency*: the share of pairs with the same verdict in both orders (``a`` wins
  both times, ``b`` wins both times, or a tie both times);
- *first-position win rate*: over all presentations (two per pair), the share won by the
  response shown first (a tie counts half); 0.5 for a judge without position bias;
- *self-preference* ("Beyond the Surface: Measuring Self-Preference in LLM Judgments", Chen et
  al. 2025, arXiv:2506.02592): with the generator of each response (``source``) and the judge's
  model name, the judge's *win-rate lift* on its own outputs is the win rate of the responses
  its own model generated minus the win rate of the responses of other models, both as judged
  by that judge. That paper points out that this raw difference mixes self-preference with a
  real quality difference and measures the bias against gold judgments instead (its DBG score:
  the judge's preference for its own responses minus the gold judgments' preference for them);
  with a ``gold`` column the DBG-style lift is reported too.

A response's *win score* in a pair is its position-averaged verdict: ``(w_AB + w_BA) / 2``
where ``w`` is 1 for a win, 0 for a loss and 0.5 for a tie in that order. Win rates are means
of win scores over the response's appearances.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table

_STATS = ("position_consistency", "first_position_win_rate", "own_win_rate", "others_win_rate",
          "self_preference_lift", "gold_own_win_rate", "gold_lift")


def _values(table: pa.Table, value: Any, argument: str) -> np.ndarray:
    """A float64 vector from a column name of ``table`` or an array-like of one per row."""
    if isinstance(value, str):
        if value not in table.column_names:
            raise PrefkitError(f"{argument}: column {value!r} not in pairs; it has columns "
                               f"{table.column_names}")
        column = table.column(value)
        name = f"column {value!r}"
    else:
        try:
            if isinstance(value, pa.ChunkedArray):
                column = value
            elif isinstance(value, pa.Array):
                column = pa.chunked_array([value])
            else:
                column = pa.chunked_array([pa.array(list(np.asarray(value, dtype=object)))])
        except (TypeError, ValueError, pa.ArrowException) as error:
            raise PrefkitError(f"{argument} must be a column name or one number per pair: "
                               f"{error}") from error
        name = argument
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
            or pa.types.is_null(column.type)):
        raise PrefkitError(f"{name} must be numeric, got {column.type}")
    if len(column) != table.num_rows:
        raise PrefkitError(f"{name} has {len(column)} values for {table.num_rows} pairs")
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _names(table: pa.Table, column: str, argument: str) -> list[str]:
    if column not in table.column_names:
        raise PrefkitError(f"{argument}: column {column!r} not in pairs; it has columns "
                           f"{table.column_names}")
    kind = table.schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)):
        raise PrefkitError(f"column {column!r} must hold model names (string), got {kind}")
    values = table.column(column).to_pylist()
    if None in values:
        raise PrefkitError(f"column {column!r} has a null model name at row "
                           f"{values.index(None)}")
    return values


def _verdict(values: np.ndarray, center: float) -> np.ndarray:
    """1 when the first-shown response wins, 0 when it loses, 0.5 on a tie."""
    return np.where(values > center, 1.0, np.where(values < center, 0.0, 0.5))


def _statistics(first_ab: np.ndarray, first_ba: np.ndarray, own_a: np.ndarray,
                own_b: np.ndarray, gold_a: np.ndarray | None) -> dict[str, float]:
    """All figures of one set of rows (possibly a bootstrap resample); NaN when undefined."""
    n = len(first_ab)
    out = dict.fromkeys(_STATS, math.nan)
    if n == 0:
        return out
    win_a = (first_ab + (1.0 - first_ba)) / 2.0
    out["position_consistency"] = float((first_ab == 1.0 - first_ba).mean())
    out["first_position_win_rate"] = float((first_ab.sum() + first_ba.sum()) / (2 * n))
    own_scores = np.concatenate([win_a[own_a], 1.0 - win_a[own_b]])
    other_scores = np.concatenate([win_a[~own_a], 1.0 - win_a[~own_b]])
    if len(own_scores):
        out["own_win_rate"] = float(own_scores.mean())
    if len(other_scores):
        out["others_win_rate"] = float(other_scores.mean())
    out["self_preference_lift"] = out["own_win_rate"] - out["others_win_rate"]
    if gold_a is not None and len(own_scores):
        gold_own = np.concatenate([gold_a[own_a], 1.0 - gold_a[own_b]])
        out["gold_own_win_rate"] = float(gold_own.mean())
        out["gold_lift"] = out["own_win_rate"] - out["gold_own_win_rate"]
    return out


def judge_bias(
    pairs: Any,
    judge_scores_ab: Any,
    judge_scores_ba: Any,
    *,
    source: tuple[str, str] | None = None,
    judge: str | None = None,
    judge_column: str | None = None,
    gold: Any = None,
    center: float = 0.5,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pa.Table:
    """Position bias and self-preference of pairwise LLM judges, with bootstrap intervals.

    Each row of ``pairs`` is one judged pair of responses ``a`` and ``b``. See the module
    docstring for the definitions and their source.

    Parameters
    ----------
    pairs
        A table, one row per judged pair (e.g. ``pk.mine_pairs`` output: ``a`` is then the
        chosen side, ``b`` the rejected one, or any other assignment).
    judge_scores_ab
        The judge's value for "the first-shown response wins" with ``a`` shown first: a
        column name of ``pairs`` or one number per row. ``P(first wins)`` with the default
        ``center=0.5``; any score with a matching ``center`` (e.g. ``0`` for a log-odds).
    judge_scores_ba
        The same with ``b`` shown first (so a value above ``center`` means ``b`` wins).
    source
        ``(source_a, source_b)``: the two columns naming the model that generated ``a`` and
        ``b`` (strings, no nulls). Needed for the self-preference figures.
    judge
        The judge's model name, compared with the ``source`` names; for a table judged by one
        judge.
    judge_column
        Instead of ``judge``: a column naming each row's judge, for several judges at once
        (one result row each).
    gold
        Optional gold verdict per pair (column name or values): above ``center`` means ``a``
        is better, below ``b``, equal a tie. Adds the DBG-style ``gold_own_win_rate`` and
        ``gold_lift`` (own win rate by the judge minus by the gold verdicts).
    center
        The value that means "tie".
    bootstrap
        Bootstrap resamples for the intervals (0: no intervals). Rows of a judge are
        resampled with replacement; the interval is the percentile interval of the resampled
        statistics (``numpy.nanquantile``, linear interpolation), skipping resamples where the
        statistic is undefined.
    confidence
        The intervals' coverage, in (0, 1).
    seed
        Seed of the ``numpy.random.default_rng`` that draws the resamples (judges in sorted
        order, one ``integers(0, rows, (bootstrap, rows))`` draw each): the same seed gives
        the same intervals.

    Returns
    -------
    pyarrow.Table
        One row per judge (sorted by name; ``judge`` null when no judge is named): ``judge``,
        ``pairs`` (rows used), ``own_appearances`` (responses of the judge's own model), and
        for each of ``position_consistency``, ``first_position_win_rate``, ``own_win_rate``,
        ``others_win_rate``, ``self_preference_lift``, ``gold_own_win_rate`` and
        ``gold_lift`` the value and its ``_low`` / ``_high`` bounds (null where undefined: no
        ``source``, no own or no other responses, no ``gold``). Rows with a null or NaN score
        (or gold value) are dropped and counted in the provenance (``dropped``:
        ``nan_score_ab``, ``nan_score_ba``, ``nan_gold``, first reason of a row only).

    Examples
    --------
    >>> import pyarrow as pa, prefkit as pk
    >>> from prefkit.eval.judges import judge_bias
    >>> pairs = pa.table({"source_a": ["gpt", "gpt", "llama"], "source_b": ["llama"] * 3,
    ...                   "ab": [0.9, 0.8, 0.7], "ba": [0.3, 0.6, 0.8]})
    >>> out = judge_bias(pairs, "ab", "ba", source=("source_a", "source_b"), judge="gpt",
    ...                  bootstrap=0)
    >>> row = out.to_pylist()[0]
    >>> row["position_consistency"], row["first_position_win_rate"]
    (0.3333333333333333, 0.8333333333333334)
    >>> row["own_win_rate"], row["self_preference_lift"]
    (0.75, 0.375)
    """
    table = as_table(pairs, argument="pairs")
    if not isinstance(bootstrap, int) or isinstance(bootstrap, bool) or bootstrap < 0:
        raise PrefkitError(f"bootstrap must be an integer >= 0, got {bootstrap!r}")
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise PrefkitError(f"confidence must be in (0, 1), got {confidence!r}")
    if not isinstance(center, (int, float)) or isinstance(center, bool) or math.isnan(center):
        raise PrefkitError(f"center must be a number, got {center!r}")
    if judge is not None and judge_column is not None:
        raise PrefkitError("pass judge (one name) or judge_column (a column), not both")
    if judge is not None and not isinstance(judge, str):
        raise PrefkitError(f"judge must be the judge's model name (str), got {judge!r}")
    scores_ab = _values(table, judge_scores_ab, "judge_scores_ab")
    scores_ba = _values(table, judge_scores_ba, "judge_scores_ba")
    gold_values = _values(table, gold, "gold") if gold is not None else None
    n = table.num_rows
    if source is not None:
        if (isinstance(source, str) or not isinstance(source, (tuple, list))
                or len(source) != 2):
            raise PrefkitError(f"source must be a pair of column names (source_a, source_b), "
                               f"got {source!r}")
        source_a = np.array(_names(table, source[0], "source"), dtype=object)
        source_b = np.array(_names(table, source[1], "source"), dtype=object)
    judges = (np.array(_names(table, judge_column, "judge_column"), dtype=object)
              if judge_column is not None else np.full(n, judge, dtype=object))

    reasons = [("nan_score_ab", np.isnan(scores_ab)), ("nan_score_ba", np.isnan(scores_ba))]
    if gold_values is not None:
        reasons.append(("nan_gold", np.isnan(gold_values)))
    keep = np.ones(n, bool)
    dropped: dict[str, int] = {}
    for reason, bad in reasons:
        count = int((bad & keep).sum())
        if count:
            dropped[reason] = count
        keep &= ~bad

    first_ab, first_ba = _verdict(scores_ab, center), _verdict(scores_ba, center)
    gold_a = _verdict(gold_values, center) if gold_values is not None else None
    groups: list[str | None] = (sorted(set(judges[keep])) if judge_column is not None
                                else [judge])
    rng = np.random.default_rng(seed)
    low_q, high_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    rows = []
    for name in groups:
        index = np.flatnonzero(keep & (judges == name))
        if source is not None and name is not None:
            own_a, own_b = source_a[index] == name, source_b[index] == name
        else:
            own_a = own_b = np.zeros(len(index), bool)

        def stats(take: np.ndarray, own_a=own_a, own_b=own_b, index=index) -> dict:
            rows_ = index[take]
            return _statistics(first_ab[rows_], first_ba[rows_], own_a[take], own_b[take],
                               None if gold_a is None else gold_a[rows_])

        point = stats(np.arange(len(index)))
        if source is None or name is None:
            for key in _STATS[2:]:
                point[key] = math.nan
        row: dict[str, Any] = {"judge": name, "pairs": len(index),
                               "own_appearances": int(own_a.sum() + own_b.sum())}
        samples: dict[str, list[float]] = {key: [] for key in _STATS}
        if bootstrap and len(index):
            draws = rng.integers(0, len(index), (bootstrap, len(index)))
            for take in draws:
                for key, value in stats(take).items():
                    samples[key].append(value)
        for key in _STATS:
            value = point[key]
            values = np.array(samples[key], np.float64)
            ok = not math.isnan(value) and len(values) and not np.isnan(values).all()
            row[key] = None if math.isnan(value) else value
            row[f"{key}_low"] = float(np.nanquantile(values, low_q)) if ok else None
            row[f"{key}_high"] = float(np.nanquantile(values, high_q)) if ok else None
        rows.append(row)

    fields = [pa.field("judge", pa.large_string()), pa.field("pairs", pa.int64()),
              pa.field("own_appearances", pa.int64())]
    fields += [pa.field(f"{key}{suffix}", pa.float64()) for key in _STATS
               for suffix in ("", "_low", "_high")]
    out = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    parameters = {"judge_scores_ab": judge_scores_ab if isinstance(judge_scores_ab, str)
                  else "values", "judge_scores_ba": judge_scores_ba
                  if isinstance(judge_scores_ba, str) else "values",
                  "source": list(source) if source is not None else None, "judge": judge,
                  "judge_column": judge_column, "gold": gold if isinstance(gold, str) or
                  gold is None else "values", "center": center, "bootstrap": bootstrap,
                  "confidence": confidence, "seed": seed}
    return attach(out, "judge_bias", parameters,
                  {"rows_in": n, "rows_used": int(keep.sum()), "dropped": dropped,
                   "ties_ab": int((first_ab[keep] == 0.5).sum()),
                   "ties_ba": int((first_ba[keep] == 0.5).sum())})
