"""Preference strength, filter_pairs, length_stats and length_penalty, against the reference."""

from __future__ import annotations

import math

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import given
from hypothesis import strategies as st

SCORE = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0]),
    st.floats(-5, 5, allow_nan=False),
    st.sampled_from([None, math.nan]),
)


@st.composite
def scored_pairs(draw, models=None):
    m = models or draw(st.integers(1, 3))
    n = draw(st.integers(0, 15))
    rows = []
    for i in range(n):
        row = {
            "chosen": draw(st.text("ab é😀", max_size=8)),
            "rejected": draw(st.text("ab é😀", max_size=8)),
            "score_chosen": float(i),
            "score_rejected": float(-i),
            "margin": draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), SCORE)),
            "chosen_row": i,
            "rejected_row": 100 + i,
        }
        for j in range(m):
            row[f"rm{j}_c"] = draw(SCORE)
            row[f"rm{j}_r"] = draw(SCORE)
        rows.append(row)
    return rows, m


def table_of(rows: list[dict], m: int) -> pa.Table:
    schema = [("chosen", pa.string()), ("rejected", pa.string()), ("score_chosen", pa.float64()),
              ("score_rejected", pa.float64()), ("margin", pa.float64()),
              ("chosen_row", pa.int64()), ("rejected_row", pa.int64())]
    for j in range(m):
        schema += [(f"rm{j}_c", pa.float64()), (f"rm{j}_r", pa.float64())]
    return pa.Table.from_pylist(rows, schema=pa.schema(schema))


def columns(m: int) -> dict:
    return {"chosen_scores": [f"rm{j}_c" for j in range(m)],
            "rejected_scores": [f"rm{j}_r" for j in range(m)]}


@given(data=scored_pairs())
def test_strength_matches_reference(data):
    rows, m = data
    out = pk.preference_strength(table_of(rows, m), **columns(m))
    ref.assert_rows_equal(out.to_pylist(), ref.preference_strength(rows, **columns(m)))
    record = pk.report_of(out)
    assert record["rows_in"] == record["rows_out"] == len(rows)


@given(
    data=scored_pairs(),
    min_margin=st.sampled_from([None, 0.0, 0.75]),
    min_agreement=st.sampled_from([None, 0.5, 1.0]),
    max_std=st.sampled_from([None, 0.0, 1.0]),
    flip=st.booleans(),
)
def test_filter_matches_reference(data, min_margin, min_agreement, max_std, flip):
    rows, m = data
    strong = pk.preference_strength(table_of(rows, m), **columns(m))
    options = {"min_margin": min_margin, "min_agreement": min_agreement,
               "max_strength_std": max_std, "flip_disagreeing": flip}
    out = pk.filter_pairs(strong, **options)
    expected, accounting = ref.filter_pairs(
        ref.preference_strength(rows, **columns(m)), **options, **columns(m)
    )
    ref.assert_rows_equal(out.to_pylist(), expected)
    record = pk.report_of(out)
    assert {k: record[k] for k in accounting} == accounting
    assert record["rows_used"] + sum(record["dropped"].values()) == record["rows_in"]


def test_flip_without_known_score_columns_uses_one_minus_agreement():
    pairs = pa.table({"chosen": ["a"], "rejected": ["b"], "score_chosen": [1.0],
                      "score_rejected": [0.0], "margin": [1.0], "strength_mean": [-2.0],
                      "agreement": [0.25]})
    out = pk.filter_pairs(pairs, flip_disagreeing=True).to_pylist()[0]
    assert (out["chosen"], out["rejected"]) == ("b", "a")
    assert (out["score_chosen"], out["score_rejected"]) == (0.0, 1.0)
    assert (out["margin"], out["strength_mean"], out["agreement"]) == (-1.0, 2.0, 0.75)


def test_filter_on_mine_pairs_output_with_several_reward_models():
    rated = pa.table({
        "prompt": ["p", "p", "q", "q"],
        "response": ["a", "b", "c", "d"],
        "rm1": [1.0, 0.0, 1.0, 0.0],
        "rm2": [1.0, 0.0, 0.0, 5.0],
    })
    pairs = pk.mine_pairs(rated, score=["rm1", "rm2"], views=True)
    out = pk.filter_pairs(pairs, min_agreement=1.0, max_strength_std=0.1, views=True)
    assert out.column("chosen").to_pylist() == ["a"]
    assert pk.report_of(out)["dropped"] == {"low_agreement": 1}
    assert pk.report_of(out)["source"]["op"] == "mine_pairs"
    # string_view text survives the row selection
    assert out.schema.field("chosen").type == pa.string_view()


