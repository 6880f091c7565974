"""Token ids by distinct pre-tokenizer pieces (prefkit._token_ids) against the tokenizer called
on each text: GPT-2 and Llama-3 style pipelines, unicode, whitespace runs, added tokens, NFC;
and pipelines the pieces path does not reproduce go through the batch API whole."""

from __future__ import annotations

import copy

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefkit import _core
from prefkit._token_ids import BYTE_LEVEL_PATTERN, _pieces_of, tokenize_texts
from tiny_lm import bpe_tokenizer

pytest.importorskip("transformers")

#: Llama 3's pre-tokenisation regex (its tokenizer.json: Split, Isolated, then ByteLevel).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

#: Bits of text where pre-tokenisers differ: contractions in both cases (and the long s and
#: Kelvin sign that case-fold to s and k), whitespace runs before words and at the end,
#: digits, punctuation runs, combining marks (NFC composes e + U+0301), CJK, emoji, added
#: tokens.
FRAGMENTS = ["the", " cat", "'s", "'S", "'ll", "\u017f", "\u212a", " ", "  ", "   ", "\n",
             "\n\n", "\t", " \n ", "12345", " 7", "!?", " ...", "e\u0301", "\u0301", "caf\u00e9",
             "\u4e2d\u6587", "\U0001f600", "<|end|>", "<s>", "x", "\r\n", "'"]

texts = st.lists(st.one_of(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
                           st.text(max_size=30)), min_size=1, max_size=20)

CORPUS = ["The cat's toy is here.  It's 12345 years old!", "caf\u00e9 \u4e2d\u6587 \U0001f600",
          "Hello world\n\nNew paragraph\twith tabs   and spaces   ", "I'll say: \"yes\" ... ok?",
          # Chat-template text: added tokens inside, at both ends, and back to back.
          "<s>user\nWhat is 2+2?<|end|>\n<s>assistant\n", "4<|end|><|end|></s>"]


def llama3_tokenizer(nfc: bool):
    """A byte-level BPE with Llama 3's pre-tokenizer (and, with ``nfc``, Qwen 2's NFC
    normaliser), added tokens included, trained in memory."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    if nfc:
        backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(CORPUS * 20, trainer)
    backend.add_tokens(["<|end|>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


@pytest.fixture(scope="module", params=["gpt2", "llama3", "qwen2"])
def tok(request):
    if request.param == "gpt2":
        return bpe_tokenizer(CORPUS * 20, vocab_size=400)
    return llama3_tokenizer(nfc=request.param == "qwen2")


def per_text(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def rows(ragged):
    return [ragged.values[a:b].tolist() for a, b in zip(ragged.offsets[:-1], ragged.offsets[1:])]


def test_pipelines_are_recognised(tok):
    cut = _pieces_of(tok)
    assert cut is not None
    pre = tok.backend_tokenizer.pre_tokenizer.__getstate__().decode()
    assert cut.pattern == (BYTE_LEVEL_PATTERN if "Split" not in pre else LLAMA3_PATTERN)
    assert cut.nfc == (tok.backend_tokenizer.normalizer is not None)
    assert "<s>" in cut.added and not cut.avoided


def test_corpus_is_cut_without_falling_back(tok):
    # The pieces path must carry ordinary text itself, or the property below proves nothing.
    cut = _pieces_of(tok)
    _, _, _, unsplit = _core.split_pieces(pa.table({"text": CORPUS}), "text", **cut._asdict())
    assert not any(pa.array(unsplit).to_pylist())
    assert rows(tokenize_texts(tok, [CORPUS])[0]) == per_text(tok, CORPUS)


@settings(max_examples=150, deadline=None)
@given(texts=texts)
def test_ids_match_the_tokenizer_per_text(tok, texts):
    (got,) = tokenize_texts(tok, [texts])
    assert rows(got) == per_text(tok, texts)


def test_added_tokens_in_text_go_through_the_tokenizer(tok):
    texts = ["before <|end|> after", "plain text", "<s>start"]
    (got,) = tokenize_texts(tok, [texts])
    assert rows(got) == per_text(tok, texts)
    if "<|end|>" in tok.get_vocab():
        assert tok.convert_tokens_to_ids("<|end|>") in rows(got)[0]


def test_added_tokens_that_strip_spaces_or_are_read_as_text(tok):
    from tokenizers import AddedToken

    tok = copy.deepcopy(tok)
    tok.backend_tokenizer.add_tokens([AddedToken("[lst]", lstrip=True, rstrip=True)])
    assert "[lst]" in _pieces_of(tok).avoided
    texts = ["a  [lst]  b", "<s>x</s>", "plain"]
    assert rows(tokenize_texts(tok, [texts])[0]) == per_text(tok, texts)
    tok.split_special_tokens = True  # special tokens in the text are read as text
    assert "<s>" in _pieces_of(tok).avoided
    assert rows(tokenize_texts(tok, [texts])[0]) == per_text(tok, texts)


def test_columns_share_distinct_texts_and_keep_their_rows(tok):
    prompts, completions = ["a b", "c d", "a b"], pa.array(["c d", "e"], pa.string_view())
    got = tokenize_texts(tok, [prompts, completions])
    assert [rows(g) for g in got] == [per_text(tok, prompts),
                                      per_text(tok, completions.to_pylist())]


def test_other_pipelines_use_the_batch_api_whole():
    from tokenizers import pre_tokenizers

    tok = bpe_tokenizer(CORPUS * 20, vocab_size=400)
    # A prefix space is added per text, not per piece: not reproducible piece by piece.
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert _pieces_of(tok) is None
    (got,) = tokenize_texts(tok, [CORPUS])
    assert rows(got) == per_text(tok, CORPUS)
