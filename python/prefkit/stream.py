"""Out-of-core execution of the group-wise operations: inputs larger than memory.

``mine_pairs``, ``rank_lists``, ``order_curriculum(per_prompt=True)`` and ``build_trees`` need
whole groups. Given a file path, a glob, a folder, a ``pyarrow.dataset.Dataset`` or a
``RecordBatchReader`` (or ``out=`` / ``memory_limit=``), they come here and run in one of three
modes (the mode is in the result's provenance under ``streaming``):

- ``in_memory``: the input fits ``memory_limit`` (or there is none): read it all, one call.
- ``contiguous``: the rows of each group are adjacent in the input (groups never reappear):
  one pass over the batches, carrying the unfinished trailing group into the next chunk.
- ``partitioned``: two passes. Rows are hash-partitioned by their group key id (the xxh3
  ``group_id``) into Arrow IPC spill files in a temporary folder, which is removed after
  success, failure or KeyboardInterrupt; then the partitions, packed into chunks that fit the
  budget, are processed one at a time.

Rows carry their global input row number through the spill, so ``chosen_row``,
``rejected_row`` and ``rows`` refer to the input as a whole: files in sorted path order, rows
in file order. The result has the same rows as the in-memory call; see ``docs/stream.md`` for
the order and the accounting.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import METADATA_KEY, attach, report_of
from prefkit.io import (
    READ_SUFFIXES,
    SPILL_PREFIX,
    UNREADABLE,
    BadFileError,
    as_table,
    bad_file,
    parquet_batches,
    prepare_output,
    read_table,
    remove_stale,
    temp_path,
    write_error,
    write_table,
)

#: The global input row number of every row, carried through the spill.
ROW = "__prefkit_row"
#: Rows per batch read from a file.
BATCH_ROWS = 65_536
#: An in-memory operation holds about this many times its input's bytes at its peak (the
#: input, key bytes, rank arrays, the result and its take indices), so a chunk gets
#: ``memory_limit / WORKING_SET`` bytes of input.
WORKING_SET = 4
#: Spill buckets when the input's size is unknown in advance (a RecordBatchReader); the
#: second pass packs buckets into chunks that fit the budget.
DEFAULT_BUCKETS = 64
#: Chunk size of the contiguous pass without a memory limit.
DEFAULT_CHUNK_BYTES = 256 * 2**20

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: int | str) -> int:
    """Parse a memory size: an int (bytes) or a string such as ``"2GB"``, ``"512MiB"``.

    ``KB``/``MB``/``GB``/``TB`` are powers of 10, ``KiB``/``MiB``/``GiB``/``TiB`` (and the
    bare ``K``/``M``/``G``) powers of 2.

    Raises
    ------
    PrefkitError
        When ``value`` is not a positive size.

    Examples
    --------
    >>> from prefkit.stream import parse_size
    >>> parse_size("2GB"), parse_size("1.5 MiB"), parse_size(1024)
    (2000000000, 1572864, 1024)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if match and match.group(2).lower() in _UNITS:
            size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
            if size > 0:
                return size
    raise PrefkitError(f"memory_limit must be a positive size such as '2GB', got {value!r}")


def is_streaming(data: Any, out: Any, memory_limit: Any) -> bool:
    """Whether a call goes through the streaming path: the input is a path, a glob, a folder or
    a ``pyarrow.dataset.Dataset``, or ``out=`` or ``memory_limit=`` is given."""
    return (
        out is not None
        or memory_limit is not None
        or isinstance(data, (str, os.PathLike))
        or _is_dataset(data)
    )


def _is_dataset(data: Any) -> bool:
    # Checked by module name: importing pyarrow.dataset to use isinstance costs time on every
    # in-memory call.
    return type(data).__module__ == "pyarrow._dataset" and hasattr(data, "to_batches")


@dataclass
class _Source:
    """Batches of an input, and what is known of its size before reading it."""

    open: Callable[[], Iterator[pa.RecordBatch]]
    #: Whether ``open`` may be called again (a reader can be read once).
    rereadable: bool
    #: Estimated in-memory bytes, None when unknown.
    nbytes: int | None
    rows: int | None
    #: Files skipped by ``skip_bad_files=True``: path -> its ``skipped_files`` entry.
    skipped: dict = dataclasses.field(default_factory=dict)


