"""Reports on pair, list and tree tables: statistics as a dict, and a Markdown page with plots.

``report(table)`` recognises the table by its columns (docs/report.md):

- pairs: ``chosen`` and ``rejected`` (``mine_pairs``, ``split_prompt``, ``tree_pairs``,
  ``order_curriculum`` with its ``stage``);
- lists: ``responses`` and ``scores`` (``rank_lists``, ``tree_lists``);
- trees: ``node_id`` and ``parent_id`` (``build_trees``).

``write_report(table, out_dir)`` writes ``report.md`` and PNG plots made with matplotlib
(imported here, lazily, with the Agg backend: no display needed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import report_of
from prefkit.io import as_table
from prefkit.strength import _floats, length_stats, lengths

KINDS = ("pairs", "lists", "trees")


def table_kind(table: pa.Table) -> str:
    """``"pairs"``, ``"lists"`` or ``"trees"``, from the column names."""
    names = set(table.column_names)
    if {"chosen", "rejected"} <= names:
        return "pairs"
    if {"responses", "scores"} <= names:
        return "lists"
    if {"node_id", "parent_id"} <= names:
        return "trees"
    raise PrefkitError(
        "cannot tell what this table holds: pairs need columns 'chosen' and 'rejected', lists "
        "'responses' and 'scores', trees 'node_id' and 'parent_id'; the table has columns "
        f"{table.column_names}"
    )


def describe(values: Any) -> dict | None:
    """Summary statistics of the finite values: count, mean, std (population), min, p25,
    median, p75, max; ``None`` when there are none."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    p25, median, p75 = np.percentile(x, [25, 50, 75])
    return {
        "count": len(x),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "p25": float(p25),
        "median": float(median),
        "p75": float(p75),
        "max": float(x.max()),
    }


def _histogram(counts: np.ndarray) -> dict[int, int]:
    """``{value: how many times}`` for small non-negative integers, ascending."""
    values, times = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
    return {int(v): int(t) for v, t in zip(values, times)}


def _group_sizes(table: pa.Table) -> np.ndarray | None:
    """Rows per group: by ``group_id``, else ``tree_id``, else ``prompt``; None without any."""
    for name in ("group_id", "tree_id"):
        if name in table.column_names:
            column = table.column(name)
            if pa.types.is_integer(column.type):
                _, counts = np.unique(column.to_numpy(), return_counts=True)
                return counts
    if "prompt" not in table.column_names:
        return None
    # By the key ids the grouping engine gives prompts (xxh3-64 of their canonical bytes):
    # text and chat messages alike, never decoded into Python (whose UTF-8 check raised on
    # bytes the engine groups; found by fuzz/ops.py).
    ids = pa.array(_core.key_ids(pa.table({"prompt": table.column("prompt")}), "prompt"))
    return np.asarray(ids.value_counts().field("counts").to_numpy())


def _per_group(sizes: np.ndarray | None) -> dict | None:
    if sizes is None or len(sizes) == 0:
        return None
    return {
        "mean": float(sizes.mean()),
        "median": float(np.median(sizes)),
        "min": int(sizes.min()),
        "max": int(sizes.max()),
        "histogram": _histogram(sizes),
    }


def _stages(table: pa.Table, margin: np.ndarray | None) -> dict | None:
    if "stage" not in table.column_names:
        return None
    stage = table.column("stage").to_numpy().astype(np.int64)
    out = {}
    for s in np.unique(stage):
        entry: dict[str, Any] = {"rows": int((stage == s).sum())}
        if margin is not None:
            finite = margin[(stage == s) & np.isfinite(margin)]
            entry["mean_margin"] = float(finite.mean()) if len(finite) else None
        out[int(s)] = entry
    return out


