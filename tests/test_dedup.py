"""Deduplication, decontamination and split: properties against tests/reference.py, planted
near-duplicates with known Jaccard similarity, determinism, leak-freeness and bad input."""

from __future__ import annotations

import random

import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

# ASCII, case, punctuation and symbols, accents (composed and combining), ligature, fullwidth,
# CJK, emoji (non-BMP), several kinds of whitespace.
ALPHABET = st.sampled_from(list("aAbB .,!-'$+ éE\u0301ﬁＡ中😀\t\n\u3000\u00a0Σ"))
TEXT = st.text(ALPHABET, max_size=8)

TYPES = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "string_view": pa.string_view(),
}


def shaped(table: pa.Table, text_type: str, chunk: int | None) -> pa.Table:
    """The same rows with text columns of another type, in chunks of `chunk` rows."""
    schema = pa.schema(
        [f.with_type(TYPES[text_type]) if f.type == pa.string() else f for f in table.schema]
    )
    table = table.cast(schema)
    if chunk:
        table = pa.Table.from_batches(table.to_batches(max_chunksize=chunk), schema=schema)
    return table


@st.composite
def tables(draw):
    n = draw(st.integers(0, 25))
    pool = draw(st.lists(st.one_of(TEXT, st.none()), min_size=1, max_size=5))
    pick = st.sampled_from(pool)
    rows = [{"prompt": draw(pick), "chosen": draw(pick), "i": i} for i in range(n)]
    schema = pa.schema([("prompt", pa.string()), ("chosen", pa.string()), ("i", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema), rows


@given(
    tables(),
    st.sampled_from([["prompt"], ["prompt", "chosen"], ["prompt", "i"]]),
    st.booleans(),
    st.sampled_from([None, "prompt", "chosen"]),
    st.sampled_from(list(TYPES)),
    st.sampled_from([None, 1, 4]),
)
def test_exact_dedup_equals_reference(data, columns, normalize, group, text_type, chunk):
    table, rows = data
    result = pk.dedup(
        shaped(table, text_type, chunk), columns=columns, normalize=normalize, group=group
    )
    kept, dropped = ref.dedup_exact(rows, columns, normalize=normalize, group=group)
    assert result.column("i").to_pylist() == kept
    report = pk.report_of(result)
    assert report["dropped"] == dropped
    assert report["rows_in"] == len(rows)
    assert report["rows_used"] + sum(report["dropped"].values()) == len(rows)
    duplicates = pk.find_duplicates(table, columns=columns, normalize=normalize, group=group)
    if group is None:  # (with groups, the kept unit's other rows also list its first row)
        dropped_rows = {r for r, c in zip(*duplicates.to_pydict().values()) if r != c}
        assert sorted(set(range(len(rows))) - dropped_rows) == kept


@given(st.text(ALPHABET, max_size=30))
def test_normalize_text_equals_reference(text):
    assert pk.normalize_text(text) == ref.normalize_text(text)


def test_sliced_input_and_empty_tables():
    table = pa.table({"prompt": ["x", "y", "x", "X!", "z"], "i": list(range(5))})
    assert pk.dedup(table.slice(1, 3)).column("i").to_pylist() == [1, 2]
    empty = table.slice(0, 0)
    assert pk.dedup(empty).num_rows == 0
    assert pk.dedup(empty, method="minhash").num_rows == 0
    assert pk.find_duplicates(empty).num_rows == 0


# ------------------------------------------------------------------------------------------
# Planted near-duplicates
# ------------------------------------------------------------------------------------------

VOCABULARY = [f"w{i}" for i in range(3000)]


def planted(seed: int, bases: int = 300, words: int = 120):
    """Independent documents, half of them followed later by an edited copy."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choices(VOCABULARY, k=words)) for _ in range(bases)]
    pairs = []
    for base in range(0, bases, 2):
        copy = docs[base].split()
        for _ in range(rng.randint(0, 12)):
            copy[rng.randrange(words)] = rng.choice(VOCABULARY)
        pairs.append((base, len(docs)))
        docs.append(" ".join(copy))
    return docs, pairs


def cluster_pairs(found: pa.Table) -> set[tuple[int, int]]:
    clusters: dict[int, list[int]] = {}
    for row, cluster in zip(found.column("row").to_pylist(), found.column("cluster").to_pylist()):
        clusters.setdefault(cluster, []).append(row)
    return {(a, b) for rows in clusters.values() for a in rows for b in rows if a < b}


@pytest.mark.parametrize("seed", [1, 2])
def test_minhash_recall_and_precision_on_planted_pairs(seed):
    docs, pairs = planted(seed)
    threshold, n = 0.8, 5
    table = pa.table({"text": docs})
    found = pk.find_duplicates(
        table, columns="text", method="minhash", threshold=threshold, ngram=n, seed=seed
    )
    flagged = cluster_pairs(found)
    truth = {pair: ref.jaccard(docs[pair[0]], docs[pair[1]], n) for pair in pairs}
    high = [pair for pair, j in truth.items() if j >= threshold + 0.1]
    assert len(high) > 20
    recall = sum(pair in flagged for pair in high) / len(high)
    assert recall >= 0.95, recall
    good = sum(ref.jaccard(docs[a], docs[b], n) >= threshold - 0.1 for a, b in flagged)
    assert flagged and good / len(flagged) >= 0.95
    kept = pk.dedup(table, columns="text", method="minhash", threshold=threshold, seed=seed)
    report = pk.report_of(kept)
    assert sum(report["dropped"].values()) == len({b for _, b in flagged})
    assert kept.num_rows + sum(report["dropped"].values()) == len(docs)


def test_minhash_is_deterministic_for_a_seed_and_keeps_the_first_row():
    docs, _ = planted(3, bases=120)
    table = pa.table({"text": docs})
    runs = [pk.find_duplicates(table, columns="text", method="minhash", seed=7) for _ in range(2)]
    assert runs[0].equals(runs[1])
    for row, cluster in zip(*runs[0].to_pydict().values()):
        assert cluster <= row
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=17))
    viewed = chunked.cast(pa.schema([("text", pa.string_view())]))
    assert pk.find_duplicates(viewed, columns="text", method="minhash", seed=7).equals(runs[0])


def test_minhash_over_several_columns_and_with_explicit_bands():
    base = " ".join(f"w{i}" for i in range(40))
    table = pa.table(
        {
            "prompt": [base, base, base],
            "chosen": [base.upper(), base.title() + "!", "x y z u v w " * 8],
        }
    )
    # Shingles of both columns form one set: the third row shares only the prompt's.
    kept = pk.dedup(table, columns=["prompt", "chosen"], method="minhash", bands=16)
    assert kept.num_rows == 2
    assert pk.report_of(kept)["dropped"] == {"duplicate": 1}


def test_grouped_minhash_dedup_drops_whole_prompt_groups():
    docs, pairs = planted(4, bases=40)
    a, b = pairs[0]
    rows = [(docs[a], "r1"), (docs[a], "r2"), (docs[b], "r3"), (docs[b], "r4"), (docs[1], "r5")]
    table = pa.table({"prompt": [p for p, _ in rows], "response": [r for _, r in rows]})
    kept = pk.dedup(table, method="minhash", group="prompt", threshold=0.5)
    assert kept.column("response").to_pylist() == ["r1", "r2", "r5"]
    report = pk.report_of(kept)
    assert report["dropped"] == {"near_duplicate": 2}
    assert report["groups_in"] == 3


# ------------------------------------------------------------------------------------------
# Decontamination
# ------------------------------------------------------------------------------------------

WORDS = st.lists(st.sampled_from(["a", "B", "c!", "dé", "e", "中"]), max_size=8).map(" ".join)


@given(
    st.lists(st.one_of(WORDS, st.none()), max_size=12),
    st.lists(st.one_of(WORDS, st.none()), max_size=5),
    st.integers(1, 4),
    st.booleans(),
)
def test_decontamination_equals_reference(texts, references, ngram, normalize):
    table = pa.table({"prompt": pa.array(texts, pa.string()), "i": list(range(len(texts)))})
    reference = pa.table({"question": pa.array(references, pa.string())})
    found = pk.find_contamination(
        table, reference, reference_column="question", ngram=ngram, normalize=normalize
    )
    expected = ref.find_contamination(texts, references, ngram, normalize)
    assert list(zip(*found.to_pydict().values())) == expected
    clean = pk.decontaminate(
        table, reference, reference_column="question", ngram=ngram, normalize=normalize
    )
    dropped = {row for row, _ in expected}
    assert clean.column("i").to_pylist() == [i for i in range(len(texts)) if i not in dropped]
    report = pk.report_of(clean)
    assert report["contaminated_rows"] == [[row, refs] for row, refs in expected]
    assert report["dropped"] == ({"contaminated": len(dropped)} if dropped else {})


MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", None]),
                                  "content": st.one_of(WORDS, st.none())})
CONVERSATION = st.one_of(st.none(), st.lists(st.one_of(MESSAGE, st.none()), max_size=3))
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


@given(
    st.lists(CONVERSATION, max_size=10),
    st.lists(st.one_of(WORDS, st.none()), max_size=4),
    st.integers(1, 4),
)
def test_decontamination_of_chat_messages_equals_the_reference_on_rendered_text(
    conversations, references, ngram
):
    table = pa.table({"prompt": pa.array(conversations, MESSAGES_TYPE)})
    found = pk.find_contamination(table, references, ngram=ngram)
    texts = [ref.render_messages(c) for c in conversations]
    expected = ref.find_contamination(texts, references, ngram)
    assert list(zip(*found.to_pydict().values())) == expected


@pytest.mark.parametrize("list_type", [pa.list_, pa.large_list])
def test_minhash_on_chat_messages_compares_the_rendered_conversations(list_type):
    docs, pairs = planted(11, bases=120)
    conversations = [
        [{"role": "user", "content": "Please answer."}, {"role": "assistant", "content": d}]
        for d in docs
    ]
    messages_type = list_type(MESSAGES_TYPE.value_type)
    table = pa.table({"prompt": pa.array(conversations, messages_type), "i": range(len(docs))})
    rendered = pa.table({"prompt": [ref.render_messages(c) for c in conversations],
                         "i": range(len(docs))})
    kept = pk.dedup(table, columns="prompt", method="minhash")
    assert kept.column("i").equals(pk.dedup(rendered, columns="prompt", method="minhash")
                                   .column("i"))
    dropped = set(range(len(docs))) - set(kept.column("i").to_pylist())
    close = [b for a, b in pairs if ref.jaccard(docs[a], docs[b], 5) >= 0.9]
    assert close and set(close) <= dropped
    assert kept.column("prompt").type == messages_type  # the rows themselves are untouched


# ------------------------------------------------------------------------------------------
# Split
# ------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(tables(), st.floats(0.05, 0.95), st.integers(0, 2**64 - 1))
def test_split_is_leak_free_and_deterministic(data, fraction, seed):
    table, rows = data
    train, test = pk.split(table, test_size=fraction, group="prompt", seed=seed)
    assert train.num_rows + test.num_rows == len(rows)
    key = ref.normalize_text
    sides = [
        {key(p) for p in part.column("prompt").to_pylist() if p is not None}
        for part in (train, test)
    ]
    assert not sides[0] & sides[1]
    assert sorted(train.column("i").to_pylist() + test.column("i").to_pylist()) == list(
        range(len(rows))
    )
    again = pk.split(table, test_size=fraction, group="prompt", seed=seed)
    assert again[1].equals(test)


def test_split_sizes_and_near_duplicates():
    docs, pairs = planted(5, bases=200)
    long = pa.table(
        {"prompt": [d for d in docs for _ in range(2)], "r": list(range(2 * len(docs)))}
    )
    train, test = pk.split(long, test_size=0.2, seed=3, near_duplicates=True)
    assert 0 < test.num_rows <= 0.2 * long.num_rows + 1
    test_prompts = set(test.column("prompt").to_pylist())
    train_prompts = set(train.column("prompt").to_pylist())
    assert not test_prompts & train_prompts
    for a, b in pairs:
        if ref.jaccard(docs[a], docs[b], 5) >= 0.9:
            assert (docs[a] in test_prompts) == (docs[b] in test_prompts)
    report = pk.report_of(test)
    assert report["part"] == "test" and report["test_rows"] == test.num_rows
    train, test = pk.split(long, test_size=10, seed=3)
    assert test.num_rows == 10


# ------------------------------------------------------------------------------------------
# Bad input, CLI
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: pk.dedup(t, columns="nope"), "column 'nope' not found"),
        (lambda t: pk.dedup(t, columns="n", method="minhash"), "column 'n' must be text"),
        (lambda t: pk.dedup(t, method="fuzzy"), "method must be"),
        (lambda t: pk.dedup(t, method="minhash", threshold=0), "threshold"),
        (lambda t: pk.dedup(t, method="minhash", bands=200), "bands"),
        (lambda t: pk.dedup(t, columns=[]), "columns"),
        (lambda t: pk.dedup(t, columns="m"), "column 'm' must be a key"),
        (lambda t: pk.decontaminate(t, t, column="n"), "column 'n' must be text"),
        (lambda t: pk.decontaminate(t, [1]), "reference"),
        (lambda t: pk.split(t, test_size=1.5), "test_size"),
        (lambda t: pk.split(t, test_size=0.5, group="n", near_duplicates=True), "column 'n'"),
        (lambda t: pk.split(t, test_size=0.5, group="nope"), "column 'nope' not found"),
    ],
)
def test_bad_input_raises_prefkit_error(call, message):
    table = pa.table({"prompt": ["a", "b"], "n": [1, 2], "m": pa.array([b"x", b"y"])})
    with pytest.raises(pk.PrefkitError, match=message):
        call(table)


def test_cli_verbs(tmp_path):
    from prefkit.cli import main

    data = pa.table({"prompt": ["Hi!", "hi", "what is two plus two", "bye", "new"]})
    pk.write_table(data, tmp_path / "in.parquet")
    pk.write_table(pa.table({"prompt": ["two plus two"]}), tmp_path / "bench.parquet")
    assert (
        main(["dedup", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "d.parquet"), "-q"]) == 0
    )
    assert pk.read_table(tmp_path / "d.parquet").num_rows == 4
    assert (
        main(
            [
                "decontaminate",
                str(tmp_path / "in.parquet"),
                "--reference",
                str(tmp_path / "bench.parquet"),
                "--ngram",
                "3",
                "-o",
                str(tmp_path / "c.parquet"),
                "-q",
            ]
        )
        == 0
    )
    assert pk.read_table(tmp_path / "c.parquet").num_rows == 4
    assert (
        main(
            [
                "split",
                str(tmp_path / "in.parquet"),
                "--test-size",
                "0.4",
                "-o",
                str(tmp_path / "train.parquet"),
                "--test-output",
                str(tmp_path / "test.parquet"),
                "-q",
            ]
        )
        == 0
    )
    sizes = [pk.read_table(tmp_path / f"{p}.parquet").num_rows for p in ("train", "test")]
    assert sum(sizes) == 5 and sizes[1] >= 1
