"""CPU benchmark: fused vs unfused (full logits) vs Liger-Kernel DPO loss, forward + backward.

Run from the repository root::

    python benches/bench_losses.py                     # V=32000, H=512, T=512, B=4 pairs
    python benches/bench_losses.py --vocab 8000 --rounds 5 --prompt 128

Every variant runs in its own fresh Python process, so its peak resident memory is its own:
``peak RSS delta`` is ``ru_maxrss`` at the end minus the RSS just before the first step, i.e.
everything a training step allocates on top of the inputs (including the gradients of the
hidden states and of the LM head, which every variant must produce). torch's CPU allocator
returns large blocks to the OS, so RSS follows live tensors. The variants run in interleaved
rounds (``--rounds`` processes each, ``--repeats`` timed forward+backward steps per process after
one warm-up step), so load from other processes on the machine hits all of them alike; the
table gives the median step time and the median peak. Benchmarks never assert.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# "fused": the modules' default (gradient formed in the forward pass, three GEMMs);
# "fused_recompute": logits_budget=0, sequence_logps' bounded blocks recomputed in backward.
VARIANTS = ("unfused", "fused", "fused_recompute", "liger")


def make_inputs(cfg):
    import torch

    torch.manual_seed(0)
    n, t, h, v = 2 * cfg["pairs"], cfg["tokens"], cfg["hidden"], cfg["vocab"]
    hidden = torch.randn(n, t, h).requires_grad_(True)
    weight = (torch.randn(v, h) / h**0.5).requires_grad_(True)
    labels = torch.randint(0, v, (n, t))
    labels[:, : cfg["prompt"]] = -100  # prompt tokens carry no loss
    ref = -torch.rand(cfg["pairs"]) * 100 - 2000
    return hidden, weight, labels, ref


def step_fn(name, cfg, hidden, weight, labels, ref):
    """A closure doing one forward + backward of the sigmoid DPO loss."""
    import torch

    b = cfg["pairs"]
    if name in ("fused", "fused_recompute"):
        from prefkit.losses import FusedLinearPreferenceLoss

        budget = 0 if name == "fused_recompute" else None
        loss_fn = FusedLinearPreferenceLoss(kind="sigmoid", beta=0.1, logits_budget=budget)

        def step():
            loss, _ = loss_fn(hidden, weight, labels, ref, ref)
            loss.backward()
            return loss

        return step
    if name == "unfused":
        from prefkit.losses import preference_loss

        def step():
            logits = hidden @ weight.T
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            keep = labels != -100
            picked = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            logps = (picked * keep).sum(-1)
            loss, _ = preference_loss(logps[:b], logps[b:], ref, ref, kind="sigmoid", beta=0.1)
            loss.backward()
            return loss

        return step
    if name == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

        # Liger has no input for precomputed reference log-probs: run it reference-free
        # (the cheapest configuration for it). torch.compile is off on the CPU.
        loss_fn = LigerFusedLinearDPOLoss(
            beta=0.1, use_ref_model=False, compiled=cfg["liger_compiled"]
        )

        def step():
            out = loss_fn(weight, hidden, labels)
            loss = out[0] if isinstance(out, tuple) else out
            loss.backward()
            return loss

        return step
    raise ValueError(name)


def child(name, cfg):
    """Runs in a fresh process: one variant, prints one JSON line."""
    import psutil
    import torch

    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    hidden, weight, labels, ref = make_inputs(cfg)
    step = step_fn(name, cfg, hidden, weight, labels, ref)
    rss0 = psutil.Process().memory_info().rss
    times, loss = [], None
    for i in range(cfg["repeats"] + 1):
        hidden.grad = weight.grad = None
        t0 = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - t0
        if i:
            times.append(dt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "variant": name,
                "median_s": statistics.median(times),
                "times_s": times,
                "peak_delta_mib": (peak - rss0) / 2**20,
                "loss": float(loss.detach()),
                "grad_hidden_norm": float(hidden.grad.norm()),
                "grad_weight_norm": float(weight.grad.norm()),
            }
        )
    )


def run_variant(name, cfg):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(ROOT, "python"), ROOT, env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", name, json.dumps(cfg)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"variant": name, "error": " | ".join(tail)}
    return json.loads(lines[-1])


def merge(name, runs):
    """One row per variant: median time over all timed steps, median peak over processes."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    times = [t for r in ok for t in r["times_s"]]
    return {
        **ok[-1],
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_delta_mib": statistics.median(r["peak_delta_mib"] for r in ok),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=0, help="leading tokens labelled -100")
    ap.add_argument("--rounds", type=int, default=3, help="processes per variant")
    ap.add_argument("--repeats", type=int, default=1, help="timed steps per process")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--liger-compiled", action="store_true", help="let Liger torch.compile")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("cfg", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, json.loads(args.cfg))
        return
    cfg = {
        "vocab": args.vocab,
        "hidden": args.hidden,
        "tokens": args.tokens,
        "pairs": args.pairs,
        "prompt": args.prompt,
        "repeats": args.repeats,
        "threads": args.threads,
        "liger_compiled": args.liger_compiled,
    }
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"V={cfg['vocab']} H={cfg['hidden']} T={cfg['tokens']} B={cfg['pairs']} pairs "
        f"({2 * cfg['pairs']} sequences, {cfg['prompt']} prompt tokens each), fp32, "
        f"sigmoid DPO, grads wrt hidden and LM head"
    )
    full_logits = 2 * cfg["pairs"] * cfg["tokens"] * cfg["vocab"] * 4 / 2**20
    print(f"one fp32 copy of the full logits: {full_logits:.0f} MiB")
    names = args.variants.split(",")
    runs = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(run_variant(name, cfg))
    results = [merge(name, runs[name]) for name in names]
    base = next((r for r in results if r["variant"] == "unfused" and "error" not in r), None)
    print()
    print(
        "| variant | median fwd+bwd (s) | runs (s) | peak RSS delta (MiB) | time vs unfused "
        "| memory vs unfused | loss |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['variant']} | skipped: {r['error'][:300]} | | | | | |")
            continue
        rel_t = f"{r['median_s'] / base['median_s']:.2f}x" if base else "-"
        rel_m = f"{r['peak_delta_mib'] / base['peak_delta_mib']:.3f}x" if base else "-"
        runs = ", ".join(f"{t:.2f}" for t in r["times_s"])
        print(
            f"| {r['variant']} | {r['median_s']:.3f} | {runs} | {r['peak_delta_mib']:.0f} "
            f"| {rel_t} | {rel_m} | {r['loss']:.6f} |"
        )
    ok = [r for r in results if "error" not in r]
    if len(ok) > 1:
        print()
        for r in ok:
            print(
                f"{r['variant']}: |grad hidden| = {r['grad_hidden_norm']:.6e}, "
                f"|grad weight| = {r['grad_weight_norm']:.6e}"
            )


if __name__ == "__main__":
    main()
