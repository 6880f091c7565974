"""The DPO example trains: a short run lowers the loss and raises the reward accuracy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_dpo.py"


def load_example():
    spec = importlib.util.spec_from_file_location("train_dpo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [["--steps", "12"], ["--steps", "8", "--packed"]],
                         ids=["padded", "packed"])
def test_short_run_learns(argv):
    result = load_example().main([*argv, "--quiet"])
    assert result["pairs"] > 40
    # Policy == reference at the start: loss log 2, no pair ranked right yet.
    assert result["initial_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert result["initial_accuracy"] == 0.0
    assert result["final_loss"] < result["initial_loss"] - 0.05
    assert result["final_accuracy"] > 0.5
    assert len(result["history"]) == int(argv[1])
