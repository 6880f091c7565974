"""Hostile but legal inputs (issue #18, docs/reliability.md "Hostile but legal inputs"): a
1 GiB string, 10^7 tiny groups, columns nested 64 deep, text offsets near and beyond 2^31,
truncated or corrupt files in a folder. Each either works, with the right result and a memory
peak of a few copies of its input, or is a ``PrefkitError`` that says why, before the work.

The memory-heavy tests skip, saying so, when the machine has less memory available than they
need (computed from their sizes); each frees what it built before the next one.
"""

from __future__ import annotations

import gc
import gzip

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from prefkit.stream import InputFiles

GiB = 2**30


@pytest.fixture(autouse=True)
def _free_memory():
    """Each test's gigabytes are gone before the next test measures what is available."""
    yield
    gc.collect()


def _need(nbytes: float, what: str) -> None:
    """Skip, with the figures, when less than ``nbytes`` of memory is available."""
    psutil = pytest.importorskip("psutil")
    available = psutil.virtual_memory().available
    if available < nbytes:
        pytest.skip(f"{what} needs {nbytes / 1e9:.1f} GB of available memory, "
                    f"{available / 1e9:.1f} GB available")


def _one_value(buffer: pa.Buffer) -> pa.Array:
    """A one-row large_string array whose value is all of ``buffer`` (no copy)."""
    offsets = np.array([0, buffer.size], np.int64)
    return pa.Array.from_buffers(pa.large_string(), 1, [None, pa.py_buffer(offsets), buffer])


def _value(column: pa.ChunkedArray, row: int) -> pa.Buffer:
    return column[row].as_buffer()


# --------------------------------------------------------------------------------------------
# 1. A 1 GiB string: a response, and a prompt
# --------------------------------------------------------------------------------------------

