"""Reading inputs and writing results: any table-like object or file in, pyarrow out."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from prefkit._errors import PrefkitError

#: File suffixes ``read_table`` understands, longest first so that ``.jsonl.gz`` wins.
READ_SUFFIXES = (".jsonl.gz", ".json.gz", ".parquet", ".jsonl", ".json", ".csv", ".arrow")
#: File suffixes ``write_table`` understands.
WRITE_SUFFIXES = (".parquet", ".jsonl")


def as_table(data: Any, *, argument: str = "data") -> pa.Table:
    """Coerce a table-like object to a ``pyarrow.Table`` without copying its buffers.

    Accepts a pyarrow Table, RecordBatch or RecordBatchReader, anything that exports the Arrow
    PyCapsule stream interface (polars DataFrame, duckdb relation, arro3 Table), a pandas
    DataFrame and a ``datasets.Dataset``. Text keeps its Arrow type (polars' string_view stays
    string_view).

    Raises
    ------
    PrefkitError
        When ``data`` is none of these.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from prefkit.io import as_table
    >>> as_table(pa.record_batch({"x": [1, 2]})).num_rows
    2
    """
    table = _coerced(data)
    if table is None:
        raise PrefkitError(
            f"{argument} must be a table (pyarrow Table/RecordBatch/RecordBatchReader, polars, "
            f"pandas, datasets.Dataset or an Arrow PyCapsule stream), got {type(data).__name__}"
        )
    _check_metadata(table.schema)
    return table


def _coerced(data: Any) -> pa.Table | None:
    """``data`` as a ``pyarrow.Table`` (see :func:`as_table`), None when it is no table."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    module = type(data).__module__.split(".")[0]
    if module == "datasets" and hasattr(data, "with_format"):
        # The arrow format applies the dataset's indices mapping (select, shuffle, filter).
        return data.with_format("arrow")[:]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "__arrow_c_stream__"):
        # Straight through the C stream: zero-copy, keeps string_view, and unlike pa.table()
        # never imports pandas (half a second on a first call).
        return pa.RecordBatchReader.from_stream(data).read_all()
    return None


def _check_metadata(schema: pa.Schema) -> None:
    """Fail on a name or metadata that is not UTF-8: Arrow requires UTF-8 there, pyarrow keeps
    whatever bytes a file or a capsule producer gave, and the Rust side cannot import them (a
    Parquet file's key-value metadata can hold anything; found by fuzz/readers.py). Fail on a
    name holding NUL, which would arrive cut short."""

    def check(metadata: dict[bytes, bytes] | None, owner: str) -> None:
        for key, value in (metadata or {}).items():
            for part, data in (("key", key), ("value", value)):
                try:
                    data.decode()
                except UnicodeDecodeError:
                    raise PrefkitError(
                        f"{owner} metadata {part} {data[:40]!r} is not valid UTF-8 (Arrow "
                        f"requires UTF-8 metadata)"
                    ) from None

    # A stack, not recursion: a column may nest thousands of levels deep.
    stack: list[tuple[pa.Field, int, str]] = [(f, i, "") for i, f in enumerate(schema)]
    while stack:
        field, index, parent = stack.pop()
        try:
            path = f"{parent}{field.name}"
        except UnicodeDecodeError:
            raise PrefkitError(
                f"the name of field {index} of {parent or 'the table'} is not valid UTF-8"
            ) from None
        if "\x00" in field.name:
            # The C data interface, which every table crosses on its way to Rust, holds names
            # as NUL-terminated strings: 'a\x00b' would arrive as 'a' (found by fuzz/ops.py).
            raise PrefkitError(
                f"column {path!r} has a NUL character in its name, which the Arrow C data "
                f"interface cannot carry; rename the column"
            )
        check(field.metadata, f"column '{path}' has")
        kind = field.type
        stack.extend((kind.field(i), i, f"{path}.") for i in range(kind.num_fields))

    check(schema.metadata, "the table's schema")