def _pairs_report(table: pa.Table) -> dict:
    margin = _floats(table, "margin") if "margin" in table.column_names else None
    sizes = _group_sizes(table)
    report: dict[str, Any] = {
        "kind": "pairs",
        "rows": table.num_rows,
        "prompts": None if sizes is None else len(sizes),
        "pairs_per_prompt": _per_group(sizes),
        "margin": None if margin is None else describe(margin),
        "zero_margin": None if margin is None else int((margin == 0).sum()),
        "length": length_stats(table),
        "stages": _stages(table, margin),
    }
    strength = {}
    for name in ("agreement", "strength_mean", "strength_std", "margin_std"):
        if name in table.column_names:
            strength[name] = describe(_floats(table, name))
    if "strength_mean" in table.column_names:
        with np.errstate(invalid="ignore"):
            strength["disagreeing"] = int((_floats(table, "strength_mean") < 0).sum())
    report["strength"] = strength or None
    return report


def _list_lengths(table: pa.Table, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    column = table.column(name)
    return pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)


def _spread(table: pa.Table) -> tuple[np.ndarray, int]:
    """Per list: best minus worst finite score (NaN without one), and how many lists hold a
    tie (two neighbours with equal scores)."""
    import pyarrow.compute as pc

    n = table.num_rows
    spread = np.full(n, np.nan)
    scores = table.column("scores")
    if n == 0:
        return spread, 0
    flat = scores.combine_chunks() if scores.num_chunks != 1 else scores.chunk(0)
    parents = pc.list_parent_indices(flat).to_numpy()
    values = pc.list_flatten(flat).cast(pa.float64()).to_numpy(zero_copy_only=False)
    finite = np.isfinite(values)
    if finite.any():
        best = np.full(n, -np.inf)
        worst = np.full(n, np.inf)
        np.maximum.at(best, parents[finite], values[finite])
        np.minimum.at(worst, parents[finite], values[finite])
        has = np.bincount(parents[finite], minlength=n) > 0
        spread[has] = best[has] - worst[has]
    same_list = parents[1:] == parents[:-1]
    tied = len(np.unique(parents[1:][same_list & (values[1:] == values[:-1])]))
    return spread, tied


def _lists_report(table: pa.Table) -> dict:
    sizes = _list_lengths(table, "responses")
    spread, tied = _spread(table)
    groups = _group_sizes(table)
    return {
        "kind": "lists",
        "rows": table.num_rows,
        "lists": table.num_rows,
        "prompts": None if groups is None else len(groups),
        "responses": int(sizes.sum()),
        "list_size": _per_group(sizes),
        "score_spread": describe(spread),
        "lists_with_ties": tied,
        "stages": _stages(table, None),
    }


def _trees_report(table: pa.Table) -> dict:
    n = table.num_rows
    report: dict[str, Any] = {"kind": "trees", "rows": n, "nodes": n}
    if "tree_id" in table.column_names:
        report["trees"] = len(np.unique(table.column("tree_id").to_numpy()))
    parent = table.column("parent_id")
    report["roots"] = int(parent.null_count)
    # Children per node, from parent ids (a node is internal when it has children).
    import pyarrow.compute as pc

    keys = ["tree_id", "parent_id"] if "tree_id" in table.column_names else ["parent_id"]
    children = (
        table.select(keys).filter(pc.is_valid(parent)).group_by(keys).aggregate([([], "count_all")])
    )
    per_parent = children.column("count_all").to_numpy() if children.num_rows else np.array([])
    report["internal_nodes"] = len(per_parent)
    if "is_leaf" in table.column_names:
        report["leaves"] = int(pc.sum(table.column("is_leaf").cast(pa.int64())).as_py() or 0)
    else:
        report["leaves"] = n - len(per_parent)
    report["branching"] = _per_group(per_parent.astype(np.int64)) if len(per_parent) else None
    report["branching_nodes"] = int((per_parent >= 2).sum()) if len(per_parent) else 0
    if "depth" in table.column_names:
        depth = table.column("depth").to_numpy(zero_copy_only=False).astype(np.int64)
        report["max_depth"] = int(depth.max()) if n else None
        report["nodes_per_depth"] = _histogram(depth) if n else {}
    for name in ("value", "visits"):
        if name in table.column_names:
            report[name] = describe(_floats(table, name))
    return report


