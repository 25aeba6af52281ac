"""The plugin host: built-ins, third parties, user control, loud failures, did-you-mean."""

import numpy as np
import pytest
from helpers import DOUBLES, SUPPORT, cli

from ttsadapt.errors import PluginError, UnknownComponentError
from ttsadapt.registry import build_registry


def test_builtins_register_real_components():
    reg = build_registry(autoload=False)
    assert reg.names("metric"), "built-in metrics are registered"
    assert "zero_shot" in reg.names("method")
    assert reg.names("backbone")
    for kind in ("backbone", "method", "metric", "filter"):
        for name in reg.names(kind):
            assert reg.get(kind, name).name == name


def test_extra_module_and_disable_by_name():
    reg = build_registry(extra_modules=[DOUBLES], autoload=False)
    assert "double_rms" in reg.names("metric")
    reg2 = build_registry(extra_modules=[DOUBLES], disabled=[DOUBLES], autoload=False)
    assert "double_rms" not in reg2.names("metric")


def test_disable_a_builtin_plugin():
    reg = build_registry(autoload=False)
    some_metric = reg.names("metric")[0]
    plugin = reg.owner("metric", some_metric)
    reg2 = build_registry(disabled=[plugin], autoload=False)
    assert some_metric not in reg2.names("metric")


def test_unknown_component_gets_did_you_mean():
    reg = build_registry(extra_modules=[DOUBLES], autoload=False)
    with pytest.raises(UnknownComponentError, match="Did you mean 'double_rms'"):
        reg.get("metric", "double_rsm")


def test_plugin_failing_to_import_is_loud(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"plugin 'broken_plugin'.*failed to import.*libfoo"):
        build_registry(extra_modules=["broken_plugin"], autoload=False)


def test_duplicate_name_names_both_plugins(tmp_path, monkeypatch):
    (tmp_path / "dupe_plugin.py").write_text(
        "from ttsadapt.markers import hookimpl\n"
        "from ttsadapt_test_doubles import DoubleRmsMetric\n"
        "class Again(DoubleRmsMetric):\n    pass\n"
        "@hookimpl\ndef ttsadapt_register_metrics():\n    return [Again]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        PluginError, match=r"'double_rms' is registered twice.*ttsadapt_test_doubles.*dupe_plugin"
    ):
        build_registry(extra_modules=[DOUBLES, "dupe_plugin"], autoload=False)


def test_misspelt_hook_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "typo_plugin.py").write_text(
        "from ttsadapt.markers import hookimpl\n@hookimpl\ndef ttsadapt_register_metricz():\n    return []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="typo_plugin"):
        build_registry(extra_modules=["typo_plugin"], autoload=False)


def test_registration_hook_returning_non_class_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "bad_return.py").write_text(
        "from ttsadapt.markers import hookimpl\n@hookimpl\ndef ttsadapt_register_metrics():\n    return ['dnsmos']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        PluginError, match=r"bad_return.*expected a subclass of ttsadapt.components.Metric"
    ):
        build_registry(extra_modules=["bad_return"], autoload=False)


def test_cli_plugins_and_ls():
    r = cli("-p", DOUBLES, "plugins")
    assert r.returncode == 0, r.stderr
    assert "ttsadapt_test_doubles" in r.stdout and "metric:double_rms" in r.stdout
    r = cli("-p", DOUBLES, "ls", "metrics")
    assert r.returncode == 0 and "double_rms" in r.stdout and "↑" in r.stdout
    r = cli("ls", "methods")
    assert "zero_shot" in r.stdout and "no training (anchor)" in r.stdout


# --------------------------------------------------------------------------- plugin authors' friction


