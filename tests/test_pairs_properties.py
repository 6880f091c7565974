"""Property tests: ``pk.mine_pairs`` equals ``tests/reference.py`` on random long tables.

The tables are built to hit the rules' corners: few distinct prompts (multi-row groups, some
single-row), scores from a small set (ties), NaN and null scores, null keys and responses,
unicode text (non-BMP too), shuffled or contiguous groups, 1..3 score columns of float or int
type, a ``group`` column, chat-message prompts and carry columns.
"""

from __future__ import annotations

import math
import os
import re

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import currently_in_test_context, given, note
from hypothesis import strategies as st

CHAT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

# Text with ASCII, accents, CJK, emoji (non-BMP) and combining marks.
ALPHABET = st.sampled_from(list("ab é中\U0001f600\U00010348\u0301\n"))
TEXT = st.text(ALPHABET, min_size=0, max_size=6)

PALETTES = {
    # Few distinct values: many ties, and equal-score groups.
    "tiny": st.sampled_from([0.0, 1.0]),
    "small": st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0, 0.25, -0.5]),
    # Mostly distinct values.
    "wide": st.floats(-10, 10, allow_nan=False, width=64),
}
INT_PALETTES = {
    "tiny": st.sampled_from([0, 1]),
    "small": st.sampled_from([0, 1, 2, 3, -1]),
    "wide": st.integers(-1000, 1000),
}


def score_value(draw, kind: str, palette: str, nan_rate: int, allow_inf: bool):
    """One score: null/NaN with probability nan_rate %, an infinity sometimes, else the palette."""
    if draw(st.integers(0, 99)) < nan_rate:
        return draw(st.sampled_from([None, math.nan])) if kind == "float" else None
    if allow_inf and kind == "float" and draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from([math.inf, -math.inf]))
    return draw((PALETTES if kind == "float" else INT_PALETTES)[palette])


@st.composite
def chat(draw):
    turns = draw(st.integers(0, 3))
    contents = st.sampled_from(["hi", "2+2?", "é\U0001f600", ""])
    return [{"role": ["user", "assistant"][i % 2], "content": draw(contents)} for i in range(turns)]


@st.composite
def long_tables(draw):
    """A random long table and the mine_pairs keyword arguments that describe its columns."""
    n = draw(st.integers(0, 30))
    key_kind = draw(st.sampled_from(["text", "text", "chat", "group"]))
    n_scores = draw(st.integers(1, 3))
    score_types = [draw(st.sampled_from(["float", "float", "int"])) for _ in range(n_scores)]
    allow_inf = n_scores == 1 and draw(st.booleans())
    contiguous = draw(st.booleans())
    null_rate = draw(st.sampled_from([0, 0, 5, 20]))  # percent of null keys / responses
    nan_rate = draw(st.sampled_from([0, 0, 3, 15]))  # percent of null / NaN scores
    palette = draw(st.sampled_from(list(PALETTES)))

    if key_kind == "chat":
        pool = draw(st.lists(chat(), min_size=1, max_size=4))
    else:
        pool = draw(st.lists(TEXT, min_size=1, max_size=4))
    group_pool = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4))

    def maybe_null(strategy):
        return st.one_of(strategy, st.none()) if null_rate else strategy

    picks = [draw(st.integers(0, len(pool) - 1)) for _ in range(n)]
    if contiguous:
        picks.sort()
    rows = []
    for i, pick in enumerate(picks):
        null_key = null_rate and draw(st.integers(0, 99)) < null_rate
        null_response = null_rate and draw(st.integers(0, 99)) < null_rate
        row = {}
        if key_kind == "group":
            row["prompt"] = draw(st.one_of(TEXT, st.none()))
            row["gid"] = None if null_key else group_pool[pick % len(group_pool)]
        else:
            row["prompt"] = None if null_key else pool[pick]
        row["response"] = None if null_response else draw(TEXT)
        for c, kind in enumerate(score_types):
            row[f"s{c}"] = score_value(draw, kind, palette, nan_rate, allow_inf)
        row["id"] = i * 10
        row["meta"] = draw(st.one_of(TEXT, st.none()))
        rows.append(row)

    fields = [pa.field("prompt", CHAT if key_kind == "chat" else pa.string())]
    if key_kind == "group":
        fields.append(pa.field("gid", pa.int64()))
    fields.append(pa.field("response", pa.string()))
    for c, kind in enumerate(score_types):
        fields.append(pa.field(f"s{c}", pa.float64() if kind == "float" else pa.int64()))
    fields += [pa.field("id", pa.int64()), pa.field("meta", pa.string())]
    schema = pa.schema(fields)
    table = pa.Table.from_pylist(rows, schema=schema)

    names = [f"s{c}" for c in range(n_scores)]
    score = names[0] if n_scores == 1 and draw(st.booleans()) else names
    columns = {"score": score}
    if key_kind == "group":
        columns["group"] = "gid"
    columns["carry"] = draw(st.sampled_from([(), ("id",), ("meta", "id")]))
    return table, columns


