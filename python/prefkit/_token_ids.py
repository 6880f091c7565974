"""Token ids of many texts through a fast tokenizer, with as little tokenizer work as exact.

Two kinds of repetition are skipped:

- Each distinct text is tokenised once: pairs mined with ``all_pairs`` or ``best_vs_all``
  repeat their prompt and most completions many times.
- When the tokenizer's pipeline tokenises the pieces of a text one by one (byte-level BPE:
  GPT-2, Llama 3, Qwen 2 and most current models), texts are cut into those pieces in Rust
  (``_core.split_pieces``, the tokenizer's own regex) and each distinct piece goes through the
  tokenizer once; a text's ids are its pieces' ids end to end. The ``tokenizers`` library spends
  most of its time on per-byte alignment bookkeeping that ids never need, and a corpus has few
  distinct pieces, so this is several times faster than its batch API, with the same ids.
  Added tokens (a chat template's ``<|im_start|>``...) are split off first, as the tokenizer
  does. Texts the cut cannot vouch for (an added token that strips the spaces around it, a
  piece the regex would cut differently on its own) go through the batch API whole.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit import _core

#: Texts per call to the tokenizer's batch API: large enough to keep its thread pool busy,
#: small enough that the Rust ``Encoding`` objects of one chunk stay a few hundred MB at most.
_CHUNK = 8192

#: GPT-2's pre-tokenisation regex: what the ``ByteLevel`` pre-tokenizer cuts with when its
#: ``use_regex`` is on (``tokenizers/src/pre_tokenizers/byte_level.rs``).
BYTE_LEVEL_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


class Ragged(NamedTuple):
    """One token sequence per row: ``values[offsets[i]:offsets[i + 1]]``."""

    values: np.ndarray  # int32
    offsets: np.ndarray  # int64, len rows + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def take(ragged: Ragged, indices: np.ndarray) -> Ragged:
    """Rows ``indices`` of ``ragged`` (a ragged gather, copied in parallel in Rust)."""
    values, offsets = _core.take_ragged(pa.array(ragged.values, pa.int32()),
                                        pa.array(ragged.offsets, pa.int64()),
                                        pa.array(indices, pa.int64()))
    return Ragged(pa.array(values).to_numpy(), pa.array(offsets).to_numpy())


class _Pieces(NamedTuple):
    """How a tokenizer's pipeline cuts texts before its model tokenises each piece alone."""

    pattern: str  # the pre-tokenizer's regex (Oniguruma syntax; Perl-like, as Rust's crates)
    nfc: bool  # the normaliser is NFC (else there is none)
    added: list[str]  # added tokens matched in the raw text, split off first
    added_normalized: list[str]  # added tokens matched in the normalised text, normalised
    avoided: list[str]  # added tokens whose matching is not reproduced


def _byte_level(spec: dict, use_regex: bool) -> bool:
    # A prefix space is added to the text, not to each piece: tokenising a piece alone would
    # add it again, so that setting is left to the batch API.
    return (spec.get("type") == "ByteLevel" and bool(spec.get("use_regex", True)) == use_regex
            and not spec.get("add_prefix_space", True))


def _split_pattern(spec: dict) -> str | None:
    """The regex a pre-tokenizer cuts with, when it is one the pieces path reproduces:
    ``ByteLevel`` with its regex (GPT-2), or ``Split(Regex, Isolated)`` then ``ByteLevel``
    without one (Llama 3, Qwen 2)."""
    if _byte_level(spec, True):
        return BYTE_LEVEL_PATTERN
    steps = spec.get("pretokenizers") if spec.get("type") == "Sequence" else None
    if not steps or len(steps) != 2 or not _byte_level(steps[1], False):
        return None
    split = steps[0]
    regex = split.get("pattern", {}).get("Regex") if isinstance(split.get("pattern"), dict) else None
    if (split.get("type") != "Split" or split.get("behavior") != "Isolated"
            or split.get("invert") or regex is None):
        return None
    return regex


