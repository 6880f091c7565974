"""Win-probability matrices: ``pk.win_rates``, ``pk.win_rate_pairs``, ``pk.win_rate_lists`` and
``pk.intransitivity`` against ``tests/reference.py``, and their validation errors."""

from __future__ import annotations

import math

import prefkit as pk
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reference as ref
from hypothesis import given, note, settings
from hypothesis import strategies as st

ALPHABET = st.sampled_from(list("ab é中\U0001f600\n"))
# Responses also longer than the 12 bytes a string view holds inline.
TEXT = st.one_of(st.text(ALPHABET, max_size=4), st.text(ALPHABET, min_size=8, max_size=30))
# Win probabilities with many exact ties (0, 1/2, 1 and the same value twice).
CELL = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 0.25, 0.75, 0.9]),
    st.floats(0.0, 1.0, allow_nan=False),
)
SCORE = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), st.floats(-3, 3, allow_nan=False))

SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("responses", pa.list_(pa.string())),
        ("win_prob", pa.list_(pa.list_(pa.float64()))),
        ("rows", pa.list_(pa.int64())),
        ("group_id", pa.uint64()),
        ("scores", pa.list_(pa.float64())),
    ]
)


@st.composite
def matrix(draw, k: int) -> list[list[float]]:
    """A K x K matrix with P[b][a] = 1 - P[a][b], sometimes off by less than the tolerance."""
    p = [[0.5] * k for _ in range(k)]
    noisy = draw(st.booleans())
    for a in range(k):
        for b in range(a + 1, k):
            value = draw(CELL)
            p[a][b] = value
            reverse = 1.0 - value
            if noisy:
                reverse = min(1.0, max(0.0, reverse + draw(st.sampled_from([-4e-7, 0.0, 3e-7]))))
            p[b][a] = reverse
    return p


@st.composite
def wide_rows(draw) -> list[dict]:
    rows = []
    start = 0
    for index in range(draw(st.integers(0, 6))):
        k = draw(st.sampled_from([0, 1, 2, 3, 3, 4, 5, 7]))
        rows.append(
            {
                "prompt": draw(TEXT),
                "responses": draw(st.lists(TEXT, min_size=k, max_size=k)),
                "win_prob": draw(matrix(k)),
                "rows": list(range(start + 100, start + 100 + k)),
                "group_id": index * 7919 + 3,
                "scores": draw(st.lists(SCORE, min_size=k, max_size=k)),
            }
        )
        start += k
    return rows


