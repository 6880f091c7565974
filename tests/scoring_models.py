"""Tiny random-weight reward models for the scoring tests, built offline from configs.

The network has no model hub, so the tokenizer is a word-level one trained in memory with the
``tokenizers`` library and saved next to the model, as a real checkpoint folder would hold it.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "tree", "blue", "red", "quick", "slow", "fox", "jumps", "over", "lazy", "answer", "question", "is", "it", "yes", "no", "maybe", "because", "four", "five", "two", "plus", "equals", "paris", "lyon", "capital", "of", "france", "reverse", "list", "python", "use", "slicing", "call", "sorted", "function"]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {{ eos_token }} "
    "{% endfor %}"
)


def build_tokenizer(kind: str = "llama", *, pad_is_eos: bool = False, chat_template: bool = True):
    """A ``PreTrainedTokenizerFast`` over ``WORDS``: Llama-style (BOS prefix, chat template) or
    BERT-style ([CLS] ... [SEP], no template)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "llama":
        specials = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    else:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordLevel(unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=specials))
    if kind == "llama":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
            pad_token="</s>" if pad_is_eos else "<pad>",
        )
        if chat_template:
            fast.chat_template = CHAT_TEMPLATE
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]",
            pad_token="[PAD]",
        )
    return fast


def build_model(
    folder: str | Path,
    kind: str = "llama",
    *,
    num_labels: int = 1,
    pad_is_eos: bool = False,
    chat_template: bool = True,
    seed: int = 0,
) -> Path:
    """Save a tiny random-weight sequence-classification model and its tokenizer to ``folder``."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    folder = Path(folder)
    tokenizer = build_tokenizer(kind, pad_is_eos=pad_is_eos, chat_template=chat_template)
    torch.manual_seed(seed)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            num_labels=num_labels, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        model = LlamaForSequenceClassification(config)
    else:
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=256, num_labels=num_labels,
            pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        model = BertForSequenceClassification(config)
    # Random init of the head is tiny; spread it so that scores differ visibly between rows.
    with torch.no_grad():
        head = model.score if kind == "llama" else model.classifier
        head.weight.normal_(0.0, 1.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def corpus(rows: int, seed: int = 0):
    """A long table of prompts x responses with varied lengths (1 to ~40 words)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for i in range(rows):
        p_len = int(rng.integers(1, 12))
        r_len = int(min(40, max(1, rng.lognormal(2.0, 0.8))))
        prompts.append(" ".join(rng.choice(WORDS, p_len)))
        responses.append(" ".join(rng.choice(WORDS, r_len)))
    return pa.table({"prompt": prompts, "response": responses, "id": list(range(rows))})
