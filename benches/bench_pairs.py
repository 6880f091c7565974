"""Side-by-side benchmark of pair mining: prefkit vs polars expressions vs a plain Python loop.

Every tool starts from the same polars DataFrame in memory (``prompt``, ``response``, ``score``;
text as polars holds it: string_view) built by ``benches/datagen.py`` and cached as Parquet in
``bench-data/``:

- ``prefkit``: ``pk.mine_pairs(df, strategy=...)``, its default output: plain ``large_string``
  text, copied, which every pyarrow compute function takes (docs/outputs.md).
- ``prefkit-views``: ``pk.mine_pairs(df, strategy=..., views=True)``: string_view text that
  points into the input's buffers (no text copied).
- ``prefkit-dictionary``: the dictionary-encoded candidate of docs/outputs.md: the views
  result's numeric columns, and ``prompt``/``chosen``/``rejected`` as dictionary arrays whose
  indices are the pair's input rows and whose dictionaries are the input's own text columns
  (made plain once: pyarrow has no dictionary kernels over string_view values).
- ``polars-arrow``: the polars plan, then ``.to_arrow()`` with ``compat_level=oldest`` (plain
  ``large_string``, what a polars user hands to a pyarrow pipeline).
- ``polars``: the fastest polars-expression implementation of the same rules (docs/pairs.md) we
  could write: masked ``group_by(..., maintain_order=True)`` aggregations with
  ``arg_max``/``arg_min`` for ``best_vs_worst`` and ``best_vs_random``; for ``all_pairs`` a
  self-join on an integer group key, pre-sorted by rank so that ``maintain_order="left_right"``
  yields pairs in the documented order without sorting the (larger) result.
- ``python``: a plain Python group loop over ``df.iter_rows()`` (a dict of lists, ``sorted``),
  what one writes without a dataframe library.

For every (strategy, tool) a fresh subprocess loads the corpus, records its RSS, resets the
kernel's peak-RSS counter (``/proc/self/clear_refs``), runs the tool ``--repeats`` times and
reports the median wall time, the peak RSS during the runs (``VmHWM``; cross-checked by a psutil
sampler and ``getrusage``), and the Arrow buffer bytes of input and output. A separate check
subprocess verifies that the tools agree (same number of pairs, same rows chosen and rejected)
so that the comparison is honest.

Examples
--------
Full size (1M responses), as reported in the README::

    python benches/bench_pairs.py --prompts 125000 --responses 8 --repeats 3

A quick run::

    python benches/bench_pairs.py --prompts 2000 --repeats 3

The table is printed and written to ``bench-data/bench_pairs.md`` (and the raw numbers to
``bench-data/bench_pairs.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STRATEGIES = ("best_vs_worst", "best_vs_random", "all_pairs")
TOOLS = ("prefkit", "prefkit-views", "prefkit-dictionary", "polars", "polars-arrow", "python")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# The three implementations. Each takes the polars DataFrame and returns its pairs.
# --------------------------------------------------------------------------------------------


def run_prefkit(df: Any, strategy: str, seed: int = 0) -> Any:
    """``pk.mine_pairs`` on the polars frame (a pyarrow Table of pairs)."""
    import prefkit as pk

    return pk.mine_pairs(df, strategy=strategy, seed=seed)


def run_prefkit_views(df: Any, strategy: str, seed: int = 0) -> Any:
    """``pk.mine_pairs(..., views=True)``: string_view text into the input's buffers."""
    import prefkit as pk

    return pk.mine_pairs(df, strategy=strategy, seed=seed, views=True)


def run_prefkit_dictionary(df: Any, strategy: str, seed: int = 0) -> Any:
    """The dictionary candidate: text columns as dictionary arrays over the input's columns."""
    import prefkit as pk
    import pyarrow as pa

    pairs = pk.mine_pairs(df, strategy=strategy, seed=seed, views=True)
    source = pk.materialize(_arrow(df.select("prompt", "response")))
    prompt, response = (source.column(n).combine_chunks() for n in ("prompt", "response"))
    chosen_row = pairs.column("chosen_row").combine_chunks()
    rejected_row = pairs.column("rejected_row").combine_chunks()
    text = {
        "prompt": pa.DictionaryArray.from_arrays(chosen_row, prompt),
        "chosen": pa.DictionaryArray.from_arrays(chosen_row, response),
        "rejected": pa.DictionaryArray.from_arrays(rejected_row, response),
    }
    return pa.table({name: text.get(name, pairs.column(name)) for name in pairs.column_names})


