"""The runner and record store: records, failures, resume, overwrite modes, kills, concurrency."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DOUBLES, SUPPORT, cli, make_corpus, suite_text, write_suite

from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_modules=[DOUBLES], autoload=False)


@pytest.fixture()
def manifest(tmp_path):
    return make_corpus(tmp_path / "corpus")


def run_suite(path, registry, results, overwrite="only-missing"):
    suite = load_suite(path, registry)
    return suite, SuiteRunner(suite, registry, results=results, overwrite=overwrite).run()


TIMINGS = ("synth_s", "rtf", "first_audio_s", "peak_rss_mb", "peak_gpu_mb")


def snapshot(results: Path, suite: str) -> dict:
    """Everything a run records that must not depend on timing or on how often it was resumed."""
    out = {}
    for run_dir in sorted((results / suite / "runs").iterdir()):
        if not run_dir.is_dir():
            continue
        files = {}
        for f in sorted(run_dir.rglob("*")):
            rel = f.relative_to(run_dir).as_posix()
            if f.is_dir() or rel in ("run.log", "run.json") or rel.startswith("checkpoints"):
                continue
            if rel in ("records/latency.json", "scores/latency.jsonl"):  # timings
                continue
            if f.suffix == ".json" and rel.startswith("records/"):
                rec = json.loads(f.read_text())
                rec.pop("provenance")
                files[rel] = rec
            elif rel == "synthesis.jsonl":
                files[rel] = [
                    {k: v for k, v in json.loads(line).items() if k not in TIMINGS}
                    for line in f.read_text().splitlines()
                ]
            else:
                files[rel] = f.read_bytes()
        out[run_dir.name] = files
    return out


def test_a_suite_writes_records_for_every_run(tmp_path, manifest, registry):
    suite, summary = run_suite(write_suite(tmp_path, manifest), registry, tmp_path / "res")
    assert summary.counts() == {"ok": 3}
    for run in suite.runs:
        run_dir = tmp_path / "res" / "t" / "runs" / run.run_id
        assert (run_dir / "DONE").is_file() and (run_dir / "run.log").is_file()
        rec = json.loads((run_dir / "records" / "double_rms.json").read_text())
        assert rec["run_id"] == run.run_id and rec["is_anchor"] == run.is_anchor
        assert rec["outputs"]["rms_db"]["n"] == 4
        assert (
            rec["outputs"]["rms_db"]["ci_low"]
            <= rec["outputs"]["rms_db"]["mean"]
            <= rec["outputs"]["rms_db"]["ci_high"]
        )
        prov = rec["provenance"]
        assert prov["packages"]["torch"] and prov["device"].startswith("cpu")
        assert len(list((run_dir / "audio").glob("*.wav"))) == 4
        rows = (run_dir / "scores" / "double_rms.jsonl").read_text().splitlines()
        assert len(rows) == 4
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "ok" and set(info["timings"]) >= {"adapt_s", "synth_s", "score_s"}
        if not run.is_anchor:
            assert (run_dir / "adapter" / "gain.txt").is_file()
            assert (run_dir / "curves.jsonl").is_file()
    # the trained gain (0.5 / 0.9 target) changes the level: records differ between systems
    levels = {
        json.loads((tmp_path / "res/t/runs" / r.run_id / "records/double_rms.json").read_text())[
            "outputs"
        ]["rms_db"]["mean"]
        for r in suite.runs
    }
    assert len(levels) == 3


def test_rerun_skips_finished_runs_and_never_duplicates(tmp_path, manifest, registry):
    path = write_suite(tmp_path, manifest)
    run_suite(path, registry, tmp_path / "res")
    before = snapshot(tmp_path / "res", "t")
    _, summary = run_suite(path, registry, tmp_path / "res")
    assert summary.counts() == {"skipped": 3}
    assert snapshot(tmp_path / "res", "t") == before


def test_failed_run_is_recorded_and_the_suite_goes_on(tmp_path, manifest, registry):
    methods = (
        '[[methods]]\nname = "double_anchor"\n\n'
        '[[methods]]\nname = "double_nudge"\nparams = { fail = [true, false] }\n'
    )
    path = write_suite(tmp_path, manifest, methods=methods)
    _suite, summary = run_suite(path, registry, tmp_path / "res")
    assert summary.counts() == {"ok": 2, "failed": 1}
    failed = next(o for o in summary.outcomes if o.status == "failed")
    run_dir = tmp_path / "res" / "t" / "runs" / failed.run_id
    assert "double_nudge was told to fail" in (run_dir / "error.txt").read_text()
    assert "Traceback" in (run_dir / "traceback.txt").read_text()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    # a re-run retries the failed run (and only it)
    _, again = run_suite(path, registry, tmp_path / "res")
    assert again.counts() == {"skipped": 2, "failed": 1}


def test_one_bad_clip_does_not_sink_the_run(tmp_path, manifest, registry):
    path = write_suite(tmp_path, manifest, backbone_params='params = { fail_on_text = "charlie" }')
    suite, summary = run_suite(path, registry, tmp_path / "res")
    assert summary.counts() == {"ok": 3}
    run = suite.runs[0]
    rec = json.loads((tmp_path / "res/t/runs" / run.run_id / "records/double_rms.json").read_text())
    assert rec["n_errors"] >= 1 and rec["outputs"]["rms_db"]["n"] == 4 - rec["n_errors"]
    assert any(
        reason.startswith("synthesis failed: RuntimeError: cannot speak")
        for reason in rec["errors"]
    )


def test_overwrite_modes(tmp_path, manifest, registry):
    path = write_suite(tmp_path, manifest)
    run_suite(path, registry, tmp_path / "res")
    # a second metric added to the suite: only-missing scores it from the saved audio
    (tmp_path / "more.toml").write_text(
        suite_text(manifest) + '\n[[metrics]]\nname = "double_rms_copy"\n'
    )
    reg = build_registry(extra_modules=[DOUBLES, "ttsadapt_test_doubles_extra"], autoload=False)
    _, never = run_suite(tmp_path / "more.toml", reg, tmp_path / "res", overwrite="never")
    assert never.counts() == {"skipped": 3}
    _, only = run_suite(tmp_path / "more.toml", reg, tmp_path / "res", overwrite="only-missing")
    assert only.counts() == {"rescored": 3}
    assert len(list((tmp_path / "res/t/runs").glob("*/records/double_rms_copy.json"))) == 3
    _, always = run_suite(tmp_path / "more.toml", reg, tmp_path / "res", overwrite="always")
    assert always.counts() == {"ok": 3}


def test_half_written_run_is_redone(tmp_path, manifest, registry):
    path = write_suite(tmp_path, manifest)
    suite, _ = run_suite(path, registry, tmp_path / "res")
    clean = snapshot(tmp_path / "res", "t")
    run_dir = tmp_path / "res" / "t" / "runs" / suite.runs[1].run_id
    (run_dir / "DONE").unlink()
    (run_dir / "records" / "double_rms.json").write_text('{"torn": ')
    (run_dir / "stale.tmp").write_text("left by a killed process")
    _, summary = run_suite(path, registry, tmp_path / "res")
    assert summary.counts() == {"skipped": 2, "ok": 1}
    assert snapshot(tmp_path / "res", "t") == clean


def test_results_folder_not_writable(tmp_path, manifest):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = cli(
        "-p",
        DOUBLES,
        "run",
        str(write_suite(tmp_path, manifest)),
        "--results",
        str(blocker / "res"),
    )
    assert r.returncode == 1
    assert f"results folder {blocker / 'res'} is not writable" in r.stderr


def _spawn_run(suite: Path, results: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SUPPORT), "TQDM_DISABLE": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttsadapt",
            "-p",
            DOUBLES,
            "run",
            str(suite),
            "--results",
            str(results),
            "--no-leaderboard",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


SLOW = "params = { sleep_s = 0.05 }"


def test_sigkill_at_any_moment_then_rerun_gives_the_clean_records(tmp_path, manifest):
    path = write_suite(tmp_path, manifest, backbone_params=SLOW)
    clean_res = tmp_path / "clean"
    r = cli("-p", DOUBLES, "run", str(path), "--results", str(clean_res), "--no-leaderboard")
    assert r.returncode == 0, r.stderr
    clean = snapshot(clean_res, "t")
    killed_res = tmp_path / "killed"
    for delay in (1.2, 1.6, 2.0, 2.5, 3.0):  # start-up takes ~1 s; each run ~0.5 s
        proc = _spawn_run(path, killed_res)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    r = cli("-p", DOUBLES, "run", str(path), "--results", str(killed_res), "--no-leaderboard")
    assert r.returncode == 0, r.stderr
    assert snapshot(killed_res, "t") == clean
    leftovers = [p for p in (killed_res / "t").rglob("*.tmp")]
    assert not leftovers, leftovers


def test_two_processes_on_one_results_folder(tmp_path, manifest):
    path = write_suite(tmp_path, manifest, backbone_params=SLOW)
    res = tmp_path / "res"
    a, b = _spawn_run(path, res), _spawn_run(path, res)
    out_a, out_b = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, (out_a, out_b)
    runs = [p for p in (res / "t" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 3
    for run_dir in runs:
        assert json.loads((run_dir / "DONE").read_text())["status"] == "ok"
        assert {p.stem for p in (run_dir / "records").glob("*.json")} == {"double_rms", "latency"}
    # afterwards every run is finished: a third process has nothing to do
    r = cli("-p", DOUBLES, "run", str(path), "--results", str(res), "--no-leaderboard")
    assert "3 skipped" in r.stdout


def test_runs_can_be_evaluated_on_their_recipe_speakers(tmp_path, manifest, registry):
    text = suite_text(manifest).replace(
        'split = "eval"', 'split = "eval"\nmatch_recipe_speakers = true'
    )
    path = tmp_path / "match.toml"
    path.write_text(text)
    suite, summary = run_suite(path, registry, tmp_path / "res")
    assert summary.counts() == {"ok": 3}
    for run in suite.runs:
        rows = (tmp_path / "res/t/runs" / run.run_id / "synthesis.jsonl").read_text().splitlines()
        speakers = {json.loads(r)["speaker"] for r in rows}
        assert speakers == ({"a", "b"} if run.is_anchor else {"a"})
    from ttsadapt.leaderboard import build_leaderboard

    board = build_leaderboard(tmp_path / "res", "t")["md"].read_text()
    assert "double_nudge" in board and "anchor" in board
    # system labels name the swept parameter only; the CSV keeps every parameter
    assert "double_nudge (target_gain=0.5) / spk-a" in board and "steps=" not in board


# --------------------------------------------------------------------------- clips set aside

NEUTTS_SUITE = """name = "drops"
version = "1"
anchor = "zero_shot"
seeds = [0]

