"""``pk.split_prompt``: HH-style text and chat messages, against ``tests/reference.py``."""

from __future__ import annotations

import json

import prefkit as pk
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reference as ref
from hypothesis import given, note
from hypothesis import strategies as st

A = "\n\nAssistant:"
CHAT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def hh(*turns: str) -> str:
    """An Anthropic-HH conversation: alternating Human / Assistant turns."""
    return "".join(
        f"\n\nHuman: {t}" if i % 2 == 0 else f"{A} {t}" for i, t in enumerate(turns)
    )


def msgs(*turns: str) -> list[dict]:
    return [{"role": ["user", "assistant"][i % 2], "content": t} for i, t in enumerate(turns)]


# --------------------------------------------------------------------------------------------
# HH-style text
# --------------------------------------------------------------------------------------------


def test_hh_single_turn_with_boundary():
    data = pa.table({
        "chosen": [hh("What is 2+2?", "It is 4.")],
        "rejected": [hh("What is 2+2?", "It is 5.")],
    })
    out = pk.split_prompt(data, boundary=A).to_pylist()
    assert out == [{
        "prompt": "\n\nHuman: What is 2+2?\n\nAssistant:",
        "chosen": " It is 4.",
        "rejected": " It is 5.",
    }]


def test_without_boundary_the_shared_words_go_to_the_prompt():
    # TRL#1541-style pain: a plain common prefix cuts inside the answers.
    data = pa.table({"chosen": [hh("hi", "It is 4.")], "rejected": [hh("hi", "It is 5.")]})
    out = pk.split_prompt(data).to_pylist()[0]
    assert out["prompt"].endswith("Assistant: It is ")
    assert (out["chosen"], out["rejected"]) == ("4.", "5.")


def test_hh_multi_turn_cuts_at_the_last_shared_assistant_turn():
    chosen = hh("hi", "hello", "how do I bake bread?", "Mix flour, water, yeast and salt.")
    rejected = hh("hi", "hello", "how do I bake bread?", "Buy it.")
    out = pk.split_prompt(pa.table({"chosen": [chosen], "rejected": [rejected]}), boundary=A)
    row = out.to_pylist()[0]
    assert row["prompt"] == hh("hi", "hello", "how do I bake bread?") + A
    assert row["chosen"] == " Mix flour, water, yeast and salt."
    assert row["rejected"] == " Buy it."
    assert row["prompt"] + row["chosen"] == chosen


def test_rows_that_cannot_be_split_are_counted():
    data = pa.table({
        "chosen": [hh("q", "a"), None, hh("q", "same"), "nothing shared", hh("q", "ab"),
                   "no boundary x"],
        "rejected": [hh("q", "b"), hh("q", "b"), hh("q", "same"), "different", hh("q", "ab c"),
                     "no boundary y"],
    })
    out = pk.split_prompt(data, boundary=A)
    assert out.num_rows == 2  # the first, and "ab" vs "ab c" (both non-empty after the cut)
    record = pk.report_of(out)
    assert record["rows_in"] == 6 and record["rows_used"] == 2
    assert record["dropped"] == {
        "null_conversation": 1, "identical": 1, "no_shared_prompt": 2,
    }
    # Without the boundary, "ab" is a prefix of "ab c": its completion would be empty.
    record = pk.report_of(pk.split_prompt(data))
    assert record["dropped"]["empty_completion"] == 1


def test_unsplittable_error_names_the_row():
    data = pa.table({"chosen": [hh("q", "a"), hh("q", "a")], "rejected": [hh("q", "b"),
                                                                          hh("q", "a")]})
    with pytest.raises(pk.PrefkitError, match=r"row 1 .*identical.*unsplittable=\"drop\""):
        pk.split_prompt(data, boundary=A, unsplittable="error")


def test_other_columns_are_kept_after_the_result():
    data = pa.table({
        "id": [7, 8],
        "chosen": [hh("q", "good"), hh("r", "x")],
        "source": ["hh", "hh"],
        "rejected": [hh("q", "bad"), "unrelated"],
    })
    out = pk.split_prompt(data, boundary=A)
    assert out.column_names == ["prompt", "chosen", "rejected", "id", "source"]
    assert out.to_pylist()[0]["id"] == 7 and out.num_rows == 1


