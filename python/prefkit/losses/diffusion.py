r"""Preference losses for text-to-image diffusion models, on denoising errors (needs torch).

A diffusion model has no tractable sequence log-probability; the DPO family is carried over
through the per-sample denoising error (an ELBO term) or the Gaussian log-likelihood of one
sampled denoising step. Every loss here takes per-pair quantities that the training loop
computes with its own UNet, scheduler and latents, and returns ``(loss, metrics)`` like
:func:`prefkit.losses.preference_loss`:

- :func:`diffusion_dpo_loss`: Diffusion-DPO (Wallace et al. 2023, arXiv 2311.12908), with an
  optional soft target for soft-labelled pairs (ties of 0.5 included).
- :func:`smpo_loss`: SmPO-Diffusion's smoothed-label DPO (Lu et al. 2025, arXiv 2506.02698).
- :func:`mapo_loss`: MaPO, reference-free and margin-aware (Hong et al. 2024, arXiv 2406.06424).
- :func:`d3po_loss`: D3PO, DPO over the sampled denoising steps (Yang et al. 2023,
  arXiv 2311.13231).
- :func:`denoising_losses` and :func:`gaussian_step_logprobs` turn UNet outputs into those
  per-sample inputs.

The scalings follow each paper's reference implementation (read side by side with the
formulas in ``docs/diffusion.md``), so that published hyper-parameters carry over: Diffusion-DPO
and SmPO take ``beta`` on the scale of ``--beta_dpo`` (5000 for SD1.5 and SDXL), MaPO takes
``--beta_mapo`` and ``--snr_value``, D3PO takes ``train.beta`` and ``train.eps``.

Examples
--------
>>> import torch
>>> from prefkit.losses import diffusion_dpo_loss
>>> loss, metrics = diffusion_dpo_loss(torch.tensor([0.10]), torch.tensor([0.12]),
...                                    torch.tensor([0.11]), torch.tensor([0.11]), beta=100.0)
>>> round(loss.item(), 4), metrics["rewards/accuracies"].item()
(0.3133, 1.0)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prefkit._errors import PrefkitError

from ._checks import REDUCTIONS, check_choice, check_tensor, compute_dtype, reduce
from .preference import _check_probability

#: Diffusion-DPO's ``--beta_dpo`` in the authors' SD1.5 and SDXL launch scripts.
DIFFUSION_DPO_BETA = 5000.0
#: The constant by which SmPO's training script multiplies ``beta_dpo * (2p - 1)``.
SMPO_GAMMA = 10.0
#: DDPM's number of training timesteps; MaPO multiplies its log-odds margin by it.
NUM_TRAIN_TIMESTEPS = 1000


def denoising_losses(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Per-sample denoising error: the mean of ``(pred - target)**2`` over all but dim 0.

    This is the quantity Diffusion-DPO, SmPO and MaPO compare (``model_losses`` in their
    code): with an epsilon-predicting scheduler ``target`` is the noise that was added, with
    ``v_prediction`` it is the velocity. The mean (not the sum) over latent elements is the
    reference implementations' convention, which their ``beta`` values are tuned for.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``[N, ...]`` model prediction and regression target (e.g. ``[N, C, H, W]``).

    Returns
    -------
    torch.Tensor
        ``[N]`` errors in float32 (or float64 for float64 input); differentiable in ``pred``.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import denoising_losses
    >>> denoising_losses(torch.ones(2, 4, 8, 8), torch.zeros(2, 4, 8, 8)).tolist()
    [1.0, 1.0]
    """
    check_tensor("pred", pred)
    check_tensor("target", target, pred.shape)
    if pred.dim() < 2:
        raise PrefkitError(f"pred must be [N, ...] with at least 2 dims, got {tuple(pred.shape)}")
    dtype = compute_dtype(pred, target)
    err = (pred.to(dtype) - target.to(dtype)) ** 2
    return err.mean(dim=tuple(range(1, err.dim())))


