"""TRL dataset formats both ways (docs/formats.md).

- ``pk.unpair`` against ``tests/reference.py::unpair`` and against TRL's own
  ``trl.data_utils.unpair_preference_dataset``; its KTO weights against ``trl.KTOTrainer``'s
  imbalance check;
- ``prefkit.formats.step_preference`` (tree_pairs -> TRL preference rows);
- the layouts TRL documents (standard / conversational, explicit / implicit prompt, unpaired),
  built with ``datasets.Dataset.from_dict``, read by prefkit ops with no conversion, and
  prefkit's outputs passing TRL's own helpers (``is_conversational``, ``maybe_extract_prompt``,
  ``maybe_apply_chat_template``).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import polars as pl
import prefkit as pk
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import reference as ref
from hypothesis import given, note, settings
from hypothesis import strategies as st
from prefkit.formats import kto_weights, list_triples, step_preference

datasets = pytest.importorskip("datasets")
trl_data = pytest.importorskip("trl.data_utils")
datasets.disable_progress_bars()

CHAT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
TEXT_TYPES = (pa.string(), pa.large_string(), pa.string_view())


def m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def plain(table: pa.Table) -> pa.Table:
    """What a user hands to ``datasets``: plain text, no prefkit metadata."""
    return pk.materialize(table).replace_schema_metadata(None)


def trl_unpair(table: pa.Table, **map_kwargs) -> list[dict]:
    dataset = datasets.Dataset(plain(table))
    return trl_data.unpair_preference_dataset(dataset, **map_kwargs).to_list()


def retype(table: pa.Table, text_type: pa.DataType) -> pa.Table:
    """Every top-level text column as ``text_type``."""
    fields = [f.with_type(text_type) if pa.types.is_string(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields)) if text_type != pa.string() else table


@pytest.fixture(scope="module")
def tokenizer():
    from tiny_lm import bpe_tokenizer

    pytest.importorskip("transformers")
    texts = [("What color is the sky? It is blue. It is green. Where is the sun? In the sky. "
              "In the sea. The sky is blue green hot red. 2+3*4? 3*4 = 12 2+12 = 14 24")] * 4
    return bpe_tokenizer(texts, vocab_size=400)


# --------------------------------------------------------------------------------------------
# unpair: TRL's result, exactly
# --------------------------------------------------------------------------------------------


def mined():
    long = pa.table({
        "prompt": ["q1", "q1", "q1", "q2", "q2", "q3"],
        "response": ["a", "b", "c", "d", "e", "f"],
        "score": [3.0, 2.0, 1.0, 1.0, 0.0, 5.0],
    })
    return pk.mine_pairs(long, strategy="all_pairs")


def test_unpair_equals_trl_on_mined_pairs():
    pairs = mined()
    out = pk.unpair(pairs)
    assert out.column_names[:3] == ["prompt", "completion", "label"]
    assert out.schema.field("label").type == pa.bool_()
    # TRL's datasets round trip cannot hold group_id (uint64 above 2**63: "Python int too
    # large to convert to C long"), so it is compared without it; pk.unpair keeps it typed.
    assert out.schema.field("group_id").type == pa.uint64()
    expected = trl_unpair(pairs.drop_columns(["group_id"]))
    assert out.drop_columns(["group_id"]).to_pylist() == expected
    assert out.column("group_id").to_pylist() == pairs.column("group_id").to_pylist() * 2


def test_trl_unpair_cannot_take_prefkit_group_ids_but_pk_unpair_can():
    pairs = mined()
    assert max(pairs.column("group_id").to_pylist()) >= 2**63  # xxh3-64 ids use all 64 bits
    with pytest.raises(OverflowError):
        trl_unpair(pairs)
    assert pk.unpair(pairs).num_rows == 2 * pairs.num_rows


def test_unpair_equals_trl_on_conversational_pairs():
    pairs = datasets.Dataset.from_dict({
        "prompt": [[m("user", "What color is the sky?")], [m("user", "Where is the sun?")]],
        "chosen": [[m("assistant", "It is blue.")], [m("assistant", "In the sky.")]],
        "rejected": [[m("assistant", "It is green.")], [m("assistant", "In the sea.")]],
        "score_chosen": [8.0, 9.0],
    })
    out = pk.unpair(pairs)
    assert out.schema.field("completion").type == pairs.data.schema.field("chosen").type
    assert out.to_pylist() == trl_data.unpair_preference_dataset(pairs).to_list()
    assert trl_data.is_conversational(out.to_pylist()[0])


def test_unpair_implicit_prompt_equals_trl():
    pairs = pa.table({"chosen": ["The sky is blue.", "Sun: hot"],
                      "rejected": ["The sky is green.", "Sun: cold"]})
    out = pk.unpair(pairs, prompt=None)
    assert out.column_names == ["completion", "label"]
    assert out.to_pylist() == trl_unpair(pairs)


def test_unpair_renames_the_prompt_and_reads_other_completion_names():
    pairs = pa.table({"question": ["q"], "good": ["a"], "bad": ["b"], "margin": [1.0]})
    out = pk.unpair(pairs, prompt="question", chosen="good", rejected="bad")
    assert out.to_pylist() == [
        {"prompt": "q", "completion": "a", "label": True, "margin": 1.0},
        {"prompt": "q", "completion": "b", "label": False, "margin": 1.0},
    ]


def test_blocks_order_is_trls_for_one_batch_and_interleave_alternates():
    n = 1500  # above TRL's default map batch of 1000
    pairs = pa.table({"prompt": [f"p{i}" for i in range(n)],
                      "chosen": [f"c{i}" for i in range(n)],
                      "rejected": [f"r{i}" for i in range(n)]})
    blocks = pk.unpair(pairs)
    assert blocks.to_pylist() == trl_unpair(pairs, batch_size=None)
    # TRL's default batches of 1000 pairs: the same rows, in another order.
    default = trl_unpair(pairs)
    assert default != blocks.to_pylist()
    assert sorted(map(str, default)) == sorted(map(str, blocks.to_pylist()))
    inter = pk.unpair(pairs, order="interleave")
    assert inter.column("label").to_pylist() == [True, False] * n
    assert inter.column("completion").to_pylist()[:4] == ["c0", "r0", "c1", "r1"]
    assert pk.report_of(inter)["parameters"]["order"] == "interleave"


def test_unpair_provenance_counts_and_weights():
    pairs = mined()
    out = pk.unpair(pairs)
    report = pk.report_of(out)
    assert report["op"] == "unpair"
    assert report["rows_in"] == pairs.num_rows
    assert report["rows_out"] == out.num_rows == 2 * pairs.num_rows
    assert report["desirable"] == report["undesirable"] == pairs.num_rows
    assert report["kto_weights"] == {"desirable_weight": 1.0, "undesirable_weight": 1.0}
    assert report["source"]["op"] == "mine_pairs"
    # all_pairs: "b" is chosen over "c" and rejected against "a"; q2 has only two responses
    assert report["responses_with_both_labels"] == 1


def test_unpair_drops_null_completions_and_weighs_the_imbalance():
    pairs = pa.table({"prompt": ["a", "b", "c", "d"], "chosen": ["x", "y", None, "w"],
                      "rejected": [None, None, None, "v"]})
    out = pk.unpair(pairs)
    assert out.to_pylist() == ref.unpair(pairs.to_pylist())[0]
    report = pk.report_of(out)
    assert (report["desirable"], report["undesirable"]) == (3, 1)
    assert (report["null_chosen"], report["null_rejected"]) == (1, 3)
    assert report["dropped"] == {"null_completions": 1}
    assert report["rows_in"] == report["rows_used"] + sum(report["dropped"].values())
    assert report["kto_weights"] == {"desirable_weight": 1.0, "undesirable_weight": 3.0}
    with pytest.raises(pk.PrefkitError, match="column 'chosen' has a null at row 1"):
        pk.unpair(pairs.slice(1), nulls="error")


def test_unpair_keeps_views_zero_copy_and_takes_polars():
    pairs = retype(pa.table({"prompt": ["p", "q"], "chosen": ["a", "b"],
                             "rejected": ["c", "d"]}), pa.string_view())
    out = pk.unpair(pairs, views=True)
    assert out.schema.field("completion").type == pa.string_view()
    assert pk.unpair(pairs).schema.field("completion").type == pa.large_string()
    # the completion chunks are the input's own arrays
    assert out.column("completion").chunk(0).buffers()[1].address == \
        pairs.column("chosen").chunk(0).buffers()[1].address
    frame = pl.from_arrow(pk.materialize(pairs))
    assert pk.unpair(frame).to_pylist() == out.to_pylist()
    # interleaving has to copy views (pyarrow 26 has no take kernel for them)
    assert pk.unpair(pairs, order="interleave").column("completion").to_pylist() == \
        ["a", "c", "b", "d"]


def test_unpair_of_mixed_text_types_is_one_large_string_column():
    pairs = pa.table({"prompt": ["p"], "chosen": pa.array(["a"], pa.string_view()),
                      "rejected": pa.array(["b"], pa.string())})
    out = pk.unpair(pairs)
    assert out.schema.field("completion").type == pa.large_string()
    assert out.column("completion").to_pylist() == ["a", "b"]


def test_unpair_of_nothing():
    pairs = pa.table({"prompt": pa.array([], pa.string()), "chosen": pa.array([], pa.string()),
                      "rejected": pa.array([], pa.string())})
    for order in ("blocks", "interleave"):
        out = pk.unpair(pairs, order=order)
        assert out.num_rows == 0 and out.column_names == ["prompt", "completion", "label"]


@pytest.mark.parametrize("table, kwargs, message", [
    (pa.table({"prompt": ["p"], "rejected": ["b"]}), {}, "column 'chosen' not found"),
    (pa.table({"chosen": ["a"], "rejected": ["b"]}), {}, "column 'prompt' not found.*prompt=None"),
    (pa.table({"prompt": ["p"], "chosen": [1], "rejected": ["b"]}), {},
     "column 'chosen' must be text .* got int64"),
    (pa.table({"prompt": ["p"], "chosen": ["a"],
               "rejected": pa.array([[m("assistant", "b")]], CHAT)}), {},
     "columns 'chosen' and 'rejected' must hold the same kind"),
    (pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"], "label": [1]}), {},
     "column 'label' would collide"),
    (pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"], "completion": ["c"]}), {},
     "column 'completion' would collide"),
    (pa.table({"q": ["p"], "prompt": ["x"], "chosen": ["a"], "rejected": ["b"]}),
     {"prompt": "q"}, "column 'prompt' would collide"),
    (pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]}), {"order": "random"},
     "order must be one of"),
    (pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]}), {"nulls": "keep"},
     "nulls must be one of"),
    (pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]}), {"rejected": "chosen"},
     "two columns"),
])
def test_unpair_bad_input(table, kwargs, message):
    with pytest.raises(pk.PrefkitError, match=message):
        pk.unpair(table, **kwargs)
    with pytest.raises(pk.PrefkitError):
        pk.unpair([1, 2])


# --------------------------------------------------------------------------------------------
# unpair: properties against the reference and against TRL
# --------------------------------------------------------------------------------------------

WORDS = st.sampled_from(["a", "b", " b", "é", "日本", "", "a b", "\n"])


@st.composite
def pair_tables(draw, nulls=True):
    n = draw(st.integers(0, 9))
    texts = st.lists(WORDS, min_size=0, max_size=3).map("".join)
    maybe = st.one_of(st.none(), texts) if nulls else texts
    prompts = draw(st.lists(texts, min_size=n, max_size=n))
    chosen = draw(st.lists(maybe, min_size=n, max_size=n))
    rejected = draw(st.lists(maybe, min_size=n, max_size=n))
    margin = draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n))
    table = pa.table({"prompt": pa.array(prompts, pa.string()),
                      "chosen": pa.array(chosen, pa.string()),
                      "rejected": pa.array(rejected, pa.string()),
                      "margin": pa.array(margin, pa.float64()),
                      "pair": pa.array(range(n), pa.int64())})
    table = retype(table, draw(st.sampled_from(TEXT_TYPES)))
    if n > 2 and draw(st.booleans()):  # chunked
        cut = draw(st.integers(1, n - 1))
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    if n > 1 and draw(st.booleans()):  # sliced
        table = table.slice(1)
    return table


@given(table=pair_tables(), order=st.sampled_from(["blocks", "interleave"]))
def test_unpair_equals_the_reference(table, order):
    note(str(table.to_pylist()))
    out = pk.unpair(table, order=order)
    expected, counts = ref.unpair(table.to_pylist(), order=order)
    assert out.to_pylist() == expected
    report = pk.report_of(out)
    for key, value in counts.items():
        assert report[key] == value
    assert report["rows_out"] == out.num_rows
    assert report["rows_in"] == report["rows_used"] + sum(report["dropped"].values())
    assert report["kto_weights"] == kto_weights(counts["desirable"], counts["undesirable"])


@settings(max_examples=25)
@given(table=pair_tables(nulls=False), implicit=st.booleans())
def test_unpair_equals_trl_unpair_preference_dataset(table, implicit):
    if table.num_rows == 0:  # datasets cannot map an empty table into new columns
        return
    note(str(table.to_pylist()))
    if implicit:
        table = table.drop_columns(["prompt"])
    out = pk.unpair(table, prompt=None if implicit else "prompt")
    assert out.to_pylist() == trl_unpair(table)


# --------------------------------------------------------------------------------------------
# KTO weights: TRL's recommendation and TRL's own check
# --------------------------------------------------------------------------------------------


def trl_says_fine(n_desirable, n_undesirable, desirable_weight, undesirable_weight) -> bool:
    """KTOTrainer's imbalance check, as written in trl/trainer/kto_trainer.py (1.16,
    ``_prepare_dataset``: "Calculate dataset desirability balance")."""
    num_desirable = max(n_desirable, 1)
    num_undesirable = max(n_undesirable, 1)
    if num_desirable == num_undesirable:
        return True
    des_lo = round((num_undesirable * undesirable_weight / num_desirable) * 1, 2)
    des_hi = round((num_undesirable * undesirable_weight / num_desirable) * 1.33, 2)
    und_lo = round((num_desirable * desirable_weight / num_undesirable) / 1.33, 2)
    und_hi = round((num_desirable * desirable_weight / num_undesirable) / 1, 2)
    return des_lo <= desirable_weight <= des_hi or und_lo <= undesirable_weight <= und_hi


@given(st.integers(1, 10**7), st.integers(1, 10**7))
def test_kto_weights_are_in_trls_range(n_desirable, n_undesirable):
    weights = kto_weights(n_desirable, n_undesirable)
    d, u = weights["desirable_weight"], weights["undesirable_weight"]
    assert min(d, u) == 1.0  # only the rarer kind is upweighted
    ratio = (d * n_desirable) / (u * n_undesirable)
    assert 1.0 - 1e-12 <= ratio <= 4 / 3  # TRL's KTO docs, "Imbalanced data": 1:1 to 4:3
    assert trl_says_fine(n_desirable, n_undesirable, d, u)


def test_kto_weights_of_a_table_and_bad_counts():
    rows = pk.unpair(pa.table({"prompt": ["p"] * 3, "chosen": ["a", "b", "c"],
                               "rejected": ["x", None, None]}))
    assert kto_weights(rows) == {"desirable_weight": 1.0, "undesirable_weight": 3.0}
    assert kto_weights(datasets.Dataset(plain(rows))) == kto_weights(3, 1)
    assert kto_weights(0, 5) == kto_weights(5, 0) == {"desirable_weight": 1.0,
                                                      "undesirable_weight": 1.0}
    with pytest.raises(pk.PrefkitError, match="desirable must be a count"):
        kto_weights(-1, 2)
    with pytest.raises(pk.PrefkitError, match="column 'label' must be boolean"):
        kto_weights(pa.table({"label": [1, 0]}))
    with pytest.raises(pk.PrefkitError, match="column 'label' not found"):
        kto_weights(pa.table({"x": [True]}))


def test_kto_trainer_takes_unpaired_rows_and_their_weights(tokenizer, caplog, tmp_path):
    """The real KTOTrainer prepares pk.unpair's rows, and its imbalance warning fires with the
    default weights and not with the ones in the provenance record."""
    trl = pytest.importorskip("trl")
    from tiny_lm import tiny_llama

    pairs = pa.table({"prompt": ["The sky is", "The sun is", "Grass is"],
                      "chosen": [" blue.", " hot.", " green."],
                      "rejected": [" green.", None, " red."]})
    rows = pk.unpair(pairs)
    weights = pk.report_of(rows)["kto_weights"]
    assert weights == {"desirable_weight": 1.0, "undesirable_weight": 1.5}
    warnings = {}
    for name, extra in (("default", {}), ("prefkit", weights)):
        caplog.clear()
        args = trl.KTOConfig(output_dir=str(tmp_path / name), bf16=False, report_to=[],
                             per_device_train_batch_size=2, **extra)
        with caplog.at_level(logging.WARNING):
            trainer = trl.KTOTrainer(model=tiny_llama(len(tokenizer)),
                                     ref_model=tiny_llama(len(tokenizer)), args=args,
                                     processing_class=tokenizer,
                                     train_dataset=datasets.Dataset(plain(rows)))
        warnings[name] = "don't seem to be in an ideal range" in caplog.text
        assert len(trainer.train_dataset) == rows.num_rows
        assert trainer.train_dataset["label"] == rows.column("label").to_pylist()
    assert warnings == {"default": True, "prefkit": False}


# --------------------------------------------------------------------------------------------
# Trees: step-level pairs as preference rows
# --------------------------------------------------------------------------------------------


def test_step_preference_from_tree_pairs():
    paths = pa.table({
        "prompt": ["2+3*4?"] * 4,
        "steps": [["3*4 = 12", "2+12 = 14"], ["3*4 = 12", "2+12 = 24"],
                  ["2+3 = 5", "5*4 = 20"], ["3*4 = 12", "2+12 = 14"]],
        "reward": [1.0, 0.0, 0.0, 1.0],
    })
    pairs = pk.tree_pairs(pk.build_trees(paths))
    out = step_preference(pairs)
    rows = {(r["chosen"], r["rejected"]): r for r in out.to_pylist()}
    root = rows[("3*4 = 12", "2+3 = 5")]
    assert root["prompt"] == "2+3*4?\n"
    deeper = rows[("2+12 = 14", "2+12 = 24")]
    assert deeper["prompt"] == "2+3*4?\n3*4 = 12\n"
    assert deeper["prompt"] + deeper["chosen"] == "2+3*4?\n3*4 = 12\n2+12 = 14"
    assert out.column_names[:3] == ["prompt", "chosen", "rejected"]
    assert set(pairs.column_names) - {"prompt"} <= set(out.column_names)
    assert pk.report_of(out)["source"]["op"] == "tree_pairs"
    for row in out.to_pylist():
        assert not trl_data.is_conversational(row)
        assert trl_data.maybe_extract_prompt(row) == row
    sep = step_preference(pairs, separator="\n\n").column("prompt").to_pylist()
    assert "2+3*4?\n\n3*4 = 12\n\n" in sep


def test_step_preference_takes_views_and_checks_its_input():
    pairs = pa.table({"prompt": pa.array(["p", "p"], pa.string_view()),
                      "prefix": pa.array([[], ["s1", "s2"]], pa.list_(pa.string_view())),
                      "chosen": ["a", "b"], "rejected": ["c", "d"]})
    assert step_preference(pairs, separator=" | ").column("prompt").to_pylist() == \
        ["p | ", "p | s1 | s2 | "]
    with pytest.raises(pk.PrefkitError, match="column 'prompt' has a null at row 1"):
        step_preference(pairs.set_column(0, "prompt", pa.array(["p", None])))
    with pytest.raises(pk.PrefkitError, match="column 'prefix' has a null step at row 1"):
        step_preference(pairs.set_column(1, "prefix", pa.array([[], ["s", None]])))
    with pytest.raises(pk.PrefkitError, match="column 'prompt' must be text.*chat template"):
        step_preference(pairs.set_column(0, "prompt", pa.array([[m("user", "p")]] * 2, CHAT)))
    with pytest.raises(pk.PrefkitError, match="column 'prefix' not found"):
        step_preference(pairs.drop_columns(["prefix"]))
    with pytest.raises(pk.PrefkitError, match="column 'prefix' must be a list of text"):
        step_preference(pairs.set_column(1, "prefix", pa.array([1, 2])))


# --------------------------------------------------------------------------------------------
# The other way: TRL's documented layouts into prefkit ops, no conversion
# --------------------------------------------------------------------------------------------


LAYOUTS = {
    "standard_explicit": {
        "prompt": ["The sky is", "The sun is", "The sky is"],
        "chosen": [" blue.", " in the sky.", " blue."],
        "rejected": [" green.", " in the sea.", " green."],
        "score_chosen": [8.0, 9.0, 8.0], "score_rejected": [2.0, 8.5, 2.0],
    },
    "standard_implicit": {
        "chosen": ["The sky is blue.", "The sun is hot.", "The sky is blue."],
        "rejected": ["The sky is green.", "The sun is cold.", "The sky is green."],
    },
    "conversational_explicit": {
        "prompt": [[m("user", "What color is the sky?")], [m("user", "Where is the sun?")],
                   [m("user", "What color is the sky?")]],
        "chosen": [[m("assistant", "It is blue.")], [m("assistant", "In the sky.")],
                   [m("assistant", "It is blue.")]],
        "rejected": [[m("assistant", "It is green.")], [m("assistant", "In the sea.")],
                     [m("assistant", "It is green.")]],
        "score_chosen": [8.0, 9.0, 8.0], "score_rejected": [2.0, 8.5, 2.0],
    },
    "conversational_implicit": {
        "chosen": [[m("user", "What color is the sky?"), m("assistant", "It is blue.")],
                   [m("user", "Where is the sun?"), m("assistant", "In the sky.")],
                   [m("user", "What color is the sky?"), m("assistant", "It is blue.")]],
        "rejected": [[m("user", "What color is the sky?"), m("assistant", "It is green.")],
                     [m("user", "Where is the sun?"), m("assistant", "In the sea.")],
                     [m("user", "What color is the sky?"), m("assistant", "It is green.")]],
    },
    "standard_unpaired": {
        "prompt": ["The sky is", "The sky is", "The sun is", "The sky is"],
        "completion": [" blue.", " green.", " in the sky.", " blue."],
        "label": [True, False, True, True],
    },
    "conversational_unpaired": {
        "prompt": [[m("user", "What color is the sky?")]] * 2,
        "completion": [[m("assistant", "It is blue.")], [m("assistant", "It is green.")]],
        "label": [True, False],
    },
}


def layout(name: str):
    return datasets.Dataset.from_dict(LAYOUTS[name])


def explicit(name: str):
    """The layout with an explicit prompt: implicit ones through pk.split_prompt."""
    data = layout(name)
    return pk.split_prompt(data) if name.endswith("implicit") else data


@pytest.mark.parametrize("name", ["standard_implicit", "conversational_implicit"])
def test_split_prompt_reads_implicit_prompts_like_trls_extract_prompt(name):
    data = layout(name)
    out = pk.split_prompt(data)
    assert out.num_rows == len(data)
    for row, example in zip(out.to_pylist(), data):
        trl_row = trl_data.maybe_extract_prompt(example)
        # the result is explicit: TRL leaves it as it is
        assert trl_data.maybe_extract_prompt(row) == row
        assert trl_data.is_conversational(row) == trl_data.is_conversational(example)
        assert row["prompt"] + row["chosen"] == example["chosen"]
        assert row["prompt"] + row["rejected"] == example["rejected"]
        if name.startswith("conversational"):
            assert row == trl_row  # the shared messages, exactly
        else:
            # Text: TRL moves the space before the first differing character into the
            # completions ("The sky is" / " blue."); prefkit keeps the whole shared prefix
            # ("The sky is " / "blue."), or cuts at `boundary` when given (docs/formats.md).
            assert row["prompt"] == trl_row["prompt"] + " "
            assert " " + row["chosen"] == trl_row["chosen"]


def test_split_prompt_with_a_boundary_matches_trl_on_text():
    data = layout("standard_implicit")
    out = pk.split_prompt(data, boundary="is")
    for row, example in zip(out.to_pylist(), data):
        assert row == trl_data.maybe_extract_prompt(example)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_dedup_and_split_read_every_layout(name):
    data = layout(name)
    columns = ["prompt", "completion"] if "unpaired" in name else ["prompt", "chosen", "rejected"]
    table = explicit(name)
    deduped = pk.dedup(table, columns=columns)
    assert deduped.num_rows == len(data) - 1 if name != "conversational_unpaired" else len(data)
    assert pk.dedup(data, columns=[c for c in columns if c in data.column_names]).num_rows >= 1
    train, test = pk.split(table, test_size=0.5)
    assert train.num_rows + test.num_rows == len(data)
    prompts = train.column("prompt").to_pylist()
    assert not [p for p in test.column("prompt").to_pylist() if p in prompts]


@pytest.mark.parametrize("name", ["standard_explicit", "conversational_explicit"])
def test_strength_and_filter_read_scored_trl_pairs(name):
    data = layout(name)  # UltraFeedback-binarized style: score_chosen / score_rejected
    strength = pk.preference_strength(data, chosen_scores="score_chosen",
                                      rejected_scores="score_rejected")
    assert strength.column("strength_mean").to_pylist() == [6.0, 0.5, 6.0]
    kept = pk.filter_pairs(strength, min_agreement=1.0, max_strength_std=0.0)
    assert kept.num_rows == 3
    # min_margin reads a `margin` column (prefkit's pairs have one; TRL's layouts do not)
    with_margin = strength.append_column(
        "margin", pc.subtract(strength["score_chosen"], strength["score_rejected"]))
    assert pk.filter_pairs(with_margin, min_margin=1.0).num_rows == 2


@pytest.mark.parametrize("name", ["standard_explicit", "conversational_explicit",
                                  "standard_implicit", "conversational_implicit"])
def test_tokenize_pairs_gives_trls_chat_template_text(name, tokenizer):
    table = explicit(name)
    out = pk.tokenize_pairs(table, tokenizer, add_special_tokens=False)
    for row in out.to_pylist():
        example = {k: row[k] for k in ("prompt", "chosen", "rejected")}
        rendered = trl_data.maybe_apply_chat_template(example, tokenizer)
        assert tokenizer.decode(row["prompt_ids"]) == rendered["prompt"]
        assert tokenizer.decode(row["chosen_ids"]) == rendered["chosen"]
        assert tokenizer.decode(row["rejected_ids"]) == rendered["rejected"]


@pytest.mark.parametrize("name", ["standard_explicit", "conversational_explicit"])
def test_unpair_output_renders_with_trls_chat_template(name, tokenizer):
    rows = pk.unpair(layout(name))
    for row, paired in zip(rows.to_pylist(), list(layout(name)) * 2):
        rendered = trl_data.maybe_apply_chat_template(row, tokenizer)
        assert set(rendered) >= {"prompt", "completion", "label"}
        assert rendered["label"] == row["label"]
        side = "chosen" if row["label"] else "rejected"
        assert rendered["completion"] == trl_data.maybe_apply_chat_template(
            {k: paired[k] for k in ("prompt", "chosen", "rejected")}, tokenizer)[side]


def test_unpaired_layouts_feed_kto_weights():
    assert kto_weights(layout("standard_unpaired")) == kto_weights(3, 1)
    assert kto_weights(layout("conversational_unpaired")) == kto_weights(1, 1)


# --------------------------------------------------------------------------------------------
# prefkit outputs pass TRL's own checks
# --------------------------------------------------------------------------------------------


def test_prefkit_outputs_are_trl_preference_rows(tokenizer):
    long = pa.table({"prompt": ["q1", "q1", "q2", "q2"], "response": ["a", "b", "c", "d"],
                     "score": [1.0, 0.0, 2.0, 1.0]})
    pairs = pk.mine_pairs(long)
    outputs = {
        "mine_pairs": pairs,
        "order_curriculum": pk.order_curriculum(pairs),
        "dedup": pk.dedup(pairs, columns=["prompt", "chosen", "rejected"]),
        "split": pk.split(pairs, test_size=1)[0],
        "split_prompt": pk.split_prompt(layout("conversational_implicit")),
        "preference_strength": pk.preference_strength(
            pairs, chosen_scores="score_chosen", rejected_scores="score_rejected"),
    }
    for name, table in outputs.items():
        rows = table.to_pylist()
        assert rows, name
        for row in rows:
            assert trl_data.maybe_extract_prompt(row) == row, name
            rendered = trl_data.maybe_apply_chat_template(
                {k: row[k] for k in ("prompt", "chosen", "rejected")}, tokenizer)
            if trl_data.is_conversational(row):
                assert rendered["prompt"].endswith("<s>assistant:"), name
            else:
                assert rendered == {k: row[k] for k in ("prompt", "chosen", "rejected")}, name


def test_rank_lists_rows_are_no_trl_type_and_mine_pairs_is_the_way():
    """TRL and OpenRLHF have no K-ranked-responses dataset type (docs/formats.md): a ranked
    list's pairwise preferences are mine_pairs(strategy="all_pairs") of the same long table."""
    long = pa.table({"prompt": ["q"] * 3, "response": ["a", "b", "c"], "score": [3.0, 2.0, 1.0]})
    lists = pk.rank_lists(long)
    row = lists.to_pylist()[0]
    assert not {"chosen", "rejected", "completion"} & set(row)
    pairs = pk.mine_pairs(long, strategy="all_pairs")
    ranked = row["responses"]
    expected = {(ranked[i], ranked[j]) for i in range(3) for j in range(i + 1, 3)}
    assert set(zip(pairs.column("chosen").to_pylist(),
                   pairs.column("rejected").to_pylist())) == expected
    assert math.isclose(np.mean(pairs.column("margin").to_numpy()), 4 / 3)