def _gigabyte() -> pa.Buffer:
    """About 1 GiB of text (2^30 - 4 bytes: words of four letters)."""
    return pa.py_buffer(b"word " * (GiB // 5))


def _big_response() -> tuple[pa.Table, pa.Buffer]:
    big = _gigabyte()
    response = pa.chunked_array([_one_value(big), pa.array(["r1", "r2", "r3"], pa.large_string())])
    table = pa.table({"prompt": ["p"] * 4, "response": response, "score": [3.0, 2.0, 1.0, 0.0]})
    return table, big


def test_a_1gib_response_is_mined_ranked_and_deduplicated():
    """The input, one copy in the result, and the normalised text of exact dedup: 4 GiB."""
    _need(4.5 * GiB, "a 1 GiB response")
    table, big = _big_response()
    pairs = pk.mine_pairs(table)
    assert pairs.num_rows == 1 and pairs.column("chosen_row").to_pylist() == [0]
    assert _value(pairs.column("chosen"), 0).equals(big)
    assert pairs.column("rejected").to_pylist() == ["r3"]
    del pairs
    lists = pk.rank_lists(table)
    assert lists.column("rows").to_pylist() == [[0, 1, 2, 3]]
    assert lists.column("responses")[0].values[0].as_buffer().equals(big)
    del lists
    kept = pk.dedup(table, columns="response")
    assert kept.num_rows == 4 and _value(kept.column("response"), 0).equals(big)


def test_a_1gib_response_through_minhash():
    """One document of 2^28 words: sketched in one pass, its window of 5 word hashes in a
    ring (not 2 GiB of word hashes)."""
    _need(4.5 * GiB, "MinHash over a 1 GiB response")
    table, big = _big_response()
    kept = pk.dedup(table, columns="response", method="minhash")
    assert kept.num_rows == 4
    assert pk.report_of(kept)["dropped"] == {}
    assert _value(kept.column("response"), 0).equals(big)


def test_a_1gib_prompt_groups_and_deduplicates():
    """Four rows share one 1 GiB prompt (one buffer: the rows point into it)."""
    _need(4.5 * GiB, "a 1 GiB prompt")
    big = _gigabyte()
    prompt = pa.chunked_array([_one_value(big) for _ in range(4)])
    table = pa.table({"prompt": prompt, "response": ["a", "b", "c", "d"],
                      "score": [3.0, 2.0, 1.0, 0.0]})
    pairs = pk.mine_pairs(table)
    assert pairs.select(["chosen", "rejected"]).to_pylist() == [{"chosen": "a", "rejected": "d"}]
    assert _value(pairs.column("prompt"), 0).equals(big)
    del pairs
    lists = pk.rank_lists(table)
    assert lists.column("responses").to_pylist() == [["a", "b", "c", "d"]]
    assert _value(lists.column("prompt"), 0).equals(big)
    del lists
    # normalize=False: the raw text is compared in place (normalising prepares a copy of every
    # row's text, 4 GiB here; the 1 GiB response above covers that path).
    kept = pk.dedup(table, columns="prompt", normalize=False)
    assert kept.column("response").to_pylist() == ["a"]
    assert pk.report_of(kept)["dropped"] == {"duplicate": 3}


# --------------------------------------------------------------------------------------------
# 2. 10^7 tiny groups
# --------------------------------------------------------------------------------------------

def test_ten_million_groups_of_one_or_two_rows():
    """Groups of 1 and 2 rows alternate; ties (about 1 in 50 pairs) drop their two rows."""
    _need(4 * 10**9, "10^7 groups")
    groups = 10**7
    sizes = 1 + np.arange(groups) % 2
    group = np.repeat(np.arange(groups), sizes)
    rows = len(group)
    score = np.random.default_rng(0).integers(0, 50, rows).astype(np.float64)
    table = pa.table({"prompt": pc.cast(pa.array(group), pa.string()),
                      "response": pc.cast(pa.array(np.arange(rows)), pa.string()),
                      "score": score})
    first = np.cumsum(sizes)[sizes == 2] - 2  # the first row of each two-row group
    tie = score[first] == score[first + 1]
    pairs = pk.mine_pairs(table)
    report = pk.report_of(pairs)
    assert report["groups_in"] == groups
    assert report["dropped"] == {"group_too_small": groups // 2, "tie": 2 * int(tie.sum())}
    assert report["rows_used"] + sum(report["dropped"].values()) == rows
    mined = first[~tie]
    better = np.where(score[mined] > score[mined + 1], mined, mined + 1)
    np.testing.assert_array_equal(pairs.column("chosen_row").to_numpy(), better)
    np.testing.assert_array_equal(pairs.column("rejected_row").to_numpy(), 2 * mined + 1 - better)
    del pairs
    lists = pk.rank_lists(table)
    report = pk.report_of(lists)
    assert report["lists_out"] == groups // 2
    assert report["dropped"] == {"group_too_small": groups // 2}
    # Best first, the earlier row first on a tie.
    best = np.where(score[first] >= score[first + 1], first, first + 1)
    ranked = pc.list_flatten(lists.column("rows")).to_numpy()
    np.testing.assert_array_equal(ranked[0::2], best)
    np.testing.assert_array_equal(ranked[1::2], 2 * first + 1 - best)


# --------------------------------------------------------------------------------------------
# 3. Columns nested 64 deep
# --------------------------------------------------------------------------------------------

def _nested(values: list[str], depth: int) -> pa.Array:
    """``values``, each wrapped in ``depth`` one-element lists: list<list<...<string>>>."""
    array = pa.array(values, pa.string())
    for _ in range(depth):
        array = pa.ListArray.from_arrays(pa.array(np.arange(len(array) + 1, dtype=np.int32)),
                                         array)
    return array


def _rated(**columns) -> pa.Table:
    base = {"prompt": ["p", "p", "q"], "response": ["a", "b", "c"], "score": [1.0, 0.0, 2.0]}
    return pa.table({**base, **columns})


@pytest.mark.parametrize("op", [
    lambda t: pk.mine_pairs(t), lambda t: pk.rank_lists(t), lambda t: pk.dedup(t),
    lambda t: pk.dedup(t, method="minhash"),
], ids=["mine_pairs", "rank_lists", "dedup", "dedup_minhash"])
def test_a_prompt_nested_64_deep_is_an_error_naming_it(op):
    """A result cannot hold a column deeper than pyarrow's C data interface imports (63
    levels): refused before the work, naming the column."""
    table = _rated(prompt=_nested(["p", "p", "q"], 64))
    with pytest.raises(pk.PrefkitError, match=r"column 'prompt' is nested 65 levels deep.*"
                                              r"at most 63 levels"):
        op(table)


def test_a_carry_column_nested_64_deep_is_an_error_naming_it():
    table = _rated(extra=_nested(["x", "y", "z"], 64))
    with pytest.raises(pk.PrefkitError, match=r"column 'extra' is nested 65 levels deep"):
        pk.mine_pairs(table, carry=["extra"])
    # Not carried, it stays out of the result and is no obstacle.
    assert pk.mine_pairs(table).num_rows == 1


@pytest.mark.parametrize("op", [pk.mine_pairs, pk.rank_lists])
def test_a_score_nested_64_deep_is_an_error_naming_it(op):
    with pytest.raises(pk.PrefkitError, match=r"column 'score' must be numeric"):
        op(_rated(score=_nested(["1", "0", "2"], 64)))


@pytest.mark.parametrize("depth", [64, 1000])
def test_a_group_key_nested_deep_groups_like_its_values(depth):
    """As a group key (not part of the result) any depth works, without a stack overflow."""
    table = _rated(gid=_nested(["p", "p", "q"], depth))
    pairs = pk.mine_pairs(table, group="gid")
    assert pairs.select(["chosen_row", "rejected_row"]).to_pylist() == [
        {"chosen_row": 0, "rejected_row": 1}]
    assert pairs.column("group_id").to_pylist() != pk.mine_pairs(table).column(
        "group_id").to_pylist()  # ids of the nested key, not of the prompt text
    lists = pk.rank_lists(table, group="gid")
    assert lists.column("rows").to_pylist() == [[0, 1]]
    assert pk.report_of(lists)["dropped"] == {"group_too_small": 1}


def test_the_deepest_prompt_a_result_holds_comes_back_whole():
    """62 lists around the text: 63 levels, the most a result's column can have."""
    prompt = _nested(["p", "p", "q"], 62)
    pairs = pk.mine_pairs(_rated(prompt=prompt, extra=prompt), carry=["extra"])
    assert pairs.column("prompt").to_pylist() == [prompt[0].as_py()]
    assert pairs.column("extra").to_pylist() == [prompt[0].as_py()]
    assert pk.rank_lists(_rated(prompt=prompt)).column("prompt").to_pylist() == [
        prompt[0].as_py()]


# --------------------------------------------------------------------------------------------
# 4. Offsets near and beyond 2^31
# --------------------------------------------------------------------------------------------

def _three_responses(sizes: list[int], text_type: pa.DataType) -> pa.Array:
    """Three responses of ``sizes`` bytes (letters a, b, c) in one buffer."""
    data = np.empty(sum(sizes), np.uint8)
    ends = np.cumsum(sizes)
    for i, (start, end) in enumerate(zip(ends - sizes, ends)):
        data[start:end] = ord("a") + i
    kind = np.int32 if text_type == pa.string() else np.int64
    offsets = pa.py_buffer(np.concatenate([[0], ends]).astype(kind))
    return pa.Array.from_buffers(text_type, 3, [None, offsets, pa.py_buffer(data)])


def _slice(array: pa.Array, sizes: list[int], row: int) -> pa.Buffer:
    """The bytes of ``array``'s row ``row``, straight from its data buffer."""
    return array.buffers()[2].slice(sum(sizes[:row]), sizes[row])


def test_a_string_column_just_under_2gib_mines_a_result_over_2gib():
    """int32 offsets at 2^31 - 8 bytes; best_vs_all repeats the 1 GiB best response: the
    chosen column holds 2^31 + 2^21 bytes, which only large_string can hold."""
    sizes = [GiB + 2**20, GiB - 2**20 - 16, 8]
    _need(2**31 * 3.2, "a 2 GiB string column")
    response = _three_responses(sizes, pa.string())
    assert response.buffers()[2].size == 2**31 - 8
    table = pa.table({"prompt": ["p"] * 3, "response": response, "score": [2.0, 1.0, 0.0]})
    pairs = pk.mine_pairs(table, strategy="best_vs_all")
    chosen = pairs.column("chosen")
    assert chosen.type == pa.large_string() and pairs.column("rejected").type == pa.large_string()
    assert pc.sum(pc.binary_length(chosen)).as_py() == 2 * sizes[0] > 2**31
    assert pc.binary_length(pairs.column("rejected")).to_pylist() == sizes[1:]
    assert _value(chosen, 1).equals(_slice(response, sizes, 0))
    assert _value(pairs.column("rejected"), 0).equals(_slice(response, sizes, 1))
    assert _value(pairs.column("rejected"), 1).equals(_slice(response, sizes, 2))


def test_a_large_string_column_beyond_2gib():
    """A response that straddles byte 2^31 of a 2^31 + 2^20 byte buffer; all_pairs as views
    (no text copied) and best_vs_all plain."""
    sizes = [GiB - 8, GiB + 2**20, 8]
    _need(2**31 * 3.2, "a 2 GiB large_string column")
    response = _three_responses(sizes, pa.large_string())
    assert response.buffers()[2].size == 2**31 + 2**20
    table = pa.table({"prompt": ["p"] * 3, "response": response, "score": [1.0, 2.0, 0.0]})
    views = pk.mine_pairs(table, strategy="all_pairs", views=True)
    assert views.column("chosen").type == pa.string_view()
    assert views.select(["chosen_row", "rejected_row"]).to_pylist() == [
        {"chosen_row": 1, "rejected_row": 0}, {"chosen_row": 1, "rejected_row": 2},
        {"chosen_row": 0, "rejected_row": 2}]
    assert [len(_value(views.column("chosen"), i)) for i in range(3)] == [sizes[1]] * 2 + [
        sizes[0]]
    del views
    pairs = pk.mine_pairs(table, strategy="best_vs_all")
    assert pairs.column("chosen").type == pa.large_string()
    assert _value(pairs.column("chosen"), 0).equals(_slice(response, sizes, 1))
    assert _value(pairs.column("rejected"), 0).equals(_slice(response, sizes, 0))
    assert pairs.column("rejected")[1].as_py() == "c" * 8


# --------------------------------------------------------------------------------------------
# 5. Truncated or corrupt files in a folder
# --------------------------------------------------------------------------------------------

def _good_files(folder) -> None:
    """1.parquet and 3.jsonl: groups a and c, two rows each."""
    folder.mkdir(exist_ok=True)
    pq.write_table(pa.table({"prompt": ["a", "a"], "response": ["x", "y"], "score": [1.0, 0.0]}),
                   folder / "1.parquet")
    (folder / "3.jsonl").write_text(
        '{"prompt": "c", "response": "x", "score": 1.0}\n'
        '{"prompt": "c", "response": "y", "score": 0.0}\n')


def _prompts(pairs) -> list[str]:
    return sorted(pairs.column("prompt").to_pylist())


JSONL_BAD = ('{"prompt": "b", "response": "x", "score": 1.0}\n'
             '{"prompt": "b", "response": "y", "score": 0.0}\n'
             '{"prompt": "b", "response": "z", "sco\n'
             '{"prompt": "b", "response": "w", "score": 0.5}\n')


@pytest.mark.parametrize("memory_limit", [None, "1KB"])
def test_a_bad_jsonl_line_names_the_file_line_and_offset(tmp_path, memory_limit):
    _good_files(tmp_path)
    (tmp_path / "2.jsonl").write_text(JSONL_BAD)
    offset = len(JSONL_BAD.splitlines(keepends=True)[0]) * 2
    with pytest.raises(pk.PrefkitError, match=rf"'.*2\.jsonl': line 3 \(byte offset {offset}\)"):
        pk.mine_pairs(str(tmp_path), memory_limit=memory_limit)
    pairs = pk.mine_pairs(InputFiles(tmp_path, skip_bad_files=True), memory_limit=memory_limit)
    assert _prompts(pairs) == ["a", "c"]
    report = pk.report_of(pairs)
    [skipped] = report["skipped_files"]
    assert skipped["file"].endswith("2.jsonl") and skipped["offset"] == offset
    assert skipped["rows"] == 4 and report["dropped"]["bad_file"] == 4
    assert report["rows_in"] == 8 == report["rows_used"] + sum(report["dropped"].values())


@pytest.mark.parametrize("block", ["null\n", "  null}, {\n"])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_top_level_null_line_is_a_bad_file_not_a_segfault(tmp_path, block, suffix):
    """pyarrow's JSON parser segfaults when a parse block starts with a top-level null
    (apache/arrow#47409; fuzz/regressions/readers): refused as a bad line, wherever it is."""
    _good_files(tmp_path)
    lines = JSONL_BAD.replace("sco\n", 'score": 2.0}\n')
    text = (lines * 2000 + block + lines).encode()  # past pyarrow's 1 MiB first block
    (tmp_path / f"2{suffix}").write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
    line = lines.count("\n") * 2000 + 1
    with pytest.raises(pk.PrefkitError, match=rf"2\.jsonl.*': line {line} \(byte offset "):
        pk.read_table(tmp_path / f"2{suffix}")
    pairs = pk.mine_pairs(InputFiles(tmp_path, skip_bad_files=True), memory_limit="1MB")
    assert _prompts(pairs) == ["a", "c"]


@pytest.mark.parametrize("memory_limit", [None, "1KB"])
def test_a_parquet_file_with_invalid_utf8_metadata_is_a_bad_file(tmp_path, memory_limit):
    """In memory and streamed row group by row group alike (fuzz/regressions/readers)."""
    _good_files(tmp_path)
    table = pa.table({"prompt": ["b", "b"], "response": ["x", "y"], "score": [1.0, 0.0]})
    pq.write_table(table.replace_schema_metadata({b"k\xff": b"v"}), tmp_path / "2.parquet")
    with pytest.raises(pk.PrefkitError, match=r"2\.parquet'.*metadata key b'k\\xff'"):
        pk.mine_pairs(str(tmp_path), memory_limit=memory_limit)
    pairs = pk.mine_pairs(InputFiles(tmp_path, skip_bad_files=True), memory_limit=memory_limit)
    assert _prompts(pairs) == ["a", "c"]


def test_a_truncated_gzip_jsonl_names_where_it_breaks(tmp_path):
    _good_files(tmp_path)
    packed = gzip.compress(JSONL_BAD.replace("sco\n", 'score": 2.0}\n').encode() * 50)
    (tmp_path / "2.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(pk.PrefkitError, match=r"2\.jsonl\.gz'.*gzip stream is truncated.*"
                                              r"byte offset \d+ of the decompressed text"):
        pk.mine_pairs(str(tmp_path))
    pairs = pk.rank_lists(InputFiles(tmp_path, skip_bad_files=True))
    assert sorted(pairs.column("prompt").to_pylist()) == ["a", "c"]


def test_a_truncated_parquet_footer_names_the_size_and_offset(tmp_path):
    _good_files(tmp_path)
    whole = (tmp_path / "1.parquet").read_bytes()
    (tmp_path / "2.parquet").write_bytes(whole[:-3])
    size = len(whole) - 3
    with pytest.raises(pk.PrefkitError, match=rf"2\.parquet'.*\({size} bytes\) does not end "
                                              rf"with the Parquet magic 'PAR1' at byte offset "
                                              rf"{size - 4}"):
        pk.mine_pairs(str(tmp_path), memory_limit="1KB")
    (tmp_path / "2.parquet").write_bytes(whole[:-12] + whole[-8:])  # footer cut, magic kept
    with pytest.raises(pk.PrefkitError, match=r"2\.parquet'.*its footer \(\d+ bytes at byte "
                                              rf"offset \d+, file size {len(whole) - 4}\)"):
        pk.mine_pairs(str(tmp_path))
    pairs = pk.mine_pairs(InputFiles(tmp_path, skip_bad_files=True))
    assert _prompts(pairs) == ["a", "c"]
    [skipped] = pk.report_of(pairs)["skipped_files"]
    assert skipped["rows"] is None and "footer" in skipped["reason"]


def test_a_corrupt_parquet_row_group_names_its_offset(tmp_path):
    """Row group 1 of 3 overwritten: the error names it and its byte offset from the
    metadata; skipping keeps row group 0, read before, and counts the rows of 1 and 2."""
    _good_files(tmp_path)
    path = tmp_path / "2.parquet"
    rows = pa.table({"prompt": [f"b{i // 2}" for i in range(6)],
                     "response": [f"r{i}" for i in range(6)], "score": [1.0, 0.0] * 3})
    pq.write_table(rows, path, row_group_size=2, compression="snappy", use_dictionary=False)
    meta = pq.ParquetFile(path).metadata
    offset = min(meta.row_group(1).column(c).data_page_offset for c in range(3))
    data = bytearray(path.read_bytes())
    data[offset : offset + 24] = b"\xff" * 24
    path.write_bytes(bytes(data))
    with pytest.raises(pk.PrefkitError, match=rf"2\.parquet': row group 1 of 3 \(2 rows, \d+ "
                                              rf"bytes at byte offset {offset}\) is corrupt"):
        pk.mine_pairs(str(tmp_path), memory_limit="1KB")
    for memory_limit in (None, "1KB"):
        pairs = pk.mine_pairs(InputFiles(tmp_path, skip_bad_files=True),
                              memory_limit=memory_limit)
        assert _prompts(pairs) == ["a", "b0", "c"]
        report = pk.report_of(pairs)
        assert report["dropped"]["bad_file"] == 4 and report["rows_in"] == 10
        assert report["skipped_files"][0]["offset"] == offset


def test_a_schema_mismatch_is_still_an_error_when_skipping(tmp_path):
    """skip_bad_files skips unreadable files, not files that do not fit the schema."""
    _good_files(tmp_path)
    (tmp_path / "2.jsonl").write_text('{"prompt": "b", "response": "x", "score": "high"}\n')
    with pytest.raises(pk.PrefkitError, match=r"column 'score' of input file '.*2\.jsonl'"):
        pk.mine_pairs(InputFiles(tmp_path, skip_bad_files=True))


@pytest.mark.filterwarnings("ignore:.*exceed the memory budget:RuntimeWarning")
def test_skip_bad_files_reaches_minhash_dedup(tmp_path):
    """Through the out-of-core MinHash passes (a budget of 1 KB), which read the input three
    times: the file is listed once."""
    _good_files(tmp_path)
    (tmp_path / "2.jsonl").write_text(JSONL_BAD)
    kept = pk.dedup(InputFiles(tmp_path, skip_bad_files=True), columns="response",
                    method="minhash", memory_limit="1KB")
    report = pk.report_of(kept)
    assert kept.num_rows == 2 and report["skipped_files"][0]["rows"] == 4


def test_the_cli_skips_bad_files_and_reports_them(tmp_path, capsys):
    from prefkit.cli import main

    _good_files(tmp_path / "in")
    (tmp_path / "in" / "2.jsonl").write_text(JSONL_BAD)
    out = tmp_path / "pairs.parquet"
    command = ["pairs", str(tmp_path / "in"), "-o", str(out), "-q"]
    assert main(command) == 2
    assert "2.jsonl': line 3 (byte offset" in capsys.readouterr().err
    assert not out.exists()
    assert main([*command, "--skip-bad-files"]) == 0
    printed = capsys.readouterr().out
    assert "dropped (bad_file): 4" in printed and "skipped bad file" in printed
    report = pk.report_of(pq.read_schema(out))
    assert [entry["rows"] for entry in report["skipped_files"]] == [4]
    assert report["rows_in"] == 8
