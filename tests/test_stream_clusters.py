"""Out-of-core MinHash dedup and split (prefkit.stream_clusters): equal to the in-memory results."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from prefkit import stream_clusters

#: Small enough that the corpora below spill into many partitions.
LIMIT = "40KB"

pytestmark = pytest.mark.filterwarnings("ignore:.*exceed the memory budget:RuntimeWarning")


def _near_corpus(rows: int = 3000, bases: int = 400, seed: int = 0) -> pa.Table:
    """Shuffled rows that copy one of ``bases`` texts with 0-3 words replaced (exact and near
    duplicates scattered over the input), some nulls, empty texts and unicode."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)] + ["é", "Ünïcode", "数据"]
    base = [rng.choice(words, 30).tolist() for _ in range(bases)]
    texts = []
    for i in range(rows):
        text = list(base[rng.integers(bases)])
        for _ in range(rng.integers(0, 4)):
            text[rng.integers(30)] = words[rng.integers(len(words))]
        texts.append(None if i % 97 == 3 else "" if i % 131 == 7 else " ".join(text))
    return pa.table(
        {
            "prompt": texts,
            "response": [f"r{i % 7}" for i in range(rows)],
            "x": np.arange(rows),
        }
    )


def _write_parts(table: pa.Table, folder, parts: int = 5) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")


def _accounting(table) -> dict:
    record = pk.report_of(table)
    return {k: v for k, v in record.items() if k not in ("streaming", "source")}


@pytest.fixture
def spill(tmp_path, monkeypatch):
    """Spill folders go under a folder of the test's own, to check they are removed."""
    folder = tmp_path / "spill"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("columns", ["prompt", ["prompt", "response"]])
def test_minhash_dedup_partitioned_equals_in_memory(tmp_path, spill, columns):
    data = _near_corpus()
    _write_parts(data, tmp_path / "in")
    options = {"columns": columns, "method": "minhash", "threshold": 0.7, "seed": 5}
    expected = pk.dedup(data, **options)
    got = pk.dedup(tmp_path / "in", memory_limit=LIMIT, **options)
    streaming = pk.report_of(got)["streaming"]
    assert streaming["mode"] == "partitioned" and streaming["chunks"] >= 6
    # Kept rows in input order, exactly the in-memory ones.
    assert got.column("x").to_pylist() == expected.column("x").to_pylist()
    assert _accounting(got) == _accounting(expected)
    assert pk.report_of(expected)["dropped"]["near_duplicate"] > 0
    assert os.listdir(spill) == []


def test_minhash_find_duplicates_from_readers_datasets_and_into_out(tmp_path, spill):
    data = _near_corpus(seed=1)
    _write_parts(data, tmp_path / "in")
    expected = pk.find_duplicates(data, method="minhash", ngram=3)
    reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=400))
    for source in (reader, ds.dataset(tmp_path / "in"), str(tmp_path / "in" / "*.parquet")):
        got = pk.find_duplicates(source, method="minhash", ngram=3, memory_limit=LIMIT)
        assert pk.report_of(got)["streaming"]["mode"] == "partitioned"
        assert got.to_pylist() == expected.to_pylist()
        assert _accounting(got) == _accounting(expected)
    written = pk.find_duplicates(
        tmp_path / "in", method="minhash", ngram=3, memory_limit=LIMIT, out=tmp_path / "dups"
    )
    assert isinstance(written, ds.Dataset)
    assert pk.read_table(tmp_path / "dups").to_pylist() == expected.to_pylist()
    kept = pk.dedup(tmp_path / "in", method="minhash", ngram=3, out=tmp_path / "kept")
    assert pk.report_of(kept)["streaming"]["mode"] == "in_memory"
    assert pk.read_table(tmp_path / "kept").column("x").to_pylist() == (
        pk.dedup(data, method="minhash", ngram=3).column("x").to_pylist()
    )
    assert os.listdir(spill) == []


def test_candidate_pairs_spill_in_runs(tmp_path, spill):
    """A budget smaller than the candidate pairs spills them in runs; the result holds."""
    data = _near_corpus(rows=1500, bases=40, seed=2)
    _write_parts(data, tmp_path / "in")
    expected = pk.find_duplicates(data, method="minhash")
    got = pk.find_duplicates(tmp_path / "in", method="minhash", memory_limit="8KB")
    assert got.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("near_duplicates", [False, True])
@pytest.mark.parametrize("test_size", [0.25, 700])
def test_split_partitioned_equals_in_memory(tmp_path, spill, near_duplicates, test_size):
    data = _near_corpus(seed=3)
    _write_parts(data, tmp_path / "in")
    options = {"test_size": test_size, "near_duplicates": near_duplicates, "seed": 7}
    train, test = pk.split(data, **options)
    got_train, got_test = pk.split(tmp_path / "in", memory_limit=LIMIT, **options)
    assert pk.report_of(got_test)["streaming"]["mode"] == "partitioned"
    assert got_train.column("x").to_pylist() == train.column("x").to_pylist()
    assert got_test.column("x").to_pylist() == test.column("x").to_pylist()
    assert _accounting(got_train) == _accounting(train)
    assert _accounting(got_test) == _accounting(test)
    assert os.listdir(spill) == []


