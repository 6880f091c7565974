"""Listwise preference losses over K ranked responses per prompt.

Each list is a row of a ``[B, K]`` batch; ``mask`` marks the real responses, so lists of
different sizes share one padded tensor. Rewards are implicit DPO rewards
``r = beta * (logps - ref_logps)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefkit._errors import PrefkitError

from ._checks import REDUCTIONS, check_choice, check_tensor, compute_dtype, reduce

KINDS = frozenset({"plackett_luce", "lipo_lambda", "all_pairs_logistic"})


def _order(key: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Indices sorting each row by ``key`` descending, padding last, ties in input order.

    Two stable sorts give the lexicographic order (mask first, then key) without relying on a
    sentinel key value that a real score could also take.
    """
    by_key = torch.sort(
        torch.where(mask, key, torch.zeros_like(key)), dim=1, descending=True, stable=True
    ).indices
    by_mask = torch.sort(
        mask.gather(1, by_key).to(torch.int8), dim=1, descending=True, stable=True
    ).indices
    return by_key.gather(1, by_mask)


def _plackett_luce(r, scores, mask):
    """ListMLE: negative log-likelihood of the score order under Plackett-Luce(exp(r))."""
    order = _order(scores, mask)
    r_sorted = r.gather(1, order)
    m_sorted = mask.gather(1, order)
    # A finite fill keeps logcumsumexp's backward free of inf - inf; exp(min - x) is exactly 0.
    fill = torch.finfo(r.dtype).min
    r_sorted = torch.where(m_sorted, r_sorted, fill)
    # log sum_{j >= i} exp(r_j): a reversed cumulative logsumexp over the remaining responses.
    tail = torch.logcumsumexp(r_sorted.flip(1), dim=1).flip(1)
    terms = torch.where(m_sorted, tail - r_sorted, torch.zeros_like(r_sorted))
    return terms.sum(1)


def _pairs(scores, mask):
    """``[B, K, K]`` boolean: ``(i, j)`` is a pair when both are real and score_i > score_j."""
    both = mask[:, :, None] & mask[:, None, :]
    return both & (scores[:, :, None] > scores[:, None, :])


def _pair_nll(r):
    """``[B, K, K]``: ``-log sigmoid(r_i - r_j)``."""
    return -F.logsigmoid(r[:, :, None] - r[:, None, :])


def _lipo_lambda(r, scores, mask):
    """LiPO-lambda: pairwise logistic losses weighted by LambdaLoss's NDCG swap deltas."""
    pairs = _pairs(scores, mask)
    with torch.no_grad():
        # Ranks (1-based) of the responses under the current model rewards, padding excluded.
        order = _order(r, mask)
        positions = torch.arange(1, r.shape[1] + 1, device=r.device, dtype=r.dtype)
        rank = torch.empty_like(r).scatter_(1, order, positions.expand_as(r).contiguous())
        inv_discount = 1.0 / torch.log2(1.0 + rank)
        gain = torch.where(mask, torch.exp2(scores) - 1.0, torch.zeros_like(scores))
        delta = (gain[:, :, None] - gain[:, None, :]).abs() * (
            inv_discount[:, :, None] - inv_discount[:, None, :]
        ).abs()
    terms = torch.where(pairs, delta * _pair_nll(r), torch.zeros_like(delta))
    return terms.sum((1, 2))


def _all_pairs_logistic(r, scores, mask):
    """TPO-style: mean over ordered pairs (score_i > score_j) of ``-log sigmoid(r_i - r_j)``."""
    pairs = _pairs(scores, mask)
    terms = torch.where(pairs, _pair_nll(r), torch.zeros_like(r)[:, :, None])
    n = pairs.sum((1, 2)).clamp_min(1)
    return terms.sum((1, 2)) / n


