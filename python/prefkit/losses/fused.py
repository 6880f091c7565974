"""LM head + preference loss in one module, on top of :func:`sequence_logps`.

The modules take the model's last hidden states instead of logits, so a training step never
holds ``[batch, tokens, vocab]`` logits (the largest activation of DPO-style training at modern
vocabulary sizes). Reference log-probs are expected precomputed (once per dataset, e.g. with
``prefkit.reference_logps``), which is the normal path: the reference model then never runs in
the training loop.

With gradients on and a reduced loss, both modules take the gradient-in-forward path of
:mod:`prefkit.losses.grouped` (three GEMMs: each pair's or list's logits are computed once,
over the whole vocabulary, and turned into gradients as soon as its loss is known); otherwise,
or when one group's tokens exceed ``logits_budget``, they sum :func:`sequence_logps` (bounded
blocks, logits recomputed in backward).
"""

from __future__ import annotations

import torch
from torch import nn

from prefkit._errors import PrefkitError

from . import grouped
from ._checks import REDUCTIONS, check_choice, check_tensor
from .listwise import KINDS as LIST_KINDS
from .listwise import list_loss
from .logps import sequence_logps
from .preference import KINDS as PAIR_KINDS
from .preference import preference_loss


class _FusedLinearLoss(nn.Module):
    """What both fused modules share: settings, and the choice between the two paths."""

    def __init__(self, kind, kinds, beta, reduction, chunk_tokens, chunk_vocab, backend, budget):
        super().__init__()
        check_choice("kind", kind, kinds)
        check_choice("reduction", reduction, REDUCTIONS)
        self.kind, self.beta, self.reduction = kind, beta, reduction
        self.chunk_tokens, self.chunk_vocab, self.backend = chunk_tokens, chunk_vocab, backend
        self.logits_budget = budget
        # Optional per-token hook for the gradient-in-forward path (grouped_loss's token_stats);
        # prefkit.trl uses it to log TRL's entropy and logit metrics without another GEMM.
        self.token_stats = None

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, beta={self.beta}, reduction={self.reduction!r}"

    def _fused(
        self, hidden, weight, labels, bias, groups, others, whole_batch_loss, token_weights=None
    ):
        """``(loss, metrics, logps)`` by the gradient-in-forward path where it applies.

        Elsewhere ``whole_batch_loss(logps, counts)`` is applied to :func:`sequence_logps`;
        ``others`` are the loss's other tensor inputs (reference log-probs, scores).
        ``token_weights`` (``[N, T]``) weight each token's log-prob; weights that require grad
        (a learned mask) take the recomputing path, which differentiates them.
        """
        others = (*others, token_weights)
        if grouped.applies(self.reduction, self.logits_budget, (hidden, weight, bias), others):
            result = grouped.grouped_loss(
                hidden,
                weight,
                labels,
                bias,
                groups,
                reduction=self.reduction,
                logits_budget=self.logits_budget,
                backend=self.backend,
                token_stats=self.token_stats,
                token_weights=token_weights,
            )
            if result is not None:
                return result
        logps, counts = sequence_logps(
            hidden,
            weight,
            labels,
            bias,
            token_weights=token_weights,
            chunk_tokens=self.chunk_tokens,
            chunk_vocab=self.chunk_vocab,
            backend=self.backend,
        )
        return (*whole_batch_loss(logps, counts), logps)


