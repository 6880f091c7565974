"""prefkit: preference data for alignment, fast.

Turn raw preference corpora into training-ready pairs, lists and trees over Apache Arrow (a Rust
core), and train on them with fused DPO-family losses (``prefkit.losses``, needs torch).

Examples
--------
>>> import prefkit as pk, pyarrow as pa
>>> data = pa.table({"prompt": ["q", "q"], "response": ["good", "bad"], "score": [1.0, 0.0]})
>>> pk.mine_pairs(data).column("chosen").to_pylist()
['good']
"""

from prefkit._errors import PrefkitError
from prefkit._provenance import report_of
from prefkit._version import __version__
from prefkit.batches import plan_batches
from prefkit.collate import ListCollator, PairCollator, gather_hidden
from prefkit.curriculum import order_curriculum
from prefkit.dedup import (
    decontaminate,
    dedup,
    find_contamination,
    find_duplicates,
    normalize_text,
    split,
)
from prefkit.eval import evaluate_rewards, judge_bias, list_ranking, ranking_accuracy
from prefkit.formats import unpair
from prefkit.images import (
    dedup_images,
    find_image_duplicates,
    image_hashes,
    image_pairs,
    split_images,
)
from prefkit.io import materialize, read_table, write_table
from prefkit.joint_pairs import mine_joint_pairs
from prefkit.lists import rank_lists
from prefkit.pairs import mine_pairs, split_prompt, unnest
from prefkit.pairwise import EmbeddingJudge, score_pairwise
from prefkit.reference import reference_logps
from prefkit.report import report
from prefkit.scoring import score, score_pairs
from prefkit.strength import filter_pairs, length_stats, preference_strength
from prefkit.tokenize import tokenize_lists, tokenize_pairs
from prefkit.trees import build_trees, tree_lists, tree_pairs
from prefkit.winrates import intransitivity, win_rate_lists, win_rate_pairs, win_rates

__all__ = [
    "EmbeddingJudge",
    "ListCollator",
    "PairCollator",
    "PrefkitError",
    "__version__",
    "build_trees",
    "decontaminate",
    "dedup",
    "dedup_images",
    "evaluate_rewards",
    "filter_pairs",
    "find_contamination",
    "find_duplicates",
    "find_image_duplicates",
    "gather_hidden",
    "image_hashes",
    "image_pairs",
    "intransitivity",
    "judge_bias",
    "length_stats",
    "list_ranking",
    "materialize",
    "mine_joint_pairs",
    "mine_pairs",
    "normalize_text",
    "order_curriculum",
    "plan_batches",
    "preference_strength",
    "rank_lists",
    "ranking_accuracy",
    "read_table",
    "reference_logps",
    "report",
    "report_of",
    "score",
    "score_pairs",
    "score_pairwise",
    "split",
    "split_images",
    "split_prompt",
    "tokenize_lists",
    "tokenize_pairs",
    "tree_lists",
    "tree_pairs",
    "unnest",
    "unpair",
    "win_rate_lists",
    "win_rate_pairs",
    "win_rates",
    "write_table",
]
