"""Every public op's default output works in the user's next line of code (docs/outputs.md).

Each result is put through pyarrow's Table methods and compute functions (sort_by, take,
filter, join, group_by, concat, cast, utf8_length, equal, to_pandas), polars, pandas,
``datasets`` (in memory and ``load_dataset("parquet")`` of the written file) and DuckDB. The
inputs are polars frames, whose text is string_view: no view type may reach the output
unless ``views=True`` was asked for, and ``pk.materialize`` of a views result passes the same
list.
"""

from __future__ import annotations

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.compute as pc
import pytest

pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")
datasets = pytest.importorskip("datasets")

PROMPTS = ["Quelle est la capitale de la France ? " * 2, "2+2?", "Écris un haïku 🌸", "hi"]
CHAT = [{"role": "user", "content": "Bonjour ! Comment ça va ?"}]


def rated() -> pl.DataFrame:
    rows = [
        (p, f"réponse {i} à « {p[:12]} » " + "x" * (i * 7 % 40), float((i * 37) % 11), f"m{i % 3}")
        for i, p in enumerate(PROMPTS * 4)
    ]
    prompt, response, score, model = zip(*rows)
    return pl.DataFrame({"prompt": prompt, "response": response, "score": score, "model": model})


def pairs() -> pa.Table:
    out = pk.mine_pairs(rated(), strategy="all_pairs", carry=["model"])
    n = out.num_rows
    return out.append_column("rm_c", pa.array(np.linspace(0, 1, n))).append_column(
        "rm_r", pa.array(np.linspace(1, 0, n))
    )


def paths() -> pl.DataFrame:
    return pl.DataFrame({
        "prompt": ["2+3*4 ?"] * 3 + ["ça ?"] * 2,
        "steps": [["3*4=12", "2+12=14"], ["3*4=12", "2+12=15"], ["2+3=5", "5*4=20"],
                  ["oui", "non"], ["oui", "peut-être"]],
        "reward": [1.0, 0.0, 0.0, 0.5, 1.0],
    })


def conversations(kind: str) -> pl.DataFrame:
    if kind == "text":
        return pl.DataFrame({
            "chosen": ["\n\nHuman: Salut ?\n\nAssistant: Bonjour 👋", "\n\nHuman: 1+1\n\nAssistant: 2"],
            "rejected": ["\n\nHuman: Salut ?\n\nAssistant: Non.", "\n\nHuman: 1+1\n\nAssistant: 3"],
        })
    answer = [{"role": "assistant", "content": "Très bien, merci !"}]
    other = [{"role": "assistant", "content": "Non."}]
    return pl.DataFrame({"chosen": [CHAT + answer], "rejected": [CHAT + other]})


def tokenizer():
    pytest.importorskip("transformers")
    from tiny_lm import bpe_tokenizer

    texts = [*PROMPTS, *rated()["response"].to_list()]
    return bpe_tokenizer(texts, vocab_size=300)


def tokenized_pairs() -> pa.Table:
    return pk.tokenize_pairs(pairs(), tokenizer())


def scored() -> pa.Table:
    pytest.importorskip("torch")
    from scoring_models import build_model

    def model(tmp):
        return build_model(tmp)

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return pk.score(rated(), model(folder), progress=False)


def reference() -> pa.Table:
    pytest.importorskip("torch")
    from tiny_lm import tiny_llama

    tokens = tokenized_pairs()
    return pk.reference_logps(tiny_llama(len(tokenizer())), tokens, progress=False)


PRODUCERS = {
    "mine_pairs": pairs,
    "mine_pairs_messages": lambda: pk.mine_pairs(
        pl.DataFrame({"prompt": [CHAT] * 3, "response": ["a", "b", "ç"], "score": [1.0, 2.0, 0.0]})
    ),
    "unnest": lambda: pk.unnest(pl.DataFrame({
        "prompt": ["p", "q"],
        "completions": [[{"response": "é", "score": 1.0}], [{"response": "ü", "score": 0.0}]],
    })),
    "rank_lists": lambda: pk.rank_lists(rated()),
    "build_trees": lambda: pk.build_trees(paths()),
    "tree_pairs": lambda: pk.tree_pairs(pk.build_trees(paths())),
    "tree_lists": lambda: pk.tree_lists(pk.build_trees(paths())),
    "order_curriculum": lambda: pk.order_curriculum(pairs(), stages=2),
    "order_curriculum_per_prompt": lambda: pk.order_curriculum(pairs(), per_prompt=True),
    "split_prompt_text": lambda: pk.split_prompt(conversations("text"), boundary="\n\nAssistant:"),
    "split_prompt_messages": lambda: pk.split_prompt(conversations("messages")),
    "preference_strength": lambda: pk.preference_strength(
        pairs(), chosen_scores=["rm_c", "score_chosen"], rejected_scores=["rm_r", "score_rejected"]
    ),
    "filter_pairs": lambda: pk.filter_pairs(
        pk.preference_strength(pairs(), chosen_scores=["rm_c", "score_chosen"],
                               rejected_scores=["rm_r", "score_rejected"]),
        min_agreement=0.5,
    ),
    "dedup": lambda: pk.dedup(rated(), columns="prompt"),
    "dedup_minhash": lambda: pk.dedup(rated(), columns="response", method="minhash"),
    "find_duplicates": lambda: pk.find_duplicates(rated(), columns="prompt"),
    "decontaminate": lambda: pk.decontaminate(rated(), pl.DataFrame({"prompt": ["2+2?"]}),
                                              ngram=1),
    "split_train": lambda: pk.split(rated(), test_size=0.25)[0],
    "split_test": lambda: pk.split(rated(), test_size=0.25)[1],
    "tokenize_pairs": tokenized_pairs,
    "tokenize_lists": lambda: pk.tokenize_lists(pk.rank_lists(rated()), tokenizer()),
    "score": scored,
    "reference_logps": reference,
}
def ranked() -> pa.Table:
    pytest.importorskip("torch")
    from tiny_lm import tiny_llama

    return pk.ranking_accuracy(tiny_llama(len(tokenizer())), tokenized_pairs())


