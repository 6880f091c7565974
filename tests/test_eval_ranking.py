"""prefkit.eval.ranking: policy ranking accuracy and Chen et al.'s idealized ranking accuracy
against float64 full-logit log-probs on a tiny Llama (padded and packed), list ranking
(Kendall tau-b, top-1) against a direct computation, and bad input."""

from __future__ import annotations

import math

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from prefkit.eval.ranking import kendall_tau_b, list_ranking, ranking_accuracy
from test_collate import full_logps, random_lists, random_pairs
from tiny_lm import tiny_llama

VOCAB = 40
BETA = 0.5


@pytest.fixture(scope="module")
def policy():
    return tiny_llama(VOCAB, seed=1)


@pytest.fixture(scope="module")
def ref_model():
    return tiny_llama(VOCAB, seed=2)


@pytest.fixture(scope="module")
def pairs():
    rows = random_pairs(24, seed=11, empty_prompt=True)
    rng = np.random.default_rng(3)
    alphas = rng.uniform(0.02, 0.98, len(rows)).tolist()
    alphas[:4] = [1.0, 0.0, 0.5, None]
    for row, a in zip(rows, alphas):
        row["alpha"] = a
    return pa.Table.from_pylist(rows)


@pytest.fixture(scope="module")
def expected_rows(policy, ref_model, pairs):
    """Per-pair float64 full-logit log-probs, the input of the plain-Python reference."""
    out = []
    for row in pairs.to_pylist():
        p, c, r = row["prompt_ids"], row["chosen_ids"], row["rejected_ids"]
        start = 0 if p else 1
        out.append({"policy_chosen": full_logps(policy, p, c),
                    "policy_rejected": full_logps(policy, p, r),
                    "ref_chosen": full_logps(ref_model, p, c),
                    "ref_rejected": full_logps(ref_model, p, r),
                    "n_chosen": len(c) - start, "n_rejected": len(r) - start,
                    "alpha": math.nan if row["alpha"] is None else row["alpha"]})
    return out


def _margins_clear(rows, normalize):
    """No pair so close to a tie that float32 and float64 could disagree on its sign."""
    for row in rows:
        for side in ("policy", "ref"):
            c, r = row[f"{side}_chosen"], row[f"{side}_rejected"]
            if normalize:
                if row["n_chosen"] < 1 or row["n_rejected"] < 1:
                    continue
                c, r = c / row["n_chosen"], r / row["n_rejected"]
            assert abs(c - r) > 1e-3