def test_split_out_writes_train_and_test_datasets(tmp_path, spill):
    data = _near_corpus(seed=4)
    train, test = pk.split(data, test_size=0.1, near_duplicates=True)
    got = pk.split(
        data, test_size=0.1, near_duplicates=True, out=tmp_path / "parts", memory_limit=LIMIT
    )
    assert all(isinstance(part, ds.Dataset) for part in got)
    assert sorted(os.listdir(tmp_path / "parts")) == ["test", "train"]
    for part, expected, name in zip(got, (train, test), ("train", "test")):
        assert pk.report_of(part)["part"] == name
        table = pk.read_table(tmp_path / "parts" / name)
        assert table.column("x").to_pylist() == expected.column("x").to_pylist()
    with pytest.raises(pk.PrefkitError, match="new or empty folder"):
        pk.split(data, test_size=0.1, out=tmp_path / "parts")
    with pytest.raises(pk.PrefkitError, match="test_size"):
        pk.split(tmp_path / "parts" / "train", test_size=10**9, memory_limit=LIMIT)


def test_streaming_minhash_bad_input(tmp_path):
    data = _near_corpus(rows=200)
    _write_parts(data, tmp_path / "in", parts=2)
    with pytest.raises(pk.PrefkitError, match="without group"):
        pk.dedup(tmp_path / "in", method="minhash", group="prompt", memory_limit=LIMIT)
    with pytest.raises(pk.PrefkitError, match="'nope' not found"):
        pk.dedup(tmp_path / "in", method="minhash", columns="nope", memory_limit="1KB")
    with pytest.raises(pk.PrefkitError, match="'x' must be text"):
        pk.dedup(tmp_path / "in", method="minhash", columns="x", memory_limit="1KB")
    with pytest.raises(pk.PrefkitError, match="'x' must be text"):
        pk.split(
            tmp_path / "in", test_size=0.1, group="x", near_duplicates=True, memory_limit="1KB"
        )


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("op", ["dedup", "split"])
def test_spill_removed_after_failure(tmp_path, spill, monkeypatch, interrupt, op):
    data = _near_corpus()
    _write_parts(data, tmp_path / "in")
    candidates = stream_clusters._candidates

    def failing(*args, **kwargs):
        # Exact and band partitions are on disk when the candidates are looked for.
        assert any(os.listdir(spill / name) for name in os.listdir(spill))
        candidates(*args, **kwargs)
        raise interrupt("stop")

    monkeypatch.setattr(stream_clusters, "_candidates", failing)
    with pytest.raises(interrupt):
        if op == "dedup":
            pk.dedup(tmp_path / "in", method="minhash", memory_limit=LIMIT, out=tmp_path / "o")
        else:
            pk.split(
                tmp_path / "in",
                test_size=0.2,
                near_duplicates=True,
                memory_limit=LIMIT,
                out=tmp_path / "o",
            )
    assert os.listdir(spill) == []
    assert list((tmp_path / "o").rglob("*.parquet")) == []


def test_oversized_partition_is_warned_and_counted(tmp_path, spill):
    """One group larger than the budget is processed whole, with a warning and a count."""
    data = pa.table(
        {
            "prompt": ["same"] * 2000,
            "response": [str(i) for i in range(2000)],
            "score": np.arange(2000, dtype=float),
        }
    )
    with pytest.warns(RuntimeWarning, match="exceed the memory budget"):
        got = pk.rank_lists(data, memory_limit="20KB", contiguous=False)
    streaming = pk.report_of(got)["streaming"]
    assert streaming["oversized_chunks"] == 1
    assert streaming["largest_chunk_bytes"] > 5000
    assert got.to_pylist() == pk.rank_lists(data).to_pylist()


def test_cli_dedup_minhash_and_split_stream(tmp_path, spill, capsys):
    from prefkit.cli import main

    data = _near_corpus()
    _write_parts(data, tmp_path / "in")
    glob = str(tmp_path / "in" / "*.parquet")
    expected = pk.dedup(data, method="minhash")
    argv = ["dedup", glob, "--method", "minhash", "--memory-limit", LIMIT, "-q"]
    assert main([*argv, "--out-dir", str(tmp_path / "kept")]) == 0
    assert f"wrote {expected.num_rows} rows" in capsys.readouterr().out
    assert pk.read_table(tmp_path / "kept").column("x").to_pylist() == (
        expected.column("x").to_pylist()
    )
    train, test = pk.split(data, test_size=0.2, near_duplicates=True)
    argv = ["split", glob, "--test-size", "0.2", "--near-duplicates", "--memory-limit", LIMIT]
    assert main([*argv, "--out-dir", str(tmp_path / "parts"), "-q"]) == 0
    assert pk.read_table(tmp_path / "parts" / "test").column("x").to_pylist() == (
        test.column("x").to_pylist()
    )
    # A folder with -o/--test-output: streamed, then written as two files.
    argv = ["split", str(tmp_path / "in"), "--test-size", "0.2", "--near-duplicates", "-q"]
    out = ["-o", str(tmp_path / "train.parquet"), "--test-output", str(tmp_path / "t.parquet")]
    assert main([*argv, *out]) == 0
    assert pk.read_table(tmp_path / "train.parquet").column("x").to_pylist() == (
        train.column("x").to_pylist()
    )
    assert main(["split", glob, "--test-size", "0.2", "-o", str(tmp_path / "a.parquet")]) == 2
    assert os.listdir(spill) == []
