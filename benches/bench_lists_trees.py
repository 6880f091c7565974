"""Side-by-side benchmark of lists, trees and prompt splitting: prefkit vs polars vs Python.

Seven workloads, each on a corpus cached as Parquet in ``bench-data/``:

- ``rank_lists`` on 1M responses (125k prompts x 8, ``benches/datagen.py``: ~1 KB responses,
  UltraFeedback-like tied scores): one list per prompt, responses best first (stable), with
  scores and source rows, as ``pk.rank_lists`` (docs/lists.md, ties="keep", min_list_size=2);
  ``prefkit-views`` is ``pk.rank_lists(df, views=True)`` (``list<string_view>``, no text copied).
  - ``polars``: the fastest of three expression plans, each giving the same lists in the same
    order: ``group_by(maintain_order=True).agg`` with ``sort_by(score, descending,
    maintain_order)`` per column; the same with one ``sort_by`` of a struct of the three columns
    (one argsort per group), split into lists with ``list.eval(struct.field)``; or one global
    stable sort by (the group's first row, score descending) and ``group_by(maintain_order)``.
  - ``python``: a dict-of-lists loop over the columns as Python lists and ``sorted``.
- ``rank_lists_shuffled``: the same rows in a seeded random order, so that a prompt's rows are
  scattered over the table (each prompt's text stored apart on every row) and every prompt
  comes back 8 times; same plans.
- ``build_trees`` on 100k paths x 8 steps (12.5k prompts x 8 sampled solutions; each step is
  one of a few ~60-character variants, so paths share prefixes and the trie has ~4 nodes per
  path): node table with mean reward and visits per node, as ``pk.build_trees``
  (docs/trees.md).
  - ``polars``: node ids chained per depth, ``id_d = hash(struct(id_{d-1}, step_d))`` over
    ``list.get(d)`` columns, then one long frame ``group_by(id).agg(mean, len, first)`` and a
    leaf flag from the set of parent ids (the natural vectorised trie).
  - ``python``: a dict trie keyed by ``(parent, step)``.

- ``tree_pairs`` / ``tree_lists`` on the node table ``pk.build_trees`` makes of that corpus
  (647k nodes): step pairs (best_vs_worst) / ranked siblings per parent, with prefixes.
  - ``polars``: ``group_by(tree_id, parent_id).agg(struct.sort_by(value))``, the prefixes by
    one join per depth, the roots' prompts by a join.
  - ``python``: a children dict and ``sorted``; prefixes in row order.
- ``split_prompt`` on HH-style pairs: 1M whole dialogues as text (``boundary="\\n\\nAssistant:"``)
  and a fifth as many as chat messages (``boundary="user"``).
  - ``polars`` (text only: nothing vectorised compares lists of structs element-wise): the
    shared prefix's length by a binary search on ``str.head`` equality, cut back to the last
    boundary with ``str.split``.
  - ``python``: the same binary search on slices and ``rfind``; for messages, dict equality.

Every (workload, tool) runs in a fresh subprocess that loads the corpus as a polars DataFrame,
resets the peak-RSS counter (``/proc/self/clear_refs``), runs each variant ``--warmup`` times
untimed, then ``--repeats`` times timed, and reports the median wall time (steady state), the
time of the very first call (cold: thread-pool start and fresh memory, page-faulted in on first
touch; an allocator reuses it only over the next few calls) and the peak RSS above the loaded
input (``VmHWM`` minus RSS after loading). With ``--rounds N`` the tools take turns N times,
each time in a fresh process, so that a slow spell of a shared machine falls on every tool
alike; the timed calls of all rounds are pooled (their median, the median first call, the
highest peak). Before timing, a check subprocess verifies the tools agree (number of lists /
nodes, and the rows of a sample of lists / the values of a sample of nodes).

Examples
--------
Full size, as in the README::

    python benches/bench_lists_trees.py --warmup 3 --repeats 5 --rounds 3

A quick run::

    python benches/bench_lists_trees.py --prompts 5000 --paths 10000 --pairs 20000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench-data"
TOOLS = ("prefkit", "polars", "python")
DEPTH = 8
VARIANTS = 3


# ------------------------------------------------------------------------------------------
# Corpora
# ------------------------------------------------------------------------------------------


def lists_corpus(prompts: int) -> Path:
    path = DATA / f"lists_{prompts}x8.parquet"
    if not path.exists():
        sys.path.insert(0, str(ROOT / "benches"))
        from datagen import generate

        DATA.mkdir(exist_ok=True)
        generate(prompts=prompts, responses=8, seed=0).write_parquet(path)
    return path


def shuffled_lists_corpus(prompts: int) -> Path:
    path = DATA / f"lists_{prompts}x8_shuffled.parquet"
    if not path.exists():
        import polars as pl

        rows = pl.read_parquet(lists_corpus(prompts))
        rows.sample(fraction=1.0, shuffle=True, seed=0).write_parquet(path)
    return path


def paths_corpus(paths: int) -> Path:
    """``paths`` solutions, 8 per prompt, 8 steps each; step d of a path is one of
    ``VARIANTS`` texts of ~60 characters, drawn with a skew so that prefixes are shared."""
    path = DATA / f"paths_{paths}x{DEPTH}.parquet"
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    prompts = paths // 8
    texts = [
        f"Step {d + 1}: variant {v} of the reasoning, with some words é{'x' * (30 + v)}."
        for d in range(DEPTH)
        for v in range(VARIANTS)
    ]
    choice = rng.choice(VARIANTS, size=(paths, DEPTH), p=[0.6, 0.3, 0.1])
    index = (np.arange(DEPTH)[None, :] * VARIANTS + choice).ravel()
    # Each prompt has its own step texts: prefix the prompt number to make them distinct.
    prompt_of = np.repeat(np.arange(prompts), 8)
    flat = [f"[{prompt_of[i // DEPTH]}] {texts[j]}" for i, j in enumerate(index)]
    offsets = pa.array(np.arange(0, paths * DEPTH + 1, DEPTH, dtype=np.int32))
    steps = pa.ListArray.from_arrays(offsets, pa.array(flat, pa.string()))
    table = pa.table(
        {
            "prompt": pa.array([f"Problem {p}: compute the value." for p in prompt_of]),
            "steps": steps,
            "reward": pa.array(rng.random(paths).round(2)),
        }
    )
    DATA.mkdir(exist_ok=True)
    pq.write_table(table, path)
    return path


def nodes_corpus(paths: int) -> Path:
    """The node table ``pk.build_trees`` makes of :func:`paths_corpus`."""
    path = DATA / f"nodes_{paths}x{DEPTH}.parquet"
    if not path.exists():
        import polars as pl
        import prefkit as pk

        pl.from_arrow(pk.build_trees(pl.read_parquet(paths_corpus(paths)))).write_parquet(path)
    return path


# ------------------------------------------------------------------------------------------
# rank_lists implementations
# ------------------------------------------------------------------------------------------


def lists_prefkit(df: Any) -> Any:
    import prefkit as pk

    return pk.rank_lists(df)


def lists_prefkit_views(df: Any) -> Any:
    import prefkit as pk

    return pk.rank_lists(df, views=True)


def _valid_rows(df: Any) -> Any:
    import polars as pl

    return df.with_row_index("row").filter(
        pl.col("prompt").is_not_null()
        & pl.col("response").is_not_null()
        & pl.col("score").is_not_null()
        & pl.col("score").is_not_nan()
    )


def lists_polars_agg(df: Any) -> Any:
    import polars as pl

    key = pl.col("score")
    out = (
        _valid_rows(df)
        .group_by("prompt", maintain_order=True)
        .agg(
            pl.col("response").sort_by(key, descending=True, maintain_order=True).alias("responses"),
            key.sort(descending=True).alias("scores"),
            pl.col("row").sort_by(key, descending=True, maintain_order=True).alias("rows"),
        )
    )
    return out.filter(pl.col("rows").list.len() >= 2)


def lists_polars_struct(df: Any) -> Any:
    """One per-group sort of a struct of the three columns (one argsort per group instead of
    three), then the struct's fields as lists."""
    import polars as pl

    out = (
        _valid_rows(df)
        .group_by("prompt", maintain_order=True)
        .agg(
            pl.struct(
                pl.col("response").alias("responses"),
                pl.col("score").alias("scores"),
                pl.col("row").alias("rows"),
            )
            .sort_by("score", descending=True, maintain_order=True)
            .alias("items")
        )
        .filter(pl.col("items").list.len() >= 2)
    )
    return out.select(
        "prompt",
        *(
            pl.col("items").list.eval(pl.element().struct.field(name)).alias(name)
            for name in ("responses", "scores", "rows")
        ),
    )