def test_text_results_are_views_into_the_input():
    long = "x" * 100
    chosen = pa.array([hh(long, "good answer " * 5)], pa.string())
    rejected = pa.array([hh(long, "bad answer " * 5)], pa.string())
    out = pk.split_prompt(pa.table({"chosen": chosen, "rejected": rejected}), boundary=A,
                          views=True)
    assert out.schema.field("prompt").type == pa.string_view()
    data = chosen.buffers()[2]
    start, end = data.address, data.address + data.size
    for name in ("prompt", "chosen"):
        buffers = out.column(name).chunk(0).buffers()
        assert all(start <= b.address < end for b in buffers[2:] if b is not None), name


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_text_types_sliced_and_chunked(text_type):
    chosen = [hh("q", f"good {i} é😀") for i in range(6)]
    rejected = [hh("q", f"bad {i}") for i in range(6)]
    c = pa.chunked_array([pa.array(chosen[:2], text_type), pa.array(chosen[2:], text_type)])
    r = pa.chunked_array([pa.array(rejected[:4], text_type), pa.array(rejected[4:], text_type)])
    table = pa.table({"chosen": c, "rejected": r}).slice(1, 4)
    out = pk.split_prompt(table, boundary=A)
    expected, _ = ref.split_prompt(table.to_pylist(), boundary=A)
    assert out.to_pylist() == expected


def test_polars_and_parquet_round_trip(tmp_path):
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"chosen": [hh("q", "yes")], "rejected": [hh("q", "no")]})
    out = pk.split_prompt(frame, boundary=A)
    pq.write_table(out, tmp_path / "split.parquet")
    back = pq.read_table(tmp_path / "split.parquet")
    assert back.to_pylist() == out.to_pylist()
    assert pk.report_of(back)["op"] == "split_prompt"
    assert pl.from_arrow(out)["chosen"].to_list() == [" yes"]


# --------------------------------------------------------------------------------------------
# Chat messages
# --------------------------------------------------------------------------------------------


def test_chat_messages_shared_messages_are_the_prompt():
    data = pa.table({
        "chosen": pa.array([msgs("hi", "hello", "2+2?", "4")], CHAT),
        "rejected": pa.array([msgs("hi", "hello", "2+2?", "5")], CHAT),
    })
    out = pk.split_prompt(data)
    assert out.schema.field("prompt").type == CHAT
    assert out.to_pylist() == [{
        "prompt": msgs("hi", "hello", "2+2?"),
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }]


def test_chat_boundary_is_a_role():
    # The conversations diverge at a user turn: boundary="user" keeps the prompt ending with
    # the last shared user message.
    chosen = msgs("hi", "hello", "tell me a joke", "knock knock")
    rejected = msgs("hi", "hello", "tell me a joke", "no")
    rejected.append({"role": "user", "content": "please"})
    data = pa.table({"chosen": pa.array([chosen], CHAT), "rejected": pa.array([rejected], CHAT)})
    assert pk.split_prompt(data, boundary="user").column("prompt").to_pylist() == [chosen[:3]]
    two = msgs("hi", "a", "b")
    data = pa.table({
        "chosen": pa.array([two + [{"role": "assistant", "content": "x"}]], CHAT),
        "rejected": pa.array([two + [{"role": "assistant", "content": "y"}]], CHAT),
    })
    # Shared: user, assistant, user -> cut after the last user message (all three).
    assert len(pk.split_prompt(data, boundary="user").column("prompt")[0]) == 3
    assert len(pk.split_prompt(data, boundary="assistant").column("prompt")[0]) == 2


def test_chat_messages_with_extra_fields_and_large_lists():
    message = pa.struct([("role", pa.string()), ("content", pa.large_string()),
                         ("name", pa.string())])
    chat = pa.large_list(message)
    c = [{"role": "user", "content": "q", "name": None},
         {"role": "assistant", "content": "a", "name": "bot"}]
    r = [{"role": "user", "content": "q", "name": None},
         {"role": "assistant", "content": "a", "name": "other"}]
    data = pa.table({"chosen": pa.array([c], chat), "rejected": pa.array([r], chat)})
    out = pk.split_prompt(data)
    assert out.schema.field("chosen").type == chat
    assert out.to_pylist() == [{"prompt": c[:1], "chosen": c[1:], "rejected": r[1:]}]


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_missing_column_is_named():
    with pytest.raises(pk.PrefkitError, match="'rejected'.*not found"):
        pk.split_prompt(pa.table({"chosen": ["a"]}))


