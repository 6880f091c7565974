"""tokenize_pairs / tokenize_lists: exact ids against the tokenizer called per row, truncation
rules, chat messages, special tokens and bad input."""

from __future__ import annotations

import polars as pl
import prefkit as pk
import pyarrow as pa
import pytest
from tiny_lm import CHAT_TEMPLATE, bpe_tokenizer, example_long

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def long():
    return example_long()


@pytest.fixture(scope="module")
def tok(long):
    return bpe_tokenizer(long.column("prompt").to_pylist() + long.column("response").to_pylist())


@pytest.fixture(scope="module")
def pairs(long):
    return pk.mine_pairs(long, strategy="all_pairs")


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def expected_pair(tok, row, max_length=None, max_prompt_length=None):
    """The documented rules, one row at a time in plain Python."""
    prompt = [tok.bos_token_id] + ids(tok, row["prompt"])
    chosen = ids(tok, row["chosen"]) + [tok.eos_token_id]
    rejected = ids(tok, row["rejected"]) + [tok.eos_token_id]
    return truncate(prompt, [chosen, rejected], max_length, max_prompt_length)


def truncate(prompt, completions, max_length, max_prompt_length):
    def keep_end(p, n):  # the BOS token stays in front
        return p[:1] + (p[len(p) - (n - 1):] if n > 1 else []) if len(p) > n else p

    if max_prompt_length is not None:
        prompt = keep_end(prompt, max_prompt_length)
    if max_length is not None:
        longest = max(len(c) for c in completions)
        if len(prompt) + longest > max_length:
            n = max(max_length - longest, min(len(prompt), max_length // 2))
            prompt = keep_end(prompt, n)
            completions = [c[:max_length - len(prompt)] for c in completions]
    return prompt, completions


def test_ids_match_the_tokenizer_per_row(tok, pairs):
    out = pk.tokenize_pairs(pairs, tok)
    assert out.num_rows == pairs.num_rows
    for name in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert out.schema.field(name).type == pa.list_(pa.int32())
    assert out.column_names[:pairs.num_columns] == pairs.column_names
    for row in out.to_pylist():
        prompt, (chosen, rejected) = expected_pair(tok, row)
        assert row["prompt_ids"] == prompt
        assert row["chosen_ids"] == chosen
        assert row["rejected_ids"] == rejected


def test_input_forms_give_the_same_ids(tok, pairs):
    plain = pk.materialize(pairs).select(["prompt", "chosen", "rejected"])
    base = pk.tokenize_pairs(plain, tok).select(["prompt_ids", "chosen_ids", "rejected_ids"])
    chunked = pa.Table.from_batches(plain.to_batches(max_chunksize=7))
    for data in (pl.from_arrow(plain), chunked, plain.slice(0)):
        other = pk.tokenize_pairs(data, tok).select(["prompt_ids", "chosen_ids", "rejected_ids"])
        assert other.to_pylist() == base.to_pylist()


@pytest.mark.parametrize("max_length, max_prompt_length", [
    (None, 8), (None, 1), (64, None), (40, 16), (24, None), (2, None), (200, 10), (12, 30),
])
def test_truncation_rules(tok, pairs, max_length, max_prompt_length):
    out = pk.tokenize_pairs(pairs, tok, max_length=max_length,
                            max_prompt_length=max_prompt_length)
    cut = {"prompt": 0, "chosen": 0, "rejected": 0}
    for row in out.to_pylist():
        prompt, (chosen, rejected) = expected_pair(tok, row, max_length, max_prompt_length)
        assert row["prompt_ids"] == prompt
        assert row["chosen_ids"] == chosen
        assert row["rejected_ids"] == rejected
        full_prompt, (full_chosen, full_rejected) = expected_pair(tok, row)
        assert prompt[0] == tok.bos_token_id  # the BOS token survives truncation
        assert prompt[1:] == full_prompt[len(full_prompt) - len(prompt) + 1:]  # prompt: its end
        assert chosen == full_chosen[:len(chosen)]  # completions: their start
        if max_length is not None:
            assert len(prompt) + max(len(chosen), len(rejected)) <= max(max_length, 1)
        if max_prompt_length is not None:
            assert len(prompt) <= max_prompt_length
        cut["prompt"] += len(prompt) < len(full_prompt)
        cut["chosen"] += len(chosen) < len(full_chosen)
        cut["rejected"] += len(rejected) < len(full_rejected)
    assert pk.report_of(out)["truncated"] == cut


def test_prompt_gives_way_only_as_far_as_needed(tok):
    pairs = pa.table({"prompt": ["one two three four five six seven eight nine ten"],
                      "chosen": ["a"], "rejected": ["b c"]})
    full = pk.tokenize_pairs(pairs, tok).to_pylist()[0]
    p, r = len(full["prompt_ids"]), len(full["rejected_ids"])
    fits = pk.tokenize_pairs(pairs, tok, max_length=p + r).to_pylist()[0]
    assert fits["prompt_ids"] == full["prompt_ids"]
    one_short = pk.tokenize_pairs(pairs, tok, max_length=p + r - 1).to_pylist()[0]
    assert len(one_short["prompt_ids"]) == p - 1  # the prompt loses one token, not a completion
    assert one_short["rejected_ids"] == full["rejected_ids"]


def test_special_tokens_are_not_doubled(tok):
    pairs = pa.table({"prompt": ["<s>hello"], "chosen": ["yes</s>"], "rejected": ["no"]})
    row = pk.tokenize_pairs(pairs, tok).to_pylist()[0]
    assert row["prompt_ids"] == [tok.bos_token_id] + ids(tok, "hello")
    assert row["chosen_ids"] == ids(tok, "yes") + [tok.eos_token_id]
    assert row["rejected_ids"] == ids(tok, "no") + [tok.eos_token_id]
    bare = pk.tokenize_pairs(pairs, tok, add_special_tokens=False).to_pylist()[0]
    assert bare["prompt_ids"] == ids(tok, "<s>hello")
    assert bare["rejected_ids"] == ids(tok, "no")


def test_empty_texts(tok):
    pairs = pa.table({"prompt": [""], "chosen": [""], "rejected": ["x"]})
    row = pk.tokenize_pairs(pairs, tok).to_pylist()[0]
    assert row["prompt_ids"] == [tok.bos_token_id]
    assert row["chosen_ids"] == [tok.eos_token_id]
    bare = pk.tokenize_pairs(pairs, tok, add_special_tokens=False).to_pylist()[0]
    assert bare["prompt_ids"] == [] and bare["chosen_ids"] == []
    empty = pk.tokenize_pairs(pairs.slice(0, 0), tok)
    assert empty.num_rows == 0 and "prompt_ids" in empty.column_names


def test_tokenizer_without_bos_or_eos():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2, "c": 3}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    pairs = pa.table({"prompt": ["a b c a"], "chosen": ["b b b"], "rejected": ["c"]})
    row = pk.tokenize_pairs(pairs, tok, max_prompt_length=2, max_length=4).to_pylist()[0]
    assert row["prompt_ids"] == [3, 1]
    assert row["chosen_ids"] == [2, 2]
    assert row["rejected_ids"] == [3]


def test_backend_left_truncating_by_an_earlier_call_stays_exact(tok, pairs):
    expected = pk.tokenize_pairs(pairs, tok).column("chosen_ids").to_pylist()
    tok(["some text to truncate"], truncation=True, max_length=2)
    assert pk.tokenize_pairs(pairs, tok).column("chosen_ids").to_pylist() == expected


def test_chat_messages(tok):
    prompts = [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}],
               [{"role": "user", "content": "capital of France?"}]]
    chosen = [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "Paris"}]]
    pairs = pa.table({"prompt": prompts, "chosen": chosen, "rejected": ["5", "Lyon"]})
    out = pk.tokenize_pairs(pairs, tok).to_pylist()
    for row, messages, good in zip(out, prompts, ["4", "Paris"]):
        rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template writes <s> itself: no second BOS token.
        assert row["prompt_ids"] == ids(tok, rendered)
        assert row["prompt_ids"][0] == tok.bos_token_id != row["prompt_ids"][1]
        # An assistant message renders as " 4</s>" after the generation prompt; its </s> counts.
        assert row["chosen_ids"] == ids(tok, " " + good + "</s>")
    other = pk.tokenize_pairs(pairs, tok, chat_template="{% for m in messages %}"
                              "[{{ m['content'] }}]{% endfor %}").to_pylist()
    assert other[1]["prompt_ids"] == [tok.bos_token_id] + ids(tok, "[capital of France?]")


