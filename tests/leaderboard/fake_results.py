"""TEST FIXTURE: synthesise a results folder in the on-disk format of ``ttsadapt.records``.

Nothing here trains or scores anything: it writes what the runner would have written for a suite
of backbone x method x params x data-recipe x seed runs, with per-utterance scores drawn from known
effects, so leaderboard tests can check that the statistics find them. Used by
``tests/leaderboard`` and ``benchmarks/perf/test_leaderboard_perf.py``. :func:`write_scored_runs`
writes runs whose per-utterance values the test gives exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ttsadapt.records import DONE_MARKER, SCHEMA_VERSION

# metric name -> list of (output, higher_is_better, range, unit, anchor mean, spread)
METRICS: dict[str, list[tuple[str, bool, tuple[float, float], str, float, float]]] = {
    "dnsmos": [
        ("ovrl", True, (1.0, 5.0), "MOS", 3.0, 0.3),
        ("sig", True, (1.0, 5.0), "MOS", 3.3, 0.3),
        ("bak", True, (1.0, 5.0), "MOS", 3.8, 0.25),
        ("p808", True, (1.0, 5.0), "MOS", 3.6, 0.3),
        ("ovrl_raw", True, (1.0, 5.0), "MOS", 2.9, 0.3),
    ],
    "cer": [
        ("cer", False, (0.0, math.inf), "", 0.12, 0.06),
        ("wer", False, (0.0, math.inf), "", 0.25, 0.1),
        ("substitutions", False, (0.0, math.inf), "", 0.06, 0.03),
        ("deletions", False, (0.0, math.inf), "", 0.03, 0.02),
        ("insertions", False, (0.0, math.inf), "", 0.03, 0.02),
    ],
    "speaker_sim": [
        ("sim", True, (-1.0, 1.0), "cosine", 0.70, 0.08),
        ("sim_p10", True, (-1.0, 1.0), "cosine", 0.60, 0.08),
        ("sim_max", True, (-1.0, 1.0), "cosine", 0.80, 0.05),
        ("sim_prompt", True, (-1.0, 1.0), "cosine", 0.75, 0.08),
        ("sim_ref", True, (-1.0, 1.0), "cosine", 0.68, 0.08),
    ],
    "wada_snr": [
        ("snr_db", True, (-20.0, 100.0), "dB", 25.0, 4.0),
        ("snr_p10_db", True, (-20.0, 100.0), "dB", 20.0, 4.0),
        ("snr_p90_db", True, (-20.0, 100.0), "dB", 30.0, 4.0),
        ("speech_share", True, (0.0, 1.0), "", 0.8, 0.05),
        ("clipping_share", False, (0.0, 1.0), "", 0.01, 0.005),
    ],
}

# (method, params) -> effect on each metric's headline, in anchor standard deviations
#   rank 64 is the best on quality; rank 128 has the lowest validation loss but worse quality.
LORA_EFFECT = {8: 0.3, 16: 0.5, 64: 1.0, 128: 0.4}
LORA_VAL_LOSS = {8: 2.10, 16: 2.00, 64: 1.90, 128: 1.80}
TOTAL_PARAMS = 2_290_000_000
LORA_TRAINABLE = {8: 4_520_000, 16: 9_040_000, 64: 36_170_000, 128: 72_350_000}


@dataclass
class FakeSuite:
    """What :func:`make_results` wrote, for the tests to check against."""

    root: Path
    suite: str
    run_ids: list[str] = field(default_factory=list)
    anchor_run_ids: list[str] = field(default_factory=list)
    failed_run_ids: list[str] = field(default_factory=list)
    unfinished_run_ids: list[str] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)
    n_records: int = 0

    @property
    def suite_dir(self) -> Path:
        return self.root / self.suite


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True), encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


def make_results(
    root: Path,
    suite: str = "demo",
    backbones: tuple[str, ...] = ("voxcpm2-tiny",),
    ranks: tuple[int, ...] = (8, 64, 128),
    recipes: tuple[str, ...] = ("natural", "upsampled"),
    seeds: tuple[int, ...] = (0, 1),
    metrics: tuple[str, ...] = ("dnsmos", "cer", "speaker_sim", "wada_snr"),
    n_outputs: int = 2,
    n_items: int = 40,
    full_finetune: bool = True,
    n_checkpoints: int = 5,
    n_failed: int = 1,
    n_unfinished: int = 1,
    not_applicable_metric: str | None = "speaker_sim",
    error_every: int = 17,
    rng_seed: int = 0,
) -> FakeSuite:
    """Write ``root/suite/runs/<run_id>/...`` for anchors, LoRA ranks and optionally full FT.

    Every backbone gets a zero-shot anchor per seed (``is_anchor`` true, ``data_recipe`` null); every
    LoRA rank (and full fine-tuning) runs per data recipe and seed. ``n_outputs`` outputs per metric
    (headline first). One item in ``error_every`` fails; ``not_applicable_metric`` marks its last
    item "not applicable: ...". ``n_failed`` runs failed (``error.txt``, no ``DONE``) and
    ``n_unfinished`` runs never finished (no ``DONE``, no error).
    """
    rng = np.random.default_rng(rng_seed)
    out = FakeSuite(root=Path(root), suite=suite)
    runs_dir = out.suite_dir / "runs"
    items = [f"utt{i:04d}" for i in range(n_items)]
    speakers = [f"spk{i % 3}" for i in range(n_items)]
    # per-item difficulty shared by all systems, so paired tests have power
    base = {m: rng.normal(size=(len(METRICS[m]), n_items)) for m in metrics}

    expanded = _plans(backbones, ranks, recipes, seeds, full_finetune)

    for k, plan in enumerate(expanded):
        run_id = f"{plan['method']}-{k:05d}-{plan['seed']}"
        run_dir = runs_dir / run_id
        is_anchor = plan["method"] == "zero_shot"
        system = _system_label(plan)
        if system not in out.systems:
            out.systems.append(system)
        config = {
            "suite": suite,
            "suite_version": "1",
            "backbone": plan["backbone"],
            "backbone_version": "1",
            "backbone_params": {"size": "tiny"},
            "method": plan["method"],
            "method_version": "1",
            "method_params": plan["params"],
            "data_recipe": plan["recipe"],
            "seed": plan["seed"],
            "is_anchor": is_anchor,
        }
        _write_json(run_dir / "config.json", config)
        if out.failed_run_ids.__len__() < n_failed and not is_anchor and k % 5 == 3:
            (run_dir / "error.txt").write_text(
                "CUDA out of memory while training lora rank 128\nTraceback ...\n", encoding="utf-8"
            )
            _write_json(
                run_dir / "run.json",
                {
                    "status": "failed",
                    "run_id": run_id,
                    "error": "CUDA out of memory while training",
                },
            )
            out.failed_run_ids.append(run_id)
            continue
        if len(out.unfinished_run_ids) < n_unfinished and not is_anchor and k % 7 == 5:
            _write_json(run_dir / "run.json", {"status": "running", "run_id": run_id})
            out.unfinished_run_ids.append(run_id)
            continue
        trainable = plan["trainable"]
        adapter_bytes = 0 if is_anchor or plan["method"] == "full_ft" else trainable * 2
        if plan["method"] == "full_ft":
            adapter_bytes = trainable * 2
        if plan["val"] is not None and n_checkpoints:
            _write_checkpoints(run_dir, plan, n_checkpoints, rng)
        out.run_ids.append(run_id)
        if is_anchor:
            out.anchor_run_ids.append(run_id)
        for metric in metrics:
            spec = METRICS[metric][:n_outputs]
            rows = []
            vals = {}
            for j, (name, hib, rng_, _unit, mean, spread) in enumerate(spec):
                sign = 1.0 if hib else -1.0
                effect = plan["effect"] if j == 0 else 0.5 * plan["effect"]
                v = (
                    mean
                    + spread * (base[metric][j] + sign * effect)
                    + rng.normal(0, 0.3 * spread, n_items)
                )
                lo, hi = rng_
                vals[name] = np.clip(v, lo, hi if math.isfinite(hi) else None)
            n_err = 0
            errors: dict[str, int] = {}
            for i, item in enumerate(items):
                row = {
                    "item": item,
                    "speaker": speakers[i],
                    "language": "en",
                    "values": {},
                    "error": None,
                }
                if metric == not_applicable_metric and i == n_items - 1:
                    row["error"] = "not applicable: no reference audio for this item"
                elif error_every and (i + k) % error_every == 0:
                    row["error"] = "audio is silent (peak < 1e-4)"
                else:
                    row["values"] = {name: float(vals[name][i]) for name, *_ in spec}
                if row["error"]:
                    n_err += 1
                    errors[row["error"]] = errors.get(row["error"], 0) + 1
                rows.append(row)
            _write_jsonl(run_dir / "scores" / f"{metric}.jsonl", rows)
            outputs = {}
            for name, hib, rng_, unit, *_ in spec:
                ok = np.array([r["values"][name] for r in rows if r["values"]])
                outputs[name] = {
                    "mean": float(ok.mean()),
                    "ci_low": float(ok.mean() - 0.1),
                    "ci_high": float(ok.mean() + 0.1),
                    "n": int(ok.size),
                    "higher_is_better": hib,
                    "range": list(rng_) if math.isfinite(rng_[1]) else [rng_[0], None],
                    "unit": unit,
                }
            record = {
                **config,
                "schema": SCHEMA_VERSION,
                "run_id": run_id,
                "metric": metric,
                "metric_version": "1",
                "metric_params": {},
                "outputs": outputs,
                "n_items": n_items,
                "n_errors": n_err,
                "errors": errors,
                "trainable_params": trainable,
                "total_params": TOTAL_PARAMS,
                "adapter_bytes": adapter_bytes,
                "status": "ok",
                "provenance": {"git_sha": "0" * 40, "device": "cpu"},
            }
            _write_json(run_dir / "records" / f"{metric}.json", record)
            out.n_records += 1
        _write_json(
            run_dir / "run.json",
            {
                "status": "ok",
                "run_id": run_id,
                "trainable_params": trainable,
                "total_params": TOTAL_PARAMS,
                "adapter_bytes": adapter_bytes,
            },
        )
        (run_dir / DONE_MARKER).write_text("", encoding="utf-8")
    return out


def _plans(
    backbones: tuple[str, ...],
    ranks: tuple[int, ...],
    recipes: tuple[str, ...],
    seeds: tuple[int, ...],
    full_finetune: bool,
) -> list[dict[str, Any]]:
    """One plan per run: the anchors per seed, then per recipe each LoRA rank (and full FT) per
    seed, with its effect on the metrics, its validation loss and its trainable parameters."""
    plans: list[dict[str, Any]] = []
    for backbone in backbones:
        for seed in seeds:
            plans.append(
                dict(
                    backbone=backbone,
                    method="zero_shot",
                    params={},
                    recipe=None,
                    seed=seed,
                    effect=0.0,
                    val=None,
                    trainable=0,
                )
            )
        for recipe in recipes:
            bonus = 0.2 if recipe == "upsampled" else 0.0
            for rank in ranks:
                plans.append(
                    dict(
                        backbone=backbone,
                        method="lora",
                        params={"rank": rank, "alpha": 2 * rank, "scope": "all"},
                        recipe=recipe,
                        effect=LORA_EFFECT.get(rank, 0.5) + bonus,
                        val=LORA_VAL_LOSS.get(rank, 2.0),
                        trainable=LORA_TRAINABLE.get(rank, rank * 565_000),
                        seed=None,
                    )
                )
            if full_finetune:
                plans.append(
                    dict(
                        backbone=backbone,
                        method="full_ft",
                        params={"lr": 1e-5},
                        recipe=recipe,
                        effect=-0.4 + bonus,
                        val=1.7,
                        trainable=TOTAL_PARAMS,
                        seed=None,
                    )
                )
    expanded = []
    for plan in plans:
        for seed in [plan["seed"]] if plan["seed"] is not None else seeds:
            expanded.append({**plan, "seed": seed})
    return expanded


def _write_checkpoints(
    run_dir: Path, plan: dict[str, Any], n_checkpoints: int, rng: np.random.Generator
) -> None:
    """``checkpoints.json`` and ``curves.jsonl`` of a trained run: the validation loss falls, the
    dev score peaks mid-training."""
    steps = [500 * (i + 1) for i in range(n_checkpoints)]
    peak = n_checkpoints // 2
    ckpts = []
    for i, step in enumerate(steps):
        val_loss = plan["val"] + 0.6 * math.exp(-i / 1.5) + rng.normal(0, 0.005)
        dev = 3.0 + 0.1 * plan["effect"] - 0.08 * abs(i - peak) + rng.normal(0, 0.01)
        ckpts.append(
            {
                "step": step,
                "path": f"checkpoints/step{step}",
                "val_loss": val_loss,
                "dev_score": dev,
            }
        )
    best_val = min(ckpts, key=lambda c: c["val_loss"])["step"]
    best_dev = max(ckpts, key=lambda c: c["dev_score"])["step"]
    _write_json(
        run_dir / "checkpoints.json",
        {
            "checkpoints": ckpts,
            "dev_metric": "dnsmos",
            "selected": {
                "by_val_loss": best_val,
                "by_dev_metric": best_dev,
                "used": best_val,
            },
        },
    )
    _write_jsonl(
        run_dir / "curves.jsonl",
        [
            {
                "step": c["step"],
                "train_loss": c["val_loss"] - 0.1,
                "val_loss": c["val_loss"],
            }
            for c in ckpts
        ],
    )


def _system_label(plan: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(plan["params"].items()))
    label = f"{plan['backbone']} / {plan['method']}"
    if params:
        label += f"({params})"
    if plan["recipe"]:
        label += f" / {plan['recipe']}"
    return label


@dataclass
class ScoredRun:
    """One finished run whose per-utterance values are given exactly (for statistics tests).

    ``scores`` maps metric -> output -> item id -> value (NaN: the item failed); the first output
    of a metric is its headline. ``method="zero_shot"`` makes the run the backbone's anchor.
    """

    method: str
    seed: int
    scores: dict[str, dict[str, dict[str, float]]]
    params: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    higher_is_better: bool = True


def write_scored_runs(
    root: Path, runs: list[ScoredRun], suite: str = "exact", backbone: str = "tiny"
) -> FakeSuite:
    """Write ``root/suite/runs/<run_id>/`` (records, scores, ``DONE``) for ``runs`` as given."""
    out = FakeSuite(root=Path(root), suite=suite)
    for k, run in enumerate(runs):
        run_id = f"{run.method}-{k:03d}-s{run.seed}"
        run_dir = out.suite_dir / "runs" / run_id
        is_anchor = run.method == "zero_shot"
        trainable = 0 if is_anchor else 1_000
        config = {
            "suite": suite,
            "suite_version": "1",
            "backbone": backbone,
            "backbone_version": "1",
            "backbone_params": {},
            "method": run.method,
            "method_version": "1",
            "method_params": run.params,
            "data_recipe": None if is_anchor else run.recipe,
            "seed": run.seed,
            "is_anchor": is_anchor,
        }
        _write_json(run_dir / "config.json", config)
        for metric, outputs in run.scores.items():
            names = list(outputs)
            items = list(dict.fromkeys(i for values in outputs.values() for i in values))
            rows = []
            for item in items:
                vals = {name: outputs[name].get(item, math.nan) for name in names}
                failed = all(not math.isfinite(v) for v in vals.values())
                rows.append(
                    {
                        "item": item,
                        "speaker": "spk0",
                        "language": "en",
                        "values": {} if failed else vals,
                        "error": "audio is silent (peak < 1e-4)" if failed else None,
                    }
                )
            _write_jsonl(run_dir / "scores" / f"{metric}.jsonl", rows)
            record_outputs = {}
            for name in names:
                ok = np.array([v for v in outputs[name].values() if math.isfinite(v)])
                record_outputs[name] = {
                    "mean": float(ok.mean()),
                    "ci_low": float(ok.min()),
                    "ci_high": float(ok.max()),
                    "n": int(ok.size),
                    "higher_is_better": run.higher_is_better,
                    "range": [None, None],
                    "unit": "",
                }
            _write_json(
                run_dir / "records" / f"{metric}.json",
                {
                    **config,
                    "schema": SCHEMA_VERSION,
                    "run_id": run_id,
                    "metric": metric,
                    "metric_version": "1",
                    "metric_params": {},
                    "headline": names[0],
                    "outputs": record_outputs,
                    "n_items": len(items),
                    "n_errors": sum(1 for r in rows if r["error"]),
                    "errors": {},
                    "trainable_params": trainable,
                    "total_params": 1_000_000,
                    "adapter_bytes": 2 * trainable,
                    "status": "ok",
                    "provenance": {"git_sha": "0" * 40, "device": "cpu"},
                },
            )
            out.n_records += 1
        _write_json(run_dir / "run.json", {"status": "ok", "run_id": run_id})
        (run_dir / DONE_MARKER).write_text("", encoding="utf-8")
        out.run_ids.append(run_id)
        if is_anchor:
            out.anchor_run_ids.append(run_id)
    return out


# ------------------------------------------------------------------ audio, transcripts, manifest

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright birds sing softly near "
    "old river stones under pale morning light"
).split()


def _voice(rng: np.random.Generator, seconds: float, sr: int, f0: float) -> np.ndarray:
    """A speech-like test signal: a few harmonics of ``f0`` under a syllable-rate envelope."""
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    return (0.25 * tone * envelope).astype(np.float32)


def add_audio(
    fake: FakeSuite,
    seconds: float = 0.6,
    sr: int = 16_000,
    transcripts: bool = True,
    rng_seed: int = 1,
) -> Path:
    """Give every finished run of ``fake`` what the runner keeps for listening.

    Writes ``audio/<item>.wav`` and ``synthesis.jsonl`` per run (test tones shaped like speech; the
    noise level differs per system), adds ``extra.transcript`` to the ``cer`` score rows (every
    third item of a non-anchor run mishears one word), and writes an evaluation manifest with the
    sentences' text, real recordings and one speaker prompt per speaker. Returns the manifest path.
    """
    import soundfile as sf

    rng = np.random.default_rng(rng_seed)
    runs_dir = fake.suite_dir / "runs"
    data_dir = fake.root / f"{fake.suite}_corpus"
    items: dict[str, str] = {}  # item -> speaker
    for run_id in fake.run_ids:
        score_files = sorted((runs_dir / run_id / "scores").glob("*.jsonl"))
        for row in (json.loads(x) for x in score_files[0].read_text().splitlines() if x.strip()):
            items.setdefault(row["item"], row.get("speaker", "spk0"))
    texts = {
        item: " ".join(WORDS[(k * 3 + j) % len(WORDS)] for j in range(5 + k % 3)).capitalize() + "."
        for k, item in enumerate(sorted(items))
    }
    speakers = sorted(set(items.values()))
    f0 = {spk: 110.0 + 40.0 * k for k, spk in enumerate(speakers)}
    lines = []
    for spk in speakers:
        path = data_dir / "prompts" / f"{spk}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _voice(rng, seconds, sr, f0[spk]), sr)
        lines.append(
            {
                "id": f"{spk}_prompt",
                "audio": f"prompts/{spk}.wav",
                "text": "A prompt sentence.",
                "speaker": spk,
                "language": "en",
                "split": "train",
            }
        )
    for item in sorted(items):
        path = data_dir / "wavs" / f"{item}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _voice(rng, seconds, sr, f0[items[item]]), sr)
        lines.append(
            {
                "id": item,
                "audio": f"wavs/{item}.wav",
                "text": texts[item],
                "speaker": items[item],
                "language": "en",
                "split": "eval",
            }
        )
    manifest = data_dir / "manifest.jsonl"
    _write_jsonl(manifest, lines)
    for k, run_id in enumerate(fake.run_ids):
        run_dir = runs_dir / run_id
        is_anchor = run_id in fake.anchor_run_ids
        noise = 0.02 * (1 + k % 4)
        rows = []
        for item in sorted(items):
            audio = _voice(rng, seconds, sr, f0[items[item]])
            audio = audio + rng.normal(0, noise, audio.size).astype(np.float32)
            path = run_dir / "audio" / f"{item}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, audio, sr)
            rows.append(
                {
                    "item": item,
                    "speaker": items[item],
                    "language": "en",
                    "duration_s": seconds,
                    "synth_s": 0.1,
                    "rtf": 0.1 / seconds,
                    "error": None,
                }
            )
        _write_jsonl(run_dir / "synthesis.jsonl", rows)
        cer = run_dir / "scores" / "cer.jsonl"
        if transcripts and cer.is_file():
            out = []
            for i, row in enumerate(json.loads(x) for x in cer.read_text().splitlines() if x):
                words = texts[row["item"]].rstrip(".").split()
                if not is_anchor and i % 3 == 0:
                    words[1] = "wrong"
                row["extra"] = {
                    "transcript": " ".join(words) + ".",
                    "reference_normalized": texts[row["item"]].lower().rstrip("."),
                }
                out.append(row)
            _write_jsonl(cer, out)
    return manifest
