"""Token weights for token-level preference optimisation (SparsePO-style masks).

SparsePO (Christopoulou et al. 2024, arXiv 2410.05102) replaces DPO's sequence log-ratio by a
weighted sum over tokens, :math:`\\sum_t m(y^t) \\log(\\pi(y^t)/\\pi_{ref}(y^t))`, with a mask
:math:`m \\ge 0` per token that is often exactly 0 (sparse). Any such weights go to
``sequence_logps(token_weights=)`` or ``FusedLinearPreferenceLoss(chosen_token_weights=,
rejected_token_weights=)``. This module computes one kind of mask from quantities every DPO
step already has: the policy/reference log-ratio of each token.
"""

from __future__ import annotations

import math

import torch

from prefkit._errors import PrefkitError

from ._checks import check_tensor


def sparse_token_weights(
    policy_token_logps,
    ref_token_logps,
    mask=None,
    *,
    threshold: float = 0.0,
    top_fraction: float | None = None,
    normalize: bool = True,
):
    r"""Per-token weights from the policy/reference log-ratio, sparsified by a ReLU threshold.

    With :math:`\rho_t = \log\pi(y^t) - \log\pi_{ref}(y^t)` (no gradient flows through it):

    .. math::  w_t = \max(0, |\rho_t| - \text{threshold}),

    optionally restricted to the ``top_fraction`` of each row's tokens with the largest
    :math:`|\rho_t|` (ties kept), then divided by the row's largest :math:`w_t` so that
    :math:`w_t \in [0, 1]` (``normalize=True``; a row whose weights are all 0 stays 0).
    Tokens where the policy has moved least from the reference get weight 0 and drop out of
    the loss; the ones it has moved most weigh 1. This is prefkit's mask, not one of the
    paper's: SparsePO derives its masks from the reference model's activations (MaPO) or
    learns them (a ReLU layer on the reference hidden states); pass those to the same
    ``token_weights`` arguments. Selecting tokens by their log-ratio is what SDPO-style
    selective methods do.

    Parameters
    ----------
    policy_token_logps, ref_token_logps : torch.Tensor
        ``[rows, tokens]`` per-token log-probs (e.g. from
        :func:`prefkit.losses.token_logps`).
    mask : torch.Tensor, optional
        ``[rows, tokens]`` bool, the real completion tokens (e.g. ``labels != -100``); other
        positions get weight 0. ``None``: every position counts.
    threshold : float
        ReLU threshold :math:`\ge 0` on :math:`|\rho_t|`.
    top_fraction : float, optional
        In ``(0, 1]``: keep only the :math:`\lceil f n\rceil` largest :math:`|\rho_t|` of a
        row's :math:`n` tokens.
    normalize : bool
        Scale each row to a maximum weight of 1.

    Returns
    -------
    torch.Tensor
        ``[rows, tokens]`` weights, detached, in the promoted dtype of the inputs.

    Notes
    -----
    At the first step of DPO the policy *is* the reference, so every :math:`\rho_t = 0` and
    every weight is 0: use this mask with a reference that differs from the initial policy
    (a stronger model, as SDPO does), or after a warm-up with uniform weights.

    Raises
    ------
    PrefkitError
        Mismatched shapes, non-float log-probs, a negative threshold, a ``top_fraction``
        outside ``(0, 1]``.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import sparse_token_weights
    >>> policy = torch.tensor([[-1.0, -2.0, -3.0, -0.5]])
    >>> ref = torch.tensor([[-1.1, -1.0, -3.0, -2.5]])
    >>> [round(w, 3) for w in sparse_token_weights(policy, ref, threshold=0.2)[0].tolist()]
    [0.0, 0.444, 0.0, 1.0]
    """
    check_tensor("policy_token_logps", policy_token_logps)
    if policy_token_logps.dim() != 2:
        raise PrefkitError(
            f"policy_token_logps must be [rows, tokens], got {tuple(policy_token_logps.shape)}"
        )
    check_tensor("ref_token_logps", ref_token_logps, policy_token_logps.shape)
    for name, t in (("policy_token_logps", policy_token_logps), ("ref_token_logps", ref_token_logps)):
        if not t.is_floating_point():
            raise PrefkitError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if mask is not None:
        check_tensor("mask", mask, policy_token_logps.shape)
        if mask.dtype != torch.bool:
            raise PrefkitError(f"mask must be a bool tensor, got {mask.dtype}")
    if not threshold >= 0:
        raise PrefkitError(f"threshold must be >= 0, got {threshold}")
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise PrefkitError(f"top_fraction must be in (0, 1], got {top_fraction}")

    dtype = torch.promote_types(policy_token_logps.dtype, ref_token_logps.dtype)
    size = (policy_token_logps.detach().to(dtype) - ref_token_logps.detach().to(dtype)).abs()
    valid = torch.ones_like(size, dtype=torch.bool) if mask is None else mask
    weights = torch.where(valid, torch.relu(size - threshold), 0.0)
    if top_fraction is not None:
        keep = _top_per_row(torch.where(valid, size, -math.inf), valid.sum(1), top_fraction)
        weights = torch.where(keep, weights, 0.0)
    if normalize:
        top = weights.amax(1, keepdim=True)
        weights = torch.where(top > 0, weights / top.clamp_min(torch.finfo(dtype).tiny), 0.0)
    return weights


def _top_per_row(values, counts, fraction):
    """Bool mask of each row's ``ceil(fraction * count)`` largest ``values`` (ties kept)."""
    if values.shape[1] == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    k = torch.ceil(counts.to(torch.float64) * fraction).long().clamp_min(1)
    ranked = values.sort(1, descending=True).values
    cut = ranked.gather(1, (k - 1).clamp_max(values.shape[1] - 1)[:, None])
    return values >= cut
