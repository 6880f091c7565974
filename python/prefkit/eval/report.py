"""Reports of evaluation results: ``report.md`` and PNG plots (``prefkit eval ... --report``).

Built on the helpers of :mod:`prefkit.report` (matplotlib imported lazily with the Agg backend,
one figure style, Markdown tables), for the results of :func:`prefkit.evaluate_rewards` and
:func:`prefkit.ranking_accuracy`. ``docs/eval.md`` describes the files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit._errors import PrefkitError
from prefkit._provenance import report_of
from prefkit.report import ACCENT, COLOR, _figure, _histogram_plot, _pyplot, _save, _table

#: One colour per model in the reward plots (the report's blue and red first).
PALETTE = (COLOR, ACCENT, "#2e933c", "#edae49", "#6b4c9a", "#00798c", "#8c564b", "#555555")

#: The PNG files of a rewards report, in the order report.md shows them.
REWARDS_PLOTS = ("subset_accuracy.png", "calibration.png", "length_accuracy.png")

#: The PNG files of a ranking report (``ref_margin_hist.png`` only with reference log-probs).
RANKING_PLOTS = ("ranking_accuracy.png", "policy_margin_hist.png", "ref_margin_hist.png")


def _rate_figure(plt, title: str):
    """A report figure whose y axis is a rate in [0, 1] (not the integer counts of
    :func:`prefkit.report._figure`)."""
    from matplotlib.ticker import AutoLocator

    fig, ax = _figure(plt, title)
    ax.yaxis.set_major_locator(AutoLocator())
    ax.set_ylim(0, 1.05)
    return fig, ax


def _legend(ax, models: list[str]) -> None:
    """Several models: their legend in a band above 1.0, which no rate reaches."""
    if len(models) > 1:
        ax.set_ylim(0, 1.2)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.legend(frameon=False, fontsize=8, loc="upper right", ncol=min(4, len(models)),
                  borderaxespad=0.2)


def _subset_plot(plt, path: Path, rows: list[dict], models: list[str]) -> str:
    """Accuracy per subset (and overall) with its bootstrap interval as error bars; several
    models side by side."""
    subsets = [None] + sorted({r["subset"] for r in rows if r["subset"] is not None})
    fig, ax = _rate_figure(plt, "Accuracy per subset, 95% bootstrap intervals")
    width = 0.8 / len(models)
    x = np.arange(len(subsets))
    for m, model in enumerate(models):
        by_subset = {r["subset"]: r for r in rows if r["model"] == model}
        acc, low, high = [], [], []
        for s in subsets:
            row = by_subset.get(s, {})
            a = row.get("accuracy")
            acc.append(np.nan if a is None else a)
            lo, hi = row.get("ci_low"), row.get("ci_high")
            low.append(0.0 if a is None or lo is None else a - lo)
            high.append(0.0 if a is None or hi is None else hi - a)
        ax.bar(x + (m - (len(models) - 1) / 2) * width, acc, width=width * 0.9,
               color=PALETTE[m % len(PALETTE)], label=model,
               yerr=[low, high], capsize=3, error_kw={"linewidth": 1.0, "ecolor": "#333333"})
    ax.axhline(0.5, color="#555555", linestyle="--", linewidth=1, label="_chance")
    ax.set_xticks(x)
    ax.set_xticklabels(["overall" if s is None else s for s in subsets],
                       rotation=30 if len(subsets) > 4 else 0, ha="right" if len(subsets) > 4
                       else "center", fontsize=8)
    ax.set_ylabel("accuracy (chosen scored higher)")
    _legend(ax, models)
    return _save(plt, fig, path)


def _calibration_plot(plt, path: Path, per_model: dict, models: list[str]) -> str:
    """Observed accuracy against mean predicted P(chosen) = sigmoid(margin) per bucket, with the
    diagonal of a calibrated model; marker area grows with the bucket's pairs."""
    fig, ax = _rate_figure(plt, "Calibration: predicted P(chosen) vs observed")
    ax.plot([0, 1], [0, 1], color="#555555", linestyle="--", linewidth=1, label="calibrated")
    for m, model in enumerate(models):
        cal = per_model[model]["calibration"]
        points = [b for b in cal["buckets"] if b["pairs"]]
        if not points:
            continue
        total = sum(b["pairs"] for b in points)
        ece = cal["ece"]
        ax.plot([b["mean_predicted"] for b in points], [b["accuracy"] for b in points],
                color=PALETTE[m % len(PALETTE)], linewidth=1.3, zorder=3,
                label=f"{model} (ECE {ece:.3f})" if ece is not None else model)
        ax.scatter([b["mean_predicted"] for b in points], [b["accuracy"] for b in points],
                   s=[12 + 150 * b["pairs"] / total for b in points],
                   color=PALETTE[m % len(PALETTE)], edgecolors="white", linewidths=0.4, zorder=4)
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean predicted P(chosen) = sigmoid(margin)")
    ax.set_ylabel("observed accuracy")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return _save(plt, fig, path)


