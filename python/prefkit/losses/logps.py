"""Per-sequence log-probabilities straight from hidden states, without ``[tokens, vocab]`` logits.

The LM head ``logits = hidden @ weight.T + bias`` is evaluated one ``[chunk_tokens,
chunk_vocab]`` block at a time. The forward pass keeps only a running logsumexp and the label's
logit per token; the backward pass recomputes each block, turns it into ``g * (onehot -
softmax)`` and multiplies that into the hidden/weight/bias gradients right away. Peak memory is
one block plus ``O(tokens x hidden)``, whatever the sequence length or vocabulary size.

Only tokens with a label (``!= -100``) are computed at all, so prompt and padding tokens cost
nothing.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from prefkit._errors import PrefkitError

from ._checks import check_tensor

IGNORE_INDEX = -100
BACKENDS = ("auto", "torch", "triton")
# Block sizes when the caller passes None. On the CPU a 1024 x 16384 fp32 block (64 MiB) keeps
# GEMMs large enough for full speed; on a GPU bigger blocks amortise kernel launches.
_DEFAULT_CHUNKS = {"cpu": (1024, 16384), "cuda": (4096, 16384)}


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float32 for half-precision inputs, else the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def mm_into(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` with ``acc`` possibly wider than ``a``/``b`` (bf16 GEMM, fp32 sum)."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
        return
    try:  # CUDA can write the fp32 product of bf16 inputs directly.
        acc.add_(torch.mm(a, b, out_dtype=acc.dtype))
    except (RuntimeError, TypeError):
        acc.add_(torch.mm(a, b).to(acc.dtype))


class _TorchBlocks:
    """Block computations with plain torch ops (any device); logits in the accumulation dtype."""

    @staticmethod
    def forward(x, weight, bias, targets, chunk_tokens, chunk_vocab):
        acc = acc_dtype(x.dtype)
        n = x.shape[0]
        lse = torch.full((n,), float("-inf"), dtype=acc, device=x.device)
        target = torch.zeros(n, dtype=acc, device=x.device)
        for v0 in range(0, weight.shape[0], chunk_vocab):
            w = weight[v0 : v0 + chunk_vocab].to(acc)
            b = None if bias is None else bias[v0 : v0 + chunk_vocab].to(acc)
            for t0 in range(0, n, chunk_tokens):
                t1 = t0 + chunk_tokens
                logits = _logits(x[t0:t1].to(acc), w, b)
                lse[t0:t1] = torch.logaddexp(lse[t0:t1], torch.logsumexp(logits, dim=1))
                local, inside = _local_targets(targets[t0:t1], v0, w.shape[0])
                picked = logits.gather(1, local[:, None]).squeeze(1)
                target[t0:t1] = torch.where(inside, picked, target[t0:t1])
        return lse, target

    @staticmethod
    def gemm_operand(t):
        return t.to(acc_dtype(t.dtype))

    @staticmethod
    def dlogits(x, w, b, targets, v0, lse, grad):
        # x and w are already in the accumulation dtype (gemm_operand).
        local, inside = _local_targets(targets, v0, w.shape[0])
        return _softmax_grad_in_place(_logits(x, w, b), lse, grad, local, inside)

    @staticmethod
    def full_logits(x, w, b, targets, out):
        # x and w are gemm operands (the accumulation dtype): the product lands in ``out``.
        torch.mm(x, w.T, out=out)
        if b is not None:
            out.add_(b)
        return torch.logsumexp(out, dim=1), out.gather(1, targets[:, None]).squeeze(1)

    @staticmethod
    def dlogits_in_place(logits, lse, grad, targets, dtype):
        # The block already has the GEMM dtype (the accumulation dtype) on this path.
        assert logits.dtype == dtype
        return _softmax_grad_in_place(logits, lse, grad, targets)


class _TritonBlocks:
    """Block computations with the Triton kernels (CUDA, or the CPU interpreter in tests)."""

    @staticmethod
    def forward(x, weight, bias, targets, chunk_tokens, chunk_vocab):
        from .triton import logps_kernels as k

        # One launch covers the whole vocabulary; only tokens are chunked, which bounds the
        # [chunk_tokens, V / BLOCK_V] buffer of partial logsumexps.
        parts = [
            k.lse_and_target(
                x[t0 : t0 + chunk_tokens], weight, bias, targets[t0 : t0 + chunk_tokens]
            )
            for t0 in range(0, x.shape[0], chunk_tokens)
        ]
        lse = torch.cat([p[0] for p in parts])
        target = torch.cat([p[1] for p in parts])
        acc = acc_dtype(x.dtype)
        return lse.to(acc), target.to(acc)

    @staticmethod
    def gemm_operand(t):
        # The gradient GEMMs run in the input dtype (tensor cores); sums are fp32 (mm_into).
        return t

    @staticmethod
    def dlogits(x, w, b, targets, v0, lse, grad):
        from .triton import logps_kernels as k

        return k.dlogits(x, w, b, targets - v0, lse.float(), grad.float(), x.dtype)

    @staticmethod
    def full_logits(x, w, b, targets, out):
        from .triton import logps_kernels as k

        return k.lse_and_target(x, w, b, targets, logits=out)

    @staticmethod
    def dlogits_in_place(logits, lse, grad, targets, dtype):
        from .triton import logps_kernels as k

        # The block shrinks to the GEMM dtype of the gradient products inside its own storage.
        return k.dlogits_in_place(logits, lse, grad, targets, dtype)


def _logits(x, w, b):
    return torch.mm(x, w.T) if b is None else torch.addmm(b, x, w.T)


def _softmax_grad_in_place(logits, lse, grad, targets, inside=None):
    """Turn a logits block into ``grad * (onehot(targets) - softmax)`` without a second block.

    ``lse`` is each row's logsumexp over the whole vocabulary; ``targets`` index the block's
    columns, and where ``inside`` is False a row's label lies outside the block (no onehot).
    """
    d = logits.sub_(lse[:, None]).exp_().mul_(-grad[:, None])
    onehot = grad if inside is None else torch.where(inside, grad, 0.0)
    return d.scatter_add_(1, targets[:, None], onehot[:, None])


def _local_targets(targets, v0, width):
    """Labels relative to the vocabulary block ``[v0, v0 + width)`` and whether they fall in it."""
    local = targets - v0
    inside = (local >= 0) & (local < width)
    return local.clamp(0, width - 1), inside


def _backward(blocks, x, weight, bias, targets, lse, grad, needs, chunk_tokens, chunk_vocab):
    """Gradients of ``sum(grad * token_logps)`` wrt ``x [n, H]``, ``weight`` and ``bias``."""
    need_x, need_w, need_b = needs
    acc = acc_dtype(x.dtype)
    n = x.shape[0]
    grad = grad.to(acc)
    grad_x = torch.zeros(x.shape, dtype=acc, device=x.device) if need_x else None
    grad_w = torch.empty_like(weight) if need_w else None
    grad_b = torch.empty_like(bias) if need_b else None
    # Vocabulary outermost: each weight slice's gradient is finished (in fp32) before moving on,
    # so the wide accumulator is one [chunk_vocab, H] slice, not the whole [V, H] matrix.
    for v0 in range(0, weight.shape[0], chunk_vocab):
        v1 = v0 + chunk_vocab
        w = blocks.gemm_operand(weight[v0:v1])
        b = None if bias is None else blocks.gemm_operand(bias[v0:v1])
        gw = None
        if need_w:
            # Accumulate straight into the result when it has the accumulation dtype.
            gw = (
                grad_w[v0:v1]
                if grad_w.dtype == acc
                else torch.empty(w.shape, dtype=acc, device=x.device)
            )
            gw.zero_()
        gb = torch.zeros(w.shape[0], dtype=acc, device=x.device) if need_b else None
        for t0 in range(0, n, chunk_tokens):
            t1 = t0 + chunk_tokens
            xs = blocks.gemm_operand(x[t0:t1])
            d = blocks.dlogits(xs, w, b, targets[t0:t1], v0, lse[t0:t1], grad[t0:t1])
            if need_x:
                mm_into(grad_x[t0:t1], d, w)
            if need_w:
                mm_into(gw, d.T, xs)
            if need_b:
                gb.add_(d.sum(0, dtype=acc))
        if need_w and gw.data_ptr() != grad_w[v0:v1].data_ptr():
            grad_w[v0:v1] = gw
        if need_b:
            grad_b[v0:v1] = gb
    return grad_x, grad_w, grad_b


class _TokenLogps(torch.autograd.Function):
    """Log-prob of each labelled token; saves only the inputs and one float per token."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, index, targets, blocks, chunk_tokens, chunk_vocab):
        x = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)
        lse, target = blocks.forward(x, weight, bias, targets, chunk_tokens, chunk_vocab)
        # The gathered x is not saved: backward gathers it again rather than holding a copy of
        # the hidden states for the whole step.
        ctx.save_for_backward(hidden, weight, bias, index, targets, lse)
        ctx.config = (blocks, chunk_tokens, chunk_vocab)
        return target - lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        hidden, weight, bias, index, targets, lse = ctx.saved_tensors
        blocks, chunk_tokens, chunk_vocab = ctx.config
        needs = ctx.needs_input_grad[:3]
        x = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)
        grad_x, grad_w, grad_b = _backward(
            blocks, x, weight, bias, targets, lse, grad, needs, chunk_tokens, chunk_vocab
        )
        grad_hidden = None
        if needs[0]:
            grad_hidden = torch.zeros(
                hidden.numel() // hidden.shape[-1],
                hidden.shape[-1],
                dtype=hidden.dtype,
                device=hidden.device,
            )
            grad_hidden.index_copy_(0, index, grad_x.to(hidden.dtype))
            grad_hidden = grad_hidden.view(hidden.shape)
        return grad_hidden, grad_w, grad_b, None, None, None, None, None


