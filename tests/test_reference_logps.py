"""reference_logps: equals the per-example computation, whatever the batching; columns, dtypes,
eval mode, progress bar and bad input."""

from __future__ import annotations

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_collate import full_logps, random_lists, random_pairs
from tiny_lm import tiny_llama

VOCAB = 40


@pytest.fixture(scope="module")
def model():
    return tiny_llama(VOCAB, seed=1)


@pytest.fixture(scope="module")
def pairs():
    return pa.Table.from_pylist(random_pairs(13, seed=7, empty_prompt=False))


@pytest.fixture(scope="module")
def expected(model, pairs):
    rows = pairs.to_pylist()
    return ([full_logps(model, r["prompt_ids"], r["chosen_ids"]) for r in rows],
            [full_logps(model, r["prompt_ids"], r["rejected_ids"]) for r in rows])


@pytest.mark.parametrize("packed, max_tokens", [(False, 10_000), (False, 40), (True, 30),
                                                (True, 1)])
def test_pairs_equal_per_example(model, pairs, expected, packed, max_tokens):
    out = pk.reference_logps(model, pairs, max_tokens=max_tokens, packed=packed, progress=False)
    assert out.column_names == pairs.column_names + ["ref_chosen_logps", "ref_rejected_logps"]
    assert out.schema.field("ref_chosen_logps").type == pa.float32()
    np.testing.assert_allclose(out.column("ref_chosen_logps").to_numpy(), expected[0],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.column("ref_rejected_logps").to_numpy(), expected[1],
                               rtol=1e-5, atol=1e-5)
    assert pk.report_of(out)["op"] == "reference_logps"


def test_float64_columns_replace_old_ones(model, pairs, expected):
    once = pk.reference_logps(model, pairs, progress=False)
    twice = pk.reference_logps(model, once, dtype="float64", progress=False)
    assert twice.column_names == once.column_names
    assert twice.schema.field("ref_rejected_logps").type == pa.float64()
    np.testing.assert_allclose(twice.column("ref_chosen_logps").to_numpy(), expected[0],
                               rtol=1e-5)
    batch = pk.PairCollator(0)(twice.slice(0, 3))
    assert batch["ref_chosen_logps"].dtype == torch.float64


def test_lists_equal_per_example(model):
    rows = random_lists(9, seed=8)
    lists = pa.Table.from_pylist(rows)
    expected = [[full_logps(model, row["prompt_ids"], r) for r in row["response_ids"]]
                for row in rows]
    for packed in (False, True):
        out = pk.reference_logps(model, lists, max_tokens=50, packed=packed, progress=False)
        assert out.schema.field("ref_logps").type == pa.list_(pa.float32())
        for values, want in zip(out.column("ref_logps").to_pylist(), expected):
            np.testing.assert_allclose(values, want, rtol=1e-5, atol=1e-5)
    batch = pk.ListCollator(0)(out)
    assert batch["ref_logps"].shape == batch["scores"].shape


def test_no_grad_eval_mode_restored_and_progress_on_stderr(model, pairs, capsys):
    model.train()
    dropout = []
    handle = model.model.register_forward_hook(
        lambda module, args, output: dropout.append((module.training,
                                                     torch.is_grad_enabled())))
    try:
        pk.reference_logps(model, pairs, max_tokens=60)
    finally:
        handle.remove()
        model.eval()
    assert dropout and all(state == (False, False) for state in dropout)
    captured = capsys.readouterr()
    assert "reference log-probs" in captured.err and captured.out == ""
    assert all(p.grad is None for p in model.parameters())


def test_bad_input(model, pairs):
    with pytest.raises(pk.PrefkitError, match="tokenize_pairs"):
        pk.reference_logps(model, pa.table({"x": [1]}), progress=False)
    with pytest.raises(pk.PrefkitError, match="dtype"):
        pk.reference_logps(model, pairs, dtype="float16", progress=False)
    with pytest.raises(pk.PrefkitError, match="max_tokens"):
        pk.reference_logps(model, pairs, max_tokens=0, progress=False)
    with pytest.raises(pk.PrefkitError, match="causal LM"):
        pk.reference_logps(torch.nn.Linear(2, 2), pairs, progress=False)
