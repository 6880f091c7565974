"""Out-of-core pair mining and MinHash dedup: streaming with a memory limit vs in memory.

A generator writes a shuffled corpus (``benches/datagen.py`` text, ~1.3 KB per response) as
many Parquet files: prompts are generated in blocks, each block's rows are shuffled and spread
over every file, so a prompt's rows are scattered across files (non-contiguous input, which
forces the two-pass partitioned mode). ``--dup-rate`` of the responses (default 3%) are
planted near-duplicates: another response of the same block with 1 to 3 words replaced,
scattered like everything else. Then, each in a fresh subprocess, for ``--op``:

- ``pairs`` (default): ``pk.mine_pairs(..., strategy="all_pairs")``;
- ``dedup``: ``pk.dedup(..., columns="response", method="minhash", num_perm=128,
  threshold=0.8)``;

in the modes

- ``stream``: the operation on the folder with ``memory_limit=...`` and ``out=...``;
- ``memory``: the operation on ``pk.read_table(folder)``, then ``pk.write_table`` of the
  result, the same work with everything in memory (only where the corpus fits:
  ``--skip-memory`` otherwise).

- ``ray`` (``--ray``): ``prefkit.ray.mine_pairs`` on ``ray.data.read_parquet(folder)`` with a
  local Ray of 2 CPUs, written with ``write_parquet``; the time leaves out Ray's start, and
  the peak RSS is the driver's only (the workers are other processes).

Reported: wall time, input rows per second, peak RSS (``VmHWM``), output rows.

Examples
--------
::

    python benches/bench_stream.py --gigabytes 1 --memory-limit 2GB
    python benches/bench_stream.py --gigabytes 1 --memory-limit 2GB --op dedup
    python benches/bench_stream.py --gigabytes 20 --memory-limit 2GB --skip-memory
    python benches/bench_stream.py --gigabytes 20 --memory-limit 2GB --skip-memory --op dedup
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
#: Bytes of text per response row of datagen's defaults (300 + 1000 characters, some UTF-8).
ROW_BYTES = 1350
#: Prompts generated (and shuffled) at a time.
BLOCK_PROMPTS = 16_384


def plant_near_duplicates(table: pa.Table, rate: float, rng: np.random.Generator) -> pa.Table:
    """Replace ``rate`` of the responses by another response of ``table`` with 1 to 3 of its
    words replaced by words of a third one (true Jaccard of word 5-grams about 0.75-0.95)."""
    n = table.num_rows
    planted = rng.choice(n, size=int(n * rate), replace=False)
    responses = table.column("response").to_pylist()
    for row in planted.tolist():
        words = responses[int(rng.integers(n))].split(" ")
        donor = responses[int(rng.integers(n))].split(" ")
        for _ in range(int(rng.integers(1, 4))):
            words[int(rng.integers(len(words)))] = donor[int(rng.integers(len(donor)))]
        responses[row] = " ".join(words)
    index = table.schema.get_field_index("response")
    column = pa.array(responses, table.schema.field(index).type)
    return table.set_column(index, table.schema.field(index), column)


def write_corpus(
    folder: Path, gigabytes: float, responses: int, files: int, seed: int, dup_rate: float
) -> int:
    """Write a shuffled corpus of about ``gigabytes`` of text into ``files`` Parquet files."""
    sys.path.insert(0, str(HERE))
    from datagen import generate

    folder.mkdir(parents=True, exist_ok=True)
    rows_wanted = int(gigabytes * 1e9 / ROW_BYTES)
    prompts = max(1, rows_wanted // responses)
    rng = np.random.default_rng(seed)
    writers: list[pq.ParquetWriter] = []
    rows = 0
    for block, start in enumerate(range(0, prompts, BLOCK_PROMPTS)):
        n = min(BLOCK_PROMPTS, prompts - start)
        table = generate(prompts=n, responses=responses, seed=seed * 100_003 + block).to_arrow()
        # Plain strings, as most Parquet producers write them.
        table = table.cast(
            pa.schema(
                [f.with_type(pa.large_string()) if f.name != "score" else f for f in table.schema]
            )
        )
        table = plant_near_duplicates(table, dup_rate, rng)
        table = table.take(rng.permutation(table.num_rows))
        if not writers:
            writers = [
                pq.ParquetWriter(folder / f"part-{i:04d}.parquet", table.schema)
                for i in range(files)
            ]
        step = -(-table.num_rows // files)
        for i, writer in enumerate(writers):
            piece = table.slice(i * step, step)
            if piece.num_rows:
                writer.write_table(piece)
        rows += table.num_rows
        print(f"  generated {rows} rows", file=sys.stderr, end="\r")
    for writer in writers:
        writer.close()
    print(file=sys.stderr)
    return rows


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


#: The measured operation of each ``--op`` and its options.
OPS = {
    "pairs": ("mine_pairs", {"strategy": "all_pairs"}),
    "dedup": (
        "dedup",
        {"columns": "response", "method": "minhash", "num_perm": 128, "threshold": 0.8},
    ),
}


def child(mode: str, corpus: str, out: str, memory_limit: str, op: str = "pairs") -> None:
    """One measured run (in its own process, so peak RSS is its own)."""
    import prefkit as pk

    name, options = OPS[op]
    run = getattr(pk, name)
    started = time.perf_counter()
    if mode == "stream":
        result = run(corpus, memory_limit=memory_limit, out=out, **options)
    elif mode == "ray":
        if op != "pairs":
            raise SystemExit("--ray measures --op pairs only")
        import prefkit.ray as pkr
        import pyarrow.dataset as ds
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter()  # without Ray's start (about a minute here)
        pkr.mine_pairs(ray.data.read_parquet(corpus), strategy="all_pairs").write_parquet(out)
        elapsed = time.perf_counter() - started
        pairs = ds.dataset(out).count_rows()
        rows = ds.dataset(corpus).count_rows()
        print(
            json.dumps(
                {
                    "mode": mode,
                    "seconds": elapsed,
                    "rows_in": rows,
                    "rows_out": pairs,
                    "peak_rss": _peak_rss(),
                    "streaming": None,
                }
            )
        )
        return
    else:
        result = run(pk.read_table(corpus), **options)
        pk.write_table(result, Path(out) / "result.parquet")
    elapsed = time.perf_counter() - started
    record = pk.report_of(result)
    print(
        json.dumps(
            {
                "mode": mode,
                "seconds": elapsed,
                "rows_in": record["rows_in"],
                "rows_out": record["rows_out"],
                "peak_rss": _peak_rss(),
                "streaming": record.get("streaming"),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="text on disk (default 1)")
    parser.add_argument("--responses", type=int, default=4, help="responses per prompt")
    parser.add_argument("--files", type=int, default=32, help="Parquet files")
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--data", default="bench-data/stream", help="corpus/output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-memory", action="store_true", help="no in-memory run")
    parser.add_argument(
        "--ray", action="store_true", help="also prefkit.ray with 2 local CPUs (needs ray)"
    )
    parser.add_argument("--op", choices=sorted(OPS), default="pairs", help="measured operation")
    parser.add_argument(
        "--dup-rate", type=float, default=0.03, help="planted near-duplicate responses"
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    root = Path(args.data)
    corpus = root / f"corpus-{args.gigabytes:g}gb-r{args.responses}-d{args.dup_rate:g}"
    if not corpus.exists():
        started = time.perf_counter()
        partial = corpus.with_name(corpus.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        rows = write_corpus(
            partial, args.gigabytes, args.responses, args.files, args.seed, args.dup_rate
        )
        partial.rename(corpus)
        print(f"wrote {rows} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    on_disk = sum(p.stat().st_size for p in corpus.glob("*.parquet"))
    print(f"corpus {corpus}: {on_disk / 1e9:.2f} GB of Parquet on disk")
    modes = ["stream"] if args.skip_memory else ["stream", "memory"]
    modes += ["ray"] if args.ray else []
    results = []
    for mode in modes:
        out = root / f"out-{mode}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        command = [
            sys.executable,
            __file__,
            "--child",
            mode,
            str(corpus),
            str(out),
            args.memory_limit,
            args.op,
        ]
        line = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(line.strip().splitlines()[-1])
        results.append(result)
        shutil.rmtree(out, ignore_errors=True)
    print(f"| {args.op} mode | wall s | rows/s | peak RSS GB | rows out | chunks |")
    print("|---|---|---|---|---|---|")
    for r in results:
        chunks = (r["streaming"] or {}).get("chunks")
        print(
            f"| {r['mode']} | {r['seconds']:.1f} | {r['rows_in'] / r['seconds']:,.0f} | "
            f"{r['peak_rss'] / 1e9:.2f} | {r['rows_out']:,} | {chunks} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