def _installed(site, dist: str, entry_points: dict[str, str], modules: dict[str, str]):
    """A distribution as pip leaves it in site-packages: modules plus a ``.dist-info`` folder
    whose ``entry_points.txt`` announces ``entry_points`` in the ``ttsadapt.plugins`` group."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.2.0\n")
    (info / "entry_points.txt").write_text(
        "[ttsadapt.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    )
    return site


PEAK = (
    "import numpy as np\n"
    "from ttsadapt.components import Metric, MetricOutput\n"
    "from ttsadapt.markers import hookimpl\n"
    "from ttsadapt.types import ItemScore\n"
    "class PeakLevel(Metric):\n"
    "    name = 'peak_level'\n"
    "    outputs = (MetricOutput('peak_dbfs', False, (-120.0, 0.0), 'dB'),)\n"
    "    def score(self, items):\n"
    "        return [ItemScore(i.id, {'peak_dbfs': -6.0}) for i in items]\n"
    "@hookimpl\n"
    "def ttsadapt_register_metrics():\n"
    "    return [PeakLevel]\n"
)


def test_dash_p_on_a_plugin_installed_by_entry_point_loads_it_once_with_a_clear_message(tmp_path):
    site = _installed(tmp_path / "site", "ttsadapt-peak", {"peak": "ttsadapt_peak"}, {})
    (site / "ttsadapt_peak.py").write_text(PEAK)
    env = {"PYTHONPATH": f"{site}:{SUPPORT}"}
    r = cli("-p", "ttsadapt_peak", "ls", "metrics", env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "ValueError" not in r.stderr
    assert "peak_level" in r.stdout
    assert "-p ttsadapt_peak: this module is already loaded as plugin 'peak'" in r.stderr
    assert "entrypoint, distribution ttsadapt-peak 0.2.0" in r.stderr
    assert "drop -p ttsadapt_peak" in r.stderr
    # the same for a built-in given with -p
    r = cli("-p", "ttsadapt.plugins.metrics.stoi", "ls", "metrics", env={"PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    assert "already loaded as plugin 'stoi' (builtin" in r.stderr


def test_a_broken_plugin_is_listed_by_plugins_and_stops_other_commands_naming_it(tmp_path):
    site = _installed(
        tmp_path / "site",
        "ttsadapt-wobbly",
        {"wobbly": "ttsadapt_wobbly", "peak": "ttsadapt_peak"},
        {
            "ttsadapt_wobbly": "import numpy\nraise ImportError('wobbly needs libwobble.so.3')\n",
            "ttsadapt_peak": PEAK,
        },
    )
    env = {"PYTHONPATH": f"{site}:{SUPPORT}"}
    r = cli("plugins", env=env)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[2:]}
    assert "BROKEN" in rows["wobbly"] and "libwobble.so.3" in rows["wobbly"]
    assert "ttsadapt-wobbly 0.2.0" in rows["wobbly"]
    assert "metric:peak_level" in rows["peak"]  # the healthy plugins are still listed
    assert "metric:wada_snr" in rows["wada_snr"]
    assert "could not be loaded (wobbly)" in r.stderr
    for args in (["ls", "metrics"], ["score", "--manifest", "m", "--metrics", "x", "--out", "o"]):
        r = cli(*args, env=env)
        assert r.returncode == 3, (args, r.stdout)
        assert "plugin 'wobbly'" in r.stderr and "libwobble.so.3" in r.stderr
        assert "-p no:wobbly" in r.stderr
    r = cli("-p", "no:wobbly", "plugins", env=env)
    assert r.returncode == 0, r.stderr
    assert "disabled by -p no:wobbly" in r.stdout


def test_a_component_of_a_disabled_plugin_says_the_plugin_is_disabled(tmp_path):
    reg = build_registry(extra_modules=[DOUBLES], disabled=[DOUBLES, "wada_snr"], autoload=False)
    with pytest.raises(
        UnknownComponentError,
        match=r"metric 'double_rms' belongs to plugin 'ttsadapt_test_doubles', which is "
        r"disabled by -p no:ttsadapt_test_doubles",
    ):
        reg.get("metric", "double_rms")
    with pytest.raises(UnknownComponentError, match=r"backbone 'double_tone' belongs to plugin"):
        reg.get("backbone", "double_tone")
    with pytest.raises(UnknownComponentError, match="Did you mean 'dnsmos'"):
        reg.get("metric", "dnsmo")  # a plain typo still gets the suggestion
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "never-read.wav"}\n')
    r = cli(
        "-p", "no:wada_snr", "score", "--manifest", str(manifest), "--metrics", "wada_snr",
        "--out", str(tmp_path / "o.jsonl"),
    )  # fmt: skip
    assert r.returncode == 2
    assert (
        "metric 'wada_snr' belongs to plugin 'wada_snr', which is disabled by -p no:wada_snr"
        in r.stderr
    )


def test_duplicate_name_error_names_both_classes(tmp_path, monkeypatch):
    (tmp_path / "dupe_plugin2.py").write_text(
        "from ttsadapt.markers import hookimpl\n"
        "from ttsadapt_test_doubles import DoubleRmsMetric\n"
        "class Again(DoubleRmsMetric):\n    pass\n"
        "@hookimpl\ndef ttsadapt_register_metrics():\n    return [Again]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        build_registry(extra_modules=[DOUBLES, "dupe_plugin2"], autoload=False)
    assert "class ttsadapt_test_doubles.DoubleRmsMetric" in str(info.value)
    assert "class dupe_plugin2.Again" in str(info.value)


# --------------------------------------------------------------------------- contract checks


def test_check_metric_names_the_clip_that_made_the_metric_crash():
    from ttsadapt.components import Metric, MetricOutput
    from ttsadapt.testing import check_metric
    from ttsadapt.types import ItemScore

    class CrashesOnNan(Metric):
        name = "crashes_on_nan"
        outputs = (MetricOutput("peak", False, (0.0, 1.0)),)

        def score(self, items):
            out = []
            for it in items:
                if it.audio.size == 0:
                    out.append(ItemScore(it.id, error="empty"))
                    continue
                if np.isnan(it.audio).any():
                    raise ValueError("cannot take the log of NaN")
                out.append(ItemScore(it.id, {"peak": float(np.abs(it.audio).max())}))
            return out

    with pytest.raises(AssertionError) as info:
        check_metric(CrashesOnNan)
    msg = str(info.value)
    assert "ValueError: cannot take the log of NaN on clip 'nan'" in msg
    assert "1 s clip of NaN samples at 16000 Hz" in msg
    assert "ItemScore(id, error=reason)" in msg


# --------------------------------------------------------------------------- strict params


def _suite_with_nudge(tmp_path, params: str):
    from helpers import make_corpus, write_suite

    manifest = make_corpus(tmp_path / "corpus", speakers=("a",), n_train=1, n_eval=1)
    methods = (
        f'[[methods]]\nname = "double_anchor"\n\n[[methods]]\nname = "double_nudge"\n{params}\n'
    )
    return write_suite(tmp_path, manifest, methods=methods)


@pytest.mark.parametrize(
    ("params", "field", "got"),
    [
        ('params = { fail = "yes" }', "params.fail", "'yes'"),
        ('params = { fail = "false" }', "params.fail", "'false'"),
        ('params = { target_gain = "0.5" }', "params.target_gain", "'0.5'"),
        ("params = { target_gain = [[0.5, 0.9]] }", "params.target_gain", "[0.5, 0.9]"),
        ("params = { steps = true }", "params.steps", "True"),
    ],
)
def test_strict_params_refuse_strings_for_bools_and_lists_for_numbers(tmp_path, params, field, got):
    from ttsadapt.errors import ConfigError
    from ttsadapt.suite import load_suite

    suite = _suite_with_nudge(tmp_path, params)
    with pytest.raises(ConfigError) as info:
        load_suite(suite, build_registry(extra_modules=[DOUBLES], autoload=False))
    msg = str(info.value)
    assert str(suite) in msg and field in msg and f"(got {got})" in msg, msg
    assert "should be a valid" in msg


def test_strict_params_still_take_a_toml_int_for_a_float(tmp_path):
    from ttsadapt.suite import load_suite

    suite = _suite_with_nudge(tmp_path, "params = { target_gain = 1, fail = false }")
    loaded = load_suite(suite, build_registry(extra_modules=[DOUBLES], autoload=False))
    nudge = next(r for r in loaded.runs if r.method == "double_nudge")
    assert nudge.method_params["target_gain"] == 1.0
    assert isinstance(nudge.method_params["target_gain"], float)


def test_validate_prints_the_resolved_params_of_each_component(tmp_path):
    suite = _suite_with_nudge(tmp_path, "params = { target_gain = [0.5, 0.9] }")
    r = cli("-p", DOUBLES, "validate", str(suite))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "resolved parameters (defaults filled in):" in lines
    assert "  backbone double_tone v1: f0_hz=150.0, fail_on_text=null, sleep_s=0.0" in lines
    assert "  method double_anchor v1: (no parameters)" in lines
    for gain in ("0.5", "0.9"):  # one line per swept value, defaults filled in
        assert (
            f"  method double_nudge v1: fail=false, sleep_s=0.0, steps=3, target_gain={gain}"
            in (lines)
        )
    assert any(line.startswith("  metric double_rms v1: ") for line in lines)
