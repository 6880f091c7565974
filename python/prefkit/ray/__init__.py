"""prefkit on Ray Data: the table operations and scoring over a ``ray.data.Dataset``
(``pip install 'prefkit[ray]'``).

- Group-wise work (``mine_pairs``, ``rank_lists``, ``build_trees``,
  ``order_curriculum(per_prompt=True)``): rows are shuffled by a bucket of their group key id
  and each bucket runs the in-memory operation (the Rust core) on a worker
  (:mod:`prefkit.ray.groupwise`).
- ``dedup`` / ``find_duplicates`` (exact and MinHash) and ``split``: signatures per block,
  shuffles by value identity and by LSH band key, candidate pairs verified and joined into
  clusters on the driver (:mod:`prefkit.ray.dedup`); ``decontaminate`` row-wise with the
  reference broadcast.
- ``score``: ``pk.score`` on actors that each load the model once, on ``num_gpus`` GPUs
  (:mod:`prefkit.ray.scoring`).

A Ray Dataset has no global row numbers, so give the operations a ``row`` column (integers,
the input order, e.g. written by the producer). The group-wise operations put a bucket back in
that order (ties rank by input order, as in memory) and ``chosen_row``/``rejected_row``/``rows``
hold its values; without ``row`` those columns are dropped and ties rank in Ray's order.
``dedup``, ``find_duplicates`` and ``split`` need it (default ``"row"``): the first row of a
cluster is the one with the smallest ``row``. Results hold the same rows as the single-process
operations, in no particular order; text columns are plain strings (Ray concatenates and
serialises blocks), and the provenance record is not kept (Ray keeps no table metadata): count
rows on the result. The decisions are in ``docs/ray.md``.

Examples
--------
>>> import ray, prefkit.ray as pkr  # doctest: +SKIP
>>> ds = ray.data.read_parquet("data/")  # with an int64 "row" column  # doctest: +SKIP
>>> pairs = pkr.mine_pairs(ds, row="row", strategy="all_pairs")  # doctest: +SKIP
>>> unique = pkr.dedup(ds, columns="prompt", method="minhash")  # doctest: +SKIP
>>> scored = pkr.score(unique, "path/to/rm", num_gpus=1, concurrency=4)  # doctest: +SKIP
>>> scored.write_parquet("scored/")  # doctest: +SKIP
"""

from prefkit.ray._common import _ray  # noqa: F401  (the CLI starts Ray through it)
from prefkit.ray.dedup import decontaminate, dedup, find_duplicates, split
from prefkit.ray.groupwise import build_trees, mine_pairs, order_curriculum, rank_lists
from prefkit.ray.scoring import score

__all__ = [
    "build_trees",
    "decontaminate",
    "dedup",
    "find_duplicates",
    "mine_pairs",
    "order_curriculum",
    "rank_lists",
    "score",
    "split",
]
