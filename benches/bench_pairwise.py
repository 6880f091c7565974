"""Pairwise judges on the CPU: K x K win matrices of K = 8 responses per prompt, three ways.

- ``embedding``: ``pk.score_pairwise`` with ``pk.EmbeddingJudge`` (GPM): one forward per
  response (K per prompt), the K x K matrix from the skew-symmetric product of embeddings.
- ``cross-encoder``: ``pk.score_pairwise`` with the same network as a cross-encoder over the
  templated (prompt, a, b) text, both orders averaged: K(K-1) sequences per prompt, in
  length-sorted token-budget batches.
- ``naive K^2 loop``: what a script around a PairRM-style judge does: for every ordered pair,
  render, tokenise and run one forward (no batching), then average the two orders. Its
  matrices are compared with the cross-encoder's (max abs difference printed as a check).

The network is a random-weight Llama built from a config (nothing is downloaded), the
tokenizer a word-level one (one word = one token). Figures: wall-clock seconds including
tokenisation, prompts per second, sequences run and real tokens in them.

    python benches/bench_pairwise.py                  # 40 prompts x 8, 1 thread
    python benches/bench_pairwise.py --prompts 100 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

from gpu_scoring import make_model, make_tokenizer


def corpus(prompts: int, k: int, *, median: float, vocab: int, seed: int = 0) -> pa.Table:
    """``prompts`` prompts (8-24 words) with ``k`` responses of log-normal lengths each."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab - 4)])
    rows = {"prompt": [], "response": []}
    for _ in range(prompts):
        prompt = " ".join(rng.choice(words, int(rng.integers(8, 25))))
        for _ in range(k):
            length = int(np.clip(rng.lognormal(np.log(median), 0.7), 4, 400))
            rows["prompt"].append(prompt)
            rows["response"].append(" ".join(rng.choice(words, length)))
    return pa.table(rows)


def naive_matrices(model, tokenizer, table: pa.Table, k: int, template: str) -> tuple:
    """One unbatched forward per ordered pair; P[a][b] = (p(a, b) + 1 - p(b, a)) / 2."""
    import torch

    prompts = table.column("prompt").to_pylist()
    responses = table.column("response").to_pylist()
    out, tokens = [], 0
    with torch.inference_mode():
        for start in range(0, len(responses), k):
            p = np.full((k, k), 0.5)
            for i in range(k):
                for j in range(k):
                    if i == j:
                        continue
                    text = template.format(prompt=prompts[start], a=responses[start + i],
                                           b=responses[start + j])
                    ids = torch.tensor([tokenizer(text)["input_ids"]])
                    tokens += ids.shape[1]
                    p[i, j] = torch.sigmoid(model(input_ids=ids).logits[0, 0]).item()
            m = np.full((k, k), 0.5)
            upper = np.triu_indices(k, 1)
            m[upper] = ((p + 1 - p.T) / 2)[upper]
            m.T[upper] = 1 - m[upper]
            out.append(m)
    return out, tokens


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--median", type=float, default=48.0, help="median response tokens")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dim", type=int, default=8, help="embedding size 2d of the GPM head")
    parser.add_argument("--budget", type=int, default=8192, help="max_tokens_per_batch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import prefkit as pk
    import torch

    # A fixed thread count: on a shared machine torch's default pool spins against other
    # processes and the figures swing.
    torch.set_num_threads(args.threads)
    vocab = 8000
    tokenizer = make_tokenizer(vocab)
    table = corpus(args.prompts, args.k, median=args.median, vocab=vocab)

    def network(labels: int):
        model = make_model(vocab_size=vocab, hidden=args.hidden, layers=args.layers,
                           intermediate=4 * args.hidden, heads=4, kv_heads=4, max_len=1024,
                           dtype=torch.float32, device="cpu",
                           pad_token_id=tokenizer.pad_token_id)
        if labels != 1:
            torch.manual_seed(1)
            model.score = torch.nn.Linear(args.hidden, labels, bias=False)
            model.config.num_labels = labels
        return model.eval()

    cross = network(1)
    gpm = pk.EmbeddingJudge(network(args.dim), tokenizer, chat_template=None)
    template = pk.pairwise.DEFAULT_TEMPLATE
    options = {"max_tokens_per_batch": args.budget, "progress": False, "device": "cpu"}
    # Warm-up: first calls pay for lazy imports and allocator growth.
    pk.score_pairwise(table.slice(0, args.k), cross, tokenizer=tokenizer, **options)
    pk.score_pairwise(table.slice(0, args.k), gpm, **options)

    results = []
    started = time.perf_counter()
    out = pk.score_pairwise(table, gpm, **options)
    seconds = time.perf_counter() - started
    report = pk.report_of(out)
    results.append(("embedding (GPM), pk.score_pairwise", seconds, report["forward_sequences"],
                    report["tokens"]))

    started = time.perf_counter()
    out = pk.score_pairwise(table, cross, tokenizer=tokenizer, **options)
    seconds = time.perf_counter() - started
    report = pk.report_of(out)
    batched = [np.array(m) for m in out.column("win_prob").to_pylist()]
    results.append(("cross-encoder, pk.score_pairwise", seconds, report["forward_sequences"],
                    report["tokens"]))

    started = time.perf_counter()
    naive, tokens = naive_matrices(cross, tokenizer, table, args.k, template)
    seconds = time.perf_counter() - started
    results.append(("cross-encoder, naive K^2 loop", seconds, args.prompts * args.k * (args.k - 1),
                    tokens))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(batched, naive))

    params = sum(p.numel() for p in cross.parameters())
    print(f"CPU ({args.threads} thread(s)), {params / 1e6:.1f}M-parameter Llama (hidden "
          f"{args.hidden}, {args.layers} layers, fp32), {args.prompts} prompts x K={args.k}, "
          f"responses log-normal (median {args.median:.0f} tokens), GPM head 2d={args.dim}, "
          f"budget {args.budget} tokens")
    print()
    print("| judge | seconds | prompts/s | sequences | tokens | vs naive |")
    print("|---|---:|---:|---:|---:|---:|")
    naive_seconds = results[-1][1]
    for name, seconds, sequences, tokens in results:
        print(f"| {name} | {seconds:.2f} | {args.prompts / seconds:.1f} | {sequences} | "
              f"{tokens} | {naive_seconds / seconds:.1f}x |")
    print()
    print(f"max |P_batched - P_naive| = {diff:.2e} (cross-encoder, same model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
