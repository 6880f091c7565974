"""Diffusion preference losses (Diffusion-DPO, SmPO, MaPO, D3PO) against float64 formulas.

The references restate each reference implementation's training-script arithmetic in float64,
in its own order of operations (``model_diff - ref_diff``, ``exp`` then ``clamp`` then ``log``,
``x / (exp(x) - 1)``, ``log(sigmoid(.))``), so a slip in the library's rearranged forms cannot be
mirrored here. Values must agree to 1e-6 relative, gradients to autograd of the reference.
"""

from __future__ import annotations

import doctest
import math
import re

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings
from hypothesis import strategies as st
from prefkit._errors import PrefkitError
from prefkit.losses import (
    d3po_loss,
    denoising_losses,
    diffusion,
    diffusion_dpo_loss,
    gaussian_step_logprobs,
    mapo_loss,
    smpo_loss,
)

RTOL = 1e-6
F64 = torch.float64


def logsig(x):
    return torch.log(torch.sigmoid(x))


# ---- float64 references, as the authors' scripts compute them -------------------------------


def ref_diffusion_dpo(mw, ml, rw, rl, beta, target=None):
    model_diff = mw - ml
    ref_diff = rw - rl
    inside = -0.5 * beta * (model_diff - ref_diff)
    if target is None:
        return -logsig(inside), inside
    return -(target * logsig(inside) + (1 - target) * logsig(-inside)), inside


def ref_smpo(mw, ml, rw, rl, p, beta, gamma):
    scale = -0.5 * beta * (2 * p - 1) * gamma
    return -logsig(scale * ((mw - ml) - (rw - rl)))


def ref_mapo_score(m, snr):
    return (snr * m) / (torch.exp(snr * m) - 1)


def ref_mapo(mw, ml, beta, snr, T):
    log_odds = ref_mapo_score(mw, snr) - ref_mapo_score(ml, snr)
    return mw - beta * logsig(log_odds * T)


def ref_d3po(pw, pl, rw, rl, beta, eps):
    ratio_w, ratio_l = torch.exp(pw - rw), torch.exp(pl - rl)
    if eps is not None:
        ratio_w = torch.clamp(ratio_w, 1 - eps, 1 + eps)
        ratio_l = torch.clamp(ratio_l, 1 - eps, 1 + eps)
    steps = -logsig(beta * torch.log(ratio_w) - beta * torch.log(ratio_l))
    return steps.mean(dim=-1) if steps.dim() == 2 else steps, ratio_w, ratio_l


def reduced(per_pair, reduction):
    return {"mean": per_pair.mean(), "sum": per_pair.sum(), "none": per_pair}[reduction]


def mse_batch(seed, b=11, beta=1000.0):
    """Denoising errors as a UNet produces them: positive, the policy near the reference.

    The policy's deviations scale as 1/beta, so that the DPO logits are O(1) for every beta
    (where log(sigmoid(x)) in float64 is itself accurate to 1e-6).
    """
    spread = 8.0 / beta
    g = torch.Generator().manual_seed(seed)
    rw = torch.rand(b, generator=g, dtype=F64) * 0.8 + 0.05
    rl = torch.rand(b, generator=g, dtype=F64) * 0.8 + 0.05
    mw = (rw + torch.randn(b, generator=g, dtype=F64) * spread).clamp_min(1e-3)
    ml = (rl + torch.randn(b, generator=g, dtype=F64) * spread).clamp_min(1e-3)
    p = torch.rand(b, generator=g, dtype=F64)
    p[0], p[1], p[2] = 0.0, 0.5, 1.0
    return mw, ml, rw, rl, p


def assert_grads_match(loss, ref, inputs, ref_inputs):
    weights = torch.linspace(-1.0, 2.0, loss.numel(), dtype=F64).reshape(loss.shape)
    grads = torch.autograd.grad((loss * weights).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).sum(), ref_inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-12)


def leaves(*tensors):
    return [t.clone().requires_grad_(True) for t in tensors]