PARAMETERS = st.fixed_dictionaries(
    {
        "strategy": st.sampled_from(ref.STRATEGIES),
        "k": st.integers(1, 3),
        "min_margin": st.sampled_from([0.0, 0.0, 0.5, 1.0]),
        "ties": st.sampled_from(["drop", "keep"]),
        "max_pairs_per_prompt": st.sampled_from([None, None, 1, 2, 3]),
        "length_penalty": st.sampled_from([0.0, 0.0, 0.01, 0.5, -0.25]),
        "seed": st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1)),
    }
)


def check(table: pa.Table, rows: list[dict] | None = None, **kwargs) -> pa.Table:
    """Run Rust and the reference; assert pairs, schema and accounting agree."""
    rows = table.to_pylist() if rows is None else rows
    if currently_in_test_context():
        note(f"kwargs={kwargs}")
        note(f"rows={rows}")
    expected, expected_accounting = ref.mine_pairs(rows, **kwargs)
    result = pk.mine_pairs(table, **kwargs)
    actual = result.to_pylist()
    ref.assert_rows_equal(actual, expected)

    several = not isinstance(kwargs.get("score", "score"), str) and len(kwargs["score"]) > 1
    names = [
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "margin",
        "group_id",
        "chosen_row",
        "rejected_row",
    ]
    if several:
        names += ["agreement", "margin_std"]
    names += list(kwargs.get("carry", ()))
    assert result.column_names == names
    assert result.schema.field("group_id").type == pa.uint64()
    assert result.schema.field("chosen_row").type == pa.int64()
    assert result.schema.field("rejected_row").type == pa.int64()
    for name in ("score_chosen", "score_rejected", "margin"):
        assert result.schema.field(name).type == pa.float64()

    report = pk.report_of(result)
    assert report["op"] == "mine_pairs"
    assert ref.accounting_of(report) == expected_accounting
    assert report["rows_out"] == result.num_rows == len(expected)
    assert report["rows_used"] + sum(report["dropped"].values()) == report["rows_in"]
    assert report["rows_in"] == table.num_rows
    return result


@given(data=long_tables(), parameters=PARAMETERS)
def test_mine_pairs_equals_reference(data, parameters):
    table, columns = data
    check(table, **columns, **parameters)


@given(data=long_tables(), strategy=st.sampled_from(ref.STRATEGIES))
def test_defaults_equal_reference(data, strategy):
    table, columns = data
    check(table, **columns, strategy=strategy)


@given(data=long_tables(), parameters=PARAMETERS)
def test_chunked_sliced_and_view_input_equal_reference(data, parameters):
    """The same rows as a slice of a bigger table, in small chunks, with string_view text."""
    table, columns = data
    padding = table.slice(0, min(3, table.num_rows))
    bigger = pa.concat_tables([padding, table, padding])
    sliced = bigger.slice(padding.num_rows, table.num_rows)
    rows = table.to_pylist()
    check(sliced, rows, **columns, **parameters)
    chunked = pa.Table.from_batches(sliced.to_batches(max_chunksize=3), schema=sliced.schema)
    check(chunked, rows, **columns, **parameters)
    view_schema = pa.schema(
        [f.with_type(pa.string_view()) if f.type == pa.string() else f for f in table.schema]
    )
    check(table.cast(view_schema), rows, **columns, **parameters)
    large_schema = pa.schema(
        [f.with_type(pa.large_string()) if f.type == pa.string() else f for f in table.schema]
    )
    check(table.cast(large_schema), rows, **columns, **parameters)


