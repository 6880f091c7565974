"""Side-by-side benchmark of deduplication: prefkit vs rensa vs datasketch, exact vs polars.

Corpus (``make``, cached as Parquet in ``bench-data/``): ``--docs`` documents of ``--words``
words drawn from a Zipf vocabulary (``benches/datagen.py``'s word list: pseudo-words plus a few
non-ASCII ones), of which ``--dup-rate`` are planted near-duplicates: an earlier document with
0 to 6 random words replaced (true Jaccard of word 5-gram sets from 1.0 down to about 0.75),
at a random later position. Columns: ``i`` (row number), ``text``, ``source`` (the planted
copy's original row, -1 otherwise) and ``jaccard`` (its true 5-gram Jaccard similarity).

Tools, each end to end from the Arrow text column to a table of the kept rows, with
num_perm=128 and threshold=0.8:

- ``prefkit``: ``pk.dedup(t, columns="text", method="minhash")`` (normalised word 5-grams,
  LSH bands chosen for the threshold, candidates verified);
- ``prefkit-words``: the same with ``normalize=False``: words split on whitespace only, the
  tokens the two peers are given (no NFKC, lowercasing or punctuation stripping);
- ``rensa``: ``RMinHashDeduplicator(threshold=0.8, num_perm=128, use_lsh=True).add_pairs``
  over ``text.split()`` word tokens, as rensa's README shows;
- ``datasketch``: ``MinHash(num_perm=128).update_batch`` over the same word tokens, then
  ``MinHashLSH(threshold=0.8)``: query, insert when nothing is found;
- exact: ``pk.dedup(t, columns="text", normalize=False)`` vs polars
  ``unique(subset="text", keep="first", maintain_order=True)``.

Every (tool, size) runs in a fresh subprocess that loads the corpus, resets the kernel's peak
RSS, runs ``--repeats`` times and reports the median time and the peak RSS (VmHWM). Recall is
the fraction of planted copies with true Jaccard >= 0.9 that are dropped (for exact dedup:
planted exact copies); precision the fraction of dropped rows that are planted copies with
true Jaccard >= 0.7.

Example (the README's table)::

    python benches/bench_dedup.py --docs 100000 --subset 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pairs import _reset_peak, _vm_hwm

MINHASH_TOOLS = ("prefkit", "prefkit-words", "rensa", "datasketch")
EXACT_TOOLS = ("prefkit-exact", "polars-unique")


def make(path: Path, docs: int, words: int, dup_rate: float, seed: int) -> None:
    """Write the corpus described in the module docstring to ``path``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datagen import _vocabulary

    rng = np.random.default_rng(seed)
    vocabulary = np.array(_vocabulary(rng, 8192), dtype=object)
    weights = 1.0 / np.arange(2.7, len(vocabulary) + 2.7) ** 1.05
    weights /= weights.sum()
    planted = int(docs * dup_rate)
    tokens = rng.choice(len(vocabulary), size=(docs, words), p=weights)
    source = np.full(docs, -1)
    # Copies go to random rows; each copies an earlier row that is not a copy itself.
    copies = np.sort(rng.choice(np.arange(1, docs), size=planted, replace=False))
    originals = set(range(docs)) - set(copies.tolist())
    for row in copies:
        original = int(rng.integers(0, row))
        while original not in originals:
            original = int(rng.integers(0, row))
        source[row] = original
        tokens[row] = tokens[original]
        edits = int(rng.integers(0, 7))
        tokens[row, rng.choice(words, size=edits, replace=False)] = rng.choice(
            len(vocabulary), size=edits, p=weights
        )
    texts = [" ".join(vocabulary[row]) for row in tokens]

    def grams(row: int) -> set:
        return {tuple(tokens[row, k : k + 5]) for k in range(words - 4)}

    jaccard = np.zeros(docs)
    for row in copies:
        a, b = grams(int(source[row])), grams(int(row))
        jaccard[row] = len(a & b) / len(a | b)
    table = pa.table({"i": np.arange(docs), "text": texts, "source": source, "jaccard": jaccard})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def run_tool(tool: str, table: Any) -> Any:
    """Dedup the ``text`` column of ``table`` with ``tool``; the kept rows as a table."""
    import pyarrow as pa

    if tool in ("prefkit", "prefkit-words"):
        import prefkit as pk

        return pk.dedup(
            table,
            columns="text",
            method="minhash",
            num_perm=128,
            threshold=0.8,
            normalize=tool == "prefkit",
        )
    if tool == "prefkit-exact":
        import prefkit as pk

        return pk.dedup(table, columns="text", normalize=False)
    if tool == "polars-unique":
        import polars as pl

        frame = pl.from_arrow(table)
        return frame.unique(subset="text", keep="first", maintain_order=True)
    texts = table.column("text").to_pylist()
    if tool == "rensa":
        from rensa import RMinHashDeduplicator

        dedup = RMinHashDeduplicator(threshold=0.8, num_perm=128, use_lsh=True)
        keep = dedup.add_pairs((str(i), text.split()) for i, text in enumerate(texts))
        return table.filter(pa.array(keep))
    if tool == "datasketch":
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=0.8, num_perm=128)
        keep = []
        for i, text in enumerate(texts):
            sketch = MinHash(num_perm=128)
            sketch.update_batch([w.encode() for w in text.split()])
            duplicate = bool(lsh.query(sketch))
            if not duplicate:
                lsh.insert(str(i), sketch)
            keep.append(not duplicate)
        return table.filter(pa.array(keep))
    raise ValueError(tool)


