import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def speechlike(seconds: float, sr: int = 16000, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """Syllable-rate modulated harmonic tone with pauses: has real dynamics, no clipping."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    x = level * voiced * envelope + 1e-4 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.fixture(name="speechlike")
def speechlike_fixture():
    return speechlike


@pytest.fixture(autouse=True)
def _own_cache_root(tmp_path_factory, monkeypatch):
    """Each test keeps its audio check cache (and anything else under the cache root) apart."""
    monkeypatch.setenv("TTSADAPT_CACHE", str(tmp_path_factory.mktemp("cache-root")))


@pytest.fixture
def make_wav(tmp_path: Path):
    def _make(rel: str, seconds: float = 1.5, sr: int = 16000, **kw) -> Path:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, speechlike(seconds, sr, **kw), sr, subtype="PCM_16")
        return p

    return _make


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A small offline corpus: one steady and one varied espeak-ng speaker."""
    from ttsadapt.data.corpus import CorpusSpec, SpeakerSpec, build_corpus

    spec = CorpusSpec(
        name="test-small",
        n_train=8,
        n_validation=2,
        n_eval=3,
        speakers=[
            SpeakerSpec(id="steady", voice="en-us+m3", snr_db=15, noise="pink"),
            SpeakerSpec(
                id="varied", voice="en-us+f3", gain_spread_db=8, pitch_jitter=10, rate_jitter=0.1
            ),
        ],
    )
    return build_corpus(spec, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="session")
def registry():
    from ttsadapt.registry import build_registry

    return build_registry(autoload=False)
