"""Hand-written examples of ``pk.mine_pairs``: each strategy's pairs spelled out.

The main example is one prompt with five rated responses (input order a..e):

    row  response  score
    0    a         3.0
    1    b         1.0
    2    c         2.0
    3    d         1.0     (ties with b; b is earlier, so b ranks first)
    4    e         0.0

Ranked best first: a(3) c(2) b(1) d(1) e(0).
"""

from __future__ import annotations

import doctest
import importlib
import math

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
import xxhash

FIVE = pa.table(
    {
        "prompt": ["p"] * 5,
        "response": ["a", "b", "c", "d", "e"],
        "score": [3.0, 1.0, 2.0, 1.0, 0.0],
    }
)


def triples(table: pa.Table) -> list[tuple[str, str, float]]:
    return [(r["chosen"], r["rejected"], r["margin"]) for r in table.to_pylist()]


def test_best_vs_worst():
    assert triples(pk.mine_pairs(FIVE)) == [("a", "e", 3.0)]


def test_best_vs_all_in_rank_order():
    assert triples(pk.mine_pairs(FIVE, strategy="best_vs_all")) == [
        ("a", "c", 1.0),
        ("a", "b", 2.0),
        ("a", "d", 2.0),
        ("a", "e", 3.0),
    ]


def test_all_pairs_drops_ties():
    # (b, d) is a tie: dropped with ties="drop".
    assert triples(pk.mine_pairs(FIVE, strategy="all_pairs")) == [
        ("a", "c", 1.0),
        ("a", "b", 2.0),
        ("a", "d", 2.0),
        ("a", "e", 3.0),
        ("c", "b", 1.0),
        ("c", "d", 1.0),
        ("c", "e", 2.0),
        ("b", "e", 1.0),
        ("d", "e", 1.0),
    ]


def test_all_pairs_keeps_ties_with_margin_zero():
    pairs = triples(pk.mine_pairs(FIVE, strategy="all_pairs", ties="keep"))
    assert pairs[-3:] == [("b", "d", 0.0), ("b", "e", 1.0), ("d", "e", 1.0)]
    assert len(pairs) == 10


def test_adjacent_skips_the_tie():
    assert triples(pk.mine_pairs(FIVE, strategy="adjacent")) == [
        ("a", "c", 1.0),
        ("c", "b", 1.0),
        ("d", "e", 1.0),
    ]
    assert triples(pk.mine_pairs(FIVE, strategy="adjacent", ties="keep")) == [
        ("a", "c", 1.0),
        ("c", "b", 1.0),
        ("b", "d", 0.0),
        ("d", "e", 1.0),
    ]


def test_top_k_vs_bottom_k():
    # k=2: top {a, c} x bottom {d, e}, i-major.
    assert triples(pk.mine_pairs(FIVE, strategy="top_k_vs_bottom_k", k=2)) == [
        ("a", "d", 2.0),
        ("a", "e", 3.0),
        ("c", "d", 1.0),
        ("c", "e", 2.0),
    ]
    # k=1 is best vs worst; k larger than n // 2 is capped (top and bottom never overlap).
    assert triples(pk.mine_pairs(FIVE, strategy="top_k_vs_bottom_k", k=1)) == [("a", "e", 3.0)]
    capped = pk.mine_pairs(FIVE, strategy="top_k_vs_bottom_k", k=10)
    assert triples(capped) == triples(pk.mine_pairs(FIVE, strategy="top_k_vs_bottom_k", k=2))


def test_min_margin_is_strict():
    # (a, c) has margin exactly 1.0, which is not > 1.0.
    assert triples(pk.mine_pairs(FIVE, strategy="best_vs_all", min_margin=1.0)) == [
        ("a", "b", 2.0),
        ("a", "d", 2.0),
        ("a", "e", 3.0),
    ]
    assert pk.mine_pairs(FIVE, min_margin=3.0).num_rows == 0
    report = pk.report_of(pk.mine_pairs(FIVE, min_margin=3.0))
    assert report["dropped"] == {"below_margin": 5}


