"""Fuzz harness: ``pk.read_table`` and the streaming readers on mutated Parquet, JSONL, JSON,
CSV, gzipped JSONL and Arrow IPC bytes.

An input is one byte that picks the format, then the file's bytes. The seed corpus
(``fuzz/seeds/readers``, written by ``python fuzz/readers.py --write-seeds``) holds one small
valid file of each format with prompt/response/score rows (unicode, chat messages, nulls),
so libFuzzer mutates real files: cut footers, flipped page bytes, broken JSON lines.

Oracle: reading the file in memory (``pk.read_table``) and streaming it (``pk.mine_pairs`` on
``InputFiles`` with ``memory_limit=``, so through ``stream._file_batches``) raise nothing but
``PrefkitError`` with no panic text; where both read the file, they mine the same pairs, and
every row is accounted for.

Run: ``python fuzz/readers.py [libFuzzer flags] [corpus folders]``, or through ``fuzz/run.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import prefkit as pk
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    from prefkit.stream import InputFiles
    from pyarrow import ipc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prefkit_fuzz import Finding, check_accounting, expect_clean

SEEDS = Path(__file__).resolve().parent / "seeds" / "readers"
#: The formats, in the order the first input byte picks them.
SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json", ".csv", ".arrow")
#: Files are written where reading them costs no disk I/O.
SCRATCH = Path(tempfile.mkdtemp(prefix="prefkit-fuzz-readers-", dir="/dev/shm"
                                if Path("/dev/shm").is_dir() else None))


def seed_table() -> pa.Table:
    """The rows of every seed: two prompts, ties, a null score, unicode and NUL."""
    return pa.table({
        "prompt": ["Wie spät ist es?", "Wie spät ist es?", "Wie spät ist es?", "日本の首都は?",
                   "日本の首都は?", "a\x00b"],
        "response": ["Drei Uhr.", "Keine Ahnung", "🕒", "東京", "大阪", ""],
        "score": [2.0, 0.5, 2.0, 1.0, None, 3.0],
        "messages": [[{"role": "user", "content": "hi"}], None, [], [{"role": "user",
                     "content": "é"}], [{"role": None, "content": "x"}], None],
    })


def seed_bytes(suffix: str) -> bytes:
    """The seed file of one format, as bytes."""
    table = seed_table()
    sink = io.BytesIO()
    if suffix == ".parquet":
        pq.write_table(table, sink, row_group_size=2)  # several row groups to corrupt
    elif suffix in (".jsonl", ".jsonl.gz"):
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist())
        data = lines.encode()
        return gzip.compress(data, mtime=0) if suffix == ".jsonl.gz" else data
    elif suffix == ".json":
        return json.dumps(table.to_pylist(), ensure_ascii=False).encode()
    elif suffix == ".csv":
        pcsv.write_csv(table.drop_columns("messages"), sink)
    else:
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=3)
    return sink.getvalue()


def write_seeds(folder: Path = SEEDS) -> None:
    """One seed input per format: its index byte, then the file."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, suffix in enumerate(SUFFIXES):
        (folder / f"seed{suffix}.bin").write_bytes(bytes([index]) + seed_bytes(suffix))


def sorted_pairs(table: pa.Table) -> list:
    columns = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    rows = table.select([c for c in columns if c in table.column_names]).to_pylist()
    return sorted(rows, key=repr)


def test_one_input(data: bytes) -> None:
    """One fuzz input: a file of the picked format, read in memory and streamed."""
    if not data:
        return
    suffix = SUFFIXES[data[0] % len(SUFFIXES)]
    # A relative name, read from inside the scratch folder: error messages name the file, and
    # atheris feeds compared strings to the mutator, so a random folder name in them would make
    # two runs from one seed differ. (The folder is left before libFuzzer writes a crash input.)
    path = Path(f"input{suffix}")
    caller = os.getcwd()
    os.chdir(SCRATCH)
    path.write_bytes(data[1:])
    try:
        table = expect_clean(lambda: pk.read_table(path))
        in_memory = None
        if table is not None:
            in_memory = expect_clean(lambda: pk.mine_pairs(table, strategy="best_vs_worst"))
            if in_memory is not None:
                check_accounting(in_memory, table.num_rows)
        for skip in (False, True):
            streamed = expect_clean(lambda skip=skip: pk.mine_pairs(
                InputFiles(path, skip_bad_files=skip), strategy="best_vs_worst",
                memory_limit="16MB"))
            if streamed is None:
                continue
            skipped = pk.report_of(streamed).get("skipped_files")
            if in_memory is not None and not skipped and (
                    sorted_pairs(streamed) != sorted_pairs(in_memory)):
                raise Finding("streaming and in-memory reads of one file mine different pairs")
    finally:
        path.unlink(missing_ok=True)
        os.chdir(caller)


def main() -> None:
    if sys.argv[1:] == ["--write-seeds"]:
        write_seeds()
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
