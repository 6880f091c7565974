"""Resource limits: ``memory_limit=`` on adversarial key distributions, the thread pool's size
under ``PREFKIT_NUM_THREADS`` and cgroup CPU quotas. Each measurement runs in a subprocess,
so the peak RSS and CPU time are the child's own. See docs/reliability.md, "Resource limits".
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
import bench_memory

#: The promise (docs/reliability.md): peak RSS over an idle process is at most
#: ``memory_limit * (1 + TOLERANCE)``, or ``memory_limit + FIXED`` for small limits, where
#: one read batch, allocator caches and the Rust working set, which do not shrink with the
#: limit, dominate.
TOLERANCE = 0.5
FIXED = 200 * 2**20
LIMIT = "64MB"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory")
    return {
        r["case"]: r
        for r in bench_memory.measure(["unique", "zipf", "giant"], 300_000, LIMIT,
                                      folder=str(folder))
    }


@pytest.mark.parametrize("case", ["unique", "zipf"])
def test_memory_limit_bounds_peak_rss(measured, case):
    result = measured[case]
    assert result["input_bytes"] > result["memory_limit"] / 4  # it streams, not in memory
    assert result["streaming"]["mode"] in ("partitioned", "contiguous")
    limit = result["memory_limit"]
    assert result["over_baseline"] <= max(limit * (1 + TOLERANCE), limit + FIXED), result


def test_one_group_larger_than_the_limit_is_reported(measured):
    # One group cannot be split: it is processed whole, with a warning and the count in the
    # provenance, never silently.
    result = measured["giant"]
    assert result["streaming"]["oversized_chunks"] == 1
    assert result["streaming"]["largest_chunk_bytes"] > result["memory_limit"] / 4
    assert any("exceed the memory budget" in w for w in result["warned"])


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------

#: A child that reports the pool size and its own CPU and wall time on a parallel operation
#: (MinHash signatures of a few thousand rows: every core busy for about a second).
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import pyarrow as pa
    import prefkit as pk
    from prefkit import _core
    words = [f"w{i}" for i in range(5000)]
    text = [" ".join(words[(i * 7 + j) % 5000] for j in range(60)) for i in range(20000)]
    table = pa.table({"prompt": text})
    threads = _core.num_threads()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    pk.dedup(table, method="minhash", num_perm=512, ngram=3)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"threads": threads, "cpu": cpu, "wall": wall}))
""")


def _child(env: dict, preexec=None) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, check=True, preexec_fn=preexec)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env(**values: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFKIT_NUM_THREADS"}
    env.update(values)
    return env


def test_prefkit_num_threads_one_runs_one_thread():
    result = _child(_env(PREFKIT_NUM_THREADS="1"))
    assert result["threads"] == 1
    # One thread cannot use more CPU than wall time (a little for Python's own threads).
    assert result["cpu"] <= 1.2 * result["wall"] + 0.05, result


def _cgroup_cpu_limit() -> int | None:
    """The CPU quota of this process's cgroups, read here independently of the Rust code:
    v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us`` of the cgroup and its ancestors."""
    limits = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            roots, files = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"], ("cpu.max",)
        elif "cpu" in controllers.split(","):
            roots = [f"/sys/fs/cgroup/{controllers}", "/sys/fs/cgroup/cpu",
                     "/sys/fs/cgroup/cpu,cpuacct"]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for root in roots:
            folder = Path(root + path)
            while folder.is_relative_to(root):
                values = [folder / f for f in files]
                if all(v.exists() for v in values):
                    fields = " ".join(v.read_text() for v in values).split()
                    if fields[0] not in ("max", "-1"):
                        limits.append(math.ceil(int(fields[0]) / int(fields[1])))
                if folder == Path(root):
                    break
                folder = folder.parent
            if Path(root).exists():
                break
    return min(limits) if limits else None


def test_default_pool_is_cores_capped_by_the_cgroup_quota():
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_limit()
    expected = min(cores, quota) if quota else cores
    assert _child(_env())["threads"] == expected


def test_a_cgroup_cpu_quota_caps_the_pool(tmp_path):
    """As root with a writable cgroup v1 cpu hierarchy: a child moved into a new cgroup with a
    quota of one CPU runs one thread."""
    root = Path("/sys/fs/cgroup/cpu")
    if os.geteuid() != 0 or not (root / "cpu.cfs_quota_us").exists():
        pytest.skip("needs root and a cgroup v1 cpu hierarchy")
    group = root / f"prefkit-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
    except OSError as error:
        pytest.skip(f"cannot create a cgroup: {error}")
    try:
        def enter() -> None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

        assert _child(_env(), preexec=enter)["threads"] == 1
        # PREFKIT_NUM_THREADS, when set, is the user's choice and wins over the quota.
        assert _child(_env(PREFKIT_NUM_THREADS="3"), preexec=enter)["threads"] == 3
    finally:
        group.rmdir()
