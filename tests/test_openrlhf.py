"""prefkit's pairs load as OpenRLHF's reward-model and DPO datasets (docs/formats.md).

Uses OpenRLHF's own data loading code: ``openrlhf.datasets.utils.blending_datasets`` (what
``openrlhf.cli.train_rm`` / ``train_dpo`` call on ``--data.dataset``; for a ``.parquet`` path it
is ``datasets.load_dataset("parquet", ...)``) and ``openrlhf.datasets.RewardDataset`` with the
keys those CLIs take (``--data.prompt_key``, ``--data.chosen_key``, ``--data.rejected_key``,
``--data.apply_chat_template``). OpenRLHF pins GPU-only dependencies (flash-attn, deepspeed,
vllm) that do not install on a CPU machine, but its dataset code runs without them:
``pip install --no-deps openrlhf==0.11.2 pylatexenc`` (see docs/formats.md).
"""

from __future__ import annotations

from types import SimpleNamespace

import prefkit as pk
import pyarrow as pa
import pytest
from tiny_lm import bpe_tokenizer, example_long

pytest.importorskip("transformers")
pytest.importorskip("datasets")
openrlhf_datasets = pytest.importorskip("openrlhf.datasets")
from openrlhf.datasets import RewardDataset
from openrlhf.datasets.utils import blending_datasets


def m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


class Strategy:
    """The part of OpenRLHF's strategy that its dataset code reads: ``args.data.*`` (the
    ``--data.*`` flags), ``print`` and ``is_rank_0``."""

    def __init__(self, **data):
        defaults = {"prompt_key": None, "chosen_key": "chosen", "rejected_key": "rejected",
                    "apply_chat_template": False, "tokenizer_chat_template": None}
        self.args = SimpleNamespace(data=SimpleNamespace(**{**defaults, **data}), use_ms=False)

    def print(self, *args):
        pass

    def is_rank_0(self):
        return True


@pytest.fixture(scope="module")
def long():
    return example_long()


@pytest.fixture(scope="module")
def tok(long):
    texts = long.column("prompt").to_pylist() + long.column("response").to_pylist()
    return bpe_tokenizer(texts + ["user assistant What color is the sky? blue green"])


def load(path, strategy):
    """OpenRLHF's own loading of ``--data.dataset PATH`` (train_rm.py / train_dpo.py)."""
    return blending_datasets(str(path), None, strategy, dataset_split="train")


@pytest.fixture(scope="module")
def text_pairs(long, tmp_path_factory):
    pairs = pk.mine_pairs(long, strategy="all_pairs")
    path = tmp_path_factory.mktemp("openrlhf") / "pairs.parquet"
    pk.write_table(pairs, path)
    return pairs, path


@pytest.fixture(scope="module")
def chat_pairs(tmp_path_factory):
    """HH-style chat conversations split by pk.split_prompt: messages in all three columns."""
    conversations = pa.table({
        "chosen": [[m("user", "What color is the sky?"), m("assistant", "It is blue.")],
                   [m("user", "Hi"), m("assistant", "Hello"), m("user", "Sky?"),
                    m("assistant", "Blue.")]],
        "rejected": [[m("user", "What color is the sky?"), m("assistant", "It is green.")],
                     [m("user", "Hi"), m("assistant", "Hello"), m("user", "Sky?"),
                      m("assistant", "Green.")]],
    })
    pairs = pk.split_prompt(conversations)
    path = tmp_path_factory.mktemp("openrlhf") / "chat.parquet"
    pk.write_table(pairs, path)
    return pairs, path