def _backend(tokenizer: Any) -> Any:
    """The fast tokenizer's backend, set as the wrapper sets it for each call: special tokens
    in the text are read as text when ``tokenizer.split_special_tokens`` says so."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    split = getattr(tokenizer, "split_special_tokens", None)
    if (backend is not None and split is not None
            and getattr(backend, "encode_special_tokens", split) != split):
        backend.encode_special_tokens = split
    return backend


def _pieces_of(tokenizer: Any) -> _Pieces | None:
    """The tokenizer's cut when its pipeline tokenises pieces one by one, else None."""
    backend = _backend(tokenizer)
    if backend is None or backend.pre_tokenizer is None:
        return None
    nfc = False
    if backend.normalizer is not None:
        if json.loads(backend.normalizer.__getstate__()).get("type") != "NFC":
            return None
        nfc = True
    pattern = _split_pattern(json.loads(backend.pre_tokenizer.__getstate__()))
    if pattern is None:
        return None
    # Added tokens are split off before the regex cuts, and each is one piece with one id.
    # Those that swallow the spaces around them or match whole words only, and special tokens
    # the tokenizer is told to read as text, are not reproduced: texts with them go whole.
    specials_as_text = bool(getattr(backend, "encode_special_tokens", False))
    added, added_normalized, avoided = [], [], []
    for token in backend.get_added_tokens_decoder().values():
        if token.lstrip or token.rstrip or token.single_word or (token.special
                                                                 and specials_as_text):
            avoided.append(token.content)
        elif token.normalized:
            added_normalized.append(
                unicodedata.normalize("NFC", token.content) if nfc else token.content)
        else:
            added.append(token.content)
    return _Pieces(pattern, nfc, added, added_normalized, avoided)


def _encode_batch(tokenizer: Any, texts: list[str]) -> Ragged:
    """Token ids of ``texts`` (no special tokens) through the fast tokenizer's batch API."""
    backend = _backend(tokenizer)
    # The backend keeps truncation/padding that an earlier ``tokenizer(..., truncation=True)``
    # call configured; then go through the wrapper, which resets them, to stay exact.
    direct = (backend is not None and getattr(backend, "truncation", None) is None
              and getattr(backend, "padding", None) is None)
    ids: list[list[int]] = []
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start:start + _CHUNK]
        if direct:
            # encode_batch_fast skips the character offsets we never use.
            encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
            ids.extend(e.ids for e in encode(chunk, add_special_tokens=False))
        else:
            ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(offsets[-1]))
    return Ragged(values, offsets)


def _encode_pieces(tokenizer: Any, texts: pa.Array, cut: _Pieces) -> Ragged:
    """Token ids of ``texts``: each distinct piece tokenised once, texts the cut cannot vouch
    for through the batch API whole."""
    distinct, ids, offsets, unsplit = (
        pa.array(a) for a in _core.split_pieces(
            pa.table({"text": texts}), "text", pattern=cut.pattern, added=cut.added,
            added_normalized=cut.added_normalized, avoided=cut.avoided, nfc=cut.nfc))
    ids = ids.to_numpy().astype(np.int64)
    offsets = offsets.to_numpy()
    unsplit = unsplit.to_numpy(zero_copy_only=False)
    if cut.nfc:
        # A piece of NFC text is almost always NFC itself; where it is not, the tokenizer
        # would normalise it again when it stands alone.
        changed = pc.not_equal(pc.utf8_normalize(distinct, "NFC"), distinct).to_numpy(
            zero_copy_only=False)
        if changed.any():
            seen = np.concatenate([[0], np.cumsum(changed[ids])])
            unsplit = unsplit | (seen[offsets[1:]] > seen[offsets[:-1]])
    per_piece = _encode_batch(tokenizer, distinct.to_pylist())
    occurrences = take(per_piece, ids)
    fast = Ragged(occurrences.values, occurrences.offsets[offsets])
    whole = np.flatnonzero(unsplit)
    if len(whole) == 0:
        return fast
    slow = _encode_batch(tokenizer, texts.take(pa.array(whole)).to_pylist())
    both = Ragged(np.concatenate([fast.values, slow.values]),
                  np.concatenate([fast.offsets[:-1], slow.offsets + fast.offsets[-1]]))
    order = np.arange(len(texts), dtype=np.int64)
    order[whole] = len(texts) + np.arange(len(whole), dtype=np.int64)
    return take(both, order)


def tokenize_texts(tokenizer: Any, columns: list[pa.Array | list[str]]) -> list[Ragged]:
    """Token ids (no special tokens) of every row of each of ``columns``; each distinct text
    of all of them is tokenised once."""
    arrays = [c.cast(pa.large_string()) if isinstance(c, pa.Array)
              else pa.array(c, pa.large_string()) for c in columns]
    # One dictionary over the columns as chunks: no copy of their text into one array.
    encoded = pc.dictionary_encode(pa.chunked_array(arrays, pa.large_string()))
    encoded = encoded.unify_dictionaries()
    dictionary = (encoded.chunk(0).dictionary if encoded.num_chunks
                  else pa.array([], pa.large_string()))
    cut = _pieces_of(tokenizer)
    unique = (_encode_pieces(tokenizer, dictionary, cut) if cut is not None
              else _encode_batch(tokenizer, dictionary.to_pylist()))
    indices = np.concatenate([np.zeros(0, np.int64)] + [
        c.indices.to_numpy(zero_copy_only=False).astype(np.int64) for c in encoded.chunks])
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return [take(unique, indices[start:end]) for start, end in itertools.pairwise(bounds)]