def _check(out, expected_rows, normalize, idealized=True):
    _margins_clear(expected_rows, normalize)
    want, overall = ref.ranking_accuracy(expected_rows, beta=BETA, normalize=normalize)
    np.testing.assert_allclose(out.column("policy_chosen_logps").to_numpy(),
                               [r["policy_chosen"] for r in expected_rows], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.column("policy_rejected_logps").to_numpy(),
                               [r["policy_rejected"] for r in expected_rows], rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(out.column("ref_chosen_logps").to_numpy(),
                               [r["ref_chosen"] for r in expected_rows], rtol=1e-5, atol=1e-5)
    keys = ["ranked_correctly", "ref_ranked_correctly"]
    keys += ["idealized_correct"] if idealized else []
    for key in keys:
        got = [math.nan if v is None else v for v in out.column(key).to_pylist()]
        np.testing.assert_array_equal(got, [w[key] for w in want], err_msg=key)
    report = pk.report_of(out)
    assert report["op"] == "ranking_accuracy"
    assert report["pairs"] == out.num_rows == report["rows_in"]
    assert report["ranking_accuracy"] == pytest.approx(overall["ranking_accuracy"], abs=1e-12)
    assert report["ref_ranking_accuracy"] == pytest.approx(overall["ref_ranking_accuracy"],
                                                           abs=1e-12)
    if idealized:
        assert report["idealized_ranking_accuracy"] == pytest.approx(
            overall["idealized_ranking_accuracy"], abs=1e-12)
        margins = out.column("idealized_margin").to_pylist()
        assert margins[0] == math.inf and margins[1] == -math.inf and margins[3] is None
        np.testing.assert_allclose(margins[4:], [w["idealized_margin"] for w in want[4:]],
                                   rtol=1e-5, atol=1e-4)
        assert report["dropped"]["null_alpha"] == 1
    return report


@pytest.mark.parametrize("packed, max_tokens", [(False, 10_000), (False, 40), (True, 30),
                                                (True, 1)])
def test_pairs_match_full_logits_with_ref_model(policy, ref_model, pairs, expected_rows, packed,
                                                 max_tokens):
    out = ranking_accuracy(policy, pairs, ref_model=ref_model, beta=BETA, alpha="alpha",
                           packed=packed, max_tokens=max_tokens)
    assert out.column_names == pairs.column_names + [
        "policy_chosen_logps", "policy_rejected_logps", "ranked_correctly", "ref_chosen_logps",
        "ref_rejected_logps", "ref_ranked_correctly", "idealized_margin", "idealized_correct"]
    assert all(out.schema.field(c).type == pa.float64() for c in out.column_names[4:])
    _check(out, expected_rows, normalize=False)
    # Idealized accuracy lies between the reference ranking (alpha -> 1/2) and 1 (alpha -> 1)
    # only in expectation; on the fixed-alpha rows the rule is exact:
    assert out.column("idealized_correct").to_pylist()[:3] == [
        1.0, 0.0, out.column("ref_ranked_correctly")[2].as_py()]


@pytest.mark.parametrize("packed", [False, True])
def test_precomputed_ref_columns_need_no_ref_model(policy, ref_model, pairs, expected_rows,
                                                   packed):
    with_ref = pk.reference_logps(ref_model, pairs, progress=False, packed=packed)
    out = ranking_accuracy(policy, with_ref, beta=BETA, alpha="alpha", packed=packed,
                           max_tokens=50)
    assert out.column_names == with_ref.column_names + [
        "policy_chosen_logps", "policy_rejected_logps", "ranked_correctly",
        "ref_ranked_correctly", "idealized_margin", "idealized_correct"]
    report = _check(out, expected_rows, normalize=False)
    assert report["parameters"]["ref_model"] == "columns"
    assert report["source"]["op"] == "reference_logps"


@pytest.mark.parametrize("packed", [False, True])
def test_normalize_ranks_per_token_means(policy, ref_model, pairs, expected_rows, packed):
    out = ranking_accuracy(policy, pairs, ref_model=ref_model, beta=BETA, alpha="alpha",
                           normalize=True, packed=packed, max_tokens=60)
    report = _check(out, expected_rows, normalize=True)
    # The policy columns stay sums; only the ranking uses means. Idealized uses sums.
    empty = [i for i, r in enumerate(expected_rows) if min(r["n_chosen"], r["n_rejected"]) < 1]
    assert report["dropped"].get("no_scored_tokens", 0) == len(empty)
    assert all(out.column("ranked_correctly")[i].as_py() is None for i in empty)


def test_constant_alpha_and_no_alpha(policy, ref_model, pairs, expected_rows):
    out = ranking_accuracy(policy, pairs.drop_columns(["alpha"]), ref_model=ref_model,
                           beta=BETA)
    assert "idealized_correct" not in out.column_names
    _check(out, expected_rows, normalize=False, idealized=False)
    assert "idealized_ranking_accuracy" not in pk.report_of(out)
    rows = [dict(r, alpha=0.75) for r in expected_rows]
    want, overall = ref.ranking_accuracy(rows, beta=BETA)
    out = ranking_accuracy(policy, pairs, ref_model=ref_model, beta=BETA, alpha=0.75)
    assert out.column("idealized_correct").to_pylist() == [w["idealized_correct"] for w in want]
    assert pk.report_of(out)["idealized_ranking_accuracy"] == pytest.approx(
        overall["idealized_ranking_accuracy"])
    # Without reference log-probs: policy accuracy only.
    plain = ranking_accuracy(policy, pairs.select(["prompt_ids", "chosen_ids", "rejected_ids"]))
    assert plain.column_names[-1] == "ranked_correctly"
    assert pk.report_of(plain)["ranking_accuracy"] == pytest.approx(overall["ranking_accuracy"])


def test_tie_counts_half(policy):
    same = pa.table({"prompt_ids": [[1, 5]], "chosen_ids": [[7, 2]], "rejected_ids": [[7, 2]],
                     "ref_chosen_logps": [-3.0], "ref_rejected_logps": [-3.0]})
    out = ranking_accuracy(policy, same, alpha=0.5)
    assert out.column("ranked_correctly").to_pylist() == [0.5]
    assert out.column("idealized_correct").to_pylist() == [0.5]
    assert pk.report_of(out)["ties"] == 1


def test_bad_input(policy, pairs):
    with pytest.raises(pk.PrefkitError, match="'rejected_ids'"):
        ranking_accuracy(policy, pairs.drop_columns(["rejected_ids"]))
    with pytest.raises(pk.PrefkitError, match="ref_model"):
        ranking_accuracy(policy, pairs, alpha="alpha")
    with pytest.raises(pk.PrefkitError, match="'nope'"):
        ranking_accuracy(policy, pairs, ref_model=policy, alpha="nope")
    with pytest.raises(pk.PrefkitError, match=r"\[0, 1\]"):
        ranking_accuracy(policy, pairs, ref_model=policy, alpha=1.5)
    with pytest.raises(pk.PrefkitError, match="beta"):
        ranking_accuracy(policy, pairs, beta=0)
    with pytest.raises(pk.PrefkitError, match="max_tokens"):
        ranking_accuracy(policy, pairs, max_tokens=0)
    bad = pairs.append_column("ref_chosen_logps", pa.array(["x"] * pairs.num_rows)) \
        .append_column("ref_rejected_logps", pa.array([0.0] * pairs.num_rows))
    with pytest.raises(pk.PrefkitError, match="'ref_chosen_logps'"):
        ranking_accuracy(policy, bad)


# ---------------------------------------------------------------------------------------------
# Lists


@pytest.fixture(scope="module")
def lists():
    rows = random_lists(14, seed=8)
    rows[0]["scores"] = [1.0] * len(rows[0]["response_ids"])  # all tied: no tau, no top-1
    rows[1]["response_ids"] = [[5, 2], [6, 2], [7, 8, 2], [9, 2], [9, 2]]
    rows[1]["scores"] = [2.0, 2.0, 1.0, 0.0, 0.0]  # tied scores inside a list
    return rows


@pytest.mark.parametrize("packed, normalize", [(False, False), (True, False), (True, True)])
def test_lists_match_direct_computation(policy, lists, packed, normalize):
    out = list_ranking(policy, pa.Table.from_pylist(lists), packed=packed, normalize=normalize,
                       max_tokens=60)
    got_logps = out.column("policy_logps").to_pylist()
    taus, tops = out.column("kendall_tau").to_pylist(), out.column("top1_correct").to_pylist()
    dropped = {}
    want_taus, want_tops = [], []
    for row, got in zip(lists, got_logps):
        sums = [full_logps(policy, row["prompt_ids"], r) for r in row["response_ids"]]
        np.testing.assert_allclose(got, sums, rtol=1e-5, atol=1e-5)
        x = sums
        if normalize:
            x = [s / len(r) for s, r in zip(sums, row["response_ids"])]
        y = row["scores"]
        if len(x) < 2:
            dropped["single_response"] = dropped.get("single_response", 0) + 1
            want_taus.append(None)
            want_tops.append(None)
        elif len(set(y)) == 1:
            dropped["tied_scores"] = dropped.get("tied_scores", 0) + 1
            want_taus.append(None)
            want_tops.append(None)
        else:
            want_taus.append(ref.kendall_tau_b(x, y))
            want_tops.append(ref.top1_correct(x, y))
    assert dropped["single_response"] >= 1 and dropped["tied_scores"] == 1
    assert tops == want_tops
    assert [t is None for t in taus] == [t is None for t in want_taus]
    np.testing.assert_allclose([t for t in taus if t is not None],
                               [t for t in want_taus if t is not None], atol=1e-12)
    report = pk.report_of(out)
    assert report["op"] == "list_ranking" and report["dropped"] == dropped
    defined = [t for t in want_taus if t is not None]
    assert report["kendall_tau"] == pytest.approx(sum(defined) / len(defined))
    top = [t for t in want_tops if t is not None]
    assert report["top1_accuracy"] == pytest.approx(sum(top) / len(top))


def test_lists_from_rank_lists_and_tokenize_lists(policy):
    from tiny_lm import bpe_tokenizer

    data = pa.table({"prompt": ["p"] * 3 + ["q"] * 2,
                     "response": ["a b", "c d e", "f", "g h", "i"],
                     "score": [1.0, 3.0, 2.0, 0.5, 0.1]})
    tokenizer = bpe_tokenizer(["a b c d e f g h i p q"], vocab_size=300)
    model = tiny_llama(len(tokenizer), seed=4)
    tokenized = pk.tokenize_lists(pk.rank_lists(data), tokenizer)
    out = list_ranking(model, tokenized)
    for row in out.to_pylist():
        assert row["top1_correct"] == ref.top1_correct(row["policy_logps"], row["scores"])
        assert row["kendall_tau"] == pytest.approx(
            ref.kendall_tau_b(row["policy_logps"], row["scores"]))


def test_kendall_tau_b_helper():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 8))
        x, y = rng.integers(0, 3, n).astype(float), rng.integers(0, 3, n).astype(float)
        want = ref.kendall_tau_b(x.tolist(), y.tolist())
        got = kendall_tau_b(x, y)
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def test_list_bad_input(policy, lists):
    table = pa.Table.from_pylist(lists)
    with pytest.raises(pk.PrefkitError, match="'scores'"):
        list_ranking(policy, table.drop_columns(["scores"]))
    with pytest.raises(pk.PrefkitError, match="'scores'"):
        list_ranking(policy, table.set_column(2, "scores", pa.array(["x"] * table.num_rows)))
    short = table.set_column(2, "scores", pa.array([[1.0]] * table.num_rows))
    with pytest.raises(pk.PrefkitError, match="row 0"):
        list_ranking(policy, short)
