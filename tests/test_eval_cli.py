"""``prefkit eval rewards`` / ``prefkit eval ranking``: JSON on stdout equal to the library calls,
``--report`` folders with real PNG plots, and clear errors for bad arguments."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import prefkit as pk
import pyarrow as pa
import pytest
from prefkit.cli import main
from prefkit.eval.report import RANKING_PLOTS, REWARDS_PLOTS
from scoring_models import WORDS, build_model
from tiny_lm import bpe_tokenizer, tiny_llama

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A generated pair set with subsets, two tiny reward models and two tiny causal LMs, all
    saved to folders the CLI loads."""
    root = tmp_path_factory.mktemp("eval_cli")
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    rows = [{"prompt": text(rng.randint(2, 6)), "chosen": text(rng.randint(1, 14)),
             "rejected": text(rng.randint(1, 14)), "subset": rng.choice(["chat", "code", "math"])}
            for _ in range(36)]
    pairs = pa.Table.from_pylist(rows)
    path = root / "pairs.jsonl"
    pk.write_table(pairs, str(path))
    rm_a, rm_b = build_model(root / "rm_a", seed=0), build_model(root / "rm_b", seed=1)
    tokenizer = bpe_tokenizer([r["prompt"] + " " + r["chosen"] + " " + r["rejected"]
                               for r in rows], vocab_size=300)
    lms = {}
    for name, seed in (("policy", 0), ("ref", 1)):
        folder = root / name
        tiny_llama(len(tokenizer), seed=seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        lms[name] = folder
    return {"root": root, "pairs": pairs, "path": str(path), "rm_a": rm_a, "rm_b": rm_b, **lms}


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    """``prefkit ARGV``: the exit status, the JSON on stdout (None when there is none) and
    stderr."""
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, json.loads(captured.out) if captured.out.strip() else None, captured.err


def assert_png(path: Path) -> None:
    """A non-empty, real PNG image: the signature, an IHDR with width and height > 0, and
    matplotlib decodes it to pixels of that size."""
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert len(data) > 1000, path
    assert data[:8] == PNG and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0, path
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (height, width), path


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and a == pytest.approx(b, rel=1e-6, abs=1e-9)
    return a == b


def test_eval_rewards_json_matches_evaluate_rewards(setup, capsys):
    status, out, err = run(capsys, "eval", "rewards", setup["path"], "--model", setup["rm_a"],
                           setup["rm_b"], "--subset-column", "subset", "--bootstrap", 200,
                           "--seed", 3, "--max-tokens-per-batch", 512)
    assert status == 0
    assert "scoring" in err  # the progress bar of pk.score_pairs, on stderr
    expected = pk.evaluate_rewards(setup["pairs"], {"rm_a": str(setup["rm_a"]),
                                                    "rm_b": str(setup["rm_b"])},
                                   subset="subset", bootstrap=200, seed=3,
                                   max_tokens_per_batch=512)
    rows = expected.to_pylist()
    assert len(out["rows"]) == len(rows) == 2 * 4  # overall + 3 subsets, per model
    for got, want in zip(out["rows"], rows):
        assert set(got) == set(want)
        for key in want:
            assert same(got[key], want[key]), (key, got, want)
    record = pk.report_of(expected)
    report = out["report"]
    assert report["op"] == "evaluate_rewards" and report["rows_in"] == 36
    for name in ("rm_a", "rm_b"):
        got, want = report["models"][name], record["models"][name]
        assert same(got["calibration"]["ece"], want["calibration"]["ece"])
        assert [b["pairs"] for b in got["length_buckets"]] == [
            b["pairs"] for b in want["length_buckets"]]
    assert same(report["agreement"][0]["agreement"], record["agreement"][0]["agreement"])


def test_eval_rewards_report_has_the_three_plots(setup, capsys, tmp_path):
    out_dir = tmp_path / "report"
    status, out, _ = run(capsys, "eval", "rewards", setup["path"], "--model", setup["rm_a"],
                         "--subset-column", "subset", "--bootstrap", 100, "--report", out_dir,
                         "-q")
    assert status == 0 and out["rows"][0]["model"] == "rm_a"
    text = (out_dir / "report.md").read_text()
    assert text.startswith("# prefkit eval rewards")
    assert "## Accuracy" in text and "Calibration (ECE" in text and "math" in text
    for name in REWARDS_PLOTS:
        assert f"]({name})" in text
        assert_png(out_dir / name)


def test_eval_ranking_json_matches_ranking_accuracy(setup, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    status, out, err = run(capsys, "eval", "ranking", setup["path"], "--model", setup["policy"],
                           "--ref", setup["ref"], "--beta", 0.5, "--alpha", 0.8)
    assert status == 0
    assert "reference log-probs" in err  # the progress bar, on stderr
    policy = AutoModelForCausalLM.from_pretrained(setup["policy"]).eval()
    ref = AutoModelForCausalLM.from_pretrained(setup["ref"]).eval()
    tokenized = pk.tokenize_pairs(setup["pairs"], AutoTokenizer.from_pretrained(setup["policy"]))
    expected = pk.ranking_accuracy(policy, tokenized, ref_model=ref, beta=0.5, alpha=0.8)
    record = pk.report_of(expected)
    for key in ("pairs", "ranking_accuracy", "ref_ranking_accuracy",
                "idealized_ranking_accuracy", "ties"):
        assert same(out["report"][key], record[key]), key
    rows = expected.drop_columns(["prompt_ids", "chosen_ids", "rejected_ids"]).to_pylist()
    assert len(out["rows"]) == len(rows) == 36
    for got, want in zip(out["rows"], rows):
        assert set(got) == set(want)
        for key in want:
            assert same(got[key], want[key]), (key, got, want)


def test_eval_ranking_normalized_packed_and_report(setup, capsys, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = tmp_path / "ranking"
    status, out, _ = run(capsys, "eval", "ranking", setup["path"], "--model", setup["policy"],
                         "--ref", setup["ref"], "--normalize", "--packed", "--report", out_dir,
                         "-q")
    assert status == 0
    policy = AutoModelForCausalLM.from_pretrained(setup["policy"]).eval()
    ref = AutoModelForCausalLM.from_pretrained(setup["ref"]).eval()
    tokenized = pk.tokenize_pairs(setup["pairs"], AutoTokenizer.from_pretrained(setup["policy"]))
    record = pk.report_of(pk.ranking_accuracy(policy, tokenized, ref_model=ref, normalize=True,
                                              packed=True))
    assert same(out["report"]["ranking_accuracy"], record["ranking_accuracy"])
    assert same(out["report"]["ref_ranking_accuracy"], record["ref_ranking_accuracy"])
    assert "idealized_ranking_accuracy" not in out["report"]  # no --alpha
    text = (out_dir / "report.md").read_text()
    assert "per-token mean log-probs" in text
    for name in RANKING_PLOTS:
        assert f"]({name})" in text
        assert_png(out_dir / name)


def test_ranking_margins_follow_the_ranking(setup):
    """The histogram's margins have the sign that decided ``ranked_correctly``."""
    from prefkit.eval.report import ranking_margins
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = AutoModelForCausalLM.from_pretrained(setup["policy"]).eval()
    tokenized = pk.tokenize_pairs(setup["pairs"], AutoTokenizer.from_pretrained(setup["policy"]))
    for normalize in (False, True):
        result = pk.ranking_accuracy(policy, tokenized, normalize=normalize)
        margins = ranking_margins(result)
        ranked = result.column("ranked_correctly").to_pylist()
        assert [1.0 if m > 0 else 0.0 if m < 0 else 0.5 for m in margins] == ranked


def test_eval_without_a_report_writes_no_files(setup, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(capsys, "eval", "rewards", setup["path"], "--model", setup["rm_a"],
                         "--bootstrap", 0, "-q")
    assert status == 0 and out["rows"][0]["ci_low"] is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rewards", "{path}", "--model", "{rm_a}", "--subset-column", "nope"],
         "subset column 'nope' not found"),
        (["rewards", "{path}", "--model", "{rm_a}", "--bootstrap", "-1"], "--bootstrap"),
        (["rewards", "{path}", "--model", "{rm_a}", "{rm_a}"], "both named 'rm_a'"),
        (["ranking", "{path}", "--model", "{root}/missing"], "is not a model folder"),
        (["ranking", "{path}", "--model", "{policy}", "--beta", "0"], "--beta must be > 0"),
        (["ranking", "{path}", "--model", "{policy}", "--alpha", "0.8"],
         "alpha needs reference log-probs"),
    ],
)
def test_bad_arguments_give_a_clear_error(setup, capsys, argv, message):
    argv = [a.format(**{k: v for k, v in setup.items() if k != "pairs"}) for a in argv]
    status, out, err = run(capsys, "eval", *argv, "-q")
    assert status == 2 and out is None
    last = err.strip().splitlines()[-1]  # after any progress of transformers' loading
    assert last.startswith(f"prefkit eval {argv[0]}: error:") and message in last, err


@pytest.mark.parametrize(
    "argv",
    [["eval"], ["eval", "rewards", "{path}"], ["eval", "ranking", "{path}"],
     ["eval", "judges", "{path}"], ["eval", "ranking", "{path}", "--model", "x", "--beta", "b"]],
)
def test_bad_usage_exits_with_argparse_error(setup, capsys, argv):
    argv = [a.format(path=setup["path"]) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: prefkit eval" in capsys.readouterr().err
