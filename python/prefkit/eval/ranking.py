"""Policy ranking accuracy: does the trained model rank the preferred response higher?

A DPO/RLHF-trained policy is said to *rank* a pair correctly when it gives the chosen response a
higher log-probability than the rejected one. Chen et al. (2024), "Preference Learning
Algorithms Do Not Learn Preference Rankings" (NeurIPS 2024, arXiv:2405.19534) show that trained
models rarely do, and that even the ideal optimum of the RLHF/DPO objective is bounded by what
the reference model already ranks: the *idealized ranking accuracy*.

Derivation of the idealized rule (their Theorem 3.1). The optimum of the KL-regularised
objective is ``pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)``. With Bradley-Terry ground
truth, ``alpha = P(y_w > y_l) = sigmoid(r(x, y_w) - r(x, y_l))``, so
``r(x, y_w) - r(x, y_l) = log(alpha / (1 - alpha))`` and::

    log pi*(y_w|x) - log pi*(y_l|x)
        = log pi_ref(y_w|x) - log pi_ref(y_l|x) + (1 / beta) * log(alpha / (1 - alpha))

The idealized model ranks the pair correctly iff that *idealized margin* is > 0, i.e. iff
``pi_ref(y_l|x) / pi_ref(y_w|x) < (alpha / (1 - alpha)) ** (1 / beta)``. (The implicit-reward
margin ``beta * (log-ratio difference)`` equals ``log(alpha / (1 - alpha))``; the log-prob
margin itself carries ``1 / beta``.) The idealized ranking accuracy is the mean of that
indicator over the pairs.

Both functions compute log-probs through :func:`prefkit.reference_logps` (token-budget batches,
padded or packed, :func:`prefkit.losses.sequence_logps`: never ``[tokens, vocab]`` logits).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, plain_unless_views

_PAIR_IDS = ("prompt_ids", "chosen_ids", "rejected_ids")
_LIST_IDS = ("prompt_ids", "response_ids")


def _lengths(table: pa.Table, name: str) -> np.ndarray:
    return pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(
        np.int64)


def _scored_tokens(prompt_len: np.ndarray, completion_len: np.ndarray) -> np.ndarray:
    """Completion tokens that get a log-prob: with an empty prompt the first has no predictor."""
    return completion_len - (prompt_len == 0)


def _logps(model: Any, ids: pa.Table, *, max_tokens: int, packed: bool, device: Any,
           progress: bool, chunk_tokens: int | None, chunk_vocab: int | None) -> pa.Table:
    from prefkit.reference import reference_logps

    return reference_logps(model, ids, max_tokens=max_tokens, packed=packed, dtype="float64",
                           device=device, progress=progress, chunk_tokens=chunk_tokens,
                           chunk_vocab=chunk_vocab)


def _win(margin: np.ndarray) -> np.ndarray:
    """1 where margin > 0, 0 where < 0, 0.5 on a tie, NaN where the margin is NaN."""
    out = np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5))
    out[np.isnan(margin)] = np.nan
    return out


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise PrefkitError(f"column {name!r} must be numeric, got {column.type}")
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def _alpha(table: pa.Table, alpha: Any) -> np.ndarray:
    if isinstance(alpha, str):
        if alpha not in table.column_names:
            raise PrefkitError(f"alpha column {alpha!r} not in tokenized; it has columns "
                               f"{table.column_names}")
        values = _float_column(table, alpha)
        name = f"column {alpha!r}"
    elif isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        values = np.full(table.num_rows, float(alpha))
        name = "alpha"
    else:
        raise PrefkitError(f"alpha must be a float in [0, 1] or a column name, got {alpha!r}")
    bad = ~np.isnan(values) & ((values < 0) | (values > 1))
    if bad.any() or (name == "alpha" and np.isnan(values).any()):
        row = int(np.flatnonzero(bad | np.isnan(values))[0])
        raise PrefkitError(f"{name} must hold probabilities in [0, 1]; row {row} has "
                           f"{values[row]!r}")
    return values


def _check_common(max_tokens: Any, beta: Any) -> None:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise PrefkitError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if (not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0
            or math.isinf(beta)):
        raise PrefkitError(f"beta must be a finite number > 0, got {beta!r}")


def ranking_accuracy(
    model: Any,
    tokenized: Any,
    *,
    ref_model: Any = None,
    beta: float = 0.1,
    alpha: float | str | None = None,
    normalize: bool = False,
    packed: bool = False,
    max_tokens: int = 8192,
    device: Any = None,
    progress: bool = False,
    chunk_tokens: int | None = None,
    chunk_vocab: int | None = None,
    views: bool = False,
) -> pa.Table:
    """Ranking accuracy of a policy on tokenised pairs, and the idealized one of Chen et al.

    The policy ranks a pair correctly when ``logp(chosen) > logp(rejected)`` (1), wrongly when
    ``<`` (0); an exact tie counts 0.5. ``logp`` is the sum of the completion's token
    log-probs given the prompt (what :func:`prefkit.reference_logps` and the fused losses
    compute), or with ``normalize=True`` that sum divided by the number of scored completion
    tokens (a per-token mean, as in SimPO / length-normalised ranking).

    Reference log-probs come from ``ref_model`` when given (it replaces any ``ref_*_logps``
    columns of the input), else from the ``ref_chosen_logps`` / ``ref_rejected_logps`` columns
    of :func:`prefkit.reference_logps` output when present. With them, the reference model's own
    ranking accuracy is reported, and, given the ground-truth preference probability
    ``alpha = P(chosen > rejected)``, the *idealized ranking accuracy* of Chen et al. (2024),
    Theorem 3.1: the accuracy of the exact optimum of the DPO/RLHF objective for ``beta``.
    The idealized margin of a pair is::

        ref_chosen_logps - ref_rejected_logps + log(alpha / (1 - alpha)) / beta

    (``+inf`` for ``alpha = 1``, ``-inf`` for ``alpha = 0``) and ``idealized_correct`` is 1 / 0
    / 0.5 on its sign. It always uses sums (the theorem is about sequence probabilities),
    whatever ``normalize``. For deterministic labels (``alpha = 1``) the optimum ranks every
    pair correctly; ``alpha = 0.5`` reduces it to the reference ranking. Without ``alpha`` the
    idealized columns are not computed.

    Parameters
    ----------
    model
        The policy: a transformers causal LM (see :func:`prefkit.reference_logps`).
    tokenized
        Output of :func:`prefkit.tokenize_pairs` (``prompt_ids, chosen_ids, rejected_ids``),
        optionally with ``ref_chosen_logps, ref_rejected_logps``.
    ref_model
        The reference model; not needed when the ``ref_*_logps`` columns are present.
    beta
        The KL coefficient of the objective whose optimum is simulated (> 0).
    alpha
        Ground-truth ``P(chosen > rejected)``: one float in [0, 1] for every pair, or the name
        of a column (null / NaN rows get a null idealized result, counted).
    normalize
        Rank the policy (and the reference) by per-token mean log-probs instead of sums.
    packed, max_tokens, device, progress, chunk_tokens, chunk_vocab
        Passed to :func:`prefkit.reference_logps` for every model run.
    views
        As in :func:`prefkit.reference_logps`.

    Returns
    -------
    pyarrow.Table
        ``tokenized`` plus float64 ``policy_chosen_logps``, ``policy_rejected_logps`` (sums)
        and ``ranked_correctly``; with reference log-probs also ``ref_chosen_logps``,
        ``ref_rejected_logps`` (when computed here), ``ref_ranked_correctly``; with ``alpha``
        also ``idealized_margin`` and ``idealized_correct``. The provenance
        (:func:`prefkit.report_of`) holds the overall figures: ``ranking_accuracy``,
        ``ref_ranking_accuracy``, ``idealized_ranking_accuracy`` (means over the pairs that
        have the value), ``ties``, ``pairs`` and ``dropped`` (pairs without a value, by reason).

    Examples
    --------
    >>> import torch, pyarrow as pa, prefkit as pk
    >>> from prefkit.eval.ranking import ranking_accuracy
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32,
    ...                                      num_hidden_layers=1, num_attention_heads=2))
    >>> pairs = pa.table({"prompt_ids": [[1, 3], [1, 4]], "chosen_ids": [[5, 2], [6, 2]],
    ...                   "rejected_ids": [[7, 2], [8, 9, 2]]})
    >>> out = ranking_accuracy(model, pairs, ref_model=model, alpha=0.9)
    >>> report = pk.report_of(out)
    >>> report["ranking_accuracy"] == report["ref_ranking_accuracy"]
    True
    >>> report["idealized_ranking_accuracy"]
    1.0
    """
    _check_common(max_tokens, beta)
    if not isinstance(normalize, bool):
        raise PrefkitError(f"normalize must be True or False, got {normalize!r}")
    table = as_table(tokenized, argument="tokenized")
    missing = [c for c in _PAIR_IDS if c not in table.column_names]
    if missing:
        raise PrefkitError(f"tokenized must come from pk.tokenize_pairs; column {missing[0]!r} is "
                           f"missing (it has columns {table.column_names})")
    has_ref_columns = {"ref_chosen_logps", "ref_rejected_logps"} <= set(table.column_names)
    alphas = _alpha(table, alpha) if alpha is not None else None
    if alphas is not None and ref_model is None and not has_ref_columns:
        raise PrefkitError("alpha needs reference log-probs: pass ref_model or columns "
                           "ref_chosen_logps and ref_rejected_logps (pk.reference_logps)")
    ids = table.select(list(_PAIR_IDS))
    run = {"max_tokens": max_tokens, "packed": packed, "device": device, "progress": progress,
           "chunk_tokens": chunk_tokens, "chunk_vocab": chunk_vocab}
    policy = _logps(model, ids, **run)
    chosen = policy.column("ref_chosen_logps").to_numpy().astype(np.float64)
    rejected = policy.column("ref_rejected_logps").to_numpy().astype(np.float64)
    prompt_len = _lengths(table, "prompt_ids")
    n_chosen = _scored_tokens(prompt_len, _lengths(table, "chosen_ids"))
    n_rejected = _scored_tokens(prompt_len, _lengths(table, "rejected_ids"))
    dropped: dict[str, int] = {}
    no_tokens = (n_chosen < 1) | (n_rejected < 1)

    def rank(c: np.ndarray, r: np.ndarray) -> np.ndarray:
        if normalize:
            with np.errstate(divide="ignore", invalid="ignore"):
                c, r = c / n_chosen, r / n_rejected
            c[no_tokens] = np.nan
        return _win(c - r)

    columns: dict[str, np.ndarray] = {"policy_chosen_logps": chosen,
                                      "policy_rejected_logps": rejected,
                                      "ranked_correctly": rank(chosen.copy(), rejected.copy())}
    if normalize and no_tokens.any():
        dropped["no_scored_tokens"] = int(no_tokens.sum())
    figures: dict[str, Any] = {"pairs": table.num_rows,
                               "ranking_accuracy": _mean(columns["ranked_correctly"]),
                               "ties": int((columns["ranked_correctly"] == 0.5).sum())}
    ref = None
    if ref_model is not None:
        ref_table = _logps(ref_model, ids, **run)
        ref = (ref_table.column("ref_chosen_logps").to_numpy().astype(np.float64),
               ref_table.column("ref_rejected_logps").to_numpy().astype(np.float64))
        columns["ref_chosen_logps"], columns["ref_rejected_logps"] = ref
    elif has_ref_columns:
        ref = (_float_column(table, "ref_chosen_logps"),
               _float_column(table, "ref_rejected_logps"))
    if ref is not None:
        missing_ref = np.isnan(ref[0]) | np.isnan(ref[1])
        if missing_ref.any():
            dropped["null_ref_logps"] = int(missing_ref.sum())
        columns["ref_ranked_correctly"] = rank(ref[0].copy(), ref[1].copy())
        figures["ref_ranking_accuracy"] = _mean(columns["ref_ranked_correctly"])
    if alphas is not None:
        assert ref is not None
        with np.errstate(divide="ignore"):
            log_odds = np.log(alphas) - np.log1p(-alphas)
        margin = ref[0] - ref[1] + log_odds / beta
        # alpha in {0, 1} makes the margin infinite whatever the (finite) reference margin.
        margin[np.isnan(ref[0] - ref[1])] = np.nan
        if np.isnan(alphas).any():
            dropped["null_alpha"] = int(np.isnan(alphas).sum())
        columns["idealized_margin"] = margin
        columns["idealized_correct"] = _win(margin)
        figures["idealized_ranking_accuracy"] = _mean(columns["idealized_correct"])

    out = table
    for name, values in columns.items():
        if name in out.column_names:
            out = out.drop_columns([name])
        out = out.append_column(name, pa.array(values, pa.float64(), mask=np.isnan(values)))
    out = plain_unless_views(out, views)
    parameters = {"beta": beta, "alpha": alpha, "normalize": normalize, "packed": packed,
                  "max_tokens": max_tokens, "model": _name(model),
                  "ref_model": _name(ref_model) if ref_model is not None
                  else ("columns" if has_ref_columns else None)}
    return attach(out, "ranking_accuracy", parameters,
                  {"rows_in": table.num_rows, "dropped": dropped, **figures}, source=table)


def _name(model: Any) -> str:
    return (getattr(getattr(model, "config", None), "_name_or_path", None)
            or type(model).__name__)


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b of two equal-length vectors (ties adjusted); NaN when undefined.

    ``(C - D) / sqrt((n0 - tx) * (n0 - ty))`` over the ``n0 = n (n - 1) / 2`` pairs, with
    ``C`` / ``D`` the concordant / discordant pairs and ``tx`` / ``ty`` the pairs tied in
    ``x`` / ``y`` (scipy.stats.kendalltau's default variant).

    Examples
    --------
    >>> from prefkit.eval.ranking import kendall_tau_b
    >>> kendall_tau_b(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    -1.0
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    i, j = np.triu_indices(len(x), 1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    denominator = math.sqrt(float((sx != 0).sum()) * float((sy != 0).sum()))
    if denominator == 0:
        return math.nan
    return float((sx * sy).sum()) / denominator


def list_ranking(
    model: Any,
    tokenized: Any,
    *,
    scores: str = "scores",
    normalize: bool = False,
    packed: bool = False,
    max_tokens: int = 8192,
    device: Any = None,
    progress: bool = False,
    chunk_tokens: int | None = None,
    chunk_vocab: int | None = None,
    views: bool = False,
) -> pa.Table:
    """Kendall tau and top-1 accuracy of a policy's log-probs against ranked lists' scores.

    For each list (:func:`prefkit.rank_lists` output tokenised by
    :func:`prefkit.tokenize_lists`), the policy's log-prob of every response (sum over its
    tokens, or the per-token mean with ``normalize=True``) is compared with the list's
    ``scores``:

    - ``kendall_tau``: Kendall's tau-b between log-probs and scores (ties adjusted, see
      :func:`kendall_tau_b`); null when undefined (fewer than two responses, or all scores or
      all log-probs equal).
    - ``top1_correct``: the share of the policy's highest-log-prob responses (usually one) that
      have the list's highest score; so a tie between a best and a worse response counts 0.5,
      as for pairs. Null for lists with fewer than two responses or all scores equal.

    Parameters
    ----------
    model
        The policy: a transformers causal LM.
    tokenized
        Output of :func:`prefkit.tokenize_lists` (``prompt_ids``, ``response_ids`` and the
        ``scores`` column).
    scores
        Name of the list<float> column of scores (higher is better).
    normalize
        Compare per-token mean log-probs instead of sums.
    packed, max_tokens, device, progress, chunk_tokens, chunk_vocab
        Passed to :func:`prefkit.reference_logps`.
    views
        As in :func:`prefkit.reference_logps`.

    Returns
    -------
    pyarrow.Table
        ``tokenized`` plus ``policy_logps`` (list<float64>, sums), ``kendall_tau`` and
        ``top1_correct`` (float64). The provenance holds ``kendall_tau`` and
        ``top1_accuracy`` (means over the lists that have a value), ``lists`` and
        ``dropped`` (lists without a value, by reason: ``single_response``, ``tied_scores``,
        ``null_score``, ``no_scored_tokens`` for both figures; ``tied_logps``, all log-probs
        equal, for ``kendall_tau`` only).

    Examples
    --------
    >>> import torch, pyarrow as pa, prefkit as pk
    >>> from prefkit.eval.ranking import list_ranking
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32,
    ...                                      num_hidden_layers=1, num_attention_heads=2))
    >>> lists = pa.table({"prompt_ids": [[1, 3]], "response_ids": [[[5, 2], [6, 7, 2], [8, 2]]],
    ...                   "scores": [[3.0, 2.0, 1.0]]})
    >>> out = list_ranking(model, lists)
    >>> -1.0 <= pk.report_of(out)["kendall_tau"] <= 1.0
    True
    """
    _check_common(max_tokens, 1.0)
    if not isinstance(normalize, bool):
        raise PrefkitError(f"normalize must be True or False, got {normalize!r}")
    table = as_table(tokenized, argument="tokenized")
    for name in (*_LIST_IDS, scores):
        if name not in table.column_names:
            raise PrefkitError(f"tokenized must come from pk.tokenize_lists with a {scores!r} "
                               f"column; column {name!r} is missing (it has columns "
                               f"{table.column_names})")
    score_type = table.schema.field(scores).type
    if not (pa.types.is_list(score_type) or pa.types.is_large_list(score_type)) or not (
            pa.types.is_floating(score_type.value_type)
            or pa.types.is_integer(score_type.value_type)):
        raise PrefkitError(f"column {scores!r} must be a list of numbers, got {score_type}")
    ids = table.select(list(_LIST_IDS))
    logps = _logps(model, ids, max_tokens=max_tokens, packed=packed, device=device,
                   progress=progress, chunk_tokens=chunk_tokens, chunk_vocab=chunk_vocab)
    logp_lists = logps.column("ref_logps").to_pylist()
    score_lists = table.column(scores).to_pylist()
    prompt_lens = _lengths(table, "prompt_ids")
    response_lists = table.column("response_ids").to_pylist()
    taus, tops = np.full(table.num_rows, np.nan), np.full(table.num_rows, np.nan)
    dropped: dict[str, int] = {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for row, (values, score, responses) in enumerate(zip(logp_lists, score_lists,
                                                         response_lists)):
        if score is None or len(score) != len(values):
            raise PrefkitError(f"column {scores!r} must hold one score per response; row {row} "
                               f"has {None if score is None else len(score)} scores for "
                               f"{len(values)} responses")
        y = np.array([math.nan if s is None else s for s in score], np.float64)
        x = np.array(values, np.float64)
        if normalize:
            counts = np.array([len(r) for r in responses]) - (prompt_lens[row] == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(counts > 0, x / counts, np.nan)
        if len(x) < 2:
            drop("single_response")
            continue
        if np.isnan(y).any() or np.isnan(x).any():
            drop("null_score" if np.isnan(y).any() else "no_scored_tokens")
            continue
        if (y == y[0]).all():
            drop("tied_scores")
            continue
        best = x == x.max()
        tops[row] = float((y[best] == y.max()).sum()) / float(best.sum())
        tau = kendall_tau_b(x, y)
        if math.isnan(tau):
            drop("tied_logps")
        taus[row] = tau

    flat = pa.array([v for values in logp_lists for v in values], pa.float64())
    offsets = np.zeros(table.num_rows + 1, np.int32)
    np.cumsum([len(v) for v in logp_lists], out=offsets[1:])
    columns = {"policy_logps": pa.ListArray.from_arrays(pa.array(offsets), flat),
               "kendall_tau": pa.array(taus, pa.float64(), mask=np.isnan(taus)),
               "top1_correct": pa.array(tops, pa.float64(), mask=np.isnan(tops))}
    out = table
    for name, array in columns.items():
        if name in out.column_names:
            out = out.drop_columns([name])
        out = out.append_column(name, array)
    out = plain_unless_views(out, views)
    parameters = {"scores": scores, "normalize": normalize, "packed": packed,
                  "max_tokens": max_tokens, "model": _name(model)}
    figures = {"lists": table.num_rows, "kendall_tau": _mean(taus), "top1_accuracy": _mean(tops)}
    return attach(out, "list_ranking", parameters,
                  {"rows_in": table.num_rows, "dropped": dropped, **figures}, source=table)
