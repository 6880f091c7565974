"""The ``prefkit`` command: one verb per operation, files in, files out.

Every verb reads .parquet, .jsonl(.gz), .json, .csv, .arrow or a saved ``datasets`` folder,
writes .parquet or .jsonl atomically (a temporary file renamed into place), shows progress on
stderr for long work and prints the row accounting at the end. ``prefkit eval`` writes no
table: it prints its result as JSON on stdout (and with ``--report DIR`` a report folder).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefkit._errors import PrefkitError
from prefkit._provenance import report_of
from prefkit.io import read_table, write_table

EPILOG_PAIRS = """\
examples:
  prefkit pairs examples/ultrafeedback_mini.jsonl --completions completions -o pairs.parquet
  prefkit pairs rated.parquet -o pairs.jsonl --strategy all_pairs --min-margin 0.5
  prefkit pairs rated.parquet -o pairs.parquet --score rm_a rm_b --max-pairs-per-prompt 4
  prefkit pairs rated.parquet -o pairs.parquet --strategy best_vs_random --seed 7 --carry source
"""

EPILOG_JOINT_PAIRS = """\
examples:
  prefkit joint-pairs rated.parquet -o joint.parquet
  prefkit joint-pairs rated.parquet -o joint.jsonl --strategy random --pairs-per-prompt 4 --seed 7
"""

EPILOG_SPLIT = """\
examples:
  prefkit split-prompt hh.jsonl -o split.parquet --hh
  prefkit split-prompt hh.parquet -o split.parquet --boundary '\\n\\nAssistant:'
  prefkit split-prompt chats.parquet -o split.parquet --chosen chosen --rejected rejected --boundary user
"""

EPILOG_STRENGTH = """\
examples:
  prefkit strength pairs.parquet -o strong.parquet --chosen-scores a_c b_c --rejected-scores a_r b_r
  prefkit strength pairs.parquet -o strong.parquet --chosen-scores a_c b_c \\
      --rejected-scores a_r b_r --flip-disagreeing --min-agreement 0.75 --max-strength-std 1.0
"""

EPILOG_REPORT = """\
examples:
  prefkit pairs examples/ultrafeedback_mini.jsonl --completions completions -o pairs.parquet
  prefkit report pairs.parquet --out report/      # report/report.md and PNG plots
"""

EPILOG_UNNEST = """\
examples:
  prefkit unnest ultrafeedback.parquet -o long.parquet
  prefkit unnest raw.jsonl -o long.parquet --completions outputs --response text --score rating
"""

EPILOG_CURRICULUM = """\
examples:
  prefkit curriculum pairs.parquet -o curriculum.parquet --stages 3
  prefkit curriculum pairs.parquet -o curry.parquet --per-prompt --seed 1
  prefkit curriculum pairs.parquet -o sorted.parquet --by margin --no-shuffle
"""

EPILOG_LISTS = """\
examples:
  prefkit lists rated.parquet -o lists.parquet --list-size 4
  prefkit lists examples/ultrafeedback_mini.jsonl --completions completions -o lists.jsonl
  prefkit lists rated.parquet -o lists.parquet --ties drop --min-list-size 3
"""

EPILOG_TREES = """\
examples:
  prefkit trees paths.parquet -o nodes.parquet
  prefkit trees paths.parquet -o step_pairs.parquet --emit pairs --strategy best_vs_all
  prefkit trees paths.parquet -o step_lists.parquet --emit lists --min-visits 2
  prefkit trees mcts_nodes.parquet --nodes -o step_pairs.parquet --emit pairs
"""

EPILOG_DEDUP = """\
examples:
  prefkit dedup pairs.parquet -o unique.parquet --columns prompt chosen rejected
  prefkit dedup long.parquet -o unique.parquet --method minhash --group prompt --threshold 0.8
  prefkit dedup 'data/*.parquet' --columns response --method minhash --memory-limit 2GB \\
      --out-dir unique/         # out of core (no --group)
  prefkit dedup 'data/*.parquet' --out-dir unique/ --method minhash --ray auto --row row
  prefkit dedup generations.parquet -o unique.parquet --images image --method phash --threshold 8
"""

EPILOG_IMAGE_PAIRS = """\
examples:
  prefkit image-pairs pickapic.parquet -o pairs.parquet              # caption, jpg_0, jpg_1, label_0/1
  prefkit image-pairs pickapic.parquet -o pairs.parquet --ties soft  # ties kept with label 0.5
  prefkit image-pairs generations.parquet -o pairs.parquet --layout long --strategy all_pairs
"""

EPILOG_DECONTAMINATE = """\
examples:
  prefkit decontaminate train.parquet --reference gsm8k_test.jsonl --reference-column question \\
      -o clean.parquet
"""

EPILOG_SPLIT = """\
examples:
  prefkit split pairs.parquet --test-size 0.1 -o train.parquet --test-output test.parquet
  prefkit split long.parquet --test-size 2000 --near-duplicates -o train.parquet \\
      --test-output test.parquet
  prefkit split 'data/*.parquet' --test-size 0.05 --near-duplicates --memory-limit 2GB \\
      --out-dir parts/          # out of core: parts/train/ and parts/test/
"""


EPILOG_SCORE = """\
examples:
  prefkit score samples.parquet -o scored.parquet --model ./reward-model
  prefkit score samples.jsonl -o scored.parquet --model ./rm --max-tokens-per-batch 8192 --resume
  prefkit score pairs.parquet -o rescored.parquet --pairs --model ./rm-a ./rm-b
  prefkit score big.parquet -o scored.parquet --model ./rm --checkpoint /scratch/ckpt --device cuda:0
  prefkit score 'data/*.parquet' --out-dir scored/ --model /models/rm --ray auto --concurrency 8
"""


EPILOG_PAIRWISE = """\
examples:
  prefkit pairwise samples.parquet -o win.parquet --judge ./pairwise-rm
  prefkit pairwise samples.parquet -o win.parquet --judge ./gpm --embedding --tau 0.1
  prefkit pairwise samples.jsonl -o pairs.parquet --judge ./rm --one-order --k 8 --form long \\
      --checkpoint /scratch/ckpt --batch-size 64
"""


EPILOG_EVAL = """\
examples:
  prefkit eval rewards pairs.parquet --model ./rm-a ./rm-b --subset-column subset --report out/
  prefkit eval rewards bench.jsonl --model ./rm --bootstrap 2000 --seed 1 > result.json
  prefkit eval ranking pairs.parquet --model ./policy --ref ./sft --alpha 0.9 --report out/
  prefkit eval ranking pairs.parquet --model ./policy --normalize --packed
