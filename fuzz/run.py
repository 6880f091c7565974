"""Run prefkit's fuzz harnesses for a time budget and summarise what they did.

Each harness (``fuzz/ops.py``, ``fuzz/readers.py``) runs under libFuzzer (atheris) in its own
process, on a working corpus seeded from ``fuzz/seeds/<harness>`` and
``fuzz/regressions/<harness>``. A crash stops libFuzzer: the runner keeps the crash input,
then starts the harness again until the harness's budget is spent, so a long run reports every
distinct crash, not only the first. An input that runs longer than ``--timeout`` seconds is a
crash too (a hang), as is one that grows the process past ``--rss-limit-mb``.

The summary (stdout, and ``--summary FILE`` as JSON) gives per harness the seconds run, the
executions, the corpus size, and the crash inputs; the exit status is 1 when any harness
crashed.

``--runs N --seed S`` replaces the time budget by a count: each harness executes N inputs from
libFuzzer seed S (and ``PYTHONHASHSEED=0``), so the same inputs run on every machine, however
fast. CI uses it (``python fuzz/run.py --runs 3000 --seed 1 --jobs 2``, about 40 s a harness,
in scripts/test.sh): a time budget would make CI's result depend on the machine's speed and
luck, and new findings belong to the exploratory runs, whose crashes are triaged and kept as
regression inputs. ``ops`` replays exactly; ``readers`` nearly: pyarrow's threaded Parquet
decoder may report a different one of a corrupt file's errors, so coverage can differ. The long run of docs/reliability.md is ``python fuzz/run.py --seconds 3600
--jobs 2 --summary fuzz/long_run.json``.

Examples
--------
$ python fuzz/run.py --seconds 30 --harness readers
readers: 30 s, 2,140 executions, corpus 57, crashes 0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
HARNESSES = ("ops", "readers")
#: libFuzzer's last words: executions done, and the crash input it wrote.
DONE = re.compile(r"Done (\d+) runs in (\d+) second")
EXECUTED = re.compile(r"stat::number_of_executed_units: (\d+)")
ARTIFACT = re.compile(r"Test unit written to (\S+)")


def working_corpus(harness: str, folder: Path) -> Path:
    """A fresh corpus folder holding the harness's seeds and regression inputs."""
    corpus = folder / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for source in (FUZZ / "seeds" / harness, FUZZ / "regressions" / harness):
        for path in sorted(source.glob("*")) if source.is_dir() else []:
            if path.is_file() and path.suffix != ".md":
                shutil.copy(path, corpus / path.name)
    return corpus


@dataclass(frozen=True)
class Budget:
    """How much each harness fuzzes: ``seconds`` of wall time, or, when ``runs`` is set, that
    many executions from libFuzzer seed ``seed`` (reproducible on any machine)."""

    seconds: float
    runs: int | None = None
    seed: int = 1

    def left(self, record: dict, started: float) -> float:
        """What remains: executions in count mode, else seconds."""
        if self.runs is not None:
            return self.runs - record["executions"]
        return self.seconds - (time.monotonic() - started)

    def flags(self, left: float) -> list[str]:
        """libFuzzer's flags for what remains."""
        if self.runs is not None:
            return [f"-runs={int(left)}", f"-seed={self.seed}"]
        return [f"-max_total_time={int(left)}"]


def run_harness(harness: str, budget: Budget, timeout: int, rss_limit_mb: int,
                keep: Path) -> dict:
    """Fuzz one harness for its budget, restarting it after each crash."""
    folder = Path(tempfile.mkdtemp(prefix=f"prefkit-fuzz-{harness}-"))
    corpus = working_corpus(harness, folder)
    artifacts = keep / harness
    artifacts.mkdir(parents=True, exist_ok=True)
    record = {"harness": harness, "seconds": 0.0, "executions": 0, "starts": 0,
              "crashes": [], "seed_inputs": len(list(corpus.iterdir()))}
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    started = time.monotonic()
    while (left := budget.left(record, started)) >= 1:
        command = [sys.executable, str(FUZZ / f"{harness}.py"), *budget.flags(left),
                   f"-timeout={timeout}", f"-rss_limit_mb={rss_limit_mb}",
                   "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(corpus)]
        # A bound on the whole process, past libFuzzer's own per-input timeout.
        bound = None if budget.runs is not None else left + 10 * timeout + 120
        finished = subprocess.run(command, check=False, capture_output=True, text=True,
                                  errors="replace", timeout=bound, env=environment)
        record["starts"] += 1
        log = finished.stderr + finished.stdout
        executed = sum(int(n) for n in EXECUTED.findall(log)) or sum(
            int(n) for n, _ in DONE.findall(log))
        record["executions"] += executed
        crash = ARTIFACT.findall(log)
        if finished.returncode != 0:
            tail = "\n".join(line for line in log.splitlines()
                             if not line.startswith("INFO: Instrumenting"))[-4000:]
            record["crashes"].append({"input": crash[-1] if crash else None,
                                      "exit_status": finished.returncode, "log_tail": tail})
            if not crash:  # no input to skip past: restarting would only repeat it
                break
        elif not executed:  # nothing ran: libFuzzer stopped for its own reason
            break
    record["seconds"] = round(time.monotonic() - started, 1)
    record["corpus"] = len(list(corpus.iterdir()))
    shutil.rmtree(folder, ignore_errors=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="budget per harness")
    parser.add_argument("--runs", type=int, default=None,
                        help="executions per harness instead of --seconds (reproducible)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed with --runs")
    parser.add_argument("--harness", action="append", choices=HARNESSES,
                        help="run only these (repeatable); default: all")
    parser.add_argument("--jobs", type=int, default=1, help="harnesses run at once")
    parser.add_argument("--timeout", type=int, default=60,
                        help="seconds one input may take before it counts as a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=4096)
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="where crash inputs are kept (default: a temporary folder)")
    parser.add_argument("--summary", type=Path, default=None, help="write the summary as JSON")
    args = parser.parse_args(argv)
    keep = args.artifacts or Path(tempfile.mkdtemp(prefix="prefkit-fuzz-crashes-"))
    harnesses = args.harness or list(HARNESSES)
    budget = Budget(args.seconds, args.runs, args.seed)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        records = list(pool.map(
            lambda h: run_harness(h, budget, args.timeout, args.rss_limit_mb, keep),
            harnesses))
    for r in records:
        print(f"{r['harness']}: {r['seconds']:.0f} s, {r['executions']:,} executions, "
              f"corpus {r['corpus']}, crashes {len(r['crashes'])}")
        for crash in r["crashes"]:
            print(f"  crash input {crash['input']} (exit status {crash['exit_status']}):\n"
                  f"{crash['log_tail']}")
    if args.summary:
        summary = {"command": " ".join(["python", "fuzz/run.py", *(argv or sys.argv[1:])]),
                   "harnesses": records,
                   "executions": sum(r["executions"] for r in records),
                   "seconds": sum(r["seconds"] for r in records),
                   "crashes": sum(len(r["crashes"]) for r in records)}
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if any(r["crashes"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
