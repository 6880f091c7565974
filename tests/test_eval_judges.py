"""prefkit.eval.judges.judge_bias against the plain-Python reference on random data (ties,
NaNs, several judges, bootstrap intervals from the same draws) and bad input."""

from __future__ import annotations

import math

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from prefkit.eval.judges import judge_bias

MODELS = ["gpt", "llama", "qwen"]
STATS = ["position_consistency", "first_position_win_rate", "own_win_rate", "others_win_rate",
         "self_preference_lift", "gold_own_win_rate", "gold_lift"]

score = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.floats(0, 1),
                  st.just(math.nan), st.none())
row = st.fixed_dictionaries({"ab": score, "ba": score, "gold": score,
                             "source_a": st.sampled_from(MODELS),
                             "source_b": st.sampled_from(MODELS),
                             "judge": st.sampled_from(MODELS)})


def _nan(value):
    return math.nan if value is None else value


def _same(got, want):
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None
    return got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


def _reference_rows(rows, gold):
    keys = ("ab", "ba", "source_a", "source_b") + (("gold",) if gold else ())
    return [{k: _nan(r[k]) if k in ("ab", "ba", "gold") else r[k] for k in keys} for r in rows]


def _assert_matches(got, want, intervals):
    for key in STATS:
        assert _same(got[key], want[key]), (key, got[key], want[key])
        if intervals:
            assert _same(got[f"{key}_low"], want[f"{key}_low"]), key
            assert _same(got[f"{key}_high"], want[f"{key}_high"]), key


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(row, min_size=0, max_size=25), with_gold=st.booleans(),
       bootstrap=st.sampled_from([0, 7]), seed=st.integers(0, 3))
def test_several_judges_match_reference(rows, with_gold, bootstrap, seed):
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("ab", pa.float64()), ("ba", pa.float64()), ("gold", pa.float64()),
        ("source_a", pa.string()), ("source_b", pa.string()), ("judge", pa.string())]))
    out = judge_bias(table, "ab", "ba", source=("source_a", "source_b"), judge_column="judge",
                     gold="gold" if with_gold else None, bootstrap=bootstrap, seed=seed)
    rng = np.random.default_rng(seed)
    reference_rows = _reference_rows(rows, with_gold)
    dropped: dict = {}
    expected = []
    for name in MODELS:
        mine = [r for r, raw in zip(reference_rows, rows) if raw["judge"] == name]
        result, lost = ref.judge_bias(
            mine, judge=name, bootstrap=bootstrap, seed=seed,
            draws=lambda n: rng.integers(0, n, (bootstrap, n)).tolist())
        for reason, count in lost.items():
            dropped[reason] = dropped.get(reason, 0) + count
        if result["pairs"]:
            expected.append((name, result))
    got = out.to_pylist()
    assert [r["judge"] for r in got] == [name for name, _ in expected]
    for g, (name, want) in zip(got, expected):
        assert g["pairs"] == want["pairs"]
        _assert_matches(g, want, bool(bootstrap))
        if not with_gold:
            assert g["gold_lift"] is None
    report = pk.report_of(out)
    assert report["op"] == "judge_bias" and report["rows_in"] == len(rows)
    assert report["dropped"] == dropped
    assert report["rows_used"] + sum(dropped.values()) == len(rows)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=20), center=st.sampled_from([0.5, 0.25]))
def test_one_judge_and_no_judge(rows, center):
    values_ab = [_nan(r["ab"]) for r in rows]  # plain sequences instead of columns
    table = pa.Table.from_pylist(rows).select(["source_a", "source_b"])
    out = judge_bias(table, values_ab, np.array([_nan(r["ba"]) for r in rows]),
                     source=("source_a", "source_b"), judge="gpt", center=center, bootstrap=0)
    want, dropped = ref.judge_bias(_reference_rows(rows, False), judge="gpt", center=center)
    (got,) = out.to_pylist()
    assert got["judge"] == "gpt" and got["pairs"] == want["pairs"]
    _assert_matches(got, want, False)
    assert pk.report_of(out)["dropped"] == dropped
    # Without a judge name (or without sources) only the position figures exist.
    for kwargs in ({"source": ("source_a", "source_b")}, {"judge": "gpt"}):
        (got,) = judge_bias(table, values_ab, [_nan(r["ba"]) for r in rows], center=center,
                            bootstrap=0, **kwargs).to_pylist()
        assert _same(got["position_consistency"], want["position_consistency"])
        assert _same(got["first_position_win_rate"], want["first_position_win_rate"])
        assert all(got[key] is None for key in STATS[2:])


