"""Fuzz harness: every public table operation of prefkit on tables built from the fuzzer's bytes.

The first byte picks an operation; the rest builds its table (``fuzz/prefkit_fuzz.py``: every string
type, slices, chunks, nulls, NUL, invalid UTF-8, huge and empty text, chat messages, every
numeric type with NaN and infinities) and its arguments (including out-of-range and
wrong-typed ones).

Oracle (``prefkit_fuzz.expect_clean``): only ``prefkit.PrefkitError`` may escape, plus ``TypeError``
where the harness passed an argument of the wrong Python type; no message carries panic text;
every result accounts for every input row. Where the input is valid, ``mine_pairs``,
``rank_lists``, ``order_curriculum`` and exact ``dedup`` must equal ``tests/reference.py``,
and with documented arguments they must not raise where the reference does not.

Not covered here (they need torch or a model): the losses, ``score``, ``tokenize_*``, the
collators, ``reference_logps``. ``read_table`` has its own harness, ``fuzz/readers.py``.

Run: ``python fuzz/ops.py [libFuzzer flags] [corpus folders]``, or through ``fuzz/run.py``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import prefkit as pk
    import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prefkit_fuzz import Draw, Finding, Table, check_accounting, expect_clean, load_reference

ref = load_reference()
SCORE_TYPES = ("float64", "float64", "float32", "int64", "int32", "int8", "uint64")
STRATEGIES = ref.STRATEGIES
#: Argument values past the edges: zero, negative, above u64, NaN, wrong types.
EXTREME_INTS = (0, -1, 2**31, 2**63, 2**64 - 1, 2**64, 10**30)
EXTREME_FLOATS = (math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324)


# -- tables --------------------------------------------------------------------------------


def key_values(d: Draw, n: int, kind: str) -> list:
    """``n`` prompt keys from a few distinct ones (so groups have several rows), some null."""
    if kind == "chat":
        distinct = [d.conversation() for _ in range(d.int(1, 4))]
    else:
        distinct = [d.text() for _ in range(d.int(1, 4))]
    picks = sorted(d.int(0, len(distinct) - 1) for _ in range(n))
    if d.bool():  # groups interleaved rather than contiguous
        picks = [picks[(i * 7) % n] for i in range(n)] if n else picks
    return [d.maybe(distinct[p], 8) for p in picks]


def score_column(d: Draw, n: int, kind: str) -> pa.Array:
    if kind == "string":
        return d.text_array([d.text() for _ in range(n)])
    if kind == "bool":
        return pa.array([d.bool() for _ in range(n)], pa.bool_())
    if kind == "null":
        return pa.nulls(n)
    return d.number_array([d.maybe(d.number(not kind.startswith("float"))) for _ in range(n)],
                          kind)


def long_table(d: Draw, n_scores: int) -> Table:
    """One row per response: prompt (text or chat), response, scores, group, carry columns."""
    n = d.int(0, 24) if not d.chance(16) else d.int(0, 400)
    prompt_kind = d.pick(("text", "text", "chat", "group"))
    names = {"prompt": d.name("prompt"), "response": d.name("response")}
    arrays = {}
    keys = key_values(d, n, prompt_kind)
    if prompt_kind == "chat":
        arrays[names["prompt"]] = d.chat_array(keys)
    elif prompt_kind == "group":
        arrays[names["prompt"]] = d.text_array([d.maybe(d.text()) for _ in range(n)])
        names["group"] = "gid"
        ids = [None if k is None else sum(k) % 5 - 2 for k in keys]
        kind = d.pick(("int64", "int64", "uint64", "text"))
        if kind == "text":
            arrays["gid"] = d.text_array([None if i is None else str(i).encode() for i in ids])
        else:
            arrays["gid"] = d.number_array([None if i is None else i % 2**63 if kind == "uint64"
                                            else i for i in ids], kind)
    else:
        arrays[names["prompt"]] = d.text_array(keys)
    arrays[names["response"]] = d.text_array([d.maybe(d.text()) for _ in range(n)])
    valid = True
    scores = []
    for c in range(n_scores):
        kind = d.pick(SCORE_TYPES) if not d.chance(20) else d.pick(("string", "bool", "null"))
        valid &= kind in SCORE_TYPES
        scores.append(d.name(f"s{c}"))
        arrays[scores[-1]] = score_column(d, n, kind)
    names["scores"] = scores
    arrays["id"] = pa.array(range(n), pa.int64())
    arrays["meta"] = d.text_array([d.maybe(d.text()) for _ in range(n)])
    expected_columns = 2 + len(scores) + 2 + ("group" in names)
    valid &= len(arrays) == expected_columns  # a drawn name may shadow another column
    table = d.chunked(arrays)
    return Table(table, valid=valid and d.valid, columns=names)


def pair_table(d: Draw, chat: bool | None = None) -> Table:
    """A pair table: prompt, chosen, rejected (text or chat), margin, scores, group_id."""
    n = d.int(0, 20)
    chat = d.chance(3) if chat is None else chat
    arrays = {}
    for name in ("prompt", "chosen", "rejected"):
        if chat:
            arrays[name] = d.chat_array([d.conversation() for _ in range(n)])
        else:
            arrays[name] = d.text_array(key_values(d, n, "text") if name == "prompt"
                                        else [d.maybe(d.text()) for _ in range(n)])
    for name in ("margin", "score_chosen", "score_rejected"):
        arrays[name] = d.number_array([d.maybe(d.number()) for _ in range(n)],
                                      d.pick(("float64", "float32", "int64")))
    if d.bool():
        arrays["group_id"] = d.number_array([d.int(0, 3) for _ in range(n)], "uint64")
    arrays["__row"] = pa.array(range(n), pa.int64())
    return Table(d.chunked(arrays), valid=d.valid)


# -- arguments -----------------------------------------------------------------------------


class Arguments:
    """Keyword arguments, and whether each stayed inside what the docs accept."""

    def __init__(self, d: Draw) -> None:
        self.d = d
        self.documented = True  # every value is one the docs accept
        self.wrong_type = False  # some value is of a wrong Python type

    def choice(self, documented: tuple, junk=("", "BEST_VS_WORST", "\x00")):
        if self.d.chance(24):
            self.documented = False
            if self.d.chance(4):
                self.wrong_type = True
                return self.d.pick((None, 3, b"drop", ["drop"]))
            return self.d.pick(junk)
        return self.d.pick(documented)

    def integer(self, documented: tuple, low: int = 1, high: int = 2**63):
        if self.d.chance(16):
            value = self.d.pick(EXTREME_INTS + (True, 2.0, "1"))
            self.documented &= isinstance(value, int) and not isinstance(value, bool) and (
                low <= value < high)
            return value
        return self.d.pick(documented)

    def real(self, documented: tuple):
        if self.d.chance(16):
            self.documented = False
            return self.d.pick(EXTREME_FLOATS + ("0.5", None))
        return self.d.pick(documented)


# -- operations ----------------------------------------------------------------------------


def fuzz_mine_pairs(d: Draw) -> None:
    t = long_table(d, d.int(1, 3))
    a = Arguments(d)
    scores = t.columns["scores"]
    kwargs = {
        "prompt": t.columns["prompt"],
        "response": t.columns["response"],
        "score": scores[0] if len(scores) == 1 and d.bool() else scores,
        "group": t.columns.get("group"),
        "strategy": a.choice(STRATEGIES),
        "k": a.integer((1, 1, 2, 3)),
        "min_margin": a.real((0.0, 0.0, 0.5, 1.0, 0)),
        "ties": a.choice(("drop", "keep")),
        "nan": a.choice(("drop", "drop", "error")),
        "max_pairs_per_prompt": a.integer((None, None, 1, 2, 3)),
        "length_penalty": a.real((0.0, 0.0, 0.01, -0.25, 0.5)),
        "seed": a.integer((0, 1, 2**64 - 1), low=0),
        "carry": d.pick(((), ("id",), ("meta", "id"), ("chosen",))),
    }
    a.documented &= kwargs["carry"] != ("chosen",)
    views = d.bool()
    result = expect_clean(lambda: pk.mine_pairs(t.table, views=views, **kwargs),
                          wrong_type=a.wrong_type)
    if result is not None:
        check_accounting(result, t.table.num_rows)
    if not t.valid:
        return
    rows = t.table.to_pylist()
    if not a.documented and result is None:
        return
    try:
        expected, accounting = ref.mine_pairs(rows, **kwargs)
    except ValueError:  # nan="error" on a NaN score
        if result is not None:
            raise Finding("mine_pairs succeeded where the reference raises") from None
        return
    if result is None:
        raise Finding(f"mine_pairs raised PrefkitError on a valid input ({kwargs})")
    ref.assert_rows_equal(result.to_pylist(), expected, "mine_pairs: ")
    got = ref.accounting_of(pk.report_of(result))
    if got != accounting:
        raise Finding(f"mine_pairs accounting {got} != reference {accounting}")


def fuzz_rank_lists(d: Draw) -> None:
    t = long_table(d, 1)
    a = Arguments(d)
    kwargs = {
        "prompt": t.columns["prompt"],
        "response": t.columns["response"],
        "score": t.columns["scores"][0],
        "group": t.columns.get("group"),
        "list_size": a.integer((None, None, 1, 2, 3)),
        "min_list_size": a.integer((2, 2, 1, 3)),
        "ties": a.choice(("keep", "drop")),
        "nan": a.choice(("drop", "drop", "error")),
    }
    # A list_size below min_list_size could never emit a list: documented as an error.
    size, least = kwargs["list_size"], kwargs["min_list_size"]
    a.documented &= not (isinstance(size, int) and isinstance(least, int) and size < least)
    views = d.bool()
    result = expect_clean(lambda: pk.rank_lists(t.table, views=views, **kwargs),
                          wrong_type=a.wrong_type)
    if result is not None:
        check_accounting(result, t.table.num_rows)
    if not t.valid or (not a.documented and result is None):
        return
    try:
        expected, accounting = ref.rank_lists(t.table.to_pylist(), **kwargs)
    except ValueError:
        if result is not None:
            raise Finding("rank_lists succeeded where the reference raises") from None
        return
    if result is None:
        raise Finding(f"rank_lists raised PrefkitError on a valid input ({kwargs})")
    ref.assert_rows_equal(result.to_pylist(), expected, "rank_lists: ")
    report = pk.report_of(result)
    got = {k: report.get(k) for k in accounting}
    got["dropped"] = {r: c for r, c in report["dropped"].items() if c}
    if got != accounting:
        raise Finding(f"rank_lists accounting {got} != reference {accounting}")


def fuzz_order_curriculum(d: Draw) -> None:
    t = pair_table(d, chat=False if d.bool() else None)
    a = Arguments(d)
    kwargs = {
        "by": "margin" if not d.chance(16) else d.pick(("prompt", "nope", "__row")),
        "order": a.choice(("easy_to_hard", "hard_to_easy")),
        "stages": a.integer((None, None, 1, 2, 3), high=2**31),  # documented: < 2**31
        "per_prompt": d.bool(),
        "group": d.pick((None, None, "prompt", "group_id", "nope")),
        "shuffle_within_stage": d.bool(),
        "seed": a.integer((0, 7, 2**64 - 1), low=0),
    }
    a.documented &= kwargs["by"] in ("margin", "__row")
    a.documented &= kwargs["group"] in (None, "prompt") or kwargs["group"] in t.table.column_names
    result = expect_clean(lambda: pk.order_curriculum(t.table, **kwargs), wrong_type=a.wrong_type)
    if result is not None:
        check_accounting(result, t.table.num_rows)
        if result.num_rows != t.table.num_rows:
            raise Finding("order_curriculum dropped rows")
    if not t.valid or (not a.documented and result is None):
        return
    if result is None:
        raise Finding(f"order_curriculum raised PrefkitError on a valid input ({kwargs})")
    group = kwargs["group"] or ("group_id" if "group_id" in t.table.column_names else "prompt")
    order, stages = ref.order_curriculum(t.table.to_pylist(), **{**kwargs, "group": group})
    got = (result.column("__row").to_pylist(), result.column("stage").to_pylist())
    if got != (order, stages):
        raise Finding(f"order_curriculum {got} != reference {(order, stages)}")


def dedup_table(d: Draw) -> Table:
    n = d.int(0, 24)
    arrays = {
        "prompt": d.chat_array(key_values(d, n, "chat")) if d.chance(4)
        else d.text_array(key_values(d, n, "text")),
        "response": d.text_array([d.maybe(d.text()) for _ in range(n)]),
        "n": d.number_array([d.maybe(d.number()) for _ in range(n)], d.pick(("float64", "int64"))),
        "gid": d.number_array([d.maybe(d.int(0, 3)) for _ in range(n)], "int64"),
        "__row": pa.array(range(n), pa.int64()),
    }
    return Table(d.chunked(arrays), valid=d.valid)


def fuzz_dedup(d: Draw) -> None:
    t = dedup_table(d)
    a = Arguments(d)
    method = a.choice(("exact", "exact", "minhash"))
    columns = d.pick((["prompt"], ["prompt", "response"], ["response", "n"], ["n"], ["nope"], []))
    a.documented &= bool(columns) and columns != ["nope"]
    kwargs = {
        "columns": columns,
        "method": method,
        "normalize": d.bool(),
        "ngram": a.integer((5, 1, 2)),
        "num_perm": a.integer((128, 16, 1, 2**16), high=2**16 + 1),  # documented: <= 2**16
        "threshold": a.real((0.8, 0.5, 1.0)),
        "bands": a.integer((None, None, 1, 4)),
        "seed": a.integer((0, 3), low=0),
        "group": d.pick((None, None, "gid", "prompt")),
    }
    bands, num_perm = kwargs["bands"], kwargs["num_perm"]
    a.documented &= not (isinstance(bands, int) and isinstance(num_perm, int) and bands > num_perm)
    views = d.bool()
    rows_in = t.table.num_rows
    if d.chance(3):
        found = expect_clean(lambda: pk.find_duplicates(t.table, **kwargs),
                             wrong_type=a.wrong_type)
        if found is not None and not all(0 <= r < rows_in for r in found.column(0).to_pylist()):
            raise Finding("find_duplicates returned a row outside the input")
        return
    result = expect_clean(lambda: pk.dedup(t.table, views=views, **kwargs),
                          wrong_type=a.wrong_type)
    if result is not None:
        check_accounting(result, rows_in)
    if method != "exact" or not t.valid or (not a.documented and result is None):
        return
    if result is None:
        raise Finding(f"dedup raised PrefkitError on a valid input ({kwargs})")
    kept, dropped = ref.dedup_exact(t.table.to_pylist(), columns, kwargs["normalize"],
                                    kwargs["group"])
    got = result.column("__row").to_pylist()
    if got != kept or pk.report_of(result)["dropped"] != dropped:
        raise Finding(f"dedup kept {got}, reference {kept} ({dropped})")


def fuzz_contamination(d: Draw) -> None:
    t = dedup_table(d)
    a = Arguments(d)
    reference = d.pick((
        lambda: [d.maybe(d.text().decode("utf-8", "replace")) for _ in range(d.int(0, 4))],
        lambda: dedup_table(d).table,
        lambda: "not a table",
    ))()
    kwargs = {"column": d.pick(("prompt", "response", "n")), "ngram": a.integer((13, 1, 2, 3)),
              "normalize": d.bool()}
    op = pk.decontaminate if d.bool() else pk.find_contamination
    result = expect_clean(lambda: op(t.table, reference, **kwargs), wrong_type=a.wrong_type)
    if result is not None and op is pk.decontaminate:
        check_accounting(result, t.table.num_rows)


def fuzz_split(d: Draw) -> None:
    t = dedup_table(d)
    a = Arguments(d)
    test_size = d.pick((0.5, 0.1, 0.99, 0, 1, 3, 0.0, 1.0, math.nan, -1, 10**9, True))
    kwargs = {"group": d.pick(("prompt", "response", "gid", "nope")),
              "seed": a.integer((0, 1), low=0), "near_duplicates": d.bool(),
              "ngram": a.integer((5, 1, 2)), "num_perm": a.integer((128, 8)),
              "threshold": a.real((0.8, 0.3, 1.0))}
    result = expect_clean(lambda: pk.split(t.table, test_size=test_size, **kwargs),
                          wrong_type=a.wrong_type)
    if result is not None:
        train, test = result
        if train.num_rows + test.num_rows != t.table.num_rows:
            raise Finding("split lost rows")


def fuzz_unnest(d: Draw) -> None:
    n = d.int(0, 12)
    text = d.text_type()
    lengths = [d.maybe(d.int(0, 4), 8) for _ in range(n)]
    total = sum(x or 0 for x in lengths)
    score_kind = d.pick(SCORE_TYPES + ("string",))
    fields = [d.text_array([d.maybe(d.text()) for _ in range(total)], text),
              score_column(d, total, score_kind),
              d.text_array([d.maybe(d.text()) for _ in range(total)])]
    names = [d.name("response"), d.name("score"), d.pick(("model", "prompt", "response"))]
    struct = pa.StructArray.from_arrays(fields, names=names, mask=pa.array(
        [d.chance(10) for _ in range(total)], pa.bool_()))
    offsets = [0]
    for length in lengths:
        offsets.append(offsets[-1] + (length or 0))
    list_type = pa.list_ if d.bool() else pa.large_list
    lists = (pa.ListArray if list_type is pa.list_ else pa.LargeListArray).from_arrays(
        pa.array(offsets, pa.int32() if list_type is pa.list_ else pa.int64()), struct,
        mask=pa.array([x is None for x in lengths], pa.bool_()))
    arrays = {"prompt": d.text_array([d.text() for _ in range(n)]), "completions": lists}
    if d.chance(8):
        arrays["completions"] = d.text_array([d.text() for _ in range(n)])
    table = d.chunked(arrays)
    kwargs = {"response": d.pick(("response", names[0], "nope")),
              "score": d.pick(("score", names[1], ["score", "model"]))}
    result = expect_clean(lambda: pk.unnest(table, views=d.bool(), **kwargs))
    if result is not None:
        check_accounting(result, n)
        if result.num_rows != total:
            raise Finding(f"unnest gave {result.num_rows} rows for {total} completions")


def fuzz_split_prompt(d: Draw) -> None:
    n = d.int(0, 16)
    chat = d.chance(3)
    arrays = {}
    for name in ("chosen", "rejected"):
        if chat:
            arrays[name] = d.chat_array([d.conversation() for _ in range(n)])
        else:
            arrays[name] = d.text_array([d.maybe(d.text(24)) for _ in range(n)])
    if d.chance(8):
        arrays["prompt"] = d.text_array([d.text() for _ in range(n)])
    table = d.chunked(arrays)
    a = Arguments(d)
    boundary = d.pick((None, None, "\n\nAssistant:", "a", "user", "", "\x00", "é"))
    unsplittable = a.choice(("drop", "error"))
    result = expect_clean(lambda: pk.split_prompt(table, boundary=boundary,
                                                  unsplittable=unsplittable, views=d.bool()),
                          wrong_type=a.wrong_type)
    if result is not None:
        check_accounting(result, n)


def path_table(d: Draw) -> Table:
    n = d.int(0, 16)
    steps_pool = [d.text() for _ in range(d.int(1, 4))]
    text = d.text_type()
    lengths = [d.maybe(d.int(0, 4), 10) for _ in range(n)]
    flat = [d.maybe(d.pick(steps_pool), 12) for _ in range(sum(x or 0 for x in lengths))]
    offsets = [0]
    for length in lengths:
        offsets.append(offsets[-1] + (length or 0))
    steps = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), d.text_array(flat, text),
                                     mask=pa.array([x is None for x in lengths], pa.bool_()))
    arrays = {"prompt": d.text_array(key_values(d, n, "text")), "steps": steps,
              "reward": score_column(d, n, d.pick(SCORE_TYPES))}
    return Table(d.chunked(arrays), valid=d.valid)


def fuzz_trees(d: Draw) -> None:
    t = path_table(d)
    nodes = expect_clean(lambda: pk.build_trees(t.table, views=d.bool()))
    if nodes is not None:
        check_accounting(nodes, t.table.num_rows)
    if nodes is None or d.chance(3):
        nodes = node_table(d)
    a = Arguments(d)
    min_visits = a.real((1, 1, 2, 0.5))
    if d.bool():
        kwargs = {"strategy": a.choice(STRATEGIES), "min_margin": a.real((0.0, 0.5)),
                  "k": a.integer((1, 2)), "ties": a.choice(("drop", "keep")),
                  "max_pairs_per_node": a.integer((None, 1, 2)), "seed": a.integer((0,), 0)}
        expect_clean(lambda: pk.tree_pairs(nodes, min_visits=min_visits, **kwargs),
                     wrong_type=a.wrong_type)
    else:
        kwargs = {"list_size": a.integer((None, 2, 3)), "min_list_size": a.integer((2, 1, 3)),
                  "ties": a.choice(("keep", "drop"))}
        expect_clean(lambda: pk.tree_lists(nodes, min_visits=min_visits, **kwargs),
                     wrong_type=a.wrong_type)


def node_table(d: Draw) -> pa.Table:
    """Node tables from elsewhere (MCTS): duplicate ids, orphans, cycles, nulls."""
    n = d.int(0, 12)
    node_ids = [d.int(0, n + 1) for _ in range(n)]
    parents = [d.maybe(d.int(-1, n + 1), 3) for _ in range(n)]
    arrays = {
        "tree_id": d.number_array([d.maybe(d.int(0, 1), 12) for _ in range(n)], "int64"),
        "node_id": d.number_array(node_ids, d.pick(("int64", "int32", "uint64"))),
        "parent_id": d.number_array(parents, "int64"),
        "step": d.text_array([d.maybe(d.text()) for _ in range(n)]),
        "value": score_column(d, n, d.pick(SCORE_TYPES)),
        "visits": d.number_array([d.maybe(d.int(-1, 3)) for _ in range(n)], "int64"),
        "prompt": d.text_array([d.text() for _ in range(n)]),
    }
    return d.chunked(arrays)


def fuzz_formats(d: Draw) -> None:
    t = pair_table(d)
    a = Arguments(d)
    which = d.int(0, 3)
    if which == 0:
        expect_clean(lambda: pk.unpair(
            t.table, prompt=d.pick(("prompt", None, "nope")), order=a.choice(("blocks",
                                                                              "interleaved")),
            nulls=a.choice(("drop", "error")), views=d.bool()), wrong_type=a.wrong_type)
    elif which == 1:
        strength = expect_clean(lambda: pk.preference_strength(
            t.table, chosen_scores=d.pick(("score_chosen", ["score_chosen", "margin"], "nope")),
            rejected_scores=d.pick(("score_rejected", ["score_rejected", "margin"]))))
        if strength is not None and d.bool():
            expect_clean(lambda: pk.filter_pairs(
                strength, min_margin=a.real((None, 0.0, 0.5)), min_agreement=a.real((None, 0.5)),
                max_strength_std=a.real((None, 1.0)), flip_disagreeing=d.bool()))
    elif which == 2:
        expect_clean(lambda: pk.length_stats(t.table))
        expect_clean(lambda: pk.filter_pairs(t.table, min_margin=a.real((None, 0.0, 1.0))))
    else:
        expect_clean(lambda: pk.report(t.table))


def fuzz_materialize(d: Draw) -> None:
    n = d.int(0, 10)
    arrays = {"text": d.text_array([d.maybe(d.text()) for _ in range(n)], "string_view"),
              "chat": d.chat_array([d.conversation() for _ in range(n)]),
              "n": d.number_array([d.maybe(d.number()) for _ in range(n)], "float64")}
    binary = pa.array([d.maybe(d.text()) for _ in range(n)], pa.binary_view())
    arrays["bytes"] = binary
    table = d.chunked(arrays)
    result = expect_clean(lambda: pk.materialize(table))
    if result is not None and result.num_rows != n:
        raise Finding("materialize changed the row count")


def fuzz_scalars(d: Draw) -> None:
    """The functions of plain Python values: normalize_text and plan_batches."""
    if d.bool():
        text = d.fdp.ConsumeUnicode(d.int(0, 32))  # may hold lone surrogates
        wrong = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        expect_clean(lambda: pk.normalize_text(text), wrong_type=wrong)
        return
    lengths = [d.int(-2, 50) if not d.chance(10) else d.pick(EXTREME_INTS)
               for _ in range(d.int(0, 20))]
    a = Arguments(d)
    max_tokens = a.integer((16, 64, 1))
    plan = expect_clean(lambda: pk.plan_batches(lengths, max_tokens=max_tokens,
                                                packed=d.bool(), shuffle=d.bool(),
                                                seed=a.integer((0, 3), 0)),
                        wrong_type=a.wrong_type)
    if plan is not None:
        rows = sorted(int(r) for batch in plan for r in batch)
        if rows != list(range(len(lengths))):
            raise Finding(f"plan_batches covers rows {rows} of {len(lengths)}")


OPERATIONS = (
    fuzz_mine_pairs,
    fuzz_mine_pairs,
    fuzz_rank_lists,
    fuzz_order_curriculum,
    fuzz_dedup,
    fuzz_contamination,
    fuzz_split,
    fuzz_unnest,
    fuzz_split_prompt,
    fuzz_trees,
    fuzz_formats,
    fuzz_materialize,
    fuzz_scalars,
)


def test_one_input(data: bytes) -> None:
    """One fuzz input: an operation, its table and its arguments, checked by the oracle."""
    d = Draw(data)
    d.pick(OPERATIONS)(d)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