class InputFiles(os.PathLike):
    """A path, glob or folder of input files and how to read them: pass it wherever the
    operations take a path (``docs/stream.md``).

    Parameters
    ----------
    path
        A file, a glob (``"data/*.parquet"``, ``**`` allowed) or a folder.
    skip_bad_files
        ``False`` (default): a truncated or corrupt file is a ``PrefkitError`` naming it and
        where it goes wrong (the JSON line and its byte offset, the Parquet footer's offset
        and the file's size, the corrupt row group's byte offset). ``True``: such a file is
        skipped (a Parquet file from its corrupt row group on: the row groups before it were
        read) and listed in the result's provenance under ``skipped_files`` (file, reason,
        byte offset, rows not read), its rows counted as dropped (``bad_file``) where the file
        says how many. A file whose schema does not fit is an error either way.

    Examples
    --------
    >>> import prefkit as pk
    >>> from prefkit.stream import InputFiles
    >>> pairs = pk.mine_pairs(InputFiles("data/", skip_bad_files=True))  # doctest: +SKIP
    >>> pk.report_of(pairs)["skipped_files"]  # doctest: +SKIP
    [{'file': 'data/2.jsonl', 'reason': 'line 7 (byte offset 512) is not a JSON object: ...',
      'offset': 512, 'rows': 9}]
    """

    def __init__(self, path: str | os.PathLike, *, skip_bad_files: bool = False) -> None:
        if not isinstance(skip_bad_files, bool):
            raise PrefkitError(f"skip_bad_files must be True or False, got {skip_bad_files!r}")
        self.path = os.fspath(path)
        self.skip_bad_files = skip_bad_files

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"InputFiles({self.path!r}, skip_bad_files={self.skip_bad_files})"


def _skip(skipped: dict, error: BadFileError) -> None:
    """Remember a skipped file (once: a multi-pass run meets it on every pass)."""
    skipped.setdefault(str(error.path), {
        "file": str(error.path), "reason": error.reason, "offset": error.offset,
        "rows": error.rows,
    })


def count_skipped(record: dict, skipped: dict | None) -> None:
    """Add the files that ``skip_bad_files`` skipped to a result's provenance ``record``:
    ``skipped_files`` lists them; the rows they held that were not read (where known) are
    ``dropped["bad_file"]`` and part of ``rows_in``, so that every row stays accounted for."""
    if not skipped:
        return
    entries = list(skipped.values())
    record["skipped_files"] = entries
    rows = sum(entry["rows"] or 0 for entry in entries)
    if rows:
        record["rows_in"] = record.get("rows_in", 0) + rows
        dropped = record.setdefault("dropped", {})
        dropped["bad_file"] = dropped.get("bad_file", 0) + rows


def _files(path: str | os.PathLike) -> list[Path]:
    """The input files of a path, a glob or a folder, in sorted order."""
    text = os.fspath(path)
    if any(c in text for c in "*?["):
        found = [Path(p) for p in glob.glob(text, recursive=True)]
        what = "glob"
    elif Path(text).is_dir():
        found = [p for p in Path(text).rglob("*") if not p.name.startswith((".", "_"))]
        what = "folder"
    elif Path(text).exists():
        return [Path(text)]
    else:
        raise PrefkitError(f"input file '{text}' does not exist")
    files = sorted(p for p in found if p.is_file() and p.name.lower().endswith(READ_SUFFIXES))
    if not files:
        raise PrefkitError(
            f"{what} '{text}' holds no input files (expected {', '.join(READ_SUFFIXES)})"
        )
    return files


def _file_batches(files: Sequence[Path], skipped: dict | None = None) -> Iterator[pa.RecordBatch]:
    """The batches of every file in order, each conformed to the first file's schema, so that
    a file that does not fit is an error naming it and the column, not a mix of types. A
    truncated or corrupt file is a :class:`BadFileError` naming it and where, or, given
    ``skipped`` (``skip_bad_files=True``), is recorded there and skipped."""
    schema = None
    for path in files:
        if skipped is not None and str(path) in skipped:
            continue  # found bad on an earlier pass
        try:
            if path.name.lower().endswith(".parquet"):
                # Row group by row group: a file is never held whole.
                batches = parquet_batches(path, BATCH_ROWS)
            else:
                batches = read_table(path).to_batches(max_chunksize=BATCH_ROWS)
            for batch in batches:
                if schema is None:
                    schema, first = batch.schema, path
                yield _conformed(batch, schema, path, first)
        except UNREADABLE as error:
            if isinstance(error, PrefkitError) and not isinstance(error, BadFileError):
                raise  # a schema that does not fit: not a bad file
            bad = error if isinstance(error, BadFileError) else bad_file(path, error)
            if skipped is None:
                if bad is error:
                    raise
                raise bad from error
            _skip(skipped, bad)


