"""Tokenising pairs: ``pk.tokenize_pairs`` against the per-row loop a user would write.

Same tokenizer on both sides: a byte-level BPE (vocabulary 8192) trained in memory on the
synthetic corpus, wrapped as a transformers fast tokenizer (no hub download). Pairs are mined
from an UltraFeedback-like corpus (``datagen.py``: prompts ~300 characters, responses ~1000):

- ``all_pairs``: 4 responses per prompt, every ordered pair (Curry-DPO style); a prompt
  appears in up to 6 pairs and each response in up to 3, as in real multi-pair datasets;
- ``unique``: one pair per prompt (``best_vs_worst``), so no text repeats: the batch API and
  the vectorised assembly alone;
- ``chat``: the ``all_pairs`` pairs with each prompt as a chat message, rendered with a
  ChatML template whose ``<|im_start|>``/``<|im_end|>`` are special tokens (the loop renders
  with ``apply_chat_template`` per row, as TRL does for conversational data).

The loop calls ``tokenizer(text, add_special_tokens=False)`` for the prompt and both
completions of every row, adds BOS/EOS and builds the same Arrow table; its result is checked
equal to ``tokenize_pairs``'s. Timings are the median of ``--repeats`` runs.

    python benches/bench_tokenize.py                      # 100k pairs, median of 3
    python benches/bench_tokenize.py --pairs 20000 --repeats 1
    python benches/bench_tokenize.py --save bench-data/tok      # pairs for a machine without
    python benches/bench_tokenize.py --load bench-data/tok      # polars or the compiled core
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prefkit as pk


def build_tokenizer(texts: list[str], vocab_size: int = 8192):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def mine(corpus: pa.Table, strategy: str, miner: str) -> pa.Table:
    """Pairs from the long corpus: ``pk.mine_pairs``, or a polars self-join (the same pairs up
    to order, for machines without the compiled core)."""
    if miner == "prefkit":
        return pk.mine_pairs(corpus, strategy=strategy)
    import polars as pl

    df = pl.from_arrow(corpus).with_row_index("row")
    joined = df.join(df, on="prompt", suffix="_r").filter(pl.col("score") > pl.col("score_r"))
    if strategy == "best_vs_worst":  # only two responses per prompt here: the one pair
        joined = joined.unique("prompt", keep="first", maintain_order=True)
    out = joined.sort(["row", "row_r"]).select(
        "prompt", chosen="response", rejected="response_r")
    return out.to_arrow()


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chat_tokenizer(tokenizer):
    """``tokenizer`` with ChatML's special tokens and template."""
    import copy

    chat = copy.deepcopy(tokenizer)
    chat.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    chat.chat_template = CHATML
    return chat


def as_chat(pairs: pa.Table) -> pa.Table:
    """``pairs`` with each prompt as one user message."""
    messages = pa.array([[{"role": "user", "content": p}]
                         for p in pairs.column("prompt").to_pylist()])
    return pairs.set_column(pairs.schema.get_field_index("prompt"), "prompt", messages)