def materialize(table: pa.Table) -> pa.Table:
    """Replace string_view columns (text that points into an input's buffers) by plain
    ``large_string`` (binary_view by ``large_binary``), inside lists and structs too.

    Every prefkit operation already returns plain text unless it was called with
    ``views=True``; call this on such a result (or on a polars-exported table) before a
    consumer that has no string_view kernels: pyarrow's ``take``, ``filter``, ``sort_by``,
    joins, ``utf8_length`` (pyarrow 26). The copy runs in parallel in Rust; other columns are
    shared and the schema metadata (provenance) is kept. See ``docs/outputs.md``.

    Examples
    --------
    >>> import pyarrow as pa, prefkit as pk
    >>> t = pa.table({"x": pa.array(["a"], pa.string_view())})
    >>> pk.materialize(t).schema.field("x").type
    DataType(large_string)
    """
    if not any(_has_views(field.type) for field in table.schema):
        return table
    from prefkit import _core

    return as_table(_core.plain_text(table))


def plain_unless_views(table: pa.Table, views: bool) -> pa.Table:
    """An operation's result as it is returned: plain text by default (:func:`materialize`),
    or as built, with zero-copy string_view text, when the caller passed ``views=True``."""
    if not isinstance(views, bool):
        raise PrefkitError(f"views must be True or False, got {views!r}")
    return table if views else materialize(table)


def without_views(parameters: dict) -> dict:
    """An operation's parameters less ``views``, which the Python layer handles, for a Rust
    function that takes the others as keywords."""
    return {name: value for name, value in parameters.items() if name != "views"}


def _has_views(dtype: pa.DataType) -> bool:
    if pa.types.is_string_view(dtype) or pa.types.is_binary_view(dtype):
        return True
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or (
        pa.types.is_fixed_size_list(dtype)
    ):
        return _has_views(dtype.value_type)
    if pa.types.is_struct(dtype):
        return any(_has_views(f.type) for f in dtype)
    return False


def _suffix(path: Path, choices: tuple[str, ...], verb: str) -> str:
    name = path.name.lower()
    for suffix in choices:
        if name.endswith(suffix):
            return suffix
    raise PrefkitError(f"cannot {verb} '{path}': expected one of {', '.join(choices)}")


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read a Parquet, JSONL (optionally gzipped), JSON, CSV or Arrow IPC file, or a folder saved
    by ``datasets.Dataset.save_to_disk``.

    Examples
    --------
    >>> from prefkit.io import read_table
    >>> read_table("examples/ultrafeedback_mini.jsonl").num_rows  # doctest: +SKIP
    12
    """
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            import datasets  # saved `datasets` folders need the library that wrote them

            return as_table(datasets.load_from_disk(str(path)))
        import pyarrow.dataset as ds

        return ds.dataset(path, format="parquet").to_table()
    if not path.exists():
        raise PrefkitError(f"input file '{path}' does not exist")
    suffix = _suffix(path, READ_SUFFIXES, "read")
    try:
        return _validated(path, _read_file(path, suffix))
    except UNREADABLE as error:
        if isinstance(error, PrefkitError):
            raise
        raise bad_file(path, error) from error


def _validated(path: Path, table: pa.Table) -> pa.Table:
    """``table``, read from ``path``, once its names, metadata and text are known to be valid:
    an Arrow IPC or Parquet file may hold invalid UTF-8, which pyarrow reads without checks
    and fails on later, far from the file (``UnicodeDecodeError`` on a column name)."""
    _check_file_schema(path, table.schema)
    table.validate(full=True)
    return table


def _check_file_schema(path: Path, schema: pa.Schema) -> None:
    """:func:`_check_metadata` on a file's schema: a :class:`BadFileError` naming the file."""
    try:
        _check_metadata(schema)
    except PrefkitError as error:
        raise BadFileError(path, str(error), None, None) from None


def _read_file(path: Path, suffix: str) -> pa.Table:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path)
    if suffix in (".json", ".json.gz"):
        return _read_json_document(path)
    if suffix == ".csv":
        import pyarrow.csv as pc

        return pc.read_csv(path)
    from pyarrow import ipc

    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


#: prefkit's uint64 id columns. JSON has one number type and pyarrow infers ids above 2**63
#: as float64, losing digits, so these are read back with their real type.
UINT64_COLUMNS = ("group_id",)


