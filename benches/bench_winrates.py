"""Side-by-side benchmark of the win-rate operations: prefkit vs polars (and numpy for cycles).

The corpus is what ``pk.score_pairwise`` writes for 125k prompts x 8 responses: one row per
prompt with ``prompt`` (~80 characters), ``responses`` (8 texts of ~200 characters), ``rows``,
``group_id`` and ``win_prob`` (8 x 8, list<list<float64>>), cached as Parquet in ``bench-data/``.
The matrices are a Bradley-Terry judge with noise, ``P[a][b] = sigmoid(s_a - s_b + e_ab)`` with
``e`` antisymmetric, rounded to multiples of 1/1024 and completed as ``P[b][a] = 1 - P[a][b]``:
every sum of a row is then exact in float64 whatever the summation order, so the tools can be
compared row for row, and a few percent of triads are 3-cycles.

Workloads and tools (each tool gives the same rows, checked before timing):

- ``win_rates``: one row per response with ``win_rate, borda, copeland, rank``.
  - ``prefkit``: ``pk.win_rates(df)`` (text copied into ``large_string``); ``prefkit-views``:
    ``views=True`` (``string_view`` into the input's buffers, as polars holds text).
  - ``polars``: ``explode`` of the per-prompt lists, then list expressions per response row:
    ``borda = list.sum() - list.get(a)`` (the diagonal removed), ``copeland`` from
    ``list.eval`` sign counts against 1/2 (the same as ``P[a][b] > P[b][a]`` for a consistent
    matrix) minus the diagonal's, ``rank`` by ``rank("ordinal", descending=True).over(group)``.
- ``win_rate_pairs`` (``best_vs_worst``) and ``win_rate_pairs_all`` (``all_pairs``): pairs by
  win rate with the input rows.
  - ``prefkit``: ``pk.win_rate_pairs(df, strategy=...)``; ``prefkit-views``: ``views=True``.
  - ``polars``: the polars ``win_rates`` plan above, then ``benches/bench_pairs.py``'s fastest
    polars plans of the same strategy on the long frame, rows mapped back by a gather.
- ``intransitivity``: 3-cycles per prompt.
  - ``prefkit``: ``pk.intransitivity(df)``.
  - ``numpy``: the matrices flattened to one ``(n, 8, 8)`` array, ``B = P > P^T``, cycles =
    ``trace(B^3) / 3`` by ``einsum`` (what one writes with an array library; polars has no
    vectorised form of a triple loop over list elements).

Every (workload, tool) runs in a fresh subprocess that loads the corpus as a polars DataFrame,
resets the peak-RSS counter, runs ``--warmup`` untimed and ``--repeats`` timed calls, and reports
the median wall time and the peak RSS above the loaded input (as ``benches/bench_lists_trees.py``).

Examples
--------
Full size, as in the README and docs/winrates.md::

    python benches/bench_winrates.py --prompts 125000 --warmup 1 --repeats 5

A quick run::

    python benches/bench_winrates.py --prompts 2000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench_lists_trees import _peak, _reset_peak, _rss
from bench_pairs import polars_all_pairs, polars_best_vs_worst

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "bench-data"
K = 8


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def corpus(prompts: int, seed: int = 0) -> Path:
    """Win matrices of ``prompts`` x 8 responses as Parquet (built once, then cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA / f"winrates_{prompts}x{K}.parquet"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    strength = rng.normal(size=(prompts, K))
    noise = rng.normal(scale=1.5, size=(prompts, K, K))
    logits = strength[:, :, None] - strength[:, None, :] + noise - noise.transpose(0, 2, 1)
    p = np.round(1024.0 / (1.0 + np.exp(-logits))) / 1024.0
    upper = np.triu(np.ones((K, K), dtype=bool), 1)
    p = np.where(upper, p, 1.0 - p.transpose(0, 2, 1))  # exact complement below the diagonal
    p[:, np.arange(K), np.arange(K)] = 0.5
    words = np.array(["alpha", "beta", "gamma", "delta", "sigma", "omega", "théta", "ψ", "data",
                      "model", "reward", "policy", "prompt", "answer", "because", "then"])

    def texts(count: int, length: int) -> pa.Array:
        picks = words[rng.integers(0, len(words), size=(count, length))]
        return pa.array([" ".join(row) for row in picks], pa.large_string())

    flat = pa.array(p.reshape(-1))
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, prompts * K * K + 1, K, np.int32)), flat)
    offsets = pa.array(np.arange(0, prompts * K + 1, K, np.int32))
    table = pa.table({
        "prompt": texts(prompts, 12),
        "responses": pa.ListArray.from_arrays(offsets, texts(prompts * K, 30)),
        "rows": pa.ListArray.from_arrays(offsets, pa.array(np.arange(prompts * K, dtype=np.int64))),
        "group_id": pa.array(np.arange(prompts, dtype=np.uint64)),
        "win_prob": pa.ListArray.from_arrays(offsets, inner),
    })
    pq.write_table(table, path)
    return path


