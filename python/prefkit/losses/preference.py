"""Pairwise (DPO-family) preference losses on per-sequence log-probabilities.

The formulas follow TRL v1 (``trl/trainer/dpo_trainer.py``; SimPO/CPO from ``CPOTrainer``, ORPO
from ``ORPOTrainer``) as written down in ``docs/losses.md``. Inputs are per-sequence *sums* of
completion-token log-probs; kinds that need a per-token mean divide by the completion lengths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prefkit._errors import PrefkitError

from ._checks import REDUCTIONS, check_choice, check_tensor, compute_dtype, reduce

#: Kinds whose formula uses the reference model (a missing reference means zeros).
REFERENCE_KINDS = frozenset(
    {
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
        "sppo",
        "soft_sigmoid",
        "jpo",
    }
)
#: Kinds that never use a reference model (they work on length-normalised log-probs).
REFERENCE_FREE_KINDS = frozenset({"simpo", "cpo", "orpo"})
KINDS = REFERENCE_KINDS | REFERENCE_FREE_KINDS
#: Kinds that need ``chosen_lengths`` / ``rejected_lengths``.
LENGTH_KINDS = frozenset({"ipo", "sigmoid_norm", "sft", "rpo", "simpo", "cpo", "orpo"})
#: Kinds whose formula has a label-smoothing term; elsewhere a non-zero value is an error,
#: because silently ignoring it (TRL v1 dropped it from "sigmoid") would surprise cDPO users.
SMOOTHING_KINDS = frozenset({"robust", "exo_pair", "simpo", "cpo"})
#: Kinds that take a per-pair target probability ``target`` (required there, an error elsewhere).
TARGET_KINDS = frozenset({"sppo", "soft_sigmoid"})
#: Kinds that also take ``rejected_target`` (the rejected response's own win probability).
REJECTED_TARGET_KINDS = frozenset({"sppo"})
#: TRL's exo_pair replaces label_smoothing=0 by this value, since log(0) is undefined there.
EXO_DEFAULT_SMOOTHING = 1e-3


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends (Maechler 2012).

    Each branch gets a clamped input so that the branch ``torch.where`` does not pick can
    produce neither inf nor NaN in the backward pass.
    """
    cut = -math.log(2.0)
    near_zero = x > cut
    a = torch.log(-torch.expm1(torch.where(near_zero, x, cut)))
    b = torch.log1p(-torch.exp(torch.where(near_zero, cut, x)))
    return torch.where(near_zero, a, b)