# ---- Diffusion-DPO ----------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("beta", [5000.0, 250.0])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft-target"])
def test_diffusion_dpo_matches_reference(beta, reduction, soft):
    mw, ml, rw, rl, p = mse_batch(seed=int(beta) + soft, beta=beta)
    target = p if soft else None
    inputs, ref_inputs = leaves(mw, ml, rw, rl), leaves(mw, ml, rw, rl)
    loss, metrics = diffusion_dpo_loss(*inputs, beta=beta, target=target, reduction=reduction)
    per_pair, inside = ref_diffusion_dpo(*ref_inputs, beta, target)
    ref = reduced(per_pair, reduction)
    assert loss.dtype == F64 and loss.shape == ref.shape
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    assert_grads_match(loss, ref, inputs, ref_inputs)

    chosen, rejected = -0.5 * beta * (mw - rw), -0.5 * beta * (ml - rl)
    want = {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": inside.detach(),
        "rewards/accuracies": (inside.detach() > 0).to(F64),  # the paper's implicit accuracy
        "mse/chosen": mw,
        "mse/rejected": ml,
        "mse/ref_chosen": rw,
        "mse/ref_rejected": rl,
    }
    assert set(metrics) == set(want)
    mean = "none" if reduction == "none" else "mean"  # metrics are batch means or per pair
    for name, value in want.items():
        torch.testing.assert_close(metrics[name], reduced(value, mean), rtol=RTOL, atol=1e-12)
        assert not metrics[name].requires_grad


def test_diffusion_dpo_at_the_reference_is_log2_with_no_pair_ranked():
    mw, ml, _, _, _ = mse_batch(seed=3)
    loss, metrics = diffusion_dpo_loss(mw, ml, mw.clone(), ml.clone())
    assert loss.item() == pytest.approx(math.log(2), rel=1e-12)
    assert metrics["rewards/accuracies"].item() == 0.0


def test_diffusion_dpo_target_one_is_the_plain_loss_and_ties_pull_the_margin_to_zero():
    mw, ml, rw, rl, _ = mse_batch(seed=4)
    plain, _ = diffusion_dpo_loss(mw, ml, rw, rl, reduction="none")
    soft, _ = diffusion_dpo_loss(mw, ml, rw, rl, target=torch.ones_like(mw), reduction="none")
    torch.testing.assert_close(soft, plain, rtol=1e-12, atol=0)
    # A tie (p = 0.5) is minimised at margin 0: its gradient pushes the margin back to 0.
    w = mw.clone().requires_grad_(True)
    tie, metrics = diffusion_dpo_loss(w, ml, rw, rl, target=torch.full_like(mw, 0.5),
                                      reduction="none")
    tie.sum().backward()
    margin = metrics["rewards/margins"]
    # d loss / d margin has the margin's sign and d margin / d e_w = -beta/2, so a descent
    # step raises e_w where the margin is positive (lowering it) and vice versa.
    assert torch.all(torch.sign(w.grad) == -torch.sign(margin)) and margin.abs().min() > 0


def test_denoising_losses_is_the_per_sample_mse():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(5, 4, 6, 6, generator=g, dtype=F64, requires_grad=True)
    noise = torch.randn(5, 4, 6, 6, generator=g, dtype=F64)
    want = torch.nn.functional.mse_loss(pred, noise, reduction="none").mean(dim=[1, 2, 3])
    torch.testing.assert_close(denoising_losses(pred, noise), want, rtol=1e-12, atol=0)
    half = denoising_losses(pred.detach().half(), noise.half())
    assert half.dtype == torch.float32  # half inputs are upcast, as for text log-probs


# ---- SmPO -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("beta", "gamma"), [(5000.0, 10.0), (800.0, 2.5)])
def test_smpo_matches_reference(beta, gamma, reduction):
    mw, ml, rw, rl, p = mse_batch(seed=int(gamma * 7), beta=beta * gamma)
    inputs, ref_inputs = leaves(mw, ml, rw, rl), leaves(mw, ml, rw, rl)
    loss, metrics = smpo_loss(*inputs, p, beta=beta, gamma=gamma, reduction=reduction)
    ref = reduced(ref_smpo(*ref_inputs, p, beta, gamma), reduction)
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    assert_grads_match(loss, ref, inputs, ref_inputs)
    mean = "none" if reduction == "none" else "mean"
    torch.testing.assert_close(metrics["weight"], reduced(gamma * (2 * p - 1), mean))
    torch.testing.assert_close(metrics["rewards/chosen"], reduced(-0.5 * beta * (mw - rw), mean))
    torch.testing.assert_close(metrics["rewards/margins"],
                               reduced(-0.5 * beta * ((mw - rw) - (ml - rl)), mean))


