"""General preference model (GPM) loss and preference probabilities against float64 formulas.

The reference builds the skew-symmetric block matrix R explicitly (as the authors' code does,
``R[i, i+1] = -lambda``, ``R[i+1, i] = lambda``) and computes ``(R v_w) . v_l`` as a matrix
product, with ``v / ||v||`` written out, so that the library's blockwise form is checked
against a different computation.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings
from hypothesis import strategies as st
from prefkit._errors import PrefkitError
from prefkit.losses import general_preference_loss, preference_probability, preference_score

RTOL = 1e-6


def r_matrix(d2, scales=None):
    """``[..., 2d, 2d]`` block-diagonal skew-symmetric R (per pair when ``scales`` is [B, d])."""
    lam = torch.ones(d2 // 2, dtype=torch.float64) if scales is None else scales
    r = torch.zeros(*lam.shape[:-1], d2, d2, dtype=lam.dtype)
    for k in range(d2 // 2):
        r[..., 2 * k, 2 * k + 1] = -lam[..., k]
        r[..., 2 * k + 1, 2 * k] = lam[..., k]
    return r


def reference_score(vw, vl, normalize=True, scales=None):
    if normalize:
        vw = vw / vw.pow(2).sum(-1, keepdim=True).sqrt()
        vl = vl / vl.pow(2).sum(-1, keepdim=True).sqrt()
    r = r_matrix(vw.shape[-1], scales)
    rv = (r @ vw.unsqueeze(-1)).squeeze(-1)
    return (rv * vl).sum(-1)


def reference_loss(vw, vl, tau, normalize=True, scales=None):
    s = reference_score(vw, vl, normalize, scales) / tau
    return torch.log1p(torch.exp(-s))  # -log sigmoid(s), written out


def embeddings(seed, b=7, d2=6):
    g = torch.Generator().manual_seed(seed)
    vw = torch.randn(b, d2, generator=g, dtype=torch.float64)
    vl = torch.randn(b, d2, generator=g, dtype=torch.float64)
    scales = torch.softmax(torch.randn(b, d2 // 2, generator=g, dtype=torch.float64), -1)
    return vw, vl, scales


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("with_scales", [False, True])
@pytest.mark.parametrize(("d2", "tau"), [(2, 1.0), (6, 0.1), (8, 0.7)])
def test_loss_matches_float64_formula(d2, tau, normalize, with_scales, reduction):
    vw, vl, scales = embeddings(seed=d2, d2=d2)
    scales = scales.requires_grad_(True) if with_scales else None
    inputs = [vw.clone().requires_grad_(True), vl.clone().requires_grad_(True)]
    loss, metrics = general_preference_loss(
        *inputs, tau=tau, normalize=normalize, block_scales=scales, reduction=reduction
    )
    ref_inputs = [vw.clone().requires_grad_(True), vl.clone().requires_grad_(True)]
    ref_scales = None if scales is None else scales.detach().clone().requires_grad_(True)
    per_pair = reference_loss(*ref_inputs, tau, normalize, ref_scales)
    ref = {"mean": per_pair.mean(), "sum": per_pair.sum(), "none": per_pair}[reduction]
    assert loss.dtype == torch.float64 and loss.shape == ref.shape
    torch.testing.assert_close(loss, ref, rtol=RTOL, atol=0)
    weights = torch.linspace(-1.0, 2.0, loss.numel(), dtype=torch.float64).reshape(loss.shape)
    wrt = inputs + ([scales] if with_scales else [])
    ref_wrt = ref_inputs + ([ref_scales] if with_scales else [])
    grads = torch.autograd.grad((loss * weights).sum(), wrt)
    ref_grads = torch.autograd.grad((ref * weights).sum(), ref_wrt)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-12)
    logit = reference_score(vw, vl, normalize, None if scales is None else scales.detach()) / tau
    want = {
        "rewards/margins": logit,
        "rewards/accuracies": (logit > 0).double(),
        "preference/probabilities": torch.sigmoid(logit),
    }
    for name, value in want.items():
        value = value if reduction == "none" else value.mean()
        torch.testing.assert_close(metrics[name], value, rtol=RTOL, atol=1e-12)
        assert not metrics[name].requires_grad


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 6),
    d=st.integers(1, 4),
    tau=st.floats(0.05, 5.0),
    normalize=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_probability_matrix_is_antisymmetric(k, d, tau, normalize, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(k, 2 * d, generator=g, dtype=torch.float64) * 3
    scales = torch.rand(d, generator=g, dtype=torch.float64)
    for block_scales in (None, scales):
        p = preference_probability(
            v[:, None], v[None, :], tau, normalize=normalize, block_scales=block_scales
        )
        assert p.shape == (k, k)
        torch.testing.assert_close(p + p.T, torch.ones(k, k, dtype=torch.float64))
        assert torch.equal(p.diagonal(), torch.full((k,), 0.5, dtype=torch.float64))
        s = preference_score(v[:, None], v[None, :], normalize=normalize,
                             block_scales=block_scales)
        assert torch.equal(s, -s.T)
        # Entrywise it is the pairwise formula (the matrix is K embeddings, not K^2 pairs).
        ref = reference_score(v[:, None].expand(k, k, -1), v[None, :].expand(k, k, -1),
                              normalize, None if block_scales is None else
                              block_scales.expand(k, k, d))
        torch.testing.assert_close(s, ref, rtol=1e-9, atol=1e-12)


def test_swapping_the_pair_is_the_complement():
    vw, vl, _ = embeddings(seed=3)
    forward, _ = general_preference_loss(vw, vl, tau=0.3, reduction="none")
    backward, _ = general_preference_loss(vl, vw, tau=0.3, reduction="none")
    # -log sigma(z) and -log sigma(-z): the probabilities sum to one.
    torch.testing.assert_close(torch.exp(-forward) + torch.exp(-backward),
                               torch.ones_like(forward), rtol=1e-12, atol=1e-12)


def test_cyclic_preferences_are_representable():
    """Three unit vectors 120 degrees apart in one block: a > b > c > a, each with P > 1/2."""
    angles = torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64) * torch.pi / 3
    v = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    p = preference_probability(v[:, None], v[None, :], 0.2)
    assert p[0, 1] > 0.5 and p[1, 2] > 0.5 and p[2, 0] > 0.5


def test_float32_and_normalisation_scale_invariance():
    vw, vl, _ = embeddings(seed=4)
    loss32, _ = general_preference_loss(vw.float(), vl.float(), tau=0.5)
    assert loss32.dtype == torch.float32
    loss64, _ = general_preference_loss(vw * 7.0, vl * 0.01, tau=0.5)
    torch.testing.assert_close(loss32.double(), loss64, rtol=1e-5, atol=0)
    # Without normalisation the scale matters: the score is bilinear.
    raw, _ = general_preference_loss(vw, vl, tau=0.5, normalize=False, reduction="none")
    scaled, _ = general_preference_loss(2 * vw, vl, tau=0.5, normalize=False,
                                        reduction="none")
    assert not torch.allclose(raw, scaled)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: general_preference_loss(torch.ones(3, 3), torch.ones(3, 3)), "even"),
        (lambda: general_preference_loss(torch.ones(3, 4), torch.ones(2, 4)), "shape"),
        (lambda: general_preference_loss(torch.ones(4), torch.ones(4)), r"\[B, 2d\]"),
        (lambda: general_preference_loss(torch.ones(3, 4), torch.ones(3, 4), tau=0.0), "tau"),
        (lambda: general_preference_loss(torch.ones(3, 4), torch.ones(3, 4),
                                         reduction="avg"), "reduction"),
        (lambda: general_preference_loss(torch.ones(3, 4, dtype=torch.long),
                                         torch.ones(3, 4)), "floating-point"),
        (lambda: general_preference_loss(torch.ones(3, 4), torch.ones(3, 4),
                                         block_scales=torch.ones(3, 3)), "block_scales"),
        (lambda: general_preference_loss(torch.ones(3, 4), torch.ones(3, 4),
                                         block_scales=-torch.ones(2)), "non-negative"),
        (lambda: preference_score(torch.ones(4), torch.ones(6)), "same embedding size"),
        (lambda: preference_probability(torch.ones(4), [1.0] * 4), "torch.Tensor"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(PrefkitError, match=match):
        call()
