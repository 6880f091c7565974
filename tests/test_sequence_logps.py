"""Chunked sequence_logps and the fused modules against full-logits (unfused) computations.

Tolerances: fp32 values and gradients agree to 1e-5 (relative, with an absolute floor scaled to
the tensor). bf16 inputs: the fused path computes logits and sums in fp32 from the bf16 values,
so its log-probs match an fp32 computation on the same (bf16-rounded) values to 1e-5; its
gradients are returned in bf16, so they match to bf16 rounding (rtol 1.6e-2, see
docs/losses.md). The Triton kernels run under TRITON_INTERPRET=1 in a subprocess, because
Triton decides on interpretation when it is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from prefkit._errors import PrefkitError
from prefkit.losses import (
    FusedLinearListLoss,
    FusedLinearPreferenceLoss,
    list_loss,
    preference_loss,
    sequence_logps,
)

IGNORE = -100


def unfused_logps(hidden, weight, labels, bias=None):
    """The textbook way: materialise all logits, log_softmax, gather, mask, sum."""
    logits = hidden.float() @ weight.float().T
    if bias is not None:
        logits = logits + bias.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    keep = labels != IGNORE
    picked = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return (picked * keep).sum(-1), keep.sum(-1)


def make_batch(n=6, t=11, h=24, v=301, seed=0, dtype=torch.float32, bias=True):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, t, h, generator=g).to(dtype)
    weight = (torch.randn(v, h, generator=g) / h**0.5).to(dtype)
    b = torch.randn(v, generator=g).to(dtype) if bias else None
    labels = torch.randint(0, v, (n, t), generator=g)
    # Uneven lengths: a prompt of varying size, right padding, one sequence fully ignored.
    for i in range(n):
        labels[i, : i % 4] = IGNORE
        labels[i, t - (i % 3) :] = IGNORE
    labels[n - 1] = IGNORE
    labels[0, 0] = v - 1  # the last vocabulary row is a label somewhere
    return hidden, weight, b, labels


def close(got, want, rtol=1e-5):
    atol = rtol * float(want.abs().max()) + 1e-30
    torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=atol)


def grads(fn, tensors):
    tensors = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*tensors)
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return out.detach(), torch.autograd.grad((out * weights).sum(), tensors)


@pytest.mark.parametrize("chunks", [(4, 64), (5, 1000), (1000, 37)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_matches_unfused_fp32(chunks, with_bias):
    hidden, weight, bias, labels = make_batch(bias=with_bias)
    ct, cv = chunks
    tensors = [hidden, weight] + ([bias] if with_bias else [])

    def fused(h, w, *b):
        return sequence_logps(h, w, labels, *b, chunk_tokens=ct, chunk_vocab=cv)[0]

    def full(h, w, *b):
        return unfused_logps(h, w, labels, *b)[0]

    out, g = grads(fused, tensors)
    ref, g_ref = grads(full, tensors)
    close(out, ref)
    for a, b in zip(g, g_ref):
        close(a, b)
    counts = sequence_logps(hidden, weight, labels, bias)[1]
    assert counts.tolist() == (labels != IGNORE).sum(1).tolist()
    assert out[-1] == 0 and counts[-1] == 0


def test_fused_bf16_accumulates_in_fp32():
    hidden, weight, bias, labels = make_batch(dtype=torch.bfloat16, seed=2)
    tensors = [hidden, weight, bias]

    def fused(h, w, b):
        return sequence_logps(h, w, labels, b, chunk_tokens=8, chunk_vocab=128)[0]

    def full_fp32(h, w, b):  # fp32 math on the same bf16 values
        return unfused_logps(h.float(), w.float(), labels, b.float())[0]

    out, g = grads(fused, tensors)
    ref, g_ref = grads(full_fp32, tensors)
    assert out.dtype == torch.float32
    close(out, ref, rtol=1e-5)
    for a, b in zip(g, g_ref):
        assert a.dtype == torch.bfloat16
        close(a, b, rtol=1.6e-2)


def test_float64_stays_float64():
    hidden, weight, bias, labels = make_batch(dtype=torch.float64)
    out = sequence_logps(hidden, weight, labels, bias, chunk_tokens=7, chunk_vocab=50)[0]
    assert out.dtype == torch.float64
    close(out, unfused_logps(hidden.double(), weight.double(), labels, bias)[0].double(), rtol=1e-5)


class SavedCounter:
    def __init__(self):
        self.sizes = []

    def __enter__(self):
        self.ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda x: x)
        self.ctx.__enter__()
        return self

    def pack(self, t):
        self.sizes.append(t.numel())
        return t

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)


def test_no_grad_path_saves_nothing():
    hidden, weight, bias, labels = make_batch()
    hidden.requires_grad_(True)
    with SavedCounter() as saved, torch.no_grad():
        out, _ = sequence_logps(hidden, weight, labels, bias)
    assert saved.sizes == [] and out.grad_fn is None
    hidden.requires_grad_(False)
    with SavedCounter() as saved:  # grad enabled, but nothing requires it
        out, _ = sequence_logps(hidden, weight, labels, bias)
    assert saved.sizes == [] and out.grad_fn is None


def test_grad_path_saves_no_logits():
    hidden, weight, bias, labels = make_batch(n=4, t=16, v=2000)
    hidden.requires_grad_(True)
    with SavedCounter() as saved:
        out, _ = sequence_logps(hidden, weight, labels, bias)
    assert out.grad_fn is not None
    # The inputs themselves plus O(tokens) vectors: nothing of size tokens x vocab.
    assert max(saved.sizes) <= weight.numel()
    assert sum(saved.sizes) < hidden.numel() + weight.numel() + bias.numel() + 4 * 64


def test_only_weight_requires_grad():
    hidden, weight, bias, labels = make_batch()
    _, (gw,) = grads(lambda w: sequence_logps(hidden, w, labels, bias)[0], [weight])
    _, (gw_ref,) = grads(lambda w: unfused_logps(hidden, w, labels, bias)[0], [weight])
    close(gw, gw_ref)


def test_all_ignored_is_zero_and_differentiable():
    hidden, weight, bias, labels = make_batch()
    labels[:] = IGNORE
    hidden.requires_grad_(True)
    out, counts = sequence_logps(hidden, weight, labels, bias)
    assert out.tolist() == [0.0] * len(out) and counts.sum() == 0
    out.sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() == 0


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda h, w, b, y: (h[0], w, y, b), "hidden"),
        (lambda h, w, b, y: (h, w[:, :-1], y, b), "weight"),
        (lambda h, w, b, y: (h, w, y[:, :-1], b), "labels"),
        (lambda h, w, b, y: (h, w, y.float(), b), "integer"),
        (lambda h, w, b, y: (h, w, y, b[:-1]), "bias"),
        (lambda h, w, b, y: (h, w, y.clone().fill_(w.shape[0]), b), "outside"),
        (lambda h, w, b, y: (h, w, y.clone().fill_(-5), b), "outside"),
    ],
)
def test_sequence_logps_bad_input(mutate, match):
    args = mutate(*make_batch())
    with pytest.raises(PrefkitError, match=match):
        sequence_logps(*args)


def test_backend_choice():
    hidden, weight, _bias, labels = make_batch()
    with pytest.raises(PrefkitError, match="backend"):
        sequence_logps(hidden, weight, labels, backend="cuda")
    if os.environ.get("TRITON_INTERPRET") not in ("1", "true"):
        with pytest.raises(PrefkitError, match="triton"):
            sequence_logps(hidden, weight, labels, backend="triton")


# ---------------------------------------------------------------- fused modules


def pair_batch(b=3, t=10, h=16, v=211, seed=5, dtype=torch.float32):
    hidden, weight, bias, labels = make_batch(n=2 * b, t=t, h=h, v=v, seed=seed, dtype=dtype)
    labels[-1, 3:6] = 7  # the all-ignored row would make a rejected completion empty: refill
    g = torch.Generator().manual_seed(seed)
    ref_c = -torch.rand(b, generator=g) * 30 - 10
    ref_r = -torch.rand(b, generator=g) * 30 - 10
    return hidden, weight, bias, labels, ref_c, ref_r


# logits_budget: None (every pair in one block here), one pair per block (the largest pair has
# 17 labelled tokens at V=211), 0 (the recomputing sequence_logps path).
BUDGETS = {"one_block": None, "pair_blocks": 17 * 211, "recompute": 0}
PATHS = {"one_block": "grouped", "pair_blocks": "grouped", "recompute": "recompute"}


def path_of(loss):
    """Which path made ``loss``: the gradient-in-forward one or sequence_logps'."""
    return "grouped" if "PrecomputedGradients" in type(loss.grad_fn).__name__ else "recompute"


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize(
    "kind", ["sigmoid", "ipo", "rpo", "simpo", "cpo", "orpo", "sft", "sigmoid_norm", "discopop"]
)
def test_fused_preference_matches_unfused(kind, budget):
    hidden, weight, bias, labels, ref_c, ref_r = pair_batch()
    b = ref_c.shape[0]
    refs = (None, None) if kind in ("simpo", "cpo", "orpo") else (ref_c, ref_r)
    module = FusedLinearPreferenceLoss(
        kind=kind, beta=0.2, gamma=0.3, chunk_tokens=6, chunk_vocab=64,
        logits_budget=BUDGETS[budget],
    )
    probe = [t.detach().requires_grad_(True) for t in (hidden, weight, bias)]
    assert path_of(module(*probe[:2], labels, *refs, bias=probe[2])[0]) == PATHS[budget]

    def fused(h, w, bb):
        return module(h, w, labels, *refs, bias=bb)[0]

    def full(h, w, bb):
        logps, counts = unfused_logps(h, w, labels, bb)
        return preference_loss(
            logps[:b],
            logps[b:],
            *refs,
            kind=kind,
            beta=0.2,
            gamma=0.3,
            chosen_lengths=counts[:b],
            rejected_lengths=counts[b:],
        )[0]

    loss, g = grads(fused, [hidden, weight, bias])
    ref, g_ref = grads(full, [hidden, weight, bias])
    close(loss, ref)
    for a, want in zip(g, g_ref):
        close(a, want)