def _as(name: str, value, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if value is None:
        return torch.zeros(like.shape, dtype=dtype, device=like.device)
    check_tensor(name, value, like.shape)
    return value.to(dtype)


def _check_scalars(kind, beta, label_smoothing, tau) -> float:
    if not beta > 0:
        raise PrefkitError(f"beta must be > 0, got {beta}")
    e = float(label_smoothing)
    if e != 0.0 and kind not in SMOOTHING_KINDS:
        raise PrefkitError(
            f"label_smoothing={e} has no effect for kind={kind!r}; it applies to "
            f"{sorted(SMOOTHING_KINDS)} (use kind='robust' for conservative DPO)"
        )
    if kind == "robust" and not 0.0 <= e < 0.5:
        raise PrefkitError(f"label_smoothing must be in [0, 0.5) for kind='robust', got {e}")
    if kind == "exo_pair":
        e = e or EXO_DEFAULT_SMOOTHING
        if not 0.0 < e < 1.0:
            raise PrefkitError(f"label_smoothing must be in (0, 1) for kind='exo_pair', got {e}")
    if kind in ("simpo", "cpo") and not 0.0 <= e <= 0.5:
        raise PrefkitError(f"label_smoothing must be in [0, 0.5] for kind={kind!r}, got {e}")
    if kind == "discopop" and not tau > 0:
        raise PrefkitError(f"tau must be > 0 for kind='discopop', got {tau}")
    return e


def _check_probability(name: str, value, shape, dtype) -> torch.Tensor:
    """``value`` as a ``dtype`` tensor of ``shape`` whose entries are probabilities in [0, 1]."""
    check_tensor(name, value, shape)
    if not (value.is_floating_point() or value.dtype == torch.bool):
        raise PrefkitError(
            f"{name} must be a floating-point (or bool) tensor, got dtype {value.dtype}"
        )
    v = value.detach()
    bad = ~((v >= 0) & (v <= 1))  # NaN fails both comparisons
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise PrefkitError(
            f"{name} must hold probabilities in [0, 1]; pair {i} has {v.reshape(-1)[i].item()}"
        )
    return value.to(dtype)


def _targets(kind, target, rejected_target, like, dtype):
    """Checked ``(target, rejected_target)`` for ``kind`` (``None`` where it uses neither)."""
    if kind not in TARGET_KINDS:
        if target is not None:
            raise PrefkitError(
                f"target has no effect for kind={kind!r}; it applies to {sorted(TARGET_KINDS)}"
            )
    elif target is None:
        raise PrefkitError(
            f"kind={kind!r} needs target: a [B] tensor of P(chosen beats rejected) in [0, 1]"
            + (" (kind='sppo_hard' is the target=1 case)" if kind == "sppo" else "")
        )
    if rejected_target is not None and kind not in REJECTED_TARGET_KINDS:
        raise PrefkitError(
            f"rejected_target has no effect for kind={kind!r}; it applies to "
            f"{sorted(REJECTED_TARGET_KINDS)}"
        )
    if target is None:
        return None, None
    t = _check_probability("target", target, like.shape, dtype)
    if rejected_target is None:
        return t, 1 - t
    return t, _check_probability("rejected_target", rejected_target, like.shape, dtype)


def preference_loss(
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    *,
    kind: str = "sigmoid",
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    gamma: float = 0.0,
    tau: float = 0.05,
    alpha: float = 1.0,
    chosen_lengths=None,
    rejected_lengths=None,
    target=None,
    rejected_target=None,
    reduction: str = "mean",
):
    r"""DPO-family loss of a batch of preference pairs.

    With :math:`c = \log\pi(y_w) - \log\pi_{ref}(y_w)`, :math:`r = \log\pi(y_l) -
    \log\pi_{ref}(y_l)`, :math:`D = c - r`, :math:`\beta` = ``beta`` and :math:`e` =
    ``label_smoothing``, the per-pair losses are (TRL v1):

    - ``sigmoid`` (DPO): :math:`-\log\sigma(\beta D)`
    - ``hinge`` (SLiC): :math:`\max(0, 1 - \beta D)`
    - ``ipo``: :math:`(c/|y_w| - r/|y_l| - 1/(2\beta))^2`
    - ``robust``: :math:`[-(1-e)\log\sigma(\beta D) + e\log\sigma(-\beta D)] / (1-2e)`
    - ``exo_pair``: :math:`\sigma(\beta D)[\log\sigma(\beta D) - \log(1-e)] +
      \sigma(-\beta D)[\log\sigma(-\beta D) - \log e]` (``e=0`` means ``1e-3``, as in TRL)
    - ``nca_pair``: :math:`-\log\sigma(\beta c) - \tfrac12\log\sigma(-\beta c) -
      \tfrac12\log\sigma(-\beta r)`
    - ``bco_pair``: :math:`-\log\sigma(\beta c) - \log\sigma(-\beta r)` (no running mean)
    - ``sppo_hard``: :math:`(c - 1/(2\beta))^2 + (r + 1/(2\beta))^2`
    - ``apo_zero``: :math:`1 - \sigma(\beta c) + \sigma(\beta r)`
    - ``apo_down``: :math:`\sigma(\beta c) + 1 - \sigma(\beta D)`
    - ``discopop``: :math:`z=\beta D,\ m=\sigma(z/\tau)`: :math:`-\log\sigma(z)(1-m) + e^{-z}m`
    - ``sigmoid_norm`` (LN-DPO): :math:`-\log\sigma(\beta(c/|y_w| - r/|y_l|))`
    - ``sft``: :math:`-\log\pi(y_w)/|y_w|` (token-mean NLL of the chosen completion)
    - ``rpo``: ``sigmoid`` + ``alpha`` * ``sft``
    - ``sppo`` (soft SPPO, Wu et al. 2024): with :math:`\eta = 1/\beta`, :math:`P_w` =
      ``target`` and :math:`P_l` = ``rejected_target`` (default :math:`1 - P_w`):
      :math:`(c - \eta(P_w - \tfrac12))^2 + (r - \eta(P_l - \tfrac12))^2`; ``target=1``
      is ``sppo_hard``
    - ``soft_sigmoid`` (soft-label DPO), :math:`t` = ``target``:
      :math:`-t\log\sigma(\beta D) - (1-t)\log\sigma(-\beta D)`; ``target=1`` is ``sigmoid``
    - ``jpo`` (JPO, Bansal et al. 2024): ``sigmoid``'s :math:`-\log\sigma(\beta D)` where the
      chosen and rejected responses answer *different* prompts, :math:`c = \log\pi(y_w|x_w) -
      \log\pi_{ref}(y_w|x_w)`, :math:`r = \log\pi(y_l|x_l) - \log\pi_{ref}(y_l|x_l)`
    - ``simpo``: :math:`z = m_w - m_l - \gamma/\beta` with :math:`m = \log\pi(y)/|y|`;
      :math:`-(1-e)\log\sigma(\beta z) - e\log\sigma(-\beta z)`
    - ``cpo``: as ``simpo`` with :math:`\gamma=0`, plus ``alpha`` * NLL
    - ``orpo``: NLL :math:`- \beta\log\sigma(\text{log-odds})`, log-odds
      :math:`= (m_w - m_l) - (\log(1-e^{m_w}) - \log(1-e^{m_l}))`

    Parameters
    ----------
    chosen_logps, rejected_logps : torch.Tensor
        ``[B]`` policy log-probabilities, summed over the completion tokens of each response.
    ref_chosen_logps, ref_rejected_logps : torch.Tensor, optional
        ``[B]`` reference-model log-probabilities (precomputed once); ``None`` means zeros,
        i.e. reference-free. ``simpo``, ``cpo`` and ``orpo`` never use them.
    kind : str
        One of the kinds above.
    beta : float
        Inverse temperature :math:`\beta > 0`.
    label_smoothing : float
        :math:`e`, for ``robust``, ``exo_pair``, ``simpo`` and ``cpo`` only (an error elsewhere).
    gamma : float
        SimPO target margin :math:`\gamma`.
    tau : float
        DiscoPOP temperature.
    alpha : float
        Weight of the NLL term in ``rpo`` and ``cpo``.
    chosen_lengths, rejected_lengths : torch.Tensor, optional
        ``[B]`` completion token counts; required by ``ipo``, ``sigmoid_norm``, ``sft``,
        ``rpo``, ``simpo``, ``cpo`` and ``orpo``. A length of 0 counts as 1, so an empty
        completion has mean log-prob 0 instead of NaN.
    target : torch.Tensor, optional
        ``[B]`` probabilities in [0, 1], required by ``sppo`` and ``soft_sigmoid`` (an error
        elsewhere): for ``soft_sigmoid`` the probability that the chosen response beats the
        rejected one (preference degree); for ``sppo`` the chosen response's win probability
        :math:`P(y_w \succ \pi_{ref})` against the reference (previous-iteration) policy.
        Not differentiated through.
    rejected_target : torch.Tensor, optional
        ``[B]`` the rejected response's own win probability :math:`P(y_l \succ \pi_{ref})`,
        ``sppo`` only; ``None`` means ``1 - target``.
    reduction : {"mean", "sum", "none"}
        How per-pair losses are combined; ``"none"`` returns the ``[B]`` losses.

    Returns
    -------
    loss : torch.Tensor
        Scalar (or ``[B]`` for ``reduction="none"``), in float32 or the inputs' wider dtype.
    metrics : dict[str, torch.Tensor]
        Detached ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins`` and
        ``rewards/accuracies``: batch means, or per-pair values for ``reduction="none"``.
        Rewards are :math:`\beta c` and :math:`\beta r`, or :math:`\beta m_w`, :math:`\beta m_l`
        for the reference-free kinds (as TRL's CPO/ORPO trainers log them).

    Raises
    ------
    PrefkitError
        Unknown ``kind`` or ``reduction``, missing lengths or target, mismatched shapes, a
        target outside [0, 1], or a parameter out of range.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import preference_loss
    >>> chosen = torch.tensor([-10.0, -12.0], requires_grad=True)
    >>> rejected = torch.tensor([-11.0, -11.5])
    >>> loss, metrics = preference_loss(chosen, rejected, kind="sigmoid", beta=0.1)
    >>> round(loss.item(), 4)
    0.6814
    >>> metrics["rewards/accuracies"].item()
    0.5
    >>> lengths = torch.tensor([5, 6])
    >>> loss, _ = preference_loss(chosen, rejected, kind="simpo", beta=2.0, gamma=0.5,
    ...                           chosen_lengths=lengths, rejected_lengths=lengths)
    >>> loss.backward()
    """
    check_choice("kind", kind, KINDS)
    check_choice("reduction", reduction, REDUCTIONS)
    check_tensor("chosen_logps", chosen_logps)
    check_tensor("rejected_logps", rejected_logps, chosen_logps.shape)
    if chosen_logps.dim() != 1:
        raise PrefkitError(f"chosen_logps must be 1-D [B], got shape {tuple(chosen_logps.shape)}")
    e = _check_scalars(kind, beta, label_smoothing, tau)

    dtype = compute_dtype(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    pw = chosen_logps.to(dtype)
    pl = rejected_logps.to(dtype)
    t, tl = _targets(kind, target, rejected_target, pw, dtype)
    if kind in LENGTH_KINDS:
        if chosen_lengths is None or rejected_lengths is None:
            raise PrefkitError(
                f"kind={kind!r} needs chosen_lengths and rejected_lengths (completion token counts)"
            )
        nw = check_tensor("chosen_lengths", chosen_lengths, pw.shape).to(dtype).clamp_min(1)
        nl = check_tensor("rejected_lengths", rejected_lengths, pw.shape).to(dtype).clamp_min(1)

    if kind in REFERENCE_FREE_KINDS:
        mw, ml = pw / nw, pl / nl
        losses = _reference_free(kind, mw, ml, beta, e, gamma, alpha)
        reward_w, reward_l = beta * mw.detach(), beta * ml.detach()
    else:
        c = pw - _as("ref_chosen_logps", ref_chosen_logps, pw, dtype)
        r = pl - _as("ref_rejected_logps", ref_rejected_logps, pw, dtype)
        if kind in LENGTH_KINDS:
            losses = _with_lengths(kind, c, r, pw, nw, nl, beta, alpha)
        else:
            losses = _reference_based(kind, c, r, beta, e, tau, t, tl)
        reward_w, reward_l = beta * c.detach(), beta * r.detach()

    per_pair = {
        "rewards/chosen": reward_w,
        "rewards/rejected": reward_l,
        "rewards/margins": reward_w - reward_l,
        "rewards/accuracies": (reward_w > reward_l).to(dtype),
    }
    if reduction == "none":
        metrics = per_pair
    else:
        metrics = {k: v.mean() for k, v in per_pair.items()}
    return reduce(losses, reduction), metrics


def _reference_based(kind, c, r, beta, e, tau, t=None, tl=None):
    """Per-pair losses of the kinds that only need the log-ratios ``c`` and ``r``.

    ``t`` and ``tl`` are the checked targets of :data:`TARGET_KINDS` (``tl`` defaults to
    ``1 - t``); they carry no gradient.
    """
    d = c - r
    z = beta * d
    if kind in ("sigmoid", "jpo"):  # JPO is DPO's formula on pairs across prompts
        return -F.logsigmoid(z)
    if kind == "hinge":
        return torch.relu(1 - z)
    if kind == "robust":
        return (-(1 - e) * F.logsigmoid(z) + e * F.logsigmoid(-z)) / (1 - 2 * e)
    if kind == "exo_pair":
        return torch.sigmoid(z) * (F.logsigmoid(z) - math.log(1 - e)) + torch.sigmoid(-z) * (
            F.logsigmoid(-z) - math.log(e)
        )
    if kind == "nca_pair":
        return (
            -F.logsigmoid(beta * c) - 0.5 * F.logsigmoid(-beta * c) - 0.5 * F.logsigmoid(-beta * r)
        )
    if kind == "bco_pair":
        return -F.logsigmoid(beta * c) - F.logsigmoid(-beta * r)
    if kind == "sppo_hard":
        return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
    if kind == "sppo":
        t, tl = t.detach(), tl.detach()
        return (c - (t - 0.5) / beta) ** 2 + (r - (tl - 0.5) / beta) ** 2
    if kind == "soft_sigmoid":
        t = t.detach()
        return -t * F.logsigmoid(z) - (1 - t) * F.logsigmoid(-z)
    if kind == "apo_zero":
        return 1 - torch.sigmoid(beta * c) + torch.sigmoid(beta * r)
    if kind == "apo_down":
        return torch.sigmoid(beta * c) + 1 - torch.sigmoid(z)
    if kind == "discopop":
        m = torch.sigmoid(z / tau)
        return -F.logsigmoid(z) * (1 - m) + torch.exp(-z) * m
    raise AssertionError(kind)  # pragma: no cover - KINDS is checked by the caller


def _with_lengths(kind, c, r, pw, nw, nl, beta, alpha):
    """Per-pair losses of the reference-based kinds that also need completion lengths."""
    if kind == "ipo":
        return (c / nw - r / nl - 0.5 / beta) ** 2
    if kind == "sigmoid_norm":
        return -F.logsigmoid(beta * (c / nw - r / nl))
    nll = -pw / nw
    if kind == "sft":
        return nll
    if kind == "rpo":
        return -F.logsigmoid(beta * (c - r)) + alpha * nll
    raise AssertionError(kind)  # pragma: no cover


def _reference_free(kind, mw, ml, beta, e, gamma, alpha):
    """SimPO, CPO and ORPO on mean log-probs ``mw`` (chosen) and ``ml`` (rejected)."""
    if kind == "orpo":
        log_odds = (mw - ml) - (_log1mexp(mw) - _log1mexp(ml))
        return -mw - beta * F.logsigmoid(log_odds)
    z = mw - ml
    if kind == "simpo":
        z = z - gamma / beta
    losses = -(1 - e) * F.logsigmoid(beta * z) - e * F.logsigmoid(-beta * z)
    if kind == "cpo":
        losses = losses + alpha * -mw
    return losses