def lists_polars_sort(df: Any) -> Any:
    """One global stable sort by (group's first row, score descending), then plain
    ``group_by(maintain_order).agg`` gathers."""
    import polars as pl

    out = (
        _valid_rows(df)
        .with_columns(pl.col("row").first().over("prompt").alias("first"))
        .sort(["first", "score"], descending=[False, True], maintain_order=True)
        .group_by("first", maintain_order=True)
        .agg(
            pl.col("prompt").first(),
            pl.col("response").alias("responses"),
            pl.col("score").alias("scores"),
            pl.col("row").alias("rows"),
        )
    )
    return out.filter(pl.col("rows").list.len() >= 2).drop("first")


def lists_python(df: Any) -> list:
    import math

    prompts = df["prompt"].to_list()
    responses = df["response"].to_list()
    scores = df["score"].to_list()
    groups: dict[str, list[int]] = {}
    for row, (p, r, s) in enumerate(zip(prompts, responses, scores)):
        if p is None or r is None or s is None or math.isnan(s):
            continue
        groups.setdefault(p, []).append(row)
    out = []
    for p, rows in groups.items():
        if len(rows) < 2:
            continue
        rows = sorted(rows, key=lambda i: -scores[i])
        out.append((p, [responses[i] for i in rows], [scores[i] for i in rows], rows))
    return out


