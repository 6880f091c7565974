"""Type stubs of the native module ``prefkit._core`` (built from rust/py).

These functions are the raw Rust operations; use the documented wrappers in ``prefkit``.
Tables cross the boundary through the Arrow PyCapsule interface.
"""

from typing import Any

def mine_pairs(
    table: Any,
    *,
    prompt: str,
    response: str,
    score: list[str],
    group: str | None,
    strategy: str,
    k: int,
    min_margin: float,
    ties: str,
    nan: str,
    max_pairs_per_prompt: int | None,
    length_penalty: float,
    seed: int,
    carry: list[str],
) -> tuple[Any, dict[str, Any]]:
    """Mine pairs; returns an Arrow table (PyCapsule) and the row accounting."""

def plan_batches(
    lengths: Any, *, max_tokens: int, packed: bool, shuffle: bool, seed: int
) -> tuple[Any, Any]:
    """Plan batches; returns Arrow uint64 arrays ``rows`` and ``offsets``."""
