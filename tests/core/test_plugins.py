"""The plugin host: built-ins, third parties, user control, loud failures, did-you-mean."""

import pytest
from helpers import DOUBLES, cli

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