# ------------------------------------------------------------------------------------------
# build_trees implementations
# ------------------------------------------------------------------------------------------


def trees_prefkit(df: Any) -> Any:
    import prefkit as pk

    return pk.build_trees(df)


def trees_polars(df: Any) -> Any:
    import polars as pl

    base = df.select(
        pl.col("prompt").hash().alias("id_0"), "reward", "steps"
    ).with_columns(pl.col("steps").list.len().alias("n"))
    ids = [pl.col("id_0")]
    columns = [pl.col("id_0")]
    for d in range(1, DEPTH + 1):
        step = pl.col("steps").list.get(d - 1, null_on_oob=True)
        ids.append(pl.struct(ids[-1].alias("p"), step.alias("s")).hash().alias(f"id_{d}"))
        columns.append(ids[-1])
    wide = base.with_columns(columns[1:])
    parts = [
        wide.select(
            pl.col("id_0").alias("node_id"),
            pl.lit(None, pl.UInt64).alias("parent_id"),
            pl.lit(0, pl.Int32).alias("depth"),
            pl.lit(None, pl.String).alias("step"),
            "reward",
        )
    ]
    for d in range(1, DEPTH + 1):
        parts.append(
            wide.filter(pl.col("n") >= d).select(
                pl.col(f"id_{d}").alias("node_id"),
                pl.col(f"id_{d - 1}").alias("parent_id"),
                pl.lit(d, pl.Int32).alias("depth"),
                pl.col("steps").list.get(d - 1).alias("step"),
                "reward",
            )
        )
    long = pl.concat(parts)
    nodes = long.group_by("node_id", maintain_order=True).agg(
        pl.col("parent_id").first(),
        pl.col("depth").first(),
        pl.col("step").first(),
        pl.col("reward").mean().alias("value"),
        pl.len().alias("visits"),
    )
    parents = nodes.select(pl.col("parent_id").drop_nulls().unique())
    return nodes.with_columns(
        (~pl.col("node_id").is_in(parents["parent_id"].implode())).alias("is_leaf")
    )


def trees_python(df: Any) -> list:
    prompts = df["prompt"].to_list()
    steps = df["steps"].to_list()
    rewards = df["reward"].to_list()
    trees: dict[str, dict] = {}
    for prompt, path, reward in zip(prompts, steps, rewards):
        tree = trees.get(prompt)
        if tree is None:
            tree = trees[prompt] = {"nodes": [[None, 0, None, 0.0, 0, 0]], "index": {}}
        nodes, index = tree["nodes"], tree["index"]
        root = nodes[0]
        root[3] += reward
        root[4] += 1
        current = 0
        for step in path:
            child = index.get((current, step))
            if child is None:
                child = len(nodes)
                nodes.append([current, nodes[current][1] + 1, step, 0.0, 0, 0])
                nodes[current][5] += 1
                index[(current, step)] = child
            node = nodes[child]
            node[3] += reward
            node[4] += 1
            current = child
    out = []
    for prompt, tree in trees.items():
        for parent, depth, step, total, visits, children in tree["nodes"]:
            out.append((prompt, parent, depth, step, total / visits, visits, children == 0))
    return out


