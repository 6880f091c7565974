"""``pk.rank_lists`` against ``tests/reference.py`` (property tests) and its documented edges."""

from __future__ import annotations

import io
import math

import prefkit as pk
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reference as ref
from hypothesis import given, note
from hypothesis import strategies as st

ALPHABET = st.sampled_from(list("ab é中\U0001f600\u0301\n"))
TEXT = st.text(ALPHABET, min_size=0, max_size=5)
# Responses also longer than the 12 bytes a string view holds inline, so that copies read both
# inline views and views into buffers.
RESPONSE = st.one_of(TEXT, st.text(ALPHABET, min_size=8, max_size=40))
SCORES = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 0.5, -1.0]),
    st.sampled_from([None, math.nan, math.inf, -math.inf]),
    st.floats(-5, 5, allow_nan=False),
)


@st.composite
def long_tables(draw, prompt=TEXT):
    n = draw(st.integers(0, 25))
    prompts = draw(st.lists(prompt, min_size=1, max_size=4))
    nulls = draw(st.booleans())

    def maybe(strategy):
        return st.one_of(strategy, st.none()) if nulls else strategy

    rows = []
    for _ in range(n):
        rows.append(
            {
                "prompt": draw(maybe(st.sampled_from(prompts))),
                "response": draw(maybe(RESPONSE)),
                "score": draw(SCORES),
                "gid": draw(st.integers(0, 2)),
            }
        )
    schema = pa.schema(
        [("prompt", pa.string()), ("response", pa.string()), ("score", pa.float64()),
         ("gid", pa.int64())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


PARAMETERS = st.fixed_dictionaries(
    {
        "list_size": st.sampled_from([None, None, 1, 2, 3]),
        "min_list_size": st.sampled_from([1, 2, 2, 3]),
        "ties": st.sampled_from(["keep", "drop"]),
        "group": st.sampled_from([None, None, "gid"]),
    }
).filter(lambda p: p["list_size"] is None or p["list_size"] >= p["min_list_size"])


def check(table: pa.Table, rows: list[dict], views: bool = False, **kwargs) -> pa.Table:
    note(f"kwargs={kwargs} rows={rows} views={views}")
    expected, accounting = ref.rank_lists(rows, **kwargs)
    result = pk.rank_lists(table, views=views, **kwargs)
    assert result.column_names == ["prompt", "responses", "scores", "rows", "group_id"]
    text = pa.string_view() if views else pa.large_string()
    assert result.schema.field("responses").type.value_type == text
    assert result.schema.field("scores").type.value_type == pa.float64()
    assert result.schema.field("rows").type.value_type == pa.int64()
    assert result.schema.field("group_id").type == pa.uint64()
    ref.assert_rows_equal(result.to_pylist(), expected)
    report = pk.report_of(result)
    assert report["op"] == "rank_lists"
    got = {k: report.get(k) for k in accounting}
    got["dropped"] = {r: c for r, c in report["dropped"].items() if c}
    assert got == accounting
    assert report["rows_used"] + sum(report["dropped"].values()) == report["rows_in"]
    return result


@given(table=long_tables(), parameters=PARAMETERS)
def test_rank_lists_equals_reference(table, parameters):
    check(table, table.to_pylist(), **parameters)


@given(table=long_tables(), parameters=PARAMETERS)
def test_chunked_sliced_view_and_large_input(table, parameters):
    rows = table.to_pylist()
    padding = table.slice(0, min(2, table.num_rows))
    sliced = pa.concat_tables([padding, table, padding]).slice(padding.num_rows, table.num_rows)
    chunked = pa.Table.from_batches(sliced.to_batches(max_chunksize=3), schema=sliced.schema)
    check(chunked, rows, **parameters)
    check(chunked, rows, views=True, **parameters)
    for text_type in (pa.string_view(), pa.large_string()):
        schema = pa.schema(
            [f.with_type(text_type) if f.type == pa.string() else f for f in table.schema]
        )
        check(table.cast(schema), rows, **parameters)
        check(table.cast(schema), rows, views=True, **parameters)


# Prompts too long to be stored inside a string view, of equal lengths and first bytes, so that
# telling them apart reads their text.
LONG_PROMPT = st.sampled_from(["a", "b", "ab", "ba", "é", "中", "a中"]).map(
    lambda end: "a shared beginning " + end
)


@given(table=long_tables(prompt=LONG_PROMPT), parameters=PARAMETERS)
def test_long_prompts_as_string_views_and_as_read_by_polars(table, parameters):
    """Grouping by views: one view per row (a cast), and the views polars reads from a
    dictionary-encoded Parquet column, where repeated prompts share their bytes."""
    pl = pytest.importorskip("polars")
    rows = table.to_pylist()
    schema = pa.schema(
        [f.with_type(pa.string_view()) if f.type == pa.string() else f for f in table.schema]
    )
    check(table.cast(schema), rows, views=True, **parameters)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, use_dictionary=True)
    buffer.seek(0)
    check(pl.read_parquet(buffer), rows, **parameters)


def test_output_converts_to_polars_pandas_and_parquet(tmp_path):
    pl = pytest.importorskip("polars")
    data = pl.DataFrame(
        {"prompt": ["a", "a", "b", "b", "b"], "response": ["x", "y", "u", "v", "w"],
         "score": [1.0, 2.0, 0.0, 3.0, 3.0]}
    )
    lists = pk.rank_lists(data)
    assert lists.column("responses").to_pylist() == [["y", "x"], ["v", "w", "u"]]
    assert pl.from_arrow(lists)["responses"].to_list() == [["y", "x"], ["v", "w", "u"]]
    assert lists.to_pandas()["responses"].map(list).tolist() == [["y", "x"], ["v", "w", "u"]]
    pq.write_table(lists, tmp_path / "lists.parquet")
    back = pq.read_table(tmp_path / "lists.parquet")
    assert back.column("scores").to_pylist() == [[2.0, 1.0], [3.0, 3.0, 0.0]]
    assert pk.report_of(back)["lists_out"] == 2


def test_views_share_the_input_and_materialize_for_pandas():
    data = pa.table({"prompt": ["p"] * 3, "response": ["a" * 20, "b" * 20, "c"],
                     "score": [1.0, 3.0, 2.0]})
    lists = pk.rank_lists(data, views=True)
    assert lists.schema.field("responses").type.value_type == pa.string_view()
    assert lists.column("responses").to_pylist() == [["b" * 20, "c", "a" * 20]]
    plain = pk.materialize(lists)
    assert plain.to_pandas()["responses"].map(list).tolist() == [["b" * 20, "c", "a" * 20]]


def test_ties_drop_keeps_the_first_of_equal_scores():
    data = pa.table({"prompt": ["p"] * 4, "response": list("abcd"), "score": [1.0, 2.0, 2.0, 1.0]})
    out = pk.rank_lists(data, ties="drop")
    assert out.column("responses").to_pylist() == [["b", "a"]]
    assert pk.report_of(out)["dropped"] == {"tie": 2}


def test_nan_error_and_bad_sizes():
    data = pa.table({"prompt": ["p", "p"], "response": ["a", "b"], "score": [1.0, None]})
    with pytest.raises(pk.PrefkitError, match="row 1"):
        pk.rank_lists(data, nan="error")
    # The check comes before any drop: a null score on a row whose prompt is null still fails
    # (as in mine_pairs and tests/reference.py; fuzz/regressions/ops found the difference).
    null_key = pa.table({"prompt": ["p", "p", None], "response": ["a", "b", None],
                         "score": [1.0, 0.0, None]})
    with pytest.raises(pk.PrefkitError, match="row 2"):
        pk.rank_lists(null_key, nan="error")
    with pytest.raises(ValueError, match="row 2"):
        ref.rank_lists(null_key.to_pylist(), nan="error")
    with pytest.raises(pk.PrefkitError, match="list_size"):
        pk.rank_lists(data, list_size=1, min_list_size=2)
    with pytest.raises(pk.PrefkitError, match="min_list_size"):
        pk.rank_lists(data, min_list_size=0)
    with pytest.raises(pk.PrefkitError, match="ties"):
        pk.rank_lists(data, ties="maybe")


def test_many_groups_span_several_batches():
    n = 40_000
    data = pa.table(
        {
            "prompt": [f"p{i // 2}" for i in range(n)],
            "response": [f"r{i}" if i % 3 else f"response number {i}" for i in range(n)],
            "score": [float(i % 2) for i in range(n)],
        }
    )
    out = pk.rank_lists(data)
    assert out.num_rows == n // 2
    assert out.column("rows").to_pylist()[-1] == [n - 1, n - 2]
    assert out.column("responses").to_pylist()[:2] == [
        ["r1", "response number 0"], ["response number 3", "r2"]
    ]
    assert pk.rank_lists(data, views=True).column("responses").to_pylist() == out.column(
        "responses"
    ).to_pylist()


@pytest.mark.parametrize("views", [False, True])
def test_several_batches_with_rows_dropped_in_each_match_the_reference(views):
    # 30,000 groups (four result batches, the items of all of them in one column each) with
    # null responses, NaN scores, groups too small and lists cut by list_size in every batch.
    rows = []
    for i in range(90_000):
        g = i // 3
        rows.append({
            "prompt": f"prompt {g} " + "long enough to live out of line" * (g % 2),
            "response": None if i % 11 == 0 else f"response {i}" + "é" * (i % 5),
            "score": math.nan if i % 13 == 0 else float((i * 7) % 5),
        })
    expected, accounting = ref.rank_lists(rows, list_size=2)
    result = pk.rank_lists(pa.Table.from_pylist(rows), views=views, list_size=2)
    assert result.column("responses").num_chunks == 4
    ref.assert_rows_equal(result.to_pylist(), expected)
    report = pk.report_of(result)
    assert {r: c for r, c in report["dropped"].items() if c} == accounting["dropped"]
    assert report["rows_used"] == accounting["rows_used"]
