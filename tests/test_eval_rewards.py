"""pk.evaluate_rewards against the plain-Python reference, the rewardbench package's section
scores, and tiny reward models (batch size and row order must not change a score)."""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.metadata
import importlib.util
import math
from pathlib import Path

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import reference
from hypothesis import given, settings
from hypothesis import strategies as st
from prefkit.eval import (
    REWARDBENCH_PRIOR_SETS,
    REWARDBENCH_SECTIONS,
    REWARDBENCH_SUBSETS,
    rewardbench_score,
    rewardbench_sections,
)

SCORED = ("score_chosen", "score_rejected")


def scored_table(chosen, rejected, **extra):
    return pa.table({"score_chosen": pa.array(chosen, pa.float64()),
                     "score_rejected": pa.array(rejected, pa.float64()), **extra})


# --------------------------------------------------------------------------------------------
# Already-scored columns
# --------------------------------------------------------------------------------------------


def test_accuracy_ties_and_subsets():
    table = scored_table([1.0, 2.0, 0.0, 3.0], [0.0, 2.0, 1.0, 1.0],
                         subset=["math", "geo", "geo", "math"])
    result = pk.evaluate_rewards(table, SCORED, subset="subset", bootstrap=0)
    assert result.schema.names == ["model", "subset", "pairs", "dropped", "wins", "ties",
                                   "accuracy", "ci_low", "ci_high"]
    assert result.column("subset").to_pylist() == [None, "geo", "math"]
    assert result.column("accuracy").to_pylist() == [0.625, 0.25, 1.0]
    assert result.column("ties").to_pylist() == [1, 1, 0]
    assert result.column("ci_low").to_pylist() == [None, None, None]
    zero = pk.evaluate_rewards(table, SCORED, subset="subset", ties="zero", bootstrap=0)
    assert zero.column("accuracy").to_pylist() == [0.5, 0.0, 1.0]


def test_drops_are_counted_by_reason():
    table = pa.table({
        "score_chosen": pa.array([1.0, None, math.nan, math.inf, 2.0], pa.float64()),
        "score_rejected": pa.array([0.0, 0.0, 0.0, 0.0, None], pa.float64()),
    })
    result = pk.evaluate_rewards(table, SCORED, bootstrap=10)
    row = result.to_pylist()[0]
    assert (row["pairs"], row["dropped"], row["accuracy"]) == (1, 4, 1.0)
    report = pk.report_of(result)
    assert report["op"] == "evaluate_rewards"
    assert report["rows_in"] == 5
    assert report["dropped"] == {"null_score": 2, "nan_score": 1, "infinite_score": 1}
    assert report["models"]["score_chosen"]["dropped"] == report["dropped"]


def test_integer_scores_and_named_columns():
    table = pa.table({"score_chosen_a": [3, 1], "score_rejected_a": [1, 1],
                      "x": [0.0, 5.0], "y": [1.0, 0.0]})
    result = pk.evaluate_rewards(table, {"b": ("x", "y"), "a_cols": ("score_chosen_a",
                                                                     "score_rejected_a")})
    assert result.column("model").to_pylist() == ["b", "a_cols"]
    listed = pk.evaluate_rewards(table, [("score_chosen_a", "score_rejected_a")], bootstrap=0)
    assert listed.column("model").to_pylist() == ["a"]
    assert listed.column("accuracy").to_pylist() == [0.75]
    assert pk.report_of(result)["agreement"] == [
        {"a": "b", "b": "a_cols", "pairs": 2, "agreement": 0.0}
    ]


def test_bootstrap_is_seeded_and_matches_resampling_pairs():
    rng = np.random.default_rng(3)
    n = 300
    chosen = rng.normal(size=n)
    rejected = np.where(rng.random(n) < 0.1, chosen, rng.normal(size=n) - 0.3)
    table = scored_table(chosen, rejected)
    first = pk.evaluate_rewards(table, SCORED, bootstrap=4000, seed=5).to_pylist()[0]
    again = pk.evaluate_rewards(table, SCORED, bootstrap=4000, seed=5).to_pylist()[0]
    other = pk.evaluate_rewards(table, SCORED, bootstrap=4000, seed=6).to_pylist()[0]
    assert first == again
    assert first != other
    assert first["ci_low"] < first["accuracy"] < first["ci_high"]
    # The multinomial shortcut has the distribution of resampling pair indices.
    outcome = np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))
    index = np.random.default_rng(0).integers(0, n, size=(4000, n))
    means = outcome[index].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    assert abs(first["ci_low"] - low) < 0.015
    assert abs(first["ci_high"] - high) < 0.015


