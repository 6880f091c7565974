"""PairCollator / ListCollator: exact layouts, Arrow vs dict input, and padded vs packed batches
giving the same sequence_logps (and fused-loss gradients) on a tiny Llama."""

from __future__ import annotations

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from prefkit.losses import FusedLinearListLoss, FusedLinearPreferenceLoss, sequence_logps
from tiny_lm import tiny_llama

VOCAB = 40
LAYOUTS = [{"packed": False}, {"packed": True}, {"packed": True, "share_prompt": False}]


def random_pairs(n, seed=0, empty_prompt=True):
    rng = np.random.default_rng(seed)

    def seq(lo, hi):
        return rng.integers(3, VOCAB, rng.integers(lo, hi)).tolist()

    rows = [{"prompt_ids": [1] + seq(0, 8), "chosen_ids": seq(1, 9) + [2],
             "rejected_ids": seq(0, 7) + [2]} for _ in range(n)]
    if empty_prompt:
        rows[-1]["prompt_ids"] = []  # no predictor for the first completion token
    return rows


def random_lists(n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        k = int(rng.integers(1, 5))
        rows.append({"prompt_ids": [1] + rng.integers(3, VOCAB, rng.integers(0, 6)).tolist(),
                     "response_ids": [rng.integers(3, VOCAB, rng.integers(1, 7)).tolist() + [2]
                                      for _ in range(k)],
                     "scores": rng.normal(size=k).tolist()})
    return rows


@pytest.fixture(scope="module")
def model():
    return tiny_llama(VOCAB)


def hidden_of(model, batch):
    out = model.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                      position_ids=batch.get("position_ids"), use_cache=False)
    return pk.gather_hidden(out.last_hidden_state, batch)