def test_max_pairs_per_prompt_keeps_largest_margins_in_generation_order():
    # Margins 1, 2, 2, 3: keep 3 (a,e) and the earlier of the two 2s (a,b); order as generated.
    pairs = pk.mine_pairs(FIVE, strategy="best_vs_all", max_pairs_per_prompt=2)
    assert triples(pairs) == [("a", "b", 2.0), ("a", "e", 3.0)]
    report = pk.report_of(pairs)
    assert report["rows_used"] == 3
    assert report["dropped"] == {"not_selected": 2}


def test_best_vs_random_draws_with_splitmix64():
    gid = xxhash.xxh3_64_intdigest(b"p")
    candidates = ["c", "b", "d", "e"]  # those that qualify against a, in rank order
    seen = set()
    for seed in range(8):
        x = ref.splitmix64(seed ^ gid)
        expected = candidates[(x * len(candidates)) >> 64]
        pairs = pk.mine_pairs(FIVE, strategy="best_vs_random", seed=seed)
        assert triples(pairs) == [("a", expected, 3.0 - {"c": 2, "b": 1, "d": 1, "e": 0}[expected])]
        seen.add(expected)
    assert len(seen) > 1  # different seeds draw different responses
    # Spelled out for seed 0 and 2.
    assert (
        pk.mine_pairs(FIVE, strategy="best_vs_random", seed=0).column("rejected")[0].as_py() == "c"
    )
    assert (
        pk.mine_pairs(FIVE, strategy="best_vs_random", seed=2).column("rejected")[0].as_py() == "d"
    )


def test_splitmix64_reference_vector():
    # The first output of SplitMix64 seeded with 0 (Vigna's reference implementation).
    assert ref.splitmix64(0) == 0xE220A8397B1DCDAF


def test_length_penalty_counts_code_points():
    data = pa.table(
        {
            "prompt": ["q", "q"],
            "response": ["\U0001f600" * 5, "a much longer answer"],  # 5 and 20 code points
            "score": [1.0, 1.1],
        }
    )
    # e = 1.0 - 0.01 * 5 = 0.95 beats 1.1 - 0.01 * 20 = 0.9.
    [pair] = pk.mine_pairs(data, length_penalty=0.01).to_pylist()
    assert pair["chosen"] == "\U0001f600" * 5
    assert pair["score_chosen"] == 1.0 and pair["score_rejected"] == 1.1
    assert math.isclose(pair["margin"], 0.05, rel_tol=1e-9)
    # Without the penalty the longer one wins.
    [plain] = pk.mine_pairs(data).to_pylist()
    assert plain["chosen"] == "a much longer answer"


def test_several_scores_give_agreement_and_margin_std():
    data = pa.table(
        {
            "prompt": ["q", "q"],
            "response": ["x", "y"],
            "rm1": [1.0, 0.0],
            "rm2": [3.0, 1.0],
            "rm3": [0.0, 0.5],
        }
    )
    [pair] = pk.mine_pairs(data, score=["rm1", "rm2", "rm3"]).to_pylist()
    # Mean scores 4/3 vs 1.5/3; per-column margins 1, 2, -0.5.
    assert pair["chosen"] == "x"
    assert math.isclose(pair["score_chosen"], 4 / 3, rel_tol=1e-12)
    assert math.isclose(pair["score_rejected"], 0.5, rel_tol=1e-12)
    assert math.isclose(pair["agreement"], 2 / 3, rel_tol=1e-12)
    margins = [1.0, 2.0, -0.5]
    mean = sum(margins) / 3
    std = math.sqrt(sum((m - mean) ** 2 for m in margins) / 3)
    assert math.isclose(pair["margin_std"], std, rel_tol=1e-12)
    assert pk.mine_pairs(data, score="rm1").column_names[-1] == "rejected_row"


def test_a_null_in_any_score_column_drops_the_row():
    data = pa.table(
        {
            "prompt": ["q"] * 3,
            "response": ["x", "y", "z"],
            "rm1": [1.0, 0.0, 2.0],
            "rm2": [1.0, 0.0, None],
        }
    )
    pairs = pk.mine_pairs(data, score=["rm1", "rm2"])
    assert triples(pairs) == [("x", "y", 1.0)]
    assert pk.report_of(pairs)["dropped"] == {"nan_score": 1}


