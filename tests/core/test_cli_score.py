"""`ttsadapt score`: scores existing audio, writes per-item rows, caches, counts bad items."""

import json

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