# ------------------------------------------------------------------------------------------
# tree_pairs and tree_lists implementations (on the node table of build_trees)
# ------------------------------------------------------------------------------------------


def tree_pairs_prefkit(df: Any) -> Any:
    import prefkit as pk

    return pk.tree_pairs(df)


def tree_lists_prefkit(df: Any) -> Any:
    import prefkit as pk

    return pk.tree_lists(df)


def _ranked_children(df: Any) -> Any:
    """Per parent node (in order of its first child), its rankable children as one list of
    structs sorted by value, best first, stably; with the parent's row."""
    import polars as pl

    nodes = df.with_row_index("row")
    children = nodes.filter(
        pl.col("parent_id").is_not_null()
        & pl.col("step").is_not_null()
        & pl.col("value").is_not_null()
        & pl.col("value").is_not_nan()
        & (pl.col("visits") >= 1)
    )
    ranked = (
        children.group_by("tree_id", "parent_id", maintain_order=True)
        .agg(
            pl.struct("step", "value", "node_id", "row")
            .sort_by("value", descending=True, maintain_order=True)
            .alias("children"),
            (pl.col("depth").first()).alias("depth"),
        )
        .filter(pl.col("children").list.len() >= 2)
    )
    # The parent's row (output order), the tree's prompt (its root's) and the parent's prefix.
    prefixes = _prefixes(nodes)
    roots = nodes.filter(pl.col("parent_id").is_null()).select("tree_id", "prompt")
    return (
        ranked.join(prefixes, left_on=["tree_id", "parent_id"], right_on=["tree_id", "node_id"])
        .join(roots, on="tree_id")
        .sort("parent_row")
    )


def _prefixes(nodes: Any) -> Any:
    """Every node's steps from the root's child down to it, one join per depth."""
    import polars as pl

    level = nodes.filter(pl.col("parent_id").is_null()).select(
        "tree_id", "node_id", pl.col("row").alias("parent_row"),
        pl.lit([], pl.List(pl.String)).alias("prefix"),
    )
    levels = [level]
    for depth in range(1, int(nodes["depth"].max()) + 1):
        level = (
            nodes.filter(pl.col("depth") == depth)
            .join(level.rename({"node_id": "parent_id"}).drop("parent_row"),
                  on=["tree_id", "parent_id"])
            .select(
                "tree_id", "node_id", pl.col("row").alias("parent_row"),
                pl.concat_list("prefix", "step").alias("prefix"),
            )
        )
        levels.append(level)
    return pl.concat(levels)


def tree_pairs_polars(df: Any) -> Any:
    import polars as pl

    ranked = _ranked_children(df)
    best = pl.col("children").list.first()
    worst = pl.col("children").list.last()
    return ranked.select(
        "prompt",
        "prefix",
        best.struct.field("step").alias("chosen"),
        worst.struct.field("step").alias("rejected"),
        best.struct.field("value").alias("score_chosen"),
        worst.struct.field("value").alias("score_rejected"),
        (best.struct.field("value") - worst.struct.field("value")).alias("margin"),
        (pl.col("depth")).alias("depth"),
        "tree_id",
        best.struct.field("node_id").alias("chosen_node"),
        worst.struct.field("node_id").alias("rejected_node"),
    ).filter(pl.col("margin") > 0)


def tree_lists_polars(df: Any) -> Any:
    import polars as pl

    ranked = _ranked_children(df)
    return ranked.select(
        "prompt",
        "prefix",
        *(
            pl.col("children").list.eval(pl.element().struct.field(field)).alias(name)
            for field, name in (("step", "responses"), ("value", "scores"), ("row", "rows"))
        ),
        "depth",
        "tree_id",
    )


