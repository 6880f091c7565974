"""Reward-model scoring: token-budget batches of similar length, exact last-token reads, resumable.

torch and transformers are imported inside the functions that need them, so that
``import prefkit`` works with pyarrow and numpy alone. The decisions (which token is read, how
batches are cut, what a checkpoint folder holds) are written down in ``docs/scoring.md``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.batches import plan_batches
from prefkit.io import as_table, plain_unless_views, remove_stale, replacing, write_error

#: Version of the checkpoint folder layout; a folder written by another layout is refused.
CHECKPOINT_FORMAT = 1
_MANIFEST = "manifest.json"
_SHARD_PREFIX = "rows-"

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


# --------------------------------------------------------------------------------------------
# Inputs: columns to conversations to token ids
# --------------------------------------------------------------------------------------------


def _column(table: pa.Table, name: str, argument: str) -> pa.ChunkedArray:
    if not isinstance(name, str):
        raise PrefkitError(f"{argument} must be a column name, got {name!r}")
    if name not in table.column_names:
        raise PrefkitError(
            f"column '{name}' not found; the table has columns {table.column_names}"
        )
    return table.column(name)


def _is_text(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    )


def _is_messages(dtype: pa.DataType) -> bool:
    listy = pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype)
    if not listy or not pa.types.is_struct(dtype.value_type):
        return False
    names = {field.name for field in dtype.value_type}
    return {"role", "content"} <= names


def _values(column: pa.ChunkedArray, name: str) -> list:
    """Python values of a text or chat-messages column; nulls are refused with their row."""
    if not (_is_text(column.type) or _is_messages(column.type)):
        raise PrefkitError(
            f"column '{name}' must be text (string, large_string, string_view) or chat messages "
            f"(list<struct<role, content>>), got {column.type}"
        )
    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise PrefkitError(f"column '{name}' has a null at row {row}; every row needs a value")
    return column.to_pylist()


def _conversation(prompt: Any, response: Any) -> list[dict]:
    """One chat: a text prompt becomes a user turn, messages are used as they are."""
    turns: list[dict] = []
    for part, role in ((prompt, "user"), (response, "assistant")):
        if part is None:
            continue
        if isinstance(part, str):
            turns.append({"role": role, "content": part})
        else:
            turns.extend({"role": m["role"], "content": m["content"]} for m in part)
    return turns


def _flat_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return "".join(str(m["content"]) for m in value)


def _render(
    prompts: list | None, responses: list, tokenizer: Any, use_template: bool
) -> list[str]:
    """The text each row is scored on, before tokenisation."""
    pairs = zip(prompts if prompts is not None else [None] * len(responses), responses)
    if not responses:
        return []
    if use_template:
        chats = [_conversation(p, r) for p, r in pairs]
        rendered = tokenizer.apply_chat_template(chats, tokenize=False)
        return [rendered] if isinstance(rendered, str) else list(rendered)
    # No template: prompt and response are concatenated as they are (the user's own format).
    return [_flat_text(p) + _flat_text(r) for p, r in pairs]


def _tokenize(
    texts: list[str], tokenizer: Any, special_tokens: bool, max_length: int | None, progress: bool
) -> tuple[list[list[int]], int]:
    """Token ids of every text and how many were truncated to ``max_length``."""
    from tqdm import tqdm

    ids: list[list[int]] = []
    truncated = 0
    chunk = 8192
    with tqdm(
        total=len(texts), desc="tokenizing", unit=" rows", unit_scale=True, file=sys.stderr,
        disable=not progress or len(texts) <= chunk, leave=False,
    ) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            encoded = tokenizer(part, add_special_tokens=special_tokens)["input_ids"]
            if max_length is not None:
                # Only the long rows are encoded again, with the tokenizer's own truncation
                # (it keeps special tokens such as BERT's [SEP] and honours truncation_side).
                long_rows = [i for i, row in enumerate(encoded) if len(row) > max_length]
                if long_rows:
                    cut = tokenizer(
                        [part[i] for i in long_rows], add_special_tokens=special_tokens,
                        truncation=True, max_length=max_length,
                    )["input_ids"]
                    for i, row in zip(long_rows, cut):
                        encoded[i] = row
                    truncated += len(long_rows)
            ids.extend(encoded)
            bar.update(len(part))
    return ids, truncated


# --------------------------------------------------------------------------------------------
# Models: loading, devices, the forward pass that reads one score per row
# --------------------------------------------------------------------------------------------


def _torch_dtype(dtype: Any, torch: Any) -> Any:
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return getattr(torch, _DTYPES[dtype.lower()])
    raise PrefkitError(f"dtype must be 'auto', 'float32', 'bfloat16', 'float16' or a torch.dtype, "
                       f"got {dtype!r}")


def _devices(device: Any, torch: Any) -> list | None:
    """The devices to run on; ``None`` for "auto" (decided by the caller)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return None
    items = list(device) if isinstance(device, (list, tuple)) else [device]
    if not items:
        raise PrefkitError("device must name at least one device")
    try:
        return [torch.device(item) for item in items]
    except (RuntimeError, TypeError) as error:
        raise PrefkitError(f"device must be 'auto', a device or a list of them, got {device!r}: "
                           f"{error}") from None