def test_repeated_and_unhashable_conversations_render_per_row(tok):
    # Distinct conversations are rendered once and spread back; a field holding a list (not
    # hashable) renders every row. Either way each row gets its own conversation's text.
    template = ("{% for m in messages %}[{{ m['content'] }}{% for t in m['tags'] or [] %}"
                "#{{ t }}{% endfor %}]{% endfor %}")
    a = [{"role": "user", "content": "a", "tags": None}]
    b = [{"role": "user", "content": "b", "tags": None}]
    tagged = [{"role": "user", "content": "a", "tags": ["x"]}]
    for prompts in ([a, b, a, a, b], [a, tagged, a, b]):
        pairs = pa.table({"prompt": prompts, "chosen": ["y"] * len(prompts),
                          "rejected": ["n"] * len(prompts)})
        out = pk.tokenize_pairs(pairs, tok, chat_template=template)
        expected = [[tok.bos_token_id] + ids(tok, tok.apply_chat_template(
            p, chat_template=template, tokenize=False, add_generation_prompt=True))
            for p in prompts]
        assert out.column("prompt_ids").to_pylist() == expected


def test_chat_template_wraps_text_prompts(tok):
    pairs = pa.table({"prompt": ["2+2?"], "chosen": ["4"], "rejected": ["5"]})
    row = pk.tokenize_pairs(pairs, tok, chat_template=CHAT_TEMPLATE).to_pylist()[0]
    assert row["prompt_ids"] == ids(tok, "<s>user: 2+2?</s><s>assistant:")
    assert row["chosen_ids"] == ids(tok, "4") + [tok.eos_token_id]


