"""Stage *summary*: the :class:`~.summary.Summary` as the tables every renderer shows.

The Markdown and HTML pages show :func:`report_tables` (by section title) with
:func:`legend_lines`; the CSV is :func:`csv_frame`, tidy long: one row per system x metric x
output x scope, where scope is ``pooled`` (the leaderboard statistics) or ``seed`` (one row per
seed, numbers from that run's record).

A cell whose metric the system's training also optimised (its reward used it, see
:func:`~.load.optimised_metrics`) is marked with :data:`MARK` and the legend says why; the CSV
then has a boolean ``optimised`` column. A leaderboard without a reward-trained system has
neither, so it reads exactly as before.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..components import direction_arrow, has_direction
from .load import LoadedResults
from .summary import Summary

__all__ = [
    "AGREEMENT_TITLE",
    "CSV_COLUMNS",
    "HUMAN_TITLE",
    "MARK",
    "OPTIMISED_COLUMN",
    "csv_frame",
    "fmt",
    "headline_frame",
    "human_frame",
    "legend_lines",
    "metric_title",
    "output_digits",
    "rank_agreement",
    "report_tables",
    "seeds_text",
]

HUMAN_TITLE = "Listening tests"
MARK = "†"  # after a value whose metric the system's training also optimised
AGREEMENT_TITLE = "How people and the automatic metrics rank the systems"


def fmt(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (thousands and above: whole, with commas); ``–`` for none."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "–"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def output_digits(table: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Decimal places per metric output: enough to show the interval width."""
    medians = (
        pd.DataFrame(
            {
                "metric": table["metric"],
                "output": table["output"],
                "width": (table["ci_high"] - table["ci_low"]).abs(),
                "size": table["mean"].abs(),
            }
        )
        .groupby(["metric", "output"])[["width", "size"]]
        .median()
    )
    out = {}
    for (metric, output), width, size in zip(
        medians.index, medians["width"].tolist(), medians["size"].tolist()
    ):
        if not width or math.isnan(width):
            width = size or 1.0
        out[(metric, output)] = int(min(4, max(1, 1 - math.floor(math.log10(width)))))
    return out


def seeds_text(n: Any, seeds: str) -> str:
    """``1 (seed 0)``, ``3 (seeds 0, 1, 2)``: the count first, so one seed never reads as zero."""
    try:
        n = int(n)
    except (TypeError, ValueError):
        n = len([s for s in str(seeds).split(",") if s.strip()])
    if not n:
        return "0 (no seed recorded)"
    return f"{n} (seed{'s' if n > 1 else ''} {seeds})"


def metric_title(summary: Summary, metric: str, output: str, hib: bool) -> str:
    """``cer.cer ↓``, or for a human metric ``mos.mos ↑ (human, 5 raters)``."""
    title = f"{metric}.{output} {direction_arrow(hib)}"
    info = summary.human.get(metric)
    if info:
        title += f" (human, {info['n_raters']} raters)"
    return title


def headline_frame(summary: Summary, with_ci: bool = True) -> pd.DataFrame:
    """The human table: one row per system, headline metrics as mean [CI], Δ with stars, rank."""
    table = summary.table
    head = table[table["is_headline"]].copy()
    digits = output_digits(table)
    metrics = list(dict.fromkeys(head.sort_values("metric")["metric"]))
    frame = pd.DataFrame(
        {
            "System": summary.systems["label"]
            + np.where(summary.systems["is_anchor"], " (anchor)", ""),
            "Seeds": [
                seeds_text(n, text)
                for n, text in zip(summary.systems["n_seeds"], summary.systems["seeds"])
            ],
            "Trainable %": summary.systems["trainable_share_pct"].map(lambda v: fmt(v, 2)),
            "Adapter MB": summary.systems["adapter_mb"].map(lambda v: fmt(v, 1)),
        }
    )
    index = {s: i for i, s in enumerate(summary.systems["system"])}
    for metric in metrics:
        rows = head[head["metric"] == metric]
        first = rows.iloc[0]
        name = metric_title(summary, metric, first["output"], first["higher_is_better"])
        dg = digits[(metric, first["output"])]
        cells = [""] * len(frame)
        deltas = [""] * len(frame)
        ranks = [""] * len(frame)
        for r in rows.itertuples():
            i = index[r.system]
            cells[i] = fmt(r.mean, dg) + (
                f" [{fmt(r.ci_low, dg)}, {fmt(r.ci_high, dg)}]" if with_ci else ""
            )
            cells[i] += MARK if r.optimised else ""
            if r.is_anchor:
                deltas[i] = "anchor"
            elif not math.isnan(r.delta):
                deltas[i] = f"{r.delta:+.{dg}f}{r.stars}"
            ranks[i] = "" if r.rank is pd.NA else str(int(r.rank))
        frame[name] = cells
        frame[f"Δ {metric}"] = deltas
        frame[f"# {metric}"] = ranks
    frame["Mean rank"] = summary.systems["mean_rank"].map(lambda v: fmt(v, 1))
    frame["Val loss"] = summary.systems["selected_val_loss"].map(lambda v: fmt(v, 3))
    return frame


