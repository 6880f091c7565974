"""Peak memory of out-of-core ``mine_pairs`` against its ``memory_limit``, on adversarial keys.

Each case writes a Parquet file of rated responses whose prompts follow one key distribution,
then runs ``pk.mine_pairs(path, memory_limit=..., out=folder)`` in a fresh subprocess (the
result goes to disk, so what is measured is the working memory, not the result) and reads the
child's own peak RSS (``ru_maxrss``). The baseline is the peak RSS of an idle child that
imports prefkit and the pyarrow modules a streaming run loads, and does nothing else; the
table shows the peak over that baseline and its ratio to the limit.

Cases (keys of the input rows, shuffled so that groups are never contiguous):

- ``unique``: every row its own prompt (10^5-10^7 groups of one row: nothing to pair, all
  overhead);
- ``zipf``: prompts drawn from a Zipf law (s = 1.1) over ``rows / 4`` prompts: a few huge
  groups and a long tail of small ones;
- ``uniform``: 8 responses per prompt, the common case;
- ``giant``: one prompt holds every row, a group larger than the limit: it cannot be split,
  so it is processed whole with a RuntimeWarning and ``oversized_chunks`` in the provenance
  (memory is then about ``WORKING_SET`` times the group's bytes, not bounded by the limit).

Examples
--------
::

    python benches/bench_memory.py                      # 2M rows, memory_limit 256MB
    python benches/bench_memory.py --rows 200000 --memory-limit 32MB --cases unique zipf
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CASES = ("unique", "zipf", "uniform", "giant")
#: Bytes of response text per row.
RESPONSE_BYTES = 200


def prompts_of(case: str, rows: int, rng: np.random.Generator) -> np.ndarray:
    """The prompt id of every row for a key distribution ``case``, shuffled."""
    if case == "unique":
        ids = np.arange(rows)
    elif case == "zipf":
        # A bounded Zipf law: rank r has weight r^-1.1 over rows / 4 prompts.
        prompts = max(1, rows // 4)
        weights = np.arange(1, prompts + 1, dtype=np.float64) ** -1.1
        ids = rng.choice(prompts, size=rows, p=weights / weights.sum())
    elif case == "uniform":
        ids = np.arange(rows) // 8
    elif case == "giant":
        ids = np.zeros(rows, dtype=np.int64)
    else:
        raise ValueError(f"unknown case {case!r}; expected one of {CASES}")
    return rng.permutation(ids)


def write_case(path: Path, case: str, rows: int, seed: int) -> dict:
    """Write the input of ``case`` to ``path`` in row groups of 64k rows; its largest group."""
    rng = np.random.default_rng(seed)
    ids = prompts_of(case, rows, rng)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", dtype=np.uint8)
    schema = pa.schema([("prompt", pa.large_string()), ("response", pa.large_string()),
                        ("score", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 65_536):
            part = ids[start : start + 65_536]
            n = len(part)
            text = letters[rng.integers(0, len(letters), n * RESPONSE_BYTES)]
            offsets = np.arange(0, (n + 1) * RESPONSE_BYTES, RESPONSE_BYTES, dtype=np.int64)
            responses = pa.LargeStringArray.from_buffers(
                n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())
            )
            prompts = pa.array([f"prompt number {i} of the {case} case" for i in part.tolist()],
                               pa.large_string())
            scores = pa.array(rng.integers(0, 40, n) / 4.0)
            writer.write_table(pa.table([prompts, responses, scores], schema=schema))
    largest = int(np.bincount(ids).max())
    return {"largest_group_rows": largest}


def child(path: str, out: str, memory_limit: str) -> None:
    """One measured run in its own process: peak RSS and the streaming record, as JSON."""
    import prefkit as pk

    if path == "-":  # the baseline: what every streaming run loads, and nothing done
        import pyarrow.dataset
        import pyarrow.ipc
        import pyarrow.parquet  # noqa: F401
        import tqdm  # noqa: F401

        print(json.dumps({"peak_rss": _peak_rss()}))
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pk.mine_pairs(path, memory_limit=memory_limit, out=out)
    record = pk.report_of(pq.read_schema(Path(out) / "_common_metadata").empty_table())
    print(json.dumps({
        "peak_rss": _peak_rss(),
        "rows_out": result.count_rows(),
        "streaming": record["streaming"],
        "warned": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    }))


def _peak_rss() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(*args: str) -> dict:
    """Run :func:`child` in a fresh interpreter and return its JSON line."""
    command = [sys.executable, __file__, "--child", *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(cases: list[str], rows: int, memory_limit: str, seed: int = 0,
            folder: str | None = None) -> list[dict]:
    """Peak RSS over the idle baseline of each case, with its ratio to ``memory_limit``."""
    from prefkit.stream import parse_size

    limit = parse_size(memory_limit)
    baseline = run_child("-", "-", memory_limit)["peak_rss"]
    work = Path(folder or tempfile.mkdtemp(prefix="prefkit-bench-memory-"))
    results = []
    try:
        for case in cases:
            path = work / f"{case}.parquet"
            facts = write_case(path, case, rows, seed)
            out = work / f"{case}-out"
            shutil.rmtree(out, ignore_errors=True)
            measured = run_child(str(path), str(out), memory_limit)
            over = measured["peak_rss"] - baseline
            results.append({
                "case": case,
                "rows": rows,
                "input_bytes": path.stat().st_size,
                "memory_limit": limit,
                "baseline_rss": baseline,
                "peak_rss": measured["peak_rss"],
                "over_baseline": over,
                "ratio": over / limit,
                **facts,
                **measured,
            })
            shutil.rmtree(out, ignore_errors=True)
            path.unlink()
    finally:
        if folder is None:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--memory-limit", default="256MB")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    results = measure(args.cases, args.rows, args.memory_limit, args.seed)
    mib = 2**20
    print(f"baseline (idle child: import prefkit + pyarrow.parquet/dataset/ipc): "
          f"{results[0]['baseline_rss'] / mib:.0f} MiB")
    print("| case | rows | largest group | Parquet MiB | memory_limit MiB | peak RSS - baseline "
          "MiB | ratio | chunks | oversized |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        streaming = r["streaming"]
        print(
            f"| {r['case']} | {r['rows']:,} | {r['largest_group_rows']:,} | "
            f"{r['input_bytes'] / mib:.0f} | {r['memory_limit'] / mib:.0f} | "
            f"{r['over_baseline'] / mib:.0f} | {r['ratio']:.2f} | {streaming.get('chunks')} | "
            f"{streaming.get('oversized_chunks', 0)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