def report(table: Any) -> dict:
    """Statistics of a pair, list or tree table, and where its rows came from.

    Parameters
    ----------
    table
        A table made by prefkit (or of the same shape): pairs (``chosen``, ``rejected``), ranked
        lists (``responses``, ``scores``) or tree nodes (``node_id``, ``parent_id``).

    Returns
    -------
    dict
        Always ``kind`` (``"pairs"``, ``"lists"`` or ``"trees"``), ``rows`` and
        ``accounting`` (the provenance record, ``pk.report_of``). Pairs: ``prompts``,
        ``pairs_per_prompt`` (mean, median, min, max, histogram), ``margin`` (count, mean, std,
        min, p25, median, p75, max), ``zero_margin``, ``length`` (``pk.length_stats``),
        ``stages`` (rows and mean margin per curriculum stage, or None) and ``strength``
        (agreement, strength and margin spread, when present). Lists: ``lists``, ``prompts``,
        ``responses``, ``list_size``, ``score_spread`` (best minus worst),
        ``lists_with_ties``, ``stages``. Trees: ``trees``, ``nodes``, ``roots``,
        ``internal_nodes``, ``leaves``, ``branching`` (children per internal node),
        ``branching_nodes`` (with 2+ children), ``max_depth``, ``nodes_per_depth``, ``value``,
        ``visits``. Statistics of an empty column are None.

    Raises
    ------
    PrefkitError
        When the table is none of the three kinds (the message lists the columns).

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> rated = pa.table({"prompt": ["p", "p", "p", "q", "q"],
    ...                   "response": ["a", "bb", "ccc", "d", "ee"],
    ...                   "score": [3.0, 2.0, 1.0, 1.0, 0.0]})
    >>> r = pk.report(pk.mine_pairs(rated, strategy="all_pairs"))
    >>> r["kind"], r["rows"], r["prompts"], r["pairs_per_prompt"]["histogram"]
    ('pairs', 4, 2, {1: 1, 3: 1})
    >>> r["margin"]["max"], r["length"]["chosen_longer"], r["accounting"]["rows_in"]
    (2.0, 0.0, 5)
    """
    table = as_table(table)
    kind = table_kind(table)
    builders = {"pairs": _pairs_report, "lists": _lists_report, "trees": _trees_report}
    out = builders[kind](table)
    out["accounting"] = report_of(table)
    return out


# ---------------------------------------------------------------------------------------------
# Plots and the Markdown page
# ---------------------------------------------------------------------------------------------

COLOR = "#3b6ea8"
ACCENT = "#d1495b"


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:  # an optional dependency: say how to get it
        raise PrefkitError(
            "writing a report needs matplotlib: pip install matplotlib (or prefkit[all])"
        ) from error

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _figure(plt, title: str):
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=130)
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # y counts pairs, prompts, nodes
    return fig, ax