def _conformed(batch: pa.RecordBatch, schema: pa.Schema, path: Path, first: Path):
    """``batch`` with ``schema``'s columns and types: the same names in the same order, and
    types that cast safely (an int64 column of one JSONL file, double in another)."""
    if batch.schema.equals(schema):
        return batch
    if batch.schema.names != schema.names:
        missing = [n for n in schema.names if n not in batch.schema.names]
        extra = [n for n in batch.schema.names if n not in schema.names]
        what = (f"has no column '{missing[0]}'" if missing else
                f"has a column '{extra[0]}' that '{first}' lacks" if extra else
                f"orders its columns {batch.schema.names}, not {schema.names}")
        raise PrefkitError(f"input file '{path}' {what} (the first input file '{first}' has "
                           f"columns {schema.names}); all files must share one schema")
    columns = []
    for field, column in zip(schema, batch.columns):
        if column.type != field.type:
            try:
                if not _same_kind(column.type, field.type):
                    raise pa.ArrowInvalid("different kinds of values")
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise PrefkitError(
                    f"column '{field.name}' of input file '{path}' is {column.type}, but "
                    f"{field.type} in the first input file '{first}' ({error}); all files "
                    f"must share one schema"
                ) from error
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _same_kind(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a column of type ``actual`` may stand for one of type ``expected``: nulls for
    anything, numbers for numbers, text for text (what JSON readers infer differently from
    file to file); never text for numbers."""
    def kind(t: pa.DataType) -> str:
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return "number"
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return "text"
        return str(t)

    return pa.types.is_null(actual) or kind(actual) == kind(expected)


def open_source(data: Any) -> _Source:
    """Resolve a streaming input: a path, a glob, a folder, a Dataset, a reader or a table."""
    if isinstance(data, (str, os.PathLike)):
        import pyarrow.parquet as pq

        files = _files(data)
        skip = isinstance(data, InputFiles) and data.skip_bad_files
        skipped: dict = {}
        nbytes, rows = 0, 0
        for path in files:
            if path.name.lower().endswith(".parquet"):
                try:
                    meta = pq.ParquetFile(path).metadata
                except UNREADABLE as error:
                    # A bad footer: found before any row is read.
                    if not skip:
                        raise bad_file(path, error) from error
                    _skip(skipped, bad_file(path, error))
                    continue
                rows += meta.num_rows
                nbytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            else:
                # Text formats are about as large in memory as on disk.
                nbytes += path.stat().st_size
        files = [path for path in files if str(path) not in skipped]
        return _Source(
            lambda: _file_batches(files, skipped if skip else None),
            True, nbytes, rows or None, skipped,
        )
    if _is_dataset(data):
        files = getattr(data, "files", None) or []
        nbytes = sum(os.path.getsize(f) for f in files if os.path.exists(f)) or None
        return _Source(
            lambda: iter(data.to_batches(batch_size=BATCH_ROWS, fragment_readahead=1)),
            True,
            # Parquet decodes to several times its (compressed) size on disk.
            nbytes * 3 if nbytes else None,
            data.count_rows(),
        )
    if isinstance(data, pa.RecordBatchReader):
        return _Source(lambda: iter(data), False, None, None)
    table = as_table(data)
    return _Source(
        lambda: iter(table.to_batches(max_chunksize=BATCH_ROWS)),
        True,
        table.get_total_buffer_size(),
        table.num_rows,
    )


def rereadable(source: _Source, folder: str) -> _Source:
    """``source``, or, for a RecordBatchReader (read once), its batches spilled first into one
    LZ4-compressed IPC file under ``folder`` and read back batch by batch (not memory-mapped:
    mapped pages would count as the process's memory)."""
    if source.rereadable:
        return source
    from pyarrow import ipc

    path = os.path.join(folder, "input.arrow")
    writer = None
    nbytes = rows = 0
    try:
        for batch in source.open():
            if writer is None:
                options = ipc.IpcWriteOptions(compression="lz4")
                writer = ipc.new_file(path, batch.schema, options=options)
            writer.write_batch(batch)
            nbytes += batch.nbytes
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return _Source(lambda: iter(()), True, 0, 0)

    def batches() -> Iterator[pa.RecordBatch]:
        with pa.OSFile(path) as handle:
            reader = ipc.open_file(handle)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)

    return _Source(batches, True, nbytes, rows)


def _numbered(batches: Iterator[pa.RecordBatch], progress: Any) -> Iterator[pa.RecordBatch]:
    """The batches with the global row number column, all cast to the first batch's schema."""
    schema = None
    start = 0
    done_bytes = 0
    for batch in batches:
        if ROW in batch.schema.names:
            raise PrefkitError(f"column '{ROW}' is reserved for prefkit's streaming row numbers")
        if schema is None:
            schema = batch.schema
        elif batch.schema != schema:
            try:
                batch = batch.select(schema.names).cast(schema)
            except (KeyError, ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise PrefkitError(
                    f"input batch at row {start} does not match the first batch's schema "
                    f"({schema}); got {batch.schema}: {err}"
                ) from None
        rows = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
        start += batch.num_rows
        done_bytes += batch.nbytes
        progress.update(batch.num_rows)
        progress.set_postfix_str(f"{_human(done_bytes)} read", refresh=False)
        yield batch.append_column(ROW, rows)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _progress(total: int | None, desc: str, unit: str = "row") -> Any:
    from tqdm import tqdm

    # disable=None: bars on an interactive stderr only, silent in logs and tests.
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=None, leave=False)


def _key_ids(batch: pa.RecordBatch, key: str | Callable) -> tuple[np.ndarray, np.ndarray]:
    """Every row's group key id (the ``group_id`` of its group) and whether its key is valid.
    ``key`` is a column, or a function of a batch that returns the ids (exact dedup)."""
    if callable(key):
        ids = pa.array(key(batch))
    elif key not in batch.schema.names:
        raise PrefkitError(
            f"column '{key}' not found; the table has columns "
            f"{[n for n in batch.schema.names if n != ROW]}"
        )
    else:
        ids = pa.array(_core.key_ids(pa.Table.from_batches([batch]), key))
    valid = np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(ids.fill_null(0).to_numpy(), dtype=np.uint64), valid


def _take(batch: pa.RecordBatch, indices: np.ndarray) -> pa.Table:
    # prefkit's take: pyarrow has no take kernel for string_view (polars' text).
    return pa.table(_core.take(pa.Table.from_batches([batch]), pa.array(indices, pa.int64())))


class _NotContiguous(Exception):
    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row


class _Sink:
    """Where results go: a list of tables, or numbered Parquet files under ``out``.

    The files are written into a hidden temporary folder next to ``out`` and the folder is
    renamed to ``out`` when the result is complete, so ``out`` never holds part of a result
    (a run killed half-way leaves only the temporary folder, which the next run removes).
    """

    def __init__(self, out: str | os.PathLike | None) -> None:
        # Checked before any work: a read-only or non-empty ``out`` fails at once.
        self.out = prepare_output(out, folder=True) if out is not None else None
        self.tables: list[pa.Table] = []
        self.written: list[Path] = []
        self.folder: Path | None = None
        #: The input's skipped bad files (``_Source.skipped``), counted into the record.
        self.skipped: dict | None = None

    def add(self, table: pa.Table) -> None:
        # Each chunk's own record counts only its rows; the whole record is attached at the end.
        metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != METADATA_KEY}
        table = table.replace_schema_metadata(metadata or None)
        if self.out is None:
            self.tables.append(table)
        elif table.num_rows or not self.written:
            if self.folder is None:
                self.folder = temp_path(self.out.absolute().parent, self.out.name, directory=True)
            path = self.folder / f"part-{len(self.written):05d}.parquet"
            self.written.append(write_table(table, path))

    def finish(self, name: str, parameters: dict, record: dict) -> Any:
        """The result with its provenance: a table, or a Dataset over the written parts whose
        ``_common_metadata`` holds the record."""
        count_skipped(record, self.skipped)
        if self.out is None:
            result = pa.concat_tables(self.tables, promote_options="permissive")
            return attach(result, name, parameters, record)
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        schema = pq.read_schema(self.written[0])
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in self.written)
        record.setdefault("rows_out", rows)
        schema = attach(schema.empty_table(), name, parameters, record).schema
        try:
            # The Parquet convention for a dataset's common schema: pyarrow, Spark and others
            # read it, and dataset discovery skips names starting with "_".
            pq.write_metadata(schema, self.folder / "_common_metadata")
            # rename(2) replaces an empty folder: ``out`` appears whole, in one step.
            os.replace(self.folder, self.out)
        except OSError as error:
            raise write_error(error, self.out) from error
        self.folder = None
        self.written = [self.out / path.name for path in self.written]
        return ds.dataset(self.written, format="parquet", schema=schema)

    def discard(self) -> None:
        self.tables.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.written.clear()


