"""Figures of the leaderboard page (matplotlib, inline SVG), drawn from the :class:`Summary`.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global backend)
and embedded as inline ``<svg>``. Three figures:

* ``metric_intervals``: each headline metric's mean and interval per system, anchor marked;
* ``quality_vs_params``: each headline metric against the trainable-parameter share;
* ``loss_vs_quality``: validation loss beside the dev-set quality score across checkpoints, per
  system, with the loss-best and quality-best checkpoints marked (where runs kept several), plus
  the selected checkpoint's loss against the headline quality across systems (the quality metric
  is the suite's dev metric, else the first headline metric where higher is better).
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from ..components import direction_arrow, has_direction
from .summary import Summary

__all__ = [
    "figure_to_svg",
    "loss_vs_quality_figure",
    "metric_intervals_figure",
    "page_figures",
    "quality_vs_params_figure",
]

ANCHOR_COLOUR = "#d62728"
SYSTEM_COLOUR = "#1f77b4"
LOSS_COLOUR = "#1f77b4"
QUALITY_COLOUR = "#ff7f0e"
MAX_CHECKPOINT_PANELS = 5
MAX_POINT_LABELS = 16  # label the points of the parameter plot up to this many systems


def figure_to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (text kept as text, no XML prologue)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ttsadapt"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})  # same input, same bytes
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def _row_labels(ax: Any, y: np.ndarray, texts: list[str]) -> None:
    """Labels left of the axes at data heights ``y``, where y tick labels would be."""
    pad = ScaledTranslation(-7 / 72, 0, ax.figure.dpi_scale_trans)  # tick length + pad, 3.5 pt each
    trans = blended_transform_factory(ax.transAxes, ax.transData) + pad
    for yi, text in zip(y, texts):
        ax.text(0, yi, text, transform=trans, ha="right", va="center_baseline", fontsize=7)


def headline_rows(summary: Summary) -> pd.DataFrame:
    return summary.table[summary.table["is_headline"]]


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def metric_intervals_figure(summary: Summary) -> Figure:
    """One panel per headline metric: mean and interval per system; anchor in red."""
    head = headline_rows(summary)
    metrics = sorted(head["metric"].unique())
    order = list(summary.systems["system"])
    labels = dict(zip(summary.systems["system"], summary.systems["label"]))
    n_sys = len(order)
    height = max(2.5, 0.28 * n_sys + 1.2)
    ncols = min(len(metrics), 2) or 1
    nrows = math.ceil(len(metrics) / ncols) or 1
    fig = Figure(figsize=(6.5 * ncols, height * nrows))
    longest = max((len(_short(lab)) for lab in labels.values()), default=10)
    left_in = min(3.6, 0.3 + 0.055 * longest)  # label width in inches at 7 pt
    fig.subplots_adjust(
        left=left_in / (6.5 * ncols),
        right=0.98,
        top=1 - 0.5 / (height * nrows),
        bottom=0.4 / (height * nrows),
        wspace=0.08,
        hspace=0.35,
    )
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        rows = head[head["metric"] == metric].set_index("system").reindex(order)
        y = np.arange(n_sys)[::-1]
        mean = rows["mean"].to_numpy(float)
        err = np.vstack(
            [mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean]
        )
        err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
        anchor = rows["is_anchor"].fillna(False).to_numpy(bool)
        for mask, colour in ((~anchor, SYSTEM_COLOUR), (anchor, ANCHOR_COLOUR)):
            if mask.any():
                ax.errorbar(
                    mean[mask],
                    y[mask],
                    xerr=err[:, mask],
                    fmt="o",
                    ms=4,
                    color=colour,
                    capsize=2,
                    lw=1,
                )
        for m in mean[anchor]:
            ax.axvline(m, color=ANCHOR_COLOUR, ls="--", lw=0.8, alpha=0.6)
        ax.set_yticks([])
        if k % ncols == 0:  # labels only on the first column, as text: ticks cost far more
            _row_labels(ax, y, [_short(labels[s]) for s in order])
        first = rows.dropna(subset=["output"]).iloc[0]
        arrow = direction_arrow(first["higher_is_better"])
        ax.set_title(f"{metric}.{first['output']} {arrow}", fontsize=9, y=1.0)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(
        f"Mean and {round(summary.confidence * 100)} % interval per system (anchor red)",
        fontsize=10,
    )
    return fig


def quality_vs_params_figure(summary: Summary) -> Figure:
    """Headline metrics against the trainable-parameter share, one labelled point per system.

    The share axis is logarithmic where the adapted systems' shares span more than a factor of 3,
    else linear. The zero-shot anchor trains nothing, so it has no place on a log axis: it is drawn
    as a horizontal reference line at its mean with its interval as a band, not at an invented x.
    """
    head = headline_rows(summary)
    metrics = sorted(head["metric"].unique())
    ncols = min(len(metrics), 2) or 1
    nrows = math.ceil(len(metrics) / ncols) or 1
    fig = Figure(figsize=(6.0 * ncols, 3.4 * nrows))
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        top=1 - 0.45 / (3.4 * nrows),
        bottom=0.5 / (3.4 * nrows),
        wspace=0.22,
        hspace=0.45,
    )
    share = summary.systems.set_index("system")["trainable_share_pct"]
    labels = dict(zip(summary.systems["system"], summary.systems["label"]))
    adapted = share[(share > 0) & ~summary.systems.set_index("system")["is_anchor"]]
    log_x = len(adapted) > 1 and adapted.max() / adapted.min() > 3
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        rows = head[head["metric"] == metric]
        anchor = rows["is_anchor"].fillna(False).to_numpy(bool)
        x = rows["system"].map(share).to_numpy(float)
        mean = rows["mean"].to_numpy(float)
        lo, hi = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
        points = ~anchor & np.isfinite(x) & (x > 0 if log_x else np.isfinite(x))
        if points.any():
            err = np.vstack([mean - lo, hi - mean])[:, points]
            err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
            ax.errorbar(
                x[points],
                mean[points],
                yerr=err,
                fmt="o",
                ms=4,
                color=SYSTEM_COLOUR,
                capsize=2,
                lw=1,
                label="adapted (95 % interval)",
            )
            if points.sum() <= MAX_POINT_LABELS:  # beyond that labels only smear the panel
                names = [
                    _short(labels[s].split(" / ", 1)[-1], 30)
                    for s in rows["system"][points].tolist()
                ]
                _label_groups(ax, x[points], mean[points], names)
        for i in np.flatnonzero(anchor):
            if not np.isfinite(mean[i]):
                continue
            ax.axhline(mean[i], color=ANCHOR_COLOUR, ls="--", lw=1, label="zero-shot anchor")
            if np.isfinite(lo[i]) and np.isfinite(hi[i]):
                ax.axhspan(lo[i], hi[i], color=ANCHOR_COLOUR, alpha=0.08, lw=0)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
            ax.xaxis.set_major_formatter(FuncFormatter(_percent_tick))
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide
            ax.set_xlabel("trainable parameters (% of model, log scale)", fontsize=8)
        else:
            ax.set_xlabel("trainable parameters (% of model)", fontsize=8)
        if points.any():  # room on the right for the point labels
            left, right = ax.get_xlim()
            ax.set_xlim(left, right * 1.6 if log_x else right + 0.25 * (right - left or 1))
        first = rows.iloc[0]
        ax.set_ylabel(
            f"{metric}.{first['output']} {direction_arrow(first['higher_is_better'])}", fontsize=8
        )
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(
        "Quality against trainable parameters (anchor: dashed line, its interval shaded)",
        fontsize=10,
    )
    return fig


def _percent_tick(value: float, _pos: Any = None) -> str:
    return f"{value:g} %"


def loss_vs_quality_figure(summary: Summary) -> Figure | None:
    """Validation loss beside the dev quality score across checkpoints; None without checkpoints.

    One panel per system with several checkpoints (seeds averaged, at most
    ``MAX_CHECKPOINT_PANELS``): loss on the left axis, quality on the right, the loss-best step
    as a blue square and the quality-best step as an orange star; when they differ the panel title
    says so. A last panel plots each system's selected-checkpoint loss against its headline
    quality, so "lowest loss is not best quality" shows across systems too.
    """
    ck = summary.checkpoints.dropna(subset=["val_loss"])
    counts = ck.groupby("run_id")["step"].nunique()
    multi = ck[ck["run_id"].isin(counts[counts >= 2].index)]
    if multi.empty:
        return None
    labels = dict(zip(summary.systems["system"], summary.systems["label"]))
    with_ckpts = set(multi["system"].tolist())
    order = [s for s in summary.systems["system"].tolist() if s in with_ckpts]
    shown = order[:MAX_CHECKPOINT_PANELS]
    n_panels = len(shown) + 1
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.1 * nrows))
    fig.subplots_adjust(
        left=0.07,
        right=0.93,
        top=1 - 0.8 / (3.1 * nrows),
        bottom=0.5 / (3.1 * nrows),
        wspace=0.55,
        hspace=0.75,
    )
    dev_metric = next((m for m in multi["dev_metric"].dropna()), None) or "dev score"
    for k, system in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        grp = multi[multi["system"] == system].groupby("step")[["val_loss", "dev_score"]].mean()
        steps = grp.index.to_numpy()
        ax.plot(steps, grp["val_loss"], "-o", color=LOSS_COLOUR, ms=3, lw=1.2)
        best_loss = grp["val_loss"].idxmin()
        ax.plot([best_loss], [grp.loc[best_loss, "val_loss"]], "s", color=LOSS_COLOUR, ms=8)
        ax.set_ylabel("val loss", color=LOSS_COLOUR, fontsize=8)
        ax.tick_params(labelsize=7)
        title = _short(labels[system], 44)
        if grp["dev_score"].notna().sum() >= 2:
            ax2 = ax.twinx()
            ax2.plot(steps, grp["dev_score"], "-^", color=QUALITY_COLOUR, ms=3, lw=1.2)
            best_q = grp["dev_score"].idxmax()
            ax2.plot([best_q], [grp.loc[best_q, "dev_score"]], "*", color=QUALITY_COLOUR, ms=12)
            ax2.set_ylabel(f"{dev_metric} ↑", color=QUALITY_COLOUR, fontsize=8)
            ax2.tick_params(labelsize=7)
            if best_q != best_loss:
                title += f"\nloss best @ {best_loss}, quality best @ {best_q}"
        ax.set_title(title, fontsize=8, y=1.0)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    ax = fig.add_subplot(nrows, ncols, n_panels)
    _loss_against_quality(ax, summary)
    fig.suptitle(
        "Validation loss (blue, ■ lowest) vs quality (orange, ★ best) across checkpoints",
        fontsize=10,
    )
    return fig


def _loss_against_quality(ax: Any, summary: Summary) -> None:
    head = headline_rows(summary)
    systems = summary.systems.dropna(subset=["selected_val_loss"])
    if systems.empty or head.empty:
        ax.set_axis_off()
        return
    metric = quality_metric(summary)
    rows = head[head["metric"] == metric].set_index("system")
    x = systems["selected_val_loss"].to_numpy(float)
    y = systems["system"].map(rows["mean"]).to_numpy(float)
    ax.scatter(x, y, s=18, color=SYSTEM_COLOUR)
    # the label without its backbone: method, swept parameters and data recipe
    names = [lab.split(" / ", 1)[-1] for lab in systems["label"].tolist()]
    _label_groups(ax, x, y, [_short(lab, 28) for lab in names])
    ax.set_xlabel(f"val loss at checkpoint selected by {summary.select}", fontsize=8)
    first = rows.iloc[0]
    ax.set_ylabel(
        f"{metric}.{first['output']} {direction_arrow(first['higher_is_better'])}", fontsize=8
    )
    ax.set_title("across systems: lower loss ≠ better quality?", fontsize=8, y=1.0)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _label_groups(ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    """Write each distinct label once, 2 pt right of and above the point nearest its group's median.

    Systems that differ only in data recipe or backbone share a label; drawn at every point they
    stack into an unreadable smear (and cost a text layout each).
    """
    offset = ax.transData + ScaledTranslation(2 / 72, 2 / 72, ax.figure.dpi_scale_trans)
    groups: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        if lab and np.isfinite(x[i]) and np.isfinite(y[i]):
            groups.setdefault(lab, []).append(i)
    for lab, where in groups.items():
        gx, gy = x[where], y[where]
        span_x = np.ptp(gx) or 1.0
        span_y = np.ptp(gy) or 1.0
        dist = ((gx - np.median(gx)) / span_x) ** 2 + ((gy - np.median(gy)) / span_y) ** 2
        i = where[int(np.argmin(dist))]
        ax.text(x[i], y[i], lab, fontsize=6, transform=offset)


def quality_metric(summary: Summary) -> str:
    """The headline metric that stands for quality: the suite's dev metric (the one its runs
    scored checkpoints with) when it is a headline metric where higher is better, else the first
    such metric of the table, else the first headline metric."""
    head = headline_rows(summary)
    quality = head[head["higher_is_better"].map(lambda v: has_direction(v) and bool(v))]
    dev = set(summary.checkpoints["dev_metric"].dropna())
    for metric in quality["metric"]:
        if metric in dev:
            return str(metric)
    return str(quality["metric"].iloc[0] if len(quality) else head["metric"].iloc[0])


def page_figures(summary: Summary) -> list[tuple[str, Figure]]:
    """The page's figures with their titles (the checkpoint figure only where runs kept several)."""
    figures = [
        ("Metrics with intervals", metric_intervals_figure(summary)),
        ("Quality against trainable parameters", quality_vs_params_figure(summary)),
    ]
    lq = loss_vs_quality_figure(summary)
    if lq is not None:
        figures.append(("Validation loss and quality across checkpoints", lq))
    return figures
