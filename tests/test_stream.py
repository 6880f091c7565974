"""Out-of-core execution (prefkit.stream): streaming results equal the in-memory results."""

from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from prefkit import stream

#: Small enough that the corpora below spill into several partitions.
LIMIT = "160KB"


def _corpus(rows: int = 4000, groups: int = 400, seed: int = 0) -> pa.Table:
    """A shuffled long table: ties, NaN and null scores, null prompts, unicode."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, rows)
    score = rng.integers(0, 6, rows).astype(float)
    score[rng.random(rows) < 0.03] = np.nan
    prompt = [None if g % 97 == 5 else f"prompt {g} é" for g in group]
    return pa.table(
        {
            "prompt": prompt,
            "response": [f"response {i} " + "x" * int(i % 13) for i in range(rows)],
            "score": pa.array(score, mask=rng.random(rows) < 0.02),
        }
    )


def _write_parts(table: pa.Table, folder, parts: int = 5) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")


def _sorted(table: pa.Table, keys: list[str]) -> list[dict]:
    # Results hold string_view text, which pyarrow cannot sort: plain strings first.
    return pk.materialize(table).sort_by([(k, "ascending") for k in keys]).to_pylist()


def _rows(table: pa.Table) -> list[dict]:
    """Rows as dicts, NaN as None (NaN != NaN)."""
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in table.to_pylist()
    ]


def _accounting(table) -> dict:
    record = pk.report_of(table)
    return {k: v for k, v in record.items() if k not in ("streaming", "source", "rows_out")}


@pytest.fixture
def spill(tmp_path, monkeypatch):
    """Spill folders go under a folder of the test's own, to check they are removed."""
    folder = tmp_path / "spill"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("strategy", ["all_pairs", "best_vs_random", "best_vs_worst"])
def test_mine_pairs_partitioned_equals_in_memory(tmp_path, spill, strategy):
    data = _corpus()
    _write_parts(data, tmp_path / "in")
    expected = pk.mine_pairs(data, strategy=strategy, seed=3)
    got = pk.mine_pairs(tmp_path / "in", strategy=strategy, seed=3, memory_limit=LIMIT)
    assert pk.report_of(got)["streaming"]["mode"] == "partitioned"
    assert pk.report_of(got)["streaming"]["chunks"] >= 3
    keys = ["chosen_row", "rejected_row"]
    assert _sorted(got, keys) == _sorted(expected, keys)
    assert _accounting(got) == _accounting(expected)
    assert pk.report_of(got)["rows_out"] == expected.num_rows
    assert os.listdir(spill) == []


def test_mine_pairs_out_folder_and_glob(tmp_path, spill):
    data = _corpus()
    _write_parts(data, tmp_path / "in")
    expected = pk.mine_pairs(data, strategy="all_pairs", carry=["score"])
    got = pk.mine_pairs(
        str(tmp_path / "in" / "*.parquet"),
        strategy="all_pairs",
        carry=["score"],
        out=tmp_path / "pairs",
        memory_limit=LIMIT,
    )
    assert isinstance(got, ds.Dataset)
    assert pk.report_of(got)["rows_in"] == data.num_rows
    assert len(list((tmp_path / "pairs").glob("part-*.parquet"))) >= 3
    common = pq.read_schema(tmp_path / "pairs" / "_common_metadata")
    assert pk.report_of(common)["rows_out"] == expected.num_rows
    keys = ["chosen_row", "rejected_row"]
    assert _sorted(pk.read_table(tmp_path / "pairs"), keys) == _sorted(expected, keys)
    assert os.listdir(spill) == []


def test_rank_lists_and_readers_and_datasets(tmp_path, spill):
    data = _corpus()
    _write_parts(data, tmp_path / "in")
    expected = pk.rank_lists(data, list_size=4)
    reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=500))
    for source in (reader, ds.dataset(tmp_path / "in"), tmp_path / "in"):
        got = pk.rank_lists(source, list_size=4, memory_limit=LIMIT)
        assert pk.report_of(got)["streaming"]["mode"] == "partitioned"
        assert _sorted(got, ["group_id"]) == _sorted(expected, ["group_id"])
        assert _accounting(got) == _accounting(expected)