def _read_jsonl(path: Path) -> pa.Table:
    import pyarrow.json as pj

    from prefkit import _core

    if path.name.lower().endswith(".gz"):  # decompressed once, for the check and the parse
        with pa.input_stream(str(path), compression="gzip") as source:
            data = source.read_buffer()
    else:
        data = pa.memory_map(str(path)).read_buffer()
    # pyarrow's parser segfaults on a parse block that starts with a top-level null
    # (apache/arrow#47409; found by fuzz/readers.py), and a null line is no record anyway.
    if _core.first_null_line(data) is not None:
        raise bad_file(path, ValueError("a line holds a top-level null, not an object"))
    table = pj.read_json(pa.BufferReader(data))
    ids = [name for name in UINT64_COLUMNS if name in table.column_names]
    if not ids:
        return table
    options = pj.ParseOptions(
        explicit_schema=pa.schema([(name, pa.uint64()) for name in ids]),
        unexpected_field_behavior="infer",
    )
    return pj.read_json(pa.BufferReader(data), parse_options=options).select(table.column_names)


def _read_json_document(path: Path) -> pa.Table:
    """A ``.json`` file is either JSON lines or one array of records; accept both."""
    import gzip
    import json

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        head = handle.read(1).lstrip() or handle.read(64).lstrip()[:1]
    if head != "[":
        return _read_jsonl(path)
    with opener(path, "rt", encoding="utf-8") as handle:
        records = json.load(handle)
    return pa.Table.from_pylist(records)


# --------------------------------------------------------------------------------------------
# Unreadable files: where a truncated or corrupt file goes wrong
# --------------------------------------------------------------------------------------------

#: What the readers raise on a truncated or corrupt file (gzip: EOFError, zlib.error).
UNREADABLE = (pa.ArrowException, OSError, ValueError, EOFError, zlib.error)


class BadFileError(PrefkitError):
    """A file that cannot be read, truncated or corrupt: a :class:`PrefkitError` whose message
    names the file and where it goes wrong; the streaming readers' ``skip_bad_files=True``
    skips such files (``docs/stream.md``).

    Attributes
    ----------
    path, reason
        The file and what is wrong with it (the message less the file's name).
    offset
        Byte offset of the bad part (the bad line, the footer, the row group), None if unknown.
    rows
        Rows of the file that were not read, where the file says (Parquet metadata, JSONL
        lines), else None.
    """

    def __init__(self, path: Path, reason: str, offset: int | None, rows: int | None) -> None:
        super().__init__(f"cannot read input file '{path}': {reason}")
        self.path, self.reason, self.offset, self.rows = path, reason, offset, rows


def bad_file(path: Path, error: BaseException) -> BadFileError:
    """The :class:`BadFileError` of a file whose reader raised ``error``: for JSON lines, the
    first bad line (its number and byte offset); for Parquet, the footer (its offset and the
    file's size); for others, the reader's message.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.jsonl"
    >>> _ = path.write_text('{"a": 1}\\n{"a": \\n')
    >>> bad_file(path, ValueError("parse error")).reason  # doctest: +ELLIPSIS
    'line 2 (byte offset 9) is not a JSON object: ...'
    """
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        where = _bad_json_line(path)
        if where is not None:
            return BadFileError(path, *where)
    if name.endswith(".parquet"):
        return BadFileError(path, f"{_parquet_footer(path)}: {error}", path.stat().st_size, None)
    return BadFileError(path, str(error), None, None)


def _bad_json_line(path: Path) -> tuple[str, int, int] | None:
    """(reason, byte offset, lines not read) of the first line of a JSON lines file that is
    not a JSON object, or of where its gzip stream breaks; None when every line parses (the
    reader failed on something else, e.g. a type that changes between lines). Offsets of a
    gzipped file are in its decompressed text. A JSON array document is parsed whole: its
    error's offset is reported."""
    import gzip
    import json

    gz = path.name.lower().endswith(".gz")
    text = " of the decompressed text" if gz else ""
    opener = gzip.open if gz else open
    offset = 0
    number = lines = 0
    bad: tuple[str, int] | None = None
    with opener(path, "rb") as handle:
        try:
            head = handle.read(64).lstrip()[:1]
            handle.seek(0)
            if head == b"[":
                try:
                    json.loads(handle.read())
                except ValueError as error:
                    at = getattr(error, "pos", None)
                    return f"the JSON document does not parse{text}: {error}", at, None
                return None
            for number, line in enumerate(handle, 1):
                if bad is None and line.strip():
                    try:
                        record = json.loads(line)
                        problem = None if isinstance(record, dict) else "is not an object"
                    except ValueError as error:
                        problem = f"is not a JSON object: {error}"
                    if problem is not None:
                        bad = (f"line {number} (byte offset {offset}{text}) {problem}", offset)
                lines += bool(line.strip())
                offset += len(line)
        except (EOFError, OSError, zlib.error) as error:
            where = f"after line {number} (byte offset {offset}{text})"
            return f"the gzip stream is truncated or corrupt {where}: {error}", offset, None
    if bad is None:
        return None
    return bad[0], bad[1], lines