def _save(plt, fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path.name


def _bars(plt, path: Path, counts: dict, title: str, xlabel: str, ylabel: str, line=None):
    """A bar per integer key, with the count on top; ``line``: (label, {key: value}) drawn on
    a second axis."""
    fig, ax = _figure(plt, title)
    keys = list(counts)
    values = [counts[k] for k in keys]
    bars = ax.bar([str(k) for k in keys], values, color=COLOR, width=0.7)
    top = max(values) if values else 0
    for bar, value in zip(bars, values):
        inside = len(keys) <= 25 and value >= 0.15 * top
        ax.annotate(
            f"{value}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center", va="top" if inside else "bottom", fontsize=8,
            color="white" if inside else "black",
            xytext=(0, -3 if inside else 2), textcoords="offset points",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(values) * 1.15 if values else 1)
    if len(keys) > 25:
        for i, label in enumerate(ax.get_xticklabels()):
            label.set_visible(i % math.ceil(len(keys) / 25) == 0)
    if line is not None:
        label, points = line
        twin = ax.twinx()
        twin.plot([str(k) for k in keys], [points.get(k) for k in keys], color=ACCENT,
                  marker="o", linewidth=1.5)
        finite = [v for v in points.values() if v is not None and math.isfinite(v)]
        if finite:
            # The line peaks at 70% of the height, below the counts printed in the bars.
            twin.set_ylim(min(0.0, min(finite)), max(finite) / 0.7 if max(finite) > 0 else 1)
        twin.set_ylabel(label, color=ACCENT)
        twin.tick_params(axis="y", colors=ACCENT)
        twin.spines["top"].set_visible(False)
    return _save(plt, fig, path)


def _histogram_plot(plt, path: Path, values: np.ndarray, title: str, xlabel: str, ylabel: str):
    x = values[np.isfinite(values)]
    fig, ax = _figure(plt, title)
    if len(x):
        distinct = np.unique(x)
        gap = float(np.diff(distinct).min()) if len(distinct) > 1 else 1.0
        steps = (distinct - distinct[0]) / gap
        on_grid = bool(np.allclose(steps, np.round(steps), atol=1e-6)) and steps[-1] <= 40
        if on_grid:
            # Ratings on a grid (e.g. steps of 0.25): one bar per value; bins would alias.
            counts = [int((x == v).sum()) for v in distinct]
            ax.bar(distinct, counts, width=gap * 0.8, color=COLOR)
            if len(distinct) <= 16:
                ax.set_xticks(distinct)
                ax.set_xticklabels([f"{v:g}" for v in distinct])
        else:
            bins = min(50, max(10, int(np.ceil(np.sqrt(len(x))))))
            ax.hist(x, bins=bins, color=COLOR, edgecolor="white", linewidth=0.5)
        mean, median = x.mean(), np.median(x)
        ax.axvline(mean, color=ACCENT, linewidth=1.4, label=f"mean {mean:.3g}")
        ax.axvline(median, color="#333333", linestyle="--", linewidth=1.2,
                   label=f"median {median:.3g}")
        # Above the plot, right of the left-aligned title: never on top of a bar.
        ax.legend(frameon=False, fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                  ncol=2, borderaxespad=0.2)
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(plt, fig, path)


def _length_scatter(plt, table: pa.Table, path: Path, stats: dict):
    c, r = lengths(table, "chosen"), lengths(table, "rejected")
    ok = ~(np.isnan(c) | np.isnan(r))
    margin = _floats(table, "margin")[ok] if "margin" in table.column_names else None
    c, r = c[ok], r[ok]
    fig, ax = plt.subplots(figsize=(6.0, 5.4), dpi=130)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    subtitle = f"{stats['pairs']} pairs"
    if stats.get("margin_length_correlation") is not None:
        subtitle += f", corr(margin, length difference) = {stats['margin_length_correlation']:.2f}"
    ax.set_title(f"Chosen vs rejected length\n{subtitle}", fontsize=10, loc="left")
    if len(c):
        kwargs: dict[str, Any] = {"s": 24, "alpha": 0.85, "edgecolors": "white",
                                  "linewidths": 0.4, "zorder": 3}
        if margin is not None and np.isfinite(margin).any() and np.nanstd(margin) > 0:
            points = ax.scatter(r, c, c=margin, cmap="viridis", **kwargs)
            fig.colorbar(points, ax=ax, label="margin", pad=0.02, shrink=0.85)
        else:
            ax.scatter(r, c, color=COLOR, **kwargs)
        high = max(c.max(), r.max(), 1.0)
        low = min(c.min(), r.min())
        if low > 0 and high / low > 100:
            ax.set_xscale("log")
            ax.set_yscale("log")
            edge = (low / 1.3, high * 1.3)
        else:
            pad = 0.05 * (high - low or 1)
            edge = (max(0.0, low - pad), high + pad)
        # Above the diagonal the chosen response is the longer one.
        ax.fill_between(edge, edge, [edge[1], edge[1]], color=COLOR, alpha=0.06, zorder=1)
        ax.plot(edge, edge, color="#555555", linestyle="--", linewidth=1, zorder=2)
        ax.set_xlim(edge)
        ax.set_ylim(edge)
        ax.set_aspect("equal", adjustable="box")
        box = {"boxstyle": "round,pad=0.3", "facecolor": "white", "alpha": 0.85,
               "edgecolor": "none"}
        if stats.get("chosen_longer") is not None:
            ax.text(0.03, 0.97, f"chosen longer: {stats['chosen_longer']:.0%}",
                    transform=ax.transAxes, ha="left", va="top", fontsize=9, bbox=box,
                    zorder=4)
            ax.text(0.97, 0.03, f"rejected longer: {stats['rejected_longer']:.0%}",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=9, bbox=box,
                    zorder=4)
    else:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("rejected length (characters)")
    ax.set_ylabel("chosen length (characters)")
    return _save(plt, fig, path)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[tuple], header: tuple) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _stats_rows(stats: dict | None) -> list[tuple]:
    if not stats:
        return []
    return [(name, stats[name]) for name in stats if name != "histogram"]


