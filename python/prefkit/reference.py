"""Reference-model log-probs, computed once per dataset instead of once per training step.

DPO-style losses compare the policy with a frozen reference model. Running that model inside
the training loop doubles the forward cost of every step; its log-probs never change, so
:func:`reference_logps` computes them in one pass (no autograd, token-budget batches from
``pk.plan_batches``) and stores them as columns that the collators hand to the loss.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.collate import ListCollator, PairCollator, gather_hidden
from prefkit.io import as_table, plain_unless_views

_DTYPES = {"float32": (np.float32, pa.float32()), "float64": (np.float64, pa.float64())}


def _head(model: Any) -> tuple[Any, Any, Any]:
    """(decoder giving last hidden states, LM head weight, LM head bias) of a causal LM."""
    config = getattr(model, "config", None)
    # The log-probs come from hidden @ W.T (+ b), as in the fused training losses; heads that
    # rescale or soft-cap logits would silently give different numbers.
    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)
    if softcap or (scale not in (None, 1, 1.0)):
        raise PrefkitError(
            f"{type(model).__name__} rescales its logits (final_logit_softcapping={softcap}, "
            f"logit_scale={scale}); reference_logps and the fused losses use plain "
            f"hidden @ lm_head.weight.T logits"
        )
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    for name in ("model", "base_model"):
        if decoder is None or decoder is model:
            decoder = getattr(model, name, None)
    if head is None or decoder is None or decoder is model:
        raise PrefkitError(
            f"model must be a transformers causal LM with an output embedding (lm_head) and a "
            f"decoder (model.model), got {type(model).__name__}"
        )
    return decoder, head.weight, getattr(head, "bias", None)


def reference_logps(
    model: Any,
    tokenized: Any,
    *,
    max_tokens: int = 8192,
    packed: bool = False,
    dtype: str = "float32",
    device: Any = None,
    progress: bool = True,
    chunk_tokens: int | None = None,
    chunk_vocab: int | None = None,
    views: bool = False,
) -> pa.Table:
    """Add the reference model's log-probs of every completion to a tokenised table.

    Pairs (``pk.tokenize_pairs`` output) get ``ref_chosen_logps`` and ``ref_rejected_logps``;
    lists (``pk.tokenize_lists``) get ``ref_logps`` (one value per response). Each value is the
    sum of the completion's token log-probs given the prompt, exactly what
    ``FusedLinearPreferenceLoss`` computes for the policy, so the two compare directly.

    The model runs in eval mode under ``torch.no_grad()`` over batches planned by
    ``pk.plan_batches`` (similar lengths, at most ``max_tokens`` tokens, in length order) and
    restores its training mode afterwards. Log-probs come from the last hidden states and the
    LM head through :func:`prefkit.losses.sequence_logps`: no ``[tokens, vocab]`` logits.

    Parameters
    ----------
    model
        A transformers causal LM (``LlamaForCausalLM`` and the like): ``model.get_decoder()``
        gives hidden states, ``model.get_output_embeddings()`` the LM head.
    tokenized
        Output of :func:`prefkit.tokenize_pairs` or :func:`prefkit.tokenize_lists`.
    max_tokens
        Token budget of one forward pass (padded tokens, or real ones when ``packed``).
    packed
        Padding-free batches with a shared prompt (see :class:`prefkit.PairCollator`); needs
        an attention implementation that takes a 4-d boolean mask (SDPA, the default).
    dtype
        ``"float32"`` or ``"float64"``: the type of the new columns.
    device
        Where to run; default the model's device.
    progress
        Show a tqdm progress bar (rows) on stderr.
    chunk_tokens, chunk_vocab
        Passed to :func:`prefkit.losses.sequence_logps`.
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        ``tokenized`` with the new columns (replacing any of the same name).

    Examples
    --------
    >>> import torch, prefkit as pk, pyarrow as pa
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32,
    ...                                      num_hidden_layers=1, num_attention_heads=2))
    >>> tokenized = pa.table({"prompt_ids": [[1, 3, 4]], "chosen_ids": [[5, 2]],
    ...                       "rejected_ids": [[6, 7, 2]]})
    >>> out = pk.reference_logps(model, tokenized, progress=False)
    >>> out.column_names[-2:]
    ['ref_chosen_logps', 'ref_rejected_logps']
    >>> bool(out.column("ref_chosen_logps")[0].as_py() < 0)
    True
    """
    import torch
    from tqdm.auto import tqdm

    from prefkit.losses import sequence_logps

    if dtype not in _DTYPES:
        raise PrefkitError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise PrefkitError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    table = as_table(tokenized, argument="tokenized")
    names = table.column_names
    if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(names):
        collate: PairCollator | ListCollator = PairCollator(0, packed=packed)
        is_pairs = True
    elif {"prompt_ids", "response_ids"} <= set(names):
        collate = ListCollator(0, packed=packed, scores=None)
        is_pairs = False
    else:
        raise PrefkitError(
            f"tokenized must come from pk.tokenize_pairs (prompt_ids, chosen_ids, rejected_ids) "
            f"or pk.tokenize_lists (prompt_ids, response_ids); it has columns {names}"
        )
    decoder, weight, bias = _head(model)
    device = torch.device(device) if device is not None else weight.device
    np_dtype, arrow_dtype = _DTYPES[dtype]
    # Pad with a real token id: padded positions are masked out and never scored, but the
    # embedding lookup still needs an id inside the vocabulary.
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    collate.pad_token_id = pad if isinstance(pad, int) and 0 <= pad < weight.shape[0] else 0

    # Length order (no shuffle): similar lengths share a batch, so padding stays small.
    plan = collate.plan(table, max_tokens=max_tokens, shuffle=False)
    # Only the id columns: pyarrow cannot take() the string_view text prefkit results hold.
    ids = table.select([c for c in collate.columns if c])
    if is_pairs:
        results = [np.zeros(table.num_rows, np_dtype), np.zeros(table.num_rows, np_dtype)]
    else:
        sizes = _list_sizes(table)
        offsets = np.zeros(table.num_rows + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        flat = np.zeros(int(offsets[-1]), np_dtype)
    was_training = model.training
    model.eval()
    bar = tqdm(total=table.num_rows, desc="reference log-probs", unit="row", file=sys.stderr,
               disable=not progress)
    try:
        with torch.no_grad():
            for rows in plan:
                batch = collate(ids.take(pa.array(rows)))
                kwargs = {key: batch[key].to(device) for key in
                          ("input_ids", "attention_mask", "position_ids") if key in batch}
                hidden = decoder(**kwargs, use_cache=False).last_hidden_state
                if "gather_index" in batch:
                    hidden = gather_hidden(hidden, {"gather_index": batch["gather_index"].to(
                        device)})
                logps, _ = sequence_logps(hidden, weight, batch["labels"].to(device), bias,
                                          chunk_tokens=chunk_tokens, chunk_vocab=chunk_vocab)
                logps = logps.double().cpu().numpy()
                if is_pairs:
                    results[0][rows] = logps[:len(rows)]
                    results[1][rows] = logps[len(rows):]
                else:
                    k = batch["mask"].shape[1]
                    per_list = logps.reshape(len(rows), k)
                    for i, row in enumerate(rows):
                        flat[offsets[row]:offsets[row + 1]] = per_list[i, :sizes[row]]
                bar.update(len(rows))
    finally:
        bar.close()
        model.train(was_training)

    if is_pairs:
        columns = {"ref_chosen_logps": pa.array(results[0], arrow_dtype),
                   "ref_rejected_logps": pa.array(results[1], arrow_dtype)}
    else:
        columns = {"ref_logps": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                                        pa.array(flat, arrow_dtype))}
    out = table
    for name, array in columns.items():
        if name in out.column_names:
            out = out.drop_columns([name])
        out = out.append_column(name, array)
    parameters = {"max_tokens": max_tokens, "packed": packed, "dtype": dtype,
                  "model": getattr(getattr(model, "config", None), "_name_or_path", None)
                  or type(model).__name__}
    out = plain_unless_views(out, views)
    return attach(out, "reference_logps", parameters,
                  {"rows_in": table.num_rows, "dropped": {}, "batches": len(plan)},
                  source=table)


def _list_sizes(table: pa.Table) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(table.column("response_ids")).to_numpy(
        zero_copy_only=False).astype(np.int64)
