"""The reading corpus: thousands of distinct sentences spoken by many offline voices, for
pre-training the embedded reference models to *read* (not just to babble).

Text comes from Debian's ``fortunes-min`` and ``fortunes`` packages (BSD fortune data files under
``/usr/share/games/fortunes``; the offensive sets ship in a separate package, ``fortunes-off``, which
is never read). Each fortune is split into sentences and filtered: 3–14 words, at most 90
characters, letters and ordinary punctuation only (no digits, no symbols, no runs of capitals), no
sentence of the project's own sentence sets (those are the quick suite's training and evaluation
sentences, never to be seen in pre-training). A word list (single words, for the curriculum's first
stage) is drawn from the same sentences.

Every line is spoken by one of ``VOICES`` (espeak-ng variants; the quick suite's target voices
``en-us+m3`` and ``en-us+f3`` are left out), chosen by a hash of the text, so the corpus is a fixed
function of its spec. The result is a normal ttsadapt manifest (``split`` = train / validation) in
the cache (``<cache>/corpora/reading-<hash>``), built once and reused; nothing here is committed as
audio::

    python -m ttsadapt.data.reading --sentences 6000 --words 1500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np

from ..audio import resample, write_audio
from ..errors import DataError
from ..paths import cache_root
from ..records import atomic_folder, atomic_write_json
from ..types import Clip
from .engines import synthesize
from .manifest import write_manifest

READING_VERSION = "1"
FORTUNE_DIR = Path("/usr/share/games/fortunes")
# Sets read (fortunes-min: "fortunes"; fortunes: the rest). Left out: art/ascii-art (pictures),
# definitions/songs-poems (formatting), and every set of the separate offensive package.
FORTUNE_SETS = (
    "fortunes",
    "computers",
    "cookie",
    "education",
    "food",
    "goedel",
    "humorists",
    "kids",
    "law",
    "literature",
    "love",
    "magic",
    "medicine",
    "miscellaneous",
    "news",
    "people",
    "pets",
    "platitudes",
    "politics",
    "science",
    "sports",
    "wisdom",
    "work",
)
# espeak-ng English voices Whisper reads well; en-us+m3 / en-us+f3 are the quick suite's targets.
VOICES = (
    "en-us+m1",
    "en-us+m2",
    "en-us+m4",
    "en-us+m5",
    "en-us+m7",
    "en-us+f1",
    "en-us+f2",
    "en-us+f4",
)
TARGET_VOICES = ("en-us+m3", "en-us+f3")
SAMPLE_RATE = 16000
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,.'!?;:-]*$")
_CAPS_RUN = re.compile(r"[A-Z]{2,}")


def _project_sentences() -> set[str]:
    """Every sentence of the project's own sentence sets (normalised), to keep them out."""
    out: set[str] = set()
    folder = resources.files("ttsadapt") / "resources" / "sentences"
    for entry in folder.iterdir():
        if entry.name.endswith(".txt"):
            for line in entry.read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.startswith("#"):
                    out.add(_norm(line))
    return out


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", " ", text.lower()).split())


def _fortunes(folder: Path) -> Iterator[str]:
    for name in FORTUNE_SETS:
        path = folder / name
        if not path.is_file():
            continue
        raw = path.read_text(encoding="latin-1", errors="replace")
        for block in raw.split("\n%\n"):
            # attributions ("-- Mark Twain") and indented verse are not prose
            lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("--")]
            yield " ".join(" ".join(lines).split())


def sentences(
    folder: Path = FORTUNE_DIR,
    *,
    min_words: int = 3,
    max_words: int = 14,
    max_chars: int = 90,
) -> list[str]:
    """The cleaned, deduplicated sentences, in a fixed order (by a hash of the text)."""
    if not folder.is_dir():
        raise DataError(
            f"{folder} not found: the reading corpus needs Debian's fortune data "
            "(apt-get install fortunes-min fortunes; ./run.sh installs them)"
        )
    held_out = _project_sentences()
    seen: set[str] = set()
    out: list[str] = []
    for block in _fortunes(folder):
        for sent in _SENTENCE_END.split(block):
            sent = sent.strip().strip('"').strip()
            words = sent.split()
            if not (min_words <= len(words) <= max_words) or len(sent) > max_chars:
                continue
            if not _ALLOWED.match(sent) or _CAPS_RUN.search(sent) or sent[-1] not in ".!?":
                continue
            key = _norm(sent)
            if key in seen or key in held_out:
                continue
            seen.add(key)
            out.append(sent)
    return sorted(out, key=lambda s: hashlib.sha1(s.encode()).hexdigest())


