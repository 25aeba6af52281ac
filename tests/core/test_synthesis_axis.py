"""The ``[synthesis]`` axis: decoding settings evaluate one trained checkpoint several ways."""

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf
from helpers import DOUBLES, REPO, make_corpus

from ttsadapt.errors import ConfigError
from ttsadapt.leaderboard import build_leaderboard, load_results, summarise
from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite

SYNTH = "ttsadapt_test_doubles_synthesis"


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_modules=[DOUBLES, SYNTH], autoload=False)


@pytest.fixture()
def manifest(tmp_path):
    return make_corpus(tmp_path / "corpus")


def suite_file(tmp_path, manifest, synthesis: str = "", backbone: str = "double_decode"):
    path = tmp_path / "s.toml"
    path.write_text(
        f"""name = "s"
anchor = "double_anchor"
{synthesis}
[corpus]
manifest = "{manifest}"

[[data]]
name = "spk-a"
speakers = ["a"]

[evaluation]
split = "eval"
max_items = 4

[[backbones]]
name = "{backbone}"

[[methods]]
name = "double_anchor"

[[methods]]
name = "double_count"

[[metrics]]
name = "double_rms"
"""
    )
    return path


def test_quick_suite_run_ids_are_unchanged():
    """Without a [synthesis] table a run id is what it always was: backbone-method-hash of the
    identity below (existing results keep loading; the formula is restated here on purpose)."""
    reg = build_registry()
    suite = load_suite(REPO / "benchmarks" / "quick.toml", reg)
    spec = suite.spec
    assert len(suite.runs) == 9
    # a literal list value (lm_lora's projections = [["query", "key", "value"]]) is not a sweep
    # axis, so it is not in the run's label
    assert not any("projections" in r.label() for r in suite.runs)
    for run in suite.runs:
        identity = {
            "suite": spec.name,
            "corpus": spec.corpus.model_dump(exclude_none=True),
            "evaluation": spec.evaluation.model_dump(mode="json"),
            "backbone": [run.backbone, run.backbone_version, run.backbone_params],
            "method": [run.method, run.method_version, run.method_params],
            "recipe": run.recipe,
            "seed": run.seed,
        }
        if run.after:  # a chained run (`after = ...`): its source's training is part of it
            identity["after"] = [run.after["train_id"]]
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
        assert run.run_id == f"{run.backbone}-{run.method}-{digest}"
        assert run.train_id == run.run_id and run.synthesis == {}


def test_settings_multiply_runs_and_share_the_training_id(tmp_path, manifest, registry):
    plain = load_suite(suite_file(tmp_path, manifest), registry)
    swept = load_suite(
        suite_file(tmp_path, manifest, "[synthesis]\ntemperature = [0.5, 1]\n"), registry
    )
    assert len(plain.runs) == 2 and len(swept.runs) == 4
    plain_ids = {r.run_id for r in plain.runs}
    # the training id of a swept run is the id the run has without the table
    assert {r.train_id for r in swept.runs} == plain_ids
    assert not plain_ids & {r.run_id for r in swept.runs}
    by_train: dict[str, list] = {}
    for r in swept.runs:
        by_train.setdefault(r.train_id, []).append(r)
    assert sorted(len(v) for v in by_train.values()) == [2, 2]
    for runs in by_train.values():
        assert sorted(r.synthesis["temperature"] for r in runs) == [0.5, 1.0]  # 1 -> 1.0
        assert len({r.run_id for r in runs}) == 2
    assert "temperature=0.5" in swept.runs[0].label()


@pytest.mark.parametrize(
    "table, where, what",
    [
        ("[synthesis]\nbeam = [1, 2]\n", "field synthesis.beam", "unknown key"),
        ("[synthesis]\ntemperature = [0.5, -1.0]\n", "field synthesis.temperature", "greater"),
        ('[synthesis]\nint8 = "yes"\n', "field synthesis.int8", "boolean"),
        ("[synthesis]\ntemperature = []\n", "field synthesis", "empty"),
    ],
)
def test_bad_settings_name_the_file_and_field(tmp_path, manifest, registry, table, where, what):
    path = suite_file(tmp_path, manifest, table)
    with pytest.raises(ConfigError) as exc:
        load_suite(path, registry)
    msg = str(exc.value)
    assert str(path) in msg and where in msg and what in msg, msg


def test_a_backbone_without_settings_rejects_the_table(tmp_path, manifest, registry):
    path = suite_file(tmp_path, manifest, "[synthesis]\ntemperature = 0.5\n", "double_tone")
    with pytest.raises(ConfigError, match=r"double_tone.*declares no synthesis settings"):
        load_suite(path, registry)