def full_logps(model, prompt, completion):
    """Sum of log p(completion token | everything before it) from the full logits."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    start = max(len(prompt), 1)
    targets = ids[0, start:]
    return logp[start - 1:-1].gather(1, targets[:, None]).sum().item()


def test_padded_pair_layout():
    rows = [{"prompt_ids": [1, 5], "chosen_ids": [7, 2], "rejected_ids": [8, 9, 2]},
            {"prompt_ids": [1], "chosen_ids": [6, 6, 6, 2], "rejected_ids": [2]}]
    batch = pk.PairCollator(0, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].tolist() == [
        [1, 5, 7, 2, 0, 0, 0, 0], [1, 6, 6, 6, 2, 0, 0, 0],
        [1, 5, 8, 9, 2, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [4, 5, 5, 2]
    assert batch["labels"].tolist() == [
        [-100, 7, 2, -100, -100, -100, -100, -100], [6, 6, 6, 2, -100, -100, -100, -100],
        [-100, 8, 9, 2, -100, -100, -100, -100], [2, -100, -100, -100, -100, -100, -100, -100]]
    assert all(t.dtype == torch.int64 for t in batch.values())


def test_packed_pair_layout():
    rows = [{"prompt_ids": [1, 5], "chosen_ids": [7, 2], "rejected_ids": [8, 9, 2]},
            {"prompt_ids": [1], "chosen_ids": [6, 2], "rejected_ids": [2]}]
    batch = pk.PairCollator(0, packed=True)(rows)
    assert batch["input_ids"].tolist() == [[1, 5, 7, 2, 8, 9, 2, 1, 6, 2, 2]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2, 3, 4, 0, 1, 2, 1]]
    assert batch["cu_seqlens"].tolist() == [0, 7, 11]
    assert batch["cu_seqlens"].dtype == torch.int32 and batch["max_seqlen"] == 7
    assert batch["branch_ids"].tolist() == [[0, 0, 1, 1, 2, 2, 2, 0, 1, 1, 2]]
    # chosen rows, then rejected rows; the prompt's last token predicts each first token
    assert batch["gather_index"].tolist() == [[1, 2, 0], [7, 8, 0], [1, 4, 5], [7, 0, 0]]
    assert batch["labels"].tolist() == [[7, 2, -100], [6, 2, -100], [8, 9, 2],
                                        [2, -100, -100]]
    mask = batch["attention_mask"][0, 0]
    assert mask.shape == (11, 11) and mask.dtype == torch.bool
    assert mask[4].tolist() == [True, True, False, False, True] + [False] * 6  # not the chosen
    assert not mask[7, :7].any()  # nothing across pairs
    unshared = pk.PairCollator(0, packed=True, share_prompt=False, attention_mask=False)(rows)
    assert unshared["input_ids"].tolist() == [[1, 5, 7, 2, 1, 5, 8, 9, 2, 1, 6, 2, 1, 2]]
    assert unshared["cu_seqlens"].tolist() == [0, 4, 9, 12, 14]
    assert "attention_mask" not in unshared


def test_arrow_and_dicts_agree():
    rows = random_pairs(5)
    table = pa.Table.from_pylist(rows).append_column(
        "ref_chosen_logps", pa.array([-1.0, -2, -3, -4, -5], pa.float64())).append_column(
        "ref_rejected_logps", pa.array([-1.5] * 5, pa.float32()))
    dict_rows = table.to_pylist()
    for layout in LAYOUTS:
        collate = pk.PairCollator(0, **layout)
        a, b = collate(table), collate(dict_rows)
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor) and key.endswith("_ids"):
                assert torch.equal(a[key], b[key]), key
        assert collate(table.slice(2))["labels"].shape[0] == 6
    batch = pk.PairCollator(0)(table)
    assert batch["ref_chosen_logps"].dtype == torch.float64
    assert batch["ref_rejected_logps"].dtype == torch.float32
    assert batch["ref_chosen_logps"].tolist() == [-1.0, -2, -3, -4, -5]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["padded", "packed", "packed-unshared"])
def test_pair_logps_match_full_logits(model, layout):
    rows = random_pairs(6, seed=1)
    batch = pk.PairCollator(0, **layout)(rows)
    with torch.no_grad():
        logps, counts = sequence_logps(hidden_of(model, batch), model.lm_head.weight,
                                       batch["labels"])
    expected = [full_logps(model, r["prompt_ids"], r[key])
                for key in ("chosen_ids", "rejected_ids") for r in rows]
    np.testing.assert_allclose(logps.double().numpy(), expected, rtol=1e-5, atol=1e-5)
    lengths = [len(r[k]) - (not r["prompt_ids"]) for k in ("chosen_ids", "rejected_ids")
               for r in rows]
    assert counts.tolist() == lengths


def test_padded_and_packed_give_the_same_loss_and_gradients(model):
    rows = random_pairs(5, seed=2)
    refs = {"ref_chosen_logps": torch.full((5,), -9.0),
            "ref_rejected_logps": torch.full((5,), -11.0)}
    loss_fn = FusedLinearPreferenceLoss(kind="sigmoid", beta=0.5)
    results = []
    for layout in LAYOUTS:
        model.zero_grad()
        batch = pk.PairCollator(0, **layout)(rows)
        loss, _ = loss_fn(hidden_of(model, batch), model.lm_head.weight, batch["labels"],
                          refs["ref_chosen_logps"], refs["ref_rejected_logps"])
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((loss.item(), grads))
    for loss, grads in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-5)
        for g, g0 in zip(grads, results[0][1]):
            torch.testing.assert_close(g, g0, rtol=1e-4, atol=1e-6)
    model.zero_grad()


def test_list_layout_and_padding():
    rows = [{"prompt_ids": [1, 5], "response_ids": [[7, 2], [8, 2]], "scores": [2.0, 1.0]},
            {"prompt_ids": [1], "response_ids": [[9, 2]], "scores": [0.5]}]
    padded = pk.ListCollator(0, list_size=3)(rows)
    assert padded["input_ids"].shape == (6, 4)
    assert padded["input_ids"][5].tolist() == [1, 0, 0, 0]  # a missing response: prompt only
    assert (padded["labels"][[2, 4, 5]] == -100).all()
    assert padded["mask"].tolist() == [[True, True, False], [True, False, False]]
    assert padded["scores"].tolist() == [[2.0, 1.0, 0.0], [0.5, 0.0, 0.0]]
    packed = pk.ListCollator(0, packed=True)(rows)
    assert packed["gather_index"].tolist() == [[1, 2], [1, 4], [6, 7], [0, 0]]
    assert packed["labels"].tolist() == [[7, 2], [8, 2], [9, 2], [-100, -100]]
    with pytest.raises(pk.PrefkitError, match="more than list_size=1"):
        pk.ListCollator(0, list_size=1)(rows)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["padded", "packed", "packed-unshared"])
def test_list_logps_match_full_logits(model, layout):
    rows = random_lists(5, seed=3)
    table = pa.Table.from_pylist(rows)
    batch = pk.ListCollator(0, **layout)(table)
    k = batch["mask"].shape[1]
    with torch.no_grad():
        logps, _ = sequence_logps(hidden_of(model, batch), model.lm_head.weight,
                                  batch["labels"])
    logps = logps.view(-1, k)
    for i, row in enumerate(rows):
        expected = [full_logps(model, row["prompt_ids"], r) for r in row["response_ids"]]
        np.testing.assert_allclose(logps[i, :len(expected)].double().numpy(), expected,
                                   rtol=1e-5, atol=1e-5)
        assert (logps[i, len(expected):] == 0).all()
    loss, _ = FusedLinearListLoss(kind="plackett_luce")(
        hidden_of(model, batch), model.lm_head.weight, batch["labels"], batch["scores"],
        batch["mask"])
    assert torch.isfinite(loss)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["padded", "packed", "packed-unshared"])
def test_plans_respect_the_token_budget(layout):
    table = pa.Table.from_pylist(random_pairs(60, seed=4, empty_prompt=False))
    collate = pk.PairCollator(0, **layout)
    plan = collate.plan(table, max_tokens=64, seed=3)
    assert sorted(np.concatenate(plan).tolist()) == list(range(60))
    for rows in plan:
        batch = collate(table.take(rows))
        tokens = batch["input_ids"].numel()
        assert tokens <= 64 or len(rows) == 1
    lists = pa.Table.from_pylist(random_lists(40, seed=5))
    lcollate = pk.ListCollator(0, **layout)
    for rows in lcollate.plan(lists, max_tokens=80, shuffle=False):
        tokens = lcollate(lists.take(rows))["input_ids"].numel()
        assert tokens <= 80 or len(rows) == 1 or not layout["packed"]


def test_bad_input():
    with pytest.raises(pk.PrefkitError, match="pad_token_id"):
        pk.PairCollator(None)
    with pytest.raises(pk.PrefkitError, match="column 'chosen_ids' not found"):
        pk.PairCollator(0)(pa.table({"prompt_ids": [[1]], "rejected_ids": [[2]]}))
    with pytest.raises(pk.PrefkitError, match="a batch must be"):
        pk.PairCollator(0)("not rows")
    with pytest.raises(pk.PrefkitError, match="hidden of shape"):
        batch = pk.PairCollator(0, packed=True)(random_pairs(2))
        pk.gather_hidden(torch.zeros(2, 3, 4), batch)
