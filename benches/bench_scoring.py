"""Reward scoring on the CPU: pk.score vs a naive loop on the same model and texts.

The naive loop is what most scoring scripts do (fixed batches of 16 rows in input order, padded
to the longest, the model's own forward). pk.score sorts rows by length and cuts batches under a
token budget, so it computes far fewer padding tokens on a corpus whose lengths are
log-normal, as sampled responses are. The model is a small random-weight Llama built from a
config (hidden 256, 4 layers) and the tokenizer a word-level one built in memory: nothing is
downloaded. Figures are real (unpadded) tokens per second, tokenisation included; the max abs
difference of the scores against the naive loop is printed as a check.

    python benches/bench_scoring.py                  # 400 rows, median 128 tokens, 1 thread
    python benches/bench_scoring.py --rows 2000 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from gpu_scoring import make_corpus, make_model, make_tokenizer, print_table, run_pair


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--median", type=float, default=128.0, help="median tokens per row")
    parser.add_argument("--sigma", type=float, default=0.9, help="log-normal sigma of lengths")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--budgets", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import torch

    # A fixed thread count: on a shared 2-core machine torch's default pool spins against
    # other processes and the figures swing by 10x.
    torch.set_num_threads(args.threads)
    vocab = 8000
    tokenizer = make_tokenizer(vocab)
    table = make_corpus(args.rows, median=args.median, sigma=args.sigma, max_len=args.max_len,
                        vocab_size=vocab)
    model = make_model(vocab_size=vocab, hidden=args.hidden, layers=args.layers,
                       intermediate=4 * args.hidden, heads=4, kv_heads=4, max_len=args.max_len,
                       dtype=torch.float32, device="cpu", pad_token_id=tokenizer.pad_token_id)
    params = sum(p.numel() for p in model.parameters())
    started = time.perf_counter()
    run_pair(model, tokenizer, table.slice(0, 32), device="cpu", budgets=args.budgets[:1],
             naive_batch=16, label="warm-up")
    results = run_pair(model, tokenizer, table, device="cpu", budgets=args.budgets,
                       naive_batch=16, label="timed")
    print_table(results, f"CPU ({args.threads} thread(s)), {params / 1e6:.1f}M-parameter Llama "
                         f"(hidden {args.hidden}, {args.layers} layers, fp32), {args.rows} rows, "
                         f"log-normal lengths (median {args.median:.0f}, sigma {args.sigma})")
    print(f"total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