def _length_plot(plt, path: Path, per_model: dict, models: list[str]) -> str:
    """Accuracy per quantile bucket of chars(chosen) - chars(rejected), at the bucket's mean."""
    fig, ax = _rate_figure(plt, "Accuracy vs length difference (length bias)")
    drawn = False
    for m, model in enumerate(models):
        buckets = [b for b in per_model[model].get("length_buckets") or [] if b["pairs"]]
        if not buckets:
            continue
        drawn = True
        ax.plot([b["mean_length_diff"] for b in buckets], [b["accuracy"] for b in buckets],
                color=PALETTE[m % len(PALETTE)], marker="o", linewidth=1.3, label=model)
    if drawn:
        ax.axvline(0, color="#999999", linewidth=0.8)
        ax.axhline(0.5, color="#555555", linestyle="--", linewidth=1)
        _legend(ax, models)
    else:
        ax.text(0.5, 0.5, "no chosen/rejected text: no length buckets", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel("mean of chars(chosen) − chars(rejected) in the bucket")
    ax.set_ylabel("accuracy")
    return _save(plt, fig, path)


def _write(out: Path, lines: list[str], images: list[tuple[str, str]]) -> Path:
    if images:
        lines += ["## Plots", ""]
        for caption, name in images:
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    path = out / "report.md"
    tmp = out / ".report.md.tmp"
    tmp.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _checked(result: Any, op: str) -> tuple[pa.Table, dict]:
    if not isinstance(result, pa.Table):
        raise PrefkitError(f"expected the pyarrow.Table returned by pk.{op}, got "
                           f"{type(result).__name__}")
    record = report_of(result)
    if record.get("op") != op:
        raise PrefkitError(f"expected the result of pk.{op}; this table was made by "
                           f"{record.get('op')!r}")
    return result, record


def write_rewards_report(result: pa.Table, out_dir: str | os.PathLike, *,
                         title: str | None = None) -> Path:
    """Write ``report.md`` and the plots of a :func:`prefkit.evaluate_rewards` result.

    Plots: ``subset_accuracy.png`` (accuracy per subset and overall, 95% interval as error
    bars, one bar per model), ``calibration.png`` (per margin bucket, observed accuracy against
    mean sigmoid(margin), with the diagonal) and ``length_accuracy.png`` (accuracy per
    length-difference bucket). report.md has the accuracy table, each model's calibration and
    length buckets, the agreement between models and RewardBench sections when computed.
    Needs matplotlib.

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.
    """
    result, record = _checked(result, "evaluate_rewards")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    rows = result.to_pylist()
    per_model = record["models"]
    models = list(per_model)
    lines = [f"# {title or 'prefkit eval rewards'}", "",
             f"{record['rows_in']} pairs, {len(models)} model{'s' if len(models) > 1 else ''}: "
             + ", ".join(f"`{m}`" for m in models) + ". Accuracy counts a tie as "
             + ("half" if record["parameters"]["ties"] == "half" else "wrong") + "; intervals "
             f"are 95% bootstrap percentile intervals ({record['parameters']['bootstrap']} "
             "resamples).", "", "## Accuracy", ""]
    lines += _table([(r["model"], "overall" if r["subset"] is None else r["subset"], r["pairs"],
                      r["dropped"], r["accuracy"], r["ci_low"], r["ci_high"]) for r in rows],
                    ("model", "subset", "pairs", "dropped", "accuracy", "ci low", "ci high"))
    for model in models:
        info = per_model[model]
        lines += [f"## `{model}`", "", f"Calibration (ECE {info['calibration']['ece']:.4g}):"
                  if info["calibration"]["ece"] is not None else "Calibration:", ""]
        lines += _table([(f"{b['low']:.1f}–{b['high']:.1f}", b["pairs"], b["mean_predicted"],
                          b["accuracy"]) for b in info["calibration"]["buckets"]],
                        ("P(chosen) bucket", "pairs", "mean predicted", "accuracy"))
        if info.get("length_buckets"):
            lines += ["Accuracy by length difference (characters, chosen − rejected):", ""]
            lines += _table([(b["low"], b["high"], b["pairs"], b["mean_length_diff"],
                              b["accuracy"]) for b in info["length_buckets"]],
                            ("from", "to", "pairs", "mean difference", "accuracy"))
        if info.get("sections"):
            lines += ["RewardBench sections:", ""]
            lines += _table(list(info["sections"].items()), ("section", "score"))
    if record.get("agreement"):
        lines += ["## Agreement between models", ""]
        lines += _table([(a["a"], a["b"], a["pairs"], a["agreement"])
                         for a in record["agreement"]], ("model", "model", "pairs", "agreement"))
    images = [
        ("Accuracy per subset", _subset_plot(plt, out / REWARDS_PLOTS[0], rows, models)),
        ("Calibration", _calibration_plot(plt, out / REWARDS_PLOTS[1], per_model, models)),
        ("Accuracy vs length difference",
         _length_plot(plt, out / REWARDS_PLOTS[2], per_model, models)),
    ]
    return _write(out, lines, images)


def ranking_margins(result: pa.Table, side: str = "policy") -> np.ndarray:
    """Per pair, the log-prob margin (chosen − rejected) that ``ranked_correctly`` (``side=
    "policy"``) or ``ref_ranked_correctly`` (``side="ref"``) was decided on: sums, or per-token
    means when the result was computed with ``normalize=True``. NaN where missing."""
    from prefkit.eval.ranking import _lengths, _scored_tokens

    values = []
    for which in ("chosen", "rejected"):
        column = result.column(f"{side}_{which}_logps")
        values.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
    chosen, rejected = values
    if report_of(result)["parameters"]["normalize"]:
        prompt = _lengths(result, "prompt_ids")
        with np.errstate(divide="ignore", invalid="ignore"):
            chosen = chosen / _scored_tokens(prompt, _lengths(result, "chosen_ids"))
            rejected = rejected / _scored_tokens(prompt, _lengths(result, "rejected_ids"))
    margin = chosen - rejected
    margin[~np.isfinite(margin)] = np.nan
    return margin


def _accuracy_bars(plt, path: Path, figures: list[tuple[str, float]], pairs: int) -> str:
    fig, ax = _rate_figure(plt, f"Ranking accuracy ({pairs} pairs)")
    names = [name for name, _ in figures]
    values = [np.nan if v is None else v for _, v in figures]
    bars = ax.bar(names, values, color=PALETTE[: len(names)], width=0.6)
    for bar, value in zip(bars, values):
        if np.isfinite(value):
            ax.annotate(f"{value:.3f}", (bar.get_x() + bar.get_width() / 2, value),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
    ax.axhline(0.5, color="#555555", linestyle="--", linewidth=1)
    ax.set_ylabel("share of pairs ranked correctly")
    return _save(plt, fig, path)


def write_ranking_report(result: pa.Table, out_dir: str | os.PathLike, *,
                         title: str | None = None) -> Path:
    """Write ``report.md`` and the plots of a :func:`prefkit.ranking_accuracy` result.

    Plots: ``ranking_accuracy.png`` (the policy's, the reference's and the idealized ranking
    accuracy, those computed), ``policy_margin_hist.png`` and, with reference log-probs,
    ``ref_margin_hist.png`` (histograms of the log-prob margin chosen − rejected, see
    :func:`ranking_margins`). Needs matplotlib.

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.
    """
    result, record = _checked(result, "ranking_accuracy")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    parameters = record["parameters"]
    unit = "per-token mean log-probs" if parameters["normalize"] else "summed log-probs"
    lines = [f"# {title or 'prefkit eval ranking'}", "",
             f"{record['pairs']} pairs; policy `{parameters['model']}`"
             + (f", reference `{parameters['ref_model']}`" if parameters["ref_model"] else "")
             + f"; ranked by {unit}; beta {parameters['beta']}.", "", "## Ranking accuracy", ""]
    labels = {"ranking_accuracy": "policy", "ref_ranking_accuracy": "reference",
              "idealized_ranking_accuracy": "idealized (Chen et al. 2024)"}
    figures = [(label, record[key]) for key, label in labels.items() if key in record]
    lines += _table(figures + [("pairs", record["pairs"]), ("policy ties", record["ties"])]
                    + [(f"dropped: {k}", v) for k, v in sorted(record["dropped"].items())],
                    ("", "value"))
    images = [("Ranking accuracy", _accuracy_bars(plt, out / RANKING_PLOTS[0], figures,
                                                  record["pairs"]))]
    sides = [("policy", "Policy")]
    if "ref_chosen_logps" in result.column_names:
        sides.append(("ref", "Reference"))
    for (side, name), file in zip(sides, RANKING_PLOTS[1:]):
        images.append((f"{name} log-prob margins", _histogram_plot(
            plt, out / file, ranking_margins(result, side),
            f"{name} log-prob margin, chosen − rejected ({record['pairs']} pairs)",
            f"log p(chosen) − log p(rejected) ({unit})", "pairs")))
    return _write(out, lines, images)