def test_diagnostics_length_and_calibration():
    table = pa.table({
        "chosen": ["aaaa", "aaaa", "a", "a", "aa", None],
        "rejected": ["a", "a", "aaaa", "aaaa", "aa", "a"],
        "score_chosen": [1.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "score_rejected": [0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
    })
    report = pk.report_of(pk.evaluate_rewards(table, SCORED, length_buckets=2, bootstrap=0))
    model = report["models"]["score_chosen"]
    # Null chosen text: the pair is scored but has no length difference.
    buckets = model["length_buckets"]
    assert sum(b["pairs"] for b in buckets) == 5
    assert buckets[0]["low"] == -3.0 and buckets[-1]["high"] == 3.0
    assert buckets[0]["accuracy"] == 0.0 and buckets[-1]["accuracy"] == pytest.approx(5 / 6)
    calibration = model["calibration"]
    assert sum(b["pairs"] for b in calibration["buckets"]) == 6
    sig = 1 / (1 + math.exp(-1.0))
    high = next(b for b in calibration["buckets"] if b["low"] <= sig < b["high"])
    assert high["pairs"] == 3 and high["accuracy"] == 1.0
    assert high["mean_predicted"] == pytest.approx(sig)
    middle = next(b for b in calibration["buckets"] if b["low"] <= 0.5 < b["high"])
    assert middle["pairs"] == 1 and middle["accuracy"] == 0.5
    expected_ece = (3 * (1 - sig) + 2 * (1 - sig)) / 6  # margin 1: acc 1; margin -1: acc 0
    assert calibration["ece"] == pytest.approx(expected_ece)
    scores_only = pk.report_of(pk.evaluate_rewards(table.drop_columns(["chosen"]), SCORED))
    assert scores_only["models"]["score_chosen"]["length_buckets"] is None
    assert scores_only["length_buckets_skipped"] == "no column 'chosen'"


def test_polars_and_pandas_inputs():
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"chosen": ["aa", "b", "ccc"], "rejected": ["a", "bb", "c"],
                          "score_chosen": [1.0, 0.0, None], "score_rejected": [0.0, 1.0, 0.0],
                          "subset": ["x", "y", "x"]})
    result = pk.evaluate_rewards(frame, SCORED, subset="subset", bootstrap=0)
    assert result.column("accuracy").to_pylist() == [0.5, 1.0, 0.0]
    assert result.column("dropped").to_pylist() == [1, 1, 0]
    buckets = pk.report_of(result)["models"]["score_chosen"]["length_buckets"]
    assert [b["mean_length_diff"] for b in buckets if b["pairs"]] == [-1.0, 1.0]
    from_pandas = pk.evaluate_rewards(frame.to_pandas(), SCORED, subset="subset", bootstrap=0)
    assert from_pandas.to_pylist() == result.to_pylist()


def test_message_lengths():
    chosen = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    rejected = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]]
    table = pa.table({"chosen": chosen, "rejected": rejected,
                      "score_chosen": [1.0], "score_rejected": [0.0]})
    model = pk.report_of(pk.evaluate_rewards(table, SCORED))["models"]["score_chosen"]
    assert model["length_buckets"][0]["mean_length_diff"] == 3.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model_or_scores": ("score_chosen", "missing")}, "'missing'"),
        ({"model_or_scores": ("score_chosen", "text")}, "'text'"),
        ({"model_or_scores": SCORED, "subset": "missing"}, "'missing'"),
        ({"model_or_scores": SCORED, "subset": "floats"}, "'floats'"),
        ({"model_or_scores": SCORED, "subset": "nulls"}, "'nulls' has a null at row 1"),
        ({"model_or_scores": SCORED, "ties": "drop"}, "ties"),
        ({"model_or_scores": SCORED, "bootstrap": -1}, "bootstrap"),
        ({"model_or_scores": SCORED, "seed": 1.5}, "seed"),
        ({"model_or_scores": SCORED, "length_buckets": 0}, "length_buckets"),
        ({"model_or_scores": SCORED, "sections": "rewardbench"}, "subset"),
        ({"model_or_scores": SCORED, "sections": "other"}, "sections"),
        ({"model_or_scores": SCORED, "max_tokens_per_batch": 64}, "max_tokens_per_batch"),
        ({"model_or_scores": [("x", "y"), "rm"]}, "tuples"),
        ({"model_or_scores": {}}, "at least one"),
        ({"model_or_scores": None}, "required"),
    ],
)
def test_bad_input(kwargs, message):
    table = scored_table([1.0, 0.0], [0.0, 1.0], text=["a", "b"], floats=[0.5, 1.5],
                         nulls=["a", None])
    with pytest.raises(pk.PrefkitError, match=message):
        pk.evaluate_rewards(table, **kwargs)