def _parquet_footer(path: Path) -> str:
    """What is wrong with a Parquet file's footer: the last 8 bytes hold the footer's length
    and the magic ``PAR1``, the footer (the file's metadata) lies just before them."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(size - 8, 0))
        tail = handle.read(8)
    if size < 12 or tail[4:] != b"PAR1":
        return (f"the file ({size} bytes) does not end with the Parquet magic 'PAR1' at byte "
                f"offset {max(size - 4, 0)}: truncated, or not Parquet")
    start, length = _footer_span(path)
    if start < 4:
        return (f"its footer claims {length} bytes before byte offset {size - 8}, more than "
                f"the file's {size} bytes: truncated or corrupt")
    return f"its footer ({length} bytes at byte offset {start}, file size {size}) is corrupt"


def _footer_span(path: Path) -> tuple[int, int]:
    """Where a Parquet file's footer starts and its length in bytes, as its last 8 bytes say."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(size - 8, 0))
        length = int.from_bytes(handle.read(4), "little")
    return size - 8 - length, length


#: Prints the byte offset and compressed size of row group argv[2] of Parquet file argv[1].
_ROW_GROUP_SPAN = """
import sys, pyarrow.parquet as pq
info = pq.read_metadata(sys.argv[1]).row_group(int(sys.argv[2]))
chunks = [info.column(c) for c in range(info.num_columns)]
print(min((c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset)
          for c in chunks) if chunks else -1, sum(c.total_compressed_size for c in chunks))
"""


def _row_group_span(path: Path, group: int) -> tuple[int, int] | None:
    """Byte offset and compressed size of a row group, from its column chunks' metadata, or
    None when that metadata cannot be read.

    Read in a child process, on the error path only: pyarrow builds a chunk's metadata outside
    its C++ exception guard, so on corrupt chunk statistics (level histograms that do not fit
    the column) ``RowGroupMetaData.column(i)`` aborts the whole process ("terminate called
    after throwing an instance of 'parquet::ParquetException'"; found by fuzz/readers.py).
    """
    child = subprocess.run([sys.executable, "-c", _ROW_GROUP_SPAN, str(path), str(group)],
                           capture_output=True, text=True, timeout=120, check=False)
    if child.returncode != 0:
        return None
    offset, size = map(int, child.stdout.split())
    return (offset, size) if offset >= 0 else None


