"""prefkit.ray: Ray Data results equal the single-process results (skipped without Ray).

One local Ray (2 CPUs, the session fixture ``local_ray`` of conftest.py) serves every test;
each test covers several operations, since every Ray stage costs seconds on 2 cores."""

from __future__ import annotations

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")
pkr = pytest.importorskip("prefkit.ray")

from test_dedup import planted
from test_stream import _corpus, _sorted


def _shuffled() -> pa.Table:
    data = _corpus(2000, 200)
    return data.append_column("row", pa.array(np.arange(data.num_rows)))


def test_mine_pairs_and_lists_equal_single_process(local_ray):
    data = _shuffled()
    ds = ray.data.from_arrow(data).repartition(4)
    expected = pk.mine_pairs(data, strategy="all_pairs", carry=["row"])
    got = pa.concat_tables(
        ray.get(pkr.mine_pairs(ds, row="row", strategy="all_pairs", carry=["row"]).to_arrow_refs())
    )
    keys = ["chosen_row", "rejected_row"]
    assert _sorted(got, keys) == _sorted(expected, keys)
    expected = pk.rank_lists(data, list_size=3)
    got = pa.concat_tables(ray.get(pkr.rank_lists(ds, row="row", list_size=3).to_arrow_refs()))
    assert _sorted(got, ["group_id"]) == _sorted(expected, ["group_id"])


def test_without_row_numbers_and_bad_input(local_ray):
    data = _shuffled().drop_columns(["row"])
    ds = ray.data.from_arrow(data)
    got = pa.concat_tables(ray.get(pkr.mine_pairs(ds).to_arrow_refs()))
    assert "chosen_row" not in got.column_names
    assert got.num_rows == pk.mine_pairs(data).num_rows
    with pytest.raises(pk.PrefkitError, match="ray.data.Dataset"):
        pkr.mine_pairs(data)
    with pytest.raises(pk.PrefkitError, match="'nope' not found"):
        pkr.rank_lists(ds, group="nope")


def test_cli_ray(local_ray, tmp_path):
    from prefkit.cli import main

    data = _shuffled()
    data.to_pandas().to_parquet(tmp_path / "rated.parquet")
    out = tmp_path / "pairs"
    argv = ["pairs", str(tmp_path / "rated.parquet"), "--out-dir", str(out), "-q"]
    assert main([*argv, "--ray", "auto", "--row", "row", "--strategy", "all_pairs"]) == 0
    got = pk.read_table(out)
    expected = pk.mine_pairs(data, strategy="all_pairs")
    keys = ["chosen_row", "rejected_row"]
    assert _sorted(got.select(expected.column_names), keys) == _sorted(expected, keys)
    with pytest.raises(SystemExit):
        main(["unnest", str(tmp_path / "rated.parquet"), "--out-dir", str(out), "--ray", "auto"])

    texts = _near_duplicates()
    texts.to_pandas().to_parquet(tmp_path / "texts.parquet")
    argv = [str(tmp_path / "texts.parquet"), "-q", "--ray", "auto", "--out-dir"]
    unique = ["dedup", *argv, str(tmp_path / "unique"), "--method", "minhash", "--ngram", "3"]
    assert main([*unique, "--threshold", "0.7"]) == 0
    expected = pk.dedup(texts, method="minhash", ngram=3, threshold=0.7)
    assert _row_set(pk.read_table(tmp_path / "unique")) == _row_set(expected)
    grouped = ["dedup", *argv, str(tmp_path / "groups"), "--columns", "response"]
    assert main([*grouped, "--group", "prompt"]) == 0
    expected = pk.dedup(texts, columns="response", group="prompt")
    assert _row_set(pk.read_table(tmp_path / "groups")) == _row_set(expected)
    split = ["split", *argv, str(tmp_path / "parts"), "--test-size", "0.25", "--seed", "3"]
    assert main(split) == 0
    train, test = pk.split(texts, test_size=0.25, seed=3)
    assert _row_set(pk.read_table(tmp_path / "parts" / "train")) == _row_set(train)
    assert _row_set(pk.read_table(tmp_path / "parts" / "test")) == _row_set(test)