def judged() -> pa.Table:
    table = pairs()
    n = table.num_rows
    return pk.judge_bias(
        table.append_column("p_ab", pa.array(np.linspace(0.1, 0.9, n)))
        .append_column("p_ba", pa.array(np.linspace(0.8, 0.2, n)))
        .append_column("model_b", pa.array(["m9"] * n)),
        "p_ab", "p_ba", source=("model", "model_b"), judge="m0", bootstrap=50,
    )


PRODUCERS.update({
    "unpair": lambda: pk.unpair(pairs()),
    "evaluate_rewards": lambda: pk.evaluate_rewards(pairs(), ("score_chosen", "score_rejected"),
                                                    subset="model", bootstrap=50),
    "ranking_accuracy": ranked,
    "judge_bias": judged,
})


def _is_view(dtype: pa.DataType) -> bool:
    if pa.types.is_string_view(dtype) or pa.types.is_binary_view(dtype):
        return True
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return _is_view(dtype.value_type)
    if pa.types.is_struct(dtype):
        return any(_is_view(f.type) for f in dtype)
    return False


def _flat(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if not pa.types.is_nested(f.type)]


def _text(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _numeric(table: pa.Table) -> str | None:
    return next((f.name for f in table.schema
                 if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)), None)


def _duckdb(table: pa.Table) -> int:
    connection = duckdb.connect()
    connection.register("result", table)
    back = connection.sql("SELECT * FROM result").fetch_arrow_table()
    assert back.num_rows == table.num_rows
    return connection.sql("SELECT count(*) FROM result").fetchall()


def next_steps(table: pa.Table, tmp_path) -> dict[str, object]:
    """The operations a user runs next, each returning something to compare."""
    n = table.num_rows
    assert n > 0, "each producer must return rows for the checks to mean anything"
    flat, text, numeric = _flat(table), _text(table), _numeric(table)
    keyed = table.append_column("_row", pa.array(np.arange(n, dtype=np.int64)))
    other = pa.table({"_row": pa.array(np.arange(n, dtype=np.int64)), "_other": np.arange(n) * 2})
    steps: dict[str, object] = {
        "take": lambda: table.take([n - 1, 0]).to_pylist(),
        "filter": lambda: table.filter(pa.array(np.arange(n) % 2 == 0)).to_pylist(),
        # Acero joins carry no list or struct column (any nested type, whoever made it), so
        # the flat columns travel.
        "join": lambda: keyed.select([*flat, "_row"]).join(other, "_row").sort_by("_row")
        .drop_columns(["_row", "_other"]).to_pylist(),
        "concat": lambda: pa.concat_tables([table, table]).combine_chunks().num_rows,
        "to_pandas": lambda: table.to_pandas().shape,
        "polars": lambda: pl.from_arrow(table).to_arrow().num_rows,
        "datasets": lambda: datasets.Dataset(table)[n - 1],
        "duckdb": lambda: _duckdb(table),
    }
    if numeric:
        steps["sort_by"] = lambda: table.sort_by([(numeric, "descending")]).column(numeric)
    for name in text:
        steps[f"sort_by {name}"] = lambda name=name: table.sort_by(name).column(name).to_pylist()
        steps[f"utf8_length {name}"] = lambda name=name: pc.utf8_length(table[name]).to_pylist()
        steps[f"equal {name}"] = lambda name=name: pc.equal(table[name], "2+2?").to_pylist()
        steps[f"join on {name}"] = lambda name=name: keyed.select([name, "_row"]).join(
            pa.table({"_key": pc.unique(table[name])}),
            name, "_key",
        ).num_rows
        steps[f"group_by {name}"] = lambda name=name: table.group_by(name).aggregate(
            [([], "count_all")]
        ).num_rows
        steps[f"cast {name}"] = lambda name=name: table[name].cast(pa.string()).to_pylist()
    if text:
        steps["group_by list"] = lambda: keyed.append_column(
            "_half", pc.divide(keyed["_row"], 2)
        ).group_by("_half").aggregate([(text[0], "list")]).num_rows

    def parquet_round_trip():
        path = pk.write_table(table, tmp_path / "out.parquet")
        loaded = datasets.load_dataset("parquet", data_files=str(path), split="train",
                                       cache_dir=str(tmp_path / "hf"))
        assert loaded.num_rows == n
        return loaded[0]

    steps["load_dataset parquet"] = parquet_round_trip
    return steps


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_default_output_works_in_the_next_step(producer, tmp_path):
    table = PRODUCERS[producer]()
    views = [f.name for f in table.schema if _is_view(f.type)]
    assert not views, f"{producer}: view columns {views} in the default output"
    failures = {}
    for name, step in next_steps(table, tmp_path).items():
        try:
            step()
        except Exception as error:  # noqa: BLE001 - every failure is collected and reported
            failures[name] = f"{type(error).__name__}: {error}"
    assert not failures, f"{producer}: {failures}"


