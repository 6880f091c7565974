"""``pk.score`` on Ray actors: each actor loads the reward model once and scores the blocks
it is given (``map_batches`` with a callable class)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from prefkit._errors import PrefkitError
from prefkit.io import materialize
from prefkit.pairs import _check_int
from prefkit.ray._common import _ray, check_dataset


class _Scorer:
    """One Ray actor: the model and tokenizer, loaded when the actor starts."""

    def __init__(self, model: Any, tokenizer: Any, device: Any, dtype: Any, options: dict):
        import torch

        from prefkit.scoring import _devices, _load, _torch_dtype

        # The loaded model then stays where _load put it: pk.score keeps a loaded model's
        # device and dtype, so every batch runs as pk.score(data, model, device, dtype) would.
        self.model, self.tokenizer, _ = _load(
            model, tokenizer, _devices(device, torch), _torch_dtype(dtype, torch), torch
        )
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        from prefkit.scoring import score

        scored = score(batch, self.model, tokenizer=self.tokenizer, progress=False, **self.options)
        return materialize(scored.replace_schema_metadata(None))


def score(
    ds: Any,
    model: Any,
    *,
    tokenizer: Any = None,
    prompt: str | None = "prompt",
    response: str = "response",
    output: str = "score",
    chat_template: str | None = "auto",
    max_length: int | None = None,
    max_tokens_per_batch: int = 16384,
    device: Any = "auto",
    dtype: Any = "auto",
    num_gpus: float | None = None,
    concurrency: int = 1,
    batch_size: int = 4096,
) -> Any:
    """``pk.score`` over a Ray Dataset, on a pool of actors that each load the model once.

    Parameters
    ----------
    ds
        A ``ray.data.Dataset``, one row per response.
    model, tokenizer
        As in ``pk.score``; give a path (or hub name) that every actor can read: each loads it
        when it starts. A loaded model is shipped to every actor instead.
    prompt, response, output, chat_template, max_length, max_tokens_per_batch, device, dtype
        As in ``pk.score``, applied inside each actor (``device="auto"``: the actor's GPUs,
        else the CPU).
    num_gpus
        GPUs per actor; None: 1 when the cluster has GPUs, else 0 (CPU actors).
    concurrency
        Number of actors (one model replica each).
    batch_size
        Rows handed to an actor at a time; each such block is cut into token-budget batches of
        similar length by ``pk.score``, so larger blocks pad less.

    Returns
    -------
    ray.data.Dataset
        The rows with the float64 score column(s) added (lazy), the scores of ``pk.score``
        (within float rounding: a row's score does not depend on its batch), in no particular
        order; text as plain strings.

    Examples
    --------
    >>> import ray, prefkit.ray as pkr  # doctest: +SKIP
    >>> ds = ray.data.read_parquet("samples/")  # doctest: +SKIP
    >>> pkr.score(ds, "/models/rm", num_gpus=1, concurrency=8).write_parquet("scored/")  # doctest: +SKIP
    """
    ray = _ray()
    check_dataset(ds, (prompt, response))
    _check_int("concurrency", concurrency, 1)
    _check_int("batch_size", batch_size, 1)
    if num_gpus is None:
        has_gpus = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
        num_gpus = 1 if has_gpus else 0
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or num_gpus < 0:
        raise PrefkitError(f"num_gpus must be a number >= 0 or None, got {num_gpus!r}")
    options = {
        "prompt": prompt,
        "response": response,
        "output": output,
        "chat_template": chat_template,
        "max_length": max_length,
        "max_tokens_per_batch": max_tokens_per_batch,
    }
    return ds.map_batches(
        _Scorer,
        fn_constructor_args=(model, tokenizer, device, dtype, options),
        batch_format="pyarrow",
        batch_size=batch_size,
        num_gpus=num_gpus,
        concurrency=concurrency,
    )
