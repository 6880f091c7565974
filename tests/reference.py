"""Plain-Python reference implementations of prefkit operations, written for clarity.

These follow ``docs/pairs.md`` rule by rule. Inputs are lists of dict rows (what
``pyarrow.Table.to_pylist()`` returns); outputs are lists of dict rows plus the row accounting.
Nothing here is fast, and nothing here is clever: when the Rust core and this file disagree,
read docs/pairs.md to decide which one is wrong.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import xxhash

MASK64 = (1 << 64) - 1

STRATEGIES = (
    "best_vs_worst",
    "best_vs_random",
    "best_vs_all",
    "all_pairs",
    "adjacent",
    "top_k_vs_bottom_k",
)

# --------------------------------------------------------------------------------------------
# Group ids
# --------------------------------------------------------------------------------------------


def tagged_bytes(value: Any) -> bytes:
    """The tagged canonical encoding of a (nested) value, as in docs/pairs.md."""
    if value is None:
        return b"\x00"
    if isinstance(value, bool):  # before int: bool is an int in Python
        return b"\x04" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        # i64 little endian; a uint64 value has the same bytes as its i64 reinterpretation.
        return b"\x02" + struct.pack("<Q", value & MASK64)
    if isinstance(value, float):
        return b"\x03" + struct.pack("<d", value)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"\x01" + struct.pack("<Q", len(data)) + data
    if isinstance(value, (list, tuple)):
        out = b"\x05" + struct.pack("<Q", len(value))
        for element in value:
            out += tagged_bytes(element)
        return out
    if isinstance(value, dict):
        # Struct: fields in schema order (to_pylist keeps the schema's field order).
        out = b"\x06"
        for name, field_value in value.items():
            name_bytes = name.encode("utf-8")
            out += struct.pack("<Q", len(name_bytes)) + name_bytes + tagged_bytes(field_value)
        return out
    raise TypeError(f"no canonical encoding for {type(value).__name__}")


def key_bytes(value: Any) -> bytes:
    """Canonical bytes of a grouping key: text is its UTF-8 bytes, anything else is tagged."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return tagged_bytes(value)


def group_id(value: Any) -> int:
    return xxhash.xxh3_64_intdigest(key_bytes(value), seed=0)


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


# --------------------------------------------------------------------------------------------
# Pair mining
# --------------------------------------------------------------------------------------------


def _is_valid_number(value: Any) -> bool:
    """A score value that counts: a number that is not null and not NaN (inf is fine)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _raise_on_first_nan(rows: Sequence[dict], scores: Sequence[str]) -> None:
    """``nan="error"``: fail on the first row in input order with a null or NaN score in any
    of ``scores``, whatever its key or response hold (the row is checked before any drop)."""
    for index, row in enumerate(rows):
        for name in scores:
            if not _is_valid_number(row[name]):
                raise ValueError(f"column '{name}' has a null or NaN score at row {index}")


def _qualifies(e_a: float, e_b: float, min_margin: float, ties: str) -> bool:
    if e_a - e_b > min_margin:
        return True
    return ties == "keep" and e_a == e_b and min_margin == 0


def _candidate_pairs(ranked: list, n: int, strategy: str, k: int) -> list:
    """(i, j) positions into ``ranked`` that the strategy considers, in its order."""
    if strategy == "best_vs_worst":
        return [(0, n - 1)] if n >= 2 else []
    if strategy in ("best_vs_all", "best_vs_random"):
        return [(0, j) for j in range(1, n)]
    if strategy == "all_pairs":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    if strategy == "adjacent":
        return [(i, i + 1) for i in range(n - 1)]
    if strategy == "top_k_vs_bottom_k":
        m = min(k, n // 2)
        return [(i, j) for i in range(m) for j in range(n - m, n)]
    raise ValueError(f"unknown strategy {strategy!r}")


def mine_pairs(
    rows: Sequence[dict],
    *,
    prompt: str = "prompt",
    response: str = "response",
    score: str | Sequence[str] = "score",
    group: str | None = None,
    strategy: str = "best_vs_worst",
    k: int = 1,
    min_margin: float = 0.0,
    ties: str = "drop",
    nan: str = "drop",
    max_pairs_per_prompt: int | None = None,
    length_penalty: float = 0.0,
    seed: int = 0,
    carry: Sequence[str] = (),
) -> tuple[list[dict], dict]:
    """Return ``(pairs, accounting)``: the output rows and the row-accounting counts.

    ``accounting`` has ``rows_in``, ``rows_used``, ``dropped`` (reason -> count, only non-zero
    counts), ``groups_in``, ``groups_with_pairs`` and ``pairs_out``.
    """
    scores = [score] if isinstance(score, str) else list(score)
    several = len(scores) > 1
    key_column = group if group is not None else prompt

    reason: dict[int, str] = {}  # row -> why it was dropped (first that applies)
    ensemble: dict[int, float] = {}  # valid row -> mean score
    effective: dict[int, float] = {}  # valid row -> score - length_penalty * len(response)
    groups: dict[bytes, list[int]] = {}  # canonical key bytes -> rows, in input order
    group_key: dict[bytes, Any] = {}

    if nan == "error":
        _raise_on_first_nan(rows, scores)

    for index, row in enumerate(rows):
        key = row[key_column]
        if key is None:
            reason[index] = "null_key"
            continue
        canonical = key_bytes(key)
        if canonical not in groups:
            groups[canonical] = []
            group_key[canonical] = key
        if row[response] is None:
            reason[index] = "null_response"
            continue
        values = [row[name] for name in scores]
        if not all(_is_valid_number(v) for v in values):
            reason[index] = "nan_score"
            continue
        values = [float(v) for v in values]
        if several:
            total = 0.0
            for v in values:
                total += v
            mean = total / len(values)
        else:
            mean = values[0]
        ensemble[index] = mean
        effective[index] = mean - length_penalty * len(row[response])
        groups[canonical].append(index)

    pairs: list[dict] = []
    used: set[int] = set()
    groups_with_pairs = 0
    for canonical, members in groups.items():
        n = len(members)
        gid = group_id(group_key[canonical])
        if n < 2:
            for index in members:
                reason[index] = "group_too_small"
            continue
        # Stable sort, best first: among equal e the earlier input row stays first.
        ranked = sorted(members, key=lambda index: -effective[index])

        chosen_positions = [
            (i, j)
            for (i, j) in _candidate_pairs(ranked, n, strategy, k)
            if _qualifies(effective[ranked[i]], effective[ranked[j]], min_margin, ties)
        ]
        if strategy == "best_vs_random" and chosen_positions:
            x = splitmix64((seed ^ gid) & MASK64)
            draw = (x * len(chosen_positions)) >> 64
            chosen_positions = [chosen_positions[draw]]

        generated = [(ranked[i], ranked[j]) for (i, j) in chosen_positions]
        if max_pairs_per_prompt is not None and len(generated) > max_pairs_per_prompt:
            margins = [_margin(effective[a], effective[b]) for (a, b) in generated]
            # Largest margin first; among equal margins the earlier generated one.
            order = sorted(range(len(generated)), key=lambda g: (-margins[g], g))
            keep = sorted(order[:max_pairs_per_prompt])
            generated = [generated[g] for g in keep]

        if not generated:
            values = [effective[index] for index in members]
            why = "tie" if all(v == values[0] for v in values) else "below_margin"
            for index in members:
                reason[index] = why
            continue

        groups_with_pairs += 1
        for a, b in generated:
            used.add(a)
            used.add(b)
            out = {
                "prompt": rows[a][prompt],
                "chosen": rows[a][response],
                "rejected": rows[b][response],
                "score_chosen": ensemble[a],
                "score_rejected": ensemble[b],
                "margin": _margin(effective[a], effective[b]),
                "group_id": gid,
                "chosen_row": a,
                "rejected_row": b,
            }
            if several:
                per_column = [float(rows[a][c]) - float(rows[b][c]) for c in scores]
                out["agreement"] = sum(
                    1 for c in scores if float(rows[a][c]) > float(rows[b][c])
                ) / len(scores)
                mean = sum(per_column) / len(per_column)
                out["margin_std"] = math.sqrt(
                    sum((d - mean) ** 2 for d in per_column) / len(per_column)
                )
            for name in carry:
                out[name] = rows[a][name]
            pairs.append(out)
        for index in members:
            if index not in used:
                reason[index] = "not_selected"

    dropped: dict[str, int] = {}
    for index in range(len(rows)):
        if index in used:
            continue
        dropped[reason[index]] = dropped.get(reason[index], 0) + 1
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(used),
        "dropped": dropped,
        "groups_in": len(groups),
        "groups_with_pairs": groups_with_pairs,
        "pairs_out": len(pairs),
    }
    return pairs, accounting


def _margin(e_a: float, e_b: float) -> float:
    """``e_a - e_b``; a kept tie has margin 0 (also between two equal infinities)."""
    if e_a == e_b:
        return 0.0
    return e_a - e_b


# --------------------------------------------------------------------------------------------
# Unnest
# --------------------------------------------------------------------------------------------


def unnest(
    rows: Sequence[dict],
    *,
    completions: str = "completions",
    response: str = "response",
    score: str | Sequence[str] = "score",
    fields: Sequence[str] | None = None,
) -> tuple[list[dict], dict]:
    """Nested rows -> long rows, and the accounting.

    ``fields`` are the completion structs' field names in schema order (needed when every list
    is empty or null). Output columns: the row's other columns, then ``response``, the score
    fields, the remaining struct fields, ``completion_index`` and ``source_row``.
    """
    scores = [score] if isinstance(score, str) else list(score)
    out: list[dict] = []
    null_lists = 0
    empty_lists = 0
    for index, row in enumerate(rows):
        items = row[completions]
        if items is None:
            null_lists += 1
            continue
        if len(items) == 0:
            empty_lists += 1
            continue
        names = list(fields) if fields is not None else list(items[0].keys())
        ordered = [response, *scores] + [f for f in names if f not in (response, *scores)]
        for position, item in enumerate(items):
            record = {c: v for c, v in row.items() if c != completions}
            for name in ordered:
                record[name] = None if item is None else item[name]
            record["completion_index"] = position
            record["source_row"] = index
            out.append(record)
    dropped = {}
    if null_lists:
        dropped["null_completions"] = null_lists
    if empty_lists:
        dropped["empty_completions"] = empty_lists
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(rows) - null_lists - empty_lists,
        "rows_out": len(out),
        "dropped": dropped,
    }
    return out, accounting


# --------------------------------------------------------------------------------------------
# Ranked lists (docs/lists.md)
# --------------------------------------------------------------------------------------------


def cut_list(ranked: list[tuple[float, int]], list_size, min_list_size, ties, reason):
    """Apply ties / list_size / min_list_size to a ranked list of ``(score, id)``; record
    ``reason[id]`` for every dropped item. Returns the kept items (empty when too small)."""
    kept: list[tuple[float, int]] = []
    for item in ranked:
        if ties == "drop" and kept and kept[-1][0] == item[0]:
            reason[item[1]] = "tie"
        else:
            kept.append(item)
    if list_size is not None and len(kept) > list_size:
        for _, index in kept[list_size:]:
            reason[index] = "beyond_list_size"
        kept = kept[:list_size]
    if len(kept) < min_list_size:
        for _, index in kept:
            reason[index] = "group_too_small"
        return []
    return kept


def _dropped_counts(n: int, used: set, reason: dict) -> dict:
    dropped: dict[str, int] = {}
    for index in range(n):
        if index not in used:
            dropped[reason[index]] = dropped.get(reason[index], 0) + 1
    return dropped


def rank_lists(
    rows: Sequence[dict],
    *,
    prompt: str = "prompt",
    response: str = "response",
    score: str = "score",
    group: str | None = None,
    list_size: int | None = None,
    min_list_size: int = 2,
    ties: str = "keep",
    nan: str = "drop",
) -> tuple[list[dict], dict]:
    """Return ``(lists, accounting)`` as docs/lists.md describes."""
    key_column = group if group is not None else prompt
    if nan == "error":
        _raise_on_first_nan(rows, [score])
    reason: dict[int, str] = {}
    groups: dict[bytes, list[int]] = {}
    group_key: dict[bytes, Any] = {}
    for index, row in enumerate(rows):
        key = row[key_column]
        if key is None:
            reason[index] = "null_key"
            continue
        canonical = key_bytes(key)
        if canonical not in groups:
            groups[canonical] = []
            group_key[canonical] = key
        if row[response] is None:
            reason[index] = "null_response"
        elif not _is_valid_number(row[score]):
            reason[index] = "nan_score"
        else:
            groups[canonical].append(index)
    out: list[dict] = []
    used: set[int] = set()
    for canonical, members in groups.items():
        ranked = sorted(((float(rows[i][score]), i) for i in members), key=lambda t: -t[0])
        kept = cut_list(ranked, list_size, min_list_size, ties, reason)
        if not kept:
            continue
        used.update(i for _, i in kept)
        out.append(
            {
                "prompt": rows[kept[0][1]][prompt],
                "responses": [rows[i][response] for _, i in kept],
                "scores": [s for s, _ in kept],
                "rows": [i for _, i in kept],
                "group_id": group_id(group_key[canonical]),
            }
        )
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(used),
        "dropped": _dropped_counts(len(rows), used, reason),
        "groups_in": len(groups),
        "lists_out": len(out),
    }
    return out, accounting


# --------------------------------------------------------------------------------------------
# Curriculum (docs/curriculum.md)
# --------------------------------------------------------------------------------------------


def shuffle_key(seed: int, row: int) -> int:
    return splitmix64(splitmix64(seed) ^ row)


def order_curriculum(
    rows: Sequence[dict],
    *,
    by: str = "margin",
    order: str = "easy_to_hard",
    stages: int | None = None,
    per_prompt: bool = False,
    group: str = "prompt",
    shuffle_within_stage: bool = True,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Return ``(input row of each output row, stage of each output row)``."""
    n = len(rows)

    def ease(index: int) -> tuple:
        value = rows[index][by]
        if not _is_valid_number(value):
            return (1, 0.0, index)
        value = float(value)
        return (0, -value if order == "easy_to_hard" else value, index)

    stage = [0] * n
    if not per_prompt:
        count = stages or 1
        for position, index in enumerate(sorted(range(n), key=ease)):
            stage[index] = position * count // n
    else:
        cap = None if stages is None else stages - 1
        groups: dict[bytes, list[int]] = {}
        for index, row in enumerate(rows):
            if row[group] is not None:
                groups.setdefault(key_bytes(row[group]), []).append(index)
        for members in groups.values():
            for rank, index in enumerate(sorted(members, key=ease)):
                stage[index] = rank if cap is None else min(rank, cap)
    if shuffle_within_stage:
        result = sorted(range(n), key=lambda i: (stage[i], shuffle_key(seed, i), i))
    else:
        result = sorted(range(n), key=lambda i: (stage[i], ease(i)))
    return result, [stage[i] for i in result]


