"""The Diffusion-DPO example trains, and its latents table round-trips through Parquet."""

from __future__ import annotations

import importlib.util
import math
import statistics
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("PIL")

import pyarrow as pa
import pyarrow.parquet as pq

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_diffusion_dpo.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_diffusion_dpo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(example, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddpo")
    return example.main(["--steps", "40", "--seed", "0", "--out", str(out), "--quiet"]), out


def test_short_run_learns(run):
    result, _ = run
    history = result["history"]
    assert len(history) == 40
    # Policy == reference at the start: loss log 2, no pair ranked right yet.
    assert result["initial_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert result["initial_accuracy"] == 0.0
    first = [h["loss"] for h in history[:5]]
    last = [h["loss"] for h in history[-5:]]
    assert statistics.mean(last) < statistics.mean(first)
    accuracy_first = statistics.mean(h["rewards/accuracies"] for h in history[:5])
    accuracy_last = statistics.mean(h["rewards/accuracies"] for h in history[-5:])
    assert accuracy_last > accuracy_first
    assert result["final_loss"] < result["initial_loss"] - 0.05
    assert result["final_accuracy"] > 0.6


def test_pairs_drop_the_ties(run, example):
    result, out = run
    comparisons = pq.read_table(out / "comparisons.parquet")
    assert comparisons.column_names[:5] == ["caption", "jpg_0", "jpg_1", "label_0", "label_1"]
    ties = sum(a == b for a, b in zip(comparisons["label_0"].to_pylist(),
                                      comparisons["label_1"].to_pylist()))
    assert ties > 0 and result["dropped"] == {"tie": ties}
    assert result["pairs"] == comparisons.num_rows - ties


def test_latents_table_round_trips_through_parquet(run, example):
    result, out = run
    table = result["table"]  # the example trained from the file it wrote
    stored = pq.read_table(out / "latents.parquet")
    for side in ("chosen", "rejected"):
        field = stored.schema.field(f"{side}_latents")
        assert isinstance(field.type, pa.FixedShapeTensorType)
        assert field.type.shape == [4, 8, 8] and field.type.value_type == pa.float32()
        latents = example.column_tensor(stored, f"{side}_latents")
        assert latents.shape == (stored.num_rows, 4, 8, 8)
        assert latents.equal(example.column_tensor(table, f"{side}_latents"))
    assert stored.column("chosen").equals(table.column("chosen"))  # PNG bytes kept beside them
    assert example.LATENTS_KEY in stored.schema.metadata
    # Unit variance after the stored scaling factor, as Stable Diffusion's 0.18215 gives.
    both = example.column_tensor(stored, "chosen_latents").flatten().tolist()
    both += example.column_tensor(stored, "rejected_latents").flatten().tolist()
    assert statistics.pstdev(both) == pytest.approx(1.0, rel=0.01)