def test_worked_example_and_intervals():
    # Judge "gpt" always prefers the first position, and its own response when it can.
    table = pa.table({"source_a": ["gpt", "llama"] * 50, "source_b": ["llama", "gpt"] * 50,
                      "ab": [1.0, 0.9] * 50, "ba": [0.2, 1.0] * 50})
    out = judge_bias(table, "ab", "ba", source=("source_a", "source_b"), judge="gpt",
                     bootstrap=200, seed=1)
    (row,) = out.to_pylist()
    # Even rows: gpt (a) wins both orders; odd rows: first position wins both times.
    assert row["position_consistency"] == 0.5
    assert row["first_position_win_rate"] == 0.75
    assert row["own_win_rate"] == 0.75 and row["others_win_rate"] == 0.25
    assert row["self_preference_lift"] == 0.5
    assert row["own_appearances"] == 100
    assert row["position_consistency_low"] < 0.5 < row["position_consistency_high"]
    again = judge_bias(table, "ab", "ba", source=("source_a", "source_b"), judge="gpt",
                       bootstrap=200, seed=1)
    assert again.to_pylist() == out.to_pylist()
    other = judge_bias(table, "ab", "ba", source=("source_a", "source_b"), judge="gpt",
                       bootstrap=200, seed=2).to_pylist()[0]
    assert other["position_consistency_low"] != row["position_consistency_low"] or \
        other["position_consistency_high"] != row["position_consistency_high"]


def test_all_rows_dropped():
    table = pa.table({"ab": [math.nan, None], "ba": [0.5, math.nan]}, schema=pa.schema(
        [("ab", pa.float64()), ("ba", pa.float64())]))
    out = judge_bias(table, "ab", "ba", bootstrap=5)
    (row,) = out.to_pylist()
    assert row["pairs"] == 0 and row["position_consistency"] is None
    assert pk.report_of(out)["dropped"] == {"nan_score_ab": 2}


def test_bad_input():
    table = pa.table({"ab": [0.5], "ba": [0.1], "text": ["x"], "source_a": ["m"],
                      "source_b": [None]}, schema=pa.schema([
                          ("ab", pa.float64()), ("ba", pa.float64()), ("text", pa.string()),
                          ("source_a", pa.string()), ("source_b", pa.string())]))
    with pytest.raises(pk.PrefkitError, match="'nope'"):
        judge_bias(table, "nope", "ba")
    with pytest.raises(pk.PrefkitError, match="'text' must be numeric"):
        judge_bias(table, "ab", "text")
    with pytest.raises(pk.PrefkitError, match="judge_scores_ba has 2 values for 1 pairs"):
        judge_bias(table, "ab", [0.1, 0.2])
    with pytest.raises(pk.PrefkitError, match="'source_b' has a null model name at row 0"):
        judge_bias(table, "ab", "ba", source=("source_a", "source_b"), judge="m")
    with pytest.raises(pk.PrefkitError, match="source must be a pair"):
        judge_bias(table, "ab", "ba", source="source_a", judge="m")
    with pytest.raises(pk.PrefkitError, match="'ab' must hold model names"):
        judge_bias(table, "ab", "ba", judge_column="ab")
    with pytest.raises(pk.PrefkitError, match="not both"):
        judge_bias(table, "ab", "ba", judge="m", judge_column="source_a")
    with pytest.raises(pk.PrefkitError, match="bootstrap"):
        judge_bias(table, "ab", "ba", bootstrap=-1)
    with pytest.raises(pk.PrefkitError, match="confidence"):
        judge_bias(table, "ab", "ba", confidence=1.0)
