"""prefkit.ray: Ray Data results equal the single-process results (skipped without Ray)."""

from __future__ import annotations

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")
pkr = pytest.importorskip("prefkit.ray")

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
        main(["dedup", str(tmp_path / "rated.parquet"), "--out-dir", str(out), "--ray", "auto"])
