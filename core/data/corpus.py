"""The offline corpus builder: a multi-speaker corpus from offline speech engines, cached.

``build_corpus(spec)`` speaks the project's sentence sets (``ttsadapt/resources/sentences``) with
each speaker's engine and voice, applies the speaker's acoustic condition (gain spread, noise at an
SNR, reverberation, pitch and rate variation — :mod:`ttsadapt.data.conditions`), and writes
``manifest.jsonl`` + ``wavs/`` + ``corpus.json`` (spec, hash, build stats). Every clip has a split:
``n_eval`` sentences per language are held out and spoken by *every* speaker of that language
(``eval``); each speaker's ``train`` and ``validation`` sentences come from the rest, so no
evaluation sentence is ever trained on.

The corpus lives under ``<cache>/corpora/<name>-<hash>`` where ``<hash>`` covers the spec and the
builder version; the folder is built beside its final place and renamed in, so a second call — or
a concurrent one — finds it complete and returns at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..audio import resample
from ..errors import DataError
from ..records import atomic_write_json
from ..types import Clip
from .conditions import apply_condition
from .engines import synthesize
from .manifest import write_manifest

BUILDER_VERSION = "1"
MANIFEST_NAME = "manifest.jsonl"
REFERENCES_NAME = "references.jsonl"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpeakerSpec(_Model):
    """One synthetic speaker: an engine voice and an acoustic condition."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    engine: Literal["espeak-ng", "flite", "festival", "kokoro"] = "espeak-ng"
    voice: str = "en-us"
    language: str = "en"
    rate_wpm: float = Field(165.0, gt=50, lt=450)
    pitch: float = Field(50.0, ge=0, le=99)
    rate_jitter: float = Field(0.0, ge=0, le=0.5, description="std of the per-clip rate factor")
    pitch_jitter: float = Field(
        0.0, ge=0, le=40, description="std of the per-clip pitch, 0–99 scale"
    )
    level_db: float = Field(-24.0, le=-3, description="active speech level, dBFS")
    gain_spread_db: float = Field(0.0, ge=0, le=20, description="std of the per-clip gain, dB")
    snr_db: float | None = Field(
        None, description="additive noise SNR over active speech; None: clean"
    )
    noise: Literal["white", "pink", "brown"] = "white"
    rt60_s: float | None = Field(None, gt=0, le=2.0, description="reverberation time; None: dry")

    @model_validator(mode="after")
    def _engine_options(self) -> SpeakerSpec:
        if self.engine != "espeak-ng" and (self.pitch != 50.0 or self.pitch_jitter):
            raise ValueError(
                f"speaker {self.id!r}: pitch and pitch_jitter need engine 'espeak-ng'; "
                f"{self.engine} has no pitch control (leave pitch at 50 and pitch_jitter at 0)"
            )
        if self.engine == "kokoro":
            from .kokoro import VOICES

            if self.voice.partition("@")[0] not in VOICES:
                raise ValueError(
                    f"speaker {self.id!r}: kokoro voice must be NAME or NAME@ESPEAK_VOICE with "
                    f"NAME one of {', '.join(VOICES)}; got {self.voice!r}"
                )
        return self


def default_speakers() -> list[SpeakerSpec]:
    """Six English espeak-ng speakers: three low- and three high-variability by construction.

    Measured pooled frame-energy std (``ttsadapt data inspect --no-dnsmos`` on the quick suite's
    corpus, ``n_train=40, n_validation=5, n_eval=6``, all 51 clips per speaker; seed-study
    thresholds: < 10 dB degradation, >= 13 dB gains)::

        speaker           energy_std_db  risk
        en_us_m_steady         8.93      high
        en_gb_f_steady         9.23      high
        en_rp_m_noisy          6.46      high
        en_us_f_varied        14.95      low
        en_sc_m_varied        14.85      low
        en_029_f_varied       15.25      low

    The measure follows the noise floor more than the gain spread: a faint floor (SNR 30–35 dB)
    keeps pauses inside the 60 dB analysis range and *widens* the spread, a strong floor (<= 20 dB)
    compresses it — hence the steady speakers' 20 dB floors and the varied speakers' 35 dB ones.
    (The shipped reference model was pre-trained on the earlier conditions; see
    ``ttsadapt.plugins.backbones.voxcpm2.reference``.)
    """
    return [
        SpeakerSpec(id="en_us_m_steady", voice="en-us+m3", rate_wpm=160, pitch=45, snr_db=20),
        SpeakerSpec(
            id="en_gb_f_steady", voice="en-gb+f2", rate_wpm=170, pitch=55, snr_db=20, noise="pink"
        ),
        SpeakerSpec(
            id="en_rp_m_noisy", voice="en-gb-x-rp+m1", rate_wpm=165, snr_db=12, noise="pink"
        ),
        SpeakerSpec(
            id="en_us_f_varied",
            voice="en-us+f3",
            rate_wpm=165,
            pitch=60,
            rate_jitter=0.12,
            pitch_jitter=12,
            gain_spread_db=7.0,
            snr_db=35,
        ),
        SpeakerSpec(
            id="en_sc_m_varied",
            voice="en-gb-scotland+m4",
            rate_wpm=155,
            rate_jitter=0.1,
            pitch_jitter=10,
            gain_spread_db=6.0,
            rt60_s=0.35,
            snr_db=35,
        ),
        SpeakerSpec(
            id="en_029_f_varied",
            voice="en-029+f4",
            rate_wpm=170,
            pitch=58,
            rate_jitter=0.1,
            pitch_jitter=8,
            gain_spread_db=8.0,
            snr_db=35,
        ),
    ]