def per_row_loop(pairs: pa.Table, tokenizer) -> pa.Table:
    """The straightforward way: one tokenizer call per text, row by row (chat prompts rendered
    with the tokenizer's template first)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    prompts, chosen, rejected = [], [], []
    for row in pairs.select(["prompt", "chosen", "rejected"]).to_pylist():
        prompt = row["prompt"]
        if isinstance(prompt, list):
            prompt = tokenizer.apply_chat_template(prompt, tokenize=False,
                                                   add_generation_prompt=True)
        prompts.append([bos] + tokenizer(prompt, add_special_tokens=False)["input_ids"])
        chosen.append(tokenizer(row["chosen"], add_special_tokens=False)["input_ids"] + [eos])
        rejected.append(tokenizer(row["rejected"], add_special_tokens=False)["input_ids"]
                        + [eos])
    ids = pa.list_(pa.int32())
    return pa.table({"prompt_ids": pa.array(prompts, ids), "chosen_ids": pa.array(chosen, ids),
                     "rejected_ids": pa.array(rejected, ids)})


def timed(label: str, fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for i in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        # Each run as it ends, on stderr: a run cut short still tells something.
        print(f"  {label} run {i + 1}/{repeats}: {times[-1]:.2f}s", file=sys.stderr, flush=True)
    return statistics.median(times), result


def scenario(name: str, pairs: pa.Table, tokenizer, repeats: int) -> dict:
    fast_s, fast = timed(f"{name} tokenize_pairs", lambda: pk.tokenize_pairs(pairs, tokenizer),
                         repeats)
    loop_s, loop = timed(f"{name} per-row loop", lambda: per_row_loop(pairs, tokenizer), repeats)
    columns = ["prompt_ids", "chosen_ids", "rejected_ids"]
    if not fast.select(columns).equals(loop):
        raise SystemExit(f"{name}: tokenize_pairs and the per-row loop disagree")
    tokens = sum(len(fast.column(c).combine_chunks().values) for c in columns)
    plain = pk.materialize(pairs.select(["prompt", "chosen", "rejected"]))
    columns = [c.combine_chunks() for c in plain.columns]
    if pa.types.is_list(columns[0].type):  # chat prompts: their messages' content
        columns[0] = pa.compute.struct_field(pa.compute.list_flatten(columns[0]), "content")
    texts = len(pa.compute.unique(pa.chunked_array([c.cast(pa.large_string()) for c in columns])))
    return {"scenario": name, "pairs": pairs.num_rows, "distinct_texts": texts,
            "tokens": tokens, "loop_s": loop_s, "tokenize_pairs_s": fast_s,
            "speedup": loop_s / fast_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenarios", nargs="+", default=["all_pairs", "unique"],
                        choices=["all_pairs", "unique", "chat"])
    parser.add_argument("--miner", default="prefkit", choices=["prefkit", "polars"],
                        help="how to mine the pairs (polars: no compiled core needed)")
    parser.add_argument("--save", metavar="DIR",
                        help="only write the pairs to DIR/<scenario>.parquet (for --load on "
                             "another machine)")
    parser.add_argument("--load", metavar="DIR",
                        help="read DIR/<scenario>.parquet instead of generating pairs")
    args = parser.parse_args(argv)

    tables = {}
    if args.load:
        import pyarrow.parquet as pq

        tables = {name: pq.read_table(Path(args.load) / f"{name}.parquet").slice(0, args.pairs)
                  for name in args.scenarios if name != "chat"}
    else:
        from datagen import generate  # polars; not needed with --load
    wants_all_pairs = {"all_pairs", "chat"} & set(args.scenarios)
    if args.load and "chat" in args.scenarios and "all_pairs" not in tables:
        import pyarrow.parquet as pq

        tables["all_pairs"] = pq.read_table(Path(args.load) / "all_pairs.parquet").slice(
            0, args.pairs)
    if wants_all_pairs and not args.load:
        # 4 responses -> at most 6 pairs per prompt (ties dropped): generate a little extra.
        corpus = pk.materialize(pa.table(generate(prompts=args.pairs // 5 + 1, responses=4,
                                                  seed=1).to_arrow()))
        tables["all_pairs"] = mine(corpus, "all_pairs", args.miner).slice(0, args.pairs)
    if "unique" in args.scenarios and not args.load:
        corpus = pk.materialize(pa.table(generate(prompts=int(args.pairs * 1.05) + 1,
                                                  responses=2, seed=2).to_arrow()))
        tables["unique"] = mine(corpus, "best_vs_worst", args.miner).slice(0, args.pairs)
    if args.save:
        import pyarrow.parquet as pq

        Path(args.save).mkdir(parents=True, exist_ok=True)
        for name, pairs in tables.items():
            pq.write_table(pk.materialize(pairs.select(["prompt", "chosen", "rejected"])),
                           Path(args.save) / f"{name}.parquet", compression="zstd",
                           compression_level=19)
        return 0
    sample = next(iter(tables.values()))
    tokenizer = build_tokenizer(sample.column("prompt").to_pylist()[:5000]
                                + sample.column("chosen").to_pylist()[:5000])
    if "chat" in args.scenarios:
        tables["chat"] = as_chat(tables["all_pairs"])
        if "all_pairs" not in args.scenarios:
            del tables["all_pairs"]

    print(f"tokenising pairs, median of {args.repeats}; {os.cpu_count()} cores; "
          f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}")
    header = (f"| {'scenario':<10} | {'pairs':>7} | {'distinct texts':>14} | {'tokens':>11} | "
              f"{'per-row loop':>12} | {'tokenize_pairs':>14} | {'speed-up':>8} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, pairs in tables.items():
        r = scenario(name, pairs, chat_tokenizer(tokenizer) if name == "chat" else tokenizer,
                     args.repeats)
        print(f"| {r['scenario']:<10} | {r['pairs']:>7} | {r['distinct_texts']:>14} | "
              f"{r['tokens']:>11,} | {r['loop_s']:>11.2f}s | {r['tokenize_pairs_s']:>13.2f}s | "
              f"{r['speedup']:>7.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
