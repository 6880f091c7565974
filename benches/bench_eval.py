"""Reward-model evaluation on the CPU: pk.evaluate_rewards vs the loops evaluation scripts run.

Three ways to get the accuracy of one reward model on the same preference pairs:

- ``loop-batch1``: one forward per response, unpadded (rewardbench with ``--batch_size 1``);
- ``loop-batch16``: fixed batches of 16 pairs in input order, the chosen and the rejected
  responses of a batch each padded to their longest (rewardbench's default pipeline);
- ``pk.evaluate_rewards``: ``pk.score_pairs`` underneath (both sides in one length-sorted plan
  under a token budget), plus the subset rows, bootstrap intervals and diagnostics.

The model is a small random-weight Llama built from a config and the tokenizer a word-level
one built in memory (``benches/gpu_scoring.py``): nothing is downloaded. Response lengths are
log-normal. Figures are pairs per second, tokenisation included; the accuracies of the three
are printed as a check (they must agree).

    python benches/bench_eval.py                     # 200 pairs, median 128 tokens, 1 thread
    python benches/bench_eval.py --pairs 500 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

from gpu_scoring import make_corpus, make_model, make_tokenizer


def pairs_table(pairs: int, *, median: float, sigma: float, max_len: int, vocab: int) -> pa.Table:
    """``prompt, chosen, rejected``: two responses of independent log-normal lengths each."""
    long = make_corpus(2 * pairs, median=median, sigma=sigma, max_len=max_len, vocab_size=vocab)
    prompts = long.column("prompt").to_pylist()
    responses = long.column("response").to_pylist()
    return pa.table({"prompt": prompts[:pairs], "chosen": responses[:pairs],
                     "rejected": responses[pairs:],
                     "subset": [f"s{i % 4}" for i in range(pairs)]})


def loop_accuracy(model, tokenizer, table: pa.Table, batch_size: int) -> tuple[float, np.ndarray]:
    """Fixed batches of pairs in input order; each side padded to its longest (or unpadded at
    batch size 1); the model's own forward. Ties count half, as in pk.evaluate_rewards."""
    import torch

    prompts = table.column("prompt").to_pylist()
    sides = {}
    for side in ("chosen", "rejected"):
        texts = [p + r for p, r in zip(prompts, table.column(side).to_pylist())]
        ids = tokenizer(texts)["input_ids"]
        scores = []
        with torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                chunk = ids[start : start + batch_size]
                if batch_size == 1:
                    out = model(input_ids=torch.tensor(chunk)).logits
                else:
                    batch = tokenizer.pad({"input_ids": chunk}, return_tensors="pt")
                    out = model(input_ids=batch["input_ids"],
                                attention_mask=batch["attention_mask"]).logits
                scores.append(out[:, 0].float())
        sides[side] = torch.cat(scores).numpy().astype(np.float64)
    margin = sides["chosen"] - sides["rejected"]
    outcome = np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))
    return float(outcome.mean()), margin


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--median", type=float, default=128.0, help="median tokens per text")
    parser.add_argument("--sigma", type=float, default=0.9, help="log-normal sigma of lengths")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--budget", type=int, default=4096, help="max_tokens_per_batch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import prefkit as pk
    import torch

    # A fixed thread count: on a shared 2-core machine torch's default pool spins against
    # other processes and the figures swing.
    torch.set_num_threads(args.threads)
    vocab = 8000
    tokenizer = make_tokenizer(vocab)
    table = pairs_table(args.pairs, median=args.median, sigma=args.sigma, max_len=args.max_len,
                        vocab=vocab)
    model = make_model(vocab_size=vocab, hidden=args.hidden, layers=args.layers,
                       intermediate=4 * args.hidden, heads=4, kv_heads=4, max_len=args.max_len,
                       dtype=torch.float32, device="cpu", pad_token_id=tokenizer.pad_token_id)
    params = sum(p.numel() for p in model.parameters())

    def prefkit_run(data):
        result = pk.evaluate_rewards(data, model, tokenizer=tokenizer, subset="subset",
                                     chat_template=None, max_tokens_per_batch=args.budget,
                                     device="cpu", progress=False)
        return float(result.column("accuracy")[0].as_py()), result

    # Warm-up (allocator, kernels) on a slice, for every method.
    warm = table.slice(0, 16)
    loop_accuracy(model, tokenizer, warm, 1)
    loop_accuracy(model, tokenizer, warm, 16)
    prefkit_run(warm)

    rows = []
    for label, fn in (
        ("loop, batch 1 (rewardbench --batch_size 1)", lambda: loop_accuracy(
            model, tokenizer, table, 1)[0]),
        ("loop, fixed batches of 16 pairs", lambda: loop_accuracy(
            model, tokenizer, table, 16)[0]),
        (f"pk.evaluate_rewards (max_tokens_per_batch={args.budget})",
         lambda: prefkit_run(table)[0]),
    ):
        started = time.perf_counter()
        accuracy = fn()
        seconds = time.perf_counter() - started
        rows.append((label, accuracy, seconds))

    print(f"CPU ({args.threads} thread(s)), {params / 1e6:.1f}M-parameter Llama (hidden "
          f"{args.hidden}, {args.layers} layers, fp32), {args.pairs} pairs, log-normal lengths "
          f"(median {args.median:.0f}, sigma {args.sigma})\n")
    fixed = rows[1][2]
    print("| method | accuracy | seconds | pairs/s | vs batch-16 loop |")
    print("|---|---:|---:|---:|---:|")
    for label, accuracy, seconds in rows:
        print(f"| {label} | {accuracy:.4f} | {seconds:.1f} | {args.pairs / seconds:.1f} | "
              f"{fixed / seconds:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
