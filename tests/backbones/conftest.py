"""Fixtures for the backbone tests: offline hub, real speech clips from pocketsphinx-testdata."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture(scope="session")
def speech_wavs(tmp_path_factory) -> list[Path]:
    """Three real audiobook clips cut to 1.6 s (keeps CPU training steps short)."""
    from ttsadapt.audio import load_audio, write_audio

    wavs = sorted(LIBRIVOX.glob("*.wav"))[:3]
    if not wavs:
        pytest.skip("pocketsphinx-testdata (Debian) is not installed")
    out = tmp_path_factory.mktemp("speech")
    cut = []
    for wav in wavs:
        audio, sr = load_audio(wav, target_sr=16000)
        path = out / wav.name
        write_audio(path, audio[sr // 2 : sr // 2 + int(1.6 * sr)], sr)
        cut.append(path)
    return cut
