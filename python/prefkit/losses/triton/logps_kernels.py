"""Triton kernels behind :func:`prefkit.losses.sequence_logps`.

The two GEMM kernels are a tiled GEMM ``x @ w.T`` (fp32 accumulator) followed by an epilogue on the
``[BLOCK_T, BLOCK_V]`` tile of logits that never leaves the chip:

- :func:`lse_and_target` (forward): each tile writes the logsumexp of its row segment and, where
  the label falls inside the tile, the label's logit. A ``[tokens, V / BLOCK_V]`` buffer of
  partial logsumexps (1/BLOCK_V of the logits) is then combined with ``torch.logsumexp``. A 2-D grid
  keeps every SM busy without atomics.
- :func:`dlogits` (backward): writes ``g * (onehot(label) - softmax)`` for one
  ``[chunk_tokens, chunk_vocab]`` block, in the input dtype, which cuBLAS then multiplies into
  the hidden and weight gradients. The block is bounded, so memory does not grow with
  tokens x vocab.

For the gradient-in-forward path of the fused losses (:mod:`prefkit.losses.grouped`),
:func:`lse_and_target` can also write the float32 logits of a few groups' tokens, and
:func:`dlogits_in_place` turns them into ``g * (onehot - softmax)`` inside their own storage.

``TRITON_INTERPRET=1`` runs them on the CPU with Triton's interpreter. It must be set before
``triton`` is first imported in the process (Triton's own ``tl.sum``/``tl.max`` are jitted at
import), which is why the tests run the kernels in a subprocess.
"""

from __future__ import annotations

import torch

from . import interpret_mode


def _kernels():
    """The kernels' module (imported, and its kernels built, on first use)."""
    from . import _jit as kernels

    return kernels


def _config(x: torch.Tensor):
    """Kernel flags, tile sizes and launch options for inputs like ``x``.

    Tiles are tensor-core friendly on a GPU and tiny under the CPU interpreter.
    """
    interpret = interpret_mode()
    flags = {"IEEE": x.dtype == torch.float32, "DOT_FP32": interpret}
    if interpret:
        return {**flags, "BLOCK_T": 16, "BLOCK_V": 32, "BLOCK_K": 16}, {}
    if x.element_size() == 2:
        # 128 x 256 tiles measured best on an H200 at H=4096 (646 vs 572 TFLOP/s for 128 x 128).
        tiles = {"BLOCK_T": 128, "BLOCK_V": 256, "BLOCK_K": 64}
        return {**flags, **tiles}, {"num_warps": 8, "num_stages": 3}
    tiles = {"BLOCK_T": 64, "BLOCK_V": 128, "BLOCK_K": 32}
    return {**flags, **tiles}, {"num_warps": 8, "num_stages": 2}


def _bias_arg(bias, x):
    # A dummy pointer when there is no bias; HAS_BIAS=False means it is never read.
    return (bias, True) if bias is not None else (x, False)


