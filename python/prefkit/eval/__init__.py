"""Evaluation: reward-model accuracy on preference pairs and RewardBench section scores
(``rewards``, ``sections``), policy ranking accuracy (``ranking``), judge position bias and
self-preference (``judges``).

``docs/eval.md`` has the formulas and their sources.

Examples
--------
>>> import prefkit as pk, pyarrow as pa
>>> pairs = pa.table({"score_chosen": [1.0, 0.0], "score_rejected": [0.0, 0.0]})
>>> pk.evaluate_rewards(pairs, ("score_chosen", "score_rejected")).column("accuracy")[0].as_py()
0.75
"""

from prefkit.eval.judges import judge_bias
from prefkit.eval.ranking import kendall_tau_b, list_ranking, ranking_accuracy
from prefkit.eval.rewards import evaluate_rewards
from prefkit.eval.sections import (
    REWARDBENCH_PRIOR_SETS,
    REWARDBENCH_SECTIONS,
    REWARDBENCH_SUBSETS,
    rewardbench_score,
    rewardbench_sections,
)

__all__ = [
    "REWARDBENCH_PRIOR_SETS",
    "REWARDBENCH_SECTIONS",
    "REWARDBENCH_SUBSETS",
    "evaluate_rewards",
    "judge_bias",
    "kendall_tau_b",
    "list_ranking",
    "ranking_accuracy",
    "rewardbench_score",
    "rewardbench_sections",
]
