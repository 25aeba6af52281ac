"""DNS-MOS (Reddy et al., ICASSP 2022): non-intrusive MOS of speech quality, four numbers per clip.

Runs the DNSMOS ONNX models that the ``speechmos`` wheel ships (``sig_bak_ovr.onnx`` for
SIG/BAK/OVRL, ``model_v8.onnx`` for P.808) with onnxruntime, following Microsoft's recipe:
audio at 16 kHz; a clip shorter than 9.01 s is repeated (doubled until long enough, as the reference
script does); 9.01 s windows every 1 s; SIG/BAK/OVRL raw outputs go through the published
polynomial calibration; P.808 takes a 120-band log-mel of each window; the clip's score is the mean
over windows. Windows overlap by 8 s; the work on the shared frames is done once per clip
(``_dnsmos_shared``, identical numbers), and single-window clips are batched across clips.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.errors import ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import prepare_audio
from ttsadapt.types import EvalItem, ItemScore

from . import _dnsmos_shared, _provenance
from ._common import ort_options, torch_threads

SAMPLE_RATE = 16000
WINDOW_S = 9.01
WINDOW = int(WINDOW_S * SAMPLE_RATE)  # 144160 samples
HOP = SAMPLE_RATE  # 1 s

# Microsoft's third-order calibration of the raw SIG/BAK/OVRL outputs (DNSMOS P.835 paper/code):
# coefficients, highest power first. "personalized" is the variant trained to penalise
# interfering talkers.
_CALIBRATION = {
    "standard": {
        "sig": (-0.08397278, 1.22083953, 0.0052439),
        "bak": (-0.13166888, 1.60915514, -0.39604546),
        "ovrl": (-0.06766283, 1.11546468, 0.04602535),
    },
    "personalized": {
        "sig": (-0.01019296, 0.02751166, 1.19576786, -0.24348726),
        "bak": (-0.04976499, 0.44276479, -0.1644611, 0.96883132),
        "ovrl": (-0.00533021, 0.005101, 1.18058466, -0.11236046),
    },
}


def _model_path(variant: str) -> Path:
    """The P.835 model file of ``variant`` inside the speechmos package."""
    folder = "pdnsmos_models" if variant == "personalized" else "dnsmos_models"
    return Path(str(resources.files("speechmos") / folder / "sig_bak_ovr.onnx"))


def _p808_path() -> Path:
    return Path(str(resources.files("speechmos") / "dnsmos_models" / "model_v8.onnx"))


@functools.lru_cache(maxsize=2)
def _sessions(variant: str):
    """Load the two ONNX sessions once per process (shared by every DNSMOS instance)."""
    import onnxruntime as ort

    opts = ort_options()
    p808_path = _p808_path()
    main = ort.InferenceSession(str(_model_path(variant)), opts, providers=["CPUExecutionProvider"])
    p808 = ort.InferenceSession(str(p808_path), opts, providers=["CPUExecutionProvider"])
    return main, p808


def tile_to_window(audio: np.ndarray) -> np.ndarray:
    """Repeat a short clip by doubling it until it covers one 9.01 s window (Microsoft's rule)."""
    while audio.size < WINDOW:
        audio = np.concatenate([audio, audio])
    return audio


def windows(audio: np.ndarray) -> np.ndarray:
    """The 9.01 s windows at a 1 s hop, shape (n_windows, 144160); the tail shorter than a window
    is dropped, as in the reference recipe."""
    audio = tile_to_window(audio)
    # The reference counts whole seconds first: int(floor(seconds) - 9.01) + 1 windows.
    n = int(np.floor(audio.size / SAMPLE_RATE) - WINDOW_S) + 1
    starts = [i * HOP for i in range(n) if i * HOP + WINDOW <= audio.size]
    return np.stack([audio[s : s + WINDOW] for s in starts]).astype(np.float32)


_N_FFT = 321
_HOP = 160


@functools.lru_cache(maxsize=1)
def _mel_basis() -> tuple[np.ndarray, np.ndarray]:
    """Periodic Hann window and the 120-band Slaney mel filterbank of the P.808 front end."""
    import librosa
    import scipy.signal

    window = scipy.signal.get_window("hann", _N_FFT, fftbins=True)
    return window, librosa.filters.mel(sr=SAMPLE_RATE, n_fft=_N_FFT, n_mels=120)


def _mel_db(frames: np.ndarray) -> np.ndarray:
    """Mel power in dB of (…, 321) float64 frames: Hann window, rFFT, 120-band Slaney mel."""
    hann, basis = _mel_basis()
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2
    return 10.0 * np.log10(np.maximum(power @ basis.T, 1e-10))


def _frames(x: np.ndarray) -> np.ndarray:
    """Read-only view of the 321-sample frames of ``x`` at a 10 ms hop."""
    n_frames = 1 + (x.size - _N_FFT) // _HOP
    return np.lib.stride_tricks.as_strided(
        x, (n_frames, _N_FFT), (x.strides[0] * _HOP, x.strides[0]), writeable=False
    )


def _p808_scale(db: np.ndarray) -> np.ndarray:
    db = db - db.max()
    db = np.maximum(db, -80.0)
    return ((db + 40.0) / 40.0).astype(np.float32)


def p808_features(window: np.ndarray) -> np.ndarray:
    """The P.808 model's input for one window, shape (900, 120): the power mel spectrogram of the
    window without its last 10 ms (321-point FFT, 10 ms hop, frames centred with zero padding), in
    dB relative to its maximum, floored 80 dB below it, mapped by (dB + 40) / 40.

    The same numbers as ``librosa.feature.melspectrogram`` + ``power_to_db(ref=np.max)`` (to
    ~1e-6), about 15x faster: the filterbank is built once and the frames go through one rFFT.
    """
    x = np.pad(window[:-_HOP].astype(np.float64), _N_FFT // 2)
    return _p808_scale(_mel_db(_frames(x)))


def p808_features_clip(audio: np.ndarray, n_windows: int) -> np.ndarray:
    """:func:`p808_features` of the first ``n_windows`` windows of ``audio`` (tiled, 1 s hop),
    shape (n, 900, 120), computing each 10 ms frame once instead of once per window.

    Frame j of window k is centred on sample 16000 k + 160 j of the clip, so frames 1..898 of
    every window are frames of the clip; only a window's first and last frame reach into its own
    zero padding and are computed from the window. Identical to calling :func:`p808_features`
    on each window.
    """
    frames_per_window = (WINDOW - _HOP) // _HOP  # 900
    hop_frames = HOP // _HOP  # 100
    last = (n_windows - 1) * HOP + WINDOW - _HOP  # end of the last window's analysed samples
    x = np.pad(audio[:last].astype(np.float64), _N_FFT // 2)
    clip_db = _mel_db(_frames(x))
    out = np.empty((n_windows, frames_per_window, clip_db.shape[1]), np.float32)
    edge_frames = []
    for k in range(n_windows):
        w = np.pad(audio[k * HOP : k * HOP + WINDOW - _HOP].astype(np.float64), _N_FFT // 2)
        window_frames = _frames(w)
        edge_frames += [window_frames[0], window_frames[-1]]
    edges = _mel_db(np.stack(edge_frames))
    for k in range(n_windows):
        db = clip_db[k * hop_frames : k * hop_frames + frames_per_window].copy()
        db[0], db[-1] = edges[2 * k], edges[2 * k + 1]
        out[k] = _p808_scale(db)
    return out


class DNSMOS(Metric):
    name = "dnsmos"
    version = "1"
    description = (
        "DNS-MOS P.835 (SIG speech quality, BAK background, OVRL overall) and P.808 MOS, "
        "1-5, non-intrusive, Microsoft DNSMOS ONNX models from speechmos."
    )
    outputs = (
        MetricOutput("ovrl", True, (1.0, 5.0), "MOS", "P.835 overall quality"),
        MetricOutput("sig", True, (1.0, 5.0), "MOS", "P.835 speech signal quality"),
        MetricOutput("bak", True, (1.0, 5.0), "MOS", "P.835 background-noise quality"),
        MetricOutput("p808", True, (1.0, 5.0), "MOS", "P.808 overall MOS"),
    )
    sample_rate = SAMPLE_RATE

    class Params(Params):
        variant: Literal["standard", "personalized"] = "standard"
        batch_windows: int = 16  # windows per ONNX call

    # Execution detail, not a parameter (the numbers are the same either way, so it stays out of
    # the cache key): compute the 8 s shared by consecutive windows once (needs ``onnx``; see
    # ``_dnsmos_shared``). False runs every window through the whole model, as the reference does.
    share_overlap: bool = True

    def model_provenance(self) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            main = _model_path(self.params.variant)
            return _provenance.provenance(
                _provenance.package_versions("speechmos", "onnxruntime"),
                {
                    f"speechmos/{main.parent.name}/{main.name}": _provenance.file_sha256(main),
                    "speechmos/dnsmos_models/model_v8.onnx": _provenance.file_sha256(_p808_path()),
                },
            )

        return _provenance.cached(self, compute)

    def setup(self) -> None:
        self.model_provenance()  # hashes the model files first: a replaced file never scores
        self._main, self._p808 = _sessions(self.params.variant)
        self._shared = None
        if self.share_overlap and _dnsmos_shared.available():
            try:
                self._shared = _dnsmos_shared.SharedP835(
                    _model_path(self.params.variant), torch_threads(), self.params.batch_windows
                )
            except ValueError:  # a model graph the splitter does not know: whole-model path
                self._shared = None

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        if not hasattr(self, "_main"):
            self.setup()
        results: dict[int, ItemScore] = {}
        per_item: list[tuple[int, np.ndarray, np.ndarray]] = []  # (index, tiled audio, windows)
        for i, item in enumerate(items):
            try:
                wav = prepare_audio(item.audio, item.sample_rate, SAMPLE_RATE)
            except ItemError as exc:
                results[i] = ItemScore(id=item.id, error=str(exc))
                continue
            # Resampling can overshoot full scale by a hair; the models expect [-1, 1].
            tiled = tile_to_window(np.clip(wav, -1.0, 1.0))
            per_item.append((i, tiled, windows(tiled)))
        if per_item:
            raw, p808 = self._raw_scores(per_item)
            cal = _CALIBRATION[self.params.variant]
            for (i, _, w), r, p in zip(per_item, raw, p808):
                sig, bak, ovrl = r[:, 0], r[:, 1], r[:, 2]
                values = {
                    "ovrl": float(np.mean(np.polyval(cal["ovrl"], ovrl))),
                    "sig": float(np.mean(np.polyval(cal["sig"], sig))),
                    "bak": float(np.mean(np.polyval(cal["bak"], bak))),
                    "p808": float(np.mean(p)),
                }
                results[i] = ItemScore(id=items[i].id, values=values, extra={"windows": len(w)})
        return [results[i] for i in range(len(items))]

    def _raw_scores(
        self, per_item: list[tuple[int, np.ndarray, np.ndarray]]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per clip: raw P.835 outputs (n_windows, 3) and P.808 MOS (n_windows,), float64.

        Single-window clips (and all clips without overlap sharing) go through the whole P.835
        model in batches of ``batch_windows`` across clips; multi-window clips through the shared
        path. P.808 features are computed per clip with shared frames, the model runs batched.
        """
        step = max(1, self.params.batch_windows)
        raw: list[np.ndarray | None] = [None] * len(per_item)
        plain = [j for j, (_, _, w) in enumerate(per_item) if self._shared is None or len(w) == 1]
        for j, (_, _, w) in enumerate(per_item):
            if self._shared is not None and len(w) > 1:
                raw[j] = self._shared.clip(w)
        if plain:
            batch = np.concatenate([per_item[j][2] for j in plain])
            out = np.concatenate(
                [
                    self._main.run(None, {"input_1": batch[s : s + step]})[0]
                    for s in range(0, len(batch), step)
                ]
            )
            offset = 0
            for j in plain:
                n = len(per_item[j][2])
                raw[j] = out[offset : offset + n]
                offset += n
        feats = np.concatenate([p808_features_clip(t, len(w)) for _, t, w in per_item])
        mos = np.concatenate(
            [
                self._p808.run(None, {"input_1": feats[s : s + step]})[0][:, 0]
                for s in range(0, len(feats), step)
            ]
        ).astype(np.float64)
        bounds = np.cumsum([0] + [len(w) for _, _, w in per_item])
        return (
            [np.asarray(r, dtype=np.float64) for r in raw],
            [mos[a:b] for a, b in itertools.pairwise(bounds)],
        )


@hookimpl
def ttsadapt_register_metrics():
    return [DNSMOS]
