"""A third-party plugin package, installed through its entry point, is listed and used — no core change."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import cli, make_corpus

PLUGIN_SOURCE = '''
"""A third-party metric: peak level in dBFS."""
import numpy as np
from ttsadapt.components import Metric, MetricOutput
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import prepare_audio, score_each


class PeakLevel(Metric):
    name = "peak_level"
    version = "1"
    description = "peak sample level in dBFS"
    outputs = (MetricOutput("peak_dbfs", False, (-120.0, 0.0), "dB"),)

    def score(self, items):
        def one(it):
            audio = prepare_audio(it.audio, it.sample_rate)
            return {"peak_dbfs": max(-120.0, 20 * np.log10(np.abs(audio).max()))}

        return score_each(items, one)


@hookimpl
def ttsadapt_register_metrics():
    return [PeakLevel]
'''


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "ttsadapt_peak").mkdir()
    (src / "ttsadapt_peak" / "__init__.py").write_text(PLUGIN_SOURCE)
    (src / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "ttsadapt-peak"
        version = "0.3.1"
        [project.entry-points."ttsadapt.plugins"]
        peak = "ttsadapt_peak"
        [tool.setuptools]
        packages = ["ttsadapt_peak"]
    """)
    )
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return target


def _env(site: Path) -> dict:
    import os

    from helpers import SUPPORT

    return {"PYTHONPATH": os.pathsep.join([str(site), str(SUPPORT)])}


def test_entry_point_plugin_is_listed_with_its_version(installed_plugin):
    r = cli("plugins", env=_env(installed_plugin))
    assert r.returncode == 0, r.stderr
    line = next(line for line in r.stdout.splitlines() if line.startswith("peak "))
    assert "entrypoint" in line and "ttsadapt-peak 0.3.1" in line and "metric:peak_level" in line


def test_autoload_can_be_disabled(installed_plugin):
    r = cli(
        "ls", "metrics", env={**_env(installed_plugin), "TTSADAPT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert r.returncode == 0 and "peak_level" not in r.stdout
    r = cli("-p", "no:peak", "ls", "metrics", env=_env(installed_plugin))
    assert r.returncode == 0 and "peak_level" not in r.stdout


def test_entry_point_metric_is_used_in_a_suite(installed_plugin, tmp_path):
    manifest = make_corpus(tmp_path / "corpus")
    suite = tmp_path / "third.toml"
    suite.write_text(f'''
name = "third"
anchor = "double_anchor"
[corpus]
manifest = "{manifest}"
[evaluation]
max_items = 3
[[backbones]]
name = "double_tone"
[[methods]]
name = "double_anchor"
[[metrics]]
name = "peak_level"
''')
    r = cli(
        "-p",
        "ttsadapt_test_doubles",
        "run",
        str(suite),
        "--results",
        str(tmp_path / "res"),
        env=_env(installed_plugin),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    records = list((tmp_path / "res" / "third" / "runs").glob("*/records/peak_level.json"))
    assert len(records) == 1
    import json

    rec = json.loads(records[0].read_text())
    assert rec["outputs"]["peak_dbfs"]["n"] == 3 and rec["outputs"]["peak_dbfs"]["mean"] < 0