def test_smpo_tie_has_no_gradient_and_gamma_one_certain_label_is_diffusion_dpo():
    mw, ml, rw, rl, _ = mse_batch(seed=5)
    w = mw.clone().requires_grad_(True)
    loss, _ = smpo_loss(w, ml, rw, rl, torch.full_like(mw, 0.5), reduction="none")
    torch.testing.assert_close(loss, torch.full_like(mw, math.log(2)))
    loss.sum().backward()
    assert torch.count_nonzero(w.grad) == 0
    smpo, _ = smpo_loss(mw, ml, rw, rl, torch.ones_like(mw), gamma=1.0, beta=300.0)
    dpo, _ = diffusion_dpo_loss(mw, ml, rw, rl, beta=300.0)
    torch.testing.assert_close(smpo, dpo, rtol=1e-12, atol=0)
    # p < 1/2 reverses the pair.
    flipped, _ = smpo_loss(ml, mw, rl, rw, torch.full_like(mw, 0.2), reduction="none")
    straight, _ = smpo_loss(mw, ml, rw, rl, torch.full_like(mw, 0.8), reduction="none")
    torch.testing.assert_close(flipped, straight, rtol=1e-12, atol=0)


# ---- MaPO -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("beta", "snr", "T"), [(0.1, 0.5, 1000), (1.5, 2.0, 50)])
def test_mapo_matches_reference(beta, snr, T, reduction):
    mw, ml, _, _, _ = mse_batch(seed=T)
    inputs, ref_inputs = leaves(mw, ml), leaves(mw, ml)
    loss, metrics = mapo_loss(*inputs, beta=beta, snr=snr, num_timesteps=T, reduction=reduction)
    ref = reduced(ref_mapo(*ref_inputs, beta, snr, T), reduction)
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    assert_grads_match(loss, ref, inputs, ref_inputs)
    mean = "none" if reduction == "none" else "mean"
    sw, sl = ref_mapo_score(mw, snr), ref_mapo_score(ml, snr)
    want = {
        "rewards/chosen": beta * sw,
        "rewards/rejected": beta * sl,
        "rewards/margins": beta * (sw - sl),
        "rewards/accuracies": (mw < ml).to(F64),
        "log_odds": T * (sw - sl),
        "nll": mw,
        "mse/chosen": mw,
        "mse/rejected": ml,
    }
    assert set(metrics) == set(want)
    for name, value in want.items():
        torch.testing.assert_close(metrics[name], reduced(value, mean), rtol=RTOL, atol=1e-12)