@pytest.mark.parametrize("producer", ["mine_pairs", "rank_lists", "split_prompt_text",
                                      "tree_pairs", "dedup"])
def test_views_results_are_views_and_materialize_makes_them_plain(producer, tmp_path):
    views = {
        "mine_pairs": lambda: pk.mine_pairs(rated(), strategy="all_pairs", views=True),
        "rank_lists": lambda: pk.rank_lists(rated(), views=True),
        "split_prompt_text": lambda: pk.split_prompt(conversations("text"),
                                                     boundary="\n\nAssistant:", views=True),
        "tree_pairs": lambda: pk.tree_pairs(pk.build_trees(paths()), views=True),
        "dedup": lambda: pk.dedup(rated(), views=True),
    }[producer]()
    assert any(_is_view(f.type) for f in views.schema)
    plain = pk.materialize(views)
    assert not any(_is_view(f.type) for f in plain.schema)
    assert plain.to_pylist() == views.to_pylist()
    assert pk.report_of(plain) == pk.report_of(views)
    for step in next_steps(plain, tmp_path).values():
        step()


def test_default_and_views_hold_the_same_rows():
    frame = rated()
    for op in (lambda **kw: pk.mine_pairs(frame, strategy="all_pairs", **kw),
               lambda **kw: pk.rank_lists(frame, **kw),
               lambda **kw: pk.build_trees(paths(), **kw),
               lambda **kw: pk.split_prompt(conversations("messages"), **kw)):
        assert op().to_pylist() == op(views=True).to_pylist()


def test_plain_copy_of_sliced_chunked_views_with_nulls():
    """The Rust copy behind the default: sliced arrays, several chunks, nulls whose views
    hold junk, long and inline strings, nested lists and structs."""
    texts = [None if i % 5 == 0 else "ü" * (i % 30) + str(i) for i in range(5000)]
    views = pa.array(texts, pa.string_view())
    chunked = pa.chunked_array([views.slice(3, 2000), views.slice(2500)])
    nested = pa.array([[t, t] for t in texts[:100]], pa.list_(pa.string_view()))
    structs = pa.array([{"content": t} for t in texts[:100]],
                       pa.struct([("content", pa.string_view())]))
    table = pa.table({"t": chunked}).replace_schema_metadata({"k": "v"})
    plain = pk.materialize(table)
    assert plain.schema.field("t").type == pa.large_string()
    assert plain.column("t").to_pylist() == chunked.to_pylist()
    assert plain.schema.metadata == {b"k": b"v"}
    both = pk.materialize(pa.table({"l": nested, "s": structs}))
    assert both.schema.field("l").type == pa.list_(pa.large_string())
    assert both.schema.field("s").type == pa.struct([("content", pa.large_string())])
    assert both.to_pylist() == pa.table({"l": nested, "s": structs}).to_pylist()


@pytest.mark.parametrize("argv", [
    ["pairs", "--completions", "completions", "--strategy", "all_pairs"],
    ["lists", "--completions", "completions"],
    ["unnest"],
])
def test_files_written_by_the_cli_read_back_plain(argv, tmp_path):
    """What `prefkit VERB ... -o out.parquet` writes is read by pyarrow with plain text types
    (Parquet keeps the Arrow schema: a string_view column would come back as string_view)."""
    import pyarrow.parquet as pq
    from prefkit.cli import main
    from tiny_lm import EXAMPLE

    out = tmp_path / "out.parquet"
    assert main([argv[0], str(EXAMPLE), *argv[1:], "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert not any(_is_view(f.type) for f in table.schema)
    for step in next_steps(table, tmp_path).values():
        step()