def run_polars_arrow(df: Any, strategy: str, seed: int = 0) -> Any:
    """The polars plan, exported to pyarrow with plain ``large_string`` text."""
    import polars as pl

    return run_polars(df, strategy, seed).to_arrow(compat_level=pl.CompatLevel.oldest())


def _valid_score() -> Any:
    """The score where the row is valid (docs/pairs.md), else null.

    Masking instead of filtering keeps invalid rows in their groups, so groups come out in order
    of their first row in the input, as prefkit emits them; polars' aggregations skip nulls.
    """
    import polars as pl

    valid = (
        pl.col("prompt").is_not_null()
        & pl.col("response").is_not_null()
        & pl.col("score").is_not_nan()
    )
    return pl.when(valid).then(pl.col("score"))


def _with_text(df: Any, pairs: Any) -> Any:
    """Attach prompt/chosen/rejected text by row index; gathering string_view copies 16-byte
    views, not text, which is what prefkit does too."""
    import polars as pl

    # A random gather from a multi-chunk string column is ~50x slower than from one chunk
    # (measured); rechunking string_view concatenates views, not text, and is a no-op on one
    # chunk.
    prompt = df.get_column("prompt").rechunk()
    response = df.get_column("response").rechunk()
    chosen_row = pairs.get_column("chosen_row")
    rejected_row = pairs.get_column("rejected_row")
    return pairs.select(
        prompt.gather(chosen_row),
        response.gather(chosen_row).alias("chosen"),
        response.gather(rejected_row).alias("rejected"),
        "score_chosen",
        "score_rejected",
        (pl.col("score_chosen") - pl.col("score_rejected")).alias("margin"),
        pl.col("chosen_row").cast(pl.Int64),
        pl.col("rejected_row").cast(pl.Int64),
    )


def polars_best_vs_worst(df: Any) -> Any:
    """best_vs_worst in polars: per group the first row of the highest score and the last row of
    the lowest (the stable ranking's ends), kept when their margin is positive."""
    import polars as pl

    score = pl.col("s")
    last_min = pl.len() - 1 - score.reverse().arg_min()
    pairs = (
        df.lazy()
        .select("prompt", pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), s=_valid_score())
        .group_by("prompt", maintain_order=True)
        .agg(
            chosen_row=pl.col("row").get(score.arg_max()),
            rejected_row=pl.col("row").get(last_min),
            score_chosen=score.max(),
            score_rejected=score.min(),
        )
        .filter(pl.col("score_chosen") > pl.col("score_rejected"))
        .select("chosen_row", "rejected_row", "score_chosen", "score_rejected")
        .collect()
    )
    return _with_text(df, pairs)


def polars_best_vs_random(df: Any, seed: int = 0) -> Any:
    """best_vs_random in polars: the best row vs the qualifying row with the smallest seeded
    hash of its row index, i.e. a uniform, seeded draw among the qualifying rest.

    polars has no xxh3/splitmix64, so the draw is not prefkit's: the rows chosen and the number
    of pairs agree, the rejected rows are a different (equally uniform) sample. The hash of the
    qualifying rows is computed with a window before the group_by, which measured faster than
    masking inside the aggregation.
    """
    import polars as pl

    score = pl.col("s")
    key = pl.col("k")
    pairs = (
        df.lazy()
        .select("prompt", pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), s=_valid_score())
        .with_columns(k=pl.when(score < score.max().over("prompt")).then(pl.col("row").hash(seed)))
        .group_by("prompt", maintain_order=True)
        .agg(
            chosen_row=pl.col("row").get(score.arg_max()),
            rejected_row=pl.col("row").get(key.arg_min()),
            score_chosen=score.max(),
            score_rejected=score.get(key.arg_min()),
        )
        .filter(pl.col("rejected_row").is_not_null())
        .select("chosen_row", "rejected_row", "score_chosen", "score_rejected")
        .collect()
    )
    return _with_text(df, pairs)


