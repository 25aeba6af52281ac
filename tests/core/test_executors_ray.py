"""The Ray executor on a local 2-CPU cluster: the same records as the local executor, resources
from the components and the suite, a dying worker retried (and, past the limit, recorded failed),
an interrupted driver resumed, two drivers on one results folder, the score cache under
concurrent writers."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from helpers import DOUBLES, SUPPORT, cli, make_corpus, suite_text

from ttsadapt.errors import ConfigError
from ttsadapt.executors import RayExecutor, _check_fits, run_resources
from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite

pytest.importorskip("ray")  # the dev extra installs it: in CI these tests run

RAY_DOUBLES = "ttsadapt_test_doubles_ray"
PLUGINS = ("-p", DOUBLES, "-p", RAY_DOUBLES)
SWEEP = (
    '[[methods]]\nname = "double_anchor"\n\n'
    '[[methods]]\nname = "double_nudge"\nparams = { target_gain = [0.5, 0.9] }\n'
)


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_modules=[DOUBLES, RAY_DOUBLES], autoload=False)


@pytest.fixture()
def manifest(tmp_path):
    return make_corpus(tmp_path / "corpus")


def two_seeds(manifest: Path, **kw) -> str:
    return suite_text(manifest, **kw).replace("seeds = [0]", "seeds = [0, 1]")


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


TIMINGS = ("synth_s", "rtf", "first_audio_s", "peak_rss_mb", "peak_gpu_mb")


def records(results: Path, suite: str) -> dict:
    """Every run's records, scores and synthesis rows (no timings or provenance)."""
    out = {}
    for run_dir in sorted((results / suite / "runs").iterdir()):
        if not run_dir.is_dir():
            continue
        files: dict = {}
        for f in sorted(run_dir.rglob("*")):
            rel = f.relative_to(run_dir).as_posix()
            if f.is_dir() or rel.startswith("checkpoints") or rel in ("run.log", "run.json"):
                continue
            if rel in ("records/latency.json", "scores/latency.jsonl"):  # timings
                continue
            if rel.startswith("records/"):
                rec = json.loads(f.read_text())
                rec.pop("provenance")
                files[rel] = rec
            elif rel == "synthesis.jsonl":
                files[rel] = [
                    {k: v for k, v in json.loads(line).items() if k not in TIMINGS}
                    for line in f.read_text().splitlines()
                ]
            elif f.suffix in (".json", ".jsonl"):
                files[rel] = f.read_text()
            else:
                files[rel] = f.read_bytes()
        out[run_dir.name] = files
    return out