def test_list_triples_from_ranked_lists_feed_trls_tpo_trainer(tokenizer, tmp_path):
    long = pa.table({
        "prompt": ["q1"] * 4 + ["q2"] * 2 + ["q3"] * 3,
        "response": ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
        "score": [1.0, 4.0, 2.0, 3.0, 1.0, 0.0, 0.0, 2.0, 1.0],
    })
    lists = pk.rank_lists(long)
    out = list_triples(lists)
    views = list_triples(pk.rank_lists(long, views=True))  # list<string_view> responses
    assert views.to_pylist() == out.to_pylist()
    assert out.select(["prompt", "reference", "chosen", "rejected", "score_reference",
                       "score_chosen", "score_rejected"]).to_pylist() == [
        {"prompt": "q1", "reference": "b", "chosen": "d", "rejected": "a",
         "score_reference": 4.0, "score_chosen": 3.0, "score_rejected": 1.0},
        {"prompt": "q3", "reference": "h", "chosen": "i", "rejected": "g",
         "score_reference": 2.0, "score_chosen": 1.0, "score_rejected": 0.0},
    ]
    assert {"rows", "group_id"} <= set(out.column_names)
    report = pk.report_of(out)
    assert report["dropped"] == {"list_too_short": 1}
    assert report["rows_in"] == report["rows_used"] + 1
    assert list_triples(lists, scores=None).column_names[:4] == \
        ["prompt", "reference", "chosen", "rejected"]
    with pytest.raises(pk.PrefkitError, match="column 'responses' must be a list"):
        list_triples(pa.table({"responses": ["a"]}))
    with pytest.raises(pk.PrefkitError, match="column 'chosen' would collide"):
        list_triples(lists.append_column("chosen", pa.array(["x"] * lists.num_rows)))
    tpo = pytest.importorskip("trl.experimental.tpo")
    from tiny_lm import tiny_llama

    args = tpo.TPOConfig(output_dir=str(tmp_path), bf16=False, report_to=[])
    trainer = tpo.TPOTrainer(model=tiny_llama(len(tokenizer)), args=args,
                             processing_class=tokenizer,
                             train_dataset=datasets.Dataset(plain(out.drop_columns(["group_id"]))))
    assert len(trainer.train_dataset) == out.num_rows
    assert {"prompt_ids", "chosen_ids", "rejected_ids", "reference_ids"} <= \
        set(trainer.train_dataset.column_names)


def test_mixed_prompts_tokenize_but_are_no_trl_format(tokenizer):
    """mine_pairs over chat-message prompts and text responses: prompt messages, text
    completions. tokenize_pairs renders it; for TRL the completions become messages."""
    long = pa.table({"prompt": pa.array([[m("user", "What color is the sky?")]] * 2, CHAT),
                     "response": ["It is blue.", "It is green."], "score": [1.0, 0.0]})
    pairs = pk.mine_pairs(long)
    assert pa.types.is_list(pairs.schema.field("prompt").type)
    assert not pa.types.is_list(pairs.schema.field("chosen").type)
    out = pk.tokenize_pairs(pairs, tokenizer, add_special_tokens=False).to_pylist()[0]
    as_messages = {"prompt": out["prompt"],
                   "chosen": [m("assistant", out["chosen"])],
                   "rejected": [m("assistant", out["rejected"])]}
    rendered = trl_data.maybe_apply_chat_template(as_messages, tokenizer)
    assert tokenizer.decode(out["prompt_ids"]) == rendered["prompt"]
    assert rendered["chosen"].startswith(" It is blue.")
