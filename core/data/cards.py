"""Data cards: the seed paper's data table per speaker and per language, plus adaptation risk.

``inspect_manifest`` loads a manifest (validating it), reads every clip, and writes
``CARD.json``, ``CARD.md`` (Markdown table) and ``CARD.png`` (plot). Columns, units in the keys:

``hours``, ``clips``, ``duration_mean_s``, ``duration_std_s``, ``unique_words``,
``words_per_clip_mean``, ``energy_mean_db``, ``energy_std_db`` (pooled frame energy,
:mod:`ttsadapt.data.acoustics`), ``dnsmos_ovrl_mean``, ``dnsmos_ovrl_std``, ``dnsmos_clips``
(null when DNS-MOS is off), ``wada_snr_mean_db`` and ``adaptation_risk`` from the seed study's thresholds on ``energy_std_db``: ``low`` at 13 dB or
more (gains expected), ``high`` below 10 dB (degradation expected), ``medium`` between.
DNS-MOS and WADA-SNR come from the registered ``dnsmos`` and ``wada_snr`` metrics, scored through
the shared evaluation path (:class:`ttsadapt.evaluation.ClipScorer`); when one is not registered
its columns are ``null`` and ``notes`` says why.

DNS-MOS is by far the most expensive column (about one model window per audio second), so by
default it is computed on a documented, deterministic sample of each speaker's clips
(:class:`DnsmosSample`: up to 12 clips or 2 minutes per speaker and language) and each row's
``dnsmos_clips`` says how many clips its DNS-MOS columns rest on; ``card["dnsmos_sample"]`` states
the rule. ``DnsmosSample(all_clips=True)`` (CLI ``--dnsmos-all``) scores every clip. Every other
column is computed over all clips.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import load_audio
from ..errors import ItemError
from ..evaluation import ClipScorer
from ..records import atomic_write_json, atomic_write_text
from ..types import Clip
from .acoustics import EnergyAccumulator, frame_energy_db
from .manifest import RUN_CHECKS, AudioCheckCache, load_manifest

ENERGY_STD_GAIN_DB = 13.0
ENERGY_STD_DEGRADE_DB = 10.0
CARD_VERSION = 2
DNSMOS_MAX_CLIPS = 12  # per (speaker, language) group; see DnsmosSample
DNSMOS_MAX_MINUTES = 2.0
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


def adaptation_risk(energy_std_db: float | None) -> str | None:
    """``low`` / ``medium`` / ``high`` risk that adapting on this data degrades quality."""
    if energy_std_db is None:
        return None
    if energy_std_db >= ENERGY_STD_GAIN_DB:
        return "low"
    if energy_std_db < ENERGY_STD_DEGRADE_DB:
        return "high"
    return "medium"


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _std(values: list[float]) -> float | None:
    return float(np.std(values)) if values else None


class _Group:
    def __init__(self) -> None:
        self.durations: list[float] = []
        self.words: list[int] = []
        self.vocab: set[str] = set()
        self.energy = EnergyAccumulator()
        self.dnsmos: list[float] = []
        self.wada: list[float] = []
        self.errors = 0

    def row(self, dnsmos_computed: bool = True) -> dict[str, Any]:
        stats = self.energy.stats()
        energy_std = round(stats.energy_std_db, 3) if stats else None
        r = lambda v, n=3: None if v is None else round(v, n)  # noqa: E731
        return {
            "hours": round(sum(self.durations) / 3600.0, 6),
            "clips": len(self.durations),
            "duration_mean_s": r(_mean(self.durations)),
            "duration_std_s": r(_std(self.durations)),
            "unique_words": len(self.vocab),
            "words_per_clip_mean": r(_mean([float(w) for w in self.words]), 2),
            "energy_mean_db": r(stats.energy_mean_db) if stats else None,
            "energy_std_db": energy_std,
            "dnsmos_ovrl_mean": r(_mean(self.dnsmos)),
            "dnsmos_ovrl_std": r(_std(self.dnsmos)),
            "dnsmos_clips": len(self.dnsmos) if dnsmos_computed else None,
            "wada_snr_mean_db": r(_mean(self.wada), 2),
            "adaptation_risk": adaptation_risk(energy_std),
            "unreadable_clips": self.errors,
        }


@dataclass(frozen=True)
class DnsmosSample:
    """Which clips the DNS-MOS columns are computed on.

    DNS-MOS follows Microsoft's recipe (9.01 s windows every second, short clips repeated), so it
    costs about one model window per second of audio — far more than every other column together.
    By default a card therefore scores a deterministic sample per (speaker, language) group: the
    group's clips ordered by ``sha256(f"{seed}:{clip id}")`` (independent of manifest order, stable
    when clips are added), taken in that order until ``max_clips`` clips or ``max_minutes`` of
    audio are reached (at least one clip). ``all_clips=True`` scores every clip. Each row's
    ``dnsmos_clips`` says how many clips its DNS-MOS columns rest on; every other column uses all
    clips.
    """

    all_clips: bool = False
    max_clips: int = DNSMOS_MAX_CLIPS
    max_minutes: float = DNSMOS_MAX_MINUTES
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        if self.all_clips:
            return {"mode": "all", "rule": "DNS-MOS over every clip"}
        return {
            "mode": "sample",
            "max_clips_per_group": self.max_clips,
            "max_minutes_per_group": self.max_minutes,
            "seed": self.seed,
            "rule": (
                f"per (speaker, language): clips ordered by sha256('{self.seed}:<clip id>'), "
                f"taken until {self.max_clips} clips or {self.max_minutes:g} min of audio "
                "(at least one)"
            ),
        }

    def select(self, clips: list[Clip], durations: dict[str, float]) -> set[str]:
        """Ids of the clips to score (only clips whose audio was read, i.e. in ``durations``)."""
        readable = [c for c in clips if c.id in durations]
        if self.all_clips:
            return {c.id for c in readable}
        groups: dict[tuple[str, str], list[Clip]] = defaultdict(list)
        for clip in readable:
            groups[(clip.speaker, clip.language)].append(clip)
        chosen: set[str] = set()
        for group in groups.values():
            group.sort(key=lambda c: hashlib.sha256(f"{self.seed}:{c.id}".encode()).hexdigest())
            seconds = 0.0
            for n, clip in enumerate(group):
                if n >= self.max_clips or (n and seconds >= self.max_minutes * 60.0):
                    break
                chosen.add(clip.id)
                seconds += durations[clip.id]
        return chosen


def build_card(
    clips: list[Clip],
    registry: Any = None,
    with_dnsmos: bool = True,
    with_wada: bool = True,
    dnsmos_sample: DnsmosSample | None = None,
) -> dict[str, Any]:
    """The card's data (no files written).

    Reads every clip once (two passes over the files: energy/words/WADA-SNR on all clips, then
    DNS-MOS on the clips ``dnsmos_sample`` selects); only one metric batch is held in memory.
    """
    sample = dnsmos_sample or DnsmosSample()
    groups: dict[str, dict[str, _Group]] = {
        "speakers": defaultdict(_Group),
        "languages": defaultdict(_Group),
    }
    overall = _Group()
    notes: list[str] = []

    def rows_of(clip: Clip) -> tuple[_Group, _Group, _Group]:
        return groups["speakers"][clip.speaker], groups["languages"][clip.language], overall

    scorers = _card_scorers(registry, with_dnsmos, with_wada, notes)
    wada = scorers.get("wada_snr")
    durations: dict[str, float] = {}
    for clip in clips:
        try:
            x, sr = load_audio(clip.audio)
        except ItemError as exc:
            for g in rows_of(clip):
                g.errors += 1
            notes.append(f"{clip.id}: {exc}")
            continue
        durations[clip.id] = x.size / sr
        energies = frame_energy_db(x, sr)
        words = _words(clip.text)
        for g in rows_of(clip):
            g.durations.append(x.size / sr)
            g.words.append(len(words))
            g.vocab.update(words)
            g.energy.add(energies)
        if wada is not None:
            wada.add(clip, x, sr)
    card_sample: dict[str, Any] | None = None
    dnsmos = scorers.get("dnsmos")
    if dnsmos is not None:
        card_sample = _dnsmos_pass(dnsmos, sample, clips, durations)
    for name, attr in (("dnsmos", "dnsmos"), ("wada_snr", "wada")):
        scorer = scorers.get(name)
        if scorer is None:
            continue
        scorer.flush()
        for clip in clips:
            if clip.id in scorer.values:
                for g in rows_of(clip):
                    getattr(g, attr).append(scorer.values[clip.id])
        for cid, err in list(scorer.errors.items())[:20]:
            notes.append(f"{cid}: {name} failed: {err}")
        if len(scorer.errors) > 20:
            notes.append(f"{name} failed on {len(scorer.errors) - 20} more clip(s)")
    return {
        "card_version": CARD_VERSION,
        "thresholds": {
            "energy_std_gain_db": ENERGY_STD_GAIN_DB,
            "energy_std_degrade_db": ENERGY_STD_DEGRADE_DB,
            "rule": "adaptation_risk: low if energy_std_db >= 13, high if < 10, else medium",
        },
        "dnsmos_sample": card_sample,
        "overall": overall.row(dnsmos is not None),
        "speakers": {k: v.row(dnsmos is not None) for k, v in sorted(groups["speakers"].items())},
        "languages": {k: v.row(dnsmos is not None) for k, v in sorted(groups["languages"].items())},
        "notes": notes,
    }


def _card_scorers(
    registry: Any, with_dnsmos: bool, with_wada: bool, notes: list[str]
) -> dict[str, ClipScorer]:
    """The card's scorers (``dnsmos``, ``wada_snr``) that are wanted and registered; a note for
    each that is not."""
    scorers: dict[str, ClipScorer] = {}
    for name, wanted in (("dnsmos", with_dnsmos), ("wada_snr", with_wada)):
        if not wanted:
            notes.append(f"{name} not computed (switched off)")
        elif registry is None or name not in registry.names("metric"):
            notes.append(f"metric '{name}' is not registered; its columns are null")
        else:
            scorers[name] = ClipScorer(registry, name)
    return scorers


def _dnsmos_pass(
    dnsmos: ClipScorer, sample: DnsmosSample, clips: list[Clip], durations: dict[str, float]
) -> dict[str, Any]:
    """The second pass: DNS-MOS on the clips ``sample`` selects (``durations``: the readable
    clips of the first pass); returns the card's description of the sample."""
    chosen = sample.select(clips, durations)
    for clip in clips:
        if clip.id in chosen:
            try:
                x, sr = load_audio(clip.audio)
            except ItemError as exc:  # changed since the first pass
                dnsmos.errors[clip.id] = str(exc)
                continue
            dnsmos.add(clip, x, sr)
    return {
        **sample.describe(),
        "clips_scored": len(chosen),
        "clips_total": len(durations),
        "hours_scored": round(sum(durations[i] for i in chosen) / 3600.0, 6),
    }


