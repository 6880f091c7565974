"""Token-level weights and masks (SparsePO-style) in sequence_logps and the fused losses.

References materialise the full ``[N, T, V]`` log-softmax (float64 where the check is 1e-6) and
weight the gathered label log-probs explicitly, so the chunked, index-based and
gradient-in-forward paths are compared against the textbook computation. The Triton kernels run
under TRITON_INTERPRET=1 in a subprocess (Triton decides on interpretation at first import);
the subprocess imports this file by path, not through a ``tests`` package.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from prefkit._errors import PrefkitError
from prefkit.losses import (
    FusedLinearPreferenceLoss,
    preference_loss,
    sequence_logps,
    sparse_token_weights,
    token_logps,
)

IGNORE = -100


def full_token_logps(hidden, weight, labels, bias=None):
    """``[N, T]`` label log-probs from the full logits, 0 where ignored."""
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    picked = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return picked * (labels != IGNORE)


def weighted_reference(hidden, weight, labels, bias, w):
    keep = (labels != IGNORE) & (w != 0)
    return (full_token_logps(hidden, weight, labels, bias) * w).sum(-1), keep.sum(-1)


def batch(n=6, t=9, h=12, v=53, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, t, h, generator=g, dtype=dtype)
    weight = torch.randn(v, h, generator=g, dtype=dtype) / h**0.5
    bias = torch.randn(v, generator=g, dtype=dtype)
    labels = torch.randint(0, v, (n, t), generator=g)
    for i in range(n):
        labels[i, : 1 + i % 3] = IGNORE
        labels[i, t - (i % 2) :] = IGNORE
    w = torch.rand(n, t, generator=g, dtype=dtype) * 2
    w[torch.rand(n, t, generator=g) < 0.3] = 0.0  # a sparse mask: about 30% zeros
    w[0] = 0.0  # one sequence entirely masked
    return hidden, weight, bias, labels, w


def grads_of(fn, tensors):
    tensors = [x.detach().clone().requires_grad_(True) for x in tensors]
    out = fn(*tensors)
    probe = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    return out.detach(), torch.autograd.grad((out * probe).sum(), tensors)


def assert_rel(got, want, rtol):
    want = want.detach().to(got.dtype)
    atol = rtol * float(want.abs().max()) + 1e-30
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- sequence_logps / token_logps


@pytest.mark.parametrize("chunks", [(4, 16), (1024, 16384)])
def test_weighted_logps_match_float64_reference(chunks):
    hidden, weight, bias, labels, w = batch()
    ct, cv = chunks

    def fused(h, wt, b, tw):
        return sequence_logps(h, wt, labels, b, token_weights=tw, chunk_tokens=ct,
                              chunk_vocab=cv)[0]

    def full(h, wt, b, tw):
        return weighted_reference(h, wt, labels, b, tw)[0]

    out, g = grads_of(fused, [hidden, weight, bias, w])
    ref, g_ref = grads_of(full, [hidden, weight, bias, w])
    assert out.dtype == torch.float64
    assert_rel(out, ref, 1e-6)
    for got, want in zip(g, g_ref):  # hidden, weight, bias and the weights themselves
        assert_rel(got, want, 1e-6)
    _, counts = sequence_logps(hidden, weight, labels, bias, token_weights=w)
    assert counts.tolist() == weighted_reference(hidden, weight, labels, bias, w)[1].tolist()
    assert counts[0] == 0 and out[0] == 0


def test_all_ones_weights_are_no_weights():
    hidden, weight, bias, labels, _ = batch(seed=1)
    ones = torch.ones(labels.shape, dtype=hidden.dtype)
    plain, g_plain = grads_of(lambda h, wt: sequence_logps(h, wt, labels, bias)[0],
                              [hidden, weight])
    weighted, g_w = grads_of(
        lambda h, wt: sequence_logps(h, wt, labels, bias, token_weights=ones)[0],
        [hidden, weight])
    torch.testing.assert_close(weighted, plain, rtol=1e-12, atol=0)
    for a, b in zip(g_w, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    assert torch.equal(sequence_logps(hidden, weight, labels, token_weights=ones)[1],
                       sequence_logps(hidden, weight, labels)[1])


def test_zero_weights_drop_tokens():
    hidden, weight, bias, labels, w = batch(seed=2)
    mask = (w != 0).to(hidden.dtype)
    dropped = labels.masked_fill(w == 0, IGNORE)
    masked, g_m = grads_of(
        lambda h, wt: torch.cat(sequence_logps(h, wt, labels, bias, token_weights=mask)),
        [hidden, weight])
    plain, g_p = grads_of(lambda h, wt: torch.cat(sequence_logps(h, wt, dropped, bias)),
                          [hidden, weight])
    torch.testing.assert_close(masked, plain, rtol=1e-12, atol=0)
    for a, b in zip(g_m, g_p):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    # Weights at ignored (-100) positions do not matter.
    noisy = mask.clone()
    noisy[labels == IGNORE] = 5.0
    torch.testing.assert_close(
        sequence_logps(hidden, weight, labels, bias, token_weights=noisy)[0],
        masked[: labels.shape[0]])


def test_fully_masked_batch_still_backpropagates():
    hidden, weight, bias, labels, _ = batch(seed=3)
    h = hidden.clone().requires_grad_(True)
    logps, counts = sequence_logps(h, weight, labels, bias,
                                   token_weights=torch.zeros(labels.shape, dtype=h.dtype))
    assert counts.sum() == 0 and torch.equal(logps, torch.zeros_like(logps))
    logps.sum().backward()
    assert torch.equal(h.grad, torch.zeros_like(h))


def test_token_logps_match_full_logits():
    hidden, weight, bias, labels, _ = batch(seed=4)
    out, g = grads_of(lambda h, wt: token_logps(h, wt, labels, bias, chunk_tokens=5,
                                                chunk_vocab=20), [hidden, weight])
    ref, g_ref = grads_of(lambda h, wt: full_token_logps(h, wt, labels, bias), [hidden, weight])
    assert out.shape == labels.shape
    assert_rel(out, ref, 1e-6)
    for a, b in zip(g, g_ref):
        assert_rel(a, b, 1e-6)
    assert torch.equal(out[labels == IGNORE], torch.zeros_like(out[labels == IGNORE]))
    with torch.no_grad():
        sums = token_logps(hidden, weight, labels, bias).sum(1)
    torch.testing.assert_close(sums, sequence_logps(hidden, weight, labels, bias)[0])


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda w: w[:, :-1], "token_weights has shape"),
        (lambda w: (w > 0).long(), "floating-point"),
        (lambda w: w.index_put_((torch.tensor([2]), torch.tensor([4])), torch.tensor(-1.0,
                                dtype=w.dtype)), r"token_weights\[2, 4\] = -1.0"),
        (lambda w: w.index_put_((torch.tensor([1]), torch.tensor([3])),
                                torch.tensor(float("nan"), dtype=w.dtype)),
         r"token_weights\[1, 3\] = nan"),
        (lambda w: [1.0], "torch.Tensor"),
    ],
)
def test_token_weight_validation(mutate, match):
    hidden, weight, bias, labels, w = batch(seed=5)
    with pytest.raises(PrefkitError, match=match):
        sequence_logps(hidden, weight, labels, bias, token_weights=mutate(w.clone()))


# ---------------------------------------------------------------- fused module with token masks


def pair_batch(b=3, t=10, h=16, v=211, seed=7):
    hidden, weight, bias, labels, w = batch(n=2 * b, t=t, h=h, v=v, seed=seed,
                                            dtype=torch.float32)
    w[0, 3:6] = 1.0  # every completion keeps a token
    g = torch.Generator().manual_seed(seed)
    ref_tokens = -torch.rand(2 * b, t, generator=g) * 8
    # SparsePO weights the reference log-probs with the same mask: sum_t w_t log pi_ref(y_t).
    ref = (ref_tokens * w * (labels != IGNORE)).sum(1)
    target = torch.rand(b, generator=g)
    return hidden, weight, bias, labels, w, ref[:b], ref[b:], target


# logits_budget: None (every pair in one block), one pair per block (at most 18 labelled tokens
# per pair at V=211), 0 (the recomputing sequence_logps path).
BUDGETS = {"one_block": None, "pair_blocks": 18 * 211, "recompute": 0}
KINDS = {"sigmoid": {}, "ipo": {}, "simpo": {"gamma": 0.3}, "sppo": {}, "jpo": {}}


def path_of(loss):
    return "grouped" if "PrecomputedGradients" in type(loss.grad_fn).__name__ else "recompute"


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_with_token_masks_matches_unfused(kind, budget):
    hidden, weight, bias, labels, w, ref_c, ref_r, target = pair_batch()
    b = ref_c.shape[0]
    refs = (None, None) if kind == "simpo" else (ref_c, ref_r)
    extra = {"target": target} if kind == "sppo" else {}
    module = FusedLinearPreferenceLoss(kind=kind, beta=0.2, chunk_tokens=6, chunk_vocab=64,
                                       logits_budget=BUDGETS[budget], **KINDS[kind])

    def fused(h, wt, bb):
        return module(h, wt, labels, *refs, bb, chosen_token_weights=w[:b],
                      rejected_token_weights=w[b:], **extra)[0]

    def full(h, wt, bb):
        logps, counts = weighted_reference(h, wt, labels, bb, w)
        return preference_loss(logps[:b], logps[b:], *refs, kind=kind, beta=0.2,
                               chosen_lengths=counts[:b], rejected_lengths=counts[b:],
                               **KINDS[kind], **extra)[0]

    probe = [x.detach().requires_grad_(True) for x in (hidden, weight, bias)]
    want_path = "recompute" if budget == "recompute" else "grouped"
    assert path_of(fused(*probe)) == want_path
    loss, g = grads_of(fused, [hidden, weight, bias])
    ref, g_ref = grads_of(full, [hidden, weight, bias])
    assert_rel(loss, ref, 1e-5)
    for got, want in zip(g, g_ref):
        assert_rel(got, want, 1e-5)


@pytest.mark.parametrize("budget", [None, 0])
def test_fused_all_ones_and_zero_weights(budget):
    hidden, weight, bias, labels, w, ref_c, ref_r, _ = pair_batch(seed=8)
    b = ref_c.shape[0]
    module = FusedLinearPreferenceLoss(kind="ipo", beta=0.3, logits_budget=budget)
    ones = torch.ones(b, labels.shape[1])

    def run(lab, **weights):
        h = hidden.clone().requires_grad_(True)
        loss, metrics = module(h, weight, lab, ref_c, ref_r, bias, **weights)
        loss.backward()
        return loss.detach(), h.grad, metrics

    plain = run(labels)
    # A missing side means all ones; both given as ones is the same.
    for weights in ({"chosen_token_weights": ones}, {"rejected_token_weights": ones},
                    {"chosen_token_weights": ones, "rejected_token_weights": ones}):
        got = run(labels, **weights)
        assert_rel(got[0], plain[0], 1e-6)
        assert_rel(got[1], plain[1], 1e-6)
    mask = (w != 0).float()
    masked = run(labels, chosen_token_weights=mask[:b], rejected_token_weights=mask[b:])
    dropped = run(labels.masked_fill(w == 0, IGNORE))
    assert_rel(masked[0], dropped[0], 1e-6)
    assert_rel(masked[1], dropped[1], 1e-6)
    for name in dropped[2]:
        assert_rel(masked[2][name], dropped[2][name], 1e-6)


def test_learned_mask_gets_gradients_through_the_fused_module():
    hidden, weight, bias, labels, w, ref_c, ref_r, _ = pair_batch(seed=9)
    b = ref_c.shape[0]
    module = FusedLinearPreferenceLoss(kind="sigmoid", beta=0.5)
    tw = w.clone().requires_grad_(True)
    h = hidden.clone().requires_grad_(True)
    loss, _ = module(h, weight, labels, ref_c, ref_r, bias, chosen_token_weights=tw[:b],
                     rejected_token_weights=tw[b:])
    assert path_of(loss) == "recompute"  # weights that want a gradient leave the grouped path
    loss.backward()
    tw_ref = w.clone().requires_grad_(True)
    h_ref = hidden.clone().requires_grad_(True)
    logps, _ = weighted_reference(h_ref, weight, labels, bias, tw_ref)
    want, _ = preference_loss(logps[:b], logps[b:], ref_c, ref_r, kind="sigmoid", beta=0.5)
    want.backward()
    assert_rel(tw.grad, tw_ref.grad, 1e-5)
    assert_rel(h.grad, h_ref.grad, 1e-5)


def test_fused_token_weight_errors():
    hidden, weight, bias, labels, w, ref_c, ref_r, _ = pair_batch(seed=10)
    b = ref_c.shape[0]
    module = FusedLinearPreferenceLoss()
    with pytest.raises(PrefkitError, match="chosen_token_weights has shape"):
        module(hidden, weight, labels, ref_c, ref_r, bias, chosen_token_weights=w)
    with pytest.raises(PrefkitError, match="rejected_token_weights must be a floating"):
        module(hidden, weight, labels, ref_c, ref_r, bias,
               rejected_token_weights=(w[b:] > 0).long())
    bad = w.clone()
    bad[b + 1, 4] = -2.0
    with pytest.raises(PrefkitError, match=r"\[4, 4\] = -2.0"):
        module(hidden, weight, labels, ref_c, ref_r, bias, chosen_token_weights=bad[:b],
               rejected_token_weights=bad[b:])


# ---------------------------------------------------------------- sparse_token_weights


def sparse_reference(policy, ref, mask, threshold, top_fraction, normalize):
    """Row by row, token by token, as the docstring states the formula."""
    out = []
    for p_row, r_row, m_row in zip(policy.tolist(), ref.tolist(), mask.tolist()):
        size = [abs(p - r) for p, r in zip(p_row, r_row)]
        w = [max(0.0, s - threshold) if m else 0.0 for s, m in zip(size, m_row)]
        if top_fraction is not None:
            valid = sorted((s for s, m in zip(size, m_row) if m), reverse=True)
            if valid:
                cut = valid[max(math.ceil(top_fraction * len(valid)), 1) - 1]
                w = [x if s >= cut else 0.0 for x, s in zip(w, size)]
        if normalize and max(w, default=0.0) > 0:
            top = max(w)
            w = [x / top for x in w]
        out.append(w)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("threshold", [0.0, 0.4])
@pytest.mark.parametrize("top_fraction", [None, 0.25, 1.0])
@pytest.mark.parametrize("normalize", [True, False])
def test_sparse_token_weights_formula(threshold, top_fraction, normalize):
    g = torch.Generator().manual_seed(11)
    policy = -torch.rand(5, 12, generator=g, dtype=torch.float64) * 4
    ref = policy + torch.randn(5, 12, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 12, generator=g) > 0.2
    mask[3] = False  # a row without tokens
    got = sparse_token_weights(policy.requires_grad_(), ref, mask, threshold=threshold,
                               top_fraction=top_fraction, normalize=normalize)
    want = sparse_reference(policy.detach(), ref, mask, threshold, top_fraction, normalize)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    assert not got.requires_grad and bool((got >= 0).all())
    assert bool((got[~mask] == 0).all())
    if normalize:
        assert bool((got <= 1).all())
    if top_fraction is not None:  # at most ceil(f n) tokens per row (continuous values: no ties)
        kept = (got > 0).sum(1)
        limit = torch.ceil(mask.sum(1) * top_fraction)
        assert bool((kept <= limit).all())


def test_sparse_token_weights_are_zero_where_policy_is_reference():
    policy = -torch.rand(2, 5)
    assert torch.equal(sparse_token_weights(policy, policy.clone()), torch.zeros(2, 5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": -0.1}, "threshold"),
        ({"top_fraction": 0.0}, "top_fraction"),
        ({"top_fraction": 1.5}, "top_fraction"),
        ({"mask": torch.ones(2, 5)}, "bool"),
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, "mask has shape"),
    ],
)
def test_sparse_token_weights_errors(kwargs, match):
    with pytest.raises(PrefkitError, match=match):
        sparse_token_weights(torch.zeros(2, 5), torch.zeros(2, 5), **kwargs)
    with pytest.raises(PrefkitError, match="rows, tokens"):
        sparse_token_weights(torch.zeros(5), torch.zeros(5))


def test_sparsepo_step_with_a_computed_mask():
    """The whole recipe: per-token log-probs, a mask from their log-ratio, the fused loss with
    the mask and reference sums weighted by it, against the same step done with full logits."""
    hidden, weight, bias, labels, _, _, _, _ = pair_batch(seed=12)
    b = labels.shape[0] // 2
    g = torch.Generator().manual_seed(12)
    ref_weight = weight + torch.randn(weight.shape, generator=g) * 0.3  # another model's head
    with torch.no_grad():
        policy_tokens = token_logps(hidden, weight, labels, bias)
        ref_tokens = token_logps(hidden, ref_weight, labels, bias)
    mask = sparse_token_weights(policy_tokens, ref_tokens, labels != IGNORE, threshold=0.05,
                                top_fraction=0.5)
    ref_sums = (ref_tokens * mask).sum(1)
    h = hidden.clone().requires_grad_(True)
    loss, _ = FusedLinearPreferenceLoss(kind="sigmoid", beta=0.5)(
        h, weight, labels, ref_sums[:b], ref_sums[b:], bias,
        chosen_token_weights=mask[:b], rejected_token_weights=mask[b:])
    loss.backward()
    h_ref = hidden.double().requires_grad_(True)
    policy = full_token_logps(h_ref, weight.double(), labels, bias.double())
    reference = full_token_logps(hidden.double(), ref_weight.double(), labels, bias.double())
    ratio = ((policy - reference) * mask.double()).sum(1)
    want = -torch.nn.functional.logsigmoid(0.5 * (ratio[:b] - ratio[b:])).mean()
    want.backward()
    assert_rel(loss.double(), want, 1e-5)
    assert_rel(h.grad.double(), h_ref.grad, 1e-5)


# ---------------------------------------------------------------- Triton (interpreter)

TRITON_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys, torch
    spec = importlib.util.spec_from_file_location("token_tests", sys.argv[1])
    t = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t)
    from prefkit.losses import FusedLinearPreferenceLoss, preference_loss, sequence_logps
    rel = lambda a, r: float((a.double() - r.double()).abs().max() / r.double().abs().max())
    report = {}
    hidden, weight, bias, labels, w = t.batch(n=4, t=7, h=20, v=77, seed=3, dtype=torch.float32)
    w[1, 2:5] = 1.0
    fused = lambda h, wt, b: sequence_logps(h, wt, labels, b, token_weights=w, backend="triton",
                                            chunk_tokens=9, chunk_vocab=40)[0]
    full = lambda h, wt, b: t.weighted_reference(h, wt, labels, b, w)[0]
    out, g = t.grads_of(fused, [hidden, weight, bias])
    ref, g_ref = t.grads_of(full, [hidden, weight, bias])
    report["logps"] = {"value": rel(out, ref), "grads": [rel(a, b) for a, b in zip(g, g_ref)]}
    refs = -torch.arange(2.0) * 3 - 20
    for name, budget in (("grouped", 10 * 77), ("recompute", 0)):
        module = FusedLinearPreferenceLoss(kind="ipo", backend="triton", logits_budget=budget)
        fused = lambda h, wt, b: module(h, wt, labels, refs, refs, b,
                                        chosen_token_weights=w[:2],
                                        rejected_token_weights=w[2:])[0]
        def full(h, wt, b):
            logps, counts = t.weighted_reference(h, wt, labels, b, w)
            return preference_loss(logps[:2], logps[2:], refs, refs, kind="ipo",
                                   chosen_lengths=counts[:2], rejected_lengths=counts[2:])[0]
        out, g = t.grads_of(fused, [hidden, weight, bias])
        want, g_ref = t.grads_of(full, [hidden, weight, bias])
        made = fused(*[x.detach().requires_grad_() for x in (hidden, weight, bias)])
        report[name] = {"loss": rel(out, want), "grads": [rel(a, b) for a, b in zip(g, g_ref)],
                        "path": t.path_of(made)}
    print(json.dumps(report))
    """
)


def test_token_weights_on_triton_kernels_in_interpreter():
    pytest.importorskip("triton")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT, os.path.abspath(__file__)],
        env=dict(os.environ, TRITON_INTERPRET="1"),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["logps"]["value"] < 1e-5, report
    assert max(report["logps"]["grads"]) < 1e-5, report
    for name in ("grouped", "recompute"):
        assert report[name]["path"] == name, report
        assert report[name]["loss"] < 1e-5, report
        assert max(report[name]["grads"]) < 1e-5, report
