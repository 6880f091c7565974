"""Every input that once crashed a fuzz harness, replayed: the harness must pass on it now.

The inputs live in ``fuzz/regressions/<harness>/`` (each folder's README says what each one
broke and where it was fixed) next to the harness's seeds in ``fuzz/seeds/<harness>/``.
libFuzzer given files instead of a corpus folder runs each once and exits non-zero on the
first crash, hang or oracle finding (``fuzz/prefkit_fuzz.py``), so one subprocess per harness
checks them all; a crash that kills the process (a segfault, an abort) fails the test too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = ("ops", "readers")


def inputs(harness: str) -> list[Path]:
    folders = (FUZZ / "regressions" / harness, FUZZ / "seeds" / harness)
    return sorted(p for f in folders if f.is_dir() for p in f.iterdir()
                  if p.is_file() and p.suffix != ".md")


def test_every_harness_has_regression_inputs() -> None:
    for harness in HARNESSES:
        assert (FUZZ / f"{harness}.py").is_file()
        assert any((FUZZ / "regressions" / harness).glob("*.bin")), harness


@pytest.mark.parametrize("harness", HARNESSES)
def test_regression_inputs_pass_their_harness(harness: str) -> None:
    files = inputs(harness)
    assert files
    # No RSS limit: Linux carries a process's peak RSS (ru_maxrss, what libFuzzer checks)
    # across fork and exec, so a child of this pytest process, after its 1 GB tests, would
    # start "out of memory" (libFuzzer reported 6,334 MB used before running an input).
    run = subprocess.run(
        [sys.executable, str(FUZZ / f"{harness}.py"), "-timeout=60", "-rss_limit_mb=0",
         *map(str, files)],
        capture_output=True, text=True, errors="replace", timeout=900, check=False,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    for path in files:
        assert f"Executed {path}" in log, f"{path.name} was not run"
