"""Argument checks shared by the loss functions.

Every bad argument becomes a :class:`prefkit._errors.PrefkitError` that names the argument and
what was expected, so a training script fails at the first step with a readable message rather
than deep inside a broadcast or an index error.
"""

from __future__ import annotations

import torch

from prefkit._errors import PrefkitError

REDUCTIONS = ("mean", "sum", "none")


def check_choice(name: str, value: str, choices) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise PrefkitError(f"{name}={value!r} is not supported; expected one of {sorted(choices)}")


def check_tensor(name: str, value, shape=None) -> torch.Tensor:
    """Return ``value`` if it is a tensor of ``shape`` (when given), else raise."""
    if not isinstance(value, torch.Tensor):
        raise PrefkitError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise PrefkitError(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` ("mean", "sum" or "none") to per-item losses."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype losses are computed in: the promoted input dtype, at least float32.

    Half-precision log-probs would lose the small differences DPO-style losses are built on, so
    they are upcast; float64 stays float64 so that tests can compare against exact references.
    """
    dtype = torch.float32
    for t in tensors:
        if t is not None and t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype
