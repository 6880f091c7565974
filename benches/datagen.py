"""Deterministic generator of UltraFeedback-like long preference corpora.

One row per response: ``prompt`` (text), ``response`` (text), ``score`` (float64). Every prompt
has ``responses`` rows and its rows are contiguous, as ``pk.unnest`` leaves an UltraFeedback-style
nested corpus. Prompts average about 300 characters and responses about 1000, with log-normal
lengths; text is drawn word by word from a Zipf-weighted vocabulary (English function words,
pseudo-words, and a few percent of non-ASCII words: accents, Greek, Cyrillic, CJK, symbols,
emoji), with commas, full stops and capitals, so it tokenises and hashes like real text. Scores
are UltraFeedback-style fine-grained ratings on 1..10 in steps of 0.25: ties inside a prompt are
common, and a small fraction of prompts have all their responses tied.

Everything is vectorised with numpy: a corpus of 1M responses (125k prompts x 8, ~1.1 GB of text)
takes seconds and little more memory than the text itself, because text is built in chunks of
whole rows from fixed-width word slots (no per-character Python loop) and handed to polars
without copying.

Examples
--------
>>> from datagen import generate
>>> df = generate(prompts=3, responses=4, seed=1)
>>> df.shape, df.columns
((12, 3), ['prompt', 'response', 'score'])
>>> df["prompt"].n_unique()
3

Command line::

    python benches/datagen.py --prompts 125000 --responses 8 -o bench-data/corpus.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

#: Bytes of one word slot: the word's UTF-8 bytes plus its separator (" ", ", " or ". ").
#: Words are at most ``SLOT - 2`` bytes so that every separator fits.
SLOT = 16

#: Size of the lookup table that turns uniform integers into Zipf-distributed word ids. A table
#: lookup is ~20x faster than ``rng.choice(p=...)`` (a binary search per word) at 10^8 words.
TABLE_BITS = 16

#: Frequent English words (space-separated), placed at the head of the Zipf ranking so that the
#: text reads like text.
FUNCTION_WORDS = (
    "the of and to a in is that for it with as on be this are by or from at an not which have "
    "can we you will if one all but their more they has was use when each other these there "
    "what how should model data also may than only most into some such then first any two "
    "example answer question step value because new used would make like time between both"
)

#: Non-ASCII words, space-separated (1-4 byte UTF-8 characters, all within ``SLOT - 2`` bytes).
NON_ASCII_WORDS = (
    "café naïve über façade jalapeño Zürich São résumé niño Straße déjà coöperate smörgåsbord "
    "Ελλάδα λόγος данные модель 数据 模型 東京 学习 データ 한국어 π ∑ → ≤ ✓ — … 😀 🚀 €"
)

_CONSONANTS = "b c d f g h j k l m n p r s t v w z ch sh th st tr pl gr br cr"
_VOWELS = "a e i o u ai ea io ou"


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    """Build ``size`` distinct words: function words, then pseudo-words and non-ASCII words."""
    consonants, vowels = _CONSONANTS.split(), _VOWELS.split()
    words = FUNCTION_WORDS.split()
    non_ascii = NON_ASCII_WORDS.split()
    seen = set(words)
    pseudo: list[str] = []
    while len(pseudo) < size - len(words) - len(non_ascii):
        syllables = int(rng.integers(1, 5))
        word = "".join(
            consonants[rng.integers(len(consonants))] + vowels[rng.integers(len(vowels))]
            for _ in range(syllables)
        )
        if rng.random() < 0.4:
            word += consonants[rng.integers(len(consonants))]
        if len(word) <= SLOT - 2 and word not in seen:
            seen.add(word)
            pseudo.append(word)
    # Non-ASCII words take random Zipf ranks among the pseudo-words (not all rare, not all
    # frequent), so a few percent of the text is multi-byte.
    rest = pseudo + non_ascii
    order = rng.permutation(len(rest))
    return words + [rest[i] for i in order]


class _Vocab:
    """Fixed-width word slots and a sampling table, built once per corpus.

    Slot ``3 * w + v`` holds word ``w`` followed by separator ``v`` (0: " ", 1: ", ", 2: ". ").
    """

    def __init__(self, rng: np.random.Generator, size: int = 8192) -> None:
        words = _vocabulary(rng, size)
        separators = (b" ", b", ", b". ")
        slots = np.zeros((3 * len(words), SLOT), dtype=np.uint8)
        lengths = np.zeros(3 * len(words), dtype=np.uint8)
        for w, word in enumerate(words):
            encoded = word.encode()
            assert len(encoded) <= SLOT - 2, word
            for v, sep in enumerate(separators):
                token = encoded + sep
                slots[3 * w + v, : len(token)] = np.frombuffer(token, dtype=np.uint8)
                lengths[3 * w + v] = len(token)
        # Gathering 16-byte rows as two uint64 is much faster than gathering 16 uint8 columns.
        self.slots = slots.view(np.uint64)
        self.lengths = lengths
        # Zipf (s = 1.05) over word ranks, quantised into a lookup table of 2^16 entries; every
        # word gets at least one entry so the whole vocabulary occurs.
        weights = 1.0 / np.arange(2.7, len(words) + 2.7) ** 1.05
        counts = np.maximum(1, np.floor(weights / weights.sum() * (1 << TABLE_BITS))).astype(int)
        counts[0] += (1 << TABLE_BITS) - counts.sum()  # the rounding remainder goes to "the"
        self.table = np.repeat(np.arange(len(words), dtype=np.int32), counts)
        # Expected bytes per token, to turn a target character count into a word count.
        p = counts / counts.sum()
        # + 0.15 for the commas' and full stops' extra byte (15% of words, see _texts).
        self.mean_token = float(p @ lengths[0::3].astype(np.float64)) + 0.15


def _texts(
    rng: np.random.Generator, vocab: _Vocab, lengths: np.ndarray, end: int
) -> pa.LargeStringArray:
    """Build one text per entry of ``lengths`` (target byte counts) as an Arrow array.

    The text bytes are one numpy buffer and the offsets another; Arrow wraps both without a copy.
    """
    words_per_text = np.maximum(1, np.rint(lengths / vocab.mean_token)).astype(np.int64)
    n_words = int(words_per_text.sum())
    # One 32-bit draw per word: the low 16 bits pick the word from the Zipf table, the high 16
    # bits its separator (85% space, 8% comma, 7% full stop).
    draw = rng.integers(0, 1 << 32, n_words, dtype=np.uint32)
    slot = vocab.table[draw & 0xFFFF] * 3
    high = draw >> 16
    del draw
    separator = (high >= 55705).astype(np.uint8)  # 0.85 * 65536
    separator += high >= 60948  # 0.93 * 65536
    del high
    # The last word of a text gets a space, which becomes its closing punctuation below.
    last = np.cumsum(words_per_text) - 1
    separator[last] = 0
    slot += separator
    token_len = vocab.lengths[slot]
    # Fixed-width gather, then keep the first token_len bytes of each slot (a flat boolean
    # mask over uint8 is the fastest ragged concatenation numpy offers).
    gathered = vocab.slots[slot].view(np.uint8).reshape(-1)
    del slot
    keep = (token_len[:, None] > np.arange(SLOT, dtype=np.uint8)).reshape(-1)
    data = gathered[keep]
    del gathered, keep
    token_len = token_len.astype(np.int64)
    token_end = np.cumsum(token_len)
    token_start = token_end - token_len
    # Capitalise the first letter of a text and of each word after a full stop.
    first_of_text = np.zeros(n_words, dtype=bool)
    first_of_text[0] = True
    first_of_text[last[:-1] + 1] = True
    after_stop = np.zeros(n_words, dtype=bool)
    after_stop[1:] = separator[:-1] == 2
    del separator
    starts = token_start[first_of_text | after_stop]
    lower = (data[starts] >= ord("a")) & (data[starts] <= ord("z"))
    data[starts[lower]] -= 32
    # The last byte of each text is its final word's space: make it the closing punctuation.
    data[token_end[last] - 1] = end
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    offsets[1:] = token_end[last]
    return pa.LargeStringArray.from_buffers(
        len(lengths), pa.py_buffer(offsets), pa.py_buffer(data)
    )


def _lognormal_lengths(
    rng: np.random.Generator, n: int, mean: float, sigma: float, low: int, high: int
) -> np.ndarray:
    """Log-normal lengths with the given mean (in bytes), clipped to ``[low, high]``."""
    mu = np.log(mean) - sigma**2 / 2
    return np.clip(rng.lognormal(mu, sigma, n), low, high)


def generate(
    prompts: int = 125_000,
    responses: int = 8,
    *,
    seed: int = 0,
    prompt_chars: float = 300.0,
    response_chars: float = 1000.0,
    tie_groups: float = 0.01,
    nan_fraction: float = 0.0,
    chunk_rows: int = 32_768,
) -> pl.DataFrame:
    """Generate a long preference corpus as a polars DataFrame.

    Parameters
    ----------
    prompts
        Number of prompts (groups).
    responses
        Responses per prompt; the rows of a prompt are contiguous.
    seed
        Seed of everything: the same arguments give the same corpus, byte for byte.
    prompt_chars, response_chars
        Mean text length in bytes (almost all characters are ASCII). Lengths are log-normal.
    tie_groups
        Fraction of prompts whose responses all get the same score.
    nan_fraction
        Fraction of scores that are NaN (0 by default: the benchmark compares clean data).
    chunk_rows
        Rows of text built at a time; bounds the temporary memory (~50 bytes per text byte
        of a chunk).

    Returns
    -------
    polars.DataFrame
        ``prompt`` (str), ``response`` (str), ``score`` (f64), ``prompts * responses`` rows.
        polars holds text as string_view; the prompt column repeats each prompt's view, so a
        prompt's text is stored once.
    """
    if prompts < 0 or responses < 1:
        raise ValueError(f"need prompts >= 0 and responses >= 1, got {prompts}, {responses}")
    rng = np.random.default_rng(seed)
    vocab = _Vocab(rng)
    n = prompts * responses

    prompt_len = _lognormal_lengths(rng, prompts, prompt_chars, 0.5, 20, 8 * prompt_chars)
    response_len = _lognormal_lengths(rng, n, response_chars, 0.6, 10, 16 * response_chars)

    def build(lengths: np.ndarray, end: int) -> pl.Series:
        chunks = []
        for start in range(0, len(lengths), chunk_rows):
            arrow = _texts(rng, vocab, lengths[start : start + chunk_rows], end)
            chunks.append(pl.Series(arrow))
        if not chunks:
            return pl.Series([], dtype=pl.String)
        series = chunks[0]
        for chunk in chunks[1:]:
            series.append(chunk)
        # One chunk per column: what a freshly built or loaded polars frame usually has.
        return series.rechunk()

    prompt_text = build(prompt_len, ord("?"))
    # Scores: a per-prompt quality level plus per-response noise, a slight preference for longer
    # answers (UltraFeedback's length bias), rounded to quarter points on 1..10.
    level = rng.normal(6.0, 1.2, prompts)
    noise = rng.normal(0.0, 1.5, n)
    length_bias = 0.3 * (np.log(response_len) - np.log(response_chars))
    score = np.repeat(level, responses) + noise + length_bias
    score = np.clip(np.round(score * 4) / 4, 1.0, 10.0)
    tied = rng.random(prompts) < tie_groups
    score.reshape(prompts, responses)[tied] = score.reshape(prompts, responses)[tied, :1]
    if nan_fraction > 0:
        score[rng.random(n) < nan_fraction] = np.nan

    response_text = build(response_len, ord("."))
    # Gathering a string_view column copies 16-byte views, not text.
    prompt_column = prompt_text.gather(np.repeat(np.arange(prompts, dtype=np.uint32), responses))
    return pl.DataFrame(
        {
            "prompt": prompt_column,
            "response": response_text,
            "score": pl.Series(score, dtype=pl.Float64),
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: generate a corpus and write it to Parquet."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python benches/datagen.py --prompts 125000 --responses 8 "
        "-o bench-data/corpus.parquet",
    )
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-chars", type=float, default=300.0)
    parser.add_argument("--response-chars", type=float, default=1000.0)
    parser.add_argument("--tie-groups", type=float, default=0.01)
    parser.add_argument("--nan-fraction", type=float, default=0.0)
    parser.add_argument("-o", "--output", type=Path, required=True, help="Parquet file to write")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    df = generate(
        args.prompts,
        args.responses,
        seed=args.seed,
        prompt_chars=args.prompt_chars,
        response_chars=args.response_chars,
        tie_groups=args.tie_groups,
        nan_fraction=args.nan_fraction,
    )
    t1 = time.perf_counter()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name and rename, so an interrupted run never leaves a truncated
    # corpus that a later benchmark would silently load.
    tmp = args.output.with_name(args.output.name + ".tmp")
    df.write_parquet(tmp)
    tmp.replace(args.output)
    t2 = time.perf_counter()
    response_mb = df["response"].str.len_bytes().sum() / 1e6
    # Each prompt's text is stored once and its rows share it (string_view).
    prompt_mb = df["prompt"].str.len_bytes().sum() / args.responses / 1e6
    print(
        f"{df.height} rows ({args.prompts} prompts x {args.responses}), text {response_mb:.0f} MB "
        f"of responses + {prompt_mb:.0f} MB of prompts: generated in {t1 - t0:.1f} s, written to "
        f"{args.output} in {t2 - t1:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