def polars_all_pairs(df: Any) -> Any:
    """all_pairs in polars: a self-join on the group key, filtered to strictly better chosen.

    The group key is the group's first row (an integer: joining on it is far cheaper than on
    300-byte prompts, and it is the documented group order). Rows are sorted by (group, score
    descending, row) before the join, and ``maintain_order="left_right"`` then emits pairs
    i-major in rank order, as docs/pairs.md specifies, without sorting the (larger) result.
    One lazy query: measured as fast as exploding ``int_ranges`` of in-group positions and
    faster than collecting the ranked frame first.
    """
    import polars as pl

    ranked = (
        df.lazy()
        .select("prompt", pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), s=_valid_score())
        .select("row", "s", g=pl.col("row").min().over("prompt"))
        .drop_nulls("s")
        .sort(["g", "s", "row"], descending=[False, True, False], maintain_order=True)
    )
    pairs = (
        ranked.join(ranked, on="g", suffix="_r", maintain_order="left_right")
        .filter(pl.col("s") > pl.col("s_r"))
        .select(
            chosen_row="row",
            rejected_row="row_r",
            score_chosen="s",
            score_rejected="s_r",
        )
        .collect()
    )
    return _with_text(df, pairs)


def run_polars(df: Any, strategy: str, seed: int = 0) -> Any:
    """The polars implementation of ``strategy`` (a polars DataFrame of pairs)."""
    if strategy == "best_vs_worst":
        return polars_best_vs_worst(df)
    if strategy == "best_vs_random":
        return polars_best_vs_random(df, seed)
    if strategy == "all_pairs":
        return polars_all_pairs(df)
    raise ValueError(f"no polars implementation of {strategy!r}")


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def run_python(df: Any, strategy: str, seed: int = 0) -> list[tuple]:
    """A plain Python group loop: the rules of docs/pairs.md, written the obvious way.

    Returns a list of ``(prompt, chosen, rejected, score_chosen, score_rejected, margin,
    group_id, chosen_row, rejected_row)`` tuples. The group id (xxh3-64 of the prompt) is
    computed because prefkit's output carries it and best_vs_random's draw depends on it, which
    makes this loop's pairs identical to prefkit's for every strategy.
    """
    import xxhash

    groups: dict[Any, list[tuple[int, str, float]]] = {}
    for row, (prompt, response, score) in enumerate(df.iter_rows()):
        if prompt is None:
            continue
        members = groups.get(prompt)
        if members is None:
            members = groups[prompt] = []
        if response is None or score is None or math.isnan(score):
            continue
        members.append((row, response, score))

    pairs: list[tuple] = []
    append = pairs.append
    for prompt, members in groups.items():
        if len(members) < 2:
            continue
        # sorted() is stable: among equal scores the earlier row ranks first.
        ranked = sorted(members, key=lambda m: -m[2])
        gid = xxhash.xxh3_64_intdigest(prompt.encode())
        best = ranked[0]
        if strategy == "best_vs_worst":
            worst = ranked[-1]
            if best[2] - worst[2] > 0:
                append((prompt, best[1], worst[1], best[2], worst[2], best[2] - worst[2], gid,
                        best[0], worst[0]))
        elif strategy == "best_vs_random":
            candidates = [m for m in ranked[1:] if best[2] - m[2] > 0]
            if candidates:
                x = _splitmix64(seed ^ gid)
                pick = candidates[(x * len(candidates)) >> 64]
                append((prompt, best[1], pick[1], best[2], pick[2], best[2] - pick[2], gid,
                        best[0], pick[0]))
        elif strategy == "all_pairs":
            for i, a in enumerate(ranked):
                for b in ranked[i + 1:]:
                    if a[2] - b[2] > 0:
                        append((prompt, a[1], b[1], a[2], b[2], a[2] - b[2], gid, a[0], b[0]))
        else:
            raise ValueError(f"no Python implementation of {strategy!r}")
    return pairs