# --------------------------------------------------------------------------------------------
# Preference trees (docs/trees.md)
# --------------------------------------------------------------------------------------------


def _xxh3(data: bytes, seed: int) -> int:
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def build_trees(
    rows: Sequence[dict],
    *,
    prompt: str = "prompt",
    steps: str = "steps",
    reward: str = "reward",
    group: str | None = None,
) -> tuple[list[dict], dict]:
    """Return ``(nodes, accounting)``: tries in group order, nodes in creation order."""
    key_column = group if group is not None else prompt
    reason: dict[int, str] = {}
    used: set[int] = set()
    trees: dict[bytes, dict] = {}
    for index, row in enumerate(rows):
        key = row[key_column]
        if key is None:
            reason[index] = "null_key"
            continue
        canonical = key_bytes(key)
        tree = trees.setdefault(canonical, {"key": key, "nodes": [], "children": {}})
        path = row[steps]
        if path is None:
            reason[index] = "null_steps"
            continue
        if any(s is None for s in path):
            reason[index] = "null_step"
            continue
        if not _is_valid_number(row[reward]):
            reason[index] = "nan_reward"
            continue
        r = float(row[reward])
        used.add(index)
        nodes, children = tree["nodes"], tree["children"]
        if not nodes:
            tree_id = group_id(key)
            tree["prompt"] = row[prompt]
            nodes.append(
                {"id": _xxh3(b"", tree_id), "parent": None, "depth": 0, "step": None,
                 "sum": 0.0, "visits": 0, "children": 0}
            )
        nodes[0]["sum"] += r
        nodes[0]["visits"] += 1
        current = 0
        for step in path:
            child = children.get((current, step))
            if child is None:
                child = len(nodes)
                nodes.append(
                    {"id": _xxh3(step.encode("utf-8"), nodes[current]["id"]), "parent": current,
                     "depth": nodes[current]["depth"] + 1, "step": step, "sum": 0.0,
                     "visits": 0, "children": 0}
                )
                nodes[current]["children"] += 1
                children[(current, step)] = child
            nodes[child]["sum"] += r
            nodes[child]["visits"] += 1
            current = child
    out: list[dict] = []
    trees_out = 0
    for tree in trees.values():
        nodes = tree["nodes"]
        if not nodes:
            continue
        trees_out += 1
        tree_id = group_id(tree["key"])
        for node in nodes:
            out.append(
                {
                    "tree_id": tree_id,
                    "node_id": node["id"],
                    "parent_id": None if node["parent"] is None else nodes[node["parent"]]["id"],
                    "depth": node["depth"],
                    "step": node["step"],
                    "value": node["sum"] / node["visits"],
                    "visits": node["visits"],
                    "is_leaf": node["children"] == 0,
                    "prompt": tree["prompt"],
                }
            )
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(used),
        "dropped": _dropped_counts(len(rows), used, reason),
        "groups_in": len(trees),
        "trees_out": trees_out,
        "nodes_out": len(out),
    }
    return out, accounting