def _model_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    return name or getattr(model, "__name__", None) or type(model).__name__


def _load(model: Any, tokenizer: Any, devices: list | None, dtype: Any, torch: Any):
    """Return ``(model, tokenizer, devices)``; paths are loaded, objects are kept as they are
    unless ``device``/``dtype`` were given explicitly."""
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModelForSequenceClassification

        if devices is None:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            devices = [torch.device(f"cuda:{i}") for i in range(count)] or [torch.device("cpu")]
        if dtype is None:
            dtype = torch.bfloat16 if devices[0].type == "cuda" else torch.float32
        loaded = AutoModelForSequenceClassification.from_pretrained(str(model), dtype=dtype)
        if tokenizer is None:
            tokenizer = model
        model = loaded.to(devices[0])
    elif hasattr(model, "parameters"):
        # A loaded model stays where the caller put it unless told otherwise: moving a model in
        # place is a side effect the caller should ask for.
        if devices is None:
            first = next(iter(model.parameters()), None)
            devices = [first.device if first is not None else torch.device("cpu")]
        model = model.to(devices[0])
        if dtype is not None:
            model = model.to(dtype)
    elif callable(model):
        if devices is None:
            devices = [torch.device("cuda" if torch.cuda.is_available() else "cpu")]
    else:
        raise PrefkitError(
            "model must be a path or hub name, a loaded sequence-classification model or a "
            f"callable(input_ids, attention_mask) -> scores, got {type(model).__name__}"
        )
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    if tokenizer is None:
        raise PrefkitError("tokenizer is required when model is a loaded model or a callable")
    if hasattr(model, "eval"):
        model.eval()
    return model, tokenizer, devices


def _head_kind(model: Any) -> str:
    """How to read a model's scores.

    ``last_token``: a decoder with a linear ``score`` head over its base model (Llama, Mistral,
    Qwen, Gemma, GPT-2...); prefkit runs the base model and applies the head to the hidden
    state of the last real token itself, found from the attention mask, because transformers
    finds it by searching for the pad id and so reads the wrong token when pad == eos
    (transformers#35352). ``logits``: any other ``PreTrainedModel`` (BERT-style heads pool the
    first token and are padding-safe with the attention mask). ``callable``: a custom head.
    """
    import torch

    config = getattr(model, "config", None)
    prefix = getattr(model, "base_model_prefix", None)
    base = getattr(model, prefix, None) if isinstance(prefix, str) else None
    head = getattr(model, "score", None)
    if (
        config is not None
        and not getattr(config, "is_encoder_decoder", False)
        and isinstance(base, torch.nn.Module)
        and isinstance(head, torch.nn.Linear)
    ):
        return "last_token"
    if config is not None and isinstance(model, torch.nn.Module):
        return "logits"
    return "callable"