def list_loss(
    logps,
    scores,
    mask,
    ref_logps=None,
    *,
    kind: str = "plackett_luce",
    beta: float = 0.1,
    reduction: str = "mean",
):
    r"""Listwise preference loss of ``B`` lists of up to ``K`` responses.

    With rewards :math:`r_i = \beta(\log\pi(y_i) - \log\pi_{ref}(y_i))` and label scores
    :math:`\psi_i`:

    - ``plackett_luce`` (ListMLE): sort the real responses by score (best first, ties in input
      order); the loss is :math:`\sum_i [\log\sum_{j \ge i} e^{r_j} - r_i]`, the negative
      log-likelihood of that order under Plackett-Luce (computed with ``logcumsumexp``).
    - ``lipo_lambda`` (LiPO-:math:`\lambda`, Liu et al. 2024): :math:`\sum_{\psi_i > \psi_j}
      \Delta_{ij} \cdot -\log\sigma(r_i - r_j)` with LambdaLoss weights :math:`\Delta_{ij} =
      |G_i - G_j| \cdot |1/D(\tau_i) - 1/D(\tau_j)|`, gain :math:`G = 2^\psi - 1`, discount
      :math:`D(\tau) = \log_2(1 + \tau)` and :math:`\tau` the 1-based rank of a response under
      the current rewards (no gradient flows through :math:`\Delta`). Tied scores form no pair.
    - ``all_pairs_logistic`` (TPO-style): the mean over ordered pairs with
      :math:`\psi_i > \psi_j` of :math:`-\log\sigma(r_i - r_j)`, i.e. of
      :math:`-\log\sigma(\beta\,\Delta\text{log-ratio})` (``beta`` is applied once, inside
      :math:`r`). A list without such a pair has loss 0.

    Parameters
    ----------
    logps : torch.Tensor
        ``[B, K]`` policy log-probabilities, summed over each response's completion tokens.
    scores : torch.Tensor
        ``[B, K]`` label scores, higher is better. For ``lipo_lambda`` they are relevance
        grades (gains grow as ``2**score``): rescale raw reward-model outputs first.
    mask : torch.Tensor
        ``[B, K]`` boolean (or 0/1): which entries are real responses, not padding. Padded
        entries get no loss and no gradient, whatever their values (NaN included).
    ref_logps : torch.Tensor, optional
        ``[B, K]`` reference log-probabilities; ``None`` means zeros (reference-free).
    kind : {"plackett_luce", "lipo_lambda", "all_pairs_logistic"}
    beta : float
        Inverse temperature :math:`\beta > 0`.
    reduction : {"mean", "sum", "none"}
        Over lists; ``"none"`` returns the ``[B]`` per-list losses.

    Returns
    -------
    loss : torch.Tensor
    metrics : dict[str, torch.Tensor]
        Detached ``rewards/chosen`` (reward of each list's best-scored response),
        ``rewards/rejected`` (its worst), ``rewards/margins`` and ``rewards/accuracies`` (the
        fraction of scored pairs whose rewards are in the same order): batch means, or per-list
        values for ``reduction="none"``.

    Raises
    ------
    PrefkitError
        Unknown ``kind``/``reduction``, non-positive ``beta`` or mismatched shapes.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import list_loss
    >>> logps = torch.tensor([[-3.0, -5.0, -4.0]], requires_grad=True)
    >>> scores = torch.tensor([[9.0, 1.0, 5.0]])
    >>> mask = torch.tensor([[True, True, True]])
    >>> loss, metrics = list_loss(logps, scores, mask, kind="plackett_luce", beta=1.0)
    >>> round(loss.item(), 4)
    0.7209
    >>> metrics["rewards/accuracies"].item()
    1.0
    >>> loss.backward()
    """
    check_choice("kind", kind, KINDS)
    check_choice("reduction", reduction, REDUCTIONS)
    if not beta > 0:
        raise PrefkitError(f"beta must be > 0, got {beta}")
    check_tensor("logps", logps)
    if logps.dim() != 2:
        raise PrefkitError(f"logps must be 2-D [B, K], got shape {tuple(logps.shape)}")
    check_tensor("scores", scores, logps.shape)
    check_tensor("mask", mask, logps.shape)
    dtype = compute_dtype(logps, ref_logps)
    mask = mask.to(torch.bool)
    scores = scores.to(dtype)
    r = logps.to(dtype)
    if ref_logps is not None:
        r = r - check_tensor("ref_logps", ref_logps, logps.shape).to(dtype)
    r = beta * r
    # Padding may hold anything (NaN from empty sequences): zero it before any arithmetic.
    r = torch.where(mask, r, torch.zeros_like(r))
    scores = torch.where(mask, scores, torch.zeros_like(scores))

    if kind == "plackett_luce":
        losses = _plackett_luce(r, scores, mask)
    elif kind == "lipo_lambda":
        losses = _lipo_lambda(r, scores, mask)
    else:
        losses = _all_pairs_logistic(r, scores, mask)
    metrics = _metrics(r.detach(), scores, mask, reduction)
    return reduce(losses, reduction), metrics


def _metrics(r, scores, mask, reduction):
    order = _order(scores, mask)
    last = (mask.sum(1) - 1).clamp_min(0)
    best = r.gather(1, order[:, :1]).squeeze(1)
    worst = r.gather(1, order.gather(1, last[:, None])).squeeze(1)
    pairs = _pairs(scores, mask)
    right = pairs & (r[:, :, None] > r[:, None, :])
    accuracy = right.sum((1, 2)).to(r.dtype) / pairs.sum((1, 2)).clamp_min(1).to(r.dtype)
    per_list = {
        "rewards/chosen": best,
        "rewards/rejected": worst,
        "rewards/margins": best - worst,
        "rewards/accuracies": accuracy,
    }
    if reduction == "none":
        return per_list
    return {k: v.mean() for k, v in per_list.items()}
