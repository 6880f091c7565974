"""Reward scoring on one GPU: pk.score (token-budget batches of similar length) vs a naive loop.

Self-contained: a ~1.1B-parameter Llama (TinyLlama shape) is built from a config with random
weights in bfloat16 and a word-level tokenizer is built in memory, so nothing is downloaded.
The naive loop is what most scoring scripts do: fixed batches of 16 rows in input order, padded
to the longest, through the model's own forward. Both see the same texts; the figure is real
(unpadded) tokens per second, tokenisation included. Prints everything, never raises, and
finishes in well under 3 minutes on an H100/H200.

    python benches/gpu_scoring.py                    # defaults: 3000 rows, median ~300 tokens
    python benches/gpu_scoring.py --rows 1000 --layers 4 --device cpu   # a quick dry run

The CPU benchmark (benches/bench_scoring.py) reuses the builders below.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import numpy as np
import pyarrow as pa


def import_prefkit():
    """``import prefkit``; where its compiled core does not load (a GPU machine with another
    Python than the one the extension was built for, and no Rust toolchain), a pure-Python
    stand-in for the one core function scoring needs (the batch planner, same greedy rule) is
    used instead, and said so. Planning takes milliseconds either way."""
    try:
        import prefkit

        return prefkit, "rust"
    except ImportError as error:
        if "_core" not in str(error):
            raise
    import types

    for name in [n for n in sys.modules if n == "prefkit" or n.startswith("prefkit.")]:
        del sys.modules[name]

    def plan_batches(lengths, *, max_tokens, packed, shuffle, seed):
        values = np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)
        order = np.argsort(values, kind="stable")
        offsets, cost, count, longest = [0], 0, 0, 0
        for i, row in enumerate(order):
            length = int(values[row])
            new_cost = cost + length if packed else (count + 1) * max(longest, length)
            if count and new_cost > max_tokens:
                offsets.append(i)
                count, longest, cost = 0, 0, 0
                new_cost = length
            count, longest, cost = count + 1, max(longest, length), new_cost
        if len(order):
            offsets.append(len(order))
        if shuffle:
            raise NotImplementedError("the stand-in planner does not shuffle")
        return pa.array(order.astype(np.uint64)), pa.array(np.array(offsets, dtype=np.uint64))

    core = types.ModuleType("prefkit._core")
    core.plan_batches = plan_batches
    sys.modules["prefkit._core"] = core
    import prefkit

    prefkit._core = core
    return prefkit, "python stand-in (compiled core not loadable here)"


def make_tokenizer(vocab_size: int):
    """A word-level tokenizer over ``w0 .. w{n}`` (one word = one token) with a BOS prefix."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"w{i}": i + len(specials) for i in range(vocab_size - len(specials))})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>",
    )


def make_corpus(rows: int, *, median: float, sigma: float, max_len: int, vocab_size: int,
                seed: int = 0) -> pa.Table:
    """prompt (8-40 words) + response with log-normal lengths; one word is one token."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab_size - 4)])
    total = np.clip(rng.lognormal(np.log(median), sigma, rows).astype(int), 16, max_len - 1)
    prompt_len = np.minimum(rng.integers(8, 41, rows), total - 4)
    prompts, responses = [], []
    for p, t in zip(prompt_len, total):
        ids = rng.integers(0, len(words), t)
        prompts.append(" ".join(words[ids[:p]]) + " ")
        responses.append(" ".join(words[ids[p:]]))
    return pa.table({"prompt": prompts, "response": responses})


def make_model(*, vocab_size: int, hidden: int, layers: int, intermediate: int, heads: int,
               kv_heads: int, max_len: int, dtype, device, pad_token_id: int):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_len, num_labels=1, pad_token_id=pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForSequenceClassification(config).to(dtype)
    return model.eval()


def naive_score(model, tokenizer, table: pa.Table, *, batch_size: int, device) -> tuple:
    """Fixed batches in input order, padded to the longest, the model's own forward."""
    import torch

    texts = [p + r for p, r in zip(table.column("prompt").to_pylist(),
                                   table.column("response").to_pylist())]
    ids = tokenizer(texts)["input_ids"]
    scores, padded = [], 0
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch = tokenizer.pad({"input_ids": ids[start : start + batch_size]},
                                  return_tensors="pt")
            padded += batch["input_ids"].numel()
            out = model(input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device)).logits
            scores.append(out[:, 0].float().cpu())
    return torch.cat(scores).numpy().astype(np.float64), sum(map(len, ids)), padded