def test_fused_preference_metrics_and_errors():
    hidden, weight, bias, labels, ref_c, ref_r = pair_batch()
    loss, metrics = FusedLinearPreferenceLoss(reduction="none")(
        hidden, weight, labels, ref_c, ref_r, bias
    )
    assert loss.shape == (3,) and metrics["logps/chosen"].shape == (3,)
    with pytest.raises(PrefkitError, match="2B"):
        FusedLinearPreferenceLoss()(hidden[:5], weight, labels[:5])
    with pytest.raises(PrefkitError, match="kind"):
        FusedLinearPreferenceLoss(kind="dpo")


@pytest.mark.parametrize("budget", [None, 21 * 150, 0])  # one block, a list per block, none
@pytest.mark.parametrize("kind", ["plackett_luce", "lipo_lambda", "all_pairs_logistic"])
def test_fused_list_matches_unfused(kind, budget):
    bsz, k = 2, 3
    hidden, weight, bias, labels = make_batch(n=bsz * k, t=9, v=150, seed=9)
    scores = torch.tensor([[2.0, 0.0, 1.0], [1.0, 3.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    labels[5] = IGNORE  # the padded response
    ref_logps = -torch.rand(bsz, k) * 20
    module = FusedLinearListLoss(
        kind=kind, beta=0.5, chunk_tokens=5, chunk_vocab=40, logits_budget=budget
    )

    def fused(h, w, bb):
        return module(h, w, labels, scores, mask, ref_logps, bias=bb)[0]

    def full(h, w, bb):
        logps, _ = unfused_logps(h, w, labels, bb)
        return list_loss(logps.view(bsz, k), scores, mask, ref_logps, kind=kind, beta=0.5)[0]

    probe = [t.detach().requires_grad_(True) for t in (hidden, weight, bias)]
    made = module(*probe[:2], labels, scores, mask, ref_logps, bias=probe[2])[0]
    assert path_of(made) == ("recompute" if budget == 0 else "grouped")
    loss, g = grads(fused, [hidden, weight, bias])
    ref, g_ref = grads(full, [hidden, weight, bias])
    close(loss, ref)
    for a, want in zip(g, g_ref):
        close(a, want)
    with pytest.raises(PrefkitError, match="B\\*K"):
        module(hidden[:5], weight, labels[:5], scores, mask)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_grouped_path_metrics_scaling_and_fallbacks(reduction):
    hidden, weight, bias, labels, ref_c, ref_r = pair_batch()
    module = FusedLinearPreferenceLoss(reduction=reduction, logits_budget=17 * 211)
    recompute = FusedLinearPreferenceLoss(reduction=reduction, logits_budget=0)
    h = hidden.clone().requires_grad_(True)
    loss, metrics = module(h, weight, labels, ref_c, ref_r, bias)
    want, want_metrics = recompute(hidden, weight, labels, ref_c, ref_r, bias)
    assert path_of(loss) == "grouped" and want.grad_fn is None
    close(loss, want)
    assert sorted(metrics) == sorted(want_metrics)
    for name in metrics:
        close(metrics[name], want_metrics[name])
    # backward scales the stored gradients by the upstream gradient, once.
    (3.0 * loss).backward(retain_graph=True)
    h_ref = hidden.clone().requires_grad_(True)
    (3.0 * recompute(h_ref, weight, labels, ref_c, ref_r, bias)[0]).backward()
    close(h.grad, h_ref.grad)
    with pytest.raises(PrefkitError, match="once"):
        loss.backward()
    # Reference log-probs that want a gradient get it: the recomputing path runs.
    ref = ref_c.clone().requires_grad_(True)
    assert path_of(module(h, weight, labels, ref, ref_r, bias)[0]) == "recompute"
    # A pair longer than the budget falls back too, and so does a grad-free call.
    short = FusedLinearPreferenceLoss(reduction=reduction, logits_budget=17 * 211 - 1)
    assert path_of(short(h, weight, labels, ref_c, ref_r, bias)[0]) == "recompute"
    with torch.no_grad():
        assert module(h, weight, labels, ref_c, ref_r, bias)[0].grad_fn is None


def test_fused_modules_check_side_inputs_before_slicing():
    hidden, weight, bias, labels, ref_c, ref_r = pair_batch()
    hidden.requires_grad_(True)
    with pytest.raises(PrefkitError, match="ref_rejected_logps"):
        FusedLinearPreferenceLoss()(hidden, weight, labels, ref_c, ref_r[:2], bias)
    lists = FusedLinearListLoss()
    scores, mask = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(PrefkitError, match="mask"):
        lists(hidden, weight, labels, scores, mask[:, :2])
    with pytest.raises(PrefkitError, match="ref_logps"):
        lists(hidden, weight, labels, scores, mask, torch.zeros(3, 2))


# ---------------------------------------------------------------- Triton (interpreter)

TRITON_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    sys.path[:0] = json.loads(sys.argv[1])
    from test_sequence_logps import make_batch, unfused_logps, grads
    from prefkit.losses import (FusedLinearListLoss, FusedLinearPreferenceLoss, list_loss,
                                preference_loss, sequence_logps)
    report = {}
    for name, dtype, bias in [("fp32", torch.float32, True), ("fp32_nobias", torch.float32, False),
                              ("bf16", torch.bfloat16, True)]:
        hidden, weight, b, labels = make_batch(n=4, t=7, h=20, v=77, seed=3, dtype=dtype,
                                               bias=bias)
        ts = [hidden, weight] + ([b] if bias else [])
        fused = lambda h, w, *bb: sequence_logps(h, w, labels, *bb, backend="triton",
                                                 chunk_tokens=9, chunk_vocab=40)[0]
        full = lambda h, w, *bb: unfused_logps(h.float(), w.float(), labels,
                                               *[x.float() for x in bb])[0]
        out, g = grads(fused, ts)
        ref, g_ref = grads(full, ts)
        rel = lambda a, r: float((a.float() - r.float()).abs().max() / r.float().abs().max())
        report[name] = {"logps": rel(out, ref), "grads": [rel(x, y) for x, y in zip(g, g_ref)],
                        "grad_dtypes": [str(x.dtype) for x in g]}
        # The gradient-in-forward path (stored fp32 logits, d written over them in place).
        module = FusedLinearPreferenceLoss(backend="triton", logits_budget=10 * 77)
        fused = lambda h, w, *bb: module(h, w, labels, ref, ref, *bb)[0]
        full = lambda h, w, *bb: preference_loss(*unfused_logps(
            h.float(), w.float(), labels, *[x.float() for x in bb])[0].view(2, 2), ref, ref)[0]
        ref = -torch.arange(2.0) * 3 - 20
        out, g = grads(fused, ts)
        want, g_ref = grads(full, ts)
        report[name + "_grouped"] = {"loss": rel(out, want),
                                     "grads": [rel(x, y) for x, y in zip(g, g_ref)],
                                     "grad_dtypes": [str(x.dtype) for x in g],
                                     "grouped": "PrecomputedGradients" in type(
                                         fused(*[t.detach().requires_grad_() for t in ts]
                                               ).grad_fn).__name__}
    # Lists on that path: two lists of two responses, a block each (12 and 3 tokens).
    hidden, weight, b, labels = make_batch(n=4, t=7, h=20, v=77, seed=3)
    scores, mask = torch.tensor([[1.0, 2.0], [0.5, 0.0]]), torch.ones(2, 2, dtype=torch.bool)
    module = FusedLinearListLoss(kind="plackett_luce", backend="triton", logits_budget=12 * 77)
    fused = lambda h, w, bb: module(h, w, labels, scores, mask, bias=bb)[0]
    full = lambda h, w, bb: list_loss(unfused_logps(h, w, labels, bb)[0].view(2, 2), scores,
                                      mask, kind="plackett_luce")[0]
    out, g = grads(fused, [hidden, weight, b])
    want, g_ref = grads(full, [hidden, weight, b])
    report["lists_grouped"] = {"loss": rel(out, want),
                               "grads": [rel(x, y) for x, y in zip(g, g_ref)],
                               "grouped": "PrecomputedGradients" in type(fused(
                                   hidden.requires_grad_(), weight, b).grad_fn).__name__}
    print(json.dumps(report))
    """
)


def test_triton_kernels_in_interpreter():
    pytest.importorskip("triton")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        # The tests folder itself goes first: a package may install a top-level `tests` of its
        # own into site-packages (openrlhf does), which would shadow `tests.` imports.
        [sys.executable, "-c", TRITON_SCRIPT,
         json.dumps([os.path.join(root, "tests"), root, *sys.path])],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("fp32", "fp32_nobias"):
        assert report[name]["logps"] < 1e-5, report
        assert max(report[name]["grads"]) < 1e-5, report
    # bf16: log-probs from fp32 accumulation; gradients go through bf16 GEMMs on this path.
    assert report["bf16"]["logps"] < 1e-5, report
    assert max(report["bf16"]["grads"]) < 3e-2, report
    assert report["bf16"]["grad_dtypes"] == ["torch.bfloat16"] * 3
    for name in ("fp32_grouped", "fp32_nobias_grouped", "bf16_grouped"):
        assert report[name]["grouped"], report
        assert report[name]["loss"] < 1e-5, report
    assert max(report["fp32_grouped"]["grads"] + report["fp32_nobias_grouped"]["grads"]) < 1e-5
    # bf16: d is written in bf16 over its own fp32 logits; the weight gradient is summed in bf16
    # over the blocks (one per pair here: 10 and 5 tokens at V=77).
    assert max(report["bf16_grouped"]["grads"]) < 3e-2, report
    assert report["bf16_grouped"]["grad_dtypes"] == ["torch.bfloat16"] * 3
    assert report["lists_grouped"]["grouped"], report
    assert report["lists_grouped"]["loss"] < 1e-5, report
    assert max(report["lists_grouped"]["grads"]) < 1e-5, report