def test_order_curriculum_per_prompt(tmp_path, spill):
    pairs = pk.mine_pairs(_corpus(), strategy="all_pairs")
    rng = np.random.default_rng(1)
    shuffled = pk.materialize(pairs).take(rng.permutation(pairs.num_rows))
    expected = pk.order_curriculum(shuffled, per_prompt=True, stages=3)
    got = pk.order_curriculum(
        shuffled, per_prompt=True, stages=3, memory_limit="100KB", contiguous=False
    )
    assert pk.report_of(got)["streaming"]["chunks"] >= 3
    keys = ["chosen_row", "rejected_row"]
    assert _sorted(got, keys) == _sorted(expected, keys)
    assert pk.report_of(got)["stage_sizes"] == pk.report_of(expected)["stage_sizes"]
    with pytest.raises(pk.PrefkitError, match="per_prompt=True"):
        pk.order_curriculum(shuffled, memory_limit="1MB")


def test_build_trees(tmp_path, spill):
    rng = np.random.default_rng(2)
    rows = 3000
    prompts = [f"problem {g}" for g in rng.integers(0, 200, rows)]
    steps = [[f"s{rng.integers(0, 3)}" for _ in range(rng.integers(1, 5))] for _ in range(rows)]
    paths = pa.table({"prompt": prompts, "steps": steps, "reward": rng.random(rows)})
    expected = pk.build_trees(paths)
    got = pk.build_trees(paths, memory_limit=LIMIT, contiguous=False)
    assert pk.report_of(got)["streaming"]["chunks"] >= 3
    keys = ["tree_id", "node_id"]
    assert _sorted(got, keys) == _sorted(expected, keys)
    assert _accounting(got) == _accounting(expected)


def test_contiguous_input_streams_in_one_pass_in_input_order(tmp_path, spill):
    data = _corpus()
    data = data.sort_by("prompt")
    _write_parts(data, tmp_path / "in")
    expected = pk.mine_pairs(data, strategy="all_pairs")
    for contiguous in (None, True):
        got = pk.mine_pairs(
            tmp_path / "in", strategy="all_pairs", memory_limit="40KB", contiguous=contiguous
        )
        assert pk.report_of(got)["streaming"]["mode"] == "contiguous"
        # One pass keeps the in-memory order exactly.
        assert got.to_pylist() == expected.to_pylist()
        assert _accounting(got) == _accounting(expected)
    lists = pk.rank_lists(tmp_path / "in", memory_limit="40KB", contiguous=True)
    assert lists.to_pylist() == pk.rank_lists(data).to_pylist()


def test_shuffled_input_falls_back_or_fails(tmp_path, spill):
    data = _corpus()
    _write_parts(data, tmp_path / "in")
    got = pk.mine_pairs(tmp_path / "in", memory_limit=LIMIT)
    assert pk.report_of(got)["streaming"]["mode"] == "partitioned"
    with pytest.raises(pk.PrefkitError, match="contiguous=True"):
        pk.mine_pairs(tmp_path / "in", memory_limit=LIMIT, contiguous=True)
    assert os.listdir(spill) == []


def test_without_limit_a_path_is_read_whole(tmp_path):
    data = _corpus()
    data.slice(0, 100).to_pandas().to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    expected = pk.mine_pairs(pk.read_table(tmp_path / "a.jsonl"))
    got = pk.mine_pairs(tmp_path / "a.jsonl")
    assert pk.report_of(got)["streaming"]["mode"] == "in_memory"
    assert got.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_spill_removed_after_failure(tmp_path, spill, monkeypatch, interrupt):
    data = _corpus()
    _write_parts(data, tmp_path / "in")
    calls = []
    process = stream._Job.process

    def failing(self, table, **kwargs):
        calls.append(len(os.listdir(spill)))
        if len(calls) == 2:
            # The spill folder holds bucket files while the partitions are processed.
            assert any(os.listdir(spill / name) for name in os.listdir(spill))
            raise interrupt("stop")
        return process(self, table, **kwargs)

    monkeypatch.setattr(stream._Job, "process", failing)
    with pytest.raises(interrupt):
        pk.mine_pairs(tmp_path / "in", memory_limit=LIMIT, out=tmp_path / "out")
    assert len(calls) == 2
    assert os.listdir(spill) == []
    assert list((tmp_path / "out").glob("*.parquet")) == []