class CorpusSpec(_Model):
    """What ``ttsadapt data build`` makes (a suite's ``[corpus]`` table with ``builder="offline"``)."""

    builder: Literal["offline"] = "offline"
    name: str = Field("offline-default", pattern=r"^[A-Za-z0-9_.-]+$")
    sample_rate: int = Field(16000, ge=8000, le=48000)
    seed: int = 0
    n_train: int = Field(40, ge=1)
    n_validation: int = Field(5, ge=0)
    n_eval: int = Field(10, ge=1)
    sentences: dict[str, str] = Field(
        default_factory=dict,
        description="language -> sentence file (one a line) replacing the shipped set",
    )
    speakers: list[SpeakerSpec] = Field(default_factory=default_speakers, min_length=1)
    references: list[Literal["pocketsphinx-testdata", "codec2-examples"]] = Field(
        default_factory=list, description="real recordings imported as evaluation references"
    )

    @model_validator(mode="after")
    def _unique(self) -> CorpusSpec:
        ids = [s.id for s in self.speakers]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"speaker ids must be unique; repeated: {', '.join(dup)}")
        return self

    def spec_hash(self) -> str:
        payload = json.dumps(
            {"builder_version": BUILDER_VERSION, "spec": self.model_dump(mode="json")},
            sort_keys=True,
        )
        for lang, path in sorted(self.sentences.items()):  # custom sentence files: by content
            payload += f"|{lang}:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- sentences


def shipped_languages() -> list[str]:
    folder = resources.files("ttsadapt") / "resources" / "sentences"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))


