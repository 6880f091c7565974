"""Bad input and bad arguments raise ``pk.PrefkitError`` with a message that says what is wrong."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest


def good() -> pa.Table:
    return pa.table(
        {
            "prompt": ["p", "p", "q"],
            "response": ["a", "b", "c"],
            "score": [1.0, 0.0, 2.0],
        }
    )


def test_prefkit_error_is_a_value_error():
    assert issubclass(pk.PrefkitError, ValueError)


@pytest.mark.parametrize(
    "kwargs, column",
    [
        ({"prompt": "question"}, "question"),
        ({"response": "answer"}, "answer"),
        ({"score": "reward"}, "reward"),
        ({"score": ["score", "rm2"]}, "rm2"),
        ({"group": "prompt_id"}, "prompt_id"),
        ({"carry": ["source"]}, "source"),
    ],
)
def test_missing_column_is_named(kwargs, column):
    with pytest.raises(pk.PrefkitError, match=f"'{column}'.*not found"):
        pk.mine_pairs(good(), **kwargs)


def test_missing_column_message_lists_the_columns():
    with pytest.raises(pk.PrefkitError, match=r"\['prompt', 'response', 'score'\]"):
        pk.mine_pairs(good(), score="reward")


def test_text_scores_name_the_column_and_type():
    data = good().set_column(2, "score", pa.array(["1.0", "0.0", "2.0"]))
    with pytest.raises(pk.PrefkitError, match=r"(?i)'score'.*(string|utf8)"):
        pk.mine_pairs(data)


def test_text_in_the_second_score_column_is_named():
    data = good().append_column("rm2", pa.array(["x", "y", "z"], pa.large_string()))
    with pytest.raises(pk.PrefkitError, match=r"(?i)'rm2'.*(large_string|large_?utf8)"):
        pk.mine_pairs(data, score=["score", "rm2"])


def test_numeric_response_is_an_error_naming_the_column():
    data = good().set_column(1, "response", pa.array([1, 2, 3]))
    with pytest.raises(pk.PrefkitError, match=r"(?i)'response'.*int64"):
        pk.mine_pairs(data)


def test_nan_error_names_the_column_and_row():
    data = pa.table(
        {
            "prompt": ["p"] * 4,
            "response": ["a", "b", "c", "d"],
            "score": [1.0, 0.0, 2.0, 3.0],
            "rm2": [1.0, 2.0, math.nan, 0.0],
        }
    )
    with pytest.raises(pk.PrefkitError, match=r"'rm2'.*row 2"):
        pk.mine_pairs(data, score=["score", "rm2"], nan="error")
    # nan="drop" (the default) counts it instead.
    pairs = pk.mine_pairs(data, score=["score", "rm2"])
    assert pk.report_of(pairs)["dropped"] == {"nan_score": 1, "not_selected": 1}


def test_null_score_with_nan_error_names_the_row():
    data = pa.table({"prompt": ["p"] * 3, "response": ["a", "b", "c"], "score": [1.0, None, 2.0]})
    with pytest.raises(pk.PrefkitError, match=r"'score'.*row 1"):
        pk.mine_pairs(data, nan="error")


def test_unknown_strategy_names_the_value():
    with pytest.raises(pk.PrefkitError, match="best_vs_wurst"):
        pk.mine_pairs(good(), strategy="best_vs_wurst")


@pytest.mark.parametrize("value", [-0.1, -1.0, math.nan])
def test_bad_min_margin(value):
    with pytest.raises(pk.PrefkitError, match="min_margin"):
        pk.mine_pairs(good(), min_margin=value)


@pytest.mark.parametrize("strategy", ["top_k_vs_bottom_k", "best_vs_worst"])
@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one(strategy, k):
    with pytest.raises(pk.PrefkitError, match="k"):
        pk.mine_pairs(good(), strategy=strategy, k=k)


@pytest.mark.parametrize("value", [0, -3])
def test_max_pairs_per_prompt_below_one(value):
    with pytest.raises(pk.PrefkitError, match="max_pairs_per_prompt"):
        pk.mine_pairs(good(), max_pairs_per_prompt=value)


def test_unknown_ties_names_the_value():
    with pytest.raises(pk.PrefkitError, match=r"ties.*'equal'"):
        pk.mine_pairs(good(), ties="equal")


def test_unknown_nan_names_the_value():
    with pytest.raises(pk.PrefkitError, match=r"nan.*'skip'"):
        pk.mine_pairs(good(), nan="skip")


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_length_penalty(value):
    with pytest.raises(pk.PrefkitError, match="length_penalty"):
        pk.mine_pairs(good(), length_penalty=value)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_outside_u64(seed):
    with pytest.raises(pk.PrefkitError, match="seed"):
        pk.mine_pairs(good(), strategy="best_vs_random", seed=seed)


def test_empty_score_list():
    with pytest.raises(pk.PrefkitError, match="score"):
        pk.mine_pairs(good(), score=[])


def test_carry_clashing_with_a_result_column():
    data = good().append_column("margin", pa.array([1, 2, 3]))
    with pytest.raises(pk.PrefkitError, match="'margin'"):
        pk.mine_pairs(data, carry=["margin"])


@pytest.mark.parametrize(
    "data, type_name",
    # A string is a path (streaming input, docs/stream.md): a missing file is named.
    [(3, "int"), ([{"prompt": "p"}], "list"), ("table.parquet", "does not exist"),
     (None, "NoneType")],
)
def test_not_a_table(data, type_name):
    with pytest.raises(pk.PrefkitError, match=type_name):
        pk.mine_pairs(data)


@pytest.mark.parametrize("name", ["\x00", "prompt\x00", "meta\x00data"])
def test_a_column_name_with_nul_is_an_error_naming_it(name):
    # The C data interface would cut the name at the NUL: 'prompt\x00' arriving as 'prompt'.
    data = good().append_column(name, pa.array(["x", "y", "z"]))
    with pytest.raises(pk.PrefkitError, match="NUL character") as error:
        pk.mine_pairs(data)
    assert repr(name) in str(error.value)
    nested = good().append_column(
        "meta", pa.array([{name: 1}] * 3, pa.struct([pa.field(name, pa.int64())]))
    )
    with pytest.raises(pk.PrefkitError, match=r"column 'meta\..*' has a NUL"):
        pk.rank_lists(nested)


def test_lone_surrogates_and_untyped_margins_are_prefkit_errors():
    with pytest.raises(pk.PrefkitError, match="not valid Unicode.*position 1"):
        pk.normalize_text("a\udf40b")
    paths = pa.table({"prompt": ["p", "p"], "steps": [["a"], ["b"]], "reward": [1.0, 0.0]})
    for margin in (None, "0.5", True):
        with pytest.raises(pk.PrefkitError, match="min_margin must be a number"):
            pk.tree_pairs(pk.build_trees(paths), min_margin=margin)


def test_map_key_is_an_error_naming_the_column():
    data = good().set_column(
        0,
        "prompt",
        pa.array([[("a", 1)], [("a", 1)], [("b", 2)]], pa.map_(pa.string(), pa.int64())),
    )
    with pytest.raises(pk.PrefkitError, match="'prompt'"):
        pk.mine_pairs(data)


def test_unnest_bad_input():
    nested = pa.table({"prompt": ["p"], "completions": [[{"response": "r", "score": 1.0}]]})
    with pytest.raises(pk.PrefkitError, match="'answers'.*not found"):
        pk.unnest(nested, completions="answers")
    with pytest.raises(pk.PrefkitError, match="'rating'.*not found"):
        pk.unnest(nested, score="rating")
    with pytest.raises(pk.PrefkitError, match=r"'prompt'.*list<struct"):
        pk.unnest(nested, completions="prompt")
    with pytest.raises(pk.PrefkitError, match="int"):
        pk.unnest(5)


def test_errors_do_not_kill_the_process():
    """Every failure is an exception in the caller, never an abort (a panic would abort a
    process built with panic="abort"); run a few in a child process to be sure."""
    code = (
        "import prefkit as pk, pyarrow as pa\n"
        "t = pa.table({'prompt': ['p'], 'response': ['r'], 'score': ['x']})\n"
        "for kw in [{}, {'strategy': 'x'}, {'k': 0}, {'min_margin': -1.0}]:\n"
        "    try:\n"
        "        pk.mine_pairs(t, **kw)\n"
        "    except pk.PrefkitError:\n"
        "        pass\n"
        "print('alive')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alive"


def test_a_quadratic_result_that_cannot_fit_is_refused_before_mining():
    """One prompt with a million responses under all_pairs asks for 5 * 10^11 pairs: a clear
    error before anything is allocated, never an OOM kill (docs/pairs.md)."""
    n = 1_000_000
    data = pa.table({"prompt": pa.array(["one prompt"] * n),
                     "response": pa.array([str(i) for i in range(n)]),
                     "score": np.arange(n, dtype=np.float64)})
    with pytest.raises(pk.PrefkitError, match=r"all_pairs would mine up to 499999500000 pairs "
                                              r"\(its largest group has 1000000 responses"):
        pk.mine_pairs(data, strategy="all_pairs")
    assert pk.mine_pairs(data, strategy="best_vs_worst").num_rows == 1


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_invalid_utf8_from_a_capsule_producer_is_an_error_not_a_crash(text_type):
    # Arrays imported through the C data interface are not validated (pyarrow's from_buffers
    # does not validate either); a fuzzer found that such text segfaulted MinHash
    # normalisation (fuzz/regressions/ops). The bad value is row 1 of the second chunk.
    values = b"ok\xff\xfebad"
    if text_type == pa.string_view():
        bad = pa.array(["ok", "x" * 20], pa.string_view())
        views = bytearray(bad.buffers()[1].to_pybytes())
        data = bytearray(bad.buffers()[2].to_pybytes())
        data[3] = 0xFF  # inside the second (out-of-line) value
        texts = pa.Array.from_buffers(
            text_type, 2, [None, pa.py_buffer(bytes(views)), pa.py_buffer(bytes(data))])
    else:
        offset = pa.int32() if text_type == pa.string() else pa.int64()
        offsets = pa.array([0, 2, len(values)], offset).buffers()[1]
        texts = pa.Array.from_buffers(text_type, 2, [None, offsets, pa.py_buffer(values)])
    good = pa.array(["fine", "also fine"], text_type)
    table = pa.Table.from_batches([
        pa.record_batch({"prompt": good, "response": ["a", "b"], "score": [1.0, 0.0]}),
        pa.record_batch({"prompt": texts, "response": ["a", "b"], "score": [1.0, 0.0]}),
    ])
    for run in (
        lambda: pk.dedup(table, columns="prompt", method="minhash"),
        lambda: pk.dedup(table, columns="prompt"),
        lambda: pk.mine_pairs(table),
    ):
        with pytest.raises(pk.PrefkitError,
                           match="column 'prompt' must be valid UTF-8 text, got invalid UTF-8 at row 3"):
            run()


def test_invalid_utf8_inside_chat_messages_names_the_row():
    values = b"hi\xffthere"
    offsets = pa.array([0, 2, len(values)], pa.int32()).buffers()[1]
    contents = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(values)])
    roles = pa.array(["user", "user"])
    messages = pa.StructArray.from_arrays([roles, contents], ["role", "content"])
    prompts = pa.ListArray.from_arrays(pa.array([0, 0, 1, 2], pa.int32()), messages)
    table = pa.table({"prompt": prompts, "response": ["a", "b", "c"], "score": [1.0, 0.0, 2.0]})
    with pytest.raises(pk.PrefkitError, match="'prompt' must be valid UTF-8 text, got invalid UTF-8 at row 2"):
        pk.mine_pairs(table)
