"""``pk.unnest``: nested rows (a prompt and a list of completion structs) to the long form."""

from __future__ import annotations

import math

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import currently_in_test_context, given, note
from hypothesis import strategies as st

ALPHABET = st.sampled_from(list("ab é\U0001f600"))
TEXT = st.text(ALPHABET, max_size=4)


def completion_type(response: str, scores: list[str], extra: bool, large: bool) -> pa.DataType:
    fields = [pa.field(response, pa.string())]
    fields += [pa.field(s, pa.float64()) for s in scores]
    if extra:
        fields.append(pa.field("model", pa.string()))
        fields.append(pa.field("rank", pa.int64()))
    item = pa.struct(fields)
    return pa.large_list(item) if large else pa.list_(item)


@st.composite
def nested_tables(draw):
    response = draw(st.sampled_from(["response", "text"]))
    scores = draw(st.sampled_from([["score"], ["overall"], ["helpful", "honest"], ["a", "b", "c"]]))
    extra = draw(st.booleans())
    large = draw(st.booleans())
    completions = draw(st.sampled_from(["completions", "outputs"]))
    # Reorder the struct fields sometimes: the output order is response, scores, then the rest.
    list_type = completion_type(response, scores, extra, large)
    item_type = list_type.value_type
    if extra and draw(st.booleans()):
        reordered = [item_type.field(i) for i in range(item_type.num_fields)][::-1]
        item_type = pa.struct(reordered)
        list_type = pa.large_list(item_type) if large else pa.list_(item_type)

    def item():
        record = {response: draw(st.one_of(TEXT, st.none()))}
        for s in scores:
            record[s] = draw(st.one_of(st.sampled_from([0.0, 1.0, 2.5]), st.none()))
        if extra:
            record["model"] = draw(st.sampled_from(["m1", "m2", None]))
            record["rank"] = draw(st.integers(0, 3))
        return {f.name: record[f.name] for f in item_type}

    rows = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["list", "list", "list", "empty", "null"]))
        if kind == "null":
            items = None
        elif kind == "empty":
            items = []
        else:
            items = [
                None if draw(st.integers(0, 9)) == 0 else item()
                for _ in range(draw(st.integers(1, 4)))
            ]
        rows.append(
            {
                "prompt": draw(st.one_of(TEXT, st.none())),
                completions: items,
                "source": draw(st.integers(0, 5)),
            }
        )
    schema = pa.schema([("prompt", pa.string()), (completions, list_type), ("source", pa.int64())])
    table = pa.Table.from_pylist(rows, schema=schema)
    keywords = {
        "completions": completions,
        "response": response,
        "score": scores[0] if len(scores) == 1 and draw(st.booleans()) else scores,
    }
    return table, keywords, [f.name for f in item_type]


def check_unnest(table: pa.Table, keywords: dict, fields: list[str], rows=None) -> pa.Table:
    rows = table.to_pylist() if rows is None else rows
    if currently_in_test_context():
        note(f"rows={rows}, keywords={keywords}")
    expected, accounting = ref.unnest(rows, fields=fields, **keywords)
    result = pk.unnest(table, **keywords)
    ref.assert_rows_equal(result.to_pylist(), expected)
    scores = [keywords["score"]] if isinstance(keywords["score"], str) else keywords["score"]
    ordered = [keywords["response"], *scores] + [
        f for f in fields if f not in (keywords["response"], *scores)
    ]
    others = [c for c in table.column_names if c != keywords["completions"]]
    assert result.column_names == others + ordered + ["completion_index", "source_row"]
    assert result.schema.field("completion_index").type == pa.int32()
    assert result.schema.field("source_row").type == pa.int64()
    report = pk.report_of(result)
    assert report["op"] == "unnest"
    for key in ("rows_in", "rows_used", "rows_out"):
        assert report[key] == accounting[key], key
    assert {r: c for r, c in report["dropped"].items() if c} == accounting["dropped"]
    assert report["rows_used"] + sum(report["dropped"].values()) == report["rows_in"]
    return result