@given(data=long_tables(), seed=st.integers(0, 2**64 - 1))
def test_best_vs_random_is_deterministic_and_a_candidate(data, seed):
    table, columns = data
    first = pk.mine_pairs(table, **columns, strategy="best_vs_random", seed=seed)
    second = pk.mine_pairs(table, **columns, strategy="best_vs_random", seed=seed)
    ref.assert_rows_equal(second.to_pylist(), first.to_pylist())
    every = {
        (r["chosen_row"], r["rejected_row"])
        for r in pk.mine_pairs(table, **columns, strategy="best_vs_all").to_pylist()
    }
    for row in first.to_pylist():
        assert (row["chosen_row"], row["rejected_row"]) in every
    assert len({r["group_id"] for r in first.to_pylist()}) == first.num_rows


@given(data=long_tables(), parameters=PARAMETERS)
def test_nan_error_names_the_first_bad_row(data, parameters):
    table, columns = data
    rows = table.to_pylist()
    try:
        ref.mine_pairs(rows, **columns, **parameters, nan="error")
    except ValueError as error:
        # Same column and row as the reference: the first (row, column) in input order.
        with pytest.raises(pk.PrefkitError, match=re.escape(str(error).split(" has ")[0])) as info:
            pk.mine_pairs(table, **columns, **parameters, nan="error")
        row = str(error).rsplit(" ", 1)[1]
        assert re.search(rf"\brow {row}\b", str(info.value))
    else:
        check(table, rows, **columns, **parameters, nan="error")


def test_thread_count_does_not_change_the_result():
    """One thread and the default pool give identical pairs and accounting."""
    code = (
        "import pyarrow.parquet as pq, prefkit as pk, sys\n"
        "t = pq.read_table(sys.argv[1])\n"
        "r = pk.mine_pairs(t, strategy='all_pairs', max_pairs_per_prompt=2, seed=3)\n"
        "pq.write_table(r, sys.argv[2])\n"
    )
    import random
    import subprocess
    import sys
    import tempfile

    import pyarrow.parquet as pq

    rng = random.Random(3)
    table = pa.table(
        {
            "prompt": [f"p{rng.randrange(2000)}" for _ in range(12_000)],
            "response": [rng.choice(["a", "bb", "ccc"]) for _ in range(12_000)],
            "score": [rng.choice([0.0, 1.0, 2.0, rng.random()]) for _ in range(12_000)],
        }
    )
    expected = pk.mine_pairs(table, strategy="all_pairs", max_pairs_per_prompt=2, seed=3)
    with tempfile.TemporaryDirectory() as folder:
        source, target = f"{folder}/in.parquet", f"{folder}/out.parquet"
        pq.write_table(table, source)
        env = dict(os.environ, PREFKIT_NUM_THREADS="1")
        done = subprocess.run(
            [sys.executable, "-c", code, source, target],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        single = pq.read_table(target)
    assert single.to_pylist() == expected.to_pylist()
    assert pk.report_of(single) == pk.report_of(expected)


@pytest.mark.parametrize("strategy", ref.STRATEGIES)
def test_large_table_equals_reference(strategy):
    """Enough rows and groups for any parallel path; shuffled groups of varied size."""
    import random

    rng = random.Random(7)
    n = 20_000
    rows = []
    for i in range(n):
        g = rng.randrange(3_000)
        rows.append(
            {
                "prompt": None if rng.random() < 0.01 else f"prompt {g} \U0001f600",
                "response": None if rng.random() < 0.01 else "r" * rng.randrange(5),
                "score": rng.choice([0.0, 1.0, 2.0, 3.0, math.nan, None, rng.random()]),
            }
        )
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("prompt", pa.string()), ("response", pa.string()), ("score", pa.float64())]
        ),
    )
    check(table, rows, strategy=strategy, k=2, max_pairs_per_prompt=3, length_penalty=0.01, seed=5)
    contiguous = sorted(rows, key=lambda r: (r["prompt"] is None, r["prompt"] or ""))
    check(pa.Table.from_pylist(contiguous, schema=table.schema), contiguous, strategy=strategy)


def test_empty_table_equals_reference():
    table = pa.table(
        {
            "prompt": pa.array([], pa.string()),
            "response": pa.array([], pa.string()),
            "score": pa.array([], pa.float64()),
        }
    )
    for strategy in ref.STRATEGIES:
        result = check(table, [], strategy=strategy)
        assert result.num_rows == 0
        assert pk.report_of(result)["rows_in"] == 0
