"""Collators: tokenised pairs and lists (``pk.tokenize_pairs`` / ``pk.tokenize_lists``) to tensors.

Two layouts (details and pictures in docs/batches.md):

- **padded**: one row per completion, ``prompt + completion`` right-padded to the longest row.
- **packed** (padding-free): every sequence of the batch end to end in one row ``[1, N]``, with
  ``position_ids`` and ``cu_seqlens``. With ``share_prompt=True`` (the default) a pair or a list
  is one segment ``prompt, completion 1, completion 2, ...`` in which the prompt appears once;
  the completions continue the prompt's positions and must not see each other, which the
  boolean ``attention_mask [1, 1, N, N]`` (or ``segment_ids``/``branch_ids`` for FlexAttention)
  expresses. With ``share_prompt=False`` each completion is its own segment ``prompt +
  completion`` and ``position_ids``/``cu_seqlens`` alone describe the batch: flash-attention
  varlen, or transformers' packed-sequence detection from ``position_ids`` (call the model with
  ``attention_mask=None`` and ``use_cache=False``: with a cache it skips the detection and
  attends across segments).

Labels are **already shifted**: ``labels[r, t]`` is the token that the hidden state at
``[r, t]`` predicts, ``-100`` where there is no loss (prompt, padding, a completion's last
token), which is what :func:`prefkit.losses.sequence_logps` and the fused losses expect. In the
packed layout they are aligned with ``gather_hidden(hidden, batch)``, which picks the positions
that predict each completion's tokens into ``[rows, T, H]``; in the padded layout that function
returns the hidden states unchanged. Rows are the ``B`` chosen completions then the ``B``
rejected ones (pairs), or list-major ``i * K + k`` (lists).

torch is imported when a batch is built, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit._errors import PrefkitError
from prefkit.batches import plan_batches
from prefkit.io import as_table

IGNORE_INDEX = -100


def gather_hidden(hidden: Any, batch: Mapping[str, Any]) -> Any:
    """The hidden states that ``batch["labels"]`` refers to, as ``[rows, T, H]``.

    For a packed batch, picks from ``hidden [1, N, H]`` the position that predicts each
    completion token (the prompt's last token is shared by every completion of a list); for a
    padded batch, returns ``hidden`` itself.

    Examples
    --------
    >>> import torch, prefkit as pk
    >>> collate = pk.PairCollator(pad_token_id=0, packed=True)
    >>> batch = collate([{"prompt_ids": [1, 5], "chosen_ids": [7, 2], "rejected_ids": [8, 2]}])
    >>> batch["input_ids"].tolist(), batch["position_ids"].tolist()
    ([[1, 5, 7, 2, 8, 2]], [[0, 1, 2, 3, 2, 3]])
    >>> hidden = torch.arange(6.0).view(1, 6, 1)          # stands for the model's output
    >>> pk.gather_hidden(hidden, batch)[..., 0].tolist(), batch["labels"].tolist()
    ([[1.0, 2.0], [1.0, 4.0]], [[7, 2], [8, 2]])
    """
    index = batch.get("gather_index") if isinstance(batch, Mapping) else None
    if index is None:
        return hidden
    if hidden.dim() != 3 or hidden.shape[0] != 1:
        raise PrefkitError(f"a packed batch needs hidden of shape [1, N, H], got "
                           f"{tuple(hidden.shape)}")
    return hidden[0][index]


def _int_lists(rows: Any, name: str) -> list[np.ndarray]:
    """Column ``name`` of a table or of a sequence of mappings as one int64 array per row."""
    if isinstance(rows, pa.Table):
        if name not in rows.column_names:
            raise PrefkitError(f"column '{name}' not found; the batch has columns "
                               f"{rows.column_names}")
        array = rows.column(name).combine_chunks()
        if array.null_count:
            raise PrefkitError(f"column '{name}' has a null at row "
                               f"{int(pc.index(pc.is_null(array), True).as_py())}")
        values = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = array.offsets.to_numpy().astype(np.int64)
        offsets = offsets - offsets[0]
        return [values[offsets[i]:offsets[i + 1]] for i in range(len(array))]
    try:
        return [np.asarray(row[name], dtype=np.int64).reshape(-1) for row in rows]
    except KeyError as err:
        raise PrefkitError(f"column '{name}' not found in a batch row") from err


def _nested_int_lists(rows: Any, name: str) -> list[list[np.ndarray]]:
    """A ``list<list<int>>`` column as a list (rows) of lists (responses) of int64 arrays."""
    if isinstance(rows, pa.Table):
        if name not in rows.column_names:
            raise PrefkitError(f"column '{name}' not found; the batch has columns "
                               f"{rows.column_names}")
        outer = rows.column(name).combine_chunks()
        inner = _int_lists(pa.table({name: pc.list_flatten(outer)}), name)
        offsets = outer.offsets.to_numpy().astype(np.int64)
        offsets = offsets - offsets[0]
        return [inner[offsets[i]:offsets[i + 1]] for i in range(len(outer))]
    return [[np.asarray(r, dtype=np.int64).reshape(-1) for r in row[name]] for row in rows]


def _optional(rows: Any, name: str | None) -> list | None:
    """Column ``name`` as Python values, or None when the batch does not have it."""
    if name is None:
        return None
    if isinstance(rows, pa.Table):
        return rows.column(name).to_pylist() if name in rows.column_names else None
    if rows and all(isinstance(row, Mapping) and name in row for row in rows):
        return [row[name] for row in rows]
    return None


def _as_rows(rows: Any) -> Any:
    if isinstance(rows, (pa.Table, pa.RecordBatch)) or hasattr(rows, "__arrow_c_stream__"):
        return as_table(rows)
    if isinstance(rows, Sequence) and all(isinstance(row, Mapping) for row in rows):
        return rows
    raise PrefkitError(
        f"a batch must be an Arrow table of rows or a sequence of row dicts, got "
        f"{type(rows).__name__}"
    )


def _collate(prompts: list[np.ndarray], completions: list[list[np.ndarray | None]],
             order: list[tuple[int, int]], pad_token_id: int, packed: bool,
             share_prompt: bool, dense_mask: bool, pad_to_multiple_of: int | None) -> dict:
    """Tensors for examples ``prompt + completions``; ``order`` lists the (example, slot) of
    every output row, a slot being None (missing response of a short list) allowed."""
    import torch

    if packed:
        return _packed(prompts, completions, order, share_prompt, dense_mask, torch)
    lengths = [len(prompts[e]) + (0 if completions[e][k] is None else len(completions[e][k]))
               for e, k in order]
    width = max(lengths, default=0)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(order), width), pad_token_id, np.int64)
    attention = np.zeros((len(order), width), np.int64)
    labels = np.full((len(order), width), IGNORE_INDEX, np.int64)
    for r, (e, k) in enumerate(order):
        prompt, completion = prompts[e], completions[e][k]
        p = len(prompt)
        input_ids[r, :p] = prompt
        attention[r, :lengths[r]] = 1
        if completion is None:
            # A missing response of a short list: the row is its prompt alone (attention
            # over real tokens keeps every hidden state finite), with no labels.
            continue
        c = len(completion)
        input_ids[r, p:p + c] = completion
        # Position t predicts token t + 1: the prompt's last token predicts the first
        # completion token. Without a prompt the first completion token has no predictor.
        if p:
            labels[r, p - 1:p + c - 1] = completion
        elif c:
            labels[r, :c - 1] = completion[1:]
    return {"input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "labels": torch.from_numpy(labels)}


def _packed(prompts, completions, order, share_prompt, dense_mask, torch) -> dict:
    tokens: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    branches: list[np.ndarray] = []
    segments: list[int] = []  # length of each segment
    starts: dict[tuple[int, int], tuple[int, int]] = {}  # (e, k) -> (prompt start, own start)
    cursor = 0

    def put(ids, pos, branch):
        nonlocal cursor
        tokens.append(ids)
        positions.append(pos)
        branches.append(np.full(len(ids), branch, np.int64))
        cursor += len(ids)
        return cursor - len(ids)

    for e, prompt in enumerate(prompts):
        p = len(prompt)
        present = [k for k, c in enumerate(completions[e]) if c is not None]
        if share_prompt:
            seg = cursor
            head = put(prompt, np.arange(p), 0)
            for k in present:
                starts[e, k] = (head, put(completions[e][k], p + np.arange(len(completions[e][k])),
                                          k + 1))
            segments.append(cursor - seg)
        else:
            for k in present:
                head = put(prompt, np.arange(p), 0)
                c = completions[e][k]
                starts[e, k] = (head, put(c, p + np.arange(len(c)), 1))
                segments.append(p + len(c))
    n = cursor
    width = 0
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for e, k in order:
        completion = completions[e][k]
        if completion is None:
            rows.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        head, own = starts[e, k]
        c, p = len(completion), len(prompts[e])
        # Positions predicting each completion token: the prompt's last one, then the
        # completion's own tokens but its last.
        if p:
            index = np.concatenate(([head + p - 1], own + np.arange(c - 1))) if c else \
                np.zeros(0, np.int64)
            target = completion
        else:
            index, target = own + np.arange(max(c - 1, 0)), completion[1:]
        rows.append((index.astype(np.int64), target))
        width = max(width, len(index))
    gather = np.zeros((len(order), width), np.int64)
    labels = np.full((len(order), width), IGNORE_INDEX, np.int64)
    for r, (index, target) in enumerate(rows):
        gather[r, :len(index)] = index
        labels[r, :len(target)] = target
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
    input_ids, position_ids, branch_ids = cat(tokens), cat(positions), cat(branches)
    segment_ids = np.repeat(np.arange(len(segments)), segments)
    cu_seqlens = np.zeros(len(segments) + 1, np.int32)
    np.cumsum(segments, out=cu_seqlens[1:])
    batch = {
        "input_ids": torch.from_numpy(input_ids.astype(np.int64))[None],
        "position_ids": torch.from_numpy(position_ids.astype(np.int64))[None],
        "labels": torch.from_numpy(labels),
        "gather_index": torch.from_numpy(gather),
        "cu_seqlens": torch.from_numpy(cu_seqlens),
        "max_seqlen": int(max(segments, default=0)),
        "segment_ids": torch.from_numpy(segment_ids)[None],
        "branch_ids": torch.from_numpy(branch_ids)[None],
    }
    if dense_mask:
        seg = torch.from_numpy(segment_ids)
        branch = torch.from_numpy(branch_ids)
        causal = torch.ones(n, n, dtype=torch.bool).tril_()
        same = seg[:, None] == seg[None, :]
        visible = (branch[None, :] == 0) | (branch[None, :] == branch[:, None])
        batch["attention_mask"] = (causal & same & visible)[None, None]
    return batch


def _check_pad(pad_token_id: Any) -> int:
    if not isinstance(pad_token_id, int) or isinstance(pad_token_id, bool) or pad_token_id < 0:
        raise PrefkitError(
            f"pad_token_id must be an integer >= 0 (e.g. tokenizer.pad_token_id, or the EOS id "
            f"when the tokenizer has no pad token), got {pad_token_id!r}"
        )
    return pad_token_id


def _lengths(tokenized: Any, name: str) -> np.ndarray:
    table = as_table(tokenized)
    if name not in table.column_names:
        raise PrefkitError(f"column '{name}' not found; the table has columns "
                           f"{table.column_names}")
    return pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(
        np.int64)


class _Base:
    packed: bool
    columns: tuple
    extras: tuple

    def lengths(self, tokenized: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def plan(self, tokenized: Any, *, max_tokens: int, shuffle: bool = True,
             seed: int = 0) -> list[np.ndarray]:
        """Batches of rows of ``tokenized`` under ``max_tokens`` in this collator's layout.

        ``pk.plan_batches`` over :meth:`lengths`, counting padded or packed tokens as the
        collator will lay them out. Feed the rows of each batch to the
        collator, or pass the plan to a DataLoader as ``batch_sampler``.

        Examples
        --------
        >>> import prefkit as pk, pyarrow as pa
        >>> tokenized = pa.table({"prompt_ids": [[1, 2], [1], [1, 2, 3]],
        ...                       "chosen_ids": [[4], [5, 6], [7]], "rejected_ids": [[8]] * 3})
        >>> pk.PairCollator(0).lengths(tokenized).tolist()      # 2 * (prompt + longer one)
        [6, 6, 8]
        >>> [b.tolist() for b in pk.PairCollator(0).plan(tokenized, max_tokens=12, shuffle=False)]
        [[0, 1], [2]]
        """
        return plan_batches(self.lengths(tokenized), max_tokens=max_tokens,
                            packed=self.packed, shuffle=shuffle, seed=seed)

    def batches(self, tokenized: Any, *, max_tokens: int, shuffle: bool = True,
                seed: int = 0) -> Iterator[dict]:
        """Collated batches over all of ``tokenized``, planned by :meth:`plan`.

        Only the columns the collator reads are gathered (pyarrow cannot ``take`` the
        string_view text columns that prefkit results may hold).

        Examples
        --------
        >>> import prefkit as pk, pyarrow as pa
        >>> tokenized = pa.table({"prompt": pa.array(["a", "b"], pa.string_view()),
        ...                       "prompt_ids": [[1, 2], [1]], "chosen_ids": [[4], [5, 6]],
        ...                       "rejected_ids": [[8], [9]]})
        >>> collate = pk.PairCollator(0, packed=True)
        >>> [b["input_ids"].shape[1] for b in collate.batches(tokenized, max_tokens=100)]
        [8]
        """
        table = as_table(tokenized)
        wanted = [c for c in (*self.columns, *self.extras) if c and c in table.column_names]
        table = table.select(wanted)
        for rows in self.plan(table, max_tokens=max_tokens, shuffle=shuffle, seed=seed):
            yield self(table.take(pa.array(rows)))


class PairCollator(_Base):
    """Tensors for a batch of tokenised pairs (``pk.tokenize_pairs`` rows).

    Parameters
    ----------
    pad_token_id
        Token for padding (padded layout); it is never attended to nor scored.
    packed
        Padding-free layout: one row ``[1, N]`` with ``position_ids``, ``cu_seqlens``.
    share_prompt
        Packed only: each pair is one segment in which the prompt appears once (the two
        completions continue its positions and do not see each other). False gives each
        completion its own ``prompt + completion`` segment.
    attention_mask
        Packed only: build the boolean ``[1, 1, N, N]`` mask (True = may attend) that eager or
        SDPA attention needs for a shared prompt. It takes ``N^2`` bytes; turn it off for
        flash-attention varlen (``share_prompt=False``) or FlexAttention (build the block mask
        from ``segment_ids``/``branch_ids``).
    pad_to_multiple_of
        Padded only: round the row length up (tensor-core friendly shapes).
    prompt_ids, chosen_ids, rejected_ids
        Column names.

    Returns (when called)
    ---------------------
    dict
        Padded: ``input_ids``, ``attention_mask`` (``[2B, T]``, 1 for real tokens),
        ``labels [2B, T]``. Packed: ``input_ids``, ``position_ids`` ``[1, N]``, ``labels`` and
        ``gather_index`` ``[2B, Tc]``, ``cu_seqlens`` (int32), ``max_seqlen``, ``segment_ids``,
        ``branch_ids`` and, with ``attention_mask=True``, ``attention_mask [1, 1, N, N]``
        (bool). Rows are the ``B`` chosen completions, then the ``B`` rejected ones. Columns
        ``ref_chosen_logps``/``ref_rejected_logps`` (from ``pk.reference_logps``) come along
        as ``[B]`` tensors.

    Examples
    --------
    >>> import prefkit as pk
    >>> rows = [{"prompt_ids": [1, 5, 6], "chosen_ids": [7, 2], "rejected_ids": [8, 9, 2]}]
    >>> batch = pk.PairCollator(pad_token_id=0)(rows)
    >>> batch["input_ids"].tolist()
    [[1, 5, 6, 7, 2, 0], [1, 5, 6, 8, 9, 2]]
    >>> batch["labels"].tolist()        # labels[b, t] is the token input t predicts
    [[-100, -100, 7, 2, -100, -100], [-100, -100, 8, 9, 2, -100]]

    Training step (``model`` a transformers causal LM, ``tokenized`` from
    ``pk.reference_logps(ref_model, pk.tokenize_pairs(...))``)::

        collate = pk.PairCollator(tokenizer.pad_token_id)
        for batch in collate.batches(tokenized, max_tokens=8192, seed=epoch):
            hidden = model.model(input_ids=batch["input_ids"],
                                 attention_mask=batch.get("attention_mask"),
                                 position_ids=batch.get("position_ids")).last_hidden_state
            loss, metrics = loss_fn(pk.gather_hidden(hidden, batch), model.lm_head.weight,
                                    batch["labels"], batch["ref_chosen_logps"],
                                    batch["ref_rejected_logps"])
    """

    def __init__(self, pad_token_id: int, *, packed: bool = False, share_prompt: bool = True,
                 attention_mask: bool = True, pad_to_multiple_of: int | None = None,
                 prompt_ids: str = "prompt_ids", chosen_ids: str = "chosen_ids",
                 rejected_ids: str = "rejected_ids"):
        self.pad_token_id = _check_pad(pad_token_id)
        self.packed, self.share_prompt, self.attention_mask = packed, share_prompt, attention_mask
        self.pad_to_multiple_of = pad_to_multiple_of
        self.columns = (prompt_ids, chosen_ids, rejected_ids)
        self.extras = ("ref_chosen_logps", "ref_rejected_logps")

    def __repr__(self) -> str:
        return (f"PairCollator(pad_token_id={self.pad_token_id}, packed={self.packed}, "
                f"share_prompt={self.share_prompt})")

    def __call__(self, rows: Any) -> dict:
        """Collate ``rows``: an Arrow table (some rows of a tokenised table) or row dicts."""
        import torch

        rows = _as_rows(rows)
        prompts, chosen, rejected = (_int_lists(rows, c) for c in self.columns)
        b = len(prompts)
        order = [(i, 0) for i in range(b)] + [(i, 1) for i in range(b)]
        batch = _collate(prompts, [[c, r] for c, r in zip(chosen, rejected)], order,
                         self.pad_token_id, self.packed, self.share_prompt,
                         self.attention_mask, self.pad_to_multiple_of)
        for name in ("ref_chosen_logps", "ref_rejected_logps"):
            values = _optional(rows, name)
            if values is not None:
                # Keep float64 reference log-probs as such (pk.reference_logps(dtype=...)).
                wide = isinstance(rows, pa.Table) and pa.types.is_float64(
                    rows.schema.field(name).type)
                batch[name] = torch.tensor(values, dtype=torch.float64 if wide else
                                           torch.float32)
        return batch

    def lengths(self, tokenized: Any) -> np.ndarray:
        """Tokens each pair costs in this layout, for ``pk.plan_batches``.

        Padded: ``2 * (prompt + longer completion)`` (two rows of the batch width); packed:
        ``prompt + chosen + rejected``, or ``2 * prompt + chosen + rejected`` without a shared
        prompt.
        """
        p, c, r = (_lengths(tokenized, name) for name in self.columns)
        if not self.packed:
            return 2 * (p + np.maximum(c, r))
        return (1 if self.share_prompt else 2) * p + c + r


class ListCollator(_Base):
    """Tensors for a batch of tokenised ranked lists (``pk.tokenize_lists`` rows).

    Parameters
    ----------
    pad_token_id, packed, share_prompt, attention_mask, pad_to_multiple_of
        As in :class:`PairCollator`.
    list_size
        ``K``, the responses per list in the batch; shorter lists are padded with empty
        responses (``mask`` False), longer ones raise. None: the longest list of the batch.
    prompt_ids, response_ids, scores
        Column names.

    Returns (when called)
    ---------------------
    dict
        As :class:`PairCollator` with ``B * K`` rows, list-major (row ``i * K + k`` is
        response ``k`` of list ``i``), plus ``scores [B, K]`` (float32, 0 where padded) and
        ``mask [B, K]`` (bool), and ``ref_logps [B, K]`` when the batch has that column. A
        padded response has no tokens in the packed layout, and is its prompt alone, with no
        labels, in the padded one. These feed ``FusedLinearListLoss``.

    Examples
    --------
    >>> import prefkit as pk
    >>> rows = [{"prompt_ids": [1, 5], "response_ids": [[7, 2], [8, 2]], "scores": [2.0, 1.0]},
    ...         {"prompt_ids": [1], "response_ids": [[9, 2]], "scores": [0.5]}]
    >>> batch = pk.ListCollator(pad_token_id=0, packed=True)(rows)
    >>> batch["input_ids"].tolist(), batch["cu_seqlens"].tolist()
    ([[1, 5, 7, 2, 8, 2, 1, 9, 2]], [0, 6, 9])
    >>> batch["mask"].tolist()
    [[True, True], [True, False]]
    """

    def __init__(self, pad_token_id: int, *, packed: bool = False, share_prompt: bool = True,
                 attention_mask: bool = True, pad_to_multiple_of: int | None = None,
                 list_size: int | None = None, prompt_ids: str = "prompt_ids",
                 response_ids: str = "response_ids", scores: str = "scores"):
        self.pad_token_id = _check_pad(pad_token_id)
        if list_size is not None and (not isinstance(list_size, int) or list_size < 1):
            raise PrefkitError(f"list_size must be None or an integer >= 1, got {list_size!r}")
        self.packed, self.share_prompt, self.attention_mask = packed, share_prompt, attention_mask
        self.pad_to_multiple_of, self.list_size = pad_to_multiple_of, list_size
        self.columns = (prompt_ids, response_ids, scores)
        self.extras = ("ref_logps",)

    def __repr__(self) -> str:
        return (f"ListCollator(pad_token_id={self.pad_token_id}, packed={self.packed}, "
                f"share_prompt={self.share_prompt}, list_size={self.list_size})")

    def __call__(self, rows: Any) -> dict:
        """Collate ``rows``: an Arrow table (some rows of a tokenised table) or row dicts."""
        import torch

        rows = _as_rows(rows)
        prompt_name, response_name, score_name = self.columns
        prompts = _int_lists(rows, prompt_name)
        responses = _nested_int_lists(rows, response_name)
        longest = max((len(r) for r in responses), default=0)
        k = self.list_size or longest
        if longest > k:
            row = next(i for i, r in enumerate(responses) if len(r) > k)
            raise PrefkitError(f"row {row} of the batch has {len(responses[row])} responses, "
                               f"more than list_size={k}")
        slots = [list(r) + [None] * (k - len(r)) for r in responses]
        order = [(i, j) for i in range(len(prompts)) for j in range(k)]
        batch = _collate(prompts, slots, order, self.pad_token_id, self.packed,
                         self.share_prompt, self.attention_mask, self.pad_to_multiple_of)
        mask = np.zeros((len(prompts), k), bool)
        for i, r in enumerate(responses):
            mask[i, :len(r)] = True
        batch["mask"] = torch.from_numpy(mask)
        for name, key in ((score_name, "scores"), ("ref_logps", "ref_logps")):
            values = _optional(rows, name)
            if values is None:
                continue
            dense = np.zeros((len(prompts), k), np.float64)
            for i, v in enumerate(values):
                if v is None or len(v) != len(responses[i]):
                    raise PrefkitError(f"column '{name}' must hold one value per response; "
                                       f"row {i} of the batch does not")
                dense[i, :len(v)] = v
            # float32 like the model's log-probs; ref_logps keep float64 when stored so.
            kind = _optional_dtype(rows, name)
            batch[key] = torch.from_numpy(dense.astype(kind))
        return batch

    def lengths(self, tokenized: Any) -> np.ndarray:
        """Tokens each list costs in this layout, for ``pk.plan_batches``.

        Padded: ``K * (prompt + longest response)``; packed: ``prompt + sum(responses)``, or
        ``K * prompt + sum(responses)`` without a shared prompt (``K``: the list's size, or
        ``list_size``).
        """
        prompt_name, response_name, _ = self.columns
        p = _lengths(tokenized, prompt_name)
        table = as_table(tokenized)
        nested = table.column(response_name).combine_chunks()
        k = pc.list_value_length(nested).to_numpy(zero_copy_only=False).astype(np.int64)
        inner = pc.list_value_length(pc.list_flatten(nested)).to_numpy(
            zero_copy_only=False).astype(np.int64)
        parents = pc.list_parent_indices(nested).to_numpy().astype(np.int64)
        total = np.zeros(len(p), np.int64)
        np.add.at(total, parents, inner)
        longest = np.zeros(len(p), np.int64)
        np.maximum.at(longest, parents, inner)
        slots = np.full(len(p), self.list_size) if self.list_size else k
        if not self.packed:
            return slots * (p + longest)
        return (1 if self.share_prompt else k) * p + total


def _optional_dtype(rows: Any, name: str) -> Any:
    """float64 for a float64 Arrow list column, else float32."""
    if isinstance(rows, pa.Table) and name in rows.column_names:
        dtype = rows.schema.field(name).type
        if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and \
                pa.types.is_float64(dtype.value_type) and name.startswith("ref"):
            return np.float64
    return np.float32