class InvalidTree(ValueError):
    """A node table that is not a forest; ``kind`` is duplicate, orphan, roots or cycle."""

    def __init__(self, kind: str, row: int):
        super().__init__(f"{kind} at row {row}")
        self.kind = kind
        self.row = row


def validate_nodes(
    rows: Sequence[dict],
    *,
    tree: str = "tree_id",
    node: str = "node_id",
    parent: str = "parent_id",
) -> tuple[list[int | None], list[int], list[int]]:
    """``(parent row, depth, root row)`` of every row, or InvalidTree naming the first bad row
    (checks in order: null ids, duplicates, then roots/orphans, then cycles)."""
    for index, row in enumerate(rows):
        if row[tree] is None or row[node] is None:
            raise InvalidTree("null", index)
    where: dict[tuple, int] = {}
    for index, row in enumerate(rows):
        key = (key_bytes(row[tree]), key_bytes(row[node]))
        if key in where:
            raise InvalidTree("duplicate", index)
        where[key] = index
    parent_row: list[int | None] = [None] * len(rows)
    roots: dict[bytes, int] = {}
    for index, row in enumerate(rows):
        t = key_bytes(row[tree])
        if row[parent] is None:
            if t in roots:
                raise InvalidTree("roots", index)
            roots[t] = index
        else:
            found = where.get((t, key_bytes(row[parent])))
            if found is None:
                raise InvalidTree("orphan", index)
            parent_row[index] = found
    depth = [-1] * len(rows)
    for index in range(len(rows)):
        path, current, seen = [], index, set()
        while depth[current] < 0:
            if current in seen:
                raise InvalidTree("cycle", current)
            seen.add(current)
            path.append(current)
            if parent_row[current] is None:
                break
            current = parent_row[current]
        for r in reversed(path):
            depth[r] = 0 if parent_row[r] is None else depth[parent_row[r]] + 1
    root = [roots[key_bytes(row[tree])] for row in rows]
    return parent_row, depth, root


def _sibling_sets(rows, parent_row, step, value, visits, min_visits, reason):
    """For every parent row (in row order), its rankable children best first."""
    children: dict[int, list[int]] = {}
    for index, p in enumerate(parent_row):
        if p is None:
            reason[index] = "root"
        else:
            children.setdefault(p, []).append(index)
    for p in sorted(children):
        ranked = []
        for c in children[p]:
            if rows[c][step] is None:
                reason[c] = "null_step"
            elif not _is_valid_number(rows[c][value]):
                reason[c] = "nan_value"
            elif visits is not None and not (
                _is_valid_number(rows[c][visits]) and rows[c][visits] >= min_visits
            ):
                reason[c] = "below_min_visits"
            else:
                ranked.append((float(rows[c][value]), c))
        ranked.sort(key=lambda t: -t[0])
        yield p, ranked


def _prefix(rows, parent_row, step, row):
    out = []
    while parent_row[row] is not None:
        out.append(rows[row][step])
        row = parent_row[row]
    return out[::-1]


def tree_pairs(
    rows: Sequence[dict],
    *,
    strategy: str = "best_vs_worst",
    min_margin: float = 0.0,
    min_visits: float = 1,
    k: int = 1,
    ties: str = "drop",
    max_pairs_per_node: int | None = None,
    seed: int = 0,
    tree: str = "tree_id",
    node: str = "node_id",
    parent: str = "parent_id",
    step: str = "step",
    value: str = "value",
    visits: str | None = "visits",
    prompt: str | None = "prompt",
) -> tuple[list[dict], dict]:
    """Return ``(pairs, accounting)`` as docs/trees.md describes."""
    parent_row, depth, root = validate_nodes(rows, tree=tree, node=node, parent=parent)
    reason: dict[int, str] = {}
    used: set[int] = set()
    out: list[dict] = []
    groups_with_pairs = 0
    for p, ranked in _sibling_sets(rows, parent_row, step, value, visits, min_visits, reason):
        n = len(ranked)
        if n < 2:
            for _, c in ranked:
                reason[c] = "group_too_small"
            continue
        positions = [
            (i, j)
            for (i, j) in _candidate_pairs(ranked, n, strategy, k)
            if _qualifies(ranked[i][0], ranked[j][0], min_margin, ties)
        ]
        if strategy == "best_vs_random" and positions:
            x = splitmix64((seed ^ group_id(rows[p][node])) & MASK64)
            positions = [positions[(x * len(positions)) >> 64]]
        generated = [(ranked[i], ranked[j]) for (i, j) in positions]
        if max_pairs_per_node is not None and len(generated) > max_pairs_per_node:
            margins = [_margin(a[0], b[0]) for a, b in generated]
            order = sorted(range(len(generated)), key=lambda g: (-margins[g], g))
            generated = [generated[g] for g in sorted(order[:max_pairs_per_node])]
        if not generated:
            why = "tie" if all(v == ranked[0][0] for v, _ in ranked) else "below_margin"
            for _, c in ranked:
                reason[c] = why
            continue
        groups_with_pairs += 1
        for (va, a), (vb, b) in generated:
            used.update((a, b))
            out.append(
                {
                    "prompt": rows[root[p]][prompt] if prompt else None,
                    "prefix": _prefix(rows, parent_row, step, p),
                    "chosen": rows[a][step],
                    "rejected": rows[b][step],
                    "score_chosen": va,
                    "score_rejected": vb,
                    "margin": _margin(va, vb),
                    "depth": depth[a],
                    "tree_id": rows[a][tree],
                    "chosen_node": rows[a][node],
                    "rejected_node": rows[b][node],
                }
            )
        for _, c in ranked:
            if c not in used:
                reason[c] = "not_selected"
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(used),
        "dropped": _dropped_counts(len(rows), used, reason),
        "trees_in": len(set(root)),
        "groups_with_pairs": groups_with_pairs,
        "pairs_out": len(out),
    }
    return out, accounting


def tree_lists(
    rows: Sequence[dict],
    *,
    list_size: int | None = None,
    min_list_size: int = 2,
    ties: str = "keep",
    min_visits: float = 1,
    tree: str = "tree_id",
    node: str = "node_id",
    parent: str = "parent_id",
    step: str = "step",
    value: str = "value",
    visits: str | None = "visits",
    prompt: str | None = "prompt",
) -> tuple[list[dict], dict]:
    """Return ``(lists, accounting)`` as docs/trees.md describes."""
    parent_row, depth, root = validate_nodes(rows, tree=tree, node=node, parent=parent)
    reason: dict[int, str] = {}
    used: set[int] = set()
    out: list[dict] = []
    for p, ranked in _sibling_sets(rows, parent_row, step, value, visits, min_visits, reason):
        kept = cut_list(ranked, list_size, min_list_size, ties, reason)
        if not kept:
            continue
        used.update(c for _, c in kept)
        first = kept[0][1]
        out.append(
            {
                "prompt": rows[root[p]][prompt] if prompt else None,
                "prefix": _prefix(rows, parent_row, step, p),
                "responses": [rows[c][step] for _, c in kept],
                "scores": [v for v, _ in kept],
                "rows": [c for _, c in kept],
                "depth": depth[first],
                "tree_id": rows[first][tree],
            }
        )
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(used),
        "dropped": _dropped_counts(len(rows), used, reason),
        "trees_in": len(set(root)),
        "lists_out": len(out),
    }
    return out, accounting


# --------------------------------------------------------------------------------------------
# Comparison helpers for the tests
# --------------------------------------------------------------------------------------------