def _python_siblings(df: Any) -> tuple[dict, list, list]:
    """Children rows per parent row (rankable ones, in row order), and every node's prefix."""
    import math

    trees = df["tree_id"].to_list()
    nodes = df["node_id"].to_list()
    parents = df["parent_id"].to_list()
    steps = df["step"].to_list()
    values = df["value"].to_list()
    visits = df["visits"].to_list()
    row_of = {(t, n): i for i, (t, n) in enumerate(zip(trees, nodes))}
    parent_row = [None if p is None else row_of[(t, p)] for t, p in zip(trees, parents)]
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parent_row):
        v = values[i]
        if p is None or steps[i] is None or v is None or math.isnan(v) or visits[i] < 1:
            continue
        children.setdefault(p, []).append(i)
    prefix: list = [None] * len(nodes)
    for i, p in enumerate(parent_row):  # parents come before their children in build_trees
        prefix[i] = [] if p is None else prefix[p] + [steps[i]]
    return children, prefix, parent_row


def tree_pairs_python(df: Any) -> list:
    children, prefix, _ = _python_siblings(df)
    steps, values, nodes = df["step"].to_list(), df["value"].to_list(), df["node_id"].to_list()
    out = []
    for parent in sorted(children):
        rows = sorted(children[parent], key=lambda i: -values[i])
        best, worst = rows[0], rows[-1]
        if len(rows) >= 2 and values[best] > values[worst]:
            out.append((prefix[parent], steps[best], steps[worst], values[best],
                        values[worst], nodes[best], nodes[worst]))
    return out


def tree_lists_python(df: Any) -> list:
    children, prefix, _ = _python_siblings(df)
    steps, values = df["step"].to_list(), df["value"].to_list()
    out = []
    for parent in sorted(children):
        rows = sorted(children[parent], key=lambda i: -values[i])
        if len(rows) >= 2:
            out.append((prefix[parent], [steps[i] for i in rows], [values[i] for i in rows], rows))
    return out


# ------------------------------------------------------------------------------------------
# split_prompt: HH-style text and chat messages
# ------------------------------------------------------------------------------------------

BOUNDARY = "\n\nAssistant:"


def _hh_turns(rng: Any, rows: int) -> list[tuple[list[str], str, str]]:
    """Per row: the shared turns' texts, then the two final answers (sometimes starting with
    the same words, as in "It is 4." / "It is 5.")."""
    words = ["the", "a", "of", "to", "and", "is", "in", "it", "that", "for", "on", "with",
             "was", "é", "be", "this", "are", "by", "中", "or"]

    def sentence(n: int) -> str:
        return " ".join(words[i] for i in rng.integers(0, len(words), n))

    out = []
    for turns, same_start in zip(rng.integers(1, 4, rows), rng.random(rows) < 0.3):
        texts = [sentence(12) for _ in range(2 * turns + 1)]
        start = sentence(3) + " " if same_start else ""
        out.append((texts, start + sentence(40), start + sentence(30)))
    return out