"""


@contextmanager
def _step(label: str, quiet: bool) -> Iterator[None]:
    """Show ``label`` on stderr while a step runs (a live timer when stderr is a terminal)."""
    started = time.perf_counter()
    if not quiet:
        print(f"{label} ...", end="", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        if not quiet:
            print(f" {time.perf_counter() - started:.2f}s", file=sys.stderr, flush=True)


def _print_accounting(record: dict, output: str) -> None:
    rows_in = record.get("rows_in", 0)
    rows_out = record.get("rows_out", 0)
    print(f"wrote {rows_out} rows to {output}")
    used = record.get("rows_used")
    print(f"rows in: {rows_in}" + (f", used: {used}" if used is not None else ""))
    for reason, count in sorted(record.get("dropped", {}).items()):
        print(f"  dropped ({reason}): {count}")
    for skipped in record.get("skipped_files", []):
        print(f"  skipped bad file {skipped['file']}: {skipped['reason']}")
    for name in (
        "groups_in",
        "groups_with_pairs",
        "pairs_out",
        "pairs_capped",
        "lists_out",
        "trees_in",
        "trees_out",
        "nodes_out",
        "stage_sizes",
        "duplicate_clusters",
        "reference_rows_matched",
        "train_rows",
        "test_rows",
        "flipped",
        "disagreeing",
        "nan_strength",
    ):
        if name in record:
            print(f"{name}: {record[name]}")


def _read(path: str, quiet: bool):
    """Read the input; a Parquet file is read batch by batch behind a progress bar of rows; a
    glob or folder is read whole, its files in sorted order."""
    if _is_many(path):
        import pyarrow as pa

        from prefkit.stream import _files

        with _step(f"reading {path}", quiet):
            tables = [read_table(file) for file in _files(path)]
            return pa.concat_tables(tables, promote_options="permissive")
    if quiet or not path.lower().endswith(".parquet"):
        with _step(f"reading {path}", quiet):
            return read_table(path)
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    source = pq.ParquetFile(path)
    batches = []
    with tqdm(
        total=source.metadata.num_rows,
        unit=" rows",
        unit_scale=True,
        desc="reading",
        file=sys.stderr,
    ) as bar:
        for batch in source.iter_batches(batch_size=65536):
            batches.append(batch)
            bar.update(batch.num_rows)
    return pa.Table.from_batches(batches, schema=source.schema_arrow)


def _input(args: argparse.Namespace) -> Any:
    """The streaming input: the path, or with --skip-bad-files the path with that option."""
    if not getattr(args, "skip_bad_files", False):
        return args.input
    from prefkit.stream import InputFiles

    return InputFiles(args.input, skip_bad_files=True)


def _is_many(path: str) -> bool:
    """A glob or a folder of files (not a saved ``datasets`` folder)."""
    if any(c in path for c in "*?["):
        return True
    folder = Path(path)
    return folder.is_dir() and not (
        (folder / "dataset_info.json").exists() or (folder / "state.json").exists()
    )


def _run(
    args: argparse.Namespace,
    operation: Callable,
    streamed: Callable | None = None,
    on_ray: bool | None = None,
    **options,
) -> int:
    """Run a verb: ``streamed`` (the public function, which streams paths) when the input is a
    glob or folder or --memory-limit/--out-dir is given, else ``operation`` on the table read.
    With --ray, the verb's ``prefkit.ray`` function where ``on_ray`` (default: where the
    options stream)."""
    if getattr(args, "ray", None) is not None:
        return _run_on_ray(args, streamed is not None if on_ray is None else on_ray, options)
    wants_stream = args.memory_limit is not None or args.out_dir is not None
    if streamed is not None and (wants_stream or _is_many(args.input)):
        target = args.out_dir or args.output
        with _step(f"{args.verb} on {args.input} (streaming)", args.quiet):
            result = streamed(
                _input(args), out=args.out_dir, memory_limit=args.memory_limit, **options
            )
        if args.out_dir is None:
            with _step(f"writing {args.output}", args.quiet):
                write_table(result, args.output)
        _print_accounting(report_of(result), target)
        return 0
    if wants_stream:
        raise PrefkitError(
            f"'{args.verb}' with these options works in memory: --memory-limit and --out-dir "
            "apply to pairs, lists, curriculum --per-prompt, trees (without --completions, "
            "--nodes or --emit), decontaminate, split and dedup without --group"
        )
    table = _read(args.input, args.quiet)
    with _step(f"{args.verb} on {table.num_rows} rows", args.quiet):
        result = operation(table, **options)
    with _step(f"writing {args.output}", args.quiet):
        write_table(result, args.output)
    _print_accounting(report_of(result), args.output)
    return 0


#: The verbs that run on Ray, and their ``prefkit.ray`` function.
RAY_VERBS = {
    "pairs": "mine_pairs",
    "lists": "rank_lists",
    "curriculum": "order_curriculum",
    "trees": "build_trees",
    "dedup": "dedup",
    "decontaminate": "decontaminate",
    "split": "split",
    "score": "score",
}


def _run_on_ray(args: argparse.Namespace, supported: bool, options: dict) -> int:
    """--ray ADDRESS: run the verb's ``prefkit.ray`` operation with ``options``."""
    if not supported:
        raise PrefkitError(
            "--ray runs pairs, lists and trees without --completions, --nodes or --emit, "
            "curriculum with --per-prompt, dedup, decontaminate, split and score"
        )
    import prefkit.ray as pkr

    run = getattr(pkr, RAY_VERBS[args.verb])
    if args.row is not None:
        options = {**options, "row": args.row}
    return _on_ray(args, lambda ds: run(ds, **options))