def pick_blocks(backend, device):
    """The block implementation for ``backend`` on ``device`` (see :data:`BACKENDS`)."""
    from . import triton as triton_pkg

    if backend == "torch":
        return _TorchBlocks
    if backend == "triton":
        if not triton_pkg.available(device):
            raise PrefkitError(
                f"backend='triton' needs triton and a CUDA tensor (or TRITON_INTERPRET=1); "
                f"got a tensor on {device}"
            )
        return _TritonBlocks
    return _TritonBlocks if device.type == "cuda" and triton_pkg.available(device) else _TorchBlocks


def check_backend(backend: str) -> None:
    """Raise unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise PrefkitError(f"backend={backend!r} is not supported; expected one of {BACKENDS}")


def logps_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the per-sequence log-probs: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def labelled_tokens(labels, vocab: int):
    """The labelled tokens of checked ``[N, T]`` labels: ``(index, targets, rows, counts)``.

    ``index`` are their flat positions in ``labels`` (ascending, so each sequence's tokens are
    contiguous), ``targets`` their labels (int64), ``rows`` their sequence and ``counts`` the
    number of labelled tokens per sequence. A label outside ``[0, V)`` other than ``-100`` is a
    PrefkitError naming its position.
    """
    n, t = labels.shape
    flat = labels.reshape(-1)
    index = (flat != IGNORE_INDEX).nonzero().squeeze(1)
    targets = flat.index_select(0, index).long()
    if targets.numel() and bool(((targets < 0) | (targets >= vocab)).any()):
        bad = int(index[((targets < 0) | (targets >= vocab)).nonzero()[0, 0]])
        raise PrefkitError(
            f"labels[{bad // t}, {bad % t}] = {int(flat[bad])} is outside [0, {vocab}) "
            f"and is not the ignore index {IGNORE_INDEX}"
        )
    rows = index // t
    return index, targets, rows, torch.bincount(rows, minlength=n)


def check_inputs(hidden, weight, labels, bias):
    """Raise a PrefkitError naming the argument unless the shapes, dtypes and devices fit."""
    check_tensor("hidden", hidden)
    if hidden.dim() != 3:
        raise PrefkitError(f"hidden must be [N, T, H], got shape {tuple(hidden.shape)}")
    n, t, h = hidden.shape
    check_tensor("weight", weight)
    if weight.dim() != 2 or weight.shape[1] != h:
        raise PrefkitError(f"weight must be [V, {h}] to match hidden, got {tuple(weight.shape)}")
    check_tensor("labels", labels, (n, t))
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise PrefkitError(f"labels must be an integer tensor, got {labels.dtype}")
    if bias is not None:
        check_tensor("bias", bias, (weight.shape[0],))
    for name, other in (("weight", weight), ("labels", labels), ("bias", bias)):
        if other is not None and other.device != hidden.device:
            raise PrefkitError(f"{name} is on {other.device} but hidden is on {hidden.device}")


def weighted_labels(labels, token_weights, name: str = "token_weights"):
    """Checked ``token_weights`` and ``labels`` with every weight-0 token set to ``-100``.

    A token of weight 0 is dropped, not computed: it costs nothing and does not count in the
    completion lengths. Weights must be finite, ``>= 0``, floating-point, shaped like
    ``labels`` and on its device; a bad one is a PrefkitError naming its position.
    """
    check_tensor(name, token_weights, labels.shape)
    if not token_weights.is_floating_point():
        raise PrefkitError(f"{name} must be a floating-point tensor, got {token_weights.dtype}")
    if token_weights.device != labels.device:
        raise PrefkitError(f"{name} is on {token_weights.device} but labels are on {labels.device}")
    w = token_weights.detach()
    bad = ~(torch.isfinite(w) & (w >= 0))
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise PrefkitError(
            f"{name}[{row}, {col}] = {w[row, col].item()}: token weights must be finite and >= 0"
        )
    return labels.masked_fill(w == 0, IGNORE_INDEX)


def labelled_weights(token_weights, index, dtype):
    """The weights of the labelled tokens at flat positions ``index``, in ``dtype``."""
    return token_weights.reshape(-1).index_select(0, index).to(dtype)


def _labelled_logps(hidden, weight, labels, bias, chunk_tokens, chunk_vocab, backend):
    """Log-probs of the labelled tokens of checked inputs: ``(token_logps, index, rows, counts)``.

    ``token_logps`` is ``None`` when no token is labelled; ``index``, ``rows`` and ``counts``
    are :func:`labelled_tokens`'.
    """
    default_t, default_v = _DEFAULT_CHUNKS["cuda" if hidden.is_cuda else "cpu"]
    chunk_tokens = int(chunk_tokens or default_t)
    chunk_vocab = int(chunk_vocab or default_v)
    if chunk_tokens < 1 or chunk_vocab < 1:
        raise PrefkitError(f"chunk sizes must be >= 1, got {chunk_tokens} x {chunk_vocab}")
    index, targets, rows, counts = labelled_tokens(labels, weight.shape[0])
    if targets.numel() == 0:
        return None, index, rows, counts
    blocks = pick_blocks(backend, hidden.device)
    inputs = (hidden, weight, bias)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs):
        token_logps = _TokenLogps.apply(
            hidden, weight, bias, index, targets, blocks, chunk_tokens, chunk_vocab
        )
    else:
        x = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)
        lse, target = blocks.forward(x, weight, bias, targets, chunk_tokens, chunk_vocab)
        token_logps = target - lse
    return token_logps, index, rows, counts


def _zero_like_graph(hidden, weight, shape, dtype):
    """Zeros of ``shape`` still connected to the graph, so that backward() works."""
    zero = (hidden.sum() * 0 + weight.sum() * 0).to(dtype)
    return zero.expand(shape).clone()


def sequence_logps(
    hidden,
    weight,
    labels,
    bias=None,
    *,
    token_weights=None,
    chunk_tokens: int | None = None,
    chunk_vocab: int | None = None,
    backend: str = "auto",
):
    """Sum of token log-probs per sequence, computed from hidden states in bounded memory.

    Equivalent to ``log_softmax(hidden @ weight.T + bias).gather(labels).sum(-1)`` over the
    labelled tokens, but the ``[N, T, V]`` logits never exist: see the module docstring.

    Parameters
    ----------
    hidden : torch.Tensor
        ``[N, T, H]`` last hidden states (any float dtype).
    weight : torch.Tensor
        ``[V, H]`` LM head (output embedding).
    labels : torch.Tensor
        ``[N, T]`` integer; ``labels[b, t]`` is the token that ``hidden[b, t]`` predicts (the
        caller shifts), ``-100`` marks tokens to ignore (prompt, padding).
    bias : torch.Tensor, optional
        ``[V]`` LM head bias.
    token_weights : torch.Tensor, optional
        ``[N, T]`` finite weights ``>= 0``: the result is ``sum_t w[b, t] * log p(labels[b, t])``
        (token-level weights or masks, as in SparsePO). A weight of 0 drops the token (it is
        not counted, and not computed unless the weights require grad); weights on ``-100``
        positions are ignored. Gradients flow into the weights when they require grad
        (learned masks).
    chunk_tokens, chunk_vocab : int, optional
        Block size over labelled tokens and over the vocabulary; ``None`` picks a default for
        the device (CPU 1024 x 16384, CUDA 4096 x 16384). Peak extra memory is about one block of
        float32 logits.
    backend : {"auto", "torch", "triton"}
        ``"auto"`` uses the Triton kernels for CUDA tensors when triton imports, else torch.

    Returns
    -------
    logps : torch.Tensor
        ``[N]`` float32 (float64 for float64 inputs) sums of label log-probs.
    counts : torch.Tensor
        ``[N]`` int64 number of labelled tokens per sequence (with ``token_weights``: those
        whose weight is not 0).

    Notes
    -----
    Logits and sums are accumulated in float32 for bf16/fp16 inputs. With gradients off
    (``torch.no_grad()`` or no input requiring grad) nothing is saved for backward and no
    gradient work is done. Gradients flow to ``hidden``, ``weight`` and ``bias`` (and
    ``token_weights``), never to ``labels``; double backward is not supported.

    Raises
    ------
    PrefkitError
        Wrong shapes or dtypes, tensors on different devices, a label outside ``[0, V)`` other
        than ``-100``, a negative or non-finite token weight, or ``backend="triton"`` where
        Triton cannot run.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import sequence_logps
    >>> hidden = torch.randn(2, 5, 16, requires_grad=True)
    >>> weight = torch.randn(100, 16, requires_grad=True)
    >>> labels = torch.tensor([[-100, 3, 7, 9, -100], [-100, -100, 1, 2, 3]])
    >>> logps, counts = sequence_logps(hidden, weight, labels)
    >>> counts.tolist()
    [3, 3]
    >>> full = torch.log_softmax(hidden @ weight.T, -1)
    >>> ref = (full.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * (labels != -100)).sum(1)
    >>> torch.allclose(logps, ref, atol=1e-5)
    True
    >>> logps.sum().backward()
    >>> mask = torch.tensor([[0.0, 1.0, 0.0, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    >>> _, counts = sequence_logps(hidden, weight, labels, token_weights=mask)
    >>> counts.tolist()
    [2, 3]
    """
    check_backend(backend)
    check_inputs(hidden, weight, labels, bias)
    kept = None
    if token_weights is not None:
        kept = weighted_labels(labels, token_weights)
        # A weight that wants its gradient (log p of its token) needs its token computed, even
        # at 0; otherwise weight-0 tokens are dropped before any work.
        if not (torch.is_grad_enabled() and token_weights.requires_grad):
            labels = kept
    n = hidden.shape[0]
    token_logps, index, rows, counts = _labelled_logps(
        hidden, weight, labels, bias, chunk_tokens, chunk_vocab, backend
    )
    if kept is not None:
        counts = (kept != IGNORE_INDEX).sum(1)
    out_dtype = logps_dtype(hidden.dtype)
    if token_logps is None:
        return _zero_like_graph(hidden, weight, (n,), out_dtype), counts
    token_logps = token_logps.to(out_dtype)
    if token_weights is not None:
        token_logps = token_logps * labelled_weights(token_weights, index, out_dtype)
    logps = torch.zeros(n, dtype=out_dtype, device=hidden.device)
    logps = logps.index_add(0, rows, token_logps)
    return logps, counts


def token_logps(
    hidden,
    weight,
    labels,
    bias=None,
    *,
    chunk_tokens: int | None = None,
    chunk_vocab: int | None = None,
    backend: str = "auto",
):
    """Log-prob of every labelled token, ``[N, T]``, without ``[tokens, vocab]`` logits.

    The per-token counterpart of :func:`sequence_logps` (same blocks, kernels and gradients):
    what token-level methods need before the loss, e.g. the policy and reference token
    log-probs from which :func:`prefkit.losses.sparse_token_weights` builds a mask.

    Parameters
    ----------
    hidden, weight, labels, bias, chunk_tokens, chunk_vocab, backend
        As in :func:`sequence_logps`.

    Returns
    -------
    torch.Tensor
        ``[N, T]`` float32 (float64 for float64 inputs): ``log p(labels[b, t])``, 0 where
        ``labels`` is ``-100``.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import sequence_logps, token_logps
    >>> hidden, weight = torch.randn(2, 4, 8), torch.randn(30, 8)
    >>> labels = torch.tensor([[-100, 3, 7, 9], [-100, -100, 1, 2]])
    >>> per_token = token_logps(hidden, weight, labels)
    >>> torch.allclose(per_token.sum(1), sequence_logps(hidden, weight, labels)[0])
    True
    """
    check_backend(backend)
    check_inputs(hidden, weight, labels, bias)
    values, index, _, _ = _labelled_logps(
        hidden, weight, labels, bias, chunk_tokens, chunk_vocab, backend
    )
    out_dtype = logps_dtype(hidden.dtype)
    if values is None:
        return _zero_like_graph(hidden, weight, labels.shape, out_dtype)
    out = torch.zeros(labels.numel(), dtype=out_dtype, device=hidden.device)
    return out.index_put((index,), values.to(out_dtype)).view(labels.shape)