def parquet_batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The batches of a Parquet file, row group by row group (a file is never held whole).

    Raises
    ------
    BadFileError
        When the footer cannot be read (naming its offset and the file's size), or a row
        group cannot be decoded (naming the row group and its byte offset from the metadata,
        and counting the rows of it and the row groups after it as not read).
    """
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except UNREADABLE as error:
        raise bad_file(path, error) from error
    # The checks read_table makes (_validated), per row group: names and metadata must be
    # UTF-8, and so must text values (found by fuzz/readers.py: the Rust import raised a
    # ValueError on a name that the whole-file read had refused as a bad file).
    _check_file_schema(path, parquet.schema_arrow)
    meta = parquet.metadata
    for group in range(meta.num_row_groups):
        try:
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group]):
                batch.validate(full=True)
                yield batch
        except UNREADABLE as error:
            info = meta.row_group(group)
            rows = sum(meta.row_group(g).num_rows for g in range(group, meta.num_row_groups))
            span = _row_group_span(path, group)
            if span is None:
                # The column chunk metadata, which lives in the footer, is corrupt too.
                offset, length = _footer_span(path)
                where = f"corrupt column metadata in the footer ({length} bytes)"
            else:
                offset, size = span
                where = f"{size} bytes"
            reason = (f"row group {group} of {meta.num_row_groups} ({info.num_rows} rows, "
                      f"{where} at byte offset {offset}) is corrupt: {error}")
            raise BadFileError(path, reason, offset, rows) from error


# --------------------------------------------------------------------------------------------
# Nesting: how deep a column's type may be to come back from Rust
# --------------------------------------------------------------------------------------------

#: The deepest column type a result can hold, in levels (``string`` is 1, ``list<string>``
#: 2). Results come back from the Rust core through the Arrow C data interface, and pyarrow's
#: importer stops at 64 levels of ``ArrowSchema``, of which the table's schema is one.
MAX_NESTING = 63


def nesting(data_type: pa.DataType) -> int:
    """Levels of ``data_type``: 1 for a flat type, 1 + its deepest child's for nested ones.

    Examples
    --------
    >>> import pyarrow as pa
    >>> nesting(pa.list_(pa.struct({"role": pa.string()})))
    3
    """
    depth, level = 0, [data_type]
    # Level by level, not recursively: a hostile type can be deeper than Python's stack.
    while level:
        depth += 1
        level = [t.field(i).type for t in level for i in range(t.num_fields)] + [
            t.value_type for t in level if pa.types.is_dictionary(t)
        ]
    return depth


def check_nesting(table: pa.Table, columns: Iterator[str] | list[str], op: str) -> None:
    """Fail before any work when a column that ``op``'s result would hold is nested deeper
    than :data:`MAX_NESTING` levels (the result could not come back to pyarrow).

    Raises
    ------
    PrefkitError
        Naming the column, its depth and the limit.

    Examples
    --------
    >>> import pyarrow as pa
    >>> check_nesting(pa.table({"p": [[["x"]]]}), ["p"], "mine_pairs")
    """
    for name in columns:
        index = table.schema.get_field_index(name) if isinstance(name, str) else -1
        if index < 0:
            continue  # a missing column is the operation's error to report
        data_type = table.schema.field(index).type
        depth = nesting(data_type)
        if depth > MAX_NESTING:
            raise PrefkitError(
                f"column '{name}' is nested {depth} levels deep ({str(data_type)[:40]}...), "
                f"but the result of {op} would hold it and a result's columns may nest at "
                f"most {MAX_NESTING} levels (pyarrow imports no deeper schema through the "
                "Arrow C data interface); flatten or serialise the column, or group by "
                "another column (group=...) and leave it out of the result"
            )


def write_table(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``.parquet`` or ``.jsonl`` atomically: a temporary file in the same
    folder is written first and renamed over ``path``, so a reader never sees half a file.

    Provenance metadata survives Parquet. JSONL holds data only.

    Raises
    ------
    PrefkitError
        When the file cannot be written (naming it; "no space left on device" when the disk
        is full); nothing is left at ``path`` then.

    Examples
    --------
    >>> import os, tempfile, pyarrow as pa
    >>> from prefkit.io import read_table, write_table
    >>> path = write_table(pa.table({"x": [1]}), os.path.join(tempfile.mkdtemp(), "x.parquet"))
    >>> read_table(path).num_rows
    1
    """
    path = Path(path)
    suffix = _suffix(path, WRITE_SUFFIXES, "write")
    _make_folder(path.parent, path)
    with replacing(path) as temp:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, temp)
        else:
            _write_jsonl(table, temp)
    return path


def _write_jsonl(table: pa.Table, path: str) -> None:
    import json

    with open(path, "w", encoding="utf-8") as handle:
        for batch in materialize(table).to_batches(max_chunksize=8192):
            for record in batch.to_pylist():
                handle.write(json.dumps(record, ensure_ascii=False))
                handle.write("\n")


# --------------------------------------------------------------------------------------------
# Output paths: checked before the work, written under temporary names, never seen half-done
# --------------------------------------------------------------------------------------------