def _as_scores(output: Any) -> Any:
    """A [batch] or [batch, k] tensor from whatever a model or callable returned."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    for name in ("logits", "score", "scores", "rewards"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise PrefkitError(
        f"the model returned {type(output).__name__}; expected a tensor of scores or an output "
        "with .logits"
    )


def _forward(model: Any, kind: str, rows: list[list[int]], pad_id: int, device: Any) -> np.ndarray:
    """Scores [len(rows), k] (float64) of one right-padded batch."""
    import torch

    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max())
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    ids[mask] = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
    input_ids = torch.from_numpy(ids).to(device, non_blocking=True)
    attention = torch.from_numpy(mask.astype(np.int64)).to(device, non_blocking=True)
    if kind == "last_token":
        base = getattr(model, model.base_model_prefix)
        hidden = base(input_ids=input_ids, attention_mask=attention, use_cache=False)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden.last_hidden_state
        # Right padding: the last real token sits at (number of ones in the mask) - 1. Reading
        # the mask, never searching for the pad id, keeps this right when pad == eos.
        last = attention.sum(dim=1) - 1
        picked = hidden[torch.arange(len(rows), device=hidden.device), last]
        scores = model.score(picked.to(model.score.weight.dtype))
    elif kind == "logits":
        scores = _as_scores(model(input_ids=input_ids, attention_mask=attention))
    else:
        scores = _as_scores(model(input_ids, attention))
    scores = scores.float()
    if scores.dim() == 1:
        scores = scores[:, None]
    if scores.dim() != 2 or scores.shape[0] != len(rows):
        raise PrefkitError(
            f"the model returned scores of shape {tuple(scores.shape)} for a batch of "
            f"{len(rows)} rows; expected ({len(rows)},) or ({len(rows)}, k)"
        )
    return scores.cpu().numpy().astype(np.float64)


# --------------------------------------------------------------------------------------------
# Checkpoints: finished batches as Parquet shards, resumed by row id
# --------------------------------------------------------------------------------------------


class _Checkpoint:
    """A folder of ``rows-<first row>.parquet`` shards (``row`` int64, ``s0..`` float64) and a
    ``manifest.json`` that ties it to one input, model and tokenisation."""

    def __init__(self, path: str | os.PathLike, fingerprint: dict):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_error(error, self.path) from error
        manifest = self.path / _MANIFEST
        if manifest.exists():
            stored = json.loads(manifest.read_text())
            if stored != fingerprint:
                differs = sorted(
                    key for key in set(stored) | set(fingerprint)
                    if stored.get(key) != fingerprint.get(key)
                )
                raise PrefkitError(
                    f"checkpoint '{self.path}' was written for another run (differs in "
                    f"{', '.join(differs)}); use a new folder or delete this one"
                )
        else:
            with replacing(manifest) as temp:
                temp.write_text(json.dumps(fingerprint, indent=1))
        # A run killed while writing leaves a temporary file behind; it never became a shard.
        remove_stale(self.path)

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows already scored and their scores [rows, k]."""
        import pyarrow.parquet as pq

        rows, scores = [], []
        for shard in sorted(self.path.glob(f"{_SHARD_PREFIX}*.parquet")):
            table = pq.read_table(shard)
            rows.append(table.column("row").to_numpy())
            columns = [c for c in table.column_names if c != "row"]
            scores.append(np.stack([table.column(c).to_numpy() for c in columns], axis=1))
        if not rows:
            return np.empty(0, np.int64), None
        widths = {s.shape[1] for s in scores}
        if len(widths) != 1:
            raise PrefkitError(f"checkpoint '{self.path}' mixes shards of {sorted(widths)} scores")
        done = np.concatenate(rows)
        if len(np.unique(done)) != len(done):
            raise PrefkitError(f"checkpoint '{self.path}' holds a row twice; it is corrupt")
        return done, np.concatenate(scores)

    def append(self, rows: np.ndarray, scores: np.ndarray) -> None:
        import pyarrow.parquet as pq

        # Named by the batch's first row: a row is in at most one shard, so names never clash,
        # even when a resumed run cuts its remaining rows into different batches.
        columns = {"row": pa.array(rows, pa.int64())}
        columns.update({f"s{j}": pa.array(scores[:, j], pa.float64()) for j in range(scores.shape[1])})
        target = self.path / f"{_SHARD_PREFIX}{int(rows.min()):012d}.parquet"
        with replacing(target) as temp:  # atomic: a shard is either whole or absent
            pq.write_table(pa.table(columns), temp)


def _fingerprint(texts: list[str], model_name: str, tokenizer: Any, max_length: Any) -> dict:
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return {
        "format": CHECKPOINT_FORMAT,
        "rows": len(texts),
        "texts_blake2b": digest.hexdigest(),
        "model": model_name,
        "tokenizer": getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__,
        "vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
        "max_length": max_length,
    }


# --------------------------------------------------------------------------------------------
# The run loop: one worker per device pulls batches from a shared queue
# --------------------------------------------------------------------------------------------