RUNNERS: dict[str, Callable[[Any, str, int], Any]] = {
    "prefkit": run_prefkit,
    "prefkit-views": run_prefkit_views,
    "prefkit-dictionary": run_prefkit_dictionary,
    "polars": run_polars,
    "polars-arrow": run_polars_arrow,
    "python": run_python,
}


# --------------------------------------------------------------------------------------------
# Measurement helpers (run inside the worker subprocesses).
# --------------------------------------------------------------------------------------------


def _arrow(obj: Any) -> Any:
    """A pyarrow Table view of a result or input (zero-copy), or None for Python objects."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj
    if hasattr(obj, "__arrow_c_stream__"):
        # polars exports string_view through the PyCapsule interface without copying. Not
        # pa.table(obj): it probes for pandas first, importing it (~0.4 s, ~45 MB of RSS) into
        # every measured process.
        return pa.RecordBatchReader.from_stream(obj).read_all()
    return None


def _buffer_spans(table: Any) -> list[tuple[int, int]]:
    """Address ranges of every Arrow buffer a table references (children included)."""
    spans = []
    for column in table.columns:
        for chunk in column.chunks:
            for buf in chunk.buffers():
                if buf is not None and buf.size:
                    spans.append((buf.address, buf.address + buf.size))
    return spans


def _union_bytes(spans: list[tuple[int, int]]) -> int:
    """Bytes covered by a set of address ranges, each byte counted once.

    string_view results share the input's text buffers and several views share one buffer;
    pa.Table.nbytes would count such a buffer once per reference.
    """
    total = 0
    end = -1
    for lo, hi in sorted(spans):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: on a shared machine the work done,
    independent of how long other processes kept the cores busy."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS (VmHWM) to the current RSS; False where not allowed.

    Loading the Parquet corpus has its own, higher transient peak; without the reset the peak
    reported for a fast tool would be the loader's. (ru_maxrss cannot be reset.)
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class _Sampler(threading.Thread):
    """Polls RSS with psutil; a cross-check of VmHWM and the fallback where it is unavailable.
    Rust and polars release the GIL, so the thread keeps sampling while they work."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        process = psutil.Process()
        while not self._halt.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def _load(path: Path, rows: int | None) -> Any:
    import polars as pl

    # n_rows reads only the subset, so a subset run holds only the subset in memory. The reader
    # returns one chunk per row group; rechunk (views only, no text copied) so that every tool
    # gets the one-chunk frame that building the corpus in memory gives.
    return pl.read_parquet(path, n_rows=rows).rechunk()