def read_sentences(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def sentence_set(language: str, override: str | None = None) -> list[str]:
    """The sentences for ``language``: a file given in the spec, else the shipped set."""
    if override is not None:
        try:
            return read_sentences(Path(override).read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"cannot read sentence file {override}: {exc}") from None
    res = resources.files("ttsadapt") / "resources" / "sentences" / f"{language}.txt"
    if not res.is_file():
        raise DataError(
            f"no shipped sentence set for language {language!r} (shipped: "
            f"{', '.join(shipped_languages())}); give one in the spec's 'sentences' table"
        )
    return read_sentences(res.read_text(encoding="utf-8"))


def _rank(seed: int, *parts: object) -> float:
    h = hashlib.sha256("\x1f".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def plan_utterances(spec: CorpusSpec) -> list[dict[str, Any]]:
    """Every utterance to speak: speaker, sentence, split. Deterministic under ``spec.seed``."""
    plan: list[dict[str, Any]] = []
    eval_sets: dict[str, list[int]] = {}
    for spk in spec.speakers:
        lang = spk.language.split("-")[0]
        sentences = sentence_set(lang, spec.sentences.get(lang))
        need = spec.n_eval + spec.n_train + spec.n_validation
        if len(sentences) < need:
            raise DataError(
                f"speaker {spk.id!r}: the {lang!r} sentence set has {len(sentences)} sentences; "
                f"n_eval + n_train + n_validation = {need}"
            )
        if lang not in eval_sets:
            order = sorted(range(len(sentences)), key=lambda i: _rank(spec.seed, "eval", lang, i))
            eval_sets[lang] = sorted(order[: spec.n_eval])
        held = set(eval_sets[lang])
        pool = [i for i in range(len(sentences)) if i not in held]
        pool.sort(key=lambda i: _rank(spec.seed, "speaker", spk.id, i))
        splits = (
            [("train", i) for i in pool[: spec.n_train]]
            + [("validation", i) for i in pool[spec.n_train : spec.n_train + spec.n_validation]]
            + [("eval", i) for i in eval_sets[lang]]
        )
        for split, i in splits:
            plan.append(
                {
                    "speaker": spk,
                    "language": lang,
                    "sentence_index": i,
                    "text": sentences[i],
                    "split": split,
                    "id": f"{spk.id}_{split}_{i:04d}",
                }
            )
    return plan


# --------------------------------------------------------------------------- building


def default_cache_dir() -> Path:
    from ..paths import cache_root

    return cache_root()


def _render(item: dict[str, Any], spec: CorpusSpec, wav_dir: Path) -> Clip:
    spk: SpeakerSpec = item["speaker"]
    rng = np.random.default_rng([spec.seed, int(_rank(spec.seed, "cond", item["id"]) * 2**32)])
    rate = (
        spk.rate_wpm * float(np.clip(1 + rng.normal(0, spk.rate_jitter), 0.6, 1.6))
        if spk.rate_jitter
        else spk.rate_wpm
    )
    pitch = (
        float(np.clip(spk.pitch + rng.normal(0, spk.pitch_jitter), 0, 99))
        if spk.pitch_jitter
        else spk.pitch
    )
    audio, sr = synthesize(spk.engine, spk.voice, item["text"], rate, pitch)
    audio = resample(audio, sr, spec.sample_rate)
    audio, applied = apply_condition(
        audio,
        spec.sample_rate,
        rng,
        level_db=spk.level_db,
        gain_spread_db=spk.gain_spread_db,
        rt60_s=spk.rt60_s,
        snr_db=spk.snr_db,
        noise=spk.noise,
    )
    path = wav_dir / spk.id / f"{item['id']}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1, 1), spec.sample_rate, subtype="PCM_16")
    applied.update(rate_wpm=round(rate, 2), pitch=round(pitch, 2))
    return Clip(
        id=item["id"],
        audio=path,
        text=item["text"],
        speaker=spk.id,
        language=spk.language,
        duration_s=audio.size / spec.sample_rate,
        split=item["split"],
        extra={
            "engine": spk.engine,
            "voice": spk.voice,
            "sentence_index": item["sentence_index"],
            "condition": applied,
        },
    )


def build_corpus(
    spec: dict[str, Any] | CorpusSpec | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Build (or find in the cache) the corpus of ``spec``; return its manifest path.

    :param spec: a :class:`CorpusSpec` or its dict (a suite's ``[corpus]`` table); ``None``: default.
    :param cache_dir: default ``$TTSADAPT_CACHE`` or ``~/.cache/ttsadapt``.
    :param progress: print a progress line per speaker to stderr.
    """
    if spec is None:
        spec = CorpusSpec()
    elif isinstance(spec, dict):
        spec = CorpusSpec.model_validate(spec)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / "corpora" / f"{spec.name}-{spec.spec_hash()}"
    manifest = final / MANIFEST_NAME
    if (final / "DONE").is_file():
        return manifest
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        started = time.perf_counter()
        plan = plan_utterances(spec)
        wav_dir = tmp / "wavs"
        clips: list[Clip] = []
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for spk in spec.speakers:
                items = [p for p in plan if p["speaker"].id == spk.id]
                clips.extend(pool.map(lambda it: _render(it, spec, wav_dir), items))
                if progress:
                    print(f"[ttsadapt data build] {spk.id}: {len(items)} clips", file=sys.stderr)
        write_manifest(tmp / MANIFEST_NAME, clips)
        refs = None
        if spec.references:
            from .references import import_references

            import_references(tmp / REFERENCES_NAME, spec.references, spec.sample_rate)
            refs = REFERENCES_NAME
        atomic_write_json(
            tmp / "corpus.json",
            {
                "spec": spec.model_dump(mode="json"),
                "spec_hash": spec.spec_hash(),
                "builder_version": BUILDER_VERSION,
                "clips": len(clips),
                "hours": round(sum(c.duration_s or 0 for c in clips) / 3600, 6),
                "splits": {
                    s: sum(c.split == s for c in clips) for s in ("train", "validation", "eval")
                },
                "references": refs,
                "build_seconds": round(time.perf_counter() - started, 2),
            },
        )
        (tmp / "DONE").write_text("ok\n")
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first: keep theirs
            if not (final / "DONE").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def references_manifest(corpus_manifest: Path) -> Path | None:
    """The real-recording reference manifest built beside a corpus, if it has one."""
    p = Path(corpus_manifest).parent / REFERENCES_NAME
    return p if p.is_file() else None