def lse_and_target(x, weight, bias, targets, logits=None):
    """Forward: ``(lse, target_logit)`` of each row of ``x @ weight.T + bias``, in float32.

    With ``logits`` (a contiguous ``[n, V]`` buffer), the logits themselves are written there
    too, as the accumulator holds them (float32).

    Parameters
    ----------
    x : torch.Tensor
        ``[n, H]`` hidden states (contiguous rows).
    weight : torch.Tensor
        ``[V, H]`` output embedding.
    bias : torch.Tensor or None
        ``[V]``.
    targets : torch.Tensor
        ``[n]`` int64 labels in ``[0, V)``.
    logits : torch.Tensor, optional
        ``[n, V]`` float32 output for the logits.

    Returns
    -------
    tuple of torch.Tensor
        ``lse`` and ``target`` logits, both ``[n]`` float32.

    Examples
    --------
    On a GPU (or in a process started with ``TRITON_INTERPRET=1``, with CPU tensors):

    >>> import torch
    >>> x = torch.randn(3, 8, device="cuda")  # doctest: +SKIP
    >>> w = torch.randn(20, 8, device="cuda")  # doctest: +SKIP
    >>> y = torch.tensor([0, 5, 19], device="cuda")  # doctest: +SKIP
    >>> lse, tgt = lse_and_target(x, w, None, y)  # doctest: +SKIP
    >>> torch.allclose(lse, torch.logsumexp(x @ w.T, 1), atol=1e-5)  # doctest: +SKIP
    True
    """
    n, h = x.shape
    v = weight.shape[0]
    tiles, launch = _config(x)
    n_vblocks = -(-v // tiles["BLOCK_V"])
    part = torch.empty((n, n_vblocks), dtype=torch.float32, device=x.device)
    target = torch.empty(n, dtype=torch.float32, device=x.device)
    b, has_bias = _bias_arg(bias, x)
    store = logits is not None
    grid = (-(-n // tiles["BLOCK_T"]), n_vblocks)
    _kernels()._lse_kernel[grid](
        x,
        weight,
        b,
        targets,
        part,
        target,
        logits if store else part,  # a dummy pointer when STORE_LOGITS is off
        n,
        v,
        h,
        x.stride(0),
        weight.stride(0),
        logits.stride(0) if store else 0,
        n_vblocks,
        HAS_BIAS=has_bias,
        STORE_LOGITS=store,
        **tiles,
        **launch,
    )
    return torch.logsumexp(part, dim=1), target


def dlogits(x, weight, bias, targets, lse, grad, out_dtype):
    """Backward block: ``grad[:, None] * (onehot(targets) - softmax(x @ weight.T + bias))``.

    ``weight`` is the vocabulary slice of this block and ``targets`` are relative to it (a label
    outside ``[0, len(weight))`` contributes only the softmax part); ``lse`` is the logsumexp
    over the *whole* vocabulary from the forward pass.

    Parameters
    ----------
    x : torch.Tensor
        ``[n, H]``.
    weight : torch.Tensor
        ``[v, H]`` slice of the output embedding (rows contiguous).
    bias : torch.Tensor or None
        ``[v]`` slice.
    targets : torch.Tensor
        ``[n]`` labels relative to the slice.
    lse, grad : torch.Tensor
        ``[n]`` float32 logsumexp and upstream gradient of each token's log-prob.
    out_dtype : torch.dtype
        dtype of the returned block (the GEMM dtype of the gradient products).

    Returns
    -------
    torch.Tensor
        ``[n, v]`` gradient of the token log-probs with respect to the logits.

    Examples
    --------
    On a GPU (or in a process started with ``TRITON_INTERPRET=1``, with CPU tensors):

    >>> import torch
    >>> x = torch.randn(3, 8, device="cuda")  # doctest: +SKIP
    >>> w = torch.randn(20, 8, device="cuda")  # doctest: +SKIP
    >>> y = torch.tensor([0, 5, 19], device="cuda")  # doctest: +SKIP
    >>> lse = torch.logsumexp(x @ w.T, 1)  # doctest: +SKIP
    >>> d = dlogits(x, w, None, y, lse, torch.ones_like(lse), torch.float32)  # doctest: +SKIP
    >>> ref = torch.nn.functional.one_hot(y, 20) - torch.softmax(x @ w.T, 1)  # doctest: +SKIP
    >>> torch.allclose(d, ref, atol=1e-5)  # doctest: +SKIP
    True
    """
    n, h = x.shape
    v = weight.shape[0]
    tiles, launch = _config(x)
    out = torch.empty((n, v), dtype=out_dtype, device=x.device)
    b, has_bias = _bias_arg(bias, x)
    grid = (-(-n // tiles["BLOCK_T"]), -(-v // tiles["BLOCK_V"]))
    _kernels()._dlogits_kernel[grid](
        x,
        weight,
        b,
        targets,
        lse,
        grad,
        out,
        n,
        v,
        h,
        x.stride(0),
        weight.stride(0),
        out.stride(0),
        HAS_BIAS=has_bias,
        **tiles,
        **launch,
    )
    return out


def dlogits_in_place(logits, lse, grad, targets, dtype):
    """``grad[:, None] * (onehot(targets) - exp(logits - lse[:, None]))``, over ``logits``.

    The result is written in ``dtype`` into the logits' own storage (no second ``[n, V]``
    block): for a narrower ``dtype`` each row's result fills the first bytes of that row, so
    the returned ``[n, V]`` view has a row stride of ``V * (4 / 2)`` elements, which cuBLAS
    takes as its leading dimension.

    Parameters
    ----------
    logits : torch.Tensor
        ``[n, V]`` float32, contiguous: the full-vocabulary logits (consumed).
    lse, grad : torch.Tensor
        ``[n]`` float32 logsumexp of each row and upstream gradient of its log-prob.
    targets : torch.Tensor
        ``[n]`` int64 labels in ``[0, V)``.
    dtype : torch.dtype
        dtype of the result, at most as wide as ``logits``.

    Returns
    -------
    torch.Tensor
        ``[n, V]`` view of ``dtype`` sharing the storage of ``logits``.

    Examples
    --------
    On a GPU (or in a process started with ``TRITON_INTERPRET=1``, with CPU tensors):

    >>> import torch
    >>> x = torch.randn(3, 8, device="cuda")  # doctest: +SKIP
    >>> w = torch.randn(20, 8, device="cuda")  # doctest: +SKIP
    >>> y = torch.tensor([0, 5, 19], device="cuda")  # doctest: +SKIP
    >>> logits = x @ w.T  # doctest: +SKIP
    >>> lse = torch.logsumexp(logits, 1)  # doctest: +SKIP
    >>> ref = torch.nn.functional.one_hot(y, 20) - torch.softmax(logits, 1)  # doctest: +SKIP
    >>> d = dlogits_in_place(logits, lse, torch.ones_like(lse), y, torch.bfloat16)  # doctest: +SKIP
    >>> torch.allclose(d.float(), ref, atol=1e-2)  # doctest: +SKIP
    True
    """
    n, v = logits.shape
    out = logits.view(dtype)  # [n, V * ratio] over the same bytes
    if n:
        _kernels()._dlogits_in_place_kernel[(n,)](
            logits,
            lse,
            grad,
            targets,
            out,
            v,
            logits.stride(0),
            out.stride(0),
            BLOCK=64 if interpret_mode() else 4096,
            num_warps=8,
        )
    return out[:, :v]