def worker(args: argparse.Namespace) -> None:
    """Time one tool on the first ``args.rows`` rows in this fresh process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(args.corpus).slice(0, args.rows)
    table = pa.Table.from_batches(table.combine_chunks().to_batches())
    _reset_peak()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        kept = run_tool(args.worker, table)
        times.append(time.perf_counter() - started)
    kept_rows = set(pa.table(kept)["i"].to_pylist())  # polars frames too
    dropped = sorted(set(range(table.num_rows)) - kept_rows)
    print(json.dumps({"seconds": statistics.median(times), "peak": _vm_hwm(), "dropped": dropped}))


def quality(tool: str, dropped: list[int], source: list[int], jaccard: list[float]) -> tuple:
    """Recall and precision of the dropped rows against the planted copies."""
    exact = tool in EXACT_TOOLS
    wanted = [
        r
        for r, s in enumerate(source)
        if s >= 0 and (jaccard[r] == 1.0 if exact else jaccard[r] >= 0.9)
    ]
    found = set(dropped)
    recall = sum(r in found for r in wanted) / max(1, len(wanted))
    good = sum(source[r] >= 0 and jaccard[r] >= (1.0 if exact else 0.7) for r in dropped)
    return recall, good / max(1, len(dropped))


def measure(args: argparse.Namespace, corpus: Path, tool: str, rows: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        tool,
        "--rows",
        str(rows),
        "--corpus",
        str(corpus),
        "--repeats",
        str(args.repeats),
    ]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def driver(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    corpus = (
        Path(args.data_dir) / f"dedup-{args.docs}x{args.words}-{args.dup_rate}-{args.seed}.parquet"
    )
    if not corpus.exists():
        print(f"generating {corpus} ...", file=sys.stderr)
        make(corpus, args.docs, args.words, args.dup_rate, args.seed)
    meta = pq.read_table(corpus, columns=["source", "jaccard"])
    source, jaccard = meta["source"].to_pylist(), meta["jaccard"].to_pylist()
    runs = [(t, args.docs) for t in ("prefkit", "prefkit-words", "rensa", *EXACT_TOOLS)]
    runs += [(t, args.subset) for t in MINHASH_TOOLS]
    lines = [
        "| documents | tool | median time (s) | docs/s | time / prefkit's | recall | precision | peak RSS (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    baseline: dict[int, float] = {}
    for tool, rows in runs:
        print(f"{tool} on {rows} documents ...", file=sys.stderr)
        result = measure(args, corpus, tool, rows)
        recall, precision = quality(tool, result["dropped"], source[:rows], jaccard[:rows])
        seconds = result["seconds"]
        if tool in ("prefkit", "prefkit-exact"):
            baseline[rows, tool] = seconds
        base = baseline.get((rows, "prefkit-exact" if tool in EXACT_TOOLS else "prefkit"))
        ratio = f"{seconds / base:.1f}x" if base else "-"
        peak = result["peak"] / 2**20
        lines.append(
            f"| {rows:,} | {tool} | {seconds:.3f} | {rows / seconds:,.0f} | {ratio} | "
            f"{recall:.3f} | {precision:.3f} | {peak:,.0f} |"
        )
        print(lines[-1], file=sys.stderr)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--subset", type=int, default=10_000, help="rows for datasketch")
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--dup-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(HERE.parent / "bench-data"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