def test_real_backbones_validate_their_own_settings(tmp_path, manifest):
    reg = build_registry()
    for backbone, table, n_settings, bad in (
        ("neutts", "temperature = [0.7, 1.0]\ntop_k = 20\nint8 = [false, true]", 4, "cfg_value"),
        ("voxcpm2", "cfg_value = [1.5, 2.0]\ninference_timesteps = 4\nint8 = true", 2, "top_k"),
    ):
        path = suite_file(tmp_path, manifest, f"[synthesis]\n{table}\n", backbone)
        text = (
            path.read_text().replace("double_count", "lora").replace("double_anchor", "zero_shot")
        )
        path.write_text(text.replace("double_rms", "wada_snr"))
        suite = load_suite(path, reg)
        assert len(suite.runs) == 2 * n_settings  # (zero_shot + lora on spk-a) x settings
        keys = {line.split(" =")[0] for line in table.splitlines()}
        assert all(set(r.synthesis) == keys for r in suite.runs)
        assert len({r.train_id for r in suite.runs}) == 2
        path.write_text(path.read_text().replace("[synthesis]\n", f"[synthesis]\n{bad} = 1\n"))
        with pytest.raises(ConfigError, match=f"field synthesis.{bad}: unknown key"):
            load_suite(path, reg)


def _rms(path):
    audio, _ = sf.read(path)
    return float(np.sqrt(np.mean(audio**2)))


def test_adding_a_setting_resynthesises_without_retraining(tmp_path, manifest, registry):
    from ttsadapt_test_doubles_synthesis import DoubleCountMethod

    res = tmp_path / "res"
    DoubleCountMethod.calls = 0
    one = load_suite(suite_file(tmp_path, manifest, "[synthesis]\ntemperature = [0.5]\n"), registry)
    summary = SuiteRunner(one, registry, results=res).run()
    assert summary.counts() == {"ok": 2}
    assert DoubleCountMethod.calls == 1
    trained = one.runs[1]
    assert trained.method == "double_count"
    first = json.loads((res / "s/runs" / trained.run_id / "run.json").read_text())
    assert first["training"] == {
        "train_id": trained.train_id,
        "dir": f"trained/{trained.train_id}",
        "reused": False,
    }
    assert (res / "s/trained" / trained.train_id / "adapter/gain.txt").is_file()

    two = load_suite(
        suite_file(tmp_path, manifest, "[synthesis]\ntemperature = [0.5, 1.0]\n"), registry
    )
    summary = SuiteRunner(two, registry, results=res).run()
    assert summary.counts() == {"skipped": 2, "ok": 2}
    assert DoubleCountMethod.calls == 1  # the new setting reused the trained adapter
    new = next(r for r in two.runs if r.method == "double_count" and r.run_id != trained.run_id)
    assert new.train_id == trained.train_id
    run_dir = res / "s/runs" / new.run_id
    info = json.loads((run_dir / "run.json").read_text())
    assert info["training"]["reused"] is True
    assert info["adapt"] == first["adapt"]
    assert (run_dir / "curves.jsonl").read_text() == (
        res / "s/runs" / trained.run_id / "curves.jsonl"
    ).read_text()
    assert (run_dir / "adapter" / "gain.txt").is_file()  # the link to the shared adapter
    # the reused adapter is the trained one: same gain, audio level follows the temperature only
    item = sorted((run_dir / "audio").glob("*.wav"))[0].name
    ratio = _rms(run_dir / "audio" / item) / _rms(res / "s/runs" / trained.run_id / "audio" / item)
    assert ratio == pytest.approx(2.0, rel=1e-3)
    rec = json.loads((run_dir / "records/double_rms.json").read_text())
    assert rec["synthesis_settings"] == {"temperature": 1.0} and rec["train_id"] == new.train_id

    # overwrite=always retrains once per training identity, not once per setting
    SuiteRunner(two, registry, results=res, overwrite="always").run()
    assert DoubleCountMethod.calls == 2

    # the leaderboard: one row per setting, each compared with the anchor decoded the same way
    summary = summarise(load_results(res / "s"))
    labels = set(summary.systems["label"])
    assert {
        "double_decode / double_count / spk-a / temperature=0.5",
        "double_decode / double_count / spk-a / temperature=1.0",
        "double_decode / double_anchor / temperature=0.5",
        "double_decode / double_anchor / temperature=1.0",
    } <= labels, labels
    assert not any("several anchor systems" in n for n in summary.notes)
    label = dict(zip(summary.systems["system"], summary.systems["label"]))
    rms = summary.table[summary.table["metric"] == "double_rms"]
    adapted = rms[rms["system"].map(label).str.contains("double_count")]
    # same temperature on both sides: the delta is the adapter's gain alone, equal across settings
    deltas = adapted["delta"].to_numpy(float)
    assert len(deltas) == 2 and np.isfinite(deltas).all()
    assert deltas[0] == pytest.approx(deltas[1], abs=1e-6)
    board = build_leaderboard(res, "s")["md"].read_text()
    assert "temperature=1.0" in board and "latency" in board
    # the pandas view has the setting as a column
    import ttsadapt

    tidy = ttsadapt.load_results(res / "s")
    assert set(tidy["synthesis.temperature"].dropna()) == {0.5, 1.0}


def test_runs_without_a_table_keep_their_folders(tmp_path, manifest, registry):
    res = tmp_path / "res"
    suite = load_suite(suite_file(tmp_path, manifest), registry)
    SuiteRunner(suite, registry, results=res).run()
    assert not (res / "s" / "trained").exists()
    for run in suite.runs:
        rec = json.loads((res / "s/runs" / run.run_id / "records/double_rms.json").read_text())
        assert rec["synthesis_settings"] == {} and rec["train_id"] == run.run_id
