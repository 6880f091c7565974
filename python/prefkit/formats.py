"""Trainer dataset formats: prefkit's tables as TRL's and OpenRLHF's dataset types.

Most prefkit outputs already *are* a TRL dataset type (``docs/formats.md`` lists which); this
module adds the conversions that are missing:

- :func:`unpair`: pairs -> TRL's *unpaired preference* type (``prompt, completion, label``),
  what ``KTOTrainer`` (and BCO) train on, with the desirable/undesirable counts and the loss
  weights TRL's KTO docs recommend for imbalance in the provenance record;
- :func:`kto_weights`: those weights for any unpaired table (after a filter or a dedup);
- :func:`step_preference`: ``pk.tree_pairs`` output (a step prefix and two sibling next steps)
  -> TRL's standard *preference* type with an explicit prompt (Step-DPO style).

Everything is whole-column Arrow work (``concat``, ``take``, ``filter``, ``binary_join``); no
per-row Python.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, materialize, plain_unless_views

#: The columns of TRL's unpaired preference type, in the order ``unpair`` writes them.
UNPAIRED_COLUMNS = ("prompt", "completion", "label")
ORDERS = ("blocks", "interleave")
NULLS = ("drop", "error")


# ------------------------------------------------------------------------------------------
# Column checks
# ------------------------------------------------------------------------------------------


def _is_text(dtype: pa.DataType) -> bool:
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
            or pa.types.is_string_view(dtype))


def _is_messages(dtype: pa.DataType) -> bool:
    """Chat messages: a list of structs (``list<struct<role, content, ...>>``)."""
    if not (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)
            or pa.types.is_list_view(dtype) or pa.types.is_large_list_view(dtype)):
        return False
    return pa.types.is_struct(dtype.value_type)


def _column(table: pa.Table, name: Any, argument: str, hint: str = "") -> pa.ChunkedArray:
    if not isinstance(name, str):
        raise PrefkitError(f"{argument} must be a column name, got {name!r}")
    if name not in table.column_names:
        raise PrefkitError(
            f"column '{name}' not found; the table has columns {table.column_names}{hint}"
        )
    return table.column(name)


def _conversation(table: pa.Table, name: str, argument: str) -> pa.ChunkedArray:
    column = _column(table, name, argument)
    if not (_is_text(column.type) or _is_messages(column.type)):
        raise PrefkitError(
            f"column '{name}' must be text (string, large_string, string_view) or chat messages "
            f"(list<struct<role, content>>), got {column.type}"
        )
    return column


def _first_null(column: pa.ChunkedArray) -> int:
    return int(pc.index(pc.is_null(column), True).as_py())


def _same_type(chosen: pa.ChunkedArray, rejected: pa.ChunkedArray, names: tuple[str, str]):
    """The two completion columns cast to one type, so that they concatenate into one."""
    if chosen.type == rejected.type:
        return chosen, rejected
    if _is_text(chosen.type) and _is_text(rejected.type):
        return chosen.cast(pa.large_string()), rejected.cast(pa.large_string())
    if _is_messages(chosen.type) and _is_messages(rejected.type):
        try:
            return chosen, rejected.cast(chosen.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    raise PrefkitError(
        f"columns '{names[0]}' and '{names[1]}' must hold the same kind of completion (both text "
        f"or both chat messages of one type), got {chosen.type} and {rejected.type}"
    )


def _twice(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column followed by itself, zero-copy (the chunks are listed twice)."""
    return pa.chunked_array(list(column.chunks) * 2, type=column.type)


# ------------------------------------------------------------------------------------------
# KTO: unpaired preference
# ------------------------------------------------------------------------------------------