def test_bad_inputs(tmp_path):
    with pytest.raises(pk.PrefkitError, match="does not exist"):
        pk.mine_pairs(tmp_path / "missing.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(pk.PrefkitError, match="holds no input files"):
        pk.mine_pairs(tmp_path / "empty")
    with pytest.raises(pk.PrefkitError, match="holds no input files"):
        pk.rank_lists(str(tmp_path / "*.parquet"))
    data = _corpus(100, 10)
    for limit in ("lots", "0GB", -5, 1.5):
        with pytest.raises(pk.PrefkitError, match="memory_limit"):
            pk.mine_pairs(data, memory_limit=limit)
    with pytest.raises(pk.PrefkitError, match="contiguous"):
        pk.mine_pairs(data, memory_limit="1GB", contiguous="yes")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(pk.PrefkitError, match="new or empty folder"):
        pk.mine_pairs(data, out=tmp_path / "full")
    with pytest.raises(pk.PrefkitError, match="'nope' not found"):
        pk.mine_pairs(data, group="nope", memory_limit="1MB")
    with pytest.raises(pk.PrefkitError, match="reserved"):
        pk.mine_pairs(data.append_column(stream.ROW, pa.array([0] * 100)), memory_limit="1MB")
    clash = tmp_path / "clash"
    clash.mkdir()
    pq.write_table(data, clash / "a.parquet")
    pq.write_table(
        pa.table({"prompt": [1], "response": ["r"], "score": ["x"]}), clash / "b.parquet"
    )
    with pytest.raises(pk.PrefkitError, match="schema"):
        pk.mine_pairs(clash, memory_limit="1MB")


def test_jsonl_folder_and_sizes(tmp_path):
    data = _corpus(300, 30)
    for i, part in enumerate((data.slice(0, 150), data.slice(150))):
        with open(tmp_path / f"{i}.jsonl", "w") as handle:
            for record in part.to_pylist():
                score = record["score"]
                record["score"] = None if score is None or math.isnan(score) else score
                handle.write(json.dumps(record) + "\n")
    expected = pk.mine_pairs(pk.read_table(tmp_path / "0.jsonl"))
    got = pk.mine_pairs(tmp_path / "0.jsonl", memory_limit="1KB", contiguous=False)
    assert _sorted(got, ["chosen_row"]) == _sorted(expected, ["chosen_row"])
    assert pk.mine_pairs(tmp_path, memory_limit="8KB").num_rows > expected.num_rows
    assert stream.parse_size("2GB") == 2 * 10**9
    assert stream.parse_size("512 MiB") == 512 * 2**20


def test_cli_globs_folders_memory_limit_out_dir(tmp_path, spill, capsys):
    from prefkit.cli import main

    data = _corpus()
    _write_parts(data, tmp_path / "in")
    expected = pk.mine_pairs(data, strategy="all_pairs")
    keys = ["chosen_row", "rejected_row"]
    glob = str(tmp_path / "in" / "*.parquet")
    argv = ["pairs", glob, "--out-dir", str(tmp_path / "out"), "--memory-limit", LIMIT, "-q"]
    assert main([*argv, "--strategy", "all_pairs"]) == 0
    assert f"wrote {expected.num_rows} rows" in capsys.readouterr().out
    assert _sorted(pk.read_table(tmp_path / "out"), keys) == _sorted(expected, keys)
    # A folder without --memory-limit is read whole; -o writes one file.
    assert main(["lists", str(tmp_path / "in"), "-o", str(tmp_path / "lists.parquet"), "-q"]) == 0
    assert pk.read_table(tmp_path / "lists.parquet").num_rows == pk.rank_lists(data).num_rows
    # Grouped dedup does not stream: it reads a glob whole, and refuses --memory-limit.
    assert main(["dedup", glob, "-o", str(tmp_path / "d.parquet"), "-q"]) == 0
    grouped = ["dedup", glob, "-o", str(tmp_path / "d.parquet"), "--group", "prompt"]
    assert main([*grouped, "--memory-limit", "1GB"]) == 2
    assert main(["dedup", glob, "--out-dir", str(tmp_path / "dd"), "--memory-limit", "1MB"]) == 0
    assert os.listdir(spill) == []


def test_decontaminate_streams_by_chunks(tmp_path, spill):
    data = _corpus()
    _write_parts(data, tmp_path / "in")
    reference = ["prompt 17 é", "response 123 xxx", "prompt 42 é"]
    expected = pk.decontaminate(data, reference, ngram=3)
    got = pk.decontaminate(tmp_path / "in", reference, ngram=3, memory_limit="100KB")
    assert pk.report_of(got)["streaming"]["mode"] == "batches"
    assert pk.report_of(got)["streaming"]["chunks"] is None
    assert _rows(got) == _rows(expected)
    assert _accounting(got) == _accounting(expected)
    found = pk.find_contamination(tmp_path / "in", reference, ngram=3, out=tmp_path / "found")
    assert pk.read_table(tmp_path / "found").to_pylist() == (
        pk.find_contamination(data, reference, ngram=3).to_pylist()
    )
    assert pk.report_of(found)["rows_in"] == data.num_rows


def test_exact_dedup_streams_by_normalised_key(tmp_path, spill):
    rng = np.random.default_rng(4)
    texts = [f"Prompt number {i % 300}" + ("!" if i % 7 == 0 else "") for i in range(3000)]
    data = pa.table({"prompt": [texts[i] for i in rng.permutation(3000)], "x": range(3000)})
    _write_parts(data, tmp_path / "in")
    expected = pk.dedup(data)
    got = pk.dedup(tmp_path / "in", memory_limit="20KB")
    assert pk.report_of(got)["streaming"]["chunks"] >= 3
    assert _sorted(got, ["x"]) == _sorted(expected, ["x"])
    assert _accounting(got) == _accounting(expected)
    found = pk.find_duplicates(tmp_path / "in", memory_limit="20KB", out=tmp_path / "dups")
    assert _sorted(pk.read_table(tmp_path / "dups"), ["row"]) == (
        pk.find_duplicates(data).to_pylist()
    )
    assert pk.report_of(found)["rows_in"] == data.num_rows
    with pytest.raises(pk.PrefkitError, match="without group"):
        pk.dedup(tmp_path / "in", group="prompt", memory_limit="1MB")
    assert os.listdir(spill) == []


def _rated_file(path, prompt, scores):
    pq.write_table(pa.table({"prompt": [prompt] * len(scores),
                             "response": [f"r{i}" for i in range(len(scores))],
                             "score": scores}), path)


def test_files_with_different_schemas_name_the_file_and_column(tmp_path):
    _rated_file(tmp_path / "1.parquet", "a", [1.0, 0.0])
    pq.write_table(pa.table({"prompt": ["b", "b"], "response": ["x", "y"],
                             "score": ["1", "0"]}), tmp_path / "2.parquet")
    with pytest.raises(pk.PrefkitError, match=r"column 'score' of input file '.*2\.parquet' is "
                                              r"string, but double in the first input file"):
        pk.mine_pairs(str(tmp_path / "*.parquet"), memory_limit="1MB")
    pq.write_table(pa.table({"prompt": ["b"], "response": ["x"]}), tmp_path / "3.parquet")
    (tmp_path / "2.parquet").unlink()
    with pytest.raises(pk.PrefkitError, match=r"3\.parquet' has no column 'score'"):
        pk.mine_pairs(str(tmp_path), memory_limit="1MB")


def test_numbers_of_one_kind_across_json_files_are_widened(tmp_path):
    """JSON readers infer double in one file and int64 in the next: the later file's numbers
    are cast to the first file's type when that loses nothing."""
    (tmp_path / "1.jsonl").write_text('{"prompt": "a", "response": "x", "score": 0.5}\n'
                                      '{"prompt": "a", "response": "y", "score": 0.25}\n')
    (tmp_path / "2.jsonl").write_text('{"prompt": "b", "response": "x", "score": 1}\n'
                                      '{"prompt": "b", "response": "y", "score": 0}\n')
    pairs = pk.mine_pairs(str(tmp_path), memory_limit="1MB")
    assert sorted(pairs.column("margin").to_pylist()) == [0.25, 1.0]


def test_a_corrupt_file_in_a_folder_is_an_error_naming_it(tmp_path):
    _rated_file(tmp_path / "1.parquet", "a", [1.0, 0.0])
    good = (tmp_path / "1.parquet").read_bytes()
    (tmp_path / "2.parquet").write_bytes(good[: len(good) // 2])   # truncated
    with pytest.raises(pk.PrefkitError, match=r"cannot read input file '.*2\.parquet'"):
        pk.mine_pairs(str(tmp_path), memory_limit="1MB")
    (tmp_path / "2.parquet").unlink()
    (tmp_path / "2.jsonl").write_text('{"prompt": "b", "response": "x", "score": 1}\n{"prom')
    with pytest.raises(pk.PrefkitError, match=r"cannot read input file '.*2\.jsonl'"):
        pk.mine_pairs(str(tmp_path), memory_limit="1MB")
