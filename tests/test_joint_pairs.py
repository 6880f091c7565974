"""mine_joint_pairs (JPO pairs across prompts) against tests/reference.py, and its contract."""

from __future__ import annotations

import math

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import given, note, settings
from hypothesis import strategies as st

COLUMNS = [
    "prompt",
    "chosen",
    "rejected_prompt",
    "rejected",
    "score_chosen",
    "score_rejected",
    "margin",
    "group_id",
    "rejected_group_id",
    "chosen_row",
    "rejected_row",
]
PROMPTS = ["a", "b", "é\U0001f600", "", "long prompt " * 3]
SCORES = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 2.0, -1.0, math.inf, -math.inf]),
    st.floats(-5, 5, allow_nan=False),
    st.none(),
    st.just(math.nan),
)


@st.composite
def rated_tables(draw):
    """A random long table of rated single responses (several prompts, some with one row)."""
    n = draw(st.integers(0, 25))
    rows = [
        {
            "prompt": draw(st.one_of(st.sampled_from(PROMPTS), st.none())),
            "response": draw(st.one_of(st.text(max_size=6), st.none())),
            "score": draw(SCORES),
            "id": i,
        }
        for i in range(n)
    ]
    schema = pa.schema(
        [("prompt", pa.string()), ("response", pa.string()), ("score", pa.float64()),
         ("id", pa.int64())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


PARAMETERS = st.fixed_dictionaries(
    {
        "strategy": st.sampled_from(["best_vs_worst", "random"]),
        "pairs_per_prompt": st.integers(1, 3),
        "min_margin": st.sampled_from([0.0, 0.0, 0.5]),
        "seed": st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1)),
        "carry": st.sampled_from([(), ("id",)]),
    }
)


def check(table: pa.Table, **kwargs) -> pa.Table:
    rows = table.to_pylist()
    note(f"kwargs={kwargs} rows={rows}")
    expected, accounting = ref.mine_joint_pairs(rows, **kwargs)
    result = pk.mine_joint_pairs(table, **kwargs)
    ref.assert_rows_equal(result.to_pylist(), expected)
    assert result.column_names == COLUMNS + list(kwargs.get("carry", ()))
    report = pk.report_of(result)
    assert report["op"] == "mine_joint_pairs"
    for name in ("rows_in", "rows_used", "draws_without_pair", "draws_repeated", "pairs_out"):
        assert report.get(name, 0) == accounting[name], name
    assert report.get("draws", 0) == accounting["draws"]
    assert report["dropped"] == accounting["dropped"]
    assert report["rows_used"] + sum(report["dropped"].values()) == table.num_rows
    return result


@settings(max_examples=300, deadline=None)
@given(table=rated_tables(), parameters=PARAMETERS)
def test_equals_reference(table, parameters):
    result = check(table, **parameters)
    for row in result.to_pylist():
        assert row["group_id"] != row["rejected_group_id"]
        assert row["margin"] > parameters["min_margin"]


@settings(max_examples=60, deadline=None)
@given(table=rated_tables(), parameters=PARAMETERS)
def test_chunked_sliced_and_view_input_equal_reference(table, parameters):
    padded = pa.concat_tables([table.slice(0, 1), table, table.slice(0, 2)])
    sliced = padded.slice(1, table.num_rows)
    chunked = pa.Table.from_batches(sliced.to_batches(max_chunksize=4), schema=table.schema)
    views = chunked.cast(
        pa.schema([("prompt", pa.string_view()), ("response", pa.string_view()),
                   ("score", pa.float64()), ("id", pa.int64())])
    )
    expected = pk.mine_joint_pairs(table, **parameters).to_pylist()
    for variant in (sliced, chunked, views):
        assert pk.mine_joint_pairs(variant, **parameters).to_pylist() == expected


def test_every_prompt_leads_once_per_draw_with_best_vs_worst():
    prompts = [f"p{i}" for i in range(40) for _ in range(3)]
    scores = [float((i * 7) % 11) for i in range(len(prompts))]
    table = pa.table({"prompt": prompts, "response": [str(i) for i in range(len(prompts))],
                      "score": scores})
    result = pk.mine_joint_pairs(table, pairs_per_prompt=2, seed=5)
    report = pk.report_of(result)
    assert report["draws"] == 80
    assert result.num_rows + report["draws_without_pair"] + report["draws_repeated"] == 80
    assert all(a != b for a, b in zip(result["prompt"].to_pylist(),
                                      result["rejected_prompt"].to_pylist()))
    assert pk.mine_joint_pairs(table, pairs_per_prompt=2, seed=5).equals(result)
    assert not pk.mine_joint_pairs(table, pairs_per_prompt=2, seed=6).equals(result)


def test_chat_prompts_and_polars_input():
    pl = pytest.importorskip("polars")
    chat = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "bye"}]]
    frame = pl.DataFrame({"prompt": chat, "response": ["x", "y"], "score": [2.0, 1.0]})
    result = pk.mine_joint_pairs(frame)
    assert result.num_rows == 1
    assert result["prompt"].to_pylist() == [chat[0]]
    assert result["rejected_prompt"].to_pylist() == [chat[1]]
    assert result.schema.field("chosen").type == pa.large_string()


def test_trains_with_the_jpo_loss_formula():
    torch = pytest.importorskip("torch")
    from prefkit.losses import preference_loss

    chosen, rejected = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -2.5])
    ref_chosen, ref_rejected = torch.tensor([-1.5, -2.0]), torch.tensor([-2.0, -2.0])
    loss, _ = preference_loss(chosen, rejected, ref_chosen, ref_rejected, kind="sigmoid", beta=0.1)
    logits = 0.1 * ((chosen - ref_chosen) - (rejected - ref_rejected))
    assert torch.allclose(loss, -torch.nn.functional.logsigmoid(logits).mean())


def test_bad_input_is_a_prefkit_error():
    table = pa.table({"prompt": ["a", "b"], "response": ["x", "y"], "score": [1.0, math.nan]})
    with pytest.raises(pk.PrefkitError, match="score.*row 1"):
        pk.mine_joint_pairs(table, nan="error")
    with pytest.raises(pk.PrefkitError, match="strategy"):
        pk.mine_joint_pairs(table, strategy="all_pairs")
    with pytest.raises(pk.PrefkitError, match="pairs_per_prompt"):
        pk.mine_joint_pairs(table, pairs_per_prompt=0)
    with pytest.raises(pk.PrefkitError, match="missing"):
        pk.mine_joint_pairs(table, response="missing")
    with pytest.raises(pk.PrefkitError, match="margin"):
        pk.mine_joint_pairs(table, carry=["margin"])


def test_cli_writes_the_same_pairs(tmp_path):
    import pyarrow.parquet as pq
    from prefkit.cli import main

    table = pa.table({"prompt": ["a", "a", "b", "c"], "response": ["1", "2", "3", "4"],
                      "score": [3.0, 1.0, 2.0, 0.0]})
    pq.write_table(table, tmp_path / "rated.parquet")
    out = tmp_path / "joint.parquet"
    code = main(["joint-pairs", str(tmp_path / "rated.parquet"), "-o", str(out), "-q",
                 "--strategy", "random", "--pairs-per-prompt", "2", "--seed", "3"])
    assert code == 0
    expected = pk.mine_joint_pairs(table, strategy="random", pairs_per_prompt=2, seed=3)
    assert pq.read_table(out).select(COLUMNS).to_pylist() == expected.to_pylist()