class FusedLinearPreferenceLoss(_FusedLinearLoss):
    """Fused LM head + DPO-family loss over chosen/rejected pairs.

    Parameters
    ----------
    kind, beta, label_smoothing, gamma, tau, alpha, reduction
        As in :func:`prefkit.losses.preference_loss`.
    chunk_tokens, chunk_vocab, backend
        As in :func:`prefkit.losses.sequence_logps`.
    logits_budget : int, optional
        Most float32 logits the gradient-in-forward path holds at once (tokens x vocabulary):
        ``None`` is 2**28 (1 GiB) on CUDA and 2**25 on the CPU; ``0`` always takes the
        recomputing path. A group whose tokens alone exceed it takes that path too.

    Notes
    -----
    Completion lengths are the label counts (tokens other than ``-100``), so ``ipo``,
    ``sigmoid_norm``, ``simpo``, ``cpo`` and ``orpo`` need no extra input, and the NLL term of
    ``sft``/``rpo``/``cpo``/``orpo`` is the token-mean NLL of each chosen completion.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import FusedLinearPreferenceLoss
    >>> B, T, H, V = 2, 6, 16, 50
    >>> hidden = torch.randn(2 * B, T, H, requires_grad=True)   # B chosen rows, then B rejected
    >>> weight = torch.randn(V, H, requires_grad=True)
    >>> labels = torch.randint(0, V, (2 * B, T))
    >>> labels[:, :2] = -100                                      # prompt tokens
    >>> loss_fn = FusedLinearPreferenceLoss(kind="sigmoid", beta=0.1)
    >>> loss, metrics = loss_fn(hidden, weight, labels,
    ...                         ref_chosen_logps=torch.full((B,), -20.0),
    ...                         ref_rejected_logps=torch.full((B,), -20.0))
    >>> loss.backward()
    >>> sorted(metrics)[:2]
    ['logps/chosen', 'logps/rejected']
    """

    def __init__(
        self,
        kind: str = "sigmoid",
        beta: float = 0.1,
        *,
        label_smoothing: float = 0.0,
        gamma: float = 0.0,
        tau: float = 0.05,
        alpha: float = 1.0,
        reduction: str = "mean",
        chunk_tokens: int | None = None,
        chunk_vocab: int | None = None,
        backend: str = "auto",
        logits_budget: int | None = None,
    ):
        super().__init__(
            kind, PAIR_KINDS, beta, reduction, chunk_tokens, chunk_vocab, backend, logits_budget
        )
        self.label_smoothing, self.gamma, self.tau, self.alpha = label_smoothing, gamma, tau, alpha

    def forward(
        self,
        hidden,
        weight,
        labels,
        ref_chosen_logps=None,
        ref_rejected_logps=None,
        bias=None,
        *,
        target=None,
        rejected_target=None,
        chosen_token_weights=None,
        rejected_token_weights=None,
    ):
        """Loss and metrics of ``B`` pairs.

        Parameters
        ----------
        hidden : torch.Tensor
            ``[2B, T, H]``: the ``B`` chosen sequences first, then the ``B`` rejected ones.
        weight : torch.Tensor
            ``[V, H]`` LM head.
        labels : torch.Tensor
            ``[2B, T]`` shifted labels, ``-100`` where no loss is taken.
        ref_chosen_logps, ref_rejected_logps : torch.Tensor, optional
            ``[B]`` precomputed reference log-probs; ``None`` is reference-free.
        bias : torch.Tensor, optional
            ``[V]`` LM head bias.
        target, rejected_target : torch.Tensor, optional
            ``[B]`` per-pair probabilities for ``sppo`` and ``soft_sigmoid``, as in
            :func:`prefkit.losses.preference_loss`.
        chosen_token_weights, rejected_token_weights : torch.Tensor, optional
            ``[B, T]`` weights of each chosen / rejected token's log-prob (SparsePO-style
            token masks; 0 drops a token), as ``token_weights`` of
            :func:`prefkit.losses.sequence_logps`; a missing one means all ones. The policy
            log-probs become ``sum_t w_t log pi(y_t)``, so pass reference log-probs weighted
            the same way (``sum_t w_t log pi_ref(y_t)``) to weight the log-ratio, and the
            completion lengths are the counts of tokens with a non-zero weight.

        Returns
        -------
        loss : torch.Tensor
        metrics : dict[str, torch.Tensor]
            As :func:`prefkit.losses.preference_loss`, plus ``logps/chosen`` and
            ``logps/rejected`` (detached batch means of the policy log-probs).
        """
        check_tensor("hidden", hidden)
        if hidden.dim() != 3 or hidden.shape[0] % 2:
            raise PrefkitError(
                f"hidden must be [2B, T, H] (B chosen rows, then B rejected), got "
                f"{tuple(hidden.shape)}"
            )
        b = hidden.shape[0] // 2
        refs = (ref_chosen_logps, ref_rejected_logps)
        for name, ref in zip(("ref_chosen_logps", "ref_rejected_logps"), refs):
            if ref is not None:
                check_tensor(name, ref, (b,))
        targets = (target, rejected_target)
        for name, t in zip(("target", "rejected_target"), targets):
            if t is not None:
                check_tensor(name, t, (b,))
        token_weights = _pair_token_weights(
            chosen_token_weights, rejected_token_weights, (b, hidden.shape[1])
        )

        # Targets go to ``_loss`` only when given, so that subclasses overriding the
        # five-argument hook (prefkit.trl) keep working for the kinds without a target.
        def with_targets(g0, g1):
            if targets == (None, None):
                return {}
            return {"targets": tuple(None if t is None else t[g0:g1] for t in targets)}

        def pair_losses(logps, counts, g0, g1):
            m = g1 - g0
            part = [None if r is None else r[g0:g1] for r in refs]
            return self._loss(logps[:m], logps[m:], part, counts, "none", **with_targets(g0, g1))

        pairs = grouped.Groups(b, lambda g0, g1: [(g0, g1), (b + g0, b + g1)], pair_losses)
        loss, metrics, logps = self._fused(
            hidden,
            weight,
            labels,
            bias,
            pairs,
            (*refs, *targets),
            lambda logps, counts: self._loss(
                logps[:b], logps[b:], refs, counts, self.reduction, **with_targets(0, b)
            ),
            token_weights,
        )
        detached = logps.detach()
        metrics["logps/chosen"] = detached[:b] if self.reduction == "none" else detached[:b].mean()
        metrics["logps/rejected"] = (
            detached[b:] if self.reduction == "none" else detached[b:].mean()
        )
        return loss, metrics

    def _loss(self, chosen, rejected, refs, counts, reduction, targets=(None, None)):
        """:func:`preference_loss` with this module's settings; counts are the lengths."""
        m = chosen.shape[0]
        return preference_loss(
            chosen,
            rejected,
            *refs,
            kind=self.kind,
            beta=self.beta,
            label_smoothing=self.label_smoothing,
            gamma=self.gamma,
            tau=self.tau,
            alpha=self.alpha,
            chosen_lengths=counts[:m],
            rejected_lengths=counts[m:],
            target=targets[0],
            rejected_target=targets[1],
            reduction=reduction,
        )