def gaussian_step_logprobs(
    sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float
) -> torch.Tensor:
    r"""Log-likelihood of one sampled denoising step under a Gaussian transition, per sample.

    A stochastic sampler (DDPM, or DDIM with ``eta > 0``) draws
    :math:`x_{t-1} \sim \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)`. The log-density of the
    stored ``sample`` :math:`x_{t-1}` is averaged over its elements (the DDPO / D3PO
    convention: ``log_prob.mean(dim=1..)``), so that :func:`d3po_loss`'s ``beta`` does not
    scale with the latent size. ``sample`` is detached: the gradient flows through ``mean``.

    Parameters
    ----------
    sample : torch.Tensor
        ``[N, ...]`` the latent the sampler actually produced at this step.
    mean : torch.Tensor
        ``[N, ...]`` the transition mean computed from the model's noise prediction (the policy's
        or the reference model's), e.g. the scheduler's ``prev_sample`` before noise is added.
    std : torch.Tensor or float
        :math:`\sigma_t`: a positive scalar or a tensor broadcastable to ``sample``.

    Returns
    -------
    torch.Tensor
        ``[N]`` per-sample mean log-density.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import gaussian_step_logprobs
    >>> x = torch.zeros(1, 4, 2, 2)
    >>> round(gaussian_step_logprobs(x, x, 1.0).item(), 4)  # -log(sqrt(2 pi))
    -0.9189
    """
    check_tensor("sample", sample)
    check_tensor("mean", mean, sample.shape)
    if sample.dim() < 2:
        raise PrefkitError(f"sample must be [N, ...] with at least 2 dims, got {tuple(sample.shape)}")
    if isinstance(std, torch.Tensor):
        dtype = compute_dtype(sample, mean, std)
        std = std.to(dtype=dtype, device=sample.device)
    else:  # a Python number: made in the inputs' dtype, so 0.3 stays 0.3 in float64
        dtype = compute_dtype(sample, mean)
        std = torch.tensor(float(std), dtype=dtype, device=sample.device)
    if not bool((std.detach() > 0).all()):
        raise PrefkitError("std must be > 0 (a deterministic step, e.g. DDIM with eta=0, has none)")
    x, mu = sample.detach().to(dtype), mean.to(dtype)
    logp = -((x - mu) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return logp.mean(dim=tuple(range(1, logp.dim())))


def _check_beta(name: str, value: float) -> None:
    if not value > 0:
        raise PrefkitError(f"{name} must be > 0, got {value}")


def _pair_inputs(names, values, *, steps_ok: bool = False):
    """Checked per-pair inputs (same shape, ``[B]`` or ``[B, T]`` where allowed) and their dtype."""
    first = check_tensor(names[0], values[0])
    if first.dim() != 1 and not (steps_ok and first.dim() == 2):
        expected = "[B] or [B, T]" if steps_ok else "[B]"
        raise PrefkitError(f"{names[0]} must be {expected}, got shape {tuple(first.shape)}")
    for name, value in zip(names[1:], values[1:]):
        check_tensor(name, value, first.shape)
    dtype = compute_dtype(*values)
    return [v.to(dtype) for v in values], dtype


def _metrics(reward_w, reward_l, reduction, extra=None):
    """TRL-named metrics, detached: batch means, or per pair for ``reduction="none"``."""
    per_pair = {
        "rewards/chosen": reward_w.detach(),
        "rewards/rejected": reward_l.detach(),
        "rewards/margins": (reward_w - reward_l).detach(),
        "rewards/accuracies": (reward_w > reward_l).to(reward_w.dtype),
    }
    per_pair.update({k: v.detach() for k, v in (extra or {}).items()})
    if reduction == "none":
        return per_pair
    return {k: v.mean() for k, v in per_pair.items()}


def _dpo_rewards(model_w, model_l, ref_w, ref_l, beta):
    r"""Diffusion-DPO's implicit rewards :math:`-\tfrac{\beta}{2}(e_\theta - e_{ref})`."""
    return -0.5 * beta * (model_w - ref_w), -0.5 * beta * (model_l - ref_l)


_MSE_NAMES = ("model_losses_w", "model_losses_l", "ref_losses_w", "ref_losses_l")


def _mse_metrics(mw, ml, rw, rl):
    return {"mse/chosen": mw, "mse/rejected": ml, "mse/ref_chosen": rw, "mse/ref_rejected": rl}


def diffusion_dpo_loss(
    model_losses_w,
    model_losses_l,
    ref_losses_w,
    ref_losses_l,
    *,
    beta: float = DIFFUSION_DPO_BETA,
    target=None,
    reduction: str = "mean",
):
    r"""Diffusion-DPO loss on the denoising errors of a batch of image pairs.

    Winner and loser of a pair are noised with the **same** noise :math:`\epsilon` at the
    **same** timestep :math:`t`; :math:`e` is the per-sample error of
    :func:`denoising_losses` for the policy (``model_losses_*``) and the frozen reference
    (``ref_losses_*``). With :math:`\Delta = (e^w_\theta - e^w_{ref}) - (e^l_\theta -
    e^l_{ref})` and :math:`z = -\tfrac{\beta}{2}\Delta`:

    .. math:: \ell = -\log\sigma(z)

    as in the authors' ``train.py`` (``-0.5 * beta_dpo * (model_diff - ref_diff)``). The paper
    (Eq. 14) writes :math:`-\log\sigma(-\beta T\omega(\lambda_t)\Delta')` with summed squared
    norms :math:`\Delta'` and a timestep weight :math:`\omega`; the code takes
    :math:`\omega = 1`, averages over latent elements and folds :math:`T`, the element count
    and the 1/2 into ``beta_dpo``, whose value for SD1.5 and SDXL is 5000 (the default here).

    With ``target`` (a per-pair probability :math:`p` that the first image is preferred), the
    loss is the soft-label cross-entropy, as ``preference_loss(kind="soft_sigmoid")`` for text:
    :math:`-p\log\sigma(z) - (1-p)\log\sigma(-z)`. A tie (:math:`p = 0.5`) then pulls the
    implicit reward margin towards zero instead of being dropped; :math:`p = 1` is the plain
    loss. (:func:`smpo_loss` is SmPO's different use of :math:`p`.)

    Parameters
    ----------
    model_losses_w, model_losses_l : torch.Tensor
        ``[B]`` policy denoising errors of the preferred / rejected image.
    ref_losses_w, ref_losses_l : torch.Tensor
        ``[B]`` reference-model errors at the same noise and timestep (no gradient needed).
    beta : float
        :math:`\beta > 0` on ``--beta_dpo``'s scale.
    target : torch.Tensor, optional
        ``[B]`` probabilities in [0, 1]; not differentiated through.
    reduction : {"mean", "sum", "none"}
        How per-pair losses are combined.

    Returns
    -------
    loss : torch.Tensor
        Scalar, or ``[B]`` for ``reduction="none"``; float32 or the inputs' wider dtype.
    metrics : dict[str, torch.Tensor]
        Detached ``rewards/chosen`` (:math:`-\tfrac{\beta}{2}(e^w_\theta - e^w_{ref})`),
        ``rewards/rejected``, ``rewards/margins`` (:math:`z`), ``rewards/accuracies`` (the
        paper's implicit accuracy, :math:`z > 0`), and ``mse/chosen``, ``mse/rejected``,
        ``mse/ref_chosen``, ``mse/ref_rejected``.

    Raises
    ------
    PrefkitError
        Mismatched shapes, non-tensors, ``beta <= 0``, a target outside [0, 1].

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import diffusion_dpo_loss
    >>> model_w = torch.tensor([0.30, 0.52], requires_grad=True)
    >>> model_l = torch.tensor([0.41, 0.47], requires_grad=True)
    >>> ref_w, ref_l = torch.tensor([0.31, 0.50]), torch.tensor([0.40, 0.50])
    >>> loss, metrics = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, beta=50.0)
    >>> round(loss.item(), 4), metrics["rewards/accuracies"].item()
    (0.988, 0.5)
    >>> loss.backward()
    >>> tie, _ = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, beta=50.0,
    ...                             target=torch.tensor([1.0, 0.5]))
    """
    check_choice("reduction", reduction, REDUCTIONS)
    _check_beta("beta", beta)
    (mw, ml, rw, rl), dtype = _pair_inputs(
        _MSE_NAMES, (model_losses_w, model_losses_l, ref_losses_w, ref_losses_l)
    )
    reward_w, reward_l = _dpo_rewards(mw, ml, rw, rl, beta)
    z = reward_w - reward_l
    if target is None:
        losses = -F.logsigmoid(z)
    else:
        p = _check_probability("target", target, mw.shape, dtype).detach()
        losses = -p * F.logsigmoid(z) - (1 - p) * F.logsigmoid(-z)
    metrics = _metrics(reward_w, reward_l, reduction, _mse_metrics(mw, ml, rw, rl))
    return reduce(losses, reduction), metrics


def smpo_loss(
    model_losses_w,
    model_losses_l,
    ref_losses_w,
    ref_losses_l,
    target,
    *,
    beta: float = DIFFUSION_DPO_BETA,
    gamma: float = SMPO_GAMMA,
    reduction: str = "mean",
):
    r"""SmPO-Diffusion's smoothed-preference DPO loss on denoising errors.

    SmPO (Lu et al., ICML 2025) replaces the binary label by a smoothed preference
    distribution: the paper's Eq. 9 multiplies the DPO logit by :math:`(2\alpha - \gamma)`,
    and the authors' ``train.py`` implements it as ``-0.5 * beta_dpo * (2p - 1) * 10`` times
    :math:`\Delta`, with :math:`p` the softmax of the pair's min-max normalised PickScores.
    With :math:`z = -\tfrac{\beta}{2}\Delta` as in :func:`diffusion_dpo_loss`:

    .. math:: \ell = -\log\sigma\big(\gamma\,(2p - 1)\,z\big)

    so a pair with :math:`p = 0.5` (a tie) contributes the constant :math:`\log 2` and no
    gradient, and :math:`p < 0.5` reverses the pair. The authors' script reads the first
    pair's :math:`p` for the whole batch (it runs one pair per device); here every pair uses
    its own. SmPO also builds the noisy latents by ReNoise inversion instead of forward
    noising: that happens before this loss, in the training loop.

    Parameters
    ----------
    model_losses_w, model_losses_l, ref_losses_w, ref_losses_l : torch.Tensor
        ``[B]`` denoising errors, as for :func:`diffusion_dpo_loss`.
    target : torch.Tensor
        ``[B]`` smoothed probability :math:`p \in [0, 1]` that the first image is preferred
        (e.g. a reward model's Bradley-Terry probability); not differentiated through.
    beta : float
        :math:`\beta > 0` on ``--beta_dpo``'s scale.
    gamma : float
        :math:`\gamma > 0`, the smoothing sensitivity (10 in the authors' script).
    reduction : {"mean", "sum", "none"}
        How per-pair losses are combined.

    Returns
    -------
    loss : torch.Tensor
        Scalar, or ``[B]`` for ``reduction="none"``.
    metrics : dict[str, torch.Tensor]
        As :func:`diffusion_dpo_loss` (rewards are the unweighted implicit rewards, so that
        accuracy means the same for both losses), plus ``weight``, :math:`\gamma(2p-1)`.

    Raises
    ------
    PrefkitError
        Mismatched shapes, a missing or out-of-range target, ``beta`` or ``gamma <= 0``.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import smpo_loss
    >>> model_w = torch.tensor([0.30, 0.52], requires_grad=True)
    >>> ref = torch.tensor([0.31, 0.50])
    >>> losses, metrics = smpo_loss(model_w, ref + 0.01, ref, ref, torch.tensor([0.75, 0.5]),
    ...                             beta=50.0, reduction="none")
    >>> metrics["weight"].tolist()  # the tie gets weight 0: loss log 2, no gradient
    [5.0, 0.0]
    >>> losses.sum().backward()
    """
    check_choice("reduction", reduction, REDUCTIONS)
    _check_beta("beta", beta)
    _check_beta("gamma", gamma)
    (mw, ml, rw, rl), dtype = _pair_inputs(
        _MSE_NAMES, (model_losses_w, model_losses_l, ref_losses_w, ref_losses_l)
    )
    if target is None:
        raise PrefkitError("smpo_loss needs target: a [B] tensor of P(first image preferred)")
    p = _check_probability("target", target, mw.shape, dtype).detach()
    reward_w, reward_l = _dpo_rewards(mw, ml, rw, rl, beta)
    weight = gamma * (2 * p - 1)
    losses = -F.logsigmoid(weight * (reward_w - reward_l))
    extra = _mse_metrics(mw, ml, rw, rl)
    extra["weight"] = weight
    return reduce(losses, reduction), _metrics(reward_w, reward_l, reduction, extra)


def _x_over_expm1(x: torch.Tensor) -> torch.Tensor:
    r""":math:`x / (e^x - 1)`, finite with finite gradients for every real :math:`x`.

    Written as :math:`|x| e^{-\max(x, 0)} / (1 - e^{-|x|})` so that nothing overflows for
    large :math:`|x|`; near 0 (where it is 0/0) the series :math:`1 - x/2 + x^2/12` is used.
    Each branch gets a clamped input so that the unused one yields no inf/NaN gradient.
    """
    small = x.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(x), x)
    a = safe.abs()
    direct = a * torch.exp(-safe.clamp_min(0)) / -torch.expm1(-a)
    x0 = torch.where(small, x, torch.zeros_like(x))
    return torch.where(small, 1 - x0 / 2 + x0 * x0 / 12, direct)


