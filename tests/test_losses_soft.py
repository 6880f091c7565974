"""Target-probability pair losses (``sppo``, ``soft_sigmoid``) and cross-prompt (JPO) pairs.

The references restate docs/losses.md in float64 with ``log(sigmoid(x))`` rather than
``logsigmoid`` and the SPPO targets written as ``eta * (P - 1/2)`` with ``eta = 1/beta``, so a
slip in the library's form cannot be mirrored here.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from prefkit._errors import PrefkitError
from prefkit.losses import FusedLinearPreferenceLoss, preference_loss

RTOL = 1e-6
IGNORE = -100


def logsig(x):
    return torch.log(torch.sigmoid(x))


def reference(kind, pw, pl, rw, rl, beta, t, tl=None):
    """Per-pair float64 loss exactly as docs/losses.md writes it."""
    c, r = pw - rw, pl - rl
    if kind == "sppo":
        eta = 1.0 / beta
        p_w = t
        p_l = 1.0 - t if tl is None else tl
        return (c - eta * (p_w - 0.5)) ** 2 + (r - eta * (p_l - 0.5)) ** 2
    if kind == "soft_sigmoid":
        d = c - r
        return -(t * logsig(beta * d) + (1.0 - t) * logsig(-beta * d))
    raise AssertionError(kind)


def batch(seed=0, b=9):
    g = torch.Generator().manual_seed(seed)
    pw = -torch.rand(b, generator=g, dtype=torch.float64) * 40 - 2
    pl = -torch.rand(b, generator=g, dtype=torch.float64) * 40 - 2
    rw = pw + torch.randn(b, generator=g, dtype=torch.float64) * 3
    rl = pl + torch.randn(b, generator=g, dtype=torch.float64) * 3
    t = torch.rand(b, generator=g, dtype=torch.float64)
    t[0], t[1] = 0.0, 1.0  # the ends of the range are valid targets
    tl = torch.rand(b, generator=g, dtype=torch.float64)
    return pw, pl, rw, rl, t, tl


def check_against_reference(kind, beta, reduction, with_rejected_target):
    pw, pl, rw, rl, t, tl = batch(seed=len(kind) + int(beta * 10))
    tl = tl if with_rejected_target else None
    inputs = [x.clone().requires_grad_(True) for x in (pw, pl, rw, rl)]
    loss, metrics = preference_loss(
        *inputs, kind=kind, beta=beta, target=t, rejected_target=tl, reduction=reduction
    )
    ref_inputs = [x.clone().requires_grad_(True) for x in (pw, pl, rw, rl)]
    per_pair = reference(kind, *ref_inputs, beta, t, tl)
    ref = {"mean": per_pair.mean(), "sum": per_pair.sum(), "none": per_pair}[reduction]
    assert loss.dtype == torch.float64 and loss.shape == ref.shape
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    weights = torch.linspace(-1.0, 2.0, loss.numel(), dtype=torch.float64).reshape(loss.shape)
    grads = torch.autograd.grad((loss * weights).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).sum(), ref_inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-12)
    # Metrics in TRL's names: beta * log-ratio, detached.
    chosen, rejected = beta * (pw - rw), beta * (pl - rl)
    if reduction != "none":
        chosen, rejected = chosen.mean(), rejected.mean()
    torch.testing.assert_close(metrics["rewards/chosen"], chosen)
    torch.testing.assert_close(metrics["rewards/rejected"], rejected)
    assert all(not m.requires_grad for m in metrics.values())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_soft_sigmoid_matches_float64_formula(beta, reduction):
    check_against_reference("soft_sigmoid", beta, reduction, with_rejected_target=False)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("beta", [0.1, 0.7])
@pytest.mark.parametrize("with_rejected_target", [False, True])
def test_sppo_matches_float64_formula(beta, reduction, with_rejected_target):
    check_against_reference("sppo", beta, reduction, with_rejected_target)


def loss_and_grads(kind, pw, pl, rw, rl, **kwargs):
    inputs = [x.clone().requires_grad_(True) for x in (pw, pl, rw, rl)]
    loss, _ = preference_loss(*inputs, kind=kind, reduction="none", **kwargs)
    return loss, torch.autograd.grad(loss.sum(), inputs)


@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_sppo_with_target_one_is_sppo_hard(beta):
    pw, pl, rw, rl, _, _ = batch(seed=4)
    ones = torch.ones_like(pw)
    soft = loss_and_grads("sppo", pw, pl, rw, rl, beta=beta, target=ones)
    hard = loss_and_grads("sppo_hard", pw, pl, rw, rl, beta=beta)
    # P_l defaults to 1 - P_w = 0; giving it explicitly is the same.
    explicit = loss_and_grads(
        "sppo", pw, pl, rw, rl, beta=beta, target=ones, rejected_target=torch.zeros_like(pw)
    )
    for other in (hard, explicit):
        torch.testing.assert_close(soft[0], other[0], rtol=RTOL, atol=0)
        for a, b in zip(soft[1], other[1]):
            torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_soft_sigmoid_with_target_one_is_sigmoid_and_zero_swaps(beta):
    pw, pl, rw, rl, _, _ = batch(seed=5)
    soft = loss_and_grads("soft_sigmoid", pw, pl, rw, rl, beta=beta, target=torch.ones_like(pw))
    hard = loss_and_grads("sigmoid", pw, pl, rw, rl, beta=beta)
    torch.testing.assert_close(soft[0], hard[0], rtol=RTOL, atol=0)
    for a, b in zip(soft[1], hard[1]):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-12)
    # target = 0 prefers the "rejected" response: DPO with the two swapped.
    zero = loss_and_grads("soft_sigmoid", pw, pl, rw, rl, beta=beta, target=torch.zeros_like(pw))
    swapped, _ = preference_loss(pl, pw, rl, rw, kind="sigmoid", beta=beta, reduction="none")
    torch.testing.assert_close(zero[0], swapped, rtol=RTOL, atol=0)


def test_soft_sigmoid_half_target_is_minimised_at_zero_margin():
    d = torch.linspace(-3, 3, 61, dtype=torch.float64)
    loss, _ = preference_loss(
        d,
        torch.zeros_like(d),
        kind="soft_sigmoid",
        beta=1.0,
        target=torch.full_like(d, 0.5),
        reduction="none",
    )
    assert int(loss.argmin()) == 30  # d = 0


def test_sppo_is_minimised_at_its_targets():
    beta, t, tl = 0.5, torch.tensor([0.8], dtype=torch.float64), torch.tensor([0.3])
    c = (t - 0.5) / beta
    r = (tl.double() - 0.5) / beta
    loss, _ = preference_loss(c, r, kind="sppo", beta=beta, target=t, rejected_target=tl)
    assert loss.item() == pytest.approx(0.0, abs=1e-15)


def test_targets_get_no_gradient():
    pw, pl, rw, rl, t, tl = batch(seed=6)
    t = t.clone().requires_grad_(True)
    tl = tl.clone().requires_grad_(True)
    for kind, extra in (("sppo", {"rejected_target": tl}), ("soft_sigmoid", {})):
        loss, _ = preference_loss(pw.requires_grad_(), pl, rw, rl, kind=kind, target=t, **extra)
        grads = torch.autograd.grad(loss, [t, tl], allow_unused=True)
        assert all(g is None for g in grads)


def test_float32_target_on_float32_logps():
    pw, pl, rw, rl, t, _ = batch(seed=7)
    loss, _ = preference_loss(
        pw.float(), pl.float(), rw.float(), rl.float(), kind="soft_sigmoid", target=t.float()
    )
    assert loss.dtype == torch.float32
    want = reference("soft_sigmoid", pw, pl, rw, rl, 0.1, t).mean()
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=0)


B = 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "sppo"}, "needs target"),
        ({"kind": "soft_sigmoid"}, "needs target"),
        ({"kind": "sigmoid", "target": torch.ones(B)}, "target has no effect"),
        ({"kind": "sppo_hard", "target": torch.ones(B)}, "target has no effect"),
        (
            {"kind": "soft_sigmoid", "target": torch.ones(B), "rejected_target": torch.ones(B)},
            "rejected_target has no effect",
        ),
        ({"kind": "sigmoid", "rejected_target": torch.ones(B)}, "rejected_target has no"),
        ({"kind": "sppo", "target": torch.tensor([0.5, 1.5, 0.2, 0.1])}, r"target .*pair 1"),
        ({"kind": "soft_sigmoid", "target": torch.tensor([0.5, 0.5, -0.1, 0.1])}, "pair 2"),
        ({"kind": "soft_sigmoid", "target": torch.tensor([0.5, 0.5, 0.1, float("nan")])}, "nan"),
        ({"kind": "sppo", "target": torch.ones(B + 1)}, r"target has shape \(5,\)"),
        ({"kind": "sppo", "target": torch.ones(B, 1)}, "target has shape"),
        ({"kind": "sppo", "target": [1.0] * B}, "target must be a torch.Tensor"),
        ({"kind": "sppo", "target": torch.ones(B, dtype=torch.int64)}, "floating-point"),
        (
            {"kind": "sppo", "target": torch.ones(B), "rejected_target": torch.full((B,), 2.0)},
            "rejected_target must hold probabilities",
        ),
        (
            {"kind": "sppo", "target": torch.ones(B), "rejected_target": torch.ones(3)},
            "rejected_target has shape",
        ),
    ],
)
def test_target_validation(kwargs, match):
    logps = torch.full((B,), -5.0)
    with pytest.raises(PrefkitError, match=match):
        preference_loss(logps, logps - 1, **kwargs)


# ---------------------------------------------------------------- fused module


def unfused_logps(hidden, weight, labels, bias):
    logprobs = torch.log_softmax(hidden @ weight.T + bias, dim=-1)
    keep = labels != IGNORE
    picked = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return (picked * keep).sum(-1), keep.sum(-1)


def fused_batch(b=3, t=10, h=16, v=211, seed=5):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * b, t, h, generator=g)
    weight = torch.randn(v, h, generator=g) / h**0.5
    bias = torch.randn(v, generator=g)
    labels = torch.randint(0, v, (2 * b, t), generator=g)
    for i in range(2 * b):  # prompts of different lengths, right padding
        labels[i, : 1 + i % 4] = IGNORE
        labels[i, t - (i % 3) :] = IGNORE
    ref_c = -torch.rand(b, generator=g) * 30 - 10
    ref_r = -torch.rand(b, generator=g) * 30 - 10
    target = torch.rand(b, generator=g)
    rejected_target = torch.rand(b, generator=g)
    return hidden, weight, bias, labels, ref_c, ref_r, target, rejected_target


def close(got, want, rtol=1e-5):
    want = want.detach()
    atol = rtol * float(want.abs().max()) + 1e-30
    torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=atol)


def grads(fn, tensors):
    tensors = [x.detach().clone().requires_grad_(True) for x in tensors]
    out = fn(*tensors)
    return out.detach(), torch.autograd.grad(out.sum(), tensors)


# logits_budget: None (one block), one pair per block (at most 18 labelled tokens per pair at
# V=211), 0 (the recomputing sequence_logps path).
BUDGETS = {"one_block": None, "pair_blocks": 18 * 211, "recompute": 0}


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize(
    ("kind", "with_rejected_target"),
    [("sppo", False), ("sppo", True), ("soft_sigmoid", False)],
)
def test_fused_matches_unfused(kind, with_rejected_target, budget):
    hidden, weight, bias, labels, ref_c, ref_r, target, rejected = fused_batch()
    b = ref_c.shape[0]
    rejected = rejected if with_rejected_target else None
    module = FusedLinearPreferenceLoss(
        kind=kind, beta=0.2, chunk_tokens=6, chunk_vocab=64, logits_budget=BUDGETS[budget]
    )

    def fused(h, w, bb):
        return module(h, w, labels, ref_c, ref_r, bb, target=target, rejected_target=rejected)[0]

    def full(h, w, bb):
        logps, _ = unfused_logps(h, w, labels, bb)
        return preference_loss(
            logps[:b],
            logps[b:],
            ref_c,
            ref_r,
            kind=kind,
            beta=0.2,
            target=target,
            rejected_target=rejected,
        )[0]

    probe = [x.detach().requires_grad_(True) for x in (hidden, weight, bias)]
    out = fused(*probe)
    grouped = "PrecomputedGradients" in type(out.grad_fn).__name__
    assert grouped == (budget != "recompute")
    loss, g = grads(fused, [hidden, weight, bias])
    ref, g_ref = grads(full, [hidden, weight, bias])
    close(loss, ref)
    for got, want in zip(g, g_ref):
        close(got, want)


def test_fused_per_pair_and_target_errors():
    hidden, weight, bias, labels, ref_c, ref_r, target, _ = fused_batch()
    module = FusedLinearPreferenceLoss(kind="soft_sigmoid", reduction="none")
    loss, metrics = module(hidden, weight, labels, ref_c, ref_r, bias, target=target)
    logps, _ = unfused_logps(hidden, weight, labels, bias)
    want, _ = preference_loss(
        logps[:3], logps[3:], ref_c, ref_r, kind="soft_sigmoid", target=target, reduction="none"
    )
    close(loss, want)
    assert metrics["rewards/margins"].shape == (3,)
    with pytest.raises(PrefkitError, match="target has shape"):
        module(hidden, weight, labels, ref_c, ref_r, bias, target=target[:2])
    with pytest.raises(PrefkitError, match="needs target"):
        module(hidden, weight, labels, ref_c, ref_r, bias)
    with pytest.raises(PrefkitError, match="target has no effect"):
        FusedLinearPreferenceLoss(kind="sigmoid")(hidden, weight, labels, target=target)


# ---------------------------------------------------------------- JPO: pairs across prompts


@pytest.mark.parametrize("kind", ["sigmoid", "jpo"])
@pytest.mark.parametrize("joint", [False, True])
def test_cross_prompt_pairs_are_sigmoid(joint, kind):
    """JPO is DPO's loss on two (prompt, response) log-ratios whose prompts differ.

    Each chosen row has its own prompt (its own tokens and length) and each rejected row
    another; nothing in the loss ties them, so ``sigmoid`` is JPO. With ``joint=True`` the
    prompt tokens are labelled too, which gives the joint log-probability log pi(x, y) of the
    authors' ``joint_distribution`` option.
    """
    b, t, h, v = 3, 14, 12, 97
    g = torch.Generator().manual_seed(11)
    hidden = torch.randn(2 * b, t, h, generator=g)
    weight = torch.randn(v, h, generator=g) / h**0.5
    tokens = torch.randint(0, v, (2 * b, t), generator=g)
    prompt_lengths = [2, 5, 3, 6, 1, 4]  # six different prompts: no pair shares one
    labels = tokens.clone()
    for i, n in enumerate(prompt_lengths):
        if not joint:
            labels[i, :n] = IGNORE
        labels[i, t - i :] = IGNORE
    ref = -torch.rand(2 * b, generator=g) * 20 - 5
    module = FusedLinearPreferenceLoss(kind=kind, beta=0.3)
    w = weight.clone().requires_grad_(True)
    loss, _ = module(hidden, w, labels, ref[:b], ref[b:])
    (grad,) = torch.autograd.grad(loss, w)

    w_ref = weight.double().requires_grad_(True)
    logprobs = torch.log_softmax(hidden.double() @ w_ref.T, dim=-1)
    picked = logprobs.gather(-1, tokens[..., None])[..., 0]
    keep = labels != IGNORE
    logp = (picked * keep).sum(-1)  # log pi(y_i | x_i), or log pi(x_i, y_i) when joint
    c = logp[:b] - ref[:b].double()
    r = logp[b:] - ref[b:].double()
    want = -logsig(0.3 * (c - r)).mean()
    (grad_want,) = torch.autograd.grad(want, w_ref)
    close(loss, want)
    close(grad, grad_want)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_jpo_kind_matches_float64_formula(beta, reduction):
    """``kind="jpo"``: -log sigma(beta [log-ratio(x_w, y_w) - log-ratio(x_l, y_l)]), written
    out with each side's own prompt; it is sigmoid's code path, so it equals sigmoid too."""
    pw, pl, rw, rl, _, _ = batch(seed=12)  # log pi(y_w|x_w), log pi(y_l|x_l), their references
    inputs = [x.clone().requires_grad_(True) for x in (pw, pl, rw, rl)]
    loss, metrics = preference_loss(*inputs, kind="jpo", beta=beta, reduction=reduction)
    ref_inputs = [x.clone().requires_grad_(True) for x in (pw, pl, rw, rl)]
    a, b, ra, rb = ref_inputs
    per_pair = -torch.log(torch.sigmoid(beta * (a - ra) - beta * (b - rb)))
    ref = {"mean": per_pair.mean(), "sum": per_pair.sum(), "none": per_pair}[reduction]
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    weights = torch.linspace(-1.0, 2.0, loss.numel(), dtype=torch.float64).reshape(loss.shape)
    grads = torch.autograd.grad((loss * weights).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).sum(), ref_inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-12)
    same, same_metrics = preference_loss(pw, pl, rw, rl, kind="sigmoid", beta=beta,
                                         reduction=reduction)
    assert torch.equal(loss.detach(), same)
    for name, value in same_metrics.items():
        assert torch.equal(metrics[name], value)
    with pytest.raises(PrefkitError, match="target has no effect"):
        preference_loss(pw, pl, kind="jpo", target=torch.ones_like(pw))
