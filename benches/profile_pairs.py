"""Profile ``pk.mine_pairs`` on a benchmark corpus: phase times, and a steady loop for ``perf``.

Phases of one call: the input conversion (``as_table``), the Rust core (``_core.mine_pairs``,
wall and CPU time), and the Python wrapper's provenance. With ``--perf-wait`` the script warms
up (thread pool, allocator), freezes the garbage collector and writes a ready file before its
loop, so that a profiler attached then sees the steady state only, worker threads included::

    python benches/profile_pairs.py --strategy all_pairs --loops 15 --perf-wait /tmp/ready &
    while [ ! -f /tmp/ready ]; do sleep 0.1; done
    perf record -F 1999 -g -p $! -o /tmp/perf.data -- sleep 5
    perf report -i /tmp/perf.data --no-children --sort symbol --stdio -g none | head -40

The corpus is the Parquet file ``bench_pairs.py`` writes (``bench-data/corpus-*.parquet``).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pairs import ROOT, _load


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "bench-data/corpus-125000x8-seed0.parquet"))
    parser.add_argument("--strategy", default="best_vs_worst")
    parser.add_argument("--loops", type=int, default=5)
    parser.add_argument("--perf-wait", metavar="FILE", help="write FILE when the loop starts")
    args = parser.parse_args(argv)

    import pyarrow as pa
    from prefkit import _core
    from prefkit._provenance import attach
    from prefkit.io import as_table

    df = _load(Path(args.data), None)
    params = {
        "prompt": "prompt", "response": "response", "score": ["score"], "group": None,
        "strategy": args.strategy, "k": 1, "min_margin": 0.0, "ties": "drop", "nan": "drop",
        "max_pairs_per_prompt": None, "length_penalty": 0.0, "seed": 0, "carry": [],
    }
    if args.perf_wait:
        table = as_table(df)
        _core.mine_pairs(table, **params)  # warm-up: thread pool, allocator arenas
        gc.collect()
        gc.freeze()
        Path(args.perf_wait).write_text("ready")
    for _ in range(args.loops):
        t0 = time.perf_counter()
        table = as_table(df)
        t1 = time.perf_counter()
        c1 = _cpu()
        result, accounting = _core.mine_pairs(table, **params)
        t2 = time.perf_counter()
        c2 = _cpu()
        out = attach(pa.table(result), "mine_pairs", params, accounting, source=table)
        t3 = time.perf_counter()
        print(f"as_table {t1 - t0:.3f} s | core {t2 - t1:.3f} s wall, {c2 - c1:.3f} s CPU | "
              f"wrap {t3 - t2:.3f} s | {out.num_rows} pairs | load {os.getloadavg()[0]:.1f}",
              flush=True)
        del result, out
    return 0


if __name__ == "__main__":
    sys.exit(main())