@pytest.mark.parametrize("name", ["prefkit.eval", "prefkit.eval.rewards", "prefkit.eval.sections"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
    assert result.attempted > 0


# --------------------------------------------------------------------------------------------
# Property: equals the plain-Python reference
# --------------------------------------------------------------------------------------------

SCORE_VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5]),  # small set: many ties
    st.floats(-5, 5, allow_nan=False),
    st.sampled_from([None, math.nan, math.inf, -math.inf]),
)


@st.composite
def scored_rows(draw):
    n = draw(st.integers(0, 30))
    rows = []
    for _ in range(n):
        rows.append({
            "c1": draw(SCORE_VALUES), "r1": draw(SCORE_VALUES),
            "c2": draw(SCORE_VALUES), "r2": draw(SCORE_VALUES),
            "group": draw(st.sampled_from(["a", "b", "c"])),
        })
    # A subset with no usable pair: its rows have NaN scores.
    if draw(st.booleans()):
        rows.append({"c1": math.nan, "r1": 0.0, "c2": None, "r2": 1.0, "group": "empty"})
    return rows


@given(rows=scored_rows(), ties=st.sampled_from(["half", "zero"]), seed=st.integers(0, 3),
       bootstrap=st.sampled_from([0, 1, 50]), by_subset=st.booleans())
def test_matches_reference(rows, ties, seed, bootstrap, by_subset):
    schema = pa.schema([("c1", pa.float64()), ("r1", pa.float64()), ("c2", pa.float64()),
                        ("r2", pa.float64()), ("group", pa.string())])
    table = pa.Table.from_pylist(rows, schema=schema)
    subset = "group" if by_subset else None
    result = pk.evaluate_rewards(table, {"m1": ("c1", "r1"), "m2": ("c2", "r2")},
                                 subset=subset, ties=ties, bootstrap=bootstrap, seed=seed)
    expected, agreement = reference.evaluate_rewards(
        rows, [("m1", "c1", "r1"), ("m2", "c2", "r2")], subset=subset, ties=ties,
        bootstrap=bootstrap, seed=seed,
    )
    got = result.to_pylist()
    assert len(got) == len(expected)
    for have, want in zip(got, expected):
        for key, value in want.items():
            if isinstance(value, float):
                assert have[key] == pytest.approx(value, abs=1e-12), key
            else:
                assert have[key] == value, key
    assert pk.report_of(result)["agreement"] == agreement


# --------------------------------------------------------------------------------------------
# RewardBench sections against the real package (pinned: rewardbench==0.1.4)
# --------------------------------------------------------------------------------------------


def rewardbench_package():
    """rewardbench's constants module and its ``calculate_scores_per_section``.

    ``import rewardbench`` pulls every reward-model class it ships (fastchat, and transformers
    internals removed since), so the two source files are read from the installed package
    directly: the constants module is executed as it is, and the function is taken from
    ``utils.py`` by its definition, unchanged.
    """
    spec = importlib.util.find_spec("rewardbench")
    if spec is None:
        pytest.skip("rewardbench is not installed (pip install --no-deps rewardbench==0.1.4)")
    assert importlib.metadata.version("rewardbench") == "0.1.4"
    folder = Path(spec.submodule_search_locations[0])
    constants_spec = importlib.util.spec_from_file_location(
        "rewardbench_constants", folder / "constants.py"
    )
    constants = importlib.util.module_from_spec(constants_spec)
    constants_spec.loader.exec_module(constants)
    source = (folder / "utils.py").read_text()
    tree = ast.parse(source)
    node = next(n for n in tree.body
                if isinstance(n, ast.FunctionDef) and n.name == "calculate_scores_per_section")
    namespace: dict = {}
    code = compile(ast.Module([node], type_ignores=[]), str(folder / "utils.py"), "exec")
    exec(code, namespace)  # noqa: S102 - the installed package's own function, unchanged
    return constants, namespace["calculate_scores_per_section"]


