"""Pairwise judges: for the K responses of a prompt, the K x K matrix of P(a beats b).

Three judges (``docs/pairwise.md``): a cross-encoder that reads a templated (prompt, a, b)
text, as PairRM does; a preference-embedding model (GPM) that embeds each response once and
compares embeddings with a skew-symmetric product; and a plain Python callable. Model judges
run through ``pk.score`` (length-sorted token-budget batches, checkpoints, several devices),
so everything said in ``docs/scoring.md`` holds here too. torch and transformers are imported
by ``pk.score`` when a model judge runs; ``import prefkit`` does not need them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import string
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import attach, report_of
from prefkit.io import as_table, materialize
from prefkit.scoring import (
    _Checkpoint,
    _column,
    _fingerprint,
    _is_messages,
    _is_text,
    _model_name,
    score,
)

#: The cross-encoder's input when ``template`` is not given: PairRM's markers around the prompt
#: ("source") and the two candidates, so that a model can tell the three parts apart.
DEFAULT_TEMPLATE = "<|source|> {prompt} <|candidate1|> {a} <|candidate2|> {b}"

#: Pairs per call of a callable judge when ``batch_size`` is not given.
CALLABLE_BATCH = 256

_FORMS = ("wide", "long")


class EmbeddingJudge:
    """A preference-embedding judge (General Preference Model, GPM, arXiv 2410.02197).

    The model maps each (prompt, response) to a vector ``v`` of even size ``2d`` (the logits of
    a sequence-classification head with ``num_labels = 2d``, or what a callable returns),
    L2-normalised as in GPM. The probability that response a beats response b is

        P(a > b) = sigmoid(<R v_a, v_b> / tau),  R = diag([[0, -1], [1, 0]], ..., d blocks)

    i.e. ``sum_i (a_{2i} b_{2i+1} - a_{2i+1} b_{2i}) / tau``. R is skew-symmetric, so
    P(a > b) + P(b > a) = 1 by construction and a prompt with K responses costs K forward
    passes (not K^2): ``pk.score_pairwise`` embeds every response once.

    Parameters
    ----------
    model
        A local path (or hub name) that ``AutoModelForSequenceClassification`` loads, a loaded
        model, or a callable ``f(input_ids, attention_mask) -> Tensor[batch, 2d]`` (GPM's own
        checkpoints have a custom value head: wrap its forward), as in ``pk.score``.
    tokenizer
        A tokenizer or its path; defaults to the model's path.
    tau
        Temperature. GPM's released models were trained with ``tau=0.1`` (their
        ``--general_preference_tau``): pass the value the judge was trained with.
    normalize
        L2-normalise every embedding first (GPM does); a zero vector stays zero (P = 0.5).
    chat_template
        As in ``pk.score``: ``"auto"`` renders (prompt, response) with the tokenizer's chat
        template when it has one; ``None`` concatenates them.

    Examples
    --------
    >>> import numpy as np, prefkit as pk
    >>> judge = pk.EmbeddingJudge("path/to/gpm", tau=0.1)
    >>> v = np.array([[1.0, 0.0], [0.0, 1.0]])   # two responses, d = 1
    >>> judge.win_prob(v).round(5).tolist()
    [[0.5, 0.99995], [5e-05, 0.5]]
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        tau: float = 1.0,
        normalize: bool = True,
        chat_template: str | None = "auto",
    ) -> None:
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (
            math.isfinite(tau) and tau > 0
        ):
            raise PrefkitError(f"tau must be a finite number > 0, got {tau!r}")
        if not isinstance(normalize, bool):
            raise PrefkitError(f"normalize must be True or False, got {normalize!r}")
        if chat_template not in ("auto", None):
            raise PrefkitError(f"chat_template must be 'auto' or None, got {chat_template!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.tau = float(tau)
        self.normalize = normalize
        self.chat_template = chat_template

    def win_prob(self, embeddings: Any) -> np.ndarray:
        """The K x K matrix of P(a beats b) of K embeddings ``[K, 2d]`` (float64).

        The upper triangle is computed and the lower one set to ``1 - P`` of its mirror, so the
        matrix is exactly consistent; the diagonal is 0.5.
        """
        v = np.asarray(embeddings, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] < 2 or v.shape[1] % 2:
            raise PrefkitError(
                f"a preference embedding needs an even number >= 2 of values, got shape "
                f"{v.shape}"
            )
        if self.normalize:
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            v = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
        even, odd = v[:, 0::2], v[:, 1::2]
        # <R v_a, v_b> with R's blocks [[0, -1], [1, 0]]: (R v_a) = (-a1, a0) per block.
        product = even @ odd.T - odd @ even.T
        return _consistent(_sigmoid(product / self.tau))

    def __repr__(self) -> str:
        return f"EmbeddingJudge({_model_name(self.model)!r}, tau={self.tau})"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow warnings for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _consistent(p: np.ndarray) -> np.ndarray:
    """Keep the strict upper triangle, mirror it as ``1 - p``, put 0.5 on the diagonal."""
    upper = np.triu(np.ones(p.shape, dtype=bool), 1)
    out = np.where(upper, p, 0.0)
    out = out + np.where(upper.T, 1.0 - out.T, 0.0)
    np.fill_diagonal(out, 0.5)
    return out


# --------------------------------------------------------------------------------------------
# Inputs: groups of responses, the pairs to judge
# --------------------------------------------------------------------------------------------


def _check_template(template: str) -> None:
    if not isinstance(template, str):
        raise PrefkitError(f"template must be a format string, got {type(template).__name__}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise PrefkitError(f"template is not a valid format string: {error}") from None
    unknown = fields - {"prompt", "a", "b"}
    if unknown:
        raise PrefkitError(
            f"template may only use the fields {{prompt}}, {{a}} and {{b}}, got {sorted(unknown)}"
        )
    if not {"a", "b"} <= fields:
        raise PrefkitError(f"template must hold both {{a}} and {{b}}, got {template!r}")


def _text(value: Any) -> str:
    """A text or chat-messages value as one string (messages as ``role: content`` lines)."""
    if isinstance(value, str):
        return value
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


def _groups(
    table: pa.Table, prompt: str, response: str, group: str | None, k: int | None
) -> tuple[list[np.ndarray], np.ndarray, dict[str, int]]:
    """The kept rows of every group (input order, groups by first appearance), their group
    ids and the rows dropped by reason."""
    responses = _column(table, response, "response")
    if not (_is_text(responses.type) or _is_messages(responses.type)):
        raise PrefkitError(
            f"column '{response}' must be text (string, large_string, string_view) or chat "
            f"messages (list<struct<role, content>>), got {responses.type}"
        )
    if responses.null_count:
        row = int(pc.index(pc.is_null(responses), True).as_py())
        raise PrefkitError(
            f"column '{response}' has a null at row {row}; every response needs a value"
        )
    prompts = _column(table, prompt, "prompt")
    if not (_is_text(prompts.type) or _is_messages(prompts.type)):
        raise PrefkitError(
            f"column '{prompt}' must be text or chat messages (list<struct<role, content>>), "
            f"got {prompts.type}"
        )
    key = group if group is not None else prompt
    if group is not None:
        _column(table, group, "group")
    ids = pa.array(_core.key_ids(table, key))
    valid = np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if group is not None and prompts.null_count:
        # The judge reads the prompt of every row it compares; a null one cannot be judged.
        null = np.asarray(pc.is_null(prompts).to_numpy(zero_copy_only=False), dtype=bool)
        if (null & valid).any():
            row = int(np.argmax(null & valid))
            raise PrefkitError(f"column '{prompt}' has a null at row {row}; a judge needs it")
    dropped = {"null_key": int((~valid).sum()), "beyond_k": 0, "group_too_small": 0}
    rows = np.flatnonzero(valid)
    values = np.asarray(ids.fill_null(0).to_numpy(), dtype=np.uint64)[rows]
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    # Groups in order of their first row; rows of a group in input order (stable sort).
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    order = np.argsort(rank[inverse], kind="stable")
    sizes = np.bincount(rank[inverse], minlength=len(unique))
    members = np.split(rows[order], np.cumsum(sizes)[:-1]) if len(rows) else []
    group_ids = unique[np.argsort(first, kind="stable")]
    kept, kept_ids = [], []
    for gid, rows_of in zip(group_ids, members):
        if k is not None and len(rows_of) > k:
            dropped["beyond_k"] += len(rows_of) - k
            rows_of = rows_of[:k]
        if len(rows_of) < 2:
            dropped["group_too_small"] += len(rows_of)
            continue
        kept.append(rows_of)
        kept_ids.append(gid)
    return kept, np.asarray(kept_ids, dtype=np.uint64), {r: n for r, n in dropped.items() if n}


def _ordered_pairs(groups: list[np.ndarray], both_orders: bool) -> tuple[np.ndarray, ...]:
    """``(group, i, j)`` positions of every pair to judge: i != j, or i < j for one order."""
    parts_g, parts_i, parts_j = [], [], []
    for g, rows_of in enumerate(groups):
        size = len(rows_of)
        i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        keep = (i != j) if both_orders else (i < j)
        parts_g.append(np.full(int(keep.sum()), g, dtype=np.int64))
        parts_i.append(i[keep])
        parts_j.append(j[keep])
    if not parts_g:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    return np.concatenate(parts_g), np.concatenate(parts_i), np.concatenate(parts_j)


# --------------------------------------------------------------------------------------------
# The judges
# --------------------------------------------------------------------------------------------


def _score_report(scored: pa.Table) -> dict:
    record = report_of(scored)
    keys = ("model", "head", "devices", "dtype", "batches", "batches_run", "tokens",
            "padded_tokens", "rows_truncated", "rows_resumed", "rows_scored")
    return {key: record.get(key) for key in keys}


def _score_columns(scored: pa.Table, name: str) -> np.ndarray:
    """The ``[rows, k]`` outputs ``pk.score`` wrote as ``name`` or ``name_0 ..``."""
    if name in scored.column_names:
        return scored.column(name).to_numpy()[:, None]
    columns, j = [], 0
    while f"{name}_{j}" in scored.column_names:
        columns.append(scored.column(f"{name}_{j}").to_numpy())
        j += 1
    return np.stack(columns, axis=1)


def _cross_encoder(
    judge: Any, texts: list[str], options: dict
) -> tuple[np.ndarray, dict]:
    """P(a beats b) of every templated pair text, and the scoring report."""
    scored = score(
        pa.table({"text": pa.array(texts, pa.large_string())}), judge, prompt=None,
        response="text", output="logit", chat_template=None, **options,
    )
    logits = _score_columns(scored, "logit")
    if logits.shape[1] == 1:
        p = _sigmoid(logits[:, 0])
    elif logits.shape[1] == 2:
        # Label 0 means "a wins": softmax(l)[0] = sigmoid(l0 - l1).
        p = _sigmoid(logits[:, 0] - logits[:, 1])
    else:
        raise PrefkitError(
            f"a cross-encoder judge needs 1 or 2 outputs (num_labels), the model gives "
            f"{logits.shape[1]}; for preference embeddings use pk.EmbeddingJudge"
        )
    return p, _score_report(scored)


def _embeddings(judge: EmbeddingJudge, table: pa.Table, options: dict) -> tuple[np.ndarray, dict]:
    """One embedding ``[2d]`` per row of ``table`` (columns prompt, response)."""
    scored = score(
        table, judge.model, prompt="prompt", response="response", output="v",
        chat_template=judge.chat_template, **options,
    )
    v = _score_columns(scored, "v")
    if v.shape[1] < 2 or v.shape[1] % 2:
        raise PrefkitError(
            f"an embedding judge needs an even number >= 2 of outputs (num_labels = 2d), the "
            f"model gives {v.shape[1]}"
        )
    return v, _score_report(scored)


def _call_judge(
    judge: Callable, prompts: list, a: list, b: list, rows_a: np.ndarray, rows_b: np.ndarray,
    batch_size: int, checkpoint: Any, progress: bool, response: str,
) -> tuple[np.ndarray, dict]:
    """P of every pair from ``judge(prompts, responses_a, responses_b)``, in length-sorted
    batches of ``batch_size`` pairs, each written to ``checkpoint`` when given."""
    from tqdm import tqdm

    n = len(a)
    store, done = None, np.empty(0, np.int64)
    p = np.full(n, np.nan)
    if checkpoint is not None:
        keys = [json.dumps([x, y, z], ensure_ascii=False) for x, y, z in zip(prompts, a, b)]
        name = _model_name(judge)
        store = _Checkpoint(checkpoint, {**_fingerprint(keys, name, None, None), "judge": "callable"})
        done, done_p = store.load()
        if done_p is not None:
            p[done] = done_p[:, 0]
    lengths = np.fromiter(
        (len(_text(x)) + len(_text(y)) + len(_text(z)) for x, y, z in zip(prompts, a, b)),
        dtype=np.int64, count=n,
    )
    # The plan covers every pair, as pk.score's does: a resumed run cuts the same batches.
    order = np.argsort(lengths, kind="stable")
    finished = np.zeros(n, dtype=bool)
    finished[done] = True
    batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    todo = [batch[~finished[batch]] for batch in batches]
    todo = [batch for batch in todo if len(batch)]
    with tqdm(total=n, initial=len(done), desc="judging", unit=" pairs", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        for batch in todo:
            out = judge([prompts[i] for i in batch], [a[i] for i in batch], [b[i] for i in batch])
            try:
                values = np.asarray(out, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise PrefkitError(
                    f"the judge returned {type(out).__name__}; expected a sequence of "
                    "probabilities"
                ) from None
            if len(values) != len(batch):
                raise PrefkitError(
                    f"the judge returned {len(values)} probabilities for {len(batch)} pairs"
                )
            bad = ~((values >= 0.0) & (values <= 1.0))
            if bad.any():
                first = int(np.argmax(bad))
                at = batch[first]
                raise PrefkitError(
                    f"the judge returned {float(values[first])!r} for the pair of rows "
                    f"{int(rows_a[at])} and {int(rows_b[at])} (column '{response}'); expected a "
                    "probability in [0, 1]"
                )
            p[batch] = values
            if store is not None:
                store.append(batch, values[:, None])
            bar.update(len(batch))
    report = {"model": _model_name(judge), "batches": len(batches), "batches_run": len(todo),
              "rows_resumed": len(done), "rows_scored": int(n - len(done))}
    return p, report


# --------------------------------------------------------------------------------------------
# The operation
# --------------------------------------------------------------------------------------------


def _judge_kind(judge: Any) -> str:
    if isinstance(judge, EmbeddingJudge):
        return "embedding"
    if isinstance(judge, (str, os.PathLike)) or hasattr(judge, "parameters"):
        return "cross_encoder"
    if callable(judge):
        return "callable"
    raise PrefkitError(
        "judge must be a cross-encoder (a path or a loaded sequence-classification model), a "
        "pk.EmbeddingJudge or a callable(prompts, responses_a, responses_b) -> probabilities, "
        f"got {type(judge).__name__}"
    )


def _check_options(k: Any, both_orders: Any, batch_size: Any, form: Any) -> None:
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 2):
        raise PrefkitError(f"k must be an integer >= 2 or None, got {k!r}")
    if not isinstance(both_orders, bool):
        raise PrefkitError(f"both_orders must be True or False, got {both_orders!r}")
    if batch_size is not None and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise PrefkitError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    if form not in _FORMS:
        raise PrefkitError(f"form must be 'wide' or 'long', got {form!r}")


def score_pairwise(
    samples: Any,
    judge: Any,
    *,
    prompt: str = "prompt",
    response: str = "response",
    group: str | None = None,
    k: int | None = None,
    both_orders: bool = True,
    template: str | None = None,
    tokenizer: Any = None,
    batch_size: int | None = None,
    max_tokens_per_batch: int = 16384,
    max_length: int | None = None,
    device: Any = "auto",
    dtype: Any = "auto",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    form: str = "wide",
) -> pa.Table:
    """Judge every pair of responses of each prompt: a K x K matrix of P(a beats b).

    Rows are grouped by ``group`` (or by the prompt value) as in ``pk.mine_pairs``; each group's
    responses, in input order, are compared pairwise by ``judge``:

    - a **cross-encoder** (a path or loaded ``AutoModelForSequenceClassification``) reads
      ``template.format(prompt=..., a=..., b=...)`` and gives P(a beats b) =
      ``sigmoid(logit)`` (``num_labels=1``) or the softmax probability of label 0
      (``num_labels=2``: label 0 means "a wins"). With ``both_orders`` each unordered pair is
      judged as (a, b) and as (b, a) and ``P[a][b] = (p(a, b) + 1 - p(b, a)) / 2``, which
      cancels a bias towards the first (or second) position; K(K-1) forward passes per prompt,
      K(K-1)/2 with ``both_orders=False`` (then ``P[b][a] = 1 - P[a][b]``).
    - a :class:`EmbeddingJudge` (GPM) embeds each response once (K passes per prompt) and
      compares embeddings with a skew-symmetric product; ``both_orders`` changes nothing.
    - a **callable** ``judge(prompts, responses_a, responses_b) -> sequence of P`` (lists of
      equal length; values as in the input: text, or chat messages as lists of dicts).

    Every matrix is exactly consistent: ``P[a][b] + P[b][a] = 1``, diagonal 0.5. Formulas and
    papers: ``docs/pairwise.md``.

    Parameters
    ----------
    samples
        One row per response: pyarrow, polars, pandas, ``datasets.Dataset`` or an Arrow stream.
    judge
        The cross-encoder, a ``pk.EmbeddingJudge`` or a callable (see above).
    prompt, response
        Columns: text or chat messages (``list<struct<role, content>>``).
    group
        Column to group by instead of the prompt; the judge then sees each row's own prompt
        (row a's for a cross-encoder pair).
    k
        Judge only the first ``k`` responses of each prompt (input order); the others are
        dropped and counted (``beyond_k``).
    both_orders
        Judge each pair in both positions and average (cross-encoder and callable judges).
    template
        The cross-encoder's input, a format string with ``{prompt}``, ``{a}``, ``{b}``;
        default :data:`DEFAULT_TEMPLATE` (PairRM's markers). Messages are rendered as
        ``role: content`` lines. Tokenised with the tokenizer's special tokens.
    tokenizer
        The cross-encoder's tokenizer (or its path); defaults to the model's path.
    batch_size
        At most this many sequences per forward pass (model judges; ``None``: the token budget
        alone decides), or pairs per call of a callable judge (default 256).
    max_tokens_per_batch, max_length, device, dtype
        As in ``pk.score``: the token budget of a batch (padding included), truncation, the
        devices (``"auto"``: every CUDA device, one replica each, or the CPU) and the dtype.
    checkpoint
        A folder: every finished batch is written there, and a rerun with the same folder and
        input recomputes no finished batch (``docs/scoring.md``).
    progress
        A progress bar on stderr.
    form
        ``"wide"``: one row per prompt; ``"long"``: one row per ordered pair a != b.

    Returns
    -------
    pyarrow.Table
        ``form="wide"``: ``prompt`` (of the group's first row; ``large_string`` when text),
        ``responses`` (list<large_string>, K items, input order), ``rows`` (list<int64>),
        ``win_prob`` (list<list<float64>>, K x K, ``win_prob[a][b]`` = P(a beats b)),
        ``group_id`` (uint64, xxh3 of the key as in ``pk.mine_pairs``).
        ``form="long"``: ``prompt, response_a, response_b, row_a, row_b, win_prob, group_id``.
        The provenance (``pk.report_of``) counts rows used and dropped (``null_key``,
        ``beyond_k``, ``group_too_small``), pairs judged, forward passes and batches.

    Raises
    ------
    PrefkitError
        A missing or mistyped column, a null response (naming the row), bad options, a model
        with the wrong number of outputs, a callable that returns no probabilities.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["2+2?"] * 3, "response": ["4", "four", "5"]})
    >>> def judge(prompts, a, b):  # prefers the shorter answer
    ...     return [0.75 if len(x) < len(y) else 0.25 if len(x) > len(y) else 0.5
    ...             for x, y in zip(a, b)]
    >>> out = pk.score_pairwise(data, judge, progress=False)
    >>> out.column("win_prob").to_pylist()[0]
    [[0.5, 0.75, 0.5], [0.25, 0.5, 0.25], [0.5, 0.75, 0.5]]
    >>> pk.score_pairwise(data, "path/to/pairrm-like", k=2)  # doctest: +SKIP
    """
    _check_options(k, both_orders, batch_size, form)
    kind = _judge_kind(judge)
    if template is not None and kind != "cross_encoder":
        raise PrefkitError("template applies to a cross-encoder judge only")
    if kind != "cross_encoder" and tokenizer is not None:
        raise PrefkitError(
            "tokenizer applies to a cross-encoder judge; give an EmbeddingJudge its own"
        )
    template = DEFAULT_TEMPLATE if template is None else template
    if kind == "cross_encoder":
        _check_template(template)
    table = as_table(samples, argument="samples")
    groups, group_ids, dropped = _groups(table, prompt, response, group, k)
    sizes = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
    prompts_py = table.column(prompt).to_pylist()
    responses_py = table.column(response).to_pylist()
    options = {"max_tokens_per_batch": max_tokens_per_batch, "max_rows_per_batch": batch_size,
               "max_length": max_length, "device": device, "dtype": dtype,
               "checkpoint": checkpoint, "progress": progress}

    matrices: list[np.ndarray]
    if kind == "embedding":
        used = np.concatenate(groups) if groups else np.empty(0, np.int64)
        sub = pa.table({
            "prompt": _take(table.column(prompt), used),
            "response": _take(table.column(response), used),
        })
        v, run = _embeddings(judge, sub, {**options, "tokenizer": judge.tokenizer})
        starts = np.concatenate([[0], np.cumsum(sizes)])
        matrices = [judge.win_prob(v[s:e]) for s, e in itertools.pairwise(starts)]
        judged, sequences = 0, len(used)
    else:
        g, i, j = _ordered_pairs(groups, both_orders)
        used = np.concatenate(groups) if groups else np.empty(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        rows_a, rows_b = used[starts[g] + i], used[starts[g] + j]
        if kind == "cross_encoder":
            texts = [
                template.format(
                    prompt=_text(prompts_py[ra]), a=_text(responses_py[ra]),
                    b=_text(responses_py[rb]),
                )
                for ra, rb in zip(rows_a, rows_b)
            ]
            p, run = _cross_encoder(judge, texts, {**options, "tokenizer": tokenizer})
        else:
            p, run = _call_judge(
                judge, [prompts_py[r] for r in rows_a], [responses_py[r] for r in rows_a],
                [responses_py[r] for r in rows_b], rows_a, rows_b,
                batch_size or CALLABLE_BATCH, checkpoint, progress, response,
            )
        matrices = _matrices(sizes, g, i, j, p, both_orders)
        judged, sequences = len(p), len(p)

    if form == "wide":
        result = _wide(table, prompt, response, groups, group_ids, matrices)
    else:
        result = _long(table, prompt, response, groups, group_ids, matrices)
    rows_used = int(sizes.sum())
    accounting = {
        "rows_in": table.num_rows,
        "rows_used": rows_used,
        "rows_out": result.num_rows,
        "dropped": dropped,
        "prompts": len(groups),
        "judge": kind,
        "pairs_judged": judged,
        "forward_sequences": sequences,
        **run,
    }
    parameters = {
        "prompt": prompt, "response": response, "group": group, "k": k,
        "both_orders": both_orders,
        "template": template if kind == "cross_encoder" else None,
        "tau": judge.tau if kind == "embedding" else None,
        "batch_size": batch_size, "max_tokens_per_batch": max_tokens_per_batch,
        "max_length": max_length, "checkpoint": None if checkpoint is None else str(checkpoint),
        "form": form,
    }
    return attach(result, "score_pairwise", parameters, accounting, source=table)


def _matrices(
    sizes: np.ndarray, g: np.ndarray, i: np.ndarray, j: np.ndarray, p: np.ndarray,
    both_orders: bool,
) -> list[np.ndarray]:
    """Per group, the consistent K x K matrix from the judged ordered pairs."""
    squares = sizes * sizes
    base = np.concatenate([[0], np.cumsum(squares)]).astype(np.int64)
    flat = np.full(int(base[-1]), np.nan)
    flat[base[g] + i * sizes[g] + j] = p
    out = []
    for size, start in zip(sizes, base[:-1]):
        m = flat[start : start + size * size].reshape(size, size)
        # Both orders: P[a][b] = (p(a, b) + 1 - p(b, a)) / 2 on the upper triangle; one order:
        # the upper triangle as judged. The lower triangle is 1 - its mirror either way.
        upper = (m + 1.0 - m.T) / 2.0 if both_orders else m
        out.append(_consistent(np.nan_to_num(upper, nan=0.5)))
    return out


def _take(column: pa.ChunkedArray, rows: np.ndarray) -> pa.ChunkedArray:
    # prefkit's take: pyarrow has no take kernel for string_view (polars' text).
    taken = _core.take(pa.table({"c": column}), pa.array(rows, pa.int64()))
    return materialize(as_table(taken)).column("c")


def _text_list(column: pa.ChunkedArray) -> pa.Array:
    """One array; text as ``large_string`` (the type rank_lists gives), messages as they are."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return array.cast(pa.large_string()) if _is_text(array.type) else array


def _wide(table, prompt, response, groups, group_ids, matrices) -> pa.Table:
    sizes = np.fromiter((len(m) for m in matrices), dtype=np.int64, count=len(matrices))
    used = np.concatenate(groups) if groups else np.empty(0, np.int64)
    firsts = np.array([rows_of[0] for rows_of in groups], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]), pa.int32())
    inner = pa.array(np.concatenate([[0], np.cumsum(np.repeat(sizes, sizes))]), pa.int32())
    values = pa.array(
        np.concatenate([m.ravel() for m in matrices]) if matrices else np.empty(0), pa.float64()
    )
    win_prob = pa.ListArray.from_arrays(offsets, pa.ListArray.from_arrays(inner, values))
    return pa.table({
        "prompt": _text_list(_take(table.column(prompt), firsts)),
        "responses": pa.ListArray.from_arrays(
            offsets, _text_list(_take(table.column(response), used))
        ),
        "rows": pa.ListArray.from_arrays(offsets, pa.array(used, pa.int64())),
        "win_prob": win_prob,
        "group_id": pa.array(group_ids, pa.uint64()),
    })


def _long(table, prompt, response, groups, group_ids, matrices) -> pa.Table:
    rows_a, rows_b, probs, gids = [], [], [], []
    for rows_of, gid, m in zip(groups, group_ids, matrices):
        i, j = np.nonzero(~np.eye(len(rows_of), dtype=bool))
        rows_a.append(rows_of[i])
        rows_b.append(rows_of[j])
        probs.append(m[i, j])
        gids.append(np.full(len(i), gid, dtype=np.uint64))
    empty = np.empty(0, np.int64)
    a = np.concatenate(rows_a) if rows_a else empty
    b = np.concatenate(rows_b) if rows_b else empty
    return pa.table({
        "prompt": _text_list(_take(table.column(prompt), a)),
        "response_a": _text_list(_take(table.column(response), a)),
        "response_b": _text_list(_take(table.column(response), b)),
        "row_a": pa.array(a, pa.int64()),
        "row_b": pa.array(b, pa.int64()),
        "win_prob": pa.array(np.concatenate(probs) if probs else np.empty(0), pa.float64()),
        "group_id": pa.array(np.concatenate(gids) if gids else np.empty(0, np.uint64),
                             pa.uint64()),
    })


__all__ = ["DEFAULT_TEMPLATE", "EmbeddingJudge", "score_pairwise"]
