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
import json
import math
import re
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from .components import direction_arrow, has_direction

if TYPE_CHECKING:
    from .leaderboard import Summary

__all__ = [
    "figure_to_svg",
    "loss_vs_quality_figure",
    "main_table",
    "metric_intervals_figure",
    "quality_vs_params_figure",
    "render_html",
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
        arrow = direction_arrow(first["higher_is_better"])
        ax.set_title(f"{metric}.{first['output']} {arrow}", fontsize=9, y=1.0)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(
        f"Mean and {int(round(summary.confidence * 100))} % interval per system (anchor red)",
        fontsize=10,
    )
    return fig


def quality_vs_params_figure(summary: Summary) -> Figure:
    """Headline metrics against the trainable-parameter share, one labelled point per system.

    The share axis is logarithmic where the adapted systems' shares span more than a factor of 3,
    else linear. The zero-shot anchor trains nothing, so it has no place on a log axis: it is drawn
    as a horizontal reference line at its mean with its interval as a band, not at an invented x.
    """
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
    head = _headlines(summary)
    systems = summary.systems.dropna(subset=["selected_val_loss"])
    if systems.empty or head.empty:
        ax.set_axis_off()
        return
    quality = head[head["higher_is_better"].map(lambda v: has_direction(v) and bool(v))]
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


_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 20px;color:#222;
max-width:1400px}
h1{font-size:21px;margin:4px 0}h2{font-size:16px;margin-top:26px;border-bottom:1px solid #ddd}
h3{font-size:14px}nav a{margin-right:12px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#f3f5f8;cursor:pointer;user-select:none;position:sticky;top:0;z-index:2;
vertical-align:bottom}
th::after{content:" \\21C5";color:#999;font-size:10px}
th.asc::after{content:" \\25B2";color:#333}th.desc::after{content:" \\25BC";color:#333}
tr:nth-child(even) td{background:#fafafa}tr.anchor td{background:#fff3f0}
.tablewrap{max-width:100%;overflow-x:auto}
table.main th,table.main td{padding:3px 5px}
table.main td.num{text-align:right}
table.main .sys{position:sticky;left:0;z-index:1;background:#fff;white-space:normal;
min-width:13em;max-width:19em}
table.main th.sys{z-index:3;background:#f3f5f8}
table.main tr.anchor td.sys{background:#fff3f0}
table.main small{color:#666;font-size:10px}
th small{font-weight:normal;color:#555}
td.delta.better{color:#0a7a2f;font-weight:600}td.delta.worse{color:#b3261e;font-weight:600}
td.delta.ns{color:#555}
.figure{margin:12px 0}.figure svg{max-width:100%;height:auto}
.legend{margin:4px 0}.legend li{font-size:12px;color:#444}.meta{color:#555;font-size:13px}
details{margin:8px 0}summary{cursor:pointer;font-weight:600;font-size:14px}
.filters{display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center;font-size:13px;
background:#f6f7f9;padding:8px;border:1px solid #e3e5e8;position:sticky;top:0;z-index:4}
.filters .systems{display:flex;flex-wrap:wrap;gap:2px 10px;max-width:100%}
.filters label{white-space:nowrap}
section.utt{border:1px solid #e3e5e8;margin:10px 0;padding:6px 8px;border-radius:4px}
section.utt header{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;font-size:13px}
section.utt .text{font-size:14px;margin:4px 0;flex-basis:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:6px}
.cell{border:1px solid #e8e8e8;padding:4px 6px;font-size:12px;border-radius:3px;min-width:0}
.cell.anchor{background:#fff8f6}.cell .name{font-weight:600;overflow-wrap:anywhere}
.cell .tr{margin:3px 0;overflow-wrap:anywhere}.cell .scores{color:#333}
.cell .err{color:#b3261e}.cell .links a{margin-right:6px;font-size:11px}
audio{width:100%;height:30px;display:block;margin:2px 0}
.media{display:flex;gap:12px;flex-wrap:wrap;flex-basis:100%}.media>div{min-width:240px}
mark.sub{background:#ffe08a}mark.ins{background:#ffc9c9}del{color:#b3261e}
.more{margin:8px 0}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var asc=!th.classList.contains('asc');t.querySelectorAll('th').forEach(function(h){
  h.classList.remove('asc','desc')});th.classList.add(asc?'asc':'desc');
  var key=function(c){return c.dataset.sort!==undefined?c.dataset.sort:c.textContent.trim()};
  var b=t.tBodies[0],rows=Array.from(b.rows);rows.sort(function(x,y){
   var a=key(x.cells[i]),c=key(y.cells[i]);
   var na=parseFloat(a.replace(/^[^0-9+\\-.]*/,'')),nc=parseFloat(c.replace(/^[^0-9+\\-.]*/,''));
   var r=(!isNaN(na)&&!isNaN(nc))?na-nc:(isNaN(na)!==isNaN(nc)?(isNaN(na)?1:-1):a.localeCompare(c));
   return asc?r:-r;});
  rows.forEach(function(r){b.appendChild(r)});});});});
"""

_LISTEN_JS = """
(function(){
var D=JSON.parse(document.getElementById('listen-data').textContent);
var root=document.getElementById('listen-items'),count=document.getElementById('listen-count');
var sysBox=document.getElementById('f-systems'),spk=document.getElementById('f-speaker');
var met=document.getElementById('f-metric'),more=document.getElementById('listen-more');
var PAGE=25,limit=PAGE;
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;
 if(text!==undefined)e.textContent=text;return e}
function player(k,label){var d=el('div');if(label)d.appendChild(el('div','',label));
 var a=el('audio');a.controls=true;a.preload='none';a.src=D.media[k];d.appendChild(a);return d}
function fmt(v,d){return (v===null||v===undefined)?'\\u2013':v.toFixed(d)}
D.systems.forEach(function(s,i){var l=el('label');var c=el('input');c.type='checkbox';
 c.checked=true;c.dataset.i=i;c.addEventListener('change',function(){limit=PAGE;render()});
 l.appendChild(c);l.appendChild(document.createTextNode(' '+s.label+(s.anchor?' (anchor)':'')));
 sysBox.appendChild(l)});
D.speakers.forEach(function(s){var o=el('option','',s);o.value=s;spk.appendChild(o)});
D.metrics.forEach(function(m,i){var o=el('option','',m.name+(m.human?' (human)':''));
 o.value=String(i);met.appendChild(o)});
[spk,met].forEach(function(x){x.addEventListener('change',function(){limit=PAGE;render()})});
more.addEventListener('click',function(){limit+=PAGE;render()});
function diff(segs){var d=el('div','tr');segs.forEach(function(g,k){if(k)d.appendChild(
 document.createTextNode(' '));var e;if(g[0]==='=')e=el('span','',g[1]);
 else if(g[0]==='s'){e=el('mark','sub',g[1]);e.title='text: '+g[2]}
 else if(g[0]==='i'){e=el('mark','ins',g[1]);e.title='not in the text'}
 else{e=el('del','',g[1]);e.title='missing from the transcript'}d.appendChild(e)});return d}
function render(){
 var shown=Array.from(sysBox.querySelectorAll('input')).map(function(c){return c.checked});
 var sp=spk.value,mi=met.value===''?-1:parseInt(met.value,10);
 root.textContent='';var n=0,drawn=0;
 D.items.forEach(function(it){
  if(sp&&it.speaker!==sp)return;n++;if(drawn>=limit)return;drawn++;
  var sec=el('section','utt');sec.dataset.item=it.id;var h=el('header');
  h.appendChild(el('b','',it.id));
  if(it.speaker)h.appendChild(el('span','','speaker '+it.speaker));
  var t=el('div','text',it.text||'(no text: give --manifest)');
  if(it.textSource==='cer')t.title='normalised text from the CER metric';h.appendChild(t);
  var media=el('div','media');
  if(it.prompt!==null)media.appendChild(player(it.prompt,'target speaker\\u2019s prompt'));
  if(it.ref!==null)media.appendChild(player(it.ref,'real recording of this sentence'));
  if(media.childNodes.length)h.appendChild(media);sec.appendChild(h);
  var g=el('div','grid');
  it.cells.forEach(function(c,i){if(!shown[i])return;var s=D.systems[i];
   var cell=el('div','cell'+(s.anchor?' anchor':''));cell.dataset.system=s.label;
   var name=el('a','name',s.label+(s.anchor?' (anchor)':''));name.href=s.href;
   name.title='run folder '+s.run;cell.appendChild(name);
   if(s.runs>1&&s.seed!==null)cell.appendChild(el('small','',' seed '+s.seed));
   if(!c){cell.appendChild(el('div','err','not evaluated on this sentence'));
    g.appendChild(cell);return}
   if(c.a!==undefined)cell.appendChild(player(c.a));
   if(c.e)cell.appendChild(el('div','err',c.e));
   if(c.t)cell.appendChild(diff(c.t));
   if(c.s){var sc=el('div','scores');var parts=[];D.metrics.forEach(function(m,k){
     if(mi>=0&&k!==mi)return;parts.push(m.name+' '+fmt(c.s[k],m.digits))});
    sc.textContent=parts.join(' \\u00b7 ');cell.appendChild(sc)}
   var ln=el('div','links');Object.keys(s.files).forEach(function(k){var a=el('a','',k);
    a.href=s.files[k];ln.appendChild(a)});cell.appendChild(ln);g.appendChild(cell)});
  sec.appendChild(g);root.appendChild(sec)});
 count.textContent=n+' sentence'+(n===1?'':'s')+(drawn<n?', first '+drawn+' shown':'');
 more.style.display=drawn<n?'':'none';
}
render();
})();
"""


def _html_table(frame: pd.DataFrame, table_id: str) -> str:
    if frame.empty:
        return "<p>None.</p>"
    out = frame.to_html(
        index=False, escape=True, classes="sortable", table_id=table_id, border=0, na_rep="–"
    )
    if "System" in frame.columns:  # highlight anchor rows
        out = re.sub(r"<tr>(\s*<td>[^<]*\(anchor\))", r'<tr class="anchor">\1', out)
    return '<div class="tablewrap">' + out + "</div>"


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _fmt(x: Any, digits: int) -> str:
    v = _num(x)
    if math.isnan(v):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}f}"


def main_table(summary: Summary, table_id: str = "table0") -> str:
    """The compact main view: per system its headline metrics (mean, rank, interval) and Δ.

    The system column is sticky, headers are two short lines, intervals are small print under
    the mean; Δ is coloured where the Holm-adjusted test is significant (green better, red worse).
    """
    from .leaderboard import _digits, seeds_text

    esc = html.escape
    head = _headlines(summary)
    digits = _digits(summary.table)
    metrics = list(dict.fromkeys(head.sort_values("metric")["metric"]))
    cells = {(r.system, r.metric): r for r in head.itertuples()}
    hdr = ['<th class="sys">System</th>', "<th>Seeds</th>"]
    for metric in metrics:
        first = head[head["metric"] == metric].iloc[0]
        arrow = direction_arrow(first["higher_is_better"])
        sub = f"{first['output']} {arrow}"
        info = summary.human.get(metric)
        if info:
            sub += f" · human, {info['n_raters']} raters"
        hdr.append(
            f'<th title="{esc(metric)}.{esc(str(first["output"]))}: mean, rank (#) and '
            f'{int(round(summary.confidence * 100))} % interval">{esc(metric)}<br>'
            f"<small>{esc(sub)}</small></th>"
        )
        hdr.append(
            f'<th title="Δ {esc(metric)} to the anchor">Δ<br><small>{esc(metric)}</small></th>'
        )
    hdr += [
        "<th>Mean rank</th>",
        "<th>Val loss</th>",
        "<th>Trainable<br><small>%</small></th>",
        "<th>Adapter<br><small>MB</small></th>",
    ]
    rows = []
    for s in summary.systems.itertuples():
        label = esc(s.label) + (" (anchor)" if s.is_anchor else "")
        run_links = " ".join(
            f'<a href="runs/{esc(rid)}/" title="run folder: config, log, curves">'
            f"{'run' if len(s.run_ids) == 1 else f'run {k + 1}'}</a>"
            for k, rid in enumerate(s.run_ids[:5])
        )
        tds = [
            f'<td class="sys">{label} <small>{run_links}</small></td>',
            f'<td data-sort="{int(s.n_seeds)}">{esc(seeds_text(s.n_seeds, s.seeds))}</td>',
        ]
        for metric in metrics:
            r = cells.get((s.system, metric))
            if r is None:
                tds += ['<td class="num" data-sort="">–</td>', '<td data-sort="">–</td>']
                continue
            dg = digits.get((metric, r.output), 3)
            rank = "" if r.rank is pd.NA or pd.isna(r.rank) else f" <small>#{int(r.rank)}</small>"
            ci = f"[{_fmt(r.ci_low, dg)}, {_fmt(r.ci_high, dg)}]"
            tds.append(
                f'<td class="num" data-sort="{_num(r.mean)}">{_fmt(r.mean, dg)}{rank}<br>'
                f"<small>{ci}</small></td>"
            )
            if r.is_anchor:
                tds.append('<td class="delta" data-sort="0">anchor</td>')
            elif math.isnan(_num(r.delta)):
                tds.append('<td class="delta" data-sort="">–</td>')
            else:
                better = (r.delta > 0) == bool(r.higher_is_better)
                directed = has_direction(r.higher_is_better)
                cls = ("better" if better else "worse") if r.stars and directed else "ns"
                title = (
                    f"Δ {r.delta:+.{dg}f} [{_fmt(r.delta_ci_low, dg)}, "
                    f"{_fmt(r.delta_ci_high, dg)}], p = {_fmt(r.p_value_raw, 4)} raw, "
                    f"{_fmt(r.p_value_holm, 4)} Holm, {int(r.n_paired_items)} paired utterances"
                )
                tds.append(
                    f'<td class="delta {cls}" data-sort="{r.delta}" title="{esc(title)}">'
                    f"{r.delta:+.{dg}f}{esc(r.stars)}</td>"
                )
        tds += [
            f'<td class="num">{_fmt(s.mean_rank, 1)}</td>',
            f'<td class="num">{_fmt(s.selected_val_loss, 3)}</td>',
            f'<td class="num">{_fmt(s.trainable_share_pct, 2)}</td>',
            f'<td class="num">{_fmt(s.adapter_mb, 1)}</td>',
        ]
        cls = ' class="anchor"' if s.is_anchor else ""
        rows.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
    return (
        f'<div class="tablewrap" id="{table_id}-wrap"><table class="sortable main" id="{table_id}">'
        f"<thead><tr>{''.join(hdr)}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _listening_html(view: dict[str, Any] | None) -> list[str]:
    if not view or not view.get("items"):
        return []
    data = json.dumps(view, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    note = {
        "folder": f"Audio: {view['audioFiles']} clips (Ogg/Vorbis) in leaderboard_audio/ beside "
        "this page; keep the two together.",
        "embed": f"Audio: {view['audioFiles']} clips embedded in this page (Ogg/Vorbis).",
        "none": "Audio left out (built with audio=none).",
    }[view["audio"]]
    if view["audio"] != "none" and not view["audioFiles"]:
        note = "No audio found in the run folders (runs/<id>/audio/<item>.wav)."
    return [
        '<h2 id="listen">Listen: every sentence, every system</h2>',
        f'<p class="meta">{html.escape(note)} Each system is heard through one run (its lowest '
        "seed). Transcripts are the CER metric's: "
        '<mark class="sub">replaced</mark>, <mark class="ins">added</mark> and '
        "<del>missing</del> words against the text. A system's name links to its run folder.</p>",
        '<div class="filters"><b>Systems</b><div class="systems" id="f-systems"></div>'
        '<label>Speaker <select id="f-speaker"><option value="">all</option></select></label>'
        '<label>Scores <select id="f-metric"><option value="">all metrics</option></select>'
        '</label><span id="listen-count"></span></div>',
        '<div id="listen-items"></div><button class="more" id="listen-more">Show more</button>',
        f'<script type="application/json" id="listen-data">{data}</script>',
        f"<script>{_LISTEN_JS}</script>",
    ]


def render_html(
    summary: Summary,
    tables: dict[str, pd.DataFrame],
    legend: list[str],
    n_runs: int,
    listening: dict[str, Any] | None = None,
) -> str:
    """One self-contained HTML page: main view, human ratings, figures, the per-sentence listening
    view, and the detail tables on demand (``<details>``)."""
    from .leaderboard import AGREEMENT_TITLE, HUMAN_TITLE

    esc = html.escape
    figures = [
        ("Metrics with intervals", metric_intervals_figure(summary)),
        ("Quality against trainable parameters", quality_vs_params_figure(summary)),
    ]
    lq = loss_vs_quality_figure(summary)
    if lq is not None:
        figures.append(("Validation loss and quality across checkpoints", lq))
    n_fail = len(tables.get("Failed runs", []))
    nav = ['<a href="#main">Main view</a>']
    if HUMAN_TITLE in tables:
        nav.append('<a href="#human">Listening tests</a>')
    nav.append('<a href="#figures">Figures</a>')
    if listening and listening.get("items"):
        nav.append('<a href="#listen">Listen</a>')
    nav.append('<a href="#details">Details</a>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ttsadapt leaderboard: {esc(summary.suite)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Leaderboard: {esc(summary.suite)}</h1>",
        f'<p class="meta">{n_runs} finished runs, {len(summary.systems)} systems'
        + (f", {n_fail} failed or unfinished runs (see Details)" if n_fail else "")
        + ". Click a column header to sort; hover a Δ for its interval and p-values.</p>",
        "<nav>" + "".join(nav) + "</nav>",
        '<h2 id="main">Main view</h2>',
        main_table(summary),
        '<ul class="legend">' + "".join(f"<li>{esc(x)}</li>" for x in legend) + "</ul>",
    ]
    if HUMAN_TITLE in tables:
        parts.append(f'<h2 id="human">{esc(HUMAN_TITLE)}</h2>')
        parts.append(_html_table(tables[HUMAN_TITLE], "table-human"))
        parts.append(f"<h3>{esc(AGREEMENT_TITLE)}</h3>")
        parts.append(
            '<p class="meta">Spearman rank correlation between the systems\' mean human rating '
            "and each automatic metric (signed so that +1 = the same order of quality).</p>"
        )
        parts.append(_html_table(tables[AGREEMENT_TITLE], "table-agreement"))
    parts.append('<h2 id="figures">Figures</h2>')
    for k, (title, fig) in enumerate(figures):
        parts.append(f'<div class="figure" id="figure{k}"><h3>{esc(title)}</h3>')
        parts.append(figure_to_svg(fig))
        parts.append("</div>")
    parts += _listening_html(listening)
    parts.append('<h2 id="details">Details</h2>')
    skip = {HUMAN_TITLE, AGREEMENT_TITLE}
    for k, (title, frame) in enumerate(tables.items()):
        if title in skip:
            continue
        title = "Full table (every headline: mean [interval], Δ, rank)" if k == 0 else title
        count = f" ({len(frame)})" if title in ("Failed runs", "Items not scored") else ""
        parts.append(f"<details><summary>{esc(title)}{count}</summary>")
        parts.append(_html_table(frame, f"table-detail{k}"))
        parts.append("</details>")
    if summary.notes:
        parts.append(
            f"<details open><summary>Notes ({len(summary.notes)})</summary><ul>"
            + "".join(f"<li>{esc(n)}</li>" for n in summary.notes)
            + "</ul></details>"
        )
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(parts)