@given(nested_tables())
def test_unnest_equals_reference(data):
    table, keywords, fields = data
    check_unnest(table, keywords, fields)


@given(nested_tables())
def test_unnest_sliced_and_chunked_input(data):
    table, keywords, fields = data
    rows = table.to_pylist()
    bigger = pa.concat_tables([table.slice(0, 2), table, table.slice(0, 1)])
    sliced = bigger.slice(min(2, table.num_rows), table.num_rows)
    check_unnest(sliced, keywords, fields, rows)
    chunked = pa.Table.from_batches(sliced.to_batches(max_chunksize=2), schema=table.schema)
    check_unnest(chunked, keywords, fields, rows)


def test_null_and_empty_lists_are_counted():
    item = pa.struct([("response", pa.string()), ("score", pa.float64())])
    table = pa.table(
        {
            "prompt": ["a", "b", "c", "d"],
            "completions": pa.array(
                [
                    [{"response": "x", "score": 1.0}],
                    None,
                    [],
                    [None, {"response": "y", "score": 2.0}],
                ],
                pa.list_(item),
            ),
        }
    )
    result = pk.unnest(table)
    assert result.to_pylist() == [
        {"prompt": "a", "response": "x", "score": 1.0, "completion_index": 0, "source_row": 0},
        {"prompt": "d", "response": None, "score": None, "completion_index": 0, "source_row": 3},
        {"prompt": "d", "response": "y", "score": 2.0, "completion_index": 1, "source_row": 3},
    ]
    report = pk.report_of(result)
    assert report["dropped"] == {"null_completions": 1, "empty_completions": 1}
    assert report["rows_in"] == 4 and report["rows_used"] == 2 and report["rows_out"] == 3


def test_field_name_keywords_and_several_scores():
    item = pa.struct(
        [
            ("model", pa.string()),
            ("text", pa.string()),
            ("helpful", pa.int64()),
            ("honest", pa.float64()),
        ]
    )
    table = pa.table(
        {
            "question": ["q"],
            "outputs": pa.array(
                [[{"model": "m", "text": "t", "helpful": 3, "honest": 0.5}]], pa.list_(item)
            ),
        }
    )
    result = pk.unnest(
        table,
        prompt="question",
        completions="outputs",
        response="text",
        score=["honest", "helpful"],
    )
    assert result.column_names == [
        "question",
        "text",
        "honest",
        "helpful",
        "model",
        "completion_index",
        "source_row",
    ]
    assert result.to_pylist() == [
        {
            "question": "q",
            "text": "t",
            "honest": 0.5,
            "helpful": 3,
            "model": "m",
            "completion_index": 0,
            "source_row": 0,
        }
    ]
    assert result.schema.field("helpful").type == pa.int64()


def test_unnest_empty_table():
    item = pa.struct([("response", pa.string()), ("score", pa.float64())])
    table = pa.table(
        {"prompt": pa.array([], pa.string()), "completions": pa.array([], pa.list_(item))}
    )
    result = pk.unnest(table)
    assert result.num_rows == 0
    assert result.column_names == ["prompt", "response", "score", "completion_index", "source_row"]
    assert pk.report_of(result)["rows_in"] == 0


ULTRAFEEDBACK = [
    {
        "source": "evol_instruct",
        "instruction": "Name a prime number.",
        "completions": [
            {"model": "alpaca-7b", "response": "4", "overall_score": 1.0, "honesty": 2},
            {"model": "gpt-4", "response": "7", "overall_score": 9.0, "honesty": 5},
            {
                "model": "llama-2-70b",
                "response": "11 is prime.",
                "overall_score": 8.5,
                "honesty": 5,
            },
            {"model": "falcon-40b", "response": "9", "overall_score": 1.0, "honesty": 1},
        ],
    },
    {
        "source": "flan",
        "instruction": "Translate 'chat' to English.",
        "completions": [
            {"model": "alpaca-7b", "response": "cat", "overall_score": 7.0, "honesty": 4},
            {"model": "gpt-4", "response": "cat", "overall_score": 7.0, "honesty": 5},
        ],
    },
    {"source": "sharegpt", "instruction": "Say hi.", "completions": []},
    {
        "source": "sharegpt",
        "instruction": "Write a haiku.",
        "completions": [
            {"model": "gpt-4", "response": "old pond / frog", "overall_score": None, "honesty": 5},
            {"model": "alpaca-7b", "response": "haiku", "overall_score": 3.0, "honesty": 3},
            {"model": "wizardlm", "response": "leaves fall", "overall_score": 6.0, "honesty": 4},
        ],
    },
]


