"""General preference model (GPM) loss on preference embeddings (Zhang et al. 2024).

A GPM reward model maps each (prompt, response) to an embedding ``v`` of even size ``2d``
instead of one scalar reward. The preference of ``y_a`` over ``y_b`` is

    P(y_a > y_b) = sigmoid(<R v_a, v_b> / tau),   R = diag(lambda_1 J, ..., lambda_d J),
    J = [[0, -1], [1, 0]],

a skew-symmetric bilinear form: ``P(a > b) = 1 - P(b > a)`` and ``P(a > a) = 1/2`` hold by
construction, and cyclic (intransitive) preferences can be represented, which no scalar reward
can. Only one embedding per response is computed, so a ``K x K`` preference matrix costs ``K``
forward passes, not ``K^2``.

What the authors' code (github.com/general-preference/general-preference-model) does, and what
this module follows:

- the embedding is the value head's output at the last token, L2-normalised
  (``F.normalize(reward, p=2, dim=-1)`` in their released ``gpm_example_usage.py``):
  ``normalize=True`` here;
- ``R``'s blocks are ``J`` (``lambda_k = 1``), or, with their ``add_prompt_head`` option,
  ``lambda = softmax(prompt_head(h_prompt))``, a prompt-dependent weight per 2-d block: pass
  those weights as ``block_scales``;
- the loss is ``-log sigmoid(<R v_w, v_l> / tau)`` (``GeneralPreferenceLoss``,
  ``HighDimGeneralPreferenceLoss``), averaged over pairs; their defaults are ``tau = 1`` for
  ``2d = 2`` and ``tau = 0.1`` for larger heads.

:func:`preference_score` and :func:`preference_probability` broadcast over leading dimensions,
so ``preference_probability(v[:, None], v[None, :])`` is a whole ``K x K`` matrix
(``prefkit.pairwise`` uses it for its embedding judges).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefkit._errors import PrefkitError

from ._checks import REDUCTIONS, check_choice, check_tensor, compute_dtype, reduce


def _check_embeddings(name: str, v) -> None:
    check_tensor(name, v)
    if not v.is_floating_point():
        raise PrefkitError(f"{name} must be a floating-point tensor, got dtype {v.dtype}")
    if v.dim() < 1 or v.shape[-1] < 2 or v.shape[-1] % 2:
        raise PrefkitError(
            f"{name} must have an even last dimension 2d >= 2 (d blocks of 2), got shape "
            f"{tuple(v.shape)}"
        )


def _blocks(v: torch.Tensor, normalize: bool) -> torch.Tensor:
    """``v`` (optionally L2-normalised) viewed as ``[..., d, 2]``."""
    if normalize:
        v = F.normalize(v, p=2, dim=-1)
    return v.unflatten(-1, (v.shape[-1] // 2, 2))


def preference_score(v_a, v_b, *, normalize: bool = True, block_scales=None) -> torch.Tensor:
    r"""The GPM preference score :math:`\langle R v_a, v_b\rangle` (before the temperature).

    With :math:`v = (v^{(1)}_1, v^{(2)}_1, \dots, v^{(1)}_d, v^{(2)}_d)` and
    :math:`\lambda_k` = ``block_scales`` (1 when omitted):
    :math:`s(a, b) = \sum_k \lambda_k (v^{(1)}_{a,k} v^{(2)}_{b,k} - v^{(2)}_{a,k} v^{(1)}_{b,k})`,
    so :math:`s(a, b) = -s(b, a)` and :math:`s(a, a) = 0`.

    Parameters
    ----------
    v_a, v_b : torch.Tensor
        ``[..., 2d]`` embeddings; leading dimensions broadcast.
    normalize : bool
        L2-normalise each embedding first (the authors' released models do).
    block_scales : torch.Tensor, optional
        ``[..., d]`` non-negative weight of each 2-d block (the softmax of the authors' prompt
        head), broadcast against the embeddings' leading dimensions.

    Returns
    -------
    torch.Tensor
        ``[...]`` scores, in the inputs' dtype (at least float32).

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses.gpm import preference_score
    >>> a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    >>> preference_score(a, b).item(), preference_score(b, a).item()
    (1.0, -1.0)
    """
    _check_embeddings("v_a", v_a)
    _check_embeddings("v_b", v_b)
    if v_a.shape[-1] != v_b.shape[-1]:
        raise PrefkitError(
            f"v_a and v_b must have the same embedding size, got {v_a.shape[-1]} and "
            f"{v_b.shape[-1]}"
        )
    dtype = compute_dtype(v_a, v_b, block_scales)
    a = _blocks(v_a.to(dtype), normalize)
    b = _blocks(v_b.to(dtype), normalize)
    # <J a_k, b_k> with J = [[0, -1], [1, 0]]: J a_k = (-a_k2, a_k1).
    per_block = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    if block_scales is not None:
        check_tensor("block_scales", block_scales)
        if block_scales.shape[-1:] != per_block.shape[-1:]:
            raise PrefkitError(
                f"block_scales must end in d = {per_block.shape[-1]} (one weight per 2-d "
                f"block), got shape {tuple(block_scales.shape)}"
            )
        if bool((block_scales.detach() < 0).any()):
            raise PrefkitError("block_scales must be non-negative (R's blocks are lambda_k J)")
        per_block = per_block * block_scales.to(dtype)
    return per_block.sum(-1)


def preference_probability(
    v_a, v_b, tau: float = 1.0, *, normalize: bool = True, block_scales=None
) -> torch.Tensor:
    r""":math:`P(y_a \succ y_b) = \sigma(\langle R v_a, v_b\rangle / \tau)` from GPM embeddings.

    Parameters
    ----------
    v_a, v_b : torch.Tensor
        ``[..., 2d]`` embeddings; leading dimensions broadcast, so ``v[:, None]`` against
        ``v[None, :]`` gives the ``[K, K]`` matrix of one prompt's ``K`` responses.
    tau : float
        Temperature :math:`\tau > 0`.
    normalize, block_scales
        As in :func:`preference_score`.

    Returns
    -------
    torch.Tensor
        ``[...]`` probabilities; ``P(a, b) + P(b, a) = 1`` and ``P(a, a) = 1/2`` exactly.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import preference_probability
    >>> v = torch.randn(4, 6)
    >>> p = preference_probability(v[:, None], v[None, :], tau=0.5)
    >>> p.shape, torch.allclose(p + p.T, torch.ones(4, 4))
    (torch.Size([4, 4]), True)
    """
    _check_tau(tau)
    score = preference_score(v_a, v_b, normalize=normalize, block_scales=block_scales)
    return torch.sigmoid(score / tau)


def _check_tau(tau) -> None:
    if not tau > 0:
        raise PrefkitError(f"tau must be > 0, got {tau}")


def general_preference_loss(
    chosen_embeddings,
    rejected_embeddings,
    *,
    tau: float = 1.0,
    normalize: bool = True,
    block_scales=None,
    reduction: str = "mean",
):
    r"""GPM loss :math:`-\log\sigma(\langle R v_w, v_l\rangle / \tau)` of a batch of pairs.

    The general preference model's training objective (Zhang et al. 2024, "Beyond Bradley-Terry
    Models: A General Preference Model for Language Model Alignment", arXiv 2410.02197): the
    negative log-likelihood of the observed preferences under :func:`preference_probability`.
    With ``2d = 2`` and unit blocks it is the authors' ``GeneralPreferenceLoss``; with larger
    heads ``HighDimGeneralPreferenceLoss``; with ``block_scales`` their prompt-head variant.

    Parameters
    ----------
    chosen_embeddings, rejected_embeddings : torch.Tensor
        ``[B, 2d]`` embeddings of the preferred and the other response of each pair.
    tau : float
        Temperature :math:`\tau > 0` (the authors use 1 for ``2d = 2``, 0.1 above).
    normalize : bool
        L2-normalise the embeddings first (the authors' released models do).
    block_scales : torch.Tensor, optional
        ``[B, d]`` (or ``[d]``) prompt-dependent block weights :math:`\lambda_k \ge 0`.
    reduction : {"mean", "sum", "none"}
        How per-pair losses are combined.

    Returns
    -------
    loss : torch.Tensor
        Scalar, or ``[B]`` for ``reduction="none"``, in float32 or the inputs' wider dtype.
    metrics : dict[str, torch.Tensor]
        Detached ``rewards/margins`` (the logit :math:`s/\tau`), ``rewards/accuracies``
        (:math:`s > 0`) and ``preference/probabilities`` (:math:`\sigma(s/\tau)`): batch means,
        or per pair for ``reduction="none"``.

    Raises
    ------
    PrefkitError
        Shapes that differ, an odd or empty embedding size, ``tau <= 0``, negative
        ``block_scales``, an unknown ``reduction``.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import general_preference_loss
    >>> chosen = torch.randn(8, 4, requires_grad=True)
    >>> rejected = torch.randn(8, 4, requires_grad=True)
    >>> loss, metrics = general_preference_loss(chosen, rejected, tau=0.1)
    >>> loss.backward()
    >>> sorted(metrics)
    ['preference/probabilities', 'rewards/accuracies', 'rewards/margins']
    """
    check_choice("reduction", reduction, REDUCTIONS)
    _check_tau(tau)
    _check_embeddings("chosen_embeddings", chosen_embeddings)
    _check_embeddings("rejected_embeddings", rejected_embeddings)
    if chosen_embeddings.dim() != 2:
        raise PrefkitError(
            f"chosen_embeddings must be [B, 2d], got shape {tuple(chosen_embeddings.shape)}"
        )
    check_tensor("rejected_embeddings", rejected_embeddings, chosen_embeddings.shape)
    logits = (
        preference_score(
            chosen_embeddings, rejected_embeddings, normalize=normalize, block_scales=block_scales
        )
        / tau
    )
    losses = -F.logsigmoid(logits)
    z = logits.detach()
    per_pair = {
        "rewards/margins": z,
        "rewards/accuracies": (z > 0).to(z.dtype),
        "preference/probabilities": torch.sigmoid(z),
    }
    metrics = per_pair if reduction == "none" else {k: v.mean() for k, v in per_pair.items()}
    return reduce(losses, reduction), metrics
