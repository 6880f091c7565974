"""One round of online iterative DPO (the RLHFlow recipe) with prefkit.

A round: the policy samples K responses per prompt (here: the completions of the example corpus,
3-4 per prompt), a reward model scores every response, the best of K is paired with the worst
of K when their rewards differ by more than a margin, and the pairs are written as a TRL-ready
Parquet file (``prompt``, ``chosen``, ``rejected``; plain text or chat messages) for the next
DPO step, whose reference policy stays the initial one.

No model hub is needed: without ``--model`` a tiny random-weight Llama reward model is built
from a config, with a BPE tokenizer trained in memory on the corpus and a chat template, and
saved to a folder that ``pk.score`` loads by path, as it would a real reward model. Its scores
are random, so the pairs only show the mechanics; pass ``--model PATH`` for a real one.

    python examples/online_iteration.py -o pairs.parquet
    python examples/online_iteration.py -o pairs.parquet --messages --min-margin 0.5
    python examples/online_iteration.py -o pairs.parquet --model ./my-reward-model --k 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import prefkit as pk
import pyarrow as pa
import pyarrow.compute as pc

HERE = Path(__file__).parent

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
)


def build_reward_model(texts: list[str], folder: Path) -> Path:
    """Save a tiny random-weight ``LlamaForSequenceClassification`` and a BPE tokenizer trained
    on ``texts`` (with a chat template) to ``folder``; return the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        num_labels=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.normal_(0.0, 1.0)  # a wider head: random rewards that differ visibly
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def samples(path: Path, k: int) -> pa.Table:
    """Prompts x K responses in long form (one row per response), the policy's samples."""
    nested = pk.read_table(path)
    long = pk.unnest(nested)
    # Keep at most K per prompt, as a sampler drawing K would give.
    long = long.filter(pc.less(long.column("completion_index"), k))
    # A failed generation (null text) has nothing to score: leave it out, as a sampler would.
    long = long.filter(pc.is_valid(long.column("response")))
    # The corpus' own ratings are not this round's rewards: the reward model's are.
    return long.drop_columns(["score"])


def as_messages(pairs: pa.Table) -> pa.Table:
    """TRL's conversational form: prompt = [user turn], chosen/rejected = [assistant turn]."""
    def turns(column: str, role: str) -> pa.Array:
        return pa.array([[{"role": role, "content": text}]
                         for text in pairs.column(column).to_pylist()])

    return pa.table({
        "prompt": turns("prompt", "user"),
        "chosen": turns("chosen", "assistant"),
        "rejected": turns("rejected", "assistant"),
    })


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="One round of online iterative DPO.")
    parser.add_argument("-o", "--output", default="online_pairs.parquet")
    parser.add_argument("--input", default=str(HERE / "ultrafeedback_mini.jsonl"),
                        help="nested prompts x sampled completions (UltraFeedback layout)")
    parser.add_argument("--model", default=None, help="reward model folder (default: a tiny "
                        "random one built here)")
    parser.add_argument("--k", type=int, default=8, help="responses per prompt to use")
    parser.add_argument("--min-margin", type=float, default=0.1,
                        help="pair best and worst only when their rewards differ by more")
    parser.add_argument("--margin-scale", type=float, default=1.0,
                        help="margin column = (r_chosen - r_rejected) * scale (RLHFlow)")
    parser.add_argument("--messages", action="store_true", help="write chat messages, not text")
    parser.add_argument("--checkpoint", default=None, help="resumable scoring folder")
    args = parser.parse_args(argv)

    data = samples(Path(args.input), args.k)
    print(f"samples: {data.num_rows} responses to "
          f"{pc.count_distinct(data.column('prompt')).as_py()} prompts")

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            texts = data.column("prompt").to_pylist() + data.column("response").to_pylist()
            model = build_reward_model(texts, Path(scratch) / "reward-model")
        # 1. Score every sampled response (chat template of the reward model's tokenizer).
        scored = pk.score(data, model, output="reward", checkpoint=args.checkpoint)
    report = pk.report_of(scored)
    print(f"scored: {report['rows_out']} rows in {report['batches']} batches, "
          f"{report['tokens']} tokens ({report['padded_tokens']} with padding)")

    # 2. Best-of-K vs worst-of-K with a margin; ties and near-ties give no pair.
    pairs = pk.mine_pairs(scored, score="reward", strategy="best_vs_worst",
                          min_margin=args.min_margin)
    mined = pk.report_of(pairs)
    print(f"pairs: {pairs.num_rows} from {mined.get('groups_in')} prompts "
          f"(dropped: {mined.get('dropped')})")

    # 3. TRL-ready: prompt/chosen/rejected (text or messages), plus the scaled margin.
    pairs = pk.materialize(pairs)
    trl = as_messages(pairs) if args.messages else pairs.select(["prompt", "chosen", "rejected"])
    margin = pc.multiply(pairs.column("margin"), args.margin_scale)
    trl = trl.append_column("margin", margin)
    pk.write_table(trl, args.output)
    print(f"wrote {trl.num_rows} pairs to {args.output}: {trl.column_names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