@contextmanager
def spill_folder() -> Iterator[str]:
    """A new spill folder ``prefkit-spill-<pid>-...`` in the temporary folder (``$TMPDIR``),
    removed on success, error or KeyboardInterrupt. The spill folders of killed runs (whose
    process is gone) are removed first; a full disk is an error naming the folder.

    Examples
    --------
    >>> import os
    >>> from prefkit.stream import spill_folder
    >>> with spill_folder() as spill:
    ...     os.path.isdir(spill)
    True
    >>> os.path.exists(spill)
    False
    """
    base = tempfile.gettempdir()
    remove_stale(base, SPILL_PREFIX)
    try:
        folder = temp_path(base, prefix=SPILL_PREFIX, directory=True)
    except OSError as error:
        raise write_error(error, base) from error
    try:
        yield str(folder)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise write_error(error, folder) from error
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def merge_records(total: dict, part: dict) -> None:
    """Add one chunk's accounting to the total: counts add up, lists add element-wise."""
    for name, value in part.items():
        if name in ("op", "prefkit_version", "parameters", "source"):
            continue
        if name not in total:
            total[name] = value if not isinstance(value, dict) else {}
            if isinstance(value, dict):
                merge_records(total[name], value)
        elif isinstance(value, bool) or not isinstance(value, (int, float, dict, list)):
            continue
        elif isinstance(value, dict):
            merge_records(total[name], value)
        elif isinstance(value, list) and any(isinstance(v, list) for v in value + total[name]):
            total[name] = total[name] + value  # lists of records: concatenated
        elif isinstance(value, list):
            old = total[name]
            longer = max(len(old), len(value))
            old = old + [0] * (longer - len(old))
            total[name] = [a + b for a, b in zip(old, value + [0] * (longer - len(value)))]
        else:
            total[name] += value


