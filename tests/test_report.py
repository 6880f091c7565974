"""``pk.report`` on pairs, lists, trees and curriculum stages; ``prefkit report`` writes files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from prefkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ultrafeedback_mini.jsonl"
PNG = b"\x89PNG\r\n\x1a\n"


def mined(strategy: str = "all_pairs") -> pa.Table:
    long = pk.unnest(pk.read_table(EXAMPLE), completions="completions")
    return pk.mine_pairs(long, strategy=strategy)


def test_pairs_report_matches_direct_computation():
    pairs = mined()
    r = pk.report(pairs)
    rows = pairs.to_pylist()
    assert r["kind"] == "pairs" and r["rows"] == len(rows)
    per_prompt: dict = {}
    for row in rows:
        per_prompt[row["group_id"]] = per_prompt.get(row["group_id"], 0) + 1
    assert r["prompts"] == len(per_prompt) == 12
    assert sum(n * k for n, k in r["pairs_per_prompt"]["histogram"].items()) == len(rows)
    margins = [row["margin"] for row in rows]
    assert r["margin"]["count"] == len(rows)
    assert r["margin"]["mean"] == pytest.approx(np.mean(margins))
    assert r["margin"]["max"] == max(margins)
    assert r["zero_margin"] == 0
    expected = ref.length_stats(rows)
    for key, value in expected.items():
        assert ref.same_value(r["length"][key], value, rel=1e-9), key
    assert r["stages"] is None and r["strength"] is None
    assert r["accounting"]["op"] == "mine_pairs"
    assert r["accounting"]["source"]["op"] == "unnest"


def test_curriculum_stages_are_reported():
    # The shape order_curriculum produces: the same pairs plus an int32 `stage`.
    pairs = mined()
    stage = pa.array(np.arange(pairs.num_rows) % 3, pa.int32())
    staged = pairs.append_column("stage", stage)
    stages = pk.report(staged)["stages"]
    assert list(stages) == [0, 1, 2]
    assert sum(s["rows"] for s in stages.values()) == pairs.num_rows
    margins = np.array(pairs.column("margin").to_pylist())
    assert stages[1]["mean_margin"] == pytest.approx(margins[1::3].mean())


def test_strength_columns_are_summarised():
    pairs = pa.table({"chosen": ["a", "b"], "rejected": ["c", "d"], "margin": [1.0, 2.0],
                      "c1": [1.0, 0.0], "r1": [0.0, 1.0]})
    strong = pk.preference_strength(pairs, chosen_scores=["c1"], rejected_scores=["r1"])
    r = pk.report(strong)
    assert r["strength"]["disagreeing"] == 1
    assert r["strength"]["agreement"]["mean"] == 0.5
    assert r["prompts"] is None  # no group_id, tree_id or prompt column


def lists_table() -> pa.Table:
    # The shape rank_lists produces (docs/DESIGN: prompt, responses, scores, rows, group_id).
    return pa.table({
        "prompt": ["p", "q", "r"],
        "responses": [["a", "b", "c"], ["d", "e"], ["f", "g", "h", "i"]],
        "scores": [[3.0, 2.0, 2.0], [1.0, -1.0], [4.0, 3.0, 1.0, 0.5]],
        "rows": [[0, 1, 2], [3, 4], [5, 6, 7, 8]],
        "group_id": pa.array([11, 12, 13], pa.uint64()),
    })


def test_lists_report():
    r = pk.report(lists_table())
    assert r["kind"] == "lists"
    assert (r["lists"], r["prompts"], r["responses"]) == (3, 3, 9)
    assert r["list_size"]["histogram"] == {2: 1, 3: 1, 4: 1}
    assert r["score_spread"]["max"] == 3.5 and r["score_spread"]["min"] == 1.0
    assert r["lists_with_ties"] == 1


def trees_table() -> pa.Table:
    # The shape build_trees produces: two trees; tree 1 branches at the root and at node 1.
    return pa.table({
        "tree_id": pa.array([1, 1, 1, 1, 1, 2], pa.uint64()),
        "node_id": pa.array([0, 1, 2, 3, 4, 0], pa.int64()),
        "parent_id": pa.array([None, 0, 0, 1, 1, None], pa.int64()),
        "depth": pa.array([0, 1, 1, 2, 2, 0], pa.int32()),
        "step": ["", "s1", "s2", "s3", "s4", ""],
        "value": [0.5, 0.75, 0.0, 1.0, 0.5, 1.0],
        "visits": pa.array([4, 2, 2, 1, 1, 1], pa.int64()),
        "is_leaf": [False, False, True, True, True, True],
        "prompt": ["p", "p", "p", "p", "p", "q"],
    })


def test_trees_report():
    r = pk.report(trees_table())
    assert r["kind"] == "trees"
    assert (r["trees"], r["nodes"], r["roots"], r["leaves"]) == (2, 6, 2, 4)
    assert (r["internal_nodes"], r["branching_nodes"]) == (2, 2)
    assert r["branching"]["histogram"] == {2: 2}
    assert r["max_depth"] == 2 and r["nodes_per_depth"] == {0: 2, 1: 2, 2: 2}
    assert r["value"]["max"] == 1.0


def test_unknown_table_is_an_error():
    with pytest.raises(pk.PrefkitError, match="'chosen' and 'rejected'.*columns \\['x'\\]"):
        pk.report(pa.table({"x": [1]}))


def test_empty_pairs_report():
    r = pk.report(mined().slice(0, 0))
    assert r["rows"] == 0 and r["margin"] is None and r["length"]["chosen_longer"] is None


def check_pngs(out: Path, names: list[str]) -> str:
    text = (out / "report.md").read_text()
    for name in names:
        data = (out / name).read_bytes()
        assert data.startswith(PNG), name
        assert f"]({name})" in text, name
    return text


def test_cli_report_on_the_example_corpus(tmp_path, capsys):
    pairs_path = tmp_path / "pairs.parquet"
    assert main(["pairs", str(EXAMPLE), "--completions", "completions", "-o", str(pairs_path),
                 "--strategy", "all_pairs", "-q"]) == 0
    out = tmp_path / "report"
    assert main(["report", str(pairs_path), "--out", str(out), "-q"]) == 0
    text = check_pngs(out, ["margin_hist.png", "length_scatter.png", "pairs_per_prompt.png"])
    assert "## Row accounting" in text and "`mine_pairs`" in text and "`unnest`" in text
    assert "report.md" in capsys.readouterr().out


def test_write_report_for_stages_lists_and_trees(tmp_path):
    from prefkit.report import write_report

    pairs = mined()
    staged = pairs.append_column("stage", pa.array(np.arange(pairs.num_rows) % 4, pa.int32()))
    write_report(staged, tmp_path / "stages")
    check_pngs(tmp_path / "stages", ["stage_sizes.png"])
    write_report(lists_table(), tmp_path / "lists")
    check_pngs(tmp_path / "lists", ["list_sizes.png", "score_spread.png"])
    write_report(trees_table(), tmp_path / "trees")
    check_pngs(tmp_path / "trees", ["nodes_per_depth.png", "branching.png"])


def test_cli_split_prompt_and_strength(tmp_path, capsys):
    import json

    src = tmp_path / "hh.jsonl"
    rows = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello!", "rejected": "\n\nHuman: hi\n\nAssistant: go",
         "a_c": 1.0, "a_r": 0.0, "b_c": 0.0, "b_r": 2.0},
        {"chosen": "same", "rejected": "same", "a_c": 1.0, "a_r": 0.0, "b_c": 1.0, "b_r": 0.0},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    split = tmp_path / "split.parquet"
    assert main(["split-prompt", str(src), "-o", str(split), "--boundary", "\\n\\nAssistant:",
                 "-q"]) == 0
    table = pk.read_table(split)
    assert table.column("prompt").to_pylist() == ["\n\nHuman: hi\n\nAssistant:"]
    assert "dropped (identical): 1" in capsys.readouterr().out
    strong = tmp_path / "strong.jsonl"
    assert main(["strength", str(split), "-o", str(strong), "--chosen-scores", "a_c", "b_c",
                 "--rejected-scores", "a_r", "b_r", "--flip-disagreeing", "-q"]) == 0
    row = pk.read_table(strong).to_pylist()[0]
    assert (row["chosen"], row["rejected"], row["strength_mean"]) == (" go", " hello!", 0.5)
    assert "flipped: 1" in capsys.readouterr().out


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from prefkit.report import write_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(pk.PrefkitError, match="pip install matplotlib"):
        write_report(mined(), tmp_path)