#: Name prefix of a result being written (a file or an ``out=`` folder), next to its final
#: path: ``.prefkit-tmp-<pid>-<random>-<name>.tmp``. The dot hides it from folder and dataset
#: readers (prefkit's, pyarrow's), and the suffix from anything that picks files by suffix.
TEMP_PREFIX = ".prefkit-tmp-"
#: Name prefix of the spill folders of out-of-core runs in the temporary folder
#: (``tempfile.gettempdir()``, i.e. ``$TMPDIR``): ``prefkit-spill-<pid>-<random>``.
SPILL_PREFIX = "prefkit-spill-"


def temp_path(folder: str | os.PathLike, name: str = "", *, prefix: str = TEMP_PREFIX,
              directory: bool = False) -> Path:
    """Create a new temporary file (or folder) in ``folder`` for a result called ``name``,
    named with this process's id so that :func:`remove_stale` can tell a dead run's leftovers
    from a live run's.

    Examples
    --------
    >>> import tempfile
    >>> from prefkit.io import temp_path
    >>> temp_path(tempfile.mkdtemp(), "pairs.parquet").name.startswith(".prefkit-tmp-")
    True
    """
    suffix = f"-{name}.tmp" if name else ""
    if directory:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=folder))
    handle, temp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(handle)
    return Path(temp)


def remove_stale(folder: str | os.PathLike, prefix: str = TEMP_PREFIX) -> list[Path]:
    """Remove the temporary files and folders (named by :func:`temp_path`) that runs left in
    ``folder`` when they were killed (``kill -9``, out of memory, power loss): those whose
    process no longer exists. Returns what was removed.

    Examples
    --------
    >>> import tempfile
    >>> from prefkit.io import remove_stale, temp_path
    >>> folder = tempfile.mkdtemp()
    >>> live = temp_path(folder, "x.parquet")  # this process is alive: kept
    >>> remove_stale(folder)
    []
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def write_error(error: OSError, path: str | os.PathLike) -> PrefkitError:
    """The ``PrefkitError`` for a failed write of ``path``: "no space left on device" for a
    full disk (errno ENOSPC, or EDQUOT for a quota), the OS's reason otherwise."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on device"
    elif error.errno == errno.EROFS:
        reason = "read-only file system"
    else:
        reason = error.strerror or str(error)
    return PrefkitError(f"cannot write '{path}': {reason}")


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file next to ``path`` to write, renamed over ``path`` when the block
    succeeds and removed when it fails, so ``path`` is always either absent (or its old
    content) or whole. An ``OSError`` becomes :func:`write_error`.

    Examples
    --------
    >>> import os, tempfile
    >>> from prefkit.io import replacing
    >>> path = os.path.join(tempfile.mkdtemp(), "manifest.json")
    >>> with replacing(path) as temp:
    ...     _ = temp.write_text("{}")
    >>> open(path).read()
    '{}'
    """
    path = Path(path)
    try:
        temp = temp_path(path.parent, path.name)
    except OSError as error:
        raise write_error(error, path) from error
    try:
        yield temp
        os.replace(temp, path)
    except OSError as error:
        raise write_error(error, path) from error
    finally:
        temp.unlink(missing_ok=True)


def prepare_output(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Check, before any work is done, that the result can be written at ``path``: its
    parent folder exists (or is created) and takes a new file, and for a ``folder`` result
    ``path`` is a new or empty folder. Leftovers of killed runs in the parent folder
    (:func:`remove_stale`) are removed.

    Raises
    ------
    PrefkitError
        Naming ``path`` and the reason (read-only, permission denied, no space, not empty).

    Examples
    --------
    >>> import os, tempfile
    >>> from prefkit.io import prepare_output
    >>> prepare_output(os.path.join(tempfile.mkdtemp(), "out"), folder=True).name
    'out'
    """
    path = Path(path)
    if folder and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise PrefkitError(f"out='{path}' must be a new or empty folder")
    if not folder and path.is_dir():
        raise PrefkitError(f"cannot write '{path}': it is a folder")
    parent = path.absolute().parent
    _make_folder(parent, path)
    remove_stale(parent)
    # Root ignores permission bits and os.access misses some mounts: creating a file is the
    # one check that answers for every case.
    try:
        temp_path(parent, path.name).unlink()
    except OSError as error:
        raise write_error(error, path) from error
    return path


def _make_folder(folder: Path, path: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(error, path) from error
