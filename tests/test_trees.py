"""Preference trees: ``pk.build_trees``, ``pk.tree_pairs``, ``pk.tree_lists`` against
``tests/reference.py``, and validation of node tables made elsewhere."""

from __future__ import annotations

import math

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import given, note
from hypothesis import strategies as st

STEP = st.sampled_from(["a", "b", "é", "中文", "\U0001f600", "", "x y", "a"])
REWARD = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5]), st.sampled_from([None, math.nan]),
    st.floats(-2, 2, allow_nan=False),
)
NODE_COLUMNS = ["tree_id", "node_id", "parent_id", "depth", "step", "value", "visits",
                "is_leaf", "prompt"]


@st.composite
def path_tables(draw):
    """Paths of a few prompts: shared prefixes (small step alphabet), deep (up to 9 steps) or
    wide, empty and null step lists, null steps, null/NaN rewards, unicode steps."""
    n = draw(st.integers(0, 20))
    prompts = draw(st.lists(st.sampled_from(["p", "q", "中", "r"]), min_size=1, max_size=3))
    depth = draw(st.sampled_from([1, 3, 9]))
    rows = []
    for _ in range(n):
        steps = draw(st.one_of(st.lists(STEP, max_size=depth), st.none()))
        if steps and draw(st.integers(0, 19)) == 0:
            steps[draw(st.integers(0, len(steps) - 1))] = None
        rows.append(
            {
                "prompt": draw(st.one_of(st.sampled_from(prompts), st.none())),
                "steps": steps,
                "reward": draw(REWARD),
            }
        )
    schema = pa.schema(
        [("prompt", pa.string()), ("steps", pa.list_(pa.string())), ("reward", pa.float64())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def check_build(table: pa.Table, rows: list[dict]) -> pa.Table:
    note(f"rows={rows}")
    expected, accounting = ref.build_trees(rows)
    result = pk.build_trees(table)
    assert result.column_names == NODE_COLUMNS
    for name, dtype in [("tree_id", pa.uint64()), ("node_id", pa.uint64()),
                        ("parent_id", pa.uint64()), ("depth", pa.int32()),
                        ("value", pa.float64()), ("visits", pa.int64()),
                        ("is_leaf", pa.bool_())]:
        assert result.schema.field(name).type == dtype, name
    ref.assert_rows_equal(result.to_pylist(), expected)
    report = pk.report_of(result)
    got = {k: report.get(k) for k in accounting}
    got["dropped"] = {r: c for r, c in report["dropped"].items() if c}
    assert got == accounting
    return result


@given(table=path_tables())
def test_build_trees_equals_reference(table):
    check_build(table, table.to_pylist())


@given(table=path_tables())
def test_build_trees_chunked_sliced_view_input(table):
    rows = table.to_pylist()
    padding = table.slice(0, min(2, table.num_rows))
    sliced = pa.concat_tables([padding, table, padding]).slice(padding.num_rows, table.num_rows)
    chunked = pa.Table.from_batches(sliced.to_batches(max_chunksize=3), schema=sliced.schema)
    check_build(chunked, rows)
    for steps_type in (pa.list_(pa.string_view()), pa.large_list(pa.large_string())):
        schema = pa.schema([("prompt", pa.string_view()), ("steps", steps_type),
                            ("reward", pa.float64())])
        check_build(table.cast(schema), rows)


PAIR_PARAMETERS = st.fixed_dictionaries(
    {
        "strategy": st.sampled_from(ref.STRATEGIES),
        "k": st.integers(1, 2),
        "min_margin": st.sampled_from([0.0, 0.0, 0.25]),
        "ties": st.sampled_from(["drop", "keep"]),
        "max_pairs_per_node": st.sampled_from([None, None, 1, 2]),
        "min_visits": st.sampled_from([1, 1, 2]),
        "seed": st.integers(0, 2**64 - 1),
    }
)

LIST_PARAMETERS = st.fixed_dictionaries(
    {
        "list_size": st.sampled_from([None, 2, 3]),
        "min_list_size": st.sampled_from([1, 2]),
        "ties": st.sampled_from(["drop", "keep"]),
        "min_visits": st.sampled_from([1, 2]),
    }
)


def check_accounting(result: pa.Table, accounting: dict) -> None:
    report = pk.report_of(result)
    got = {k: report.get(k) for k in accounting}
    got["dropped"] = {r: c for r, c in report["dropped"].items() if c}
    assert got == accounting
    assert report["rows_used"] + sum(report["dropped"].values()) == report["rows_in"]


@given(table=path_tables(), parameters=PAIR_PARAMETERS)
def test_tree_pairs_equals_reference(table, parameters):
    nodes = pk.build_trees(table)
    rows = nodes.to_pylist()
    note(f"nodes={rows} parameters={parameters}")
    expected, accounting = ref.tree_pairs(rows, **parameters)
    result = pk.tree_pairs(nodes, **parameters)
    assert result.schema.field("prefix").type == pa.list_(pa.large_string())
    ref.assert_rows_equal(result.to_pylist(), expected)
    check_accounting(result, accounting)


@given(table=path_tables(), parameters=LIST_PARAMETERS)
def test_tree_lists_equals_reference(table, parameters):
    parameters = {**parameters, "list_size": None if parameters["list_size"] is None
                  else max(parameters["list_size"], parameters["min_list_size"])}
    nodes = pk.build_trees(table)
    rows = nodes.to_pylist()
    note(f"nodes={rows} parameters={parameters}")
    expected, accounting = ref.tree_lists(rows, **parameters)
    result = pk.tree_lists(nodes, **parameters)
    ref.assert_rows_equal(result.to_pylist(), expected)
    check_accounting(result, accounting)


@st.composite
def mcts_tables(draw):
    """External node tables: shuffled rows, text or integer ids, no visits or prompt column,
    NaN values, null steps; always a valid forest."""
    trees = draw(st.integers(1, 3))
    text_ids = draw(st.booleans())
    rows = []
    for t in range(trees):
        size = draw(st.integers(1, 12))
        for i in range(size):
            parent = None if i == 0 else draw(st.integers(0, i - 1))
            rows.append(
                {
                    "tree_id": f"t{t}" if text_ids else t,
                    "node_id": f"n{i}" if text_ids else i * 7 + 1,
                    "parent_id": None if parent is None else (
                        f"n{parent}" if text_ids else parent * 7 + 1),
                    "step": draw(st.one_of(STEP, st.none())),
                    "value": draw(REWARD),
                }
            )
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in order]
    id_type = pa.string() if text_ids else pa.int64()
    schema = pa.schema([("tree_id", id_type), ("node_id", id_type), ("parent_id", id_type),
                        ("step", pa.string()), ("value", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


@given(table=mcts_tables(), parameters=PAIR_PARAMETERS)
def test_external_node_tables_equal_reference(table, parameters):
    parameters = {**parameters, "min_visits": 1}
    rows = table.to_pylist()
    note(f"nodes={rows} parameters={parameters}")
    expected, accounting = ref.tree_pairs(rows, **parameters, visits=None, prompt=None)
    result = pk.tree_pairs(table, **parameters)
    ref.assert_rows_equal(result.to_pylist(), expected)
    check_accounting(result, accounting)
    expected, accounting = ref.tree_lists(rows, visits=None, prompt=None)
    result = pk.tree_lists(table)
    ref.assert_rows_equal(result.to_pylist(), expected)
    check_accounting(result, accounting)


def test_single_node_tree_and_empty_paths():
    paths = pa.table({"prompt": ["p", "p"], "steps": [[], []], "reward": [1.0, 0.0]},
                     schema=pa.schema([("prompt", pa.string()),
                                       ("steps", pa.list_(pa.string())),
                                       ("reward", pa.float64())]))
    nodes = pk.build_trees(paths)
    assert nodes.num_rows == 1
    assert nodes.column("is_leaf").to_pylist() == [True]
    assert nodes.column("value").to_pylist() == [0.5]
    assert nodes.column("parent_id").to_pylist() == [None]
    assert pk.tree_pairs(nodes).num_rows == 0
    assert pk.report_of(pk.tree_pairs(nodes))["dropped"] == {"root": 1}


def test_deep_and_wide_trees():
    deep = pa.table({"prompt": ["p"], "steps": [[f"s{i}" for i in range(500)]], "reward": [1.0]})
    nodes = pk.build_trees(deep)
    assert nodes.num_rows == 501
    assert max(nodes.column("depth").to_pylist()) == 500
    wide = pa.table({"prompt": ["p"] * 300, "steps": [[f"s{i}"] for i in range(300)],
                     "reward": [float(i) for i in range(300)]})
    pairs = pk.tree_pairs(pk.build_trees(wide), strategy="all_pairs")
    assert pairs.num_rows == 300 * 299 // 2


def test_node_ids_are_stable_hashes_of_the_path():
    import xxhash

    nodes = pk.build_trees(pa.table({"prompt": ["p"], "steps": [["a", "b"]], "reward": [1.0]}))
    tree_id = xxhash.xxh3_64_intdigest(b"p")
    root = xxhash.xxh3_64_intdigest(b"", seed=tree_id)
    a = xxhash.xxh3_64_intdigest(b"a", seed=root)
    b = xxhash.xxh3_64_intdigest(b"b", seed=a)
    assert nodes.column("node_id").to_pylist() == [root, a, b]
    assert nodes.column("tree_id").to_pylist() == [tree_id] * 3


def nodes_table(rows):
    return pa.Table.from_pylist(
        [dict(zip(["tree_id", "node_id", "parent_id", "step", "value"], r)) for r in rows],
        schema=pa.schema([("tree_id", pa.int64()), ("node_id", pa.int64()),
                          ("parent_id", pa.int64()), ("step", pa.string()),
                          ("value", pa.float64())]),
    )


@pytest.mark.parametrize(
    "rows, pattern",
    [
        ([(0, 1, None, "r", 0.0), (0, 2, 1, "a", 1.0), (0, 2, 1, "b", 0.0)],
         r"duplicate node id: node 2 \(row 2\)"),
        ([(0, 1, None, "r", 0.0), (0, 2, 9, "a", 1.0)],
         r"orphan: node 2 \(row 1\) has parent_id 9"),
        ([(0, 1, None, "r", 0.0), (0, 2, None, "a", 1.0)],
         r"several roots in tree_id 0: node 1 \(row 0\) and node 2 \(row 1\)"),
        ([(0, 1, None, "r", 0.0), (0, 2, 3, "a", 1.0), (0, 3, 2, "b", 0.0)],
         r"cycle: node 2 \(row 1\)"),
        ([(0, 5, 5, "a", 1.0)], r"cycle: node 5 \(row 0\)"),
        ([(0, None, None, "a", 1.0)], r"'node_id' is null at row 0"),
        # The same node id in two trees is fine; a parent in another tree is an orphan.
        ([(0, 1, None, "r", 0.0), (1, 1, None, "r", 0.0), (1, 2, 3, "x", 0.0),
          (0, 3, 1, "y", 0.0)], r"orphan: node 2 \(row 2\)"),
    ],
)
def test_bad_node_tables_are_errors_naming_the_node(rows, pattern):
    table = nodes_table(rows)
    with pytest.raises(pk.PrefkitError, match=pattern):
        pk.tree_pairs(table)
    with pytest.raises(pk.PrefkitError, match=pattern):
        pk.tree_lists(table)
    kind = {"duplicate": "duplicate", "orphan": "orphan", "several": "roots",
            "cycle": "cycle", "'node_id'": "null"}[pattern.split(":")[0].split(" ")[0]]
    with pytest.raises(ref.InvalidTree) as info:
        ref.validate_nodes(table.to_pylist())
    assert info.value.kind == kind


def test_text_ids_are_quoted_in_errors():
    table = pa.table({"tree_id": ["t"], "node_id": ["a"], "parent_id": ["b"], "step": ["s"],
                      "value": [1.0]})
    with pytest.raises(pk.PrefkitError, match=r"orphan: node 'a' \(row 0\) has parent_id 'b'"):
        pk.tree_pairs(table)


def test_bad_arguments():
    nodes = nodes_table([(0, 1, None, "r", 0.0)])
    with pytest.raises(pk.PrefkitError, match="min_visits"):
        pk.tree_pairs(nodes, min_visits=2)
    with pytest.raises(pk.PrefkitError, match="strategy"):
        pk.tree_pairs(nodes, strategy="best")
    with pytest.raises(pk.PrefkitError, match="list of text"):
        pk.build_trees(pa.table({"prompt": ["p"], "steps": ["a"], "reward": [1.0]}))
