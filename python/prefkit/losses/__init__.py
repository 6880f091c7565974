"""Preference losses for training on prefkit's pairs and lists (needs torch).

- :func:`preference_loss`: the DPO family (TRL v1 formulas) on per-sequence log-probs.
- :func:`list_loss`: listwise losses (Plackett-Luce, LiPO-lambda, all-pairs logistic).
- :func:`sequence_logps`: per-sequence log-probs from hidden states and the LM head without
  materialising ``[tokens, vocab]`` logits (Triton kernels on CUDA, chunked torch elsewhere).
- :class:`FusedLinearPreferenceLoss`, :class:`FusedLinearListLoss`: the two combined.
- :func:`token_logps`, :func:`sparse_token_weights`: per-token log-probs and token masks for
  token-level weighting (``token_weights=`` of :func:`sequence_logps` and the fused modules).
- :func:`diffusion_dpo_loss`, :func:`smpo_loss`, :func:`mapo_loss`, :func:`d3po_loss`: preference
  losses on denoising errors for text-to-image diffusion models (``losses.diffusion``).
- :func:`general_preference_loss`, :func:`preference_probability`: general preference models
  (preference embeddings, GPM).

``import prefkit`` does not import this subpackage (nor torch); ``import prefkit.losses`` does.

Examples
--------
>>> import torch
>>> from prefkit.losses import preference_loss
>>> loss, metrics = preference_loss(torch.tensor([-5.0]), torch.tensor([-9.0]), beta=0.5)
>>> round(loss.item(), 4)
0.1269
"""

from .diffusion import (
    d3po_loss,
    denoising_losses,
    diffusion_dpo_loss,
    gaussian_step_logprobs,
    mapo_loss,
    smpo_loss,
)
from .fused import FusedLinearListLoss, FusedLinearPreferenceLoss
from .gpm import general_preference_loss, preference_probability, preference_score
from .listwise import list_loss
from .logps import sequence_logps, token_logps
from .preference import preference_loss
from .tokens import sparse_token_weights

__all__ = [
    "FusedLinearListLoss",
    "FusedLinearPreferenceLoss",
    "d3po_loss",
    "denoising_losses",
    "diffusion_dpo_loss",
    "gaussian_step_logprobs",
    "general_preference_loss",
    "list_loss",
    "mapo_loss",
    "preference_loss",
    "preference_probability",
    "preference_score",
    "sequence_logps",
    "smpo_loss",
    "sparse_token_weights",
    "token_logps",
]
