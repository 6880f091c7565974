"""Every accepted input form gives the same pairs; results travel to Parquet, pandas and polars."""

from __future__ import annotations

import math
import random

import prefkit as pk
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reference as ref

STRATEGIES = ["best_vs_worst", "all_pairs", "best_vs_random", "top_k_vs_bottom_k"]


def corpus(n: int = 300, seed: int = 1) -> list[dict]:
    """Shuffled groups of varied size, ties, NaN/null scores, null responses, unicode."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        g = rng.randrange(40)
        rows.append(
            {
                "prompt": f"prompt {g} — é \U0001f600" if g % 7 else f"short {g}",
                "response": None
                if rng.random() < 0.03
                else rng.choice(["a", "bb", "é\U00010348", "a longer response text " * 2])
                + str(i % 5),
                "score": rng.choice([0.0, 1.0, 1.0, 2.0, 3.5, math.nan, None, rng.random()]),
                "rm2": rng.choice([0, 1, 2, 3]),
                "meta": f"row-{i}",
            }
        )
    return rows


ROWS = corpus()
SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("score", pa.float64()),
        ("rm2", pa.int64()),
        ("meta", pa.string()),
    ]
)
TABLE = pa.Table.from_pylist(ROWS, schema=SCHEMA)
KWARGS = [
    {"strategy": "best_vs_worst"},
    {"strategy": "all_pairs", "ties": "keep", "max_pairs_per_prompt": 4, "carry": ["meta"]},
    {"strategy": "best_vs_random", "seed": 11, "length_penalty": 0.01},
    {"strategy": "top_k_vs_bottom_k", "k": 2, "score": ["score", "rm2"], "min_margin": 0.5},
]


def with_text_type(table: pa.Table, text_type: pa.DataType) -> pa.Table:
    return table.cast(
        pa.schema(
            [f.with_type(text_type) if pa.types.is_string(f.type) else f for f in table.schema]
        )
    )


def expected(kwargs: dict, rows: list[dict] = ROWS):
    return ref.mine_pairs(rows, **kwargs)


def assert_same(result: pa.Table, kwargs: dict, rows: list[dict] = ROWS) -> None:
    pairs, accounting = expected(kwargs, rows)
    assert pairs, "the corpus must yield pairs for this test to mean something"
    ref.assert_rows_equal(result.to_pylist(), pairs)
    assert ref.accounting_of(pk.report_of(result)) == accounting


@pytest.mark.parametrize("kwargs", KWARGS)
@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_text_types(kwargs, text_type):
    assert_same(pk.mine_pairs(with_text_type(TABLE, text_type), **kwargs), kwargs)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_mixed_text_types(kwargs):
    table = TABLE.set_column(0, "prompt", TABLE.column("prompt").cast(pa.large_string()))
    table = table.set_column(1, "response", table.column("response").cast(pa.string_view()))
    assert_same(pk.mine_pairs(table, **kwargs), kwargs)


@pytest.mark.parametrize("kwargs", KWARGS)
@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_sliced_table_rows_start_at_zero(kwargs, text_type):
    table = with_text_type(TABLE, text_type)
    sliced = table.slice(37, 200)
    rows = ROWS[37:237]
    result = pk.mine_pairs(sliced, **kwargs)
    assert_same(result, kwargs, rows)
    assert min(result.column("chosen_row").to_pylist()) < 200
    assert max(result.column("rejected_row").to_pylist()) < 200


@pytest.mark.parametrize("kwargs", KWARGS)
@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_chunked_table(kwargs, text_type):
    table = with_text_type(TABLE, text_type)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=7), schema=table.schema)
    assert chunked.column("response").num_chunks > 10
    assert_same(pk.mine_pairs(chunked, **kwargs), kwargs)
    # Chunks that are slices of one bigger batch, of uneven sizes (some empty).
    batch = table.combine_chunks().to_batches()[0]
    pieces, start = [], 0
    for size in [0, 1, 50, 3, 0, 100, 146]:
        pieces.append(batch.slice(start, size))
        start += size
    uneven = pa.Table.from_batches(pieces, schema=table.schema)
    assert uneven.num_rows == len(ROWS)
    assert_same(pk.mine_pairs(uneven, **kwargs), kwargs)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_record_batch_and_reader(kwargs):
    batch = TABLE.combine_chunks().to_batches()[0]
    assert_same(pk.mine_pairs(batch, **kwargs), kwargs)
    reader = pa.RecordBatchReader.from_batches(TABLE.schema, TABLE.to_batches(max_chunksize=50))
    assert_same(pk.mine_pairs(reader, **kwargs), kwargs)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_polars(kwargs):
    pl = pytest.importorskip("polars")
    frame = pl.from_arrow(TABLE)
    assert_same(pk.mine_pairs(frame, **kwargs), kwargs)
    # Several chunks in polars too.
    chunked = pl.concat([frame[:100], frame[100:]], rechunk=False)
    assert_same(pk.mine_pairs(chunked, **kwargs), kwargs)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_pandas(kwargs):
    pytest.importorskip("pandas")
    frame = TABLE.to_pandas()
    # pandas turns null scores into NaN and keeps null responses as missing values.
    rows = [dict(r, score=math.nan if r["score"] is None else r["score"]) for r in ROWS]
    assert_same(pk.mine_pairs(frame, **kwargs), kwargs, rows)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_datasets(kwargs):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset(TABLE)
    assert_same(pk.mine_pairs(dataset, **kwargs), kwargs)
    picked = list(range(250, 10, -3))
    selected = dataset.select(picked)
    assert_same(pk.mine_pairs(selected, **kwargs), kwargs, [ROWS[i] for i in picked])
    shuffled = dataset.shuffle(seed=3)
    order = [int(meta.removeprefix("row-")) for meta in shuffled["meta"]]
    assert order != sorted(order)
    assert_same(pk.mine_pairs(shuffled, **kwargs), kwargs, [ROWS[i] for i in order])


def test_datasets_from_dict_with_chat_prompts():
    datasets = pytest.importorskip("datasets")
    hi = [{"role": "user", "content": "hi"}]
    yo = [{"role": "user", "content": "yo"}]
    data = {
        "prompt": [hi, yo, hi, yo],
        "response": ["a", "b", "c", "d"],
        "score": [1.0, 0.0, 0.0, 1.0],
    }
    dataset = datasets.Dataset.from_dict(data)
    rows = [dict(zip(data, values)) for values in zip(*data.values())]
    pairs, _ = ref.mine_pairs(rows)
    result = pk.mine_pairs(dataset)
    ref.assert_rows_equal(result.to_pylist(), pairs)
    assert [r["chosen"] for r in result.to_pylist()] == ["a", "d"]


# --- results: string_view text must travel -----------------------------------------------


@pytest.fixture(scope="module")
def result() -> pa.Table:
    table = with_text_type(TABLE, pa.large_string()).slice(5)
    out = pk.mine_pairs(table, strategy="all_pairs", score=["score", "rm2"], carry=["meta"])
    assert out.num_rows > 50
    return out


def test_parquet_round_trip(result, tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(result, path)
    back = pq.read_table(path)
    ref.assert_rows_equal(back.to_pylist(), result.to_pylist())
    assert pk.report_of(back) == pk.report_of(result)
    assert pk.report_of(pq.read_schema(path)) == pk.report_of(result)
    assert pk.report_of(back)["op"] == "mine_pairs"
    # And through prefkit's own writer/reader.
    path2 = tmp_path / "pairs2.parquet"
    pk.write_table(result, path2)
    again = pk.read_table(path2)
    ref.assert_rows_equal(again.to_pylist(), result.to_pylist())
    assert pk.report_of(again)["rows_in"] == pk.report_of(result)["rows_in"]


def test_jsonl_round_trip(result, tmp_path):
    path = tmp_path / "pairs.jsonl"
    pk.write_table(result, path)
    back = pk.read_table(path)
    assert back.column("chosen").to_pylist() == result.column("chosen").to_pylist()
    assert back.column("group_id").to_pylist() == result.column("group_id").to_pylist()


def test_to_pandas(result):
    frame = result.to_pandas()
    assert list(frame.columns) == result.column_names
    assert frame["chosen"].tolist() == result.column("chosen").to_pylist()
    assert frame["prompt"].tolist() == result.column("prompt").to_pylist()
    assert frame["margin"].tolist() == result.column("margin").to_pylist()


def test_polars_from_arrow(result):
    pl = pytest.importorskip("polars")
    frame = pl.from_arrow(result)
    assert frame.columns == result.column_names
    assert frame["chosen"].to_list() == result.column("chosen").to_pylist()
    assert frame["rejected"].to_list() == result.column("rejected").to_pylist()
    assert frame["group_id"].to_list() == result.column("group_id").to_pylist()


def test_materialize_gives_large_string(result):
    plain = pk.materialize(result)
    for name in ("prompt", "chosen", "rejected", "meta"):
        assert plain.schema.field(name).type in (pa.large_string(), pa.string()), name
    for name in ("prompt", "chosen", "rejected"):
        assert not pa.types.is_string_view(plain.schema.field(name).type)
    ref.assert_rows_equal(plain.to_pylist(), result.to_pylist())
    assert pk.report_of(plain) == pk.report_of(result)
    text = [f.name for f in result.schema if pa.types.is_string_view(f.type)]
    for name in text:
        assert plain.schema.field(name).type == pa.large_string()


def test_result_outlives_its_input():
    """The views point into the input's buffers; those must stay alive with the result."""
    import gc

    def make() -> pa.Table:
        rows = corpus(200, seed=5)
        table = with_text_type(pa.Table.from_pylist(rows, schema=SCHEMA), pa.string_view())
        return pk.mine_pairs(table, strategy="all_pairs"), rows

    out, rows = make()
    gc.collect()
    junk = [bytearray(b"x" * 10_000) for _ in range(200)]  # reuse freed memory, if any
    pairs, _ = ref.mine_pairs(rows, strategy="all_pairs")
    ref.assert_rows_equal(out.to_pylist(), pairs)
    del junk


