"""CPU benchmark: one DPO training step of trl.DPOTrainer vs prefkit.trl.DPOTrainer.

Run from the repository root::

    python benches/bench_trl.py                  # V=32000, H=512, T=512, B=4 pairs, 2 layers
    python benches/bench_trl.py --prompt 0 --rounds 3

Both trainers get the same model (a Llama built from a config, random weights, fp32), the same
``DPOConfig`` (sigmoid, ``precompute_ref_log_probs=True`` so neither runs a reference model in
the step, no gradient checkpointing) and the same text dataset: ``B`` pairs whose prompt and
completions are words of a word-level tokenizer with ``V`` tokens, so that every sequence is
exactly ``T`` tokens (``--prompt`` of them prompt) and no row is padded. Variants:

- ``trl``: ``trl.DPOTrainer`` (its chunked LM head; on the CPU it scores every position).
- ``trl_liger``: the same with ``use_liger_kernel=True`` (Liger's Triton layer kernels).
- ``prefkit``: ``prefkit.trl.DPOTrainer``, padded batches.
- ``prefkit_packed``: ``prefkit.trl.DPOTrainer`` with ``padding_free=True`` (prompt once per pair).

Every variant runs in its own fresh process, in interleaved rounds (``--rounds``), and trains
two steps: the first warms up (and allocates AdamW's state), the second is measured: its wall
time (forward, backward, gradient clipping, optimizer step) and its peak resident memory over the
resident memory at its start (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` when the
step begins). The table gives medians over rounds. Benchmarks never assert.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("trl", "trl_liger", "prefkit", "prefkit_packed")


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def build(cfg, out_dir):
    """Tokenizer, model and dataset for one run."""
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    v, t, p, b = cfg["vocab"], cfg["tokens"], cfg["prompt"], cfg["pairs"]
    specials = ["<pad>", "<s>", "</s>"]
    words = [f"w{i}" for i in range(v - len(specials))]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    g = torch.Generator().manual_seed(0)

    def text(n):
        return " ".join(words[i] for i in torch.randint(0, len(words), (n,), generator=g))

    # A prompt of p words; completions of t - p - 1 words and the EOS: T tokens per sequence.
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(b):
        rows["prompt"].append(text(p) + " " if p else "")
        rows["chosen"].append(text(t - p - 1) + " </s>")
        rows["rejected"].append(text(t - p - 1) + " </s>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=v, hidden_size=cfg["hidden"],
                         intermediate_size=cfg["hidden"] * 2, num_hidden_layers=cfg["layers"],
                         num_attention_heads=8, num_key_value_heads=8,
                         max_position_embeddings=t, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    return tokenizer, model, Dataset.from_dict(rows)


def child(name, cfg):
    """Runs in a fresh process: one variant, prints one JSON line."""
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import gc

    import torch
    import trl
    from transformers import TrainerCallback

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    out_dir = tempfile.mkdtemp()
    tokenizer, model, dataset = build(cfg, out_dir)
    args = trl.DPOConfig(
        output_dir=out_dir, max_steps=2, per_device_train_batch_size=cfg["pairs"],
        learning_rate=1e-6, logging_steps=1, report_to="none", bf16=False,
        gradient_checkpointing=False, save_strategy="no", max_length=cfg["tokens"],
        precompute_ref_log_probs=True, loss_type=["sigmoid"], dataloader_num_workers=0,
        use_liger_kernel=name == "trl_liger", padding_free=name == "prefkit_packed",
    )
    if name.startswith("prefkit"):
        from prefkit.trl import DPOTrainer
    else:
        DPOTrainer = trl.DPOTrainer

    class Measure(TrainerCallback):
        def __init__(self):
            self.result = {}

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 1:  # the second step
                gc.collect()
                self.rss0 = _status_kib("VmRSS")
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM, the peak resident set, to the current one
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                self.result = {"step_s": time.perf_counter() - self.t0,
                               "peak_delta_mib": (_status_kib("VmHWM") - self.rss0) / 1024}

    measure = Measure()
    trainer = DPOTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[measure])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    print(json.dumps({"variant": name, **measure.result, "loss": logs[-1]["loss"],
                      "grad_norm": logs[-1]["grad_norm"],
                      "tokens": len(trainer.train_dataset[0]["prompt_ids"])
                      + len(trainer.train_dataset[0]["chosen_ids"])}))


def run_variant(name, cfg):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name,
                           json.dumps(cfg)], capture_output=True, text=True, env=env,
                          check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        errors = [x for x in (proc.stderr or proc.stdout).strip().splitlines() if x.strip()]
        return {"variant": name, "error": " | ".join(errors[-2:])}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=512, help="tokens per sequence (T)")
    ap.add_argument("--pairs", type=int, default=4, help="pairs per batch (B)")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens of each sequence")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="processes per variant")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("cfg", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, json.loads(args.cfg))
        return
    cfg = {k: getattr(args, k) for k in ("vocab", "hidden", "tokens", "pairs", "prompt",
                                           "layers", "threads")}
    import torch
    import trl

    print(f"trl {trl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; V={cfg['vocab']} H={cfg['hidden']} T={cfg['tokens']} "
          f"B={cfg['pairs']} pairs ({cfg['prompt']} prompt tokens per sequence), "
          f"{cfg['layers']}-layer Llama, fp32, sigmoid DPO, precomputed reference log-probs")
    names = args.variants.split(",")
    runs = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(run_variant(name, cfg))
    base = None
    rows = []
    for name in names:
        ok = [r for r in runs[name] if "error" not in r]
        if not ok:
            rows.append(runs[name][0])
            continue
        row = {**ok[-1], "step_s": statistics.median(r["step_s"] for r in ok),
               "times": [r["step_s"] for r in ok],
               "peak_delta_mib": statistics.median(r["peak_delta_mib"] for r in ok)}
        rows.append(row)
        if name == "trl":
            base = row
    print()
    print("| variant | step (s), median | runs (s) | peak RSS over step start (MiB) "
          "| time vs trl | memory vs trl | loss | grad norm |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | failed: {r['error'][:300]} | | | | | | |")
            continue
        rel_t = f"{r['step_s'] / base['step_s']:.2f}x" if base else "-"
        rel_m = f"{r['peak_delta_mib'] / base['peak_delta_mib']:.2f}x" if base else "-"
        times = ", ".join(f"{t:.2f}" for t in r["times"])
        print(f"| {r['variant']} | {r['step_s']:.2f} | {times} | {r['peak_delta_mib']:.0f} "
              f"| {rel_t} | {rel_m} | {r['loss']:.6f} | {r['grad_norm']:.6f} |")


if __name__ == "__main__":
    main()