COLUMNS = (
    ("hours", "hours"),
    ("clips", "clips"),
    ("duration_mean_s", "dur mean s"),
    ("duration_std_s", "dur std s"),
    ("unique_words", "unique words"),
    ("words_per_clip_mean", "words/clip"),
    ("energy_mean_db", "energy mean dB"),
    ("energy_std_db", "energy std dB"),
    ("dnsmos_ovrl_mean", "DNS-MOS mean"),
    ("dnsmos_ovrl_std", "DNS-MOS std"),
    ("dnsmos_clips", "DNS-MOS clips"),
    ("wada_snr_mean_db", "WADA-SNR dB"),
    ("adaptation_risk", "risk"),
)


def card_markdown(card: dict[str, Any], title: str = "Data card") -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"
        return str(v)

    lines = [f"# {title}", ""]
    head = "| " + " | ".join(["", *[c[1] for c in COLUMNS]]) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 1)
    for section in ("speakers", "languages"):
        lines += [
            f"## Per {section[:-1]}",
            "",
            head.replace("|  |", f"| {section[:-1]} |", 1),
            rule,
        ]
        for key, row in card[section].items():
            lines.append("| " + " | ".join([key, *[fmt(row[c]) for c, _ in COLUMNS]]) + " |")
        lines.append("")
    lines.append(f"Risk rule: {card['thresholds']['rule']} (seed study's energy-std thresholds).")
    sample = card.get("dnsmos_sample")
    if sample and sample.get("mode") == "sample":
        lines.append(
            f"DNS-MOS columns: {sample['clips_scored']} of {sample['clips_total']} clips, "
            f"{sample['rule']}; every other column uses all clips (`--dnsmos-all` scores all)."
        )
    set_aside = (card.get("quarantine") or {}).get("lines") or []
    if set_aside:
        lines += [
            "",
            f"## Lines set aside ({len(set_aside)})",
            "",
            "Not in the numbers above (the checks every run applies).",
            "",
            "| line | id | reason code | reason |",
            "|---|---|---|---|",
        ]
        for q in set_aside:
            cells = [str(q["line"]), q["id"] if q["id"] is not None else "–", q["code"]]
            cells.append(q["reason"])
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if card.get("notes"):
        lines += ["", "Notes:", *[f"- {n}" for n in card["notes"][:50]]]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def card_plot(card: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speakers = list(card["speakers"])
    rows = [card["speakers"][s] for s in speakers]
    fig, axes = plt.subplots(
        1, 3, figsize=(max(9, 1.2 * len(speakers) + 6), 4), constrained_layout=True
    )
    x = np.arange(len(speakers))
    std = [r["energy_std_db"] or 0 for r in rows]
    colours = {"low": "tab:green", "medium": "tab:orange", "high": "tab:red", None: "grey"}
    axes[0].bar(x, std, color=[colours[r["adaptation_risk"]] for r in rows])
    axes[0].axhline(ENERGY_STD_GAIN_DB, ls="--", c="tab:green", lw=1, label="13 dB: gains")
    axes[0].axhline(ENERGY_STD_DEGRADE_DB, ls="--", c="tab:red", lw=1, label="10 dB: degradation")
    axes[0].set_ylabel("energy std (dB)")
    axes[0].legend(fontsize=7)
    mos = [r["dnsmos_ovrl_mean"] or 0 for r in rows]
    mos_sd = [r["dnsmos_ovrl_std"] or 0 for r in rows]
    axes[1].bar(x, mos, yerr=mos_sd, color="tab:blue", capsize=3)
    axes[1].set_ylabel("DNS-MOS OVRL (mean ± std)")
    axes[1].set_ylim(1, 5)
    axes[2].bar(x, [r["hours"] * 60 for r in rows], color="tab:purple")
    axes[2].set_ylabel("minutes")
    for ax in axes:
        ax.set_xticks(x, speakers, rotation=45, ha="right", fontsize=7)
    fig.suptitle("Data card per speaker")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def inspect_manifest(
    manifest: Path,
    out: Path | None,
    with_dnsmos: bool = True,
    registry: Any = None,
    with_wada: bool = True,
    dnsmos_sample: DnsmosSample | None = None,
    check_audio: str = RUN_CHECKS["check_audio"],
    duration_window: tuple[float | None, float | None] = RUN_CHECKS["duration_window"],
    cache: AudioCheckCache | None = None,
) -> dict:
    """Write the data card of ``manifest`` to ``out`` (JSON) plus ``.md`` and ``.png`` beside it.

    ``out`` defaults to ``<manifest stem>.card.json`` beside the manifest. The manifest is checked
    as a run checks it (``check_audio``, ``duration_window``; by default the full decode check
    with the shortest clip at ``DEFAULT_MIN_DURATION_S``; ``cache`` keeps what decoding measured);
    lines set aside are left out of the numbers and listed in ``card["quarantine"]["lines"]``
    (line, id, code, reason, path) and in the Markdown. DNS-MOS uses ``dnsmos_sample`` (default:
    up to ``DNSMOS_MAX_CLIPS`` clips / ``DNSMOS_MAX_MINUTES`` min per speaker and language;
    ``DnsmosSample(all_clips=True)`` for every clip). Returns the card.
    """
    manifest = Path(manifest)
    load = load_manifest(
        manifest,
        check_audio=check_audio,
        duration_window=duration_window,
        max_clipped_fraction=RUN_CHECKS["max_clipped_fraction"],
        silence_peak_dbfs=RUN_CHECKS["silence_peak_dbfs"],
        cache=cache,
    )
    if registry is None and (with_dnsmos or with_wada):
        from ..registry import build_registry

        registry = build_registry()
    card = build_card(load.clips, registry, with_dnsmos, with_wada, dnsmos_sample)
    card["manifest"] = str(manifest)
    card["quarantine"] = {
        "count": len(load.quarantine),
        "by_reason": load.counts(),
        "check": load.audio_check,
        "lines": [q.as_dict() for q in load.quarantine],
    }
    out = Path(out) if out is not None else manifest.with_name(manifest.stem + ".card.json")
    atomic_write_json(out, card)
    atomic_write_text(out.with_suffix(".md"), card_markdown(card, f"Data card: {manifest.name}"))
    card_plot(card, out.with_suffix(".png"))
    card["files"] = {
        "json": str(out),
        "md": str(out.with_suffix(".md")),
        "png": str(out.with_suffix(".png")),
    }
    return card