@st.composite
def layouts(draw, rows: list[dict]) -> pa.Table:
    """The same rows as one chunk, several chunks or a slice of a larger table; responses as
    string, large_string or string_view; lists as list or large_list."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    text = draw(st.sampled_from([pa.string(), pa.large_string(), pa.string_view()]))
    large = draw(st.booleans())
    lists = pa.large_list if large else pa.list_
    table = table.cast(
        pa.schema(
            [
                ("prompt", pa.string()),
                ("responses", lists(text)),
                ("win_prob", lists(lists(pa.float64()))),
                ("rows", lists(pa.int64())),
                ("group_id", pa.uint64()),
                ("scores", lists(pa.float64())),
            ]
        )
    )
    layout = draw(st.sampled_from(["one", "chunked", "sliced"]))
    if layout == "chunked" and table.num_rows > 1:
        cut = draw(st.integers(1, table.num_rows - 1))
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    elif layout == "sliced":
        padding = pa.Table.from_pylist(
            [{"prompt": "pad", "responses": ["x", "y"], "win_prob": [[0.5, 1.0], [0.0, 0.5]],
              "rows": [0, 1], "group_id": 1, "scores": [0.0, 1.0]}],
            schema=SCHEMA,
        ).cast(table.schema)
        table = pa.concat_tables([padding, table, padding]).combine_chunks()
        table = table.slice(1, len(rows))
    note(f"layout={layout} text={text} large={large}")
    return table


def _long_rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


@given(st.data())
def test_win_rates_match_the_reference(data):
    rows = data.draw(wide_rows())
    table = data.draw(layouts(rows))
    with_scores = data.draw(st.booleans())
    scores = "scores" if with_scores else None
    got = pk.win_rates(table, scores=scores)
    expected, accounting = ref.win_rates(rows, scores=scores)
    ref.assert_rows_equal(_long_rows(got), expected)
    report = pk.report_of(got)
    for name in ("rows_in", "rows_used", "matrices_in", "matrices_used", "responses_out"):
        assert report[name] == accounting[name], name
    assert report["dropped"] == accounting["dropped"]
    assert report["rows_used"] + sum(report["dropped"].values()) == report["rows_in"]


@given(st.data())
def test_computed_rows_and_group_ids(data):
    rows = data.draw(wide_rows())
    distinct = {r["prompt"] for r in rows}
    if len(distinct) < len(rows):
        rows = [{**r, "prompt": f"{i}{r['prompt']}"} for i, r in enumerate(rows)]
    table = data.draw(layouts(rows))
    got = pk.win_rates(table, rows=None, group_id=None)
    expected, _ = ref.win_rates(rows, rows=None, group_id=None)
    ref.assert_rows_equal(_long_rows(got), expected)


@given(st.data())
@settings(deadline=None)
def test_win_rate_pairs_are_mine_pairs_on_the_win_rates(data):
    rows = data.draw(wide_rows())
    table = data.draw(layouts(rows))
    options = data.draw(
        st.fixed_dictionaries(
            {
                "strategy": st.sampled_from(ref.STRATEGIES),
                "k": st.integers(1, 3),
                "min_margin": st.sampled_from([0.0, 0.0, 0.1]),
                "ties": st.sampled_from(["drop", "keep"]),
                "max_pairs_per_prompt": st.sampled_from([None, None, 1, 2]),
                "seed": st.integers(0, 3),
            }
        )
    )
    got = pk.win_rate_pairs(table, **options)
    long = pk.win_rates(table)
    mined = pk.mine_pairs(long, score="win_rate", group="group_id", **options)
    row = long.column("row").to_pylist()
    gid = long.column("group_id").to_pylist()
    composed = [
        {**pair, "group_id": gid[pair["chosen_row"]], "chosen_row": row[pair["chosen_row"]],
         "rejected_row": row[pair["rejected_row"]]}
        for pair in mined.to_pylist()
    ]
    ref.assert_rows_equal(got.to_pylist(), composed)
    ref.assert_rows_equal(got.to_pylist(), ref.win_rate_pairs(rows, **options))
    report = pk.report_of(got)
    assert report["op"] == "win_rate_pairs"
    assert report["rows_used"] + sum(report["dropped"].values()) == report["rows_in"]


@given(st.data())
def test_win_rate_lists_are_rank_lists_on_the_win_rates(data):
    rows = data.draw(wide_rows())
    table = data.draw(layouts(rows))
    options = data.draw(
        st.fixed_dictionaries(
            {
                "list_size": st.sampled_from([None, 2, 3]),
                "min_list_size": st.sampled_from([1, 2, 3]),
                "ties": st.sampled_from(["keep", "drop"]),
            }
        )
    )
    if options["list_size"] is not None and options["list_size"] < options["min_list_size"]:
        options["list_size"] = None
    got = pk.win_rate_lists(table, **options)
    long, _ = ref.win_rates(rows)
    lists, _ = ref.rank_lists(long, score="win_rate", group="group_id", **options)
    expected = [
        {**item, "rows": [long[i]["row"] for i in item["rows"]],
         "group_id": long[item["rows"][0]]["group_id"]}
        for item in lists
    ]
    ref.assert_rows_equal(got.to_pylist(), expected)


@given(st.data())
def test_intransitivity_matches_the_reference(data):
    rows = data.draw(wide_rows())
    table = data.draw(layouts(rows))
    scores = data.draw(st.sampled_from([None, "scores"]))
    got = pk.intransitivity(table, scores=scores)
    expected, accounting = ref.intransitivity(rows, scores=scores)
    ref.assert_rows_equal(got.to_pylist(), expected)
    assert pk.report_of(got)["matrices_out"] == accounting["matrices_out"]


def _table(matrices: list[list[list[float]]], **extra) -> pa.Table:
    return pa.table(
        {
            "prompt": [f"p{i}" for i in range(len(matrices))],
            # As many responses as the widest side of the matrix, so a short one is caught.
            "responses": [[f"r{a}" for a in range(max([len(m), *map(len, m)]))]
                          for m in matrices],
            "win_prob": matrices,
            **extra,
        }
    )


def _tournament(k: int, beats) -> list[list[float]]:
    return [[0.5 if a == b else (1.0 if beats(a, b) else 0.0) for b in range(k)]
            for a in range(k)]


def test_cycles_of_hand_built_matrices():
    rock_paper_scissors = [[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]]
    transitive = _tournament(5, lambda a, b: a < b)
    # Five responses on a circle, each beating the next two: every triad but those with one
    # response beating both others is a cycle: C(5,3) - 5 * C(2,2) = 5.
    circle = _tournament(5, lambda a, b: (b - a) % 5 in (1, 2))
    ties = [[0.5] * 4 for _ in range(4)]
    got = pk.intransitivity(_table([rock_paper_scissors, transitive, circle, ties]), group_id=None)
    assert got.column("cycles").to_pylist() == [1, 0, 5, 0]
    assert got.column("triads").to_pylist() == [1, 10, 10, 4]
    long = pk.win_rates(_table([circle]), rows=None, group_id=None)
    assert long.column("copeland").to_pylist() == [0] * 5
    assert long.column("rank").to_pylist() == [1, 2, 3, 4, 5]
    assert long.column("win_rate").to_pylist() == [0.5] * 5


def test_agreement_with_scores():
    p = [[0.5, 0.9, 0.5], [0.1, 0.5, 0.3], [0.5, 0.7, 0.5]]
    got = pk.intransitivity(_table([p], scores=[[1.0, 2.0, 3.0]]), group_id=None, scores="scores")
    # (0,1): judge 0, scores 1: disagree; (0,2): judge tie; (1,2): judge 2, scores 2: agree.
    row = got.to_pylist()[0]
    assert (row["agreed_pairs"], row["disagreed_pairs"], row["tied_pairs"]) == (1, 1, 1)
    assert row["agreement"] == 0.5
    flat = pk.intransitivity(_table([p], scores=[[1.0, 1.0, 1.0]]), group_id=None, scores="scores")
    assert flat.column("agreement").to_pylist() == [None]


GOOD = [[0.5, 0.75], [0.25, 0.5]]


@pytest.mark.parametrize(
    ("matrix", "words"),
    [
        ([[0.5, 1.5], [-0.5, 0.5]], ["'win_prob'", "1.5 at row 1, cell (0, 1)"]),
        ([[0.5, 0.7], [0.7, 0.5]], ["'win_prob'", "tolerance", "row 1, cell (0, 1)"]),
        ([[0.5, None], [0.5, 0.5]], ["'win_prob'", "null or NaN at row 1, cell (0, 1)"]),
        ([[0.5, 0.5], [math.nan, 0.5]], ["'win_prob'", "NaN at row 1, cell (1, 0)"]),
        ([[0.5, 0.5]], ["'win_prob'", "1 items for 2 responses at row 1"]),
        ([[0.5, 0.5], [0.5]], ["'win_prob'", "matrix row 1 1 cells", "row 1"]),
    ],
)
def test_bad_matrices_name_the_column_row_and_cell(matrix, words):
    table = _table([GOOD, matrix])
    with pytest.raises(pk.PrefkitError) as error:
        pk.win_rates(table, rows=None, group_id=None)
    for word in words:
        assert word in str(error.value)
    with pytest.raises(ValueError, match="row 1"):
        ref.win_rates(table.to_pylist(), rows=None, group_id=None)


def test_other_bad_input():
    table = _table([GOOD, GOOD], rows=[[0, 1], [2]], scores=[[0.0, 1.0], [0.0, math.nan]])
    with pytest.raises(pk.PrefkitError, match=r"'rows'.*1 items for 2 responses at row 1"):
        pk.win_rates(table, group_id=None)
    with pytest.raises(pk.PrefkitError, match=r"'scores'.*NaN at row 1 \(item 1\)"):
        pk.win_rates(table, rows=None, group_id=None, scores="scores")
    same = _table([GOOD, GOOD]).set_column(0, "prompt", pa.array(["q", "q"]))
    with pytest.raises(pk.PrefkitError, match="at rows 0 and 1"):
        pk.intransitivity(same, group_id=None)
    with pytest.raises(pk.PrefkitError, match="'win_prob' must be"):
        pk.win_rates(_table([GOOD]).set_column(2, "win_prob", pa.array([1.0])), group_id=None)
    with pytest.raises(pk.PrefkitError, match="'nope' not found"):
        pk.win_rates(_table([GOOD]), rows=None, group_id="nope")
    with pytest.raises(pk.PrefkitError, match="tolerance"):
        pk.win_rates(_table([GOOD]), rows=None, group_id=None, tolerance=-1.0)
    with pytest.raises(pk.PrefkitError, match="unexpected keywords"):
        pk.win_rate_pairs(_table([GOOD]), rows=None, group_id=None, score="x")
    # A looser tolerance accepts what the default refuses.
    loose = _table([[[0.5, 0.7], [0.31, 0.5]]])
    with pytest.raises(pk.PrefkitError):
        pk.win_rates(loose, rows=None, group_id=None)
    assert pk.win_rates(loose, rows=None, group_id=None, tolerance=0.02).num_rows == 2


def test_small_groups_are_counted_and_results_round_trip(tmp_path):
    table = _table([GOOD, [[0.5]], []], rows=[[5, 6], [7], []])
    long = pk.win_rates(table, group_id=None)
    assert long.column("row").to_pylist() == [5, 6]
    report = pk.report_of(long)
    assert report["dropped"] == {"group_too_small": 1}
    assert (report["matrices_in"], report["matrices_used"]) == (3, 1)
    pairs = pk.win_rate_pairs(table, group_id=None)
    assert pairs.select(["chosen_row", "rejected_row"]).to_pylist() == [
        {"chosen_row": 5, "rejected_row": 6}
    ]
    assert pk.report_of(pairs)["rows_in"] == 3
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    assert pk.report_of(pq.read_table(tmp_path / "pairs.parquet"))["op"] == "win_rate_pairs"
    views = pk.win_rates(table, group_id=None, views=True)
    assert pa.types.is_string_view(views.schema.field("response").type)
    assert views.column("response").to_pylist() == ["r0", "r1"]


def test_polars_input():
    pl = pytest.importorskip("polars")
    table = _table([GOOD, [[0.5, 0.0, 1.0], [1.0, 0.5, 0.5], [0.0, 0.5, 0.5]]])
    frame = pl.from_arrow(table)
    got = pk.win_rates(frame, rows=None, group_id=None)
    assert got.equals(pk.win_rates(table, rows=None, group_id=None))
