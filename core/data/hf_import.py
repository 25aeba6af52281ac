"""Import a Hugging Face dataset with audio/text columns as a ttsadapt manifest.

``source`` is a hub id (users with network; ``HF_HUB_OFFLINE=1`` makes a missing download fail
at once) or a local folder: one written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``,
or any folder ``datasets.load_dataset`` reads (parquet, csv/json + audio files, ``audiofolder``).
Audio is never decoded by ``datasets`` (its decoder needs torchcodec): the column is cast to
``Audio(decode=False)`` and the bytes or path are decoded with soundfile/audioread here, downmixed,
resampled to ``sample_rate`` and written as 16-bit WAV. A row that cannot be decoded or has no
text is skipped *with its reason* in the returned report (``skipped``), never silently.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio import load_audio, resample, to_mono_float
from ..errors import DataError
from ..records import atomic_write_json
from ..types import Clip
from .manifest import write_manifest


def _open_dataset(source: str, split: str, config: str | None):
    try:
        import datasets
    except ImportError:
        raise DataError(
            "importing a Hugging Face dataset needs `pip install 'datasets>=3'`"
        ) from None
    path = Path(source)
    try:
        if path.is_dir() and (
            (path / "dataset_info.json").is_file()
            or (path / "dataset_dict.json").is_file()
            or (path / "state.json").is_file()
        ):
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(source, config, split=None)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot load dataset {source!r}: {type(exc).__name__}: {exc}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"dataset {source!r} has no split {split!r}; splits: {', '.join(ds)}")
        ds = ds[split]
    return ds


def _decode(value: Any, base: Path | None) -> tuple[np.ndarray, int]:
    if isinstance(value, dict):
        if value.get("bytes"):
            audio, sr = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=False)
            return to_mono_float(audio), int(sr)
        if value.get("array") is not None:
            return to_mono_float(np.asarray(value["array"])), int(value["sampling_rate"])
        value = value.get("path")
    if isinstance(value, str) and value:
        p = Path(value)
        if not p.is_absolute() and base is not None:
            p = base / p
        return load_audio(p)
    raise ValueError(f"no audio bytes or path in the audio cell ({type(value).__name__})")


def import_hf_dataset(
    source: str,
    out_dir: Path,
    *,
    split: str = "train",
    config: str | None = None,
    audio_column: str = "audio",
    text_column: str = "text",
    speaker_column: str | None = None,
    language: str = "en",
    language_column: str | None = None,
    sample_rate: int = 16000,
    limit: int | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/manifest.jsonl`` + ``out_dir/wavs/`` from a dataset; return a report."""
    ds = _open_dataset(source, split, config)
    columns = list(ds.column_names)
    for col in (audio_column, text_column, speaker_column, language_column):
        if col is not None and col not in columns:
            raise DataError(
                f"dataset {source!r} has no column {col!r}; columns: {', '.join(columns)}"
            )
    try:
        from datasets import Audio

        if type(ds.features[audio_column]).__name__ == "Audio":
            ds = ds.cast_column(audio_column, Audio(decode=False))
    except ImportError:  # pragma: no cover - _open_dataset already needed datasets
        pass
    base = Path(source) if Path(source).is_dir() else None
    out_dir = Path(out_dir)
    clips: list[Clip] = []
    skipped: list[dict[str, Any]] = []
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(n):
        row = ds[i]
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            skipped.append({"row": i, "reason": f"empty or missing text in column {text_column!r}"})
            continue
        try:
            audio, sr = _decode(row[audio_column], base)
        except Exception as exc:  # noqa: BLE001 - a bad row is reported, the rest go on
            skipped.append({"row": i, "reason": f"cannot decode audio: {exc}"})
            continue
        if audio.size == 0:
            skipped.append({"row": i, "reason": "audio has no samples"})
            continue
        audio = resample(audio, sr, sample_rate)
        speaker = str(row[speaker_column]) if speaker_column else "spk0"
        lang = str(row[language_column]) if language_column else language
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", speaker)
        path = out_dir / "wavs" / safe / f"{i:07d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.clip(audio, -1, 1), sample_rate, subtype="PCM_16")
        clips.append(
            Clip(
                id=f"{safe}_{i:07d}",
                audio=path,
                text=text.strip(),
                speaker=speaker,
                language=lang,
                duration_s=audio.size / sample_rate,
                extra={"source_row": i},
            )
        )
    manifest = write_manifest(out_dir / "manifest.jsonl", clips)
    report = {
        "source": source,
        "split": split,
        "rows": n,
        "imported": len(clips),
        "skipped": skipped,
        "manifest": str(manifest),
    }
    atomic_write_json(out_dir / "import_report.json", report)
    return report
