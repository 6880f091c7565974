"""Faults in long jobs: kill -9 at seeded random points, a full disk, a read-only output folder.

Each long job runs as the ``prefkit`` CLI in a subprocess and is killed with SIGKILL (no
handler, no ``finally``) at points spread over the duration of an uninterrupted run, timed
first. After every kill: nothing at the output path, and the leftovers (hidden temporary
folders next to the output, spill folders in ``$TMPDIR``) are removed by the next run, which
gives exactly the uninterrupted result. See docs/reliability.md, "Faults in long jobs".
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefkit.cli import main as cli
from prefkit.io import SPILL_PREFIX, TEMP_PREFIX

#: Random kill points per streaming job (besides two at the start of the spill and of the
#: result's writing): one in each half of the uninterrupted run's work.
KILLS = 2
SEED = 18


def _corpus(rows: int, seed: int = 0) -> pa.Table:
    """Rated responses of shuffled prompts (groups reappear: the partitioned, spilling path),
    with near-duplicate prompts for MinHash."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(400)]
    bases = [" ".join(rng.choice(words, 12)) for _ in range(rows // 8)]
    group = rng.integers(0, len(bases), rows)
    prompts = [f"{bases[g]} {'x' if i % 3 else 'y'}" for i, g in enumerate(group.tolist())]
    return pa.table({
        "prompt": prompts,
        "response": [f"answer {i} " + "text " * int(rng.integers(1, 20)) for i in range(rows)],
        "score": rng.normal(size=rows).round(3),
    })


def _env(tmp: Path) -> dict:
    # A private $TMPDIR: the spill folders of this test, and no other process's, are seen.
    return dict(os.environ, TMPDIR=str(tmp), PREFKIT_NUM_THREADS="1", OMP_NUM_THREADS="1")


def _prefkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefkit.cli", *args, "-q"]


def _run_until(command: list[str], env: dict, started: Callable[[], bool],
               delay: float | None) -> float | None:
    """Run ``command``; once ``started()`` holds (polled every 2 ms), SIGKILL it after
    ``delay`` more seconds (None: let it finish). Returns the seconds from ``started`` to
    the end of an uninterrupted run, or None when the job was killed."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    while not started() and process.poll() is None:
        time.sleep(0.002)
    began = time.perf_counter()
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
    _, err = process.communicate()
    if process.returncode == -signal.SIGKILL:
        return None
    assert process.returncode == 0, err.decode()
    return time.perf_counter() - began


def _leftovers(*folders: Path) -> list[str]:
    return sorted(
        entry.name
        for folder in folders
        for entry in folder.iterdir()
        if entry.name.startswith((TEMP_PREFIX, SPILL_PREFIX))
    )


@pytest.mark.parametrize(
    "verb, options, out_dir",
    [
        ("pairs", ["--strategy", "all_pairs", "--max-pairs-per-prompt", "4"], True),
        ("dedup", ["--method", "minhash", "--threshold", "0.7"], False),
    ],
    ids=["mine_pairs-out_dir", "minhash_dedup-file"],
)
def test_streaming_jobs_survive_kill_9(tmp_path, verb, options, out_dir):
    source = tmp_path / "in.parquet"
    pq.write_table(_corpus(12_000), source, row_group_size=2048)
    spill = tmp_path / "tmp"
    spill.mkdir()
    env = _env(spill)
    results = tmp_path / "results"
    whole, name = ("whole", "run") if out_dir else ("whole.parquet", "run.parquet")

    def command(name: str) -> list[str]:
        target = ["--out-dir", str(results / name)] if out_dir else ["-o", str(results / name)]
        return _prefkit(verb, str(source), *target, "--memory-limit", "1MB", *options)

    def read(name: str) -> pa.Table:
        return pq.read_table(results / name) if not out_dir else pk.read_table(results / name)

    def spilling() -> bool:  # the work has begun: the job's spill folder exists
        return bool(_leftovers(spill))

    def writing() -> bool:  # the result is being written under its temporary name
        return results.exists() and any(n.startswith(TEMP_PREFIX) for n in _leftovers(results))

    # The uninterrupted run, timed from the start of its work (before it, the child imports).
    duration = _run_until(command(whole), env, spilling, None)
    print(f"{verb}: uninterrupted work {duration:.2f} s")
    expected = read(whole)
    assert expected.num_rows > 0
    schema = pq.read_schema(results / whole / "_common_metadata") if out_dir else expected.schema
    assert pk.report_of(schema.empty_table())["streaming"]["mode"] == "partitioned"

    # Kill points: as the spill starts, as the result's temporary appears, and one seeded
    # random time in each of KILLS slices of the work's duration.
    rng = random.Random(SEED)
    points = [(spilling, 0.0), (writing, 0.0)]
    points += [(spilling, duration * (k + rng.random()) / KILLS) for k in range(KILLS)]
    for number, (started, delay) in enumerate(points):
        if _run_until(command(name), env, started, delay) is not None:  # ended before the kill
            assert read(name).equals(expected)
            _remove(results / name)
            continue
        # No partial result: the output path is absent (or whole, when the kill came after
        # the rename), and what is left are hidden temporaries.
        if (results / name).exists():
            assert read(name).equals(expected)
            _remove(results / name)
        left = _leftovers(results, spill)
        assert all(n.startswith((TEMP_PREFIX, SPILL_PREFIX)) for n in left)
        if number == 0:  # killed as soon as the spill folder was seen: it is still there
            assert left
        subprocess.run(command(name), env=env, check=True, capture_output=True)
        assert _leftovers(results, spill) == []
        assert read(name).equals(expected)
        _remove(results / name)


def _remove(path: Path) -> None:
    if path.is_dir():
        for part in path.iterdir():
            part.unlink()
        path.rmdir()
    else:
        path.unlink()


def _forked_cli(argv: list[str], env: dict) -> int:
    """Run the CLI in a forked child (torch is already imported there: a fresh interpreter
    spends most of a small scoring job importing it) and return the child's pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.environ.update(env)
            tempfile.tempdir = None
            code = cli(argv)
        finally:
            os._exit(code)
    return pid


def _exit_status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_score_checkpoint_survives_kill_9_without_recomputing(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from scoring_models import build_model, corpus

    model = build_model(tmp_path / "rm")
    rows = 400
    data = corpus(rows, seed=5)
    source = tmp_path / "in.parquet"
    pk.write_table(data, source)
    output = tmp_path / "out.parquet"
    checkpoint = tmp_path / "ckpt"
    budget = 64
    argv = ["score", str(source), "-o", str(output), "--model", str(model), "--checkpoint",
            str(checkpoint), "--max-tokens-per-batch", str(budget), "-q"]

    before = torch.get_num_threads()
    # One thread, here and in the children (which inherit it): bit-identical scores, and no
    # OpenMP pool in the parent to be lost across fork.
    torch.set_num_threads(1)
    try:
        expected = pk.score(data, str(model), progress=False, max_tokens_per_batch=budget)
        batches = pk.report_of(expected)["batches"]
        # Kill points by progress, after a seeded number of finished batches (shards) in each
        # half of the run: timing is meaningless for a job this short on a busy machine.
        rng = random.Random(SEED)
        kill_at = [int(batches * (k + rng.random()) / 2) for k in range(2)]
        shards: dict[str, tuple[int, int]] = {}
        for count in kill_at:
            pid = _forked_cli(argv, _env(tmp_path))
            try:
                while len(list(checkpoint.glob("rows-*.parquet"))) < max(count, len(shards) + 1):
                    assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the job ended before the kill"
                    time.sleep(0.002)
            finally:
                os.kill(pid, signal.SIGKILL)
                assert _exit_status(pid) == -signal.SIGKILL
            assert not output.exists()
            # A finished batch is never computed (and written) again: its shard stays as is.
            now = {p.name: _identity(p) for p in checkpoint.glob("rows-*.parquet")}
            assert all(now[name] == identity for name, identity in shards.items())
            shards = now

        done = sum(pq.ParquetFile(checkpoint / name).metadata.num_rows for name in shards)
        assert _exit_status(_forked_cli(argv, _env(tmp_path))) == 0
    finally:
        torch.set_num_threads(before)
    result = pq.read_table(output)
    report = pk.report_of(result)
    # The rerun computed exactly the rows no shard held, and rewrote no shard.
    assert report["rows_resumed"] == done and report["rows_scored"] == rows - done
    assert all(_identity(checkpoint / name) == identity for name, identity in shards.items())
    np.testing.assert_array_equal(result.column("score").to_numpy(),
                                  expected.column("score").to_numpy())
    assert _leftovers(tmp_path, checkpoint) == []


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


# --------------------------------------------------------------------------------------------
# Full disk and read-only output folders (tmpfs mounts need root)
# --------------------------------------------------------------------------------------------


def _mount(folder: Path, options: str) -> None:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards."""
    folder = tmp_path / "small"
    _mount(folder, "size=1m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path):
    """A folder no file can be created in: a read-only tmpfs for root (root ignores mode
    bits), else a 0555 folder."""
    folder = tmp_path / "read_only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    _mount(folder, "ro,size=64k")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def _big_pairs_input() -> pa.Table:
    # all_pairs over about 4 responses a prompt: 2.5 MB of Parquet, over twice the small disk.
    return _corpus(40_000, seed=3)


@pytest.mark.filterwarnings("ignore:.*exceed the memory budget")
def test_full_disk_for_the_result_is_a_clear_error_with_nothing_left(small_disk, tmp_path,
                                                                      monkeypatch):
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read $TMPDIR
    data = _big_pairs_input()
    out = small_disk / "pairs"
    with pytest.raises(pk.PrefkitError, match="no space left on device") as error:
        pk.mine_pairs(data, strategy="all_pairs", out=out, memory_limit="256KB",
                      contiguous=False)
    assert str(small_disk) in str(error.value)
    assert list(small_disk.iterdir()) == []  # no partial result, no temporary folder
    assert list(spill.iterdir()) == []  # the spill is removed

    file = small_disk / "pairs.parquet"
    with pytest.raises(pk.PrefkitError, match=f"cannot write '{file}': no space left"):
        pk.write_table(pk.mine_pairs(data, strategy="all_pairs"), file)
    assert list(small_disk.iterdir()) == []


@pytest.mark.filterwarnings("ignore:.*exceed the memory budget")
def test_full_disk_for_the_spill_is_a_clear_error_with_the_spill_removed(small_disk,
                                                                         monkeypatch):
    monkeypatch.setenv("TMPDIR", str(small_disk))
    monkeypatch.setattr("tempfile.tempdir", None)
    data = _corpus(30_000, seed=4)
    with pytest.raises(pk.PrefkitError, match="no space left on device") as error:
        pk.mine_pairs(data, memory_limit="256KB", contiguous=False)
    assert f"'{small_disk}" in str(error.value)
    assert list(small_disk.iterdir()) == []


def test_read_only_output_fails_before_any_work(read_only, tmp_path, monkeypatch, capsys):
    source = tmp_path / "in.parquet"
    pq.write_table(_corpus(200), source)

    def no_work(*args, **kwargs):
        raise AssertionError("the input was read before the output was checked")

    monkeypatch.setattr("prefkit.stream.open_source", no_work)
    monkeypatch.setattr("prefkit.cli._read", no_work)
    for target in (["-o", str(read_only / "pairs.parquet")], ["--out-dir", str(read_only / "p")]):
        assert cli(["pairs", str(source), *target, "--memory-limit", "1MB", "-q"]) == 2
        assert "cannot write" in capsys.readouterr().err
        assert cli(["pairs", str(source), *target, "-q"]) == 2
        assert "cannot write" in capsys.readouterr().err
    assert cli(["score", str(source), "-o", str(read_only / "s.parquet"), "--model", "x"]) == 2
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(pk.PrefkitError, match="cannot write"):
        pk.mine_pairs(str(source), out=read_only / "pairs")
    assert list(read_only.iterdir()) == []
