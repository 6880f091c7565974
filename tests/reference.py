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
        return b"\x02" + struct.pack("<q", value)
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
        # The first row in input order with a null or NaN score, whatever else it holds.
        for index, row in enumerate(rows):
            for name in scores:
                if not _is_valid_number(row[name]):
                    raise ValueError(f"column '{name}' has a null or NaN score at row {index}")

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
