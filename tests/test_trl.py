"""prefkit.trl.DPOTrainer against the real trl.DPOTrainer (trl 1.x from PyPI).

A tiny Llama built from a config trains for a few steps on pairs mined by prefkit from the
example corpus, in fp32; per step, the loss, the gradient norm and every metric TRL logs must
agree to 1e-4, for each loss kind, padded and padding-free, with the reference model run in
the loop or with reference log-probs precomputed (by TRL, and by ``pk.reference_logps`` for
prefkit's trainer). Plus: a longer run learns, the options prefkit does not implement are
refused by name, and a Parquet written by ``prefkit pairs`` trains in plain trl.DPOTrainer.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

# No telemetry ping from TRL's trainers (nothing here needs the hub: models come from configs).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import prefkit as pk
import prefkit.trl as pktrl
import pyarrow as pa
import torch
import trl
from datasets import Dataset, load_dataset
from tiny_lm import EXAMPLE, bpe_tokenizer, example_long, tiny_llama

STEPS = 3
TOLERANCE = {"rel": 1e-4, "abs": 1e-4}
#: The TRL loss kinds compared, with the options they need; "sft" uses no reference model.
KINDS = {
    "sigmoid": {},
    "ipo": {"beta": 0.5},
    "hinge": {},
    "robust": {"label_smoothing": 0.2},
}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def data():
    long = example_long()
    pairs = pk.mine_pairs(long, strategy="all_pairs")
    tokenizer = bpe_tokenizer(long.column("prompt").unique().to_pylist()
                              + long.column("response").to_pylist())
    text = Dataset.from_dict(pairs.select(["prompt", "chosen", "rejected"]).to_pydict())
    return tokenizer, text


def config(tmp_path, loss_type, steps=STEPS, **options):
    options.setdefault("gradient_checkpointing", False)
    return trl.DPOConfig(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4,
        learning_rate=1e-3, logging_steps=1, report_to="none", bf16=False,
        save_strategy="no", max_length=96, seed=0, dataloader_num_workers=0,
        loss_type=loss_type, **options)


def train(cls, tokenizer, dataset, args, reference=True):
    """Per-step logs of one run; a fresh policy each time, the initial one as reference."""
    model = tiny_llama(len(tokenizer), seed=0)
    ref_model = tiny_llama(len(tokenizer), seed=0) if reference else None
    trainer = cls(model, ref_model=ref_model, args=args, train_dataset=dataset,
                  processing_class=tokenizer)
    trainer.train()
    return trainer, [h for h in trainer.state.log_history if "loss" in h]


def assert_same_logs(expected, actual):
    assert len(expected) == len(actual) == STEPS
    for step, (want, got) in enumerate(zip(expected, actual)):
        assert set(want) == set(got), step
        for name, value in want.items():
            assert got[name] == pytest.approx(value, **TOLERANCE), (step, name)


def with_reference_columns(trl_trainer, tokenizer):
    """TRL's token ids, cut to max_length as its collator cuts them, with reference log-probs
    computed by pk.reference_logps."""
    room = trl_trainer.args.max_length
    ids = trl_trainer.train_dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
    ids = ids.map(lambda row: {name: row[name][:room - len(row["prompt_ids"])]
                               for name in ("chosen_ids", "rejected_ids")})
    table = pk.reference_logps(tiny_llama(len(tokenizer), seed=0), ids.data.table,
                               progress=False)
    # TRL computed its own with precompute_ref_log_probs=True: the two must agree.
    for name in ("ref_chosen_logps", "ref_rejected_logps"):
        assert table.column(name).to_pylist() == pytest.approx(
            trl_trainer.train_dataset[name], rel=1e-5, abs=1e-4)
    return Dataset.from_dict(table.to_pydict())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_matches_trl_with_reference_model(data, tmp_path, kind):
    tokenizer, text = data
    options = KINDS[kind]
    _, expected = train(trl.DPOTrainer, tokenizer, text, config(tmp_path, [kind], **options))
    for padding_free in (False, True):
        trainer, actual = train(pktrl.DPOTrainer, tokenizer, text,
                                config(tmp_path, [kind], padding_free=padding_free, **options))
        assert trainer.padding_free is padding_free
        assert_same_logs(expected, actual)
    assert expected[0]["loss"] == pytest.approx(
        {"sigmoid": 0.6931, "ipo": 1.0, "hinge": 1.0, "robust": 0.6931}[kind], abs=1e-3)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_matches_trl_with_precomputed_reference(data, tmp_path, kind):
    tokenizer, text = data
    options = KINDS[kind]
    reference, expected = train(trl.DPOTrainer, tokenizer, text,
                                config(tmp_path, [kind], precompute_ref_log_probs=True,
                                       **options), reference=False)
    cached = with_reference_columns(reference, tokenizer)
    for padding_free in (False, True):
        # No reference model, no precompute flag: the columns are enough.
        trainer, actual = train(pktrl.DPOTrainer, tokenizer, cached,
                                config(tmp_path, [kind], padding_free=padding_free, **options),
                                reference=False)
        assert trainer.ref_model is None
        assert_same_logs(expected, actual)


@pytest.mark.parametrize("loss_type,options", [
    (["sft"], {}),                                       # reference-free
    (["sigmoid", "sft"], {"loss_weights": [1.0, 0.5]}),  # RPO: DPO + alpha * NLL
    (["sigmoid"], {"ld_alpha": 0.5}),                    # LD-DPO
    (["exo_pair", "apo_zero"], {"label_smoothing": 1e-3}),
    (["sigmoid"], {"gradient_checkpointing": True}),     # TRL's default
], ids=["sft", "rpo", "ld_alpha", "exo+apo", "checkpointing"])
def test_matches_trl_other_losses(data, tmp_path, loss_type, options):
    tokenizer, text = data
    _, expected = train(trl.DPOTrainer, tokenizer, text, config(tmp_path, loss_type, **options))
    for padding_free in (False, True):
        _, actual = train(pktrl.DPOTrainer, tokenizer, text,
                          config(tmp_path, loss_type, padding_free=padding_free, **options))
        assert_same_logs(expected, actual)


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "packed"])
def test_evaluate_matches_trl(data, tmp_path, padding_free):
    tokenizer, text = data
    results = []
    for cls, options in ((trl.DPOTrainer, {}), (pktrl.DPOTrainer, {"padding_free": padding_free})):
        trainer = cls(tiny_llama(len(tokenizer), seed=0), ref_model=tiny_llama(len(tokenizer)),
                      args=config(tmp_path, ["sigmoid"], per_device_eval_batch_size=8, **options),
                      train_dataset=text, eval_dataset=text, processing_class=tokenizer)
        trainer.train()
        results.append({k: v for k, v in trainer.evaluate().items()
                        if not k.endswith(("runtime", "per_second"))})
    assert results[0]["eval_rewards/margins"] != 0.0
    assert results[1] == pytest.approx(results[0], **TOLERANCE)


def test_twenty_packed_steps_learn(data, tmp_path):
    tokenizer, _ = data
    pairs = pk.mine_pairs(example_long(), strategy="all_pairs")
    tokenized = pk.tokenize_pairs(pairs, tokenizer, max_length=96)
    tokenized = pk.reference_logps(tiny_llama(len(tokenizer), seed=0), tokenized,
                                   packed=True, progress=False)
    dataset = Dataset.from_dict(tokenized.select(
        ["prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps"]
    ).to_pydict())
    trainer, logs = train(pktrl.DPOTrainer, tokenizer, dataset,
                          config(tmp_path, ["sigmoid"], steps=20, padding_free=True),
                          reference=False)
    losses = [h["loss"] for h in logs]
    assert len(losses) == 20 and trainer.ref_model is None
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05
    assert logs[-1]["rewards/accuracies"] > 0.5


def test_unsupported_options_are_named(data, tmp_path):
    tokenizer, text = data
    model = tiny_llama(len(tokenizer))
    cases = [
        (["aot"], {}, "loss_type='aot'"),
        (["sigmoid"], {"f_divergence_type": "js_divergence"}, "f_divergence_type"),
        (["sigmoid"], {"use_weighting": True}, "use_weighting"),
    ]
    for loss_type, options, name in cases:
        with pytest.raises(pk.PrefkitError, match=name):
            pktrl.DPOTrainer(model, args=config(tmp_path, loss_type, **options),
                             train_dataset=text, processing_class=tokenizer)
    with pytest.raises(pk.PrefkitError, match="compute_metrics"):
        pktrl.DPOTrainer(model, args=config(tmp_path, ["sigmoid"]), train_dataset=text,
                         processing_class=tokenizer, compute_metrics=lambda p: {})
    cached = Dataset.from_dict({**text.to_dict(), "ref_chosen_logps": [0.0] * len(text),
                                "ref_rejected_logps": [0.0] * len(text)})
    with pytest.raises(pk.PrefkitError, match="ld_alpha"):
        pktrl.DPOTrainer(model, args=config(tmp_path, ["sigmoid"], ld_alpha=0.5),
                         train_dataset=cached, processing_class=tokenizer)


def test_cli_parquet_trains_in_plain_trl(data, tmp_path):
    tokenizer, _ = data
    out = tmp_path / "pairs.parquet"
    subprocess.run([sys.executable, "-m", "prefkit.cli", "pairs", str(EXAMPLE),
                    "--completions", "completions", "-o", str(out)], check=True,
                   capture_output=True)
    # What a TRL user writes: no conversion code between prefkit's file and the trainer.
    dataset = load_dataset("parquet", data_files=str(out), split="train",
                           cache_dir=str(tmp_path / "cache"))
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)
    _, logs = train(trl.DPOTrainer, tokenizer, dataset, config(tmp_path, ["sigmoid"], steps=2))
    assert len(logs) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in logs)


def test_packed_collator_truncates_like_trl():
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    rows = [{"prompt_ids": [1, 5, 6], "chosen_ids": [7, 8, 9, 2], "rejected_ids": [4, 2]},
            {"prompt_ids": [1], "chosen_ids": [3, 2], "rejected_ids": [9, 9, 9, 9, 2]}]
    padded = DataCollatorForPreference(pad_token_id=0, max_length=5)(rows)
    packed = pktrl.PackedPreferenceCollator(pad_token_id=0, max_length=5)(rows)
    want = padded["input_ids"].masked_fill(padded["completion_mask"] == 0, -100)[:, 1:]
    got = packed["completion_labels"]
    assert [[t for t in r if t != -100] for r in want.tolist()] == \
        [[t for t in r if t != -100] for r in got.tolist()]
    assert int(packed["sequence_tokens"]) == int(padded["attention_mask"].sum())
    # Each prompt once: (3 + 2 + 2) + (1 + 2 + 4) tokens.
    assert packed["input_ids"].shape == (1, 14)


def test_example_script_learns(monkeypatch):
    # As `python examples/trl_dpo.py` runs it: its folder first on the path (it imports the
    # corpus, tokenizer and model of examples/train_dpo.py).
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    spec = importlib.util.spec_from_file_location("trl_dpo", EXAMPLE.parent / "trl_dpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--steps", "12", "--packed", "--quiet"])
    losses = [h["loss"] for h in result["history"]]
    assert result["ref_model"] is None and len(losses) == 12
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.05


def test_import_prefkit_does_not_import_trl():
    code = "import sys, prefkit; assert 'trl' not in sys.modules and 'prefkit.trl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


# ---------------------------------------------------------------- per-pair targets (sppo, soft)


def target_dataset(tokenizer, target, rejected_target=None):
    """Tokenised pairs with reference log-probs of the initial policy and target columns."""
    pairs = pk.mine_pairs(example_long(), strategy="all_pairs")
    tokenized = pk.tokenize_pairs(pairs, tokenizer, max_length=96)
    ids = tokenized.select(["prompt_ids", "chosen_ids", "rejected_ids"])
    table = pk.reference_logps(tiny_llama(len(tokenizer), seed=0), ids, progress=False)
    columns = table.to_pydict()
    n = table.num_rows
    columns["target"] = target(n)
    if rejected_target is not None:
        columns["rejected_target"] = rejected_target(n)
    return Dataset.from_dict(columns)


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "packed"])
def test_sppo_targets_from_the_dataset_set_the_first_loss(data, tmp_path, padding_free):
    """At step 0 the policy is the reference (c = r = 0), so the SPPO loss is the targets'
    term alone: (eta (P_w - 1/2))^2 + (eta (P_l - 1/2))^2, eta = 1/beta."""
    tokenizer, _ = data
    beta, p_w, p_l = 0.5, 0.8, 0.3
    dataset = target_dataset(tokenizer, lambda n: [p_w] * n, lambda n: [p_l] * n)
    _, logs = train(pktrl.DPOTrainer, tokenizer, dataset,
                    config(tmp_path, ["sppo"], steps=2, beta=beta, padding_free=padding_free),
                    reference=False)
    eta = 1 / beta
    assert logs[0]["loss"] == pytest.approx((eta * (p_w - 0.5)) ** 2 + (eta * (p_l - 0.5)) ** 2,
                                            rel=1e-5)
    assert len(logs) == 2 and logs[1]["rewards/chosen"] != 0.0  # the policy moved


@pytest.mark.parametrize("kind", ["soft_sigmoid", "sppo"])
def test_per_pair_targets_reach_the_loss_as_the_formula_says(data, tmp_path, kind):
    """A policy different from the reference: the trainer's loss on a batch equals the formula
    with that batch's own target values, which differ from pair to pair."""
    tokenizer, _ = data
    dataset = target_dataset(tokenizer, lambda n: [(i % 5) / 4 for i in range(n)],
                             lambda n: [1 - (i % 3) / 2 for i in range(n)])
    policy = tiny_llama(len(tokenizer), seed=1)
    trainer = pktrl.DPOTrainer(policy, args=config(tmp_path, [kind], beta=0.3),
                               train_dataset=dataset, processing_class=tokenizer)
    rows = [trainer.train_dataset[i] for i in range(5)]
    batch = trainer.data_collator(rows)
    assert batch["target"].tolist() == [r["target"] for r in rows]
    loss = trainer.compute_loss(trainer.model, batch)

    # The policy's own log-probs of the same five rows, computed apart from the trainer.
    ids = pa.table({name: [row[name] for row in rows]
                    for name in ("prompt_ids", "chosen_ids", "rejected_ids")})
    logps = pk.reference_logps(tiny_llama(len(tokenizer), seed=1), ids, progress=False)
    c = torch.tensor(logps["ref_chosen_logps"].to_pylist(), dtype=torch.float64) - \
        torch.tensor([r["ref_chosen_logps"] for r in rows], dtype=torch.float64)
    r = torch.tensor(logps["ref_rejected_logps"].to_pylist(), dtype=torch.float64) - \
        torch.tensor([r["ref_rejected_logps"] for r in rows], dtype=torch.float64)
    t = torch.tensor([row["target"] for row in rows], dtype=torch.float64)
    tl = torch.tensor([row["rejected_target"] for row in rows], dtype=torch.float64)
    beta = 0.3
    if kind == "soft_sigmoid":
        z = beta * (c - r)
        want = -(t * torch.log(torch.sigmoid(z)) + (1 - t) * torch.log(torch.sigmoid(-z)))
    else:
        want = (c - (t - 0.5) / beta) ** 2 + (r - (tl - 0.5) / beta) ** 2
    assert loss.item() == pytest.approx(want.mean().item(), rel=1e-4)
    # Another target changes the loss exactly as the formula does.
    batch["target"] = 1 - batch["target"]
    flipped = trainer.compute_loss(trainer.model, batch)
    t = 1 - t
    if kind == "soft_sigmoid":
        want = -(t * torch.log(torch.sigmoid(z)) + (1 - t) * torch.log(torch.sigmoid(-z)))
    else:
        want = (c - (t - 0.5) / beta) ** 2 + (r - (tl - 0.5) / beta) ** 2
    assert flipped.item() == pytest.approx(want.mean().item(), rel=1e-4)
    assert flipped.item() != pytest.approx(loss.item(), rel=1e-3)


def test_target_loss_types_need_the_target_column(data, tmp_path):
    tokenizer, text = data
    with pytest.raises(pk.PrefkitError, match="'target' column in train_dataset"):
        pktrl.DPOTrainer(tiny_llama(len(tokenizer)), args=config(tmp_path, ["soft_sigmoid"]),
                         train_dataset=text, processing_class=tokenizer)
