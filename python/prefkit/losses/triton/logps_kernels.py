"""Triton kernels behind :func:`prefkit.losses.sequence_logps`.

Both kernels are a tiled GEMM ``x @ w.T`` (fp32 accumulator) followed by an epilogue on the
``[BLOCK_T, BLOCK_V]`` tile of logits that never leaves the chip:

- :func:`lse_and_target` (forward): each tile writes the logsumexp of its row segment and, where
  the label falls inside the tile, the label's logit. A ``[tokens, V / BLOCK_V]`` buffer of
  partial logsumexps (1/BLOCK_V of the logits) is then combined with ``torch.logsumexp``. A 2-D grid
  keeps every SM busy without atomics.
- :func:`dlogits` (backward): writes ``g * (onehot(label) - softmax)`` for one
  ``[chunk_tokens, chunk_vocab]`` block, in the input dtype, which cuBLAS then multiplies into
  the hidden and weight gradients. The block is bounded, so memory does not grow with
  tokens x vocab.

``TRITON_INTERPRET=1`` runs them on the CPU with Triton's interpreter. It must be set before
``triton`` is first imported in the process (Triton's own ``tl.sum``/``tl.max`` are jitted at
import), which is why the tests run the kernels in a subprocess.
"""

from __future__ import annotations

import torch

from . import interpret_mode


def _build():
    """The two kernels (their module is imported, and they are built, on first use)."""
    from . import _jit

    return _jit._lse_kernel, _jit._dlogits_kernel


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


def lse_and_target(x, weight, bias, targets):
    """Forward: ``(lse, target_logit)`` of each row of ``x @ weight.T + bias``, in float32.

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
    lse_kernel, _ = _build()
    n, h = x.shape
    v = weight.shape[0]
    tiles, launch = _config(x)
    n_vblocks = -(-v // tiles["BLOCK_V"])
    part = torch.empty((n, n_vblocks), dtype=torch.float32, device=x.device)
    target = torch.empty(n, dtype=torch.float32, device=x.device)
    b, has_bias = _bias_arg(bias, x)
    grid = (-(-n // tiles["BLOCK_T"]), n_vblocks)
    lse_kernel[grid](
        x,
        weight,
        b,
        targets,
        part,
        target,
        n,
        v,
        h,
        x.stride(0),
        weight.stride(0),
        n_vblocks,
        HAS_BIAS=has_bias,
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
    _, dlogits_kernel = _build()
    n, h = x.shape
    v = weight.shape[0]
    tiles, launch = _config(x)
    out = torch.empty((n, v), dtype=out_dtype, device=x.device)
    b, has_bias = _bias_arg(bias, x)
    grid = (-(-n // tiles["BLOCK_T"]), -(-v // tiles["BLOCK_V"]))
    dlogits_kernel[grid](
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
