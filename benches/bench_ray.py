"""prefkit.ray with 2 local workers vs the single process, on the same shuffled corpus.

The corpus is ``bench_stream``'s (datagen text, ~1.3 KB per response, every prompt's rows
spread over all files, ``--dup-rate`` of the responses planted near-duplicates) with an int64 ``row`` column added (the input order, files in sorted
order), which the Ray operations need. Two operations, each in a fresh subprocess so that
peak RSS is its own:

- ``mine_pairs(strategy="all_pairs")``;
- ``dedup(columns="response", method="minhash")`` (defaults: 5-grams, 128 permutations,
  threshold 0.8).

``memory`` reads the corpus whole (``pk.read_table``), runs the operation and writes the
result with ``pk.write_table``; ``ray`` starts a local Ray with 2 CPUs, reads the corpus with
``ray.data.read_parquet`` and writes the result with ``write_parquet``. The time of ``ray``
leaves out Ray's start; its peak RSS is the driver's only (the workers are other processes).

Reported: wall time, input rows per second, driver peak RSS (``VmHWM``), output rows.

Examples
--------
::

    python benches/bench_ray.py --gigabytes 0.5
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_stream import _peak_rss, write_corpus

OPERATIONS = ("pairs", "minhash")


def numbered_corpus(
    root: Path, gigabytes: float, responses: int, files: int, seed: int, dup_rate: float
) -> Path:
    """bench_stream's corpus (the same folder name) with a ``row`` column, written once."""
    plain = root / f"corpus-{gigabytes:g}gb-r{responses}-d{dup_rate:g}"
    corpus = plain.with_name(plain.name + "-rows")
    if corpus.exists():
        return corpus
    if not plain.exists():
        partial = plain.with_name(plain.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_corpus(partial, gigabytes, responses, files, seed, dup_rate)
        partial.rename(plain)
    partial = corpus.with_name(corpus.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    offset = 0
    for path in sorted(plain.glob("*.parquet")):
        table = pq.read_table(path)
        rows = pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
        pq.write_table(table.append_column("row", rows), partial / path.name)
        offset += table.num_rows
    partial.rename(corpus)
    return corpus


def child(mode: str, operation: str, corpus: str, out: str) -> None:
    """One measured run (in its own process, so peak RSS is its own); prints a JSON line."""
    import prefkit as pk
    import pyarrow.dataset as ds

    rows_in = ds.dataset(corpus).count_rows()
    if mode == "ray":
        import prefkit.ray as pkr
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter()  # without Ray's start
        data = ray.data.read_parquet(corpus)
        if operation == "pairs":
            result = pkr.mine_pairs(data, row="row", strategy="all_pairs")
        else:
            result = pkr.dedup(data, columns="response", method="minhash")
        result.write_parquet(out)
        elapsed = time.perf_counter() - started
    else:
        started = time.perf_counter()
        table = pk.read_table(corpus)
        if operation == "pairs":
            result = pk.mine_pairs(table, strategy="all_pairs")
        else:
            result = pk.dedup(table, columns="response", method="minhash")
        pk.write_table(result, Path(out) / "result.parquet")
        elapsed = time.perf_counter() - started
    record = {
        "mode": mode,
        "operation": operation,
        "seconds": elapsed,
        "rows_in": rows_in,
        "rows_out": ds.dataset(out).count_rows(),
        "peak_rss": _peak_rss(),
    }
    print(json.dumps(record))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=0.5, help="text on disk (default 0.5)")
    parser.add_argument("--responses", type=int, default=4, help="responses per prompt")
    parser.add_argument("--files", type=int, default=32, help="Parquet files")
    parser.add_argument("--data", default="bench-data/stream", help="corpus/output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dup-rate", type=float, default=0.03, help="planted near-duplicate responses"
    )
    parser.add_argument("--operations", nargs="+", default=list(OPERATIONS), choices=OPERATIONS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    root = Path(args.data)
    corpus = numbered_corpus(
        root, args.gigabytes, args.responses, args.files, args.seed, args.dup_rate
    )
    on_disk = sum(p.stat().st_size for p in corpus.glob("*.parquet"))
    print(f"corpus {corpus}: {on_disk / 1e9:.2f} GB of Parquet on disk")
    results = []
    for operation in args.operations:
        for mode in ("memory", "ray"):
            out = root / f"out-ray-bench-{mode}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            command = [sys.executable, __file__, "--child", mode, operation, str(corpus), str(out)]
            line = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(line.strip().splitlines()[-1]))
            shutil.rmtree(out, ignore_errors=True)
    print("| operation | mode | wall s | input rows/s | driver peak RSS GB | rows out |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['operation']} | {r['mode']} | {r['seconds']:.1f} | "
            f"{r['rows_in'] / r['seconds']:,.0f} | {r['peak_rss'] / 1e9:.2f} | {r['rows_out']:,} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