def test_wrong_types_are_named():
    with pytest.raises(pk.PrefkitError, match=r"'chosen'.*int64|'chosen'.*Int64"):
        pk.split_prompt(pa.table({"chosen": [1], "rejected": [2]}))
    mixed = pa.table({"chosen": ["a"], "rejected": pa.array([msgs("a")], CHAT)})
    with pytest.raises(pk.PrefkitError, match="'rejected'.*text"):
        pk.split_prompt(mixed)
    no_role = pa.list_(pa.struct([("content", pa.string())]))
    data = pa.table({"chosen": pa.array([[{"content": "a"}]], no_role),
                     "rejected": pa.array([[{"content": "b"}]], no_role)})
    with pytest.raises(pk.PrefkitError, match="'chosen'.*'role'"):
        pk.split_prompt(data, boundary="user")


def test_existing_prompt_column_and_bad_arguments():
    data = pa.table({"prompt": ["p"], "chosen": ["ab"], "rejected": ["ac"]})
    with pytest.raises(pk.PrefkitError, match="already has a column 'prompt'"):
        pk.split_prompt(data)
    data = data.drop(["prompt"])
    with pytest.raises(pk.PrefkitError, match="boundary"):
        pk.split_prompt(data, boundary="")
    with pytest.raises(pk.PrefkitError, match="unsplittable"):
        pk.split_prompt(data, unsplittable="skip")


# --------------------------------------------------------------------------------------------
# Property tests against the reference
# --------------------------------------------------------------------------------------------

# Pieces that make shared prefixes, partial boundaries and multi-byte characters likely.
PIECES = st.sampled_from(["\n\nHuman: ", A, " ", "a", "b", "é", "😀", "\n", "Assist", "x" * 13])
TEXT = st.lists(PIECES, max_size=6).map("".join)


@st.composite
def text_pairs(draw):
    n = draw(st.integers(0, 12))
    rows = []
    for _ in range(n):
        shared = draw(TEXT)
        c = shared + draw(TEXT)
        r = draw(st.sampled_from([shared + draw(TEXT), c, draw(TEXT)]))
        if draw(st.integers(0, 9)) == 0:
            c = None
        rows.append({"chosen": c, "rejected": r, "id": len(rows)})
    return rows


@given(
    rows=text_pairs(),
    boundary=st.sampled_from([None, A, "é", "\n"]),
    text_type=st.sampled_from([pa.string(), pa.large_string(), pa.string_view()]),
    split_at=st.integers(0, 12),
)
def test_text_matches_reference(rows, boundary, text_type, split_at):
    table = pa.table({
        "chosen": pa.array([r["chosen"] for r in rows], text_type),
        "rejected": pa.array([r["rejected"] for r in rows], text_type),
        "id": pa.array([r["id"] for r in rows], pa.int64()),
    })
    if 0 < split_at < len(rows):
        table = pa.concat_tables([table.slice(0, split_at), table.slice(split_at)])
    expected, accounting = ref.split_prompt(rows, boundary=boundary)
    note(json.dumps(rows, ensure_ascii=False))
    out = pk.split_prompt(table, boundary=boundary)
    assert out.to_pylist() == expected
    record = pk.report_of(out)
    assert {k: record[k] for k in accounting} == accounting


MESSAGE = st.builds(
    lambda role, content: {"role": role, "content": content},
    st.sampled_from(["user", "assistant", "system"]),
    st.sampled_from(["hi", "2+2?", "4", "é😀", ""]),
)


@st.composite
def message_pairs(draw):
    rows = []
    for _ in range(draw(st.integers(0, 10))):
        shared = draw(st.lists(MESSAGE, max_size=3))
        c = shared + draw(st.lists(MESSAGE, max_size=2))
        r = draw(st.sampled_from([shared + draw(st.lists(MESSAGE, max_size=2)), c]))
        rows.append({"chosen": None if draw(st.integers(0, 9)) == 0 else c, "rejected": r})
    return rows


@given(rows=message_pairs(), boundary=st.sampled_from([None, "user", "assistant"]))
def test_messages_match_reference(rows, boundary):
    table = pa.table({
        "chosen": pa.array([r["chosen"] for r in rows], CHAT),
        "rejected": pa.array([r["rejected"] for r in rows], CHAT),
    })
    expected, accounting = ref.split_prompt(rows, boundary=boundary)
    out = pk.split_prompt(table, boundary=boundary)
    assert out.to_pylist() == expected
    record = pk.report_of(out)
    assert {k: record[k] for k in accounting} == accounting