def test_mapo_score_is_stable_at_zero_and_far_out():
    x = torch.tensor([0.0, 1e-9, 1e-6, 3e-5, 1e-3, 0.7, 30.0, 800.0, -5.0, -800.0], dtype=F64,
                     requires_grad=True)
    got = diffusion._x_over_expm1(x)
    (grad,) = torch.autograd.grad(got.sum(), x)
    assert torch.isfinite(got).all() and torch.isfinite(grad).all()
    # Exact values: the limit 1 at 0, else x / expm1(x) where that is representable.
    inner = x.detach()[1:8]
    torch.testing.assert_close(got.detach()[1:8], inner / torch.expm1(inner), rtol=1e-9, atol=0)
    assert got[0].item() == 1.0 and grad[0].item() == pytest.approx(-0.5)
    assert got[7].item() == pytest.approx(800.0 * math.exp(-800.0), rel=1e-9)
    assert got[9].item() == pytest.approx(800.0, rel=1e-12)
    # float32 losses on huge errors stay finite, gradients too.
    w = torch.tensor([0.0, 5000.0], requires_grad=True)
    loss, _ = mapo_loss(w, torch.tensor([1e4, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(w.grad).all()


# ---- D3PO -------------------------------------------------------------------------------------


def step_batch(seed, shape):
    g = torch.Generator().manual_seed(seed)
    rw = -torch.rand(shape, generator=g, dtype=F64) * 2 - 0.5
    rl = -torch.rand(shape, generator=g, dtype=F64) * 2 - 0.5
    # log-ratios spread over +-0.3 so that some steps sit outside the +-0.1 clip range
    pw = rw + (torch.rand(shape, generator=g, dtype=F64) - 0.5) * 0.6
    pl = rl + (torch.rand(shape, generator=g, dtype=F64) - 0.5) * 0.6
    return pw, pl, rw, rl


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(9,), (7, 5)], ids=["one-step", "trajectory"])
@pytest.mark.parametrize(("beta", "eps"), [(0.1, 0.1), (2.0, 0.2), (1.0, None)])
def test_d3po_matches_reference(beta, eps, shape, reduction):
    pw, pl, rw, rl = step_batch(seed=len(shape) + int(beta * 10), shape=shape)
    inputs, ref_inputs = leaves(pw, pl, rw, rl), leaves(pw, pl, rw, rl)
    loss, metrics = d3po_loss(*inputs, beta=beta, clip=eps, reduction=reduction)
    per_pair, ratio_w, ratio_l = ref_d3po(*ref_inputs, beta, eps)
    ref = reduced(per_pair, reduction)
    assert loss.shape == ref.shape
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    assert_grads_match(loss, ref, inputs, ref_inputs)
    mean = "none" if reduction == "none" else "mean"

    def over_steps(v):
        return v.mean(dim=-1) if v.dim() == 2 else v

    chosen = over_steps(beta * torch.log(ratio_w.detach()))
    rejected = over_steps(beta * torch.log(ratio_l.detach()))
    torch.testing.assert_close(metrics["rewards/chosen"], reduced(chosen, mean))
    torch.testing.assert_close(metrics["rewards/rejected"], reduced(rejected, mean))
    torch.testing.assert_close(metrics["rewards/accuracies"],
                               reduced((chosen > rejected).to(F64), mean))
    if eps is None:
        assert metrics["clip_fraction"].abs().max() == 0
    else:
        out_w = ((pw - rw).exp() - 1).abs() > eps
        out_l = ((pl - rl).exp() - 1).abs() > eps
        frac = over_steps((out_w.to(F64) + out_l.to(F64)) / 2)
        torch.testing.assert_close(metrics["clip_fraction"], reduced(frac, mean))
        assert 0 < metrics["clip_fraction"].mean() < 1  # the batch exercises both branches


def test_gaussian_step_logprobs_is_the_mean_normal_log_density():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 5, generator=g, dtype=F64)
    mu = torch.randn(3, 4, 5, 5, generator=g, dtype=F64, requires_grad=True)
    for std in (0.3, torch.tensor([0.2, 0.5, 1.1], dtype=F64).view(3, 1, 1, 1)):
        want = torch.distributions.Normal(mu, std).log_prob(x).mean(dim=[1, 2, 3])
        got = gaussian_step_logprobs(x, mu, std)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # The gradient flows through the mean only (the sampled step is data).
    xs = x.clone().requires_grad_(True)
    gaussian_step_logprobs(xs, mu, 0.3).sum().backward()
    assert xs.grad is None and mu.grad is not None


def test_d3po_from_gaussian_steps_trains_towards_the_chosen_sample():
    """End to end: policy means move towards the preferred sample, away from the rejected."""
    g = torch.Generator().manual_seed(2)
    x_w, x_l = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    ref_mean = torch.zeros(4, 2, 3, 3)
    mean = ref_mean.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([mean], lr=0.5)
    with torch.no_grad():
        ref_w = gaussian_step_logprobs(x_w, ref_mean, 0.5)
        ref_l = gaussian_step_logprobs(x_l, ref_mean, 0.5)
    for _ in range(20):
        loss, metrics = d3po_loss(gaussian_step_logprobs(x_w, mean, 0.5),
                                  gaussian_step_logprobs(x_l, mean, 0.5), ref_w, ref_l,
                                  beta=1.0, clip=None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert metrics["rewards/accuracies"].item() == 1.0
    assert loss.item() < math.log(2)


# ---- properties and bad input -----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-3, 3.0), st.floats(1e-3, 3.0), st.floats(-1.0, 1.0),
                          st.floats(-1.0, 1.0), st.floats(0.0, 1.0)), min_size=1, max_size=12),
       st.floats(1.0, 10000.0))
