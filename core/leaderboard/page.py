"""The single-file HTML page: main view, listening tests, figures, listening view, details.

The page has no external script, style sheet or font, so it opens offline; its style and scripts
are in :mod:`.page_assets`.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import pandas as pd

from ..components import direction_arrow, has_direction
from .page_assets import CSS, LISTEN_JS, SORT_JS
from .summary import Summary
from .tables import AGREEMENT_TITLE, HUMAN_TITLE, MARK, output_digits, seeds_text

__all__ = ["main_table", "render_html"]


def _html_table(frame: pd.DataFrame, table_id: str, anchor_rows: list[bool] | None = None) -> str:
    """A sortable table; rows flagged in ``anchor_rows`` (one flag per row) get class ``anchor``."""
    if frame.empty:
        return "<p>None.</p>"
    out = frame.to_html(
        index=False, escape=True, classes="sortable", table_id=table_id, border=0, na_rep="–"
    )
    if anchor_rows is not None and any(anchor_rows):
        top, tbody, body = out.partition("<tbody>")
        rows = body.split("<tr>")  # rows[0]: what precedes the first row
        body = rows[0] + "".join(
            ('<tr class="anchor">' if anchor else "<tr>") + row
            for anchor, row in zip(anchor_rows, rows[1:])
        )
        out = top + tbody + body
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
    esc = html.escape
    head = summary.table[summary.table["is_headline"]]
    digits = output_digits(summary.table)
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
            f'{round(summary.confidence * 100)} % interval">{esc(metric)}<br>'
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
            mark = (
                f'<span class="optimised" title="this system\'s training also optimised '
                f'{esc(metric)}">{MARK}</span>'
                if getattr(r, "optimised", False)
                else ""
            )
            tds.append(
                f'<td class="num" data-sort="{_num(r.mean)}">{_fmt(r.mean, dg)}{mark}{rank}<br>'
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
        "seed). Transcripts come from the metric that transcribes the audio: "
        '<mark class="sub">replaced</mark>, <mark class="ins">added</mark> and '
        "<del>missing</del> words against the text. A system's name links to its run folder.</p>",
        '<div class="filters"><b>Systems</b><div class="systems" id="f-systems"></div>'
        '<label>Speaker <select id="f-speaker"><option value="">all</option></select></label>'
        '<label>Scores <select id="f-metric"><option value="">all metrics</option></select>'
        '</label><span id="listen-count"></span></div>',
        '<div id="listen-items"></div><button class="more" id="listen-more">Show more</button>',
        f'<script type="application/json" id="listen-data">{data}</script>',
        f"<script>{LISTEN_JS}</script>",
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
    from .figures import figure_to_svg, page_figures  # matplotlib only when a page is drawn

    esc = html.escape
    figures = page_figures(summary)
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
        f"<style>{CSS}</style></head><body>",
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
        anchors = summary.systems["is_anchor"].tolist() if k == 0 else None
        parts.append(_html_table(frame, f"table-detail{k}", anchors))
        parts.append("</details>")
    if summary.notes:
        parts.append(
            f"<details open><summary>Notes ({len(summary.notes)})</summary><ul>"
            + "".join(f"<li>{esc(n)}</li>" for n in summary.notes)
            + "</ul></details>"
        )
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    return "\n".join(parts)