def split_corpus(kind: str, rows: int) -> Path:
    """HH-style pairs (``kind="text"``: whole dialogues as strings) or the same dialogues as
    chat messages (``list<struct<role, content>>``)."""
    path = DATA / f"split_{kind}_{rows}.parquet"
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    dialogues = _hh_turns(np.random.default_rng(0), rows)
    if kind == "text":
        def whole(texts: list[str], answer: str) -> str:
            roles = ["Human", "Assistant"] * len(texts)
            said = "".join(f"\n\n{role}: {t}" for role, t in zip(roles, texts))
            return f"{said}{BOUNDARY} {answer}"

        columns = {
            side: pa.array([whole(t, d[i]) for t, *d in dialogues], pa.string())
            for i, side in enumerate(("chosen", "rejected"))
        }
    else:
        message = pa.struct([("role", pa.string()), ("content", pa.string())])

        def messages(texts: list[str], answer: str) -> list[dict]:
            roles = ["user", "assistant"] * len(texts)
            said = [{"role": r, "content": t} for r, t in zip(roles, texts)]
            return [*said, {"role": "assistant", "content": answer}]

        columns = {
            side: pa.array([messages(t, d[i]) for t, *d in dialogues], pa.list_(message))
            for i, side in enumerate(("chosen", "rejected"))
        }
    DATA.mkdir(exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def split_text_prefkit(df: Any) -> Any:
    import prefkit as pk

    return pk.split_prompt(df, boundary=BOUNDARY)


def split_messages_prefkit(df: Any) -> Any:
    import prefkit as pk

    return pk.split_prompt(df, boundary="user")


def split_text_polars(df: Any) -> Any:
    """The shared prefix by a vectorised binary search on its length (polars has no
    common-prefix expression), cut back to the last boundary by splitting on it."""
    import polars as pl

    chosen, rejected = pl.col("chosen"), pl.col("rejected")
    lo, hi = pl.col("lo"), pl.col("hi")
    frame = df.filter(chosen.is_not_null() & rejected.is_not_null() & (chosen != rejected))
    frame = frame.with_columns(
        pl.lit(0, pl.Int64).alias("lo"),
        pl.min_horizontal(chosen.str.len_chars(), rejected.str.len_chars())
        .cast(pl.Int64)
        .alias("hi"),
    )
    for _ in range(int(frame["hi"].max() or 0).bit_length() + 1):
        mid = (lo + hi + 1) // 2
        same = chosen.str.head(mid) == rejected.str.head(mid)
        frame = frame.with_columns(
            pl.when(same).then(mid).otherwise(lo).alias("lo"),
            pl.when(same).then(hi).otherwise(mid - 1).alias("hi"),
        )
    parts = chosen.str.head(lo).str.split(BOUNDARY, literal=True)
    cut = chosen.str.head(lo).str.len_chars() - parts.list.last().str.len_chars()
    return (
        frame.with_columns(cut.alias("cut"), parts.list.len().alias("parts"))
        .filter(
            (pl.col("parts") > 1)
            & (pl.col("cut") < chosen.str.len_chars())
            & (pl.col("cut") < rejected.str.len_chars())
        )
        .select(
            chosen.str.head(pl.col("cut")).alias("prompt"),
            chosen.str.slice(pl.col("cut")).alias("chosen"),
            rejected.str.slice(pl.col("cut")).alias("rejected"),
        )
    )


def _split_python(df: Any, cut_of: Any) -> list:
    out = []
    for c, r in zip(df["chosen"].to_list(), df["rejected"].to_list()):
        if c is None or r is None or c == r:
            continue
        cut = cut_of(c, r)
        if cut is not None and cut < len(c) and cut < len(r):
            out.append((c[:cut], c[cut:], r[cut:]))
    return out


def split_text_python(df: Any) -> list:
    def cut_of(c: str, r: str) -> int | None:
        shared, hi = 0, min(len(c), len(r))
        while shared < hi:  # binary search on slices: C-speed comparisons
            mid = (shared + hi + 1) // 2
            if c[:mid] == r[:mid]:
                shared = mid
            else:
                hi = mid - 1
        found = c.rfind(BOUNDARY, 0, shared)
        return None if found < 0 else found + len(BOUNDARY)

    return _split_python(df, cut_of)


def split_messages_python(df: Any) -> list:
    def cut_of(c: list, r: list) -> int | None:
        shared = 0
        while shared < min(len(c), len(r)) and c[shared] == r[shared]:
            shared += 1
        users = [i for i in range(shared) if c[i]["role"] == "user"]
        return users[-1] + 1 if users else None

    return _split_python(df, cut_of)


RANK_LISTS = {
    "prefkit": [lists_prefkit],
    "prefkit-views": [lists_prefkit_views],
    "polars": [lists_polars_agg, lists_polars_struct, lists_polars_sort],
    "python": [lists_python],
}

IMPLEMENTATIONS = {
    "rank_lists": RANK_LISTS,
    "rank_lists_shuffled": RANK_LISTS,
    "build_trees": {
        "prefkit": [trees_prefkit],
        "polars": [trees_polars],
        "python": [trees_python],
    },
    "tree_pairs": {
        "prefkit": [tree_pairs_prefkit],
        "polars": [tree_pairs_polars],
        "python": [tree_pairs_python],
    },
    "tree_lists": {
        "prefkit": [tree_lists_prefkit],
        "polars": [tree_lists_polars],
        "python": [tree_lists_python],
    },
    "split_prompt_text": {
        "prefkit": [split_text_prefkit],
        "polars": [split_text_polars],
        "python": [split_text_python],
    },
    "split_prompt_messages": {
        "prefkit": [split_messages_prefkit],
        "python": [split_messages_python],
    },
}


def _count(out: Any) -> int:
    return out.num_rows if hasattr(out, "num_rows") else len(out)


# ------------------------------------------------------------------------------------------
# Subprocess workers
# ------------------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _load(path: str) -> Any:
    import polars as pl

    return pl.read_parquet(path).rechunk()


def worker(workload: str, tool: str, path: str, repeats: int, warmup: int) -> dict:
    df = _load(path)
    import prefkit  # noqa: F401  (import cost outside the timing, for every tool alike)

    baseline = _rss()
    reset = _reset_peak()
    results = []
    for function in IMPLEMENTATIONS[workload][tool]:
        times = []
        for _ in range(warmup + repeats):
            started = time.perf_counter()
            out = function(df)
            times.append(time.perf_counter() - started)
            count = _count(out)
            del out
        results.append({"variant": function.__name__, "first_s": times[0],
                        "median_s": statistics.median(times[warmup:]),
                        "times": times[warmup:], "count": count})
    best = min(results, key=lambda r: r["median_s"])
    return {
        "workload": workload,
        "tool": tool,
        "rows": df.height,
        "best": best,
        "variants": results,
        "peak_over_input_mb": (_peak() - baseline) / 2**20 if reset else None,
    }


def check(workload: str, path: str) -> dict:
    """The tools agree: same counts; same rows in sampled lists / same values of nodes."""
    df = _load(path)
    small = df.head(min(df.height, 4000))
    counts = {}
    if workload.startswith("rank_lists"):
        pk_out = lists_prefkit(small).to_pylist()
        assert lists_prefkit_views(small).to_pylist() == pk_out
        py_out = lists_python(small)
        assert [r["rows"] for r in pk_out] == [r[3] for r in py_out]
        for variant in (lists_polars_agg, lists_polars_struct, lists_polars_sort):
            pl_out = variant(small).to_dicts()
            assert [(r["prompt"], r["responses"], r["scores"], r["rows"]) for r in pk_out] == [
                (r["prompt"], r["responses"], r["scores"], r["rows"]) for r in pl_out
            ], variant.__name__
        counts = {"lists": len(pk_out)}
    elif workload in ("tree_pairs", "tree_lists"):
        # Whole trees: the first 4000 nodes' trees.
        small = df.filter(df["tree_id"].is_in(df["tree_id"].head(4000).unique().implode()))
        prefkit_fn, polars_fn, python_fn = (
            IMPLEMENTATIONS[workload][tool][0] for tool in TOOLS
        )
        pk_out = prefkit_fn(small).to_pylist()
        pl_out = polars_fn(small).to_dicts()
        py_out = python_fn(small)
        if workload == "tree_pairs":
            fields = ("prefix", "chosen", "rejected", "score_chosen", "score_rejected",
                      "chosen_node", "rejected_node")
            assert [tuple(r[f] for f in fields) for r in pk_out] == py_out
        else:
            fields = ("prefix", "responses", "scores", "rows")
            assert [tuple(r[f] for f in fields) for r in pk_out] == py_out
        assert [tuple(r[f] for f in ("prompt", *fields)) for r in pk_out] == [
            tuple(r[f] for f in ("prompt", *fields)) for r in pl_out
        ]
        counts = {"rows": len(pk_out)}
    elif workload.startswith("split_prompt"):
        tools = IMPLEMENTATIONS[workload]
        pk_out = [tuple(r.values()) for r in tools["prefkit"][0](small).to_pylist()]
        py_out = tools["python"][0](small)
        if workload == "split_prompt_messages":
            # Messages as dicts; the python loop keeps them as they are.
            assert pk_out == py_out
        else:
            assert pk_out == py_out == tools["polars"][0](small).rows()
        counts = {"rows": len(pk_out)}
    else:
        pk_out = trees_prefkit(small)
        py_out = trees_python(small)
        pl_out = trees_polars(small)
        assert pk_out.num_rows == len(py_out) == pl_out.height, (
            pk_out.num_rows, len(py_out), pl_out.height)
        key = lambda rows: sorted((r[0], r[1], r[2]) for r in rows)
        assert key(zip(pk_out.column("depth").to_pylist(), pk_out.column("visits").to_pylist(),
                       pk_out.column("value").to_pylist())) == key(
            (r[2], r[5], r[4]) for r in py_out)
        assert sorted(pl_out["visits"].to_list()) == sorted(r[5] for r in py_out)
        assert sum(pk_out.column("is_leaf").to_pylist()) == pl_out["is_leaf"].sum()
        counts = {"nodes": pk_out.num_rows}
    return {"workload": workload, "agree": True, **counts}


def _subprocess(arguments: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{arguments}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pooled(rounds: list[dict]) -> dict:
    """One tool's rounds as one result: per variant, the median of every timed call of every
    round, the median first call; the highest peak RSS."""
    variants = []
    for runs in zip(*(r["variants"] for r in rounds)):
        times = [t for run in runs for t in run["times"]]
        variants.append({
            "variant": runs[0]["variant"],
            "first_s": statistics.median(run["first_s"] for run in runs),
            "median_s": statistics.median(times),
            "times": times,
            "count": runs[0]["count"],
        })
    peaks = [r["peak_over_input_mb"] for r in rounds if r["peak_over_input_mb"] is not None]
    return {
        **rounds[0],
        "best": min(variants, key=lambda v: v["median_s"]),
        "variants": variants,
        "peak_over_input_mb": max(peaks) if peaks else None,
    }


def _table(results: list[dict]) -> str:
    lines = [
        (
            "| workload | tool | median time | speed-up vs best polars | speed-up vs python "
            "| first call | peak RSS over input | plan |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for workload in IMPLEMENTATIONS:
        rows = [r for r in results if r["workload"] == workload]
        base = {
            tool: next((r["best"]["median_s"] for r in rows if r["tool"] == tool), None)
            for tool in ("polars", "python")
        }
        for r in rows:
            t = r["best"]["median_s"]
            ratios = [f"{base[tool] / t:.2f}x" if base[tool] else "n/a" for tool in base]
            peak = r["peak_over_input_mb"]
            peak = f"{peak:,.0f} MB" if peak is not None else "n/a"
            lines.append(
                f"| {workload} ({r['rows']:,} rows) | {r['tool']} | {t:.3f} s | "
                f"{' | '.join(ratios)} | {r['best']['first_s']:.3f} s | {peak} | "
                f"{r['best']['variant']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=125_000, help="rank_lists: prompts x 8")
    parser.add_argument("--paths", type=int, default=100_000, help="build_trees: paths x 8 steps")
    parser.add_argument("--pairs", type=int, default=1_000_000, help="split_prompt: text rows (a fifth as many message rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--rounds", type=int, default=1,
                        help="fresh processes per tool, the tools taking turns; timed calls pooled")
    parser.add_argument("--workloads", nargs="+", default=list(IMPLEMENTATIONS))
    parser.add_argument("--tools", nargs="+", default=list(TOOLS))
    parser.add_argument("--worker", nargs=3, metavar=("WORKLOAD", "TOOL", "PATH"))
    parser.add_argument("--check", nargs=2, metavar=("WORKLOAD", "PATH"))
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.warmup)))
        return 0
    if args.check:
        print(json.dumps(check(*args.check)))
        return 0
    corpora = {
        "rank_lists": lambda: lists_corpus(args.prompts),
        "rank_lists_shuffled": lambda: shuffled_lists_corpus(args.prompts),
        "build_trees": lambda: paths_corpus(args.paths),
        "tree_pairs": lambda: nodes_corpus(args.paths),
        "tree_lists": lambda: nodes_corpus(args.paths),
        "split_prompt_text": lambda: split_corpus("text", args.pairs),
        "split_prompt_messages": lambda: split_corpus("messages", args.pairs // 5),
    }
    paths = {workload: corpora[workload]() for workload in args.workloads}
    results = []
    for workload in args.workloads:
        print(_subprocess(["--check", workload, str(paths[workload])]), file=sys.stderr)
        tools = [t for t in IMPLEMENTATIONS[workload] if t.split("-")[0] in args.tools]
        rounds: dict[str, list[dict]] = {tool: [] for tool in tools}
        # Tools take turns, round after round: a slow spell of the machine falls on all.
        for _ in range(args.rounds):
            for tool in tools:
                result = _subprocess(
                    ["--worker", workload, tool, str(paths[workload]), "--repeats",
                     str(args.repeats), "--warmup", str(args.warmup)]
                )
                print(json.dumps(result), file=sys.stderr)
                rounds[tool].append(result)
        results.extend(_pooled(rounds[tool]) for tool in tools)
    import polars as pl
    import prefkit
    import pyarrow as pa

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; prefkit "
        f"{prefkit.__version__}, polars {pl.__version__}, pyarrow {pa.__version__}; median of "
        f"{args.repeats} runs after {args.warmup} untimed, each tool in a fresh process, "
        f"{args.rounds} round(s) taking turns, timed runs pooled\n"
    )
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