# --------------------------------------------------------------------------------------------
# Implementations: each takes the polars DataFrame of matrices
# --------------------------------------------------------------------------------------------


def win_rates_prefkit(df: Any, views: bool = False) -> Any:
    import prefkit as pk

    return pk.win_rates(df, views=views)


def win_rates_prefkit_views(df: Any) -> Any:
    return win_rates_prefkit(df, views=True)


def win_rates_polars(df: Any) -> Any:
    """The long form by explode and list expressions (module docstring)."""
    import polars as pl

    cells = pl.col("win_prob")
    a = pl.col("a")
    diagonal = cells.list.get(a)

    def sign(x: Any) -> Any:
        return (x > 0.5).cast(pl.Int64) - (x < 0.5).cast(pl.Int64)

    borda = cells.list.sum() - diagonal
    return (
        df.lazy()
        .with_columns(a=pl.int_ranges(pl.col("responses").list.len()))
        .explode("responses", "rows", "win_prob", "a")
        .select(
            "prompt",
            response="responses",
            row="rows",
            win_rate=borda / (cells.list.len() - 1),
            borda=borda,
            copeland=cells.list.eval(sign(pl.element())).list.sum() - sign(diagonal),
            group_id="group_id",
        )
        .with_columns(
            rank=pl.col("win_rate").rank("ordinal", descending=True).over("group_id").cast(
                pl.Int64)
        )
        .collect()
    )


def _pairs_polars(df: Any, plan: Any) -> Any:
    """A bench_pairs polars plan over the polars long form, rows mapped to the input's."""
    import polars as pl

    long = win_rates_polars(df)
    pairs = plan(long.select("prompt", "response", score="win_rate"))
    row = long.get_column("row")
    return pairs.with_columns(
        chosen_row=row.gather(pairs.get_column("chosen_row")),
        rejected_row=row.gather(pairs.get_column("rejected_row")),
        group_id=long.get_column("group_id").gather(pairs.get_column("chosen_row")).cast(
            pl.UInt64),
    )


def pairs_prefkit(df: Any, views: bool = False) -> Any:
    import prefkit as pk

    return pk.win_rate_pairs(df, strategy="best_vs_worst", views=views)


def pairs_prefkit_views(df: Any) -> Any:
    return pairs_prefkit(df, views=True)


def pairs_polars(df: Any) -> Any:
    return _pairs_polars(df, polars_best_vs_worst)


def all_pairs_prefkit(df: Any, views: bool = False) -> Any:
    import prefkit as pk

    return pk.win_rate_pairs(df, strategy="all_pairs", views=views)


def all_pairs_prefkit_views(df: Any) -> Any:
    return all_pairs_prefkit(df, views=True)


def all_pairs_polars(df: Any) -> Any:
    return _pairs_polars(df, polars_all_pairs)


def cycles_prefkit(df: Any) -> Any:
    import prefkit as pk

    return pk.intransitivity(df)


def cycles_numpy(df: Any) -> Any:
    """3-cycles per prompt as ``trace(B^3) / 3`` over one (n, K, K) array (equal K)."""
    import pyarrow.compute as pc

    column = df.to_arrow().column("win_prob").combine_chunks()
    p = pc.list_flatten(pc.list_flatten(column)).to_numpy().reshape(len(column), K, K)
    beats = (p > p.transpose(0, 2, 1)).astype(np.int32)
    return np.einsum("nab,nbc,nca->n", beats, beats, beats) // 3


IMPLEMENTATIONS = {
    "win_rates": {"prefkit": win_rates_prefkit, "prefkit-views": win_rates_prefkit_views,
                  "polars": win_rates_polars},
    "win_rate_pairs": {"prefkit": pairs_prefkit, "prefkit-views": pairs_prefkit_views,
                       "polars": pairs_polars},
    "win_rate_pairs_all": {"prefkit": all_pairs_prefkit,
                           "prefkit-views": all_pairs_prefkit_views, "polars": all_pairs_polars},
    "intransitivity": {"prefkit": cycles_prefkit, "numpy": cycles_numpy},
}