@dataclass
class _Job:
    """One streaming run of an in-memory operation."""

    op: Callable[..., pa.Table]
    name: str
    parameters: dict
    row_columns: Sequence[str]
    sink: _Sink
    record: dict
    #: Provenance lists whose entries start with a chunk row number (``contaminated_rows``):
    #: renumbered to global rows and concatenated.
    record_rows: Sequence[str] = ()
    #: How a chunk's record (and result) adds to the total; default: ``merge_records``.
    merge: Callable[[dict, dict, pa.Table], None] | None = None
    op_parameters: dict | None = None
    empty: pa.Table | None = None
    #: Chunks over the budget (``oversized``), reported under ``streaming``.
    oversized: dict | None = None

    def process(self, table: pa.Table, *, force: bool = False) -> None:
        if table.num_rows == 0 and not force:
            return
        result = self.op(table, **self.parameters)
        own = report_of(result)
        if self.record_rows:
            rows = table.column(ROW).to_numpy()
            for name in self.record_rows:
                own[name] = [[int(rows[entry[0]]), *entry[1:]] for entry in own.get(name, [])]
        if self.op_parameters is None:
            self.op_parameters = own.get("parameters", {})
        if self.merge is not None:
            self.merge(self.record, own, result)
        else:
            merge_records(self.record, own)
        self.sink.add(self._renumber(result, table.column(ROW)))
        release_memory()

    def _renumber(self, result: pa.Table, rows: pa.ChunkedArray) -> pa.Table:
        """Chunk row numbers -> global input row numbers; drop the row number column."""
        rows = rows.combine_chunks()
        for name in self.row_columns:
            index = result.schema.get_field_index(name)
            if index < 0:
                continue
            column = result.column(index).combine_chunks()
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                # offsets and values (not flatten) stay consistent for a sliced list array.
                column = type(column).from_arrays(
                    column.offsets,
                    rows.take(column.values),
                    mask=column.is_null() if column.null_count else None,
                )
            else:
                column = rows.take(column)
            result = result.set_column(index, result.field(index).with_type(column.type), column)
        if ROW in result.column_names:
            result = result.drop_columns([ROW])
        return result

    def finish(self) -> Any:
        if not self.sink.tables and not self.sink.written:
            # No rows at all: the operation on an empty table gives the result's schema.
            self.process(self.empty, force=True)
        parameters = self.op_parameters if self.op_parameters is not None else self.parameters
        return self.sink.finish(self.name, parameters, self.record)


