"""Tokenising pairs and ranked lists into Arrow tables of token ids, ready for collation.

Token ids come from ``prefkit._token_ids``: every distinct text tokenised once, and for
byte-level BPE tokenizers every distinct pre-tokenizer piece once (same ids as the tokenizer,
several times faster). Special tokens, truncation and the Arrow output are computed with numpy
over whole columns.

Rules (also in docs/batches.md):

- Texts are tokenised with ``add_special_tokens=False``; then, with ``add_special_tokens=True``,
  the tokenizer's BOS token is put in front of every prompt and its EOS token after every
  completion, unless the text already starts (ends) with it (chat templates often write them).
- ``max_prompt_length``: a longer prompt keeps its **last** tokens (the question is usually at
  the end), and its BOS token, which counts towards the limit.
- ``max_length`` bounds ``prompt + completion`` for every completion of a row. When the longest
  one does not fit, the prompt gives way first (keeping its end) but keeps at least
  ``max_length // 2`` tokens; then the completions keep their **first**
  ``max_length - len(prompt)`` tokens (a cut completion loses its EOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit._token_ids import Ragged, tokenize_texts
from prefkit.io import as_table, plain_unless_views


def _check_limit(name: str, value: Any, low: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise PrefkitError(f"{name} must be None or an integer >= {low}, got {value!r}")


def _column(table: pa.Table, name: str, argument: str) -> pa.Array:
    if not isinstance(name, str):
        raise PrefkitError(f"{argument} must be a column name, got {name!r}")
    if name not in table.column_names:
        raise PrefkitError(f"column '{name}' not found; the table has columns {table.column_names}")
    column = table.column(name)
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if array.null_count:
        row = int(pc.index(pc.is_null(array), True).as_py())
        raise PrefkitError(f"column '{name}' has a null at row {row}")
    return array


def _is_text(dtype: pa.DataType) -> bool:
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
            or pa.types.is_string_view(dtype))


def _is_messages(dtype: pa.DataType) -> bool:
    """``list<struct<role, content, ...>>``: one conversation per row."""
    if not (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)
            or pa.types.is_list_view(dtype)):
        return False
    inner = dtype.value_type
    return pa.types.is_struct(inner) and {"role", "content"} <= {f.name for f in inner}


def _render(tokenizer: Any, conversations: list, chat_template: str | None,
            generation_prompt: bool) -> list[str]:
    """Every conversation rendered with the chat template; each distinct one once (a prompt
    recurs in every pair mined from it, and Jinja costs tens of microseconds a row)."""
    try:
        keys = [tuple(tuple(message.items()) for message in c) for c in conversations]
        number: dict = {}
        which = [number.setdefault(key, len(number)) for key in keys]
    except TypeError:  # a field holds a list (tool calls...): not hashable, render every row
        which = list(range(len(conversations)))
        number = dict.fromkeys(which)
    distinct: list = [None] * len(number)
    for row, i in enumerate(which):
        if distinct[i] is None:
            distinct[i] = conversations[row]
    if not distinct:
        return []
    try:
        rendered = tokenizer.apply_chat_template(
            distinct, chat_template=chat_template, tokenize=False,
            add_generation_prompt=generation_prompt,
        )
    except Exception as err:  # transformers raises ValueError, jinja2 its own errors
        raise PrefkitError(
            f"could not apply the chat template ({type(err).__name__}: {err}); pass "
            f"chat_template= or use a tokenizer that has one"
        ) from err
    rendered = [rendered] if isinstance(rendered, str) else list(rendered)
    return [rendered[i] for i in which]


class _Prompts(NamedTuple):
    texts: list[str] | pa.Array
    conversations: list | None  # the messages, when completions must be rendered after them


def _prompt_texts(tokenizer: Any, array: pa.Array, name: str,
                  chat_template: str | None) -> _Prompts:
    """Prompts as text: messages rendered with the chat template (ending with the generation
    prompt), text wrapped as one user message when ``chat_template`` is given, else verbatim."""
    if _is_messages(array.type):
        conversations = array.to_pylist()
        return _Prompts(_render(tokenizer, conversations, chat_template, True), conversations)
    if not _is_text(array.type):
        raise PrefkitError(
            f"column '{name}' must be text or chat messages (list<struct<role, content>>), "
            f"got {array.type}"
        )
    if chat_template is None:
        return _Prompts(array, None)
    conversations = [[{"role": "user", "content": text}] for text in array.to_pylist()]
    return _Prompts(_render(tokenizer, conversations, chat_template, True), None)


def _completion_texts(tokenizer: Any, array: pa.Array, name: str, prompts: _Prompts,
                      prompt_name: str, chat_template: str | None) -> list[str] | pa.Array:
    """Completions as text; assistant messages are rendered after their prompt's messages and
    cut off at the end of the rendered prompt, as TRL does."""
    if _is_text(array.type):
        return array
    if not _is_messages(array.type):
        raise PrefkitError(
            f"column '{name}' must be text or chat messages (list<struct<role, content>>), "
            f"got {array.type}"
        )
    if prompts.conversations is None:
        raise PrefkitError(
            f"column '{name}' holds chat messages, so column '{prompt_name}' must hold chat "
            f"messages too, not text"
        )
    completions = array.to_pylist()
    full = _render(tokenizer, [p + c for p, c in zip(prompts.conversations, completions)],
                   chat_template, False)
    texts = []
    for row, (whole, head) in enumerate(zip(full, prompts.texts)):
        if not whole.startswith(head):
            raise PrefkitError(
                f"row {row}: the chat template renders prompt + '{name}' so that it does not "
                f"start with the rendered prompt; cannot split the completion off"
            )
        texts.append(whole[len(head):])
    return texts


class _Prompt(NamedTuple):
    ragged: Ragged
    body_start: np.ndarray  # the text's tokens, after a BOS it already had
    lead: np.ndarray  # int64 0/1: a BOS token comes first


class _Completion(NamedTuple):
    ragged: Ragged
    tail: np.ndarray  # int64 0/1: an EOS token is appended


def _special(tokenizer: Any, add: bool, attribute: str) -> int | None:
    value = getattr(tokenizer, attribute, None) if add else None
    return None if value is None else int(value)


def _prompt(ragged: Ragged, bos: int | None) -> _Prompt:
    lengths = ragged.lengths
    if bos is None:
        return _Prompt(ragged, ragged.offsets[:-1].copy(), np.zeros(len(lengths), np.int64))
    if len(ragged.values):
        first = ragged.values[np.minimum(ragged.offsets[:-1], len(ragged.values) - 1)]
        has = (lengths > 0) & (first == bos)
    else:
        has = np.zeros(len(lengths), bool)
    return _Prompt(ragged, ragged.offsets[:-1] + has, np.ones(len(lengths), np.int64))


def _completion(ragged: Ragged, eos: int | None) -> _Completion:
    lengths = ragged.lengths
    if eos is None:
        return _Completion(ragged, np.zeros(len(lengths), np.int64))
    if len(ragged.values) == 0:
        return _Completion(ragged, np.ones(len(lengths), np.int64))
    last = ragged.values[np.maximum(ragged.offsets[1:] - 1, 0)]
    has = (lengths > 0) & (last == eos)
    return _Completion(ragged, (~has).astype(np.int64))


def _prompt_lengths(prompt: _Prompt) -> np.ndarray:
    return prompt.lead + (prompt.ragged.offsets[1:] - prompt.body_start)


def _completion_lengths(completion: _Completion) -> np.ndarray:
    return completion.ragged.lengths + completion.tail


def _budget(prompt_len: np.ndarray, longest: np.ndarray, max_length: int | None,
            max_prompt_length: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Prompt length to keep and completion budget per row (the rules of the module doc)."""
    keep = prompt_len if max_prompt_length is None else np.minimum(prompt_len, max_prompt_length)
    if max_length is None:
        return keep, None
    room = max_length - longest
    # The prompt gives way first, down to half the budget, so that completions (where the loss
    # is) survive whole whenever they can.
    keep = np.where(keep > room, np.maximum(room, np.minimum(keep, max_length // 2)), keep)
    return keep, max_length - keep


def _assemble(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
              lead: np.ndarray, lead_token: int | None,
              tail: np.ndarray, tail_token: int | None) -> pa.Array:
    """List array of ``[lead_token?] + values[starts:starts+lengths] + [tail_token?]`` rows."""
    out_lengths = lead + lengths + tail
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(out_lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), np.int32)
    body_offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=body_offsets[1:])
    within = np.arange(body_offsets[-1], dtype=np.int64) - np.repeat(body_offsets[:-1], lengths)
    out[np.repeat(offsets[:-1] + lead, lengths) + within] = values[
        np.repeat(starts, lengths) + within]
    if lead_token is not None:
        out[offsets[:-1][lead.astype(bool)]] = lead_token
    if tail_token is not None:
        out[offsets[1:][tail.astype(bool)] - 1] = tail_token
    return _list_array(offsets, out)


def _list_array(offsets: np.ndarray, values: Any) -> pa.Array:
    values = values if isinstance(values, pa.Array) else pa.array(values, pa.int32())
    if offsets[-1] < 2**31:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
    return pa.LargeListArray.from_arrays(pa.array(offsets), values)


def _cut_prompt(prompt: _Prompt, keep: np.ndarray, bos: int | None) -> tuple[pa.Array, int]:
    """Keep the last ``keep`` tokens of every prompt (and its BOS token)."""
    end = prompt.ragged.offsets[1:]
    body = np.minimum(end - prompt.body_start, np.maximum(keep - prompt.lead, 0))
    cut = int(np.count_nonzero(prompt.lead + body < _prompt_lengths(prompt)))
    return _assemble(prompt.ragged.values, end - body, body, prompt.lead, bos,
                     np.zeros_like(body), None), cut


def _cut_completion(completion: _Completion, budget: np.ndarray | None,
                    eos: int | None) -> tuple[pa.Array, int]:
    """Keep the first ``budget`` tokens of every completion (its EOS only if it fits)."""
    lengths = completion.ragged.lengths
    tail = completion.tail
    if budget is not None:
        body = np.minimum(lengths, budget)
        tail = tail * (budget > lengths)
    else:
        body = lengths
    cut = int(np.count_nonzero(body + tail < lengths + completion.tail))
    return _assemble(completion.ragged.values, completion.ragged.offsets[:-1], body,
                     np.zeros_like(body), None, tail, eos), cut


def _prepare(data: Any, tokenizer: Any, max_length: Any, max_prompt_length: Any) -> pa.Table:
    _check_limit("max_length", max_length, 2)
    _check_limit("max_prompt_length", max_prompt_length, 1)
    if not callable(getattr(tokenizer, "apply_chat_template", None)) and not hasattr(
            tokenizer, "backend_tokenizer"):
        raise PrefkitError(
            f"tokenizer must be a transformers tokenizer (a fast one for speed), got "
            f"{type(tokenizer).__name__}"
        )
    return as_table(data)


def _with_columns(table: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    for name, array in columns.items():
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, array)
    return table


def tokenize_pairs(
    pairs: Any,
    tokenizer: Any,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    chat_template: str | None = None,
    prompt: str = "prompt",
    chosen: str = "chosen",
    rejected: str = "rejected",
    add_special_tokens: bool = True,
    views: bool = False,
) -> pa.Table:
    """Tokenise chosen/rejected pairs into ``prompt_ids``, ``chosen_ids``, ``rejected_ids``.

    Tokenises each distinct text once (pairs of one prompt share it) and, for byte-level BPE
    tokenizers, each distinct pre-tokenizer piece once (cut in Rust with the tokenizer's own
    regex; the ids are exactly the tokenizer's). Truncation keeps the end of a prompt and the
    start of a completion; the exact rules are in the module docstring and ``docs/batches.md``.

    Parameters
    ----------
    pairs
        A table (pyarrow, polars, pandas, ``datasets``...) with a prompt and two completions,
        e.g. the result of :func:`prefkit.mine_pairs`.
    tokenizer
        A ``transformers`` tokenizer; a fast one (``tokenizer.is_fast``) is tokenised in Rust in
        parallel, a slow one works through its Python batch call.
    max_length
        Bound on ``len(prompt_ids) + len(completion_ids)`` for both completions of a pair.
    max_prompt_length
        Bound on ``len(prompt_ids)``; a longer prompt keeps its last tokens (and its BOS).
    chat_template
        A Jinja chat template. Prompts that are chat messages (``list<struct<role, content>>``)
        are always rendered with a template (this one, else the tokenizer's own) ending in the
        generation prompt; text prompts are used verbatim, or wrapped as one user message when
        ``chat_template`` is given. Completions may be text, or assistant messages when the
        prompt is messages (rendered after the prompt and split off, as TRL does).
    prompt, chosen, rejected
        Column names.
    add_special_tokens
        Put the tokenizer's BOS token before each prompt and its EOS token after each
        completion, unless the text already has it.
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The input's columns plus ``prompt_ids``, ``chosen_ids``, ``rejected_ids``
        (``list<int32>``), rows in input order. The provenance record (``pk.report_of``) counts
        truncated prompts and completions.

    Raises
    ------
    PrefkitError
        A missing column, a null, a column that is neither text nor chat messages, a bad limit.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "what": 3, "is": 4, "2+2": 5, "?": 6,
    ...          "4": 7, "5": 8, "[UNK]": 9}
    >>> backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    >>> backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>",
    ...                               eos_token="</s>", pad_token="<pad>")
    >>> pairs = pa.table({"prompt": ["what is 2+2 ?"], "chosen": ["4"], "rejected": ["5"]})
    >>> out = pk.tokenize_pairs(pairs, tok)
    >>> out.select(["prompt_ids", "chosen_ids", "rejected_ids"]).to_pylist()
    [{'prompt_ids': [1, 3, 4, 5, 6], 'chosen_ids': [7, 2], 'rejected_ids': [8, 2]}]
    >>> pk.tokenize_pairs(pairs, tok, max_prompt_length=3).column("prompt_ids").to_pylist()
    [[1, 5, 6]]
    """
    table = _prepare(pairs, tokenizer, max_length, max_prompt_length)
    bos = _special(tokenizer, add_special_tokens, "bos_token_id")
    eos = _special(tokenizer, add_special_tokens, "eos_token_id")
    prompts = _prompt_texts(tokenizer, _column(table, prompt, "prompt"), prompt, chat_template)
    texts = [_completion_texts(tokenizer, _column(table, name, argument), name, prompts, prompt,
                               chat_template)
             for name, argument in ((chosen, "chosen"), (rejected, "rejected"))]
    prompt_tokens, chosen_tokens, rejected_tokens = tokenize_texts(
        tokenizer, [prompts.texts, *texts])
    head = _prompt(prompt_tokens, bos)
    good, bad = _completion(chosen_tokens, eos), _completion(rejected_tokens, eos)
    longest = np.maximum(_completion_lengths(good), _completion_lengths(bad))
    keep, budget = _budget(_prompt_lengths(head), longest, max_length, max_prompt_length)
    prompt_ids, prompt_cut = _cut_prompt(head, keep, bos)
    chosen_ids, chosen_cut = _cut_completion(good, budget, eos)
    rejected_ids, rejected_cut = _cut_completion(bad, budget, eos)
    out = _with_columns(table, {"prompt_ids": prompt_ids, "chosen_ids": chosen_ids,
                                "rejected_ids": rejected_ids})
    parameters = {
        "max_length": max_length, "max_prompt_length": max_prompt_length,
        "chat_template": chat_template is not None, "prompt": prompt, "chosen": chosen,
        "rejected": rejected, "add_special_tokens": add_special_tokens,
        "tokenizer": getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
    }
    accounting = {
        "rows_in": table.num_rows, "dropped": {},
        "truncated": {"prompt": prompt_cut, "chosen": chosen_cut, "rejected": rejected_cut},
        "tokens": {"prompt": len(prompt_ids.values), "chosen": len(chosen_ids.values),
                   "rejected": len(rejected_ids.values)},
    }
    out = plain_unless_views(out, views)
    return attach(out, "tokenize_pairs", parameters, accounting, source=table)


def tokenize_lists(
    lists: Any,
    tokenizer: Any,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    chat_template: str | None = None,
    prompt: str = "prompt",
    responses: str = "responses",
    add_special_tokens: bool = True,
    views: bool = False,
) -> pa.Table:
    """Tokenise ranked lists into ``prompt_ids`` and ``response_ids`` (one list per row).

    The list counterpart of :func:`tokenize_pairs`, with the same rules; ``max_length`` bounds
    the prompt plus each response, the longest one deciding how far the prompt gives way.

    Parameters
    ----------
    lists
        A table with a prompt and a list of responses per row, e.g. the result of
        ``pk.rank_lists`` (``prompt, responses, scores, ...``); other columns (``scores``) are
        kept as they are.
    tokenizer, max_length, max_prompt_length, chat_template, prompt, add_special_tokens
        As in :func:`tokenize_pairs`.
    responses
        Column of ``list<string>`` (or a list of assistant-message lists when the prompt is
        chat messages).
    views
        ``True``: string_view text columns of the input stay string_view (no text copied);
        default: they come back as plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The input's columns plus ``prompt_ids`` (``list<int32>``) and ``response_ids``
        (``list<list<int32>>``), rows in input order.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "hi": 3, "hello": 4, "yo": 5, "hey": 6}
    >>> backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    >>> backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>",
    ...                               eos_token="</s>", pad_token="<pad>")
    >>> lists = pa.table({"prompt": ["hi"], "responses": [["hello hello", "yo", "hey"]],
    ...                   "scores": [[3.0, 2.0, 1.0]]})
    >>> out = pk.tokenize_lists(lists, tok, max_length=4)
    >>> out.select(["prompt_ids", "response_ids", "scores"]).to_pylist()
    [{'prompt_ids': [1, 3], 'response_ids': [[4, 4], [5, 2], [6, 2]], 'scores': [3.0, 2.0, 1.0]}]
    """
    table = _prepare(lists, tokenizer, max_length, max_prompt_length)
    bos = _special(tokenizer, add_special_tokens, "bos_token_id")
    eos = _special(tokenizer, add_special_tokens, "eos_token_id")
    prompts = _prompt_texts(tokenizer, _column(table, prompt, "prompt"), prompt, chat_template)
    nested = _column(table, responses, "responses")
    if not (pa.types.is_list(nested.type) or pa.types.is_large_list(nested.type)):
        raise PrefkitError(
            f"column '{responses}' must be a list of responses (list<string>), got {nested.type}"
        )
    flat = pc.list_flatten(nested)
    parents = pc.list_parent_indices(nested).to_numpy().astype(np.int64)
    if flat.null_count:
        row = int(parents[int(pc.index(pc.is_null(flat), True).as_py())])
        raise PrefkitError(f"column '{responses}' has a null response in row {row}")
    if prompts.conversations is not None and _is_messages(flat.type):
        # Assistant messages: render each after its own list's prompt.
        spread = _Prompts([prompts.texts[p] for p in parents],
                          [prompts.conversations[p] for p in parents])
        flat_texts = _completion_texts(tokenizer, flat, responses, spread, prompt, chat_template)
    else:
        flat_texts = _completion_texts(tokenizer, flat, responses, prompts, prompt,
                                       chat_template)
    prompt_tokens, response_tokens = tokenize_texts(tokenizer, [prompts.texts, flat_texts])
    head = _prompt(prompt_tokens, bos)
    body = _completion(response_tokens, eos)
    longest = np.zeros(table.num_rows, np.int64)
    np.maximum.at(longest, parents, _completion_lengths(body))
    keep, budget = _budget(_prompt_lengths(head), longest, max_length, max_prompt_length)
    prompt_ids, prompt_cut = _cut_prompt(head, keep, bos)
    inner, response_cut = _cut_completion(body, None if budget is None else budget[parents], eos)
    list_offsets = nested.offsets.to_numpy().astype(np.int64)
    response_ids = _list_array(list_offsets - list_offsets[0], inner)
    out = _with_columns(table, {"prompt_ids": prompt_ids, "response_ids": response_ids})
    parameters = {
        "max_length": max_length, "max_prompt_length": max_prompt_length,
        "chat_template": chat_template is not None, "prompt": prompt, "responses": responses,
        "add_special_tokens": add_special_tokens,
        "tokenizer": getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
    }
    accounting = {
        "rows_in": table.num_rows, "dropped": {},
        "truncated": {"prompt": prompt_cut, "responses": response_cut},
        "tokens": {"prompt": len(prompt_ids.values), "responses": len(inner.values)},
    }
    out = plain_unless_views(out, views)
    return attach(out, "tokenize_lists", parameters, accounting, source=table)


__all__: Sequence[str] = ("tokenize_lists", "tokenize_pairs")