def _pair_count(out: Any) -> int:
    return len(out) if isinstance(out, list) else len(_arrow(out))


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time one (tool, strategy) in this fresh process and measure its memory."""
    run = RUNNERS[args.tool]
    # Every library a tool needs is loaded before the baseline: pyarrow alone maps ~85 MB of
    # shared libraries, which is runtime, not the tool's working memory. All tools get pyarrow
    # (the input and output are measured through it).
    import pyarrow  # noqa: F401

    if args.tool.startswith("prefkit"):
        import prefkit  # noqa: F401
    elif args.tool == "python":
        import xxhash  # noqa: F401
    df = _load(Path(args.data), args.rows)
    input_table = _arrow(df)
    input_spans = _buffer_spans(input_table)
    input_bytes = _union_bytes(input_spans)
    del input_table
    gc.collect()
    baseline = _rss()
    reset = _reset_peak()
    sampler = _Sampler()
    sampler.start()
    times = []
    cpu = []
    output_bytes = output_own = None
    pairs = 0
    load_before = os.getloadavg()[0]
    for i in range(args.repeats):
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        out = run(df, args.strategy, args.seed)
        times.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - cpu_start)
        if i == 0:
            pairs = _pair_count(out)
            table = _arrow(out)
            if table is not None:
                spans = _buffer_spans(table)
                output_bytes = _union_bytes(spans)
                # Bytes of the output that are not the input's (string_view text is shared).
                output_own = _union_bytes(input_spans + spans) - input_bytes
                del table
        # Free the result before the next run, so runs do not stack up in the peak.
        del out
        gc.collect()
    sampled_peak = sampler.stop()
    hwm = _vm_hwm() if reset else None
    return {
        "tool": args.tool,
        "strategy": args.strategy,
        "rows": df.height,
        "times": times,
        "median_s": statistics.median(times),
        "cpu": cpu,
        "median_cpu_s": statistics.median(cpu),
        "load_average": [load_before, os.getloadavg()[0]],
        "pairs": pairs,
        "rss_after_load": baseline,
        "peak_rss": hwm if hwm is not None else sampled_peak,
        "peak_rss_source": "VmHWM" if hwm is not None else "psutil",
        "peak_rss_psutil": sampled_peak,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "output_own_bytes": output_own,
    }


def _sample(table: Any, name: str, index: Any) -> list:
    """Values of a column at some rows (pyarrow has no ``take`` for string_view; polars does,
    without copying the column)."""
    import polars as pl

    return pl.from_arrow(table.select([name])).to_series().gather(index).to_list()


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Check that the tools agree, so that the timings compare the same work.

    - prefkit vs polars on the whole corpus: same number of pairs; for best_vs_worst and
      all_pairs the same chosen and rejected rows in the same order (all of them), and the same
      text on a sample; for best_vs_random the same chosen rows (polars draws the rejected one
      with its own hash, see ``polars_best_vs_random``).
    - prefkit vs the Python loop on the first ``check_rows`` rows: identical pairs, including
      best_vs_random's draw and the group ids.
    - polars vs the Python loop likewise, when prefkit is not part of the run.
    """
    import numpy as np

    tools = args.tools
    df = _load(Path(args.data), None)
    small = df.head(args.check_rows)
    results: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for strategy in args.strategies:
        notes: list[str] = []
        ok = True
        outs = {}
        for tool in ("prefkit", "polars"):
            if tool in tools:
                outs[tool] = _arrow(RUNNERS[tool](df, strategy, args.seed))
        if "prefkit" in outs and "polars" in outs:
            a, b = outs["prefkit"], outs["polars"]
            same_count = a.num_rows == b.num_rows
            ok &= same_count
            notes.append(f"pairs prefkit {a.num_rows} / polars {b.num_rows}")
            if same_count and a.num_rows:
                columns = ["chosen_row"]
                if strategy != "best_vs_random":
                    columns += ["rejected_row", "margin"]
                for name in columns:
                    equal = np.array_equal(
                        a.column(name).to_numpy(), b.column(name).to_numpy()
                    )
                    ok &= equal
                    notes.append(f"{name} {'equal' if equal else 'DIFFER'}")
                sample = rng.choice(a.num_rows, min(1000, a.num_rows), replace=False)
                text = ["prompt", "chosen"] + (["rejected"] if strategy != "best_vs_random" else [])
                equal = all(_sample(a, name, sample) == _sample(b, name, sample) for name in text)
                ok &= equal
                verdict = "equal" if equal else "DIFFER"
                notes.append(f"text of {len(sample)} sampled pairs {verdict}")
        del outs
        gc.collect()
        if "python" in tools:
            reference = run_python(small, strategy, args.seed)
            names = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "margin",
                     "group_id", "chosen_row", "rejected_row"]
            for tool in ("prefkit", "polars"):
                if tool not in tools:
                    continue
                got = _arrow(RUNNERS[tool](small, strategy, args.seed))
                if tool == "polars":
                    # No group_id in polars, and its best_vs_random draw is its own.
                    keep = [n for n in names if n != "group_id" and not (
                        strategy == "best_vs_random" and n in ("rejected", "score_rejected",
                                                               "margin", "rejected_row"))]
                else:
                    keep = names
                index = [names.index(n) for n in keep]
                expected = [tuple(t[i] for i in index) for t in reference]
                rows = list(zip(*(got.column(n).to_pylist() for n in keep)))
                equal = rows == expected
                ok &= equal
                notes.append(
                    f"{tool} vs python loop on {small.height} rows: {len(rows)} / "
                    f"{len(expected)} pairs, {'identical' if equal else 'DIFFERENT'}"
                )
        results[strategy] = {"ok": bool(ok), "notes": notes}
    return results


# --------------------------------------------------------------------------------------------
# The driver: corpus, subprocesses, table.
# --------------------------------------------------------------------------------------------


