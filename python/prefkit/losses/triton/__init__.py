"""Triton kernels for the fused losses (imported only when they are used).

:func:`available` tells whether the kernels can run on a tensor's device: on CUDA when triton
imports, or anywhere under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, used by the tests).
"""

from __future__ import annotations

import importlib.util
import os


def interpret_mode() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def available(device=None) -> bool:
    """Whether the Triton kernels can run on ``device``.

    Examples
    --------
    >>> import torch
    >>> from prefkit.losses import triton as tk
    >>> isinstance(tk.available(torch.device("cpu")), bool)
    True
    """
    if importlib.util.find_spec("triton") is None:
        return False
    if interpret_mode():
        return True
    return device is not None and getattr(device, "type", None) == "cuda"
