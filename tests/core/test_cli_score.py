"""`ttsadapt score`: scores existing audio, writes per-item rows, caches, counts bad items."""

import json
import re

import pytest
from helpers import cli, make_corpus


def test_score_cli_caches_and_counts_bad_items(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", speakers=("a",), n_train=0, n_eval=3)
    lines = manifest.read_text().splitlines()
    (tmp_path / "corpus" / "wavs" / "broken.wav").write_bytes(b"RIFF not really audio")
    lines.append(
        json.dumps(
            {
                "id": "broken",
                "audio": "wavs/broken.wav",
                "text": "x",
                "speaker": "a",
                "language": "en",
            }
        )
    )
    manifest.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    out1, out2 = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    r = cli(
        "score",
        "--manifest",
        str(manifest),
        "--metrics",
        "wada_snr",
        "--out",
        str(out1),
        "--cache-dir",
        str(cache),
    )
    assert r.returncode == 0, r.stderr
    assert "wada_snr" in r.stdout
    rows = [json.loads(x) for x in out1.read_text().splitlines()]
    assert len(rows) == len(lines)
    broken = next(x for x in rows if x["id"] == "broken")
    assert broken["errors"]["wada_snr"]
    assert sum(1 for x in rows if x["errors"].get("wada_snr")) == 1
    assert list(cache.iterdir()), "the score cache was written"
    r = cli(
        "score",
        "--manifest",
        str(manifest),
        "--metrics",
        "wada_snr",
        "--out",
        str(out2),
        "--cache-dir",
        str(cache),
    )
    assert r.returncode == 0
    values = lambda p: [x["values"] for x in map(json.loads, p.read_text().splitlines())]  # noqa: E731
    assert values(out1) == values(out2)


def test_score_cli_unknown_metric_suggests(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", speakers=("a",), n_train=0, n_eval=1)
    r = cli(
        "score",
        "--manifest",
        str(manifest),
        "--metrics",
        "wada_snrr",
        "--out",
        str(tmp_path / "o.jsonl"),
    )
    assert r.returncode == 2 and "Did you mean 'wada_snr'" in r.stderr


# --------------------------------------------------------------------------- manifest keys


def _write_pair(folder, name, seed=0, noise=0.02):
    """A speech-like clip and a noisy time-aligned copy of it (16 kHz WAV); their paths."""
    import numpy as np
    import soundfile as sf

    from ttsadapt.testing import speechlike_signal

    folder.mkdir(parents=True, exist_ok=True)
    clean = speechlike_signal(seconds=2.0, seed=seed)
    noisy = clean + noise * np.random.default_rng(seed + 100).standard_normal(clean.size)
    sf.write(folder / f"{name}.wav", noisy.astype(np.float32), 16000)
    sf.write(folder / f"{name}-ref.wav", clean.astype(np.float32), 16000)
    return folder / f"{name}.wav", folder / f"{name}-ref.wav"


def _write_manifest(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_score_help_lists_every_manifest_key_and_the_metrics_that_need_it():
    from ttsadapt.registry import build_registry
    from ttsadapt.scoring import SCORE_MANIFEST_KEYS

    r = cli("score", "--help")
    assert r.returncode == 0, r.stderr
    table = {
        line.split()[0]: line
        for line in r.stdout.splitlines()
        if line.split() and line.split()[0] in SCORE_MANIFEST_KEYS
    }
    assert set(table) == set(SCORE_MANIFEST_KEYS)
    for key in ("audio", "text", "language", "speaker_prompt", "reference_audio"):
        assert SCORE_MANIFEST_KEYS[key][0].split()[0] in table[key], key  # its meaning
    # every built-in metric that needs a key is named on that key's line
    registry = build_registry(autoload=False)
    for key, (_, flag, _) in SCORE_MANIFEST_KEYS.items():
        if flag is None:
            continue
        needing = [n for n in registry.names("metric") if getattr(registry.get("metric", n), flag)]
        assert needing, flag
        for name in needing:
            words = re.split(r"[\s,]+", table[key])
            assert name in words, f"{name} ({flag}) missing on the {key!r} line"
    assert '"ref_audio" here is "reference_audio"' in r.stdout
    assert '"ref_audio" in corpus manifests is "speaker_prompt"' in r.stdout
    assert "--metric-params NAME.KEY=VALUE" in r.stdout


def test_score_reads_old_ref_audio_as_reference_audio_and_warns_once(tmp_path):
    _a, _a_ref = _write_pair(tmp_path / "w", "a", seed=0)
    _b, _b_ref = _write_pair(tmp_path / "w", "b", seed=1)
    manifest = _write_manifest(
        tmp_path / "old.jsonl",
        [
            {"id": "a", "audio": "w/a.wav", "ref_audio": "w/a-ref.wav"},
            {"id": "b", "audio": "w/b.wav", "ref_audio": "w/b-ref.wav"},
            {"id": "c", "audio": "w/b.wav", "ref_audio": "w/missing.wav"},
        ],
    )
    out = tmp_path / "o.jsonl"
    r = cli("score", "--manifest", str(manifest), "--metrics", "stoi", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ManifestKeyWarning") == 1, r.stderr  # once per file, not per line
    warning = next(x for x in r.stderr.splitlines() if "ManifestKeyWarning" in x)
    assert warning.startswith(f"{manifest}:1:")  # file and line
    assert "'ref_audio' is deprecated: write 'reference_audio'" in warning
    rows = {x["id"]: x for x in _rows(out)}
    assert rows["a"]["values"]["stoi"]["stoi"] > 0.5 and rows["b"]["values"]["stoi"]["stoi"] > 0.5
    assert rows["c"]["errors"]["stoi"].startswith("unreadable ref_audio: ")  # as the user wrote it
    # the same file with the new key: same numbers, no warning
    new = _write_manifest(
        tmp_path / "new.jsonl",
        [{"id": "a", "audio": "w/a.wav", "reference_audio": "w/a-ref.wav"}],
    )
    out2 = tmp_path / "o2.jsonl"
    r = cli("score", "--manifest", str(new), "--metrics", "stoi", "--out", str(out2), "--no-cache")
    assert r.returncode == 0 and "ManifestKeyWarning" not in r.stderr, r.stderr
    assert _rows(out2)[0]["values"] == rows["a"]["values"]
    # both spellings on one line: an error naming the line
    both = _write_manifest(
        tmp_path / "both.jsonl",
        [{"audio": "w/a.wav", "ref_audio": "w/a-ref.wav", "reference_audio": "w/a-ref.wav"}],
    )
    r = cli("score", "--manifest", str(both), "--metrics", "stoi", "--out", str(out2))
    assert r.returncode == 4 and f"{both}:1:" in r.stderr and "'reference_audio'" in r.stderr


def test_corpus_manifest_reads_ref_audio_as_speaker_prompt_and_writes_new_names(tmp_path):
    import warnings

    from ttsadapt.data.manifest import ManifestKeyWarning, load_manifest, write_manifest

    _a, a_ref = _write_pair(tmp_path / "w", "a")
    base = {"text": "a b c", "speaker": "s", "language": "en"}
    manifest = _write_manifest(
        tmp_path / "corpus.jsonl",
        [
            {"id": "1", "audio": "w/a.wav", "ref_audio": "w/a-ref.wav", **base},
            {"id": "2", "audio": "w/a.wav", "ref_audio": "w/a-ref.wav", **base},
            {"id": "3", "audio": "w/a.wav", "reference_audio": "w/a-ref.wav", **base},
            {"id": "4", "audio": "w/a.wav", "ref_audio": "w/a.wav", "speaker_prompt": "w/a.wav"}
            | base,
        ],
    )
    with pytest.warns(ManifestKeyWarning) as caught:
        load = load_manifest(manifest, check_audio="none")
    assert len(caught) == 1
    assert (caught[0].filename, caught[0].lineno) == (str(manifest), 1)
    assert "write 'speaker_prompt'" in str(caught[0].message)
    clips = {c.id: c for c in load.clips}
    assert clips["1"].speaker_prompt == a_ref and clips["1"].reference_audio is None
    assert clips["1"].ref_audio == a_ref  # the old attribute name still works
    assert clips["3"].reference_audio == a_ref and clips["3"].speaker_prompt is None
    assert [(q.line, q.code) for q in load.quarantine] == [(4, "bad_field")]
    assert "speaker_prompt" in load.quarantine[0].reason
    written = tmp_path / "out.jsonl"
    write_manifest(written, load.clips)
    lines = _rows(written)
    assert all("ref_audio" not in x for x in lines)
    assert [x.get("speaker_prompt") for x in lines] == ["w/a-ref.wav", "w/a-ref.wav", None]
    assert [x.get("reference_audio") for x in lines] == [None, None, "w/a-ref.wav"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten manifest loads without a warning
        again = load_manifest(written, check_audio="none")
    assert [c.speaker_prompt for c in again.clips] == [c.speaker_prompt for c in load.clips]


def test_metric_params_reach_the_metric(tmp_path):
    from pystoi import stoi

    from ttsadapt.audio import load_audio

    a, a_ref = _write_pair(tmp_path / "w", "a", noise=0.05)
    manifest = _write_manifest(
        tmp_path / "m.jsonl", [{"audio": "w/a.wav", "reference_audio": "w/a-ref.wav"}]
    )
    cache = tmp_path / "cache"
    values = {}
    for label, extra in (("default", []), ("estoi", ["--metric-params", "stoi.extended=true"])):
        out = tmp_path / f"{label}.jsonl"
        r = cli(
            "score",
            "--manifest",
            str(manifest),
            "--metrics",
            "stoi",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            *extra,
        )
        assert r.returncode == 0, r.stderr
        values[label] = _rows(out)[0]["values"]["stoi"]["stoi"]
    deg, _ = load_audio(a)
    ref, _ = load_audio(a_ref)
    assert values["estoi"] == pytest.approx(stoi(ref, deg, 16000, extended=True), abs=1e-6)
    assert values["default"] == pytest.approx(stoi(ref, deg, 16000, extended=False), abs=1e-6)
    assert abs(values["estoi"] - values["default"]) > 1e-3  # and the cache kept them apart


@pytest.mark.parametrize(
    ("flag", "metrics", "expected"),
    [
        ("stoi.extendd=true", "stoi", ["stoi", "'extendd'", "did you mean 'extended'"]),
        ("pesq.mode=xx", "pesq", ["pesq.mode=xx", "metric pesq, parameter mode", "'wb'"]),
        ("stoi.extended=maybe", "stoi", ["metric stoi, parameter extended", "'maybe'"]),
        ("stoii.extended=true", "stoi", ["unknown metric 'stoii'", "Did you mean 'stoi'"]),
        ("pesq.mode=nb", "stoi", ["metric 'pesq' is not among --metrics (stoi)"]),
        ("stoi=true", "stoi", ["expected NAME.KEY=VALUE"]),
    ],
)
def test_bad_metric_params_exit_2_naming_metric_and_key(tmp_path, flag, metrics, expected):
    manifest = _write_manifest(tmp_path / "m.jsonl", [{"audio": "w/never-read.wav"}])
    out = tmp_path / "o.jsonl"
    r = cli(
        "score",
        "--manifest",
        str(manifest),
        "--metrics",
        metrics,
        "--out",
        str(out),
        "--metric-params",
        flag,
    )
    assert r.returncode == 2, (r.returncode, r.stderr)
    for text in expected:
        assert text in r.stderr, (text, r.stderr)
    assert not out.exists()  # nothing was scored


def test_items_lacking_what_a_metric_needs_name_the_missing_key(tmp_path):
    _a, _a_ref = _write_pair(tmp_path / "w", "a")
    (tmp_path / "w" / "broken.wav").write_bytes(b"RIFF not audio")
    manifest = _write_manifest(
        tmp_path / "m.jsonl",
        [
            {"id": "bare", "audio": "w/a.wav"},
            {"id": "badprompt", "audio": "w/a.wav", "speaker_prompt": "w/broken.wav"},
        ],
    )
    out = tmp_path / "o.jsonl"
    r = cli(
        "score",
        "--manifest",
        str(manifest),
        "--metrics",
        "cer,speaker_similarity,pesq",
        "--out",
        str(out),
        "--no-cache",
    )
    # cer and speaker_similarity could score no item: exit 1, each named with its main reason
    # (pesq only found every item not applicable: not a failure)
    assert r.returncode == 1, r.stderr
    assert (
        "metric cer failed on every item it scored (2 of 2); most common reason: missing text"
        in (r.stderr)
    )
    assert "metric speaker_similarity failed on every item it scored (2 of 2)" in r.stderr
    assert "metric pesq" not in r.stderr
    rows = {x["id"]: x for x in _rows(out)}
    bare = rows["bare"]["errors"]
    assert bare["cer"].startswith('missing text: line 1 of m.jsonl has no "text"')
    assert bare["speaker_similarity"].startswith(
        'missing speaker_prompt: line 1 of m.jsonl has no "speaker_prompt"'
    )
    assert bare["pesq"].startswith(
        'not applicable: no reference_audio: line 1 of m.jsonl has no "reference_audio"'
    )
    assert rows["badprompt"]["errors"]["speaker_similarity"].startswith("unreadable speaker_prompt")
    assert not rows["bare"]["values"] and not rows["badprompt"]["values"]
    # the printed summary names the keys too
    assert "cer: 2 x missing text" in r.stdout
    assert "speaker_similarity: 1 x missing speaker_prompt" in r.stdout
    assert "speaker_similarity: 1 x unreadable speaker_prompt" in r.stdout
    assert "pesq: 2 x no reference_audio" in r.stdout
    assert "ttsadapt score --help" in r.stdout


def test_score_exits_1_naming_a_metric_that_failed_on_every_item(tmp_path):
    _a, _ = _write_pair(tmp_path / "w", "a")
    for name in ("x", "y", "z"):
        (tmp_path / "w" / f"{name}.wav").write_bytes(b"RIFF not audio")
    rows = [{"id": n, "audio": f"w/{n}.wav", "text": "hi"} for n in ("x", "y", "z")]
    manifest = _write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "o.jsonl"
    args = ["score", "--manifest", str(manifest), "--metrics", "wada_snr", "--out", str(out)]
    r = cli(*args, "--no-cache")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert (
        "error: metric wada_snr failed on every item it scored (3 of 3); most common reason: "
        "unreadable audio (3 items)"
    ) in r.stderr
    assert len(_rows(out)) == 3  # the rows are still written, each with its reason
    assert "wada_snr: 3 x unreadable audio" in r.stdout
    # one good item among them: the metric works, the run succeeds
    _write_manifest(manifest, [*rows, {"id": "a", "audio": "w/a.wav"}])
    r = cli(*args, "--no-cache")
    assert r.returncode == 0, r.stderr
    assert "failed on every item" not in r.stderr
