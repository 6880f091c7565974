"""DPO with TRL's trainer on prefkit's pairs and fused loss: a tiny Llama, on the CPU.

Everything is built offline (a byte-level BPE trained in memory on the corpus, a 2-layer Llama
with random weights); the pipeline is the one a real run uses:

    unnest -> mine_pairs -> tokenize_pairs -> reference_logps (once, as columns)
    -> datasets.Dataset -> prefkit.trl.DPOTrainer(trl.DPOConfig(...)).train()

The trainer is ``trl.DPOTrainer`` with prefkit's loss: the policy's last hidden states and LM
head go to ``FusedLinearPreferenceLoss`` (no ``[tokens, vocab]`` logits), the dataset's
``ref_chosen_logps``/``ref_rejected_logps`` columns stand for the reference model (none is
loaded), and ``--packed`` (TRL's ``padding_free=True``) packs each batch with every prompt once.

    python examples/trl_dpo.py                   # 40 steps, padded batches (~1 min on 2 cores)
    python examples/trl_dpo.py --packed          # padding-free, prompt shared per pair
    python examples/trl_dpo.py --loss-type ipo --beta 0.5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import prefkit as pk
import torch
from datasets import Dataset
from prefkit.trl import DPOTrainer

# The corpus, tokenizer and tiny model of the plain-PyTorch example (examples/train_dpo.py).
from train_dpo import build_model, tokenized_pairs
from transformers import PrinterCallback, TrainerCallback
from trl import DPOConfig


class Progress(TrainerCallback):
    """Prints every few logged steps (the Trainer's own progress bar is off)."""

    def __init__(self, say, every: int = 5):
        self.say, self.every = say, every

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and (state.global_step % self.every == 0
                                        or state.global_step == state.max_steps):
            self.say(f"step {state.global_step:4d}  loss {logs['loss']:.4f}  "
                     f"accuracy {logs['rewards/accuracies']:.3f}  "
                     f"margin {logs['rewards/margins']:.4f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--loss-type", default="sigmoid", help="a TRL DPOConfig loss_type")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    parser.add_argument("--max-length", type=int, default=128, help="prompt + completion")
    parser.add_argument("--packed", action="store_true", help="padding-free batches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    torch.set_num_threads(min(torch.get_num_threads(), 2))

    # prefkit tokenises (and truncates to max_length) once; the trainer keeps these ids, so
    # the reference log-probs below belong to exactly the tokens it trains on.
    tokenizer, tokenized = tokenized_pairs(args.max_length)
    # The reference is the initial policy, run once over the data; only the policy trains.
    tokenized = pk.reference_logps(build_model(tokenizer, args.seed), tokenized,
                                   packed=args.packed, progress=not args.quiet)
    dataset = Dataset(tokenized.select(["prompt_ids", "chosen_ids", "rejected_ids",
                                        "ref_chosen_logps", "ref_rejected_logps"]))
    say(f"{tokenized.num_rows} pairs; vocabulary {len(tokenizer)}")

    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr, lr_scheduler_type="constant", loss_type=[args.loss_type],
            beta=args.beta, max_length=args.max_length, padding_free=args.packed,
            bf16=False, gradient_checkpointing=False, logging_steps=1, save_strategy="no",
            report_to="none", disable_tqdm=True, seed=args.seed,
        )
        trainer = DPOTrainer(build_model(tokenizer, args.seed), args=config,
                             train_dataset=dataset, processing_class=tokenizer,
                             callbacks=[Progress(say)])
        trainer.remove_callback(PrinterCallback)  # Progress prints instead of every log dict
        start = time.perf_counter()
        trainer.train()
        history = [h for h in trainer.state.log_history if "loss" in h]
    losses = [h["loss"] for h in history]
    say(f"done in {time.perf_counter() - start:.1f}s: loss {losses[0]:.4f} -> "
        f"{sum(losses[-5:]) / len(losses[-5:]):.4f} (mean of the last 5 steps), reward accuracy "
        f"{history[-1]['rewards/accuracies']:.3f}; reference model loaded: "
        f"{trainer.ref_model is not None}")
    return {"pairs": tokenized.num_rows, "history": history, "ref_model": trainer.ref_model}


if __name__ == "__main__":
    result = main()
    losses = [h["loss"] for h in result["history"]]
    sys.exit(0 if sum(losses[-5:]) < sum(losses[:5]) else 1)