@pytest.mark.parametrize("is_dpo", [False, True])
def test_text_pairs_load_as_reward_and_dpo_datasets(text_pairs, tok, is_dpo):
    pairs, path = text_pairs
    strategy = Strategy(prompt_key="prompt")
    data = load(path, strategy)
    assert len(data) == pairs.num_rows
    dataset = RewardDataset(data, tok, 4096, strategy, is_dpo=is_dpo, num_processors=1)
    assert len(dataset) == pairs.num_rows
    rows = pk.materialize(pairs).to_pylist()
    assert dataset.prompts == [r["prompt"] for r in rows]
    assert dataset.chosens == [r["chosen"] for r in rows]
    assert dataset.rejects == [r["rejected"] for r in rows]
    if is_dpo:  # extra = the prompt's token count
        assert dataset.extras == [len(tok(r["prompt"], add_special_tokens=False)["input_ids"])
                                  for r in rows]
    else:  # extra = prefkit's margin column: OpenRLHF's margin loss reads it
        assert dataset.extras == [r["margin"] for r in rows]
    chosen_ids, _, reject_ids, _, _ = dataset[0]
    for ids, side in ((chosen_ids, "chosen"), (reject_ids, "rejected")):
        expected = tok(rows[0]["prompt"] + rows[0][side] + " " + tok.eos_token,
                       add_special_tokens=False)["input_ids"]
        assert ids[0].tolist() == expected
    batch = dataset.collate_fn([dataset[i] for i in range(min(4, len(dataset)))])
    assert batch[0].shape[0] == min(4, len(dataset))


@pytest.mark.parametrize("is_dpo", [False, True])
def test_chat_pairs_load_with_the_chat_template_applied(chat_pairs, tok, is_dpo):
    pairs, path = chat_pairs
    strategy = Strategy(prompt_key="prompt", apply_chat_template=True)
    dataset = RewardDataset(load(path, strategy), tok, 4096, strategy, is_dpo=is_dpo,
                            num_processors=1)
    assert len(dataset) == pairs.num_rows
    for i, row in enumerate(pairs.to_pylist()):
        prompt = tok.apply_chat_template(row["prompt"], tokenize=False,
                                         add_generation_prompt=True)
        full = tok.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
        assert dataset.prompts[i] == prompt
        assert prompt.endswith("<s>assistant:")
        assert dataset.chosens[i] == full[len(prompt):]
        assert dataset.prompts[i] + dataset.chosens[i] == full
    assert dataset.chosens[0] == " It is blue.</s>"
    assert dataset.rejects[1] == " Green.</s>"


def test_implicit_prompt_conversations_load_without_a_prompt_key(chat_pairs, tok, tmp_path):
    """Full conversations (the input of pk.split_prompt, here deduplicated by pk.dedup) load
    with prompt_key unset: OpenRLHF takes all but the last chosen message as the prompt."""
    pairs, _ = chat_pairs
    full = pa.table({
        "chosen": [p + c for p, c in zip(pairs.column("prompt").to_pylist(),
                                         pairs.column("chosen").to_pylist())] * 2,
        "rejected": [p + r for p, r in zip(pairs.column("prompt").to_pylist(),
                                           pairs.column("rejected").to_pylist())] * 2,
    })
    deduped = pk.dedup(full, columns=["chosen", "rejected"])
    assert deduped.num_rows == pairs.num_rows
    path = pk.write_table(deduped, tmp_path / "full.parquet")
    strategy = Strategy(apply_chat_template=True)
    dataset = RewardDataset(load(path, strategy), tok, 4096, strategy, is_dpo=True,
                            num_processors=1)
    for i, row in enumerate(pairs.to_pylist()):
        assert dataset.prompts[i] == tok.apply_chat_template(
            row["prompt"], tokenize=False, add_generation_prompt=True)


def test_renamed_columns_load_with_the_key_flags(text_pairs, tok, tmp_path):
    pairs, _ = text_pairs
    renamed = pairs.rename_columns({"prompt": "question", "chosen": "good",
                                    "rejected": "bad"})
    path = pk.write_table(renamed, tmp_path / "renamed.parquet")
    strategy = Strategy(prompt_key="question", chosen_key="good", rejected_key="bad")
    dataset = RewardDataset(load(path, strategy), tok, 4096, strategy, num_processors=1)
    assert dataset.chosens == pk.materialize(pairs).column("chosen").to_pylist()
