"""CLI verbs ``curriculum``, ``lists`` and ``trees``: files in, files out, accounting printed."""

from __future__ import annotations

import json

import prefkit as pk
import pyarrow as pa
import pyarrow.parquet as pq
from prefkit.cli import main


def test_lists_verb(tmp_path, capsys):
    source = tmp_path / "rated.jsonl"
    rows = [{"prompt": "p", "response": r, "score": s} for r, s in [("a", 1), ("b", 3), ("c", 2)]]
    source.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "lists.parquet"
    assert main(["lists", str(source), "-o", str(out), "-q", "--list-size", "2"]) == 0
    table = pq.read_table(out)
    assert table.column("responses").to_pylist() == [["b", "c"]]
    assert pk.report_of(table)["op"] == "rank_lists"
    assert "dropped (beyond_list_size): 1" in capsys.readouterr().out


def test_curriculum_verb(tmp_path, capsys):
    source = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"prompt": ["p", "p", "q"], "margin": [1.0, 3.0, 2.0]}), source)
    out = tmp_path / "curriculum.jsonl"
    code = main(["curriculum", str(source), "-o", str(out), "-q", "--stages", "3", "--no-shuffle"])
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["margin"] for r in lines] == [3.0, 2.0, 1.0]
    assert [r["stage"] for r in lines] == [0, 1, 2]
    assert "stage_sizes: [1, 1, 1]" in capsys.readouterr().out


def test_trees_verb_nodes_pairs_lists(tmp_path, capsys):
    source = tmp_path / "paths.parquet"
    pq.write_table(
        pa.table({"prompt": ["q"] * 3, "steps": [["a", "x"], ["a", "y"], ["b"]],
                  "reward": [1.0, 0.0, 0.25]}),
        source,
    )
    nodes = tmp_path / "nodes.parquet"
    assert main(["trees", str(source), "-o", str(nodes), "-q"]) == 0
    assert pq.read_table(nodes).num_rows == 5
    pairs = tmp_path / "pairs.parquet"
    assert main(["trees", str(source), "-o", str(pairs), "-q", "--emit", "pairs"]) == 0
    assert pq.read_table(pairs).column("chosen").to_pylist() == ["a", "x"]
    again = tmp_path / "again.parquet"
    assert main(["trees", str(nodes), "--nodes", "-o", str(again), "-q", "--emit", "lists"]) == 0
    assert pq.read_table(again).column("responses").to_pylist() == [["a", "b"], ["x", "y"]]
    capsys.readouterr()


def test_trees_verb_reports_bad_node_tables(tmp_path, capsys):
    source = tmp_path / "nodes.parquet"
    pq.write_table(
        pa.table({"tree_id": [0, 0], "node_id": [1, 2], "parent_id": [None, 7],
                  "step": ["r", "s"], "value": [0.0, 1.0]}),
        source,
    )
    code = main(["trees", str(source), "--nodes", "-o", str(tmp_path / "x.parquet"), "-q",
                 "--emit", "pairs"])
    assert code == 2
    assert "orphan: node 2 (row 1)" in capsys.readouterr().err