def kto_weights(desirable: Any, undesirable: int | None = None, *,
                label: str = "label") -> dict[str, float]:
    """``desirable_weight`` and ``undesirable_weight`` for ``trl.KTOConfig``, as TRL's KTO docs
    recommend for imbalanced data.

    TRL (docs "KTO Trainer", section *Imbalanced data*): upweight the less common kind so that
    ``(desirable_weight * n_desirable) / (undesirable_weight * n_undesirable)`` lies in
    ``[1, 4/3]``; ``KTOTrainer`` warns when neither weight is in that range. This returns
    weight 1 for the more common kind and, for the rarer kind, its count ratio rounded to two
    decimals in the direction that keeps the ratio ``>= 1`` (so it sits at about 1:1, inside
    TRL's range and its two-decimal check). Equal counts, or a kind that is absent, give
    ``1.0`` and ``1.0``.

    Parameters
    ----------
    desirable
        The number of desirable (``label`` true) rows, or an unpaired table (any table-like,
        e.g. the result of :func:`unpair` after a filter) whose boolean ``label`` column is
        counted.
    undesirable
        The number of undesirable rows, when ``desirable`` is a number.
    label
        The label column, when a table is given.

    Examples
    --------
    >>> from prefkit.formats import kto_weights
    >>> kto_weights(100, 100)
    {'desirable_weight': 1.0, 'undesirable_weight': 1.0}
    >>> kto_weights(10, 100)  # 10 desirable, 100 undesirable: upweight the desirable ones
    {'desirable_weight': 10.0, 'undesirable_weight': 1.0}
    >>> kto_weights(300, 200)
    {'desirable_weight': 1.0, 'undesirable_weight': 1.5}
    """
    if undesirable is None:
        table = as_table(desirable)
        labels = _column(table, label, "label")
        if not pa.types.is_boolean(labels.type):
            raise PrefkitError(f"column '{label}' must be boolean, got {labels.type}")
        if labels.null_count:
            raise PrefkitError(f"column '{label}' has a null at row {_first_null(labels)}")
        n_desirable = int(pc.sum(labels.cast(pa.int64())).as_py() or 0)
        n_undesirable = table.num_rows - n_desirable
    else:
        n_desirable, n_undesirable = desirable, undesirable
    for name, value in (("desirable", n_desirable), ("undesirable", n_undesirable)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise PrefkitError(f"{name} must be a count (an integer >= 0), got {value!r}")
    n_desirable, n_undesirable = int(n_desirable), int(n_undesirable)
    desirable_weight = undesirable_weight = 1.0
    if n_desirable and n_undesirable and n_desirable != n_undesirable:
        if n_desirable < n_undesirable:  # rounded up: the ratio stays >= 1 (at most 1.01)
            desirable_weight = math.ceil(100 * n_undesirable / n_desirable - 1e-9) / 100
        else:  # rounded down, for the same reason
            undesirable_weight = math.floor(100 * n_desirable / n_undesirable + 1e-9) / 100
    return {"desirable_weight": desirable_weight, "undesirable_weight": undesirable_weight}


def unpair(
    pairs: Any,
    *,
    prompt: str | None = "prompt",
    chosen: str = "chosen",
    rejected: str = "rejected",
    order: str = "blocks",
    nulls: str = "drop",
    views: bool = False,
) -> pa.Table:
    """Pairs -> TRL's *unpaired preference* rows (``prompt, completion, label``) for KTO.

    Each pair gives two rows: its chosen completion with ``label`` true (desirable) and its
    rejected completion with ``label`` false (undesirable), each with the pair's prompt and
    every other column of the pair (scores, margin, ids, ...) repeated. This is exactly what
    ``trl.data_utils.unpair_preference_dataset`` (which ``trl.KTOTrainer`` applies to paired
    data) produces, computed on whole Arrow columns: with the default ``order="blocks"`` the
    rows are all the chosen completions in pair order, then all the rejected ones, which is
    TRL's order for up to 1000 pairs (its default ``map`` batch) and for any number with
    ``unpair_preference_dataset(dataset, batch_size=None)``.

    The provenance record (``pk.report_of``) holds the counts ``desirable`` and
    ``undesirable`` and, under ``kto_weights``, the ``desirable_weight`` and
    ``undesirable_weight`` TRL's KTO docs recommend for them (:func:`kto_weights`), ready for
    ``trl.KTOConfig(**pk.report_of(rows)["kto_weights"])``. Straight from pairs the counts are
    equal (weights 1) unless completions were null; recompute them with :func:`kto_weights`
    after filtering or deduplicating the rows.

    Parameters
    ----------
    pairs
        A pair table (pyarrow, polars, pandas, ``datasets``...), e.g. ``pk.mine_pairs`` or
        ``pk.split_prompt`` output. Completions are text or chat messages (TRL's standard or
        conversational format); the two columns must be of the same kind.
    prompt
        The prompt column; it is written as ``prompt``. ``None`` for a table without one (an
        implicit prompt: the output then has no prompt, as TRL's has not; ``pk.split_prompt``
        first is better, KTO needs a prompt).
    chosen, rejected
        The completion columns.
    order
        ``"blocks"`` (TRL's order, above) or ``"interleave"``: pair 0 chosen, pair 0 rejected,
        pair 1 chosen, ... so that every even-sized sequential batch holds as many desirable as
        undesirable rows (``KTOTrainer`` samples sequentially by default and estimates its KL
        term inside each batch).
    nulls
        A null completion is dropped (``"drop"``, counted as ``null_chosen`` /
        ``null_rejected``; the other completion of the pair is kept) or raises (``"error"``).
    views
        ``True``: string_view text of the input stays string_view (no text copied); default:
        it comes back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        ``prompt, completion (the completions' type), label (bool)``, then the pair table's
        other columns. Text keeps its Arrow type (views stay views unless rows had to be
        dropped or interleaved, which copies them as ``large_string``).

    Raises
    ------
    PrefkitError
        A missing column (named), completions that are neither text nor messages or of two
        kinds, an input column that would collide with ``prompt``, ``completion`` or
        ``label``, a null with ``nulls="error"``, a bad ``order`` or ``nulls``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> pairs = pa.table({"prompt": ["The sky is", "The sun is"],
    ...                   "chosen": [" blue.", " in the sky."],
    ...                   "rejected": [" green.", " in the sea."]})
    >>> rows = pk.unpair(pairs)
    >>> rows.to_pylist()[:2]
    [{'prompt': 'The sky is', 'completion': ' blue.', 'label': True}, {'prompt': 'The sun is', 'completion': ' in the sky.', 'label': True}]
    >>> report = pk.report_of(rows)
    >>> report["desirable"], report["undesirable"], report["kto_weights"]
    (2, 2, {'desirable_weight': 1.0, 'undesirable_weight': 1.0})
    """
    if order not in ORDERS:
        raise PrefkitError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if nulls not in NULLS:
        raise PrefkitError(f"nulls must be one of {', '.join(NULLS)}, got {nulls!r}")
    table = as_table(pairs, argument="pairs")
    good = _conversation(table, chosen, "chosen")
    bad = _conversation(table, rejected, "rejected")
    if chosen == rejected:
        raise PrefkitError(f"chosen and rejected must be two columns, got '{chosen}' twice")
    if prompt is not None:
        _column(table, prompt, "prompt", hint=(
            "; pass prompt=None for a table whose prompt is implicit in the completions, or "
            "split it off first with pk.split_prompt"))
        if prompt in (chosen, rejected):
            raise PrefkitError(f"prompt column '{prompt}' is also a completion column")
    input_columns = (prompt, chosen, rejected)
    others = [name for name in table.column_names if name not in input_columns]
    for name in others:
        if name in UNPAIRED_COLUMNS:
            raise PrefkitError(
                f"column '{name}' would collide with the output column '{name}'; rename or drop "
                f"it first"
            )
    good, bad = _same_type(good, bad, (chosen, rejected))
    n = table.num_rows
    null_chosen, null_rejected = good.null_count, bad.null_count
    if nulls == "error":
        for name, column in ((chosen, good), (rejected, bad)):
            if column.null_count:
                raise PrefkitError(f"column '{name}' has a null at row {_first_null(column)}")

    columns = {}
    if prompt is not None:
        columns["prompt"] = _twice(table.column(prompt))
    columns["completion"] = pa.chunked_array(list(good.chunks) + list(bad.chunks), type=good.type)
    labels = np.zeros(2 * n, dtype=bool)
    labels[:n] = True
    columns["label"] = pa.chunked_array([pa.array(labels)], type=pa.bool_())
    for name in others:
        columns[name] = _twice(table.column(name))
    out = pa.table(columns)

    if order == "interleave" and n:
        # Row 2i is pair i's chosen completion, row 2i + 1 its rejected one.
        indices = np.arange(2 * n, dtype=np.int64).reshape(2, n).T.reshape(-1)
        out = materialize(out).take(pa.array(indices))
    if null_chosen or null_rejected:
        out = materialize(out)
        out = out.filter(pc.is_valid(out.column("completion")))

    desirable = n - null_chosen
    undesirable = n - null_rejected
    both_null = int(pc.sum(pc.and_(pc.is_null(good), pc.is_null(bad)).cast(pa.int64())).as_py()
                    or 0) if (null_chosen and null_rejected) else 0
    accounting = {
        "rows_in": n,
        "rows_used": n - both_null,
        "dropped": {"null_completions": both_null} if both_null else {},
        "rows_out": out.num_rows,
        "null_chosen": null_chosen,
        "null_rejected": null_rejected,
        "desirable": desirable,
        "undesirable": undesirable,
        "kto_weights": kto_weights(desirable, undesirable),
    }
    both = _both_labels(table)
    if both is not None:
        accounting["responses_with_both_labels"] = both
    parameters = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "order": order,
                  "nulls": nulls}
    return attach(plain_unless_views(out, views), "unpair", parameters, accounting, source=table)


