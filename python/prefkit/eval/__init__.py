"""Evaluation: reward-model accuracy on preference pairs and RewardBench section scores.

``docs/eval.md`` has the formulas and their sources.

Examples
--------
>>> import prefkit as pk, pyarrow as pa
>>> pairs = pa.table({"score_chosen": [1.0, 0.0], "score_rejected": [0.0, 0.0]})
>>> pk.evaluate_rewards(pairs, ("score_chosen", "score_rejected")).column("accuracy")[0].as_py()
0.75
"""

from prefkit.eval.rewards import evaluate_rewards
from prefkit.eval.sections import REWARDBENCH_SECTIONS, REWARDBENCH_SUBSETS, rewardbench_sections

__all__ = ["REWARDBENCH_SECTIONS", "REWARDBENCH_SUBSETS", "evaluate_rewards", "rewardbench_sections"]
