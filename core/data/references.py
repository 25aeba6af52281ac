"""Real recordings from Debian packages, imported as evaluation references.

* ``pocketsphinx-testdata``: five LibriVox audiobook clips (one speaker, *Sense and Sensibility*)
  and five "cards" clips, 16 kHz, with transcripts (BSD).
* ``codec2-examples``: several speakers, mostly 8 kHz, **no transcripts** (LGPL) — load their
  manifest with ``require_text=False``; they serve quality metrics (DNS-MOS, WADA-SNR), not CER.

Every imported clip has ``split="eval"`` and ``extra["reference"] = True``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from ..audio import load_audio
from ..errors import DataError
from ..types import Clip
from .manifest import write_manifest

POCKETSPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")
CODEC2_DIR = Path("/usr/share/codec2/wav")
SOURCES = ("pocketsphinx-testdata", "codec2-examples")
_TRANSCRIPT = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^)]+)\)\s*$")


def _transcripts(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _TRANSCRIPT.match(line)
        if m:
            out[m.group("id")] = m.group("text")
    return out


def _pocketsphinx(root: Path) -> list[tuple[Path, str, str]]:
    items = []
    for sub, speaker in (("librivox", "ps_librivox"), ("cards", "ps_cards")):
        folder = root / sub
        trans_file = next(iter(sorted(folder.glob("*transcription"))), None)
        if trans_file is None:
            continue
        for uid, text in sorted(_transcripts(trans_file).items()):
            wav = folder / f"{uid}.wav"
            if wav.is_file():
                items.append((wav, text, speaker))
    return items


def _codec2(root: Path) -> list[tuple[Path, str, str]]:
    skip = {"all.wav"}  # a concatenation of the others
    return [(w, "", f"c2_{w.stem}") for w in sorted(root.glob("*.wav")) if w.name not in skip]


def import_references(
    manifest_path: Path,
    sources: Sequence[str] = SOURCES,
    sample_rate: int = 16000,
    pocketsphinx_dir: Path = POCKETSPHINX_DIR,
    codec2_dir: Path = CODEC2_DIR,
) -> Path:
    """Copy the recordings of ``sources`` (resampled, mono WAV) beside ``manifest_path``.

    Raises :class:`DataError` naming the Debian package when a source is not installed.
    """
    manifest_path = Path(manifest_path)
    out_dir = manifest_path.parent / "references"
    clips: list[Clip] = []
    for source in sources:
        if source == "pocketsphinx-testdata":
            found = _pocketsphinx(pocketsphinx_dir)
        elif source == "codec2-examples":
            found = _codec2(codec2_dir)
        else:
            raise DataError(f"unknown reference source {source!r}; known: {', '.join(SOURCES)}")
        if not found:
            raise DataError(
                f"reference source {source!r} not found; install it with `apt-get install {source}`"
            )
        for wav, text, speaker in found:
            audio, orig_sr = load_audio(wav)
            from ..audio import resample

            audio = resample(audio, orig_sr, sample_rate)
            dest = out_dir / speaker / wav.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(dest), audio, sample_rate, subtype="PCM_16")
            clips.append(
                Clip(
                    id=f"{speaker}/{wav.stem}",
                    audio=dest,
                    text=text,
                    speaker=speaker,
                    language="en",
                    duration_s=audio.size / sample_rate,
                    split="eval",
                    extra={"reference": True, "source": source, "source_sample_rate": orig_sr},
                )
            )
    return write_manifest(manifest_path, clips)
