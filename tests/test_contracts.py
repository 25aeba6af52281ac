"""Contract tests, parametrised over every registered component (the built-ins and any installed
third-party plugin): the same checks `ttsadapt.testing` offers plugin authors."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ttsadapt import testing
from ttsadapt.registry import build_registry
from ttsadapt.types import Clip

REGISTRY = build_registry()
# offline parameters: tiny models; NeuTTS speaks through its offline mel-VQ stand-in codec fitted
# on Debian's pocketsphinx-testdata recordings (NeuCodec itself needs a hub)
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
OFFLINE_PARAMS = {
    "voxcpm2": {"model": "tiny", "max_len": 20},
    "neutts": {
        "model": "tiny",
        "codec": "mel_vq",
        "codec_fit": str(LIBRIVOX),
        "codebook_size": 256,
        "max_length": 200,
    },
}


def _all(kind):
    return [pytest.param(REGISTRY.get(kind, n), id=n) for n in REGISTRY.names(kind)]


@pytest.mark.parametrize("cls", _all("metric"))
def test_metric_contract(cls):
    testing.check_metric(cls)


@pytest.mark.parametrize("cls", _all("method"))
def test_method_contract(cls):
    testing.check_method(cls)


@pytest.mark.parametrize("cls", _all("backbone"))
def test_backbone_metadata(cls):
    testing.check_metadata(cls)


@pytest.mark.parametrize("cls", _all("backbone"))
def test_backbone_contract(cls):
    if cls.name == "neutts" and not LIBRIVOX.is_dir():
        pytest.skip("needs Debian's pocketsphinx-testdata to fit the offline codec")
    testing.check_backbone(cls, OFFLINE_PARAMS.get(cls.name, {}))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    sr = 16000
    out = []
    for spk in ("s1", "s2"):
        for i in range(3):
            audio = testing.speechlike_signal(seconds=0.4 + 0.6 * i, f0=120 + 40 * i, seed=i)
            path = root / f"{spk}_{i}.wav"
            sf.write(path, audio, sr)
            out.append(
                Clip(
                    id=f"{spk}_{i}",
                    audio=path,
                    text="the cat sat on the mat",
                    speaker=spk,
                    language="en",
                    duration_s=audio.size / sr,
                )
            )
    return out


@pytest.mark.parametrize("cls", _all("filter"))
def test_filter_contract(cls, clips):
    if cls.name == "asr_cer":
        pytest.skip("runs Whisper on every clip: covered by tests/data")
    testing.check_filter(cls, clips, context={"registry": REGISTRY, "token_count": len})


def test_contract_check_catches_a_broken_metric():
    from ttsadapt.components import Metric, MetricOutput
    from ttsadapt.types import ItemScore

    class RaisesOnBadItems(Metric):
        name = "raises_on_bad"
        outputs = (MetricOutput("x", True, (0.0, 1.0)),)

        def score(self, items):
            return [
                ItemScore(it.id, {"x": float(np.mean(it.audio) / np.mean(it.audio))})
                for it in items
            ]

    with pytest.raises(AssertionError, match="bad item 'empty' must get an error row"):
        testing.check_metric(RaisesOnBadItems)