def _pair_token_weights(chosen, rejected, shape):
    """``[2B, T]`` token weights of a pair batch (chosen rows first), or None if neither given."""
    if chosen is None and rejected is None:
        return None
    given = [w for w in (chosen, rejected) if w is not None]
    for name, w in (("chosen_token_weights", chosen), ("rejected_token_weights", rejected)):
        if w is not None:
            check_tensor(name, w, shape)
            if not w.is_floating_point():
                raise PrefkitError(f"{name} must be a floating-point tensor, got {w.dtype}")
    if len(given) == 2 and chosen.device != rejected.device:
        raise PrefkitError(
            f"rejected_token_weights is on {rejected.device} but chosen_token_weights is on "
            f"{chosen.device}"
        )
    dtype = given[0].dtype if len(given) == 1 else torch.promote_types(*(w.dtype for w in given))
    ones = torch.ones(shape, dtype=dtype, device=given[0].device)
    return torch.cat([ones if w is None else w.to(dtype) for w in (chosen, rejected)])


class FusedLinearListLoss(_FusedLinearLoss):
    """Fused LM head + listwise loss over ``B`` lists of ``K`` responses.

    Parameters
    ----------
    kind, beta, reduction
        As in :func:`prefkit.losses.list_loss`.
    chunk_tokens, chunk_vocab, backend
        As in :func:`prefkit.losses.sequence_logps`.
    logits_budget : int, optional
        Most float32 logits the gradient-in-forward path holds at once (tokens x vocabulary):
        ``None`` is 2**28 (1 GiB) on CUDA and 2**25 on the CPU; ``0`` always takes the
        recomputing path. A group whose tokens alone exceed it takes that path too.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import FusedLinearListLoss
    >>> B, K, T, H, V = 2, 3, 5, 8, 40
    >>> hidden = torch.randn(B * K, T, H, requires_grad=True)
    >>> weight = torch.randn(V, H)
    >>> labels = torch.randint(0, V, (B * K, T))
    >>> scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0]])
    >>> mask = torch.tensor([[True, True, True], [True, True, False]])
    >>> labels[5] = -100                                   # the padded response: no tokens
    >>> loss, metrics = FusedLinearListLoss(kind="plackett_luce")(hidden, weight, labels,
    ...                                                           scores, mask)
    >>> loss.backward()
    """

    def __init__(
        self,
        kind: str = "plackett_luce",
        beta: float = 0.1,
        *,
        reduction: str = "mean",
        chunk_tokens: int | None = None,
        chunk_vocab: int | None = None,
        backend: str = "auto",
        logits_budget: int | None = None,
    ):
        super().__init__(
            kind, LIST_KINDS, beta, reduction, chunk_tokens, chunk_vocab, backend, logits_budget
        )

    def forward(self, hidden, weight, labels, scores, mask, ref_logps=None, bias=None):
        """Loss and metrics of ``B`` lists.

        Parameters
        ----------
        hidden : torch.Tensor
            ``[B*K, T, H]``, list-major: rows ``i*K .. i*K+K-1`` are list ``i``'s responses.
        weight : torch.Tensor
            ``[V, H]`` LM head.
        labels : torch.Tensor
            ``[B*K, T]`` shifted labels, ``-100`` where no loss is taken (padded responses can
            be all ``-100``: they cost nothing).
        scores, mask : torch.Tensor
            ``[B, K]`` label scores and real-response mask.
        ref_logps : torch.Tensor, optional
            ``[B, K]`` precomputed reference log-probs.
        bias : torch.Tensor, optional
            ``[V]`` LM head bias.

        Returns
        -------
        loss : torch.Tensor
        metrics : dict[str, torch.Tensor]
            As :func:`prefkit.losses.list_loss`.
        """
        check_tensor("scores", scores)
        if scores.dim() != 2:
            raise PrefkitError(f"scores must be [B, K], got shape {tuple(scores.shape)}")
        b, k = scores.shape
        check_tensor("hidden", hidden)
        if hidden.dim() != 3 or hidden.shape[0] != b * k:
            raise PrefkitError(
                f"hidden must be [B*K, T, H] = [{b * k}, T, H] for scores of shape {(b, k)}, "
                f"got {tuple(hidden.shape)}"
            )
        check_tensor("mask", mask, (b, k))
        if ref_logps is not None:
            check_tensor("ref_logps", ref_logps, (b, k))

        def list_losses(logps, _counts, g0, g1):
            ref = None if ref_logps is None else ref_logps[g0:g1]
            return self._loss(logps.view(g1 - g0, k), scores[g0:g1], mask[g0:g1], ref, "none")

        lists = grouped.Groups(b, lambda g0, g1: [(g0 * k, g1 * k)], list_losses)
        loss, metrics, _ = self._fused(
            hidden,
            weight,
            labels,
            bias,
            lists,
            (scores, ref_logps),
            lambda logps, _: self._loss(logps.view(b, k), scores, mask, ref_logps, self.reduction),
        )
        return loss, metrics

    def _loss(self, logps, scores, mask, ref_logps, reduction):
        """:func:`list_loss` with this module's settings."""
        return list_loss(
            logps, scores, mask, ref_logps, kind=self.kind, beta=self.beta, reduction=reduction
        )