def test_lists_match_the_tokenizer_per_row(tok, long):
    grouped = long.group_by("prompt", use_threads=False).aggregate(
        [("response", "list"), ("score", "list")]).rename_columns(
        ["prompt", "responses", "scores"])
    out = pk.tokenize_lists(grouped, tok)
    assert out.schema.field("response_ids").type == pa.list_(pa.list_(pa.int32()))
    assert out.column("scores").to_pylist() == grouped.column("scores").to_pylist()
    for row in out.to_pylist():
        assert row["prompt_ids"] == [tok.bos_token_id] + ids(tok, row["prompt"])
        assert row["response_ids"] == [ids(tok, r) + [tok.eos_token_id]
                                       for r in row["responses"]]
    for max_length, max_prompt_length in ((30, None), (50, 10), (8, None)):
        cut = pk.tokenize_lists(grouped, tok, max_length=max_length,
                                max_prompt_length=max_prompt_length)
        for row in cut.to_pylist():
            prompt = [tok.bos_token_id] + ids(tok, row["prompt"])
            responses = [ids(tok, r) + [tok.eos_token_id] for r in row["responses"]]
            assert (row["prompt_ids"], row["response_ids"]) == truncate(
                prompt, responses, max_length, max_prompt_length)


def test_lists_with_empty_and_sliced_rows(tok):
    lists = pa.table({"prompt": ["a", "b", "c"], "responses": [["x", "y"], [], ["z"]]})
    out = pk.tokenize_lists(lists.slice(1), tok).to_pylist()
    assert out[0]["response_ids"] == []
    assert out[1]["response_ids"] == [ids(tok, "z") + [tok.eos_token_id]]


def test_bad_input(tok, pairs):
    with pytest.raises(pk.PrefkitError, match="column 'answer' not found"):
        pk.tokenize_pairs(pairs, tok, chosen="answer")
    with pytest.raises(pk.PrefkitError, match="null at row 1"):
        pk.tokenize_pairs(pa.table({"prompt": ["a", None], "chosen": ["b", "c"],
                                    "rejected": ["d", "e"]}), tok)
    with pytest.raises(pk.PrefkitError, match="must be text or chat messages"):
        pk.tokenize_pairs(pa.table({"prompt": [1], "chosen": ["b"], "rejected": ["c"]}), tok)
    with pytest.raises(pk.PrefkitError, match="max_length"):
        pk.tokenize_pairs(pairs, tok, max_length=1)
    with pytest.raises(pk.PrefkitError, match="max_prompt_length"):
        pk.tokenize_pairs(pairs, tok, max_prompt_length=0)
    with pytest.raises(pk.PrefkitError, match="transformers tokenizer"):
        pk.tokenize_pairs(pairs, object())
    with pytest.raises(pk.PrefkitError, match="must hold chat messages too"):
        pk.tokenize_pairs(pa.table({"prompt": ["a"], "rejected": ["c"],
                                    "chosen": [[{"role": "assistant", "content": "b"}]]}), tok)
    with pytest.raises(pk.PrefkitError, match="null response in row 1"):
        pk.tokenize_lists(pa.table({"prompt": ["a", "b"], "responses": [["x"], ["y", None]]}),
                          tok)
