"""The @triton.jit kernels themselves (see :mod:`.logps_kernels` for what they compute).

Kept in their own module so that ``import prefkit.losses`` never imports triton: this module is
imported on the first kernel launch.
"""

import triton
import triton.language as tl


@triton.jit
def _logits_tile(
    X,
    W,
    B,
    n,
    V,
    H,
    stride_x,
    stride_w,
    offs_t,
    offs_v,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    acc = tl.zeros((BLOCK_T, BLOCK_V), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        xk = tl.load(
            X + offs_t[:, None] * stride_x + offs_k[None, :],
            mask=(offs_t[:, None] < n) & (offs_k[None, :] < H),
            other=0.0,
        )
        wk = tl.load(
            W + offs_v[:, None] * stride_w + offs_k[None, :],
            mask=(offs_v[:, None] < V) & (offs_k[None, :] < H),
            other=0.0,
        )
        if DOT_FP32:
            # Triton's CPU interpreter computes bf16 tl.dot wrongly (3.9): upcast there only.
            xk = xk.to(tl.float32)
            wk = wk.to(tl.float32)
        # fp32 inputs must not silently drop to TF32: the fused path has to match the
        # unfused one to 1e-5.
        if IEEE:
            acc = tl.dot(xk, tl.trans(wk), acc, input_precision="ieee")
        else:
            acc = tl.dot(xk, tl.trans(wk), acc)
    if HAS_BIAS:
        b = tl.load(B + offs_v, mask=offs_v < V, other=0.0).to(tl.float32)
        acc += b[None, :]
    return acc


@triton.jit
def _lse_kernel(
    X,
    W,
    B,
    Y,
    PART,
    TGT,
    LOGITS,
    n,
    V,
    H,
    stride_x,
    stride_w,
    stride_l,
    n_vblocks,
    HAS_BIAS: tl.constexpr,
    STORE_LOGITS: tl.constexpr,
    IEEE: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_v = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    acc = _logits_tile(
        X,
        W,
        B,
        n,
        V,
        H,
        stride_x,
        stride_w,
        offs_t,
        offs_v,
        HAS_BIAS,
        IEEE,
        DOT_FP32,
        BLOCK_T,
        BLOCK_V,
        BLOCK_K,
    )
    row_ok = offs_t < n
    if STORE_LOGITS:
        # int64 offsets: a [tokens, V] block can pass 2**31 elements.
        tl.store(
            LOGITS + offs_t.to(tl.int64)[:, None] * stride_l + offs_v[None, :],
            acc.to(LOGITS.dtype.element_ty),
            mask=row_ok[:, None] & (offs_v[None, :] < V),
        )
    acc = tl.where(offs_v[None, :] < V, acc, float("-inf"))
    m = tl.max(acc, axis=1)
    part = m + tl.log(tl.sum(tl.exp(acc - m[:, None]), axis=1))
    tl.store(PART + offs_t * n_vblocks + pid_v, part, mask=row_ok)
    y = tl.load(Y + offs_t, mask=row_ok, other=-1)
    hit = offs_v[None, :] == y[:, None]
    target = tl.sum(tl.where(hit, acc, 0.0), axis=1)
    mine = (y >= pid_v * BLOCK_V) & (y < pid_v * BLOCK_V + BLOCK_V)
    tl.store(TGT + offs_t, target, mask=row_ok & mine)


@triton.jit
def _dlogits_kernel(
    X,
    W,
    B,
    Y,
    LSE,
    G,
    D,
    n,
    V,
    H,
    stride_x,
    stride_w,
    stride_d,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_v = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    acc = _logits_tile(
        X,
        W,
        B,
        n,
        V,
        H,
        stride_x,
        stride_w,
        offs_t,
        offs_v,
        HAS_BIAS,
        IEEE,
        DOT_FP32,
        BLOCK_T,
        BLOCK_V,
        BLOCK_K,
    )
    row_ok = offs_t < n
    lse = tl.load(LSE + offs_t, mask=row_ok, other=0.0)
    g = tl.load(G + offs_t, mask=row_ok, other=0.0)
    y = tl.load(Y + offs_t, mask=row_ok, other=-1)
    p = tl.exp(acc - lse[:, None])
    onehot = tl.where(offs_v[None, :] == y[:, None], 1.0, 0.0)
    d = g[:, None] * (onehot - p)
    tl.store(
        D + offs_t[:, None] * stride_d + offs_v[None, :],
        d.to(D.dtype.element_ty),
        mask=row_ok[:, None] & (offs_v[None, :] < V),
    )


@triton.jit
def _dlogits_in_place_kernel(
    L,
    LSE,
    G,
    Y,
    D,
    V,
    stride_l,
    stride_d,
    BLOCK: tl.constexpr,
):
    # One program per row, walking its columns in order. D may be L's own storage holding a
    # narrower dtype (bf16 d over fp32 logits): the store of tile k then lands on this row's
    # logits [k*BLOCK/2, (k+1)*BLOCK/2), which tiles 0..k loaded, never on later tiles. The
    # barrier makes every warp finish tile k's loads before any warp stores over them.
    row = tl.program_id(0).to(tl.int64)
    lse = tl.load(LSE + row)
    g = tl.load(G + row)
    y = tl.load(Y + row)
    for v0 in range(0, V, BLOCK):
        offs = v0 + tl.arange(0, BLOCK)
        ok = offs < V
        logit = tl.load(L + row * stride_l + offs, mask=ok, other=0.0)
        d = g * (tl.where(offs == y, 1.0, 0.0) - tl.exp(logit - lse))
        tl.debug_barrier()
        tl.store(D + row * stride_d + offs, d.to(D.dtype.element_ty), mask=ok)