def test_strength_and_filter_errors_name_the_column():
    pairs = pa.table({"chosen": ["a"], "rejected": ["b"], "c1": [1.0], "r1": ["x"]})
    with pytest.raises(pk.PrefkitError, match="'r1'.*numeric"):
        pk.preference_strength(pairs, chosen_scores=["c1"], rejected_scores=["r1"])
    with pytest.raises(pk.PrefkitError, match="'r2'.*not found"):
        pk.preference_strength(pairs, chosen_scores=["c1"], rejected_scores=["r2"])
    with pytest.raises(pk.PrefkitError, match="same number"):
        pk.preference_strength(pairs, chosen_scores=["c1"], rejected_scores=["r1", "c1"])
    with pytest.raises(pk.PrefkitError, match="'strength_mean'.*preference_strength"):
        pk.filter_pairs(pairs, flip_disagreeing=True)
    with pytest.raises(pk.PrefkitError, match="'margin'.*not found"):
        pk.filter_pairs(pairs, min_margin=0.0)
    with pytest.raises(pk.PrefkitError, match="'strength_std'.*not found"):
        pk.filter_pairs(pairs, max_strength_std=1.0)


@st.composite
def length_pairs(draw):
    rows = []
    for _ in range(draw(st.integers(0, 15))):
        rows.append({
            "chosen": draw(st.one_of(st.none(), st.text("ab é😀", max_size=12))),
            "rejected": draw(st.text("ab é😀", max_size=12)),
            "margin": draw(SCORE),
        })
    return rows


@given(rows=length_pairs(), text_type=st.sampled_from([pa.string(), pa.string_view()]))
def test_length_stats_match_reference(rows, text_type):
    table = pa.table({
        "chosen": pa.array([r["chosen"] for r in rows], text_type),
        "rejected": pa.array([r["rejected"] for r in rows], text_type),
        "margin": pa.array([r["margin"] for r in rows], pa.float64()),
    })
    got, expected = pk.length_stats(table), ref.length_stats(rows)
    assert list(got) == list(expected)
    for key in expected:
        assert ref.same_value(got[key], expected[key], rel=1e-9), (key, got, expected)


def test_length_stats_of_chat_messages_count_content():
    chat = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    table = pa.table({
        "chosen": pa.array([[{"role": "assistant", "content": "long answer"}]], chat),
        "rejected": pa.array([[{"role": "assistant", "content": "no"}]], chat),
        "margin": [1.0],
    })
    stats = pk.length_stats(table)
    assert stats["mean_chosen_length"] == 11 and stats["chosen_longer"] == 1.0


# --------------------------------------------------------------------------------------------
# length_penalty is honoured by every strategy
# --------------------------------------------------------------------------------------------

RATED = pa.table({
    "prompt": ["p"] * 4,
    "response": ["x" * 100, "y", "zz", "w" * 50],
    "score": [1.0, 0.9, 0.5, 0.0],
})


@pytest.mark.parametrize("strategy", ref.STRATEGIES)
def test_length_penalty_changes_the_ranking_for_every_strategy(strategy):
    # Without a penalty the 100-character answer is best; with 0.01 per character its
    # effective score is 1.0 - 1.0 = 0.0, below "y" (0.89) and "zz" (0.48): "y" is the best.
    plain = pk.mine_pairs(RATED, strategy=strategy)
    penalised = pk.mine_pairs(RATED, strategy=strategy, length_penalty=0.01)
    assert plain.column("chosen")[0].as_py() == "x" * 100
    assert penalised.column("chosen")[0].as_py() == "y"
    rows = RATED.to_pylist()
    for table, penalty in ((plain, 0.0), (penalised, 0.01)):
        expected, accounting = ref.mine_pairs(rows, strategy=strategy, length_penalty=penalty)
        ref.assert_rows_equal(table.to_pylist(), expected, f"{strategy} {penalty}: ")
        assert ref.accounting_of(pk.report_of(table)) == accounting


@given(
    strategy=st.sampled_from(ref.STRATEGIES),
    penalty=st.sampled_from([-0.1, 0.01, 0.3]),
    responses=st.lists(st.text("ab😀", max_size=6), min_size=1, max_size=8),
    scores=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=8, max_size=8),
)
def test_length_penalty_matches_reference(strategy, penalty, responses, scores):
    rows = [{"prompt": "p", "response": r, "score": s} for r, s in zip(responses, scores)]
    out = pk.mine_pairs(pa.Table.from_pylist(rows), strategy=strategy, length_penalty=penalty,
                        k=2)
    expected, _ = ref.mine_pairs(rows, strategy=strategy, length_penalty=penalty, k=2)
    ref.assert_rows_equal(out.to_pylist(), expected)