def run(
    op: Callable[..., pa.Table],
    name: str,
    data: Any,
    parameters: dict,
    *,
    key: str | Callable[[pa.Schema], Any] | None,
    row_columns: Sequence[str] = (),
    record_rows: Sequence[str] = (),
    merge: Callable[[dict, dict, pa.Table], None] | None = None,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    contiguous: bool | None = None,
) -> Any:
    """Run the in-memory operation ``op(table, **parameters)`` over a streaming input.

    Parameters
    ----------
    op, name
        The public in-memory function and its name in the provenance.
    data
        A path, glob, folder, ``pyarrow.dataset.Dataset``, ``RecordBatchReader`` or table.
    parameters
        Keyword arguments of ``op``.
    key
        The grouping column, or a function of the input schema that names it (or returns
        a function of a batch that computes the rows' key ids); None for a
        row-wise operation (``decontaminate``): chunks of whole batches, one pass, no spill.
    row_columns
        Result columns holding input row numbers (int64 or list<int64>), renumbered to global.
    record_rows
        Provenance lists of ``[row, ...]`` entries, renumbered to global and concatenated.
    merge
        ``merge(total, chunk_record, chunk_result)`` for counts that do not add up over chunks;
        default ``merge_records``.
    out
        A new or empty folder: the result is written there as Parquet files ``part-NNNNN.parquet``
        (plus ``_common_metadata`` with the provenance) as it is produced, and a
        ``pyarrow.dataset.Dataset`` over them is returned. Default: a ``pyarrow.Table``.
    memory_limit
        Budget of one in-memory step (``"2GB"``); None: no limit, the input is read whole.
    contiguous
        True: groups are contiguous in the input (an error if one reappears); False: always
        partition; None: try one pass when the input can be read twice, and partition on the
        first reappearing group.

    Returns
    -------
    pyarrow.Table or pyarrow.dataset.Dataset
        The result, with provenance summed over chunks and ``streaming`` (mode, chunks).

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["a", "b", "a", "b"], "response": ["1", "2", "3", "4"],
    ...                  "score": [1.0, 0.0, 0.0, 1.0]})
    >>> pairs = pk.mine_pairs(data, memory_limit="1KB", contiguous=False)
    >>> sorted(pairs.column("chosen_row").to_pylist())
    [0, 3]
    >>> pk.report_of(pairs)["streaming"]["mode"]
    'partitioned'
    """
    limit = parse_size(memory_limit) if memory_limit is not None else None
    if contiguous not in (None, True, False):
        raise PrefkitError(f"contiguous must be True, False or None, got {contiguous!r}")
    sink = _Sink(out)
    source = open_source(data)
    sink.skipped = source.skipped
    job = _Job(
        op, name, parameters, row_columns, sink, record={}, record_rows=record_rows, merge=merge
    )
    budget = limit // WORKING_SET if limit is not None else None
    fits = budget is None or (source.nbytes is not None and source.nbytes <= budget)
    try:
        with _progress(source.rows, f"prefkit {name}") as bar:
            batches = _numbered(source.open(), bar)
            first = next(batches, None)
            if first is None:
                raise PrefkitError(f"the input of {name} has no rows and no batches")
            job.empty = pa.Table.from_batches([first.slice(0, 0)])
            column = key(first.schema) if callable(key) else key
            if column is not None:
                _key_ids(first.slice(0, 0), column)  # a missing key column fails first
            batches = _chain(first, batches)
            if (contiguous is None or column is None) and fits:
                mode = "in_memory"
                job.process(pa.Table.from_batches(list(batches)))
            elif column is None:
                mode = "batches"
                _chunks(job, batches, budget)
            elif contiguous is True or (contiguous is None and source.rereadable):
                mode = "contiguous"
                try:
                    _one_pass(job, batches, column, budget)
                except _NotContiguous as err:
                    if contiguous is True:
                        raise PrefkitError(
                            f"contiguous=True but the group of row {err.row} (column "
                            f"'{column}') appeared before, separated by other groups; pass "
                            "contiguous=False (or None) to partition the input"
                        ) from None
                    # A shuffled input shows a reappearing group within a batch or two.
                    sink.discard()
                    job.record.clear()
                    bar.reset(total=source.rows)
                    mode = "partitioned"
                    batches = _numbered(source.open(), bar)
            else:
                mode = "partitioned"
            if mode == "partitioned":
                buckets = (
                    max(1, math.ceil(source.nbytes / budget))
                    if source.nbytes is not None and budget
                    else DEFAULT_BUCKETS
                )
                chunks = _two_pass(job, batches, column, buckets, budget, name)
            else:
                chunks = None
        job.record["streaming"] = {
            "mode": mode,
            "memory_limit": limit,
            "chunks": chunks,
            **(job.oversized or {}),
        }
        return job.finish()
    except BaseException:
        sink.discard()
        raise


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _chunks(job: _Job, batches: Iterator[pa.RecordBatch], chunk_bytes: int) -> None:
    """Row-wise work: process consecutive batches of about ``chunk_bytes``."""
    ready: list[pa.RecordBatch] = []
    for batch in batches:
        ready.append(batch)
        if sum(b.nbytes for b in ready) >= chunk_bytes:
            job.process(pa.Table.from_batches(ready))
            ready = []
    job.process(pa.Table.from_batches(ready, schema=job.empty.schema))


