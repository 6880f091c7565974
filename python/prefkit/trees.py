"""Preference trees: tries of step-split solutions, and step-level pairs and lists of siblings.

``build_trees`` merges sampled solutions (lists of steps with a final reward) that share a
step prefix into one node; ``tree_pairs`` and ``tree_lists`` rank the children of each node by
value (MCTS-DPO, TPO). Both also take node tables made elsewhere (MCTS output), validated first.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from prefkit import _core, stream
from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, plain_unless_views, without_views
from prefkit.lists import _check_list_sizes
from prefkit.pairs import STRATEGIES, _check_int, _check_number


def build_trees(
    paths: Any,
    *,
    prompt: str = "prompt",
    steps: str = "steps",
    reward: str = "reward",
    group: str | None = None,
    views: bool = False,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    contiguous: bool | None = None,
) -> pa.Table:
    """Build one trie per prompt from sampled solutions split into steps.

    Paths of one prompt (or ``group``) that share their first ``d`` steps share the node at
    depth ``d``. The root (depth 0, ``step`` null) stands for the prompt itself. The exact rules
    (node ids, order, row accounting) are in ``docs/trees.md``.

    Parameters
    ----------
    paths
        One row per sampled solution: a prompt, its ``steps`` (``list<string>``, any Arrow
        string type) and a numeric ``reward``.
    prompt, steps, reward
        Column names.
    group
        Column to group paths into trees instead of the prompt.
    views
        ``True``: text columns are string_view arrays pointing into the input's buffers (no
        text copied); default: plain ``large_string`` (``docs/outputs.md``).
    out, memory_limit, contiguous
        Out-of-core execution (``docs/stream.md``): with a path, glob, folder,
        ``pyarrow.dataset.Dataset`` or one of these, the input is streamed; ``out`` is a new
        folder the result is written to as Parquet (a ``pyarrow.dataset.Dataset`` is returned),
        ``memory_limit`` (``"2GB"``) bounds each in-memory step (spilling to a temporary folder
        when groups are not contiguous), ``contiguous=True`` promises groups never reappear.

    Returns
    -------
    pyarrow.Table
        The node table: ``tree_id`` (uint64, xxh3 of the key as ``group_id`` in ``mine_pairs``),
        ``node_id`` (uint64, stable hash of the path), ``parent_id`` (null at the root),
        ``depth`` (int32), ``step``, ``value`` (mean reward of the paths through the node),
        ``visits`` (int64, number of such paths), ``is_leaf``, ``prompt``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> paths = pa.table({
    ...     "prompt": ["2+3*4?"] * 3,
    ...     "steps": [["3*4=12", "2+12=14"], ["3*4=12", "2+12=15"], ["2+3=5", "5*4=20"]],
    ...     "reward": [1.0, 0.0, 0.0],
    ... })
    >>> nodes = pk.build_trees(paths)
    >>> nodes.select(["depth", "step", "value", "visits", "is_leaf"]).to_pylist()[:3]
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'depth': 0, 'step': None, 'value': 0.3333333333333333, 'visits': 3, 'is_leaf': False},
     {'depth': 1, 'step': '3*4=12', 'value': 0.5, 'visits': 2, 'is_leaf': False},
     {'depth': 2, 'step': '2+12=14', 'value': 1.0, 'visits': 1, 'is_leaf': True}]
    """
    parameters = {
        "prompt": prompt, "steps": steps, "reward": reward, "group": group, "views": views
    }
    if stream.is_streaming(paths, out, memory_limit):
        return stream.run(
            build_trees, "build_trees", paths, parameters, key=group or prompt, out=out,
            memory_limit=memory_limit, contiguous=contiguous,
        )
    table = as_table(paths, argument="paths")
    result, accounting = _core.build_trees(table, **without_views(parameters))
    result = plain_unless_views(as_table(result), views)
    return attach(result, "build_trees", parameters, accounting, source=table)


def _node_columns(
    table: pa.Table,
    tree: str,
    node: str,
    parent: str,
    step: str,
    value: str,
    visits: str | None,
    prompt: str | None,
) -> tuple:
    names = table.column_names
    return (
        tree,
        node,
        parent,
        step,
        value,
        visits if visits is not None and visits in names else None,
        prompt if prompt is not None and prompt in names else None,
    )


def _check_min_visits(min_visits: float) -> float:
    _check_number("min_visits", min_visits)
    return float(min_visits)


def tree_pairs(
    nodes: Any,
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
    views: bool = False,
) -> pa.Table:
    """Step-level chosen/rejected pairs between sibling nodes (MCTS-DPO).

    At every node, its children are ranked by ``value`` (stable: the earlier row wins a tie)
    and paired by ``strategy``, exactly as ``mine_pairs`` pairs the responses of a prompt. The
    node table is validated first. The exact rules are in ``docs/trees.md``.

    Parameters
    ----------
    nodes
        A node table: the result of ``pk.build_trees``, or MCTS output with at least the tree,
        node, parent, step and value columns (ids: integers or text).
    strategy, min_margin, k, ties, seed
        As in ``pk.mine_pairs``.
    min_visits
        Children visited fewer times are not ranked (needs a visits column when above 1).
    max_pairs_per_node
        Keep at most this many pairs per parent node, those with the largest margins.
    tree, node, parent, step, value
        Column names of the node table.
    visits, prompt
        Optional columns: used when the table has them, ignored otherwise (or pass None).
    views
        ``True``: text columns are string_view arrays pointing into the input's buffers (no
        text copied); default: plain ``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        ``prompt, prefix (list<string>: the steps from the root down to the parent), chosen,
        rejected (the sibling steps), score_chosen, score_rejected, margin, depth (of the
        siblings), tree_id, chosen_node, rejected_node``, with the accounting of every node.

    Raises
    ------
    PrefkitError
        A node table that is not a forest (duplicate node ids in a tree, an orphan whose parent
        is missing, several roots in a tree, a cycle): the message names the node and its row.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> paths = pa.table({
    ...     "prompt": ["2+3*4?"] * 3,
    ...     "steps": [["3*4=12", "2+12=14"], ["3*4=12", "2+12=15"], ["2+3=5", "5*4=20"]],
    ...     "reward": [1.0, 0.0, 0.0],
    ... })
    >>> pairs = pk.tree_pairs(pk.build_trees(paths))
    >>> pairs.select(["prefix", "chosen", "rejected", "margin"]).to_pylist()
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'prefix': [], 'chosen': '3*4=12', 'rejected': '2+3=5', 'margin': 0.5},
     {'prefix': ['3*4=12'], 'chosen': '2+12=14', 'rejected': '2+12=15', 'margin': 1.0}]
    """
    table = as_table(nodes, argument="nodes")
    if strategy not in STRATEGIES:
        raise PrefkitError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    _check_number("min_margin", min_margin)
    _check_int("k", k, 1)
    _check_int("seed", seed, 0, 2**64 - 1)
    if max_pairs_per_node is not None:
        _check_int("max_pairs_per_node", max_pairs_per_node, 1)
    columns = _node_columns(table, tree, node, parent, step, value, visits, prompt)
    result, accounting = _core.tree_pairs(
        table,
        columns=columns,
        strategy=strategy,
        k=k,
        min_margin=min_margin,
        ties=ties,
        max_pairs_per_node=max_pairs_per_node,
        min_visits=_check_min_visits(min_visits),
        seed=seed,
    )
    parameters = {
        "strategy": strategy,
        "min_margin": min_margin,
        "min_visits": min_visits,
        "k": k,
        "ties": ties,
        "max_pairs_per_node": max_pairs_per_node,
        "seed": seed,
        "columns": list(columns),
        "views": views,
    }
    result = plain_unless_views(as_table(result), views)
    return attach(result, "tree_pairs", parameters, accounting, source=table)


def tree_lists(
    nodes: Any,
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
    views: bool = False,
) -> pa.Table:
    """Ranked lists of sibling steps at every branching node (TPO-style listwise data).

    The children of each node are ranked by ``value`` and cut by the rules of
    ``pk.rank_lists`` (``ties``, ``list_size``, ``min_list_size``). The node table is validated
    first, as in ``tree_pairs``. The exact rules are in ``docs/trees.md``. Text is plain
    ``large_string`` unless ``views=True`` (string_view prompts and prefixes; ``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        One row per parent node with a list: ``prompt, prefix (list<string>), responses
        (list<string>: the sibling steps, best first), scores (list<float64>), rows
        (list<int64>: node-table rows), depth (of the siblings), tree_id``.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> paths = pa.table({
    ...     "prompt": ["q"] * 4,
    ...     "steps": [["a", "x"], ["b"], ["c"], ["a", "y"]],
    ...     "reward": [1.0, 0.0, 0.5, 0.0],
    ... })
    >>> lists = pk.tree_lists(pk.build_trees(paths))
    >>> lists.select(["prefix", "responses", "scores"]).to_pylist()
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'prefix': [], 'responses': ['a', 'c', 'b'], 'scores': [0.5, 0.5, 0.0]},
     {'prefix': ['a'], 'responses': ['x', 'y'], 'scores': [1.0, 0.0]}]
    """
    table = as_table(nodes, argument="nodes")
    _check_list_sizes(list_size, min_list_size, ties)
    columns = _node_columns(table, tree, node, parent, step, value, visits, prompt)
    result, accounting = _core.tree_lists(
        table,
        columns=columns,
        list_size=list_size,
        min_list_size=min_list_size,
        ties=ties,
        min_visits=_check_min_visits(min_visits),
    )
    parameters = {
        "list_size": list_size,
        "min_list_size": min_list_size,
        "ties": ties,
        "min_visits": min_visits,
        "columns": list(columns),
    }
    parameters["views"] = views
    result = plain_unless_views(as_table(result), views)
    return attach(result, "tree_lists", parameters, accounting, source=table)
