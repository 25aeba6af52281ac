"""Leaderboard figures (matplotlib, inline SVG) and the single-file HTML page.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global backend)
and embedded as inline ``<svg>``; the page has no external script, style sheet or font, so it opens
offline. Three figures:

* ``metric_intervals``: each headline metric's mean and interval per system, anchor marked;
* ``quality_vs_params``: each headline metric against the trainable-parameter share;
* ``loss_vs_quality``: validation loss beside the dev-set quality score across checkpoints, per
  system, with the loss-best and quality-best checkpoints marked (where runs kept several), plus
  the selected checkpoint's loss against the headline quality across systems.
"""

from __future__ import annotations

import html
import io
import math
import re
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

if TYPE_CHECKING:
    from .leaderboard import Summary

__all__ = [
    "figure_to_svg",
    "loss_vs_quality_figure",
    "metric_intervals_figure",
    "quality_vs_params_figure",
    "render_html",
]

ANCHOR_COLOUR = "#d62728"
SYSTEM_COLOUR = "#1f77b4"
LOSS_COLOUR = "#1f77b4"
QUALITY_COLOUR = "#ff7f0e"
MAX_CHECKPOINT_PANELS = 5


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


def _headlines(summary: Summary) -> pd.DataFrame:
    return summary.table[summary.table["is_headline"]]


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def metric_intervals_figure(summary: Summary) -> Figure:
    """One panel per headline metric: mean and interval per system; anchor in red."""
    head = _headlines(summary)
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
        arrow = "↑" if first["higher_is_better"] else "↓"
        ax.set_title(f"{metric}.{first['output']} {arrow}", fontsize=9, y=1.0)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(
        f"Mean and {int(round(summary.confidence * 100))} % interval per system (anchor red)",
        fontsize=10,
    )
    return fig


def quality_vs_params_figure(summary: Summary) -> Figure:
    """Headline metrics against trainable-parameter share (log scale; the anchor at the left)."""
    head = _headlines(summary)
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
    positive = share[share > 0]
    floor = positive.min() / 3 if len(positive) else 1e-3
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        rows = head[head["metric"] == metric]
        x = rows["system"].map(share).fillna(0).to_numpy(float)
        x = np.where(x > 0, x, floor)
        mean = rows["mean"].to_numpy(float)
        err = np.vstack(
            [mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean]
        )
        err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
        anchor = rows["is_anchor"].to_numpy(bool)
        for mask, colour, name in (
            (~anchor, SYSTEM_COLOUR, "adapted"),
            (anchor, ANCHOR_COLOUR, "zero-shot anchor"),
        ):
            if mask.any():
                ax.errorbar(
                    x[mask],
                    mean[mask],
                    yerr=err[:, mask],
                    fmt="o",
                    ms=4,
                    color=colour,
                    capsize=2,
                    lw=1,
                    label=name,
                )
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (% of model, log)", fontsize=8)
        first = rows.iloc[0]
        ax.set_ylabel(
            f"{metric}.{first['output']} {'↑' if first['higher_is_better'] else '↓'}", fontsize=8
        )
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Quality against trainable parameters", fontsize=10)
    return fig


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
    head = _headlines(summary)
    systems = summary.systems.dropna(subset=["selected_val_loss"])
    if systems.empty or head.empty:
        ax.set_axis_off()
        return
    quality = head[head["higher_is_better"]]
    metric = "dnsmos" if "dnsmos" in set(quality["metric"]) else None
    metric = metric or (quality["metric"].iloc[0] if len(quality) else head["metric"].iloc[0])
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
        f"{metric}.{first['output']} {'↑' if first['higher_is_better'] else '↓'}", fontsize=8
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


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;white-space:nowrap}
th{background:#f3f5f8;cursor:pointer;user-select:none;position:sticky;top:0}
th::after{content:" \\21C5";color:#999;font-size:10px}
th.asc::after{content:" \\25B2";color:#333}th.desc::after{content:" \\25BC";color:#333}
tr:nth-child(even) td{background:#fafafa}tr.anchor td{background:#fff3f0}
.figure{margin:12px 0}.figure svg{max-width:100%;height:auto}
.legend li{font-size:12px;color:#444}.meta{color:#555;font-size:13px}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var asc=!th.classList.contains('asc');t.querySelectorAll('th').forEach(function(h){
  h.classList.remove('asc','desc')});th.classList.add(asc?'asc':'desc');
  var b=t.tBodies[0],rows=Array.from(b.rows);rows.sort(function(x,y){
   var a=x.cells[i].textContent.trim(),c=y.cells[i].textContent.trim();
   var na=parseFloat(a.replace(/^[^0-9+\\-.]*/,'')),nc=parseFloat(c.replace(/^[^0-9+\\-.]*/,''));
   var r=(!isNaN(na)&&!isNaN(nc))?na-nc:a.localeCompare(c);return asc?r:-r;});
  rows.forEach(function(r){b.appendChild(r)});});});});
"""


def _html_table(frame: pd.DataFrame, table_id: str) -> str:
    if frame.empty:
        return "<p>None.</p>"
    out = frame.to_html(
        index=False, escape=True, classes="sortable", table_id=table_id, border=0, na_rep="–"
    )
    if "System" in frame.columns:  # highlight anchor rows
        out = re.sub(r"<tr>(\s*<td>[^<]*\(anchor\))", r'<tr class="anchor">\1', out)
    return out


def render_html(
    summary: Summary, tables: dict[str, pd.DataFrame], legend: list[str], n_runs: int
) -> str:
    """One self-contained HTML page: tables, legend, and inline SVG figures."""
    esc = html.escape
    figures = [
        ("Metrics with intervals", metric_intervals_figure(summary)),
        ("Quality against trainable parameters", quality_vs_params_figure(summary)),
    ]
    lq = loss_vs_quality_figure(summary)
    if lq is not None:
        figures.append(("Validation loss and quality across checkpoints", lq))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ttsadapt leaderboard: {esc(summary.suite)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Leaderboard: {esc(summary.suite)}</h1>",
        f'<p class="meta">{n_runs} finished runs, {len(summary.systems)} systems. '
        "Click a column header to sort.</p>",
    ]
    for k, (title, frame) in enumerate(tables.items()):
        parts.append(f"<h2>{esc(title)}</h2>")
        parts.append(_html_table(frame, f"table{k}"))
        if k == 0:
            parts.append(
                '<ul class="legend">' + "".join(f"<li>{esc(x)}</li>" for x in legend) + "</ul>"
            )
    parts.append("<h2>Figures</h2>")
    for k, (title, fig) in enumerate(figures):
        parts.append(f'<div class="figure" id="figure{k}"><h3>{esc(title)}</h3>')
        parts.append(figure_to_svg(fig))
        parts.append("</div>")
    if summary.notes:
        parts.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in summary.notes) + "</ul>"
        )
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(parts)