def words(sents: list[str], n: int) -> list[str]:
    """``n`` distinct words (3+ letters) from ``sents``, in a fixed order."""
    vocab = sorted({w.strip(",.!?;:'-").lower() for s in sents for w in s.split()})
    vocab = [w for w in vocab if len(w) >= 3 and w.isalpha()]
    vocab.sort(key=lambda w: hashlib.sha1(w.encode()).hexdigest())
    return [w.capitalize() + "." for w in vocab[:n]]


def voice_for(text: str, voices: tuple[str, ...] = VOICES) -> str:
    return voices[int(hashlib.sha1(text.encode()).hexdigest(), 16) % len(voices)]


def spec_hash(spec: dict) -> str:
    payload = json.dumps({**spec, "version": READING_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def build_reading_corpus(
    n_sentences: int = 6000,
    n_words: int = 1500,
    n_validation: int = 120,
    rate_wpm: float = 165.0,
    voices: tuple[str, ...] = VOICES,
    root: Path | None = None,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Build (or find) the corpus; returns its ``manifest.jsonl``."""
    spec = {
        "n_sentences": n_sentences,
        "n_words": n_words,
        "n_validation": n_validation,
        "rate_wpm": rate_wpm,
        "voices": list(voices),
    }
    folder = (root or cache_root() / "corpora") / f"reading-{spec_hash(spec)}"
    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    all_sents = sentences()
    if len(all_sents) < n_sentences + n_validation:
        raise DataError(
            f"only {len(all_sents)} usable sentences in {FORTUNE_DIR}; asked for "
            f"{n_sentences} + {n_validation} validation"
        )
    val = all_sents[:n_validation]
    train = all_sents[n_validation : n_validation + n_sentences]
    items = [(t, "validation") for t in val] + [(t, "train") for t in train]
    items += [(w, "train") for w in words(train, n_words)]
    t0 = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(folder) as tmp:
        (tmp / "wavs").mkdir()

        def speak(k: int) -> Clip:
            text, split = items[k]
            voice = voice_for(text, voices)
            audio, sr = synthesize("espeak-ng", voice, text, rate_wpm=rate_wpm)
            audio = resample(audio, sr, SAMPLE_RATE).astype(np.float32)
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            if peak > 0:
                audio = audio * (0.5 / peak)
            path = tmp / "wavs" / f"{k:06d}.wav"
            write_audio(path, audio, SAMPLE_RATE)
            return Clip(
                id=f"read{k:06d}",
                audio=path,
                text=text,
                speaker=voice.replace("+", "_").replace("-", "_"),
                language="en",
                duration_s=len(audio) / SAMPLE_RATE,
                split=split,
            )

        from tqdm.auto import tqdm

        with ThreadPoolExecutor(max_workers=workers) as pool:
            clips = list(
                tqdm(
                    pool.map(speak, range(len(items))),
                    total=len(items),
                    desc="reading corpus",
                    disable=not progress,
                )
            )
        # paths must be relative to the final folder, not the temporary one
        write_manifest(tmp / "manifest.jsonl", clips)
        atomic_write_json(
            tmp / "corpus.json",
            {
                "spec": spec,
                "version": READING_VERSION,
                "clips": len(clips),
                "hours": round(sum(c.duration_s or 0 for c in clips) / 3600, 3),
                "build_seconds": round(time.perf_counter() - t0, 1),
                "sources": {
                    "text": "Debian fortunes-min + fortunes (BSD fortune data files)",
                    "speech": "espeak-ng (GPL-3.0 program; its output is not covered)",
                },
            },
        )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ttsadapt.data.reading",
        description="Build the reading corpus (fortunes sentences × espeak-ng voices), cached.",
    )
    parser.add_argument("--sentences", type=int, default=6000)
    parser.add_argument("--words", type=int, default=1500)
    parser.add_argument("--validation", type=int, default=120)
    parser.add_argument("--count-only", action="store_true", help="print usable sentences, exit")
    args = parser.parse_args(argv)
    if args.count_only:
        print(len(sentences()))
        return 0
    print(build_reading_corpus(args.sentences, args.words, args.validation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