def _failures_frame(loaded: LoadedResults) -> pd.DataFrame:
    rows = [
        {"Run": f.run_id, "Status": f.status, "Metric": f.metric or "", "Error": f.error}
        for f in loaded.failed_runs + loaded.failed_records
    ]
    rows += [
        {"Run": r, "Status": "unfinished", "Metric": "", "Error": "no DONE marker (will be redone)"}
        for r in loaded.unfinished_runs
    ]
    return pd.DataFrame(rows, columns=["Run", "Status", "Metric", "Error"])


def _item_issues_frame(summary: Summary) -> pd.DataFrame:
    head = summary.table[summary.table["is_headline"]]
    grp = head.groupby("metric")[["n", "n_not_applicable", "n_item_errors"]].sum()
    grp = grp.reset_index().rename(
        columns={
            "metric": "Metric",
            "n": "Scored items",
            "n_not_applicable": "Not applicable",
            "n_item_errors": "Failed items",
        }
    )
    return grp


def _per_seed_frame(summary: Summary) -> pd.DataFrame:
    ps = summary.per_seed[summary.per_seed["is_headline"]]
    digits = output_digits(summary.table)
    labels = dict(zip(summary.systems["system"], summary.systems["label"]))
    marked = set(_optimised_cells(summary))
    ps = ps.assign(
        cell=[
            f"{fmt(m, digits.get((mt, o), 3))} [{fmt(lo, digits.get((mt, o), 3))}, "
            f"{fmt(hi, digits.get((mt, o), 3))}]" + (MARK if (s, mt) in marked else "")
            for m, lo, hi, mt, o, s in zip(
                ps["mean"], ps["ci_low"], ps["ci_high"], ps["metric"], ps["output"], ps["system"]
            )
        ],
        System=ps["system"].map(labels),
        Seed=ps["seed"].astype(str),
    )
    wide = ps.pivot_table(
        index=["System", "Seed"], columns="metric", values="cell", aggfunc="first"
    )
    order = {lab: i for i, lab in enumerate(summary.systems["label"])}
    wide = wide.reset_index()
    wide = wide.sort_values(
        ["System", "Seed"], key=lambda s: s.map(order) if s.name == "System" else s
    )
    wide.columns.name = None
    return wide


def _optimised_cells(summary: Summary) -> list[tuple[str, str]]:
    """(system, metric) of every table row whose metric the system's training optimised."""
    table = summary.table
    if "optimised" not in table:
        return []
    rows = table[table["optimised"].astype(bool)]
    return list(zip(rows["system"], rows["metric"]))


def legend_lines(summary: Summary) -> list[str]:
    pct = round(summary.confidence * 100)
    family = (
        f"over all {summary.n_comparisons} comparisons of this leaderboard"
        if summary.n_comparisons
        else "over the comparisons of this leaderboard (none could be tested here)"
    )
    timing = (
        f" The {summary.n_timing_comparisons} latency comparisons are adjusted as a family of "
        "their own: timings differ from run to run and must not move the metrics' p-values."
        if summary.n_timing_comparisons
        else ""
    )
    return (
        [
            f"Means over all utterances and seeds with {pct} % bootstrap intervals (BCa); the "
            "bootstrap resamples utterances, each with all its seeds.",
            "Δ: mean paired difference to the zero-shot anchor of the same backbone (same utterance, "
            "system seed s against anchor seed s; where the anchor lacks seed s, its mean over its "
            "seeds).",
            "Stars: two-sided Wilcoxon signed-rank test on the per-utterance mean differences (over "
            f"seeds), Holm-adjusted for multiple comparisons {family} (every system × metric "
            "output against its anchor): *** p < 0.001, ** p < 0.01, * p < 0.05 "
            f"(adjusted).{timing} "
            "Raw and adjusted p-values are in leaderboard.csv (p_value_raw, p_value_holm).",
            "↑ higher is better, ↓ lower is better; # is the rank among all systems (1 = best).",
            f"Val loss: validation loss of the checkpoint selected by {summary.select}, mean over seeds.",
        ]
        + (
            [
                "Human metrics (listening tests, ttsadapt listen): per sentence the mean over the "
                "kept raters; the interval resamples raters and sentences (two-way bootstrap); Δ "
                "and the Wilcoxon test pair sentences with the anchor's."
            ]
            if summary.human
            else []
        )
        + (
            [
                f"{MARK}: the system's training also optimised this metric (its reward used the same "
                "metric, possibly with another model behind it, e.g. a smaller ASR), so the number "
                "favours it; compare such cells with care."
            ]
            if _optimised_cells(summary)
            else []
        )
    )


def report_tables(loaded: LoadedResults, summary: Summary) -> dict[str, pd.DataFrame]:
    """The tables of the Markdown and HTML pages, by section title (built once for both)."""
    tables = {
        "Leaderboard": headline_frame(summary),
        "Per seed (headline outputs, from the records)": _per_seed_frame(summary),
        "Items not scored": _item_issues_frame(summary),
        "Failed runs": _failures_frame(loaded),
    }
    if summary.human:
        tables[HUMAN_TITLE] = human_frame(summary)
        tables[AGREEMENT_TITLE] = rank_agreement(summary)
    return tables


