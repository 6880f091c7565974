"""Train a tiny causal LM with DPO on pairs mined from the example corpus, on the CPU.

Everything is built offline: a byte-level BPE tokenizer trained in memory on the corpus text,
and a 2-layer Llama with random weights. The pipeline is the one a real run uses:

    unnest -> mine_pairs -> tokenize_pairs -> reference_logps (once) -> PairCollator batches
    planned by plan_batches -> model.model(...) hidden states -> FusedLinearPreferenceLoss

The reference model is the initial policy; its log-probs are computed once and stored as
columns, so only the policy runs during training. At step 0 policy == reference, so the loss is
log 2 and no pair is ranked right yet (reward accuracy 0); both improve as it trains.

    python examples/train_dpo.py                 # 40 steps, padded batches (~1 min on 2 cores)
    python examples/train_dpo.py --packed        # padding-free batches, prompt shared per pair
    python examples/train_dpo.py --kind ipo --beta 0.5 --steps 60
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import prefkit as pk
import pyarrow.compute as pc
import torch
from prefkit.losses import FusedLinearPreferenceLoss

CORPUS = Path(__file__).resolve().parent / "ultrafeedback_mini.jsonl"

#: Chat template for the tiny model: text prompts become one user turn, and the generation
#: prompt opens the assistant turn that the completions continue.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


def build_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE trained on ``texts`` in memory, as a transformers fast tokenizer."""
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
                                   pad_token="<pad>", chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def tokenized_pairs(max_length: int):
    """The example corpus as tokenised pairs (all_pairs), and the tokenizer trained on it."""
    long = pk.unnest(pk.read_table(CORPUS))
    long = long.filter(pc.is_valid(long["response"]))  # the corpus has one null response
    pairs = pk.mine_pairs(long, strategy="all_pairs")
    tokenizer = build_tokenizer(long.column("prompt").unique().to_pylist()
                                + long.column("response").to_pylist())
    return tokenizer, pk.tokenize_pairs(pairs, tokenizer, max_length=max_length,
                                        chat_template=CHAT_TEMPLATE)


def loss_on(model, loss_fn, batch):
    """Loss and metrics of one collated batch (padded or packed)."""
    out = model.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                      position_ids=batch.get("position_ids"), use_cache=False)
    hidden = pk.gather_hidden(out.last_hidden_state, batch)
    return loss_fn(hidden, model.lm_head.weight, batch["labels"], batch["ref_chosen_logps"],
                   batch["ref_rejected_logps"])


def evaluate(model, loss_fn, collate, tokenized, max_tokens):
    """Mean loss and reward accuracy over every pair (no gradients)."""
    losses, accuracies, weights = [], [], []
    with torch.no_grad():
        for batch in collate.batches(tokenized, max_tokens=max_tokens, shuffle=False):
            loss, metrics = loss_on(model, loss_fn, batch)
            losses.append(loss.item())
            accuracies.append(metrics["rewards/accuracies"].item())
            weights.append(len(batch["ref_chosen_logps"]))
    total = sum(weights)
    return (sum(v * w for v, w in zip(losses, weights)) / total,
            sum(v * w for v, w in zip(accuracies, weights)) / total)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--kind", default="sigmoid", help="preference_loss kind")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--max-tokens", type=int, default=1024, help="token budget per batch")
    parser.add_argument("--max-length", type=int, default=128, help="prompt + completion")
    parser.add_argument("--packed", action="store_true", help="padding-free batches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    torch.set_num_threads(min(torch.get_num_threads(), 2))

    tokenizer, tokenized = tokenized_pairs(args.max_length)
    report = pk.report_of(tokenized)
    say(f"{tokenized.num_rows} pairs from {report['source']['rows_in']} responses; vocabulary "
        f"{len(tokenizer)}; truncated: {report['truncated']}")

    policy = build_model(tokenizer, args.seed)
    # The reference is the initial policy, run once over the data.
    reference = copy.deepcopy(policy)
    tokenized = pk.reference_logps(reference, tokenized, max_tokens=4 * args.max_tokens,
                                   packed=args.packed, progress=not args.quiet)
    del reference

    collate = pk.PairCollator(tokenizer.pad_token_id, packed=args.packed)
    loss_fn = FusedLinearPreferenceLoss(kind=args.kind, beta=args.beta)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0)
    initial = evaluate(policy, loss_fn, collate, tokenized, 4 * args.max_tokens)
    say(f"step    0  eval loss {initial[0]:.4f}  reward accuracy {initial[1]:.3f}")

    history = []
    step, epoch, start = 0, 0, time.perf_counter()
    policy.train()
    while step < args.steps:
        for batch in collate.batches(tokenized, max_tokens=args.max_tokens, seed=epoch):
            loss, metrics = loss_on(policy, loss_fn, batch)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            step += 1
            history.append({"step": step, "loss": loss.item(),
                            "accuracy": metrics["rewards/accuracies"].item(),
                            "margin": metrics["rewards/margins"].item()})
            if step % 5 == 0 or step == args.steps:
                say(f"step {step:4d}  loss {loss.item():.4f}  "
                    f"accuracy {history[-1]['accuracy']:.3f}  margin {history[-1]['margin']:.4f}")
            if step == args.steps:
                break
        epoch += 1
    policy.eval()
    final = evaluate(policy, loss_fn, collate, tokenized, 4 * args.max_tokens)
    say(f"done in {time.perf_counter() - start:.1f}s: eval loss {initial[0]:.4f} -> "
        f"{final[0]:.4f}, reward accuracy {initial[1]:.3f} -> {final[1]:.3f}")
    return {"initial_loss": initial[0], "initial_accuracy": initial[1],
            "final_loss": final[0], "final_accuracy": final[1], "history": history,
            "pairs": tokenized.num_rows}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["final_loss"] < result["initial_loss"] else 1)
