"""``pk.order_curriculum`` against ``tests/reference.py`` and its documented behaviour."""

from __future__ import annotations

import math

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import given, note
from hypothesis import strategies as st

MARGINS = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 0.5]),
    st.sampled_from([None, math.nan, math.inf]),
    st.floats(-3, 3, allow_nan=False),
)


@st.composite
def pair_tables(draw):
    n = draw(st.integers(0, 25))
    prompts = draw(st.lists(st.text("ab中\U0001f600", max_size=3), min_size=1, max_size=4))
    rows = [
        {
            "prompt": draw(st.one_of(st.sampled_from(prompts), st.none())),
            "margin": draw(MARGINS),
            "id": i,
        }
        for i in range(n)
    ]
    schema = pa.schema([("prompt", pa.string()), ("margin", pa.float64()), ("id", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


PARAMETERS = st.fixed_dictionaries(
    {
        "order": st.sampled_from(["easy_to_hard", "hard_to_easy"]),
        "stages": st.sampled_from([None, 1, 2, 3, 7]),
        "per_prompt": st.booleans(),
        "shuffle_within_stage": st.booleans(),
        "seed": st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1)),
    }
)


def check(table: pa.Table, rows: list[dict], **kwargs) -> pa.Table:
    note(f"kwargs={kwargs} rows={rows}")
    order, stages = ref.order_curriculum(rows, group="prompt", **kwargs)
    result = pk.order_curriculum(table, **kwargs)
    assert result.column_names == [*table.column_names, "stage"]
    assert result.schema.field("stage").type == pa.int32()
    assert result.column("id").to_pylist() == order
    assert result.column("stage").to_pylist() == stages
    report = pk.report_of(result)
    assert report["rows_in"] == report["rows_out"] == report["rows_used"] == len(rows)
    assert sum(report["stage_sizes"]) == len(rows)
    return result


@given(table=pair_tables(), parameters=PARAMETERS)
def test_order_curriculum_equals_reference(table, parameters):
    check(table, table.to_pylist(), **parameters)


@given(table=pair_tables(), parameters=PARAMETERS)
def test_chunked_and_view_input(table, parameters):
    rows = table.to_pylist()
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=4), schema=table.schema)
    check(chunked, rows, **parameters)
    view = table.cast(pa.schema([("prompt", pa.string_view()), ("margin", pa.float64()),
                                 ("id", pa.int64())]))
    check(view, rows, **parameters)


def test_curry_dpo_stages_on_mined_pairs():
    data = pa.table(
        {
            "prompt": ["p"] * 4 + ["q"] * 4,
            "response": list("abcdefgh"),
            "score": [4.0, 3.0, 2.0, 1.0, 9.0, 7.0, 8.0, 1.0],
        }
    )
    pairs = pk.mine_pairs(data, strategy="best_vs_all")
    out = pk.order_curriculum(pairs, per_prompt=True, shuffle_within_stage=False)
    # Stage s holds the s-th easiest pair (largest margin first) of every prompt.
    assert out.column("stage").to_pylist() == [0, 0, 1, 1, 2, 2]
    assert out.column("rejected").to_pylist() == ["h", "d", "c", "f", "b", "g"]
    report = pk.report_of(out)
    assert report["stage_sizes"] == [2, 2, 2]
    assert report["source"]["op"] == "mine_pairs"


def test_shuffle_is_seeded_and_stays_inside_stages():
    table = pa.table({"margin": [float(i) for i in range(100)], "id": list(range(100))})
    a = pk.order_curriculum(table, stages=4, seed=3)
    b = pk.order_curriculum(table, stages=4, seed=3)
    c = pk.order_curriculum(table, stages=4, seed=4)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert a.column("id").to_pylist() != c.column("id").to_pylist()
    ids = a.column("id").to_pylist()
    assert sorted(ids[:25]) == list(range(75, 100))  # stage 0: the 25 largest margins


def test_errors():
    table = pa.table({"margin": [1.0], "stage": [0]})
    with pytest.raises(pk.PrefkitError, match="stage"):
        pk.order_curriculum(table)
    with pytest.raises(pk.PrefkitError, match="'nope' not found"):
        pk.order_curriculum(pa.table({"margin": [1.0]}), by="nope")
    with pytest.raises(pk.PrefkitError, match="numeric"):
        pk.order_curriculum(pa.table({"margin": ["x"]}))
    with pytest.raises(pk.PrefkitError, match="stages"):
        pk.order_curriculum(pa.table({"margin": [1.0]}), stages=0)
    with pytest.raises(pk.PrefkitError, match="order"):
        pk.order_curriculum(pa.table({"margin": [1.0]}), order="random")
