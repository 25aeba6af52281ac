"""Suites: validation with one clear line naming file and field; sweeps; stable run ids."""

import pytest
from helpers import DOUBLES, cli, make_corpus, suite_text, write_suite

from ttsadapt.errors import ConfigError
from ttsadapt.registry import build_registry
from ttsadapt.suite import load_suite


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_modules=[DOUBLES], autoload=False)


@pytest.fixture()
def manifest(tmp_path):
    return make_corpus(tmp_path / "corpus")


def test_sweep_expands_and_anchor_has_no_recipe(tmp_path, manifest, registry):
    suite = load_suite(write_suite(tmp_path, manifest), registry)
    methods = sorted((r.method, r.method_params.get("target_gain")) for r in suite.runs)
    assert methods == [("double_anchor", None), ("double_nudge", 0.5), ("double_nudge", 0.9)]
    anchor = next(r for r in suite.runs if r.is_anchor)
    assert anchor.data_recipe is None
    trained = [r for r in suite.runs if not r.is_anchor]
    assert all(r.data_recipe == "spk-a" for r in trained)
    assert all("target_gain=" in r.label() for r in trained)
    # defaults are filled in, so the id reflects the resolved config
    assert trained[0].method_params["steps"] == 3


def test_run_ids_are_stable_and_change_with_params(tmp_path, manifest, registry):
    a = load_suite(write_suite(tmp_path, manifest), registry)
    b = load_suite(write_suite(tmp_path, manifest), registry)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    c = load_suite(
        write_suite(tmp_path, manifest, backbone_params="params = { f0_hz = 200.0 }"), registry
    )
    assert not {r.run_id for r in a.runs} & {r.run_id for r in c.runs}


def test_multiple_seeds(tmp_path, manifest, registry):
    text = suite_text(manifest).replace("seeds = [0]", "seeds = [0, 1, 2]")
    p = tmp_path / "seeds.toml"
    p.write_text(text)
    suite = load_suite(p, registry)
    assert len(suite.runs) == 9 and {r.seed for r in suite.runs} == {0, 1, 2}


BAD_CASES = [
    ("malformed", lambda t: t + "\nname = = 3\n", "malformed TOML"),
    (
        "unknown key",
        lambda t: t.replace('version = "1"', 'version = "1"\nflavour = "x"'),
        "field flavour: unknown key",
    ),
    ("wrong type", lambda t: t.replace("seeds = [0]", 'seeds = "zero"'), "field seeds"),
    (
        "unknown metric",
        lambda t: t.replace('name = "double_rms"', 'name = "double_rsm"'),
        "field metrics[0].name: unknown metric 'double_rsm'. Did you mean 'double_rms'",
    ),
    (
        "unknown backbone",
        lambda t: t.replace('name = "double_tone"', 'name = "tone"'),
        "field backbones[0].name: unknown backbone 'tone'",
    ),
    (
        "bad param",
        lambda t: t.replace("target_gain = [0.5, 0.9]", 'target_gain = ["high"]'),
        "field methods[1].params.target_gain",
    ),
    (
        "unknown param",
        lambda t: t.replace("target_gain = [0.5, 0.9]", "learning_rat = 1"),
        "field methods[1].params.learning_rat: unknown key",
    ),
    (
        "anchor missing",
        lambda t: t.replace('anchor = "double_anchor"', 'anchor = "zero"'),
        "field anchor",
    ),
    (
        "empty sweep",
        lambda t: t.replace("target_gain = [0.5, 0.9]", "target_gain = []"),
        "sweep over 'target_gain' is empty",
    ),
    ("no corpus", lambda t: t.replace("[corpus]", "[corpus_]"), "corpus"),
]


@pytest.mark.parametrize("case,edit,expected", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_invalid_suite_is_one_clear_error(tmp_path, manifest, registry, case, edit, expected):
    path = tmp_path / "bad.toml"
    path.write_text(edit(suite_text(manifest)))
    with pytest.raises(ConfigError) as info:
        load_suite(path, registry)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert expected in msg, msg
    assert "\n" not in msg


def test_validate_cli_prints_runs_and_exits_2_on_error(tmp_path, manifest):
    good = write_suite(tmp_path, manifest)
    r = cli("-p", DOUBLES, "validate", str(good))
    assert r.returncode == 0, r.stderr
    assert "3 planned runs" in r.stdout and "double_nudge(target_gain=0.9) on spk-a" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(suite_text(manifest).replace("seeds = [0]", "seeds = 0"))
    r = cli("-p", DOUBLES, "validate", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: field seeds")


def test_missing_suite_file(tmp_path):
    r = cli("validate", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "suite file not found" in r.stderr


def test_shipped_suites_validate():
    from helpers import REPO

    reg = build_registry(autoload=False)
    suites = sorted((REPO / "benchmarks").glob("*.toml"))
    assert suites, "benchmarks/ ships suites"
    for path in suites:
        suite = load_suite(path, reg)
        assert suite.runs and any(r.is_anchor for r in suite.runs)


def test_a_method_can_train_on_some_recipes_only(tmp_path, manifest, registry):
    """`data = [...]` on a method: it trains on the recipes named there, the others on all."""
    methods = (
        '[[methods]]\nname = "double_anchor"\n\n'
        '[[methods]]\nname = "double_nudge"\nparams = { target_gain = 0.5 }\ndata = ["spk-a"]\n\n'
        '[[methods]]\nname = "double_nudge"\nparams = { target_gain = 0.9 }\n'
    )
    text = suite_text(manifest, methods=methods).replace(
        '[[data]]\nname = "spk-a"',
        '[[data]]\nname = "spk-b"\nspeakers = ["a"]\n\n[[data]]\nname = "spk-a"',
    )
    p = tmp_path / "two.toml"
    p.write_text(text)
    runs = load_suite(p, registry).runs
    got = sorted((r.method_params["target_gain"], r.data_recipe) for r in runs if not r.is_anchor)
    assert got == [(0.5, "spk-a"), (0.9, "spk-a"), (0.9, "spk-b")]
    p.write_text(text.replace('data = ["spk-a"]', 'data = ["spk-c"]'))
    with pytest.raises(
        ConfigError, match=r"methods\[1\]\.data: no \[\[data\]\] recipe named 'spk-c'"
    ):
        load_suite(p, registry)