def human_frame(summary: Summary) -> pd.DataFrame:
    """One row per human metric: its tests, raters kept and excluded, agreement."""
    rows = []
    for metric, info in sorted(summary.human.items()):
        alphas = ", ".join(f"{a:.2f}" for a in info["alpha"].values()) or "–"
        rows.append(
            {
                "Metric": metric,
                "Kind": info.get("kind") or "",
                "Tests": ", ".join(info["tests"]),
                "Raters kept": info["n_raters"],
                "Raters excluded": info["n_excluded"],
                "Krippendorff α (interval)": alphas,
            }
        )
    return pd.DataFrame(rows)


def rank_agreement(summary: Summary) -> pd.DataFrame:
    """How each human metric and each automatic metric rank the systems (Spearman's rho).

    Over the systems that have both headline means; each mean is signed by its direction
    (lower-is-better metrics negated), so rho = +1 means the same order, -1 the reverse. Fewer
    than three shared systems give no rho.
    """
    from scipy.stats import spearmanr

    cols = ["Human metric", "Automatic metric", "Systems", "Spearman ρ", "p", "Best by human"]
    cols += ["Best by automatic"]
    if not summary.human:
        return pd.DataFrame(columns=cols)
    head = summary.table[summary.table["is_headline"]]
    head = head[head["higher_is_better"].map(has_direction).astype(bool)]
    labels = dict(zip(summary.systems["system"], summary.systems["label"]))
    hib = head["higher_is_better"].astype(bool)
    signed = head.assign(score=np.where(hib, head["mean"], -head["mean"]))
    by_metric = {m: grp.set_index("system")["score"] for m, grp in signed.groupby("metric")}
    rows = []
    for hm in sorted(summary.human):
        if hm not in by_metric:
            continue
        for am in sorted(by_metric):
            if am in summary.human:
                continue
            both = pd.concat([by_metric[hm], by_metric[am]], axis=1, join="inner").dropna()
            rho = p = math.nan
            if len(both) >= 3:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # constant input: rho is NaN, said below
                    res = spearmanr(both.iloc[:, 0], both.iloc[:, 1])
                rho, p = float(res.statistic), float(res.pvalue)
            rows.append(
                {
                    "Human metric": hm,
                    "Automatic metric": am,
                    "Systems": len(both),
                    "Spearman ρ": "–" if math.isnan(rho) else f"{rho:+.2f}",
                    "p": "–" if math.isnan(p) else f"{p:.3f}",
                    "Best by human": labels.get(both.iloc[:, 0].idxmax(), "") if len(both) else "",
                    "Best by automatic": labels.get(both.iloc[:, 1].idxmax(), "")
                    if len(both)
                    else "",
                }
            )
    return pd.DataFrame(rows, columns=cols)


CSV_COLUMNS = [
    "suite",
    "scope",
    "system",
    "backbone",
    "method",
    "method_params",
    "data_recipe",
    "is_anchor",
    "seed",
    "run_id",
    "metric",
    "metric_version",
    "output",
    "is_headline",
    "higher_is_better",
    "unit",
    "mean",
    "ci_low",
    "ci_high",
    "n",
    "n_not_applicable",
    "n_item_errors",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "n_pairs",
    "n_paired_items",
    "p_value_raw",
    "p_value_holm",
    "holm_family_size",
    "stars",
    "rank",
    "trainable_params",
    "total_params",
    "trainable_share_pct",
    "adapter_mb",
    "selected_val_loss",
]
# present when some system of the leaderboard was trained on a reward (see optimised_metrics)
OPTIMISED_COLUMN = "optimised"


def csv_frame(summary: Summary) -> pd.DataFrame:
    """Tidy long CSV: ``scope`` ``pooled`` rows hold the statistics, ``seed`` rows each run."""
    sys_cols = systems_cols = summary.systems[
        [
            "system",
            "label",
            "method_params",
            "data_recipe",
            "trainable_params",
            "total_params",
            "trainable_share_pct",
            "adapter_mb",
            "selected_val_loss",
        ]
    ]
    pooled = summary.table.drop(columns=["label"]).merge(systems_cols, on="system")
    pooled = pooled.assign(scope="pooled", seed="all", run_id="")
    meta = summary.table[
        [
            "system",
            "metric",
            "output",
            "metric_version",
            "higher_is_better",
            "unit",
            "is_anchor",
            "backbone",
            "method",
            "optimised",
        ]
    ]
    seeds = summary.per_seed.merge(meta, on=["system", "metric", "output"]).merge(
        sys_cols, on="system"
    )
    seeds = seeds.assign(scope="seed")
    frame = pd.concat([pooled, seeds], ignore_index=True)
    frame["system"] = frame["label"]
    frame["suite"] = summary.suite
    frame = frame.sort_values(
        ["system", "metric", "output_index", "scope", "seed"], key=lambda s: s.astype(str)
    )
    rewarded = any(summary.systems["optimised"]) if "optimised" in summary.systems else False
    return frame.reindex(columns=CSV_COLUMNS + ([OPTIMISED_COLUMN] if rewarded else []))