def test_property_mse_losses_match_references(rows, beta):
    """Random batches, the policy within 4/beta of the reference (the regime training is in)."""
    rw, rl, dw, dl, p = (torch.tensor(c, dtype=F64) for c in zip(*rows))
    mw, ml = (rw + dw * 4 / beta).clamp_min(0), (rl + dl * 4 / beta).clamp_min(0)
    got, _ = diffusion_dpo_loss(mw, ml, rw, rl, beta=beta, target=p, reduction="none")
    want, _ = ref_diffusion_dpo(mw, ml, rw, rl, beta, p)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-12)
    got, _ = smpo_loss(mw, ml, rw, rl, p, beta=beta / 10, reduction="none")
    torch.testing.assert_close(got, ref_smpo(mw, ml, rw, rl, p, beta / 10, 10.0), rtol=RTOL,
                               atol=1e-12)
    # MaPO is reference-free: any errors, its beta on its own scale.
    got, _ = mapo_loss(rw, rl, beta=beta / 1000, reduction="none")
    torch.testing.assert_close(got, ref_mapo(rw, rl, beta / 1000, 0.5, 1000), rtol=RTOL,
                               atol=1e-12)


def test_float32_inputs_give_float32_losses():
    mw, ml, rw, rl, p = (t.float() for t in mse_batch(seed=9))
    for loss, _ in (diffusion_dpo_loss(mw, ml, rw, rl), smpo_loss(mw, ml, rw, rl, p),
                    mapo_loss(mw, ml), d3po_loss(mw, ml, rw, rl)):
        assert loss.dtype == torch.float32 and loss.dim() == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a, b: diffusion_dpo_loss(a, b, a, b[:-1]), "ref_losses_l has shape"),
        (lambda a, b: diffusion_dpo_loss(a[None], b[None], a[None], b[None]), "must be [B]"),
        (lambda a, b: diffusion_dpo_loss(a, b, a, b, beta=0.0), "beta must be > 0"),
        (lambda a, b: diffusion_dpo_loss(a, b, a, b, target=a + 2), "probabilities in [0, 1]"),
        (lambda a, b: diffusion_dpo_loss(a, b, a, b, reduction="avg"), "reduction='avg'"),
        (lambda a, b: diffusion_dpo_loss(a.tolist(), b, a, b), "must be a torch.Tensor"),
        (lambda a, b: smpo_loss(a, b, a, b, None), "needs target"),
        (lambda a, b: smpo_loss(a, b, a, b, a, gamma=-1.0), "gamma must be > 0"),
        (lambda a, b: mapo_loss(a, b, snr=0.0), "snr must be > 0"),
        (lambda a, b: mapo_loss(a, b, num_timesteps=0), "num_timesteps"),
        (lambda a, b: d3po_loss(a, b, a, b, clip=1.5), "clip must be in (0, 1)"),
        (lambda a, b: d3po_loss(a[None, None], b[None, None], a[None, None], b[None, None]),
         "[B] or [B, T]"),
        (lambda a, b: gaussian_step_logprobs(a[:, None], b[:, None], 0.0), "std must be > 0"),
        (lambda a, b: denoising_losses(a, b[:-1]), "target has shape"),
    ],
)
def test_bad_input_raises_prefkit_error(call, message):
    a, b = torch.rand(4) + 0.1, torch.rand(4) + 0.1
    with pytest.raises(PrefkitError, match=re.escape(message)):
        call(a, b)


def test_docstring_examples():
    result = doctest.testmod(diffusion, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