def _accounting_lines(record: dict) -> list[str]:
    lines = ["## Row accounting", ""]
    if not record:
        return lines + ["The table carries no prefkit provenance record.", ""]
    chain = []
    while record:
        chain.append(record)
        record = record.get("source")
    for step in reversed(chain):
        lines.append(f"### `{step.get('op', '?')}` (prefkit {step.get('prefkit_version', '?')})")
        lines.append("")
        parameters = step.get("parameters") or {}
        if parameters:
            shown = ", ".join(f"`{k}={v!r}`" for k, v in parameters.items() if v not in (None, []))
            lines += [f"Parameters: {shown}", ""]
        rows = [("rows in", step.get("rows_in")), ("rows used", step.get("rows_used")),
                ("rows out", step.get("rows_out"))]
        rows += [(f"dropped: {reason}", n) for reason, n in sorted(step.get("dropped", {}).items())]
        skip = {"op", "prefkit_version", "parameters", "rows_in", "rows_used", "rows_out",
                "dropped", "source"}
        rows += [(name, value) for name, value in step.items()
                 if name not in skip and not isinstance(value, (dict, list))]
        lines += _table([r for r in rows if r[1] is not None], ("", "count"))
    return lines


def write_report(table: Any, out_dir: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``report.md`` and its PNG plots into ``out_dir`` (created if needed).

    Pairs get ``margin_hist.png``, ``length_scatter.png``, ``pairs_per_prompt.png`` and, with a
    ``stage`` column, ``stage_sizes.png``; lists ``list_sizes.png`` and ``score_spread.png``;
    trees ``nodes_per_depth.png`` and ``branching.png``. Needs matplotlib.

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.
    """
    table = as_table(table)
    stats = report(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    kind = stats["kind"]
    lines = [f"# {title or 'prefkit report'}", "", f"A {kind} table of {stats['rows']} rows"
             + (f", made by `{stats['accounting'].get('op')}`." if stats["accounting"] else "."),
             ""]
    images: list[tuple[str, str]] = []

    if kind == "pairs":
        summary = [("pairs", stats["rows"]), ("prompts", stats["prompts"]),
                   ("pairs with margin 0", stats["zero_margin"])]
        lines += ["## Summary", ""] + _table(summary, ("", "value"))
        if stats["margin"]:
            lines += ["## Margins", ""] + _table(_stats_rows(stats["margin"]), ("margin", "value"))
            images.append(("Margin histogram", _histogram_plot(
                plt, out / "margin_hist.png", _floats(table, "margin"),
                f"Margin distribution ({stats['margin']['count']} pairs)",
                "margin (score_chosen − score_rejected)", "pairs")))
        length = stats["length"]
        lines += ["## Length bias", "", "Lengths in characters."] + [""] + _table(
            [(k, v) for k, v in length.items()], ("", "value"))
        images.append(("Chosen vs rejected length", _length_scatter(
            plt, table, out / "length_scatter.png", length)))
        if stats["pairs_per_prompt"]:
            per = stats["pairs_per_prompt"]
            lines += ["## Pairs per prompt", ""] + _table(
                [(k, per[k]) for k in ("mean", "median", "min", "max")], ("", "value"))
            images.append(("Pairs per prompt", _bars(
                plt, out / "pairs_per_prompt.png", per["histogram"],
                f"Pairs per prompt ({stats['prompts']} prompts)", "pairs per prompt",
                "prompts")))
        if stats["strength"]:
            rows = []
            for name, value in stats["strength"].items():
                if isinstance(value, dict):
                    rows.append((name, value["mean"], value["min"], value["max"]))
                else:
                    rows.append((name, value, None, None))
            lines += ["## Preference strength", ""] + _table(rows, ("", "mean", "min", "max"))
    elif kind == "lists":
        summary = [("lists", stats["lists"]), ("prompts", stats["prompts"]),
                   ("responses", stats["responses"]), ("lists with ties", stats["lists_with_ties"])]
        lines += ["## Summary", ""] + _table(summary, ("", "value"))
        if stats["list_size"]:
            images.append(("List sizes", _bars(
                plt, out / "list_sizes.png", stats["list_size"]["histogram"],
                f"List sizes ({stats['lists']} lists)", "responses per list", "lists")))
        if stats["score_spread"]:
            lines += ["## Score spread (best − worst)", ""] + _table(
                _stats_rows(stats["score_spread"]), ("spread", "value"))
            spread, _ = _spread(table)
            images.append(("Score spread", _histogram_plot(
                plt, out / "score_spread.png", spread, "Score spread per list (best − worst)",
                "best score − worst score", "lists")))
    else:
        summary = [(k, stats.get(k)) for k in
                   ("trees", "nodes", "roots", "internal_nodes", "branching_nodes", "leaves",
                    "max_depth")]
        lines += ["## Summary", ""] + _table(summary, ("", "value"))
        if stats.get("nodes_per_depth"):
            images.append(("Nodes per depth", _bars(
                plt, out / "nodes_per_depth.png", stats["nodes_per_depth"],
                f"Nodes per depth ({stats['nodes']} nodes)", "depth", "nodes")))
        if stats.get("branching"):
            images.append(("Children per internal node", _bars(
                plt, out / "branching.png", stats["branching"]["histogram"],
                "Children per internal node", "children", "nodes")))
        for name in ("value", "visits"):
            if stats.get(name):
                lines += [f"## {name.capitalize()}", ""] + _table(
                    _stats_rows(stats[name]), (name, "value"))

    if stats.get("stages"):
        stages = stats["stages"]
        rows = [(s, v["rows"], v.get("mean_margin")) for s, v in stages.items()]
        lines += ["## Curriculum stages", ""] + _table(rows, ("stage", "rows", "mean margin"))
        mean_margin = {s: v.get("mean_margin") for s, v in stages.items()}
        line = ("mean margin", mean_margin) if kind == "pairs" else None
        images.append(("Stage sizes", _bars(
            plt, out / "stage_sizes.png", {s: v["rows"] for s, v in stages.items()},
            f"Stage sizes ({len(stages)} stages)", "stage", "rows", line=line)))

    if images:
        lines += ["## Plots", ""]
        for caption, name in images:
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    lines += _accounting_lines(stats["accounting"])
    path = out / "report.md"
    tmp = out / ".report.md.tmp"
    tmp.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