def _both_labels(table: pa.Table) -> int | None:
    """With ``chosen_row``/``rejected_row`` (``pk.mine_pairs`` output): how many input responses
    are chosen in one pair and rejected in another (``all_pairs``, ``adjacent``...): after
    unpairing they appear once desirable and once undesirable."""
    if "chosen_row" not in table.column_names or "rejected_row" not in table.column_names:
        return None
    rows = table.column("chosen_row"), table.column("rejected_row")
    if not all(pa.types.is_integer(column.type) for column in rows):
        return None
    chosen_rows = pc.unique(rows[0].drop_null())
    rejected_rows = pc.unique(rows[1].drop_null())
    return int(pc.sum(pc.is_in(chosen_rows, value_set=rejected_rows).cast(pa.int64())).as_py()
               or 0)


# ------------------------------------------------------------------------------------------
# Trees: step-level pairs as TRL preference rows
# ------------------------------------------------------------------------------------------


def step_preference(
    tree_pairs: Any,
    *,
    separator: str = "\n",
    prompt: str = "prompt",
    prefix: str = "prefix",
    chosen: str = "chosen",
    rejected: str = "rejected",
) -> pa.Table:
    r"""``pk.tree_pairs`` output -> TRL's standard *preference* type with an explicit prompt.

    A step-level pair is (problem, the steps taken so far, a better and a worse next step). As
    in Step-DPO, the prompt is the problem followed by the steps so far, and the completions are
    the two next steps: ``prompt = problem + separator + step_1 + separator + ... + step_d +
    separator`` (just ``problem + separator`` at the root), ``chosen``/``rejected`` unchanged,
    so ``prompt + chosen`` is the solution text up to and including the chosen step, with every
    step preceded by ``separator``. ``DPOTrainer`` (and OpenRLHF's DPO/RM datasets with
    ``prompt_key="prompt"``) train on the result as it is.

    Parameters
    ----------
    tree_pairs
        The result of ``pk.tree_pairs`` (or a table with the same columns): a text prompt, a
        ``list<string>`` prefix and text chosen/rejected steps.
    separator
        Put before every step (the one steps were split on, e.g. ``"\n"`` or ``"\n\n"``).
    prompt, prefix, chosen, rejected
        Column names.

    Returns
    -------
    pyarrow.Table
        ``prompt`` (the problem and the prefix, ``large_string``), ``chosen``, ``rejected``,
        then the input's other columns (``prefix`` included, as it was).

    Raises
    ------
    PrefkitError
        A missing or mistyped column, or a null prompt (a node table without prompts: pass
        one to ``pk.build_trees``), prefix or step, naming the column and the row.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from prefkit.formats import step_preference
    >>> pairs = pa.table({"prompt": ["2+3*4?"], "prefix": [["3*4 = 12"]],
    ...                   "chosen": ["2+12 = 14"], "rejected": ["2+12 = 24"]})
    >>> step_preference(pairs).to_pylist()
    [{'prompt': '2+3*4?\n3*4 = 12\n', 'chosen': '2+12 = 14', 'rejected': '2+12 = 24', 'prefix': ['3*4 = 12']}]
    """
    if not isinstance(separator, str):
        raise PrefkitError(f"separator must be a string, got {separator!r}")
    table = as_table(tree_pairs, argument="tree_pairs")
    for name, argument in ((prompt, "prompt"), (chosen, "chosen"), (rejected, "rejected")):
        column = _column(table, name, argument)
        if not _is_text(column.type):
            hint = (" (render chat prompts to text first, e.g. with the tokenizer's chat "
                    "template)" if _is_messages(column.type) else "")
            raise PrefkitError(f"column '{name}' must be text, got {column.type}{hint}")
        if column.null_count:
            raise PrefkitError(f"column '{name}' has a null at row {_first_null(column)}")
    steps = _column(table, prefix, "prefix")
    if not ((pa.types.is_list(steps.type) or pa.types.is_large_list(steps.type))
            and _is_text(steps.type.value_type)):
        raise PrefkitError(f"column '{prefix}' must be a list of text steps, got {steps.type}")
    if steps.null_count:
        raise PrefkitError(f"column '{prefix}' has a null at row {_first_null(steps)}")
    plain = materialize(table.select([prompt, prefix]))
    problem = plain.column(prompt).cast(pa.large_string())
    steps = plain.column(prefix)
    inner = pc.list_flatten(steps)
    if inner.null_count:
        row = pc.list_parent_indices(steps)[_first_null(inner)].as_py()
        raise PrefkitError(f"column '{prefix}' has a null step at row {row}")
    joined = pc.binary_join(steps, pa.scalar(separator, steps.type.value_type))
    joined = joined.cast(pa.large_string())
    sep = pa.scalar(separator, pa.large_string())
    empty = pa.scalar("", pa.large_string())
    # The last argument is the separator: problem + sep + steps + sep (+ ""), or problem + sep.
    with_steps = pc.binary_join_element_wise(problem, joined, empty, sep)
    at_root = pc.binary_join_element_wise(problem, empty, sep)
    text = pc.if_else(pc.greater(pc.list_value_length(steps), 0), with_steps, at_root)
    rest = [name for name in table.column_names if name not in (prompt, chosen, rejected)]
    if "prompt" in rest:
        raise PrefkitError("column 'prompt' would collide with the output column 'prompt'")
    columns = {"prompt": text, "chosen": table.column(chosen), "rejected": table.column(rejected)}
    columns.update({name: table.column(name) for name in rest})
    out = pa.table(columns)
    parameters = {"separator": separator, "prompt": prompt, "prefix": prefix, "chosen": chosen,
                  "rejected": rejected}
    accounting = {"rows_in": table.num_rows, "rows_used": table.num_rows, "dropped": {}}
    return attach(out, "step_preference", parameters, accounting, source=table)