def _subprocess_json(command: list[str]) -> Any:
    """Run a worker and parse the JSON on its last stdout line."""
    # The driver stays small (it never loads the corpus): on Linux a child's ru_maxrss starts at
    # its parent's RSS at fork time.
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _corpus(args: argparse.Namespace) -> Path:
    path = Path(args.data_dir) / f"corpus-{args.prompts}x{args.responses}-seed{args.seed}.parquet"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, str(HERE / "datagen.py"), "--prompts", str(args.prompts),
             "--responses", str(args.responses), "--seed", str(args.seed), "-o", str(path)],
            check=True,
        )
    return path


def _fmt_speedup(base: float | None, t: float) -> str:
    if base is None:
        return "–"
    ratio = base / t
    return f"{ratio:.1f}x" if ratio >= 0.95 else f"{ratio:.2f}x"


def _table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    mb = 1e6
    lines = [
        (
            "| strategy | tool | median s | speedup vs polars | speedup vs python | peak RSS MB "
            "| RSS after load MB | (input+output) MB | peak RSS / (in+out) | pairs | CPU s |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["strategy"], r["tool"]): r for r in results}
    for strategy in args.strategies:
        polars = by_key.get((strategy, "polars"))
        python = by_key.get((strategy, "python"))
        for tool in args.tools:
            r = by_key.get((strategy, tool))
            if r is None:
                continue
            t = r["median_full_s"]
            name = tool
            if tool == "python" and r["rows"] < r["rows_full"]:
                name = f"python loop (on {r['rows']} rows, time x{r['rows_full'] / r['rows']:.1f})"
            elif tool == "python":
                name = "python loop"
            if r["output_own_bytes"] is None:
                in_out = "n/a (Python objects)"
                ratio = "–"
            else:
                total = r["input_bytes"] + r["output_own_bytes"]
                parts = f"{r['input_bytes'] / mb:.0f} + {r['output_own_bytes'] / mb:.0f}"
                in_out = f"{total / mb:.0f} ({parts})"
                ratio = f"{r['peak_rss'] / total:.2f}"
            lines.append(
                f"| {strategy} | {name} | {t:.3f} | "
                f"{_fmt_speedup(polars and polars['median_full_s'], t)} | "
                f"{_fmt_speedup(python and python['median_full_s'], t)} | "
                f"{r['peak_rss'] / mb:.0f} | {r['rss_after_load'] / mb:.0f} | {in_out} | {ratio} | "
                f"{r['pairs']} | {r['median_cpu_s'] * r['rows_full'] / r['rows']:.3f} |"
            )
    return "\n".join(lines)


def _environment() -> str:
    import numpy
    import polars
    import pyarrow

    versions = [f"polars {polars.__version__}", f"pyarrow {pyarrow.__version__}",
                f"numpy {numpy.__version__}", f"Python {platform.python_version()}"]
    try:
        import prefkit

        versions.insert(0, f"prefkit {prefkit.__version__}")
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), " + ", ".join(versions)


def driver(args: argparse.Namespace) -> int:
    if any(tool.startswith("prefkit") for tool in args.tools):
        try:
            import prefkit  # noqa: F401
        except ImportError as error:
            sys.exit(f"prefkit is not importable ({error}); build it (maturin develop --release) "
                     "or pass --tools polars python")
    path = _corpus(args)
    rows_full = args.prompts * args.responses
    base = [sys.executable, str(Path(__file__).resolve()), "--data", str(path),
            "--seed", str(args.seed)]
    checks: dict[str, Any] = {}
    if not args.no_check:
        print("checking that the tools agree ...", file=sys.stderr)
        checks = _subprocess_json(
            base + ["--check", "--check-rows", str(args.check_rows),
                    "--tools", *args.tools, "--strategies", *args.strategies]
        )
        for strategy, c in checks.items():
            print(f"  {strategy}: {'ok' if c['ok'] else 'MISMATCH'}: {'; '.join(c['notes'])}",
                  file=sys.stderr)
    results = []
    for strategy in args.strategies:
        for tool in args.tools:
            rows = args.python_subset if tool == "python" and args.python_subset else None
            if rows is not None and rows >= rows_full:
                rows = None
            command = base + ["--worker", "--tool", tool, "--strategy", strategy,
                              "--repeats", str(args.repeats)]
            if rows:
                command += ["--rows", str(rows)]
            print(f"{strategy} / {tool} ...", file=sys.stderr, flush=True)
            r = _subprocess_json(command)
            r["rows_full"] = rows_full
            # A subset run is scaled linearly to the full corpus (the loop is O(rows)).
            r["median_full_s"] = r["median_s"] * rows_full / r["rows"]
            print(f"  median {r['median_s']:.3f} s of {[round(t, 3) for t in r['times']]}, "
                  f"peak RSS {r['peak_rss'] / 1e6:.0f} MB", file=sys.stderr)
            results.append(r)

    command = "python benches/bench_pairs.py " + " ".join(args.argv)
    table = _table(results, args)
    subset = args.python_subset and args.python_subset < rows_full
    seen = [x for r in results for x in r["load_average"]]
    loads = f"{min(seen):.1f} to {max(seen):.1f} on {os.cpu_count()} cores" if seen else "–"
    notes = [
        (
            f"Corpus: `benches/datagen.py`, {args.prompts} prompts x {args.responses} responses "
            f"= {rows_full} rows (prompts ~300, responses ~1000 characters), seed {args.seed}; "
            "every tool starts from the same polars DataFrame (string_view text) read from "
            "Parquet."
        ),
        f"Machine: {_environment()}.",
        f"Command: `{command.strip()}`",
        (
            f"Median wall time of {args.repeats} runs; speedup = the other tool's time / this "
            "tool's time."
        ),
        (
            "CPU s: median user+system CPU time of the runs, all threads (scaled like the time "
            "for a subset run); with cores shared with other work it shows the work done. 1-minute "
            f"load average during the runs: {loads}."
        ),
        (
            "Peak RSS: the process's peak resident set during the runs (VmHWM, reset after "
            "loading the corpus; one fresh process per row); it includes the loaded corpus (RSS "
            "after load) and the Python, polars and pyarrow runtime."
        ),
        (
            "(input+output) MB: distinct Arrow buffer bytes of the input table, plus those of "
            "the output that are not the input's (in parentheses): string_view output shares "
            "the input's text buffers, so its text is counted once."
        ),
        (
            "polars: no group_id column (polars has no xxh3); its best_vs_random draws the "
            "rejected response with its own seeded hash (same pair count and chosen rows as "
            "prefkit)."
        ),
        (
            "Python loop: returns a list of tuples that reference the Python strings created by "
            "`iter_rows()` (no Arrow output)"
            + (
                f"; timed on the first {args.python_subset} rows and scaled linearly to "
                f"{rows_full} rows; its peak RSS is that of the subset run"
                if subset
                else ""
            )
            + "."
        ),
    ]
    if checks:
        notes.append("Agreement checks: " + " ".join(
            f"{s}: {'ok' if c['ok'] else 'MISMATCH'} ({'; '.join(c['notes'])})."
            for s, c in checks.items()))
    text = table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps({"command": command, "results": results, "checks": checks}, indent=1)
    )
    print(f"written to {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0 if all(c["ok"] for c in checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description="Benchmark pk.mine_pairs against polars and a plain Python loop.",
        epilog="example: python benches/bench_pairs.py --prompts 125000 --responses 8 "
        "--repeats 3",
    )
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per (tool, strategy)")
    parser.add_argument("--seed", type=int, default=0, help="corpus and best_vs_random seed")
    parser.add_argument("--python-subset", type=int, default=None, metavar="N",
                        help="time the Python loop on the first N rows and scale linearly")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--check-rows", type=int, default=80_000,
                        help="rows on which the Python loop's pairs are compared exactly")
    parser.add_argument("--no-check", action="store_true", help="skip the agreement checks")
    parser.add_argument("--data-dir", default=str(ROOT / "bench-data"))
    parser.add_argument("--output", default=str(ROOT / "bench-data" / "bench_pairs.md"))
    # Internal: the subprocesses.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--tool", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--strategy", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.check:
        print(json.dumps(check(args)))
        return 0
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