def test_ultrafeedback_unnest_then_mine_pairs():
    nested = pa.Table.from_pylist(ULTRAFEEDBACK)
    long = pk.unnest(nested, prompt="instruction", score="overall_score")
    assert long.column_names == [
        "source",
        "instruction",
        "response",
        "overall_score",
        "model",
        "honesty",
        "completion_index",
        "source_row",
    ]
    assert long.num_rows == 9
    assert pk.report_of(long)["dropped"] == {"empty_completions": 1}

    pairs = pk.mine_pairs(
        long,
        prompt="instruction",
        score="overall_score",
        strategy="best_vs_all",
        carry=["model", "source_row"],
    )
    assert pairs.select(["chosen", "rejected", "margin", "model", "source_row"]).to_pylist() == [
        {
            "chosen": "7",
            "rejected": "11 is prime.",
            "margin": 0.5,
            "model": "gpt-4",
            "source_row": 0,
        },
        {"chosen": "7", "rejected": "4", "margin": 8.0, "model": "gpt-4", "source_row": 0},
        {"chosen": "7", "rejected": "9", "margin": 8.0, "model": "gpt-4", "source_row": 0},
        {
            "chosen": "leaves fall",
            "rejected": "haiku",
            "margin": 3.0,
            "model": "wizardlm",
            "source_row": 3,
        },
    ]
    assert pairs.column("chosen_row").to_pylist() == [1, 1, 1, 8]
    report = pk.report_of(pairs)
    # The "chat" prompt's two equal scores are a tie; the haiku's null score is nan_score.
    assert report["dropped"] == {"tie": 2, "nan_score": 1}
    assert report["rows_in"] == 9 and report["rows_used"] == 6
    assert report["source"]["op"] == "unnest"  # the pipeline's history is kept

    # UltraFeedback binarization: best vs a random one of the rest, deterministic per seed.
    random_pairs = pk.mine_pairs(
        long, prompt="instruction", score="overall_score", strategy="best_vs_random", seed=42
    )
    expected, _ = ref.mine_pairs(
        long.to_pylist(),
        prompt="instruction",
        score="overall_score",
        strategy="best_vs_random",
        seed=42,
    )
    ref.assert_rows_equal(random_pairs.to_pylist(), expected)
    assert not any(math.isnan(r["margin"]) for r in random_pairs.to_pylist())


@pytest.mark.parametrize("large", [False, True])
def test_unnest_output_mines_like_the_reference(large):
    table = pa.Table.from_pylist(ULTRAFEEDBACK)
    if large:
        table = table.cast(
            pa.schema(
                [
                    f.with_type(pa.large_list(f.type.value_field)) if f.name == "completions" else f
                    for f in table.schema
                ]
            )
        )
    long = pk.unnest(table, prompt="instruction", score="overall_score")
    for strategy in ref.STRATEGIES:
        expected, accounting = ref.mine_pairs(
            long.to_pylist(),
            prompt="instruction",
            score="overall_score",
            strategy=strategy,
            ties="keep",
        )
        result = pk.mine_pairs(
            long, prompt="instruction", score="overall_score", strategy=strategy, ties="keep"
        )
        ref.assert_rows_equal(result.to_pylist(), expected)
        assert ref.accounting_of(pk.report_of(result)) == accounting