def test_output_columns_types_and_group_id():
    pairs = pk.mine_pairs(FIVE)
    assert pairs.column_names == [
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
    assert pairs.schema.field("group_id").type == pa.uint64()
    row = pairs.to_pylist()[0]
    assert row["group_id"] == xxhash.xxh3_64_intdigest(b"p")
    assert (row["chosen_row"], row["rejected_row"]) == (0, 4)
    assert row["prompt"] == "p"


def test_groups_in_order_of_first_row_and_rows_index_the_input():
    data = pa.table(
        {
            "prompt": ["y", "x", "y", "x", "z"],
            "response": ["y1", "x1", "y2", "x2", "z1"],
            "score": [0.0, 1.0, 1.0, 0.0, 5.0],
        }
    )
    pairs = pk.mine_pairs(data)
    assert pairs.select(
        ["prompt", "chosen", "rejected", "chosen_row", "rejected_row"]
    ).to_pylist() == [
        {"prompt": "y", "chosen": "y2", "rejected": "y1", "chosen_row": 2, "rejected_row": 0},
        {"prompt": "x", "chosen": "x1", "rejected": "x2", "chosen_row": 1, "rejected_row": 3},
    ]
    report = pk.report_of(pairs)
    assert report["dropped"] == {"group_too_small": 1}
    assert report["groups_in"] == 3 and report["groups_with_pairs"] == 2
    assert report["pairs_out"] == 2 and report["rows_used"] == 4


def test_every_drop_reason_in_precedence_order():
    data = pa.table(
        {
            "prompt": [None, "a", "a", "a", "b", "c", "c", "d", "d", "e", "e", "e"],
            "response": ["r", None, "r", "s", "r", "r", "s", "r", "s", "r", "s", "t"],
            "score": [1.0, None, math.nan, 1.0, 1.0, 2.0, 2.0, 1.0, 1.5, 3.0, 2.0, 1.0],
        }
    )
    # row 0: null_key; 1: null_response (also null score: null_response comes first);
    # 2: nan_score; 3: group "a" is left with one valid row -> group_too_small; 4 likewise;
    # 5, 6: equal scores -> tie; 7, 8: margin 0.5 is not > 1 -> below_margin;
    # 9, 11 pair (3 vs 1), 10 is not_selected.
    pairs = pk.mine_pairs(data, min_margin=1.0)
    assert triples(pairs) == [("r", "t", 2.0)]
    report = pk.report_of(pairs)
    assert report["dropped"] == {
        "null_key": 1,
        "null_response": 1,
        "nan_score": 1,
        "group_too_small": 2,
        "tie": 2,
        "below_margin": 2,
        "not_selected": 1,
    }
    assert report["rows_used"] == 2 and report["rows_in"] == 12
    assert report["groups_in"] == 5 and report["groups_with_pairs"] == 1
    assert report["parameters"]["min_margin"] == 1.0


def test_group_column_and_int_keys():
    data = pa.table(
        {
            "prompt": ["first wording", "second wording", "other"],
            "pid": [7, 7, 8],
            "response": ["a", "b", "c"],
            "score": [0.0, 1.0, 2.0],
        }
    )
    [pair] = pk.mine_pairs(data, group="pid").to_pylist()
    # The prompt is the chosen row's; the id hashes 0x02 + i64 little endian.
    assert pair["prompt"] == "second wording"
    assert pair["group_id"] == xxhash.xxh3_64_intdigest(b"\x02" + (7).to_bytes(8, "little"))


def test_chat_prompts_group_by_value():
    chat = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    hi = [{"role": "user", "content": "hi"}]
    hi_again = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    data = pa.table(
        {
            "prompt": pa.array([hi, hi_again, hi, hi_again], chat),
            "response": ["a", "b", "c", "d"],
            "score": [1.0, 2.0, 0.0, 1.0],
        }
    )
    pairs = pk.mine_pairs(data).to_pylist()
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a", "c"), ("b", "d")]
    assert pairs[0]["prompt"] == hi
    assert pairs[1]["prompt"] == hi_again
    assert pairs[0]["group_id"] == ref.group_id(hi)
    assert pairs[0]["group_id"] == xxhash.xxh3_64_intdigest(
        b"\x05"
        + (1).to_bytes(8, "little")
        + b"\x06"
        + (4).to_bytes(8, "little")
        + b"role"
        + b"\x01"
        + (4).to_bytes(8, "little")
        + b"user"
        + (7).to_bytes(8, "little")
        + b"content"
        + b"\x01"
        + (2).to_bytes(8, "little")
        + b"hi"
    )


def test_carry_columns_come_from_the_chosen_row():
    data = FIVE.append_column("source", pa.array(["sa", "sb", "sc", "sd", "se"]))
    data = data.append_column("idx", pa.array([10, 11, 12, 13, 14], pa.int32()))
    pairs = pk.mine_pairs(data, strategy="adjacent", carry=["source", "idx"])
    assert pairs.column_names[-2:] == ["source", "idx"]
    assert pairs.column("source").to_pylist() == ["sa", "sc", "sd"]
    assert pairs.column("idx").to_pylist() == [10, 12, 13]
    assert pairs.schema.field("idx").type == pa.int32()


def test_provenance_records_the_call():
    report = pk.report_of(pk.mine_pairs(FIVE, strategy="all_pairs", seed=3))
    assert report["op"] == "mine_pairs"
    assert report["prefkit_version"] == pk.__version__
    assert report["parameters"]["strategy"] == "all_pairs"
    assert report["parameters"]["seed"] == 3
    assert report["rows_in"] == 5 and report["rows_out"] == 9


def test_infinite_scores_are_valid():
    data = pa.table(
        {"prompt": ["q"] * 3, "response": ["x", "y", "z"], "score": [math.inf, 0.0, -math.inf]}
    )
    pairs = pk.mine_pairs(data, strategy="all_pairs")
    assert [(c, r) for c, r, _ in triples(pairs)] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert all(m == math.inf for _, _, m in triples(pairs))


# --- the docstring examples ----------------------------------------------------------------

DOCTEST_MODULES = [
    "prefkit",
    "prefkit._errors",
    "prefkit._provenance",
    "prefkit.io",
    "prefkit.pairs",
]


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
    assert result.attempted > 0


# --- corners of the rules ------------------------------------------------------------------


def test_accounting_holds_every_count_even_when_zero():
    # docs/pairs.md: the metadata holds groups_in, groups_with_pairs and pairs_out.
    tie = pa.table({"prompt": ["p", "p"], "response": ["a", "b"], "score": [1.0, 1.0]})
    report = pk.report_of(pk.mine_pairs(tie))
    assert report["dropped"] == {"tie": 2}
    assert report["groups_in"] == 1
    assert report["groups_with_pairs"] == 0
    assert report["pairs_out"] == 0
    empty = pk.report_of(pk.mine_pairs(tie.slice(0, 0)))
    assert (empty["rows_in"], empty["groups_in"], empty["groups_with_pairs"]) == (0, 0, 0)


def test_equal_infinite_scores_are_a_kept_tie():
    # e_a == e_b (both +inf) and min_margin == 0: with ties="keep" the pair qualifies, with
    # margin 0 (DESIGN.md: ties are emitted "with margin 0"; inf - inf would be NaN).
    data = pa.table(
        {"prompt": ["p"] * 3, "response": ["x", "y", "z"], "score": [math.inf, math.inf, 0.0]}
    )
    pairs = pk.mine_pairs(data, strategy="adjacent", ties="keep").to_pylist()
    assert [(p["chosen"], p["rejected"], p["margin"]) for p in pairs] == [
        ("x", "y", 0.0),
        ("y", "z", math.inf),
    ]
    # With ties="drop" they do not pair.
    dropped = pk.mine_pairs(data, strategy="adjacent").to_pylist()
    assert [(p["chosen"], p["rejected"]) for p in dropped] == [("y", "z")]


def test_a_null_typed_key_column_is_all_null_keys():
    # pa.nulls(): every key is null, so every row is dropped as null_key.
    data = pa.table({"prompt": pa.nulls(2), "response": ["a", "b"], "score": [1.0, 0.0]})
    pairs = pk.mine_pairs(data)
    assert pairs.num_rows == 0
    assert pk.report_of(pairs)["dropped"] == {"null_key": 2}
