"""``mel_vq``: an offline stand-in codec for NeuTTS — NOT NeuCodec.

NeuCodec's weights come from a model hub, so without network access the tiny NeuTTS could not
turn speech codes into audio. This codec is a plain, honest substitute that runs anywhere:

- **analysis**: 80-bin log-mel frames of 16 kHz audio (1024-point FFT, 20 ms hop = 50 frames a
  second, NeuCodec's code rate), natural log floored at 1e-5;
- **codebook**: k-means (scikit-learn, fixed seed, deterministic) over the log-mel frames of the
  training clips (or of a given manifest / folder of recordings), ``n_codes`` centroids;
- **encode**: each frame's nearest centroid index;
- **decode**: centroid log-mels, smoothed by a 3-frame moving average -> mel power -> linear
  spectrogram (non-negative least squares, librosa) -> Griffin-Lim phase (fixed seed) -> 16 kHz
  waveform.

It is a vector-quantised mel vocoder: intelligible but buzzy, with no speaker detail beyond the
spectral envelope the codebook holds. Numbers measured with it say nothing about NeuCodec's
quality. A fitted codebook is saved as ``mel_vq_codebook.npz`` next to adapters and models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ttsadapt.errors import ConfigError

CODEBOOK_FILE = "mel_vq_codebook.npz"
SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 320  # 20 ms: 50 codes a second
N_MELS = 80
LOG_FLOOR = 1e-5
SMOOTH = 3  # frames of the moving average over decoded log-mels (halves Whisper's CER here)
FORMAT = "ttsadapt-mel-vq-1"


@dataclass
class MelVQCodec:
    """A fitted k-means codebook over log-mel frames plus the fixed analysis/synthesis settings."""

    centroids: np.ndarray  # (n_codes, N_MELS) float32, natural-log mel power
    meta: dict[str, Any] = field(default_factory=dict)
    griffin_lim_iters: int = 32

    sample_rate = SAMPLE_RATE
    codes_per_second = SAMPLE_RATE // HOP

    @property
    def n_codes(self) -> int:
        return int(self.centroids.shape[0])

    # ------------------------------------------------------------------ analysis

    @staticmethod
    def log_mel(audio_16k: np.ndarray) -> np.ndarray:
        """(frames, 80) natural-log mel power of mono 16 kHz audio."""
        import librosa

        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return np.zeros((0, N_MELS), dtype=np.float32)
        mel = librosa.feature.melspectrogram(
            y=audio,
            sr=SAMPLE_RATE,
            n_fft=N_FFT,
            hop_length=HOP,
            n_mels=N_MELS,
            fmin=0.0,
            fmax=SAMPLE_RATE / 2,
            power=2.0,
        )
        return np.log(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls, audios: Iterable[np.ndarray], n_codes: int, seed: int = 0, source: str = ""
    ) -> MelVQCodec:
        """Fit ``n_codes`` centroids on the log-mel frames of mono 16 kHz ``audios``."""
        from sklearn.cluster import KMeans

        frames = [cls.log_mel(a) for a in audios]
        data = np.concatenate([f for f in frames if len(f)] or [np.zeros((0, N_MELS))])
        distinct = len(np.unique(data.round(4), axis=0)) if len(data) else 0
        if distinct < n_codes:
            raise ConfigError(
                f"mel_vq: {len(data)} log-mel frames ({distinct} distinct) from "
                f"{len(frames)} recording(s){' in ' + source if source else ''} are too few for "
                f"{n_codes} codes; give more audio (about {n_codes * 4 // 50 + 1} s or more) or "
                "lower mel_vq_codes"
            )
        kmeans = KMeans(n_clusters=n_codes, n_init=1, max_iter=100, random_state=seed)
        kmeans.fit(data.astype(np.float64))
        centroids = kmeans.cluster_centers_.astype(np.float32)
        order = np.argsort(centroids.mean(axis=1), kind="stable")  # code 0 = quietest frame
        meta = {
            "format": FORMAT,
            "sample_rate": SAMPLE_RATE,
            "n_fft": N_FFT,
            "hop_length": HOP,
            "n_mels": N_MELS,
            "seed": seed,
            "n_frames": len(data),
            "n_recordings": len(frames),
            "source": source,
            "note": "offline stand-in codec (k-means log-mel + Griffin-Lim), not NeuCodec",
        }
        return cls(centroids=centroids[order], meta=meta)

    # ------------------------------------------------------------------ codes

    def encode(self, audio_16k: np.ndarray) -> list[int]:
        """The nearest centroid of every 20 ms frame."""
        frames = self.log_mel(audio_16k)
        if not len(frames):
            return []
        c = self.centroids
        dist = (frames**2).sum(1, keepdims=True) - 2.0 * frames @ c.T + (c**2).sum(1)[None, :]
        return [int(i) for i in dist.argmin(axis=1)]

    def decode(self, codes: list[int]) -> np.ndarray:
        """16 kHz float32 audio of ``codes`` (indices into the codebook)."""
        import librosa

        idx = np.asarray(codes, dtype=np.int64)
        if idx.size == 0:
            return np.zeros(0, dtype=np.float32)
        if idx.min() < 0 or idx.max() >= self.n_codes:
            raise ValueError(f"mel_vq codes must lie in 0..{self.n_codes - 1}")
        from scipy.ndimage import uniform_filter1d

        log_mel = self.centroids[idx].astype(np.float64)
        if len(idx) >= SMOOTH:  # soften the frame-to-frame jumps between centroids
            log_mel = uniform_filter1d(log_mel, SMOOTH, axis=0, mode="nearest")
        mel = np.exp(log_mel.T)  # (80, frames) power
        spec = librosa.feature.inverse.mel_to_stft(
            mel, sr=SAMPLE_RATE, n_fft=N_FFT, power=2.0, fmin=0.0, fmax=SAMPLE_RATE / 2
        )
        audio = librosa.griffinlim(
            spec,
            n_iter=self.griffin_lim_iters,
            hop_length=HOP,
            n_fft=N_FFT,
            random_state=0,
        )
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0.99:
            audio = audio * (0.99 / peak)
        return np.nan_to_num(audio).astype(np.float32)

    # ------------------------------------------------------------------ files

    def save(self, folder: Path) -> Path:
        """Write ``mel_vq_codebook.npz`` into ``folder``; returns its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CODEBOOK_FILE
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, centroids=self.centroids, meta=np.array(json.dumps(self.meta)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> MelVQCodec:
        """Read a codebook from ``mel_vq_codebook.npz`` or a folder holding one."""
        path = Path(path)
        if path.is_dir():
            path = path / CODEBOOK_FILE
        if not path.is_file():
            raise ConfigError(
                f"mel_vq codebook not found: {path} (expected a {CODEBOOK_FILE} written when the "
                "codec was fitted, or a folder holding one)"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                centroids = np.asarray(data["centroids"], dtype=np.float32)
                meta = json.loads(str(data["meta"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"mel_vq codebook {path} is unreadable: {exc}") from exc
        if meta.get("format") != FORMAT or centroids.ndim != 2 or centroids.shape[1] != N_MELS:
            raise ConfigError(
                f"mel_vq codebook {path}: expected format {FORMAT} with (n_codes, {N_MELS}) "
                f"centroids, got format {meta.get('format')!r} and shape {centroids.shape}"
            )
        return cls(centroids=centroids, meta=meta)


def audio_sources(spec: str) -> list[Path]:
    """Recordings named by ``spec``: a manifest (``.jsonl``), a folder (its ``.wav``/``.flac``
    files, sorted) or one audio file."""
    path = Path(spec)
    if not path.exists():
        raise ConfigError(f"codec_fit: {path} does not exist (a manifest, folder or audio file)")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
        if not files:
            raise ConfigError(f"codec_fit: folder {path} holds no .wav or .flac files")
        return files
    if path.suffix == ".jsonl":
        from ttsadapt.data.manifest import load_manifest

        clips = load_manifest(path, check_audio="none", require_text=False).clips
        train = [c for c in clips if c.split == "train"] or clips
        if not train:
            raise ConfigError(f"codec_fit: manifest {path} has no usable clips")
        return [Path(c.audio) for c in train]
    return [path]
