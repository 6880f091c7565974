"""Preference and listwise losses against plainly written float64 references.

Each reference below restates the formula from docs/losses.md (TRL v1) directly, with
``log(sigmoid(x))`` rather than ``logsigmoid`` and explicit loops for the list losses, so that
a mistake in the library's vectorised form cannot be mirrored here.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from prefkit._errors import PrefkitError
from prefkit.losses import list_loss, preference_loss

RTOL = 1e-6


def logsig(x):
    return torch.log(torch.sigmoid(x))


def sig(x):
    return 1.0 / (1.0 + torch.exp(-x))


def reference_pair_loss(kind, pw, pl, rw, rl, nw, nl, beta, e, gamma, tau, alpha):
    """Per-pair loss, one kind at a time, exactly as docs/losses.md writes it."""
    c, r = pw - rw, pl - rl
    d = c - r
    b = beta
    mw, ml = pw / nw, pl / nl
    if kind == "sigmoid":
        return -logsig(b * d)
    if kind == "hinge":
        return torch.clamp(1 - b * d, min=0)
    if kind == "ipo":
        return (c / nw - r / nl - 1 / (2 * b)) ** 2
    if kind == "robust":
        return (-(1 - e) * logsig(b * d) + e * logsig(-b * d)) / (1 - 2 * e)
    if kind == "exo_pair":
        e = e or 1e-3
        return sig(b * d) * (logsig(b * d) - math.log(1 - e)) + sig(-b * d) * (
            logsig(-b * d) - math.log(e)
        )
    if kind == "nca_pair":
        return -logsig(b * c) - 0.5 * logsig(-b * c) - 0.5 * logsig(-b * r)
    if kind == "bco_pair":
        return -logsig(b * c) - logsig(-b * r)
    if kind == "sppo_hard":
        return (c - 1 / (2 * b)) ** 2 + (r + 1 / (2 * b)) ** 2
    if kind == "apo_zero":
        return 1 - sig(b * c) + sig(b * r)
    if kind == "apo_down":
        return sig(b * c) + 1 - sig(b * d)
    if kind == "discopop":
        z = b * d
        m = sig(z / tau)
        return -logsig(z) * (1 - m) + torch.exp(-z) * m
    if kind == "sigmoid_norm":
        return -logsig(b * (c / nw - r / nl))
    if kind == "sft":
        return -pw / nw
    if kind == "rpo":
        return -logsig(b * d) + alpha * (-pw / nw)
    if kind in ("simpo", "cpo"):
        z = mw - ml - (gamma / b if kind == "simpo" else 0.0)
        loss = -(1 - e) * logsig(b * z) - e * logsig(-b * z)
        return loss + alpha * (-mw) if kind == "cpo" else loss
    if kind == "orpo":
        log_odds = (mw - ml) - (torch.log(1 - torch.exp(mw)) - torch.log(1 - torch.exp(ml)))
        return -mw - b * logsig(log_odds)
    raise AssertionError(kind)


KINDS = [
    "sigmoid",
    "hinge",
    "ipo",
    "robust",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
    "sft",
    "rpo",
    "simpo",
    "cpo",
    "orpo",
]
REF_FREE = {"simpo", "cpo", "orpo"}
SMOOTHING = {"robust": 0.1, "exo_pair": 0.05, "simpo": 0.1, "cpo": 0.05}


def pair_batch(seed=0, b=7):
    g = torch.Generator().manual_seed(seed)
    nw = torch.randint(1, 30, (b,), generator=g)
    nl = torch.randint(1, 30, (b,), generator=g)
    # Mean log-probs between -3 and -0.05 so ORPO's log(1 - p) is well defined.
    pw = -(torch.rand(b, generator=g, dtype=torch.float64) * 3 + 0.05) * nw
    pl = -(torch.rand(b, generator=g, dtype=torch.float64) * 3 + 0.05) * nl
    rw = pw + torch.randn(b, generator=g, dtype=torch.float64) * 3
    rl = pl + torch.randn(b, generator=g, dtype=torch.float64) * 3
    return pw, pl, rw, rl, nw, nl


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_pair_kind_matches_float64_formula(kind, beta):
    pw, pl, rw, rl, nw, nl = pair_batch(seed=hash(kind) % 1000)
    e = SMOOTHING.get(kind, 0.0)
    params = {"gamma": 0.4, "tau": 0.05, "alpha": 0.7}
    inputs = [t.clone().requires_grad_(True) for t in (pw, pl, rw, rl)]
    loss, metrics = preference_loss(
        *inputs,
        kind=kind,
        beta=beta,
        label_smoothing=e,
        chosen_lengths=nw,
        rejected_lengths=nl,
        **params,
    )
    ref_inputs = [t.clone().requires_grad_(True) for t in (pw, pl, rw, rl)]
    ref = reference_pair_loss(kind, *ref_inputs, nw.double(), nl.double(), beta, e, **params).mean()
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    ref_grads = torch.autograd.grad(ref, ref_inputs, allow_unused=True)
    for got, want in zip(grads, ref_grads):
        if want is None or kind in REF_FREE and got is None:
            assert got is None or torch.all(got == 0)
            continue
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-12)
    # Metrics: beta * log-ratio (beta * mean logp for the reference-free kinds), detached.
    if kind in REF_FREE:
        chosen, rejected = beta * pw / nw, beta * pl / nl
    else:
        chosen, rejected = beta * (pw - rw), beta * (pl - rl)
    torch.testing.assert_close(metrics["rewards/chosen"], chosen.mean())
    torch.testing.assert_close(metrics["rewards/margins"], (chosen - rejected).mean())
    torch.testing.assert_close(metrics["rewards/accuracies"], (chosen > rejected).double().mean())
    assert all(not m.requires_grad for m in metrics.values())


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_pair_reductions(reduction):
    pw, pl, rw, rl, nw, nl = pair_batch(seed=3)
    per_pair = reference_pair_loss("sigmoid", pw, pl, rw, rl, nw, nl, 0.1, 0, 0, 0, 0)
    loss, metrics = preference_loss(pw, pl, rw, rl, reduction=reduction)
    want = per_pair.sum() if reduction == "sum" else per_pair
    torch.testing.assert_close(loss, want, rtol=RTOL, atol=0)
    if reduction == "none":
        assert metrics["rewards/chosen"].shape == pw.shape


def test_missing_reference_is_zeros():
    pw, pl, _, _, nw, nl = pair_batch(seed=4)
    zero = torch.zeros_like(pw)
    for kind in ("sigmoid", "ipo", "bco_pair"):
        a, _ = preference_loss(pw, pl, kind=kind, chosen_lengths=nw, rejected_lengths=nl)
        b, _ = preference_loss(
            pw, pl, zero, zero, kind=kind, chosen_lengths=nw, rejected_lengths=nl
        )
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_float32_inputs_stay_float32_and_half_is_upcast():
    pw, pl, rw, rl, _, _ = pair_batch(seed=5)
    loss32, _ = preference_loss(pw.float(), pl.float(), rw.float(), rl.float())
    loss16, _ = preference_loss(pw.bfloat16(), pl.bfloat16())
    assert loss32.dtype == torch.float32 and loss16.dtype == torch.float32


def test_orpo_log1mexp_is_stable_near_zero_and_far_below():
    # Mean log-probs of -1e-8 (p ~ 1) and -60 (p ~ 0): the naive log(1 - exp(m)) loses it.
    pw = torch.tensor([-1e-8 * 10, -60.0 * 10], dtype=torch.float64, requires_grad=True)
    pl = torch.tensor([-2.0 * 10, -61.0 * 10], dtype=torch.float64)
    n = torch.tensor([10, 10])
    loss, _ = preference_loss(pw, pl, kind="orpo", chosen_lengths=n, rejected_lengths=n)
    (grad,) = torch.autograd.grad(loss, pw)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    mw = pw.detach() / 10
    # log(1 - e^m) = log(-expm1(m)) near 0, and -e^m to first order far below (e^-60 ~ 1e-26).
    want = torch.tensor([math.log(-math.expm1(-1e-8)), -math.exp(-60.0)], dtype=torch.float64)
    from prefkit.losses.preference import _log1mexp

    torch.testing.assert_close(_log1mexp(mw), want, rtol=1e-12, atol=0)


def test_empty_completion_counts_as_length_one():
    z = torch.zeros(1)
    loss, _ = preference_loss(
        z, z, kind="simpo", chosen_lengths=torch.tensor([0]), rejected_lengths=torch.tensor([0])
    )
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": "ipo"}, "chosen_lengths"),
        ({"kind": "simpo", "chosen_lengths": torch.ones(3)}, "chosen_lengths"),
        ({"reduction": "avg"}, "reduction"),
        ({"beta": 0.0}, "beta"),
        ({"label_smoothing": 0.1}, "label_smoothing"),
        ({"kind": "robust", "label_smoothing": 0.5}, "label_smoothing"),
        ({"kind": "discopop", "tau": 0.0}, "tau"),
    ],
)
def test_pair_bad_arguments(kwargs, match):
    pw = torch.zeros(3)
    with pytest.raises(PrefkitError, match=match):
        preference_loss(pw, pw, **kwargs)


def test_pair_shape_mismatch():
    with pytest.raises(PrefkitError, match="shape"):
        preference_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(PrefkitError, match="ref_chosen_logps"):
        preference_loss(torch.zeros(3), torch.zeros(3), torch.zeros(2))
    with pytest.raises(PrefkitError, match="torch.Tensor"):
        preference_loss([0.0], torch.zeros(1))
    assert issubclass(PrefkitError, ValueError)


# ---------------------------------------------------------------- listwise


def ref_list_losses(kind, logps, scores, mask, ref, beta):
    """Per-list losses with explicit Python loops; elements stay autograd tensors."""
    out = []
    for b in range(logps.shape[0]):
        items = [k for k in range(logps.shape[1]) if mask[b, k]]
        r = {k: beta * (logps[b, k] - ref[b, k]) for k in items}
        s = {k: float(scores[b, k]) for k in items}
        if kind == "plackett_luce":
            order = sorted(items, key=lambda k: -s[k])  # stable: ties keep input order
            total = logps.new_zeros(())
            for i, k in enumerate(order):
                rest = torch.stack([r[j] for j in order[i:]])
                total = total + torch.log(torch.exp(rest).sum()) - r[k]
            out.append(total)
        elif kind == "all_pairs_logistic":
            terms = [-logsig(r[i] - r[j]) for i in items for j in items if s[i] > s[j]]
            out.append(torch.stack(terms).mean() if terms else logps.new_zeros(()))
        else:  # lipo_lambda
            by_reward = sorted(items, key=lambda k: -float(r[k].detach()))
            rank = {k: p + 1 for p, k in enumerate(by_reward)}
            total = logps.new_zeros(())
            for i in items:
                for j in items:
                    if s[i] > s[j]:
                        gain = abs((2 ** s[i] - 1) - (2 ** s[j] - 1))
                        disc = abs(1 / math.log2(1 + rank[i]) - 1 / math.log2(1 + rank[j]))
                        total = total + gain * disc * -logsig(r[i] - r[j])
            out.append(total)
    return torch.stack(out)


def list_batch(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(b, k, generator=g, dtype=torch.float64) * 40
    ref = logps + torch.randn(b, k, generator=g, dtype=torch.float64) * 4
    scores = torch.randint(0, 4, (b, k), generator=g).double()  # small grades with ties
    mask = torch.rand(b, k, generator=g) > 0.25
    mask[0] = True
    mask[1, 1:] = False  # a one-response list: no pairs, loss 0
    logps[~mask] = float("nan")  # padding may hold anything
    return logps, scores, mask, ref


@pytest.mark.parametrize("kind", ["plackett_luce", "lipo_lambda", "all_pairs_logistic"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_list_kind_matches_loop_reference(kind, reduction):
    logps, scores, mask, ref = list_batch(seed=len(kind))
    x = logps.clone().requires_grad_(True)
    loss, metrics = list_loss(x, scores, mask, ref, kind=kind, beta=0.3, reduction=reduction)
    x_ref = logps.clone().requires_grad_(True)
    want = ref_list_losses(kind, x_ref, scores, mask, ref, 0.3)
    want = want.mean() if reduction == "mean" else want
    torch.testing.assert_close(loss, want, rtol=RTOL, atol=1e-12)
    weights = torch.rand(want.shape, dtype=torch.float64) if reduction == "none" else 1.0
    (grad,) = torch.autograd.grad((loss * weights).sum(), x)
    (grad_ref,) = torch.autograd.grad((want * weights).sum(), x_ref)
    grad_ref = torch.where(mask, grad_ref, torch.zeros_like(grad_ref))
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, grad_ref, rtol=RTOL, atol=1e-12)
    assert set(metrics) == {
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
    }


def test_list_metrics_and_reference_free():
    logps = torch.tensor([[-1.0, -3.0, -2.0, 0.0]])
    scores = torch.tensor([[3.0, 1.0, 2.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, m = list_loss(logps, scores, mask, beta=1.0)
    assert m["rewards/chosen"].item() == -1.0 and m["rewards/rejected"].item() == -3.0
    assert m["rewards/accuracies"].item() == 1.0
    loss0, _ = list_loss(logps, scores, mask, torch.zeros(1, 4), beta=1.0)
    torch.testing.assert_close(loss, loss0)


def test_list_bad_arguments():
    x = torch.zeros(2, 3)
    m = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(PrefkitError, match="kind"):
        list_loss(x, x, m, kind="listnet")
    with pytest.raises(PrefkitError, match="scores"):
        list_loss(x, torch.zeros(2, 4), m)
    with pytest.raises(PrefkitError, match="2-D"):
        list_loss(torch.zeros(3), torch.zeros(3), m)
    with pytest.raises(PrefkitError, match="beta"):
        list_loss(x, x, m, beta=-1.0)