def release_memory() -> None:
    """Hand the memory pyarrow's pool holds but no longer uses back to the OS after a step:
    its allocator keeps freed blocks for reuse, which costs a third of the peak RSS of a
    streaming run and would count against ``memory_limit`` (``benches/bench_memory.py``)."""
    pa.default_memory_pool().release_unused()


def _one_pass(
    job: _Job, batches: Iterator[pa.RecordBatch], key: str, budget: int | None
) -> None:
    """Contiguous groups: process chunks of whole groups, carrying the trailing group over.
    A group larger than ``budget`` is processed whole and reported as ``oversized``."""
    chunk_bytes = budget or DEFAULT_CHUNK_BYTES
    groups_over: list[int] = []

    def take_carry() -> list[pa.RecordBatch]:
        size = sum(b.nbytes for b in carry)
        if budget is not None and size > budget:
            groups_over.append(size)
        return carry

    finished: set[int] = set()
    carry: list[pa.RecordBatch] = []
    carry_id: int | None = None
    ready: list[pa.RecordBatch] = []
    ready_bytes = 0
    for batch in batches:
        ids, valid = _key_ids(batch, key)
        positions = np.flatnonzero(valid)
        if len(positions) == 0:
            ready.append(batch)
            continue
        values = ids[positions]
        run_starts = np.concatenate(([0], np.flatnonzero(np.diff(values) != 0) + 1))
        run_ids = values[run_starts].tolist()
        continues = run_ids[0] == carry_id
        if carry_id is not None and not continues:
            finished.add(carry_id)
        fresh = run_ids[1:] if continues else run_ids
        if len(set(run_ids)) != len(run_ids) or not finished.isdisjoint(fresh):
            seen: set[int] = set()
            for start, rid in zip(run_starts.tolist(), run_ids):
                if rid in seen or (rid in finished and not (start == 0 and continues)):
                    raise _NotContiguous(batch.column(ROW)[int(positions[start])].as_py())
                seen.add(rid)
        split = int(positions[run_starts[-1]])
        if len(run_ids) == 1 and continues:
            ready.append(batch.slice(0, split))
            carry.append(batch.slice(split))
        else:
            finished.update(run_ids[:-1])
            ready.extend(take_carry())
            ready.append(batch.slice(0, split))
            # The trailing group is copied out: a slice would keep the whole batch (and its
            # bytes) alive until the group ends, a batch more of memory per step.
            tail = _take(batch, np.arange(split, batch.num_rows)).to_batches()
            carry, carry_id = tail, run_ids[-1]
        ready_bytes = sum(b.nbytes for b in ready)
        if ready_bytes >= chunk_bytes:
            job.process(pa.Table.from_batches(ready))
            ready = []
    job.process(pa.Table.from_batches(ready + take_carry(), schema=job.empty.schema))
    if groups_over:
        job.oversized = oversized(
            [[i] for i in range(len(groups_over))], np.asarray(groups_over), budget, job.name
        )


