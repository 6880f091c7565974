"""Offline tokenizers and tiny causal LMs for the batching tests (no hub downloads)."""

from __future__ import annotations

from pathlib import Path

import prefkit as pk
import pyarrow.compute as pc

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ultrafeedback_mini.jsonl"

#: A small chat template: BOS-delimited turns, the generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


def example_long():
    """The example corpus in long form, without its null response."""
    long = pk.unnest(pk.read_table(EXAMPLE))
    return long.filter(pc.is_valid(long["response"]))


def bpe_tokenizer(texts, vocab_size=600):
    """A byte-level BPE trained on ``texts`` in memory, wrapped as a fast HF tokenizer."""
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


def tiny_llama(vocab_size, seed=0, layers=2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()