def same_value(actual: Any, expected: Any, rel: float = 1e-12) -> bool:
    """Equality, with floats compared by ``math.isclose`` (NaN equals NaN), recursively."""
    if isinstance(expected, float) or isinstance(actual, float):
        if actual is None or expected is None:
            return actual is expected
        a, b = float(actual), float(expected)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    if isinstance(expected, dict) and isinstance(actual, dict):
        return list(actual) == list(expected) and all(
            same_value(actual[c], expected[c], rel) for c in expected
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(
            same_value(a, b, rel) for a, b in zip(actual, expected)
        )
    return type(actual) is type(expected) and actual == expected


def assert_rows_equal(actual: list[dict], expected: list[dict], context: str = "") -> None:
    """Assert two lists of rows are equal, naming the first differing row and column."""
    for index, (a, b) in enumerate(zip(actual, expected)):
        if list(a) != list(b):
            raise AssertionError(f"{context}row {index}: columns {list(a)} != {list(b)}")
        for column in b:
            if not same_value(a[column], b[column]):
                raise AssertionError(
                    f"{context}row {index}, column {column!r}: got {a[column]!r}, "
                    f"expected {b[column]!r}\n  got row      {a}\n  expected row {b}"
                )
    if len(actual) != len(expected):
        raise AssertionError(
            f"{context}{len(actual)} rows, expected {len(expected)}; first extra: "
            f"{(actual[len(expected) :] or expected[len(actual) :])[:1]}"
        )


def accounting_of(report: dict) -> dict:
    """The part of a provenance record that ``mine_pairs`` in this file computes."""
    return {
        "rows_in": report.get("rows_in"),
        "rows_used": report.get("rows_used"),
        "dropped": {r: c for r, c in (report.get("dropped") or {}).items() if c},
        "groups_in": report.get("groups_in"),
        "groups_with_pairs": report.get("groups_with_pairs"),
        "pairs_out": report.get("pairs_out"),
    }


# --------------------------------------------------------------------------------------------
# Deduplication and decontamination (docs/dedup.md)
# --------------------------------------------------------------------------------------------

#: Unicode White_Space, the characters Rust's ``char::is_whitespace`` accepts.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)


def collapse_whitespace(text: str) -> str:
    """Whitespace runs become one space, none at the ends."""
    spaced = "".join(" " if c in WHITE_SPACE else c for c in text)
    return " ".join(word for word in spaced.split(" ") if word)


def normalize_text(text: str) -> str:
    """NFKC, per-character lowercase, punctuation and symbols (P*, S*) removed, whitespace
    collapsed."""
    import unicodedata

    text = unicodedata.normalize("NFKC", text)
    text = "".join(c.lower() for c in text)
    text = "".join(c for c in text if unicodedata.category(c)[0] not in "PS")
    return collapse_whitespace(text)


def word_ngrams(text: str, n: int) -> list[str]:
    """Word n-grams of a prepared text; the whole text when it has fewer than n words."""
    if not text:
        return []
    words = text.split(" ")
    if len(words) < n:
        return [text]
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def jaccard(a: str, b: str, n: int) -> float:
    """True Jaccard similarity of the word n-gram sets of two normalised texts."""
    sa, sb = set(word_ngrams(normalize_text(a), n)), set(word_ngrams(normalize_text(b), n))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def dedup_exact(
    rows: list[dict], columns: Sequence[str], normalize: bool = True, group: str | None = None
) -> tuple[list[int], dict]:
    """Exact dedup: the kept row indices (ascending) and the dropped count.

    Units are single rows, or with ``group`` the rows sharing a group key (a null key is a unit
    alone), judged by their first row. Text is normalised when asked; other values compare by
    their canonical bytes; a null equals a null. The first unit of each value is kept.
    """

    def value(v: Any) -> Any:
        if isinstance(v, str):
            return ("text", normalize_text(v) if normalize else v)
        return None if v is None else ("key", tagged_bytes(v))

    units: list[list[int]] = []
    by_key: dict = {}
    for i, row in enumerate(rows):
        if group is None or row[group] is None:
            units.append([i])
            continue
        key = key_bytes(row[group])
        if key in by_key:
            units[by_key[key]].append(i)
        else:
            by_key[key] = len(units)
            units.append([i])
    seen: set = set()
    kept: list[int] = []
    dropped = 0
    for unit in units:
        key = tuple(value(rows[unit[0]][c]) for c in columns)
        if key in seen:
            dropped += len(unit)
        else:
            seen.add(key)
            kept.extend(unit)
    return sorted(kept), {"duplicate": dropped} if dropped else {}


def render_messages(messages: list[dict | None] | None) -> str | None:
    """A conversation as the text near-duplicate detection and decontamination compare: one
    ``role: content`` line per message (the content alone without a role; a null message
    skipped), joined by newlines; None stays None."""
    if messages is None:
        return None
    lines = []
    for message in messages:
        if message is None:
            continue
        role, content = message.get("role"), message.get("content") or ""
        lines.append(content if role is None else f"{role}: {content}")
    return "\n".join(lines)


def find_contamination(
    texts: list[str | None], references: list[str | None], ngram: int, normalize: bool = True
) -> list[tuple[int, list[int]]]:
    """Rows sharing a word n-gram with a reference text, and the reference rows matched.

    A reference shorter than ``ngram`` words contributes its whole word sequence; a data row
    matches when it holds one of the reference's word sequences as consecutive words.
    """
    prepare = normalize_text if normalize else collapse_whitespace
    grams: dict[str, set[int]] = {}
    lengths = {ngram}
    for j, reference in enumerate(references):
        if reference is None:
            continue
        text = prepare(reference)
        for gram in word_ngrams(text, ngram):
            grams.setdefault(gram, set()).add(j)
        if text and len(text.split(" ")) < ngram:
            lengths.add(len(text.split(" ")))
    found = []
    for i, text in enumerate(texts):
        if text is None:
            continue
        text = prepare(text)
        hits: set[int] = set()
        for length in lengths:
            words = text.split(" ") if text else []
            for k in range(len(words) - length + 1):
                hits |= grams.get(" ".join(words[k : k + length]), set())
        if hits:
            found.append((i, sorted(hits)))
    return found


# --------------------------------------------------------------------------------------------
# Prompt splitting (docs/split_prompt.md)
# --------------------------------------------------------------------------------------------


def _split_point_text(chosen: str, rejected: str, boundary: str | None):
    """Number of characters of the prompt, or the reason the pair cannot be split."""
    if chosen == rejected:
        return "identical"
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    cut = shared
    if boundary is not None:
        at = chosen[:shared].rfind(boundary)
        if at < 0:
            return "no_shared_prompt"
        cut = at + len(boundary)
    if cut == 0:
        return "no_shared_prompt"
    if cut == len(chosen) or cut == len(rejected):
        return "empty_completion"
    return cut


def _split_point_messages(chosen: list, rejected: list, boundary: str | None):
    """Number of prompt messages, or the reason the pair cannot be split."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == len(chosen) == len(rejected):
        return "identical"
    cut = shared
    if boundary is not None:
        roles = [m["role"] if m is not None else None for m in chosen[:shared]]
        cut = max((i + 1 for i, role in enumerate(roles) if role == boundary), default=0)
    if cut == 0:
        return "no_shared_prompt"
    if cut == len(chosen) or cut == len(rejected):
        return "empty_completion"
    return cut


def split_prompt(
    rows: Sequence[dict],
    *,
    chosen: str = "chosen",
    rejected: str = "rejected",
    boundary: str | None = None,
) -> tuple[list[dict], dict]:
    """Full conversations -> ``prompt, chosen, rejected`` + the other columns, and accounting."""
    out = []
    dropped: dict[str, int] = {}
    for row in rows:
        c, r = row[chosen], row[rejected]
        if c is None or r is None:
            cut = "null_conversation"
        elif isinstance(c, str):
            cut = _split_point_text(c, r, boundary)
        else:
            cut = _split_point_messages(c, r, boundary)
        if isinstance(cut, str):
            dropped[cut] = dropped.get(cut, 0) + 1
            continue
        record = {"prompt": c[:cut], "chosen": c[cut:], "rejected": r[cut:]}
        for name, value in row.items():
            if name not in (chosen, rejected):
                record[name] = value
        out.append(record)
    accounting = {"rows_in": len(rows), "rows_used": len(out), "dropped": dropped}
    return out, accounting


# --------------------------------------------------------------------------------------------
# Preference strength, filtering, length bias (docs/strength.md)
# --------------------------------------------------------------------------------------------


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def preference_strength(
    rows: Sequence[dict], *, chosen_scores: Sequence[str], rejected_scores: Sequence[str]
) -> list[dict]:
    """Rows with ``strength_mean``, ``strength_std``, ``agreement`` set (NaN if any score is
    null or NaN)."""
    out = []
    for row in rows:
        margins = [
            _number(row[c]) - _number(row[r]) for c, r in zip(chosen_scores, rejected_scores)
        ]
        record = dict(row)
        if any(math.isnan(m) for m in margins):
            mean = std = agreement = math.nan
        else:
            mean = sum(margins) / len(margins)
            std = math.sqrt(sum((m - mean) ** 2 for m in margins) / len(margins))
            agreement = sum(1 for m in margins if m > 0) / len(margins)
        record["strength_mean"] = mean
        record["strength_std"] = std
        record["agreement"] = agreement
        out.append(record)
    return out


def filter_pairs(
    rows: Sequence[dict],
    *,
    min_margin: float | None = None,
    min_agreement: float | None = None,
    max_strength_std: float | None = None,
    flip_disagreeing: bool = False,
    chosen_scores: Sequence[str] = (),
    rejected_scores: Sequence[str] = (),
) -> tuple[list[dict], dict]:
    """Flip (strength_mean < 0), then keep the pairs that pass every test; NaN fails.

    ``chosen_scores``/``rejected_scores``: the per-model columns given to
    ``preference_strength`` (swapped on a flip, and the strength recomputed from them)."""
    flipped = 0
    staged = []
    for row in rows:
        row = dict(row)
        if flip_disagreeing and _number(row["strength_mean"]) < 0:
            flipped += 1
            swaps = [
                (name, name.replace("chosen", "rejected"))
                for name in row
                if "chosen" in name and name.replace("chosen", "rejected") in row
            ]
            swaps += [
                pair for pair in zip(chosen_scores, rejected_scores) if pair not in swaps
            ]
            for a, b in swaps:
                row[a], row[b] = row[b], row[a]
            for name in ("margin", "strength_mean"):
                if name in row and row[name] is not None:
                    row[name] = -float(row[name])
            if chosen_scores:
                row = preference_strength(
                    [row], chosen_scores=chosen_scores, rejected_scores=rejected_scores
                )[0]
            elif "agreement" in row and row["agreement"] is not None:
                row["agreement"] = 1.0 - float(row["agreement"])
        staged.append(row)
    kept = []
    dropped: dict[str, int] = {}
    for row in staged:
        why = None
        std = row.get("strength_std", row.get("margin_std"))
        if min_margin is not None and not _number(row["margin"]) > min_margin:
            why = "below_margin"
        elif min_agreement is not None and not _number(row["agreement"]) >= min_agreement:
            why = "low_agreement"
        elif max_strength_std is not None and not _number(std) <= max_strength_std:
            why = "high_strength_std"
        if why:
            dropped[why] = dropped.get(why, 0) + 1
        else:
            kept.append(row)
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(kept),
        "dropped": dropped,
        "flipped": flipped,
    }
    return kept, accounting


def text_length(value: Any) -> int | None:
    """Characters of a text, or of the ``content`` of chat messages."""
    if value is None:
        return None
    if isinstance(value, str):
        return len(value)
    return sum(len(m["content"] or "") for m in value if m is not None)


def length_stats(rows: Sequence[dict], *, margin: str = "margin") -> dict:
    """Length bias of pairs (docs/strength.md), computed one pair at a time."""
    pairs = []
    for row in rows:
        c, r = text_length(row["chosen"]), text_length(row["rejected"])
        if c is not None and r is not None:
            pairs.append((c, r, _number(row[margin]) if margin in row else math.nan))
    n = len(pairs)
    ratios = [c / r for c, r, _ in pairs if r > 0]
    stats = {
        "pairs": n,
        "chosen_longer": sum(1 for c, r, _ in pairs if c > r) / n if n else None,
        "rejected_longer": sum(1 for c, r, _ in pairs if c < r) / n if n else None,
        "same_length": sum(1 for c, r, _ in pairs if c == r) / n if n else None,
        "mean_chosen_length": sum(c for c, _, _ in pairs) / n if n else None,
        "mean_rejected_length": sum(r for _, r, _ in pairs) / n if n else None,
        "mean_length_ratio": sum(ratios) / len(ratios) if ratios else None,
        "margin_length_correlation": None,
    }
    finite = [(m, c - r) for c, r, m in pairs if math.isfinite(m)]
    if len(finite) >= 2:
        xs = [m for m, _ in finite]
        ys = [d for _, d in finite]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxy = sum((x - mx) * (y - my) for x, y in finite)
        sxx = sum((x - mx) ** 2 for x in xs)
        syy = sum((y - my) ** 2 for y in ys)
        if max(xs) != min(xs) and max(ys) != min(ys) and sxx > 0 and syy > 0:
            corr = sxy / (math.sqrt(sxx) * math.sqrt(syy))
            stats["margin_length_correlation"] = corr if math.isfinite(corr) else None
    return stats


# --------------------------------------------------------------------------------------------
# Trainer formats: unpaired preference for KTO (docs/formats.md)
# --------------------------------------------------------------------------------------------


def unpair(
    rows: Sequence[dict],
    *,
    prompt: str | None = "prompt",
    chosen: str = "chosen",
    rejected: str = "rejected",
    order: str = "blocks",
) -> tuple[list[dict], dict]:
    """Pairs -> ``prompt, completion, label`` rows (docs/formats.md), one pair at a time.

    Each pair gives its chosen completion (label True) and its rejected one (label False), with
    the prompt (renamed ``prompt``) and the other columns repeated. ``order="blocks"``: every
    chosen row in pair order, then every rejected row; ``"interleave"``: chosen, rejected of
    pair 0, then of pair 1, ... A null completion is dropped (the pair's other one stays).
    Returns the rows and the counts ``desirable``, ``undesirable``, ``null_chosen``,
    ``null_rejected``.
    """
    def row_of(pair: dict, side: str, label: bool) -> dict:
        out: dict = {}
        if prompt is not None:
            out["prompt"] = pair[prompt]
        out["completion"] = pair[side]
        out["label"] = label
        for key, value in pair.items():
            if key not in (prompt, chosen, rejected):
                out[key] = value
        return out

    good = [row_of(pair, chosen, True) for pair in rows]
    bad = [row_of(pair, rejected, False) for pair in rows]
    if order == "blocks":
        ordered = good + bad
    else:
        ordered = [row for couple in zip(good, bad) for row in couple]
    out = [row for row in ordered if row["completion"] is not None]
    counts = {
        "desirable": sum(1 for row in out if row["label"]),
        "undesirable": sum(1 for row in out if not row["label"]),
        "null_chosen": sum(1 for pair in rows if pair[chosen] is None),
        "null_rejected": sum(1 for pair in rows if pair[rejected] is None),
    }
    return out, counts


# --------------------------------------------------------------------------------------------
# Reward-model evaluation (docs/eval.md)
# --------------------------------------------------------------------------------------------


def evaluate_rewards(
    rows: list[dict],
    scores: Sequence[tuple[str, str, str]],
    *,
    subset: str | None = None,
    ties: str = "half",
    bootstrap: int = 1000,
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """``pk.evaluate_rewards`` on already-scored columns, one pair at a time.

    ``scores`` is ``[(name, chosen_column, rejected_column)]``. A pair is dropped when either
    score is None, NaN or infinite; otherwise it scores 1 (chosen above), ``0.5`` or ``0``
    (tie, per ``ties``) or 0. Returns the result rows (each model's overall row, subset None,
    then its subsets in sorted order) and the pairwise agreement rows. The bootstrap draws a
    resample as one multinomial draw of (wins, ties, losses) with numpy's seeded generator (the
    same random numbers as prefkit: the definition in docs/eval.md), and takes the 2.5% and
    97.5% percentiles with linear interpolation, computed here by hand.
    """
    import numpy as np

    tie_value = 0.5 if ties == "half" else 0.0

    def usable(value: Any) -> bool:
        return value is not None and math.isfinite(value)

    def percentile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        position = q * (len(ordered) - 1)
        lo = math.floor(position)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)

    def summary(name: str, group: str | None, members: list[dict], c: str, r: str) -> dict:
        used = [row for row in members if usable(row[c]) and usable(row[r])]
        wins = sum(1 for row in used if row[c] > row[r])
        tied = sum(1 for row in used if row[c] == row[r])
        n = len(used)
        accuracy = (wins + tie_value * tied) / n if n else None
        low = high = None
        if n and bootstrap:
            rng = np.random.default_rng(seed)
            draws = rng.multinomial(n, [wins / n, tied / n, (n - wins - tied) / n], size=bootstrap)
            means = [(int(d[0]) + tie_value * int(d[1])) / n for d in draws]
            low, high = percentile(means, 0.025), percentile(means, 0.975)
        return {"model": name, "subset": group, "pairs": n, "dropped": len(members) - n,
                "wins": wins, "ties": tied, "accuracy": accuracy, "ci_low": low,
                "ci_high": high}

    out = []
    groups = [] if subset is None else sorted({str(row[subset]) for row in rows})
    for name, c, r in scores:
        out.append(summary(name, None, rows, c, r))
        for group in groups:
            members = [row for row in rows if str(row[subset]) == group]
            out.append(summary(name, group, members, c, r))

    def side(row: dict, c: str, r: str) -> int:
        return (row[c] > row[r]) - (row[c] < row[r])

    agreement = []
    for i, (a, ca, ra) in enumerate(scores):
        for b, cb, rb in scores[i + 1:]:
            both = [row for row in rows
                    if all(usable(row[k]) for k in (ca, ra, cb, rb))]
            same = sum(1 for row in both if side(row, ca, ra) == side(row, cb, rb))
            agreement.append({"a": a, "b": b, "pairs": len(both),
                              "agreement": same / len(both) if both else None})
    return out, agreement


# --------------------------------------------------------------------------------------------
# Evaluation: policy ranking accuracy (Chen et al. 2024) and judge biases
# (prefkit.eval.ranking, prefkit.eval.judges)


def _half_win(margin: float) -> float:
    """1 for a positive margin, 0 for a negative one, 0.5 for a tie, NaN for NaN."""
    if math.isnan(margin):
        return math.nan
    return 1.0 if margin > 0 else 0.0 if margin < 0 else 0.5


def ranking_accuracy(rows: Sequence[dict], *, beta: float, alpha: Any = None,
                     normalize: bool = False) -> tuple[list[dict], dict]:
    """Per-pair ranking results and overall means, from per-pair log-prob sums.

    Each row holds ``policy_chosen``, ``policy_rejected`` (sums of log-probs), ``n_chosen``,
    ``n_rejected`` (scored tokens), optionally ``ref_chosen``, ``ref_rejected`` and ``alpha``
    (``P(chosen > rejected)``; the ``alpha`` argument, when a number, applies to every row).
    The idealized margin is ``ref_chosen - ref_rejected + log(alpha / (1 - alpha)) / beta``.
    """
    def value(chosen, rejected, row):
        if normalize:
            if row["n_chosen"] < 1 or row["n_rejected"] < 1:
                return math.nan
            return _half_win(chosen / row["n_chosen"] - rejected / row["n_rejected"])
        return _half_win(chosen - rejected)

    out = []
    for row in rows:
        result = {"ranked_correctly": value(row["policy_chosen"], row["policy_rejected"], row)}
        if "ref_chosen" in row:
            result["ref_ranked_correctly"] = value(row["ref_chosen"], row["ref_rejected"], row)
            a = row.get("alpha", alpha) if not isinstance(alpha, (int, float)) else alpha
            if a is not None:
                a = float(a)
                if math.isnan(a):
                    margin = math.nan
                elif a == 1.0:
                    margin = math.inf
                elif a == 0.0:
                    margin = -math.inf
                else:
                    margin = (row["ref_chosen"] - row["ref_rejected"]
                              + math.log(a / (1.0 - a)) / beta)
                result["idealized_margin"] = margin
                result["idealized_correct"] = _half_win(margin)
        out.append(result)

    def mean(key):
        values = [r[key] for r in out if key in r and not math.isnan(r[key])]
        return sum(values) / len(values) if values else None

    overall = {"ranking_accuracy": mean("ranked_correctly"),
               "ref_ranking_accuracy": mean("ref_ranked_correctly"),
               "idealized_ranking_accuracy": mean("idealized_correct")}
    return out, overall


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b by counting pairs; NaN when a side has no untied pair."""
    concordant = discordant = untied_x = untied_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            untied_x += dx != 0
            untied_y += dy != 0
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    if untied_x == 0 or untied_y == 0:
        return math.nan
    return (concordant - discordant) / math.sqrt(untied_x * untied_y)


def top1_correct(logps: Sequence[float], scores: Sequence[float]) -> float:
    """Share of the highest-log-prob responses that have the highest score."""
    best_logp, best_score = max(logps), max(scores)
    top = [i for i, v in enumerate(logps) if v == best_logp]
    return sum(scores[i] == best_score for i in top) / len(top)


def _verdict(value: float, center: float) -> float:
    return 1.0 if value > center else 0.0 if value < center else 0.5


def _quantile(values: list[float], q: float) -> float:
    """numpy's default (linear) quantile of the non-NaN values."""
    values = sorted(v for v in values if not math.isnan(v))
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def judge_statistics(rows: Sequence[dict], judge: str | None, center: float = 0.5) -> dict:
    """Position consistency, first-position win rate and self-preference of one judge.

    Rows hold ``ab``, ``ba`` (the judge's "first shown wins" value in each order), optionally
    ``source_a``, ``source_b`` and ``gold``; all NaN-free. A response's win score is the mean
    of its verdicts in the two orders.
    """
    nan = math.nan
    out = dict.fromkeys(("position_consistency", "first_position_win_rate", "own_win_rate",
                         "others_win_rate", "self_preference_lift", "gold_own_win_rate",
                         "gold_lift"), nan)
    if not rows:
        return out
    consistent = first = 0.0
    own, others, gold_own = [], [], []
    for row in rows:
        first_ab, first_ba = _verdict(row["ab"], center), _verdict(row["ba"], center)
        a_ab, a_ba = first_ab, 1.0 - first_ba
        consistent += a_ab == a_ba
        first += first_ab + first_ba
        win_a = (a_ab + a_ba) / 2
        if judge is None or "source_a" not in row:
            continue
        for side, win, gold_sign in (("source_a", win_a, 1), ("source_b", 1 - win_a, -1)):
            if row[side] == judge:
                own.append(win)
                if "gold" in row:
                    g = _verdict(row["gold"], center)
                    gold_own.append(g if gold_sign == 1 else 1 - g)
            else:
                others.append(win)
    out["position_consistency"] = consistent / len(rows)
    out["first_position_win_rate"] = first / (2 * len(rows))
    if own:
        out["own_win_rate"] = sum(own) / len(own)
    if others:
        out["others_win_rate"] = sum(others) / len(others)
    out["self_preference_lift"] = out["own_win_rate"] - out["others_win_rate"]
    if gold_own:
        out["gold_own_win_rate"] = sum(gold_own) / len(gold_own)
        out["gold_lift"] = out["own_win_rate"] - out["gold_own_win_rate"]
    return out


def judge_bias(rows: Sequence[dict], *, judge: str | None = None, center: float = 0.5,
               bootstrap: int = 0, confidence: float = 0.95, seed: int = 0,
               draws: Any = None) -> tuple[dict, dict]:
    """``judge_statistics`` of the rows without NaN scores, plus percentile intervals.

    Rows with a NaN ``ab`` (else ``ba``, else ``gold``) are dropped and counted by reason.
    ``draws(n)`` returns the ``bootstrap`` resamples as lists of row positions (the test passes
    numpy's seeded generator so that the intervals compare exactly).
    """
    dropped: dict[str, int] = {}
    kept = []
    for row in rows:
        for key, reason in (("ab", "nan_score_ab"), ("ba", "nan_score_ba"),
                            ("gold", "nan_gold")):
            if key in row and (row[key] is None or math.isnan(row[key])):
                dropped[reason] = dropped.get(reason, 0) + 1
                break
        else:
            kept.append(row)
    point = judge_statistics(kept, judge, center)
    result = {"pairs": len(kept), **point}
    if bootstrap and kept:
        samples = [judge_statistics([kept[i] for i in take], judge, center)
                   for take in draws(len(kept))]
        for key, value in point.items():
            values = [s[key] for s in samples]
            defined = not math.isnan(value) and any(not math.isnan(v) for v in values)
            result[f"{key}_low"] = _quantile(values, (1 - confidence) / 2) if defined else math.nan
            result[f"{key}_high"] = (_quantile(values, 1 - (1 - confidence) / 2) if defined
                                     else math.nan)
    return result, dropped


# --------------------------------------------------------------------------------------------
# Joint pairs across prompts (docs/joint_pairs.md)
# --------------------------------------------------------------------------------------------


def _below(bits: int, n: int) -> int:
    """A uniform integer in range(n) from 64 random bits (multiply-shift)."""
    return (bits * n) >> 64


def joint_permutation(n: int, seed: int, draw: int) -> list[int]:
    """The seeded permutation of range(n) of one draw: Fisher-Yates over splitmix64."""
    order = list(range(n))
    state = splitmix64((seed ^ splitmix64(draw)) & MASK64)
    for i in range(n - 1, 0, -1):
        state = splitmix64(state)
        j = _below(state, i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def mine_joint_pairs(
    rows: Sequence[dict],
    *,
    prompt: str = "prompt",
    response: str = "response",
    score: str | Sequence[str] = "score",
    group: str | None = None,
    strategy: str = "best_vs_worst",
    pairs_per_prompt: int = 1,
    min_margin: float = 0.0,
    nan: str = "drop",
    seed: int = 0,
    carry: Sequence[str] = (),
) -> tuple[list[dict], dict]:
    """Return ``(pairs, accounting)`` of ``pk.mine_joint_pairs`` (rows_in, rows_used, dropped,
    draws, draws_without_pair, draws_repeated, pairs_out)."""
    scores = [score] if isinstance(score, str) else list(score)
    key_column = group if group is not None else prompt
    if nan == "error":
        _raise_on_first_nan(rows, scores)
    dropped: dict[str, int] = {}

    def drop(reason: str, n: int = 1) -> None:
        if n:
            dropped[reason] = dropped.get(reason, 0) + n

    value: dict[int, float] = {}
    groups: dict[bytes, list[int]] = {}  # first-appearance order, usable rows in input order
    group_ids: dict[bytes, int] = {}
    for index, row in enumerate(rows):
        key = row[key_column]
        if key is None:
            drop("null_key")
            continue
        canonical = key_bytes(key)
        groups.setdefault(canonical, [])
        group_ids.setdefault(canonical, group_id(key))
        if row[response] is None:
            drop("null_response")
            continue
        values = [row[name] for name in scores]
        if not all(_is_valid_number(v) for v in values):
            drop("nan_score")
            continue
        total = 0.0
        for v in values:
            total += float(v)
        value[index] = total / len(values) if len(values) > 1 else float(values[0])
        groups[canonical].append(index)
    # Best first; among equal scores the earlier row first.
    sides = [
        (group_ids[k], sorted(members, key=lambda i: -value[i]))
        for k, members in groups.items()
        if members
    ]
    usable = sum(len(members) for _, members in sides)
    pairs: list[dict] = []
    seen: set[tuple[int, int]] = set()
    without_pair = repeated = 0
    n = len(sides)
    if n >= 2:
        for draw in range(pairs_per_prompt):
            order = joint_permutation(n, seed, draw)
            for i in range(n):
                (gid_a, a_rows), (gid_b, b_rows) = sides[order[i]], sides[order[(i + 1) % n]]
                if strategy == "best_vs_worst":
                    a, b = a_rows[0], b_rows[-1]
                else:
                    bits = splitmix64((seed ^ gid_a ^ splitmix64(~draw & MASK64)) & MASK64)
                    a = a_rows[_below(bits, len(a_rows))]
                    b = b_rows[_below(splitmix64(bits), len(b_rows))]
                (c, c_gid), (r, r_gid) = ((a, gid_a), (b, gid_b))
                if value[a] < value[b]:
                    (c, c_gid), (r, r_gid) = (b, gid_b), (a, gid_a)
                margin = 0.0 if value[c] == value[r] else value[c] - value[r]
                if not margin > min_margin:
                    without_pair += 1
                    continue
                if (c, r) in seen:
                    repeated += 1
                    continue
                seen.add((c, r))
                pair = {
                    "prompt": rows[c][prompt],
                    "chosen": rows[c][response],
                    "rejected_prompt": rows[r][prompt],
                    "rejected": rows[r][response],
                    "score_chosen": value[c],
                    "score_rejected": value[r],
                    "margin": margin,
                    "group_id": c_gid,
                    "rejected_group_id": r_gid,
                    "chosen_row": c,
                    "rejected_row": r,
                }
                for name in carry:
                    pair[name] = rows[c][name]
                pairs.append(pair)
    used = {p["chosen_row"] for p in pairs} | {p["rejected_row"] for p in pairs}
    if n < 2:
        drop("too_few_prompts", usable)
    else:
        drop("not_selected", usable - len(used))
    accounting = {
        "rows_in": len(rows),
        "rows_used": len(used),
        "dropped": dropped,
        "draws": n * pairs_per_prompt if n >= 2 else 0,
        "draws_without_pair": without_pair,
        "draws_repeated": repeated,
        "pairs_out": len(pairs),
    }
    return pairs, accounting


# --------------------------------------------------------------------------------------------
# Pairwise judges (docs/pairwise.md): score_pairwise with a callable judge, and GPM's product
# --------------------------------------------------------------------------------------------


def score_pairwise(
    rows: Sequence[dict],
    judge: Any,
    *,
    prompt: str = "prompt",
    response: str = "response",
    group: str | None = None,
    k: int | None = None,
    both_orders: bool = True,
) -> tuple[list[dict], dict]:
    """Return ``(wide rows, accounting)``; ``judge(prompt, a, b) -> P(a beats b)`` is called
    on one pair at a time (the prompt of row a)."""
    key_column = group if group is not None else prompt
    dropped: dict[str, int] = {}
    groups: dict[bytes, list[int]] = {}
    group_key: dict[bytes, Any] = {}
    for index, row in enumerate(rows):
        if row[response] is None:
            raise ValueError(f"null response at row {index}")
        key = row[key_column]
        if key is None:
            dropped["null_key"] = dropped.get("null_key", 0) + 1
            continue
        canonical = key_bytes(key)
        groups.setdefault(canonical, []).append(index)
        group_key.setdefault(canonical, key)
    out: list[dict] = []
    for canonical, members in groups.items():
        if k is not None and len(members) > k:
            dropped["beyond_k"] = dropped.get("beyond_k", 0) + len(members) - k
            members = members[:k]
        if len(members) < 2:
            dropped["group_too_small"] = dropped.get("group_too_small", 0) + len(members)
            continue
        size = len(members)
        matrix = [[0.5] * size for _ in range(size)]
        for i in range(size):
            for j in range(i + 1, size):
                a, b = rows[members[i]], rows[members[j]]
                p_ab = judge(a[prompt], a[response], b[response])
                if both_orders:
                    p_ba = judge(b[prompt], b[response], a[response])
                    p_ab = (p_ab + 1.0 - p_ba) / 2.0
                matrix[i][j] = p_ab
                matrix[j][i] = 1.0 - p_ab
        out.append({
            "prompt": rows[members[0]][prompt],
            "responses": [rows[m][response] for m in members],
            "rows": list(members),
            "win_prob": matrix,
            "group_id": group_id(group_key[canonical]),
        })
    used = sum(len(r["rows"]) for r in out)
    return out, {"rows_in": len(rows), "rows_used": used, "dropped": dropped}


def gpm_win_prob(v_a: Sequence[float], v_b: Sequence[float], tau: float = 1.0) -> float:
    """GPM (arXiv 2410.02197): sigmoid(<R v_a, v_b> / tau) of L2-normalised embeddings, R
    block-diagonal with blocks [[0, -1], [1, 0]], written out as a matrix product."""
    def unit(v):
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v] if norm > 0 else [0.0 for _ in v]

    a, b = unit(v_a), unit(v_b)
    n = len(a)
    r = [[0.0] * n for _ in range(n)]
    for i in range(0, n, 2):
        r[i][i + 1] = -1.0
        r[i + 1][i] = 1.0
    r_a = [sum(r[row][col] * a[col] for col in range(n)) for row in range(n)]
    x = sum(r_a[i] * b[i] for i in range(n)) / tau
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------------------------
# Images: pk.image_pairs (both layouts), image hashes and their near-duplicate clusters
# (docs/images.md)
# --------------------------------------------------------------------------------------------


def image_pairs_pickapic(
    rows: Sequence[dict],
    *,
    caption: str = "caption",
    images: Sequence[str] = ("jpg_0", "jpg_1"),
    labels: Sequence[str] = ("label_0", "label_1"),
    ties: str = "drop",
    carry: Sequence[str] = (),
) -> tuple[list[dict], dict]:
    """Pick-a-Pic rows -> ``(pairs, dropped)``: the image with the larger label is chosen;
    rows with a null image, a null/NaN label or two equal images are dropped (first reason
    that applies), ties too unless ``ties="soft"`` (then label 0.5, first image chosen)."""
    pairs, dropped = [], {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for index, row in enumerate(rows):
        first, second = row[images[0]], row[images[1]]
        l0, l1 = row[labels[0]], row[labels[1]]
        if first is None or second is None:
            drop("null_image")
            continue
        if l0 is None or l1 is None or math.isnan(l0 - l1):
            drop("null_label")
            continue
        if first == second:
            drop("identical_images")
            continue
        if l0 == l1 and ties == "drop":
            drop("tie")
            continue
        second_wins = l1 > l0
        pair = {
            caption: row[caption],
            "chosen": second if second_wins else first,
            "rejected": first if second_wins else second,
            "label": 0.5 if l0 == l1 else 1.0,
            "score_chosen": float(l1 if second_wins else l0),
            "score_rejected": float(l0 if second_wins else l1),
            "group_id": group_id(row[caption]),
            "row": index,
            "chosen_index": int(second_wins),
        }
        pair.update({name: row[name] for name in carry})
        pairs.append(pair)
    return pairs, dropped


def image_pairs_long(
    rows: Sequence[dict],
    *,
    caption: str = "caption",
    image: str = "image",
    score: str = "score",
    ties: str = "drop",
    **mining: Any,
) -> tuple[list[dict], dict]:
    """The long layout: ``mine_pairs`` over the image column (``ties="soft"`` mines with
    ``ties="keep"``), the prompt named ``caption`` and ``label`` 1.0, or 0.5 for margin 0."""
    pairs, accounting = mine_pairs(
        rows,
        prompt=caption,
        response=image,
        score=score,
        ties="keep" if ties == "soft" else "drop",
        **mining,
    )
    out = []
    for pair in pairs:
        renamed = {}
        for key, value in pair.items():
            renamed[caption if key == "prompt" else key] = value
            if key == "rejected":
                renamed["label"] = 1.0 if pair["margin"] > 0 else 0.5
        out.append(renamed)
    return out, accounting


def hamming_clusters(hashes: Sequence[int | None], threshold: int) -> list[int]:
    """For every row, the smallest row of its cluster: rows whose 64-bit hashes differ in at
    most ``threshold`` bits are joined, transitively; a None hash is alone. Every pair is
    compared."""
    parent = list(range(len(hashes)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a in range(len(hashes)):
        for b in range(a + 1, len(hashes)):
            if hashes[a] is None or hashes[b] is None:
                continue
            if (hashes[a] ^ hashes[b]).bit_count() <= threshold:
                ra, rb = find(a), find(b)
                parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(len(hashes))]


def bits_to_int(bits) -> int:
    """Row-major bits, the first the most significant: ``int(str(imagehash_hash), 16)``."""
    value = 0
    for bit in bits:
        value = (value << 1) | int(bool(bit))
    return value


def dhash(grey_thumbnail_9x8) -> int:
    """dHash of a 9-wide, 8-high grey thumbnail (rows of pixel values)."""
    return bits_to_int(
        row[x + 1] > row[x] for row in grey_thumbnail_9x8 for x in range(8)
    )


def phash(grey_thumbnail_32x32) -> int:
    """pHash of a 32 x 32 grey thumbnail: DCT-II along columns then rows (the sums written
    out), its 8 x 8 lowest frequencies compared with their median."""
    n = 32
    cos = [[math.cos(math.pi * k * (2 * i + 1) / (2 * n)) for i in range(n)] for k in range(8)]
    pixels = grey_thumbnail_32x32
    columns = [[sum(pixels[i][j] * cos[k][i] for i in range(n)) for j in range(n)] for k in range(8)]
    low = [sum(columns[k][j] * cos[m][j] for j in range(n)) for k in range(8) for m in range(8)]
    ordered = sorted(low)
    median = (ordered[31] + ordered[32]) / 2
    return bits_to_int(value > median for value in low)


# --------------------------------------------------------------------------------------------
# Win-probability matrices (docs/winrates.md)
# --------------------------------------------------------------------------------------------


def _beats(p: list[list[float]], a: int, b: int) -> bool:
    """``a`` beats ``b``: P[a][b] > P[b][a] (P[a][b] > 1/2 on an exactly consistent matrix)."""
    return p[a][b] > p[b][a]


def _check_matrix(row: dict, index: int, columns: dict, tolerance: float) -> int:
    """Validate one wide row as docs/winrates.md says; return K. Raises ValueError naming the
    column, the row and, for a cell, (a, b)."""
    texts = row[columns["responses"]]
    if texts is None or any(t is None for t in texts):
        raise ValueError(f"column '{columns['responses']}': a null at row {index}")
    k = len(texts)
    for name in ("rows", "scores"):
        column = columns[name]
        if column is None:
            continue
        values = row[column]
        if values is None or len(values) != k or not all(_is_valid_number(v) for v in values):
            raise ValueError(f"column '{column}': not one value per response at row {index}")
    p = row[columns["win_prob"]]
    if p is None or len(p) != k or any(line is None or len(line) != k for line in p):
        raise ValueError(f"column '{columns['win_prob']}': not K x K at row {index}")
    for a in range(k):
        for b in range(k):
            if a == b:
                continue
            value = p[a][b]
            if value is None or math.isnan(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"win_prob: {value} at row {index}, cell ({a}, {b})")
            reverse = p[b][a]
            checked = a < b and reverse is not None and 0.0 <= reverse <= 1.0
            if checked and abs(value + reverse - 1.0) > tolerance:
                raise ValueError(f"win_prob: inconsistent at row {index}, cell ({a}, {b})")
    return k


def _matrices(matrices: Sequence[dict], columns: dict, tolerance: float):
    """Every wide row validated, as (index, row, K, group id, position of its first response
    in the exploded table); then the accounting shared by the matrix operations."""
    out = []
    position = 0
    seen: dict[int, int] = {}
    for index, row in enumerate(matrices):
        gid = row[columns["group_id"]] if columns["group_id"] else group_id(row[columns["prompt"]])
        if gid is None or gid in seen:
            raise ValueError(f"group_id {gid} at rows {seen.get(gid)} and {index}")
        seen[gid] = index
    for index, row in enumerate(matrices):
        k = _check_matrix(row, index, columns, tolerance)
        gid = row[columns["group_id"]] if columns["group_id"] else group_id(row[columns["prompt"]])
        out.append((index, row, k, gid, position))
        position += k
    small = sum(k for _, _, k, _, _ in out if k < 2)
    accounting = {
        "rows_in": position,
        "rows_used": position - small,
        "dropped": {"group_too_small": small} if small else {},
        "matrices_in": len(out),
        "matrices_used": sum(1 for _, _, k, _, _ in out if k >= 2),
    }
    return out, accounting


def win_rates(
    matrices: Sequence[dict],
    *,
    prompt: str = "prompt",
    responses: str = "responses",
    win_prob: str = "win_prob",
    rows: str | None = "rows",
    group_id: str | None = "group_id",
    scores: str | None = None,
    tolerance: float = 1e-6,
) -> tuple[list[dict], dict]:
    """Return ``(long rows, accounting)``: one row per response of every matrix with K >= 2."""
    columns = {"prompt": prompt, "responses": responses, "win_prob": win_prob, "rows": rows,
               "group_id": group_id, "scores": scores}
    checked, accounting = _matrices(matrices, columns, tolerance)
    out: list[dict] = []
    for _, row, k, gid, position in checked:
        if k < 2:
            continue
        p = row[win_prob]
        borda = [sum(p[a][b] for b in range(k) if b != a) for a in range(k)]
        rate = [borda[a] / (k - 1) for a in range(k)]
        order = sorted(range(k), key=lambda a: -rate[a])  # stable: list order among ties
        rank = {a: place + 1 for place, a in enumerate(order)}
        for a in range(k):
            record = {
                "prompt": row[prompt],
                "response": row[responses][a],
                "row": row[rows][a] if rows else position + a,
                "win_rate": rate[a],
                "borda": borda[a],
                "copeland": sum(_beats(p, a, b) - _beats(p, b, a) for b in range(k) if b != a),
                "rank": rank[a],
                "group_id": gid,
            }
            if scores:
                record["score"] = float(row[scores][a])
            out.append(record)
    return out, {**accounting, "responses_out": len(out)}


def win_rate_pairs(matrices: Sequence[dict], *, strategy: str = "best_vs_worst", **options):
    """``mine_pairs`` over the win rates, rows and group ids mapped back to the matrices'."""
    matrix_options = {k: options.pop(k) for k in list(options) if k in _MATRIX_OPTIONS}
    long, _ = win_rates(matrices, **matrix_options)
    pairs, _ = mine_pairs(long, score="win_rate", group="group_id", strategy=strategy, **options)
    return [
        {
            **pair,
            "group_id": long[pair["chosen_row"]]["group_id"],
            "chosen_row": long[pair["chosen_row"]]["row"],
            "rejected_row": long[pair["rejected_row"]]["row"],
        }
        for pair in pairs
    ]


_MATRIX_OPTIONS = {"prompt", "responses", "win_prob", "rows", "group_id", "scores", "tolerance"}


def intransitivity(
    matrices: Sequence[dict],
    *,
    prompt: str = "prompt",
    responses: str = "responses",
    win_prob: str = "win_prob",
    group_id: str | None = "group_id",
    scores: str | None = None,
    tolerance: float = 1e-6,
) -> tuple[list[dict], dict]:
    """Per matrix with K >= 2: 3-cycles over every triad, and with ``scores`` the votes of the
    unordered pairs (agree, disagree, tie: either side indifferent)."""
    columns = {"prompt": prompt, "responses": responses, "win_prob": win_prob, "rows": None,
               "group_id": group_id, "scores": scores}
    checked, accounting = _matrices(matrices, columns, tolerance)
    out: list[dict] = []
    for _, row, k, gid, _ in checked:
        if k < 2:
            continue
        p = row[win_prob]
        cycles = 0
        for a in range(k):
            for b in range(a + 1, k):
                for c in range(b + 1, k):
                    forward = _beats(p, a, b) and _beats(p, b, c) and _beats(p, c, a)
                    backward = _beats(p, a, c) and _beats(p, c, b) and _beats(p, b, a)
                    cycles += forward or backward
        record = {
            "prompt": row[prompt],
            "group_id": gid,
            "responses_count": k,
            "cycles": cycles,
            "triads": math.comb(k, 3),
        }
        if scores:
            s = row[scores]
            agreed = disagreed = tied = 0
            for a in range(k):
                for b in range(a + 1, k):
                    judge = (p[a][b] > p[b][a]) - (p[a][b] < p[b][a])
                    score = (s[a] > s[b]) - (s[a] < s[b])
                    if judge == 0 or score == 0:
                        tied += 1
                    elif judge == score:
                        agreed += 1
                    else:
                        disagreed += 1
            untied = agreed + disagreed
            record.update(
                agreement=agreed / untied if untied else None,
                agreed_pairs=agreed,
                disagreed_pairs=disagreed,
                tied_pairs=tied,
            )
        out.append(record)
    return out, {**accounting, "matrices_out": len(out)}
