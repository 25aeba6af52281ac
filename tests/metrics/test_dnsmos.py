import numpy as np
import pytest

from ttsadapt.plugins.metrics.dnsmos import DNSMOS
from ttsadapt.types import EvalItem


@pytest.fixture(scope="module")
def metric():
    m = DNSMOS()
    m.setup()
    return m


def test_agrees_with_speechmos(metric, librivox):
    import speechmos.dnsmos as reference

    clips = librivox[:2]
    ours = metric.score([EvalItem(id=c[0], audio=c[1], sample_rate=c[2]) for c in clips])
    for (_, audio, sr, _), s in zip(clips, ours):
        ref = reference.run(audio, sr)
        for out, key in (("ovrl", "ovrl_mos"), ("sig", "sig_mos"), ("bak", "bak_mos")):
            assert abs(s.values[out] - float(ref[key])) < 0.01
        assert abs(s.values["p808"] - float(ref["p808_mos"])) < 0.01


def test_any_rate_channels_and_pcm_format(metric, librivox):
    _, audio, sr, _ = librivox[1]
    import soxr

    stereo_int16 = (np.stack([audio, audio], axis=1) * 32767).astype(np.int16)
    at_44k = soxr.resample(audio, sr, 44100).astype(np.float32)
    base, s2, s3 = metric.score(
        [
            EvalItem(id="a", audio=audio, sample_rate=sr),
            EvalItem(id="b", audio=stereo_int16, sample_rate=sr),
            EvalItem(id="c", audio=at_44k, sample_rate=44100),
        ]
    )
    for other in (s2, s3):
        assert other.ok
        assert abs(other.values["ovrl"] - base.values["ovrl"]) < 0.05


def test_noise_lowers_bak_and_bad_items_get_error_rows(metric, librivox):
    _, audio, sr, _ = librivox[1]
    noisy = audio + 0.05 * np.random.default_rng(0).standard_normal(audio.size).astype(np.float32)
    nan = audio.copy()
    nan[10] = np.nan
    clean, dirty, e1, e2, e3 = metric.score(
        [
            EvalItem(id="clean", audio=audio, sample_rate=sr),
            EvalItem(id="noisy", audio=np.clip(noisy, -1, 1), sample_rate=sr),
            EvalItem(id="nan", audio=nan, sample_rate=sr),
            EvalItem(id="short", audio=audio[:800], sample_rate=sr),
            EvalItem(id="empty", audio=np.zeros(0, np.float32), sample_rate=sr),
        ]
    )
    assert dirty.values["bak"] < clean.values["bak"] - 0.5
    assert e1.error.startswith("non-finite audio")
    assert e2.error.startswith("too short")
    assert e3.error.startswith("empty audio")


def test_shared_overlap_path_equals_whole_model_per_window(metric, librivox):
    """The default path (overlap computed once per clip) gives the whole model's numbers; a
    15.4 s clip exercises trunk chunking (1400 frames) and interior window edges."""
    from ttsadapt.plugins.metrics import _dnsmos_shared, dnsmos

    if not _dnsmos_shared.available():
        pytest.skip("pip install onnx for the shared-overlap path")
    long_clip = np.concatenate([c[1] for c in librivox[:3]])
    clips = [librivox[0][1], librivox[1][1], long_clip]  # 5, 2 and 6 windows
    main, _ = dnsmos._sessions("standard")
    shared = _dnsmos_shared.SharedP835(dnsmos._model_path("standard"), 2)
    for audio in clips:
        tiled = dnsmos.tile_to_window(audio)
        wins = dnsmos.windows(tiled)
        whole = main.run(None, {"input_1": wins})[0]
        assert np.abs(shared.clip(wins) - whole).max() < 1e-4
        per_window = np.stack([dnsmos.p808_features(w) for w in wins])
        assert np.abs(dnsmos.p808_features_clip(tiled, len(wins)) - per_window).max() < 1e-6
    plain = DNSMOS()
    plain.share_overlap = False
    items = [EvalItem(id=str(i), audio=a, sample_rate=16000) for i, a in enumerate(clips[:2])]
    for a, b in zip(metric.score(items), plain.score(items)):
        assert a.values == pytest.approx(b.values, abs=1e-5)


def test_a_replaced_model_file_never_scores_even_without_the_cache(tmp_path, monkeypatch):
    """``setup`` checks the pinned model files' hashes before loading them (the score cache, which
    also hashes them, may be off)."""
    import shutil

    from ttsadapt.plugins.metrics import _provenance, dnsmos

    monkeypatch.setenv("TTSADAPT_CACHE", str(tmp_path / "cache"))
    real = _provenance.package_file("speechmos", "")
    fake = tmp_path / "speechmos"
    shutil.copytree(real / "dnsmos_models", fake / "dnsmos_models")
    bad = fake / "dnsmos_models" / "sig_bak_ovr.onnx"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(_provenance, "_pinned_roots", lambda: {fake.resolve(): "speechmos"})
    monkeypatch.setattr(dnsmos, "_model_path", lambda variant: bad)
    monkeypatch.setattr(dnsmos, "_p808_path", lambda: fake / "dnsmos_models" / "model_v8.onnx")
    with pytest.raises(_provenance.WeightFileError, match="sig_bak_ovr"):
        dnsmos.DNSMOS().setup()
