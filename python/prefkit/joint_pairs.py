"""Joint pairs across prompts (JPO): a response to one prompt chosen over a response to another.

"Comparing Bad Apples to Good Oranges" (Bansal et al., arXiv 2404.00530) trains on preferences
between instruction-response pairs whose instructions differ. From rated single responses (one
score per response, e.g. an absolute judge rating), ``mine_joint_pairs`` draws such pairs; the
rules are in ``docs/joint_pairs.md``. Train on them with ``preference_loss(kind="jpo")``, each
side tokenized with its own prompt (``prompt`` for the chosen, ``rejected_prompt`` for the
rejected response).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import attach
from prefkit.io import as_table, plain_unless_views, without_views
from prefkit.pairs import _check_int, _names

STRATEGIES = ("best_vs_worst", "random")


def mine_joint_pairs(
    rated: Any,
    *,
    prompt: str = "prompt",
    response: str = "response",
    score: str | Sequence[str] = "score",
    group: str | None = None,
    strategy: str = "best_vs_worst",
    pairs_per_prompt: int = 1,
    min_margin: float = 0.0,
    nan: str = "drop",
    seed: int = 0,
    carry: Sequence[str] = (),
    views: bool = False,
) -> pa.Table:
    """Mine joint pairs ``(prompt, chosen) > (rejected_prompt, rejected)`` across prompts.

    Rows are grouped by ``group`` (or the prompt value) as in ``mine_pairs``. Each of
    ``pairs_per_prompt`` draws matches every prompt with a partner prompt (a seeded random
    permutation read as a cycle: partners always differ, every prompt leads once per draw) and
    compares one response of each: the higher score is chosen when the margin exceeds
    ``min_margin``; otherwise (ties included, as JPO discards them) the draw gives no pair.

    Parameters
    ----------
    rated
        One row per rated response: pyarrow, polars, pandas, ``datasets.Dataset`` or any Arrow
        stream. Prompts may have a single response each.
    prompt, response, score, group
        Column names, as in ``mine_pairs``; several score columns are averaged.
    strategy
        ``"best_vs_worst"`` (default): the leading prompt's best response against the partner's
        worst, the joint pairs that per-prompt rankings imply most safely ("good oranges vs bad
        apples"). ``"random"``: one uniformly drawn response of each prompt, JPO's sampling of
        instruction-response pairs.
    pairs_per_prompt
        Number of draws; a pair drawn twice is kept once (counted as ``draws_repeated``).
    min_margin
        A pair needs ``score_chosen - score_rejected > min_margin``.
    nan
        ``"drop"`` rows whose score is null or NaN (counted), or ``"error"``.
    seed
        The same seed gives the same pairs.
    carry
        Further columns copied from the chosen row.
    views
        ``True``: text columns are ``string_view`` arrays sharing the input's buffers
        (``docs/outputs.md``); by default they are plain ``large_string``.

    Returns
    -------
    pyarrow.Table
        ``prompt, chosen, rejected_prompt, rejected, score_chosen, score_rejected, margin,
        group_id, rejected_group_id, chosen_row, rejected_row`` (+ ``carry``), with the row
        accounting in its metadata (``pk.report_of``): rows dropped as ``null_key``,
        ``null_response``, ``nan_score``, ``too_few_prompts`` or ``not_selected``, and the
        counts ``draws``, ``draws_without_pair``, ``draws_repeated``, ``pairs_out``.

    Raises
    ------
    PrefkitError
        Missing or mistyped columns, NaN scores with ``nan="error"``, bad arguments.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> rated = pa.table({
    ...     "prompt": ["Name a prime.", "Name a prime.", "Capital of France?"],
    ...     "response": ["7", "9", "Paris"],
    ...     "score": [9.0, 2.0, 10.0],
    ... })
    >>> pairs = pk.mine_joint_pairs(rated)
    >>> pairs.select(["prompt", "chosen", "rejected_prompt", "rejected"]).to_pylist()
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'prompt': 'Capital of France?', 'chosen': 'Paris', 'rejected_prompt': 'Name a prime.',
      'rejected': '9'},
     {'prompt': 'Name a prime.', 'chosen': '7', 'rejected_prompt': 'Capital of France?',
      'rejected': 'Paris'}]
    """
    scores = _names(score, "score")
    carry = _names(carry, "carry") if carry else []
    for argument, value in (("strategy", strategy), ("nan", nan)):
        if not isinstance(value, str):
            raise PrefkitError(f"{argument} must be a string, got {value!r}")
    if not isinstance(min_margin, (int, float)) or isinstance(min_margin, bool):
        raise PrefkitError(f"min_margin must be a number, got {min_margin!r}")
    _check_int("pairs_per_prompt", pairs_per_prompt, 1)
    _check_int("seed", seed, 0, 2**64 - 1)
    parameters = {
        "prompt": prompt,
        "response": response,
        "score": scores,
        "group": group,
        "strategy": strategy,
        "pairs_per_prompt": pairs_per_prompt,
        "min_margin": float(min_margin),
        "nan": nan,
        "seed": seed,
        "carry": carry,
        "views": views,
    }
    table = as_table(rated)
    result, accounting = _core.mine_joint_pairs(table, **without_views(parameters))
    result = plain_unless_views(as_table(result), views)
    return attach(result, "mine_joint_pairs", parameters, accounting, source=table)
