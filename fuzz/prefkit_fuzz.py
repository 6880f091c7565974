"""Arrow tables and arguments drawn from a fuzzer's bytes, and the oracle every harness shares.

A :class:`Draw` reads choices from the bytes (``atheris.FuzzedDataProvider``), so the same input
always builds the same table: a crash input replays exactly. Tables hit the corners the Rust
core has to survive: every Arrow string type, arrays sliced at odd offsets and split into
chunks, nulls everywhere, NUL bytes, invalid UTF-8 (built with ``pa.Array.from_buffers``, which
does not validate), empty and huge strings, chat-message lists with null messages and fields,
scores of every numeric type with NaN, infinities and extremes.

A :class:`Table` remembers whether it is *valid* (valid UTF-8 text and the column types the
docs accept): only then are results compared with ``tests/reference.py``.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import atheris
import prefkit as pk
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent

#: Text that must never reach a user: a Rust panic, or the message prefkit wraps one in.
PANIC_MARKERS = ("panicked", "PanicException", "internal error in prefkit")


def load_reference():
    """``tests/reference.py`` loaded by file path: an installed package named ``tests`` (some
    wheels ship one) would shadow ``import tests.reference``."""
    name = "prefkit_fuzz_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Finding(AssertionError):
    """An oracle violation: the harness found a bug (a crash for the fuzzer)."""


def expect_clean(call, *, wrong_type: bool = False) -> Any:
    """Run ``call()``; return its result, or None when it raised ``PrefkitError``.

    The oracle: only ``PrefkitError`` may escape an operation, plus ``TypeError`` when the
    harness passed an argument of the wrong Python type (``wrong_type``: pyo3 rejects it
    before any work, as Python does). No message may carry panic text. Anything else (a
    ``PanicException``, which is a ``BaseException``, an ``ArrowInvalid``, an ``IndexError``...)
    propagates and is a crash.
    """
    try:
        return call()
    except pk.PrefkitError as error:
        check_message(error)
        return None
    except TypeError as error:
        if not wrong_type:
            raise
        check_message(error)
        return None


def check_message(error: BaseException) -> None:
    text = f"{type(error).__name__}: {error}"
    if any(marker in text for marker in PANIC_MARKERS):
        raise Finding(f"panic text reached Python: {text}") from error


def check_accounting(table: pa.Table, rows_in: int) -> dict:
    """The provenance record of a result; every input row is used or dropped with a reason."""
    report = pk.report_of(table)
    if report.get("rows_in") != rows_in:
        raise Finding(f"rows_in {report.get('rows_in')} != {rows_in} input rows")
    dropped = sum((report.get("dropped") or {}).values())
    if "rows_used" in report and report["rows_used"] + dropped != rows_in:
        raise Finding(f"rows_used {report['rows_used']} + dropped {dropped} != rows_in {rows_in}")
    return report


#: Scores that make ties, cancel out, overflow or are not numbers.
FLOATS = (0.0, 1.0, -1.0, 0.5, 2.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324,
          0.1, 3.0)
INTS = (0, 1, -1, 2, 3, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63))
#: Text alphabet: ASCII, whitespace, punctuation (normalised away), accents, combining marks,
#: CJK, emoji (non-BMP), NUL, a fullwidth letter (NFKC folds it), the Unicode BOM.
ALPHABET = "ab A,.!  \t\n\x00é\u0301中\U0001f600\U00010348\uff21\ufeff\u2028ß"
TEXT_TYPES = ("string", "large_string", "string_view")


@dataclass
class Table:
    """A drawn table and what the harness knows about it."""

    table: pa.Table
    #: Valid UTF-8 everywhere and only documented column types.
    valid: bool = True
    columns: dict[str, str] = field(default_factory=dict)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class Draw:
    """Choices read from fuzzer bytes; when they run out every choice is its smallest."""

    def __init__(self, data: bytes) -> None:
        self.fdp = atheris.FuzzedDataProvider(data)
        self.valid = True
        #: Text values drawn so far: later draws reuse them, so groups have several rows.
        self.pool: list[bytes | None] = []

    # -- scalars ---------------------------------------------------------------------------

    def int(self, low: int, high: int) -> int:
        return self.fdp.ConsumeIntInRange(low, high)

    def bool(self) -> bool:
        return self.fdp.ConsumeBool()

    def chance(self, one_in: int) -> bool:
        return self.int(0, one_in - 1) == 0

    def pick(self, choices):
        return choices[self.int(0, len(choices) - 1)]

    def number(self, ints: bool = False) -> float | int:
        if ints:
            return self.pick(INTS) if self.chance(4) else self.int(-3, 3)
        return self.pick(FLOATS) if self.chance(3) else float(self.int(-4, 4)) / 2

    # -- text ------------------------------------------------------------------------------

    def text(self, max_len: int = 8) -> bytes:
        """One text value as UTF-8 bytes; sometimes invalid UTF-8 (then ``valid`` is cleared),
        sometimes huge, often one drawn before."""
        kind = self.int(0, 15)
        if kind <= 4 and self.pool:
            value = self.pick(self.pool)
            if value is not None:
                # The pool holds padding too, drawn while ``valid`` was not tracked.
                self.valid &= is_utf8(value)
                return value
        if kind <= 9:
            value = "".join(self.pick(ALPHABET) for _ in range(self.int(0, max_len)))
            data = value.encode()
        elif kind <= 11:
            data = self.fdp.ConsumeUnicodeNoSurrogates(self.int(0, max_len)).encode()
        elif kind == 12:
            # Raw bytes: usually invalid UTF-8 (lone continuation bytes, surrogates, overlong).
            data = self.fdp.ConsumeBytes(self.int(0, max_len)) + self.pick(
                (b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80", b"\xe4\xb8")
            )
            self.valid = False
        elif kind == 13:
            data = b""
        elif kind == 14:
            # Large: crosses chunk and buffer boundaries without making inputs slow.
            data = self.pick(ALPHABET).encode() * self.int(1, 1 << self.int(4, 17))
        else:
            data = b"\x00" * self.int(1, 3)
        self.pool.append(data)
        return data

    def maybe(self, value, null_one_in: int = 6):
        return None if self.chance(null_one_in) else value

    def name(self, default: str) -> str:
        """A column name: nearly always the default, sometimes unicode, empty or with NUL (a
        table with NUL in a name is invalid: the C data interface cannot carry it)."""
        if not self.chance(24):
            return default
        name = self.pick(("", "\x00", "é中", "prompt", "score", default + "\x00"))
        self.valid &= "\x00" not in name
        return name

    # -- arrays ----------------------------------------------------------------------------

    def text_type(self) -> str:
        return self.pick(TEXT_TYPES)

    def layout(self, n: int) -> tuple[int, int]:
        """Rows of padding around a column of ``n`` rows, sliced away: odd offsets."""
        if self.chance(3):
            return self.int(1, 5), self.int(0, 3)
        return 0, 0

    def text_array(self, values: list[bytes | None], kind: str | None = None) -> pa.Array:
        """Text of an Arrow string type, sliced when the draw says so, never validated."""
        kind = kind or self.text_type()
        front, back = self.layout(len(values))
        valid = self.valid  # padding is sliced away: its bytes do not make the table invalid
        padded = [self.text() for _ in range(front)] + values + [b"" for _ in range(back)]
        self.valid = valid
        binary = {"string": pa.binary(), "large_string": pa.large_binary(),
                  "string_view": pa.binary_view()}[kind]
        raw = pa.array(padded, binary)
        array = pa.Array.from_buffers(getattr(pa, kind)(), len(raw), raw.buffers(), raw.null_count)
        return array.slice(front, len(values))

    def number_array(self, values: list, kind: str) -> pa.Array:
        front, back = self.layout(len(values))
        padded = [self.number(not kind.startswith("float"))] * front + values + [None] * back
        if kind in ("float32", "float64"):
            padded = [None if v is None else float(v) for v in padded]
        else:
            bits = int(kind.lstrip("uint"))
            low, high = (0, 2**bits - 1) if kind.startswith("u") else (
                -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            padded = [None if v is None or isinstance(v, float) else min(max(int(v), low), high)
                      for v in padded]
        return pa.array(padded, getattr(pa, kind)()).slice(front, len(values))

    def chat_array(self, conversations: list[list | None]) -> pa.Array:
        """``list<struct<role, content>>`` of drawn text; null messages and fields included."""
        roles, contents, struct_valid, offsets = [], [], [], [0]
        for messages in conversations:
            for message in messages or []:
                struct_valid.append(message is not None)
                role, content = message if message is not None else (None, None)
                roles.append(role)
                contents.append(content)
            offsets.append(len(roles))
        text = self.text_type()
        struct = pa.StructArray.from_arrays(
            [self.text_array(roles, text), self.text_array(contents, text)],
            names=["role", "content"],
            mask=pa.array([not v for v in struct_valid], pa.bool_()),
        )
        lists = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), struct,
            mask=pa.array([c is None for c in conversations], pa.bool_()),
        )
        return lists

    def conversation(self) -> list | None:
        if self.chance(10):
            return None
        roles = (b"user", b"assistant", b"system")
        return [
            self.maybe((self.maybe(self.pick(roles), 10), self.maybe(self.text(), 10)), 10)
            for _ in range(self.int(0, 3))
        ]

    def chunked(self, arrays: dict[str, pa.Array]) -> pa.Table:
        """A table of equal-length arrays, each column split into chunks at drawn cuts."""
        columns = {}
        for name, array in arrays.items():
            n = len(array)
            cuts = sorted({0, n, *(self.int(0, n) for _ in range(self.int(0, 3)))})
            pieces = [array.slice(a, b - a) for a, b in itertools.pairwise(cuts)] or [array]
            columns[name] = pa.chunked_array(pieces, type=array.type)
        return pa.table(columns)
