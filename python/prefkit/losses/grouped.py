"""Fused LM head + a loss made of independent groups, with the gradient formed in the forward.

:func:`~prefkit.losses.sequence_logps` cannot know the gradient of a token's log-prob before the
whole loss is known, so its backward recomputes every logits block: four GEMMs per step
(forward, recompute, ``d @ W``, ``dᵀ @ x``). The DPO-family and listwise losses are means (or
sums) of independent per-group terms: a pair, a list. Once a group's log-probs are known, so
are its loss and the gradient of its logits. This path therefore takes a few groups at a time
and

1. computes their tokens' logits over the whole vocabulary once, into a float32 block, with
   each token's logsumexp and label logit (the Triton kernel's epilogue on CUDA);
2. sums them into the groups' log-probs and runs the loss on those few numbers under autograd,
   which gives the gradient ``g`` of each log-prob;
3. turns the block into ``g * (onehot - softmax)`` in place (in the GEMM dtype, inside the same
   storage) and multiplies it into the hidden, weight and bias gradients right away.

Three GEMMs, like the unfused path and Liger-Kernel's chunked losses; peak extra memory is one
block of at most ``logits_budget`` float32 logits plus the gradients themselves. ``backward``
only scales the stored gradients by the upstream gradient. Where this cannot work the callers
use :func:`sequence_logps` (see :func:`applies` and :func:`grouped_loss`'s ``None``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from prefkit._errors import PrefkitError

from ._checks import reduce
from .logps import (
    acc_dtype,
    check_backend,
    check_inputs,
    labelled_tokens,
    labelled_weights,
    logps_dtype,
    mm_into,
    pick_blocks,
    weighted_labels,
)

#: Most float32 logits one block holds when ``logits_budget`` is None: 1 GiB on CUDA (a pair of
#: 1024-token sequences at a 128k vocabulary fits), 128 MiB on the CPU.
DEFAULT_BUDGET = {"cpu": 1 << 25, "cuda": 1 << 28}


@dataclass(frozen=True)
class Groups:
    """How the sequences of a batch form the independent terms of a loss.

    Attributes
    ----------
    count : int
        Number of groups (pairs, lists).
    row_spans : callable
        ``row_spans(g0, g1)`` -> the rows (sequences) of groups ``g0 .. g1 - 1`` as ``(start,
        stop)`` spans, in the order ``loss`` expects their log-probs.
    loss : callable
        ``loss(logps, counts, g0, g1)`` -> ``(losses, metrics)``: the per-group losses
        (``[g1 - g0]``) and per-group metrics of those groups, from the log-probs and labelled
        token counts of their rows (in ``row_spans`` order).
    """

    count: int
    row_spans: Callable[[int, int], list[tuple[int, int]]]
    loss: Callable[[torch.Tensor, torch.Tensor, int, int], tuple[torch.Tensor, dict]]


def applies(reduction: str, logits_budget: int | None, inputs, others) -> bool:
    """Whether the gradient-in-forward path can compute this loss.

    It needs a gradient to form (grad mode on, one of ``inputs`` — hidden, weight, bias —
    requiring it), a reduced loss (``reduction="none"`` leaves each group's upstream gradient
    unknown until backward), no gradient wanted for ``others`` (reference log-probs, scores),
    and ``logits_budget != 0``.
    """

    def wants_grad(tensors):
        return any(t is not None and t.requires_grad for t in tensors)

    return (
        reduction != "none"
        and logits_budget != 0
        and torch.is_grad_enabled()
        and wants_grad(inputs)
        and not wants_grad(others)
    )


def grouped_loss(
    hidden,
    weight,
    labels,
    bias,
    groups,
    *,
    reduction,
    logits_budget,
    backend,
    token_stats=None,
    token_weights=None,
):
    """Loss, metrics and log-probs of ``groups``, with gradients formed in the forward pass.

    Parameters
    ----------
    hidden, weight, labels, bias, backend
        As in :func:`prefkit.losses.sequence_logps`.
    groups : Groups
        The loss's independent terms.
    reduction : {"mean", "sum"}
        Over groups.
    logits_budget : int or None
        Most float32 logits held at once (a block of ``tokens x V``); None: ``DEFAULT_BUDGET``
        for the device.
    token_stats : callable, optional
        ``token_stats(tokens, logits, lse, targets)`` is called with each block's float32 logits
        before they are turned into gradients (the only moment they exist), for per-token
        statistics such as entropy; ``tokens`` index the labelled tokens in the flat order of
        ``labels``, ``lse`` and ``targets`` are theirs. It must not modify ``logits``.
    token_weights : torch.Tensor, optional
        ``[N, T]`` weights of the token log-probs, as in
        :func:`prefkit.losses.sequence_logps` (weight-0 tokens are dropped); the weights get no
        gradient on this path (callers send weights that require grad elsewhere).

    Returns
    -------
    tuple or None
        ``(loss, metrics, logps)``: the reduced loss (differentiable wrt hidden, weight and
        bias), the batch means of the groups' metrics and the detached ``[N]`` per-sequence
        log-probs. None when there are no groups or one group's tokens alone exceed the budget
        (very long sequences): the caller then takes the recomputing path.
    """
    check_backend(backend)
    check_inputs(hidden, weight, labels, bias)
    if token_weights is not None:
        labels = weighted_labels(labels, token_weights)
    index, targets, _, counts = labelled_tokens(labels, weight.shape[0])
    vocab, width = weight.shape
    if logits_budget is None:
        logits_budget = DEFAULT_BUDGET["cuda" if hidden.is_cuda else "cpu"]
    offsets = [0, *itertools.accumulate(counts.tolist())]
    chunks = _plan(groups, offsets, vocab, logits_budget)
    if not chunks:
        return None

    device = hidden.device
    blocks = pick_blocks(backend, device)
    acc = acc_dtype(hidden.dtype)
    w = blocks.gemm_operand(weight)
    b = None if bias is None else blocks.gemm_operand(bias)
    need_x, need_w, need_b = (t is not None and t.requires_grad for t in (hidden, weight, bias))
    flat_hidden = hidden.detach().reshape(-1, width)
    grad_hidden = torch.zeros_like(flat_hidden) if need_x else None
    grad_w = torch.zeros(w.shape, dtype=w.dtype, device=device) if need_w else None
    grad_b = torch.zeros(vocab, dtype=acc, device=device) if need_b else None
    block = torch.empty(max(tokens for *_, tokens in chunks) * vocab, dtype=acc, device=device)
    logps = torch.zeros(hidden.shape[0], dtype=logps_dtype(hidden.dtype), device=device)
    scale = 1.0 / groups.count if reduction == "mean" else 1.0
    # Per labelled token; a token's log-prob enters its sequence's sum times its weight, so the
    # gradient of its logits is scaled by the same weight.
    weights = None if token_weights is None else labelled_weights(token_weights.detach(), index, acc)
    losses, metrics = [], []
    with torch.no_grad():
        for g0, g1, n_tokens in chunks:
            spans = groups.row_spans(g0, g1)
            chunk_rows = torch.cat([torch.arange(r0, r1, device=device) for r0, r1 in spans])
            chunk_counts = counts.index_select(0, chunk_rows)
            picked = torch.cat(
                [torch.arange(offsets[r0], offsets[r1], device=device) for r0, r1 in spans]
            )
            # Each row's tokens are contiguous and the spans are in row order: local row ids.
            local = torch.repeat_interleave(
                torch.arange(len(chunk_rows), device=device), chunk_counts, output_size=n_tokens
            )
            token_index = index.index_select(0, picked)
            chunk_targets = targets.index_select(0, picked)
            x = flat_hidden.index_select(0, token_index)
            chunk_weights = None if weights is None else weights.index_select(0, picked)
            chunk_logps = torch.zeros(len(chunk_rows), dtype=logps.dtype, device=device)
            if n_tokens:
                logits = block[: n_tokens * vocab].view(n_tokens, vocab)
                xg = blocks.gemm_operand(x)
                lse, target = blocks.full_logits(xg, w, b, chunk_targets, logits)
                token = target - lse
                if chunk_weights is not None:
                    token = token * chunk_weights.to(token.dtype)
                chunk_logps.index_add_(0, local, token.to(logps.dtype))
                if token_stats is not None:
                    token_stats(picked, logits, lse, chunk_targets)
            with torch.enable_grad():
                leaf = chunk_logps.requires_grad_()
                group_losses, group_metrics = groups.loss(leaf, chunk_counts, g0, g1)
                (grad_logps,) = torch.autograd.grad(group_losses.sum() * scale, leaf)
            if n_tokens:
                g = grad_logps.index_select(0, local).to(lse.dtype)
                if chunk_weights is not None:
                    g = g * chunk_weights.to(g.dtype)
                d = blocks.dlogits_in_place(logits, lse, g, chunk_targets, w.dtype)
                if need_x:
                    grad_hidden.index_copy_(0, token_index, torch.mm(d, w).to(hidden.dtype))
                if need_w:
                    mm_into(grad_w, d.T, xg)
                if need_b:
                    grad_b.add_(d.sum(0, dtype=acc))
            losses.append(group_losses.detach())
            metrics.append(group_metrics)
            logps.index_copy_(0, chunk_rows, chunk_logps.detach())
    value = reduce(torch.cat(losses), reduction)
    metrics = {k: torch.cat([m[k] for m in metrics]).mean() for k in metrics[0]}
    loss = _PrecomputedGradients.apply(
        value,
        hidden,
        weight,
        bias,
        None if grad_hidden is None else grad_hidden.view(hidden.shape),
        None if grad_w is None else grad_w.to(weight.dtype),
        None if grad_b is None else grad_b.to(bias.dtype),
    )
    return loss, metrics, logps


def _plan(groups, offsets, vocab, budget):
    """Consecutive groups in blocks of at most ``budget`` logits: ``[(g0, g1, tokens)]``.

    Empty when there are no groups or one group alone needs more than the budget.
    """
    chunks, start, tokens = [], 0, 0
    for g in range(groups.count):
        size = sum(offsets[r1] - offsets[r0] for r0, r1 in groups.row_spans(g, g + 1))
        if size * vocab > budget:
            return []
        if g > start and (tokens + size) * vocab > budget:
            chunks.append((start, g, tokens))
            start, tokens = g, 0
        tokens += size
    if groups.count:
        chunks.append((start, groups.count, tokens))
    return chunks


class _PrecomputedGradients(torch.autograd.Function):
    """Ties a loss value to gradients computed with it; backward scales them."""

    @staticmethod
    def forward(ctx, value, hidden, weight, bias, grad_hidden, grad_weight, grad_bias):
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.used = False
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.used:
            # The stored gradients may now be the inputs' .grad: a second pass cannot reuse them.
            raise PrefkitError(
                "the fused loss's gradients were formed in its forward pass and can be used "
                "once: run the forward again instead of backward(retain_graph=True)"
            )
        ctx.used = True
        scale = None if bool(grad_output == 1) else grad_output

        def scaled(grad):
            return grad if grad is None or scale is None else grad * scale.to(grad.dtype)

        return (None, *(scaled(g) for g in ctx.saved_tensors), None, None, None)