[corpus]
manifest = "{manifest}"

[[data]]
name = "spk-a"
speakers = ["a"]

[evaluation]
split = "eval"
max_items = 2

[[backbones]]
name = "neutts"
params = {{ model = "tiny", codec = "mel_vq", mel_vq_codes = 32, codebook_size = 64, min_new_tokens = 5, max_length = 96 }}

[[methods]]
name = "zero_shot"

[[methods]]
name = "lora"
params = {{ scope = "lm", rank = 2, max_steps = 2, warmup_steps = 1, batch_size = 2, grad_accum = 1, val_every = 2, save_every = 2 }}

[[metrics]]
name = "double_rms"
"""


def _add_lines(manifest: Path, rows: list[dict]) -> dict[str, int]:
    """Append manifest lines; returns each new id's 1-based line number."""
    before = manifest.read_text().splitlines()
    manifest.write_text("\n".join(before + [json.dumps(r) for r in rows]) + "\n")
    return {r["id"]: len(before) + i + 1 for i, r in enumerate(rows)}


def test_broken_training_clips_are_set_aside_counted_and_named(tmp_path, registry, monkeypatch):
    """A NaN clip and a 40 ms clip in the training data: the run trains on the rest, and run.json,
    dropped_clips.jsonl and run.log say which clips were left out and why — including the clip
    the backbone itself could not use (pre-encoded codes outside its codebook)."""
    import numpy as np
    import soundfile as sf

    monkeypatch.setenv("TTSADAPT_CACHE", str(tmp_path / "cache"))
    manifest = make_corpus(tmp_path / "corpus", n_train=4, n_eval=2)
    wavs = tmp_path / "corpus" / "wavs"
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32)
    nan = tone.copy()
    nan[8000:8010] = np.nan
    sf.write(wavs / "a-nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(wavs / "a-blip.wav", tone[:640], 16000, subtype="PCM_16")  # 40 ms
    sf.write(wavs / "a-codes.wav", tone, 16000, subtype="PCM_16")
    common = {"text": "alpha bravo", "speaker": "a", "language": "en", "split": "train"}
    lines = _add_lines(
        manifest,
        [
            {"id": "a-nan", "audio": "wavs/a-nan.wav", **common},
            {"id": "a-blip", "audio": "wavs/a-blip.wav", **common},
            {"id": "a-codes", "audio": "wavs/a-codes.wav", "codes": [70, 71, 72], **common},
        ],
    )
    path = tmp_path / "drops.toml"
    path.write_text(NEUTTS_SUITE.format(manifest=manifest))
    suite, summary = run_suite(path, registry, tmp_path / "res")
    assert summary.counts() == {"ok": 2}, [o.error for o in summary.outcomes]

    lora = next(r for r in suite.runs if not r.is_anchor)
    run_dir = tmp_path / "res" / "drops" / "runs" / lora.run_id
    rows = [json.loads(x) for x in (run_dir / "dropped_clips.jsonl").read_text().splitlines()]
    named = {r["id"]: r for r in rows}
    assert set(named) == {"a-nan", "a-blip", "a-codes"}
    assert named["a-nan"]["code"] == "nan_inf" and named["a-nan"]["stage"] == "manifest"
    assert named["a-nan"]["line"] == lines["a-nan"]
    assert named["a-nan"]["path"].endswith("a-nan.wav") and "NaN" in named["a-nan"]["reason"]
    assert named["a-blip"]["code"] == "duration_out_of_window"
    assert named["a-blip"]["line"] == lines["a-blip"] and "0.040 s" in named["a-blip"]["reason"]
    assert named["a-codes"]["stage"] == "backbone" and named["a-codes"]["code"] == (
        "backbone_rejected"
    )
    assert named["a-codes"]["line"] == lines["a-codes"] and named["a-codes"]["split"] == "train"
    assert "outside 0..63" in named["a-codes"]["reason"]

    info = json.loads((run_dir / "run.json").read_text())
    data = info["data"]
    assert data["dropped"] == {"backbone_rejected": 1, "duration_out_of_window": 1, "nan_inf": 1}
    assert data["n_dropped"] == 3 and data["dropped_clips"] == "dropped_clips.jsonl"
    assert data["quarantine_reasons"] == {"duration_out_of_window": 1, "nan_inf": 1}
    assert data["audio_check"]["mode"] == "full" and data["audio_check"]["min_duration_s"] == 0.3
    # the training count is what was trained on: 4 good clips + the codes clip, less that one
    training = data["training"]
    assert training["n_train"] == 4 == info["adapt"]["stats"]["n_train_examples"]
    assert training["dropped_by_reason"] == {"backbone_rejected": 1}
    log = (run_dir / "run.log").read_text()
    assert "dropped clip a-codes" in log and "outside 0..63" in log

    anchor = next(r for r in suite.runs if r.is_anchor)
    anchor_rows = (tmp_path / "res/drops/runs" / anchor.run_id / "dropped_clips.jsonl").read_text()
    assert {json.loads(x)["id"] for x in anchor_rows.splitlines()} == {"a-nan", "a-blip"}

    # a second process decodes nothing: the checks come from the per-file cache
    again = SuiteRunner(load_suite(path, registry), registry, results=tmp_path / "res")
    ids = {c.id for c in again.clips()}
    assert "a-codes" in ids and not ids & {"a-nan", "a-blip"}
    check = again._audio_check
    assert check["files_decoded"] == 0 and check["files_from_cache"] == 2 * (4 + 2 + 2) + 2


def test_pesq_reference_is_the_clips_own_recording_not_its_speaker_prompt(tmp_path):
    """A clip's speaker prompt is another utterance: scoring PESQ/STOI against it is wrong."""
    import numpy as np

    from ttsadapt.audio import write_audio
    from ttsadapt.evaluation import eval_item
    from ttsadapt.types import Clip

    own, prompt = tmp_path / "own.wav", tmp_path / "prompt.wav"
    write_audio(own, np.full(1600, 0.1, dtype=np.float32), 16000)
    write_audio(prompt, np.full(3200, 0.2, dtype=np.float32), 16000)
    clip = Clip("c", own, "text", "s", "en", speaker_prompt=prompt)
    item = eval_item(clip, {}, np.zeros(10, np.float32), 16000)
    assert len(item.reference_audio) == 1600


def test_suite_runs_log_to_tensorboard_and_plugins_see_each_step(tmp_path, monkeypatch):
    """A suite's training curves reach TensorBoard (runs/<id>/tensorboard) and the per-step hook of
    a plugin; ``[tracking] trackers = []`` turns the tracker off without changing run ids."""
    import ttsadapt_test_doubles_training as observer

    from ttsadapt.registry import build_registry
    from ttsadapt.runner import SuiteRunner
    from ttsadapt.suite import load_suite

    monkeypatch.setenv("TTSADAPT_CACHE", str(tmp_path / "cache"))
    manifest = make_corpus(tmp_path / "corpus", n_train=4, n_eval=2)
    text = NEUTTS_SUITE.format(manifest=manifest).replace(
        'name = "double_rms"', 'name = "wada_snr"'
    )
    on, off = tmp_path / "on.toml", tmp_path / "off.toml"
    on.write_text(text)
    off.write_text(text.replace("[[metrics]]", "[tracking]\ntrackers = []\n\n[[metrics]]", 1))
    registry = build_registry(extra_modules=["ttsadapt_test_doubles_training"])
    observer.CALLS.clear()
    suite = load_suite(on, registry)
    SuiteRunner(suite, registry, results=tmp_path / "res_on", device="cpu").run()
    lora = next(r for r in suite.runs if r.method == "lora")
    assert list((tmp_path / "res_on/drops/runs" / lora.run_id / "tensorboard").rglob("events.*"))
    assert [c[1] for c in observer.CALLS if c[0] == lora.run_id] == [1, 2]
    suite_off = load_suite(off, registry)
    assert [r.run_id for r in suite_off.runs] == [r.run_id for r in suite.runs]
    SuiteRunner(suite_off, registry, results=tmp_path / "res_off", device="cpu").run()
    assert not (tmp_path / "res_off/drops/runs" / lora.run_id / "tensorboard").exists()


def test_the_suites_cpus_per_run_pin_torchs_threads_and_the_record_says_so(
    tmp_path, manifest, registry
):
    """A run's audio depends at float level on how many threads computed it; ``[resources]
    num_cpus`` fixes that count for every run under every executor, and each record names it."""
    import torch

    before = torch.get_num_threads()
    path = write_suite(tmp_path, manifest, extra="[resources]\nnum_cpus = 1\n")
    suite, summary = run_suite(path, registry, tmp_path / "res")
    assert summary.counts() == {"ok": 3}
    for run in suite.runs:
        run_dir = tmp_path / "res" / "t" / "runs" / run.run_id
        assert json.loads((run_dir / "run.json").read_text())["provenance"]["cpu_threads"] == 1
        rec = json.loads((run_dir / "records" / "double_rms.json").read_text())
        assert rec["provenance"]["cpu_threads"] == 1
    assert torch.get_num_threads() == before  # restored for whatever the process does next
