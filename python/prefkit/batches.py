"""Batch plans for training and scoring: rows of similar length under a token budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError


def plan_batches(
    lengths: Any,
    *,
    max_tokens: int,
    packed: bool = False,
    shuffle: bool = True,
    seed: int = 0,
) -> list[np.ndarray]:
    """Group rows into batches of similar length that fit a token budget.

    Rows are sorted by length (stable) and cut greedily: a padded batch costs
    ``rows x longest row`` tokens, a packed one (``packed=True``, padding-free) the sum of its
    lengths; each stays at or under ``max_tokens``. A row longer than the budget gets a batch
    of its own. With ``shuffle=True`` the order of whole batches is shuffled with ``seed``
    (every batch keeps its similar lengths); otherwise batches come shortest first.

    Parameters
    ----------
    lengths
        Token count of every row: a sequence, numpy array or Arrow array of non-negative ints.
    max_tokens
        The budget per batch.
    packed
        Count real tokens (packed batches) instead of padded ones.
    shuffle, seed
        Seeded shuffle of whole batches; the same seed gives the same plan.

    Returns
    -------
    list of numpy.ndarray
        Row indices (int64) of each batch, usable as a DataLoader ``batch_sampler``.

    Examples
    --------
    >>> import prefkit as pk
    >>> [b.tolist() for b in pk.plan_batches([5, 1, 4, 2, 3, 10], max_tokens=8, shuffle=False)]
    [[1, 3], [4, 2], [0], [5]]
    """
    if (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
            or not 1 <= max_tokens < 2**64):
        raise PrefkitError(f"max_tokens must be an integer in [1, 2**64), got {max_tokens!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise PrefkitError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    values = lengths.to_numpy() if isinstance(lengths, (pa.Array, pa.ChunkedArray)) else lengths
    values = np.asarray(values)
    if values.ndim != 1 or (values.size and not np.issubdtype(values.dtype, np.integer)):
        raise PrefkitError(
            f"lengths must be a 1-d sequence of integers, got {values.dtype} of shape "
            f"{values.shape}"
        )
    if values.size and values.min() < 0:
        row = int(np.argmin(values))
        raise PrefkitError(f"lengths must be >= 0, got {values[row]} at row {row}")
    rows, offsets = _core.plan_batches(
        pa.array(values.astype(np.uint64, copy=False), pa.uint64()),
        max_tokens=max_tokens,
        packed=packed,
        shuffle=shuffle,
        seed=seed,
    )
    rows = pa.array(rows).to_numpy().astype(np.int64)
    offsets = pa.array(offsets).to_numpy().astype(np.int64)
    return np.split(rows, offsets[1:-1]) if len(offsets) > 1 else []
