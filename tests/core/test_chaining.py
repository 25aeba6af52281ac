"""Chains inside a suite: a method's ``after`` names another [[methods]] entry (one setting of a
sweep, written as labels write it); planning validates it with one line naming file and field,
orders sources first and makes the source's training part of the dependent run's id; the runner
starts the dependent from the source run's folder (``init_run``) and fails it, naming the source,
when the source failed; the Ray executor holds a dependent back until its source finished."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import DOUBLES, make_corpus, suite_text

from ttsadapt.components import AdaptResult, Method, Params
from ttsadapt.errors import ConfigError
from ttsadapt.executors import Chains
from ttsadapt.markers import hookimpl
from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite

# ------------------------------------------------------------------ a method that can start
# from another run (test double: reads the tone backbone's saved gain, then nudges it)


class FromParams(Params):
    init_run: str | None = None
    target_gain: float = 0.2
    steps: int = 1


class DoubleFromMethod(Method):
    name = "double_from"
    description = "test double: starts from init_run's saved tone gain, then nudges it"
    Params = FromParams

    def adapt(self, backbone, data, ctx):
        import torch

        start = None
        if self.params.init_run:
            start = float((Path(self.params.init_run) / "adapter" / "gain.txt").read_text())
            with torch.no_grad():
                backbone.module.weight.fill_(start)
        w = backbone.module.weight
        for _ in range(self.params.steps):
            with torch.no_grad():
                w += 0.5 * (self.params.target_gain - w)
        return AdaptResult(
            trainable_params=1,
            total_params=1,
            stats={"start_gain": start, "init_run": self.params.init_run},
        )


@hookimpl
def ttsadapt_register_methods():
    return [DoubleFromMethod]


# ------------------------------------------------------------------ fixtures

NUDGE_SWEEP = '[[methods]]\nname = "double_nudge"\nparams = { target_gain = [0.5, 0.9] }\n'
ANCHOR = '[[methods]]\nname = "double_anchor"\n'


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_modules=[DOUBLES, __name__], autoload=False)


@pytest.fixture()
def manifest(tmp_path):
    return make_corpus(tmp_path / "corpus")


def write(tmp_path: Path, manifest: Path, methods: str, **kw) -> Path:
    path = tmp_path / "chain.toml"
    path.write_text(suite_text(manifest, name="chain", methods=methods, **kw))
    return path


def after(table: str, params: str = "") -> str:
    extra = f"params = {{ {params} }}\n" if params else ""
    return f'[[methods]]\nname = "double_from"\nafter = "{table}"\n{extra}'


# ------------------------------------------------------------------ planning


def test_after_picks_one_setting_of_a_sweep_and_orders_sources_first(tmp_path, manifest, registry):
    # the dependent is written first: planning still puts its source before it
    methods = after("double_nudge(target_gain=0.9)") + "\n" + ANCHOR + "\n" + NUDGE_SWEEP
    suite = load_suite(write(tmp_path, manifest, methods), registry)
    by_id = {r.run_id: r for r in suite.runs}
    (dep,) = [r for r in suite.runs if r.method == "double_from"]
    src = by_id[dep.after["run_id"]]
    assert src.method == "double_nudge" and src.method_params["target_gain"] == 0.9
    assert (src.backbone, src.data_recipe, src.seed) == (dep.backbone, dep.data_recipe, dep.seed)
    assert suite.runs.index(src) < suite.runs.index(dep)
    assert dep.after["train_id"] == src.train_id
    assert dep.after["label"] == "double_nudge(target_gain=0.9)"
    assert "double_from after double_nudge(target_gain=0.9) on spk-a" in dep.label()
    assert dep.config()["after"] == dep.after
    # runs without `after` say nothing new in their config
    assert all("after" not in r.config() for r in suite.runs if r is not dep)
    # the selector may be written as JSON or with spaces
    same = load_suite(
        write(
            tmp_path, manifest, ANCHOR + after("double_nudge( target_gain = 9e-1 )") + NUDGE_SWEEP
        ),
        registry,
    )
    assert [r.run_id for r in same.runs if r.method == "double_from"] == [dep.run_id]


def test_the_source_training_is_part_of_the_dependent_id(tmp_path, manifest, registry):
    def dependent_id(methods: str) -> str:
        suite = load_suite(write(tmp_path, manifest, methods), registry)
        return next(r.run_id for r in suite.runs if r.method == "double_from")

    base = dependent_id(ANCHOR + NUDGE_SWEEP + after("double_nudge(target_gain=0.9)"))
    other_setting = dependent_id(ANCHOR + NUDGE_SWEEP + after("double_nudge(target_gain=0.5)"))
    retrained = dependent_id(
        ANCHOR
        + NUDGE_SWEEP.replace("target_gain = [0.5, 0.9]", "target_gain = [0.5, 0.9], steps = 4")
        + after("double_nudge(target_gain=0.9)")
    )
    alone = dependent_id(ANCHOR + NUDGE_SWEEP + '[[methods]]\nname = "double_from"\n')
    assert len({base, other_setting, retrained, alone}) == 4
    assert base == dependent_id(ANCHOR + NUDGE_SWEEP + after("double_nudge(target_gain=0.9)"))


def test_each_seed_and_recipe_starts_from_its_own_source(tmp_path, manifest, registry):
    methods = ANCHOR + '[[methods]]\nname = "double_nudge"\n' + after("double_nudge")
    text = suite_text(manifest, name="chain", methods=methods).replace(
        "seeds = [0]", "seeds = [0, 1]"
    )
    text = text.replace(
        '[[data]]\nname = "spk-a"\nspeakers = ["a"]\n',
        '[[data]]\nname = "spk-a"\nspeakers = ["a"]\n\n[[data]]\nname = "spk-b"\nspeakers = ["b"]\n',
    )
    path = tmp_path / "seeds.toml"
    path.write_text(text)
    suite = load_suite(path, registry)
    by_id = {r.run_id: r for r in suite.runs}
    deps = [r for r in suite.runs if r.method == "double_from"]
    assert len(deps) == 4
    for dep in deps:
        src = by_id[dep.after["run_id"]]
        assert (src.method, src.seed, src.data_recipe) == (
            "double_nudge",
            dep.seed,
            dep.data_recipe,
        )
        assert suite.runs.index(src) < suite.runs.index(dep)
        assert dep.label().endswith(
            f"double_from after double_nudge on {dep.data_recipe} · seed {dep.seed}"
        )


def test_a_chain_of_chains_shows_the_whole_chain(tmp_path, manifest, registry):
    methods = (
        ANCHOR
        + '[[methods]]\nname = "double_nudge"\n'
        + after("double_nudge", "steps = 1")
        + after("double_from(steps=1)", "steps = 2")
    )
    suite = load_suite(write(tmp_path, manifest, methods), registry)
    last = next(r for r in suite.runs if r.method_params.get("steps") == 2)
    assert last.after["label"] == "double_from(steps=1) after double_nudge"
    assert last.after["system"][3][0] == "double_nudge"  # the source's own chain, no seeds
    order = [r.run_id for r in suite.runs]
    assert order.index(last.after["run_id"]) < order.index(last.run_id)


BAD_AFTER = [
    (after("double_nudge"), "methods[2].after: 'double_nudge' matches 2 of the settings"),
    (after("double_nudge(target_gain=0.7)"), "matches none of the settings of 'double_nudge'"),
    (after("double_nudge(gain=0.9)"), "method 'double_nudge' has no parameter 'gain'"),
    (after("double_nudg"), "no other [[methods]] entry named 'double_nudg'"),
    (after("double_anchor"), "method 'double_anchor' does not train"),
    (after("double_nudge(target_gain)"), "expected a method name"),
    (
        after("double_nudge(target_gain=0.9)", 'init_run = "x"'),
        "give either `after` or params.init_run",
    ),
    (
        '[[methods]]\nname = "double_nudge"\nafter = "double_from"\n' + after("double_nudge"),
        "methods[1].after: method 'double_nudge' cannot start from another run",
    ),
]


@pytest.mark.parametrize("extra,expected", BAD_AFTER)
def test_bad_after_names_file_and_field(tmp_path, manifest, registry, extra, expected):
    base = ANCHOR + NUDGE_SWEEP if "double_from" in extra.split("\n")[1] else ANCHOR
    path = write(tmp_path, manifest, base + extra)
    with pytest.raises(ConfigError) as err:
        load_suite(path, registry)
    msg = str(err.value)
    assert msg.startswith(f"{path}: field methods[") and "\n" not in msg
    assert expected in msg


def test_a_cycle_and_a_missing_recipe_are_errors(tmp_path, manifest, registry):
    cycle = (
        ANCHOR
        + after("double_from(steps=2)", "steps = 1")
        + after("double_from(steps=1)", "steps = 2")
    )
    with pytest.raises(ConfigError, match=r"methods\[1\]\.after: .* closes a cycle"):
        load_suite(write(tmp_path, manifest, cycle), registry)
    two_recipes = suite_text(
        manifest,
        name="chain",
        methods=ANCHOR
        + '[[methods]]\nname = "double_nudge"\ndata = ["spk-a"]\n'
        + after("double_nudge"),
    ).replace(
        '[[data]]\nname = "spk-a"\nspeakers = ["a"]\n',
        '[[data]]\nname = "spk-a"\nspeakers = ["a"]\n\n[[data]]\nname = "spk-b"\nspeakers = ["b"]\n',
    )
    path = tmp_path / "recipes.toml"
    path.write_text(two_recipes)
    with pytest.raises(ConfigError, match=r"methods\[2\]\.after: .*data recipe 'spk-b'"):
        load_suite(path, registry)


def test_real_preference_methods_take_after_and_lora_does_not(tmp_path, manifest):
    registry = build_registry(autoload=False)
    head = suite_text(manifest, name="real", methods="").split("[[backbones]]")[0]
    head = head.replace('anchor = "double_anchor"', 'anchor = "zero_shot"')
    tail = (
        '[[backbones]]\nname = "kokoro"\n\n[[methods]]\nname = "zero_shot"\n\n'
        '[[methods]]\nname = "lora"\nparams = { rank = [4, 8] }\n\n'
        '[[methods]]\nname = "grpo"\nafter = "lora(rank=4)"\n\n'
        '[[methods]]\nname = "dpo"\nafter = "lora(rank=8)"\n\n'
        '[[metrics]]\nname = "cer"\n'
    )
    path = tmp_path / "real.toml"
    path.write_text(head + tail)
    suite = load_suite(path, registry)
    labels = [r.label() for r in suite.runs]
    assert any("grpo after lora(rank=4)" in lab for lab in labels)
    assert any("dpo after lora(rank=8)" in lab for lab in labels)
    path.write_text(head + tail.replace('name = "grpo"\nafter', 'name = "full_ft"\nafter'))
    with pytest.raises(ConfigError, match=r"methods\[2\]\.after: method 'full_ft' cannot start"):
        load_suite(path, registry)


# ------------------------------------------------------------------ running


def test_the_dependent_starts_from_its_source_and_fails_when_it_failed(
    tmp_path, manifest, registry
):
    methods = ANCHOR + NUDGE_SWEEP + after("double_nudge(target_gain=0.9)")
    suite = load_suite(write(tmp_path, manifest, methods), registry)
    summary = SuiteRunner(suite, registry, results=tmp_path / "results").run()
    assert summary.counts() == {"ok": 4}, [o.error for o in summary.outcomes]
    runs = tmp_path / "results" / "chain" / "runs"
    dep = next(r for r in suite.runs if r.method == "double_from")
    src_dir = runs / dep.after["run_id"]
    trained = float((src_dir / "adapter" / "gain.txt").read_text())
    stats = json.loads((runs / dep.run_id / "run.json").read_text())["adapt"]["stats"]
    assert stats["init_run"] == str(src_dir)
    assert stats["start_gain"] == pytest.approx(trained)
    record = json.loads((runs / dep.run_id / "records" / "double_rms.json").read_text())
    assert record["after"]["run_id"] == dep.after["run_id"]
    assert record["method_params"]["init_run"] is None  # the suite's params, as planned
    src_record = json.loads((src_dir / "records" / "double_rms.json").read_text())
    assert "after" not in src_record

    # the source fails: the dependent fails at once, naming it and its error
    failing = NUDGE_SWEEP.replace(
        "target_gain = [0.5, 0.9]", "target_gain = [0.5, 0.9], fail = true"
    )
    suite = load_suite(
        write(tmp_path, manifest, ANCHOR + failing + after("double_nudge(target_gain=0.9)")),
        registry,
    )
    summary = SuiteRunner(suite, registry, results=tmp_path / "results").run()
    dep = next(r for r in suite.runs if r.method == "double_from")
    outcome = next(o for o in summary.outcomes if o.run_id == dep.run_id)
    assert outcome.status == "failed"
    assert (
        f"starts after run {dep.after['run_id']} (double_nudge(target_gain=0.9))" in outcome.error
    )
    assert "double_nudge was told to fail" in outcome.error


def test_ray_chains_hold_a_dependent_until_its_source_finished():
    def run(run_id, source=None):
        return SimpleNamespace(run_id=run_id, after={"run_id": source} if source else None)

    a, b = run("a"), run("b")
    a2, a3, c = run("a2", "a"), run("a3", "a2"), run("c", "done-earlier")
    chains = Chains([a, b, a2, a3, c])
    assert [r.run_id for r in chains.ready] == ["a", "b", "c"]  # c's source is not in the batch
    assert [r.run_id for r in chains.waiting()] == ["a2", "a3"]
    assert chains.finished("b") == []
    assert chains.finished("a") == [a2]
    assert chains.finished("a2") == [a3]
    assert chains.waiting() == []


def test_grpo_after_lora_starts_from_the_lora_adapter_on_a_tiny_neutts(tmp_path):
    """The real methods: ``lora`` trains a LoRA adapter on the tiny NeuTTS, ``grpo`` (after it)
    loads that adapter as its starting point and reference, trains on, and both are scored."""
    manifest = make_corpus(tmp_path / "corpus", speakers=("a",), n_train=4, n_eval=2)
    backbone = {
        "model": "tiny",
        "codec": "mel_vq",
        "codec_fit": str(manifest),
        "mel_vq_codes": 32,
        "codebook_size": 256,
        "tiny_hidden": 32,
        "max_length": 260,
        "min_new_tokens": 5,
    }
    bparams = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in backbone.items()) + " }"
    reward = (
        "reward_weights = { double_rms = 1.0 }, reward_anchors = { double_rms = [[-60.0, 0.0], "
        "[0.0, 1.0]] }, gate_require_stop = false, gate_min_duration_s = 0.0, gate_min_s_per_char"
        " = 0.0, gate_max_s_per_char = 100.0, gate_max_silence = 1.0, k = 3, max_steps = 1, "
        "prompts_per_step = 1"
    )
    path = tmp_path / "neutts.toml"
    path.write_text(
        f"""name = "neutts-chain"