def _count(out: Any) -> int:
    return out.num_rows if hasattr(out, "num_rows") else len(out)


# --------------------------------------------------------------------------------------------
# Check, workers, driver
# --------------------------------------------------------------------------------------------


def check(path: str) -> dict:
    """The tools agree on the first 4000 prompts: same rows, same values."""
    import polars as pl

    df = pl.read_parquet(path).head(4000)
    fields = ["prompt", "response", "row", "win_rate", "borda", "copeland", "rank", "group_id"]
    assert win_rates_prefkit(df).select(fields).to_pylist() == win_rates_polars(df).select(
        fields).to_dicts()
    fields = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "chosen_row",
              "rejected_row"]
    counts = {}
    for name, prefkit_fn, polars_fn in (("pairs", pairs_prefkit, pairs_polars),
                                        ("all_pairs", all_pairs_prefkit, all_pairs_polars)):
        ours = prefkit_fn(df).select(fields).to_pylist()
        assert ours == prefkit_fn(df, views=True).select(fields).to_pylist(), name
        assert ours == polars_fn(df).select(fields).to_dicts(), name
        counts[name] = len(ours)
    cycles = cycles_prefkit(df).column("cycles").to_pylist()
    assert cycles == cycles_numpy(df).tolist()
    counts["cycles"] = sum(cycles)
    return {"agree": True, "prompts": df.height, **counts}


def worker(workload: str, tool: str, path: str, repeats: int, warmup: int) -> dict:
    import polars as pl

    df = pl.read_parquet(path).rechunk()
    import prefkit  # noqa: F401  (import cost outside the timing, for every tool alike)

    baseline = _rss()
    reset = _reset_peak()
    function = IMPLEMENTATIONS[workload][tool]
    times = []
    for _ in range(warmup + repeats):
        started = time.perf_counter()
        out = function(df)
        times.append(time.perf_counter() - started)
        count = _count(out)
        del out
    return {
        "workload": workload,
        "tool": tool,
        "prompts": df.height,
        "median_s": statistics.median(times[warmup:]),
        "times": times[warmup:],
        "rows_out": count,
        "peak_over_input_mb": (_peak() - baseline) / 2**20 if reset else None,
    }


def _subprocess(arguments: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{arguments}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(results: list[dict]) -> str:
    lines = [
        "| workload | tool | median time | speed-up vs the peer | rows out | peak RSS over input |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for workload in IMPLEMENTATIONS:
        rows = [r for r in results if r["workload"] == workload]
        peer = next(r["median_s"] for r in rows if not r["tool"].startswith("prefkit"))
        for r in rows:
            speedup = f"{peer / r['median_s']:.2f}x"
            peak = r["peak_over_input_mb"]
            peak = f"{peak:,.0f} MB" if peak is not None else "n/a"
            lines.append(
                f"| {workload} ({r['prompts']:,} x {K}) | {r['tool']} | {r['median_s']:.3f} s | "
                f"{speedup} | {r['rows_out']:,} | {peak} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--workloads", nargs="+", default=list(IMPLEMENTATIONS))
    parser.add_argument("--worker", nargs=3, metavar=("WORKLOAD", "TOOL", "PATH"))
    parser.add_argument("--check", metavar="PATH")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.warmup)))
        return 0
    if args.check:
        print(json.dumps(check(args.check)))
        return 0
    path = str(corpus(args.prompts))
    print(_subprocess(["--check", path]), file=sys.stderr)
    results = []
    for workload in args.workloads:
        for tool in IMPLEMENTATIONS[workload]:
            result = _subprocess(["--worker", workload, tool, path, "--repeats",
                                  str(args.repeats), "--warmup", str(args.warmup)])
            print(json.dumps(result), file=sys.stderr)
            results.append(result)
    import polars as pl
    import prefkit
    import pyarrow as pa

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; prefkit "
        f"{prefkit.__version__}, polars {pl.__version__}, pyarrow {pa.__version__}, numpy "
        f"{np.__version__}; median of {args.repeats} runs after {args.warmup} untimed, each "
        f"tool in a fresh process\n"
    )
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