def timed(fn, device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def run_pair(model, tokenizer, table, *, device, budgets, naive_batch, label) -> list[dict]:
    """Time the naive loop and pk.score at each budget; return table rows."""
    pk, _ = import_prefkit()

    results = []
    try:
        (naive, tokens, padded), seconds = timed(
            lambda: naive_score(model, tokenizer, table, batch_size=naive_batch, device=device),
            device,
        )
        results.append({"method": f"naive loop (batches of {naive_batch}, input order)",
                        "tokens": tokens, "padded": padded, "seconds": seconds, "diff": 0.0})
        print(f"[{label}] naive: {tokens / seconds:,.0f} tok/s ({seconds:.2f}s)", flush=True)
    except Exception:  # noqa: BLE001 - a benchmark prints its failures and goes on
        traceback.print_exc()
        naive = None
    for budget in budgets:
        try:
            out, seconds = timed(
                lambda b=budget: pk.score(table, model, tokenizer=tokenizer, chat_template=None,
                                          max_tokens_per_batch=b, progress=False), device)
            report = pk.report_of(out)
            ours = out.column("score").to_numpy()
            diff = float(np.abs(ours - naive).max()) if naive is not None else float("nan")
            results.append({"method": f"pk.score (max_tokens_per_batch={budget})",
                            "tokens": report["tokens"], "padded": report["padded_tokens"],
                            "seconds": seconds, "diff": diff})
            print(f"[{label}] pk.score {budget}: {report['tokens'] / seconds:,.0f} tok/s "
                  f"({seconds:.2f}s, {report['batches']} batches, max |diff| vs naive "
                  f"{diff:.3g})", flush=True)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    return results


def print_table(results: list[dict], title: str) -> None:
    if not results:
        print("no results")
        return
    base = next((r for r in results if r["method"].startswith("naive")), None)
    print(f"\n{title}\n")
    print("| method | real tokens | padded tokens | seconds | tokens/s | speed-up | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        rate = r["tokens"] / r["seconds"]
        speed = f"{rate / (base['tokens'] / base['seconds']):.2f}x" if base else "-"
        print(f"| {r['method']} | {r['tokens']:,} | {r['padded']:,} | {r['seconds']:.2f} | "
              f"{rate:,.0f} | {speed} | {r['diff']:.2g} |")
    sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--median", type=float, default=300.0, help="median tokens per row")
    parser.add_argument("--sigma", type=float, default=0.9, help="log-normal sigma of lengths")
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--budgets", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--naive-batch", type=int, default=16)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    try:
        import torch
        import transformers

        pk, planner = import_prefkit()
        print(f"prefkit {pk.__version__} (batch planner: {planner}), torch {torch.__version__}, "
              f"transformers {transformers.__version__}")
        if args.device.startswith("cuda"):
            if not torch.cuda.is_available():
                print("CUDA is not available; nothing to measure (use --device cpu)")
                return 0
            print(f"GPU: {torch.cuda.get_device_name(0)}")
        dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
        started = time.perf_counter()
        tokenizer = make_tokenizer(args.vocab)
        table = make_corpus(args.rows, median=args.median, sigma=args.sigma,
                            max_len=args.max_len, vocab_size=args.vocab)
        model = make_model(vocab_size=args.vocab, hidden=args.hidden, layers=args.layers,
                           intermediate=args.intermediate, heads=args.heads,
                           kv_heads=args.kv_heads, max_len=args.max_len, dtype=dtype,
                           device=args.device, pad_token_id=tokenizer.pad_token_id)
        params = sum(p.numel() for p in model.parameters())
        print(f"model: {params / 1e9:.2f}B parameters, {dtype}, {args.layers} layers, "
              f"built in {time.perf_counter() - started:.1f}s; corpus: {args.rows} rows")
        # Warm-up (kernel selection, allocator) on a small slice, not timed.
        run_pair(model, tokenizer, table.slice(0, 64), device=args.device,
                 budgets=args.budgets[:1], naive_batch=args.naive_batch, label="warm-up")
        results = run_pair(model, tokenizer, table, device=args.device, budgets=args.budgets,
                           naive_batch=args.naive_batch, label="timed")
        name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
        print_table(results, f"{name}, {params / 1e9:.2f}B Llama ({dtype}), {args.rows} rows, "
                             f"log-normal lengths (median {args.median:.0f}, sigma {args.sigma})")
        if args.device.startswith("cuda"):
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        print(f"total {time.perf_counter() - started:.1f}s")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