def assert_same_records(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for run_id in a:
        assert sorted(a[run_id]) == sorted(b[run_id]), run_id
        for rel, value in a[run_id].items():
            other = b[run_id][rel]
            if rel.startswith("records/"):
                for out, stats in value["outputs"].items():
                    for key in ("mean", "ci_low", "ci_high"):
                        assert math.isclose(
                            stats[key], other["outputs"][out][key], rel_tol=1e-9, abs_tol=1e-12
                        ), (run_id, rel, out, key)
                rest = {k: v for k, v in value.items() if k != "outputs"}
                assert rest == {k: v for k, v in other.items() if k != "outputs"}, (run_id, rel)
            else:
                assert value == other, (run_id, rel)


def ray_cli(*args: str, env: dict | None = None, timeout: int = 400):
    return cli(
        *PLUGINS, *args, "--executor", "ray", "--ray-num-cpus", "2", env=env, timeout=timeout
    )


def ledger_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        run_id = line.split()[0]
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts


# --------------------------------------------------------------------------- resources


def test_resources_come_from_backbone_method_and_suite(tmp_path, manifest, registry):
    text = suite_text(manifest, backbone_params="").replace(
        'name = "double_tone"', 'name = "double_heavy_tone"'
    )
    suite = load_suite(write(tmp_path, "heavy", text), registry)
    run = suite.runs[0]
    # the backbone's declaration; no GPU on a cluster without one when the device is auto
    assert run_resources(run, registry, suite.spec, None, cluster_gpus=0) == {
        "num_cpus": 2,
        "num_gpus": 0,
        "memory_gb": 0.25,
    }
    assert run_resources(run, registry, suite.spec, None, cluster_gpus=4)["num_gpus"] == 1
    assert run_resources(run, registry, suite.spec, "cpu", cluster_gpus=4)["num_gpus"] == 0
    with pytest.raises(ConfigError, match="has no GPU"):
        run_resources(run, registry, suite.spec, "cuda", cluster_gpus=0)
    # the suite's [resources] table wins over the declarations
    text2 = text + "\n[resources]\nnum_cpus = 1\nnum_gpus = 2\n"
    suite2 = load_suite(write(tmp_path, "heavy2", text2), registry)
    res = run_resources(suite2.runs[0], registry, suite2.spec, None, cluster_gpus=8)
    assert res == {"num_cpus": 1, "num_gpus": 2, "memory_gb": 0.25}
    # a run no node can hold is an error naming it, not a task that waits forever
    with pytest.raises(ConfigError, match=r"needs CPU=1, GPU=2.*largest node.*GPU=1"):
        _check_fits(suite2.runs[0], res, [{"CPU": 16.0, "GPU": 1.0, "memory": 64 * 2.0**30}])
    # a mistake in the table is named with its field
    bad = text + "\n[resources]\ngpus = 1\n"
    with pytest.raises(ConfigError, match=r"field resources\.gpus: unknown key"):
        load_suite(write(tmp_path, "bad", bad), registry)


def test_ls_shows_declared_resources():
    r = cli(*PLUGINS, "ls", "backbones", "--json")
    assert r.returncode == 0, r.stderr
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert rows["double_heavy_tone"]["resources"] == {
        "num_cpus": 2,
        "num_gpus": 1,
        "memory_gb": 0.25,
    }
    assert rows["double_tone"]["resources"]["num_cpus"] == 1


# --------------------------------------------------------------------------- ray


def test_ray_gives_the_local_executors_records(tmp_path, manifest, registry):
    """Two seeds × (anchor + a 2-value sweep) on a 2-CPU local cluster, in-process driver."""
    text = two_seeds(manifest, methods=SWEEP).replace(
        'name = "double_tone"', 'name = "double_heavy_tone"'
    )
    text += "\n[resources]\nnum_cpus = 1\n"
    path = write(tmp_path, "t", text)
    suite = load_suite(path, registry)
    assert len(suite.runs) == 6
    local = SuiteRunner(suite, registry, results=tmp_path / "local").run()
    assert local.counts() == {"ok": 6}

    suite = load_suite(path, registry)
    runner = SuiteRunner(suite, registry, results=tmp_path / "ray")
    log = tmp_path / "driver.txt"
    with open(log, "w") as out:
        executor = RayExecutor(
            runner, num_cpus=2, plugins=((), (DOUBLES, RAY_DOUBLES)), out=out, refresh_s=0.2
        )
        summary = runner.run(executor)
    assert summary.counts() == {"ok": 6}
    assert_same_records(records(tmp_path / "local", "t"), records(tmp_path / "ray", "t"))
    # each task had the resources its backbone declares, with the suite's override
    for row in executor.table.rows.values():
        assert row.state == "done" and row.resources["num_cpus"] == 1
        assert row.resources["num_gpus"] == 0 and row.resources["memory_gb"] == 0.25
    # the status table and each run's log were shown while the tasks ran
    shown = log.read_text()
    assert "[ray] 6 runs: 6 queued, 0 running, 0 done, 0 failed" in shown
    assert "[ray] 6 runs: 0 queued, 0 running, 6 done, 0 failed" in shown
    for run in suite.runs:
        run_log = tmp_path / "ray" / "t" / "runs" / run.run_id / "run.log"
        assert f"[ray] done: {run.run_id}" in shown and str(run_log) in shown
        assert run_log.is_file()
    # and re-running with Ray skips everything
    again = SuiteRunner(load_suite(path, registry), registry, results=tmp_path / "ray")
    with open(os.devnull, "w") as out:
        summary = again.run(
            RayExecutor(again, num_cpus=2, plugins=((), (DOUBLES, RAY_DOUBLES)), out=out)
        )
    assert summary.counts() == {"skipped": 6}


def test_a_dying_worker_is_retried_then_the_run_is_recorded_failed(tmp_path, manifest):
    once, always = tmp_path / "once.count", tmp_path / "always.count"
    methods = (
        '[[methods]]\nname = "double_anchor"\n\n'
        f'[[methods]]\nname = "double_crash"\nparams = {{ marker = "{once}", crash_times = 1 }}\n\n'
        f'[[methods]]\nname = "double_crash"\nparams = {{ marker = "{always}", crash_times = 99 }}\n'
    )
    path = write(tmp_path, "t", two_seeds(manifest, methods=methods).replace("[0, 1]", "[0]"))
    ledger = tmp_path / "ledger.txt"
    r = ray_cli(
        "run",
        str(path),
        "--results",
        str(tmp_path / "res"),
        "--no-leaderboard",
        "--max-retries",
        "2",
        env={"TTSADAPT_TEST_LEDGER": str(ledger)},
    )
    assert r.returncode == 1, r.stdout + r.stderr  # one run failed
    assert "suite t: 1 failed, 2 ok (3 planned)" in r.stdout
    runs = {p.name: p for p in (tmp_path / "res" / "t" / "runs").iterdir() if p.is_dir()}
    assert len(runs) == 3
    # the worker that died once: retried, completed, nothing left from the dead attempt
    assert once.read_text() == "2"
    crashed_once = next(p for p in runs.values() if str(once) in (p / "config.json").read_text())
    assert json.loads((crashed_once / "DONE").read_text())["status"] == "ok"
    assert not (crashed_once / "about_to_die.txt").exists()
    assert len(list((crashed_once / "records").glob("*.json"))) == 2  # + latency
    assert "(attempt 2, a worker died)" in r.stderr
    # the worker that always dies: 1 + 2 retries, then recorded failed with the reason
    assert always.read_text() == "3"
    lost = next(p for p in runs.values() if p != crashed_once and "crash" in p.name)
    assert json.loads((lost / "DONE").read_text())["status"] == "failed"
    error = (lost / "error.txt").read_text()
    assert "worker died on each of 3 attempts" in error
    info = json.loads((lost / "run.json").read_text())
    assert info["status"] == "failed" and info["run_id"] == lost.name
    assert (lost / "run.log").is_file()  # what the dead workers logged is kept
    assert f"failed: {lost.name}" in r.stdout
    # every start is in the ledger: the anchor once, the others once per attempt
    counts = ledger_counts(ledger)
    assert counts[crashed_once.name] == 2 and counts[lost.name] == 3
    assert sorted(counts.values()) == [1, 2, 3]


def _default_sigint() -> None:
    """A shell's background job inherits SIGINT ignored, and Python then keeps ignoring it: give
    the driver the default, so Ctrl-C (here SIGINT) interrupts it as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn_ray(path: Path, results: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttsadapt",
            *PLUGINS,
            "run",
            str(path),
            "--results",
            str(results),
            "--no-leaderboard",
            "--executor",
            "ray",
            "--ray-num-cpus",
            "2",
        ],
        env={**os.environ, "PYTHONPATH": str(SUPPORT), "TQDM_DISABLE": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


SLOW = "params = { sleep_s = 0.15 }"


def test_interrupting_the_driver_then_rerunning_resumes(tmp_path, manifest):
    path = write(tmp_path, "t", two_seeds(manifest, methods=SWEEP, backbone_params=SLOW))
    r = cli(*PLUGINS, "run", str(path), "--results", str(tmp_path / "clean"), "--no-leaderboard")
    assert r.returncode == 0, r.stderr
    res = tmp_path / "res"
    proc = _spawn_ray(path, res, {})
    deadline = time.time() + 240
    while time.time() < deadline and not list(res.glob("t/runs/*/DONE")):
        time.sleep(0.2)
    assert list(res.glob("t/runs/*/DONE")), "no run finished before the interrupt"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted; re-run the same command to resume" in err
    done = len(list(res.glob("t/runs/*/DONE")))
    assert done < 6, "every run finished before the interrupt; nothing to resume"
    r = ray_cli("run", str(path), "--results", str(res), "--no-leaderboard")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{done} skipped" in r.stdout
    assert_same_records(records(tmp_path / "clean", "t"), records(res, "t"))
    assert not list(res.rglob("*.tmp"))


def test_two_drivers_on_one_results_folder_with_overlapping_suites(tmp_path, manifest):
    """Ray and local drivers at once: seeds [0, 1] and [1, 2] share the seed-1 runs."""
    a = write(tmp_path, "a", two_seeds(manifest, methods=SWEEP, backbone_params=SLOW))
    b = write(
        tmp_path,
        "b",
        two_seeds(manifest, methods=SWEEP, backbone_params=SLOW).replace(
            "seeds = [0, 1]", "seeds = [1, 2]"
        ),
    )
    res, ledger = tmp_path / "res", tmp_path / "ledger.txt"
    env = {"TTSADAPT_TEST_LEDGER": str(ledger)}
    ray_proc = _spawn_ray(a, res, env)
    local_proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttsadapt",
            *PLUGINS,
            "run",
            str(b),
            "--results",
            str(res),
            "--no-leaderboard",
        ],
        env={**os.environ, "PYTHONPATH": str(SUPPORT), "TQDM_DISABLE": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out_a, out_b = ray_proc.communicate(timeout=400), local_proc.communicate(timeout=400)
    assert ray_proc.returncode == 0 and local_proc.returncode == 0, (out_a, out_b)
    runs = [p for p in (res / "t" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 9  # 3 seeds × 3 systems, the seed-1 ones shared
    # every run executed exactly once, by one of the two drivers
    counts = ledger_counts(ledger)
    assert sorted(counts) == sorted(p.name for p in runs)
    assert set(counts.values()) == {1}
    # no corrupted file: every JSON parses, every wav reads, no temporary file left
    for run_dir in runs:
        assert json.loads((run_dir / "DONE").read_text())["status"] == "ok"
        assert len(list((run_dir / "records").glob("*.json"))) == 2  # + latency
        for f in run_dir.rglob("*.json"):
            json.loads(f.read_text())
        for f in run_dir.rglob("*.jsonl"):
            [json.loads(line) for line in f.read_text().splitlines()]
        for f in run_dir.rglob("*.wav"):
            assert sf.info(str(f)).frames > 0
    assert not list(res.rglob("*.tmp"))
    # the overlap went to one driver or the other and each says so
    r = cli(*PLUGINS, "run", str(b), "--results", str(res), "--no-leaderboard")
    assert "6 skipped" in r.stdout


# --------------------------------------------------------------------------- score cache

CACHE_WRITER = """
import json, sys, time
from pathlib import Path
from ttsadapt.scoring import ScoreCache
from ttsadapt.types import ItemScore

path, who, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < start:  # both processes open the fresh file at the same moment
    time.sleep(0.001)
cache = ScoreCache(path)
seen = 0
for i in range(300):
    cache.put_many("m", [(f"{who}-{i}-{j}", ItemScore(f"{who}-{i}", {"v": i + j / 10})) for j in range(2)])
    other = "b" if who == "a" else "a"
    seen += len(cache.get_many([f"{other}-{k}-0" for k in range(max(0, i - 5), i)]))
cache.close()
print(json.dumps({"seen": seen}))
"""


def test_score_cache_takes_concurrent_writers_from_two_processes(tmp_path):
    """Two workers scoring at once share one cache file: every entry lands, none is torn."""
    path = tmp_path / "scores.sqlite"
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CACHE_WRITER, str(path), who, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    from ttsadapt.scoring import ScoreCache

    cache = ScoreCache(path)
    keys = [f"{w}-{i}-{j}" for w in "ab" for i in range(300) for j in range(2)]
    got = cache.get_many(keys)
    cache.close()
    assert len(got) == 1200
    for key, payload in got.items():
        _, i, j = key.split("-")
        assert payload["values"] == {"v": int(i) + int(j) / 10} and payload["error"] is None
    # the readers saw the other writer's committed entries while both were writing
    assert sum(json.loads(o[0])["seen"] for o in outs) > 0


def test_a_task_owning_two_gpus_runs_its_run_on_two_processes(tmp_path, manifest, registry):
    """A run asking for 2 GPUs is one Ray task that launches ``torchrun`` with 2 processes; rank
    0 writes the record store, rank 1 only its scratch folder. (The local cluster declares two
    GPUs it does not have; without CUDA the processes fall back to CPU and gloo.)"""
    ledger = tmp_path / "ledger.txt"
    text = suite_text(manifest, methods=SWEEP.replace("[0.5, 0.9]", "0.9"))
    path = write(tmp_path, "t", text + "\n[resources]\nnum_cpus = 1\nnum_gpus = 2\n")
    suite = load_suite(path, registry)
    runner = SuiteRunner(suite, registry, results=tmp_path / "res")
    os.environ["TTSADAPT_TEST_LEDGER"] = str(ledger)
    try:
        with open(os.devnull, "w") as devnull:
            executor = RayExecutor(
                runner,
                num_cpus=2,
                num_gpus=2,
                plugins=((), (DOUBLES, RAY_DOUBLES)),
                out=devnull,
            )
            summary = runner.run(executor)
    finally:
        del os.environ["TTSADAPT_TEST_LEDGER"]
    assert summary.counts() == {"ok": 2}, summary.outcomes
    # each run was started once per process: by two different processes, one of them rank 0
    lines = [line.split() for line in ledger.read_text().splitlines()]
    assert sorted(run_id for run_id, _ in lines) == sorted(2 * [r.run_id for r in suite.runs])
    for run in suite.runs:
        assert len({pid for run_id, pid in lines if run_id == run.run_id}) == 2
        run_dir = tmp_path / "res" / "t" / "runs" / run.run_id
        assert json.loads((run_dir / "DONE").read_text())["status"] == "ok"
        assert len(list((run_dir / "records").glob("*.json"))) == 2  # + latency
    local = SuiteRunner(load_suite(path, registry), registry, results=tmp_path / "local").run()
    assert local.counts() == {"ok": 2}
    assert_same_records(records(tmp_path / "local", "t"), records(tmp_path / "res", "t"))