anchor = "zero_shot"

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
params = {bparams}

[[methods]]
name = "zero_shot"

[[methods]]
name = "lora"
params = {{ max_steps = 2, batch_size = 2, grad_accum = 1, warmup_steps = 0, val_every = 2, save_every = 2, rank = 4 }}

[[methods]]
name = "grpo"
after = "lora"
params = {{ {reward}, rank = 4 }}

[[metrics]]
name = "double_rms"
"""
    )
    registry = build_registry(extra_modules=[DOUBLES], autoload=False)
    suite = load_suite(path, registry)
    summary = SuiteRunner(suite, registry, results=tmp_path / "results").run()
    assert summary.counts() == {"ok": 3}, [o.error for o in summary.outcomes]
    grpo = next(r for r in suite.runs if r.method == "grpo")
    lora = next(r for r in suite.runs if r.method == "lora")
    assert grpo.after["run_id"] == lora.run_id and grpo.label().count("grpo after lora") == 1
    runs = tmp_path / "results" / "neutts-chain" / "runs"
    log = (runs / grpo.run_id / "run.log").read_text()
    assert f"starting from the LoRA adapter in {runs / lora.run_id / 'adapter'}" in log
    assert (runs / grpo.run_id / "adapter" / "adapter_config.json").is_file()


def test_ray_runs_the_dependent_once_its_source_finished(tmp_path, manifest, registry):
    """On a 2-CPU local cluster the source (slow) and the anchor start together; the dependent
    is submitted only after its source is done, and starts from its weights."""
    pytest.importorskip("ray")
    from ttsadapt.executors import RayExecutor

    methods = (
        ANCHOR
        + '[[methods]]\nname = "double_nudge"\nparams = { sleep_s = 1.0 }\n'
        + after("double_nudge")
    )
    text = suite_text(manifest, name="chain", methods=methods) + "\n[resources]\nnum_cpus = 1\n"
    path = tmp_path / "chain.toml"
    path.write_text(text)
    suite = load_suite(path, registry)
    runner = SuiteRunner(suite, registry, results=tmp_path / "results")
    log = tmp_path / "driver.txt"
    with open(log, "w") as out:
        executor = RayExecutor(
            runner, num_cpus=2, plugins=((), (DOUBLES, __name__)), out=out, refresh_s=0.2
        )
        summary = runner.run(executor)
    assert summary.counts() == {"ok": 3}, [o.error for o in summary.outcomes]
    dep = next(r for r in suite.runs if r.method == "double_from")
    source = dep.after["run_id"]
    shown = log.read_text()
    assert "[ray] 3 runs: 2 queued, 0 running, 0 done, 0 failed, 1 waiting" in shown
    assert shown.index(f"[ray] done: {source}") < shown.index(f"[ray] running: {dep.run_id}")
    runs = tmp_path / "results" / "chain" / "runs"
    stats = json.loads((runs / dep.run_id / "run.json").read_text())["adapt"]["stats"]
    trained = float((runs / source / "adapter" / "gain.txt").read_text())
    assert stats["start_gain"] == pytest.approx(trained)


def test_with_synthesis_settings_each_setting_starts_from_the_same_training(tmp_path, manifest):
    """With a [synthesis] sweep the dependent's settings share one training (trained once, from
    the source's shared adapter); each setting's run names the source run of its own setting."""
    registry = build_registry(
        extra_modules=[DOUBLES, "ttsadapt_test_doubles_synthesis", __name__], autoload=False
    )
    methods = ANCHOR + '[[methods]]\nname = "double_nudge"\n' + after("double_nudge")
    text = suite_text(manifest, name="chain", methods=methods, extra="")
    text = text.replace('name = "double_tone"', 'name = "double_decode"')
    path = tmp_path / "chain.toml"
    path.write_text(text + "\n[synthesis]\ntemperature = [0.5, 1.0]\n")
    suite = load_suite(path, registry)
    by_id = {r.run_id: r for r in suite.runs}
    deps = [r for r in suite.runs if r.method == "double_from"]
    assert len(deps) == 2 and len({r.train_id for r in deps}) == 1
    for dep in deps:
        assert by_id[dep.after["run_id"]].synthesis == dep.synthesis
    summary = SuiteRunner(suite, registry, results=tmp_path / "results").run()
    assert summary.counts() == {"ok": 6}, [o.error for o in summary.outcomes]
    runs = tmp_path / "results" / "chain" / "runs"
    infos = [json.loads((runs / d.run_id / "run.json").read_text()) for d in deps]
    assert sorted(i["training"]["reused"] for i in infos) == [False, True]
    source = next(r for r in suite.runs if r.method == "double_nudge")
    trained = float((runs / source.run_id / "adapter" / "gain.txt").read_text())
    assert infos[0]["adapt"]["stats"]["start_gain"] == pytest.approx(trained)