def _run_batches(
    batches: list[np.ndarray],
    ids: list[list[int]],
    replicas: list[tuple[Any, Any]],
    kind: str,
    pad_id: int,
    checkpoint: _Checkpoint | None,
    bar: Any,
) -> list[tuple[np.ndarray, np.ndarray]]:
    import torch

    results: list[tuple[np.ndarray, np.ndarray]] = []
    lock = threading.Lock()
    queue = iter(batches)
    errors: list[BaseException] = []
    started = time.perf_counter()
    tokens = [0]

    def work(model: Any, device: Any) -> None:
        # inference_mode is thread-local: each worker enters it.
        with torch.inference_mode():
            while not errors:
                with lock:
                    batch = next(queue, None)
                if batch is None:
                    return
                try:
                    scores = _forward(model, kind, [ids[i] for i in batch], pad_id, device)
                    if checkpoint is not None:
                        checkpoint.append(batch, scores)
                except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(error)
                    return
                with lock:
                    results.append((batch, scores))
                    tokens[0] += sum(len(ids[i]) for i in batch)
                    bar.update(len(batch))
                    elapsed = time.perf_counter() - started
                    if elapsed > 0:
                        bar.set_postfix_str(f"{tokens[0] / elapsed:,.0f} tok/s", refresh=False)

    if len(replicas) == 1:
        work(*replicas[0])  # no thread: tracebacks and KeyboardInterrupt stay simple
    else:
        threads = [threading.Thread(target=work, args=r, daemon=True) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results


def score(
    data: Any,
    model: Any,
    *,
    tokenizer: Any = None,
    prompt: str | None = "prompt",
    response: str = "response",
    output: str = "score",
    chat_template: str | None = "auto",
    max_length: int | None = None,
    max_tokens_per_batch: int = 16384,
    max_rows_per_batch: int | None = None,
    device: Any = "auto",
    dtype: Any = "auto",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    views: bool = False,
) -> pa.Table:
    """Score every row of a table with a reward model; rows come back in input order.

    Rows are tokenised, sorted by length and cut into batches that hold at most
    ``max_tokens_per_batch`` padded tokens (``pk.plan_batches``), right-padded, and each score
    is read at the row's last real token (found from the attention mask, so pad == eos is
    safe). A row's score does not depend on which rows share its batch (within fp32
    rounding). The rules are in ``docs/scoring.md``.

    Parameters
    ----------
    data
        One row per response: pyarrow, polars, pandas, ``datasets.Dataset`` or an Arrow stream.
    model
        A local path (or hub name) that ``AutoModelForSequenceClassification`` loads, a loaded
        model, or a callable ``f(input_ids, attention_mask) -> Tensor[batch] | Tensor[batch, k]``
        for custom heads (right-padded int64 tensors on the chosen device).
    tokenizer
        A tokenizer or its path; defaults to the model's path. Required for loaded models and
        callables.
    prompt, response
        Columns: text, or chat messages (``list<struct<role, content>>``). ``prompt=None``
        scores ``response`` alone (full conversations).
    output
        Name of the score column. A head with k > 1 outputs (multi-objective, ArmoRM-style)
        gives ``{output}_0 .. {output}_{k-1}``. An existing column of that name is replaced.
    chat_template
        ``"auto"``: use the tokenizer's chat template when it has one (a text prompt becomes a
        user turn, the response an assistant turn, messages are used as they are); ``None``:
        score ``prompt + response`` concatenated as they are, with the tokenizer's special tokens.
    max_length
        Truncate longer rows (on the tokenizer's ``truncation_side``); the count is reported.
    max_tokens_per_batch
        Token budget of a batch, padding included. Lower it if the device runs out of memory.
    max_rows_per_batch
        At most this many rows in a batch (``None``: the token budget alone decides); short
        rows under a large budget otherwise make batches of thousands of rows.
    device
        ``"auto"``: every CUDA device (data-parallel, one replica each) or the CPU; for a
        loaded model, the device it is on. A device string or a list of them otherwise.
    dtype
        ``"auto"``: bfloat16 on CUDA, float32 on the CPU (for a loaded model, its own dtype);
        or ``"float32"``, ``"bfloat16"``, ``"float16"``, a ``torch.dtype``.
    checkpoint
        A folder: each finished batch is written there as a Parquet shard (row ids and scores)
        and a later call with the same folder and input skips the rows already scored.
    progress
        Show a progress bar (rows, tokens per second) on stderr.
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The input with the float64 score column(s) added, and a provenance record
        (``pk.report_of``): rows, model, batches, tokens, padded tokens, rows resumed.

    Raises
    ------
    PrefkitError
        A missing column, a column of the wrong type, a null, a row with no tokens, a
        checkpoint folder written for another input or model.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["2+2?", "2+2?"], "response": ["4", "5"]})
    >>> scored = pk.score(data, "path/to/reward-model")  # doctest: +SKIP
    >>> scored.column_names  # doctest: +SKIP
    ['prompt', 'response', 'score']
    >>> pk.report_of(scored)["batches"]  # doctest: +SKIP
    1
    """
    table = as_table(data)
    responses = _values(_column(table, response, "response"), response)
    prompts = None if prompt is None else _values(_column(table, prompt, "prompt"), prompt)
    if not isinstance(output, str) or not output:
        raise PrefkitError(f"output must be a non-empty column name, got {output!r}")
    if chat_template not in ("auto", None):
        raise PrefkitError(f"chat_template must be 'auto' or None, got {chat_template!r}")
    if max_length is not None and (
        not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1
    ):
        raise PrefkitError(f"max_length must be an integer >= 1 or None, got {max_length!r}")
    if (
        not isinstance(max_tokens_per_batch, int) or isinstance(max_tokens_per_batch, bool)
        or max_tokens_per_batch < 1
    ):
        raise PrefkitError(
            f"max_tokens_per_batch must be an integer >= 1, got {max_tokens_per_batch!r}"
        )
    if max_rows_per_batch is not None and (
        not isinstance(max_rows_per_batch, int) or isinstance(max_rows_per_batch, bool)
        or max_rows_per_batch < 1
    ):
        raise PrefkitError(
            f"max_rows_per_batch must be an integer >= 1 or None, got {max_rows_per_batch!r}"
        )

    import torch
    from tqdm import tqdm

    model_name = _model_name(model)
    model, tokenizer, devices = _load(
        model, tokenizer, _devices(device, torch), _torch_dtype(dtype, torch), torch
    )
    use_template = chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))
    texts = _render(prompts, responses, tokenizer, use_template)
    # A rendered chat template already holds BOS and friends; plain text gets them here.
    ids, truncated = _tokenize(texts, tokenizer, not use_template, max_length, progress)
    lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))
    if len(lengths) and lengths.min() == 0:
        row = int(np.argmin(lengths))
        raise PrefkitError(
            f"row {row} has no tokens (columns '{prompt}' and '{response}' are empty and the "
            "tokenizer adds no special tokens); nothing to read a score from"
        )
    kind = _head_kind(model)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(tokenizer, "eos_token_id", None) or 0  # any id: the mask hides it

    store = None
    done = np.empty(0, np.int64)
    done_scores = None
    if checkpoint is not None:
        store = _Checkpoint(checkpoint, _fingerprint(texts, model_name, tokenizer, max_length))
        done, done_scores = store.load()
    # The plan covers every row, so a resumed run with the same budget cuts exactly the
    # batches an uninterrupted one would (identical scores); finished rows are then removed.
    plan = plan_batches(lengths, max_tokens=max_tokens_per_batch, shuffle=False)
    if max_rows_per_batch is not None:
        plan = [
            batch[start : start + max_rows_per_batch]
            for batch in plan
            for start in range(0, len(batch), max_rows_per_batch)
        ]
    finished = np.zeros(len(ids), dtype=bool)
    finished[done] = True
    batches = [b for b in (batch[~finished[batch]] for batch in plan) if len(b)]

    replicas = [(model, devices[0])]
    for extra in devices[1:]:
        replica = copy.deepcopy(model) if hasattr(model, "parameters") else model
        replicas.append((replica.to(extra) if hasattr(replica, "to") else replica, extra))

    started = time.perf_counter()
    with tqdm(
        total=len(ids), initial=len(done), desc="scoring", unit=" rows", file=sys.stderr,
        disable=not progress, dynamic_ncols=True,
    ) as bar:
        results = _run_batches(batches, ids, replicas, kind, pad_id, store, bar)
    elapsed = time.perf_counter() - started

    parts_rows = [done] + [rows for rows, _ in results]
    parts_scores = ([done_scores] if done_scores is not None else []) + [s for _, s in results]
    width = parts_scores[0].shape[1] if parts_scores else _width(model, kind)
    if {s.shape[1] for s in parts_scores} - {width}:
        raise PrefkitError(
            f"the checkpoint holds {width} scores per row but the model gives "
            f"{parts_scores[-1].shape[1]}; use a new checkpoint folder"
        )
    scores = np.full((len(ids), width), np.nan)
    all_rows = np.concatenate(parts_rows) if parts_rows else np.empty(0, np.int64)
    if parts_scores:
        scores[all_rows] = np.concatenate(parts_scores)
    if len(all_rows) != len(ids) or len(np.unique(all_rows)) != len(ids):
        raise PrefkitError("internal error: not every row was scored exactly once")

    names = [output] if width == 1 else [f"{output}_{j}" for j in range(width)]
    result = table
    replaced = [name for name in names if name in result.column_names]
    for j, name in enumerate(names):
        column = pa.array(scores[:, j], pa.float64())
        if name in result.column_names:
            result = result.set_column(result.column_names.index(name), name, column)
        else:
            result = result.append_column(name, column)

    real = int(lengths.sum())
    padded = int(sum(len(b) * int(lengths[b].max()) for b in plan))
    accounting = {
        "rows_in": table.num_rows,
        "rows_out": result.num_rows,
        "dropped": {},
        "model": model_name,
        "head": kind,
        "outputs": names,
        "replaced_columns": replaced,
        "chat_template": use_template,
        "devices": [str(d) for d in devices],
        "dtype": _dtype_name(model),
        "batches": len(plan),
        "batches_run": len(results),
        "tokens": real,
        "padded_tokens": padded,
        "rows_truncated": truncated,
        "rows_resumed": len(done),
        "rows_scored": int(sum(len(rows) for rows, _ in results)),
        "seconds": round(elapsed, 3),
    }
    parameters = {
        "prompt": prompt,
        "response": response,
        "output": output,
        "chat_template": chat_template,
        "max_length": max_length,
        "max_tokens_per_batch": max_tokens_per_batch,
        "max_rows_per_batch": max_rows_per_batch,
        "checkpoint": None if checkpoint is None else str(checkpoint),
    }
    result = plain_unless_views(result, views)
    return attach(result, "score", parameters, accounting, source=table)