def test_chat_prompt_types_survive():
    chat = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    hi = [{"role": "user", "content": "hi"}]
    table = pa.table(
        {"prompt": pa.array([hi, hi], chat), "response": ["a", "b"], "score": [1.0, 0.0]}
    )
    large = table.cast(
        pa.schema(
            [
                pa.field(
                    "prompt",
                    pa.large_list(
                        pa.struct([("role", pa.large_string()), ("content", pa.large_string())])
                    ),
                ),
                pa.field("response", pa.large_string()),
                pa.field("score", pa.float64()),
            ]
        )
    )
    ids = set()
    for t in (table, large):
        out = pk.mine_pairs(t)
        assert out.column("prompt").to_pylist() == [hi]
        ids.add(out.column("group_id")[0].as_py())
    # Text inside a nested key hashes the same whatever its string type.
    assert ids == {ref.group_id(hi)}


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_result_text_points_into_the_input(text_type):
    """docs/outputs.md: with views=True, prompt, chosen and rejected are string_view arrays
    over the input's own buffers (no text is copied)."""
    long_text = [f"response {i} " + "x" * 40 for i in range(60)]
    table = pa.table(
        {
            "prompt": pa.array([f"prompt {i % 3} " + "y" * 20 for i in range(60)], text_type),
            "response": pa.array(long_text, text_type),
            "score": [float(i % 7) for i in range(60)],
        }
    )
    result = pk.mine_pairs(table, strategy="all_pairs", views=True)
    assert result.num_rows > 100
    for name in ("prompt", "chosen", "rejected"):
        assert pa.types.is_string_view(result.schema.field(name).type), name
    source = table.column("response").chunk(0)
    source_addresses = {b.address for b in source.buffers()[1:] if b is not None}
    for name in ("chosen", "rejected"):
        for chunk in result.column(name).chunks:
            data = [b for b in chunk.buffers()[2:] if b is not None and b.size > 0]
            assert data, "long strings live in data buffers"
            assert {b.address for b in data} <= source_addresses | {
                b.address for b in table.column("prompt").chunk(0).buffers()[1:] if b is not None
            }, f"{name} copied its text"
    ref.assert_rows_equal(
        result.to_pylist(), ref.mine_pairs(table.to_pylist(), strategy="all_pairs")[0]
    )
