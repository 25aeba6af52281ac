"""Listening tests: export a blinded test page, import the raters' files as records.

``export_test`` picks systems and evaluation sentences from a suite's results, writes a folder to
send to raters (``index.html`` + ``audio/``, opens offline) and keeps the key to the blinded
stimuli under ``<results>/<suite>/listening/<test_id>/key.json``. Three kinds:

* ``mos``: one clip at a time, rated 1 (bad) to 5 (excellent) — absolute category rating;
* ``ab``: two clips of the same sentence, each system against the zero-shot anchor, sides
  random; choose A, B or no preference;
* ``mushra``: every system's clip of one sentence on 0–100 sliders, with the real recording as an
  open reference where there is one (ITU-R BS.1534 style).

Every rater gets their own random order (trials, and the stimuli inside a trial). Hidden anchors
are mixed in: the real recording of the sentence as the upper anchor where the corpus has one, and a
degraded low anchor made here (the recording — or the anchor system's clip — low-passed at 3.5 kHz
with white noise at 5 dB SNR). Attention checks are trials whose instruction asks for a given
answer. Stimuli are loudness-matched (same RMS over their active parts) and named by random
tokens, so neither the file name nor the level tells the system.

``import_ratings`` reads the raters' JSON files, screens the raters by the hidden anchors and
attention checks (the rule is :data:`EXCLUSION_RULE`), and writes, for every rated run,
``scores/<metric>.jsonl`` (per sentence: the mean over the kept raters) and
``records/<metric>.json`` in the record format of every metric, plus a ``human`` block (test id,
raters kept/excluded, Krippendorff's alpha). The leaderboard then treats the metric as any other:
mean with a bootstrap interval over sentences, Δ and paired Wilcoxon against the anchor. The
record's own interval resamples raters and sentences together (two-way bootstrap).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, TTSAdaptError
from .leaderboard import ItemInfo, encode_audio, load_results, read_eval_manifest, safe_name
from .leaderboard.listening import first_run as _first_run
from .leaderboard.systems import systems_frame as _systems_frame
from .records import (
    DONE_MARKER,
    RUN_CONFIG_KEYS,
    SCHEMA_VERSION,
    atomic_folder,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    read_jsonl,
)

__all__ = [
    "EXCLUSION_RULE",
    "KINDS",
    "ExportResult",
    "ImportResult",
    "export_test",
    "import_ratings",
    "krippendorff_alpha_interval",
    "screen_rater",
]

KINDS = ("mos", "ab", "mushra")
METRIC = {"mos": "mos", "ab": "ab_preference", "mushra": "mushra"}
OUTPUT = {"mos": "mos", "ab": "preference", "mushra": "score"}
SCALE = {"mos": (1.0, 5.0), "ab": (-1.0, 1.0), "mushra": (0.0, 100.0)}
UNIT = {"mos": "MOS", "ab": "", "mushra": "MUSHRA"}
METRIC_VERSION = "1"
FORMAT = "ttsadapt-listening-ratings/1"
LOW_PASS_HZ = 3500.0
LOW_SNR_DB = 5.0
TARGET_RMS_DBFS = -26.0
N_BOOTSTRAP = 2000
TEMPLATE = Path(__file__).parent / "resources" / "listen" / "index.html"

EXCLUSION_RULE = (
    "A rater is excluded when (1) their mean rating of the degraded low anchor is at least their "
    "mean rating of the real recordings (the hidden upper anchor; in A/B: they preferred the low "
    "anchor in at least half of those pairs), or, where a test has no real recordings, above the "
    "median of their mean ratings of the systems; or (2) they answered fewer than all but one of "
    "the attention checks as instructed (all of them when there are one or two); or (3) they "
    "rated fewer than half of the trials. Excluded raters are reported with the reason and left "
    "out of every number, the agreement included."
)


# --------------------------------------------------------------------------- agreement


def krippendorff_alpha_interval(ratings: np.ndarray) -> float:
    """Krippendorff's alpha at the interval level, missing values allowed.

    ``ratings`` is ``(raters, units)`` with NaN where a rater did not rate a unit. Only units rated
    by at least two raters are pairable. With ``m_u`` values in unit ``u`` and ``n`` pairable
    values in all, ``alpha = 1 - (n - 1) * sum_u D_u / (m_u - 1) / D`` where ``D_u`` is the sum of
    squared differences over ordered pairs inside unit ``u`` and ``D`` the same over all pairable
    values (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"). NaN when fewer than
    two pairable values or no variation at all.
    """
    data = np.asarray(ratings, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"ratings: expected a (raters, units) matrix, got shape {data.shape}")
    finite = np.isfinite(data)
    m = finite.sum(axis=0)
    pairable = m >= 2
    if not pairable.any():
        return math.nan
    values = np.where(finite, data, 0.0)[:, pairable]
    m = m[pairable].astype(float)
    s1 = values.sum(axis=0)
    s2 = (values**2).sum(axis=0)
    within = 2.0 * (m * s2 - s1**2) / (m - 1.0)  # sum over ordered pairs / (m_u - 1)
    n = m.sum()
    total = 2.0 * (n * s2.sum() - s1.sum() ** 2)
    if n < 2 or total <= 0:
        return math.nan
    return float(1.0 - (n - 1.0) * within.sum() / total)


# --------------------------------------------------------------------------- audio


def _active_rms(audio: np.ndarray, sr: int) -> float:
    """RMS over the 20 ms frames within 40 dB of the loudest (pauses do not dilute it)."""
    frame = max(1, int(0.02 * sr))
    n = len(audio) // frame
    if n == 0:
        return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    energy = (audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    loud = energy >= energy.max() * 1e-4
    return float(np.sqrt(energy[loud].mean())) if loud.any() else 0.0


def _normalise(audio: np.ndarray, sr: int) -> np.ndarray:
    rms = _active_rms(audio, sr)
    if rms <= 0:
        return audio
    out = audio * (10 ** (TARGET_RMS_DBFS / 20) / rms)
    peak = np.abs(out).max()
    return out / peak * 0.99 if peak > 0.99 else out


def degrade(audio: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The low anchor: low-passed at 3.5 kHz (8th-order Butterworth, both directions) with white
    noise at 5 dB SNR (relative to the active-speech RMS)."""
    from scipy.signal import butter, sosfiltfilt

    audio = np.asarray(audio, dtype=np.float64)
    if sr > 2 * LOW_PASS_HZ * 1.05 and audio.size > 60:
        sos = butter(8, LOW_PASS_HZ, btype="low", fs=sr, output="sos")
        audio = sosfiltfilt(sos, audio)
    rms = _active_rms(audio, sr) or 1e-3
    noise = rng.normal(0.0, rms / 10 ** (LOW_SNR_DB / 20), audio.size)
    return (audio + noise).astype(np.float32)


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises plain RuntimeErrors
        raise TTSAdaptError(f"{path}: cannot read audio ({exc})") from None
    return audio.mean(axis=1), int(sr)


def _write_stimulus(audio: np.ndarray, sr: int, dst: Path) -> None:
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        sf.write(str(wav), _normalise(audio, sr), sr, subtype="FLOAT")
        encode_audio(wav, dst)


# --------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    test_id: str
    out_dir: Path
    key_path: Path
    kind: str
    systems: list[str]
    items: list[str]
    raters: list[str]
    n_stimuli: int
    n_trials_per_rater: int
    has_upper_anchor: bool
    page_bytes: int
    audio_bytes: int
    notes: list[str] = field(default_factory=list)


def _run_items(run_dir: Path) -> dict[str, Path]:
    """Item id -> audio file of a run (synthesis.jsonl names the items; else the file names)."""
    audio_dir = run_dir / "audio"
    out: dict[str, Path] = {}
    synth = run_dir / "synthesis.jsonl"
    if synth.is_file():
        for row in read_jsonl(synth):
            item = str(row.get("item"))
            path = audio_dir / f"{safe_name(item)}.wav"
            if not row.get("error") and path.is_file():
                out[item] = path
        return out
    if audio_dir.is_dir():
        for path in sorted(audio_dir.glob("*.wav")):
            out[path.stem] = path
    return out


def _pick_items(items: list[str], speakers: dict[str, str], n: int, rng) -> list[str]:
    """``n`` items at random, taken in turn from each speaker so every voice is heard."""
    by_speaker: dict[str, list[str]] = {}
    for item in items:
        by_speaker.setdefault(speakers.get(item, ""), []).append(item)
    for group in by_speaker.values():
        rng.shuffle(group)
    picked: list[str] = []
    while len(picked) < n and any(by_speaker.values()):
        for spk in sorted(by_speaker):
            if by_speaker[spk] and len(picked) < n:
                picked.append(by_speaker[spk].pop())
    return sorted(picked)


def _token(rng: np.random.Generator) -> str:
    return "s" + "".join(f"{b:02x}" for b in rng.integers(0, 256, 5))


def _select_systems(frame, wanted: list[str] | None) -> list[int]:
    labels = frame["label"].tolist()
    if not wanted:
        return list(range(len(labels)))
    out = []
    for name in wanted:
        hits = [
            i for i, (lab, runs) in enumerate(zip(labels, frame["run_ids"])) if name in (lab, *runs)
        ]
        if not hits:
            hits = [i for i, lab in enumerate(labels) if name.lower() in lab.lower()]
        if not hits:
            raise ConfigError(
                f"--systems: no system {name!r} (expected a label, a run id or part of a label; "
                f"systems: {'; '.join(labels)})"
            )
        if len(hits) > 1:
            raise ConfigError(
                f"--systems: {name!r} matches {len(hits)} systems "
                f"({'; '.join(labels[i] for i in hits)}); give the full label or a run id"
            )
        if hits[0] not in out:
            out.append(hits[0])
    return out


def _check_export_args(kind: str, n_items: int, n_raters: int) -> None:
    if kind not in KINDS:
        raise ConfigError(f"--kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if n_items < 1:
        raise ConfigError(f"--items: expected at least 1, got {n_items}")
    if n_raters < 1:
        raise ConfigError(f"--raters: expected at least 1, got {n_raters}")


def _anchors_in_test(kind: str, frame: Any, chosen: list[int], notes: list[str]) -> list[int]:
    """The chosen systems that are the zero-shot anchor (an A/B test needs it and one other)."""
    anchors = [i for i in chosen if frame["is_anchor"][i]]
    if kind == "ab" and not anchors:
        raise ConfigError(
            "--systems: an A/B test compares every system with the zero-shot anchor; include it"
        )
    if not anchors:
        notes.append("the zero-shot anchor is not in the test: no Δ to the anchor for this metric")
    if kind == "ab" and len(chosen) < 2:
        raise ConfigError("--systems: an A/B test needs the anchor and at least one other system")
    return anchors


def _system_runs(
    loaded: Any, frame: Any, chosen: list[int], suite_dir: Path
) -> list[tuple[int, str, dict[str, Path]]]:
    """Per chosen system the run it is heard through and that run's clips by item."""
    sys_runs = []
    for i in chosen:
        rid = _first_run(loaded, list(frame["run_ids"][i]))
        files = _run_items(suite_dir / "runs" / rid)
        if not files:
            raise TTSAdaptError(
                f"{suite_dir / 'runs' / rid / 'audio'}: no audio for system {frame['label'][i]!r} "
                "(expected <item>.wav files the runner writes)"
            )
        sys_runs.append((i, rid, files))
    return sys_runs


def _item_speakers(
    suite_dir: Path, sys_runs: list[tuple[int, str, dict[str, Path]]], info: dict[str, ItemInfo]
) -> dict[str, str]:
    """Each sentence's speaker: as the first system's run synthesised it, else the manifest's."""
    speakers = {}
    for _, rid, _ in sys_runs[:1]:
        synth = suite_dir / "runs" / rid / "synthesis.jsonl"
        if synth.is_file():
            speakers = {str(r.get("item")): str(r.get("speaker")) for r in read_jsonl(synth)}
    for item, it in info.items():
        if it.speaker:
            speakers.setdefault(item, it.speaker)
    return speakers


def _attention_checks(
    kind: str,
    n_checks: int,
    items: list[str],
    check_files: dict[str, Path],
    check_label: str,
    per_item: dict[str, dict[str, Any]],
    add: Callable[[np.ndarray, int, dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """``n_checks`` attention checks on clips of the first system (``check_files``), each
    stimulus stored through ``add``; in an A/B test paired with that system's own clip."""
    checks: list[dict[str, Any]] = []
    for c in range(n_checks):
        item = items[c % len(items)]
        expected = _check_answer(kind, c)
        audio, sr = _read(check_files[item])
        tokens = [add(audio, sr, {"role": "check", "item": item, "expected": expected})]
        if kind == "ab":
            tokens.append(per_item[item]["systems"][check_label])
        checks.append({"id": f"c{c + 1}", "tokens": tokens, "check": _check_text(kind, expected)})
    return checks


def _rater_orders(
    kind: str,
    trials: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    n_raters: int,
    seed: int,
) -> dict[str, list[dict[str, Any]]]:
    """Per rater (``r1``, ``r2``, ...) the trials in their own seeded order, the attention checks
    placed anywhere but first; for MUSHRA and A/B the stimuli of each trial shuffled too."""
    orders: dict[str, list[dict[str, Any]]] = {}
    for k in range(n_raters):
        rr = np.random.default_rng([seed, k + 1])
        order = [dict(t, tokens=list(t["tokens"])) for t in trials]
        rr.shuffle(order)
        for check in checks:  # never first: the rater should have settled in
            pos = int(rr.integers(1, len(order) + 1)) if order else 0
            order.insert(pos, dict(check, tokens=list(check["tokens"])))
        if kind in ("mushra", "ab"):
            for t in order:
                rr.shuffle(t["tokens"])
        orders[f"r{k + 1}"] = [
            {
                "id": t["id"],
                "s": t["tokens"],
                **({"ref": t["ref"]} if t.get("ref") else {}),
                **({"check": t["check"]} if t.get("check") else {}),
            }
            for t in order
        ]
    return orders


def _write_page(folder: Path, config: dict[str, Any], test_id: str) -> None:
    """The test page (the template with ``config`` inlined) and the raters' README."""
    page = TEMPLATE.read_text(encoding="utf-8")
    data = json.dumps(config, separators=(",", ":")).replace("</", "<\\/")
    page = page.replace("/*__CONFIG__*/null", data)
    atomic_write_text(folder / "index.html", page)
    atomic_write_text(
        folder / "README.txt",
        f"Listening test {test_id}\n\nOpen index.html in a web browser (no internet needed) "
        "and enter your rater code (r1, r2, ...), or open index.html#r1.\nYour ratings are "
        "kept in the browser while you work, so you can stop and come back.\nWhen done, press "
        "'Download ratings' and send the file back.\n",
    )


def export_test(
    results_dir: Path | str,
    suite: str,
    out_dir: Path | str,
    systems: list[str] | None = None,
    n_items: int = 20,
    kind: str = "mos",
    n_raters: int = 5,
    manifest: Path | str | None = None,
    n_checks: int = 2,
    seed: int | None = None,
) -> ExportResult:
    """Write a listening test for ``suite`` to ``out_dir`` (see the module docstring).

    Every chosen system is heard through one run (its lowest seed with audio) on the same
    ``n_items`` sentences (those all of them synthesised; fewer when fewer exist, with a note).
    ``manifest`` (the suite's corpus manifest) gives each sentence's real recording, the upper
    anchor; without it the test has the low anchor only.
    """
    _check_export_args(kind, n_items, n_raters)
    results_dir = Path(results_dir)
    suite_dir = results_dir / suite
    if not (suite_dir / "runs").is_dir():
        raise TTSAdaptError(f"{suite_dir}: no runs folder; run the suite first (ttsadapt run)")
    loaded = load_results(suite_dir)
    if not len(loaded.records):
        raise TTSAdaptError(f"{suite_dir}: no finished runs with records")
    frame = _systems_frame(loaded.records, loaded, "val_loss")
    frame = frame.sort_values(["is_anchor", "label"], ascending=[False, True]).reset_index(
        drop=True
    )
    chosen = _select_systems(frame, systems)
    notes: list[str] = []
    anchors = _anchors_in_test(kind, frame, chosen, notes)
    sys_runs = _system_runs(loaded, frame, chosen, suite_dir)
    common = sorted(set.intersection(*(set(f) for _, _, f in sys_runs)))
    if not common:
        raise TTSAdaptError(
            "the chosen systems share no evaluation sentence with audio (with "
            "match_recipe_speakers, choose systems trained on the same speakers)"
        )
    info: dict[str, ItemInfo] = read_eval_manifest(manifest) if manifest else {}
    speakers = _item_speakers(suite_dir, sys_runs, info)
    if seed is None:
        seed = secrets.randbits(32)
    rng = np.random.default_rng(seed)
    if len(common) < n_items:
        notes.append(f"only {len(common)} sentences have audio from every system (asked {n_items})")
    items = _pick_items(common, speakers, n_items, rng)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    test_id = (
        f"{suite}-{kind}-"
        + hashlib.sha256(f"{suite}|{kind}|{seed}|{created}|{items}".encode()).hexdigest()[:8]
    )
    out_dir = Path(out_dir)
    key_path = suite_dir / "listening" / test_id / "key.json"
    stimuli: dict[str, dict[str, Any]] = {}
    anchor_label = frame["label"][anchors[0]] if anchors else None
    has_upper = False
    with atomic_folder(out_dir) as tmp:
        audio_dir = tmp / "audio"

        def add(audio: np.ndarray, sr: int, meta: dict[str, Any]) -> str:
            token = _token(rng)
            while token in stimuli:
                token = _token(rng)
            _write_stimulus(audio, sr, audio_dir / f"{token}.ogg")
            stimuli[token] = meta
            return token

        per_item: dict[str, dict[str, Any]] = {}
        for item in items:
            entry: dict[str, Any] = {"systems": {}, "upper": None, "low": None, "reference": None}
            base = None
            for i, rid, files in sys_runs:
                audio, sr = _read(files[item])
                label = frame["label"][i]
                entry["systems"][label] = add(
                    audio, sr, {"role": "system", "system": label, "run_id": rid, "item": item}
                )
                if label == anchor_label or base is None:
                    base = (audio, sr)
            rec = info[item].recording if item in info else None
            if rec is not None and Path(rec).is_file():
                audio, sr = _read(Path(rec))
                has_upper = True
                entry["upper"] = add(audio, sr, {"role": "upper", "item": item})
                if kind == "mushra":  # the open reference: the same recording, labelled
                    entry["reference"] = add(audio, sr, {"role": "reference", "item": item})
                base = (audio, sr)
            assert base is not None  # every item has a clip of each system
            entry["low"] = add(degrade(*base, rng), base[1], {"role": "low", "item": item})
            per_item[item] = entry
        if manifest and not has_upper:
            notes.append(f"{manifest}: no real recording found for the chosen sentences")
        trials = _trials(kind, items, per_item, anchor_label)
        check_files, check_label = sys_runs[0][2], frame["label"][sys_runs[0][0]]
        checks = _attention_checks(kind, n_checks, items, check_files, check_label, per_item, add)
        orders = _rater_orders(kind, trials, checks, n_raters, seed)
        config = {
            "format": FORMAT,
            "test_id": test_id,
            "suite": suite,
            "kind": kind,
            "scale": SCALE[kind],
            "created": created,
            "raters": orders,
        }
        _write_page(tmp, config, test_id)
        page_bytes = (tmp / "index.html").stat().st_size
        audio_bytes = sum(p.stat().st_size for p in audio_dir.glob("*.ogg"))
    key = {
        "format": FORMAT,
        "test_id": test_id,
        "suite": suite,
        "kind": kind,
        "scale": SCALE[kind],
        "created": created,
        "seed": seed,
        "systems": [
            {"label": frame["label"][i], "run_id": rid, "is_anchor": bool(frame["is_anchor"][i])}
            for i, rid, _ in sys_runs
        ],
        "items": items,
        "raters": list(orders),
        "stimuli": stimuli,
        "checks": {c["id"]: c["check"]["answer"] for c in checks},
        "n_trials": {r: len(o) for r, o in orders.items()},
        "low_anchor": f"low-pass {LOW_PASS_HZ:g} Hz + white noise at {LOW_SNR_DB:g} dB SNR",
        "loudness": f"active-speech RMS matched to {TARGET_RMS_DBFS:g} dBFS",
        "out_dir": str(out_dir.resolve()),
        "notes": notes,
    }
    atomic_write_json(key_path, key)
    return ExportResult(
        test_id=test_id,
        out_dir=out_dir,
        key_path=key_path,
        kind=kind,
        systems=[frame["label"][i] for i, _, _ in sys_runs],
        items=items,
        raters=list(orders),
        n_stimuli=len(stimuli),
        n_trials_per_rater=len(next(iter(orders.values()))),
        has_upper_anchor=has_upper,
        page_bytes=page_bytes,
        audio_bytes=audio_bytes,
        notes=notes,
    )


def _check_answer(kind: str, k: int) -> Any:
    if kind == "mos":
        return [2, 4, 1, 5][k % 4]
    if kind == "mushra":
        return [20, 80, 40, 60][k % 4]
    return ["B", "A"][k % 2]


def _check_text(kind: str, expected: Any) -> dict[str, Any]:
    what = {"mos": "choose", "ab": "choose", "mushra": "set the slider to"}[kind]
    return {"text": f"Attention check: whatever you hear, {what} {expected}.", "answer": expected}


def _trials(kind: str, items: list[str], per_item: dict[str, Any], anchor: str | None) -> list:
    trials = []
    for item in items:
        e = per_item[item]
        hidden = [t for t in (e["upper"], e["low"]) if t]
        if kind == "mos":
            for token in list(e["systems"].values()) + hidden:
                trials.append({"id": f"t-{token}", "tokens": [token]})
        elif kind == "mushra":
            trials.append(
                {
                    "id": f"t-{safe_name(item)}",
                    "tokens": list(e["systems"].values()) + hidden,
                    "ref": e["reference"],
                }
            )
        else:
            base = e["systems"][anchor]
            for label, token in e["systems"].items():
                if label != anchor:
                    trials.append({"id": f"t-{token}", "tokens": [token, base]})
            other = e["upper"] or base  # the hidden pair: real recording (or anchor) vs low
            trials.append({"id": f"t-{e['low']}", "tokens": [other, e["low"]]})
    return trials


# --------------------------------------------------------------------------- import


@dataclass
class RaterReport:
    rater: str
    file: str
    n_answered: int
    n_trials: int
    checks_passed: int
    n_checks: int
    low_mean: float | None  # mean rating of the low anchor (A/B: share of pairs it won)
    upper_mean: float | None  # of the real recordings (A/B: None)
    system_median: float | None  # median of the rater's per-system means
    excluded: bool = False
    reasons: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    test_id: str
    kind: str
    metric: str
    raters: list[RaterReport]
    alpha: float  # kept raters, system stimuli
    alpha_all: float  # every rater
    systems: dict[str, dict[str, Any]]  # label -> mean, ci_low, ci_high, n_items, run_id
    anchors: dict[str, float | None]  # upper / low: mean over kept raters
    records: list[Path]
    summary_path: Path
    notes: list[str] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return sum(not r.excluded for r in self.raters)


def _load_ratings_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TTSAdaptError(f"{path}: ratings file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TTSAdaptError(f"{path}: not a JSON ratings file ({exc})") from None
    if not isinstance(data, dict):
        raise TTSAdaptError(f"{path}: expected a JSON object (a ratings file the test page saves)")
    if data.get("format") != FORMAT:
        raise TTSAdaptError(
            f"{path}: field format: expected {FORMAT!r}, got {data.get('format')!r} "
            "(is this a file saved by a ttsadapt listening test page?)"
        )
    for name, typ in (("test_id", str), ("rater", str), ("answers", list)):
        if not isinstance(data.get(name), typ):
            raise TTSAdaptError(f"{path}: field {name}: expected a {typ.__name__}")
    for k, ans in enumerate(data["answers"]):
        if not isinstance(ans, dict) or not isinstance(ans.get("trial"), str):
            raise TTSAdaptError(f"{path}: answers[{k}]: expected an object with a 'trial' id")
    return data


def _answer_values(kind: str, ans: dict[str, Any], path: Path, k: int) -> dict[str, Any]:
    lo, hi = SCALE[kind]
    if kind == "ab":
        choice = ans.get("choice")
        if choice not in ("A", "B", "none"):
            raise TTSAdaptError(
                f"{path}: answers[{k}].choice: expected 'A', 'B' or 'none', got {choice!r}"
            )
        return {"choice": choice}
    ratings = ans.get("ratings")
    if not isinstance(ratings, dict):
        raise TTSAdaptError(f"{path}: answers[{k}].ratings: expected {{token: rating}}")
    out = {}
    for token, value in ratings.items():
        if not isinstance(value, int | float) or not lo <= value <= hi:
            raise TTSAdaptError(
                f"{path}: answers[{k}].ratings.{token}: expected a number in [{lo:g}, {hi:g}], "
                f"got {value!r}"
            )
        out[token] = float(value)
    return {"ratings": out}


def screen_rater(
    rep: RaterReport, kind: str, has_upper: bool, low_wins: float | None = None
) -> RaterReport:
    """Apply :data:`EXCLUSION_RULE` to one rater's numbers (sets ``excluded`` and ``reasons``)."""
    reasons = []
    if kind == "ab":
        if low_wins is not None and low_wins >= 0.5:
            reasons.append(f"preferred the degraded low anchor in {low_wins:.0%} of its pairs")
    elif rep.low_mean is not None:
        if has_upper and rep.upper_mean is not None and rep.low_mean >= rep.upper_mean:
            reasons.append(
                f"rated the degraded low anchor ({rep.low_mean:.2f}) at or above the real "
                f"recordings ({rep.upper_mean:.2f})"
            )
        elif not has_upper and rep.system_median is not None and rep.low_mean > rep.system_median:
            reasons.append(
                f"rated the degraded low anchor ({rep.low_mean:.2f}) above the median system "
                f"({rep.system_median:.2f})"
            )
    need = rep.n_checks if rep.n_checks <= 2 else rep.n_checks - 1
    if rep.checks_passed < need:
        reasons.append(f"passed {rep.checks_passed} of {rep.n_checks} attention checks")
    if rep.n_trials and rep.n_answered < rep.n_trials / 2:
        reasons.append(f"answered {rep.n_answered} of {rep.n_trials} trials")
    rep.reasons = reasons
    rep.excluded = bool(reasons)
    return rep


def _two_way_ci(
    matrix: np.ndarray, n_boot: int, seed: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the grand mean, resampling raters (rows) and items (columns)."""
    finite = np.isfinite(matrix)
    if not finite.any():
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    nr, ni = matrix.shape
    cr = np.stack([np.bincount(rng.integers(0, nr, nr), minlength=nr) for _ in range(n_boot)])
    ci = np.stack([np.bincount(rng.integers(0, ni, ni), minlength=ni) for _ in range(n_boot)])
    values = np.where(finite, matrix, 0.0)
    num = np.einsum("br,ri,bi->b", cr, values, ci)
    den = np.einsum("br,ri,bi->b", cr, finite.astype(float), ci)
    means = num[den > 0] / den[den > 0]
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _identity(run_dir: Path, skip: set[str]) -> dict[str, Any]:
    """The run-identity fields of an existing record of the run (or its config.json)."""
    keys = (*RUN_CONFIG_KEYS, "trainable_params", "total_params", "adapter_bytes")
    for path in sorted((run_dir / "records").glob("*.json")):
        if path.stem in skip:
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("status", "ok") == "ok" and "backbone" in rec:
            return {k: rec.get(k) for k in keys}
    cfg = run_dir / "config.json"
    if cfg.is_file():
        rec = json.loads(cfg.read_text(encoding="utf-8"))
        return {k: rec.get(k) for k in keys}
    raise TTSAdaptError(f"{run_dir}: no record or config.json to take the run's identity from")


def import_ratings(
    paths: list[Path | str],
    results_dir: Path | str,
    suite: str,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> ImportResult:
    """Turn raters' files of one test into records (see the module docstring)."""
    if not paths:
        raise ConfigError("listen import: expected at least one ratings file")
    files = [(Path(p), _load_ratings_file(Path(p))) for p in paths]
    test_id = _one_test(files)
    suite_dir = Path(results_dir) / suite
    key_path = suite_dir / "listening" / test_id / "key.json"
    if not key_path.is_file():
        raise TTSAdaptError(
            f"{key_path}: no key for test {test_id!r} of suite {suite!r} (the key is written by "
            "`ttsadapt listen export` with the same --results and --suite)"
        )
    key = json.loads(key_path.read_text(encoding="utf-8"))
    kind = key["kind"]
    stimuli = key["stimuli"]
    notes: list[str] = []
    by_rater = _latest_per_rater(files, key, test_id, notes)
    systems = key["systems"]
    labels = [s["label"] for s in systems]
    items = key["items"]
    anchor_label = next((s["label"] for s in systems if s["is_anchor"]), None)
    has_upper = any(m["role"] == "upper" for m in stimuli.values())
    checks = key.get("checks", {})
    raters = sorted(by_rater, key=lambda r: int(r[1:]) if r[1:].isdigit() else 0)
    # per rater: token -> value (mos/mushra), or per trial pair -> preference (ab)
    values: dict[str, dict[str, float]] = {}
    reports: dict[str, RaterReport] = {}
    low_wins: dict[str, float | None] = {}
    for rater in raters:
        path, data = by_rater[rater]
        answered: dict[str, dict[str, Any]] = {}
        for k, ans in enumerate(data["answers"]):
            answered[ans["trial"]] = {**_answer_values(kind, ans, path, k), **ans}
        vals, passed, low_wins[rater] = _rater_values(
            kind, answered, path, stimuli, checks, anchor_label, test_id
        )
        values[rater] = vals

        def role_mean(role: str, vals: dict[str, float] = vals) -> float | None:
            got = [v for t, v in vals.items() if stimuli[t]["role"] == role]
            return float(np.mean(got)) if got else None

        sys_means = []
        for label in labels:
            got = [v for t, v in vals.items() if stimuli[t].get("system") == label]
            if got:
                sys_means.append(float(np.mean(got)))
        reports[rater] = screen_rater(
            RaterReport(
                rater=rater,
                file=str(path),
                n_answered=len(answered),
                n_trials=int(key["n_trials"].get(rater, len(answered))),
                checks_passed=int(passed),
                n_checks=len(checks),
                low_mean=low_wins[rater] if kind == "ab" else role_mean("low"),
                upper_mean=None if kind == "ab" else role_mean("upper"),
                system_median=float(np.median(sys_means)) if sys_means else None,
            ),
            kind,
            has_upper,
            low_wins[rater],
        )
    kept = [r for r in raters if not reports[r].excluded]
    if not kept:
        notes.append("every rater was excluded: no records written")
    system_tokens = [t for t, m in stimuli.items() if m["role"] == "system"]
    if kind == "ab":
        system_tokens = [t for t in system_tokens if stimuli[t]["system"] != anchor_label]

    def matrix(rs: list[str], tokens: list[str]) -> np.ndarray:
        return np.array([[values[r].get(t, np.nan) for t in tokens] for r in rs], dtype=float)

    alpha = krippendorff_alpha_interval(matrix(kept, system_tokens)) if kept else math.nan
    alpha_all = krippendorff_alpha_interval(matrix(raters, system_tokens)) if raters else math.nan
    anchors = {}
    for role in ("upper", "low"):
        toks = [t for t, m in stimuli.items() if m["role"] == role]
        rated = matrix(kept, toks) if kept and toks else np.empty(0)
        anchors[role] = (
            float(np.nanmean(rated)) if rated.size and np.isfinite(rated).any() else None
        )
    metric, output = METRIC[kind], OUTPUT[kind]
    lo, hi = SCALE[kind]
    created = datetime.now(UTC).isoformat(timespec="seconds")
    human = {
        "test_id": test_id,
        "kind": kind,
        "n_raters": len(kept),
        "n_raters_excluded": len(raters) - len(kept),
        "excluded": {r: reports[r].reasons for r in raters if reports[r].excluded},
        "alpha": None if math.isnan(alpha) else alpha,
        "alpha_level": "interval",
        "alpha_all_raters": None if math.isnan(alpha_all) else alpha_all,
        "n_items": len(items),
        "exclusion_rule": EXCLUSION_RULE,
        "anchors": anchors,
    }
    results: dict[str, dict[str, Any]] = {}
    written: list[Path] = []
    for k, sysinfo in enumerate(systems if kept else []):
        label, rid = sysinfo["label"], sysinfo["run_id"]
        run_dir = suite_dir / "runs" / rid
        if not (run_dir / DONE_MARKER).is_file():
            notes.append(f"{run_dir}: run is no longer finished (no DONE); not written")
            continue
        tok_of = {
            m["item"]: t
            for t, m in stimuli.items()
            if m["role"] == "system" and m["system"] == label
        }
        is_ab_anchor = kind == "ab" and label == anchor_label
        mat = (
            np.zeros((len(kept), len(items)))
            if is_ab_anchor
            else matrix(kept, [tok_of[i] for i in items])
        )
        rows = _item_rows(run_dir, items, mat, output, test_id)
        per_item = np.array([r["values"][output] for r in rows if r["values"]], dtype=float)
        mean = float(per_item.mean()) if per_item.size else None
        c_lo, c_hi = _two_way_ci(mat, n_boot, seed + k) if per_item.size else (None, None)
        record = {
            **_identity(run_dir, {metric}),
            "schema": SCHEMA_VERSION,
            "run_id": rid,
            "metric": metric,
            "metric_version": METRIC_VERSION,
            "metric_params": {"test_id": test_id, "kind": kind},
            "headline": output,
            "outputs": {
                output: {
                    "mean": mean,
                    "ci_low": c_lo,
                    "ci_high": c_hi,
                    "n": int(per_item.size),
                    "higher_is_better": True,
                    "range": [lo, hi],
                    "unit": UNIT[kind],
                    "ci_method": "percentile bootstrap over raters and items (two-way)",
                }
            },
            "n_items": len(items),
            "n_errors": sum(1 for r in rows if r["error"]),
            "n_not_applicable": 0,
            "errors": {"not rated": sum(1 for r in rows if r["error"])}
            if any(r["error"] for r in rows)
            else {},
            "human": {
                **human,
                **(
                    {"note": "the anchor against itself: 0 by definition (Δ = preference)"}
                    if is_ab_anchor
                    else {}
                ),
            },
            "status": "ok",
            "provenance": {"listening_test": test_id, "imported": created, "key": str(key_path)},
        }
        atomic_write_jsonl(run_dir / "scores" / f"{metric}.jsonl", rows)
        atomic_write_json(run_dir / "records" / f"{metric}.json", record)
        written.append(run_dir / "records" / f"{metric}.json")
        results[label] = {
            "run_id": rid,
            "mean": mean,
            "ci_low": c_lo,
            "ci_high": c_hi,
            "n_items": int(per_item.size),
        }
    summary = {
        "test_id": test_id,
        "kind": kind,
        "metric": metric,
        "imported": created,
        "raters": [r.__dict__ for r in reports.values()],
        "alpha": human["alpha"],
        "alpha_all_raters": human["alpha_all_raters"],
        "systems": results,
        "anchors": anchors,
        "exclusion_rule": EXCLUSION_RULE,
        "notes": notes,
    }
    summary_path = key_path.parent / "summary.json"
    atomic_write_json(summary_path, summary)
    for rater in raters:  # the evidence, beside the key
        path, data = by_rater[rater]
        atomic_write_json(key_path.parent / "ratings" / f"{rater}.json", data)
    return ImportResult(
        test_id=test_id,
        kind=kind,
        metric=metric,
        raters=[reports[r] for r in raters],
        alpha=alpha,
        alpha_all=alpha_all,
        systems=results,
        anchors=anchors,
        records=written,
        summary_path=summary_path,
        notes=notes,
    )


def _one_test(files: list[tuple[Path, dict[str, Any]]]) -> str:
    """The test all ratings files belong to (an error listing them when they are of several)."""
    test_ids = sorted({d["test_id"] for _, d in files})
    if len(test_ids) > 1:
        listing = "; ".join(f"{p}: {d['test_id']}" for p, d in files)
        raise TTSAdaptError(
            f"ratings of several tests given ({listing}); import one test at a time"
        )
    return test_ids[0]


def _latest_per_rater(
    files: list[tuple[Path, dict[str, Any]]], key: dict[str, Any], test_id: str, notes: list[str]
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each rater's ratings file (of two, the later one, with a note); a file of another kind
    of test or of a rater the test does not have is an error naming it."""
    kind = key["kind"]
    by_rater: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, data in files:
        if data.get("kind") not in (None, kind):
            raise TTSAdaptError(f"{path}: field kind: expected {kind!r}, got {data.get('kind')!r}")
        rater = data["rater"]
        if rater not in key["raters"]:
            raise TTSAdaptError(
                f"{path}: field rater: {rater!r} is not a rater of test {test_id} "
                f"(expected one of {', '.join(key['raters'])})"
            )
        old = by_rater.get(rater)
        if old is not None:
            newer = str(data.get("updated", "")) >= str(old[1].get("updated", ""))
            notes.append(
                f"rater {rater}: two files ({old[0]}, {path}); the later one "
                f"({path if newer else old[0]}) is used"
            )
            if not newer:
                continue
        by_rater[rater] = (path, data)
    return by_rater


def _rater_values(
    kind: str,
    answered: dict[str, dict[str, Any]],
    path: Path,
    stimuli: dict[str, dict[str, Any]],
    checks: dict[str, Any],
    anchor_label: str | None,
    test_id: str,
) -> tuple[dict[str, float], int, float | None]:
    """One rater's answers: token -> value (MOS/MUSHRA rating; for A/B per system token the
    preference, 1 system, -1 anchor, 0 none), the attention checks passed, and for A/B the share
    of low-anchor pairs the low anchor won (``None`` otherwise or when there were none)."""
    vals: dict[str, float] = {}
    passed = 0
    low_pairs = low_won = 0
    for trial, ans in answered.items():
        if trial in checks:
            passed += _check_passed(kind, ans, checks[trial])
            continue
        if kind == "ab":
            order = ans.get("order") or []
            if len(order) != 2 or any(t not in stimuli for t in order):
                raise TTSAdaptError(
                    f"{path}: trial {trial}: field order: expected the two tokens as shown"
                )
            chosen = {"A": order[0], "B": order[1]}.get(ans["choice"])
            roles = [stimuli[t]["role"] for t in order]
            if "low" in roles:
                low_pairs += 1
                low_won += chosen is not None and stimuli[chosen]["role"] == "low"
                continue
            system_tok = next(t for t in order if stimuli[t].get("system") != anchor_label)
            vals[system_tok] = 0.0 if chosen is None else (1.0 if chosen == system_tok else -1.0)
        else:
            for token, v in ans["ratings"].items():
                if token not in stimuli:
                    raise TTSAdaptError(
                        f"{path}: trial {trial}: unknown stimulus {token!r} (not of test {test_id})"
                    )
                vals[token] = v
    return vals, passed, (low_won / low_pairs) if low_pairs else None


def _item_rows(
    run_dir: Path, items: list[str], mat: np.ndarray, output: str, test_id: str
) -> list[dict[str, Any]]:
    """One score row per sentence: the mean of its kept ratings (``mat``: raters x items,
    NaN where not rated), with the sentence's speaker and language as the run synthesised it."""
    speakers = {}
    synth = run_dir / "synthesis.jsonl"
    if synth.is_file():
        speakers = {str(r.get("item")): r for r in read_jsonl(synth)}
    rows = []
    for j, item in enumerate(items):
        col = mat[:, j][np.isfinite(mat[:, j])]
        meta = speakers.get(item, {})
        rows.append(
            {
                "item": item,
                "speaker": meta.get("speaker"),
                "language": meta.get("language"),
                "values": {output: float(col.mean())} if col.size else {},
                "error": None if col.size else "not rated: no kept rater rated this item",
                "extra": {
                    "n_ratings": int(col.size),
                    "sd": float(col.std(ddof=1)) if col.size > 1 else None,
                    "test_id": test_id,
                },
            }
        )
    return rows


def _check_passed(kind: str, ans: dict[str, Any], expected: Any) -> bool:
    if kind == "ab":
        return ans.get("choice") == expected
    got = list(ans.get("ratings", {}).values())
    if not got:
        return False
    tolerance = 10.0 if kind == "mushra" else 0.0
    return abs(got[0] - float(expected)) <= tolerance
