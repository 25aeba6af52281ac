import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CODEC2 = Path("/usr/share/codec2/wav")


def need(path: Path, package: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} missing: install the Debian package {package}")
    return path


@pytest.fixture(scope="session")
def librivox():
    """[(id, audio, sr, transcript)] of the five pocketsphinx-testdata audiobook clips."""
    from ttsadapt.audio import load_audio

    d = need(LIBRIVOX, "pocketsphinx-testdata")
    out = []
    for line in (d / "transcription").read_text().splitlines():
        text = line.split("<s>")[1].split("</s>")[0].strip()
        fid = line.rsplit("(", 1)[1].strip().rstrip(")")
        audio, sr = load_audio(d / f"{fid}.wav")
        out.append((fid, audio, sr, text))
    return out


@pytest.fixture(scope="session")
def codec2():
    from ttsadapt.audio import load_audio

    d = need(CODEC2, "codec2-examples")
    return {p.stem: load_audio(p) for p in sorted(d.glob("*.wav"))}