def _near_duplicates(seed: int = 0) -> pa.Table:
    """Documents with edited copies (near duplicates), copies equal after normalisation,
    nulls, empty and short texts, shuffled, with their row numbers."""
    docs, _ = planted(seed, bases=120, words=30)
    rng = np.random.default_rng(seed)
    exact = [docs[i].upper() + "!" for i in rng.choice(len(docs), 40)]
    texts = docs + exact + [None, "", "a b", None, "A, b"]
    texts = [texts[i] for i in rng.permutation(len(texts))]
    responses = [f"r{i % 7}" for i in range(len(texts))]
    return pa.table({"prompt": texts, "response": responses, "row": np.arange(len(texts))})


def _row_set(table: pa.Table) -> set[int]:
    rows = table.column("row").to_pylist()
    assert len(rows) == len(set(rows))
    return set(rows)


def _gather(ds) -> pa.Table:
    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def test_dedup_find_duplicates_and_split_equal_single_process(local_ray):
    data = _near_duplicates()
    # Blocks out of row order, as Ray bundles them in the order they arrive.
    order = np.random.default_rng(1).permutation(data.num_rows)
    ds = ray.data.from_arrow(data.take(order)).repartition(4)
    # Each MinHash pipeline costs several Ray executions: dedup exact, find_duplicates MinHash.
    columns = ["prompt", "response"]
    kept = _gather(pkr.dedup(ds, columns=columns))
    assert _row_set(kept) == _row_set(pk.dedup(data, columns=columns))
    assert kept.num_rows < data.num_rows
    # Units of several rows: some prompts repeated with other responses, later in the input.
    extra = data.slice(0, 60)
    extra = extra.set_column(2, "row", pa.array(np.arange(60) + data.num_rows))
    extra = extra.set_column(1, "response", pa.array(["again"] * 60))
    long = pa.concat_tables([data, extra])
    grouped = ray.data.from_arrow(long.take(np.random.default_rng(2).permutation(long.num_rows)))
    kept = _gather(pkr.dedup(grouped, columns="response", group="prompt"))
    expected = pk.dedup(long, columns="response", group="prompt")
    assert _row_set(kept) == _row_set(expected) and expected.num_rows < long.num_rows
    assert kept.sort_by("row").column("response").to_pylist() == (
        expected.column("response").to_pylist()
    )
    options = {"method": "minhash", "ngram": 3, "threshold": 0.7, "seed": 5, "group": "prompt"}
    found = _gather(pkr.find_duplicates(grouped.repartition(3), **options)).sort_by("row")
    expected = pk.find_duplicates(long, **options)
    # find_duplicates numbers rows by position; here position == row.
    assert found.to_pylist() == expected.to_pylist()
    assert expected.num_rows > 0
    train, test = pkr.split(ds, test_size=0.3, near_duplicates=True, ngram=3, threshold=0.7)
    expected = pk.split(data, test_size=0.3, near_duplicates=True, ngram=3, threshold=0.7)
    assert _row_set(_gather(train)) == _row_set(expected[0])
    assert _row_set(_gather(test)) == _row_set(expected[1])
    with pytest.raises(pk.PrefkitError, match="'nope' not found"):
        pkr.dedup(ds, row="nope")
    with pytest.raises(pk.PrefkitError, match="method"):
        pkr.dedup(ds, method="fuzzy")
    with pytest.raises(pk.PrefkitError, match="'nope' not found"):
        pkr.find_duplicates(ds, group="nope")


def test_decontaminate_and_score_equal_single_process(local_ray, tmp_path):
    data = _near_duplicates()
    ds = ray.data.from_arrow(data).repartition(3)
    reference = data.column("prompt").to_pylist()[:5]
    got = _gather(pkr.decontaminate(ds, [t for t in reference if t], ngram=4))
    expected = pk.decontaminate(data, [t for t in reference if t], ngram=4)
    assert _row_set(got) == _row_set(expected) and expected.num_rows < data.num_rows

    pytest.importorskip("transformers")
    from scoring_models import build_model, corpus

    model = build_model(tmp_path / "rm")
    samples = corpus(24, seed=3)
    expected = pk.score(samples, model, device="cpu", progress=False)
    scored = pkr.score(
        ray.data.from_arrow(samples).repartition(2),
        model,
        device="cpu",
        num_gpus=0,
        batch_size=8,
        max_tokens_per_batch=64,
    )
    got = _gather(scored).sort_by("id")
    np.testing.assert_allclose(
        got.column("score").to_numpy(), expected.column("score").to_numpy(), rtol=0, atol=1e-5
    )
