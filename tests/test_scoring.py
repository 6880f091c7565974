"""pk.score / pk.score_pairs against the one-example-at-a-time unpadded forward of tiny models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import prefkit as pk
from scoring_models import build_model, corpus

ROWS = 40


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the scores of runs with equal settings are then bit-identical, and a
    busy 2-core machine does not make torch's thread pool spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward-models")
    return {
        "llama": build_model(root / "llama"),
        "bert": build_model(root / "bert", "bert", seed=1),
        "eos": build_model(root / "eos", pad_is_eos=True, seed=2),
        "multi": build_model(root / "multi", num_labels=3, seed=3),
        "plain": build_model(root / "plain", chat_template=False, seed=4),
    }


@pytest.fixture(scope="module")
def data():
    return corpus(ROWS, seed=7)


def reference_scores(folder: Path, table: pa.Table, template: bool) -> np.ndarray:
    """Each row alone, unpadded, through the model's own forward (no pad id, so transformers
    reads the last token), tokenised independently of prefkit."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    model.config.pad_token_id = None
    out = []
    with torch.inference_mode():
        for p, r in zip(table.column("prompt").to_pylist(), table.column("response").to_pylist()):
            if template:
                chat = [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                text = tokenizer.apply_chat_template(chat, tokenize=False)
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            else:
                ids = tokenizer(p + r)["input_ids"]
            out.append(model(input_ids=torch.tensor([ids])).logits[0].float().numpy())
    return np.array(out, dtype=np.float64)


def scores_of(table: pa.Table, column: str = "score") -> np.ndarray:
    return table.column(column).to_numpy()


@pytest.mark.parametrize("name, template", [("llama", True), ("bert", False), ("plain", False)])
def test_equals_one_at_a_time_unpadded_forward(models, data, name, template):
    out = pk.score(data, models[name], progress=False, max_tokens_per_batch=256)
    assert out.column_names == ["prompt", "response", "id", "score"]
    assert out.column("id").to_pylist() == list(range(ROWS))
    expected = reference_scores(models[name], data, template)[:, 0]
    np.testing.assert_allclose(scores_of(out), expected, rtol=0, atol=1e-5)
    report = pk.report_of(out)
    assert report["op"] == "score" and report["rows_in"] == report["rows_out"] == ROWS
    assert report["batches"] > 1 and report["tokens"] <= report["padded_tokens"]
    assert report["chat_template"] is template


def test_pad_equal_to_eos_reads_the_last_real_token(models, data):
    """The chat template ends every row with eos; with pad == eos transformers' own pooling
    would read the token before it (transformers#35352). prefkit reads the mask."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["eos"])
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    out = pk.score(data, models["eos"], progress=False, max_tokens_per_batch=200)
    expected = reference_scores(models["eos"], data, True)[:, 0]
    np.testing.assert_allclose(scores_of(out), expected, rtol=0, atol=1e-5)
    # The bug is real on this model: transformers' own padded batch gives other scores.
    model = AutoModelForSequenceClassification.from_pretrained(models["eos"]).eval()
    chats = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
        for p, r in zip(data.column("prompt").to_pylist()[:4], data.column("response").to_pylist()[:4])
    ]
    texts = tokenizer.apply_chat_template(chats, tokenize=False)
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = model(**batch).logits[:, 0].numpy()
    assert np.abs(theirs - expected[:4]).max() > 1e-3


def test_independent_of_batch_budget_and_input_order(models, data):
    base = scores_of(pk.score(data, models["llama"], progress=False, max_tokens_per_batch=32))
    for budget in (100, 1000, 16384):
        other = scores_of(pk.score(data, models["llama"], progress=False, max_tokens_per_batch=budget))
        np.testing.assert_allclose(other, base, rtol=0, atol=1e-5)
    order = np.random.default_rng(0).permutation(ROWS)
    shuffled = pk.score(data.take(order), models["llama"], progress=False, max_tokens_per_batch=300)
    assert shuffled.column("id").to_pylist() == order.tolist()
    np.testing.assert_allclose(scores_of(shuffled), base[order], rtol=0, atol=1e-5)


def test_multi_objective_head_gives_one_column_per_output(models, data):
    out = pk.score(data, models["multi"], progress=False, output="reward")
    assert out.column_names[-3:] == ["reward_0", "reward_1", "reward_2"]
    expected = reference_scores(models["multi"], data, True)
    got = np.stack([scores_of(out, f"reward_{j}") for j in range(3)], axis=1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_loaded_model_callable_head_and_two_devices(models, data):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = models["llama"]
    expected = scores_of(pk.score(data, folder, progress=False))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    loaded = pk.score(data, model, tokenizer=tokenizer, progress=False)
    np.testing.assert_allclose(scores_of(loaded), expected, rtol=0, atol=1e-5)

    def head(input_ids, attention_mask):
        # A custom head: the last real token's hidden state through the score layer, doubled.
        hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(1) - 1
        return 2 * model.score(hidden[torch.arange(len(last)), last])[:, 0]

    custom = pk.score(data, head, tokenizer=tokenizer, progress=False, device="cpu")
    np.testing.assert_allclose(scores_of(custom), 2 * expected, rtol=0, atol=2e-5)
    # Data-parallel path (one replica per device, a worker thread each), run on two CPU "devices".
    two = pk.score(data, folder, progress=False, device=["cpu", "cpu"], max_tokens_per_batch=64)
    np.testing.assert_allclose(scores_of(two), expected, rtol=0, atol=1e-5)
    assert pk.report_of(two)["devices"] == ["cpu", "cpu"]


def test_messages_prompts_are_used_as_they_are(models, data):
    messages = pa.array(
        [[{"role": "user", "content": p}] for p in data.column("prompt").to_pylist()]
    )
    as_messages = data.set_column(0, "prompt", messages)
    a = scores_of(pk.score(data, models["llama"], progress=False))
    b = scores_of(pk.score(as_messages, models["llama"], progress=False))
    np.testing.assert_array_equal(a, b)


def test_score_pairs_one_and_several_models(models, data):
    prompts = data.column("prompt").to_pylist()
    responses = data.column("response").to_pylist()
    pairs = pa.table({
        "prompt": prompts[:10],
        "chosen": responses[:10],
        "rejected": responses[10:20],
        "margin": [0.0] * 10,
    })
    out = pk.score_pairs(pairs, models["llama"], progress=False)
    single = scores_of(pk.score(data, models["llama"], progress=False))
    long_chosen = pa.table({"prompt": prompts[:10], "response": responses[:10]})
    long_rejected = pa.table({"prompt": prompts[:10], "response": responses[10:20]})
    chosen = scores_of(pk.score(long_chosen, models["llama"], progress=False))
    rejected = scores_of(pk.score(long_rejected, models["llama"], progress=False))
    np.testing.assert_allclose(chosen, single[:10], rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores_of(out, "score_chosen"), chosen, rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores_of(out, "score_rejected"), rejected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores_of(out, "margin"), chosen - rejected, rtol=0, atol=1e-5)
    assert out.column_names == ["prompt", "chosen", "rejected", "margin", "score_chosen",
                                "score_rejected"]

    several = pk.score_pairs(pairs, {"a": models["llama"], "b": models["eos"]}, progress=False)
    for name in ("a", "b"):
        assert f"score_chosen_{name}" in several.column_names
        assert f"score_rejected_{name}" in several.column_names
    np.testing.assert_allclose(scores_of(several, "score_chosen_a"), chosen, rtol=0, atol=1e-5)
    mean = (scores_of(several, "score_chosen_a") + scores_of(several, "score_chosen_b")) / 2
    np.testing.assert_allclose(scores_of(several, "score_chosen"), mean, rtol=0, atol=1e-12)
    assert sorted(pk.report_of(several)["models"]) == ["a", "b"]


def test_checkpoint_resumes_after_sigkill_with_every_row_scored_once(models, tmp_path):
    rows = 1500
    data = corpus(rows, seed=11)
    source = tmp_path / "in.parquet"
    pk.write_table(data, source)
    output = tmp_path / "out.parquet"
    checkpoint = tmp_path / "ckpt"
    budget = "48"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "prefkit.cli", "score", str(source), "-o", str(output),
        "--model", str(models["llama"]), "--checkpoint", str(checkpoint),
        "--max-tokens-per-batch", budget, "-q",
    ]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while len(list(checkpoint.glob("rows-*.parquet"))) < 5:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no shards written in time"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not output.exists()
    shards = sorted(checkpoint.glob("rows-*.parquet"))
    done = np.concatenate([pq.read_table(s).column("row").to_numpy() for s in shards])
    assert 0 < len(done) < rows and len(np.unique(done)) == len(done)

    resumed = pk.score(data, models["llama"], checkpoint=checkpoint, progress=False,
                       max_tokens_per_batch=int(budget))
    report = pk.report_of(resumed)
    assert report["rows_resumed"] == len(done)
    assert report["rows_scored"] == rows - len(done)
    shards = sorted(checkpoint.glob("rows-*.parquet"))
    every = np.concatenate([pq.read_table(s).column("row").to_numpy() for s in shards])
    assert sorted(every.tolist()) == list(range(rows))  # each row in exactly one shard

    fresh = pk.score(data, models["llama"], progress=False, max_tokens_per_batch=int(budget))
    np.testing.assert_array_equal(scores_of(resumed), scores_of(fresh))
    assert resumed.column("id").to_pylist() == list(range(rows))
    # A complete checkpoint resumes with nothing left to compute.
    again = pk.score(data, models["llama"], checkpoint=checkpoint, progress=False,
                     max_tokens_per_batch=int(budget))
    assert pk.report_of(again)["rows_scored"] == 0
    np.testing.assert_array_equal(scores_of(again), scores_of(fresh))


def test_cli_scores_and_prints_the_accounting(models, data, tmp_path):
    source = tmp_path / "in.jsonl"
    pk.write_table(data, source)
    output = tmp_path / "out.parquet"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "score", str(source), "-o", str(output),
         "--model", str(models["llama"]), "--resume"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert f"wrote {ROWS} rows" in done.stdout
    assert "scoring" in done.stderr  # the progress bar
    assert (tmp_path / "out.parquet.checkpoint" / "manifest.json").exists()
    written = pq.read_table(output)
    expected = scores_of(pk.score(data, models["llama"], progress=False))
    np.testing.assert_allclose(scores_of(written), expected, rtol=0, atol=1e-5)
    assert pk.report_of(written)["op"] == "score"


def test_bad_input_names_the_column(models, data, tmp_path):
    folder = models["llama"]
    with pytest.raises(pk.PrefkitError, match=r"'answer'.*not found"):
        pk.score(data, folder, response="answer", progress=False)
    with pytest.raises(pk.PrefkitError, match=r"'id'.*int64"):
        pk.score(data, folder, response="id", progress=False)
    nulls = data.set_column(1, "response", pa.array(["a"] * (ROWS - 1) + [None]))
    with pytest.raises(pk.PrefkitError, match=rf"'response'.*null at row {ROWS - 1}"):
        pk.score(nulls, folder, progress=False)
    with pytest.raises(pk.PrefkitError, match="max_tokens_per_batch"):
        pk.score(data, folder, max_tokens_per_batch=0, progress=False)
    with pytest.raises(pk.PrefkitError, match="tokenizer is required"):
        pk.score(data, lambda ids, mask: ids.sum(1), progress=False)
    checkpoint = tmp_path / "ckpt"
    pk.score(data.slice(0, 5), folder, checkpoint=checkpoint, progress=False)
    with pytest.raises(pk.PrefkitError, match="another run"):
        pk.score(data.slice(0, 6), folder, checkpoint=checkpoint, progress=False)
    with pytest.raises(pk.PrefkitError, match="'chosen'"):
        pk.score_pairs(data, folder, progress=False)


def test_empty_table_and_existing_score_column(models, data):
    empty = pk.score(data.slice(0, 0), models["llama"], progress=False)
    assert empty.num_rows == 0 and empty.column_names[-1] == "score"
    rescored = pk.score(data.append_column("score", pa.array([0.0] * ROWS)), models["llama"],
                        progress=False)
    assert rescored.column_names.count("score") == 1
    assert pk.report_of(rescored)["replaced_columns"] == ["score"]


def test_import_prefkit_does_not_import_torch():
    code = "import sys, prefkit; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
