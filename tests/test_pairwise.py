"""pk.score_pairwise: cross-encoder, preference-embedding (GPM) and callable judges, checked
against one-pair-at-a-time forwards of tiny models and against tests/reference.py."""

from __future__ import annotations

import functools
import random

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reference
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from scoring_models import WORDS, build_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: equal settings give bit-identical runs, and a busy machine is not
    made busier by torch's thread pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("judges")
    return {
        "ce": build_model(root / "ce", seed=11),
        "ce2": build_model(root / "ce2", num_labels=2, seed=12),
        "bert": build_model(root / "bert", "bert", seed=13),
        "gpm": build_model(root / "gpm", num_labels=4, seed=14),
        "odd": build_model(root / "odd", num_labels=3, seed=15),
    }


def samples(prompts: int = 3, k: int = 4, seed: int = 0) -> pa.Table:
    """``prompts`` prompts with ``k`` responses each (one prompt has k - 1), varied lengths."""
    rng = random.Random(seed)
    rows = []
    for p in range(prompts):
        prompt = " ".join(rng.choices(WORDS, k=rng.randint(1, 6)))
        for _ in range(k - (p == 1)):
            rows.append({"prompt": prompt,
                         "response": " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))})
    return pa.Table.from_pylist(rows)


def matrices(table: pa.Table) -> list[np.ndarray]:
    return [np.array(m) for m in table.column("win_prob").to_pylist()]


def by_rows(long: pa.Table, rows: list[int] | None = None) -> dict:
    """``(input row a, input row b) -> P`` of a long result (``rows`` maps row numbers of a
    shuffled input back to the original ones)."""
    out = {}
    for r in long.to_pylist():
        a, b = r["row_a"], r["row_b"]
        if rows is not None:
            a, b = rows[a], rows[b]
        out[a, b] = r["win_prob"]
    return out


@functools.cache
def loaded(folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    return model, AutoTokenizer.from_pretrained(str(folder))


def forward_one(folder, text: str) -> np.ndarray:
    """One sequence alone, unpadded, through the model's own forward (no prefkit code)."""
    model, tokenizer = loaded(folder)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits[0].double().numpy()


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def assert_consistent(m: np.ndarray) -> None:
    assert m.shape[0] == m.shape[1]
    np.testing.assert_allclose(m + m.T, 1.0, atol=1e-12)
    np.testing.assert_array_equal(np.diag(m), 0.5)
    assert ((m >= 0) & (m <= 1)).all()


# --------------------------------------------------------------------------------------------
# Cross-encoder
# --------------------------------------------------------------------------------------------


def test_cross_encoder_averages_both_orders_of_the_models_own_forward(models):
    data = samples(2, 3)
    out = pk.score_pairwise(data, models["ce"], progress=False)
    rows = data.to_pylist()
    for m, members in zip(matrices(out), out.column("rows").to_pylist()):
        assert_consistent(m)
        for i, a in enumerate(members):
            for j, b in enumerate(members):
                if i >= j:
                    continue

                def p(x, y):
                    text = pk.pairwise.DEFAULT_TEMPLATE.format(
                        prompt=rows[x]["prompt"], a=rows[x]["response"], b=rows[y]["response"])
                    return sigmoid(forward_one(models["ce"], text)[0])

                expected = (p(a, b) + 1 - p(b, a)) / 2
                assert abs(m[i, j] - expected) < 1e-5
    report = pk.report_of(out)
    assert report["judge"] == "cross_encoder"
    assert report["pairs_judged"] == report["forward_sequences"] == 3 * 2 + 2 * 1
    assert report["rows_used"] == data.num_rows


def test_two_labels_one_order_reads_label_zero_as_a_wins(models):
    data = samples(1, 4)
    template = "{a} versus {b} for {prompt}"
    out = pk.score_pairwise(
        data, models["ce2"], both_orders=False, template=template, progress=False
    )
    (m,) = matrices(out)
    assert_consistent(m)
    rows = data.to_pylist()
    for i in range(4):
        for j in range(i + 1, 4):
            text = template.format(prompt=rows[i]["prompt"], a=rows[i]["response"],
                                   b=rows[j]["response"])
            logits = forward_one(models["ce2"], text)
            softmax0 = np.exp(logits[0]) / np.exp(logits).sum()
            assert abs(m[i, j] - softmax0) < 1e-5
    # One order: K(K-1)/2 forward passes.
    assert pk.report_of(out)["forward_sequences"] == 6


def test_independent_of_batch_size_and_input_order(models):
    data = samples(3, 4, seed=3)
    base = by_rows(pk.score_pairwise(data, models["ce"], form="long", progress=False))
    order = list(range(data.num_rows))
    random.Random(1).shuffle(order)
    shuffled = data.take(pa.array(order))
    for options in ({"batch_size": 1}, {"max_tokens_per_batch": 64}, {"batch_size": 7}):
        out = pk.score_pairwise(shuffled, models["ce"], form="long", progress=False, **options)
        got = by_rows(out, order)
        assert got.keys() == base.keys()
        for key, value in base.items():
            assert abs(got[key] - value) < 1e-5, (options, key)
    # Batches really changed with the options.
    assert pk.report_of(
        pk.score_pairwise(data, models["ce"], batch_size=1, progress=False)
    )["batches"] == len(base)


def test_two_devices_give_the_same_matrices(models):
    data = samples(2, 3, seed=4)
    one = pk.score_pairwise(data, models["ce"], device="cpu", progress=False)
    two = pk.score_pairwise(data, models["ce"], device=["cpu", "cpu"], batch_size=2,
                            progress=False)
    assert pk.report_of(two)["devices"] == ["cpu", "cpu"]
    for a, b in zip(matrices(one), matrices(two)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_bert_cross_encoder_and_chat_message_prompts(models):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat"}]
    data = pa.table({
        "prompt": pa.array([messages] * 3),
        "response": ["yes", "no it is", "maybe"],
    })
    out = pk.score_pairwise(data, models["bert"], progress=False)
    (m,) = matrices(out)
    assert_consistent(m)
    text = pk.pairwise.DEFAULT_TEMPLATE.format(
        prompt="system: be brief\nuser: the cat", a="yes", b="no it is")
    flipped = pk.pairwise.DEFAULT_TEMPLATE.format(
        prompt="system: be brief\nuser: the cat", a="no it is", b="yes")
    expected = (sigmoid(forward_one(models["bert"], text)[0]) + 1
                - sigmoid(forward_one(models["bert"], flipped)[0])) / 2
    assert abs(m[0, 1] - expected) < 1e-5
    assert out.column("prompt").to_pylist() == [messages]
    text = pk.score_pairwise(samples(1, 2), batch_judge, form="long", progress=False)
    assert text.schema.field("prompt").type == pa.large_string()


# --------------------------------------------------------------------------------------------
# Preference embeddings (GPM)
# --------------------------------------------------------------------------------------------


def test_embedding_judge_runs_k_forwards_and_matches_the_gpm_formula(models):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(models["gpm"])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(models["gpm"]))
    sequences = []
    # prefkit runs a decoder's base model and applies the head itself: count the base's rows.
    hook = model.model.register_forward_hook(
        lambda module, args, kwargs, output: sequences.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    data = samples(3, 8, seed=5)
    judge = pk.EmbeddingJudge(model, tokenizer, tau=0.5)
    try:
        out = pk.score_pairwise(data, judge, batch_size=5, progress=False)
    finally:
        hook.remove()
    sizes = [len(r) for r in out.column("rows").to_pylist()]
    assert sizes == [8, 7, 8]
    assert sum(sequences) == sum(sizes)  # K per prompt, not K^2
    assert pk.report_of(out)["forward_sequences"] == sum(sizes)
    assert pk.report_of(out)["pairs_judged"] == 0
    rows = data.to_pylist()
    chat = lambda r: tokenizer.apply_chat_template(
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
        tokenize=False,
    )
    for m, members in zip(matrices(out), out.column("rows").to_pylist()):
        assert_consistent(m)
        vectors = {}
        for r in members:
            ids = torch.tensor([tokenizer(chat(rows[r]), add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                vectors[r] = model(input_ids=ids).logits[0].double().tolist()
        for i, a in enumerate(members):
            for j, b in enumerate(members):
                if i != j:
                    assert abs(m[i, j] - reference.gpm_win_prob(vectors[a], vectors[b], 0.5)) < 1e-5


def test_embedding_judge_win_prob_is_the_reference_product():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(5, 6))
    m = pk.EmbeddingJudge("unused", tau=0.3).win_prob(v)
    assert_consistent(m)
    for a in range(5):
        for b in range(5):
            if a != b:
                assert abs(m[a, b] - reference.gpm_win_prob(v[a], v[b], 0.3)) < 1e-12
    raw = pk.EmbeddingJudge("unused", normalize=False).win_prob(np.array([[2.0, 0], [0, 3.0]]))
    assert abs(raw[0, 1] - sigmoid(6.0)) < 1e-12
    with pytest.raises(pk.PrefkitError, match="even"):
        pk.EmbeddingJudge("unused").win_prob(np.ones((2, 3)))
    with pytest.raises(pk.PrefkitError, match="tau"):
        pk.EmbeddingJudge("unused", tau=0)


def test_embedding_judge_through_a_callable_head(models):
    """A custom head (GPM's own checkpoints): a callable(input_ids, attention_mask) -> [n, 2d]."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(models["gpm"]))

    def head(input_ids, attention_mask):
        n = attention_mask.sum(1).double()
        return torch.stack([n, torch.ones_like(n), n % 3, n % 2], dim=1)

    data = pa.table({"prompt": ["the"] * 3, "response": ["a", "a cat", "a cat sat on"]})
    out = pk.score_pairwise(data, pk.EmbeddingJudge(head, tokenizer), progress=False)
    (m,) = matrices(out)
    chats = [tokenizer.apply_chat_template(
        [{"role": "user", "content": "the"}, {"role": "assistant", "content": r}], tokenize=False)
        for r in ["a", "a cat", "a cat sat on"]]
    lengths = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chats]
    v = [[n, 1.0, n % 3, n % 2] for n in lengths]
    assert abs(m[0, 2] - reference.gpm_win_prob(v[0], v[2])) < 1e-6


# --------------------------------------------------------------------------------------------
# Callable judges and the reference
# --------------------------------------------------------------------------------------------


def hashed_judge(prompt, a, b) -> float:
    """A deterministic judge with a bias of +0.1 towards the first position."""
    x = xxhash.xxh3_64_intdigest(f"{prompt}\x00{a}\x00{b}".encode()) / 2.0**64
    return min(1.0, 0.1 + 0.8 * x)


def batch_judge(prompts, a, b):
    return [hashed_judge(p, x, y) for p, x, y in zip(prompts, a, b)]


def test_callable_judge_cancels_position_bias():
    def biased(prompts, a, b):  # a length preference plus a bias towards position a
        return [0.2 + 0.6 * (len(x) > len(y)) + 0.1 for x, y in zip(a, b)]

    data = pa.table({"prompt": ["q"] * 3, "response": ["aa", "a", "aaa"]})
    (m,) = matrices(pk.score_pairwise(data, biased, progress=False))
    # p(a, b) = 0.9, p(b, a) = 0.3 for a longer than b: (0.9 + 1 - 0.3) / 2 = 0.8.
    np.testing.assert_allclose(m, [[0.5, 0.8, 0.2], [0.2, 0.5, 0.2], [0.8, 0.8, 0.5]], atol=1e-12)
    (one,) = matrices(pk.score_pairwise(data, biased, both_orders=False, progress=False))
    np.testing.assert_allclose(one[0], [0.5, 0.9, 0.3], atol=1e-12)


rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["p", "q", "r", "ß✓", None]),
        st.text(alphabet="ab c", max_size=4),
        st.sampled_from(["g1", "g2", None]),
    ),
    max_size=14,
)


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, k=st.sampled_from([None, 2, 3]), both=st.booleans(),
       by_group=st.booleans(), chunked=st.booleans(), batch=st.sampled_from([None, 1, 3]))
def test_callable_judge_equals_reference(rows, k, both, by_group, chunked, batch):
    data = pa.table({
        "prompt": pa.array([r[0] for r in rows], pa.string()),
        "response": pa.array([r[1] for r in rows], pa.string()),
        "g": pa.array([r[2] for r in rows], pa.string()),
    })
    if by_group and any(r[0] is None and r[2] is not None for r in rows):
        with pytest.raises(pk.PrefkitError, match="column 'prompt' has a null"):
            pk.score_pairwise(data, batch_judge, group="g", progress=False)
        return
    if chunked and data.num_rows > 2:
        data = pa.concat_tables([data.slice(0, 2), data.slice(2)])
    if not by_group:
        data = data.cast(pa.schema([("prompt", pa.string_view()), ("response", pa.string()),
                                    ("g", pa.string())]))
    group = "g" if by_group else None
    out = pk.score_pairwise(data, batch_judge, group=group, k=k, both_orders=both,
                            batch_size=batch, progress=False)
    expected, accounting = reference.score_pairwise(
        pk.materialize(data).to_pylist(), hashed_judge, group=group, k=k, both_orders=both
    )
    got = out.to_pylist()
    assert [r["rows"] for r in got] == [r["rows"] for r in expected]
    for g, e in zip(got, expected):
        assert g["prompt"] == e["prompt"] and g["responses"] == e["responses"]
        assert g["group_id"] == e["group_id"]
        np.testing.assert_allclose(g["win_prob"], e["win_prob"], rtol=0, atol=1e-12)
    report = pk.report_of(out)
    assert report["rows_in"] == accounting["rows_in"]
    assert report["rows_used"] == accounting["rows_used"]
    assert report["dropped"] == accounting["dropped"]
    assert report["rows_used"] + sum(report["dropped"].values()) == data.num_rows
    assert out.schema.field("responses").type == pa.list_(pa.large_string())
    assert out.schema.field("win_prob").type == pa.list_(pa.list_(pa.float64()))


def test_long_form_is_the_wide_form_unrolled():
    data = samples(3, 4, seed=8)
    wide = pk.score_pairwise(data, batch_judge, progress=False)
    long = pk.score_pairwise(data, batch_judge, form="long", progress=False)
    assert long.column_names == ["prompt", "response_a", "response_b", "row_a", "row_b",
                                 "win_prob", "group_id"]
    expected = []
    for w in wide.to_pylist():
        for i, a in enumerate(w["rows"]):
            for j, b in enumerate(w["rows"]):
                if i != j:
                    expected.append({
                        "prompt": w["prompt"], "response_a": w["responses"][i],
                        "response_b": w["responses"][j], "row_a": a, "row_b": b,
                        "win_prob": w["win_prob"][i][j], "group_id": w["group_id"],
                    })
    assert long.to_pylist() == expected
    assert pk.report_of(long)["rows_out"] == len(expected)


def test_group_ids_are_mine_pairs_group_ids():
    data = samples(3, 3, seed=9)
    scored = data.append_column("score", pa.array(np.arange(data.num_rows, dtype=float)))
    pairs = pk.mine_pairs(scored)
    wide = pk.score_pairwise(data, batch_judge, progress=False)
    assert dict(zip(wide.column("prompt").to_pylist(), wide.column("group_id").to_pylist())) == \
        dict(zip(pairs.column("prompt").to_pylist(), pairs.column("group_id").to_pylist()))


def test_wide_form_feeds_win_rates():
    """The contract with pk.win_rates: its per-response win rate is the row mean of P."""
    winrates = pytest.importorskip("prefkit.winrates")
    data = samples(3, 4, seed=15)
    wide = pk.score_pairwise(data, batch_judge, progress=False)
    rates = winrates.win_rates(wide)
    expected = {}
    for w in wide.to_pylist():
        m = np.array(w["win_prob"])
        for i, row in enumerate(w["rows"]):
            expected[row] = (m[i].sum() - 0.5) / (len(m) - 1)
    got = dict(zip(rates.column("row").to_pylist(), rates.column("win_rate").to_pylist()))
    assert got.keys() == expected.keys()
    for row, value in expected.items():
        assert abs(got[row] - value) < 1e-12


def test_k_keeps_the_first_k_responses_in_input_order():
    data = samples(2, 5, seed=10)  # 5 and 4 responses
    out = pk.score_pairwise(data, batch_judge, k=3, progress=False)
    assert out.column("rows").to_pylist() == [[0, 1, 2], [5, 6, 7]]
    report = pk.report_of(out)
    assert report["dropped"] == {"beyond_k": 3}
    assert report["pairs_judged"] == 2 * 6


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def test_callable_resume_recomputes_no_finished_batch(tmp_path):
    data = samples(3, 4, seed=11)
    full = pk.score_pairwise(data, batch_judge, batch_size=4, progress=False)
    calls: list[int] = []
    fail_at = [3]

    def judge(prompts, a, b):  # one name in both runs: the checkpoint records it
        if len(calls) == fail_at[0]:
            raise KeyboardInterrupt  # a killed run
        calls.append(len(a))
        return batch_judge(prompts, a, b)

    with pytest.raises(KeyboardInterrupt):
        pk.score_pairwise(data, judge, batch_size=4, checkpoint=tmp_path, progress=False)
    calls.clear()
    fail_at[0] = -1
    resumed = pk.score_pairwise(data, judge, batch_size=4, checkpoint=tmp_path, progress=False)
    judged = calls
    total = pk.report_of(full)["pairs_judged"]
    assert sum(judged) == total - 12
    assert pk.report_of(resumed)["rows_resumed"] == 12
    assert resumed.column("win_prob").to_pylist() == full.column("win_prob").to_pylist()


def test_model_resume_recomputes_only_missing_batches(models, tmp_path):
    data = samples(2, 3, seed=12)
    folder = tmp_path / "ckpt"
    first = pk.score_pairwise(data, models["ce"], batch_size=3, checkpoint=folder, progress=False)
    shards = sorted(folder.glob("rows-*.parquet"))
    assert len(shards) == pk.report_of(first)["batches"] == 3
    lost = pq.read_table(shards[1]).num_rows
    shards[1].unlink()  # this batch was not finished when the run died
    again = pk.score_pairwise(data, models["ce"], batch_size=3, checkpoint=folder, progress=False)
    report = pk.report_of(again)
    assert report["batches_run"] == 1
    assert report["rows_scored"] == lost
    assert report["rows_resumed"] == report["pairs_judged"] - lost
    assert again.column("win_prob").to_pylist() == first.column("win_prob").to_pylist()
    with pytest.raises(pk.PrefkitError, match="another run"):
        pk.score_pairwise(samples(2, 3, seed=13), models["ce"], checkpoint=folder, progress=False)


# --------------------------------------------------------------------------------------------
# Bad input and the row accounting
# --------------------------------------------------------------------------------------------


def test_null_response_is_an_error_naming_column_and_row():
    data = pa.table({"prompt": ["q", "q", "q"], "response": ["a", None, "b"]})
    with pytest.raises(pk.PrefkitError, match="column 'response' has a null at row 1"):
        pk.score_pairwise(data, batch_judge, progress=False)


def test_single_responses_and_null_prompts_are_dropped_and_counted():
    data = pa.table({"prompt": ["q", "lonely", None, "q", None], "response": list("abcde")})
    out = pk.score_pairwise(data, batch_judge, progress=False)
    assert out.column("rows").to_pylist() == [[0, 3]]
    report = pk.report_of(out)
    assert report["dropped"] == {"null_key": 2, "group_too_small": 1}
    assert (report["rows_in"], report["rows_used"], report["rows_out"]) == (5, 2, 1)
    empty = pk.score_pairwise(data.slice(1, 2), batch_judge, progress=False)
    assert empty.num_rows == 0 and empty.schema.field("win_prob").type == pa.list_(
        pa.list_(pa.float64()))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prompt": "missing"}, "column 'missing' not found"),
        ({"k": 1}, "k must be an integer >= 2"),
        ({"form": "square"}, "form must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"template": "{a} only"}, "template applies to a cross-encoder"),
    ],
)
def test_bad_options(kwargs, match):
    data = pa.table({"prompt": ["q", "q"], "response": ["a", "b"]})
    with pytest.raises(pk.PrefkitError, match=match):
        pk.score_pairwise(data, batch_judge, progress=False, **kwargs)


def test_bad_judges(models):
    data = pa.table({"prompt": ["q", "q"], "response": ["the", "cat"]})
    with pytest.raises(pk.PrefkitError, match="judge must be"):
        pk.score_pairwise(data, 42, progress=False)
    with pytest.raises(pk.PrefkitError, match="must hold both"):
        pk.score_pairwise(data, models["ce"], template="{prompt} {a}", progress=False)
    with pytest.raises(pk.PrefkitError, match=r"only use the fields"):
        pk.score_pairwise(data, models["ce"], template="{a} {b} {c}", progress=False)
    with pytest.raises(pk.PrefkitError, match="1 or 2 outputs"):
        pk.score_pairwise(data, models["odd"], progress=False)
    with pytest.raises(pk.PrefkitError, match="even number"):
        pk.score_pairwise(data, pk.EmbeddingJudge(models["odd"]), progress=False)
    with pytest.raises(pk.PrefkitError, match=r"returned 1.5 for the pair of rows 0 and 1"):
        pk.score_pairwise(data, lambda p, a, b: [1.5] * len(a), progress=False)
    with pytest.raises(pk.PrefkitError, match="returned 1 probabilities for 2 pairs"):
        pk.score_pairwise(data, lambda p, a, b: [0.5], progress=False)
    numbers = pa.table({"prompt": ["q", "q"], "response": [1, 2]})
    with pytest.raises(pk.PrefkitError, match="column 'response' must be text"):
        pk.score_pairwise(numbers, batch_judge, progress=False)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_pairwise_verb(models, tmp_path, capsys):
    from prefkit.cli import main

    source = tmp_path / "samples.parquet"
    pq.write_table(samples(2, 3, seed=14), source)
    out = tmp_path / "wide.parquet"
    code = main(["pairwise", str(source), "-o", str(out), "--judge", str(models["ce"]), "-q",
                 "--one-order", "--batch-size", "2", "--checkpoint", str(tmp_path / "ck")])
    assert code == 0
    table = pq.read_table(out)
    expected = pk.score_pairwise(pq.read_table(source), models["ce"], both_orders=False,
                                 progress=False)
    for a, b in zip(matrices(table), matrices(expected)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    printed = capsys.readouterr().out
    assert f"wrote 2 rows to {out}" in printed and "pairs judged: 4" in printed
    long = tmp_path / "long.jsonl"
    code = main(["pairwise", str(source), "-o", str(long), "--judge", str(models["gpm"]),
                 "--embedding", "--tau", "0.5", "--form", "long", "-q"])
    assert code == 0
    assert len(long.read_text().splitlines()) == 3 * 2 + 2 * 1
    assert "forward sequences: 5" in capsys.readouterr().out
    code = main(["pairwise", str(source), "-o", str(out), "--judge", str(models["odd"]), "-q"])
    assert code == 2
    assert "1 or 2 outputs" in capsys.readouterr().err