def mapo_loss(
    model_losses_w,
    model_losses_l,
    *,
    beta: float = 0.1,
    snr: float = 0.5,
    num_timesteps: int = NUM_TRAIN_TIMESTEPS,
    reduction: str = "mean",
):
    r"""MaPO: margin-aware preference optimisation without a reference model.

    MaPO (Hong et al. 2024) treats the denoising error :math:`e` (of :func:`denoising_losses`,
    winner and loser at the same noise and timestep) as a negative log-likelihood and, as in
    the authors' ``train.py``, scores each image by
    :math:`s(e) = \gamma e / (e^{\gamma e} - 1)` with the constant SNR value
    :math:`\gamma` = ``snr``. The margin term is a log-sigmoid of the score difference scaled
    by the number of training timesteps :math:`T`, and the winner's denoising error keeps the
    model fitting the preferred images:

    .. math:: \ell = e_w - \beta\log\sigma\big(T\,(s(e_w) - s(e_l))\big)

    There is no reference model, so no reference forward pass is needed.

    Parameters
    ----------
    model_losses_w, model_losses_l : torch.Tensor
        ``[B]`` policy denoising errors of the preferred / rejected image.
    beta : float
        :math:`\beta > 0`, the weight of the margin term (``--beta_mapo``, default 0.1).
    snr : float
        :math:`\gamma > 0` (``--snr_value``, default 0.5).
    num_timesteps : int
        :math:`T`, the scheduler's ``num_train_timesteps`` (1000 for Stable Diffusion).
    reduction : {"mean", "sum", "none"}
        How per-pair losses are combined.

    Returns
    -------
    loss : torch.Tensor
        Scalar, or ``[B]`` for ``reduction="none"``.
    metrics : dict[str, torch.Tensor]
        ``rewards/chosen`` = :math:`\beta s(e_w)`, ``rewards/rejected`` = :math:`\beta s(e_l)`
        (the scores the authors log, times :math:`\beta`, as TRL's ORPO trainer scales its
        rewards), ``rewards/margins``, ``rewards/accuracies`` (:math:`e_w < e_l`),
        ``log_odds`` (:math:`T(s(e_w) - s(e_l))`), ``nll`` (:math:`e_w`), ``mse/chosen``,
        ``mse/rejected``.

    Raises
    ------
    PrefkitError
        Mismatched shapes, non-tensors, a non-positive ``beta``, ``snr`` or ``num_timesteps``.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import mapo_loss
    >>> model_w = torch.tensor([0.20, 0.35], requires_grad=True)
    >>> model_l = torch.tensor([0.25, 0.30], requires_grad=True)
    >>> loss, metrics = mapo_loss(model_w, model_l)
    >>> metrics["rewards/accuracies"].item()
    0.5
    >>> loss.backward()
    """
    check_choice("reduction", reduction, REDUCTIONS)
    _check_beta("beta", beta)
    _check_beta("snr", snr)
    if int(num_timesteps) != num_timesteps or num_timesteps < 1:
        raise PrefkitError(f"num_timesteps must be a positive integer, got {num_timesteps}")
    (mw, ml), _ = _pair_inputs(_MSE_NAMES[:2], (model_losses_w, model_losses_l))
    score_w, score_l = _x_over_expm1(snr * mw), _x_over_expm1(snr * ml)
    log_odds = num_timesteps * (score_w - score_l)
    losses = mw - beta * F.logsigmoid(log_odds)
    extra = {"log_odds": log_odds, "nll": mw, "mse/chosen": mw, "mse/rejected": ml}
    return reduce(losses, reduction), _metrics(beta * score_w, beta * score_l, reduction, extra)