def _dtype_name(model: Any) -> str | None:
    first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return None if first is None else str(first.dtype).replace("torch.", "")


def _width(model: Any, kind: str) -> int:
    """Outputs per row when no batch ran (an empty table)."""
    if kind != "callable":
        return int(getattr(model.config, "num_labels", 1) or 1)
    return 1


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


def _named_models(model: Any) -> tuple[list[tuple[str, Any]], bool]:
    """``[(name, model)]`` and whether several were given."""
    if isinstance(model, Mapping):
        items = [(str(k), v) for k, v in model.items()]
        several = True
    elif isinstance(model, (list, tuple)):
        items = []
        for i, m in enumerate(model):
            base = Path(str(m)).name if isinstance(m, (str, os.PathLike)) else f"m{i}"
            items.append((base or f"m{i}", m))
        several = True
    else:
        return [("", model)], False
    if not items:
        raise PrefkitError("model must name at least one model")
    seen: dict[str, int] = {}
    unique = []
    for name, m in items:
        # Two paths ending in the same folder name still need two column names.
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append((name if count == 0 else f"{name}_{count}", m))
    return unique, several


def score_pairs(
    pairs: Any,
    model: Any,
    *,
    tokenizer: Any = None,
    prompt: str | None = "prompt",
    chosen: str = "chosen",
    rejected: str = "rejected",
    checkpoint: str | os.PathLike | None = None,
    views: bool = False,
    **options: Any,
) -> pa.Table:
    """Score the chosen and rejected responses of pairs with the same reward model(s).

    Both sides go through one ``pk.score`` call (one batch plan over 2 x rows), and
    ``score_chosen``, ``score_rejected`` and ``margin`` (chosen - rejected) are recomputed.
    Several models (a list, or a dict name -> model) add per-model columns
    ``score_chosen_<name>`` and ``score_rejected_<name>`` (the inputs of
    ``pk.preference_strength``); ``score_chosen``/``score_rejected`` are then the mean over
    models, as in ``pk.mine_pairs`` with several score columns.

    Parameters
    ----------
    pairs
        One row per pair, e.g. the output of ``pk.mine_pairs`` or ``pk.split_prompt``.
    model
        One model (path, loaded model or callable, as in ``pk.score``), a list of them (named
        by their folder names) or a dict ``name -> model``. Each must give one score per row.
    tokenizer
        As in ``pk.score``; a dict ``name -> tokenizer`` for several loaded models.
    prompt, chosen, rejected
        Columns (text or chat messages).
    checkpoint
        A folder; each model gets a sub-folder of its own.
    **options
        Passed to ``pk.score`` (chat_template, max_length, max_tokens_per_batch, device, dtype,
        progress).
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The pairs with the score columns set, and a provenance record.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> pairs = pa.table({"prompt": ["2+2?"], "chosen": ["4"], "rejected": ["5"]})
    >>> out = pk.score_pairs(pairs, {"a": "rm-a", "b": "rm-b"})  # doctest: +SKIP
    >>> out.column_names  # doctest: +SKIP
    ['prompt', 'chosen', 'rejected', 'score_chosen_a', 'score_rejected_a', 'score_chosen_b',
     'score_rejected_b', 'score_chosen', 'score_rejected', 'margin']
    """
    table = as_table(pairs, argument="pairs")
    for forbidden in ("data", "response", "output"):
        if forbidden in options:
            raise PrefkitError(f"score_pairs sets '{forbidden}' itself; use chosen=/rejected=")
    chosen_col = _column(table, chosen, "chosen")
    rejected_col = _column(table, rejected, "rejected")
    if chosen_col.type != rejected_col.type:
        rejected_col = rejected_col.cast(chosen_col.type)
    long = {"response": pa.chunked_array(chosen_col.chunks + rejected_col.chunks, chosen_col.type)}
    if prompt is not None:
        prompt_col = _column(table, prompt, "prompt")
        long["prompt"] = pa.chunked_array(prompt_col.chunks * 2, prompt_col.type)
    long_table = pa.table(long)
    n = table.num_rows

    models, several = _named_models(model)
    result = table
    per_model: dict[str, dict] = {}
    chosen_scores, rejected_scores = [], []
    for name, each in models:
        each_tokenizer = tokenizer.get(name) if isinstance(tokenizer, Mapping) else tokenizer
        scored = score(
            long_table,
            each,
            tokenizer=each_tokenizer,
            prompt=None if prompt is None else "prompt",
            response="response",
            output="score",
            checkpoint=None if checkpoint is None else Path(checkpoint) / (name or "model"),
            **options,
        )
        if "score" not in scored.column_names:
            raise PrefkitError(
                f"model {name or _model_name(each)!r} gives several scores per row; score_pairs "
                "needs one (pass a callable that picks or combines them)"
            )
        values = scored.column("score").to_numpy()
        chosen_scores.append(values[:n])
        rejected_scores.append(values[n:])
        report = scored.schema.metadata and json.loads(scored.schema.metadata[b"prefkit"])
        per_model[name or "model"] = {
            key: report[key]
            for key in ("model", "batches", "tokens", "padded_tokens", "rows_resumed")
        }
        if several:
            for side, values_side in (("chosen", values[:n]), ("rejected", values[n:])):
                result = _set(result, f"score_{side}_{name}", pa.array(values_side, pa.float64()))

    mean_chosen = np.mean(chosen_scores, axis=0)
    mean_rejected = np.mean(rejected_scores, axis=0)
    result = _set(result, "score_chosen", pa.array(mean_chosen, pa.float64()))
    result = _set(result, "score_rejected", pa.array(mean_rejected, pa.float64()))
    result = _set(result, "margin", pa.array(mean_chosen - mean_rejected, pa.float64()))
    parameters = {"prompt": prompt, "chosen": chosen, "rejected": rejected,
                  "models": [name for name, _ in models] if several else None,
                  **{k: v for k, v in options.items() if k != "progress"}}
    accounting = {"rows_in": n, "rows_out": n, "dropped": {}, "models": per_model}
    result = plain_unless_views(result, views)
    return attach(result, "score_pairs", parameters, accounting, source=table)


def _set(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


__all__ = ["score", "score_pairs"]