def _on_ray(args: argparse.Namespace, run: Callable) -> int:
    """Start or join Ray, read the input with Ray Data, ``run`` it and write the resulting
    dataset into --out-dir as Parquet files (a pair of them, from split: into train/ and test/
    under --out-dir, as split streams)."""
    if args.out_dir is None:
        raise PrefkitError("--ray writes Parquet files: give --out-dir FOLDER")
    import prefkit.ray as pkr
    from prefkit.stream import _files

    ray = pkr._ray()
    if not ray.is_initialized():
        # "local" starts a Ray on this machine; anything else is a cluster address or "auto".
        ray.init(address=None if args.ray == "local" else args.ray, log_to_driver=False)
    files = [str(f) for f in _files(args.input)]
    if all(f.lower().endswith(".parquet") for f in files):
        ds = ray.data.read_parquet(files)
    elif all(f.lower().endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")) for f in files):
        ds = ray.data.read_json(files)
    else:
        raise PrefkitError("--ray reads Parquet or JSON lines files (one kind per run)")
    with _step(f"{args.verb} on Ray ({args.ray})", args.quiet):
        result = run(ds)
        if isinstance(result, tuple):
            parts, targets = result, [str(Path(args.out_dir) / side) for side in ("train", "test")]
        else:
            parts, targets = (result,), [args.out_dir]
        for part, target in zip(parts, targets):
            part.write_parquet(target)
    for target in targets:
        print(f"wrote {ray.data.read_parquet(target).count()} rows to {target}")
    return 0


def _pairs(args: argparse.Namespace) -> int:
    from prefkit.pairs import mine_pairs, unnest

    def operation(table, **options):
        if args.completions:
            table = unnest(
                table,
                prompt=args.prompt,
                completions=args.completions,
                response=args.response,
                score=options["score"],
            )
        return mine_pairs(table, **options)

    return _run(
        args,
        operation,
        None if args.completions else mine_pairs,
        prompt=args.prompt,
        response=args.response,
        score=args.score if len(args.score) > 1 else args.score[0],
        group=args.group,
        strategy=args.strategy,
        k=args.k,
        min_margin=args.min_margin,
        ties=args.ties,
        nan=args.nan,
        max_pairs_per_prompt=args.max_pairs_per_prompt,
        length_penalty=args.length_penalty,
        seed=args.seed,
        carry=args.carry,
    )


def _joint_pairs(args: argparse.Namespace) -> int:
    from prefkit.joint_pairs import mine_joint_pairs

    return _run(
        args,
        mine_joint_pairs,
        prompt=args.prompt,
        response=args.response,
        score=args.score if len(args.score) > 1 else args.score[0],
        group=args.group,
        strategy=args.strategy,
        pairs_per_prompt=args.pairs_per_prompt,
        min_margin=args.min_margin,
        nan=args.nan,
        seed=args.seed,
        carry=args.carry,
    )


def _unnest(args: argparse.Namespace) -> int:
    from prefkit.pairs import unnest

    return _run(
        args,
        unnest,
        prompt=args.prompt,
        completions=args.completions,
        response=args.response,
        score=args.score if len(args.score) > 1 else args.score[0],
    )


def _score_columns(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(score column, model)`` of every --model: several get one column each, named after
    the model folder."""
    if len(args.model) == 1:
        return [(args.output_column, args.model[0])]
    return [
        (f"{args.output_column}_{Path(model).name or i}", model)
        for i, model in enumerate(args.model)
    ]


def _score_on_ray(args: argparse.Namespace, options: dict) -> int:
    """``score --ray``: ``prefkit.ray.score`` once per model, on a pool of actors each."""
    if args.pairs or args.checkpoint or args.resume:
        raise PrefkitError("--ray scores responses: no --pairs, --checkpoint or --resume")
    import prefkit.ray as pkr

    options = {name: value for name, value in options.items() if name != "progress"}

    def run(ds):
        for name, model in _score_columns(args):
            ds = pkr.score(
                ds,
                model,
                tokenizer=args.tokenizer,
                prompt=None if args.prompt == "" else args.prompt,
                response=args.response,
                output=name,
                num_gpus=args.num_gpus,
                concurrency=args.concurrency,
                batch_size=args.batch_size,
                **options,
            )
        return ds

    return _on_ray(args, run)


def _score(args: argparse.Namespace) -> int:
    from prefkit.scoring import score, score_pairs

    options = {
        "chat_template": None if args.chat_template == "none" else "auto",
        "max_length": args.max_length,
        "max_tokens_per_batch": args.max_tokens_per_batch,
        "device": args.device if len(args.device) > 1 else args.device[0],
        "dtype": args.dtype,
        "progress": not args.quiet,
    }
    if args.ray is not None:
        return _score_on_ray(args, options)
    table = _read(args.input, args.quiet)
    checkpoint = args.checkpoint or (f"{args.output}.checkpoint" if args.resume else None)
    prompt = None if args.prompt == "" else args.prompt
    if args.pairs:
        model = args.model if len(args.model) > 1 else args.model[0]
        result = score_pairs(
            table,
            model,
            tokenizer=args.tokenizer,
            prompt=prompt,
            chosen=args.chosen,
            rejected=args.rejected,
            checkpoint=checkpoint,
            **options,
        )
    else:
        result = table
        for name, model in _score_columns(args):
            result = score(
                result,
                model,
                tokenizer=args.tokenizer,
                prompt=prompt,
                response=args.response,
                output=name,
                checkpoint=None
                if checkpoint is None
                else (Path(checkpoint) / name if len(args.model) > 1 else checkpoint),
                **options,
            )
    with _step(f"writing {args.output}", args.quiet):
        write_table(result, args.output)
    record = report_of(result)
    print(f"wrote {result.num_rows} rows to {args.output}")
    print(f"rows in: {record.get('rows_in', table.num_rows)}")
    reports = record.get("models", {}).values() if args.pairs else [record]
    for each in reports:
        print(
            f"model {each.get('model')}: {each.get('batches')} batches, {each.get('tokens')} "
            f"tokens ({each.get('padded_tokens')} with padding), rows resumed from the "
            f"checkpoint: {each.get('rows_resumed', 0)}"
        )
    return 0


def _pairwise(args: argparse.Namespace) -> int:
    from prefkit.pairwise import EmbeddingJudge, score_pairwise

    if args.embedding:
        judge = EmbeddingJudge(args.judge, args.tokenizer, tau=args.tau)
    elif args.tau != 1.0:
        raise PrefkitError("--tau is the temperature of an --embedding judge")
    else:
        judge = args.judge
    table = _read(args.input, args.quiet)
    result = score_pairwise(
        table,
        judge,
        prompt=args.prompt,
        response=args.response,
        group=args.group,
        k=args.k,
        both_orders=args.both_orders,
        template=args.template,
        tokenizer=None if args.embedding else args.tokenizer,
        batch_size=args.batch_size,
        max_tokens_per_batch=args.max_tokens_per_batch,
        max_length=args.max_length,
        device=args.device if len(args.device) > 1 else args.device[0],
        dtype=args.dtype,
        checkpoint=args.checkpoint,
        progress=not args.quiet,
        form=args.form,
    )
    with _step(f"writing {args.output}", args.quiet):
        write_table(result, args.output)
    record = report_of(result)
    _print_accounting(record, args.output)
    print(
        f"prompts: {record['prompts']}, pairs judged: {record['pairs_judged']}, forward "
        f"sequences: {record['forward_sequences']} in {record.get('batches')} batches, "
        f"resumed from the checkpoint: {record.get('rows_resumed') or 0}"
    )
    return 0


def _curriculum(args: argparse.Namespace) -> int:
    from prefkit.curriculum import order_curriculum

    return _run(
        args,
        order_curriculum,
        order_curriculum if args.per_prompt else None,
        by=args.by,
        order=args.order,
        stages=args.stages,
        per_prompt=args.per_prompt,
        group=args.group,
        shuffle_within_stage=not args.no_shuffle,
        seed=args.seed,
    )


def _lists(args: argparse.Namespace) -> int:
    from prefkit.lists import rank_lists
    from prefkit.pairs import unnest

    def operation(table, **options):
        if args.completions:
            table = unnest(
                table,
                prompt=args.prompt,
                completions=args.completions,
                response=args.response,
                score=args.score,
            )
        return rank_lists(table, **options)

    return _run(
        args,
        operation,
        None if args.completions else rank_lists,
        prompt=args.prompt,
        response=args.response,
        score=args.score,
        group=args.group,
        list_size=args.list_size,
        min_list_size=args.min_list_size,
        ties=args.ties,
        nan=args.nan,
    )


def _trees(args: argparse.Namespace) -> int:
    from prefkit.trees import build_trees, tree_lists, tree_pairs

    def emit(table):
        nodes = table
        if not args.nodes:
            nodes = build_trees(
                table, prompt=args.prompt, steps=args.steps, reward=args.reward, group=args.group
            )
        if args.emit == "pairs":
            return tree_pairs(
                nodes,
                strategy=args.strategy,
                min_margin=args.min_margin,
                min_visits=args.min_visits,
                k=args.k,
                ties=args.ties or "drop",
                max_pairs_per_node=args.max_pairs_per_node,
                seed=args.seed,
            )
        if args.emit == "lists":
            return tree_lists(
                nodes,
                list_size=args.list_size,
                min_list_size=args.min_list_size,
                ties=args.ties or "keep",
                min_visits=args.min_visits,
            )
        return nodes

    def operation(table, **options):
        return emit(table)

    return _run(
        args,
        operation,
        build_trees if args.emit == "nodes" and not args.nodes else None,
        prompt=args.prompt,
        steps=args.steps,
        reward=args.reward,
        group=args.group,
    )
def _dedup(args: argparse.Namespace) -> int:
    from prefkit.dedup import dedup

    if args.images is not None:
        return _dedup_images(args)
    if args.method in ("dhash", "phash"):
        raise PrefkitError(f"--method {args.method} compares images: pass --images COLUMN")
    args.method = args.method or "exact"
    args.threshold = 0.8 if args.threshold is None else args.threshold
    return _run(
        args,
        dedup,
        dedup if args.group is None else None,
        on_ray=True,
        columns=args.columns,
        method=args.method,
        normalize=not args.no_normalize,
        ngram=args.ngram,
        num_perm=args.num_perm,
        threshold=args.threshold,
        bands=args.bands,
        seed=args.seed,
        group=args.group,
    )


def _dedup_images(args: argparse.Namespace) -> int:
    """``dedup --images COLUMN``: ``pk.dedup_images`` (in memory)."""
    from prefkit.images import dedup_images

    if args.method == "minhash":
        raise PrefkitError("--images compares images: --method is exact, dhash or phash")
    threshold = args.threshold
    if threshold is not None and threshold != int(threshold):
        raise PrefkitError(f"--threshold with --images is a number of bits, got {threshold}")
    return _run(
        args,
        dedup_images,
        column=args.images,
        method=args.method or "phash",
        threshold=None if threshold is None else int(threshold),
        bad=args.bad,
    )


def _image_pairs(args: argparse.Namespace) -> int:
    from prefkit.images import image_pairs

    options = {"layout": args.layout, "caption": args.caption, "ties": args.ties}
    if args.layout == "pickapic":
        options.update(images=args.images, labels=args.labels)
    else:
        options.update(
            image=args.image, score=args.score, strategy=args.strategy, seed=args.seed
        )
    if args.carry is not None:
        options["carry"] = args.carry
    return _run(args, image_pairs, **options)


def _decontaminate(args: argparse.Namespace) -> int:
    from prefkit.dedup import decontaminate

    reference = read_table(args.reference)
    return _run(
        args,
        decontaminate,
        decontaminate,
        reference=reference,
        column=args.column,
        reference_column=args.reference_column,
        ngram=args.ngram,
        normalize=not args.no_normalize,
    )


def _split(args: argparse.Namespace) -> int:
    from prefkit.dedup import split

    if args.out_dir is None and args.test_output is None:
        raise PrefkitError(
            "--test-output is required (or --out-dir, which writes train/ and test/)"
        )
    parts: dict = {}

    def operation(data, **options):
        parts["train"], parts["test"] = split(data, **options)
        return parts["train"]

    test_size = float(args.test_size) if "." in args.test_size else int(args.test_size)
    status = _run(
        args,
        operation,
        operation,
        test_size=test_size,
        group=args.group,
        seed=args.seed,
        near_duplicates=args.near_duplicates,
        threshold=args.threshold,
    )
    if "test" in parts:  # not on Ray, which writes both sides itself
        if args.out_dir is not None:
            target = Path(args.out_dir) / "test"
        else:
            target = args.test_output
            with _step(f"writing {args.test_output}", args.quiet):
                write_table(parts["test"], args.test_output)
        print(f"wrote {report_of(parts['test'])['rows_out']} rows to {target}")
    return status


def _minhash_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ngram", type=int, default=5, help="words per shingle (default: 5)")
    parser.add_argument("--num-perm", type=int, default=128, help="sketch size (default: 128)")
    parser.add_argument("--threshold", type=float, default=0.8, help="Jaccard (default: 0.8)")
    parser.add_argument("--bands", type=int, default=None, help="LSH bands (default: chosen)")
    parser.add_argument("--seed", type=int, default=0)


def _unescape(text: str | None) -> str | None:
    r"""``\n``, ``\t`` and ``\\`` typed on a command line as the characters they stand for."""
    if text is None:
        return None
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapes:
            out.append(escapes[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _split_prompt(args: argparse.Namespace) -> int:
    from prefkit.pairs import split_prompt

    boundary = "\n\nAssistant:" if args.hh else _unescape(args.boundary)
    return _run(
        args,
        split_prompt,
        chosen=args.chosen,
        rejected=args.rejected,
        boundary=boundary,
        unsplittable=args.unsplittable,
    )


def _strength(args: argparse.Namespace) -> int:
    from prefkit.strength import filter_pairs, preference_strength

    filters = {
        "min_margin": args.min_margin,
        "min_agreement": args.min_agreement,
        "max_strength_std": args.max_strength_std,
        "flip_disagreeing": args.flip_disagreeing,
    }

    def operation(table, **options):
        table = preference_strength(table, **options)
        if any(v not in (None, False) for v in filters.values()):
            table = filter_pairs(table, **filters)
        return table

    return _run(
        args,
        operation,
        chosen_scores=args.chosen_scores,
        rejected_scores=args.rejected_scores,
    )


def _report(args: argparse.Namespace) -> int:
    from prefkit.report import write_report

    table = _read(args.input, args.quiet)
    with _step(f"report on {table.num_rows} rows", args.quiet):
        path = write_report(table, args.out, title=args.title or f"prefkit report: {args.input}")
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    print(f"wrote {path}" + (f" and {', '.join(pngs)}" if pngs else ""))
    record = report_of(table)
    if record:
        print(f"table made by {record.get('op')}: rows in {record.get('rows_in')}, "
              f"rows out {record.get('rows_out')}")
    return 0


def _json_value(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays as Python values, anything else as
    text (a path, a dtype)."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _print_json(rows: list[dict], record: dict) -> None:
    """The result of an eval verb on stdout: ``{"rows": [...], "report": {...}}``, with NaN
    written as null (strict JSON)."""
    import json
    import math

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    text = json.dumps(clean({"rows": rows, "report": record}), default=_json_value, indent=2)
    print(text)


def _wrote_report(path: Path) -> None:
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    print(f"wrote {path}" + (f" and {', '.join(pngs)}" if pngs else ""), file=sys.stderr)


def _model_names(folders: list[str]) -> dict[str, str]:
    """``{name: folder}`` of the --model folders, each named after its folder."""
    names: dict[str, str] = {}
    for folder in folders:
        name = Path(folder).name or folder
        if name in names:
            raise PrefkitError(f"two --model folders are both named {name!r} ({names[name]} and "
                               f"{folder}): the result names each model after its folder")
        names[name] = folder
    return names


def _eval_report(args: argparse.Namespace, verb: str, result) -> None:
    """With ``--report DIR``, the report of ``prefkit eval VERB`` (report.md and its plots)."""
    if args.report is None:
        return
    from prefkit.eval import report

    write = {"rewards": report.write_rewards_report, "ranking": report.write_ranking_report}[verb]
    with _step(f"writing the report into {args.report}", args.quiet):
        path = write(result, args.report, title=args.title or f"prefkit eval {verb}: {args.input}")
    _wrote_report(path)


def _eval_rewards(args: argparse.Namespace) -> int:
    from prefkit.eval import evaluate_rewards

    if args.bootstrap < 0:
        raise PrefkitError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    models = _model_names(args.model)
    table = _read(args.input, args.quiet)
    result = evaluate_rewards(
        table,
        models,
        subset=args.subset_column,
        chosen=args.chosen,
        rejected=args.rejected,
        prompt=None if args.prompt == "" else args.prompt,
        ties=args.ties,
        bootstrap=args.bootstrap,
        seed=args.seed,
        max_tokens_per_batch=args.max_tokens_per_batch,
        device=args.device,
        progress=not args.quiet,
    )
    _eval_report(args, "rewards", result)
    _print_json(result.to_pylist(), report_of(result))
    return 0


def _alpha(text: str | None) -> float | str | None:
    """--alpha: a probability, or else the name of a column holding one per pair."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _causal_lm(folder: str, role: str):
    """The causal LM and tokenizer saved in ``folder``, or a PrefkitError saying why not."""
    if not Path(folder).is_dir():
        raise PrefkitError(f"{role} {folder!r} is not a model folder")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise PrefkitError(f"cannot load {role} {folder!r}: {error}") from error
    return model.eval(), tokenizer


def _eval_ranking(args: argparse.Namespace) -> int:
    from prefkit.eval import ranking_accuracy
    from prefkit.tokenize import tokenize_pairs

    if not args.beta > 0:
        raise PrefkitError(f"--beta must be > 0, got {args.beta}")
    with _step(f"loading {args.model}", args.quiet):
        policy, tokenizer = _causal_lm(args.model, "--model")
        ref = _causal_lm(args.ref, "--ref")[0] if args.ref is not None else None
    table = _read(args.input, args.quiet)
    with _step(f"tokenizing {table.num_rows} pairs", args.quiet):
        tokenized = tokenize_pairs(
            table,
            tokenizer,
            max_length=args.max_length,
            prompt=args.prompt,
            chosen=args.chosen,
            rejected=args.rejected,
        )
    result = ranking_accuracy(
        policy,
        tokenized,
        ref_model=ref,
        beta=args.beta,
        alpha=_alpha(args.alpha),
        normalize=args.normalize,
        packed=args.packed,
        max_tokens=args.max_tokens_per_batch,
        device=args.device,
        progress=not args.quiet,
    )
    _eval_report(args, "ranking", result)
    # Per pair: the figures, not the token ids (the input's text columns stay).
    ids = {"prompt_ids", "chosen_ids", "rejected_ids"}
    rows = result.select([c for c in result.column_names if c not in ids]).to_pylist()
    _print_json(rows, report_of(result))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        help="input file (.parquet, .jsonl[.gz], .json, .csv, .arrow), a folder or a quoted glob",
    )
    parser.add_argument("-o", "--output", default=None, help="output file (.parquet or .jsonl)")
    parser.add_argument(
        "--out-dir",
        default=None,
        metavar="FOLDER",
        help="stream the result into this new folder as Parquet files (instead of -o)",
    )
    parser.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run on Ray Data: a cluster ADDRESS, 'auto' or 'local' (pairs, lists, curriculum "
        "--per-prompt, trees, dedup, decontaminate, split, score; needs --out-dir and "
        "prefkit[ray])",
    )
    parser.add_argument(
        "--row",
        default=None,
        metavar="COLUMN",
        help="with --ray: int64 column of input row numbers (ties, chosen_row/rows; the first "
        "row of a duplicate cluster: dedup and split default to 'row')",
    )
    parser.add_argument(
        "--memory-limit",
        default=None,
        metavar="SIZE",
        help="out-of-core: bound each in-memory step, e.g. 2GB (spills to a temp folder)",
    )
    parser.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="with a glob or folder (verbs that stream): skip truncated or corrupt files, "
        "listed in the accounting, instead of stopping at the first",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _verb(verbs: Any, name: str, *, common: bool = True, **texts: str) -> argparse.ArgumentParser:
    """A verb's parser with its ``help``/``description``/``epilog`` texts (the epilog's examples
    kept as written) and, unless ``common=False``, the options every table verb takes."""
    parser = verbs.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **texts)
    if common:
        _common(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``prefkit`` command."""
    from prefkit.pairs import STRATEGIES

    parser = argparse.ArgumentParser(
        prog="prefkit",
        description="Turn raw preference corpora into training-ready data.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    pairs = _verb(
        verbs,
        "pairs",
        help="mine chosen/rejected pairs from rated responses",
        description="Mine chosen/rejected pairs from a long table (one row per response).",
        epilog=EPILOG_PAIRS,
    )
    pairs.add_argument("--prompt", default="prompt", help="prompt column (default: prompt)")
    pairs.add_argument("--response", default="response", help="response column")
    pairs.add_argument("--score", nargs="+", default=["score"], help="score column(s)")
    pairs.add_argument("--group", default=None, help="group by this column instead of prompt")
    pairs.add_argument(
        "--completions",
        default=None,
        metavar="COLUMN",
        help="input is nested (UltraFeedback): unnest this list<struct> column first",
    )
    pairs.add_argument("--strategy", default="best_vs_worst", choices=STRATEGIES)
    pairs.add_argument("--k", type=int, default=1, help="k of top_k_vs_bottom_k")
    pairs.add_argument("--min-margin", type=float, default=0.0)
    pairs.add_argument("--ties", default="drop", choices=("drop", "keep"))
    pairs.add_argument("--nan", default="drop", choices=("drop", "error"))
    pairs.add_argument("--max-pairs-per-prompt", type=int, default=None)
    pairs.add_argument("--length-penalty", type=float, default=0.0)
    pairs.add_argument("--seed", type=int, default=0)
    pairs.add_argument("--carry", nargs="*", default=[], help="columns copied from chosen rows")
    pairs.set_defaults(run=_pairs)

    joint = _verb(
        verbs,
        "joint-pairs",
        help="pairs across prompts (JPO) from rated single responses",
        description="Mine joint pairs: a response to one prompt chosen over a response to "
        "another prompt (docs/joint_pairs.md).",
        epilog=EPILOG_JOINT_PAIRS,
    )
    joint.add_argument("--prompt", default="prompt", help="prompt column (default: prompt)")
    joint.add_argument("--response", default="response", help="response column")
    joint.add_argument("--score", nargs="+", default=["score"], help="score column(s)")
    joint.add_argument("--group", default=None, help="group by this column instead of prompt")
    joint.add_argument("--strategy", default="best_vs_worst", choices=("best_vs_worst", "random"))
    joint.add_argument("--pairs-per-prompt", type=int, default=1, help="draws per prompt")
    joint.add_argument("--min-margin", type=float, default=0.0)
    joint.add_argument("--nan", default="drop", choices=("drop", "error"))
    joint.add_argument("--seed", type=int, default=0)
    joint.add_argument("--carry", nargs="*", default=[], help="columns copied from chosen rows")
    joint.set_defaults(run=_joint_pairs)

    unnest = _verb(
        verbs,
        "unnest",
        help="nested completions (UltraFeedback) to one row per response",
        description="Turn rows holding a list of completion structs into one row per response.",
        epilog=EPILOG_UNNEST,
    )
    unnest.add_argument("--prompt", default="prompt")
    unnest.add_argument("--completions", default="completions")
    unnest.add_argument("--response", default="response", help="field holding the text")
    unnest.add_argument("--score", nargs="+", default=["score"], help="field(s) holding scores")
    unnest.set_defaults(run=_unnest)

    score = _verb(
        verbs,
        "score",
        help="score responses (or chosen/rejected pairs) with reward models",
        description="Score every row with a sequence-classification reward model, in token-"
        "budget batches of similar length; resumable with --checkpoint/--resume.",
        epilog=EPILOG_SCORE,
    )
    score.add_argument("--model", nargs="+", required=True, help="reward model folder(s)")
    score.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's)")
    score.add_argument("--prompt", default="prompt", help="prompt column ('' for none)")
    score.add_argument("--response", default="response", help="response column")
    score.add_argument("--output-column", default="score", help="score column to write")
    score.add_argument("--pairs", action="store_true", help="score chosen and rejected of pairs")
    score.add_argument("--chosen", default="chosen", help="chosen column (with --pairs)")
    score.add_argument("--rejected", default="rejected", help="rejected column (with --pairs)")
    score.add_argument("--chat-template", default="auto", choices=("auto", "none"))
    score.add_argument("--max-length", type=int, default=None, help="truncate longer rows")
    score.add_argument("--max-tokens-per-batch", type=int, default=16384)
    score.add_argument("--device", nargs="+", default=["auto"], help="auto, cpu, cuda:0 ...")
    score.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16")
    )
    score.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="write finished batches here; a rerun with the same folder resumes",
    )
    score.add_argument(
        "--resume", action="store_true", help="checkpoint to OUTPUT.checkpoint and resume from it"
    )
    score.add_argument(
        "--num-gpus", type=float, default=None, help="with --ray: GPUs per actor (default: 1 "
        "when the cluster has GPUs, else 0)"
    )
    score.add_argument("--concurrency", type=int, default=1, help="with --ray: actors")
    score.add_argument(
        "--batch-size", type=int, default=4096, help="with --ray: rows per block sent to an actor"
    )
    score.set_defaults(run=_score)

    pairwise = _verb(
        verbs,
        "pairwise",
        common=False,
        help="K x K win probabilities of each prompt's responses from a pairwise judge",
        description="Judge every pair of responses of each prompt with a cross-encoder (a "
        "templated (prompt, a, b) input, both orders averaged) or a preference-embedding "
        "model (GPM, --embedding: one forward per response); resumable with --checkpoint.",
        epilog=EPILOG_PAIRWISE,
    )
    pairwise.add_argument("input", help="input file (.parquet, .jsonl[.gz], .json, .csv, .arrow)")
    pairwise.add_argument("-o", "--output", required=True, help="output file (.parquet or .jsonl)")
    pairwise.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    pairwise.add_argument("--judge", required=True, help="judge model folder")
    pairwise.add_argument(
        "--embedding", action="store_true", help="the judge gives preference embeddings (GPM)"
    )
    pairwise.add_argument("--tau", type=float, default=1.0, help="GPM temperature (--embedding)")
    pairwise.add_argument("--tokenizer", default=None, help="tokenizer folder (default: judge's)")
    pairwise.add_argument("--prompt", default="prompt", help="prompt column")
    pairwise.add_argument("--response", default="response", help="response column")
    pairwise.add_argument("--group", default=None, help="group by this column instead of prompt")
    pairwise.add_argument("--k", type=int, default=None, help="first k responses per prompt")
    orders = pairwise.add_mutually_exclusive_group()
    orders.add_argument(
        "--both-orders", dest="both_orders", action="store_true", default=True,
        help="judge (a, b) and (b, a) and average (default)",
    )
    orders.add_argument(
        "--one-order", dest="both_orders", action="store_false", help="judge (a, b) only"
    )
    pairwise.add_argument(
        "--template", default=None, help="cross-encoder input with {prompt}, {a}, {b}"
    )
    pairwise.add_argument("--batch-size", type=int, default=None, help="sequences per forward")
    pairwise.add_argument("--max-tokens-per-batch", type=int, default=16384)
    pairwise.add_argument("--max-length", type=int, default=None, help="truncate longer inputs")
    pairwise.add_argument("--device", nargs="+", default=["auto"], help="auto, cpu, cuda:0 ...")
    pairwise.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16")
    )
    pairwise.add_argument(
        "--checkpoint", default=None, metavar="DIR",
        help="write finished batches here; a rerun with the same folder resumes",
    )
    pairwise.add_argument("--form", default="wide", choices=("wide", "long"))
    pairwise.set_defaults(run=_pairwise)
    curriculum = _verb(
        verbs,
        "curriculum",
        help="order pairs easy to hard in stages (global or per prompt, Curry-DPO)",
        description="Reorder pairs into a curriculum and add an int32 'stage' column.",
        epilog=EPILOG_CURRICULUM,
    )
    curriculum.add_argument("--by", default="margin", help="ease column (larger = easier)")
    curriculum.add_argument("--order", default="easy_to_hard", choices=("easy_to_hard", "hard_to_easy"))
    curriculum.add_argument("--stages", type=int, default=None, help="number of stages")
    curriculum.add_argument(
        "--per-prompt", action="store_true", help="stage = rank inside the prompt (Curry-DPO)"
    )
    curriculum.add_argument(
        "--group", default=None, help="grouping column of --per-prompt (group_id or prompt)"
    )
    curriculum.add_argument(
        "--no-shuffle", action="store_true", help="keep each stage in 'by' order"
    )
    curriculum.add_argument("--seed", type=int, default=0)
    curriculum.set_defaults(run=_curriculum)

    lists = _verb(
        verbs,
        "lists",
        help="ranked lists of responses per prompt (LiPO, TPO, Plackett-Luce)",
        description="One row per prompt: its responses sorted best first, scores and rows.",
        epilog=EPILOG_LISTS,
    )
    lists.add_argument("--prompt", default="prompt")
    lists.add_argument("--response", default="response")
    lists.add_argument("--score", default="score")
    lists.add_argument("--group", default=None, help="group by this column instead of prompt")
    lists.add_argument(
        "--completions", default=None, metavar="COLUMN",
        help="input is nested (UltraFeedback): unnest this list<struct> column first",
    )
    lists.add_argument("--list-size", type=int, default=None, help="keep the best N")
    lists.add_argument("--min-list-size", type=int, default=2)
    lists.add_argument("--ties", default="keep", choices=("drop", "keep"))
    lists.add_argument("--nan", default="drop", choices=("drop", "error"))
    lists.set_defaults(run=_lists)

    trees = _verb(
        verbs,
        "trees",
        help="tries of step-split solutions; or step pairs / lists of sibling nodes",
        description=(
            "Build the node table of step-split paths (one tree per prompt), or with --emit "
            "pairs/lists the step-level pairs or ranked lists of sibling nodes."
        ),
        epilog=EPILOG_TREES,
    )
    trees.add_argument("--prompt", default="prompt")
    trees.add_argument("--steps", default="steps", help="list<string> column of steps")
    trees.add_argument("--reward", default="reward")
    trees.add_argument("--group", default=None, help="one tree per value of this column")
    trees.add_argument(
        "--nodes", action="store_true",
        help="the input is already a node table (e.g. MCTS output): validate, do not build",
    )
    trees.add_argument("--emit", default="nodes", choices=("nodes", "pairs", "lists"))
    trees.add_argument("--strategy", default="best_vs_worst", choices=STRATEGIES)
    trees.add_argument("--k", type=int, default=1)
    trees.add_argument("--min-margin", type=float, default=0.0)
    trees.add_argument("--min-visits", type=float, default=1)
    trees.add_argument(
        "--ties", default=None, choices=("drop", "keep"),
        help="default: drop for pairs, keep for lists",
    )
    trees.add_argument("--max-pairs-per-node", type=int, default=None)
    trees.add_argument("--list-size", type=int, default=None)
    trees.add_argument("--min-list-size", type=int, default=2)
    trees.add_argument("--seed", type=int, default=0)
    trees.set_defaults(run=_trees)
    dedup = _verb(
        verbs,
        "dedup",
        help="drop exact or near-duplicate rows (or whole prompt groups)",
        description="Keep the first row of every duplicate cluster, in input order.",
        epilog=EPILOG_DEDUP,
    )
    dedup.add_argument("--columns", nargs="+", default=["prompt"], help="compared column(s)")
    dedup.add_argument(
        "--method", default=None, choices=("exact", "minhash", "dhash", "phash"),
        help="text: exact (default) or minhash; --images: phash (default), dhash or exact",
    )
    dedup.add_argument("--group", default=None, help="keep or drop rows sharing this column")
    dedup.add_argument("--no-normalize", action="store_true", help="compare raw text")
    _minhash_options(dedup)
    dedup.set_defaults(threshold=None)  # 0.8 (Jaccard) for text; image default in bits
    dedup.add_argument(
        "--images", default=None, metavar="COLUMN",
        help="dedup images (bytes or paths) of COLUMN by perceptual hash; --threshold in bits",
    )
    dedup.add_argument(
        "--bad", default="error", choices=("error", "drop"),
        help="--images: an undecodable image is an error (default) or dropped and counted",
    )
    dedup.set_defaults(run=_dedup)

    image_pairs = _verb(
        verbs,
        "image-pairs",
        help="image preference pairs from Pick-a-Pic-style or long (caption, image, score) tables",
        description="Pairs caption, chosen, rejected, label from image comparisons or scores.",
        epilog=EPILOG_IMAGE_PAIRS,
    )
    image_pairs.add_argument("--layout", default="pickapic", choices=("pickapic", "long"))
    image_pairs.add_argument("--caption", default="caption")
    image_pairs.add_argument("--images", nargs=2, default=["jpg_0", "jpg_1"], help="pickapic")
    image_pairs.add_argument("--labels", nargs=2, default=["label_0", "label_1"], help="pickapic")
    image_pairs.add_argument("--image", default="image", help="long layout")
    image_pairs.add_argument("--score", nargs="+", default=["score"], help="long layout")
    image_pairs.add_argument("--strategy", default="best_vs_worst", help="long layout")
    image_pairs.add_argument("--seed", type=int, default=0)
    image_pairs.add_argument("--ties", default="drop", choices=("drop", "soft"))
    image_pairs.add_argument("--carry", nargs="*", default=None, help="columns carried along")
    image_pairs.set_defaults(run=_image_pairs)

    decontaminate = _verb(
        verbs,
        "decontaminate",
        help="drop rows sharing a word n-gram with a reference set (benchmarks)",
        description="Drop rows that share a word n-gram with any row of a reference file.",
        epilog=EPILOG_DECONTAMINATE,
    )
    decontaminate.add_argument("--reference", required=True, help="reference file")
    decontaminate.add_argument("--column", default="prompt", help="text column of the input")
    decontaminate.add_argument("--reference-column", default=None, help="default: --column")
    decontaminate.add_argument("--ngram", type=int, default=13, help="words per n-gram")
    decontaminate.add_argument("--no-normalize", action="store_true", help="compare raw words")
    decontaminate.set_defaults(run=_decontaminate)

    split = _verb(
        verbs,
        "split",
        help="train/test split with no prompt (or near-duplicate) on both sides",
        description="Split into train (-o) and test (--test-output) by whole prompt clusters.",
        epilog=EPILOG_SPLIT,
    )
    split.add_argument(
        "--test-output",
        default=None,
        help="test file (.parquet or .jsonl); with --out-dir, FOLDER/train/ and FOLDER/test/",
    )
    split.add_argument(
        "--test-size", required=True, help="fraction of rows (0.1) or a row count (2000)"
    )
    split.add_argument("--group", default="prompt", help="column kept on one side")
    split.add_argument("--near-duplicates", action="store_true")
    split.add_argument("--threshold", type=float, default=0.8)
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(run=_split)

    split_prompt = _verb(
        verbs,
        "split-prompt",
        help="full conversations (HH-style text or chat messages) to prompt/chosen/rejected",
        description="Split full chosen/rejected conversations into their shared prompt and the "
        "two completions (docs/split_prompt.md).",
        epilog=EPILOG_SPLIT,
    )
    split_prompt.add_argument("--chosen", default="chosen", help="chosen conversation column")
    split_prompt.add_argument("--rejected", default="rejected", help="rejected conversation column")
    split_prompt.add_argument(
        "--boundary",
        default=None,
        help="text: separator the prompt must end with (\\n and \\t are unescaped); "
        "messages: role of the prompt's last message",
    )
    split_prompt.add_argument(
        "--hh", action="store_true", help="Anthropic HH text: --boundary '\\n\\nAssistant:'"
    )
    split_prompt.add_argument("--unsplittable", default="drop", choices=("drop", "error"))
    split_prompt.set_defaults(run=_split_prompt)

    strength = _verb(
        verbs,
        "strength",
        help="preference strength from several reward models; drop or flip pairs by it",
        description="Add strength_mean, strength_std and agreement from per-reward-model score "
        "columns, then (with any filter option) drop or flip pairs.",
        epilog=EPILOG_STRENGTH,
    )
    strength.add_argument("--chosen-scores", nargs="+", required=True, metavar="COLUMN")
    strength.add_argument("--rejected-scores", nargs="+", required=True, metavar="COLUMN")
    strength.add_argument("--min-margin", type=float, default=None)
    strength.add_argument("--min-agreement", type=float, default=None)
    strength.add_argument("--max-strength-std", type=float, default=None)
    strength.add_argument(
        "--flip-disagreeing", action="store_true", help="flip pairs with strength_mean < 0"
    )
    strength.set_defaults(run=_strength)

    report = _verb(
        verbs,
        "report",
        help="report.md with statistics and PNG plots of a pair, list or tree table",
        description="Write report.md (counts, margins, pairs per prompt, stage sizes, length "
        "bias, row accounting) and PNG plots into a folder. Needs matplotlib.",
        epilog=EPILOG_REPORT,
        common=False,
    )
    report.add_argument("input", help="a pair, list or tree table (.parquet, .jsonl, ...)")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for report.md + PNGs")
    report.add_argument("--title", default=None, help="title of report.md")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    report.set_defaults(run=_report)

    evaluate = _verb(
        verbs,
        "eval",
        help="evaluate reward models or a policy on preference pairs (JSON on stdout)",
        description="Reward-model accuracy (rewards) or a policy's ranking accuracy (ranking) "
        "on preference pairs; the result as JSON on stdout, progress on stderr, and with "
        "--report DIR a report.md with PNG plots (docs/eval.md).",
        epilog=EPILOG_EVAL,
        common=False,
    )
    targets = evaluate.add_subparsers(dest="target", required=True, metavar="WHAT")
    rewards = _verb(
        targets,
        "rewards",
        help="accuracy of reward models (chosen scored above rejected), per subset",
        description="Score every pair with each reward model (pk.evaluate_rewards) and print "
        "one JSON row per model and subset (overall first) with 95% bootstrap intervals, plus "
        "the diagnostics: accuracy by length difference, calibration, agreement.",
        epilog=EPILOG_EVAL,
        common=False,
    )
    rewards.add_argument("--model", nargs="+", required=True, help="reward model folder(s)")
    rewards.add_argument("--subset-column", default=None, metavar="COLUMN",
                         help="report accuracy per value of this column too")
    rewards.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: none)")
    rewards.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    rewards.add_argument("--ties", default="half", choices=("half", "zero"),
                         help="a tie counts half (default) or wrong (rewardbench)")
    rewards.add_argument("--max-tokens-per-batch", type=int, default=16384)
    rewards.add_argument("--device", default="auto", help="auto, cpu, cuda:0 ...")
    rankings = _verb(
        targets,
        "ranking",
        help="ranking accuracy of a policy: logp(chosen) > logp(rejected)",
        description="Tokenise the pairs with the policy folder's tokenizer (pk.tokenize_pairs) "
        "and compute pk.ranking_accuracy: the policy's, the reference's (--ref) and, with "
        "--alpha, the idealized ranking accuracy of Chen et al. 2024. JSON on stdout: one row "
        "per pair (without token ids) and the overall figures.",
        epilog=EPILOG_EVAL,
        common=False,
    )
    rankings.add_argument("--model", required=True, metavar="POLICY", help="causal LM folder")
    rankings.add_argument("--ref", default=None, metavar="REF", help="reference model folder")
    rankings.add_argument("--beta", type=float, default=0.1, help="KL coefficient (default 0.1)")
    rankings.add_argument(
        "--alpha", default=None, metavar="P_OR_COLUMN",
        help="ground-truth P(chosen > rejected), a number or a column: adds the idealized "
        "ranking accuracy (needs --ref or ref_*_logps columns)",
    )
    rankings.add_argument("--normalize", action="store_true", help="rank by per-token means")
    rankings.add_argument("--packed", action="store_true", help="packed batches (no padding)")
    rankings.add_argument("--max-length", type=int, default=None, help="truncate pairs")
    rankings.add_argument("--max-tokens-per-batch", type=int, default=8192)
    rankings.add_argument("--device", default=None, help="cpu, cuda:0 ... (default: cpu)")
    for parser_ in (rewards, rankings):
        parser_.add_argument("input", metavar="PAIRS",
                             help="pairs file (.parquet, .jsonl[.gz], .json, .csv, .arrow), a "
                             "saved datasets folder, a folder or a quoted glob")
        parser_.add_argument("--prompt", default="prompt", help="prompt column")
        parser_.add_argument("--chosen", default="chosen", help="chosen column")
        parser_.add_argument("--rejected", default="rejected", help="rejected column")
        parser_.add_argument("--report", default=None, metavar="DIR",
                             help="also write DIR/report.md and PNG plots (needs matplotlib)")
        parser_.add_argument("--title", default=None, help="title of report.md")
        parser_.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    rewards.set_defaults(run=_eval_rewards)
    rankings.set_defaults(run=_eval_ranking)
    return parser


def _prepare_outputs(args: argparse.Namespace) -> None:
    """Check the verb's -o file and --out-dir folder before any work (a read-only folder
    fails at once, not after an hour of scoring) and remove what killed runs left there.
    On Ray, --out-dir is the cluster's to check (it may be remote storage)."""
    from prefkit.io import prepare_output

    if getattr(args, "output", None) is not None:
        prepare_output(args.output)
    if getattr(args, "out_dir", None) is not None and getattr(args, "ray", None) is None:
        prepare_output(args.out_dir, folder=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefkit`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Verbs with -o: the output is required unless --out-dir streams the result (report has
    # its own --out folder and no -o).
    has_output = hasattr(args, "output")
    if has_output and args.output is None and (
        args.out_dir is None or (args.verb == "score" and args.ray is None)
    ):
        parser.error(
            "-o/--output is required" + ("" if args.verb == "score" else " (or --out-dir)")
        )
    if getattr(args, "ray", None) is not None and args.verb not in RAY_VERBS:
        parser.error(f"--ray runs {', '.join(RAY_VERBS)}, not {args.verb}")
    try:
        _prepare_outputs(args)
        return args.run(args)
    except PrefkitError as error:
        verb = " ".join(filter(None, (args.verb, getattr(args, "target", None))))
        print(f"prefkit {verb}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