# ------------------------------------------------------------------------------------------
# Ranked lists: TRL's triple preference (TPO)
# ------------------------------------------------------------------------------------------


def list_triples(
    lists: Any,
    *,
    responses: str = "responses",
    scores: str | None = "scores",
) -> pa.Table:
    """``pk.rank_lists`` / ``pk.tree_lists`` output -> TRL's *triple preference* rows
    (``trl.experimental.tpo.TPOTrainer``): ``prompt, reference, chosen, rejected``.

    No TRL or OpenRLHF dataset type holds K ranked responses (docs/formats.md); the nearest is
    TPO's triple of a gold ``reference`` completion, a ``chosen`` and a ``rejected`` one. From
    a list ranked best first, prefkit takes the best response as ``reference``, the second as
    ``chosen`` and the last (the worst) as ``rejected``. Lists of fewer than three responses
    are dropped and counted (``list_too_short``).

    Parameters
    ----------
    lists
        A table of ranked lists, best first: ``pk.rank_lists`` or ``pk.tree_lists`` output.
    responses
        The ``list<text>`` column of ranked responses.
    scores
        The ``list<float>`` column of their scores, written as ``score_reference``,
        ``score_chosen`` and ``score_rejected``; ``None`` to skip.

    Returns
    -------
    pyarrow.Table
        ``prompt`` (when the input has one), ``reference``, ``chosen``, ``rejected``, the
        three scores, then the input's other columns (``rows``, ``group_id``, ``prefix``...).

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> from prefkit.formats import list_triples
    >>> long = pa.table({"prompt": ["q"] * 3, "response": ["a", "b", "c"],
    ...                  "score": [3.0, 2.0, 1.0]})
    >>> list_triples(pk.rank_lists(long)).select(["prompt", "reference", "chosen", "rejected"]
    ...                                          ).to_pylist()
    [{'prompt': 'q', 'reference': 'a', 'chosen': 'b', 'rejected': 'c'}]
    """
    table = as_table(lists, argument="lists")
    ranked = _column(table, responses, "responses")
    if not ((pa.types.is_list(ranked.type) or pa.types.is_large_list(ranked.type))
            and (_is_text(ranked.type.value_type) or _is_messages(ranked.type.value_type)
                 or pa.types.is_struct(ranked.type.value_type))):
        raise PrefkitError(f"column '{responses}' must be a list of responses, got {ranked.type}")
    names = [responses] + ([scores] if scores is not None else [])
    if scores is not None:
        values = _column(table, scores, "scores")
        if not ((pa.types.is_list(values.type) or pa.types.is_large_list(values.type))
                and (pa.types.is_floating(values.type.value_type)
                     or pa.types.is_integer(values.type.value_type))):
            raise PrefkitError(f"column '{scores}' must be a list of numbers, got {values.type}")
    for name in ("reference", "chosen", "rejected", "score_reference", "score_chosen",
                 "score_rejected"):
        if name in table.column_names and name not in names:
            raise PrefkitError(
                f"column '{name}' would collide with the output column '{name}'; rename or "
                f"drop it first"
            )
    lengths = pc.fill_null(pc.list_value_length(ranked), 0)
    keep = pc.greater_equal(lengths, 3)
    table = materialize(table).filter(keep)
    ranked = table.column(responses)
    last = pc.subtract(pc.list_value_length(ranked), 1)
    columns: dict[str, Any] = {}
    if "prompt" in table.column_names:
        columns["prompt"] = table.column("prompt")
    flat_offsets = _list_starts(ranked)
    flat = pc.list_flatten(ranked)
    columns["reference"] = pc.list_element(ranked, 0)
    columns["chosen"] = pc.list_element(ranked, 1)
    columns["rejected"] = flat.take(pc.add(flat_offsets, last))
    if scores is not None:
        values = table.column(scores)
        flat_values = pc.list_flatten(values)
        columns["score_reference"] = pc.list_element(values, 0)
        columns["score_chosen"] = pc.list_element(values, 1)
        columns["score_rejected"] = flat_values.take(pc.add(_list_starts(values), last))
    for name in table.column_names:
        if name not in names and name not in columns:
            columns[name] = table.column(name)
    out = pa.table(columns)
    n = len(keep)
    kept = int(pc.sum(keep.cast(pa.int64())).as_py() or 0)
    accounting = {"rows_in": n, "rows_used": kept,
                  "dropped": {"list_too_short": n - kept} if n - kept else {}}
    parameters = {"responses": responses, "scores": scores}
    return attach(out, "list_triples", parameters, accounting, source=as_table(lists))


def _list_starts(column: pa.ChunkedArray) -> pa.Array:
    """Where each list starts in ``pc.list_flatten(column)`` (int64)."""
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return pa.array(starts)