def test_section_table_is_rewardbenchs():
    constants, _ = rewardbench_package()
    assert {s: [m for m, _ in members] for s, members in REWARDBENCH_SECTIONS.items()} == (
        constants.SUBSET_MAPPING
    )
    assert {m: w for members in REWARDBENCH_SECTIONS.values() for m, w in members} == (
        constants.EXAMPLE_COUNTS
    )
    assert REWARDBENCH_SUBSETS["math-prm"] == "Reasoning"


@pytest.mark.parametrize("present", ["all", "some"])
def test_sections_equal_rewardbench(present):
    constants, calculate = rewardbench_package()
    rng = np.random.default_rng(11 if present == "all" else 12)
    subsets = list(constants.EXAMPLE_COUNTS)
    if present == "some":
        subsets = [s for s in subsets if s not in constants.SUBSET_MAPPING["Chat"]][::2]
    rows = []
    for name in subsets:
        for _ in range(int(rng.integers(1, 40))):
            # rewardbench: results.append(1) if chosen > rejected else results.append(0)
            chosen, rejected = rng.choice([0.0, 1.0, 2.0], size=2)
            rows.append({"subset": name, "score_chosen": chosen, "score_rejected": rejected,
                         "result": 1 if chosen > rejected else 0})
    # rewardbench's per-subset accuracy, as in rewardbench.py: num_correct / num_total
    grouped = {}
    for name in sorted({row["subset"] for row in rows}):
        results = [row["result"] for row in rows if row["subset"] == name]
        grouped[name] = sum(results) / len(results)
    expected = calculate(constants.EXAMPLE_COUNTS, constants.SUBSET_MAPPING, grouped)

    table = pa.Table.from_pylist(rows)
    result = pk.evaluate_rewards(table, SCORED, subset="subset", ties="zero", bootstrap=0,
                                 sections="rewardbench")
    per_subset = {r["subset"]: r["accuracy"] for r in result.to_pylist() if r["subset"]}
    assert per_subset == grouped
    assert pk.report_of(result)["models"]["score_chosen"]["sections"] == expected
    assert rewardbench_sections(grouped) == expected
    if present == "some":
        assert expected["Chat"] == 0


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(
    st.sampled_from([*REWARDBENCH_SUBSETS, *REWARDBENCH_PRIOR_SETS, "elsewhere"]),
    st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=1,
))
def test_leaderboard_score_with_the_prior_sets(accuracies):
    """The leaderboard's average (reward-bench analysis/get_benchmark_results.py): sections
    weighted 2, the mean of the prior sets present weighted 1, NaN masked out."""
    accuracies = {k: v for k, v in accuracies.items()
                  if k in REWARDBENCH_PRIOR_SETS or not math.isnan(v)}
    got = rewardbench_score(accuracies)
    sections = rewardbench_sections(accuracies)
    prior = [accuracies[k] for k in REWARDBENCH_PRIOR_SETS if k in accuracies]
    prior_score = np.nanmean(prior) if any(not math.isnan(p) for p in prior) else np.nan
    values = np.array([*(sections[k] for k in ("Chat", "Chat Hard", "Safety", "Reasoning")),
                       prior_score], dtype=float)
    expected = np.ma.average(np.ma.masked_array(values, np.isnan(values)), weights=[2, 2, 2, 2, 1])
    assert got["Score"] == pytest.approx(float(expected), abs=1e-12)
    if math.isnan(prior_score):
        assert math.isnan(got["Prior Sets (0.5 weight)"])
    else:
        assert got["Prior Sets (0.5 weight)"] == pytest.approx(prior_score, abs=1e-12)


def test_sections_reject_non_numbers():
    with pytest.raises(pk.PrefkitError, match="math-prm"):
        rewardbench_sections({"math-prm": "high"})


