"""GPU benchmark of the fused DPO loss: Triton vs torch-chunked vs unfused vs Liger-Kernel.

Self-contained; run on one H100/H200 from the repository root::

    python benches/gpu_losses.py            # V=128256, H=4096, T=1024, B=8 pairs, bf16
    python benches/gpu_losses.py --quick    # smaller shapes, a smoke test

1. Correctness at a moderate shape: log-probs and gradients of the Triton and torch-chunked
   paths against an fp32 full-logits computation on the same bf16 values (and fp32 inputs).
2. Timing at the full shape: median of ``--repeats`` forward+backward steps (CUDA events, after
   warm-up, which also covers Triton/torch.compile compilation) and the peak of
   ``torch.cuda.max_memory_allocated`` above the inputs (gradients included).

Every variant runs in its own try/except, so one failure (an OOM, Liger missing) only loses its
row. Everything is printed; nothing is asserted. Budget: well under 4 minutes on an H100. The
unfused variant is the usual HF/TRL path: bf16 logits, upcast to fp32 for log_softmax (about
8.4 GB of fp32 logits at this shape, fine on an 80 GB card).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_losses():
    """``prefkit.losses`` from this checkout, even if the Rust core is not built here."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    try:
        from prefkit import losses
    except ImportError:
        # prefkit/__init__ needs the compiled core; the losses do not. Register a bare package.
        for name in [m for m in sys.modules if m == "prefkit" or m.startswith("prefkit.")]:
            del sys.modules[name]
        pkg = types.ModuleType("prefkit")
        pkg.__path__ = [os.path.join(ROOT, "python", "prefkit")]
        sys.modules["prefkit"] = pkg
        from prefkit import losses
    return losses


def unfused_logps(hidden, weight, labels):
    import torch

    logits = (hidden @ weight.T).float()
    logprobs = torch.log_softmax(logits, dim=-1)
    keep = labels != -100
    return (logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * keep).sum(-1)


def rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