def d3po_loss(
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta: float = 0.1,
    clip: float | None = 0.1,
    reduction: str = "mean",
):
    r"""D3PO: DPO over the denoising steps of two sampled trajectories.

    D3PO (Yang et al. 2023) samples two images for a prompt from the same initial noise,
    records every latent of both trajectories, and after a human (or reward) comparison trains
    on each denoising step :math:`k` as one DPO decision. With :math:`\log\pi(x_{k-1}|x_k)`
    the Gaussian log-likelihood of the stored step (:func:`gaussian_step_logprobs`, policy and
    frozen reference), the per-step log-ratio is clipped as in the authors' ``train_d3po.py``
    (``clamp(exp(logp - ref_logp), 1 - eps, 1 + eps)``, which bounds the update like PPO):

    .. math:: \rho = \operatorname{clip}(e^{\log\pi - \log\pi_{ref}}, 1-\epsilon, 1+\epsilon),
              \qquad \ell_k = -\log\sigma\big(\beta(\log\rho_w - \log\rho_l)\big)

    and a pair's loss is the mean of :math:`\ell_k` over its steps (the authors backpropagate
    one step at a time with gradient accumulation over the steps, which averages them).
    Outside the clip range a step contributes no gradient.

    Parameters
    ----------
    chosen_logps, rejected_logps : torch.Tensor
        ``[B]`` (one step per pair) or ``[B, T]`` (T steps of each trajectory) policy
        log-likelihoods of the preferred / rejected trajectory's sampled steps.
    ref_chosen_logps, ref_rejected_logps : torch.Tensor
        The reference model's log-likelihoods of the same steps, same shape.
    beta : float
        :math:`\beta > 0` (``train.beta``, default 0.1).
    clip : float or None
        :math:`\epsilon \in (0, 1)` (``train.eps``, default 0.1); ``None`` disables clipping.
    reduction : {"mean", "sum", "none"}
        How per-pair losses are combined.

    Returns
    -------
    loss : torch.Tensor
        Scalar, or ``[B]`` for ``reduction="none"``.
    metrics : dict[str, torch.Tensor]
        ``rewards/chosen`` = :math:`\beta\log\rho_w` and ``rewards/rejected`` =
        :math:`\beta\log\rho_l` (means over steps), ``rewards/margins``,
        ``rewards/accuracies``, and ``clip_fraction`` (share of step ratios that were clipped).

    Raises
    ------
    PrefkitError
        Inputs that are not ``[B]`` / ``[B, T]`` of one shape, ``beta <= 0``, ``clip``
        outside (0, 1).

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import d3po_loss
    >>> ref_w, ref_l = torch.full((2, 3), -1.0), torch.full((2, 3), -1.0)
    >>> logp_w = (ref_w + 0.05).requires_grad_()
    >>> loss, metrics = d3po_loss(logp_w, ref_l - 0.02, ref_w, ref_l, beta=1.0)
    >>> round(metrics["rewards/margins"].mean().item(), 4)
    0.07
    >>> loss.backward()
    """
    check_choice("reduction", reduction, REDUCTIONS)
    _check_beta("beta", beta)
    if clip is not None and not 0 < clip < 1:
        raise PrefkitError(f"clip must be in (0, 1) or None, got {clip}")
    names = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    (pw, pl, rw, rl), _ = _pair_inputs(
        names, (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps), steps_ok=True
    )
    log_ratio_w, log_ratio_l = pw - rw, pl - rl
    if clip is None:
        clipped = torch.zeros_like(log_ratio_w)
    else:
        # clamp(exp(x), 1-eps, 1+eps) then log == clamp(x, log(1-eps), log(1+eps)), without
        # overflowing exp for far-off-policy steps.
        lo, hi = math.log1p(-clip), math.log1p(clip)
        clipped = ((log_ratio_w < lo) | (log_ratio_w > hi)).to(pw.dtype)
        clipped = (clipped + ((log_ratio_l < lo) | (log_ratio_l > hi)).to(pw.dtype)) / 2
        log_ratio_w, log_ratio_l = log_ratio_w.clamp(lo, hi), log_ratio_l.clamp(lo, hi)
    step_w, step_l = beta * log_ratio_w, beta * log_ratio_l
    losses = -F.logsigmoid(step_w - step_l)
    if losses.dim() == 2:
        losses, step_w, step_l, clipped = (v.mean(dim=1) for v in (losses, step_w, step_l, clipped))
    metrics = _metrics(step_w, step_l, reduction, {"clip_fraction": clipped})
    return reduce(losses, reduction), metrics