# --------------------------------------------------------------------------------------------
# Tiny reward models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, one_thread):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from scoring_models import build_model

    root = tmp_path_factory.mktemp("eval-models")
    return {"a": build_model(root / "a", seed=0), "b": build_model(root / "b", seed=5)}


@pytest.fixture(scope="module")
def model_pairs():
    from scoring_models import corpus

    long = corpus(64, seed=3)
    responses = long.column("response").to_pylist()
    return pa.table({
        "prompt": long.column("prompt").to_pylist()[:32],
        "chosen": responses[:32],
        "rejected": responses[32:],
        "subset": ["x", "y", "z", "x"] * 8,
    })


def test_model_matches_score_pairs(tiny_models, model_pairs):
    scored = pk.score_pairs(model_pairs, tiny_models["a"], progress=False)
    from_columns = pk.evaluate_rewards(scored, SCORED, subset="subset")
    from_model = pk.evaluate_rewards(model_pairs, tiny_models["a"], subset="subset",
                                     progress=False)
    assert from_model.drop_columns(["model"]).to_pylist() == (
        from_columns.drop_columns(["model"]).to_pylist()
    )
    assert from_model.column("model").to_pylist()[0] == "a"
    report = pk.report_of(from_model)
    assert report["models"]["a"]["scoring"]["batches"] >= 1
    assert report["models"]["a"]["pairs"] == 32


def test_batch_size_and_order_do_not_change_scores(tiny_models, model_pairs):
    """Scores (to 1e-5) and accuracy do not depend on max_tokens_per_batch or row order."""
    results = []
    for budget in (32, 256, 100_000):
        scored = pk.score_pairs(model_pairs, tiny_models["a"], max_tokens_per_batch=budget,
                                progress=False)
        result = pk.evaluate_rewards(model_pairs, tiny_models["a"], subset="subset",
                                     max_tokens_per_batch=budget, progress=False)
        results.append((scored, result, budget))
    base_scored, base_result, _ = results[0]
    for scored, result, budget in results[1:]:
        assert pk.report_of(scored)["models"]["model"]["batches"] != (
            pk.report_of(base_scored)["models"]["model"]["batches"]
        ), budget
        for column in SCORED:
            np.testing.assert_allclose(scored.column(column).to_numpy(),
                                       base_scored.column(column).to_numpy(), atol=1e-5)
        assert result.column("accuracy").to_pylist() == (
            base_result.column("accuracy").to_pylist()
        )
    order = np.random.default_rng(0).permutation(model_pairs.num_rows)
    shuffled = model_pairs.take(order)
    scored = pk.score_pairs(shuffled, tiny_models["a"], progress=False)
    for column in SCORED:
        np.testing.assert_allclose(scored.column(column).to_numpy(),
                                   base_scored.column(column).to_numpy()[order], atol=1e-5)
    result = pk.evaluate_rewards(shuffled, tiny_models["a"], subset="subset", progress=False)
    assert result.column("accuracy").to_pylist() == base_result.column("accuracy").to_pylist()
    assert result.column("ci_low").to_pylist() == base_result.column("ci_low").to_pylist()


def test_several_models_and_loaded_model(tiny_models, model_pairs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = pk.evaluate_rewards(model_pairs, tiny_models, progress=False)
    assert result.column("model").to_pylist() == ["a", "b"]
    scored = pk.score_pairs(model_pairs, tiny_models, progress=False)
    columns = {name: (f"score_chosen_{name}", f"score_rejected_{name}") for name in tiny_models}
    from_columns = pk.evaluate_rewards(scored, columns)
    assert result.to_pylist() == from_columns.to_pylist()
    agreement = pk.report_of(result)["agreement"]
    assert agreement == pk.report_of(from_columns)["agreement"]
    side = {n: np.sign(scored.column(c).to_numpy() - scored.column(r).to_numpy())
            for n, (c, r) in columns.items()}
    assert agreement[0]["agreement"] == pytest.approx(np.mean(side["a"] == side["b"]))

    loaded = AutoModelForSequenceClassification.from_pretrained(tiny_models["b"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["b"])
    mixed = pk.evaluate_rewards(model_pairs, {"b": loaded}, tokenizer={"b": tokenizer},
                                progress=False)
    assert mixed.drop_columns(["model"]).to_pylist() == (
        result.filter(pc.equal(result.column("model"), "b"))
        .drop_columns(["model"]).to_pylist()
    )