class Partitions:
    """Rows hash-partitioned into ``buckets`` Arrow IPC spill files under ``folder`` (LZ4
    compressed: spill files take about half the disk of the uncompressed rows).

    Use as a context manager: the files are closed (and readable) on exit; the caller owns
    ``folder`` and removes it.
    """

    def __init__(self, folder: str, prefix: str, buckets: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.buckets = buckets
        self.sizes = np.zeros(buckets, dtype=np.int64)
        self._writers: dict[int, Any] = {}

    def _path(self, bucket: int) -> str:
        return os.path.join(self.folder, f"{self.prefix}-{bucket:05d}.arrow")

    def write(self, table: pa.Table | pa.RecordBatch, bucket: np.ndarray) -> None:
        """Append the rows of ``table`` to their buckets (``bucket[i]`` for row ``i``)."""
        from pyarrow import ipc

        order = np.argsort(bucket, kind="stable")
        counts = np.bincount(bucket, minlength=self.buckets)
        if isinstance(table, pa.RecordBatch):
            rows = _take(table, order).combine_chunks()
        else:
            rows = table.take(pa.array(order))
        start = 0
        for b in np.flatnonzero(counts).tolist():
            part = rows.slice(start, int(counts[b]))
            start += int(counts[b])
            if b not in self._writers:
                options = ipc.IpcWriteOptions(compression="lz4")
                self._writers[b] = ipc.new_file(self._path(b), part.schema, options=options)
            self._writers[b].write_table(part)
            self.sizes[b] += part.nbytes
        release_memory()

    def chunks(self, budget: int | None) -> list[list[int]]:
        """The written buckets packed into chunks of at most ``budget`` bytes (``_pack``)."""
        return _pack(sorted(self._writers), self.sizes, budget)

    def read(self, chunk: Sequence[int]) -> pa.Table:
        """The rows of the buckets ``chunk``, bucket by bucket, each in write order."""
        from pyarrow import ipc

        tables = []
        for b in chunk:
            with pa.OSFile(self._path(b)) as handle:
                tables.append(ipc.open_file(handle).read_all())
        return pa.concat_tables(tables)

    def __enter__(self) -> Partitions:  # noqa: PYI034 (Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        for writer in self._writers.values():
            writer.close()


def oversized(chunks: list[list[int]], sizes: np.ndarray, budget: int | None, what: str) -> dict:
    """Report the chunks larger than ``budget``: a single bucket that did not fit (one huge
    group, or a skewed hash). They are processed anyway; a warning says so, and the counts go
    into the provenance under ``streaming``."""
    import warnings

    over = [int(sizes[c].sum()) for c in chunks if budget is not None and sizes[c].sum() > budget]
    if not over:
        return {}
    warnings.warn(
        f"{len(over)} {what} partition(s) exceed the memory budget of {_human(budget)} per step "
        f"(largest {_human(max(over))}) and are processed whole: one group (or hash bucket) "
        "cannot be split; raise memory_limit if memory runs short",
        RuntimeWarning,
        stacklevel=4,
    )
    return {"oversized_chunks": len(over), "largest_chunk_bytes": max(over)}


def _two_pass(
    job: _Job,
    batches: Iterator[pa.RecordBatch],
    key: str,
    buckets: int,
    budget: int | None,
    name: str,
) -> int:
    """Hash-partition the rows by group key id into IPC spill files, then process the buckets,
    packed into chunks within ``budget``. Returns the number of chunks."""
    with spill_folder() as spill:
        with Partitions(spill, "bucket", buckets) as partitions:
            for batch in batches:
                ids, valid = _key_ids(batch, key)
                # Null keys are no group: bucket 0 counts (drops) them like any other row.
                partitions.write(
                    batch, np.where(valid, ids % np.uint64(buckets), 0).astype(np.int64)
                )
        chunks = partitions.chunks(budget)
        job.oversized = oversized(chunks, partitions.sizes, budget, name)
        with _progress(len(chunks), f"prefkit {name} partitions", unit="chunk") as bar:
            for chunk in chunks:
                job.process(partitions.read(chunk))
                bar.update(1)
        return len(chunks)


def _pack(buckets: list[int], sizes: np.ndarray, budget: int | None) -> list[list[int]]:
    """Consecutive buckets, greedily packed into chunks of at most ``budget`` bytes."""
    chunks: list[list[int]] = []
    used = 0
    for b in buckets:
        # No budget: everything in one chunk.
        if chunks and (budget is None or used + sizes[b] <= budget):
            chunks[-1].append(b)
            used += int(sizes[b])
        else:
            chunks.append([b])
            used = int(sizes[b])
    return chunks