def check_correctness(losses, n, t, h, v):
    import torch

    print(f"\n## correctness (N={n} T={t} H={h} V={v})")
    print("| dtype | path | logps rel err | grad hidden rel err | grad weight rel err |")
    print("|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        hidden = torch.randn(n, t, h, device="cuda").to(dtype)
        weight = (torch.randn(v, h, device="cuda") / h**0.5).to(dtype)
        labels = torch.randint(0, v, (n, t), device="cuda")
        labels[:, : t // 4] = -100
        labels[0, t // 2 :] = -100
        g = torch.randn(n, device="cuda")

        def run(fn, hidden=hidden, weight=weight, g=g):
            hh = hidden.detach().clone().requires_grad_(True)
            ww = weight.detach().clone().requires_grad_(True)
            out = fn(hh, ww)
            gh, gw = torch.autograd.grad((out * g).sum(), (hh, ww))
            return out.detach(), gh, gw

        # fp32 math on the same values: what an exact kernel should give.
        ref = run(lambda hh, ww, y=labels: unfused_logps(hh.float(), ww.float(), y))
        for backend in ("triton", "torch"):
            try:
                got = run(
                    lambda hh, ww, b=backend, y=labels: losses.sequence_logps(hh, ww, y, backend=b)[
                        0
                    ]
                )
                errs = " | ".join(f"{rel(a, b):.2e}" for a, b in zip(got, ref))
                print(f"| {str(dtype)[6:]} | {backend} | {errs} |")
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"| {str(dtype)[6:]} | {backend} | FAILED: {exc!r:.200} | | |")
                traceback.print_exc()
        if dtype == torch.bfloat16:
            got = run(lambda hh, ww, y=labels: unfused_logps(hh, ww, y))
            errs = " | ".join(f"{rel(a, b):.2e}" for a, b in zip(got, ref))
            print(f"| bfloat16 | unfused (bf16 logits) | {errs} |")
        # The DPO module's gradient-in-forward path, one pair per logits block, against the
        # same loss on fp32 full logits (the loss in the log-probs column).
        pairs = n // 2
        ref_logps = -torch.rand(pairs, device="cuda") * 10 - 100

        def dpo(logps, p=pairs, r=ref_logps):
            return losses.preference_loss(logps[:p], logps[p:], r, r, beta=0.1)[0].reshape(1)

        want = run(lambda hh, ww, y=labels: dpo(unfused_logps(hh.float(), ww.float(), y)), g=1.0)
        try:
            module = losses.FusedLinearPreferenceLoss(
                beta=0.1, backend="triton", logits_budget=2 * t * v
            )

            def fused_dpo(hh, ww, y=labels, m=module, r=ref_logps):
                return m(hh, ww, y, r, r)[0].reshape(1)

            got = run(fused_dpo, g=1.0)
            errs = " | ".join(f"{rel(a, b):.2e}" for a, b in zip(got, want))
            print(f"| {str(dtype)[6:]} | DPO loss, gradient in forward | {errs} |")
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(
                f"| {str(dtype)[6:]} | DPO loss, gradient in forward | FAILED: {exc!r:.200} | | |"
            )
            traceback.print_exc()


def make_step(name, losses, hidden, weight, labels, ref, b):
    if name.startswith("fused"):
        backend = "triton" if "triton" in name else "torch"
        # "_recompute": sequence_logps' path (logits recomputed in backward, four GEMMs).
        budget = 0 if name.endswith("_recompute") else None
        loss_fn = losses.FusedLinearPreferenceLoss(
            kind="sigmoid", beta=0.1, backend=backend, logits_budget=budget
        )

        def step():
            loss, _ = loss_fn(hidden, weight, labels, ref, ref)
            loss.backward()
            return loss

        return step
    if name == "unfused":

        def step():
            logps = unfused_logps(hidden, weight, labels)
            loss, _ = losses.preference_loss(logps[:b], logps[b:], ref, ref, beta=0.1)
            loss.backward()
            return loss

        return step
    if name == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

        # No input for precomputed reference log-probs in Liger: reference-free, its cheapest.
        loss_fn = LigerFusedLinearDPOLoss(beta=0.1, use_ref_model=False)

        def step():
            out = loss_fn(weight, hidden, labels)
            loss = out[0] if isinstance(out, tuple) else out
            loss.backward()
            return loss

        return step
    raise ValueError(name)


def bench(losses, name, n_pairs, t, h, v, repeats, prompt):
    import torch

    torch.manual_seed(0)
    n = 2 * n_pairs
    hidden = torch.randn(n, t, h, device="cuda", dtype=torch.bfloat16).requires_grad_(True)
    weight = (torch.randn(v, h, device="cuda") / h**0.5).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, v, (n, t), device="cuda")
    labels[:, :prompt] = -100
    ref = -torch.rand(n_pairs, device="cuda") * 100 - 1000
    step = make_step(name, losses, hidden, weight, labels, ref, n_pairs)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    hidden.grad = weight.grad = None
    step()  # warm-up: compilation
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    base = torch.cuda.memory_allocated()
    times, peaks, loss = [], [], None
    for _ in range(repeats):
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**30)
    out = {
        "name": name,
        "ms": statistics.median(times),
        "peak_gib": max(peaks),
        "warm_s": warm,
        "loss": float(loss.detach()),
        "path": type(loss.grad_fn).__name__ if loss.grad_fn is not None else "-",
        "gh": float(hidden.grad.float().norm()),
        "gw": float(weight.grad.float().norm()),
    }
    del hidden, weight, labels, step
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=0, help="leading tokens labelled -100")
    ap.add_argument("--variants", default="fused_triton,fused_triton_recompute,unfused,liger")
    args = ap.parse_args()
    t_start = time.perf_counter()
    import torch

    losses = import_losses()
    print(
        f"torch {torch.__version__}, device {torch.cuda.get_device_name()}, "
        f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
    )
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton not importable: fused_triton falls back to torch")
    if args.quick:
        pairs, t, h, v = 2, 256, 1024, 32000
        check_correctness(losses, 4, 64, 256, 5000)
    else:
        pairs, t, h, v = 8, 1024, 4096, 128256
        check_correctness(losses, 4, 256, 1024, 32000)

    print(
        f"\n## timing (B={pairs} pairs = {2 * pairs} sequences, T={t}, H={h}, V={v}, bf16, "
        f"prompt={args.prompt}, sigmoid DPO, grads wrt hidden and LM head, "
        f"median of {args.repeats})"
    )
    rows = []
    for name in args.variants.split(","):
        reps = 2 if name == "fused_torch" else args.repeats  # fp32 GEMMs: slow, few runs
        try:
            rows.append(bench(losses, name, pairs, t, h, v, reps, args.prompt))
        except Exception as exc:  # noqa: BLE001 - one variant failing must not stop the rest
            print(f"{name}: FAILED {exc!r:.300}")
            traceback.print_exc()
            torch.cuda.empty_cache()
        print(f"[{time.perf_counter() - t_start:.0f} s elapsed]", flush=True)
    base = next((r for r in rows if r["name"] == "unfused"), None)
    print(
        "\n| variant | fwd+bwd (ms) | peak extra memory (GiB) | time vs unfused "
        "| memory vs unfused | first step (s) | loss |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rt = f"{r['ms'] / base['ms']:.2f}x" if base else "-"
        rm = f"{r['peak_gib'] / base['peak_gib']:.3f}x" if base else "-"
        print(
            f"| {r['name']} | {r['ms']:.1f} | {r['peak_gib']:.2f} | {rt} | {rm} "
            f"| {r['warm_s']:.1f} | {r['loss']:.6f} |"
        )
    for r in rows:
        print(
            f"{r['name']}: |grad hidden| {r['gh']:.6e}  |grad weight| {r['gw']:.6e}  "
            f"(loss from {r['path']})"
        )
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
